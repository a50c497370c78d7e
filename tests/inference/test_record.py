"""The run record and the sampler settings: typed, validated, and readable from 0.1.0 results."""

import json

import arviz as az
import numpy as np
import pytest

from inference.build import ModelOptions
from inference.cli import parser
from inference.fit import check_result, load_result, sampler_settings, save_result
from inference.record import ResultError, RunRecord, read_record, write_record
from inference.sampler import SamplerSettings
from models import Beta, LogNormal, ModelError, SolverSettings

# idata.attrs exactly as inference.fit.fit wrote them in version 0.1.0 (a hypothesis fit).
ATTRS_0_1_0 = {
    "model": "acute_inflammation",
    "options": '{"covariates": {}, "fixed": {"k_L": 1.0}, "group_effects": [], "likelihood": "lognormal", '
               '"nu": 5.0, "priors": {"K_C": {"kind": "LogNormal", "median": 300.0, "sigma": 0.5}, '
               '"r": {"alpha": 2.0, "beta": 5.0, "kind": "Beta"}}, "random_effects": ["k_T"], '
               '"solver": {"atol": 1e-06, "max_steps": 20000, "method": "stiff", "rtol": 1e-06}}',
    "dataset_source": "observations.csv",
    "dataset_observations": '{"columns":["subject","time","analyte","value","unit","censored","lloq","uloq"],'
                            '"data":[["S01",0.0,"TNF",2.0,"pg\\/mL","left",2.0,null],'
                            '["S01",0.0,"IL6",2.0,"pg\\/mL","left",2.0,null],'
                            '["S01",0.0,"cortisol",373.827059928,"nmol\\/L","none",null,null]]}',
    "dataset_subjects": '{"columns":["subject","group","dose"],"data":[["S01","all",2.0]]}',
    "dataset_events": '{"columns":["subject","time","kind","target","value"],"data":[]}',
    "sampler": "pymc", "draws": 200, "tune": 300, "chains": 2, "target_accept": 0.9, "seed": 7,
    "solver_method": "stiff", "solver_rtol": 1e-06, "solver_atol": 1e-06, "solver_max_steps": 20000,
    "solver_failures": 3, "compile_seconds": 1.5, "sampling_seconds": 42.25,
    "created": "2026-11-30T10:00:00+00:00", "python": "3.12.3",
    "versions": '{"arviz": "0.23.0", "cytokine-balance": "0.1.0", "pymc": "5.26.1"}',
    "hypothesis": "H1",
    "hypothesis_declaration": '{"description": "static GC resistance", "model": "acute_inflammation", '
                              '"name": "H1"}',
}
EXPECTED_OPTIONS = ModelOptions(priors={"K_C": LogNormal(300.0, 0.5), "r": Beta(2.0, 5.0)},
                                fixed={"k_L": 1.0}, random_effects=("k_T",), solver=SolverSettings("stiff"))


def _idata(attrs):
    idata = az.from_dict(posterior={"r": np.random.default_rng(0).uniform(size=(2, 20))})
    idata.attrs.update(attrs)
    return idata


def test_a_result_file_written_by_0_1_0_still_loads(tmp_path):
    path = save_result(_idata(ATTRS_0_1_0), tmp_path / "old.nc")
    record = read_record(load_result(path))
    assert record.model == "acute_inflammation" and record.ode_model.name == "acute_inflammation"
    assert record.options == EXPECTED_OPTIONS and record.solver == SolverSettings("stiff")
    assert record.sampler == SamplerSettings("pymc", draws=200, tune=300, chains=2, target_accept=0.9, seed=7)
    assert record.solver_failures == 3
    assert record.timings == {"compile_seconds": 1.5, "sampling_seconds": 42.25}
    assert record.versions["cytokine-balance"] == "0.1.0" and record.python == "3.12.3"
    assert record.hypothesis == "H1" and record.declaration["description"] == "static GC resistance"
    obs = record.dataset.observations
    assert list(obs["analyte"]) == ["TNF", "IL6", "cortisol"] and obs["value"].iloc[2] == 373.827059928
    assert record.dataset.source == "observations.csv" and list(record.dataset.subject_ids) == ["S01"]


def test_writing_a_record_back_gives_the_0_1_0_attributes():
    record = read_record(_idata(ATTRS_0_1_0))
    rewritten = _idata({})
    write_record(rewritten, record)
    assert read_record(rewritten) == record
    for key, value in ATTRS_0_1_0.items():
        if key in ("dataset_observations", "dataset_subjects", "dataset_events", "versions",
                   "hypothesis_declaration"):
            assert json.loads(rewritten.attrs[key]) == json.loads(value), key
        else:
            assert rewritten.attrs[key] == value, key


def test_a_user_model_is_stored_with_its_source_and_rebuilt_without_the_file(tmp_path):
    from pathlib import Path

    from models import get_model

    model_file = tmp_path / "mine.py"
    model_file.write_text((Path(__file__).parents[2] / "examples" / "two_compartments.py").read_text())
    model = get_model(f"{model_file}:TWO")
    idata = _idata(ATTRS_0_1_0)
    write_record(idata, RunRecord(model=model.name, model_source=model.source))
    path = save_result(idata, tmp_path / "mine.nc")
    model_file.unlink()
    record = read_record(load_result(path))
    assert record.model == "two_compartments" and record.model_source == model.source
    assert record.model_source.file == str(model_file.resolve()) and record.model_source.attribute == "TWO"
    assert record.ode_model.state_names == ("S", "y") and record.ode_model.source == model.source
    library = _idata({})
    write_record(library, RunRecord(model="gc_receptor", model_source=get_model("gc_receptor").source))
    assert "model_source" not in library.attrs and read_record(library).ode_model.name == "gc_receptor"


def test_a_partial_record_reads_as_missing_and_is_not_a_fit_result():
    record = read_record(_idata({"solver_failures": 0, "tune": 50}))
    assert record.model is None and record.options is None and record.dataset is None
    assert record.sampler == SamplerSettings(tune=50) and record.solver_failures == 0
    with pytest.raises(ResultError, match=r"not a fit result .*missing \['model', 'options'"):
        check_result(_idata({"solver_failures": 0}))
    with pytest.raises(ResultError, match="unreadable run record"):
        read_record(_idata(ATTRS_0_1_0 | {"chains": 0}))
    assert RunRecord().solver is None


@pytest.mark.parametrize(("changes", "match"), [
    ({"sampler": "stan"}, r"sampler must be one of \['nutpie', 'pymc'\], got 'stan'"),
    ({"draws": 0}, "draws must be an integer >= 1, got 0"),
    ({"tune": 1.5}, "tune must be an integer >= 0, got 1.5"),
    ({"chains": True}, "chains must be an integer >= 1, got True"),
    ({"target_accept": 1.0}, r"target_accept must be in \(0, 1\), got 1.0"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"warmup": 10}, r"unknown sampler setting\(s\) \['warmup'\]"),
])
def test_sampler_settings_are_validated_with_a_clear_message(changes, match):
    with pytest.raises(ModelError, match=match):
        sampler_settings(**changes)


def test_the_cli_parsers_take_their_defaults_from_the_sampler_settings():
    defaults = SamplerSettings()
    for argv in (["fit", "data.csv"], ["compare", "a.nc", "b.nc", "--out", "x"]):
        args = parser().parse_args(argv)
        assert SamplerSettings(**{k: getattr(args, k) for k in SamplerSettings.field_names()}) == defaults
    args = parser().parse_args(["fit", "data.csv", "--target-accept", "0.8", "--draws", "50"])
    assert (args.target_accept, args.draws) == (0.8, 50)
