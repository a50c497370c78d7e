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
