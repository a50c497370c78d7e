"""fit_many on a two-worker LocalCluster: results written per task, a failure reported, reruns skip."""

import dataclasses

import cloudpickle
import decay
import numpy as np
import pandas as pd
import pytest

from inference.batch import FitTask, ManifestError, default_workers, fit_many, read_manifest
from inference.build import ModelOptions
from inference.fit import load_result
from inference.sampler import SamplerSettings
from inference.synthetic import simulate_dataset

# Workers unpickle the test model by value (they cannot import this folder's modules).
cloudpickle.register_pickle_by_value(decay)

SAMPLER = SamplerSettings(draws=300, tune=300, chains=2)
TIMES = (0.5, 1, 2, 3, 4, 6, 8)
TRUTHS = {"slow": 0.2, "fast": 1.5, "mid": 0.6}  # elimination rates k (1/h)


def _dataset(k: float, seed: int):
    truth = pd.DataFrame({"subject": ["A"], "k": [k], "X0": [100.0]})
    return simulate_dataset(decay.DECAY, truth, TIMES, sigma={"tracer": 0.1}, seed=seed)


@pytest.fixture(scope="module")
def tasks():
    good = [FitTask(name, decay.DECAY, _dataset(k, i), ModelOptions(), seed=i, sampler=SAMPLER)
            for i, (name, k) in enumerate(TRUTHS.items())]
    bad = FitTask("bad", decay.DECAY, _dataset(0.5, 9), ModelOptions(fixed={"nope": 1.0}), sampler=SAMPLER)
    return [*good, bad]


@pytest.fixture(scope="module")
def run(tasks, tmp_path_factory):
    out = tmp_path_factory.mktemp("fits")
    return out, fit_many(tasks, out_dir=out, workers=2, progress=False)


def test_every_task_has_an_outcome_and_the_failure_is_reported(run, tasks):
    _, result = run
    assert result.workers == 2
    assert [o.name for o in result.outcomes] == [t.name for t in tasks]
    assert [o.status for o in result.outcomes] == ["done", "done", "done", "failed"]
    (failed,) = result.failed
    assert "ModelError" in failed.error and "nope" in failed.error
    assert not failed.path.exists()


def test_results_are_each_tasks_own_fit(run, tasks):
    _, result = run
    for task, outcome in zip(tasks[:3], result.outcomes[:3], strict=True):
        idata = load_result(outcome.path)
        assert idata.attrs["task_key"] == task.key() and idata.attrs["task_name"] == task.name
        # The reused compiled model must sample each task's own data: k spans 0.2 to 1.5 1/h.
        k = idata.posterior["k"].values.ravel()
        assert abs(np.median(k) / TRUTHS[task.name] - 1) < 0.15, (task.name, np.median(k))


def test_a_worker_compiles_once_per_layout(run):
    _, result = run
    done = [o for o in result.outcomes if o.status == "done"]
    # Three same-layout tasks on two workers: at least one reused a compiled model.
    compile_times = sorted(o.compile_seconds for o in done)
    assert compile_times[0] < 0.1 * compile_times[-1], compile_times
    for o in done:
        assert 0 < o.sampling_seconds < o.seconds and o.worker_task >= 1


def test_rerun_skips_finished_tasks_and_retries_the_failed_one(run, tasks, capsys):
    out, first = run
    stamps = {p: p.stat().st_mtime_ns for p in first.paths("done")}
    again = fit_many(tasks, out_dir=out, workers=1, progress=True)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped", "skipped", "failed"]
    assert {p: p.stat().st_mtime_ns for p in again.paths("skipped")} == stamps
    printed = capsys.readouterr().out
    assert "3 of 4 results exist" in printed
    assert "[1/1] done 0, failed 1, running 0, ETA 0m00s: bad FAILED: ModelError" in printed
    assert "0 done, 3 skipped, 1 failed" in printed


def test_key_changes_with_anything_that_changes_the_fit(tasks):
    task = tasks[0]
    assert task.key() == dataclasses.replace(task).key()
    for changed in (dataclasses.replace(task, seed=99),
                    dataclasses.replace(task, sampler=dataclasses.replace(SAMPLER, draws=301)),
                    dataclasses.replace(task, options=ModelOptions(fixed={"X0": 100.0})),
                    dataclasses.replace(task, dataset=tasks[1].dataset)):
        assert changed.key() != task.key()


def test_bad_tasks_are_refused():
    with pytest.raises(ValueError, match="task name"):
        FitTask("a/b", decay.DECAY, _dataset(0.5, 0))
    with pytest.raises(ValueError, match="used twice"):
        fit_many([FitTask("a", decay.DECAY, _dataset(0.5, 0))] * 2, progress=False)


def test_default_workers_never_oversubscribe():
    assert default_workers(chains=4, cores=2) == 1
    assert default_workers(chains=4, cores=16) == 4
    assert default_workers(chains=1, cores=16) == 16
    assert default_workers(chains=2, cores=3) == 1


def test_manifest_rows_become_tasks_and_bad_rows_are_named(tmp_path):
    data = tmp_path / "one.csv"
    pd.read_csv("data/single_subject/observations.csv").to_csv(data, index=False)
    manifest = tmp_path / "fits.csv"
    manifest.write_text("name,data,seed,fixed\nfree,one.csv,3,\nno-resistance,one.csv,,r=0\n")
    first, second = read_manifest(manifest, SAMPLER)
    assert (first.name, first.seed, dict(first.options.fixed)) == ("free", 3, {})
    assert (second.seed, dict(second.options.fixed)) == (0, {"r": 0.0})
    manifest.write_text("name,data,fixed\nok,one.csv,\nbad,missing.csv,\nworse,one.csv,q=1\n")
    with pytest.raises(ManifestError, match=r"row 3: .*missing.csv(.|\n)*row 4: .*no parameter"):
        read_manifest(manifest, SAMPLER)
    manifest.write_text("name,data,colour\nx,one.csv,red\n")
    with pytest.raises(ManifestError, match=r"unknown columns \['colour'\]"):
        read_manifest(manifest, SAMPLER)
