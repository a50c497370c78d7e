"""What a report says, as plain data: the quantities of a fit, their summaries and the GC-resistance contrast.

Nothing here draws or renders; :mod:`.figures` draws and :mod:`.document` renders. Every name is
the model's own (``k_T``, ``r``, ``K_C``); hierarchical parameters appear as their typical value
(``NAME_typical``), between-subject sd (``NAME_sd``, link scale), group effects (``NAME_group``,
link scale, against the first group) and covariate effects (``NAME_beta``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import xarray as xr

from models import OdeModel
from models.spec import Ridge

from ..build import SIGMA_PRIOR_DEFAULT, SIGMA_PRIOR_SCALE, ModelOptions
from ..data import Dataset
from ..diagnostics import FAIL, PASS, WARN, Thresholds
from ..priors import LINKS, prior_kind
from ..structure import BETWEEN_SUBJECT_SD

#: The model parameter read as glucocorticoid resistance (fraction of cortisol suppression lost).
INTERVAL = 0.9  # central posterior interval reported in tables and forest plots


@dataclass(frozen=True)
class Quantity:
    """One scalar quantity of the posterior, with what a reader needs to interpret it.

    ``link`` is the scale on which the quantity is unbounded (``log`` for positive quantities,
    ``logit`` for fractions, ``identity`` for effects); pair plots and the prior-to-posterior
    learning ratio use it.
    """

    var: str
    sel: dict = field(default_factory=dict)
    label: str = ""
    unit: str = ""
    meaning: str = ""
    link: str = "identity"
    prior: str = ""

    @property
    def short(self) -> str:
        """The posterior variable and element, e.g. ``r_group[chronic_stress]`` or ``sigma[TNF]``."""
        return self.var + "".join(f"[{v}]" for v in self.sel.values())

    def values(self, group: xr.Dataset) -> np.ndarray:
        """Draws of this quantity from a posterior- or prior-like group, flattened."""
        return np.asarray(group[self.var].sel(self.sel).values, dtype=float).ravel()

    def on_link_scale(self, values: np.ndarray) -> np.ndarray:
        """Map draws to the unbounded scale (log, logit or identity)."""
        return LINKS[self.link].forward(values)


def structured(options: ModelOptions) -> set[str]:
    """Parameters with per-subject values (random, group or covariate effects)."""
    return set(options.random_effects) | set(options.group_effects) | set(options.covariates)


def population_quantities(idata: az.InferenceData, model: OdeModel, options: ModelOptions,
                          dataset: Dataset) -> list[Quantity]:
    """List the population-level quantities of a fit, in model order, then the measurement sds."""
    post = idata.posterior
    groups = list(dataset.groups)
    per_subject = structured(options)
    out: list[Quantity] = []
    for p in model.parameters:
        if p.name in options.fixed:
            continue
        prior = options.priors.get(p.name, p.prior)
        link = prior_kind(prior).link_of(prior)
        if p.name not in per_subject:
            out.append(Quantity(p.name, {}, p.name, p.unit, p.description, link, prior.describe()))
            continue
        scale = f"{link} scale" if link != "identity" else p.unit
        out.append(Quantity(f"{p.name}_typical", {}, f"{p.name} (typical)", p.unit,
                            f"{p.description}: typical subject", link, prior.describe()))
        if f"{p.name}_sd" in post:
            out.append(Quantity(f"{p.name}_sd", {}, f"{p.name} between-subject sd", scale,
                                f"sd of {link}({p.name}) between subjects", "log",
                                f"HalfNormal(sigma={BETWEEN_SUBJECT_SD:g})"))
        if f"{p.name}_group" in post:
            for g in post[f"{p.name}_group"]["group_effect"].values:
                out.append(Quantity(f"{p.name}_group", {"group_effect": g}, f"{p.name} effect of {g}",
                                    scale, f"shift of {link}({p.name}) in {g} against {groups[0]}",
                                    "identity", "Normal(mu=0, sigma=1)"))
        if f"{p.name}_beta" in post:
            var = post[f"{p.name}_beta"]
            dim = [d for d in var.dims if d not in ("chain", "draw")][0]
            for c in var[dim].values:
                out.append(Quantity(f"{p.name}_beta", {dim: c}, f"{p.name} per sd of {c}", scale,
                                    f"shift of {link}({p.name}) per sd of {c}", "identity",
                                    "Normal(mu=0, sigma=1)"))
    if "sigma" in post:
        for a in post["sigma"]["analyte"].values:
            out.append(Quantity("sigma", {"analyte": a}, f"sigma {a}", "log scale",
                                f"measurement sd of log {a}", "log",
                                f"HalfNormal(sigma={SIGMA_PRIOR_SCALE.get(str(a), SIGMA_PRIOR_DEFAULT):g})"))
    return out


def row_status(rhat: float, ess_bulk: float, ess_tail: float = math.inf,
               thresholds: Thresholds | None = None) -> str:
    """``pass``, ``warn`` or ``fail`` for one quantity, by the verdict's R-hat and ESS limits."""
    t = thresholds or Thresholds()
    ess = min(ess_bulk, ess_tail)
    if not (math.isfinite(rhat) and math.isfinite(ess)) or rhat > t.rhat_fail or ess < t.ess_fail:
        return FAIL
    return WARN if rhat > t.rhat or ess < t.ess else PASS


def _diagnostic(function, posterior: xr.Dataset, var: str, **kwargs) -> xr.DataArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return function(posterior[[var]], **kwargs)[var]


def summary_rows(posterior: xr.Dataset, quantities: list[Quantity], prior: xr.Dataset | None = None,
                 interval: float = INTERVAL) -> list[dict]:
    """One row per quantity: mean, sd, equal-tailed interval, R-hat, bulk and tail ESS, learning.

    ``learning`` is posterior sd / prior sd on the link scale (small: the data taught a lot; near 1:
    the posterior is the prior). Diagnostics are ArviZ's (``az.rhat`` rank-normalised, ``az.ess``).
    """
    lo_q, hi_q = (1 - interval) / 2, (1 + interval) / 2
    cache: dict[str, tuple] = {}
    rows = []
    for q in quantities:
        if q.var not in cache:
            cache[q.var] = (_diagnostic(az.rhat, posterior, q.var, method="rank"),
                            _diagnostic(az.ess, posterior, q.var, method="bulk"),
                            _diagnostic(az.ess, posterior, q.var, method="tail"))
        rhat, ess_bulk, ess_tail = (float(d.sel(q.sel)) for d in cache[q.var])
        x = q.values(posterior)
        learning = math.nan
        if prior is not None and q.var in prior:
            p_sd = np.nanstd(q.on_link_scale(q.values(prior)))
            s_sd = np.nanstd(q.on_link_scale(x))
            learning = float(s_sd / p_sd) if p_sd > 0 else math.nan
        rows.append({
            "label": q.label, "unit": q.unit, "meaning": q.meaning, "prior": q.prior,
            "mean": float(np.mean(x)), "sd": float(np.std(x)),
            "low": float(np.quantile(x, lo_q)), "high": float(np.quantile(x, hi_q)),
            "rhat": rhat, "ess_bulk": ess_bulk, "ess_tail": ess_tail, "learning": learning,
            "status": row_status(rhat, ess_bulk, ess_tail),
        })
    return rows


def subject_rows(posterior: xr.Dataset, name: str, dataset: Dataset,
                 interval: float = INTERVAL) -> list[dict]:
    """Per-subject summary of a parameter with dims ``subject``."""
    lo_q, hi_q = (1 - interval) / 2, (1 + interval) / 2
    var = posterior[name]
    rhat = _diagnostic(az.rhat, posterior, name, method="rank")
    ess = _diagnostic(az.ess, posterior, name, method="bulk")
    rows = []
    for s in dataset.subject_ids:
        x = np.asarray(var.sel(subject=s).values, dtype=float).ravel()
        rows.append({
            "subject": s, "group": str(dataset.subjects.loc[s, "group"]),
            "mean": float(np.mean(x)), "sd": float(np.std(x)),
            "low": float(np.quantile(x, lo_q)), "median": float(np.median(x)),
            "high": float(np.quantile(x, hi_q)),
            "rhat": float(rhat.sel(subject=s)), "ess_bulk": float(ess.sel(subject=s)),
            "status": row_status(float(rhat.sel(subject=s)), float(ess.sel(subject=s))),
        })
    return rows


def correlated_quantities(posterior: xr.Dataset, quantities: list[Quantity], n: int = 4,
                          ridges: Sequence[Ridge] = ()) -> tuple[list[Quantity], np.ndarray]:
    """Up to ``n`` quantities taking part in the strongest posterior correlations (link scale).

    The members of each known ridge (the model's ``ridges``, e.g. r and K_C, as shared or typical
    values) are always included when all are estimated; the rest are filled by absolute correlation.
    Returns the chosen quantities and their correlation matrix.
    """
    usable = [q for q in quantities if np.ptp(q.values(posterior)) > 0]
    if len(usable) < 2:
        return usable, np.eye(len(usable))
    X = np.column_stack([q.on_link_scale(q.values(posterior)) for q in usable])
    with np.errstate(invalid="ignore"):
        corr = np.corrcoef(X, rowvar=False)
    corr = np.nan_to_num(corr)
    pairs = sorted(((abs(corr[i, j]), i, j) for i in range(len(usable)) for j in range(i + 1, len(usable))),
                   reverse=True)
    index = {q.var: k for k, q in enumerate(usable) if not q.sel}
    chosen: list[int] = []
    for ridge in ridges:
        found = [index.get(name, index.get(f"{name}_typical")) for name in ridge.parameters]
        if None not in found and len(chosen) + len(found) <= n:
            chosen += [k for k in found if k not in chosen]
    for _, i, j in pairs:
        for k in (i, j):
            if k not in chosen and len(chosen) < n:
                chosen.append(k)
        if len(chosen) >= n:
            break
    chosen.sort()
    return [usable[k] for k in chosen], corr[np.ix_(chosen, chosen)]


@dataclass(frozen=True)
class GroupContrast:
    """The GC-resistance parameter compared between groups.

    ``typical`` holds draws of each group's typical r (the group-level location mapped back through
    the logit link), when ``r`` has a group effect; ``probabilities`` maps a sentence such as
    ``"chronic_stress more resistant than control"`` to its posterior probability.
    """

    reference: str
    typical: dict[str, np.ndarray]
    subject_means: dict[str, np.ndarray]
    probabilities: dict[str, float]
    basis: str


def resistance_contrast(posterior: xr.Dataset, dataset: Dataset, options: ModelOptions,
                        name: str = "r") -> GroupContrast | None:
    """Posterior probability that each group is more GC-resistant than the reference group.

    The reference is ``control`` when such a group exists, else the first group. With a group
    effect on ``r`` the comparison is between the groups' typical values (a population statement);
    without one it is between the groups' mean per-subject r (a statement about these subjects).
    Returns None when ``r`` does not vary by subject or there is only one group.
    """
    groups = list(dataset.groups)
    if name not in posterior or "subject" not in posterior[name].dims or len(groups) < 2:
        return None
    reference = "control" if "control" in groups else groups[0]
    r = posterior[name].stack(sample=("chain", "draw")).transpose("subject", "sample").values
    member = dataset.subjects["group"].to_numpy(str)
    subject_means = {g: r[member == g].mean(axis=0) for g in groups}
    typical: dict[str, np.ndarray] = {}
    if f"{name}_group" in posterior and f"{name}_mu" in posterior:
        mu = posterior[f"{name}_mu"].stack(sample=("chain", "draw")).values
        effect = posterior[f"{name}_group"].stack(sample=("chain", "draw"))
        for g in groups:
            shift = effect.sel(group_effect=g).values if g in effect["group_effect"].values else 0.0
            typical[g] = 1.0 / (1.0 + np.exp(-(mu + shift)))
        draws, basis = typical, "typical r of each group (group effect on logit r)"
    else:
        draws, basis = subject_means, "mean r of the subjects in each group (no group effect in the model)"
    probabilities = {f"{g} more resistant than {reference}": float(np.mean(draws[g] > draws[reference]))
                     for g in groups if g != reference}
    return GroupContrast(reference, typical, subject_means, probabilities, basis)


def parameter_roles(model: OdeModel, options: ModelOptions) -> dict[str, str]:
    """How each parameter enters the fit: fixed value, shared, or its per-subject structure."""
    roles = {}
    for p in model.parameters:
        if p.name in options.fixed:
            roles[p.name] = f"fixed at {options.fixed[p.name]:g}"
            continue
        parts = []
        if p.name in options.random_effects:
            parts.append("random effect")
        if p.name in options.group_effects:
            parts.append("group effect")
        if p.name in options.covariates:
            parts.append("covariates " + ", ".join(options.covariates[p.name]))
        roles[p.name] = " + ".join(parts) if parts else "shared by all subjects"
    return roles

