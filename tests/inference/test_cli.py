"""The command line: info, simulate, fit; one-line errors with exit status 2; no silent overwrite."""

import subprocess
import sys

import pandas as pd
import pytest

from inference.cli import main
from inference.data import load_dataset


def test_info_lists_models_and_describes_parameters(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "acute_inflammation" in out and "gc_receptor" in out
    assert main(["info", "acute_inflammation"]) == 0
    out = capsys.readouterr().out
    assert "h(C)  = 1 - (1 - r) C / (C + K_C)" in out
    line = next(line for line in out.splitlines() if line.startswith("k_T "))
    assert "pg/mL/h per ng/kg" in line and "LogNormal(median=1800, sigma=0.82)" in line


def test_simulate_writes_a_loadable_dataset_with_truth(tmp_path, capsys):
    out = tmp_path / "sim.csv"
    assert main(["simulate", "--subjects", "3", "--seed", "4", "--out", str(out), "--set", "r=0.4"]) == 0
    dataset = load_dataset(out)
    truth = pd.read_csv(tmp_path / "sim_truth.csv")
    assert dataset.subject_ids == ("S01", "S02", "S03")
    assert (truth["r"] == 0.4).all() and truth["k_T"].nunique() == 3
    assert dataset.summary()["n_samples"] == 3 * 11 * 3
    # Same seed, same file; an existing file is kept without --force.
    before = out.read_bytes()
    assert main(["simulate", "--subjects", "3", "--seed", "4", "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (
        main(["simulate", "--subjects", "3", "--seed", "4", "--out", str(out), "--set", "r=0.4", "--force"])
        == 0
    )
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "nope"], "unknown model 'nope'"),
        (["fit", "missing.csv", "--out", "{tmp}/r.nc", "--no-report"], "missing.csv"),
        (
            ["fit", "{bad}", "--out", "{tmp}/r.nc", "--no-report"],
            "bad.csv, line 3, column 'value': expected a number, got 'abc'",
        ),
        (
            ["fit", "data/single_subject/observations.csv", "--out", "{tmp}/r.nc", "--fixed", "r=x"],
            "--fixed: expected NAME=NUMBER",
        ),
        (
            ["fit", "data/single_subject/observations.csv", "--out", "{tmp}/r.nc", "--fixed", "q=1"],
            "no parameter(s) ['q']",
        ),
        (["simulate", "--out", "{tmp}/s.csv", "--set", "r=3"], "r=3.0 is outside"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,time,analyte,value,unit\nA,0,TNF,1.0,pg/mL\nA,1,TNF,abc,pg/mL\n")
    argv = [a.format(tmp=tmp_path, bad=bad) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    # One message (a data error lists each problem on its own line below it), no traceback.
    assert err.startswith(f"cytokine-balance {argv[0]}: error: ") and "Traceback" not in err


def test_console_script_exit_status_without_traceback(tmp_path):
    existing = tmp_path / "result.nc"
    existing.write_text("keep me")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "inference.cli",
            "fit",
            "data/single_subject/observations.csv",
            "--out",
            str(existing),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert "exists; pass --force" in run.stderr and "Traceback" not in run.stderr
    assert existing.read_text() == "keep me"


def test_report_of_a_file_that_is_not_a_result(tmp_path, capsys):
    import arviz as az

    not_a_fit = tmp_path / "other.nc"
    az.from_dict(posterior={"x": [[1.0, 2.0]]}).to_netcdf(str(not_a_fit), engine="h5netcdf")
    garbage = tmp_path / "garbage.nc"
    garbage.write_text("not netCDF")
    assert main(["report", str(not_a_fit), "--out", str(tmp_path / "r.html")]) == 2
    assert "other.nc: not a fit result written by cytokine-balance" in capsys.readouterr().err
    assert main(["report", str(garbage), "--out", str(tmp_path / "r.html")]) == 2
    assert "garbage.nc: not a readable InferenceData netCDF file" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


# ---- what real users bring: one message, status 2, nothing written ---------------------------
HEADER = "subject,time,analyte,value,unit"
SHIPPED = "data/endotoxemia_bolus_2024/observations.csv"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "obs.csv: the file is empty; expected a header line"),
        (f"{HEADER}\n".encode(), "obs.csv: no data rows below the header line"),
        (b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00",
         "obs.csv: not a text file (it holds binary data; a netCDF/HDF5"),
        (f"{HEADER}\nS01,0,TNF,1,pg/mL\n{HEADER}\nS02,0,TNF,1,pg/mL\n".encode(),
         "obs.csv, line 3: repeats the header line"),
        (f"{HEADER},lloq\nS01,0,TNF,,pg/mL,2\nS01,1,TNF,1,pg/mL,2\n".encode(),
         "obs.csv, line 2, column 'value': expected at least one quantified sample of subject 'S01'"),
        (f"{HEADER}\nS01,08:00,TNF,1,pg/mL\nS01,09:30,TNF,200,pg/mL\n".encode(),
         "obs.csv, line 2, column 'time': expected hours since the challenge (a number, e.g. 1.5), "
         "got '08:00', a clock time"),
        (b"subject;time;analyte;value;unit\nS01;0;TNF;1,5;pg/mL\nS01;1;TNF;1.297;pg/mL\n",
         "obs.csv, line 3, column 'value': expected a number with a decimal comma"),
        (b"subject|time|analyte|value|unit\nS01|0|TNF|1|pg/mL\n", "obs.csv, line 1: found one column"),
    ],
    ids=["empty", "header-only", "binary", "repeated-header", "all-censored", "clock-times",
         "ambiguous-decimals", "unknown-delimiter"],
)
def test_bad_files_end_with_status_2_and_nothing_written(tmp_path, capsys, content, message):
    data = tmp_path / "obs.csv"
    data.write_bytes(content)
    assert main(["fit", str(data), "--out", str(tmp_path / "r.nc")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cytokine-balance fit: error: obs.csv") and message in err
    assert "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["obs.csv"]  # no result, no report


def test_header_only_file_from_the_console_leaves_nothing(tmp_path):
    data = tmp_path / "obs.csv"
    data.write_text(f"{HEADER}\n")
    argv = [sys.executable, "-m", "inference.cli", "fit", str(data), "--out", str(tmp_path / "r.nc")]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == ("cytokine-balance fit: error: obs.csv: no data rows below the header line; "
                                  "expected one row per sample")
    assert [p.name for p in tmp_path.iterdir()] == ["obs.csv"]


# ---- --priors and --exclude-flagged reach the fit ----------------------------------------------
class _Stop(Exception):
    """Raised by the stand-in for inference.fit.fit once it has seen its arguments."""


def _catch_fit(monkeypatch) -> dict:
    seen = {}

    def fit(model, dataset, options, settings=None, **changes):
        seen.update(model=model, dataset=dataset, options=options)
        raise _Stop

    monkeypatch.setattr("inference.fit.fit", fit)
    return seen


def test_priors_file_and_flag_choice_reach_the_fit(tmp_path, capsys, monkeypatch):
    from models import LogNormal

    seen = _catch_fit(monkeypatch)
    priors = tmp_path / "assay.toml"
    priors.write_text('[priors]\nK_C = { kind = "LogNormal", median = 300.0, sigma = 0.1 }\n')
    with pytest.raises(_Stop):
        main(["fit", SHIPPED, "--out", str(tmp_path / "r.nc"), "--priors", str(priors)])
    assert seen["options"].priors == {"K_C": LogNormal(median=300.0, sigma=0.1)}
    assert "k_T" in seen["options"].random_effects  # the cohort defaults stay
    assert len(seen["dataset"].observations) == 320
    assert "320 samples (0 censored; 18 flagged samples kept (--exclude-flagged leaves them out))" in (
        capsys.readouterr().out)
    with pytest.raises(_Stop):
        main(["fit", SHIPPED, "--out", str(tmp_path / "r.nc"), "--exclude-flagged"])
    assert seen["options"].priors == {}
    assert len(seen["dataset"].observations) == 302 and seen["dataset"].n_flagged == 0
    out = capsys.readouterr().out
    assert "302 samples (0 censored; 18 flagged samples left out (--exclude-flagged))" in out


def test_solver_options_change_only_what_they_name(tmp_path, monkeypatch):
    from inference.op import FIT_SOLVER
    from models import SolverSettings

    seen = _catch_fit(monkeypatch)
    with pytest.raises(_Stop):
        main(["fit", SHIPPED, "--out", str(tmp_path / "r.nc")])
    assert seen["options"].solver == FIT_SOLVER == SolverSettings("auto", rtol=1e-4, atol=1e-6)
    with pytest.raises(_Stop):
        main(["fit", SHIPPED, "--out", str(tmp_path / "r.nc"), "--rtol", "1e-6", "--method", "rodas5"])
    assert seen["options"].solver == SolverSettings("rodas5", rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[priors]\nK_C = { kind = "Cauchy", alpha = 2.0 }\n',
         "assay.toml, [priors], key K_C: expected { kind = "),
        ('[priors]\nK_C = { kind = "LogNormal", median = 500.0 }\n',
         "assay.toml, [priors], key K_C: a LogNormal prior needs exactly ['median', 'sigma'], "
         "got ['median']"),
        ('[priors]\nK_X = { kind = "LogNormal", median = 5.0, sigma = 1.0 }\n',
         "assay.toml, [priors], key K_X: not a parameter of model acute_inflammation"),
        ('K_C = { kind = "LogNormal", median = 5.0, sigma = 1.0 }\n',
         "assay.toml: expected one table [priors] of parameter = { kind = ..., ... }, got keys ['K_C']"),
        ("[priors\n", "assay.toml: not valid TOML"),
        (None, "assay.toml: no such priors file"),
    ],
    ids=["kind", "fields", "parameter", "no-table", "toml", "missing"],
)
def test_bad_priors_file_names_file_and_key(tmp_path, capsys, monkeypatch, toml, message):
    _catch_fit(monkeypatch)
    priors = tmp_path / "assay.toml"
    if toml is not None:
        priors.write_text(toml)
    out = tmp_path / "r.nc"
    argv = ["fit", "data/single_subject/observations.csv", "--out", str(out), "--priors", str(priors)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_compare_takes_exclude_flagged(tmp_path, capsys, monkeypatch):
    seen = {}

    def compare(dataset, hypotheses, **settings):
        seen.update(dataset=dataset, hypotheses=hypotheses)
        raise _Stop

    monkeypatch.setattr("inference.compare.compare", compare)
    hypotheses = tmp_path / "h.toml"
    hypotheses.write_text('[hypotheses.H0]\nfixed = { r = 0.0 }\n[hypotheses.H1]\ndescription = "r free"\n')
    with pytest.raises(_Stop):
        main(["compare", SHIPPED, "--hypotheses", str(hypotheses), "--out", str(tmp_path / "out"),
              "--exclude-flagged"])
    assert len(seen["dataset"].observations) == 302 and len(seen["hypotheses"]) == 2
    assert "observations.csv; 18 flagged samples left out (--exclude-flagged)" in capsys.readouterr().out
