"""Classic stiff problems (models.problems) against scipy's Radau at rtol 1e-12 and finite differences.

Robertson to t = 4e5 and HIRES to its end time, solved at rtol 1e-8, must agree with the reference
to a relative error below 1e-6 (with the problem's absolute tolerance as floor), and their
sensitivities with central finite differences to 1e-5.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from models import SolverSettings, solve
from models.codegen import compile_model
from models.problems import PROBLEMS
from models.solvers.common import SUCCESS

STIFF_METHODS = ("rodas5", "auto")
CASES = ("robertson", "hires")


def sample_times(name):
    t_end = PROBLEMS[name].t_end
    return np.array([0.0, 1e-3 * t_end, 0.1 * t_end, 0.5 * t_end, t_end])


@pytest.fixture(scope="module", params=CASES)
def case(request):
    """(name, theta, times, Radau reference states) of one problem, computed once per module."""
    name = request.param
    problem = PROBLEMS[name]
    model = problem.model
    theta = model.theta(model.defaults())
    times = sample_times(name)
    module = compile_model(model)
    n = len(model.states)

    def jacobian(t, y):  # speeds up Radau's Newton iterations; the states come from the float rhs
        out = np.empty((n, n))
        module.jac(t, y, theta, out)
        return out

    sol = solve_ivp(lambda t, y: model.evaluate_rhs(y, theta), (0.0, times[-1]),
                    model.evaluate_initial(theta), method="Radau", t_eval=times, rtol=1e-12,
                    atol=problem.atol * 1e-3, jac=jacobian)
    assert sol.success
    return name, theta, times, sol.y.T


@pytest.mark.parametrize("method", STIFF_METHODS)
def test_stiff_problem_matches_radau(method, case):
    name, theta, times, reference = case
    problem = PROBLEMS[name]
    sol = solve(problem.model, theta[None, :], [times],
                settings=SolverSettings(method, rtol=1e-8, atol=problem.atol, max_steps=10**5))
    assert sol.status[0] == SUCCESS
    error = np.abs(sol.states - reference) / (np.abs(reference) + problem.atol)
    assert error.max() < 1e-6, (name, error.max(axis=0))
    if method == "auto":  # both problems are stiff from the start
        assert sol.switched[0]


@pytest.mark.parametrize("name", CASES)
def test_stiff_problem_sensitivities_match_central_differences(name):
    problem = PROBLEMS[name]
    model = problem.model
    theta = model.theta(model.defaults())
    times = sample_times(name)
    settings = SolverSettings("rodas5", rtol=1e-8, atol=problem.atol, max_steps=10**5)
    sens = solve(model, theta[None, :], [times], settings=settings).sensitivities
    # The differences are taken at a tighter tolerance, so that they measure the derivative of
    # the exact solution. HIRES at its end time is so curved in k1 that central differences with a
    # relative step of 1e-4 are 1% off; two steps, Richardson-extrapolated, cancel that h^2 term.
    tight = SolverSettings("rodas5", rtol=1e-12, atol=problem.atol * 1e-4, max_steps=10**6)
    n_t = times.size

    def central(eps):
        steps = np.diag(eps * theta)
        upper = solve(model, theta + steps, [times] * len(theta), settings=tight).states
        lower = solve(model, theta - steps, [times] * len(theta), settings=tight).states
        diff = (upper - lower).reshape(len(theta), n_t, -1) / (2 * eps * theta[:, None, None])
        return diff.transpose(1, 2, 0)  # (times, states, theta) like the sensitivities

    coarse, fine = central(2e-5), central(1e-5)
    fd = (4 * fine - coarse) / 3
    # Scaled by theta: the change per relative change of a parameter, against its largest size.
    scaled_error = np.abs(sens - fd) * theta
    scale = (np.abs(fd) * theta).max(axis=0, keepdims=True) + problem.atol
    worst = np.unravel_index(np.argmax(scaled_error / scale), sens.shape)
    assert (scaled_error / scale).max() < 1e-5, (name, worst, (scaled_error / scale).max())
    # The extrapolation was needed, not a fudge: the two steps agree with each other too.
    assert (np.abs(fine - coarse) * theta / scale).max() < 1e-3
