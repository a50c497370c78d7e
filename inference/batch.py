"""Many fits at once on Dask distributed: per-subject fits, simulation studies, refits.

:func:`fit_many` runs a list of :class:`FitTask` on a ``dask.distributed`` cluster: an embedded
:class:`~distributed.LocalCluster` sized to the machine by default, or an existing cluster
(``client=`` here, ``--scheduler ADDRESS`` on the command line). Each finished fit is written at
once, atomically, to its own netCDF file named after the task and a hash of everything that
determines it (model, options, data, seed, sampler settings); a rerun skips the tasks whose file
exists, so an interrupted study resumes where it stopped. A failing task is reported with its
error and the others go on.

Sizing: each Dask worker runs one task at a time (one thread). nutpie samples a fit's chains on
``min(chains, cpu count)`` threads of its own, so the embedded cluster starts
``cpu count // min(chains, cpu count)`` workers: the chains of all running fits together use the
machine's cores once, never more (numba and the sampler do not oversubscribe).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from models import OdeModel, get_model
from models.codegen import source_hash
from models.user import resolve_model_file

from .build import ModelOptions, default_options
from .data import DataError, Dataset
from .sampler import SamplerSettings

__all__ = [
    "BatchResult", "FitTask", "ManifestError", "TaskOutcome", "connect", "default_workers",
    "fit_many", "fit_task", "read_manifest", "subject_tasks",
]


@dataclass(frozen=True)
class FitTask:
    """One fit: a model, a dataset, options, a seed and sampler settings.

    Parameters
    ----------
    name
        Label of the task (letters, digits, ``-``, ``_``, ``.``): the stem of its result file.
    model
        Library name or model object.
    dataset
        A validated dataset.
    options
        Model options; ``None`` means :func:`~inference.build.default_options` for the dataset.
    seed
        Seed of the fit (it replaces ``sampler.seed``: tasks of one study share their settings
        and differ in seed).
    sampler
        NUTS settings.
    attrs
        Extra text attributes stored in the result (e.g. the true parameters of a simulation).
    """

    name: str
    model: str | OdeModel
    dataset: Dataset
    options: ModelOptions | None = None
    seed: int = 0
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    attrs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(f"task name must be letters, digits, '-', '_' or '.', got {self.name!r}")
        if self.options is None:
            object.__setattr__(self, "options", default_options(self.model, self.dataset))

    def key(self) -> str:
        """Hash of everything that determines the result: model code, options, data, seed, sampler."""
        dataset = self.dataset
        content = {
            "model": _model_identity(get_model(self.model)),
            "options": self.options.to_json(),
            "observations": dataset.observations.to_json(orient="split", index=False),
            "subjects": dataset.subjects.reset_index().to_json(orient="split", index=False),
            "events": dataset.events.to_json(orient="split", index=False),
            "seed": self.seed,
            "sampler": dataclasses.asdict(self.sampler),
            "attrs": dict(self.attrs),
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def filename(self) -> str:
        """Return the result file name, ``<name>-<first 12 hex digits of key>.nc``."""
        return f"{self.name}-{self.key()[:12]}.nc"


@functools.cache
def _model_identity(model: OdeModel) -> str:
    # The generated code's hash: a changed equation or solver gives new keys, never a stale skip.
    return f"{model.name}:{source_hash(model)}"


@dataclass(frozen=True)
class TaskOutcome:
    """What became of one task: ``status`` is ``"done"``, ``"skipped"`` (result existed) or ``"failed"``."""

    name: str
    path: Path
    status: str
    seconds: float = 0.0  # wall time of the task on its worker
    compile_seconds: float = 0.0  # nutpie/PyMC compile time inside fit()
    sampling_seconds: float = 0.0
    overhead_seconds: float = 0.0  # task wall time minus sampling: build, compile, predictive, write
    worker_task: int = 0  # 1 for the first task a worker process ran, 2 for its second, ...
    error: str = ""


@dataclass(frozen=True)
class BatchResult:
    """Outcomes of :func:`fit_many`, in task order, and the wall time of the whole batch."""

    outcomes: list[TaskOutcome]
    seconds: float
    workers: int

    def paths(self, status: str | None = None) -> list[Path]:
        """Return the result files of the tasks with ``status`` (default: every task with a result)."""
        wanted = (status,) if status else ("done", "skipped")
        return [o.path for o in self.outcomes if o.status in wanted]

    @property
    def failed(self) -> list[TaskOutcome]:
        """The tasks that failed."""
        return [o for o in self.outcomes if o.status == "failed"]


# Per worker process: how many tasks it ran (the first pays for imports and numba cache loads),
# and the nutpie models it compiled, by layout (see _layout_compiler).
_TASKS_RUN_HERE = 0
_COMPILED: dict[str, object] = {}
OBSERVED = "observed_log_y"  # the shared variable that replaces the observed data in a reused model


def _run_task(task: FitTask, path: str, reuse_compiled: bool) -> dict:
    """Fit one task on a worker and write its result atomically; return its timings."""
    global _TASKS_RUN_HERE
    from .fit import save_result

    _TASKS_RUN_HERE += 1
    start = time.perf_counter()
    reuse = reuse_compiled and task.sampler.sampler == "nutpie"
    idata = fit_task(task, _layout_compiler(task) if reuse else None)
    idata.attrs.update({"task_name": task.name, "task_key": task.key(), **task.attrs,
                        "task_seconds": round(time.perf_counter() - start, 3)})  # before writing
    save_result(idata, path)
    seconds = time.perf_counter() - start
    sampling = float(idata.attrs["sampling_seconds"])
    return {"seconds": seconds, "compile_seconds": float(idata.attrs["compile_seconds"]),
            "sampling_seconds": sampling, "overhead_seconds": seconds - sampling,
            "worker_task": _TASKS_RUN_HERE}


def fit_task(task: FitTask, compile_model=None):
    """Fit one task in this process (:func:`inference.fit.fit`; the one place task fits are started).

    ``compile_model`` is passed on to :func:`~inference.fit.fit` (nutpie only).
    """
    from .fit import fit

    return fit(task.model, task.dataset, task.options, dataclasses.replace(task.sampler, seed=task.seed),
               progress=False, compile_model=compile_model)


def layout_key(task: FitTask) -> str:
    """Hash what shapes a task's log density except the measured values.

    That is: model code, options, subjects, sample times, analytes, assay limits and events.
    Tasks with equal keys (the replicates of a simulation study, refits of one design) can share
    one compiled model.
    """
    dataset = task.dataset
    shape = dataset.observations.drop(columns=["value", "censored"])
    content = [_model_identity(get_model(task.model)), task.options.to_json(),
               shape.to_json(orient="split", index=False),
               dataset.subjects.reset_index().to_json(orient="split", index=False),
               dataset.events.to_json(orient="split", index=False)]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def _layout_compiler(task: FitTask):
    """Return a ``compile_model`` for :func:`inference.fit.fit` that compiles once per layout per worker.

    Measured (``python -m inference.bench --sections batch``): compiling the log density is
    almost all of a task's time (tens of seconds against about a second of sampling for a
    single subject), and it is repeated for every new dataset because the observed values are
    constants of the graph. Here the first model of a layout is compiled with its observed
    values turned into a shared variable; later tasks of the layout get that compiled model
    with their own values (``CompiledModel.with_data``). Everything else in ``fit``
    (log-likelihood, predictive draws, attributes) runs unchanged on the task's own model.
    """
    import nutpie

    key = layout_key(task)

    def compile_or_reuse(pm_model):
        if key not in _COMPILED:
            _COMPILED[key] = nutpie.compile_pymc_model(_observed_as_data(pm_model), backend="numba")
        observed = pm_model.rvs_to_values[pm_model["log_y"]].data
        return _COMPILED[key].with_data(**{OBSERVED: observed})

    return compile_or_reuse


def _observed_as_data(pm_model):
    """Return a copy of ``pm_model`` whose observed ``log_y`` is the shared variable :data:`OBSERVED`."""
    import numpy as np
    import pytensor
    from pymc.model.fgraph import ModelObservedRV, fgraph_from_model, model_from_fgraph

    graph, _ = fgraph_from_model(pm_model)
    (node,) = [v.owner for v in graph.outputs
               if v.owner and isinstance(v.owner.op, ModelObservedRV) and v.name == "log_y"]
    data = node.inputs[1]
    graph.replace(data, pytensor.shared(np.asarray(data.data), name=OBSERVED), import_missing=True)
    return model_from_fgraph(graph, mutate_fgraph=True)


def default_workers(chains: int, cores: int | None = None) -> int:
    """Workers of the embedded cluster: ``cores // min(chains, cores)``, at least one.

    nutpie runs a fit's chains on ``min(chains, cores)`` threads, so this many fits at once fill
    the cores without oversubscribing them.
    """
    cores = cores or os.cpu_count() or 1
    return max(1, cores // min(chains, cores))


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def fit_many(
    tasks: Sequence[FitTask],
    client=None,
    out_dir: str | os.PathLike = "fits",
    *,
    workers: int | None = None,
    reuse_compiled: bool = True,
    progress: bool = True,
) -> BatchResult:
    """Run every task on a Dask cluster; write one result file per task as it finishes.

    Parameters
    ----------
    tasks
        The fits; task names must be unique.
    client
        A ``distributed.Client`` of an existing cluster. ``None`` starts a ``LocalCluster`` (one
        thread per worker, :func:`default_workers` workers unless ``workers`` is given) and
        closes it at the end.
    out_dir
        Folder of the results, ``<task name>-<key>.nc`` (see :meth:`FitTask.filename`).
    workers
        Workers of the embedded cluster (ignored with ``client``).
    reuse_compiled
        Compile one nutpie model per worker and :func:`layout_key`, and sample every task of
        that layout with it (default); ``False`` compiles per task (for benchmarks).
    progress
        Print a line per finished task: done, failed, running, ETA.

    Returns
    -------
    BatchResult
        One outcome per task, in task order; a failed task's outcome carries its error.
    """
    from distributed import Client, LocalCluster, as_completed

    names = [t.name for t in tasks]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"task names must be unique; used twice: {duplicated}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = {t.name: out_dir / t.filename() for t in tasks}
    outcomes = {t.name: TaskOutcome(t.name, paths[t.name], "skipped") for t in tasks
                if paths[t.name].exists()}
    todo = [t for t in tasks if t.name not in outcomes]
    if progress and outcomes:
        print(f"{len(outcomes)} of {len(tasks)} results exist in {out_dir}/ (skipped)", flush=True)
    if not todo:
        return BatchResult([outcomes[n] for n in names], time.perf_counter() - start, 0)

    cluster = None
    if client is None:
        n = workers or default_workers(max(t.sampler.chains for t in todo))
        # processes, not threads: numba and PyTensor release the GIL only in parts, and each
        # worker process keeps its own compiled kernels.
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0", env={"NUMBA_NUM_THREADS": "1"})
        client = Client(cluster)
    try:
        n_workers = max(1, len(client.scheduler_info()["workers"]))
        if progress:
            print(f"fitting {len(todo)} task(s) on {n_workers} Dask worker(s) ({client.scheduler.address}); "
                  f"results in {out_dir}/", flush=True)
        futures = {client.submit(_run_task, t, str(paths[t.name]), reuse_compiled,
                                 key=f"fit-{t.name}-{t.key()[:12]}", pure=False, retries=0): t
                   for t in todo}
        done = failed = 0
        for future in as_completed(futures):
            task = futures[future]
            if future.status == "finished":
                outcomes[task.name] = TaskOutcome(task.name, paths[task.name], "done", **future.result())
                done += 1
            else:
                error = future.exception()
                outcomes[task.name] = TaskOutcome(task.name, paths[task.name], "failed",
                                                  error=f"{type(error).__name__}: {error}")
                failed += 1
            if progress:
                finished = done + failed
                remaining = len(todo) - finished
                elapsed = time.perf_counter() - start
                eta = elapsed / finished * remaining
                running = sum(len(keys) for keys in client.processing().values())
                line = (f"[{finished}/{len(todo)}] done {done}, failed {failed}, running {running}, "
                        f"ETA {_duration(eta)}: {task.name}")
                outcome = outcomes[task.name]
                line += (f" ({outcome.seconds:.1f} s)" if outcome.status == "done"
                         else f" FAILED: {outcome.error}")
                print(line, flush=True)
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
    result = BatchResult([outcomes[n] for n in names], time.perf_counter() - start, n_workers)
    if progress:
        print(f"{len(result.paths('done'))} done, {len(result.paths('skipped'))} skipped, "
              f"{len(result.failed)} failed in {_duration(result.seconds)}", flush=True)
    return result


# ---- manifests and the command line ------------------------------------------------------------
MANIFEST_COLUMNS = ("name", "data", "model", "seed", "fixed", "random_effects", "group_effects",
                    "likelihood", "subjects_table", "events")


class ManifestError(DataError):
    """A fit-many manifest row is invalid."""


def read_manifest(path: str | os.PathLike, sampler: SamplerSettings) -> list[FitTask]:
    """Read a CSV manifest: one fit per row.

    Columns: ``name`` and ``data`` (a tidy observations CSV, relative to the manifest's folder)
    are required; optional ``model`` (default ``acute_inflammation``, or ``file.py:NAME`` relative to
    the manifest's folder), ``seed`` (default 0),
    ``fixed`` (``r=0;K_C=300``), ``random_effects`` and ``group_effects`` (``k_T;r``),
    ``likelihood``, ``subjects_table`` and ``events`` (CSV paths). Empty cells take the defaults
    of ``cytokine-balance fit``.

    Raises
    ------
    ManifestError
        Naming the row and column of every problem found.
    """
    import pandas as pd

    from models import ModelError

    from .data import load_dataset, model_analytes

    path = Path(path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    unknown = sorted(set(table.columns) - set(MANIFEST_COLUMNS))
    missing = [c for c in ("name", "data") if c not in table.columns]
    if unknown or missing:
        raise ManifestError(f"{path}: unknown columns {unknown}, missing columns {missing}; "
                            f"expected {list(MANIFEST_COLUMNS)}")
    tasks, problems = [], []
    for row_number, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        def cell(column, default=""):
            return (row.get(column) or "").strip() or default  # noqa: B023

        def relative(column):
            value = cell(column)
            return None if not value else path.parent / value  # noqa: B023

        try:
            model = get_model(resolve_model_file(cell("model", "acute_inflammation"), path.parent))
            dataset = load_dataset(relative("data"), subjects=relative("subjects_table"),
                                   events=relative("events"), analytes=model_analytes(model))
            base = default_options(model, dataset)
            fixed = {}
            for item in filter(None, cell("fixed").split(";")):
                name, _, value = item.partition("=")
                fixed[name.strip()] = float(value)

            def names(column, default):
                value = cell(column)  # noqa: B023
                return tuple(n.strip() for n in value.split(";") if n.strip()) if value else default

            options = ModelOptions(
                fixed=fixed, random_effects=names("random_effects", base.random_effects),
                group_effects=names("group_effects", base.group_effects),
                likelihood=cell("likelihood", "lognormal"),
            )
            options.check(model, dataset)
            tasks.append(FitTask(cell("name"), model, dataset, options, int(cell("seed", "0")), sampler))
        except (DataError, ModelError, ValueError, FileNotFoundError) as error:
            problems.append(f"{path}, row {row_number}: {error}")
    if problems:
        raise ManifestError("\n".join(problems))
    return tasks


def subject_tasks(dataset: Dataset, model: str | OdeModel, options_for, seed: int,
                  sampler: SamplerSettings) -> list[FitTask]:
    """One task per subject of ``dataset`` (each subject fitted alone), named after the subject."""
    tasks = []
    for subject in dataset.subject_ids:
        obs = dataset.observations
        events = dataset.events
        alone = dataclasses.replace(
            dataset,
            observations=obs[obs["subject"] == subject].reset_index(drop=True),
            subjects=dataset.subjects.loc[[subject]],
            events=events[events["subject"] == subject].reset_index(drop=True) if len(events) else events,
            source=f"{dataset.source} (subject {subject})",
        )
        tasks.append(FitTask(f"subject-{subject}", model, alone, options_for(alone), seed, sampler))
    return tasks


def connect(scheduler: str | None):
    """Return a ``distributed.Client`` of the scheduler at ``scheduler``, or ``None`` (embedded cluster)."""
    if scheduler is None:
        return None
    from distributed import Client

    try:
        return Client(scheduler, timeout="20s")
    except OSError as error:
        raise ValueError(f"scheduler {scheduler}: cannot reach a Dask scheduler there ({error})") from None
