"""Code generation: the generated numba functions against the model's float evaluation."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from models import MODELS, Input, LogNormal, Observable, OdeModel, Parameter, State, simulate
from models.codegen import compile_model, generate_source, source_hash, symbolic


def _decay_rhs(s, p, u, m):
    return {"X": -p.k * s.X}


def _decay_rhs_changed(s, p, u, m):
    return {"X": -p.k * s.X + 0.1}


def _decay_initial(p, u, m):
    return {"X": u.x0}


def _decay(name="decay_codegen", rhs=_decay_rhs, initial=_decay_initial, state="X") -> OdeModel:
    return OdeModel(
        name=name,
        title="linear decay",
        equations="dX/dt = -k X",
        states=(State(state, "ng/mL", "amount"),),
        parameters=(Parameter("k", "1/h", "decay rate", LogNormal(1.0, 0.5)),),
        inputs=(Input("x0", "ng/mL", "initial amount", default=2.0),),
        observables=(Observable("X_obs", state, "ng/mL"),),
        rhs=rhs,
        initial=initial,
    )


def _random_point(model, rng):
    """A prior draw of theta (inputs set to positive values) and a positive state."""
    theta = np.array(
        [p.prior.sample(rng) for p in model.parameters] + [rng.uniform(0.5, 5.0) for _ in model.inputs]
    )
    y = model.evaluate_initial(theta) * rng.uniform(0.5, 2.0, len(model.states)) + rng.uniform(
        0.1, 1.0, len(model.states)
    )
    return y, theta


def _central_difference(f, x, rel_step=1e-6):
    """Jacobian of f at x by central differences with a step relative to each |x_j|."""
    columns = []
    for j in range(x.size):
        h = rel_step * max(abs(x[j]), 1e-3)
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        columns.append((f(up) - f(down)) / (2 * h))
    return np.array(columns).T


# ---- source identity -------------------------------------------------------------------------
def test_source_hash_changes_when_the_rhs_changes():
    base = source_hash(_decay())
    assert source_hash(_decay()) == base  # deterministic for the same equations
    assert source_hash(_decay(rhs=_decay_rhs_changed)) != base
    assert source_hash(_decay(initial=lambda p, u, m: {"X": 2 * u.x0})) != base


def test_source_hash_differs_between_library_models():
    hashes = {source_hash(m) for m in MODELS.values()}
    assert len(hashes) == len(MODELS)


def _clash_rhs(s, p, u, m):
    # States and parameters named like the generated code's own variables (y, S, J, th, t, ...).
    return {"S": -p.th * s.S * s.y, "y": p.th * s.S * s.y - p.t * s.y, "J": p.t * s.y - p.active * s.J}


def _clash_initial(p, u, m):
    return {"S": u.math, "y": 0.01, "J": 0.0}


@pytest.mark.parametrize("method", ["explicit", "rodas5", "stiff"])
def test_names_of_the_generated_code_are_free_for_models(method):
    model = OdeModel(
        name="clash_codegen",
        title="SIR-like model whose names clash with the generator's",
        equations="dS/dt = -th S y; dy/dt = th S y - t y; dJ/dt = t y - active J",
        states=(State("S", "1", "susceptible"), State("y", "1", "infected"), State("J", "1", "removed")),
        parameters=(
            Parameter("th", "1/h", "infection rate", LogNormal(1.5, 0.3)),
            Parameter("t", "1/h", "recovery rate", LogNormal(0.4, 0.3)),
            Parameter("active", "1/h", "loss rate", LogNormal(0.1, 0.3)),
        ),
        inputs=(Input("math", "1", "initial susceptible", default=0.99),),
        observables=(Observable("y_obs", "y", "1"),),
        rhs=_clash_rhs,
        initial=_clash_initial,
    )
    times = np.linspace(0.0, 20.0, 11)
    params = {"th": 1.5, "t": 0.4, "active": 0.1}
    frame = simulate(model, params, {"math": 0.95}, times, method=method, rtol=1e-10, atol=1e-12)
    theta = model.theta(params, {"math": 0.95})
    reference = solve_ivp(lambda t, y: model.evaluate_rhs(y, theta), (0.0, 20.0), [0.95, 0.01, 0.0],
                          method="LSODA", t_eval=times, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(frame[["S", "y", "J"]].to_numpy(), reference.y.T, rtol=1e-6, atol=1e-9)
    assert frame["y"].max() > 0.3  # an epidemic took place: the comparison is not of near-zeros


def test_generated_source_lists_the_kernel_functions():
    source = generate_source(MODELS["acute_inflammation"])
    for name in ("rhs", "jac", "jac_theta", "sens_rhs", "initial", "initial_jac"):
        assert f"def {name}(" in source
    assert "N_STATES = 5" in source and "N_THETA = 15" in source


def test_compile_model_writes_the_module_once_per_process(tmp_path, monkeypatch):
    monkeypatch.setenv("CYTOKINE_BALANCE_CACHE", str(tmp_path))
    model = _decay(name="decay_compile_once")
    module = compile_model(model)
    key = f"decay_compile_once_{source_hash(model)}"
    assert module.SOURCE_HASH == key
    assert (tmp_path / f"cb_{key}.py").read_text() == generate_source(model)
    assert compile_model(model) is module


# ---- generated functions against the float evaluation ----------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_generated_functions_match_float_evaluation_and_finite_differences(name, rng):
    model = MODELS[name]
    module = compile_model(model)
    n, q = len(model.states), len(model.theta_names)
    sym = symbolic(model)
    assert sym.jac_y.shape == (n, n) and sym.jac_theta.shape == (n, q)
    for _ in range(5):
        y, theta = _random_point(model, rng)
        dy = np.empty(n)
        module.rhs(0.0, y, theta, dy)
        np.testing.assert_allclose(dy, model.evaluate_rhs(y, theta), rtol=1e-12, atol=1e-12)

        J = np.empty((n, n))
        module.jac(0.0, y, theta, J)
        J_fd = _central_difference(lambda x, th=theta: model.evaluate_rhs(x, th), y)
        np.testing.assert_allclose(J, J_fd, rtol=1e-6, atol=1e-6 * np.abs(J_fd).max())

        Jp = np.empty((n, q))
        module.jac_theta(0.0, y, theta, np.ones(q), Jp)
        Jp_fd = _central_difference(lambda th, x=y: model.evaluate_rhs(x, th), theta)
        np.testing.assert_allclose(Jp, Jp_fd, rtol=1e-6, atol=1e-6 * np.abs(Jp_fd).max())

        # Sensitivity right-hand side dS/dt = J S + df/dtheta.
        S = rng.standard_normal((n, q))
        dS = np.empty((n, q))
        module.sens_rhs(0.0, y, theta, np.ones(q), S, dS)
        np.testing.assert_allclose(dS, J @ S + Jp, rtol=1e-12, atol=1e-12 * np.abs(J @ S + Jp).max())

        y0 = np.empty(n)
        module.initial(theta, y0)
        np.testing.assert_allclose(y0, model.evaluate_initial(theta), rtol=1e-14)
        S0 = np.empty((n, q))
        module.initial_jac(theta, S0)
        S0_fd = _central_difference(model.evaluate_initial, theta)
        np.testing.assert_allclose(S0, S0_fd, rtol=1e-6, atol=1e-9)


def _switch_rhs(s, p, u, m):
    return {"X": p.k * m.hill(s.Y, p.K, 2) - s.X, "Y": -m.hill_down(s.X, p.K, 3) * s.Y + m.exp(-s.X)}


def _switch_initial(p, u, m):
    return {"X": u.x0, "Y": m.sqrt(u.x0)}


def test_hill_functions_and_math_namespace_compile_exactly(rng):
    model = OdeModel(
        name="switch_codegen",
        title="two Hill switches",
        equations="dX/dt = k Y^2/(Y^2+K^2) - X; dY/dt = -K^3/(X^3+K^3) Y + exp(-X)",
        states=(State("X", "1", "x"), State("Y", "1", "y")),
        parameters=(
            Parameter("k", "1/h", "gain", LogNormal(2.0, 0.3)),
            Parameter("K", "1", "threshold", LogNormal(1.0, 0.3)),
        ),
        inputs=(Input("x0", "1", "initial X", default=1.5),),
        observables=(Observable("X_obs", "X", "1"),),
        rhs=_switch_rhs,
        initial=_switch_initial,
    )
    module = compile_model(model)
    y, theta = _random_point(model, rng)
    dy = np.empty(2)
    module.rhs(0.0, y, theta, dy)
    np.testing.assert_allclose(dy, model.evaluate_rhs(y, theta), rtol=1e-13)
    J = np.empty((2, 2))
    module.jac(0.0, y, theta, J)
    np.testing.assert_allclose(
        J, _central_difference(lambda x: model.evaluate_rhs(x, theta), y), rtol=1e-6, atol=1e-9
    )
    # Hill functions by hand at one point: x^n / (x^n + K^n) and K^n / (x^n + K^n).
    k, K = theta[:2]
    expected_x = k * y[1] ** 2 / (y[1] ** 2 + K**2) - y[0]
    assert dy[0] == pytest.approx(expected_x, rel=1e-13)
    y0 = np.empty(2)
    module.initial(theta, y0)
    np.testing.assert_allclose(y0, [theta[2], np.sqrt(theta[2])], rtol=1e-14)
