"""Automatic method choice: Dormand-Prince until the problem proves stiff, then Rodas5.

Each subject starts with the explicit method, which runs DOPRI5's stiffness test (see
``explicit``). Once it finds the steps held by stability rather than accuracy, the subject
continues from that time with Rodas5, for the rest of its integration (events included); the
kernel's ``SWITCHED`` counter says which subjects switched. Both methods' sensitivities are exact
derivatives of their discrete steps, so the sensitivities are those of the scheme actually run.
"""

from . import explicit, rodas5
from .common import STIFFNESS_DETECTED, SWITCHED, compile_kernel


def make_advance(fn, n_states, n_theta, key):
    """Build the switching segment integrator for one model's generated functions ``fn``."""
    non_stiff = explicit.make_advance(fn, n_states, n_theta, key, detect_stiffness=True)
    stiff = rodas5.make_advance(fn, n_states, n_theta, key)

    def advance(t0, t1, h0, y, S, th, active, t_out, k_out, k_end, Y, SY, rtol, atol, max_steps,
                counts):
        if counts[SWITCHED] == 0:
            status, t, h = non_stiff(t0, t1, h0, y, S, th, active, t_out, k_out, k_end, Y, SY,
                                     rtol, atol, max_steps, counts)
            if status != STIFFNESS_DETECTED:
                return status, t, h
            counts[SWITCHED] = 1
            t0, h0 = t, h
        return stiff(t0, t1, h0, y, S, th, active, t_out, k_out, k_end, Y, SY, rtol, atol,
                     max_steps, counts)

    return compile_kernel(advance, f"{key}.auto.advance")
