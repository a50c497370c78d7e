"""The ``cytokine-balance`` command line: info, simulate, fit, report, compare.

Bad input (a data file, an option, a model name) ends with one line on stderr and exit status 2;
an existing output file is never replaced without ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from models import MODELS, ModelError, get_model
from models.solvers import METHODS

EXIT_BAD_INPUT = 2
MODEL_HELP = ("a library model name (see 'cytokine-balance info') or a model of your own, "
              "path/to/file.py:NAME (the OdeModel NAME defined in that file; results store the file)")


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


def _add_sampler_arguments(p: argparse.ArgumentParser) -> None:
    """Add one option per sampler setting, with the defaults of :class:`SamplerSettings`."""
    from inference.sampler import SAMPLERS, SamplerSettings

    for f in fields(SamplerSettings):
        option = "--" + f.name.replace("_", "-")
        if f.name == "sampler":
            p.add_argument(option, choices=list(SAMPLERS), default=f.default)
        else:
            p.add_argument(option, type=type(f.default), default=f.default,
                           help=f"default {f.default}")


def _sampler_settings(args):
    from inference.sampler import SamplerSettings

    return SamplerSettings(**{f.name: getattr(args, f.name) for f in fields(SamplerSettings)})


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
    """Simulate a cohort from a model with known truth and write it as a tidy CSV."""
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
        dose = {"dose": args.dose} if "dose" in model.input_names else {}
        rows.append({"subject": f"S{k + 1:02d}", **values, **dose})
    truth = pd.DataFrame(rows)
    times = [float(t) for t in _names(args.times)]
    try:
        dataset = simulate_dataset(
            model, truth, times, sigma={a: args.sigma for a in model.analytes},
            lloq={a: args.lloq for a in ("TNF", "IL6") if a in model.analytes}, seed=args.seed,
        )
    except ValueError as error:  # inconsistent settings, e.g. a zero observable at a sample time
        raise UsageError(str(error)) from None
    save_dataset(dataset, out, overwrite=args.force)
    truth_path = out.with_name(out.stem + "_truth.csv")
    truth.to_csv(truth_path, index=False)
    print(f"wrote {out} ({dataset.summary()['n_samples']} samples) and {truth_path}")


# ---- fit -------------------------------------------------------------------------------------
def _options(args, dataset):
    from inference.build import ModelOptions, default_options
    from inference.op import FIT_SOLVER

    model = get_model(args.model)
    base = default_options(model, dataset)
    solver = {key: getattr(args, key) for key in ("method", "rtol", "atol", "max_steps")
              if getattr(args, key) is not None}
    return ModelOptions(
        priors=_priors(args.priors, model),
        fixed=_assignments(args.fixed, "--fixed"),
        random_effects=_names(args.random_effects) if args.random_effects is not None
        else base.random_effects,
        group_effects=_names(args.group_effects) if args.group_effects is not None
        else base.group_effects,
        likelihood=args.likelihood,
        solver=replace(FIT_SOLVER, **solver),
    )


def _priors(path: str | None, model) -> dict:
    """Prior overrides from ``--priors FILE.toml`` (a ``[priors]`` table, as in a hypotheses file)."""
    from inference.hypotheses import load_priors

    if path is None:
        return {}
    if not Path(path).exists():
        raise UsageError(f"{path}: no such priors file")
    return load_priors(path, model)


def _load_data(path, args, models):
    """Load a dataset to fit and say what became of its flagged samples (kept unless --exclude-flagged).

    The analytes of ``models`` are known besides the library's (a user's model may observe others).
    """
    from inference.data import load_dataset, model_analytes

    dataset = load_dataset(path, subjects=args.subjects_table, events=args.events,
                           analytes=model_analytes(*models))
    n = dataset.n_flagged
    if not n:
        return dataset, ""
    if args.exclude_flagged:
        return dataset.without_flagged(), f"; {n} flagged samples left out (--exclude-flagged)"
    return dataset, f"; {n} flagged samples kept (--exclude-flagged leaves them out)"


def cmd_fit(args) -> None:
    """Fit a model to a dataset, save the InferenceData and write the report."""
    from inference.fit import fit, save_result

    out = Path(args.out)
    _check_output(out, args.force)
    report = None if args.no_report else Path(args.report or out.with_suffix(".html"))
    if report is not None:
        _check_output(report, args.force)
    dataset, flagged = _load_data(args.data, args, [get_model(args.model)])
    options = _options(args, dataset)
    summary = dataset.summary()
    print(f"fitting {args.model} to {dataset.source}: {summary['n_subjects']} subject(s), "
          f"{summary['n_samples']} samples ({summary['n_censored']} censored{flagged})", flush=True)
    idata = fit(args.model, dataset, options, _sampler_settings(args), progress=not args.quiet)
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
    from inference.hypotheses import load_hypotheses
    from inference.report.comparison import HTML_NAME, JSON_NAME, write_comparison

    out = Path(args.out)
    if args.refit_bad_k < 0:
        raise UsageError(f"--refit-bad-k must be >= 0, got {args.refit_bad_k}")
    evidence = None if args.evidence == "none" else args.evidence
    inputs = [Path(p) for p in args.inputs]
    for path in inputs:
        if not path.exists():
            raise UsageError(f"{path}: no such file")
    settings = dict(refit_bad_k=args.refit_bad_k, exact_lso=args.exact_lso, workers=args.workers,
                    evidence=evidence, progress=not args.quiet, out_dir=out)
    if args.hypotheses is not None:
        if len(inputs) != 1 or inputs[0].suffix.lower() == ".nc":
            raise UsageError("with --hypotheses give one data CSV: "
                             "cytokine-balance compare DATA.csv --hypotheses FILE.toml --out DIR")
        if not Path(args.hypotheses).exists():
            raise UsageError(f"{args.hypotheses}: no such hypotheses file")
        models = [h.ode_model for h in load_hypotheses(args.hypotheses)]  # the analytes they observe
        dataset, flagged = _load_data(inputs[0], args, models)
        if flagged:
            print(f"{dataset.source}{flagged}")
        hypotheses = load_hypotheses(args.hypotheses, dataset)
        if len(hypotheses) < 2:
            raise UsageError(f"{args.hypotheses}: compare needs at least two hypotheses, "
                             f"got {len(hypotheses)}")
        for path in [out / JSON_NAME, out / HTML_NAME, *(out / f"{h.name}.nc" for h in hypotheses)]:
            _check_output(path, args.force)
        print(f"fitting {len(hypotheses)} hypotheses ({', '.join(h.name for h in hypotheses)}) to "
              f"{dataset.source}, one after another; results in {out}/", flush=True)
        comparison = _compare_on_cluster(args, dataset=dataset, hypotheses=hypotheses, force=args.force,
                                         settings=_sampler_settings(args), **settings)
    else:
        not_results = [str(p) for p in inputs if p.suffix.lower() != ".nc"]
        if not_results:
            raise UsageError(f"{not_results[0]}: expected result files (.nc) to compare, or one data CSV "
                             "with --hypotheses FILE.toml")
        if len(inputs) < 2:
            raise UsageError(f"compare needs at least two result files, got {len(inputs)}")
        for path in (out / JSON_NAME, out / HTML_NAME):
            _check_output(path, args.force)
        comparison = _compare_on_cluster(args, inputs, settings=_sampler_settings(args), **settings)
    write_comparison(comparison, out, force=args.force)
    print(f"ranking: {' > '.join(comparison.ranking)}")
    lso = comparison.exact_lso
    if lso["on"]:
        print(f"exact leave-subject-out: {lso['subjects_refitted']} of {lso['subjects_flagged']} flagged "
              f"subject estimates refitted in {lso['seconds']:.0f} s on {lso['workers']} Dask worker(s) "
              f"({lso['reason']})")
    print(comparison.verdict)
    for warning in comparison.warnings:
        print(f"warning: {warning}")
    print(f"wrote {out / JSON_NAME} and {out / HTML_NAME}")


def _compare_on_cluster(args, *inputs, **options):
    """Run :func:`inference.compare.compare`, its exact refits on ``--scheduler`` if given."""
    from inference.compare import compare

    client = _client(args)
    try:
        return compare(*inputs, client=client, **options)
    finally:
        if client is not None:
            client.close()


# ---- fit-many and validate (many fits on Dask) -------------------------------------------------
def _cluster_arguments(p) -> None:
    p.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://host:8786 "
                                       "(default: an embedded local cluster sized to this machine)")
    p.add_argument("--workers", type=int, help="workers of the embedded cluster (default: cores / chains)")


def _client(args):
    from inference.batch import connect

    try:
        return connect(args.scheduler)
    except ValueError as error:
        raise UsageError(str(error)) from None


def cmd_fit_many(args) -> None:
    """Fit every subject of a dataset separately, or every row of a manifest, on Dask."""
    from inference.batch import fit_many, read_manifest, subject_tasks
    from inference.build import ModelOptions
    from inference.data import load_dataset, model_analytes

    if (args.data is None) == (args.manifest is None):
        raise UsageError("give either a data CSV (one fit per subject) or --manifest FILE.csv")
    sampler = _sampler_settings(args)
    if args.manifest is not None:
        if not Path(args.manifest).exists():
            raise UsageError(f"{args.manifest}: no such manifest")
        tasks = read_manifest(args.manifest, sampler)
    else:
        model = get_model(args.model)
        dataset = load_dataset(args.data, subjects=args.subjects_table, events=args.events,
                               analytes=model_analytes(model))
        fixed = _assignments(args.fixed, "--fixed")
        tasks = subject_tasks(dataset, model, lambda _: ModelOptions(fixed=fixed), args.seed, sampler)
    client = _client(args)
    try:
        result = fit_many(tasks, client, args.out, workers=args.workers)
    finally:
        if client is not None:
            client.close()
    for outcome in result.failed:
        print(f"failed: {outcome.name}: {outcome.error}", file=sys.stderr)
    if result.failed:
        print(f"{len(result.failed)} of {len(tasks)} fits failed; rerun the same command to retry them "
              "(finished fits are kept and skipped)", file=sys.stderr)
        raise SystemExit(1)


def add_fit_many_parser(sub) -> None:
    """Add ``fit-many`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "fit-many",
        help="many fits on Dask: every subject of a dataset separately, or each row of a manifest",
        description="cytokine-balance fit-many DATA.csv --out DIR fits every subject separately; "
                    "cytokine-balance fit-many --manifest FITS.csv --out DIR fits each row of a CSV manifest "
                    "(columns name,data and optionally model,seed,fixed,random_effects,group_effects,"
                    "likelihood,subjects_table,events; lists separated by ';', e.g. fixed 'r=0;K_C=300'; "
                    "paths relative to the manifest). Results: DIR/<name>-<key>.nc; a rerun skips those "
                    "that exist. Exit status 1 if a fit failed.",
    )
    p.add_argument("data", nargs="?", help="tidy observations CSV: fit each subject separately")
    p.add_argument("--manifest", help="CSV manifest, one fit per row")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default="acute_inflammation",
                   help="model of the per-subject fits: " + MODEL_HELP)
    p.add_argument("--subjects-table", help="optional subject table CSV (per-subject fits)")
    p.add_argument("--events", help="optional events CSV (per-subject fits)")
    p.add_argument("--fixed", help="fix parameters in the per-subject fits, e.g. r=0")
    _add_sampler_arguments(p)
    _cluster_arguments(p)
    p.set_defaults(func=cmd_fit_many)


def cmd_validate(args) -> None:
    """Simulation-based calibration or coverage: simulate, fit on Dask, write a table and a page."""
    from inference.build import ModelOptions
    from inference.data import load_dataset, model_analytes
    from inference.files import write_atomically
    from inference.report.validation import render_coverage, render_sbc
    from inference.validate import RANK_DRAWS, coverage_table, design_from_dataset, run_study, sbc_table

    out = Path(args.out)
    page, table_path = out / f"{args.check}.html", out / f"{args.check}.csv"
    for path in (page, table_path):
        _check_output(path, args.force)
    if args.n < 2:
        raise UsageError(f"--n must be at least 2, got {args.n}")
    if not Path(args.design).exists():
        raise UsageError(f"{args.design}: no such design file")
    model = get_model(args.model)
    design = design_from_dataset(model, load_dataset(args.design, analytes=model_analytes(model)),
                                 args.subject)
    client = _client(args)
    try:
        study = run_study(model, design, args.n, out / "fits",
                          options=ModelOptions(fixed=_assignments(args.fixed, "--fixed")),
                          sampler=_sampler_settings(args), seed=args.seed,
                          n_rank_draws=args.rank_draws or RANK_DRAWS,
                          client=client, workers=args.workers)
    finally:
        if client is not None:
            client.close()
    if args.check == "sbc":
        table, tests = sbc_table(study)
        html = render_sbc(study, table, tests)
        write_atomically(out / "sbc_ranks.csv", lambda tmp: study.ranks.to_csv(tmp, index=False),
                         overwrite=True)
    else:
        table = coverage_table(study)
        html = render_coverage(study, table)
    write_atomically(table_path, lambda tmp: table.to_csv(tmp, index=False), overwrite=args.force)
    write_atomically(page, lambda tmp: tmp.write_text(html, encoding="utf-8"), overwrite=args.force)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for failure in study.failed:
        print(f"failed fit (left out): {failure}")
    print(f"{len(study.ranks)} replicates, {study.fits['seconds'].mean():.1f} s per fit; "
          f"wrote {table_path} and {page}")


def add_validate_parser(sub) -> None:
    """Add ``validate sbc`` and ``validate coverage`` to the subcommands ``sub``."""
    top = sub.add_parser("validate", help="simulation-based calibration and coverage on simulated subjects")
    checks = top.add_subparsers(dest="check", required=True)
    for check, text in (("sbc", "simulation-based calibration: rank uniformity of every quantity"),
                        ("coverage", "coverage of the central 50%% and 90%% intervals, bias, widths")):
        p = checks.add_parser(check, help=text, description=text.replace("%%", "%") + f". Writes "
                              f"OUT/{check}.html and OUT/{check}.csv; the fits are kept in OUT/fits/ and "
                              "reused by a rerun (sbc and coverage with the same settings share them).")
        p.add_argument("--model", default="acute_inflammation", help=MODEL_HELP)
        p.add_argument("--design", required=True, help="observations CSV whose subject gives the sample "
                       "times, analytes, LLOQs and inputs (e.g. data/single_subject/observations.csv)")
        p.add_argument("--subject", help="the design's subject, if the file has several")
        p.add_argument("--n", type=int, required=True, help="number of simulated subjects (replicates)")
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--fixed", help="fixed parameters, e.g. r=0")
        p.add_argument("--rank-draws", type=int, help="posterior draws kept (evenly thinned) for ranks "
                       "(default: inference.validate.RANK_DRAWS)")
        p.add_argument("--force", action="store_true", help="replace an existing page and table")
        _add_sampler_arguments(p)
        _cluster_arguments(p)
        p.set_defaults(func=cmd_validate)


def parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``cytokine-balance``."""
    from inference.measurement import LIKELIHOODS

    top = argparse.ArgumentParser(prog="cytokine-balance", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="list models, or show one model's equations, parameters and priors")
    p.add_argument("model", nargs="?", help=MODEL_HELP)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("simulate", help="simulate a cohort with known truth (tidy CSV + truth CSV)")
    p.add_argument("--model", default="acute_inflammation", help=MODEL_HELP)
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
    p.add_argument("--model", default="acute_inflammation", help=MODEL_HELP)
    p.add_argument("--out", default="result.nc", help="result netCDF (default result.nc)")
    p.add_argument("--report", help="report HTML (default: the result path with .html)")
    p.add_argument("--no-report", action="store_true", help="do not write the report")
    p.add_argument("--subjects-table", help="optional subject table CSV")
    p.add_argument("--events", help="optional events (doses, input changes) CSV")
    p.add_argument("--exclude-flagged", action="store_true",
                   help="leave out samples with a non-empty 'flag' cell (default: keep them)")
    p.add_argument("--priors", metavar="FILE.toml",
                   help="prior overrides: a [priors] table as in a hypotheses file, e.g. "
                        'K_C = { kind = "LogNormal", median = 500.0, sigma = 0.2 }')
    _add_sampler_arguments(p)
    p.add_argument("--fixed", help="fix parameters, e.g. r=0")
    p.add_argument("--random-effects", help="parameters varying between subjects (comma list)")
    p.add_argument("--group-effects", help="parameters differing between groups (comma list)")
    p.add_argument("--likelihood", choices=list(LIKELIHOODS), default="lognormal")
    p.add_argument("--method", choices=list(METHODS),
                   help="ODE solver; the default 'auto' switches to a stiff method where needed")
    p.add_argument("--rtol", type=float, help="solver's relative tolerance (default 1e-4: "
                   "a hundredth of the assay's error; README, 'Solver tolerance in fits')")
    p.add_argument("--atol", type=float, help="solver's absolute tolerance, each state in its unit (1e-6)")
    p.add_argument("--max-steps", type=int, help="solver steps per subject before it fails (default 20000)")
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
    p.add_argument("--exclude-flagged", action="store_true",
                   help="with --hypotheses: leave out samples with a non-empty 'flag' cell "
                        "(default: keep them)")
    _add_sampler_arguments(p)
    p.add_argument("--refit-bad-k", type=int, default=0, metavar="N",
                   help="refit up to N observations per hypothesis whose Pareto k is too high, exactly "
                        "(default 0: only warn)")
    p.add_argument("--exact-lso", choices=["auto", "always", "never"], default="auto",
                   help="refit every subject whose leave-subject-out Pareto k is too high, exactly, on Dask "
                        "(default auto: on with --scheduler or on a machine of at least "
                        "inference.compare.EXACT_LSO_CORES = 4 cores)")
    _cluster_arguments(p)
    p.add_argument("--evidence", choices=["bridge", "smc", "none"], default="bridge",
                   help="log marginal likelihood by bridge sampling on the draws (default), SMC, or none")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_compare)
    add_fit_many_parser(sub)
    add_validate_parser(sub)
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
