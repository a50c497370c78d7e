"""A real cohort: 20 healthy volunteers after a 2 ng/kg endotoxin bolus (Windoloski et al. 2024).

Individual TNF-alpha, IL-6, IL-8 and IL-10 time courses at 0, 1, 1.5, 2, 3, 4, 5 and 6 h, read from
the authors' MATLAB file ``BolusDataCorrectedSD.mat`` (MIT licence; shipped with its licence in
``data/endotoxemia_bolus_2024/``, where the README states the source, citation and caveats).

What the converter changes, and why:

- **The shift is undone.** The file stores each analyte as ``measured - offset``, one constant per
  analyte (``BaselineBolusMinusContinuousMean``), which lined this cohort's baseline up with another
  cohort. Measured = stored + offset: then 629 of the 640 values lie on the assay's 0.01 pg/mL grid.
  Values are rounded to 7 decimals, which removes the floating-point noise of the addition (about
  1e-11) and nothing else (no source value has more than 7 decimals).
- **The authors' outliers are flagged, not dropped.** The file holds per-time means and SDs
  (``<X>m_NoOutliers``, ``<X>sd``) computed after the authors left some values out. For every
  analyte and time exactly one set of at most :data:`MAX_LEFT_OUT` subjects reproduces both, which
  identifies the 30 cells; their rows get ``flag = "outlier"``.
- Rows are named subjects ``H01``-``H20`` (the source does not say how they map to persons or
  trials), in group ``healthy``, with input ``dose = 2`` ng/kg (the bolus at 0 h).

Entry points: :func:`read_source` (the arrays), :func:`tidy_observations` (the tidy table),
:func:`load` (a :class:`~inference.data.Dataset`), and ``python -m
inference.sources.endotoxemia_bolus_2024`` which rewrites the shipped ``observations.csv``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from ..data import Dataset, load_dataset, save_dataset

__all__ = [
    "ANALYTES",
    "DEFAULT_ANALYTES",
    "MAT_FILE",
    "OBSERVATIONS_FILE",
    "Source",
    "find_left_out",
    "load",
    "main",
    "read_source",
    "tidy_observations",
]

FOLDER = Path(__file__).resolve().parents[2] / "data" / "endotoxemia_bolus_2024"
MAT_FILE = FOLDER / "BolusDataCorrectedSD.mat"
#: The shipped tidy file: TNF and IL-6, the analytes the library models observe.
OBSERVATIONS_FILE = FOLDER / "observations.csv"

#: Analytes in the source file (order of ``BaselineBolusMinusContinuousMean``), all in pg/mL.
ANALYTES = ("TNF", "IL6", "IL8", "IL10")
DEFAULT_ANALYTES = ("TNF", "IL6")
UNIT = "pg/mL"
GROUP = "healthy"
DOSE = 2.0  # ng/kg endotoxin, intravenous bolus at 0 h
OUTLIER = "outlier"
DECIMALS = 7
MAX_LEFT_OUT = 4  # the SEs imply at most 3 values left out per time (n = (sd / se)^2)
_RTOL = 1e-6  # agreement of a subset's mean and SD with the published ones


@dataclasses.dataclass(frozen=True)
class Source:
    """The source file's arrays, with the shift undone.

    Attributes
    ----------
    time : ndarray, shape (8,)
        Sample times, h after the bolus.
    subjects : tuple of str
        ``H01``..``H20``, one per row of the source arrays.
    measured : dict of str to ndarray, shape (20, 8)
        Per analyte, subject x time, pg/mL: stored + offset, rounded to 7 decimals.
    offsets : dict of str to float
        The per-analyte shift the file applied (measured = stored + offset), pg/mL.
    left_out : dict of str to ndarray of bool, shape (20, 8)
        The cells the authors left out of their summary statistics (outliers).
    mean, sd, se : dict of str to ndarray, shape (8,)
        The published per-time mean (moved back to the measured scale), SD and SE without the
        left-out cells.
    """

    time: np.ndarray
    subjects: tuple[str, ...]
    measured: dict[str, np.ndarray]
    offsets: dict[str, float]
    left_out: dict[str, np.ndarray]
    mean: dict[str, np.ndarray]
    sd: dict[str, np.ndarray]
    se: dict[str, np.ndarray]


def find_left_out(values: np.ndarray, mean: float, sd: float) -> np.ndarray:
    """Return the one set of values whose omission gives the published mean and SD (ddof 1).

    Parameters
    ----------
    values : ndarray, shape (n,)
        The values of all subjects at one time.
    mean, sd
        The published mean and SD of the values kept.

    Returns
    -------
    ndarray of bool, shape (n,)
        True for the values left out (at most :data:`MAX_LEFT_OUT`).

    Raises
    ------
    ValueError
        No set of at most :data:`MAX_LEFT_OUT` values, or more than one, reproduces both.
    """
    n = len(values)
    matches = []
    for k in range(min(MAX_LEFT_OUT, n - 2) + 1):  # an SD needs two values kept
        left_out = np.array(list(itertools.combinations(range(n), k)), dtype=int).reshape(math.comb(n, k), k)
        kept = np.ones((len(left_out), n), dtype=bool)
        np.put_along_axis(kept, left_out, False, axis=1)
        means = (kept * values).sum(axis=1) / (n - k)
        sds = np.sqrt((kept * (values - means[:, None]) ** 2).sum(axis=1) / (n - k - 1))
        found = np.isclose(means, mean, rtol=_RTOL, atol=0) & np.isclose(sds, sd, rtol=_RTOL, atol=0)
        matches += [tuple(int(i) for i in row) for row in left_out[found]]
    if len(matches) != 1:
        raise ValueError(
            f"expected exactly one set of at most {MAX_LEFT_OUT} values whose omission gives mean "
            f"{mean:g} and SD {sd:g}, found {len(matches)}: {matches}"
        )
    return np.isin(np.arange(n), matches[0])


def read_source(path: str | os.PathLike = MAT_FILE) -> Source:
    """Read the source ``.mat`` file (scipy only), undo the shift and identify the outliers.

    Raises
    ------
    ValueError
        The file does not hold the arrays described in the module docstring.
    """
    mat = scipy.io.loadmat(path)
    offsets = dict(zip(ANALYTES, np.ravel(mat["BaselineBolusMinusContinuousMean"]).tolist(), strict=True))
    time = np.ravel(mat["Time"]).astype(float)
    stored = {a: np.asarray(mat[a], dtype=float) for a in ANALYTES}
    shapes = {a: x.shape for a, x in stored.items()}
    if len(set(shapes.values())) != 1 or next(iter(shapes.values()))[1] != len(time):
        raise ValueError(f"{Path(path).name}: expected subjects x {len(time)} times per analyte, "
                         f"got {shapes}")
    published = {a: {s: np.ravel(mat[f"{a}{s}"]) for s in ("m_NoOutliers", "sd", "se")} for a in ANALYTES}
    left_out = {
        a: np.stack(
            [find_left_out(stored[a][:, j], published[a]["m_NoOutliers"][j], published[a]["sd"][j])
             for j in range(len(time))],
            axis=1,
        )
        for a in ANALYTES
    }
    n_subjects = stored["TNF"].shape[0]
    return Source(
        time=time,
        subjects=tuple(f"H{i + 1:02d}" for i in range(n_subjects)),
        measured={a: np.round(stored[a] + offsets[a], DECIMALS) for a in ANALYTES},
        offsets=offsets,
        left_out=left_out,
        mean={a: published[a]["m_NoOutliers"] + offsets[a] for a in ANALYTES},
        sd={a: published[a]["sd"] for a in ANALYTES},
        se={a: published[a]["se"] for a in ANALYTES},
    )


def _analytes(analytes: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple([analytes] if isinstance(analytes, str) else analytes)
    unknown = [a for a in chosen if a not in ANALYTES]
    if unknown or not chosen:
        raise ValueError(f"expected analytes among {list(ANALYTES)}, got {list(chosen)}")
    return chosen


def tidy_observations(
    analytes: Iterable[str] = DEFAULT_ANALYTES, path: str | os.PathLike = MAT_FILE
) -> pd.DataFrame:
    """Return the cohort as a tidy observations table (the format of ``data/README.md``).

    Columns ``subject, group, time, analyte, value, unit, flag, dose``; one row per subject, time
    and analyte; ``flag`` is ``"outlier"`` for the cells the authors left out, else empty.
    """
    analytes = _analytes(analytes)
    source = read_source(path)
    rows = [
        {
            "subject": subject,
            "group": GROUP,
            "time": float(t),
            "analyte": a,
            "value": float(source.measured[a][i, j]),
            "unit": UNIT,
            "flag": OUTLIER if source.left_out[a][i, j] else "",
            "dose": DOSE,
        }
        for i, subject in enumerate(source.subjects)
        for j, t in enumerate(source.time)
        for a in analytes
    ]
    return pd.DataFrame(rows)


def load(
    analytes: Iterable[str] = DEFAULT_ANALYTES,
    *,
    exclude_flagged: bool = False,
    path: str | os.PathLike = MAT_FILE,
) -> Dataset:
    """Return the cohort as a validated :class:`~inference.data.Dataset`, read from the source file.

    Parameters
    ----------
    analytes
        Any of ``TNF, IL6, IL8, IL10``; by default TNF and IL-6, which the library models observe.
        IL-8 and IL-10 are loaded as extra analytes in pg/mL.
    exclude_flagged
        Leave out the 30 cells the authors treated as outliers (default: keep them, flagged).
    path
        The source ``.mat`` file.
    """
    analytes = _analytes(analytes)
    dataset = load_dataset(
        tidy_observations(analytes, path),
        analytes={a: UNIT for a in analytes if a not in DEFAULT_ANALYTES},
        exclude_flagged=exclude_flagged,
    )
    return dataclasses.replace(dataset, source=Path(path).name)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m inference.sources.endotoxemia_bolus_2024 [--analytes ...] [--out FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.sources.endotoxemia_bolus_2024",
        description="Convert the endotoxemia bolus cohort (Windoloski et al. 2024) to tidy observations.",
    )
    parser.add_argument("--analytes", default=",".join(DEFAULT_ANALYTES),
                        help=f"comma list among {','.join(ANALYTES)} (default: TNF,IL6)")
    parser.add_argument("--out", type=Path, default=OBSERVATIONS_FILE,
                        help=f"tidy CSV to write (default: the shipped {OBSERVATIONS_FILE.name})")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args(argv)
    try:
        dataset = load([a.strip() for a in args.analytes.split(",") if a.strip()])
        save_dataset(dataset, args.out, overwrite=args.force)
    except (ValueError, FileExistsError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    summary = dataset.summary()
    print(f"wrote {args.out}: {summary['n_subjects']} subjects, {summary['n_samples']} samples "
          f"({', '.join(f'{a} {n}' for a, n in summary['analytes'].items())}), "
          f"{summary['n_flagged']} flagged as outliers (kept)")


if __name__ == "__main__":
    main()
