"""The PyMC model builder: a library model and a dataset -> ``pm.Model``.

Parameters keep the names of the model's equations. A parameter is either fixed (a constant),
shared by all subjects (its prior exactly as the library states it), or structured per subject
on its link scale (:class:`~inference.structure.ParameterStructure`). The measurement model is
log-normal (or Student-t on the log scale) per analyte, with values outside the assay's limits
entering through the log-CDF (:class:`~inference.measurement.MeasurementModel`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from models import Event, ModelError, OdeModel, Prior, SolverSettings, get_model
from models.solvers import pack_events, pack_times

from .data import DataError, Dataset
from .fold import Fold
from .measurement import MeasurementModel
from .op import FIT_SOLVER, OdeSolveOp
from .priors import prior_from_dict, prior_to_dict
from .structure import ParameterStructure

# Prior on the log-scale measurement error (literature note: assay CVs 5-25 %).
SIGMA_PRIOR_SCALE = {"cortisol": 0.15}
SIGMA_PRIOR_DEFAULT = 0.3


@dataclass(frozen=True)
class ModelOptions:
    """How a library model meets a dataset: priors, fixed values, cohort structure, likelihood.

    Parameters
    ----------
    priors
        Prior overrides by parameter name.
    fixed
        Parameters held at a value (e.g. ``{"r": 0.0}`` for "cortisol suppresses fully").
    random_effects
        Parameters that vary between subjects (non-centred, on the link scale).
    group_effects
        Parameters whose location differs by group (against the first group in the data).
    covariates
        ``{parameter: (subject column, ...)}``: linear effects of standardised covariates.
    likelihood
        ``"lognormal"`` or ``"student_t"`` (Student-t on the log scale with ``nu`` d.o.f.).
    nu
        Degrees of freedom of the Student-t likelihood.
    solver
        Solver method and tolerances (default :data:`inference.op.FIT_SOLVER`: ``auto``, rtol 1e-4,
        atol 1e-6).
    """

    priors: Mapping[str, Prior] = field(default_factory=dict)
    fixed: Mapping[str, float] = field(default_factory=dict)
    random_effects: tuple[str, ...] = ()
    group_effects: tuple[str, ...] = ()
    covariates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    likelihood: str = "lognormal"
    nu: float = 5.0
    solver: SolverSettings = FIT_SOLVER

    def __post_init__(self) -> None:
        # Normalise containers so that equal declarations compare (and serialise) equal.
        object.__setattr__(self, "fixed", {k: _as_float(v) for k, v in dict(self.fixed).items()})
        object.__setattr__(self, "priors", dict(self.priors))
        object.__setattr__(self, "random_effects", tuple(self.random_effects))
        object.__setattr__(self, "group_effects", tuple(self.group_effects))
        object.__setattr__(self, "covariates", {k: tuple(v) for k, v in dict(self.covariates).items()})
        MeasurementModel(self.likelihood, self.nu)  # validates likelihood and nu

    @property
    def measurement(self) -> MeasurementModel:
        """The measurement model of these options."""
        return MeasurementModel(self.likelihood, self.nu)

    def check(self, model: OdeModel, dataset: Dataset | None = None) -> None:
        """Raise ModelError naming the option and parameter that do not fit model or data."""
        names = set(model.parameter_names)
        for option in ("priors", "fixed", "random_effects", "group_effects", "covariates"):
            unknown = sorted(set(getattr(self, option)) - names)
            if unknown:
                raise ModelError(
                    f"{option}: model {model.name} has no parameter(s) {unknown}; "
                    f"parameters: {sorted(names)}"
                )
        both = sorted(set(self.fixed) & (set(self.random_effects) | set(self.group_effects)
                                         | set(self.covariates) | set(self.priors)))
        if both:
            raise ModelError(f"parameters {both} are fixed and cannot also have priors or effects")
        for name, value in self.fixed.items():
            p = model.parameter(name)
            if not p.lower <= value <= p.upper:
                raise ModelError(f"fixed: {name}={value} is outside [{p.lower}, {p.upper}]")
        if dataset is None:
            return
        if self.group_effects and len(dataset.groups) < 2:
            raise ModelError(
                f"group_effects {list(self.group_effects)} need a dataset with at least two groups; "
                f"{dataset.source} has {list(dataset.groups)}"
            )
        for name, columns in self.covariates.items():
            missing = sorted(set(columns) - set(dataset.subjects.columns))
            if missing:
                raise ModelError(f"covariates: {name} uses columns {missing} absent from {dataset.source}")

    def to_dict(self) -> dict:
        """Return the options as plain data (the keys of a hypothesis TOML table; JSON-serialisable)."""
        return {
            "fixed": dict(self.fixed),
            "priors": {k: prior_to_dict(p) for k, p in self.priors.items()},
            "random_effects": list(self.random_effects), "group_effects": list(self.group_effects),
            "covariates": {k: list(v) for k, v in self.covariates.items()},
            "likelihood": self.likelihood, "nu": self.nu,
            "solver": asdict(self.solver),
        }

    def to_json(self) -> str:
        """Serialise (stored with every result so a fit can be rebuilt)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelOptions:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        priors = {k: prior_from_dict(v) for k, v in data.pop("priors").items()}
        return cls(
            priors=priors,
            fixed=data["fixed"],
            random_effects=tuple(data["random_effects"]),
            group_effects=tuple(data["group_effects"]),
            covariates={k: tuple(v) for k, v in data["covariates"].items()},
            likelihood=data["likelihood"],
            nu=data["nu"],
            solver=SolverSettings(**data["solver"]),
        )


def _as_float(value):
    """Return a number as float and anything else unchanged (checks report it)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


@dataclass(frozen=True)
class Layout:
    """Where each observation sits in the solver output: subjects' sample rows and analytes."""

    times: list[np.ndarray]  # per subject: sorted unique sample times
    obs_row: np.ndarray  # per observation: row in the stacked solver output
    obs_observable: np.ndarray  # per observation: index into model.observables
    obs_analyte: np.ndarray  # per observation: index into the dataset's analytes coord
    analytes: tuple[str, ...]


def layout(model: OdeModel, dataset: Dataset) -> Layout:
    """Map the dataset's observations onto solver rows and model observables."""
    unknown = sorted(set(dataset.analytes) - set(model.analytes))
    if unknown:
        raise DataError(
            f"{dataset.source}: analytes {unknown} are not observables of model {model.name} "
            f"(it observes {list(model.analytes)})"
        )
    obs = dataset.observations
    analytes = tuple(a for a in model.analytes if a in set(dataset.analytes))
    times, row_of = [], {}
    for subject in dataset.subject_ids:
        t = np.unique(obs.loc[obs["subject"] == subject, "time"].to_numpy(float))
        for value in t:
            row_of[(subject, value)] = len(row_of)
        times.append(t)
    obs_row = np.array([row_of[(s, t)] for s, t in zip(obs["subject"], obs["time"], strict=True)])
    obs_observable = np.array([model.analytes.index(a) for a in obs["analyte"]])
    obs_analyte = np.array([analytes.index(a) for a in obs["analyte"]])
    return Layout(times, obs_row, obs_observable, obs_analyte, analytes)


def subject_events(model: OdeModel, dataset: Dataset) -> list[list[Event]]:
    """Return the dataset's events table as solver events, one list per subject."""
    events = dataset.events
    return [
        [
            Event(float(e.time), str(e.kind), str(e.target), float(e.value))
            for e in events[events["subject"] == subject].itertuples()
        ]
        for subject in dataset.subject_ids
    ]


def subject_inputs(model: OdeModel, dataset: Dataset) -> np.ndarray:
    """Per-subject input values (subjects x inputs), from subject columns or the input defaults."""
    columns = []
    for inp in model.inputs:
        if inp.name in dataset.subjects.columns:
            columns.append(dataset.subjects[inp.name].to_numpy(float))
        else:
            columns.append(np.full(len(dataset.subject_ids), inp.default))
    return np.stack(columns, axis=1) if columns else np.zeros((len(dataset.subject_ids), 0))


def build_model(
    model: str | OdeModel, dataset: Dataset, options: ModelOptions | None = None
) -> pm.Model:
    """Build the PyMC model of ``dataset`` under library model ``model``.

    Parameters
    ----------
    model
        Library name or model object.
    dataset
        A validated dataset (:func:`inference.data.load_dataset`).
    options
        Priors, fixed parameters, cohort structure, likelihood and solver settings.

    Returns
    -------
    pymc.Model
        Free parameters named as in the model, except a flip-flop pair, which is sampled as the
        vector ``flip_flop`` with its rates and gains as deterministics (:mod:`inference.fold`;
        ``pm_model.fold``, None where it does not apply); ``theta`` (subjects x parameters and
        inputs) as a deterministic; the observed variable ``log_y`` (log concentration, dims
        ``obs``). Draws of the fold are resolved (:func:`inference.fold.resolve`) before use.

    Raises
    ------
    ModelError, DataError
        Options that do not fit the model or the data; analytes the model does not observe.
    """
    model = get_model(model)
    options = options or ModelOptions()
    options.check(model, dataset)
    lay = layout(model, dataset)
    obs = dataset.observations
    groups = list(dataset.groups)
    group_idx = np.array([groups.index(g) for g in dataset.subjects["group"]])
    coords = {
        "subject": list(dataset.subject_ids),
        "group": groups,
        "group_effect": groups[1:],
        "analyte": list(lay.analytes),
        "obs": np.arange(len(obs)),
        "theta_name": list(model.theta_names),
    }
    t_flat, row_ptr = pack_times(lay.times)
    ev = pack_events(model, subject_events(model, dataset))
    op = OdeSolveOp(model, options.solver)
    log_value = np.log(obs["value"].to_numpy(float))
    # Every row with an assay limit is censored there (quantified values lie strictly inside),
    # so predictive draws are clipped at the limit exactly as the data are.
    with np.errstate(divide="ignore"):
        lower = np.log(obs["lloq"].fillna(0.0).to_numpy(float))
    upper = np.log(obs["uloq"].fillna(np.inf).to_numpy(float))

    with pm.Model(coords=coords) as pm_model:
        pm.Data("obs_time", obs["time"].to_numpy(float), dims="obs")
        pm.Data("obs_subject", np.array([list(dataset.subject_ids).index(s) for s in obs["subject"]]),
                dims="obs")
        pm.Data("obs_analyte", lay.obs_analyte, dims="obs")
        pm.Data("subject_group", group_idx, dims="subject")
        structure = ParameterStructure(model, options, dataset)
        fold = Fold.of(structure)
        locations = fold.locations() if fold else {}
        columns = []
        for p in model.parameters:
            if p.name in options.fixed:
                columns.append(pt.as_tensor(np.full(len(dataset.subject_ids), options.fixed[p.name])))
            else:
                columns.append(structure.tensor(p.name, group_idx, locations.get(p.name)))
        inputs = pt.as_tensor(subject_inputs(model, dataset))
        theta = pm.Deterministic("theta", pt.concatenate([pt.stack(columns, axis=1), inputs], axis=1),
                                 dims=("subject", "theta_name"))
        predicted, _, _ = op(theta, t_flat, row_ptr, ev.time, ev.kind, ev.index, ev.value, ev.ptr)
        # A failed solve gives NaN rows: the log density is then NaN and the sampler rejects
        # the proposal (nutpie and PyMC count it as a divergence).
        log_mu = pt.log(predicted[lay.obs_row, lay.obs_observable])
        sigma = pm.HalfNormal(
            "sigma", sigma=[SIGMA_PRIOR_SCALE.get(a, SIGMA_PRIOR_DEFAULT) for a in lay.analytes],
            dims="analyte",
        )
        options.measurement.observe("log_y", log_mu, sigma[lay.obs_analyte], lower, upper, log_value,
                                    dims="obs")
    pm_model.ode_op = op
    pm_model.fold = fold
    return pm_model


def default_options(model: str | OdeModel, dataset: Dataset) -> ModelOptions:
    """Return the options for a first fit of ``dataset``.

    One subject: every parameter shared, with its library prior. A cohort: random effects on the
    model's ``cohort_random_effects`` and, when the data have groups and the model's GC resistance
    is a parameter (``r``), a group effect on it.
    """
    model = get_model(model)
    if len(dataset.subject_ids) == 1:
        return ModelOptions()
    resistance = model.resistance.parameter if model.resistance is not None else None
    return ModelOptions(
        random_effects=model.cohort_random_effects,
        group_effects=(resistance,) if len(dataset.groups) > 1 and resistance is not None else (),
    )
