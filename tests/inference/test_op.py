"""The PyTensor Op around the solver: gradients, the numba backend, batching, failures, sampling."""

import warnings

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import verify_grad

from inference.op import OdeSolveOp
from models import Event, SolverSettings, get_model, solve
from models.codegen import compile_model
from models.solvers import pack_events, pack_times
from models.solvers.common import MAX_STEPS, SUCCESS

ACUTE = get_model("acute_inflammation")
OBSERVED = ACUTE.observable_states()
MODES = ("FAST_RUN", "NUMBA")


def op_arrays(times, events=None):
    """The Op's inputs after theta: flat sample times, row pointers and packed events."""
    t_out, row_ptr = pack_times(times)
    ev = pack_events(ACUTE, events if events is not None else [[] for _ in times])
    return t_out, row_ptr, ev.time, ev.kind, ev.index, ev.value, ev.ptr


def subjects(n, rng):
    """The prior-median subject, then prior draws (dose 2 ng/kg)."""
    rows = [ACUTE.theta(ACUTE.defaults())]
    for _ in range(n - 1):
        rows.append(ACUTE.theta({p.name: float(p.prior.sample(rng)) for p in ACUTE.parameters}))
    return np.array(rows)


# ---- gradient ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "rtol", "eps"),
    # verify_grad uses one-sided differences: the step must dominate the solver's error.
    [("explicit", 1e-10, 1e-5), ("stiff", 1e-9, 1e-4), ("rodas5", 1e-10, 1e-5)],
)
def test_verify_grad_of_log_observables(method, rtol, eps, rng):
    op = OdeSolveOp(ACUTE, SolverSettings(method, rtol=rtol, atol=1e-2 * rtol, max_steps=10**6))
    arrays = op_arrays([np.array([0.5, 1.0, 2.0, 4.0, 8.0]), np.array([1.0, 3.0, 6.0])])

    def log_observables(log_theta):
        return pt.log(op(pt.exp(log_theta), *arrays)[0])

    # In log theta, so one step size suits parameters from 0.3 to 1800.
    verify_grad(log_observables, [np.log(subjects(2, rng))], n_tests=2, rng=rng, eps=eps)


# ---- one compiled graph per backend, shared by the tests below --------------------------------
@pytest.fixture(scope="module")
def op():
    return OdeSolveOp(ACUTE, SolverSettings("explicit", rtol=1e-8, atol=1e-10))


@pytest.fixture(scope="module")
def compiled(op):
    """``f(theta, *arrays) -> (obs, status, value, d value / d theta)`` per mode, with the warnings
    emitted while building and first running it (numba compiles on the first call)."""
    theta = pt.dmatrix("theta")
    arrays = [
        pt.dvector("t_out"),
        pt.lvector("row_ptr"),
        pt.dvector("ev_time"),
        pt.lvector("ev_kind"),
        pt.lvector("ev_index"),
        pt.dvector("ev_value"),
        pt.lvector("ev_ptr"),
    ]
    obs, _, status = op(theta, *arrays)
    value = (pt.log(obs) * (1.0 + arrays[0][:, None])).sum()  # weights 1 + t: later rows count more
    grad = pytensor.grad(value, theta)
    example = (subjects(1, None), *op_arrays([np.array([1.0, 2.0])]))
    functions = {}
    for mode in MODES:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn = pytensor.function([theta, *arrays], [obs, status, value, grad], mode=mode)
            fn(*example)
        functions[mode] = (fn, list(caught))
    return functions


def test_numba_build_emits_no_object_mode_warning(compiled):
    _, caught = compiled["NUMBA"]
    object_mode = [str(w.message) for w in caught if "object mode" in str(w.message).lower()]
    assert object_mode == []
    assert [str(w.message) for w in caught] == []


def test_numba_and_c_backends_agree(compiled, rng):
    theta = subjects(3, rng)
    times = [np.array([0.5, 1.0, 2.0, 4.0, 8.0]), np.array([1.0, 3.0, 6.0]), np.array([2.0, 12.0])]
    arrays = op_arrays(times, [[], [Event(2.0, "bolus", "L", 1.0)], []])
    fast = compiled["FAST_RUN"][0](theta, *arrays)
    numba = compiled["NUMBA"][0](theta, *arrays)
    for a, b in zip(fast, numba, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(fast[1], SUCCESS)
    # The gradient is the vector-Jacobian product with the solver's sensitivities, per subject.
    sol = solve(
        ACUTE,
        theta,
        times,
        [[], [Event(2.0, "bolus", "L", 1.0)], []],
        SolverSettings("explicit", 1e-8, 1e-10),
    )
    weights = (1.0 + arrays[0])[:, None] / sol.states[:, OBSERVED]
    per_row = np.einsum("ro,rop->rp", weights, sol.sensitivities[:, OBSERVED])
    expected = np.array([per_row[:5].sum(0), per_row[5:8].sum(0), per_row[8:].sum(0)])
    np.testing.assert_allclose(fast[3], expected, rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_batch_equals_single_subject_calls(compiled, mode, rng):
    fn = compiled[mode][0]
    theta = subjects(3, rng)
    times = [np.array([0.0, 0.5, 1.0, 2.0]), np.array([1.5, 6.0]), np.array([0.25, 3.0, 3.0, 24.0])]
    events = [[], [Event(1.0, "bolus", "L", 0.5)], []]
    obs, status, _, grad = fn(theta, *op_arrays(times, events))
    np.testing.assert_array_equal(status, SUCCESS)
    start = 0
    for s in range(3):
        single = fn(theta[s : s + 1], *op_arrays([times[s]], [events[s]]))
        rows = slice(start, start + len(times[s]))
        np.testing.assert_array_equal(obs[rows], single[0])
        np.testing.assert_allclose(grad[s], single[3][0], rtol=1e-13)
        start += len(times[s])


@pytest.mark.parametrize("mode", MODES)
def test_failed_subject_gives_nan_and_is_counted(op, compiled, mode):
    fn = compiled[mode][0]
    # d_T = 1e9/h, a TNF half-life of ~2.5 microseconds: far past the explicit method's step limit.
    theta = np.array([ACUTE.theta(ACUTE.defaults()), ACUTE.theta({**ACUTE.defaults(), "d_T": 1e9})])
    times = [np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0])]
    before = op.failures.count
    obs, status, value, grad = fn(theta, *op_arrays(times))
    np.testing.assert_array_equal(status, [SUCCESS, MAX_STEPS])
    assert np.all(np.isfinite(obs[:2])) and np.all(np.isnan(obs[2:]))
    assert np.isnan(value)
    assert op.failures.count == before + 1
    fn(theta, *op_arrays(times))
    assert op.failures.count == before + 2


def test_ops_are_identified_by_kernel_and_settings():
    settings = SolverSettings("stiff", rtol=1e-7, atol=1e-9)
    a, b = OdeSolveOp(ACUTE, settings), OdeSolveOp(ACUTE, settings)
    assert a == b and hash(a) == hash(b)
    assert a.failures is b.failures
    assert a != OdeSolveOp(ACUTE, SolverSettings("stiff", rtol=1e-6, atol=1e-9))
    assert a != OdeSolveOp(ACUTE, SolverSettings("explicit", rtol=1e-7, atol=1e-9))
    assert a != OdeSolveOp(get_model("gc_receptor"), settings)
    assert a.model_key == compile_model(ACUTE).SOURCE_HASH


def test_make_node_checks_ranks(op):
    arrays = op_arrays([np.array([1.0])])
    with pytest.raises(TypeError, match="theta must be a matrix"):
        op(ACUTE.theta(ACUTE.defaults()), *arrays)
    with pytest.raises(TypeError, match="times, row pointers and event arrays must be vectors"):
        op(subjects(1, None), arrays[0][None, :], *arrays[1:])


# ---- sampling a small PyMC model ---------------------------------------------------------------
TRUTH = {"k_T": 2500.0, "k_IT": 5.0, "r": 0.4}
SIGMA = 0.05  # log-scale measurement error


@pytest.fixture(scope="module")
def observations(seed):
    """Sample times (h) and noisy log-normal TNF, IL-6 and cortisol of one subject at ``TRUTH``."""
    rng = np.random.default_rng(seed)
    times = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0])
    truth = ACUTE.theta({**ACUTE.defaults(), **TRUTH})
    clean = solve(ACUTE, truth[None, :], [times], settings=SolverSettings(rtol=1e-10, atol=1e-10))
    return times, clean.states[:, OBSERVED] * np.exp(SIGMA * rng.standard_normal((times.size, 3)))


def build_pymc_model(observations):
    """Free log k_T, log k_IT and r (the rest fixed at the truth); log-normal likelihood."""
    times, data = observations
    truth = ACUTE.theta({**ACUTE.defaults(), **TRUTH})
    op = OdeSolveOp(ACUTE, SolverSettings("explicit", rtol=1e-8, atol=1e-8))
    names = list(ACUTE.theta_names)

    with pm.Model() as model:
        log_k_T = pm.Normal("log_k_T", np.log(1800.0), 0.82)
        log_k_IT = pm.Normal("log_k_IT", np.log(6.5), 0.82)
        r = pm.Beta("r", 2.0, 5.0)
        theta = pt.as_tensor_variable(truth)
        theta = pt.set_subtensor(theta[names.index("k_T")], pt.exp(log_k_T))
        theta = pt.set_subtensor(theta[names.index("k_IT")], pt.exp(log_k_IT))
        theta = pt.set_subtensor(theta[names.index("r")], r)
        obs = op(theta[None, :], *op_arrays([times]))[0]
        pm.Normal("log_y", mu=pt.log(obs), sigma=SIGMA, observed=np.log(data))
    return model


def _assert_near_truth(posterior):
    means = {name: float(posterior[name].mean()) for name in ("log_k_T", "log_k_IT", "r")}
    assert means["log_k_T"] == pytest.approx(np.log(TRUTH["k_T"]), abs=0.2), means
    assert means["log_k_IT"] == pytest.approx(np.log(TRUTH["k_IT"]), abs=0.2), means
    assert means["r"] == pytest.approx(TRUTH["r"], abs=0.1), means


def _pm_sample(model):
    return pm.sample(
        draws=100,
        tune=100,
        chains=2,
        cores=1,
        random_seed=1,
        progressbar=False,
        model=model,
        compute_convergence_checks=False,
    )


def test_pm_sample_with_the_op(observations):
    # Early warm-up proposals reach rates that overflow the solver (k_IT ~ 1e150): they must be
    # rejected as failed solves, never crash the sampler.
    idata = _pm_sample(build_pymc_model(observations))
    assert np.all(np.isfinite(idata.sample_stats["lp"]))
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 100
    _assert_near_truth(idata.posterior)


def test_nutpie_numba_with_the_op(observations):
    nutpie = pytest.importorskip("nutpie")
    compiled = nutpie.compile_pymc_model(build_pymc_model(observations), backend="numba")
    trace = nutpie.sample(compiled, draws=100, tune=100, chains=2, seed=1, progress_bar=False)
    assert np.all(np.isfinite(trace.sample_stats["logp"]))
    assert trace.posterior.sizes["chain"] == 2 and trace.posterior.sizes["draw"] == 100
    _assert_near_truth(trace.posterior)


# ---- erfcx: the censored likelihood stays cacheable -------------------------------------------
def test_erfcx_matches_scipy():
    import scipy.special

    from inference.op import erfcx

    x = np.concatenate([np.linspace(-26.0, 60.0, 4001), np.logspace(-3, 6, 200), [25.9999, 26.0, 26.0001]])
    got = np.array([erfcx(v) for v in x])
    np.testing.assert_allclose(got, scipy.special.erfcx(x), rtol=1e-13, atol=0)
    assert erfcx(-30.0) == np.inf


def test_censored_normal_log_cdf_compiles_to_a_cacheable_numba_graph():
    """PyMC's normal log-CDF (the term of a value below the LLOQ) uses erfcx; PyTensor's own
    numba erfcx calls scipy through a function pointer and makes the whole graph uncacheable."""
    import scipy.stats
    from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key

    x = pt.dvector("x")
    log_cdf = pm.logcdf(pm.Normal.dist(0.0, 1.0), x)
    fn = pytensor.function([x], log_cdf, mode="NUMBA")
    _, key = numba_funcify_and_cache_key(fn.maker.fgraph)
    assert key is not None
    values = np.array([-40.0, -10.0, -1.5, -1.0, -0.3, 0.0, 2.0, 5.0])
    # The same graph in the C backend (scipy's erfcx); PyMC's formula itself is good to ~1e-7.
    c_backend = pytensor.function([x], log_cdf, mode="FAST_RUN")
    np.testing.assert_allclose(fn(values), c_backend(values), rtol=1e-13)
    np.testing.assert_allclose(fn(values), scipy.stats.norm.logcdf(values), rtol=1e-6)
