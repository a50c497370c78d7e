"""The data layer: read, check and normalise cytokine time courses into a :class:`Dataset`.

Data arrive as one tidy long table, one row per sample (a CSV file or a pandas DataFrame)::

    subject,time,analyte,value,unit,lloq,group,dose
    S01,0,TNF,,pg/mL,2.0,control,2.0
    S01,0,cortisol,12.1,ug/dL,,control,2.0
    S01,1.5,IL6,0.62,ng/mL,0.002,control,2.0

Required columns are ``subject, time, analyte, value, unit``; optional ones are ``lloq``,
``uloq``, ``censored``, ``group`` and ``flag`` (a per-sample mark such as ``outlier``, kept unless
``exclude_flagged=True``); every further column is a per-subject number (an input such
as ``dose`` or a covariate such as ``stress_score``) and must be the same on every row of a
subject. Time is in hours since the challenge. A subject table and an events table may be given
besides. ``data/README.md`` describes the format in full.

Loading is a linter (after libpetab): every table is checked completely, every problem is recorded
with its file, line and column, and one :class:`DataError` lists them all. What loading changes is
documented, never silent: values, lloq and uloq are converted to the canonical unit of their
analyte (:data:`CANONICAL_UNITS`), and a censored sample's value becomes its limit (M3 convention).
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from .files import write_atomically

__all__ = ["CANONICAL_UNITS", "OBSERVATION_COLUMNS", "DataError", "Dataset", "load_dataset", "model_analytes",
           "save_dataset"]


class DataError(ValueError):
    """A dataset is invalid; the message lists every problem with its file, line and column.

    Attributes
    ----------
    problems : tuple of str
        One line per problem, e.g. ``"obs.csv, line 4, column 'value': expected a number, got 'x'"``.
    """

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


#: Unit every analyte is converted to on loading.
CANONICAL_UNITS: dict[str, str] = {"TNF": "pg/mL", "IL6": "pg/mL", "cortisol": "nmol/L"}

CORTISOL_MOLAR_MASS = 362.46  # g/mol
_MAX_LISTED = 30  # problems shown in an error message; the rest are counted

# Accepted units (normalised: lower case, "u" for micro) -> factor to the canonical unit.
_MASS_PER_VOLUME = {"pg/ml": 1.0, "ng/l": 1.0, "ng/ml": 1000.0}  # to pg/mL
_CORTISOL_UNITS = {
    "nmol/l": 1.0,
    "ug/dl": 1e4 / CORTISOL_MOLAR_MASS,  # ug/dL -> ug/L (x10) -> nmol/L (x1000 / M) = 27.59
    "ug/l": 1e3 / CORTISOL_MOLAR_MASS,  # = ng/mL, 2.759
    "ng/ml": 1e3 / CORTISOL_MOLAR_MASS,
}

REQUIRED_COLUMNS = ("subject", "time", "analyte", "value", "unit")
OPTIONAL_COLUMNS = ("lloq", "uloq", "censored", "group", "flag")
EVENT_COLUMNS = ("subject", "time", "kind", "target", "value")
EVENT_KINDS = ("bolus", "set")
CENSORED_VALUES = ("left", "right", "none")
NO_GROUP = "all"
#: Columns of ``Dataset.observations``.
OBSERVATION_COLUMNS = ("subject", "time", "analyte", "value", "unit", "censored", "lloq", "uloq", "flag")


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated dataset in canonical units: observations, subjects and events.

    Attributes
    ----------
    observations : pandas.DataFrame
        One row per sample, RangeIndex, sorted by subject (order of first appearance), time and
        analyte (TNF, IL6, cortisol, then other analytes alphabetically). Columns: ``subject``
        (str), ``time`` (float, h), ``analyte`` (str), ``value`` (float, canonical unit; for a
        censored sample its limit), ``unit`` (str, the canonical unit), ``censored`` (str:
        ``"none"``, ``"left"`` or ``"right"``), ``lloq`` and ``uloq`` (float, NaN if none),
        ``flag`` (str, ``""`` unless the sample is flagged, e.g. ``"outlier"``).
    subjects : pandas.DataFrame
        Indexed by ``subject`` (same order); column ``group`` (str, ``"all"`` when the data have
        no group) and one float column per input or covariate.
    events : pandas.DataFrame
        Columns ``subject, time, kind, target, value`` (possibly empty), sorted by subject and time.
    source : str
        File the observations were read from, or ``"<DataFrame>"``.
    """

    observations: pd.DataFrame
    subjects: pd.DataFrame
    events: pd.DataFrame
    source: str

    def __repr__(self) -> str:
        return (
            f"Dataset(source={self.source!r}, subjects={len(self.subjects)}, "
            f"samples={len(self.observations)}, censored={self.n_censored}, "
            f"analytes={list(self.analytes)}, events={len(self.events)})"
        )

    @property
    def subject_ids(self) -> tuple[str, ...]:
        """Subject identifiers in order."""
        return tuple(self.subjects.index)

    @property
    def groups(self) -> tuple[str, ...]:
        """Distinct groups in order of first appearance."""
        return tuple(dict.fromkeys(self.subjects["group"]))

    @property
    def analytes(self) -> tuple[str, ...]:
        """Analytes present, in the observations' sort order."""
        return _sorted_analytes(self.observations["analyte"].unique())

    @property
    def n_censored(self) -> int:
        """Number of censored samples (left or right)."""
        return int((self.observations["censored"] != "none").sum())

    @property
    def n_flagged(self) -> int:
        """Number of flagged samples (a non-empty ``flag``), e.g. outliers kept in the data."""
        obs = self.observations
        return int((obs["flag"].fillna("") != "").sum()) if "flag" in obs else 0

    def summary(self) -> dict:
        """Return counts: subjects, samples, censored and flagged samples, per analyte and per group."""
        per_analyte = self.observations["analyte"].value_counts()
        per_group = self.subjects["group"].value_counts()
        return {
            "n_subjects": len(self.subjects),
            "n_samples": len(self.observations),
            "n_censored": self.n_censored,
            "n_flagged": self.n_flagged,
            "analytes": {a: int(per_analyte[a]) for a in self.analytes},
            "groups": {g: int(per_group[g]) for g in self.groups},
        }

    def without_flagged(self) -> Dataset:
        """Return the dataset without its flagged samples; a subject left with none is dropped."""
        if not self.n_flagged:
            return self
        obs = self.observations[self.observations["flag"].fillna("") == ""].reset_index(drop=True)
        kept = self.subjects.index.isin(obs["subject"])
        events = self.events[self.events["subject"].isin(obs["subject"])].reset_index(drop=True)
        return Dataset(obs, self.subjects[kept], events, self.source)

    def select(self, subjects: Iterable[str]) -> Dataset:
        """Return the dataset restricted to ``subjects`` (kept in this dataset's order).

        Raises
        ------
        DataError
            A subject is not in the dataset.
        """
        wanted = {str(s) for s in ([subjects] if isinstance(subjects, str) else subjects)}
        unknown = sorted(wanted - set(self.subject_ids))
        if unknown:
            raise DataError(f"{self.source}: unknown subjects {unknown}; subjects: {list(self.subject_ids)}")
        obs = self.observations[self.observations["subject"].isin(wanted)].reset_index(drop=True)
        events = self.events[self.events["subject"].isin(wanted)].reset_index(drop=True)
        return Dataset(obs, self.subjects[self.subjects.index.isin(wanted)], events, self.source)


# --------------------------------------------------------------------------------------------
# Problems: collected while checking, raised together
# --------------------------------------------------------------------------------------------
class _Problems:
    """Collects problems as ``source, line, column: expected ...``; one problem per cell."""

    def __init__(self) -> None:
        self._lines: dict[tuple, str] = {}

    def add(self, source: str, line: int, column: str, text: str) -> None:
        key = (source, line, column)
        if key not in self._lines:  # the first problem of a cell is the one to fix
            self._lines[key] = f"{source}, line {line}, column {column!r}: {text}"

    def raise_if_any(self, source: str) -> None:
        if not self._lines:
            return
        sources = list(dict.fromkeys([source, *(key[0] for key in self._lines)]))
        keys = sorted(self._lines, key=lambda key: (sources.index(key[0]), key[1]))  # stable
        lines = [self._lines[key] for key in keys]
        shown = lines[:_MAX_LISTED]
        if len(lines) > _MAX_LISTED:
            shown.append(f"... and {len(lines) - _MAX_LISTED} more problems")
        header = (
            f"{source}: {len(lines)} problem{'s' * (len(lines) > 1)} in the dataset "
            "(lines count the CSV header as line 1):"
        )
        raise DataError("\n  ".join([header, *shown]), lines)


def _line(row: int) -> int:
    """CSV line of a 0-based data row (the header is line 1)."""
    return int(row) + 2


def _show(value) -> str:
    return "empty" if _is_missing(value) else repr(value if isinstance(value, str) else float(value))


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


# --------------------------------------------------------------------------------------------
# Reading and parsing cells
# --------------------------------------------------------------------------------------------
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
_BINARY_KINDS = {b"PK\x03\x04": "an Excel workbook or another zip archive? Export it as CSV",
                 b"\x89HDF": "a netCDF/HDF5 file, such as a fit result?",
                 b"%PDF": "a PDF document?"}
_CLOCK_TIME = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?(\s*[ap]\.?m\.?)?$|^\d{4}-\d{2}-\d{2}[ T]\d", re.IGNORECASE)
# A time column named with its unit: hours are the format's unit, minutes are converted.
_TIME_HEADER = re.compile(r"^time\s*[_\s(\[]\s*(?P<unit>h|hr|hrs|hours?|min|mins|minutes?)\s*[)\]]?$")
_TIME_FACTORS = {"h": 1.0, "hr": 1.0, "hrs": 1.0, "hour": 1.0, "hours": 1.0,
                 "min": 1 / 60, "mins": 1 / 60, "minute": 1 / 60, "minutes": 1 / 60}


@dataclass(frozen=True)
class _Table:
    """A table as read: cells as text (only empty cells missing), its name, and how it was written."""

    frame: pd.DataFrame
    source: str
    delimiter: str = ","  # "," for a DataFrame


def _decode(path: Path, source: str) -> str:
    """Return the file's text: UTF-8 (BOM or not), UTF-16 with a BOM, else Windows-1252 or Latin-1."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise DataError(f"{source}: cannot read the file ({error.strerror}); "
                        "expected a CSV text file") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # "Unicode text" exported by spreadsheets
        return raw.decode("utf-16")
    if b"\x00" in raw[:8192]:
        kind = next((k for magic, k in _BINARY_KINDS.items() if raw.startswith(magic)), "")
        raise DataError(f"{source}: not a text file (it holds binary data{'; ' + kind if kind else ''}); "
                        "expected a CSV text file with a header line subject,time,analyte,value,unit")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Not UTF-8: a spreadsheet's legacy export (e.g. "µg/dL" as byte 0xB5), Windows-1252 or Latin-1.
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def _read(table: str | os.PathLike | pd.DataFrame, name: str = "<DataFrame>") -> _Table:
    """Read a table as given: CSV cells stay text (only empty cells are missing).

    A file may be comma-, semicolon- or tab-separated (the header line decides), in any of the
    encodings :func:`_decode` reads. An empty file, a repeated header line and text that is not a
    table are refused, each with one message.
    """
    if isinstance(table, pd.DataFrame):
        frame = table.reset_index(drop=True)
        frame.columns = [str(c).strip() for c in frame.columns]
        return _Table(frame, name)
    source = Path(table).name
    text = _decode(Path(table), source)
    expected = "a header line (e.g. subject,time,analyte,value,unit) and one row per sample"
    if not text.strip():
        raise DataError(f"{source}: the file is empty; expected {expected}")
    header = next(line for line in text.splitlines() if line.strip())
    delimiter = max(_DELIMITERS, key=header.count)  # ties (none found): comma, the first
    try:  # header=None: a row with more cells than the header is an error, not an index
        cells = pd.read_csv(
            io.StringIO(text), sep=delimiter, header=None, dtype=str, keep_default_na=False, na_values=[""]
        )
    except pd.errors.ParserError as error:
        raise DataError(f"{source}: cannot read it as {_DELIMITERS[delimiter]}-separated text ({error}); "
                        f"expected {expected}") from None
    # Columns without a name or any cell: trailing delimiters, as spreadsheets write them.
    cells = cells.loc[:, cells.iloc[0].notna() | cells.iloc[1:].notna().any()]
    columns = [str(c).strip() for c in cells.iloc[0].fillna("")]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise DataError(f"{source}, line 1: column {twice[0]!r} appears more than once; "
                        "expected each column once")
    frame = cells.iloc[1:].reset_index(drop=True).set_axis(columns, axis=1)
    if len(frame.columns) == 1 and frame.columns[0] != "subject":
        raise DataError(f"{source}, line 1: found one column {frame.columns[0]!r}; expected columns "
                        "separated by commas, semicolons or tabs, e.g. subject,time,analyte,value,unit")
    names = [c.lower() for c in frame.columns]
    repeated = frame.fillna("").apply(lambda row: [str(c).strip().lower() for c in row] == names, axis=1)
    if repeated.any():
        lines = ", ".join(str(_line(row)) for row in frame.index[repeated])
        raise DataError(f"{source}, line {lines}: repeats the header line; expected one header line and "
                        "data rows below it (were files joined?): delete the repeated line")
    return _Table(frame, source, delimiter)


def _text(column: pd.Series) -> pd.Series:
    """Cells as stripped text; empty cells are missing (NaN)."""
    text = column.astype("str").str.strip()
    return text.mask(text == "")


def _numbers(
    frame: pd.DataFrame, column: str, source: str, problems: _Problems, decimal_comma: bool = False
) -> pd.Series:
    """Parse a column as float; a cell that is not a number is a problem (and NaN here)."""
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return raw.astype(float)
    values = np.full(len(raw), np.nan)
    for row, cell in enumerate(raw):
        if _is_missing(cell) or str(cell).strip() == "":
            continue
        text = str(cell).strip()
        if decimal_comma and "." in text:
            problems.add(source, _line(row), column, "expected a number with a decimal comma, as elsewhere "
                         f"in this file, got {text!r} (a decimal point or a thousands separator?)")
            continue
        try:
            values[row] = float(text.replace(",", ".") if decimal_comma else text)
        except ValueError:
            problems.add(source, _line(row), column, _not_a_number(column, text, decimal_comma))
    return pd.Series(values, index=raw.index, name=column)


def _not_a_number(column: str, text: str, decimal_comma: bool) -> str:
    if column == "time" and _CLOCK_TIME.match(text):
        return (f"expected hours since the challenge (a number, e.g. 1.5), got {text!r}, a clock time: "
                "give each sample's time since the endotoxin dose in hours")
    if "," in text and not decimal_comma:
        return f"expected a number with a decimal point (the file is comma-separated), got {text!r}"
    return f"expected a number, got {text!r}"


def _time_in_hours(frame: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Rename a time column named with its unit (``time_min``, ``time (h)``) to ``time``; its factor to h."""
    if "time" in frame:
        return frame, 1.0
    for column in frame.columns:
        match = _TIME_HEADER.match(column.lower())
        if match:
            return frame.rename(columns={column: "time"}), _TIME_FACTORS[match["unit"]]
    return frame, 1.0


def _normalise_unit(unit: str) -> str:
    return unit.replace(" ", "").replace("µ", "u").replace("μ", "u").lower().replace("mcg", "ug")


def _unit_factors(analyte: str, canonical: str) -> dict[str, float]:
    """Return the accepted units of an analyte (normalised) and their factors to its canonical unit."""
    if analyte == "cortisol" and canonical == "nmol/L":
        return _CORTISOL_UNITS
    if canonical == "pg/mL":
        return _MASS_PER_VOLUME
    return {_normalise_unit(canonical): 1.0}


def _sorted_analytes(names: Iterable[str]) -> tuple[str, ...]:
    """TNF, IL6, cortisol first (the models' order), then other analytes alphabetically."""
    known = list(CANONICAL_UNITS)
    return tuple(sorted(set(names), key=lambda a: (known.index(a) if a in known else len(known), a)))


# --------------------------------------------------------------------------------------------
# pandera: column presence, types and ranges
# --------------------------------------------------------------------------------------------
_NON_NEGATIVE = pa.Check(
    lambda s: s.isna() | (np.isfinite(s) & (s >= 0)), error="expected a finite number >= 0"
)
_FINITE = pa.Check(lambda s: s.isna() | np.isfinite(s), error="expected a finite number")


def _number_column(nullable: bool, check: pa.Check = _NON_NEGATIVE, required: bool = True) -> pa.Column:
    return pa.Column(float, check, nullable=nullable, required=required)


def _choice(values: Iterable[str], what: str) -> pa.Check:
    values = list(values)
    return pa.Check.isin(values, error=f"expected {what}: one of {', '.join(values)}")


def _observation_schema(analytes: Iterable[str], extra: Iterable[str]) -> pa.DataFrameSchema:
    columns = {
        "subject": pa.Column(str),
        "time": _number_column(nullable=False),
        "analyte": pa.Column(str, _choice(analytes, "a known analyte")),
        "value": _number_column(nullable=True),
        "unit": pa.Column(str),
        "lloq": _number_column(nullable=True, required=False),
        "uloq": _number_column(nullable=True, required=False),
        "censored": pa.Column(str, _choice(CENSORED_VALUES, "a censoring"), nullable=True, required=False),
        "group": pa.Column(str, required=False),
        "flag": pa.Column(str, nullable=True, required=False),
    }
    columns.update({name: _number_column(nullable=False, check=_FINITE) for name in extra})
    return pa.DataFrameSchema(columns)


def _subject_schema(extra: Iterable[str]) -> pa.DataFrameSchema:
    columns = {
        "subject": pa.Column(
            str, pa.Check(lambda s: ~s.duplicated(), error="expected each subject once in the subject table")
        ),
        "group": pa.Column(str, required=False),
    }
    columns.update({name: _number_column(nullable=False, check=_FINITE) for name in extra})
    return pa.DataFrameSchema(columns)


_EVENT_SCHEMA = pa.DataFrameSchema(
    {
        "subject": pa.Column(str),
        "time": _number_column(nullable=False),
        "kind": pa.Column(str, _choice(EVENT_KINDS, "an event kind")),
        "target": pa.Column(str),
        "value": _number_column(nullable=False, check=_FINITE),
    }
)


def _validate(schema: pa.DataFrameSchema, frame: pd.DataFrame, source: str, problems: _Problems) -> bool:
    """Run a pandera schema lazily, record its failure cases; False if required columns are missing."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        complete = True
        for case in errors.failure_cases.itertuples(index=False):
            line = 1 if case.index is None else _line(case.index)  # 1: the header
            if case.check == "column_in_dataframe":
                complete = False
                expected = ", ".join(c for c in schema.columns if schema.columns[c].required)
                problems.add(
                    source, 1, case.failure_case, f"missing required column (expected columns {expected})"
                )
            elif case.check == "not_nullable":
                problems.add(source, line, case.column, "expected a value, got empty")
            else:
                problems.add(source, line, case.column, f"{case.check}, got {_show(case.failure_case)}")
        return complete
    return True


def _parse(table: _Table, numeric: Iterable[str], problems: _Problems) -> pd.DataFrame:
    """Text columns stripped, ``numeric`` columns parsed to float (bad cells recorded).

    In a file separated by semicolons or tabs, numbers may have decimal commas (``1,5``); then a
    number with a point is ambiguous (``1.297``: a thousands separator?) and refused.
    """
    frame, numeric = table.frame, [c for c in table.frame.columns if c in set(numeric)]
    decimal_comma = table.delimiter != "," and any(
        frame[c].astype(str).str.contains(",", regex=False).any() for c in numeric
    )
    return pd.DataFrame(
        {c: _numbers(frame, c, table.source, problems, decimal_comma) if c in numeric else _text(frame[c])
         for c in frame.columns}
    )


# --------------------------------------------------------------------------------------------
# Checks that need more than one cell
# --------------------------------------------------------------------------------------------
_UNIT_NAMES = {
    "pg/ml": "pg/mL",
    "ng/l": "ng/L",
    "ng/ml": "ng/mL",
    "nmol/l": "nmol/L",
    "ug/dl": "ug/dL (µg/dL, mcg/dL)",
    "ug/l": "ug/L",
}


def _unit_factor_column(
    obs: pd.DataFrame, units: Mapping[str, str], source: str, problems: _Problems
) -> np.ndarray:
    """Factor of each row to its analyte's canonical unit (1 where the unit is a problem)."""
    factors = np.ones(len(obs))
    for row, (analyte, unit) in enumerate(zip(obs["analyte"], obs["unit"], strict=True)):
        if analyte not in units or _is_missing(unit):
            continue  # reported by the schema
        accepted = _unit_factors(analyte, units[analyte])
        factor = accepted.get(_normalise_unit(unit))
        if factor is None:
            listed = ", ".join(_UNIT_NAMES.get(u, u) for u in accepted)
            problems.add(source, _line(row), "unit", f"expected a unit of {analyte} ({listed}), got {unit!r}")
        else:
            factors[row] = factor
    return factors


def _censor(obs: pd.DataFrame, source: str, problems: _Problems) -> pd.DataFrame:
    """Apply the M3 convention: a censored sample's value becomes its limit, flagged in ``censored``.

    Without a ``censored`` cell, a value that is empty or at/below ``lloq`` is left-censored and
    one that is empty or at/above ``uloq`` right-censored. A ``censored`` cell decides; its limit
    comes from ``lloq``/``uloq`` or, if that is empty, from ``value``. Returns the columns
    value, censored, lloq and uloq.
    """
    value, lloq, uloq = (obs[c].to_numpy(dtype=float, copy=True) for c in ("value", "lloq", "uloq"))
    censored = obs["censored"].to_numpy(dtype=object, copy=True)
    for row in range(len(obs)):
        v, lo, hi, line = value[row], lloq[row], uloq[row], _line(row)
        if lo >= hi:  # False when either is NaN
            problems.add(source, line, "uloq", f"expected uloq > lloq ({lo:g}), got {hi:g}")
            continue
        if _is_missing(censored[row]):
            if np.isnan(v) and not (np.isnan(lo) or np.isnan(hi)):
                problems.add(
                    source,
                    line,
                    "censored",
                    "expected 'left' or 'right': the value is empty and both lloq and uloq are given",
                )
                continue
            if np.isnan(v) and np.isnan(lo) and np.isnan(hi):
                problems.add(
                    source,
                    line,
                    "value",
                    "expected a number; a value may only be empty "
                    "for a censored sample, with an lloq or uloq",
                )
                continue
            below = not np.isnan(lo) and (np.isnan(v) or v <= lo)
            above = not np.isnan(hi) and (np.isnan(v) or v >= hi)
            censored[row] = "left" if below else "right" if above else "none"
        if censored[row] == "none" and np.isnan(v):
            problems.add(source, line, "value", "expected a number (censored is 'none'), got empty")
        elif censored[row] in ("left", "right"):
            limits, name = (lloq, "lloq") if censored[row] == "left" else (uloq, "uloq")
            if np.isnan(limits[row]) and np.isnan(v):
                problems.add(
                    source,
                    line,
                    name,
                    f"expected the {name} of a {censored[row]}-censored "
                    "sample (or the limit in column 'value'), got empty",
                )
                continue
            if np.isnan(limits[row]):
                limits[row] = v
            value[row] = limits[row]
    return pd.DataFrame({"value": value, "censored": censored, "lloq": lloq, "uloq": uloq}, index=obs.index)


def _check_unique(obs: pd.DataFrame, source: str, problems: _Problems) -> None:
    """One sample per subject, time and analyte (rows may come in any order)."""
    seen: dict[tuple, int] = {}
    rows = zip(obs["subject"], obs["time"], obs["analyte"], strict=True)
    for row, key in enumerate(rows):
        subject, time, analyte = key
        if _is_missing(subject) or np.isnan(time):
            continue  # reported by the schema
        if key in seen:
            problems.add(
                source,
                _line(row),
                "analyte",
                f"expected one sample per subject, time and analyte; "
                f"{analyte} of subject {subject!r} at {time:g} h is already on line {seen[key]}",
            )
        else:
            seen[key] = _line(row)


def _check_quantified(obs: pd.DataFrame, source: str, problems: _Problems) -> None:
    """Each subject has at least one sample inside the quantification range."""
    for subject, rows in obs[obs["subject"].notna()].groupby("subject", sort=False):
        if (rows["censored"].isin(["left", "right"])).all():
            problems.add(
                source,
                _line(rows.index[0]),
                "value",
                f"expected at least one quantified sample of subject {subject!r}; all its {len(rows)} "
                "samples are censored (outside lloq/uloq), which leaves its time course unknown: "
                "check the limits, or leave the subject out",
            )


def _per_subject(frame: pd.DataFrame, columns: list[str], source: str, problems: _Problems) -> pd.DataFrame:
    """Return one row per subject (first appearance) of columns constant within a subject."""
    frame = frame[frame["subject"].notna()]
    first = frame.drop_duplicates("subject")
    reference = first.set_index("subject")[columns]
    first_line = dict(zip(first["subject"], first.index.map(_line), strict=True))
    for column in columns:
        expected = frame["subject"].map(reference[column])
        cells = frame[column]
        differs = cells.notna() & expected.notna() & (cells != expected)  # empty cells: schema
        for label in frame.index[differs]:
            subject = frame.at[label, "subject"]
            problems.add(
                source,
                _line(label),
                column,
                f"expected the same {column} on every row of "
                f"subject {subject!r} ({_show(expected[label])} on line {first_line[subject]}), "
                f"got {_show(cells[label])}",
            )
    return reference


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def _load_observations(data, units: Mapping[str, str], problems: _Problems):
    """Read and check the observations (file order, canonical units, censoring applied)."""
    table = _read(data)
    if table.frame.empty:
        rows = "no rows" if isinstance(data, pd.DataFrame) else "no data rows below the header line"
        raise DataError(f"{table.source}: {rows}; expected one row per sample")
    frame, time_factor = _time_in_hours(table.frame)
    table, source = dataclasses.replace(table, frame=frame), table.source
    extra = [c for c in frame.columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    obs = _parse(table, ["time", "value", "lloq", "uloq", *extra], problems)
    if "time" in obs:
        obs["time"] = obs["time"] * time_factor
    if "censored" in obs:
        obs["censored"] = obs["censored"].str.lower()
    if not _validate(_observation_schema(units, extra), obs, source, problems):
        return None, None, source
    for column in ("lloq", "uloq"):
        if column not in obs:
            obs[column] = np.nan
    if "censored" not in obs:
        obs["censored"] = pd.Series(np.nan, index=obs.index, dtype="str")
    obs["flag"] = obs["flag"].fillna("") if "flag" in obs else ""
    factors = _unit_factor_column(obs, units, source, problems)
    for column in ("value", "lloq", "uloq"):
        obs[column] = obs[column] * factors
    obs[["value", "censored", "lloq", "uloq"]] = _censor(obs, source, problems)
    obs["unit"] = obs["analyte"].map(units)
    _check_unique(obs, source, problems)
    _check_quantified(obs, source, problems)
    per_subject = _per_subject(obs, [c for c in ("group", *extra) if c in obs], source, problems)
    return obs, per_subject, source


def _load_subject_table(table, problems: _Problems) -> tuple[pd.DataFrame | None, str]:
    """Read and check the subject table; None if required columns are missing."""
    read = _read(table, "<subjects DataFrame>")
    source = read.source
    extra = [c for c in read.frame.columns if c not in ("subject", "group")]
    table = _parse(read, extra, problems)
    return (table if _validate(_subject_schema(extra), table, source, problems) else None), source


def _merge_subjects(
    per_subject: pd.DataFrame,
    obs: pd.DataFrame,
    obs_source: str,
    table: pd.DataFrame,
    source: str,
    problems: _Problems,
) -> pd.DataFrame:
    """Add the subject table's columns; columns given in both must agree."""
    lines = {s: _line(row) for row, s in reversed(list(enumerate(table["subject"])))}
    for subject, line in lines.items():
        if not _is_missing(subject) and subject not in per_subject.index:
            problems.add(
                source,
                line,
                "subject",
                f"expected a subject with observations in {obs_source}, got {subject!r}, which has none",
            )
    first_rows = obs.drop_duplicates("subject")
    for label, subject in zip(first_rows.index, first_rows["subject"], strict=True):
        if not _is_missing(subject) and subject not in lines:
            problems.add(
                obs_source,
                _line(label),
                "subject",
                f"expected every subject in the subject table {source}; {subject!r} has no row there",
            )
    theirs = table.drop_duplicates("subject").set_index("subject").reindex(per_subject.index)
    merged = per_subject.copy()
    for column in theirs.columns:
        if column not in merged:
            merged[column] = theirs[column]
            continue
        clash = theirs[column].notna() & (theirs[column] != merged[column])
        for subject in merged.index[clash]:
            problems.add(
                source,
                lines[subject],
                column,
                f"expected {column} of subject {subject!r} as "
                f"in {obs_source} ({_show(merged.at[subject, column])}), got "
                f"{_show(theirs.at[subject, column])}",
            )
    return merged


def _load_events(table, subjects: pd.Index | None, problems: _Problems) -> pd.DataFrame:
    """Read and check the events table; sorted by subject and time."""
    read = _read(table, "<events DataFrame>")
    source = read.source
    events = _parse(read, ["time", "value"], problems)
    if "kind" in events:
        events["kind"] = events["kind"].str.lower()
    if not _validate(_EVENT_SCHEMA, events, source, problems) or subjects is None:
        return _no_events()
    for row, subject in enumerate(events["subject"]):
        if not _is_missing(subject) and subject not in subjects:
            problems.add(
                source, _line(row), "subject", f"expected a subject of the observations, got {subject!r}"
            )
    order = events["subject"].map({s: i for i, s in enumerate(subjects)})
    events = events[list(EVENT_COLUMNS)].assign(_order=order)
    return events.sort_values(["_order", "time"], kind="stable").drop(columns="_order").reset_index(drop=True)


def _no_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": pd.Series(dtype="str"),
            "time": pd.Series(dtype=float),
            "kind": pd.Series(dtype="str"),
            "target": pd.Series(dtype="str"),
            "value": pd.Series(dtype=float),
        }
    )


def _analyte_units(analytes: Mapping[str, str] | None) -> dict[str, str]:
    units = dict(CANONICAL_UNITS)
    for name, unit in (analytes or {}).items():
        if name in units and units[name] != unit:
            raise DataError(
                f"analyte {name!r} has the canonical unit {units[name]!r}, got {unit!r}: "
                "`analytes` may add analytes, not change the units of known ones"
            )
        units[name] = unit
    return units


def model_analytes(*models) -> dict[str, str]:
    """Analytes the models (:class:`~models.OdeModel`) observe beyond :data:`CANONICAL_UNITS`.

    With their units: the ``analytes`` argument of :func:`load_dataset` for data of a user's model.
    """
    return {o.analyte: o.unit for m in models for o in m.observables if o.analyte not in CANONICAL_UNITS}


def load_dataset(
    data: str | os.PathLike | pd.DataFrame,
    subjects: str | os.PathLike | pd.DataFrame | None = None,
    events: str | os.PathLike | pd.DataFrame | None = None,
    *,
    analytes: Mapping[str, str] | None = None,
    exclude_flagged: bool = False,
) -> Dataset:
    """Read, check and normalise a dataset.

    Parameters
    ----------
    data
        The tidy observations table: a CSV path or a DataFrame with columns ``subject, time,
        analyte, value, unit``, optionally ``lloq, uloq, censored, group``, and any per-subject
        numeric columns (inputs such as ``dose``, covariates such as ``stress_score``).
    subjects
        Optional subject table: a ``subject`` column plus ``group`` and per-subject numeric
        columns. Every subject of the observations needs a row, and every row observations.
    events
        Optional events table with columns ``subject, time, kind, target, value``; ``kind`` is
        ``bolus`` (add ``value`` to state ``target`` at ``time`` h) or ``set`` (set input
        ``target`` to ``value`` from ``time`` on).
    analytes
        Extra analytes and their canonical units, e.g. ``{"IL10": "pg/mL"}``, besides
        :data:`CANONICAL_UNITS`.
    exclude_flagged
        Leave out the samples with a non-empty ``flag`` cell (e.g. the outliers a study's authors
        marked), as :meth:`Dataset.without_flagged` does. By default flagged samples are kept, and
        ``Dataset.n_flagged`` counts them.

    Returns
    -------
    Dataset
        Observations in canonical units with the censoring made explicit (M3 convention).

    Raises
    ------
    DataError
        Listing every problem found, each with file, line, column and what was expected.
    """
    units = _analyte_units(analytes)
    problems = _Problems()
    obs, per_subject, source = _load_observations(data, units, problems)
    table, table_source = _load_subject_table(subjects, problems) if subjects is not None else (None, "")
    if obs is not None and table is not None:
        per_subject = _merge_subjects(per_subject, obs, source, table, table_source, problems)
    known = per_subject.index if per_subject is not None else None
    event_table = _no_events() if events is None else _load_events(events, known, problems)
    problems.raise_if_any(source)

    if "group" not in per_subject:
        per_subject["group"] = NO_GROUP
    order = {s: i for i, s in enumerate(per_subject.index)}
    rank = {a: i for i, a in enumerate(_sorted_analytes(obs["analyte"].unique()))}
    obs = obs.assign(_s=obs["subject"].map(order), _a=obs["analyte"].map(rank))
    obs = obs.sort_values(["_s", "time", "_a"], kind="stable").reset_index(drop=True)
    observations = obs[list(OBSERVATION_COLUMNS)].astype({"censored": "str", "unit": "str", "flag": "str"})
    numeric = [c for c in per_subject.columns if c != "group"]
    per_subject = per_subject[["group", *numeric]].astype({"group": "str"} | {c: float for c in numeric})
    per_subject.index = per_subject.index.astype("str").rename("subject")
    dataset = Dataset(observations, per_subject, event_table, source)
    return dataset.without_flagged() if exclude_flagged else dataset


def save_dataset(
    dataset: Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    events_path: str | os.PathLike | None = None,
) -> None:
    """Write a dataset as one tidy CSV (canonical units, subject columns merged in), atomically.

    Columns: ``subject, group, time, analyte, value, unit, censored, lloq, uloq``, ``flag`` when
    a sample is flagged, then the per-subject columns. :func:`load_dataset` reads the file back to
    an identical dataset.

    Parameters
    ----------
    dataset
        The dataset to write.
    path
        CSV file to write.
    overwrite
        Replace existing files; without it an existing file is an error.
    events_path
        Where to write the events table; required when the dataset has events (they do not fit
        the tidy observations file).

    Raises
    ------
    FileExistsError
        ``path`` (or ``events_path``) exists and ``overwrite`` is False.
    DataError
        The dataset has events but no ``events_path`` was given.
    """
    if len(dataset.events) and events_path is None:
        raise DataError(
            f"{dataset.source}: the dataset has {len(dataset.events)} events; pass "
            "events_path= to write them next to the observations"
        )
    targets = [Path(path)] + ([Path(events_path)] if events_path is not None else [])
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exists; pass overwrite=True to replace it")
    subjects = dataset.subjects.reset_index()
    tidy = dataset.observations.merge(subjects, on="subject", how="left", validate="many_to_one")
    columns = ["subject", "group", "time", "analyte", "value", "unit", "censored", "lloq", "uloq"]
    columns += ["flag"] * (dataset.n_flagged > 0)
    tidy = tidy[columns + [c for c in subjects.columns if c not in [*columns, "flag"]]]
    _write_csv(tidy, Path(path))
    if events_path is not None:
        _write_csv(dataset.events, Path(events_path))


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV atomically (the caller has checked whether ``path`` may be replaced)."""
    write_atomically(path, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"), overwrite=True)
