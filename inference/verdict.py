"""The comparison in words: ranking, verdict and warnings from the comparison table.

Hypotheses whose sampling diagnostics failed are marked and ranked after the sound ones; two
hypotheses within :data:`SEPARATION_SE` standard errors of each other are not separated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from .diagnostics import FAIL, PASS, WARN, Thresholds, diagnose
from .loo import PARETO_K_THRESHOLD
from .record import read_record

__all__ = ["SEPARATION_SE", "check_diagnostics", "rank_hypotheses", "write_verdict"]

#: Two hypotheses whose elpd differ by less than this many SE of the difference are not separated.
SEPARATION_SE = 2.0


def check_diagnostics(idata: az.InferenceData, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Summarise the shared diagnostics verdict (:func:`inference.diagnostics.diagnose`) of a fit.

    Pareto k is left out: the comparison reports it per hypothesis itself. The status is the one
    truth about a fit: ``"pass"`` (every check clean), ``"warn"`` (usable with care; the verdict
    says so first) or ``"fail"`` (ranked after the sound hypotheses).

    Returns
    -------
    dict
        ``status``, ``problems`` (failed checks in words), ``cautions`` (warned checks in words),
        ``flagged`` (check name to its headline number, for the checks that did not pass),
        ``max_rhat``, ``min_ess_bulk``, ``divergences`` and ``solver_failures``.
    """
    verdict = diagnose(idata, thresholds=thresholds)
    checks = [c for c in verdict if c.name != "pareto_k"]
    problems = [f"{c.title}: {c.message}" for c in checks if c.status == FAIL]
    cautions = [f"{c.title}: {c.message}" for c in checks if c.status == WARN]

    def value(name):
        v = verdict[name].value
        return float(v) if v is not None else float("nan")

    return {"status": FAIL if problems else WARN if cautions else PASS,
            "problems": problems, "cautions": cautions,
            "flagged": {c.name: c.message.split(";")[0] for c in checks if c.status != PASS},
            "max_rhat": value("rhat"), "min_ess_bulk": value("ess_bulk"),
            "divergences": int(np.nan_to_num(value("divergences"))),
            "solver_failures": read_record(idata).solver_failures or 0}


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def rank_hypotheses(elpd: Mapping[str, float], status: Mapping[str, str]) -> list[str]:
    """Best first by elpd; hypotheses whose diagnostics failed come after every sound one."""
    return sorted(elpd, key=lambda n: (status[n] == FAIL, -elpd[n]))


# What to try first when a check does not pass: one clause each, for the verdict's opening caution.
_REMEDIES = {
    "rhat": "more tuning and draws (e.g. --tune 2000 --draws 2000)",
    "ess_bulk": "more tuning and draws (e.g. --tune 2000 --draws 2000)",
    "ess_tail": "more tuning and draws (e.g. --tune 2000 --draws 2000)",
    "divergences": "a higher --target-accept (e.g. 0.99)",
    "ebfmi": "fewer or non-centred random effects",
    "treedepth": "more tuning, or fewer random effects",
    "solver_failures": "narrower priors where the ODE cannot be solved, or a larger solver max_steps",
}


def _diagnostics_caution(table: pd.DataFrame) -> str | None:
    """Open the verdict with the fits whose diagnostics are not a clean pass, and what to do."""
    flagged = [n for n in table.index if table.at[n, "diagnostics_status"] != PASS]
    if not flagged:
        return None
    fits = [f"{n} ({table.at[n, 'diagnostics_status']}: "
            f"{'; '.join(table.at[n, 'diagnostics_flagged'].values())})" for n in flagged]
    remedies = list(dict.fromkeys(_REMEDIES[c] for n in flagged for c in table.at[n, "diagnostics_flagged"]
                                  if c in _REMEDIES))
    todo = f"rerun {'it' if len(flagged) == 1 else 'them'} with {' and '.join(remedies) or 'more draws'}"
    return (f"Caution: the sampling diagnostics of {' and '.join(fits)} are not a clean pass, so the "
            f"numbers below are provisional: {todo} before acting on this comparison.")


def write_verdict(table: pd.DataFrame, savage_dickey: Sequence[dict] = (),
                  refits: Mapping[str, Mapping[str, list]] | None = None,
                  exact_lso: Mapping | None = None) -> tuple[str, list[str]]:
    """Write the verdict and the warnings from a comparison table (rows in ranking order).

    Uses the columns ``elpd_loo, elpd_diff, dse, weight, diagnostics_status, diagnostics_flagged,
    diagnostics_problems, diagnostics_cautions,
    n_high_k, n_observations, elpd_lso, elpd_lso_diff, elpd_lso_dse, n_high_k_lso, log_ml,
    log_ml_se, solver_failures``; ``refits`` and ``exact_lso`` as in
    :attr:`~inference.compare.Comparison.refits` and :attr:`~inference.compare.Comparison.exact_lso`.
    """
    sentences, warns = [], []
    for n, done in (refits or {}).items():
        for level, unit in (("loo", "observation"), ("lso", "subject")):
            for r in done.get(level, []):
                if "skipped" in r:
                    warns.append(f"{n}: subject {r['subject']} was not refitted: {r['skipped']}")
                elif "failed" in r:
                    warns.append(f"{n}: the exact refit of {unit} {r.get(unit)} failed ({r['failed']}); "
                                 "its PSIS estimate stands.")
                elif not r["integrand_pareto_k"] <= PARETO_K_THRESHOLD:  # NaN counts as unreliable
                    warns.append(f"{n}: the exact refit of {unit} {r.get(unit)} is a noisy Monte Carlo "
                                 f"estimate (Pareto k {r['integrand_pareto_k']:.2f} over its draws); "
                                 "more draws would firm it up.")
    names = list(table.index)
    caution = _diagnostics_caution(table)
    if caution:
        sentences.append(caution)
    sound = [n for n in names if table.at[n, "diagnostics_status"] != FAIL]
    for n in names:
        if table.at[n, "diagnostics_status"] == FAIL:
            problems = "; ".join(table.at[n, "diagnostics_problems"])
            warns.append(f"{n}: sampling diagnostics failed ({problems}); "
                         "its row is marked and ranked after the sound hypotheses; rerun it with more "
                         "tuning or draws before trusting any number of it.")
        for caution in table.at[n, "diagnostics_cautions"]:
            warns.append(f"{n}: diagnostics warn: {caution}.")
        if table.at[n, "solver_failures"]:
            warns.append(f"{n}: {int(table.at[n, 'solver_failures'])} ODE solves failed during sampling "
                         "(each rejected a proposal).")
        if table.at[n, "n_high_k"]:
            warns.append(f"{n}: {int(table.at[n, 'n_high_k'])} of {int(table.at[n, 'n_observations'])} "
                         "observations have Pareto k above the threshold: their PSIS-LOO estimates are "
                         "unreliable; refit them exactly (--refit-bad-k N) before trusting close calls.")
        if table.at[n, "n_high_k_lso"]:
            off = exact_lso and not exact_lso["on"]
            why = f" (exact refits are off: {exact_lso['reason']})" if off else ""
            warns.append(f"{n}: {int(table.at[n, 'n_high_k_lso'])} subjects have Pareto k above the "
                         f"threshold in leave-subject-out: elpd_lso is a rough estimate for them{why}; "
                         "--exact-lso always refits them exactly (on Dask: --scheduler ADDRESS).")
    if not sound:
        sentences.append("No hypothesis passed the sampling diagnostics, so what follows is provisional: "
                         "rerun the fits with more tuning or draws before relying on it.")
        sound = names
    best = sound[0]
    if len(sound) == 1:
        sentences.append(f"{best} is the only hypothesis whose fit passed the diagnostics.")
    else:
        second = sound[1]
        d, se = table.at[second, "elpd_diff"], table.at[second, "dse"]
        if d < SEPARATION_SE * se:
            tied = [n for n in sound[1:] if table.at[n, "elpd_diff"] < SEPARATION_SE * table.at[n, "dse"]]
            behind = " or ".join(f"{n} ({_fmt(table.at[n, 'elpd_diff'])} ± {_fmt(table.at[n, 'dse'])} "
                                 "elpd behind)" for n in tied)
            sentences.append(f"By PSIS-LOO the data do not separate {best} from {behind}: less than "
                             f"{SEPARATION_SE:g} SE apart, so no winner can be named from these data.")
        else:
            sentences.append(f"By PSIS-LOO, {best} predicts best, ahead of {second} by {_fmt(d)} ± "
                             f"{_fmt(se)} elpd (more than 2 SE).")
        weights = ", ".join(f"{n} {table.at[n, 'weight']:.2f}" for n in names)
        sentences.append(f"Stacking weights: {weights}.")
    if "elpd_lso" in table and np.isfinite(table["elpd_lso"].astype(float)).all() and len(sound) > 1:
        lso_best = max(sound, key=lambda n: table.at[n, "elpd_lso"])
        rough = int(table.loc[sound, "n_high_k_lso"].sum())
        caveat = f" (roughly: {rough} subject estimates have high Pareto k)" if rough else ""
        if exact_lso and exact_lso.get("subjects_refitted"):
            caveat += (f" ({exact_lso['subjects_refitted']} subject estimates with high Pareto k refitted "
                       f"exactly, in {exact_lso['seconds']:.0f} s on {exact_lso['workers']} Dask worker(s))")
        if lso_best == best:
            agree = "agrees"
        else:  # differences are to the LOO best: a negative one favours lso_best
            d, se = -table.at[lso_best, "elpd_lso_diff"], table.at[lso_best, "elpd_lso_dse"]
            agree = (f"does not separate {best} from {lso_best} ({lso_best} ahead by {_fmt(d)} ± {_fmt(se)})"
                     if d < SEPARATION_SE * se else f"prefers {lso_best} by {_fmt(d)} ± {_fmt(se)}")
        sentences.append(f"Leave-one-subject-out (predicting a new subject's whole course) {agree}{caveat}.")
    finite = [n for n in sound if np.isfinite(table.at[n, "log_ml"])]
    if len(finite) > 1:
        by_ev = sorted(finite, key=lambda n: -table.at[n, "log_ml"])
        top, runner = by_ev[0], by_ev[1]
        log_bf = table.at[top, "log_ml"] - table.at[runner, "log_ml"]
        se = math.hypot(table.at[top, "log_ml_se"], table.at[runner, "log_ml_se"])
        if log_bf < SEPARATION_SE * se:
            sentences.append(f"The evidence error is too large to rank {top} and {runner} by Bayes factor "
                             f"(log BF {_fmt(log_bf, 2)} ± {_fmt(se, 2)}).")
            warns.append(f"Evidence error too large to rank {top} and {runner}: log BF {_fmt(log_bf, 2)} "
                         f"± {_fmt(se, 2)}; use more draws (or SMC).")
        else:
            sentences.append(f"By marginal likelihood, {top} is favoured over {runner} with log Bayes factor "
                             f"{_fmt(log_bf, 2)} ± {_fmt(se, 2)}"
                             + ("." if top == best else ", unlike LOO (evidence weighs the priors too)."))
    for n in names:
        if np.isfinite(table.at[n, "log_ml_se"]) and table.at[n, "log_ml_se"] > 0.5:
            warns.append(f"{n}: the log marginal likelihood has a large error "
                         f"(± {_fmt(table.at[n, 'log_ml_se'], 2)}).")
    for sd in savage_dickey:
        line = (f"Savage-Dickey cross-check, {sd['null']} ({sd['parameter']} = {sd['value']:g}) against "
                f"{sd['alternative']}: ")
        if sd["not_computed"]:
            sentences.append(line + f"not computed: {sd['not_computed']}.")
            continue
        line += f"log BF01 {_fmt(sd['log_bf01'], 2)} ± {_fmt(sd['se'], 2)}"
        if sd.get("bridge_log_bf01") is not None:
            line += f" (bridge sampling: {_fmt(sd['bridge_log_bf01'], 2)} ± {_fmt(sd['bridge_se'], 2)})"
            gap = abs(sd["log_bf01"] - sd["bridge_log_bf01"])
            tolerance = 3 * math.hypot(sd["se"] or 0.0, sd["bridge_se"] or 0.0) + 0.1
            if np.isfinite(gap) and gap > tolerance:
                warns.append(f"Savage-Dickey and bridge sampling disagree on {sd['null']} vs "
                             f"{sd['alternative']} by {_fmt(gap, 2)} (more than 3 SE).")
        sentences.append(line + ".")
        if sd["pareto_k"] is None or not sd["pareto_k"] <= PARETO_K_THRESHOLD:
            warns.append(f"The Savage-Dickey weights for {sd['null']} have Pareto k "
                         f"{_fmt(sd['pareto_k'], 2)}: the cross-check is unreliable.")
    return " ".join(sentences), warns


