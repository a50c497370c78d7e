"""A user's model from a file, through the command line: fit, then report and compare without the file."""

import json
from pathlib import Path

import pytest

from inference.cli import main
from inference.fit import load_result
from inference.record import read_record

# The README's example: a depot and a central compartment, observed as an analyte the library
# does not know ("tracer"), with states named S and y and a parameter th.
MODEL_FILE = (Path(__file__).parents[2] / "examples" / "two_compartments.py").read_text()

HYPOTHESES = '''
[defaults]
model = "models/two.py:TWO"

[hypotheses.H0]
description = "elimination at its literature value"
fixed = { th = 0.3 }

[hypotheses.H1]
description = "elimination free, a gamma prior"
priors = { th = { kind = "Gamma", alpha = 3.0, beta = 10.0 } }
'''

SAMPLER = ["--draws", "200", "--tune", "200", "--chains", "2", "--seed", "3", "--quiet"]


@pytest.mark.slow
def test_a_user_model_is_fitted_reported_and_compared_without_its_file(tmp_path, capsys):
    study = tmp_path / "study"
    (study / "models").mkdir(parents=True)
    model_file = study / "models" / "two.py"
    model_file.write_text(MODEL_FILE)
    spec = f"{model_file}:TWO"
    data = tmp_path / "data.csv"
    assert main(["simulate", "--model", spec, "--subjects", "2", "--seed", "1", "--set", "th=0.3",
                 "--times", "0.5,1,2,4,8,12", "--sigma", "0.1", "--out", str(data)]) == 0

    fit = tmp_path / "fit.nc"
    assert main(["fit", str(data), "--model", spec, "--out", str(fit), "--no-report", *SAMPLER]) == 0
    record = read_record(load_result(fit))
    assert record.model == "two_compartments"
    assert record.model_source.text == MODEL_FILE and record.model_source.attribute == "TWO"

    (study / "h.toml").write_text(HYPOTHESES)  # the model path is relative to this file's folder
    out = tmp_path / "fitted"
    assert main(["compare", str(data), "--hypotheses", str(study / "h.toml"), "--out", str(out),
                 "--evidence", "none", *SAMPLER]) == 0
    capsys.readouterr()

    model_file.unlink()  # from here on the model exists only in the results
    assert main(["report", str(fit), "--out", str(tmp_path / "fit.html")]) == 0
    html = (tmp_path / "fit.html").read_text()
    assert "two_compartments" in html and "dS/dt = -ka S" in html and "HalfNormal(sigma=0.5)" in html
    again = tmp_path / "again"
    assert main(["compare", str(out / "H0.nc"), str(out / "H1.nc"), "--out", str(again),
                 "--evidence", "none", *SAMPLER]) == 0
    assert "ranking:" in capsys.readouterr().out
    comparison = json.loads((again / "comparison.json").read_text())
    declared = comparison["hypotheses"]["H1"]["hypothesis"]
    assert declared["model"] == f"{model_file.resolve()}:TWO"
    assert declared["priors"]["th"] == {"kind": "Gamma", "alpha": 3.0, "beta": 10.0}


@pytest.mark.parametrize(
    ("text", "spec", "message"),
    [
        (None, "{dir}/nothing.py:TWO", "nothing.py: no such model file"),
        ("def rhs(s, p\n", "{file}:TWO", "two.py: the model file failed to run: SyntaxError: "),
        (MODEL_FILE, "{file}:THREE", "two.py: defines no 'THREE' (OdeModels it defines: ['TWO'])"),
        (MODEL_FILE + "NUMBER = 3\n", "{file}:NUMBER", "two.py: NUMBER is a int, not a models.OdeModel"),
    ],
    ids=["missing", "syntax", "no-name", "not-a-model"],
)
def test_a_model_file_without_a_valid_model_is_status_2_and_nothing_written(tmp_path, capsys, text, spec,
                                                                           message):
    file = tmp_path / "two.py"
    if text is not None:
        file.write_text(text)
    spec = spec.format(dir=tmp_path, file=file)
    before = sorted(tmp_path.iterdir())
    argvs = [
        ["fit", "data/single_subject/observations.csv", "--model", spec, "--out", str(tmp_path / "r.nc")],
        ["simulate", "--model", spec, "--out", str(tmp_path / "s.csv")],
        ["info", spec],
    ]
    for argv in argvs:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"cytokine-balance {argv[0]}: error: ") and message in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(tmp_path.iterdir()) == before
    # In a hypotheses file, the message also names the file, the hypothesis and the key.
    (tmp_path / "h.toml").write_text(f'[hypotheses.H0]\nmodel = "{spec}"\n[hypotheses.H1]\n')
    argv = ["compare", "data/single_subject/observations.csv", "--hypotheses", str(tmp_path / "h.toml"),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "h.toml: hypothesis 'H0', key 'model': " in err and message in err
    assert not (tmp_path / "out").exists()


def test_simulating_a_user_model_that_starts_at_zero_says_why_at_time_0(tmp_path, capsys):
    file = tmp_path / "two.py"
    file.write_text(MODEL_FILE)
    out = tmp_path / "s.csv"
    assert main(["simulate", "--model", f"{file}:TWO", "--times", "0,1,2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "model two_compartments gives non-positive observables; log-normal noise needs > 0" in err
    assert not out.exists()
