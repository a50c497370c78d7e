"""The run record: what a fit result says about how it was made, typed, with one writer and one reader.

A result (:func:`inference.fit.fit`) carries its provenance in ``idata.attrs`` (the netCDF file's
global attributes): the model (and, for a model from a user's file, that file's name and
text, so that the model is rebuilt without the file), the model options (priors, structure,
solver settings), the dataset itself, the sampler settings, solver failures, timings, creation
date and package versions, and, for a fit of a hypothesis, its name and declaration.
:func:`write_record` writes a :class:`RunRecord` there; :func:`read_record` reads it back, from
files written by any version since 0.1.0 (the attribute names and encodings are those of 0.1.0;
``model_source`` is new, absent for library models). Everything else reads
provenance through :func:`read_record`, never ``idata.attrs`` directly.

A record may be partial (an InferenceData made elsewhere, or by a test): what was not recorded is
``None``; :func:`inference.fit.check_result` says when a fit result's essentials are missing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import arviz as az
import pandas as pd

from models import ModelSource, OdeModel, SolverSettings, get_model
from models.user import load_source

from .build import ModelOptions
from .data import Dataset
from .sampler import SamplerSettings

__all__ = ["RESULT_ATTRS", "ResultError", "RunRecord", "read_record", "write_record"]

#: The attributes without which an InferenceData is not a fit result.
RESULT_ATTRS = ("model", "options", "dataset_observations")


class ResultError(ValueError):
    """A file or InferenceData is not a fit result written by :func:`inference.fit.fit`."""


@dataclass(frozen=True)
class RunRecord:
    """How a result was made.

    Attributes
    ----------
    model : str or None
        The model's name (a library name, or the name of a user's model).
    model_source : ModelSource or None
        For a model from a user's file: the file's name and text and the model's attribute.
    options : ModelOptions or None
        Priors, fixed parameters, cohort structure, likelihood and solver settings.
    dataset : Dataset or None
        The data exactly as fitted (not part of record equality: compare its tables).
    sampler : SamplerSettings or None
        Sampler, draws, tune, chains, target_accept and seed.
    solver_failures : int or None
        Failed ODE solves during sampling (each rejected a proposal).
    timings : dict of str to float
        ``compile_seconds`` and ``sampling_seconds``.
    created : str or None
        Creation time (ISO 8601, UTC).
    python : str or None
        Python version.
    versions : dict of str to str
        Package versions.
    hypothesis : str or None
        The hypothesis name, for a fit of a :class:`~inference.hypotheses.Hypothesis`.
    declaration : dict or None
        That hypothesis' declaration (:meth:`~inference.hypotheses.Hypothesis.to_dict`).
    """

    model: str | None = None
    model_source: ModelSource | None = None
    options: ModelOptions | None = None
    dataset: Dataset | None = field(default=None, repr=False, compare=False)
    sampler: SamplerSettings | None = None
    solver_failures: int | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    created: str | None = None
    python: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    hypothesis: str | None = None
    declaration: Mapping[str, Any] | None = None

    @property
    def solver(self) -> SolverSettings | None:
        """The solver settings of the fit (from its options)."""
        return self.options.solver if self.options is not None else None

    @property
    def ode_model(self) -> OdeModel:
        """The model object: from the stored source for a user's model, else from the library.

        Raises
        ------
        ModelError
            The stored source no longer runs (e.g. it imports a module that is gone).
        """
        if self.model_source is not None:
            return load_source(self.model_source)
        return get_model(self.model)


def _frame_json(frame: pd.DataFrame) -> str:
    return frame.to_json(orient="split", index=False)


def write_record(idata: az.InferenceData, record: RunRecord) -> None:
    """Write ``record`` into ``idata.attrs`` (the attribute names and encodings of 0.1.0)."""
    attrs: dict[str, Any] = {}
    if record.model is not None:
        attrs["model"] = record.model
    if record.model_source is not None:
        attrs["model_source"] = json.dumps(asdict(record.model_source), sort_keys=True)
    if record.options is not None:
        solver = record.options.solver
        attrs |= {"options": record.options.to_json(), "solver_method": solver.method,
                  "solver_rtol": solver.rtol, "solver_atol": solver.atol,
                  "solver_max_steps": solver.max_steps}
    if record.dataset is not None:
        attrs |= {"dataset_source": record.dataset.source,
                  "dataset_observations": _frame_json(record.dataset.observations),
                  "dataset_subjects": _frame_json(record.dataset.subjects.reset_index()),
                  "dataset_events": _frame_json(record.dataset.events)}
    if record.sampler is not None:
        attrs |= record.sampler.to_dict()
    if record.solver_failures is not None:
        attrs["solver_failures"] = int(record.solver_failures)
    attrs |= {k: round(float(v), 3) for k, v in record.timings.items()}
    for key in ("created", "python", "hypothesis"):
        if getattr(record, key) is not None:
            attrs[key] = getattr(record, key)
    if record.versions:
        attrs["versions"] = json.dumps(dict(record.versions), sort_keys=True)
    if record.declaration is not None:
        attrs["hypothesis_declaration"] = json.dumps(dict(record.declaration), sort_keys=True)
    idata.attrs.update(attrs)


_TIMINGS = ("compile_seconds", "sampling_seconds")
_SAMPLER_TYPES = {"sampler": str, "draws": int, "tune": int, "chains": int, "target_accept": float,
                  "seed": int}


def read_record(idata: az.InferenceData) -> RunRecord:
    """Read the run record from ``idata.attrs`` (written by any version since 0.1.0).

    Missing attributes are ``None`` (or empty); sampler settings that were only partly recorded
    take :class:`~inference.sampler.SamplerSettings`' defaults for the rest.

    Raises
    ------
    ResultError
        An attribute is present but unreadable.
    """
    a = idata.attrs
    try:
        sampler = None
        if any(k in a for k in _SAMPLER_TYPES):
            sampler = SamplerSettings(**{k: kind(a[k]) for k, kind in _SAMPLER_TYPES.items() if k in a})
        versions = json.loads(a["versions"]) if "versions" in a else {}
        declaration = json.loads(a["hypothesis_declaration"]) if "hypothesis_declaration" in a else None
        return RunRecord(
            model=str(a["model"]) if "model" in a else None,
            model_source=ModelSource(**json.loads(a["model_source"])) if "model_source" in a else None,
            options=ModelOptions.from_json(a["options"]) if "options" in a else None,
            dataset=_dataset(a) if "dataset_observations" in a else None,
            sampler=sampler,
            solver_failures=int(a["solver_failures"]) if "solver_failures" in a else None,
            timings={k: float(a[k]) for k in _TIMINGS if k in a},
            created=str(a["created"]) if "created" in a else None,
            python=str(a["python"]) if "python" in a else None,
            versions=versions,
            hypothesis=str(a["hypothesis"]) if "hypothesis" in a else None,
            declaration=declaration,
        )
    except (TypeError, ValueError, KeyError) as error:
        raise ResultError(f"unreadable run record in the result's attributes: {error}") from None


def _dataset(attrs: Mapping[str, Any]) -> Dataset:
    """Return the dataset a result was fitted to, exactly as it was used."""
    def frame(key):
        return pd.read_json(io.StringIO(attrs[key]), orient="split")

    subjects = frame("dataset_subjects")
    subjects["subject"] = subjects["subject"].astype(str)
    observations = frame("dataset_observations")
    observations["subject"] = observations["subject"].astype(str)
    events = frame("dataset_events")
    if len(events):
        events["subject"] = events["subject"].astype(str)
    return Dataset(observations=observations, subjects=subjects.set_index("subject"), events=events,
                   source=attrs["dataset_source"])
