"""Hypotheses about cytokine balance: named model configurations to be compared on one dataset.

A hypothesis is a name plus a library model, parameters fixed to values, parameters with
between-subject random effects, group effects or covariate effects, and prior overrides, for
example::

    H0 = Hypothesis("H0", description="cortisol suppresses fully", options=ModelOptions(fixed={"r": 0.0}))
    H2 = Hypothesis("H2", description="resistance differs by group",
                    options=ModelOptions(group_effects=("r",)))

Each one holds the :class:`~inference.build.ModelOptions` of its fit. A set of hypotheses is
declared in Python or in a small TOML file (read with :mod:`tomllib`)::

    [defaults]                      # optional; every hypothesis inherits these keys
    random_effects = ["k_T", "C_b"]

    [hypotheses.H0]
    description = "cortisol suppresses fully"
    fixed = { r = 0.0 }

    [hypotheses.H3]
    model = "gc_receptor"
    group_effects = ["k_D"]

Keys of a hypothesis: ``description``, ``model`` (default ``acute_inflammation``; a model of your
own is ``"path/to/file.py:NAME"``, the path relative to the TOML file's folder), ``fixed``
(``{parameter = number}``), ``priors`` (``{parameter = {kind = "LogNormal", median = .., sigma =
..}}``, or another kind of :data:`inference.priors.PRIOR_KINDS` with its fields),
``random_effects``, ``group_effects`` (lists of parameters), ``covariates`` (``{parameter =
[subject column, ...]}``), ``likelihood`` (``lognormal`` or ``student_t``), ``nu`` and ``solver``
(``{method, rtol, atol, max_steps}``). A hypothesis inherits every key of ``[defaults]`` it does not
set; the tables ``fixed``, ``priors`` and ``covariates`` are merged per parameter (the
hypothesis wins), and a parameter the hypothesis fixes drops out of the priors and effects it
inherits (``fixed = { r = 0.0 }`` beside a default ``random_effects = [..., "r"]``). Without a
``solver``, the fit's default settings apply (:data:`inference.op.FIT_SOLVER`: method ``auto``,
which switches to a stiff method where a subject's solution is stiff, rtol 1e-4, atol 1e-6); a
``solver`` table changes only the settings it names.

Loading is a linter: every hypothesis is checked against its model (and, given a dataset, against
the data), and one :class:`~models.ModelError` lists every problem, each naming the file, the
hypothesis and the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from models import ModelError, OdeModel, Prior, SolverSettings, get_model
from models.user import resolve_model_file

from .build import ModelOptions
from .data import Dataset
from .measurement import LIKELIHOODS
from .op import FIT_SOLVER
from .priors import PRIOR_KINDS, prior_from_dict

__all__ = ["HYPOTHESIS_KEYS", "Hypothesis", "check_hypotheses", "load_hypotheses",
           "load_priors", "parse_hypotheses"]

#: Keys a hypothesis (or the ``[defaults]`` table) may set.
HYPOTHESIS_KEYS = ("description", "model", "fixed", "priors", "random_effects", "group_effects",
                   "covariates", "likelihood", "nu", "solver")
_MERGED_KEYS = ("fixed", "priors", "covariates")  # merged per parameter with [defaults]
_STRUCTURE_KEYS = ("priors", "random_effects", "group_effects", "covariates")
_SOLVER_FIELDS = ("method", "rtol", "atol", "max_steps")
# A hypothesis name becomes a file name (DIR/<name>.nc) and an HTML id.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Hypothesis:
    """One hypothesis: a library model with the options of its fit.

    Parameters
    ----------
    name
        Short name (letters, digits, ``_ . -``; it names the result file ``<name>.nc``).
    model
        Library model name (see ``cytokine-balance info``) or ``path/to/file.py:NAME``, a model of
        your own (:mod:`models.user`).
    description
        What the hypothesis says, in words (shown in the comparison).
    options
        Fixed parameters (e.g. ``{"r": 0.0}``: "cortisol suppresses fully"), priors, cohort
        structure, likelihood and solver (:class:`~inference.build.ModelOptions`). ``None``: the
        defaults (solver method ``auto``, which switches to a stiff method where needed).

    Raises
    ------
    ModelError
        An unknown model or parameter, a parameter both fixed and free, a value out of bounds;
        the message names the hypothesis and the key.
    """

    name: str
    model: str = "acute_inflammation"
    description: str = ""
    options: ModelOptions = None  # type: ignore[assignment]  # None: set in __post_init__

    def __post_init__(self) -> None:
        if self.options is None:
            object.__setattr__(self, "options", ModelOptions())
        problems = _problems(self)
        if problems:
            error = ModelError(problems[0] if len(problems) == 1 else
                               f"{len(problems)} problems:\n  " + "\n  ".join(problems))
            error.problems = tuple(problems)
            raise error

    @property
    def ode_model(self) -> OdeModel:
        """The model object."""
        return get_model(self.model)

    def check(self, dataset: Dataset) -> None:
        """Check the hypothesis against a dataset (groups, covariate columns, analytes).

        Raises
        ------
        ModelError
            Naming the hypothesis and the key that does not fit the data.
        """
        problems = _data_problems(self, dataset)
        if problems:
            raise ModelError("\n  ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Return the declaration as plain data (the TOML keys; JSON-serialisable)."""
        return {"name": self.name, "model": self.model, "description": self.description,
                **self.options.to_dict()}


def _where(h: Hypothesis, key: str) -> str:
    return f"hypothesis {h.name!r}, key {key!r}"


def _problems(h: Hypothesis) -> list[str]:
    """Everything wrong with a hypothesis on its own (without data)."""
    if not isinstance(h.name, str) or not _NAME.match(h.name):
        return [f"hypothesis name {h.name!r}: expected letters, digits, '_', '.' or '-' "
                "(it names the result file <name>.nc)"]
    try:
        model = get_model(h.model)
    except ModelError as error:
        return [f"{_where(h, 'model')}: {error}"]
    problems = []
    names = set(model.parameter_names)
    for key in ("fixed", *_STRUCTURE_KEYS):
        given = list(getattr(h.options, key))
        unknown = [n for n in given if n not in names]
        if unknown:
            problems.append(f"{_where(h, key)}: model {model.name} has no parameter(s) {unknown}; "
                            f"parameters: {list(model.parameter_names)}")
        repeated = sorted({n for n in given if given.count(n) > 1})
        if repeated:
            problems.append(f"{_where(h, key)}: {repeated} listed more than once")
    for key in _STRUCTURE_KEYS:
        both = sorted(set(h.options.fixed) & set(getattr(h.options, key)))
        if both:
            problems.append(f"{_where(h, 'fixed')}: {both} are fixed and cannot also appear in {key!r}")
    for pname, value in h.options.fixed.items():
        if not isinstance(value, float):
            problems.append(f"{_where(h, 'fixed')}: {pname}: expected a number, got {value!r}")
        elif pname in names:
            p = model.parameter(pname)
            if not p.lower <= value <= p.upper:
                problems.append(f"{_where(h, 'fixed')}: {pname} = {value:g} is outside "
                                f"[{p.lower:g}, {p.upper:g}]")
    for pname, prior in h.options.priors.items():
        if not isinstance(prior, Prior):
            problems.append(f"{_where(h, 'priors')}: {pname}: expected a prior of models "
                            f"({', '.join(PRIOR_KINDS)}), got {prior!r}")
    for pname, columns in h.options.covariates.items():
        if not columns or not all(isinstance(c, str) for c in columns):
            problems.append(f"{_where(h, 'covariates')}: {pname}: expected a list of subject columns, "
                            f"got {list(columns)}")
    if not isinstance(h.options.solver, SolverSettings):
        problems.append(f"{_where(h, 'solver')}: expected models.SolverSettings, got {h.options.solver!r}")
    return problems


def _data_problems(h: Hypothesis, dataset: Dataset) -> list[str]:
    """List what does not fit the dataset: group effects without groups, missing columns."""
    problems = []
    if h.options.group_effects and len(dataset.groups) < 2:
        problems.append(
            f"{_where(h, 'group_effects')}: {list(h.options.group_effects)} needs a dataset with at least "
            f"two groups; {dataset.source} has {len(dataset.groups)} ({', '.join(dataset.groups)}): add a "
            "'group' column or remove the group effect"
        )
    for pname, columns in h.options.covariates.items():
        missing = [c for c in columns if c not in dataset.subjects.columns]
        if missing:
            have = [c for c in dataset.subjects.columns if c != "group"]
            problems.append(f"{_where(h, 'covariates')}: {pname} uses columns {missing} absent from "
                            f"{dataset.source} (per-subject columns: {have})")
    missing_analytes = sorted(set(dataset.analytes) - set(h.ode_model.analytes))
    if missing_analytes:
        problems.append(f"{_where(h, 'model')}: model {h.model} does not observe {missing_analytes} "
                        f"measured in {dataset.source}")
    if not problems:
        try:
            h.options.check(h.ode_model, dataset)
        except ModelError as error:  # anything build.py checks beyond the above
            problems.append(f"hypothesis {h.name!r}: {error}")
    return problems


def check_hypotheses(hypotheses: Sequence[Hypothesis], dataset: Dataset | None = None) -> None:
    """Check a set of hypotheses to compare: distinct names, and each one against the data.

    Raises
    ------
    ModelError
        Listing every problem, each naming the hypothesis and key.
    """
    problems = []
    names = [h.name for h in hypotheses]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"hypothesis names {repeated} are used more than once")
    if dataset is not None:
        for h in hypotheses:
            problems += _data_problems(h, dataset)
    if problems:
        raise ModelError(_joined(problems, "hypotheses"))


def _joined(problems: list[str], source: str) -> str:
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------------------------
# TOML
# --------------------------------------------------------------------------------------------
def load_hypotheses(path: str | Path, dataset: Dataset | None = None) -> tuple[Hypothesis, ...]:
    """Read hypotheses from a TOML file (format in the module docstring).

    Parameters
    ----------
    path
        The TOML file.
    dataset
        If given, every hypothesis is also checked against it (groups, covariate columns).

    Returns
    -------
    tuple of Hypothesis
        In the order of the file.

    Raises
    ------
    ModelError
        Invalid TOML, or one message listing every problem, each with the file, hypothesis and key.
    FileNotFoundError
        No such file.
    """
    path = Path(path)
    data = _read_toml(path)
    return parse_hypotheses(data, source=path.name, dataset=dataset, folder=path.parent)


def _read_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        try:
            return tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ModelError(f"{path.name}: not valid TOML: {error}") from None


def load_priors(path: str | Path, model: str | OdeModel | None = None) -> dict[str, Prior]:
    """Read prior overrides from a TOML file holding one table ``[priors]``.

    The table has the format of a hypothesis's ``priors``::

        [priors]
        K_C = { kind = "LogNormal", median = 500.0, sigma = 0.2 }   # e.g. from an ex-vivo assay

    Parameters
    ----------
    path
        The TOML file.
    model
        If given, every key must be one of its parameters.

    Returns
    -------
    dict of str to Prior
        For :attr:`ModelOptions.priors <inference.build.ModelOptions>`.

    Raises
    ------
    ModelError
        Invalid TOML, a missing ``[priors]`` table, another table, or a bad prior; the message
        names the file and the key.
    FileNotFoundError
        No such file.
    """
    path = Path(path)
    data = _read_toml(path)
    if set(data) != {"priors"}:
        raise ModelError(f"{path.name}: expected one table [priors] of parameter = {{ kind = ..., ... }}, "
                         f"got {'keys ' + str(sorted(data)) if data else 'nothing'}")
    try:
        priors = _priors(data["priors"])
    except TypeError as error:
        raise ModelError(f"{path.name}, [priors], key {error}") from None
    if model is not None:
        model = get_model(model)
        for name in priors:
            if name not in model.parameter_names:
                raise ModelError(f"{path.name}, [priors], key {name}: not a parameter of model {model.name} "
                                 f"(parameters: {', '.join(model.parameter_names)})")
    return priors


def parse_hypotheses(data: Mapping[str, Any], *, source: str = "<hypotheses>",
                     dataset: Dataset | None = None, folder: str | Path = ".") -> tuple[Hypothesis, ...]:
    """Turn parsed TOML (``{"defaults": {...}, "hypotheses": {name: {...}}}``) into hypotheses.

    A ``model = "path/to/file.py:NAME"`` with a relative path is relative to ``folder`` (that of
    the TOML file).

    Raises
    ------
    ModelError
        One message listing every problem, each naming ``source``, the hypothesis and the key.
    """
    problems: list[str] = []
    unknown = sorted(set(data) - {"defaults", "hypotheses"})
    if unknown:
        problems.append(f"unknown top-level table(s) {unknown}; expected [defaults] and "
                        "[hypotheses.NAME]")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, Mapping):
        problems.append("[defaults] must be a table")
        defaults = {}
    for key in sorted(set(defaults) - set(HYPOTHESIS_KEYS)):
        problems.append(f"[defaults], key {key!r}: unknown key; expected one of {list(HYPOTHESIS_KEYS)}")
    declared = data.get("hypotheses", {})
    if not isinstance(declared, Mapping) or not declared:
        problems.append("no hypotheses: declare at least one table [hypotheses.NAME]")
        declared = {}
    hypotheses = []
    for name, table in declared.items():
        if not isinstance(table, Mapping):
            problems.append(f"hypothesis {name!r}: expected a table [hypotheses.{name}], got {table!r}")
            continue
        hypothesis, found = _from_table(str(name), table, defaults, Path(folder))
        problems += found
        if hypothesis is not None:
            hypotheses.append(hypothesis)
    if dataset is not None:
        for h in hypotheses:
            problems += _data_problems(h, dataset)
    if problems:
        raise ModelError(_joined(problems, source))
    return tuple(hypotheses)


def _from_table(name: str, table: Mapping[str, Any], defaults: Mapping[str, Any], folder: Path):
    """One hypothesis from its TOML table and the defaults; returns (hypothesis or None, problems)."""
    problems = [f"hypothesis {name!r}, key {key!r}: unknown key; expected one of {list(HYPOTHESIS_KEYS)}"
                for key in table if key not in HYPOTHESIS_KEYS]
    merged: dict[str, Any] = {k: v for k, v in defaults.items() if k in HYPOTHESIS_KEYS}
    # A parameter the hypothesis fixes drops out of what it inherits (a default prior or effect).
    fixed_here = set(table["fixed"]) if isinstance(table.get("fixed"), Mapping) else set()
    for key in ("priors", "covariates"):
        if isinstance(merged.get(key), Mapping):
            merged[key] = {k: v for k, v in merged[key].items() if k not in fixed_here}
    for key in ("random_effects", "group_effects"):
        if isinstance(merged.get(key), list):
            merged[key] = [n for n in merged[key] if n not in fixed_here]
    for key, value in table.items():
        if key not in HYPOTHESIS_KEYS:
            continue
        if key in _MERGED_KEYS and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    kwargs: dict[str, Any] = {}
    for key, value in merged.items():
        origin = "" if key in table else " (from [defaults])"
        try:
            kwargs[key] = _CONVERTERS[key](value)
        except (TypeError, ValueError) as error:  # ModelError is a ValueError
            problems.append(f"hypothesis {name!r}, key {key!r}{origin}: {error}")
    if problems:
        return None, problems
    head = {k: kwargs.pop(k) for k in ("model", "description") if k in kwargs}
    try:
        if "model" in head:
            head["model"] = resolve_model_file(head["model"], folder)
        return Hypothesis(name=name, **head, options=ModelOptions(**kwargs)), []
    except ModelError as error:
        return None, list(getattr(error, "problems", [str(error)]))


def _text(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _names(value) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable) or not all(isinstance(v, str)
                                                                            for v in value):
        raise TypeError(f"expected a list of parameter names, e.g. [\"k_T\", \"C_b\"], got {value!r}")
    return tuple(value)


def _table(value, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a table of {what}, got {value!r}")
    return value


def _fixed(value) -> dict[str, float]:
    out = {}
    for pname, number in _table(value, "parameter = number, e.g. { r = 0.0 }").items():
        try:
            out[pname] = _number(number)
        except TypeError:
            raise TypeError(f"{pname}: expected a number, got {number!r}") from None
    return out


def _priors(value) -> dict[str, Prior]:
    out = {}
    example = 'parameter = { kind = "LogNormal", median = 500, sigma = 0.2 }'
    for pname, spec in _table(value, example).items():
        try:
            out[pname] = prior_from_dict(spec)
        except (TypeError, ModelError) as error:
            raise TypeError(f"{pname}: {error}") from None
    return out


def _covariates(value) -> dict[str, tuple[str, ...]]:
    out = {}
    for pname, columns in _table(value, 'parameter = ["column", ...]').items():
        if isinstance(columns, str):
            columns = [columns]
        try:
            out[pname] = _names(columns)
        except TypeError:
            raise TypeError(f"{pname}: expected a list of subject columns, got {columns!r}") from None
    return out


def _likelihood(value) -> str:
    if value not in LIKELIHOODS:
        raise ValueError(f"expected one of {list(LIKELIHOODS)}, got {value!r}")
    return value


def _positive(value) -> float:
    if not _number(value) > 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return float(value)


def _solver(value) -> SolverSettings:
    spec = _table(value, "solver settings, e.g. { method = \"rodas5\", rtol = 1e-6 }")
    unknown = sorted(set(spec) - set(_SOLVER_FIELDS))
    if unknown:
        raise TypeError(f"unknown solver setting(s) {unknown}; expected {list(_SOLVER_FIELDS)}")
    kwargs = dict(spec)
    if "method" in kwargs:
        kwargs["method"] = _text(kwargs["method"])
    for key in ("rtol", "atol"):
        if key in kwargs:
            kwargs[key] = _number(kwargs[key])
    steps = kwargs.get("max_steps", 1)
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"max_steps: expected an integer, got {steps!r}")
    return replace(FIT_SOLVER, **kwargs)


_CONVERTERS = {
    "description": _text, "model": _text, "fixed": _fixed, "priors": _priors,
    "random_effects": _names, "group_effects": _names, "covariates": _covariates,
    "likelihood": _likelihood, "nu": _positive, "solver": _solver,
}
