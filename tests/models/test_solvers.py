"""Compiled solvers against independent references: scipy Radau, closed forms, finite differences.

Every reference right-hand side is the model's own float evaluation (``OdeModel.evaluate_rhs``),
never the generated code. Tolerances are set a factor of ~10 above what the solvers achieve, so a
regression in accuracy fails.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from models import (
    Event,
    Input,
    LogNormal,
    ModelError,
    Observable,
    OdeModel,
    Parameter,
    SolverSettings,
    State,
    get_model,
    solve,
)
from models.solvers import METHODS, pack_events, pack_times
from models.solvers.common import MAX_STEPS, STATUS_MESSAGES, SUCCESS

ACUTE = get_model("acute_inflammation")
GC = get_model("gc_receptor")
N_PARAMS = len(ACUTE.parameters)


# ---- small models with closed-form solutions -------------------------------------------------
def _decay_rhs(s, p, u, m):
    return {"X": -p.k * s.X}


def _decay_initial(p, u, m):
    return {"X": p.x0}


# dX/dt = -k X, X(0) = x0:  X(t) = x0 exp(-k t). No inputs: theta = (k, x0).
DECAY = OdeModel(
    name="test_decay",
    title="linear decay",
    equations="dX/dt = -k X",
    states=(State("X", "ng/mL", "amount"),),
    parameters=(
        Parameter("k", "1/h", "decay rate", LogNormal(1.0, 0.5)),
        Parameter("x0", "ng/mL", "initial amount", LogNormal(1.0, 0.5)),
    ),
    inputs=(),
    observables=(Observable("X_obs", "X", "ng/mL"),),
    rhs=_decay_rhs,
    initial=_decay_initial,
)


def _rotation_rhs(s, p, u, m):
    return {"A": -p.a * s.A + p.b * s.B, "B": -p.b * s.A - p.a * s.B}


def _rotation_initial(p, u, m):
    return {"A": u.A0, "B": u.B0}


# y' = M y with M = [[-a, b], [-b, -a]] = -a I + b K, K = [[0, 1], [-1, 0]]:
# exp(M t) = exp(-a t) [[cos bt, sin bt], [-sin bt, cos bt]], a damped rotation.
ROTATION = OdeModel(
    name="test_rotation",
    title="damped rotation",
    equations="dA/dt = -a A + b B; dB/dt = -b A - a B",
    states=(State("A", "1", "first coordinate"), State("B", "1", "second coordinate")),
    parameters=(
        Parameter("a", "1/h", "damping", LogNormal(0.1, 0.5)),
        Parameter("b", "1/h", "angular frequency", LogNormal(1.0, 0.5)),
    ),
    inputs=(Input("A0", "1", "A at t = 0", 1.0), Input("B0", "1", "B at t = 0", 0.5)),
    observables=(Observable("A_obs", "A", "1"),),
    rhs=_rotation_rhs,
    initial=_rotation_initial,
)


def rotation_exact(a, b, A0, B0, t):
    """Closed-form states (n_t, 2) and sensitivities (n_t, 2, 4) w.r.t. (a, b, A0, B0)."""
    decay, c, s = np.exp(-a * t), np.cos(b * t), np.sin(b * t)
    y = np.stack([decay * (c * A0 + s * B0), decay * (-s * A0 + c * B0)], axis=1)
    d_a = -t[:, None] * y  # d/da exp(M t) y0 = -t exp(M t) y0
    d_b = t[:, None] * np.stack([y[:, 1], -y[:, 0]], axis=1)  # t K exp(M t) y0 (K commutes)
    d_A0 = np.stack([decay * c, -decay * s], axis=1)  # first column of exp(M t)
    d_B0 = np.stack([decay * s, decay * c], axis=1)  # second column of exp(M t)
    return y, np.stack([d_a, d_b, d_A0, d_B0], axis=2)


# ---- references and comparisons --------------------------------------------------------------
def radau(model, theta, times, events=()):
    """scipy Radau (rtol 1e-10, atol 1e-12) on ``evaluate_rhs``, restarted by hand at each event.

    A sample at an event's time takes the state before the event.
    """
    theta = np.array(theta, dtype=float)
    times = np.asarray(times, dtype=float)
    y = model.evaluate_initial(theta)
    out = np.empty((times.size, y.size))
    out[times <= 0] = y
    t = 0.0
    for ev in [*sorted(events, key=lambda e: e.time), None]:
        t_stop = times[-1] if ev is None else min(ev.time, times[-1])
        if t_stop > t:
            th = theta.copy()
            sol = solve_ivp(
                lambda _, x, th=th: model.evaluate_rhs(x, th),
                (t, t_stop),
                y,
                method="Radau",
                rtol=1e-10,
                atol=1e-12,
                dense_output=True,
            )
            assert sol.success, sol.message
            inside = (times > t) & (times <= t_stop)
            out[inside] = sol.sol(times[inside]).T
            y, t = sol.y[:, -1].copy(), t_stop
        if ev is None or ev.time >= times[-1]:
            break
        if ev.kind == "bolus":
            y[model.state_names.index(ev.target)] += ev.value
        else:
            theta[len(model.parameters) + model.input_names.index(ev.target)] = ev.value
    return out


def assert_relative(actual, desired, rtol, floor, label=""):
    """|actual - desired| <= rtol * (|desired| + floor) everywhere (floor in the states' units)."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape
    err = np.abs(actual - desired) / (np.abs(desired) + floor)
    worst = np.unravel_index(np.argmax(np.where(np.isfinite(err), err, np.inf)), err.shape)
    assert np.all(err <= rtol), (
        f"{label}: relative error {err[worst]:.3g} > {rtol:g} at index {worst}: "
        f"{actual[worst]!r} vs {desired[worst]!r}"
    )


def rows_of(solution, times, subject):
    """States and sensitivities of one subject of a batch solution."""
    start = sum(len(t) for t in times[:subject])
    rows = slice(start, start + len(times[subject]))
    return solution.states[rows], solution.sensitivities[rows]


def prior_theta(model, rng, inputs=None):
    """One prior draw of the parameters, inputs at their defaults (or ``inputs``)."""
    params = {p.name: float(p.prior.sample(rng)) for p in model.parameters}
    return model.theta(params, inputs)


def log_perturbations(theta, columns, eps):
    """Rows theta * exp(+eps), theta * exp(-eps) for each column in turn (shape 2*len(columns), q)."""
    rows = np.repeat(theta[None, :], 2 * len(columns), axis=0)
    for i, j in enumerate(columns):
        rows[2 * i, j] *= np.exp(eps)
        rows[2 * i + 1, j] *= np.exp(-eps)
    return rows


# ---- 1. agreement with scipy at prior draws --------------------------------------------------
@pytest.fixture(scope="module")
def prior_batch(seed):
    """50 prior draws of acute_inflammation (dose 2 ng/kg), each with its own sample times (h)."""
    rng = np.random.default_rng(seed)
    theta = np.array([prior_theta(ACUTE, rng, {"dose": 2.0}) for _ in range(50)])
    times = [np.concatenate([[0.0], np.sort(rng.uniform(0.05, 24.0, 11))]) for _ in range(50)]
    reference = [radau(ACUTE, th, t) for th, t in zip(theta, times, strict=True)]
    return theta, times, reference


@pytest.mark.parametrize("method", METHODS)
def test_prior_draws_match_scipy_radau(method, prior_batch):
    theta, times, reference = prior_batch
    sol = solve(ACUTE, theta, times, settings=SolverSettings(method, rtol=1e-9, atol=1e-12, max_steps=10**6))
    np.testing.assert_array_equal(sol.status, SUCCESS)
    assert sol.states.shape == (sum(map(len, times)), 5)
    assert sol.sensitivities.shape == (sum(map(len, times)), 5, 15)
    for subject in range(len(times)):
        states, _ = rows_of(sol, times, subject)
        # Floor 1e-6 in each state's unit: endotoxin decays to ~1e-60 ng/kg by 24 h.
        assert_relative(states, reference[subject], 1e-5, 1e-6, f"{method}, subject {subject}")


# ---- 2. gradients against finite differences -------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_gradient_of_log_observables_matches_finite_differences(method, rng):
    times = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0])
    subjects = [ACUTE.theta(ACUTE.defaults())] + [prior_theta(ACUTE, rng) for _ in range(2)]
    weights = rng.standard_normal((times.size, 3))
    observed = ACUTE.observable_states()
    q = len(ACUTE.theta_names)
    config = SolverSettings(method, rtol=1e-10, atol=1e-12, max_steps=10**6)

    def objective(states):  # sum of weighted log observables
        return np.sum(weights * np.log(states[:, observed]))

    steps = (1e-3, 1e-4)  # in log theta
    batch = [np.array(subjects)]
    batch += [log_perturbations(th, range(q), eps) for eps in steps for th in subjects]
    batch = np.concatenate(batch)
    sol = solve(ACUTE, batch, [times] * len(batch), settings=config)
    np.testing.assert_array_equal(sol.status, SUCCESS)
    values = sol.states.reshape(len(batch), times.size, -1)
    for i, th in enumerate(subjects):
        S = sol.sensitivities.reshape(len(batch), times.size, 5, q)[i][:, observed]
        analytic = th * np.einsum("ro,rop->p", weights / values[i][:, observed], S)  # d/d log theta
        floor = 1e-6 * np.abs(analytic).max()
        fd = []
        for k, eps in enumerate(steps):
            first = len(subjects) + (k * len(subjects) + i) * 2 * q
            f = np.array([objective(values[first + r]) for r in range(2 * q)])
            fd.append((f[0::2] - f[1::2]) / (2 * eps))
            assert_relative(analytic, fd[-1], 1e-4, floor, f"{method}, subject {i}, step {eps:g}")
        assert_relative(fd[0], fd[1], 1e-4, floor, f"{method}, subject {i}: the two FD steps")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model", [ACUTE, GC], ids=["acute_inflammation", "gc_receptor"])
def test_initial_sensitivities_are_the_initial_state_jacobian(model, method, rng):
    inputs = {"dose": 1.5, "stress": 20.0} if model is GC else {"dose": 1.5}
    theta = np.array([prior_theta(model, rng, inputs) for _ in range(3)])
    sol = solve(model, theta, [np.array([0.0, 0.5])] * 3, settings=SolverSettings(method))
    for s, th in enumerate(theta):
        expected = np.empty((len(model.states), th.size))
        for j in range(th.size):
            h = 1e-6 * th[j]
            up, down = th.copy(), th.copy()
            up[j] += h
            down[j] -= h
            expected[:, j] = (model.evaluate_initial(up) - model.evaluate_initial(down)) / (2 * h)
        np.testing.assert_allclose(sol.states[2 * s], model.evaluate_initial(th), rtol=1e-14)
        np.testing.assert_allclose(sol.sensitivities[2 * s], expected, rtol=1e-6, atol=1e-9)


# ---- 3. closed forms -------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_linear_decay_matches_closed_form(method):
    t = np.linspace(0.0, 10.0, 21)
    theta = np.array([[0.7, 2.0], [3.0, 0.5]])  # (k 1/h, x0 ng/mL)
    sol = solve(DECAY, theta, [t, t], settings=SolverSettings(method, 1e-10, 1e-14, max_steps=10**6))
    np.testing.assert_array_equal(sol.status, SUCCESS)
    for s, (k, x0) in enumerate(theta):
        X = x0 * np.exp(-k * t)
        states, sens = rows_of(sol, [t, t], s)
        assert_relative(states[:, 0], X, 1e-7, 1e-6, f"{method} X")
        assert_relative(sens[:, 0, 0], -t * X, 1e-7, 1e-6, f"{method} dX/dk")
        assert_relative(sens[:, 0, 1], np.exp(-k * t), 1e-7, 1e-6, f"{method} dX/dx0")


@pytest.mark.parametrize("method", METHODS)
def test_linear_system_matches_matrix_exponential(method):
    t = np.linspace(0.0, 20.0, 41)
    theta = np.array([[0.1, 1.0, 1.0, 0.5], [0.5, 2.5, -0.3, 2.0]])  # (a, b, A0, B0)
    sol = solve(ROTATION, theta, [t, t], settings=SolverSettings(method, 1e-10, 1e-13, max_steps=10**6))
    np.testing.assert_array_equal(sol.status, SUCCESS)
    for s, th in enumerate(theta):
        y, dy = rotation_exact(*th, t)
        states, sens = rows_of(sol, [t, t], s)
        # The states cross zero: compare with the size of the vector at each time.
        size = np.linalg.norm(y, axis=1)
        np.testing.assert_array_less(np.abs(states - y).max(axis=1), 1e-7 * size)
        np.testing.assert_array_less(np.abs(sens - dy).max(axis=(1, 2)), 1e-7 * np.abs(dy).max(axis=(1, 2)))


@pytest.mark.parametrize("method", METHODS)
def test_error_shrinks_with_the_tolerance(method):
    t = np.linspace(0.0, 20.0, 41)
    theta = np.array([0.1, 1.0, 1.0, 0.5])
    y, _ = rotation_exact(*theta, t)
    errors = []
    tolerances = (1e-4, 1e-6, 1e-8, 1e-10)
    for rtol in tolerances:
        sol = solve(ROTATION, theta[None, :], [t], settings=SolverSettings(method, rtol, 1e-2 * rtol, 10**6))
        errors.append(np.max(np.linalg.norm(sol.states - y, axis=1) / np.linalg.norm(y, axis=1)))
    errors = np.array(errors)
    # Tolerance proportionality: each factor 100 in rtol buys at least a factor 30 in error.
    assert np.all(errors[1:] < errors[:-1] / 30), errors
    slope = np.polyfit(np.log10(tolerances), np.log10(errors), 1)[0]
    assert 0.8 < slope < 1.2, (slope, errors)
    assert errors[-1] < 1e-7, errors


# ---- 4. events -------------------------------------------------------------------------------
BOLUS = Event(3.0, "bolus", "L", 1.5)  # a second endotoxin dose, ng/kg at 3 h
BOLUS_TIMES = np.array([0.0, 1.0, 2.0, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 12.0])


@pytest.mark.parametrize("method", METHODS)
def test_bolus_matches_two_segments_by_hand(method, rng):
    theta = np.array([ACUTE.theta(ACUTE.defaults()), prior_theta(ACUTE, rng)])
    sol = solve(
        ACUTE,
        theta,
        [BOLUS_TIMES] * 2,
        [[BOLUS], [BOLUS]],
        SolverSettings(method, rtol=1e-9, atol=1e-12, max_steps=10**6),
    )
    np.testing.assert_array_equal(sol.status, SUCCESS)
    for s, th in enumerate(theta):
        states, _ = rows_of(sol, [BOLUS_TIMES] * 2, s)
        assert_relative(states, radau(ACUTE, th, BOLUS_TIMES, [BOLUS]), 1e-5, 1e-6, f"{method}, {s}")
        # The bolus is there: just after it, L is 1.5 ng/kg above the undosed exponential.
        assert states[4, 0] == pytest.approx(th[-1] * np.exp(-3.5 * th[0]) + 1.5 * np.exp(-0.5 * th[0]))


@pytest.mark.parametrize("method", METHODS)
def test_bolus_sensitivities_match_finite_differences(method):
    theta = ACUTE.theta(ACUTE.defaults())
    q = theta.size
    eps = 1e-4
    batch = np.concatenate([theta[None, :], log_perturbations(theta, range(q), eps)])
    sol = solve(
        ACUTE,
        batch,
        [BOLUS_TIMES] * len(batch),
        [[BOLUS]] * len(batch),
        SolverSettings(method, rtol=1e-10, atol=1e-12, max_steps=10**6),
    )
    np.testing.assert_array_equal(sol.status, SUCCESS)
    states = sol.states.reshape(len(batch), BOLUS_TIMES.size, -1)
    fd = (states[1::2] - states[2::2]).transpose(1, 2, 0) / (2 * eps)  # times, states, theta
    analytic = sol.sensitivities[: BOLUS_TIMES.size] * theta  # d state / d log theta
    scale = np.abs(analytic).max(axis=2, keepdims=True)  # largest sensitivity of that state
    assert_relative(analytic, fd, 1e-4, scale + 1e-6, method)


@pytest.mark.parametrize("method", METHODS)
def test_bolus_restart_of_linear_decay_is_exact(method):
    k, x0, b, tb = 0.8, 2.0, 1.0, 2.0
    t = np.array([0.0, 1.0, 2.0, 2.0, 2.5, 4.0, 7.0])
    config = SolverSettings(method, rtol=1e-10, atol=1e-14, max_steps=10**6)
    sol = solve(DECAY, np.array([[k, x0]]), [t], [[Event(tb, "bolus", "X", b)]], config)
    after = t > tb
    X = np.where(after, (x0 * np.exp(-k * tb) + b) * np.exp(-k * (t - tb)), x0 * np.exp(-k * t))
    dX_dk = -t * x0 * np.exp(-k * t) - np.where(after, (t - tb) * b * np.exp(-k * (t - tb)), 0.0)
    assert_relative(sol.states[:, 0], X, 1e-7, 1e-6, "X")
    assert_relative(sol.sensitivities[:, 0, 0], dX_dk, 1e-7, 1e-6, "dX/dk")
    assert_relative(sol.sensitivities[:, 0, 1], np.exp(-k * t), 1e-7, 1e-6, "dX/dx0")
    # The same as restarting by hand from X(tb) + b, with the clock shifted by tb.
    first = solve(DECAY, np.array([[k, x0]]), [np.array([tb])], settings=config).states[0, 0]
    second = solve(DECAY, np.array([[k, first + b]]), [t[after] - tb], settings=config)
    np.testing.assert_allclose(sol.states[after, 0], second.states[:, 0], rtol=1e-7)


@pytest.mark.parametrize("method", METHODS)
def test_sample_at_an_event_time_sees_the_state_before_it(method):
    k, x0 = 0.8, 2.0
    t = np.array([0.0, 1.0, 1.0, 3.0])
    events = [Event(0.0, "bolus", "X", 5.0), Event(1.0, "bolus", "X", 7.0)]
    sol = solve(DECAY, np.array([[k, x0]]), [t], [events], SolverSettings(method, 1e-10, 1e-14, 10**6))
    before = (x0 + 5.0) * np.exp(-k)
    np.testing.assert_allclose(
        sol.states[:, 0], [x0, before, before, (before + 7.0) * np.exp(-2 * k)], rtol=1e-7
    )


@pytest.mark.parametrize("method", METHODS)
def test_events_of_one_subject_leave_the_others_alone(method):
    theta = np.repeat(ACUTE.theta(ACUTE.defaults())[None, :], 3, axis=0)
    times = [BOLUS_TIMES] * 3
    config = SolverSettings(method)
    batch = solve(ACUTE, theta, times, [[], [BOLUS], []], config)
    alone = solve(ACUTE, theta[:1], times[:1], [[]], config)
    np.testing.assert_array_equal(rows_of(batch, times, 0)[0], alone.states)
    np.testing.assert_array_equal(rows_of(batch, times, 2)[0], alone.states)
    np.testing.assert_array_equal(rows_of(batch, times, 0)[1], alone.sensitivities)
    dosed = rows_of(batch, times, 1)[0]
    # Up to and including t = 3 h the dosed subject is the undosed one (to the solver's accuracy:
    # the explicit method ends a step on the event instead of interpolating).
    np.testing.assert_allclose(dosed[:4], alone.states[:4], rtol=1e-5)
    assert np.all(dosed[4:, 0] > alone.states[4:, 0])


STRESS = Event(24.0, "set", "stress", 300.0)  # chronic stress from day 2, nmol/L/h
STRESS_TIMES = np.concatenate([np.arange(0.0, 24.0, 2.0), np.arange(24.0, 337.0, 8.0)])


@pytest.fixture(scope="module")
def stress_reference():
    """gc_receptor at the prior medians, stress 0 then 300 nmol/L/h from 24 h, by scipy Radau."""
    theta = GC.theta(GC.defaults(), {"dose": 2.0, "stress": 0.0})
    return theta, radau(GC, theta, STRESS_TIMES, [STRESS])


@pytest.mark.parametrize("method", METHODS)
def test_set_event_matches_scipy_with_the_input_switched(method, stress_reference):
    theta, reference = stress_reference
    config = SolverSettings(method, rtol=1e-8, atol=1e-11, max_steps=10**5)
    sol = solve(GC, theta[None, :], [STRESS_TIMES], [[STRESS]], config)
    np.testing.assert_array_equal(sol.status, SUCCESS)
    assert_relative(sol.states, reference, 1e-5, 1e-6, method)
    # Stress raised cortisol by ~300/d_C nmol/L and down-regulated the receptor.
    assert sol.states[-1, 4] > 800.0 and sol.states[-1, 6] < 0.95 * sol.states[0, 6]


GC_EVENT_TIMES = np.array([12.0, 24.0, 30.0, 48.0])


def _gc_event_sensitivities(method, columns):
    theta = GC.theta(GC.defaults(), {"dose": 2.0, "stress": 10.0})
    eps = 1e-4
    batch = np.concatenate([theta[None, :], log_perturbations(theta, columns, eps)])
    rtol = 1e-9 if method == "stiff" else 1e-10  # the 3rd-order method needs ~7000 steps here
    sol = solve(
        GC,
        batch,
        [GC_EVENT_TIMES] * len(batch),
        [[STRESS]] * len(batch),
        SolverSettings(method, rtol=rtol, atol=1e-12, max_steps=10**6),
    )
    np.testing.assert_array_equal(sol.status, SUCCESS)
    states = sol.states.reshape(len(batch), GC_EVENT_TIMES.size, -1)
    fd = (states[1::2] - states[2::2]).transpose(1, 2, 0) / (2 * eps)
    analytic = sol.sensitivities[: GC_EVENT_TIMES.size][:, :, columns] * theta[columns]
    return analytic, fd


@pytest.mark.parametrize("method", METHODS)
def test_set_event_parameter_sensitivities_match_finite_differences(method):
    analytic, fd = _gc_event_sensitivities(method, list(range(len(GC.parameters))))
    scale = np.abs(analytic).max(axis=2, keepdims=True)
    assert_relative(analytic, fd, 1e-4, scale + 1e-6, method)


def test_set_event_input_sensitivity_matches_finite_differences():
    stress = len(GC.theta_names) - 1
    analytic, fd = _gc_event_sensitivities("explicit", [stress])
    scale = np.abs(analytic).max(axis=2, keepdims=True)
    assert_relative(analytic, fd, 1e-4, scale + 1e-6, "d/d stress")


# ---- 5. the stiff model ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["stiff", "rodas5", "auto"])
def test_stiff_model_needs_a_stiff_method(method, stress_reference):
    theta, reference = stress_reference
    args = (GC, theta[None, :], [STRESS_TIMES], [[STRESS]])
    limited = solve(*args, SolverSettings("explicit", rtol=1e-6, atol=1e-9, max_steps=2000))
    unlimited = solve(*args, SolverSettings("explicit", rtol=1e-6, atol=1e-9, max_steps=10**6))
    stiff = solve(*args, SolverSettings(method, rtol=1e-6, atol=1e-9, max_steps=2000))
    assert stiff.status[0] == SUCCESS
    assert limited.status[0] != SUCCESS or limited.steps[0] >= 5 * stiff.steps[0]
    assert unlimited.status[0] == SUCCESS
    assert unlimited.steps[0] >= 5 * stiff.steps[0], (unlimited.steps, stiff.steps)
    # "auto" found the stiffness and switched; the explicit method never factorises.
    assert stiff.switched[0] == (method == "auto")
    assert stiff.factorizations[0] > 0 and unlimited.factorizations[0] == 0
    accurate = solve(*args, SolverSettings(method, rtol=1e-8, atol=1e-11, max_steps=20_000))
    assert_relative(accurate.states, reference, 1e-5, 1e-6, method)


def test_auto_switches_within_the_first_hour_on_the_receptor_model():
    # gc_receptor at its prior medians is stiff from t = 0 (an eigenvalue near -k_G = -60/h; the
    # explicit method takes ~450 steps over a day). The stiffness test on the exact Jacobian hands
    # over within the first hour; Hairer's stage-difference estimate took until t = 16 h.
    theta = GC.theta(GC.defaults())[None, :]
    times = [np.linspace(0.0, 24.0, 11)]
    early = solve(GC, theta, [np.linspace(0.0, 1.0, 3)], settings=SolverSettings("auto"))
    auto = solve(GC, theta, times, settings=SolverSettings("auto"))
    rodas5 = solve(GC, theta, times, settings=SolverSettings("rodas5"))
    assert early.switched[0] and auto.switched[0]
    assert auto.steps[0] <= 1.5 * rodas5.steps[0], (auto.steps, rodas5.steps)
    assert_relative(auto.states, rodas5.states, 1e-4, 1e-6, "auto vs rodas5")


def test_auto_stays_explicit_on_a_non_stiff_model():
    theta = ACUTE.theta(ACUTE.defaults())[None, :]
    auto = solve(ACUTE, theta, [BOLUS_TIMES], settings=SolverSettings("auto"))
    explicit = solve(ACUTE, theta, [BOLUS_TIMES], settings=SolverSettings("explicit"))
    assert not auto.switched[0] and auto.factorizations[0] == 0
    np.testing.assert_array_equal(auto.states, explicit.states)
    np.testing.assert_array_equal(auto.sensitivities, explicit.sensitivities)


# ---- 6. failures -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_max_steps_fails_only_that_subject(method, rng):
    good = ACUTE.theta(ACUTE.defaults())
    # d_T = 1e4/h is far beyond the explicit method's stability limit, and 5000 samples force
    # the stiff method (whose steps end on sample times) past 2000 steps.
    bad = ACUTE.theta({**ACUTE.defaults(), "d_T": 1e4})
    theta = np.array([good, bad, prior_theta(ACUTE, rng)])
    times = [BOLUS_TIMES, np.linspace(0.0, 24.0, 5000), BOLUS_TIMES]
    config = SolverSettings(method, max_steps=2000)
    sol = solve(ACUTE, theta, times, settings=config)
    np.testing.assert_array_equal(sol.status, [SUCCESS, MAX_STEPS, SUCCESS])
    assert sol.messages[1] == STATUS_MESSAGES[MAX_STEPS] == "max_steps reached before the last sample time"
    assert not sol.success
    assert sol.steps[1] == 2000
    states, sens = rows_of(sol, times, 1)
    assert np.all(np.isnan(states)) and np.all(np.isnan(sens))
    for s in (0, 2):
        alone = solve(ACUTE, theta[s : s + 1], [times[s]], settings=config)
        np.testing.assert_array_equal(rows_of(sol, times, s)[0], alone.states)
        np.testing.assert_array_equal(rows_of(sol, times, s)[1], alone.sensitivities)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("column", "value"), [(0, np.nan), (2, np.inf), (14, np.nan)])
def test_non_finite_parameters_fail_without_raising(method, column, value):
    theta = np.repeat(ACUTE.theta(ACUTE.defaults())[None, :], 2, axis=0)
    theta[1, column] = value
    sol = solve(ACUTE, theta, [BOLUS_TIMES] * 2, settings=SolverSettings(method))
    assert sol.status[0] == SUCCESS and sol.status[1] != SUCCESS
    if np.isnan(value):  # a NaN parameter is caught at once, not after max_steps
        assert sol.messages[1] == "non-finite state" and sol.steps[1] == 0
    assert np.all(np.isfinite(sol.states[: BOLUS_TIMES.size]))
    assert np.all(np.isnan(sol.states[BOLUS_TIMES.size :]))


@pytest.mark.parametrize("method", METHODS)
def test_overflowing_right_hand_side_fails_without_raising(method):
    theta = np.array([ACUTE.theta(ACUTE.defaults()), ACUTE.theta({**ACUTE.defaults(), "k_IT": 1e150})])
    sol = solve(ACUTE, theta, [BOLUS_TIMES] * 2, settings=SolverSettings(method))
    assert sol.status[0] == SUCCESS and sol.status[1] != SUCCESS
    assert np.all(np.isnan(sol.states[BOLUS_TIMES.size :]))


# ---- input validation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "rk4"}, r"unknown solver method 'rk4'; choose one of "
                            r"\['auto', 'explicit', 'rodas5', 'stiff'\]"),
        ({"rtol": 0.0}, "need 0 < rtol < 1 and atol > 0, got rtol=0.0"),
        ({"rtol": 1.0}, "need 0 < rtol < 1 and atol > 0, got rtol=1.0"),
        ({"atol": -1e-6}, "need 0 < rtol < 1 and atol > 0"),
        ({"max_steps": 0}, "max_steps must be positive, got 0"),
    ],
)
def test_invalid_solver_settings_raise(kwargs, message):
    with pytest.raises(ModelError, match=message):
        SolverSettings(**kwargs)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (Event(1.0, "bolus", "dose", 1.0), "a 'bolus' targets a state"),
        (Event(1.0, "set", "L", 1.0), "a 'set' targets an input"),
        (Event(1.0, "infusion", "L", 1.0), "a 'bolus' targets a state"),
        (Event(-1.0, "bolus", "L", 1.0), "needs a finite time >= 0 and value"),
        (Event(1.0, "bolus", "L", np.nan), "needs a finite time >= 0 and value"),
    ],
)
def test_invalid_events_raise(event, message):
    with pytest.raises(ModelError, match=f"subject 1: event .*{message}"):
        pack_events(ACUTE, [[], [event]])


def test_events_are_packed_per_subject_in_time_order():
    packed = pack_events(
        GC, [[Event(5.0, "set", "stress", 3.0), Event(2.0, "bolus", "L", 1.0)], [], [STRESS]]
    )
    np.testing.assert_array_equal(packed.time, [2.0, 5.0, 24.0])
    np.testing.assert_array_equal(packed.index, [0, len(GC.parameters) + 1, len(GC.parameters) + 1])
    np.testing.assert_array_equal(packed.ptr, [0, 2, 2, 3])


@pytest.mark.parametrize("times", [np.array([1.0, 0.5]), np.array([-1.0, 2.0]), np.array([0.0, np.nan])])
def test_invalid_sample_times_raise(times):
    with pytest.raises(ModelError, match="subject 1: sample times must be finite, >= 0 and sorted"):
        pack_times([np.array([0.0, 1.0]), times])


def test_theta_and_times_shapes_are_checked():
    theta = ACUTE.theta(ACUTE.defaults())
    with pytest.raises(ModelError, match="theta has 14 columns; model acute_inflammation needs 15"):
        solve(ACUTE, theta[None, :-1], [BOLUS_TIMES])
    with pytest.raises(ModelError, match="2 time arrays for 1 subjects"):
        solve(ACUTE, theta[None, :], [BOLUS_TIMES, BOLUS_TIMES])


# ---- 7. invariants over parameter ranges (hypothesis) ----------------------------------------
def _log_normal_around_prior(z, prior):
    return prior.median * np.exp(prior.sigma * z)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    z=st.lists(st.floats(-2.0, 2.0), min_size=N_PARAMS, max_size=N_PARAMS),
    log_dose=st.floats(np.log(0.1), np.log(10.0)),
)
def test_cytokines_stay_non_negative_and_endotoxin_decays_exponentially(method, z, log_dose):
    params = {}
    for p, zi in zip(ACUTE.parameters, z, strict=True):
        if p.name == "r":
            params[p.name] = 1.0 / (1.0 + np.exp(-2.0 * zi))  # r in (0.02, 0.98)
        else:
            params[p.name] = _log_normal_around_prior(zi, p.prior)  # within 2 prior sigmas
    dose = np.exp(log_dose)
    k_L = params["k_L"]
    # Endotoxin is checked over 8 of its time constants (it falls to ~1e-60 by 24 h at fast k_L).
    t_L = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]) / k_L
    times = np.unique(np.concatenate([t_L, np.linspace(0.0, 24.0, 49)]))
    sol = solve(
        ACUTE,
        ACUTE.theta(params, {"dose": dose})[None, :],
        [times],
        settings=SolverSettings(method, rtol=1e-9, atol=1e-12, max_steps=10**6),
    )
    assert sol.status[0] == SUCCESS
    cytokines = sol.states[:, 2:]  # TNF, IL-6 (pg/mL), cortisol (nmol/L)
    assert np.all(cytokines >= 0.0), cytokines.min(axis=0)
    at = np.searchsorted(times, t_L)
    assert_relative(sol.states[at, 0], dose * np.exp(-k_L * times[at]), 1e-6, 0.0, "L")
