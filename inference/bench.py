"""Benchmark: the cost of one log density + gradient evaluation on the reference problem.

Run ``python -m inference.bench``. The reference problem is the ``acute_inflammation`` model at
its prior medians with a 2 ng/kg endotoxin dose, 9 sample times over 0-8 h, TNF-alpha, IL-6 and
cortisol observed with log-normal noise, solved at rtol = atol = 1e-6. Each section times one
way of computing the log-likelihood and its gradient with respect to all 15 entries of theta:

``compiled``
    the model's numba kernel (states + forward sensitivities) and the likelihood, one numba call;
``pytensor``
    the PyTensor graph theta -> ``OdeSolveOp`` -> log-normal log density + gradient, compiled in
    NUMBA mode (what nutpie runs) and, for reference, in the default C mode;
``scipy``
    ``scipy.integrate.solve_ivp`` on the augmented forward-sensitivity system (states + dS/dtheta)
    with a numba right-hand side built from the model's generated ``rhs`` and ``sens_rhs``;
``cohort``
    the full PyMC log density + gradient (NUMBA mode) of the hierarchical model of the first 8
    subjects of the shipped cohort (``data/cohort``), per subject;
``solvers``
    every registered solver method (steps, rejected steps, LU factorisations, time per solve with
    sensitivities, error against scipy's Radau at rtol 1e-12) on both library models (prior
    medians, 11 samples over 24 h, rtol = atol = 1e-6 and the fits' 1e-4) and on the classic
    stiff test problems of ``models.problems`` (rtol 1e-6), with the issue-14 targets checked in
    the same run at both tolerances;
``nuts``
    NUTS end to end with nutpie and with ``pm.sample``: on the shipped single-subject example and
    on the 8-subject cohort subset (default options, 4 chains, ``--draws`` draws and tuning
    steps): compile time, sampling time, minimum bulk ESS and ESS per second. It takes minutes;
    ``--sections compiled,pytensor,scipy`` leaves it out.
``batch``
    the per-task overhead of ``fit_many`` (build, compile, log-likelihood, predictive draws,
    writing) on one Dask worker, compiling per task against one compile per layout. Minutes.
``scaling``
    simulated cohorts of the shipped design (``--subjects``, default 1, 8, 32, 128): value +
    gradient per subject (CPU time), and where ``--scaling-draws`` is not 0 a default nutpie fit
    and a cached second start, each in a fresh process (peak memory, time to the first draw).
    Hours with the defaults; ``--subjects 1,2 --scaling-draws 0,0`` is the quick form.

Human-readable lines come first; the last line is one JSON object (``grad_us``, ``logp_grad_us``,
``scipy_grad_us``, ``speedup`` = scipy / compiled, and extras). Times are medians over
``--repeat`` calls after a warm-up, in microseconds. A new section is a function
``(problem, repeat) -> dict`` added to :data:`SECTIONS`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba
import numpy as np

from models import SolverSettings, get_model
from models.codegen import compile_model
from models.problems import PROBLEMS
from models.solvers import METHODS, kernel, pack_events, pack_times, solve
from models.spec import OdeModel

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Problem:
    """One subject's data and everything a section needs to evaluate its log-likelihood."""

    model: OdeModel
    settings: SolverSettings
    theta: np.ndarray  # (n_theta,), parameters then inputs
    times: np.ndarray  # sample times (h)
    observed: np.ndarray  # state index of each observable
    log_data: np.ndarray  # (n_times, n_observables), log of the simulated observations
    sigma: float  # sd of the log-normal noise


def reference_problem(rtol: float = 1e-6, method: str = "explicit", seed: int = 0) -> Problem:
    """Build the reference problem: the prior-median ``acute_inflammation`` subject, dose 2 ng/kg."""
    model = get_model("acute_inflammation")
    theta = model.theta(model.defaults(), {"dose": 2.0})
    times = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])
    observed = model.observable_states()
    sigma = 0.3
    truth = solve(model, theta[None, :], [times], settings=SolverSettings("explicit", 1e-10, 1e-10))
    noise = np.random.default_rng(seed).normal(0.0, sigma, (times.size, observed.size))
    log_data = np.log(truth.states[:, observed]) + noise
    return Problem(model, SolverSettings(method, rtol, rtol), theta, times, observed, log_data, sigma)


def median_us(fn: Callable[[], object], repeat: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median time of ``fn()`` in microseconds, after ``repeat // 10 + 5`` warm-up calls.

    ``clock`` is wall time by default; ``time.thread_time`` gives the calling thread's CPU time,
    which a busy shared machine does not inflate (a call longer than the scheduler's time slice
    is preempted, so wall time grows with the load and with the length of the call).
    """
    for _ in range(repeat // 10 + 5):
        fn()
    samples = np.empty(repeat)
    for i in range(repeat):
        start = clock()
        fn()
        samples[i] = clock() - start
    return float(np.median(samples) * 1e6)


@numba.njit(cache=True)
def lognormal_logp_grad(Y, SY, observed, log_data, sigma):
    """Log-normal log-likelihood of one subject's data and its gradient from the sensitivities."""
    n_theta = SY.shape[2]
    grad = np.zeros(n_theta)
    logp = 0.0
    for r in range(log_data.shape[0]):
        for j in range(observed.shape[0]):
            x = Y[r, observed[j]]
            z = (math.log(x) - log_data[r, j]) / sigma
            logp -= 0.5 * z * z + math.log(sigma) + log_data[r, j] + 0.5 * LOG_2PI
            # d logp / d x = -z / (sigma x), chained with d x / d theta.
            w = -z / (sigma * x)
            for p in range(n_theta):
                grad[p] += w * SY[r, observed[j], p]
    return logp, grad


# ---- sections ---------------------------------------------------------------------------------
def section_compiled(problem: Problem, repeat: int) -> dict:
    """Time the solver kernel and the likelihood in one numba call (no Python in the loop)."""
    solver = kernel(problem.model, problem.settings.method)
    s = problem.settings

    @numba.njit
    def value_and_grad(theta, t_out, row_ptr, ev_time, ev_kind, ev_index, ev_value, ev_ptr,
                       observed, log_data, sigma, rtol, atol, max_steps):
        Y, SY, status, steps = solver(theta, t_out, row_ptr, ev_time, ev_kind, ev_index, ev_value,
                                      ev_ptr, rtol, atol, max_steps)
        logp, grad = lognormal_logp_grad(Y, SY, observed, log_data, sigma)
        return logp, grad, steps[0, 0]

    t_out, row_ptr = pack_times([problem.times])
    ev = pack_events(problem.model, [[]])
    args = (problem.theta[None, :], t_out, row_ptr, ev.time, ev.kind, ev.index, ev.value, ev.ptr,
            problem.observed, problem.log_data, problem.sigma, s.rtol, s.atol, s.max_steps)
    logp, grad, steps = value_and_grad(*args)
    us = median_us(lambda: value_and_grad(*args), repeat)
    print(f"compiled kernel + likelihood   {us:9.1f} us   ({s.method}, {steps} steps, logp {logp:.6f})")
    return {"grad_us": us, "steps": int(steps), "logp": float(logp), "grad": grad}


def _pytensor_logp_grad(problem: Problem, mode: str | None):
    import pytensor
    import pytensor.tensor as pt

    from inference.op import OdeSolveOp

    theta = pt.dvector("theta")
    t_out, row_ptr = pack_times([problem.times])
    ev = pack_events(problem.model, [[]])
    op = OdeSolveOp(problem.model, problem.settings)
    obs, _, _ = op(theta[None, :], t_out, row_ptr, ev.time, ev.kind, ev.index, ev.value, ev.ptr)
    z = (pt.log(obs) - problem.log_data) / problem.sigma
    logp = -pt.sum(0.5 * z**2 + math.log(problem.sigma) + problem.log_data + 0.5 * LOG_2PI)
    fn = pytensor.function([theta], [logp, pytensor.grad(logp, theta)], mode=mode)
    fn.trust_input = True  # as a sampler calls it: inputs already float64 arrays
    return fn


def section_pytensor(problem: Problem, repeat: int) -> dict:
    """Time the PyTensor log density + gradient in NUMBA mode (nutpie's backend) and C mode."""
    result = {}
    for key, mode, label in (("logp_grad_us", "NUMBA", "NUMBA"), ("logp_grad_c_us", None, "C (default)")):
        fn = _pytensor_logp_grad(problem, mode)
        logp, grad = fn(problem.theta)
        us = median_us(lambda fn=fn: fn(problem.theta), repeat)
        print(f"pytensor logp+grad, {label:11s} {us:9.1f} us   (logp {float(logp):.6f})")
        result[key] = us
        result.setdefault("pytensor_grad", grad)
    return result


def _augmented_rhs(model: OdeModel):
    """Numba right-hand side of (y, S) from the model's generated ``rhs`` and ``sens_rhs``."""
    module = compile_model(model)
    rhs, sens_rhs, n, q = module.rhs, module.sens_rhs, module.N_STATES, module.N_THETA

    active = np.ones(q)  # no events: every theta entry keeps acting

    @numba.njit
    def augmented(t, z, theta):
        dz = np.empty_like(z)
        rhs(t, z[:n], theta, dz[:n])
        sens_rhs(t, z[:n], theta, active, z[n:].reshape((n, q)), dz[n:].reshape((n, q)))
        return dz

    return augmented


def scipy_value_and_grad(problem: Problem, method: str, fun) -> tuple[float, np.ndarray, int]:
    """Log-likelihood and gradient through ``solve_ivp`` on the augmented system."""
    from scipy.integrate import solve_ivp

    model, theta = problem.model, problem.theta
    n, q = len(model.state_names), theta.size
    z0 = np.empty(n + n * q)
    compile_model(model).initial(theta, z0[:n])
    compile_model(model).initial_jac(theta, z0[n:].reshape(n, q))
    sol = solve_ivp(fun, (0.0, problem.times[-1]), z0, method=method, t_eval=problem.times,
                    args=(theta,), rtol=problem.settings.rtol, atol=problem.settings.atol)
    x = sol.y[problem.observed].T  # (n_times, n_observables)
    sens = sol.y[n:].reshape(n, q, -1)[problem.observed].transpose(2, 0, 1)
    z = (np.log(x) - problem.log_data) / problem.sigma
    logp = -np.sum(0.5 * z**2 + math.log(problem.sigma) + problem.log_data + 0.5 * LOG_2PI)
    grad = np.einsum("ro,rop->p", -z / (problem.sigma * x), sens)
    return float(logp), grad, int(sol.nfev)


def section_scipy(problem: Problem, repeat: int) -> dict:
    """``solve_ivp`` baselines; the fastest method is the one the speedup is measured against."""
    fun = _augmented_rhs(problem.model)
    timings = {}
    result = {}
    for method in ("LSODA", "RK45", "DOP853"):
        logp, grad, nfev = scipy_value_and_grad(problem, method, fun)
        us = median_us(lambda m=method: scipy_value_and_grad(problem, m, fun), max(10, repeat // 10))
        timings[method] = us
        print(f"scipy solve_ivp {method:6s} + numba  {us:9.1f} us   ({nfev} rhs calls, logp {logp:.6f})")
        result.setdefault("scipy_grads", {})[method] = grad
    best = min(timings, key=timings.get)
    result.update(scipy_grad_us=timings[best], scipy_method=best,
                  scipy_us={m: round(t, 1) for m, t in timings.items()})
    return result


COHORT = "data/cohort/observations.csv"
SINGLE = "data/single_subject/observations.csv"
COHORT_SUBJECTS = 8


def _cohort_dataset():
    from inference.data import load_dataset

    cohort = load_dataset(COHORT)
    return cohort.select(cohort.subject_ids[:COHORT_SUBJECTS])


def section_cohort(problem: Problem, repeat: int) -> dict:
    """Time the hierarchical cohort log density + gradient (PyMC model, NUMBA mode) per subject."""
    import pytensor

    from inference.build import build_model, default_options

    dataset = _cohort_dataset()
    pm_model = build_model(problem.model, dataset, default_options(problem.model, dataset))
    logp = pm_model.logp()
    fn = pytensor.function(pm_model.value_vars, [logp, *pytensor.grad(logp, pm_model.value_vars)],
                           mode="NUMBA")
    point = pm_model.initial_point()
    args = [point[v.name] for v in pm_model.value_vars]
    us = median_us(lambda: fn(*args), max(repeat // 10, 10))
    n = len(dataset.subject_ids)
    print(f"cohort logp+grad ({n} subjects, {len(dataset.observations)} samples, NUMBA) "
          f"{us:9.1f} us = {us / n:.1f} us per subject")
    return {"cohort_logp_grad_us": us, "cohort_logp_grad_per_subject_us": us / n}


def section_nuts(problem: Problem, repeat: int, draws: int = 1000) -> dict:
    """Sample the single-subject example and the cohort subset with nutpie and with pm.sample."""
    import arviz as az

    from inference.data import load_dataset
    from inference.fit import fit

    result = {}
    for label, dataset in (("single", load_dataset(SINGLE)), ("cohort8", _cohort_dataset())):
        for sampler in ("nutpie", "pymc"):
            idata = fit(problem.model, dataset, sampler=sampler, draws=draws, tune=draws, chains=4,
                        seed=1, progress=False)
            names = [v for v in idata.posterior.data_vars if v != "theta"]
            ess = az.ess(idata, var_names=names, method="bulk")
            min_ess = min(float(ess[v].min()) for v in names)
            sampling = float(idata.attrs["sampling_seconds"])
            compile_s = float(idata.attrs["compile_seconds"])
            divergences = int(idata.sample_stats["diverging"].sum())
            print(f"NUTS {label:8s} {sampler:6s}: compile {compile_s:6.1f} s, sampling {sampling:7.1f} s, "
                  f"min bulk ESS {min_ess:7.0f}, ESS/s {min_ess / sampling:7.2f}, "
                  f"divergences {divergences}")
            result[f"nuts_{label}_{sampler}"] = {
                "compile_s": round(compile_s, 1), "sampling_s": round(sampling, 1),
                "min_ess_bulk": round(min_ess), "ess_per_s": round(min_ess / sampling, 2),
                "divergences": divergences,
            }
    return result


def section_batch(problem: Problem, repeat: int) -> dict:
    """Per-task overhead of ``fit_many``: a compile per task against one compile per layout.

    Three simulated single-subject datasets with the shipped design (short runs: 2 chains x 100
    draws) on one embedded Dask worker, once compiling every task and once reusing the compiled
    model of the layout. Overhead = task wall time minus sampling time; the first task of a
    worker also pays for worker start-up and numba cache loads.
    """
    import tempfile

    from inference.batch import fit_many
    from inference.build import ModelOptions
    from inference.data import load_dataset
    from inference.sampler import SamplerSettings
    from inference.validate import design_from_dataset, replicate_tasks, simulate_replicates

    design = design_from_dataset(problem.model, load_dataset(SINGLE))
    replicates = simulate_replicates(problem.model, design, ModelOptions(), 3, seed=1)
    tasks = replicate_tasks(problem.model, replicates, ModelOptions(), SamplerSettings(draws=100, tune=100,
                                                                                      chains=2), seed=1)
    result = {}
    for label, reuse in (("compile_per_task", False), ("reuse_per_layout", True)):
        with tempfile.TemporaryDirectory() as out:
            outcomes = fit_many(tasks, out_dir=out, workers=1, reuse_compiled=reuse, progress=False).outcomes
        failed = [o.error for o in outcomes if o.status != "done"]
        if failed:
            raise RuntimeError(f"batch benchmark: a fit failed: {failed[0]}")
        overheads = [o.overhead_seconds for o in outcomes]
        print(f"fit_many {label:17s}: per task " + ", ".join(
            f"{o.seconds:5.1f} s (compile {o.compile_seconds:5.1f} s, sampling {o.sampling_seconds:4.1f} s)"
            for o in outcomes))
        result[f"batch_{label}_overhead_s"] = [round(v, 1) for v in overheads]
    warm_before = np.mean(result["batch_compile_per_task_overhead_s"][1:])
    warm_after = np.mean(result["batch_reuse_per_layout_overhead_s"][1:])
    result["batch_overhead_ratio"] = round(float(warm_before / warm_after), 1)
    print(f"per-task overhead on a warm worker: {warm_before:.1f} s compiling per task, {warm_after:.1f} s "
          f"reusing the layout's compiled model ({result['batch_overhead_ratio']:.1f}x less)")
    return result


# ---- scaling with the number of subjects ------------------------------------------------------
SCALING_SUBJECTS = (1, 8, 32, 128)
#: NUTS draws (= tuning steps) per chain for each cohort size of the scaling section; 0: no NUTS.
SCALING_DRAWS = (1000, 1000, 1000, 100)


def _scaling_cohort(n_subjects: int):
    """(model, dataset, options, PyMC model) of a simulated cohort of the shipped design."""
    from inference.build import build_model, default_options
    from inference.synthetic import simulate_cohort

    model = get_model("acute_inflammation")
    dataset = simulate_cohort(n_subjects)[1]
    options = default_options(model, dataset)
    return model, dataset, options, build_model(model, dataset, options)


def _calls(fn: Callable[[], object], repeat: int, budget_s: float = 1.0) -> int:
    """Return how many calls ``median_us`` should time: ``repeat``, fewer where a call is slow."""
    start = time.perf_counter()
    fn()
    return max(5, min(repeat, int(budget_s / max(time.perf_counter() - start, 1e-7))))


def scaling_logp_row(n_subjects: int, repeat: int) -> dict:
    """Cost of one log density + gradient of an ``n_subjects`` cohort, in total and per subject.

    Times are CPU time of the calling thread (median), not wall time: on a loaded machine the
    wall time of a long call (128 subjects, ~6 ms) grows with preemption, which made per-subject
    costs look 5x higher at 128 subjects than at 8 while the CPU time per subject was flat.

    ``solver``: the batch kernel alone (states and sensitivities of every subject, one numba
    call); ``graph``: the whole PyMC log density and gradient compiled in NUMBA mode (what nutpie
    runs). Both at the model's initial point; ``logp``/``grad`` are the graph's values there and
    ``logp_c``/``grad_c`` PyMC's own (C mode) for comparison.
    """
    import pytensor

    from inference.build import layout, subject_events

    model, dataset, options, pm_model = _scaling_cohort(n_subjects)
    point = pm_model.initial_point()
    args = [point[v.name] for v in pm_model.value_vars]
    theta = np.ascontiguousarray(pm_model.compile_fn(pm_model["theta"], inputs=pm_model.value_vars,
                                                     point_fn=False, on_unused_input="ignore")(*args))
    t_out, row_ptr = pack_times(layout(model, dataset).times)
    ev = pack_events(model, subject_events(model, dataset))
    s = options.solver
    solver = kernel(model, s.method)
    solver_args = (theta, t_out, row_ptr, ev.time, ev.kind, ev.index, ev.value, ev.ptr, s.rtol, s.atol,
                   s.max_steps)
    steps = int(solver(*solver_args)[3][:, 0].sum())
    solver_us = median_us(lambda: solver(*solver_args), _calls(lambda: solver(*solver_args), repeat),
                          time.thread_time)

    logp = pm_model.logp()
    fn = pytensor.function(pm_model.value_vars, [logp, *pytensor.grad(logp, pm_model.value_vars)],
                           mode="NUMBA")
    fn.trust_input = True
    value, *grad = fn(*args)
    graph_us = median_us(lambda: fn(*args), _calls(lambda: fn(*args), repeat), time.thread_time)
    return {
        "subjects": n_subjects, "samples": len(dataset.observations), "free": int(sum(a.size for a in args)),
        "solver_steps": steps, "solver_us": solver_us, "solver_per_subject_us": solver_us / n_subjects,
        "graph_us": graph_us, "graph_per_subject_us": graph_us / n_subjects,
        "logp": float(value), "grad": np.concatenate([np.ravel(g) for g in grad]),
        "logp_c": float(pm_model.compile_logp()(point)),
        "grad_c": np.asarray(pm_model.compile_dlogp()(point), float),
    }


def _nuts_row(n_subjects: int, draws: int, seed: int) -> dict:
    """Fit an ``n_subjects`` cohort by nutpie (4 chains); run in a fresh process (peak memory)."""
    import resource

    import arviz as az

    from inference.fit import fit

    model, dataset, options, _ = _scaling_cohort(n_subjects)
    start = time.perf_counter()
    idata = fit(model, dataset, options, draws=draws, tune=draws, chains=4, seed=seed, progress=False)
    wall = time.perf_counter() - start
    names = [v for v in idata.posterior.data_vars if v != "theta"]
    ess = az.ess(idata, var_names=names, method="bulk")
    rhat = az.rhat(idata, var_names=names)
    compile_s, sampling_s = (float(idata.attrs[k]) for k in ("compile_seconds", "sampling_seconds"))
    min_ess = min(float(ess[v].min()) for v in names)
    gradients = int(idata.sample_stats["n_steps"].sum())  # leapfrog steps of the kept draws
    return {
        "draws": draws, "ess_per_1k_gradients": round(1000 * min_ess / gradients, 2),
        "mean_steps": round(gradients / idata.sample_stats["n_steps"].size, 1),
        "compile_s": round(compile_s, 1), "sampling_s": round(sampling_s, 1),
        "fit_s": round(wall, 1), "min_ess_bulk": round(min_ess),
        "ess_per_s": round(min_ess / (compile_s + sampling_s), 2),
        "ess_per_sampling_s": round(min_ess / sampling_s, 2),
        "max_rhat": round(max(float(rhat[v].max()) for v in names), 3),
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _start_row(n_subjects: int) -> dict:
    """Seconds from a fresh process to nutpie's first draw: imports, build, compile, one draw."""
    start = time.perf_counter()
    import nutpie  # noqa: F401  (timed: part of a start)
    import pymc  # noqa: F401

    imported = time.perf_counter()
    *_, pm_model = _scaling_cohort(n_subjects)
    built = time.perf_counter()
    compiled = nutpie.compile_pymc_model(pm_model, backend="numba")
    ready = time.perf_counter()
    nutpie.sample(compiled, draws=1, tune=1, chains=1, seed=0, progress_bar=False)
    first = time.perf_counter()
    return {"import_s": round(imported - start, 1), "build_s": round(built - imported, 1),
            "compile_s": round(ready - built, 1), "first_draw_s": round(first - ready, 1),
            "to_first_draw_s": round(first - imported, 1)}


def _in_fresh_process(fn: Callable, *args):
    """Run ``fn(*args)`` in a new spawned Python process (its own memory peak, cold imports)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def section_scaling(problem: Problem, repeat: int, subjects: Sequence[int] = SCALING_SUBJECTS,
                    draws: Sequence[int] = SCALING_DRAWS) -> dict:
    """How the cost grows with the number of subjects (simulated cohorts of the shipped design).

    For each cohort size: log density + gradient (solver alone and PyMC graph, total and per
    subject); where ``draws`` > 0, a default nutpie fit (4 chains x ``draws`` tuning + draws) in
    a fresh process (compile and sampling time, min bulk ESS, ESS/s with and without compile,
    max R-hat, divergences, peak resident memory), then the start of the same model in a second
    fresh process with every compile cache warm (seconds to the first draw, imports excluded).
    """
    rows = {}
    for n, n_draws in zip(subjects, draws, strict=True):
        row = scaling_logp_row(n, repeat)
        if n_draws > 0:
            row["nuts"] = _in_fresh_process(_nuts_row, n, n_draws, 1)
            row["start"] = _in_fresh_process(_start_row, n)
        rows[n] = row
        print(_scaling_line(row), flush=True)
    return {"scaling": rows}


SCALING_HEADER = ("subjects | samples | solver us (per subject) | graph us (per subject) | draws | compile s "
                  "| sampling s | min bulk ESS | ESS/s total (sampling) | ESS per 1k gradients | max R-hat "
                  "| divergences | peak MB | cached start s")


def _scaling_line(row: dict) -> str:
    cells = [f"{row['subjects']}", f"{row['samples']}",
             f"{row['solver_us']:.0f} ({row['solver_per_subject_us']:.1f})",
             f"{row['graph_us']:.0f} ({row['graph_per_subject_us']:.1f})"]
    if "nuts" in row:
        r, st = row["nuts"], row["start"]
        cells += [f"{r['draws']}", f"{r['compile_s']:.1f}", f"{r['sampling_s']:.1f}", f"{r['min_ess_bulk']}",
                  f"{r['ess_per_s']:.2f} ({r['ess_per_sampling_s']:.2f})", f"{r['ess_per_1k_gradients']:.1f}",
                  f"{r['max_rhat']:.3f}",
                  f"{r['divergences']}", f"{r['peak_mb']}", f"{st['to_first_draw_s']:.1f}"]
    else:
        cells += ["no NUTS"] + [""] * 9
    return "| " + " | ".join(cells) + " |"


def _scaling_targets(rows: dict) -> str:
    """Check the targets of issue 11 on the measured rows; return the lines to print."""
    lines = []
    if 8 in rows and 128 in rows:
        ratio = rows[128]["graph_per_subject_us"] / rows[8]["graph_per_subject_us"]
        lines.append(f"target {'met' if ratio <= 1.2 else 'NOT met'}: value + gradient per subject at 128 "
                     f"subjects within 1.2x of 8: {ratio:.2f}x")
    nuts = rows.get(32, {}).get("nuts")
    if nuts and nuts["draws"] == 1000:
        ok = (nuts["fit_s"] < 600 and nuts["min_ess_bulk"] >= 400 and nuts["max_rhat"] <= 1.01
              and nuts["divergences"] == 0)
        lines.append(f"target {'met' if ok else 'NOT met'}: 32-subject fit under 600 s "
                     f"({nuts['fit_s']:.0f} s), "
                     f"min bulk ESS >= 400 ({nuts['min_ess_bulk']}), R-hat <= 1.01 ({nuts['max_rhat']:.3f}), "
                     f"no divergences ({nuts['divergences']})")
    for n, row in rows.items():
        if "start" in row:
            s = row["start"]["to_first_draw_s"]
            lines.append(f"target {'met' if s < 10 else 'NOT met'}: cached start of the {n}-subject fit "
                         f"under 10 s: {s:.1f} s")
    return "\n".join(lines)


def _radau(model: OdeModel, theta: np.ndarray, times: np.ndarray, atol: float) -> np.ndarray:
    """States at ``times`` from scipy's Radau at rtol 1e-12 (compiled right-hand side and Jacobian).

    The generated right-hand side is checked against the model's plain float evaluation in the
    code-generation tests; compiled, it keeps the Van der Pol reference (tens of thousands of
    Radau steps) to seconds instead of the minutes a Python right-hand side takes.
    """
    from scipy.integrate import solve_ivp

    module = compile_model(model)
    n = len(model.state_names)

    def rhs(t, y):
        out = np.empty(n)
        module.rhs(t, y, theta, out)
        return out

    def jacobian(t, y):
        out = np.empty((n, n))
        module.jac(t, y, theta, out)
        return out

    sol = solve_ivp(rhs, (0.0, times[-1]),
                    model.evaluate_initial(theta), method="Radau", t_eval=times, rtol=1e-12,
                    atol=atol * 1e-3, jac=jacobian)
    return sol.y.T


def _solver_cases():
    """(label, model, theta, sample times, rtol, atol) of the solver comparison.

    The library models at rtol 1e-6 (labelled by name) and at the fits' tolerance (``FIT_SOLVER``,
    labelled ``name, rtol 0.0001``).
    """
    from inference.op import FIT_SOLVER

    for rtol, atol in ((1e-6, 1e-6), (FIT_SOLVER.rtol, FIT_SOLVER.atol)):
        for name in ("acute_inflammation", "gc_receptor"):
            model = get_model(name)
            label = name if rtol == 1e-6 else f"{name}, rtol {rtol:g}"
            yield label, model, model.theta(model.defaults()), np.linspace(0.0, 24.0, 11), rtol, atol
    for name, problem in PROBLEMS.items():
        model = problem.model
        times = np.linspace(0.0, problem.t_end, 11)
        yield name, model, model.theta(model.defaults()), times, 1e-6, problem.atol


def section_solvers(problem: Problem, repeat: int) -> dict:
    """Compare every registered method on the library models and the stiff test problems."""
    print(f"{'problem':32s} {'method':9s} {'steps':>7s} {'rejected':>8s} {'LU':>6s} {'switched':>8s} "
          f"{'us/solve':>10s} {'max rel. error':>14s}")
    table = {}
    for label, model, theta, times, rtol, atol in _solver_cases():
        reference = _radau(model, theta, times, atol)
        t_out, row_ptr = pack_times([times])
        ev = pack_events(model, [[]])
        for method in METHODS:
            solver = kernel(model, method)
            args = (theta[None, :], t_out, row_ptr, ev.time, ev.kind, ev.index, ev.value, ev.ptr,
                    rtol, atol, 20_000)
            states, _, status, counts = solver(*args)
            steps, rejected, lu, switched = (int(c) for c in counts[0])
            row = {"steps": steps, "rejected": rejected, "lu": lu, "switched": bool(switched),
                   "status": int(status[0])}
            if status[0] == 0:
                calls = max(5, min(repeat // 10, int(0.2 / max(_seconds(solver, args), 1e-7))))
                row["us"] = round(median_us(lambda s=solver, a=args: s(*a), calls), 1)
                row["error"] = float(np.max(np.abs(states - reference) / (np.abs(reference) + atol)))
                shown = f"{row['us']:10.1f} {row['error']:14.1e}"
            else:
                shown = f"{'failed: ' + str(status[0]):>25s}"
            print(f"{label:32s} {method:9s} {steps:7d} {rejected:8d} {lu:6d} {switched:8d} {shown}")
            table.setdefault(label, {})[method] = row
    print(_solver_targets(table))
    return {"solvers": table}


def _seconds(solver, args) -> float:
    start = time.perf_counter()
    solver(*args)
    return time.perf_counter() - start


def _solver_targets(table: dict) -> str:
    """Check the targets of issue 14 on the measured table (both tolerances); return the lines to print."""
    lines = []

    def check(ok: bool, text: str) -> None:
        lines.append(f"target {'met' if ok else 'NOT met'}: {text}")

    for acute_label, gc_label in ((label, label.replace("acute_inflammation", "gc_receptor"))
                                  for label in table if label.startswith("acute_inflammation")):
        acute, gc = table[acute_label], table[gc_label]
        ratio = acute["rodas5"]["us"] / acute["explicit"]["us"]
        check(ratio <= 2.0, f"stiff path (rodas5) on {acute_label} within 2x of explicit: {ratio:.2f}x")
        ratio = gc["explicit"]["us"] / gc["rodas5"]["us"]
        check(ratio >= 2.0, f"rodas5 on {gc_label} at least 2x faster than explicit: {ratio:.2f}x")
        for label, row in ((acute_label, acute), (gc_label, gc)):
            best = min(row["explicit"]["us"], row["rodas5"]["us"])
            ratio = row["auto"]["us"] / best
            check(ratio <= 1.3, f"auto on {label} within 1.3x of the better method: {ratio:.2f}x")
    return "\n".join(lines)


SECTIONS: dict[str, Callable[[Problem, int], dict]] = {
    "compiled": section_compiled,
    "pytensor": section_pytensor,
    "scipy": section_scipy,
    "cohort": section_cohort,
    "solvers": section_solvers,
    "nuts": section_nuts,
    "batch": section_batch,
    "scaling": section_scaling,
}


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 0, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark sections, print a report and, last, one JSON line; return that dict."""
    parser = argparse.ArgumentParser(prog="python -m inference.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2000,
                        help="timed calls per measurement (scipy: a tenth, at least 10); default 2000")
    parser.add_argument("--draws", type=int, default=1000,
                        help="NUTS draws and tuning steps per chain in the nuts section; default 1000")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--subjects", type=_int_list, default=SCALING_SUBJECTS,
                        help="cohort sizes of the scaling section; default "
                             + ",".join(map(str, SCALING_SUBJECTS)))
    parser.add_argument("--scaling-draws", type=_int_list, default=None,
                        help="NUTS draws (= tuning steps) per chain for each cohort size, 0 for none; "
                             "default " + ",".join(map(str, SCALING_DRAWS)) + " (fewer at 128, labelled)")
    args = parser.parse_args(argv)
    if args.scaling_draws is None:
        defaults = dict(zip(SCALING_SUBJECTS, SCALING_DRAWS, strict=True))
        args.scaling_draws = [defaults.get(n, args.draws) for n in args.subjects]
    if len(args.scaling_draws) != len(args.subjects):
        parser.error("--scaling-draws needs one value per --subjects entry")
    names = [n.strip() for n in args.sections.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown or args.repeat < 1:
        parser.error(f"unknown sections {unknown}" if unknown else "--repeat must be positive")

    problem = reference_problem()
    print(f"reference problem: {problem.model.name}, dose 2 ng/kg, {problem.times.size} sample times "
          f"0-{problem.times[-1]:g} h, {problem.theta.size} parameters, method {problem.settings.method}, "
          f"rtol {problem.settings.rtol:g}, atol {problem.settings.atol:g}; median of {args.repeat} calls")
    results: dict = {"method": problem.settings.method, "rtol": problem.settings.rtol}
    for name in names:
        if name == "nuts":
            results.update(section_nuts(problem, args.repeat, args.draws))
        elif name == "scaling":
            print(SCALING_HEADER)
            results.update(section_scaling(problem, args.repeat, args.subjects, args.scaling_draws))
            print(_scaling_targets(results["scaling"]))
        else:
            results.update(SECTIONS[name](problem, args.repeat))

    # Every way must compute the same gradient; say how far apart they are.
    if "grad" in results:
        for key, grad in [("pytensor_grad", results.get("pytensor_grad")),
                          *results.get("scipy_grads", {}).items()]:
            if grad is not None:
                print(f"gradient agreement, {key} vs compiled: max relative difference "
                      f"{_relative_difference(grad, results['grad']):.1e}")
    if "grad_us" in results and "scipy_grad_us" in results:
        results["speedup"] = results["scipy_grad_us"] / results["grad_us"]
        print(f"speedup (scipy {results['scipy_method']} / compiled): {results['speedup']:.1f}x")
    if "logp_grad_us" in results and "scipy_grad_us" in results:
        results["speedup_logp_grad"] = results["scipy_grad_us"] / results["logp_grad_us"]
        print(f"speedup (scipy {results['scipy_method']} / pytensor NUMBA): "
              f"{results['speedup_logp_grad']:.1f}x")

    summary = {k: (round(v, 2) if isinstance(v, float) and (k.endswith("_us") or k.startswith("speedup"))
                   else v)
               for k, v in results.items()
               if not isinstance(v, np.ndarray | dict) or k in ("scipy_us", "solvers")
               or k.startswith("nuts_")}
    if "scaling" in results:
        summary["scaling"] = {n: {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()
                                  if not isinstance(v, np.ndarray)}
                              for n, row in results["scaling"].items()}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
