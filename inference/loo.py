"""PSIS leave-one-out helpers shared by diagnostics, reports and the comparison (ArviZ underneath).

ArviZ computes every estimate (``az.loo``, ``az.psislw``); this module holds what the package adds
around it: the one warning filter for what the package reports itself, the pointwise
log-likelihood summed per subject (leave-one-subject-out), the Pareto k threshold, the exact
values of refits put in place of PSIS estimates (the formulas of ``az.reloo``) and the elpd
difference of two fits with its SE.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping

import arviz as az
import numpy as np
import xarray as xr

__all__ = ["PARETO_K_THRESHOLD", "difference", "flagged", "integrand_pareto_k", "loo", "per_subject",
           "quiet_psis", "replace_pointwise", "threshold"]

#: Pareto k above which PSIS estimates are not trusted (ArviZ lowers it for few draws).
PARETO_K_THRESHOLD = 0.7


@contextlib.contextmanager
def quiet_psis() -> Iterator[None]:
    """Silence what ArviZ's PSIS says that the package reports itself.

    ArviZ warns about high Pareto k (reported, and refitted on request, by the callers), and its
    generalised Pareto fit lets numpy overflow or divide by zero on degenerate tails
    (subject-summed log-likelihoods spanning hundreds of nats, or a censored sample whose
    likelihood is 1 in nearly every draw); the k it returns then is large or not finite, and is
    reported as such.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*[Pp]areto.*", category=UserWarning)
        warnings.filterwarnings("ignore", message="The point-wise LOO is the same", category=UserWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"arviz\.stats\.stats")
        yield


def loo(idata: az.InferenceData, var_name: str | None = "log_y") -> az.ELPDData:
    """Return ``az.loo`` (pointwise) of the fit's log-likelihood, its PSIS warnings silenced."""
    with quiet_psis():
        return az.loo(idata, pointwise=True, var_name=var_name)


def per_subject(idata: az.InferenceData) -> az.InferenceData:
    """Sum the log-likelihood per subject (chain, draw, subject), for leave-subject-out."""
    subjects = [str(s) for s in idata.constant_data["subject_group"].coords["subject"].values]
    index = np.asarray(idata.constant_data["obs_subject"].values, dtype=int)
    ll = idata.log_likelihood["log_y"]
    summed = np.stack([ll.values[..., index == i].sum(axis=-1) for i in range(len(subjects))], axis=-1)
    da = xr.DataArray(summed, dims=("chain", "draw", "subject"),
                      coords={"chain": ll.chain, "draw": ll.draw, "subject": subjects})
    return az.InferenceData(posterior=idata.posterior, log_likelihood=xr.Dataset({"log_y": da}))


def threshold(elpd: az.ELPDData) -> float:
    """Return the Pareto k threshold of an estimate (ArviZ's ``good_k`` if lower)."""
    good_k = getattr(elpd, "good_k", None)
    return min(PARETO_K_THRESHOLD, float(good_k)) if good_k is not None else PARETO_K_THRESHOLD


def flagged(elpd: az.ELPDData, n: int) -> list[int]:
    """Return the (at most n) units whose Pareto k is above the threshold, worst first."""
    k = np.asarray(elpd.pareto_k.values, float)
    return [int(i) for i in np.argsort(-k) if k[i] > threshold(elpd)][:n]


def replace_pointwise(elpd: az.ELPDData, refitted: Mapping[int, float]) -> az.ELPDData:
    """Put exact leave-out values in place of PSIS estimates (the formulas of ``az.reloo``)."""
    if not refitted:
        return elpd
    new = elpd.copy()
    lppd = elpd.p_loo + elpd.elpd_loo
    loo_i = new.loo_i.copy()
    khat = new.pareto_k.copy()
    for i, value in refitted.items():
        loo_i[i] = value
        khat[i] = 0.0
    new["loo_i"] = loo_i
    new["pareto_k"] = khat
    new["elpd_loo"] = float(loo_i.values.sum())
    new["se"] = float((elpd.n_data_points * np.var(loo_i.values)) ** 0.5)
    new["p_loo"] = float(lppd - new["elpd_loo"])
    new["warning"] = bool(np.any(khat.values > threshold(elpd)))
    return new


def difference(a: az.ELPDData, b: az.ELPDData) -> tuple[float, float]:
    """elpd(a) - elpd(b) and its SE from the pointwise values (ArviZ's dse formula)."""
    diff = np.asarray(a.loo_i.values, float) - np.asarray(b.loo_i.values, float)
    return float(diff.sum()), float(math.sqrt(len(diff) * np.var(diff)))


def integrand_pareto_k(log_values: np.ndarray) -> float:
    """Pareto k of a Monte Carlo mean of exp(log_values): above 0.7 a few draws dominate it."""
    finite = log_values[np.isfinite(log_values)]
    if finite.size < 10 or np.ptp(finite) == 0:
        return float("nan") if finite.size < 10 else 0.0
    with quiet_psis():
        _, k = az.psislw(finite.copy())
    return float(k)
