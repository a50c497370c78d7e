"""The flip-flop pair, sampled in coordinates where its swap is a reflection.

A model's :class:`~models.spec.FlipFlop` pair (``k_L`` and ``d_M`` in the library) is known only as
an unordered pair: swapping the two rates and scaling the gains by k_1 / k_2 changes no
observable. In the parameters' own coordinates the posterior has two arms, one per ordering, that
meet only where k_1 = k_2, and NUTS chains rarely cross from one to the other (README, Scaling:
32 subjects gave R-hat 1.17). A fit therefore samples one vector ``flip_flop`` of log-scale
coordinates::

    a = (log k_1 + log k_2) / 2,   b = (log k_1 - log k_2) / 2,   h_g = log g + log k_1  (each gain g)

in which the swap is b -> -b with every other coordinate unchanged. Its prior is the model's
prior made symmetric in b, ``p(a, b, h) = p_v(v(a, b, h)) + p_v(v(a, -b, h))``, where ``p_v`` is
the declared prior of the log parameters ``v = (a + b, a - b, h - a - b)`` (the factor 1/2 of the
mixture and the Jacobian 2 cancel). It is a proper density with the same marginal likelihood, and
as the likelihood is even in b, so is the posterior: a chain samples it correctly from either
half. :func:`resolve` then gives each draw its ordering from the exact conditional
``P(sign | a, |b|, h) ∝ p_v(v(a, ±|b|, h))`` (the likelihood is the same for both, to the
solver's tolerance), so the stored draws of the rates and gains follow the posterior of the
declared model. Bridge sampling evaluates that model's density at the ordering as drawn
(:class:`~inference.evidence.LogDensity`).

The fold applies when both rates and every gain are free, the rates are shared by all subjects,
and every prior is normal on the log scale: a ``LogNormal`` for a shared parameter, and any
log-link prior for a gain with subject effects (its population location is normal on that scale,
:class:`~inference.structure.ParameterStructure`). Otherwise the parameters are sampled as declared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy.special import expit

from models import LogNormal
from models.spec import FlipFlop

from .priors import unconstrained

if TYPE_CHECKING:
    from .structure import ParameterStructure

__all__ = ["FOLD_DIM", "FOLD_VARIABLE", "Fold", "resolve"]

#: Name of the sampled vector (a, b, h_1, ...) and of its dimension.
FOLD_VARIABLE = "flip_flop"
FOLD_DIM = "flip_flop_coordinate"


def _coordinates(v, concatenate):
    """Log parameters (k_1, k_2, gains; last axis) -> fold coordinates (a, b, h)."""
    a, b = (v[..., :1] + v[..., 1:2]) / 2, (v[..., :1] - v[..., 1:2]) / 2
    return concatenate([a, b, v[..., 2:] + v[..., :1]], axis=-1)


def _log_parameters(u, sign):
    """Fold coordinates -> log parameters under one ordering (sign of b: +1 as sampled, -1 swapped)."""
    a, b = u[..., :1], sign * u[..., 1:2]
    return pt.concatenate([a + b, a - b, u[..., 2:] - a - b], axis=-1)


def _labelled_logp(u, sign, mean, sd):
    """Return the declared prior's log density (log parameters) at ``u`` under one ordering."""
    z = (_log_parameters(u, sign) - mean) / sd
    return pt.sum(-0.5 * z**2 - pt.log(sd) - 0.5 * np.log(2 * np.pi), axis=-1)


def _logp(u, mean, sd):
    return pt.logaddexp(_labelled_logp(u, 1.0, mean, sd), _labelled_logp(u, -1.0, mean, sd))


def _random(mean, sd, rng=None, size=None):
    shape = (*(size or ()), len(mean))
    u = _coordinates(rng.normal(mean, sd, size=shape), np.concatenate)
    u[..., 1] *= rng.choice([-1.0, 1.0], size=shape[:-1])
    return u


def _support_point(rv, size, mean, sd):
    return _coordinates(mean, pt.concatenate)


@dataclass(frozen=True)
class Fold:
    """The flip-flop pair of a fit, with its prior as normals on the log scale.

    ``mean`` and ``sd`` are in the order of ``flip_flop.parameters`` (the rates, then the gains);
    a gain with subject effects enters through its population location ``{gain}_mu``.
    """

    flip_flop: FlipFlop
    mean: tuple[float, ...]
    sd: tuple[float, ...]

    @classmethod
    def of(cls, structure: ParameterStructure) -> Fold | None:
        """Return the fold of a fit's structure, or None where it does not apply (module docstring)."""
        pair = structure.model.flip_flop
        if pair is None:
            return None
        names = pair.parameters
        if (set(names) & set(structure.options.fixed)
                or any(structure.is_structured(k) for k in pair.rates)):
            return None
        priors = [structure.prior(name) for name in names]
        exact = [isinstance(p, LogNormal) or (structure.is_structured(k) and unconstrained(p).link == "log")
                 for k, p in zip(names, priors, strict=True)]
        if not all(exact):
            return None
        normals = [unconstrained(p) for p in priors]
        return cls(pair, tuple(n.mean for n in normals), tuple(n.sd for n in normals))

    @property
    def coordinates(self) -> list[str]:
        """Labels of the sampled vector's entries."""
        k1, k2 = self.flip_flop.rates
        return [f"mean log ({k1}, {k2})", f"half log ({k1} / {k2})",
                *(f"log ({g} {k1})" for g in self.flip_flop.gains)]

    def locations(self) -> dict[str, pt.TensorVariable]:
        """Create the sampled vector (inside a PyMC model); return each parameter's log-scale location."""
        pm.Model.get_context().add_coord(FOLD_DIM, self.coordinates)
        u = pm.CustomDist(FOLD_VARIABLE, np.array(self.mean), np.array(self.sd), logp=_logp,
                          random=_random, support_point=_support_point, signature="(n),(n)->(n)",
                          dims=FOLD_DIM)
        v = _log_parameters(u, 1.0)
        return {name: v[i] for i, name in enumerate(self.flip_flop.parameters)}

    def keep_probability(self, u: np.ndarray) -> np.ndarray:
        """P(the ordering as sampled | the unordered point) for draws ``u`` (..., n)."""
        mean, sd = np.array(self.mean), np.array(self.sd)
        values = pt.as_tensor(np.asarray(u, dtype=float))
        kept, swapped = (_labelled_logp(values, s, mean, sd).eval() for s in (1.0, -1.0))
        return expit(kept - swapped)


def resolve(draws: xr.Dataset, pm_model: pm.Model, rng: np.random.Generator) -> xr.Dataset:
    """Give each draw of ``pm_model``'s fold its ordering; recompute the deterministics present.

    ``draws`` (chain, draw, ...) hold the sampled ``flip_flop`` (a posterior or prior group). The
    sign of b is kept with the probability :meth:`Fold.keep_probability`, else flipped.
    """
    fold: Fold = pm_model.fold
    u = np.array(draws[FOLD_VARIABLE].values, dtype=float)
    flip = rng.random(u.shape[:-1]) >= fold.keep_probability(u)
    u[flip, 1] *= -1.0
    draws = draws.assign({FOLD_VARIABLE: (draws[FOLD_VARIABLE].dims, u)})
    names = [d.name for d in pm_model.deterministics if d.name in draws]
    if not names:
        return draws
    new = pm.compute_deterministics(draws, var_names=names, model=pm_model, progressbar=False)
    return draws.assign({name: new[name] for name in names})
