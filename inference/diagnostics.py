"""Diagnostics: one verdict on a fit, check by check, before anyone trusts a number.

:func:`diagnose` runs the checks a Bayesian workflow asks for (Vehtari et al. 2021, "Rank-normalization,
folding, and localization"; Betancourt 2017, "A conceptual introduction to HMC"; Vehtari et al. 2024,
"Pareto smoothed importance sampling") and returns a :class:`Verdict`: pass / warn / fail per check,
the numbers behind it, and a plain-language line saying what to try when a check does not pass.

Every statistic comes from ArviZ (``az.rhat``, ``az.ess``, ``az.bfmi``, ``az.loo``); this module only
gathers, thresholds and explains them. Sampler statistics are read under both naming schemes,
nutpie's (``depth``, ``maxdepth_reached``) and PyMC's (``tree_depth``, ``reached_max_treedepth``).
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from . import loo as psis
from .record import read_record

__all__ = ["FAIL", "PASS", "STATUSES", "WARN", "Check", "Thresholds", "Verdict", "diagnose",
           "monitored_variables"]

PASS, WARN, FAIL = "pass", "warn", "fail"
STATUSES = (PASS, WARN, FAIL)
_RANK = {PASS: 0, WARN: 1, FAIL: 2}

# Posterior variables that are not read as results: the solver's input matrix (it repeats the
# parameters and holds constant columns for fixed parameters and inputs).
_NOT_MONITORED = ("theta",)


@dataclass(frozen=True)
class Thresholds:
    """Where a check turns from pass to warn and from warn to fail.

    Defaults follow Vehtari et al. (2021) for R-hat and ESS, Betancourt (2017) for E-BFMI and
    ArviZ's PSIS-LOO convention for Pareto k (``good_k = min(1 - 1/log10(S), 0.7)`` for S draws).
    """

    rhat: float = 1.01  # pass at or below
    rhat_fail: float = 1.05  # fail above
    ess: float = 400.0  # pass at or above (bulk and tail, all chains together)
    ess_fail: float = 100.0  # fail below
    divergence_fail_fraction: float = 0.01  # some divergences warn; above this fraction they fail
    ebfmi: float = 0.3  # pass at or above, per chain
    ebfmi_fail: float = 0.2  # fail below
    treedepth_warn_fraction: float = 0.01  # warn when more draws than this hit the maximum depth
    solver_warn_fraction: float = 0.01  # failed solves per sampler iteration above which it warns
    solver_fail_fraction: float = 0.1  # ... and above which it fails
    pareto_k: float = 0.7  # flag (warn) observations above (or above ArviZ's good_k when smaller)

    def __post_init__(self) -> None:
        if not (1.0 < self.rhat <= self.rhat_fail):
            raise ValueError(f"need 1 < rhat <= rhat_fail, got {self.rhat}, {self.rhat_fail}")
        if not (0 < self.ess_fail <= self.ess):
            raise ValueError(f"need 0 < ess_fail <= ess, got {self.ess_fail}, {self.ess}")
        if not (0 < self.ebfmi_fail <= self.ebfmi):
            raise ValueError(f"need 0 < ebfmi_fail <= ebfmi, got {self.ebfmi_fail}, {self.ebfmi}")
        if not 0 < self.pareto_k:
            raise ValueError(f"need pareto_k > 0, got {self.pareto_k}")


@dataclass(frozen=True)
class Check:
    """The outcome of one diagnostic check.

    Attributes
    ----------
    name : str
        Short key: ``rhat``, ``ess_bulk``, ``ess_tail``, ``divergences``, ``ebfmi``, ``treedepth``,
        ``solver_failures`` or ``pareto_k``.
    title : str
        What was checked, for a table row.
    status : str
        ``"pass"``, ``"warn"`` or ``"fail"``.
    value : float or None
        The headline number (max R-hat, min ESS, number of divergences, ...); None when the check
        could not be computed from the data given.
    criterion : str
        The thresholds, e.g. ``"pass <= 1.01, fail > 1.05"``.
    message : str
        The numbers in words, e.g. ``"max R-hat 1.32 at K_C; 3 of 7 quantities above 1.01"``.
    advice : str
        What to try, in plain language; empty when the check passes.
    details : Mapping[str, float]
        Supporting numbers (the worst quantities, per-chain values, flagged observations).
    """

    name: str
    title: str
    status: str
    value: float | None
    criterion: str
    message: str
    advice: str = ""
    details: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def passed(self) -> bool:
        """True when the check passes."""
        return self.status == PASS


@dataclass(frozen=True)
class Verdict:
    """All checks of a fit; the overall status is the worst of them.

    Index by check name (``verdict["rhat"]``) or iterate over the checks.
    """

    checks: tuple[Check, ...]

    @property
    def status(self) -> str:
        """Worst status of all checks: ``"pass"``, ``"warn"`` or ``"fail"``."""
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default=PASS)

    @property
    def passed(self) -> bool:
        """True when every check passes."""
        return self.status == PASS

    @property
    def failed(self) -> tuple[Check, ...]:
        """The checks that did not pass (warn or fail), worst first."""
        return tuple(sorted((c for c in self.checks if c.status != PASS),
                            key=lambda c: -_RANK[c.status]))

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check {name!r}; checks: {[c.name for c in self.checks]}")

    def __iter__(self) -> Iterator[Check]:
        return iter(self.checks)

    def __len__(self) -> int:
        return len(self.checks)

    def to_frame(self) -> pd.DataFrame:
        """One row per check: name, title, status, value, criterion, message, advice."""
        return pd.DataFrame(
            [{"name": c.name, "title": c.title, "status": c.status, "value": c.value,
              "criterion": c.criterion, "message": c.message, "advice": c.advice}
             for c in self.checks]
        )

    def __str__(self) -> str:
        lines = [f"diagnostics: {self.status.upper()}"]
        for c in self.checks:
            lines.append(f"  [{c.status:4s}] {c.title}: {c.message}")
            if c.advice:
                lines.append(f"         try: {c.advice}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colours = {PASS: "#1a7f37", WARN: "#b26b00", FAIL: "#c62828"}
        rows = "".join(
            f"<tr><td style='text-align:left'>{html.escape(c.title)}</td>"
            f"<td style='color:{colours[c.status]};font-weight:600'>{c.status.upper()}</td>"
            f"<td style='text-align:left'>{html.escape(c.message)}</td>"
            f"<td style='text-align:left'>{html.escape(c.advice)}</td></tr>"
            for c in self.checks
        )
        return (f"<p><b>Diagnostics: <span style='color:{colours[self.status]}'>"
                f"{self.status.upper()}</span></b></p><table><tr><th>check</th><th>status</th>"
                f"<th>result</th><th>what to try</th></tr>{rows}</table>")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def monitored_variables(posterior: xr.Dataset) -> list[str]:
    """Posterior variables the convergence checks look at.

    Everything the user reads (parameters, hierarchical locations, scales and standardised effects,
    measurement sds), without the sampler's unconstrained copies (``*__``, written by nutpie) and
    ``theta`` (it repeats the parameters and has constant columns); a variable that never changes
    (a constant deterministic) is left out as well.
    """
    names = []
    for name, var in posterior.data_vars.items():
        if name.endswith("__") or name in _NOT_MONITORED:
            continue
        values = np.asarray(var.values, dtype=float)
        if values.size and np.all(np.isfinite(values)) and np.ptp(values) == 0:
            continue
        names.append(str(name))
    return names


def _labelled(ds: xr.Dataset) -> dict[str, float]:
    """Flatten a Dataset of per-element statistics to ``{"name[coord]": value}``."""
    out: dict[str, float] = {}
    for name, var in ds.data_vars.items():
        if var.ndim == 0:
            out[str(name)] = float(var.values)
            continue
        stacked = var.stack(_element=var.dims)
        for index, value in zip(stacked["_element"].values, stacked.values, strict=True):
            index = index if isinstance(index, tuple) else (index,)
            out[f"{name}[{', '.join(str(i) for i in index)}]"] = float(value)
    return out


def _statistic(function, posterior: xr.Dataset, names: list[str], **kwargs) -> dict[str, float]:
    # Constant elements (a stuck chain of a single draw, a parameter pinned at a bound) make
    # ArviZ divide 0 by 0; their NaN is reported as such, not as a numpy warning.
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _labelled(function(posterior[names], **kwargs))


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"


def _worst(values: Mapping[str, float], *, largest: bool, n: int = 5) -> dict[str, float]:
    # NaN (a quantity whose chains do not move at all) counts as the worst possible value.
    def key(item):
        v = item[1]
        if not math.isfinite(v):
            return -math.inf
        return -v if largest else v
    return dict(sorted(values.items(), key=key)[:n])


def _stat(sample_stats: xr.Dataset | None, *names: str) -> xr.DataArray | None:
    if sample_stats is None:
        return None
    for name in names:
        if name in sample_stats:
            return sample_stats[name]
    return None


def _unavailable(name: str, title: str, criterion: str, what: str) -> Check:
    return Check(name, title, WARN, None, criterion, f"not checked: {what}",
                 f"This could not be checked because {what}; results written by inference.fit.fit "
                 f"carry sampler statistics, the log-likelihood and the solver failure count.")


def _n_draws(posterior: xr.Dataset) -> tuple[int, int]:
    return int(posterior.sizes.get("chain", 1)), int(posterior.sizes.get("draw", 0))


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------
def _check_rhat(posterior, names, t: Thresholds) -> Check:
    title = "Max R-hat (rank-normalised split R-hat)"
    criterion = f"pass <= {t.rhat}, fail > {t.rhat_fail}"
    chains, _ = _n_draws(posterior)
    if chains < 2:
        return Check("rhat", title, WARN, None, criterion,
                     "not checked: R-hat compares chains and this result has one",
                     "Run at least 4 chains: only between-chain disagreement reveals an unexplored "
                     "posterior.")
    values = _statistic(az.rhat, posterior, names, method="rank")
    finite = [v for v in values.values() if math.isfinite(v)]
    worst = _worst(values, largest=True)
    top_name, top = next(iter(worst.items()))
    n_bad = sum(1 for v in values.values() if not (math.isfinite(v) and v <= t.rhat))
    value = top if math.isfinite(top) else math.inf
    message = (f"max R-hat {_fmt(value, 4)} at {top_name}; {n_bad} of {len(values)} quantities "
               f"above {t.rhat} ({chains} chains)")
    if not finite:
        message = f"R-hat undefined for every quantity ({chains} chains; no chain moves)"
    status = PASS if value <= t.rhat else WARN if value <= t.rhat_fail else FAIL
    advice = ""
    if status != PASS:
        advice = ("The chains disagree, so the posterior is not yet explored: run longer (more tune "
                  "and draws), compare the chains in the rank plots, and if one chain sits apart "
                  "look for a second mode or an unidentified pair (r against K_C): fix one of the "
                  "pair or give it an informative prior.")
    return Check("rhat", title, status, value, criterion, message, advice, worst)


def _check_ess(posterior, names, t: Thresholds, method: str) -> Check:
    title = f"Min {method} ESS (all chains together)"
    criterion = f"pass >= {t.ess:g}, fail < {t.ess_fail:g}"
    chains, draws = _n_draws(posterior)
    values = _statistic(az.ess, posterior, names, method=method)
    worst = _worst(values, largest=False)
    top_name, top = next(iter(worst.items()))
    value = top if math.isfinite(top) else 0.0
    n_bad = sum(1 for v in values.values() if not (math.isfinite(v) and v >= t.ess))
    message = (f"min {method} ESS {value:.0f} at {top_name} from {chains * draws} draws "
               f"({chains} x {draws}); {n_bad} of {len(values)} quantities below {t.ess:g}")
    status = PASS if value >= t.ess else WARN if value >= t.ess_fail else FAIL
    advice = ""
    if status != PASS:
        what = "means and sds" if method == "bulk" else "the 5% and 95% quantiles (the interval ends)"
        if chains * draws < t.ess:
            advice = (f"Too few draws to estimate {what}: {chains * draws} draws cannot give an ESS of "
                      f"{t.ess:g}; draw more (e.g. 4 chains x 1000).")
        else:
            advice = (f"The draws are strongly autocorrelated, so {what} are uncertain: run more "
                      f"draws, and if ESS stays low per draw, reparameterise or tighten priors of the "
                      f"worst quantities (listed) - slow mixing usually means a ridge between parameters.")
    return Check(f"ess_{method}", title, status, value, criterion, message, advice, worst)


def _check_divergences(sample_stats, t: Thresholds) -> Check:
    title = "Divergent transitions"
    criterion = f"pass = 0, fail > {t.divergence_fail_fraction:.0%} of draws"
    diverging = _stat(sample_stats, "diverging")
    if diverging is None:
        return _unavailable("divergences", title, criterion, "no sample_stats.diverging")
    per_chain = diverging.sum("draw").values.astype(int)
    n, total = int(per_chain.sum()), int(diverging.size)
    fraction = n / total if total else 0.0
    status = PASS if n == 0 else WARN if fraction <= t.divergence_fail_fraction else FAIL
    message = (f"{n} of {total} draws divergent ({fraction:.2%}); per chain "
               f"{', '.join(str(k) for k in per_chain)}")
    advice = ""
    if status != PASS:
        advice = ("The sampler met curvature it could not follow, so the posterior may be biased: "
                  "raise target_accept (0.95, then 0.99), use non-centred random effects, give "
                  "weakly identified parameters tighter priors, and check that the solver tolerances "
                  "are tight enough (a noisy ODE solution also causes divergences).")
    return Check("divergences", title, status, float(n), criterion, message, advice,
                 {f"chain {c}": float(k) for c, k in enumerate(per_chain)})


def _check_ebfmi(idata, sample_stats, t: Thresholds) -> Check:
    title = "E-BFMI per chain"
    criterion = f"pass >= {t.ebfmi}, fail < {t.ebfmi_fail}"
    if _stat(sample_stats, "energy") is None:
        return _unavailable("ebfmi", title, criterion, "no sample_stats.energy")
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.asarray(az.bfmi(idata), dtype=float)
    lowest = float(np.nanmin(values)) if np.any(np.isfinite(values)) else float("nan")
    value = lowest if math.isfinite(lowest) else 0.0
    status = PASS if value >= t.ebfmi else WARN if value >= t.ebfmi_fail else FAIL
    message = f"lowest E-BFMI {value:.2f}; per chain {', '.join(f'{v:.2f}' for v in values)}"
    advice = ""
    if status != PASS:
        advice = ("Momentum resampling explores the energy poorly (heavy tails or a funnel): "
                  "reparameterise hierarchical scales (non-centred), put tighter priors on "
                  "between-subject sds, and run longer warm-up.")
    return Check("ebfmi", title, status, value, criterion, message, advice,
                 {f"chain {c}": float(v) for c, v in enumerate(values)})


def _check_treedepth(sample_stats, t: Thresholds) -> Check:
    title = "Tree-depth saturation"
    criterion = f"pass <= {t.treedepth_warn_fraction:.0%} of draws at the maximum depth"
    reached = _stat(sample_stats, "maxdepth_reached", "reached_max_treedepth")
    if reached is None:
        return _unavailable("treedepth", title, criterion,
                            "no sample_stats.maxdepth_reached / reached_max_treedepth")
    n, total = int(reached.values.sum()), int(reached.size)
    fraction = n / total if total else 0.0
    depth = _stat(sample_stats, "depth", "tree_depth")
    deepest = f"; deepest tree {int(depth.max())}" if depth is not None else ""
    status = PASS if fraction <= t.treedepth_warn_fraction else WARN
    message = f"{n} of {total} draws hit the maximum tree depth ({fraction:.1%}){deepest}"
    advice = ""
    if status != PASS:
        advice = ("Trajectories were cut short, so sampling is slow and may under-explore a long "
                  "ridge (typically r against K_C, or production against clearance): fix or tighten "
                  "one parameter of the ridge, rescale parameters, or raise the maximum depth.")
    return Check("treedepth", title, status, float(n), criterion, message, advice)


def _check_solver(idata, t: Thresholds) -> Check:
    title = "ODE solver failures"
    criterion = (f"pass <= {t.solver_warn_fraction:g}, fail > {t.solver_fail_fraction:g} failed solves "
                 "per sampler iteration")
    record = read_record(idata)
    if record.solver_failures is None:
        return _unavailable("solver_failures", title, criterion, "the result does not record them")
    n = record.solver_failures
    chains, draws = _n_draws(idata.posterior)
    iterations = chains * (draws + (record.sampler.tune if record.sampler else 0))
    rate = n / iterations if iterations else 0.0
    # A few rejected proposals, typically at wild early warm-up values, are harmless; many mean the
    # sampler keeps running into parameter regions the solver cannot handle.
    status = PASS if rate <= t.solver_warn_fraction else WARN if rate <= t.solver_fail_fraction else FAIL
    message = (f"{n} failed solve{'' if n == 1 else 's'} during sampling (warm-up included; "
               f"{rate:.2g} per iteration); "
               + (f"solver {s.method}, rtol {s.rtol}, max_steps {s.max_steps}" if (s := record.solver)
                  else "solver ?, rtol ?, max_steps ?"))
    advice = ""
    if status != PASS:
        advice = ("Some proposals reached parameter values where the ODE could not be solved (each "
                  "was rejected): try a stiff solver (--method rodas5), raise --max-steps, and check "
                  "that the priors do not allow implausibly fast rates.")
    return Check("solver_failures", title, status, float(n), criterion, message, advice)


def _check_pareto_k(idata, t: Thresholds) -> Check:
    title = "PSIS-LOO Pareto k"
    if "log_likelihood" not in idata.groups():
        criterion = f"pass: every k <= {t.pareto_k}; warn otherwise"
        return _unavailable("pareto_k", title, criterion, "no log_likelihood group")
    # The same fact ArviZ warns about is what this check reports.
    loo = psis.loo(idata, var_name=None)
    k = np.asarray(loo.pareto_k.values, dtype=float).ravel()
    good = min(t.pareto_k, float(getattr(loo, "good_k", t.pareto_k)))
    # A high k makes leave-one-out unreliable for that observation and marks it as influential;
    # it does not by itself invalidate the posterior, so it flags (warns) and never fails.
    criterion = f"pass: every k <= {good:.2f} (warn otherwise)"
    flagged = np.flatnonzero(~(k <= good))
    value = float(np.nanmax(k)) if np.any(np.isfinite(k)) else math.inf
    status = PASS if flagged.size == 0 else WARN
    very_bad = int(np.sum(~(k <= 1.0)))
    message = (f"max k {value:.2f}; {flagged.size} of {k.size} observations above {good:.2f}"
               + (f" ({very_bad} above 1, where PSIS fails)" if very_bad else "")
               + f"; elpd_loo {float(loo.elpd_loo):.1f} (SE {float(loo.se):.1f}), "
               f"p_loo {float(loo.p_loo):.1f}")
    details = {f"obs {int(i)}": float(k[i]) for i in flagged[np.argsort(-k[flagged])][:10]}
    advice = ""
    if status != PASS:
        advice = ("These observations (listed) dominate the fit of their subject, so leave-one-out "
                  "estimates for them are unreliable: look at them in the predictive plots (outliers, "
                  "a wrong unit, a misfit peak), consider the Student-t likelihood, and compare models "
                  "with K-fold cross-validation rather than LOO if many are flagged.")
    return Check("pareto_k", title, status, value, criterion, message, advice, details)


def diagnose(
    idata: az.InferenceData,
    *,
    var_names: list[str] | None = None,
    thresholds: Thresholds | None = None,
) -> Verdict:
    """Judge a fit: convergence, sampler health, ODE solver and PSIS-LOO reliability.

    Parameters
    ----------
    idata
        A fit result (:func:`inference.fit.fit` or :func:`inference.fit.load_result`); at least a
        posterior group. Checks whose inputs are missing (sample_stats, log_likelihood, the
        recorded solver failures) warn that they could not be made.
    var_names
        Posterior variables for R-hat and ESS; default :func:`monitored_variables`.
    thresholds
        Pass / warn / fail limits (:class:`Thresholds`).

    Returns
    -------
    Verdict
        Checks in order: ``rhat``, ``ess_bulk``, ``ess_tail``, ``divergences``, ``ebfmi``,
        ``treedepth``, ``solver_failures``, ``pareto_k``.

    Raises
    ------
    ValueError
        No posterior group, or no variable to check.
    """
    t = thresholds or Thresholds()
    if "posterior" not in idata.groups():
        raise ValueError("diagnose needs an InferenceData with a posterior group")
    posterior = idata.posterior
    names = list(var_names) if var_names is not None else monitored_variables(posterior)
    unknown = sorted(set(names) - set(posterior.data_vars))
    if unknown:
        raise ValueError(f"var_names {unknown} are not posterior variables; "
                         f"have {sorted(posterior.data_vars)}")
    if not names:
        raise ValueError("no posterior variable to check (every variable is constant)")
    sample_stats = idata.sample_stats if "sample_stats" in idata.groups() else None
    return Verdict((
        _check_rhat(posterior, names, t),
        _check_ess(posterior, names, t, "bulk"),
        _check_ess(posterior, names, t, "tail"),
        _check_divergences(sample_stats, t),
        _check_ebfmi(idata, sample_stats, t),
        _check_treedepth(sample_stats, t),
        _check_solver(idata, t),
        _check_pareto_k(idata, t),
    ))
