"""The solver methods, registered once: name, what it is, and the generated functions it needs.

A method is a module of ``models.solvers`` with ``make_advance(fn, n_states, n_theta, key)``
returning a compiled segment integrator (the contract is in ``common.make_driver``); ``fn`` holds
the model's generated functions named in ``needs`` (see ``models.codegen``). Adding a method is one
file and one line below. Every source file of ``models.solvers`` is hashed into the identity of
a model's compiled code (``models.codegen.source_hash``), so no list of sources needs upkeep.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """A registered solver method."""

    name: str
    summary: str
    module: str
    needs: tuple[str, ...]

    def make_advance(self, fn, n_states: int, n_theta: int, key: str):
        """Build this method's segment integrator for a model's generated functions ``fn``."""
        module = importlib.import_module(f"{__package__}.{self.module}")
        return module.make_advance(fn, n_states, n_theta, key)


_ROSENBROCK = ("rhs", "jac", "sens_rhs", "sens_jac_dir", "square_product")

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("auto", "Dormand-Prince, switching to Rodas5 per subject when it detects stiffness",
           "auto", _ROSENBROCK),
    Method("explicit", "Dormand-Prince 5(4), dense output", "explicit", ("rhs", "sens_rhs")),
    Method("rodas5", "Rodas5, Rosenbrock 5(4), L-stable, one LU per step", "rodas5", _ROSENBROCK),
    Method("stiff", "Kvaerno ESDIRK 3(2), L-stable, full Newton", "stiff", ("rhs", "jac", "jac_theta")),
)}

# What a model needs generated beyond its methods' needs: y0(theta) and its Jacobian.
ALWAYS_GENERATED = ("initial", "initial_jac")


def generated_functions() -> tuple[str, ...]:
    """Names of the generated functions some registered method needs, plus the initial state."""
    names = dict.fromkeys(ALWAYS_GENERATED)
    for method in METHODS.values():
        names.update(dict.fromkeys(method.needs))
    return tuple(names)
