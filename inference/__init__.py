"""What the data say: the PyMC side of cytokine-balance (Op, data, model builder, fitting, reports)."""

import ctypes.util
import os

import pytensor


def _configure_blas() -> None:
    """Link PyTensor's C backend to the system OpenBLAS unless the user configured BLAS.

    PyTensor's automatic search wants a separate CBLAS library that Debian's OpenBLAS does not
    ship, so on pip installs it finds nothing and warns; OpenBLAS provides the same symbols.
    """
    if "blas__ldflags" in os.environ.get("PYTENSOR_FLAGS", ""):
        return
    if ctypes.util.find_library("openblas"):
        pytensor.config.blas__ldflags = "-lopenblas"


_configure_blas()

from .ode import solve_ode  # noqa: E402  (after BLAS is configured)

__all__ = ["solve_ode"]
