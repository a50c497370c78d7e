"""The ``cytokine-balance`` command line: info, simulate, fit, report, compare.

Bad input (a data file, an option, a model name) ends with one line on stderr and exit status 2;
an existing output file is never replaced without ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from models import MODELS, ModelError, SolverSettings, get_model
from models.solvers import METHODS

EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    """A command-line option is invalid."""


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else ()


def _assignments(text: str | None, option: str) -> dict[str, float]:
    """Parse ``a=1,b=2``."""
    values = {}
    for item in _names(text):
        name, sep, value = item.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise UsageError(f"{option}: expected NAME=NUMBER[,NAME=NUMBER...], got {item!r}")
    return values


def _check_output(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to replace it")


# ---- info ------------------------------------------------------------------------------------
def cmd_info(args) -> None:
    """List the library's models, or describe one with its equations, parameters and priors."""
    if args.model is None:
        for model in MODELS.values():
            print(f"{model.name:22s} {model.title}")
            print(f"{'':22s} observes {', '.join(model.analytes)}; inputs {', '.join(model.input_names)}")
        return
    model = get_model(args.model)
    print(f"{model.name}: {model.title}\n\n{model.equations}\n")
    print(f"{'parameter':10s} {'unit':20s} {'prior':36s} meaning")
    for p in model.parameters:
        print(f"{p.name:10s} {p.unit:20s} {p.prior.describe():36s} {p.description}")
    print(f"\n{'input':10s} {'unit':20s} {'default':36s} meaning")
    for i in model.inputs:
        print(f"{i.name:10s} {i.unit:20s} {i.default:<36g} {i.description}")


# ---- simulate --------------------------------------------------------------------------------
def cmd_simulate(args) -> None:
    """Simulate a cohort from a library model with known truth and write it as a tidy CSV."""
    from inference.data import save_dataset
    from inference.synthetic import simulate_dataset

    out = Path(args.out)
    _check_output(out, args.force)
    model = get_model(args.model)
    if args.subjects < 1:
        raise UsageError(f"--subjects must be at least 1, got {args.subjects}")
    overrides = _assignments(args.set, "--set")
    model.theta({**model.defaults(), **overrides})  # validates names and bounds
    rng = np.random.default_rng(args.seed)
    rows = []
    for k in range(args.subjects):
        values = {**model.defaults(), **overrides}
        for name in model.parameter_names:
            if model.parameter(name).upper == np.inf and name not in overrides:
                values[name] *= float(np.exp(args.variation * rng.standard_normal()))
        rows.append({"subject": f"S{k + 1:02d}", **values, "dose": args.dose})
    truth = pd.DataFrame(rows)
    times = [float(t) for t in _names(args.times)]
    dataset = simulate_dataset(
        model, truth, times, sigma={a: args.sigma for a in model.analytes},
        lloq={"TNF": args.lloq, "IL6": args.lloq}, seed=args.seed,
    )
    save_dataset(dataset, out, overwrite=args.force)
    truth_path = out.with_name(out.stem + "_truth.csv")
    truth.to_csv(truth_path, index=False)
    print(f"wrote {out} ({dataset.summary()['n_samples']} samples) and {truth_path}")


# ---- fit -------------------------------------------------------------------------------------
def _options(args, dataset):
    from inference.build import ModelOptions, default_options

    model = get_model(args.model)
    base = default_options(model, dataset)
    return ModelOptions(
        fixed=_assignments(args.fixed, "--fixed"),
        random_effects=_names(args.random_effects) if args.random_effects is not None
        else base.random_effects,
        group_effects=_names(args.group_effects) if args.group_effects is not None
        else base.group_effects,
        likelihood=args.likelihood,
        solver=SolverSettings(args.method, args.rtol, args.atol, args.max_steps),
    )


def cmd_fit(args) -> None:
    """Fit a model to a dataset, save the InferenceData and write the report."""
    from inference.data import load_dataset
    from inference.fit import fit, save_result

    out = Path(args.out)
    _check_output(out, args.force)
    report = None if args.no_report else Path(args.report or out.with_suffix(".html"))
    if report is not None:
        _check_output(report, args.force)
    dataset = load_dataset(args.data, subjects=args.subjects_table, events=args.events)
    options = _options(args, dataset)
    summary = dataset.summary()
    print(f"fitting {args.model} to {dataset.source}: {summary['n_subjects']} subject(s), "
          f"{summary['n_samples']} samples ({summary['n_censored']} censored)", flush=True)
    idata = fit(
        args.model, dataset, options, sampler=args.sampler, draws=args.draws, tune=args.tune,
        chains=args.chains, target_accept=args.target_accept, seed=args.seed,
        progress=not args.quiet,
    )
    save_result(idata, out, overwrite=args.force)
    print(f"wrote {out}")
    if report is not None:
        from inference.report import render_report

        render_report(idata, report, overwrite=args.force)
        print(f"wrote {report}")


def cmd_report(args) -> None:
    """Write the HTML report of a saved fit."""
    from inference.fit import load_result
    from inference.report import render_report

    out = Path(args.out or Path(args.result).with_suffix(".html"))
    _check_output(out, args.force)
    if not Path(args.result).exists():
        raise UsageError(f"{args.result}: no such result file")
    render_report(load_result(args.result), out, overwrite=args.force)
    print(f"wrote {out}")


# ---- compare ---------------------------------------------------------------------------------
def cmd_compare(args) -> None:
    """Compare hypotheses: fit them to a dataset (``--hypotheses``), or compare saved fits."""
    from inference.compare import HTML_NAME, JSON_NAME, compare
    from inference.data import load_dataset
    from inference.hypotheses import load_hypotheses

    out = Path(args.out)
    if args.refit_bad_k < 0:
        raise UsageError(f"--refit-bad-k must be >= 0, got {args.refit_bad_k}")
    evidence = None if args.evidence == "none" else args.evidence
    inputs = [Path(p) for p in args.inputs]
    for path in inputs:
        if not path.exists():
            raise UsageError(f"{path}: no such file")
    settings = dict(refit_bad_k=args.refit_bad_k, evidence=evidence, progress=not args.quiet)
    if args.hypotheses is not None:
        if len(inputs) != 1 or inputs[0].suffix.lower() == ".nc":
            raise UsageError("with --hypotheses give one data CSV: "
                             "cytokine-balance compare DATA.csv --hypotheses FILE.toml --out DIR")
        if not Path(args.hypotheses).exists():
            raise UsageError(f"{args.hypotheses}: no such hypotheses file")
        dataset = load_dataset(inputs[0], subjects=args.subjects_table, events=args.events)
        hypotheses = load_hypotheses(args.hypotheses, dataset)
        if len(hypotheses) < 2:
            raise UsageError(f"{args.hypotheses}: compare needs at least two hypotheses, "
                             f"got {len(hypotheses)}")
        for path in [out / JSON_NAME, out / HTML_NAME, *(out / f"{h.name}.nc" for h in hypotheses)]:
            _check_output(path, args.force)
        print(f"fitting {len(hypotheses)} hypotheses ({', '.join(h.name for h in hypotheses)}) to "
              f"{dataset.source}, one after another; results in {out}/", flush=True)
        comparison = compare(
            dataset=dataset, hypotheses=hypotheses, out_dir=out, force=args.force, sampler=args.sampler,
            draws=args.draws, tune=args.tune, chains=args.chains, target_accept=args.target_accept,
            seed=args.seed, **settings,
        )
    else:
        not_results = [str(p) for p in inputs if p.suffix.lower() != ".nc"]
        if not_results:
            raise UsageError(f"{not_results[0]}: expected result files (.nc) to compare, or one data CSV "
                             "with --hypotheses FILE.toml")
        if len(inputs) < 2:
            raise UsageError(f"compare needs at least two result files, got {len(inputs)}")
        for path in (out / JSON_NAME, out / HTML_NAME):
            _check_output(path, args.force)
        comparison = compare(inputs, out_dir=out, force=args.force, seed=args.seed, **settings)
    print(f"ranking: {' > '.join(comparison.ranking)}")
    print(comparison.verdict)
    for warning in comparison.warnings:
        print(f"warning: {warning}")
    print(f"wrote {out / JSON_NAME} and {out / HTML_NAME}")


def parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``cytokine-balance``."""
    top = argparse.ArgumentParser(prog="cytokine-balance", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="list models, or show one model's equations, parameters and priors")
    p.add_argument("model", nargs="?", help="a library model name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("simulate", help="simulate a cohort with known truth (tidy CSV + truth CSV)")
    p.add_argument("--model", default="acute_inflammation")
    p.add_argument("--subjects", type=int, default=1, help="number of subjects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--dose", type=float, default=2.0, help="endotoxin dose, ng/kg")
    p.add_argument("--set", help="parameter values, e.g. r=0.4,K_C=300")
    p.add_argument("--variation", type=float, default=0.25,
                   help="between-subject log-scale sd of positive parameters (default 0.25)")
    p.add_argument("--times", default="0,0.5,1,1.5,2,3,4,6,8,12,24", help="sample times, h")
    p.add_argument("--sigma", type=float, default=0.15, help="log-scale assay noise sd")
    p.add_argument("--lloq", type=float, default=2.0, help="cytokine LLOQ, pg/mL")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("fit", help="fit a model to a dataset (writes result .nc and report .html)")
    p.add_argument("data", help="tidy observations CSV (see data/README.md)")
    p.add_argument("--model", default="acute_inflammation")
    p.add_argument("--out", default="result.nc", help="result netCDF (default result.nc)")
    p.add_argument("--report", help="report HTML (default: the result path with .html)")
    p.add_argument("--no-report", action="store_true", help="do not write the report")
    p.add_argument("--subjects-table", help="optional subject table CSV")
    p.add_argument("--events", help="optional events (doses, input changes) CSV")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--target-accept", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", choices=["nutpie", "pymc"], default="nutpie")
    p.add_argument("--fixed", help="fix parameters, e.g. r=0")
    p.add_argument("--random-effects", help="parameters varying between subjects (comma list)")
    p.add_argument("--group-effects", help="parameters differing between groups (comma list)")
    p.add_argument("--likelihood", choices=["lognormal", "student_t"], default="lognormal")
    p.add_argument("--method", choices=list(METHODS), default=SolverSettings.method,
                   help="ODE solver; the default 'auto' switches to a stiff method where needed")
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--atol", type=float, default=1e-6)
    p.add_argument("--max-steps", type=int, default=20_000)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("report", help="write the HTML report of a saved fit")
    p.add_argument("result", help="result .nc written by 'fit'")
    p.add_argument("--out", help="report HTML (default: the result path with .html)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "compare",
        help="compare hypotheses: fit them to a dataset (--hypotheses) or compare saved fits",
        description="cytokine-balance compare DATA.csv --hypotheses FILE.toml --out DIR fits each hypothesis "
                    "(DIR/<name>.nc); cytokine-balance compare A.nc B.nc ... --out DIR compares saved fits. "
                    "Both write DIR/comparison.json and DIR/comparison.html.",
    )
    p.add_argument("inputs", nargs="+",
                   help="one data CSV (with --hypotheses), or two or more result .nc files")
    p.add_argument("--hypotheses", help="hypotheses TOML file (see data/hypotheses_gc.toml)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--subjects-table", help="optional subject table CSV (with --hypotheses)")
    p.add_argument("--events", help="optional events CSV (with --hypotheses)")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--target-accept", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", choices=["nutpie", "pymc"], default="nutpie")
    p.add_argument("--refit-bad-k", type=int, default=0, metavar="N",
                   help="refit up to N observations and N subjects per hypothesis whose Pareto k is too "
                        "high, exactly (default 0: only warn)")
    p.add_argument("--evidence", choices=["bridge", "smc", "none"], default="bridge",
                   help="log marginal likelihood by bridge sampling on the draws (default), SMC, or none")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_compare)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from inference.data import DataError
    from inference.fit import ResultError

    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, ModelError, ResultError, UsageError, FileExistsError, FileNotFoundError) as error:
        print(f"cytokine-balance {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
