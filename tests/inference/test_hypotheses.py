"""Declaring hypotheses in Python and TOML: options, defaults, and one clear error per mistake."""

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.build import ModelOptions
from inference.cli import main
from inference.data import load_dataset
from inference.hypotheses import Hypothesis, check_hypotheses, load_hypotheses, parse_hypotheses
from inference.op import FIT_SOLVER
from models import Beta, LogNormal, ModelError, SolverSettings, get_model

ROOT = Path(__file__).parents[2]
SHIPPED = ROOT / "data" / "hypotheses_gc.toml"
COHORT = ROOT / "data" / "cohort_stress_resistance" / "observations.csv"
SINGLE = ROOT / "data" / "single_subject" / "observations.csv"


@pytest.fixture(scope="module")
def cohort():
    return load_dataset(COHORT)


@pytest.fixture(scope="module")
def single():
    return load_dataset(SINGLE)


def _write(tmp_path, text, name="h.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- Python declarations --------------------------------------------------------------------
def test_a_hypothesis_becomes_the_model_options_of_its_fit():
    h = Hypothesis("H2", description="by group", options=ModelOptions(
        fixed={"K_C": 500}, group_effects=["r"], random_effects=("k_T",),
        covariates={"k_C": "stress_score".split()}, priors={"d_T": LogNormal(2.0, 0.2)},
        likelihood="student_t", nu=4))
    options = h.options
    assert options == ModelOptions(priors={"d_T": LogNormal(2.0, 0.2)}, fixed={"K_C": 500.0},
                                   random_effects=("k_T",), group_effects=("r",),
                                   covariates={"k_C": ("stress_score",)}, likelihood="student_t", nu=4.0,
                                   solver=FIT_SOLVER)
    assert ModelOptions.from_json(options.to_json()) == options


def test_every_model_gets_the_default_solver_unless_told_otherwise():
    assert Hypothesis("H3", model="gc_receptor").options.solver == FIT_SOLVER
    assert Hypothesis("H1").options.solver.method == "auto"
    explicit = Hypothesis("H3", model="gc_receptor",
                          options=ModelOptions(solver=SolverSettings("explicit", rtol=1e-8)))
    assert explicit.options.solver == SolverSettings("explicit", rtol=1e-8)


NO_PARAMETER = r"model {} has no parameter\(s\) \['{}'\]"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"model": "acute"}, r"hypothesis 'H', key 'model': unknown model 'acute'"),
    ({"fixed": {"rr": 0.0}}, r"hypothesis 'H', key 'fixed': " + NO_PARAMETER.format("acute_inflammation",
                                                                                   "rr")),
    ({"group_effects": ("R",)}, r"key 'group_effects': " + NO_PARAMETER.format("acute_inflammation", "R")),
    ({"model": "gc_receptor", "fixed": {"r": 0.0}},
     r"key 'fixed': " + NO_PARAMETER.format("gc_receptor", "r")),
    ({"fixed": {"r": 1.5}}, r"key 'fixed': r = 1.5 is outside \[0, 1\]"),
    ({"fixed": {"r": "0"}}, r"key 'fixed': r: expected a number, got '0'"),
    ({"fixed": {"r": 0.0}, "group_effects": ("r",)},
     r"key 'fixed': \['r'\] are fixed and cannot also appear in 'group_effects'"),
    ({"random_effects": ("k_T", "k_T")}, r"key 'random_effects': \['k_T'\] listed more than once"),
])
def test_a_bad_declaration_names_the_hypothesis_and_key(kwargs, match):
    model = kwargs.pop("model", "acute_inflammation")
    with pytest.raises(ModelError, match=match):
        Hypothesis("H", model=model, options=ModelOptions(**kwargs))


def test_a_name_must_be_usable_as_a_file_name():
    with pytest.raises(ModelError, match="hypothesis name 'H 0'"):
        Hypothesis("H 0")


def test_data_checks_name_the_hypothesis_and_key(single, cohort):
    with pytest.raises(ModelError, match=r"hypothesis 'H2', key 'group_effects': \['r'\] needs a dataset "
                                         r"with at least two groups; observations.csv has 1 \(all\)"):
        Hypothesis("H2", options=ModelOptions(group_effects=("r",))).check(single)
    with pytest.raises(ModelError, match=r"hypothesis 'Hc', key 'covariates': r uses columns \['age'\] "
                                         r"absent"):
        Hypothesis("Hc", options=ModelOptions(covariates={"r": ("age",)})).check(cohort)
    Hypothesis("H2", options=ModelOptions(group_effects=("r",),
                                             covariates={"r": ("stress_score",)})).check(cohort)


def test_check_hypotheses_lists_every_problem_at_once(single):
    hypotheses = [Hypothesis("A", options=ModelOptions(group_effects=("r",))), Hypothesis("A"),
                  Hypothesis("B", options=ModelOptions(covariates={"r": ("stress_score",)}))]
    with pytest.raises(ModelError, match="3 problems") as raised:
        check_hypotheses(hypotheses, single)
    message = str(raised.value)
    assert "hypothesis names ['A'] are used more than once" in message
    assert "hypothesis 'A', key 'group_effects'" in message and "hypothesis 'B', key 'covariates'" in message


# ---- TOML -----------------------------------------------------------------------------------
def test_the_shipped_file_declares_h0_to_h3(cohort):
    hypotheses = {h.name: h for h in load_hypotheses(SHIPPED, cohort)}
    assert list(hypotheses) == ["H0", "H1", "H2", "H3"]
    assert hypotheses["H0"].options.fixed == {"r": 0.0}
    assert "r" not in hypotheses["H1"].options.fixed and not hypotheses["H1"].options.group_effects
    assert hypotheses["H2"].options.group_effects == ("r",)
    assert hypotheses["H3"].model == "gc_receptor" and hypotheses["H3"].options.solver.method == "auto"
    for h in hypotheses.values():  # [defaults] reach every hypothesis
        assert h.options.random_effects == ("k_T", "k_IT", "k_C", "d_T", "C_b")
        assert h.options.priors == {"K_C": LogNormal(500.0, 0.2)}
        assert h.description


def test_defaults_merge_tables_per_parameter_and_replace_lists(tmp_path):
    path = _write(tmp_path, """
[defaults]
fixed = { K_C = 500.0, d_C = 0.55 }
random_effects = ["k_T", "C_b", "r"]
priors = { r = { kind = "Beta", alpha = 1.5, beta = 6 } }

[hypotheses.H0]
fixed = { r = 0.0, d_C = 0.6 }   # r drops out of the inherited priors and random effects

[hypotheses.H1]
random_effects = ["k_T"]
likelihood = "student_t"
nu = 4
solver = { method = "stiff", rtol = 1e-7, max_steps = 50000 }   # atol stays the fit default
""")
    h0, h1 = load_hypotheses(path)
    assert h0.options.fixed == {"K_C": 500.0, "d_C": 0.6, "r": 0.0}
    assert h0.options.random_effects == ("k_T", "C_b") and h0.options.priors == {}
    assert h1.options.fixed == {"K_C": 500.0, "d_C": 0.55} and h1.options.random_effects == ("k_T",)
    assert h1.options.priors == {"r": Beta(1.5, 6.0)}
    assert (h1.options.likelihood, h1.options.nu) == ("student_t", 4.0)
    assert h1.options.solver == SolverSettings("stiff", rtol=1e-7, atol=FIT_SOLVER.atol, max_steps=50000)
    assert h0.options.solver == FIT_SOLVER


BAD_FILES = [
    ('[hypotheses.H0]\nmodel = "acute_inflamation"\n',
     r"h.toml: hypothesis 'H0', key 'model': unknown model 'acute_inflamation'"),
    ('[hypotheses.H1]\nfixed = { K_c = 500.0 }\n',
     r"h.toml: hypothesis 'H1', key 'fixed': model acute_inflammation has no parameter\(s\) \['K_c'\]"),
    ('[hypotheses.H1]\nfixd = { r = 0.0 }\n', r"hypothesis 'H1', key 'fixd': unknown key"),
    ('[defaults]\nrandom_effect = ["k_T"]\n[hypotheses.H1]\n',
     r"\[defaults\], key 'random_effect': unknown key"),
    ('[hypotheses.H1]\nfixed = { r = "zero" }\n',
     r"hypothesis 'H1', key 'fixed': r: expected a number, got 'zero'"),
    ('[hypotheses.H1]\ngroup_effects = "r"\n', r"hypothesis 'H1', key 'group_effects': expected a list"),
    ('[hypotheses.H1]\npriors = { r = { kind = "Cauchy", alpha = 2 } }\n',
     r"key 'priors': r: expected \{ kind ="),
    ('[hypotheses.H1]\npriors = { r = { kind = "Beta", alpha = 2 } }\n',
     r"key 'priors': r: a Beta prior needs exactly \['alpha', 'beta'\]"),
    ('[hypotheses.H1]\npriors = { d_T = { kind = "LogNormal", median = -1, sigma = 1 } }\n',
     r"key 'priors': d_T: LogNormal needs median > 0"),
    ('[hypotheses.H1]\nsolver = { method = "rk4" }\n', r"key 'solver': unknown solver method 'rk4'"),
    ('[hypotheses.H1]\nlikelihood = "normal"\n',
     r"hypothesis 'H1', key 'likelihood': expected one of \['lognormal', 'student_t'\]"),
    ('[hypotheses.H1]\nnu = 0\n', r"hypothesis 'H1', key 'nu': expected a positive number"),
    ('[defaults]\nrandom_effects = ["r"]\n[hypotheses.H3]\nmodel = "gc_receptor"\n',
     r"hypothesis 'H3', key 'random_effects': model gc_receptor has no parameter\(s\) \['r'\]"),
    ('[hypothesis.H1]\n[hypotheses.H0]\n', r"unknown top-level table\(s\) \['hypothesis'\]"),
    ('[defaults]\n', r"no hypotheses: declare at least one table \[hypotheses.NAME\]"),
    ('[hypotheses.H1\n', r"h.toml: not valid TOML"),
]


@pytest.mark.parametrize(("text", "match"), BAD_FILES)
def test_a_bad_file_gives_one_clear_error(tmp_path, text, match):
    with pytest.raises(ModelError, match=match) as raised:
        load_hypotheses(_write(tmp_path, text))
    assert "problems" not in str(raised.value)  # one problem, one line
    assert "\n" not in str(raised.value)


def test_every_problem_of_a_file_is_listed(tmp_path):
    text = '[hypotheses.A]\nmodel = "x"\n[hypotheses.B]\nfixed = { q = 1.0 }\n[hypotheses.C]\n'
    with pytest.raises(ModelError, match=r"h.toml: 2 problems:\n  hypothesis 'A', key 'model'.*\n"
                                         r"  hypothesis 'B', key 'fixed'"):
        load_hypotheses(_write(tmp_path, text))


def test_a_group_effect_on_data_without_groups_is_an_error_of_the_file(single):
    with pytest.raises(ModelError, match=r"hypotheses_gc.toml: 2 problems:\n  hypothesis 'H2', key "
                                         r"'group_effects': \['r'\] needs a dataset with at least two "
                                         r"groups"):
        load_hypotheses(SHIPPED, single)


@settings(max_examples=40, deadline=None)
@given(fixed=st.dictionaries(st.sampled_from(["k_L", "d_M", "K_C", "r", "T_b"]),
                             st.floats(0.0, 1.0), max_size=3),
       structure=st.lists(st.sampled_from(["k_T", "k_IT", "k_C", "C_b"]), unique=True, max_size=3),
       grouped=st.booleans(), median=st.floats(0.1, 1e4), sigma=st.floats(0.05, 2.0))
def test_parsing_a_declaration_back_gives_the_same_options(fixed, structure, grouped, median, sigma):
    priors = {"d_T": LogNormal(median, sigma)}
    h = Hypothesis("H", description="round trip", options=ModelOptions(
        fixed=fixed, random_effects=structure, group_effects=("k_C",) if grouped else (), priors=priors))
    table = {k: v for k, v in h.to_dict().items() if k != "name"}
    (parsed,) = parse_hypotheses({"hypotheses": {"H": table}})
    assert parsed.options == h.options
    assert math.isclose(parsed.options.priors["d_T"].median, median)


# ---- the command line -------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "data", "message"), [
    ('[hypotheses.H0]\nfixed = { r = 0.0 }\n[hypotheses.H1]\nmodel = "receptor"\n', COHORT,
     "hypothesis 'H1', key 'model': unknown model 'receptor'"),
    ('[hypotheses.H0]\nfixed = { r = 0.0 }\n[hypotheses.H1]\nfixed = { R = 0.5 }\n', COHORT,
     "hypothesis 'H1', key 'fixed': model acute_inflammation has no parameter(s) ['R']"),
    ('[hypotheses.H0]\nfixed = { r = 0.0 }\n[hypotheses.H2]\ngroup_effects = ["r"]\n', SINGLE,
     "hypothesis 'H2', key 'group_effects': ['r'] needs a dataset with at least two groups"),
])
def test_the_cli_rejects_a_bad_hypotheses_file_with_status_2(tmp_path, capsys, text, data, message):
    path = _write(tmp_path, text)
    status = main(["compare", str(data), "--hypotheses", str(path), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cytokine-balance compare: error: h.toml: ")
    assert message in lines[0]
    assert not (tmp_path / "out").exists()  # nothing fitted, nothing written


def test_the_cli_rejects_misused_arguments_with_status_2(tmp_path, capsys):
    assert main(["compare", str(COHORT), "--out", str(tmp_path)]) == 2
    assert "expected result files (.nc)" in capsys.readouterr().err
    missing = tmp_path / "none.toml"
    assert main(["compare", str(COHORT), "--hypotheses", str(missing), "--out", str(tmp_path)]) == 2
    assert "no such hypotheses file" in capsys.readouterr().err
    assert main(["compare", str(COHORT), "--hypotheses", str(SHIPPED), "--refit-bad-k", "-1",
                 "--out", str(tmp_path)]) == 2
    assert "--refit-bad-k must be >= 0" in capsys.readouterr().err


def test_the_model_library_is_what_hypotheses_are_checked_against():
    # A guard for the error messages above: parameter lists come from the library.
    assert "r" in get_model("acute_inflammation").parameter_names
    assert "r" not in get_model("gc_receptor").parameter_names
