"""Simulated datasets: determinism, noise, censoring, missingness, and the shipped data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import models
from inference.data import load_dataset
from inference.synthetic import main, simulate_dataset

MODEL = "acute_inflammation"
DATA = Path(__file__).resolve().parents[2] / "data"
SHIPPED = ("single_subject", "cohort", "cohort_no_resistance", "cohort_stress_resistance")


def cohort(n: int, **columns) -> pd.DataFrame:
    return pd.DataFrame({"subject": [f"P{i:03d}" for i in range(n)], "dose": 2.0, **columns})


def test_same_seed_same_data_other_seed_other_data():
    subjects = cohort(3, group=["a", "b", "a"], r=[0.1, 0.5, 0.2])
    kwargs = dict(
        times=[0, 1, 2, 4, 8],
        sigma={"TNF": 0.2, "IL6": 0.2, "cortisol": 0.1},
        lloq={"TNF": 2.0},
        time_jitter=0.2,
        missing_fraction=0.2,
    )
    first = simulate_dataset(MODEL, subjects, seed=5, **kwargs)
    second = simulate_dataset(MODEL, subjects, seed=5, **kwargs)
    other = simulate_dataset(MODEL, subjects, seed=6, **kwargs)
    pd.testing.assert_frame_equal(first.observations, second.observations)
    pd.testing.assert_frame_equal(first.subjects, second.subjects)
    measured = first.observations[first.observations["censored"] == "none"]
    assert len(measured) > 30 and not measured["value"].isin(other.observations["value"]).any()
    assert first.source == f"<simulated: {MODEL}, seed 5>"
    assert first.groups == ("a", "b")
    assert list(first.subjects.columns) == ["group", "dose"]  # parameters are truth, not data


def test_noise_sd_and_median_are_recovered():
    times = [1, 2, 3, 4, 6, 8]
    sigma = {"TNF": 0.2, "IL6": 0.3, "cortisol": 0.1}
    ds = simulate_dataset(MODEL, cohort(150, r=0.3), times, sigma=sigma, seed=11)
    mean = models.simulate(MODEL, {"r": 0.3}, {"dose": 2.0}, times=times)
    obs = ds.observations
    for analyte, state in [("TNF", "T"), ("IL6", "I"), ("cortisol", "C")]:
        rows = obs[obs["analyte"] == analyte]
        truth = rows["time"].map(dict(zip(mean["time"], mean[state], strict=True)))
        residual = np.log(rows["value"]) - np.log(truth)
        assert len(residual) == 150 * len(times)
        # 900 draws: the sd's standard error is ~sigma/42, the mean's ~sigma/30
        assert residual.std(ddof=1) == pytest.approx(sigma[analyte], rel=0.08)
        assert abs(residual.mean()) < 0.1 * sigma[analyte]


def test_censoring_fraction_matches_the_noise_model():
    times = [0, 6, 8, 10, 12]
    sigma, lloq = 0.5, 3.0
    ds = simulate_dataset(
        MODEL, cohort(120), {"TNF": times}, sigma={"TNF": sigma}, lloq={"TNF": lloq}, seed=3
    )
    obs = ds.observations
    mean = models.simulate(MODEL, {}, {"dose": 2.0}, times=times).set_index("time")["T"]
    expected = scipy.stats.norm.cdf(np.log(lloq / mean[obs["time"]].to_numpy()) / sigma).mean()
    left = obs["censored"] == "left"
    assert 0.2 < expected < 0.8  # a test that can fail both ways
    assert left.mean() == pytest.approx(expected, abs=0.04)  # 600 samples: se ~0.02
    assert (obs.loc[left, "value"] == lloq).all() and (obs.loc[~left, "value"] > lloq).all()
    assert (obs["lloq"] == lloq).all()
    assert ds.analytes == ("TNF",)


def test_jitter_missingness_and_per_analyte_times():
    times = {"TNF": [0, 0.5, 1, 2, 4], "cortisol": [0, 2, 4, 8]}
    ds = simulate_dataset(
        MODEL,
        cohort(40),
        times,
        sigma={"TNF": 0.1, "cortisol": 0.1},
        seed=9,
        time_jitter=0.2,
        missing_fraction=0.25,
    )
    obs = ds.observations
    assert ds.analytes == ("TNF", "cortisol")
    after_baseline = 40 * (4 + 3)
    assert (obs["time"] > 0).sum() == after_baseline - round(0.25 * after_baseline)
    assert (obs["time"] == 0).sum() == 40 * 2  # baselines are never missing or moved
    for analyte, nominal in times.items():
        t = obs.loc[obs["analyte"] == analyte, "time"].to_numpy()
        distance = np.abs(t[:, None] - np.array(nominal)[None, :]).min(axis=1)
        assert distance.max() <= 0.2 and distance[t > 0].max() > 0.15
    # one blood draw measures every analyte: TNF and cortisol at 2 h share the jittered time
    for _, rows in obs[(obs["time"] - 2).abs() <= 0.2].groupby("subject"):
        assert rows["time"].nunique() == 1
    for _, rows in obs.groupby("subject"):
        assert rows["time"].is_monotonic_increasing


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="half the smallest gap"):
        simulate_dataset(
            MODEL,
            cohort(1),
            [0, 0.5, 1],
            sigma={"TNF": 0.1, "IL6": 0.1, "cortisol": 0.1},
            seed=1,
            time_jitter=0.3,
        )
    with pytest.raises(ValueError, match=r"sigma: .*\['cortisol'\]"):
        simulate_dataset(MODEL, cohort(1), [0, 1], sigma={"TNF": 0.1, "IL6": 0.1}, seed=1)
    with pytest.raises(ValueError, match=r"does not observe \['IL10'\]"):
        simulate_dataset(MODEL, cohort(1), {"IL10": [0, 1]}, sigma={"IL10": 0.1}, seed=1)
    with pytest.raises(models.ModelError, match="r=1.5 is outside"):
        simulate_dataset(
            MODEL, cohort(1, r=1.5), [0, 1], sigma={"TNF": 0.1, "IL6": 0.1, "cortisol": 0.1}, seed=1
        )


# ---- the shipped datasets -------------------------------------------------------------------
@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    main(["--output", str(folder)])
    return folder


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_data_load_and_match_regeneration(regenerated, name):
    shipped = load_dataset(DATA / name / "observations.csv")
    fresh = load_dataset(regenerated / name / "observations.csv")
    pd.testing.assert_frame_equal(shipped.observations, fresh.observations, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(shipped.subjects, fresh.subjects, check_exact=False, rtol=1e-9)
    truth = [pd.read_csv(folder / name / "truth.csv") for folder in (DATA, regenerated)]
    pd.testing.assert_frame_equal(*truth, check_exact=False, rtol=1e-12)
    assert (DATA / name / "README.md").read_text() == (regenerated / name / "README.md").read_text()
    assert sorted(p.name for p in (regenerated / name).iterdir()) == [
        "README.md",
        "observations.csv",
        "truth.csv",
    ]


def test_shipped_single_subject():
    ds = load_dataset(DATA / "single_subject" / "observations.csv")
    truth = pd.read_csv(DATA / "single_subject" / "truth.csv")
    assert ds.subject_ids == ("S01",) and len(ds.observations) == 14 * 3
    defaults = models.get_model(MODEL).defaults()
    assert truth.loc[0, "r"] == 0.3
    assert all(truth.loc[0, p] == v for p, v in defaults.items() if p != "r")
    baseline = ds.observations[ds.observations["time"] == 0].set_index("analyte")["censored"]
    assert baseline.to_dict() == {"TNF": "left", "IL6": "left", "cortisol": "none"}  # T_b, I_b < 2


def test_shipped_cohorts_have_their_design():
    ds = load_dataset(DATA / "cohort" / "observations.csv")
    truth = pd.read_csv(DATA / "cohort" / "truth.csv").set_index("subject")
    assert ds.summary()["groups"] == {"control": 10, "chronic_stress": 10}
    assert list(ds.subjects.columns) == ["group", "dose", "stress_score"]
    with_cortisol = ds.observations.loc[ds.observations["analyte"] == "cortisol", "subject"].unique()
    assert list(with_cortisol) == [f"S{i:02d}" for i in range(1, 15)]
    np.testing.assert_array_equal(ds.subjects["stress_score"], truth["stress_score"])
    r = truth.groupby("group")["r"].median()
    assert r["control"] < 0.2 < 0.35 < r["chronic_stress"] < 0.65

    none = pd.read_csv(DATA / "cohort_no_resistance" / "truth.csv")
    assert len(none) == 12 and (none["r"] == 0).all()
    stress = pd.read_csv(DATA / "cohort_stress_resistance" / "truth.csv")
    assert len(stress) == 12 and (stress.loc[stress["group"] == "control", "r"] == 0).all()
    assert (stress.loc[stress["group"] == "chronic_stress", "r"] > 0.3).all()
