"""The shipped real cohort: the converter against the facts of its source file."""

import numpy as np
import pytest
import scipy.io

from inference.data import load_dataset
from inference.sources import endotoxemia_bolus_2024 as bolus

SHIPPED = bolus.OBSERVATIONS_FILE
# From the source's FACTS: measured = stored + offset (BaselineBolusMinusContinuousMean).
OFFSETS = {"TNF": -5.213903922503391, "IL6": 0.3013764157540033, "IL8": 0.04620350729959499,
           "IL10": -3.9931063154997104}
OFF_GRID = {("H13", "TNF", 1.0), ("H13", "IL8", 1.0), ("H17", "TNF", 2.0), ("H17", "IL6", 2.0),
            ("H17", "IL8", 2.0), ("H17", "IL10", 2.0), ("H17", "IL8", 3.0), ("H17", "IL8", 4.0),
            ("H07", "IL8", 5.0), ("H11", "IL8", 5.0), ("H19", "IL10", 4.0)}
TIMES = [0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0]


@pytest.fixture(scope="module")
def mat():
    """The raw file, read here independently of the converter."""
    return scipy.io.loadmat(bolus.MAT_FILE)


@pytest.fixture(scope="module")
def everything():
    return bolus.load(bolus.ANALYTES)


def test_twenty_by_eight_values_per_analyte_with_the_shift_undone(mat, everything):
    obs = everything.observations
    assert everything.subject_ids == tuple(f"H{i:02d}" for i in range(1, 21))
    assert everything.analytes == ("TNF", "IL6", "IL10", "IL8")
    for analyte, offset in OFFSETS.items():
        rows = obs[obs["analyte"] == analyte]
        assert len(rows) == 160 and sorted(set(rows["time"])) == TIMES
        values = rows.pivot(index="subject", columns="time", values="value").to_numpy()
        np.testing.assert_allclose(values, mat[analyte] + offset, rtol=0, atol=1e-9)
    assert (everything.subjects["dose"] == 2.0).all() and set(everything.subjects["group"]) == {"healthy"}
    assert set(obs["unit"]) == {"pg/mL"} and set(obs["censored"]) == {"none"}


def test_undone_values_lie_on_the_assay_grid_except_eleven_cells(everything):
    obs = everything.observations
    cents = obs["value"] * 100
    on_grid = np.abs(cents - np.round(cents)) < 1e-6
    assert on_grid.sum() == 629
    off = obs[~on_grid]
    assert set(zip(off["subject"], off["analyte"], off["time"], strict=True)) == OFF_GRID
    tnf = obs[obs["analyte"] == "TNF"]
    assert tnf.loc[tnf["time"] == 0, "value"].median() == pytest.approx(1.12, abs=0.3)  # not 6.3


def test_without_the_flagged_cells_the_published_means_and_sds_come_back(mat):
    kept = bolus.load(bolus.ANALYTES, exclude_flagged=True).observations
    for analyte, offset in OFFSETS.items():
        by_time = kept[kept["analyte"] == analyte].groupby("time")["value"]
        np.testing.assert_allclose(by_time.mean(), mat[f"{analyte}m_NoOutliers"].ravel() + offset, rtol=1e-6)
        np.testing.assert_allclose(by_time.std(ddof=1), mat[f"{analyte}sd"].ravel(), rtol=1e-6)
        # The SEs give the number of values kept, n = (SD / SE)^2, independently of the search.
        n = (mat[f"{analyte}sd"] / mat[f"{analyte}se"]).ravel() ** 2
        np.testing.assert_allclose(by_time.size(), n, atol=1e-6)


def test_the_authors_outliers_are_flagged_not_dropped(everything):
    obs = everything.observations
    flagged = obs[obs["flag"] == "outlier"]
    assert len(obs) == 640 and everything.n_flagged == 30 and set(obs["flag"]) == {"", "outlier"}
    cells = set(zip(flagged["subject"], flagged["analyte"], flagged["time"], strict=True))
    assert {("H06", "TNF", 0.0), ("H09", "TNF", 0.0), ("H10", "TNF", 0.0)} <= cells
    assert {("H05", "IL6", t) for t in (2.0, 3.0, 4.0, 5.0, 6.0)} <= cells
    h20 = flagged[(flagged["subject"] == "H20") & (flagged["analyte"] == "TNF")]
    assert list(h20["time"]) == [2.0, 3.0]
    np.testing.assert_allclose(h20["value"], [1297.11, 194.85], atol=1e-9)
    assert flagged.groupby("analyte").size().to_dict() == {"TNF": 5, "IL6": 13, "IL8": 5, "IL10": 7}


def test_the_left_out_set_must_be_unique():
    values = np.array([1.0, 2.0, 3.0, 10.0])
    np.testing.assert_array_equal(bolus.find_left_out(values, 2.0, 1.0), [False, False, False, True])
    with pytest.raises(ValueError, match="expected exactly one set .* found 2"):
        bolus.find_left_out(np.array([1.0, 2.0, 2.0, 3.0]), 2.5, np.std([2.0, 3.0], ddof=1))
    with pytest.raises(ValueError, match="found 0"):
        bolus.find_left_out(values, 100.0, 1.0)


def test_shipped_csv_is_what_the_converter_writes(tmp_path, capsys):
    out = tmp_path / "observations.csv"
    bolus.main(["--out", str(out)])
    assert out.read_bytes() == SHIPPED.read_bytes()
    assert "320 samples (TNF 160, IL6 160), 18 flagged as outliers (kept)" in capsys.readouterr().out
    shipped = load_dataset(SHIPPED)
    assert shipped.analytes == ("TNF", "IL6") and shipped.n_flagged == 18
    assert len(load_dataset(SHIPPED, exclude_flagged=True).observations) == 302


def test_all_four_analytes_convert_and_load(tmp_path, capsys):
    out = tmp_path / "all.csv"
    bolus.main(["--analytes", "TNF,IL6,IL8,IL10", "--out", str(out)])
    dataset = load_dataset(out, analytes={"IL8": "pg/mL", "IL10": "pg/mL"})
    assert dataset.summary()["analytes"] == {"TNF": 160, "IL6": 160, "IL10": 160, "IL8": 160}
    with pytest.raises(SystemExit) as exit_:  # an existing file is kept without --force
        bolus.main(["--out", str(out)])
    assert exit_.value.code == 2 and "exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bolus.main(["--analytes", "TNF,IL1b", "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err
    assert "expected analytes among ['TNF', 'IL6', 'IL8', 'IL10'], got ['TNF', 'IL1b']" in err
