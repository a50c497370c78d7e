"""The data layer: parsing, units, censoring, validation messages, round trips."""

import re
import string
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.data import CANONICAL_UNITS, DataError, Dataset, load_dataset, save_dataset

HEADER = "subject,time,analyte,value,unit"


def write(tmp_path: Path, text: str, name: str = "obs.csv") -> Path:
    path = tmp_path / name
    path.write_text(text.strip() + "\n")
    return path


def one_row(**cells) -> pd.DataFrame:
    """A one-sample table; ``cells`` override or add columns."""
    row = {"subject": "S01", "time": 1.0, "analyte": "TNF", "value": 10.0, "unit": "pg/mL"} | cells
    return pd.DataFrame({k: [v] for k, v in row.items()})


EXAMPLE = """
subject,time,analyte,value,unit,lloq,group,dose
S02,0,TNF,,pg/mL,2.0,stress,2
S01,0,cortisol,12.1,ug/dL,,control,2
S01,0,TNF,1.1,pg/mL,2.0,control,2
S01,1.5,IL6,0.62,ng/mL,0.002,control,2
S02,1.5,IL6,700,pg/ml,2,stress,2
S01,1.5,TNF,310,pg/mL,2.0,control,2
"""


# ---- the dataset ---------------------------------------------------------------------------
def test_example_is_normalised_sorted_and_typed(tmp_path):
    ds = load_dataset(write(tmp_path, EXAMPLE))
    obs = ds.observations
    assert ds.source == "obs.csv"
    assert ds.subject_ids == ("S02", "S01")  # order of first appearance
    assert list(obs["subject"]) == ["S02", "S02", "S01", "S01", "S01", "S01"]
    assert list(obs["analyte"]) == ["TNF", "IL6", "TNF", "cortisol", "TNF", "IL6"]  # TNF, IL6, cortisol
    assert list(obs["time"]) == [0.0, 1.5, 0.0, 0.0, 1.5, 1.5]
    assert list(obs["censored"]) == ["left", "none", "left", "none", "none", "none"]
    np.testing.assert_allclose(obs["value"], [2.0, 700.0, 2.0, 12.1 * 1e4 / 362.46, 310.0, 620.0])
    assert list(obs["unit"]) == ["pg/mL", "pg/mL", "pg/mL", "nmol/L", "pg/mL", "pg/mL"]
    assert obs["uloq"].isna().all()
    assert isinstance(obs.index, pd.RangeIndex)
    assert obs["time"].dtype == np.float64 and obs["value"].dtype == np.float64
    assert ds.subjects.index.name == "subject"
    assert list(ds.subjects.columns) == ["group", "dose"]
    assert ds.subjects.loc["S01", "group"] == "control" and ds.subjects["dose"].dtype == np.float64
    assert ds.groups == ("stress", "control")
    assert ds.analytes == ("TNF", "IL6", "cortisol")
    assert ds.n_censored == 2
    assert ds.summary() == {
        "n_subjects": 2,
        "n_samples": 6,
        "n_censored": 2,
        "n_flagged": 0,
        "analytes": {"TNF": 3, "IL6": 2, "cortisol": 1},
        "groups": {"stress": 1, "control": 1},
    }
    assert list(ds.events.columns) == ["subject", "time", "kind", "target", "value"]
    assert len(ds.events) == 0


def test_dataframe_input_without_group_and_with_numeric_ids():
    frame = pd.DataFrame(
        {
            "subject": [7, 7, 8],
            "time": [0, 1, 0],
            "analyte": ["IL6"] * 3,
            "value": [5.0, 50.0, 4.0],
            "unit": ["pg/mL"] * 3,
        }
    )
    ds = load_dataset(frame)
    assert ds.source == "<DataFrame>"
    assert ds.subject_ids == ("7", "8")
    assert ds.groups == ("all",)
    assert list(ds.subjects.columns) == ["group"]


def test_select_keeps_only_the_subjects(tmp_path):
    events = pd.DataFrame(
        {
            "subject": ["S01", "S02"],
            "time": [4.0, 5.0],
            "kind": ["bolus", "set"],
            "target": ["L", "stress"],
            "value": [1.0, 2.0],
        }
    )
    ds = load_dataset(write(tmp_path, EXAMPLE), events=events)
    one = ds.select(["S01"])
    assert one.subject_ids == ("S01",)
    assert len(one.observations) == 4 and set(one.observations["subject"]) == {"S01"}
    assert list(one.events["time"]) == [4.0]
    assert isinstance(one.observations.index, pd.RangeIndex)
    assert ds.select(["S01", "S02"]).subject_ids == ("S02", "S01")  # the dataset's order
    with pytest.raises(DataError, match=r"unknown subjects \['S09'\]"):
        ds.select(["S09"])


# ---- round trip ----------------------------------------------------------------------------
def assert_same(a: Dataset, b: Dataset) -> None:
    pd.testing.assert_frame_equal(a.observations, b.observations)
    pd.testing.assert_frame_equal(a.subjects, b.subjects)
    pd.testing.assert_frame_equal(a.events, b.events)


def test_round_trip_through_csv(tmp_path):
    ds = load_dataset(write(tmp_path, EXAMPLE))
    save_dataset(ds, tmp_path / "saved.csv")
    again = load_dataset(tmp_path / "saved.csv")
    assert_same(ds, again)
    assert again.source == "saved.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obs.csv", "saved.csv"]  # no temp files
    header = (tmp_path / "saved.csv").read_text().splitlines()[0]
    assert header == "subject,group,time,analyte,value,unit,censored,lloq,uloq,dose"


def test_save_never_overwrites_silently(tmp_path):
    ds = load_dataset(write(tmp_path, EXAMPLE))
    target = write(tmp_path, "keep me", "saved.csv")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_dataset(ds, target)
    assert target.read_text() == "keep me\n"
    save_dataset(ds, target, overwrite=True)
    assert len(load_dataset(target).observations) == 6


def test_events_round_trip_and_need_their_own_file(tmp_path):
    events = write(
        tmp_path,
        """
subject,time,kind,target,value
S01,6,bolus,L,1.0
S02,2,SET,stress,30
S01,3,set,stress,10
""",
        "events.csv",
    )
    ds = load_dataset(write(tmp_path, EXAMPLE), events=events)
    assert list(zip(ds.events["subject"], ds.events["time"], ds.events["kind"], strict=True)) == [
        ("S02", 2.0, "set"),
        ("S01", 3.0, "set"),
        ("S01", 6.0, "bolus"),
    ]
    with pytest.raises(DataError, match="events_path="):
        save_dataset(ds, tmp_path / "saved.csv")
    save_dataset(ds, tmp_path / "saved.csv", events_path=tmp_path / "saved_events.csv")
    assert_same(ds, load_dataset(tmp_path / "saved.csv", events=tmp_path / "saved_events.csv"))


def test_subject_table_adds_columns(tmp_path):
    subjects = write(
        tmp_path, "subject,group,stress_score\nS01,control,-0.5\nS02,stress,1.25", "subjects.csv"
    )
    ds = load_dataset(write(tmp_path, EXAMPLE), subjects=subjects)
    assert list(ds.subjects.columns) == ["group", "dose", "stress_score"]
    assert ds.subjects.loc["S02", "stress_score"] == 1.25
    plain = "\n".join(line.rsplit(",", 2)[0] for line in EXAMPLE.strip().splitlines())
    ds = load_dataset(write(tmp_path, plain, "plain.csv"), subjects=subjects)
    assert ds.groups == ("stress", "control")  # the table's groups replace "all"


# ---- units ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("analyte", "value", "unit", "expected"),
    [
        ("cortisol", 10.0, "ug/dL", 275.9),
        ("cortisol", 10.0, "µg/dL", 275.9),
        ("cortisol", 10.0, "mcg/dL", 275.9),
        ("cortisol", 10.0, "UG/DL", 275.9),
        ("cortisol", 100.0, "ng/mL", 275.9),
        ("cortisol", 100.0, "ug/L", 275.9),
        ("cortisol", 275.9, "nmol/L", 275.9),
        ("IL6", 0.5, "ng/mL", 500.0),
        ("IL6", 500.0, "ng/L", 500.0),
        ("TNF", 500.0, "pg/ml", 500.0),
    ],
)
def test_units_are_converted_to_canonical(analyte, value, unit, expected):
    ds = load_dataset(one_row(analyte=analyte, value=value, unit=unit, lloq=value / 10))
    assert ds.observations["value"].iloc[0] == pytest.approx(expected, rel=1e-4)
    assert ds.observations["lloq"].iloc[0] == pytest.approx(expected / 10, rel=1e-4)
    assert ds.observations["unit"].iloc[0] == CANONICAL_UNITS[analyte]


def test_extra_analytes_get_their_unit():
    ds = load_dataset(one_row(analyte="IL10", value=0.25, unit="ng/mL"), analytes={"IL10": "pg/mL"})
    assert ds.observations["value"].iloc[0] == 250.0
    assert ds.analytes == ("IL10",)
    with pytest.raises(DataError, match="may add analytes, not change"):
        load_dataset(one_row(), analytes={"cortisol": "ug/dL"})


# ---- censoring -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cells", "censored", "value", "lloq", "uloq"),
    [
        ({"lloq": 2.0}, "none", 10.0, 2.0, np.nan),
        ({"value": 2.0, "lloq": 2.0}, "left", 2.0, 2.0, np.nan),  # at the limit: censored
        ({"value": 0.7, "lloq": 2.0}, "left", 2.0, 2.0, np.nan),
        ({"value": np.nan, "lloq": 2.0}, "left", 2.0, 2.0, np.nan),
        ({"value": np.nan, "uloq": 900.0}, "right", 900.0, np.nan, 900.0),
        ({"value": 950.0, "lloq": 2.0, "uloq": 900.0}, "right", 900.0, 2.0, 900.0),
        ({"value": np.nan, "lloq": 2.0, "uloq": 900.0, "censored": "right"}, "right", 900.0, 2.0, 900.0),
        ({"value": 1.5, "censored": "left"}, "left", 1.5, 1.5, np.nan),  # the value is the limit
        ({"value": 0.7, "lloq": 2.0, "censored": "none"}, "none", 0.7, 2.0, np.nan),  # explicit
        ({"value": 0.7, "lloq": 2.0, "censored": "Left"}, "left", 2.0, 2.0, np.nan),
        ({"value": 0.7, "lloq": 2.0, "censored": np.nan}, "left", 2.0, 2.0, np.nan),
    ],
)
def test_censoring_rules(cells, censored, value, lloq, uloq):
    measured = one_row(time=0.0)  # a subject needs one quantified sample
    obs = load_dataset(pd.concat([one_row(**cells), measured], ignore_index=True)).observations
    obs = obs[obs["time"] == 1.0]
    assert obs["censored"].iloc[0] == censored
    np.testing.assert_array_equal(obs[["value", "lloq", "uloq"]].iloc[0], [value, lloq, uloq])


# ---- one message per problem ---------------------------------------------------------------
ERRORS = [
    # (csv, line, column, message)
    ("subject,time,analyte,unit\nS01,0,TNF,pg/mL", 1, "value", "missing required column"),
    (f"{HEADER}\nS01,soon,TNF,3,pg/mL", 2, "time", "expected a number, got 'soon'"),
    (f"{HEADER}\nS01,0,TNF,<2,pg/mL", 2, "value", "expected a number, got '<2'"),
    (f"{HEADER}\nS01,-1,TNF,3,pg/mL", 2, "time", "expected a finite number >= 0, got -1.0"),
    (f"{HEADER}\nS01,0,TNF,-3,pg/mL", 2, "value", "expected a finite number >= 0, got -3.0"),
    (f"{HEADER},lloq\nS01,0,TNF,3,pg/mL,-2", 2, "lloq", "expected a finite number >= 0, got -2.0"),
    (f"{HEADER}\nS01,inf,TNF,3,pg/mL", 2, "time", "expected a finite number >= 0, got inf"),
    (f"{HEADER}\n,0,TNF,3,pg/mL", 2, "subject", "expected a value, got empty"),
    (
        f"{HEADER}\nS01,0,IL7,3,pg/mL",
        2,
        "analyte",
        "expected a known analyte: one of TNF, IL6, cortisol, got 'IL7'",
    ),
    (f"{HEADER}\nS01,0,cortisol,3,mg/dL", 2, "unit", "expected a unit of cortisol .*got 'mg/dL'"),
    (f"{HEADER}\nS01,0,TNF,3,nmol/L", 2, "unit", r"expected a unit of TNF \(pg/mL, ng/L, ng/mL\)"),
    (
        f"{HEADER},censored\nS01,0,TNF,3,pg/mL,below",
        2,
        "censored",
        "expected a censoring: one of left, right, none, got 'below'",
    ),
    (f"{HEADER}\nS01,0,TNF,,pg/mL", 2, "value", "a value may only be empty for a censored sample"),
    (
        f"{HEADER},lloq,uloq\nS01,0,TNF,,pg/mL,2,900",
        2,
        "censored",
        "expected 'left' or 'right': the value is empty and both lloq and uloq are given",
    ),
    (f"{HEADER},censored\nS01,0,TNF,,pg/mL,left", 2, "lloq", "expected the lloq of a left-censored sample"),
    (
        f"{HEADER},lloq,censored\nS01,0,TNF,,pg/mL,2,none",
        2,
        "value",
        r"expected a number \(censored is 'none'\), got empty",
    ),
    (f"{HEADER},lloq,uloq\nS01,0,TNF,5,pg/mL,20,10", 2, "uloq", r"expected uloq > lloq \(20\), got 10"),
    (
        f"{HEADER},lloq\nS01,0,TNF,,pg/mL,2\nS02,0,TNF,3,pg/mL,2\nS01,1,IL6,1,pg/mL,2",
        2,
        "value",
        "expected at least one quantified sample of subject 'S01'; all its 2 samples are censored",
    ),
    (f"{HEADER}\nS01,08:30,TNF,3,pg/mL", 2, "time", "expected hours since the challenge .* a clock time"),
    (f"{HEADER}\nS01,2026-12-01 08:30,TNF,3,pg/mL", 2, "time", "a clock time"),
    (f'{HEADER}\nS01,0,TNF,"1,5",pg/mL', 2, "value", "decimal point .*comma-separated.*got '1,5'"),
    (
        f"{HEADER}\nS01,2,TNF,3,pg/mL\nS01,2,TNF,4,pg/mL",
        3,
        "analyte",
        "expected one sample per subject, time and analyte; TNF of subject 'S01' at 2 h is already on line 2",
    ),
    (
        f"{HEADER},dose\nS01,0,TNF,3,pg/mL,2\nS01,1,TNF,3,pg/mL,3",
        3,
        "dose",
        r"expected the same dose on every row of subject 'S01' \(2.0 on line 2\), got 3.0",
    ),
    (
        f"{HEADER},group\nS01,0,TNF,3,pg/mL,a\nS01,1,TNF,3,pg/mL,b",
        3,
        "group",
        r"expected the same group on every row of subject 'S01' \('a' on line 2\), got 'b'",
    ),
    (f"{HEADER},dose\nS01,0,TNF,3,pg/mL,high", 2, "dose", "expected a number, got 'high'"),
    (f"{HEADER},dose\nS01,0,TNF,3,pg/mL,", 2, "dose", "expected a value, got empty"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), ERRORS)
def test_each_problem_has_its_message(tmp_path, text, line, column, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(path)
    assert f"obs.csv, line {line}, column {column!r}: " in str(info.value)
    assert any(re.search(message, p) for p in info.value.problems if f"line {line}," in p)


TABLE_ERRORS = [
    # (subjects csv, events csv, file, line, column, message)
    (
        "subject,group\nS01,a\nS02,b\nS03,b",
        None,
        "subjects.csv",
        4,
        "subject",
        "expected a subject with observations in obs.csv, got 'S03', which has none",
    ),
    (
        "subject,group\nS01,a",
        None,
        "obs.csv",
        3,
        "subject",
        "expected every subject in the subject table subjects.csv; 'S02' has no row there",
    ),
    (
        "subject,group\nS01,a\nS01,b\nS02,b",
        None,
        "subjects.csv",
        3,
        "subject",
        "expected each subject once in the subject table",
    ),
    (
        "subject,dose\nS01,2\nS02,5",
        None,
        "subjects.csv",
        3,
        "dose",
        r"expected dose of subject 'S02' as in obs.csv \(2.0\), got 5.0",
    ),
    (
        "subject,weight\nS01,70\nS02,heavy",
        None,
        "subjects.csv",
        3,
        "weight",
        "expected a number, got 'heavy'",
    ),
    (
        None,
        "subject,time,kind,target,value\nS01,1,infuse,L,1",
        "events.csv",
        2,
        "kind",
        "expected an event kind: one of bolus, set, got 'infuse'",
    ),
    (
        None,
        "subject,time,kind,target,value\nS01,-1,bolus,L,1",
        "events.csv",
        2,
        "time",
        "expected a finite number >= 0, got -1.0",
    ),
    (
        None,
        "subject,time,kind,target,value\nS01,1,bolus,L,1\nS09,1,bolus,L,1",
        "events.csv",
        3,
        "subject",
        "expected a subject of the observations, got 'S09'",
    ),
    (
        None,
        "subject,time,kind,target,value\nS01,1,bolus,,1",
        "events.csv",
        2,
        "target",
        "expected a value, got empty",
    ),
    (None, "subject,time,kind,value\nS01,1,bolus,1", "events.csv", 1, "target", "missing required column"),
]


@pytest.mark.parametrize(("subjects", "events", "file", "line", "column", "message"), TABLE_ERRORS)
def test_subject_and_event_table_problems(tmp_path, subjects, events, file, line, column, message):
    obs = write(tmp_path, f"{HEADER},dose\nS01,0,TNF,3,pg/mL,2\nS02,0,TNF,3,pg/mL,2")
    tables = {
        "subjects": None if subjects is None else write(tmp_path, subjects, "subjects.csv"),
        "events": None if events is None else write(tmp_path, events, "events.csv"),
    }
    with pytest.raises(DataError, match=message) as info:
        load_dataset(obs, **tables)
    assert f"{file}, line {line}, column {column!r}: " in str(info.value)


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match="obs.csv: the file is empty"):
        load_dataset(write(tmp_path, ""))


def test_all_problems_are_reported_together(tmp_path):
    text = f"""
{HEADER},dose
S01,0,TNF,3,pg/mL,2
S01,x,TNF,3,pg/mL,2
S01,1,IL7,3,pg/mL,2
S01,2,cortisol,3,mg/dL,2
S01,3,TNF,-1,pg/mL,3
"""
    events = write(tmp_path, "subject,time,kind,target,value\nS05,1,bolus,L,1", "events.csv")
    with pytest.raises(DataError) as info:
        load_dataset(write(tmp_path, text), events=events)
    message = str(info.value)
    assert message.startswith("obs.csv: 6 problems in the dataset")
    assert len(info.value.problems) == 6
    for line, column in [(3, "time"), (4, "analyte"), (5, "unit"), (6, "value"), (6, "dose")]:
        assert f"obs.csv, line {line}, column {column!r}" in message
    assert "events.csv, line 2, column 'subject'" in message
    assert message.index("line 3,") < message.index("line 4,") < message.index("events.csv, line 2")


def test_long_problem_lists_are_capped(tmp_path):
    rows = "\n".join(f"S01,{t},TNF,bad,pg/mL" for t in range(45))
    with pytest.raises(DataError) as info:
        load_dataset(write(tmp_path, f"{HEADER}\n{rows}"))
    lines = str(info.value).splitlines()
    assert len(lines) == 1 + 30 + 1
    assert lines[-1].strip() == "... and 15 more problems"
    assert len(info.value.problems) == 45


# ---- property: valid tables survive save and load unchanged --------------------------------
FACTORS = {  # to the canonical unit, written out independently of the module
    "TNF": {"pg/mL": 1.0, "ng/L": 1.0, "ng/mL": 1000.0},
    "IL6": {"pg/ml": 1.0, "ng/mL": 1000.0},
    "cortisol": {"nmol/L": 1.0, "ug/dL": 27.5893, "µg/dL": 27.5893, "ng/mL": 2.75893},
}
positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def tidy_frames(draw):
    ids = draw(
        st.lists(
            st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=4),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    rows = {}
    for subject in ids:
        group = draw(st.sampled_from(["control", "chronic stress"]))
        dose = draw(st.floats(min_value=0, max_value=10, allow_nan=False))
        samples = draw(
            st.lists(
                st.tuples(
                    st.floats(min_value=0, max_value=48, allow_nan=False), st.sampled_from(list(FACTORS))
                ),
                min_size=1,
                max_size=6,
                unique=True,
            )
        )
        rows[subject] = []
        for k, (time, analyte) in enumerate(samples):
            lloq = None if k == 0 else draw(st.none() | positive)  # one quantified sample at least
            uloq = None if lloq is None else draw(st.none() | st.just(lloq * 1000))
            value = draw(positive)
            if lloq is not None and uloq is None and draw(st.booleans()):
                value = None  # below the limit, reported empty
            rows[subject].append(
                {
                    "subject": subject,
                    "time": time,
                    "analyte": analyte,
                    "value": value,
                    "unit": draw(st.sampled_from(list(FACTORS[analyte]))),
                    "lloq": lloq,
                    "uloq": uloq,
                    "group": group,
                    "dose": dose,
                }
            )
    frame = pd.DataFrame(draw(st.permutations([row for s in ids for row in rows[s]])))  # any order
    return frame.astype({"value": float, "lloq": float, "uloq": float})


@settings(max_examples=30, deadline=None, database=None)  # no .hypothesis folder in the tree
@given(tidy_frames())
def test_valid_tables_round_trip(frame):
    ds = load_dataset(frame)

    # Independent expectations: canonical values and the M3 censoring rule.
    factor = np.array([FACTORS[a][u] for a, u in zip(frame["analyte"], frame["unit"], strict=True)])
    value, lloq, uloq = (frame[c].to_numpy() * factor for c in ("value", "lloq", "uloq"))
    left = ~np.isnan(lloq) & (np.isnan(value) | (value <= lloq))
    right = ~left & ~np.isnan(uloq) & (value >= uloq)
    expected = frame[["subject", "time", "analyte"]].assign(
        value=np.where(left, lloq, np.where(right, uloq, value)),
        censored=np.where(left, "left", np.where(right, "right", "none")),
    )
    merged = ds.observations.merge(expected, on=["subject", "time", "analyte"], validate="one_to_one")
    assert len(merged) == len(frame)
    np.testing.assert_allclose(merged["value_x"], merged["value_y"], rtol=1e-5)
    assert (merged["censored_x"] == merged["censored_y"]).all()
    assert ds.subject_ids == tuple(dict.fromkeys(frame["subject"]))

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        save_dataset(ds, path)
        again = load_dataset(path)
        save_dataset(again, path, overwrite=True)
        assert_same(load_dataset(path), ds)
    assert_same(again, ds)
    assert again.summary() == ds.summary()


# ---- what real users bring -----------------------------------------------------------------
def test_rows_in_any_order_are_sorted_stably_and_lines_stay_those_of_the_file(tmp_path):
    # Grouped by analyte, each analyte in time order: subject S01's times go 0, 2, 0, 2.
    text = (f"{HEADER}\nS01,0,TNF,1,pg/mL\nS01,2,TNF,300,pg/mL\nS02,0,TNF,2,pg/mL\n"
            "S01,0,IL6,1,pg/mL\nS01,2,IL6,500,pg/mL")
    ds = load_dataset(write(tmp_path, text))
    obs = ds.observations
    assert ds.subject_ids == ("S01", "S02")
    assert list(zip(obs["subject"], obs["time"], obs["analyte"], obs["value"], strict=True)) == [
        ("S01", 0.0, "TNF", 1.0), ("S01", 0.0, "IL6", 1.0), ("S01", 2.0, "TNF", 300.0),
        ("S01", 2.0, "IL6", 500.0), ("S02", 0.0, "TNF", 2.0)]
    with pytest.raises(DataError, match=r"obs.csv, line 6, column 'value': expected a number, got 'x'"):
        load_dataset(write(tmp_path, text.replace("500,pg/mL", "x,pg/mL")))


def test_header_without_rows(tmp_path):
    with pytest.raises(DataError, match="obs.csv: no data rows below the header line; expected a header"):
        load_dataset(write(tmp_path, HEADER))


def test_binary_file(tmp_path):
    path = tmp_path / "book.xlsx"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)))
    with pytest.raises(DataError, match=r"book.xlsx: not a text file .*Excel workbook.*expected a CSV text"):
        load_dataset(path)


def test_latin1_export_is_read(tmp_path):
    path = tmp_path / "obs.csv"
    path.write_bytes(f"{HEADER}\nS01,0,cortisol,12.1,µg/dL\nS01,0,TNF,3,pg/mL\n".encode("latin-1"))
    ds = load_dataset(path)
    np.testing.assert_allclose(ds.observations["value"], [3.0, 12.1 * 1e4 / 362.46])


def test_utf8_bom_and_utf16_are_read(tmp_path):
    text = f"{HEADER},group\nS01,0,TNF,3,pg/mL,µ-group\n"
    for encoding in ("utf-8-sig", "utf-16"):
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(text.encode(encoding))
        ds = load_dataset(path)
        assert ds.subject_ids == ("S01",) and ds.groups == ("µ-group",)


def test_semicolons_with_decimal_commas_are_read(tmp_path):
    text = "subject;time;analyte;value;unit;dose\nS01;0;TNF;1,5;pg/mL;2\nS01;1,5;IL6;620,25;pg/mL;2"
    ds = load_dataset(write(tmp_path, text))
    assert list(ds.observations["time"]) == [0.0, 1.5] and list(ds.observations["value"]) == [1.5, 620.25]
    tabs = load_dataset(write(tmp_path, text.replace(";", "\t"), "tabs.tsv"))
    assert_same(tabs, ds)


def test_decimal_point_among_decimal_commas_is_ambiguous(tmp_path):
    text = "subject;time;analyte;value;unit\nS01;0;TNF;1,5;pg/mL\nS01;2;TNF;1.297;pg/mL"
    with pytest.raises(DataError, match=r"line 3, column 'value': expected a number with a decimal comma.*"
                                        r"got '1.297' \(a decimal point or a thousands separator\?\)"):
        load_dataset(write(tmp_path, text))
    points = load_dataset(write(tmp_path, text.replace("1,5", "1.5")))  # points only: decimal points
    assert list(points.observations["value"]) == [1.5, 1.297]


def test_one_column_names_the_delimiters_read(tmp_path):
    with pytest.raises(DataError, match=r"obs.csv, line 1: found one column 'subject\|time\|analyte.*"
                                        "expected columns separated by commas, semicolons or tabs"):
        load_dataset(write(tmp_path, "subject|time|analyte|value|unit\nS01|0|TNF|3|pg/mL"))


def test_duplicated_header_line(tmp_path):
    text = f"{HEADER}\nS01,0,TNF,3,pg/mL\n{HEADER}\nS02,0,TNF,3,pg/mL"
    with pytest.raises(DataError, match=r"obs.csv, line 3: repeats the header line; expected one header"):
        load_dataset(write(tmp_path, text))


def test_ragged_rows_name_the_file(tmp_path):
    with pytest.raises(DataError, match="obs.csv: cannot read it as comma-separated text .*Expected 5 field"):
        load_dataset(write(tmp_path, f"{HEADER}\nS01,0,TNF,3,pg/mL,extra,cells"))


@pytest.mark.parametrize(("header", "times"), [("time_min", [0.0, 1.5]), ("Time (min)", [0.0, 1.5]),
                                               ("time [h]", [0.0, 90.0]), ("time_hours", [0.0, 90.0])])
def test_time_column_named_with_its_unit(tmp_path, header, times):
    text = f"subject,{header},analyte,value,unit\nS01,0,TNF,3,pg/mL\nS01,90,TNF,4,pg/mL"
    ds = load_dataset(write(tmp_path, text))
    assert list(ds.observations["time"]) == times


def test_time_in_an_unknown_unit_is_a_missing_column(tmp_path):
    with pytest.raises(DataError, match="line 1, column 'time': missing required column"):
        load_dataset(write(tmp_path, "subject,time_days,analyte,value,unit\nS01,0,TNF,3,pg/mL"))


def test_flagged_samples_are_kept_unless_excluded(tmp_path):
    text = f"{HEADER},flag\nS01,0,TNF,3,pg/mL,\nS01,2,TNF,1297,pg/mL, outlier \nS02,0,TNF,2,pg/mL,outlier"
    ds = load_dataset(write(tmp_path, text))
    assert list(ds.observations["flag"]) == ["", "outlier", "outlier"] and ds.n_flagged == 2
    assert ds.summary()["n_flagged"] == 2
    save_dataset(ds, tmp_path / "saved.csv")
    assert_same(load_dataset(tmp_path / "saved.csv"), ds)
    kept = load_dataset(write(tmp_path, text), exclude_flagged=True)
    assert list(kept.observations["value"]) == [3.0] and kept.subject_ids == ("S01",)  # S02 had no other
    assert_same(kept, ds.without_flagged())
    unflagged = load_dataset(write(tmp_path, EXAMPLE))
    assert set(unflagged.observations["flag"]) == {""}
    save_dataset(unflagged, tmp_path / "plain.csv")
    assert "flag" not in (tmp_path / "plain.csv").read_text().splitlines()[0]  # no empty column written
