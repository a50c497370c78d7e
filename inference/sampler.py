"""Sampler settings: one validated object, one set of defaults, for fits, refits and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, fields

from models import ModelError

__all__ = ["SAMPLERS", "SamplerSettings"]

#: NUTS implementations: nutpie (numba backend; the solver compiled into the log density) or PyMC's.
SAMPLERS = ("nutpie", "pymc")


@dataclass(frozen=True)
class SamplerSettings:
    """How a model is sampled by NUTS.

    Parameters
    ----------
    sampler
        ``"nutpie"`` (numba backend) or ``"pymc"``.
    draws, tune
        Draws kept and warm-up iterations per chain.
    chains
        Independent chains.
    target_accept
        NUTS target acceptance rate, in (0, 1); high because ODE posteriors have ridges.
    seed
        Seeds sampling and posterior-predictive draws: the same seed gives the same result.

    Raises
    ------
    ModelError
        A setting out of range, naming it and what was expected.
    """

    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ModelError(f"sampler must be one of {list(SAMPLERS)}, got {self.sampler!r}")
        for name, least in (("draws", 1), ("tune", 0), ("chains", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ModelError(f"{name} must be an integer >= {least}, got {value!r}")
        if isinstance(self.target_accept, bool) or not 0 < self.target_accept < 1:
            raise ModelError(f"target_accept must be in (0, 1), got {self.target_accept!r}")

    def to_dict(self) -> dict[str, str | int | float]:
        """Return the settings as plain data (the keys are the field names)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Return the names of the settings, in order."""
        return tuple(f.name for f in fields(cls))
