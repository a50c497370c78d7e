"""Comparing hypotheses: reduced runs on the shipped cohorts, exact refits, the verdict and the outputs.

The cohort fits are reduced so that the module runs in CI: four subjects (two controls, two under
chronic stress), the parameters that do not vary between simulated subjects fixed at their true
values, no random effects, 2 chains of 200 draws with PyMC's sampler (its compiled C code is
cached on disk and shared by every fit of the same structure).
"""

import json
import math
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest

from inference import loo as psis
from inference.build import ModelOptions, build_model
from inference.cli import main
from inference.compare import EXACT_LSO_CORES, compare, exact_lso_decision
from inference.data import DataError, load_dataset, save_dataset
from inference.diagnostics import Thresholds
from inference.fit import load_result
from inference.heldout import heldout_log_likelihood, subject_theta
from inference.refit import LeaveObservationOut, LeaveSubjectOut, refit_exact
from inference.verdict import check_diagnostics, rank_hypotheses, write_verdict
from models import ModelError, get_model

ROOT = Path(__file__).parents[2]
COHORTS = {"no_resistance": "H0", "stress_resistance": "H2"}  # cohort -> generating hypothesis
SUBJECTS = ["S01", "S02", "S03", "S04"]  # control, chronic_stress, control, chronic_stress
NUISANCE = "k_L = 1.0, d_M = 1.5, k_I = 100.0, d_I = 1.5, d_C = 0.55, K_C = 500.0, T_b = 1.5, I_b = 1.0"
# The shipped H0-H2 (data/hypotheses_gc.toml), reduced: nuisance parameters fixed at the values
# every simulated subject shares, no random effects.
REDUCED = f"""
[defaults]
fixed = {{ {NUISANCE} }}

[hypotheses.H0]
description = "cortisol suppresses fully (r = 0)"
fixed = {{ r = 0.0 }}

[hypotheses.H1]
description = "static GC resistance, shared"

[hypotheses.H2]
description = "GC resistance by group"
group_effects = ["r"]
"""
RUN = ["--sampler", "pymc", "--draws", "200", "--tune", "200", "--chains", "2", "--target-accept", "0.9",
       "--seed", "1", "--quiet", "--exact-lso", "never"]
# Reduced runs have few draws: judge them by R-hat and ESS that reveal real failures only.
LENIENT = Thresholds(rhat_fail=1.1, ess_fail=20)
ACUTE = get_model("acute_inflammation")
# PyMC's NUTS (in its worker processes) lets numpy warn when an early tuning trajectory
# diverges to huge momenta; the sampler rejects that trajectory and counts the divergence.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in dot:RuntimeWarning")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Both cohorts (reduced) fitted and compared through the command line's data form."""
    folders = {}
    for cohort in COHORTS:
        folder = tmp_path_factory.mktemp(cohort)
        data = folder / "observations.csv"
        source = ROOT / "data" / f"cohort_{cohort}" / "observations.csv"
        save_dataset(load_dataset(source).select(SUBJECTS), data)
        hypotheses = folder / "hypotheses.toml"
        hypotheses.write_text(REDUCED)
        status = main(["compare", str(data), "--hypotheses", str(hypotheses), "--out", str(folder / "out"),
                       *RUN])
        assert status == 0
        folders[cohort] = folder / "out"
    return folders


@pytest.fixture(scope="module")
def comparisons(fitted):
    return {cohort: compare([folder / f"H{i}.nc" for i in range(3)], thresholds=LENIENT, seed=1,
                            exact_lso="never")
            for cohort, folder in fitted.items()}


# ---- the shipped cohorts ---------------------------------------------------------------------
def test_the_cli_fits_each_hypothesis_and_writes_the_comparison(fitted):
    for folder in fitted.values():
        assert sorted(p.name for p in folder.iterdir()) == [
            "H0.nc", "H1.nc", "H2.nc", "comparison.html", "comparison.json"]
        result = json.loads((folder / "comparison.json").read_text())
        assert sorted(result["ranking"]) == ["H0", "H1", "H2"]
        for row in result["hypotheses"].values():
            for key in ("elpd_loo", "se", "elpd_diff", "dse", "weight", "p_loo", "max_pareto_k", "elpd_lso",
                        "log_marginal_likelihood", "log_ml_se"):
                assert isinstance(row[key], float), key
            assert row["diagnostics"]["status"] in ("pass", "warn", "fail") and "diagnostics_ok" not in row
        assert load_result(folder / "H2.nc").attrs["hypothesis"] == "H2"


@pytest.mark.parametrize("cohort", COHORTS)
def test_loo_ranks_the_generating_hypothesis_first_or_level_with_the_first(comparisons, cohort):
    c = comparisons[cohort]
    table = c.table
    truth = COHORTS[cohort]
    assert (table["diagnostics_status"] != "fail").all()
    assert c.ranking[0] == table["elpd_loo"].idxmax()
    # Nested hypotheses fit data without resistance equally well (H1 and H2 contain r = 0), so there
    # the truth may trail by noise, never by 2 SE; with resistance it must lead.
    assert c.ranking[0] == truth or table.at[truth, "elpd_diff"] < 2 * table.at[truth, "dse"]
    assert table.loc[c.ranking, "rank"].tolist() == [1, 2, 3]
    assert table.at[c.ranking[0], "elpd_diff"] == 0 and (table["elpd_diff"] >= 0).all()
    assert math.isclose(table["weight"].sum(), 1.0, abs_tol=1e-6)


def test_without_resistance_the_data_do_not_separate_r_free_from_r_zero(comparisons):
    c = comparisons["no_resistance"]
    table = c.table
    # H1 and H2 contain H0 (r near 0 fits): none of the three is ahead by 2 SE.
    for name in c.ranking[1:]:
        assert 0 <= table.at[name, "elpd_diff"] < 2 * table.at[name, "dse"]
    assert f"the data do not separate {c.ranking[0]} from" in c.verdict
    assert "no winner can be named" in c.verdict
    # The evidence does not favour the wider hypotheses (Occam's razor) beyond its error.
    for name in ("H1", "H2"):
        log_bf = table.at[name, "log_ml"] - table.at["H0", "log_ml"]
        assert log_bf < 2 * math.hypot(table.at[name, "log_ml_se"], table.at["H0", "log_ml_se"])


def test_with_resistance_under_stress_the_group_hypothesis_wins_clearly(comparisons):
    c = comparisons["stress_resistance"]
    table = c.table
    for name in ("H0", "H1"):
        assert table.at[name, "elpd_diff"] > 2 * table.at[name, "dse"]
        assert table.at[name, "log_bf_vs_best"] < -2 * table.at[name, "log_bf_se"]  # Bayes factor agrees
        assert table.at[name, "elpd_lso"] < table.at["H2", "elpd_lso"]
    assert table.at["H2", "weight"] > 0.9
    assert "By PSIS-LOO, H2 predicts best" in c.verdict
    # The group effect is positive: resistance is higher under chronic stress.
    effect = c.results["H2"].posterior["r_group"].sel(group_effect="chronic_stress")
    assert float((effect > 0).mean()) > 0.95


@pytest.mark.parametrize("cohort", COHORTS)
def test_savage_dickey_is_refused_at_r_equal_zero_on_the_beta_boundary(comparisons, cohort):
    c = comparisons[cohort]
    (row,) = c.savage_dickey
    assert (row["null"], row["alternative"], row["parameter"], row["value"]) == ("H0", "H1", "r", 0.0)
    assert row["log_bf01"] is None and row["se"] is None and row["pareto_k"] is None
    reason = "r = 0 lies on the boundary of the support of its prior Beta(alpha=2, beta=5)"
    assert row["not_computed"].startswith(reason)
    assert f"Savage-Dickey cross-check, H0 (r = 0) against H1: not computed: {reason}" in c.verdict
    assert not any("Savage-Dickey" in w for w in c.warnings)
    # The bridge-sampling Bayes factor still stands beside it.
    evidence = c.evidence
    assert math.isclose(row["bridge_log_bf01"], evidence["H0"].log_ml - evidence["H1"].log_ml)


@pytest.mark.parametrize("cohort", COHORTS)
def test_short_runs_open_the_verdict_with_their_diagnostics(comparisons, cohort):
    """2 x 200 draws cannot reach a bulk ESS of 400: every fit warns, and the verdict says so first."""
    c = comparisons[cohort]
    statuses = c.table["diagnostics_status"]
    assert (statuses == "warn").all()
    flagged = " and ".join(f"{n} (warn: " for n in c.ranking)
    assert c.verdict.startswith("Caution: the sampling diagnostics of ")
    first = c.verdict.split(" before acting on this comparison.")[0]
    assert all(f"{n} (warn: " in first for n in c.ranking), flagged
    assert "bulk ESS" in first
    assert "rerun them with more tuning and draws (e.g. --tune 2000 --draws 2000)" in first
    rows = c.to_dict()["hypotheses"]
    assert all(rows[n]["diagnostics"]["status"] == "warn" and "diagnostics_ok" not in rows[n] for n in rows)


def test_pointwise_differences_add_up_to_the_elpd_difference(comparisons):
    c = comparisons["stress_resistance"]
    cells = c.differences("H2", "H0")
    assert list(cells.index) == SUBJECTS and list(cells.columns) == ["TNF", "IL6", "cortisol"]
    assert math.isclose(cells.to_numpy().sum(), c.table.at["H0", "elpd_diff"], rel_tol=1e-9)
    pointwise = c.pointwise()
    assert len(pointwise) == len(c.dataset.observations)
    assert math.isclose(pointwise["H2"].sum(), c.table.at["H2", "elpd_loo"], rel_tol=1e-9)


def test_results_of_different_data_are_not_compared(fitted):
    with pytest.raises(DataError, match="were fitted to different data"):
        compare({"a": fitted["no_resistance"] / "H0.nc", "b": fitted["stress_resistance"] / "H0.nc"})
    with pytest.raises(ModelError, match="at least two hypotheses"):
        compare([fitted["no_resistance"] / "H0.nc"])


# ---- exact refits where Pareto k is high -----------------------------------------------------
@pytest.mark.slow
def test_exact_lso_refits_every_flagged_subject_on_a_two_worker_cluster(fitted, comparisons, tmp_path):
    """Every flagged subject of H0 and H1 refitted on two Dask workers, then one refit again here.

    10 minutes on the shared 2-core machine at a load of 10 (the refits of 3 subjects each).
    """
    from distributed import Client, LocalCluster

    folder = fitted["no_resistance"]
    before = comparisons["no_resistance"]
    with (LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
          Client(cluster) as client):
        c = compare({"H0": folder / "H0.nc", "H1": folder / "H1.nc"}, client=client, out_dir=tmp_path,
                    evidence=None, thresholds=LENIENT, progress=True)
    summary = c.exact_lso
    assert summary["on"] and summary["reason"] == "auto: a Dask cluster was given" and summary["workers"] == 2
    flagged = {}
    for name in ("H0", "H1"):
        k = before.lso[name].pareto_k.values
        high = k > psis.threshold(before.lso[name])
        flagged[name] = [s for s, h in zip(SUBJECTS, high, strict=True) if h]
        assert flagged[name]  # four subjects without random effects: each one is influential
        refits = c.refits[name]["lso"]
        assert [r["subject"] for r in refits] == sorted(flagged[name], key=lambda s: -k[SUBJECTS.index(s)])
        lso = c.lso[name]
        for r in refits:
            i = SUBJECTS.index(r["subject"])
            assert r["pareto_k"] == k[i] and lso.pareto_k.values[i] == 0.0
            assert lso.loo_i.values[i] == r["elpd"]
            assert r["elpd"] != before.lso[name].loo_i.values[i] and np.isfinite(r["integrand_pareto_k"])
            assert 0 < r["seconds"] < summary["seconds"]
        kept = [i for i, s in enumerate(SUBJECTS) if s not in flagged[name]]
        np.testing.assert_array_equal(lso.loo_i.values[kept], before.lso[name].loo_i.values[kept])
        assert math.isclose(lso.elpd_loo, lso.loo_i.values.sum())
        assert c.table.at[name, "n_high_k_lso"] == 0 and c.refits[name]["loo"] == []
    n = len(flagged["H0"]) + len(flagged["H1"])
    assert summary["subjects_flagged"] == summary["subjects_refitted"] == n
    assert summary["subjects_skipped"] == summary["subjects_failed"] == 0
    assert len(list((tmp_path / "refits").glob("*.nc"))) == n
    written = c.to_dict()["exact_lso"]
    assert written == summary and json.loads(c.to_json())["exact_lso"]["subjects_refitted"] == n
    assert f"({n} subject estimates with high Pareto k refitted exactly, in " in c.verdict

    # The batch refit is the fit refit_exact makes in this process: same seed, same number.
    subject = flagged["H0"][0]
    direct = refit_exact(load_result(folder / "H0.nc"), LeaveSubjectOut(subject))
    (row,) = [r for r in c.refits["H0"]["lso"] if r["subject"] == subject]
    assert math.isclose(direct["elpd"], row["elpd"], rel_tol=1e-9), (direct, row)


def test_exact_lso_auto_turns_on_with_a_cluster_or_enough_cores():
    assert exact_lso_decision("auto", cores=2) == (
        False, "auto: only 2 cores (fewer than 4) and no Dask cluster")
    assert exact_lso_decision("auto", cores=EXACT_LSO_CORES) == (True, "auto: 4 cores")
    assert exact_lso_decision("auto", client=object(), cores=1)[0]
    assert exact_lso_decision("always", cores=1)[0] and not exact_lso_decision("never", client=object())[0]
    with pytest.raises(ModelError, match="exact_lso must be one of"):
        exact_lso_decision("sometimes")


def test_exact_leave_one_out_agrees_with_psis_where_pareto_k_is_small(fitted, comparisons):
    idata = load_result(fitted["stress_resistance"] / "H2.nc")
    loo = comparisons["stress_resistance"].loo["H2"]
    i = int(np.argmin(np.abs(loo.pareto_k.values)))
    assert loo.pareto_k.values[i] < 0.5
    exact = refit_exact(idata, LeaveObservationOut(i))
    assert exact["observation"] == i
    assert exact["subject"] == comparisons["stress_resistance"].dataset.observations.at[i, "subject"]
    assert exact["integrand_pareto_k"] < 0.7
    assert abs(exact["elpd"] - loo.loo_i.values[i]) < 0.25


# ---- the held-out likelihood reproduces build_model ------------------------------------------
@pytest.fixture(scope="module")
def cohort_prior():
    """Prior draws of a model with random effects, a group effect and a covariate effect."""
    dataset = load_dataset(ROOT / "data" / "cohort_stress_resistance" / "observations.csv").select(SUBJECTS)
    fixed = dict(k_L=1.0, d_M=1.5, k_I=100.0, d_I=1.5, d_C=0.55, K_C=500.0, T_b=1.5, I_b=1.0)
    out = {}
    for likelihood in ("lognormal", "student_t"):
        options = ModelOptions(fixed=fixed, random_effects=("k_T", "C_b"), group_effects=("r",),
                               covariates={"k_C": ("stress_score",)}, likelihood=likelihood, nu=4.0)
        model = build_model(ACUTE, dataset, options)
        names = [rv.name for rv in model.free_RVs] + ["theta"]
        with model:
            prior = pm.sample_prior_predictive(draws=30, var_names=names, random_seed=3)
        posterior = prior.prior
        log_lik = pm.compute_log_likelihood(az.InferenceData(posterior=posterior), var_names=["log_y"],
                                            model=model, extend_inferencedata=False, progressbar=False)
        out[likelihood] = (dataset, options, posterior, log_lik["log_y"])
    return out


def test_subject_theta_reproduces_the_parameters_of_build_model(cohort_prior):
    dataset, options, posterior, _ = cohort_prior["lognormal"]
    for subject in SUBJECTS:
        z = {p: posterior[f"{p}_z"].sel(subject=subject).values.ravel() for p in options.random_effects}
        theta = subject_theta(ACUTE, options, dataset, posterior, dataset.select([subject]), z)
        expected = posterior["theta"].sel(subject=subject).values.reshape(theta.shape)
        np.testing.assert_allclose(theta, expected, rtol=1e-12)


@pytest.mark.parametrize("likelihood", ["lognormal", "student_t"])
def test_heldout_log_likelihood_reproduces_pymc(cohort_prior, likelihood):
    dataset, options, posterior, log_lik = cohort_prior[likelihood]
    obs = dataset.observations
    assert (obs["censored"] == "left").any()
    sigma = posterior["sigma"].values.reshape(-1, 3)
    for subject in SUBJECTS:
        theta = posterior["theta"].sel(subject=subject).values.reshape(-1, len(ACUTE.theta_names))
        ours = heldout_log_likelihood(ACUTE, options, dataset.select([subject]), theta, sigma,
                                      list(posterior["sigma"].coords["analyte"].values))
        theirs = log_lik.values.reshape(-1, len(obs))[:, (obs["subject"] == subject).to_numpy()]
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


# ---- the verdict -------------------------------------------------------------------------------
def _table(rows):
    defaults = dict(weight=0.0, diagnostics_status="pass", diagnostics_flagged={}, diagnostics_problems=[],
                    diagnostics_cautions=[],
                    n_high_k=0, n_observations=100, elpd_lso=np.nan, n_high_k_lso=0, log_ml=np.nan,
                    log_ml_se=np.nan, solver_failures=0)
    return pd.DataFrame([defaults | row for row in rows]).set_index("name")


def test_verdict_names_a_winner_only_beyond_two_standard_errors():
    clear = _table([dict(name="H2", elpd_loo=-10, elpd_diff=0, dse=0, weight=0.95),
                    dict(name="H1", elpd_loo=-20, elpd_diff=10, dse=4, weight=0.05)])
    text, warnings = write_verdict(clear)
    assert text.startswith("By PSIS-LOO, H2 predicts best, ahead of H1 by 10.0 ± 4.0 elpd") and not warnings
    close = _table([dict(name="H1", elpd_loo=-10, elpd_diff=0, dse=0),
                    dict(name="H0", elpd_loo=-11, elpd_diff=1.0, dse=0.8),
                    dict(name="H2", elpd_loo=-30, elpd_diff=20, dse=5)])
    text, _ = write_verdict(close)
    assert text.startswith("By PSIS-LOO the data do not separate H1 from H0 (1.0 ± 0.8 elpd behind): less "
                           "than 2 SE apart, so no winner can be named")
    assert "no winner can be named" in text and "H2" not in text.split(".")[0]


def test_verdict_marks_failed_fits_and_warns_in_plain_language():
    table = _table([
        dict(name="H1", elpd_loo=-10, elpd_diff=0, dse=0, log_ml=-50.0, log_ml_se=0.8, n_high_k=3),
        dict(name="H0", elpd_loo=-20, elpd_diff=10, dse=2, log_ml=-50.5, log_ml_se=0.9, n_high_k_lso=2),
        dict(name="H2", elpd_loo=-5, elpd_diff=-5, dse=1, diagnostics_status="fail",
             diagnostics_flagged={"rhat": "max R-hat 1.3 at r_mu"},
             diagnostics_problems=["R-hat: max R-hat 1.3 at r_mu"], solver_failures=4),
    ])
    text, warnings = write_verdict(table)
    assert text.startswith("Caution: the sampling diagnostics of H2 (fail: max R-hat 1.3 at r_mu) are not a "
                           "clean pass, so the numbers below are provisional: rerun it with more tuning and "
                           "draws (e.g. --tune 2000 --draws 2000) before acting on this comparison. "
                           "By PSIS-LOO, H1 predicts best")
    assert "evidence error is too large to rank H1 and H0" in text
    joined = "\n".join(warnings)
    assert "H2: sampling diagnostics failed (R-hat: max R-hat 1.3 at r_mu); its row is marked and ranked " \
           "after the sound hypotheses" in joined
    assert "H1: 3 of 100 observations have Pareto k above the threshold" in joined
    assert "H0: 2 subjects have Pareto k above the threshold in leave-subject-out" in joined
    assert "H2: 4 ODE solves failed" in joined
    assert "H1: the log marginal likelihood has a large error" in joined


def test_a_warning_fit_opens_the_verdict_with_which_check_and_what_to_do():
    table = _table([
        dict(name="H2", elpd_loo=-10, elpd_diff=0, dse=0, weight=0.9, diagnostics_status="warn",
             diagnostics_flagged={"rhat": "max R-hat 1.03 at K_C", "ess_bulk": "min bulk ESS 128 at k_L"}),
        dict(name="H1", elpd_loo=-20, elpd_diff=10, dse=4, weight=0.1, diagnostics_status="warn",
             diagnostics_flagged={"divergences": "12 of 4000 draws divergent (0.30%)"}),
        dict(name="H0", elpd_loo=-30, elpd_diff=20, dse=4),
    ])
    text, _ = write_verdict(table)
    first, rest = text.split(" before acting on this comparison. ", 1)
    assert first == ("Caution: the sampling diagnostics of H2 (warn: max R-hat 1.03 at K_C; min bulk ESS "
                     "128 at k_L) and H1 (warn: 12 of 4000 draws divergent (0.30%)) are not a clean pass, so "
                     "the numbers below are provisional: rerun them with more tuning and draws (e.g. --tune "
                     "2000 --draws 2000) and a higher --target-accept (e.g. 0.99)")
    # A fit that only warns still ranks.
    assert rest.startswith("By PSIS-LOO, H2 predicts best, ahead of H1 by 10.0 ± 4.0 elpd")


def test_verdict_says_when_leave_subject_out_does_not_separate_the_leaders():
    lso = dict(elpd_lso_se=10.0, n_high_k_lso=0)
    table = _table([dict(name="H2", elpd_loo=125, elpd_diff=0, dse=0, elpd_lso=110, elpd_lso_diff=0,
                         elpd_lso_dse=0, **lso),
                    dict(name="H1", elpd_loo=120, elpd_diff=4.6, dse=2.2, elpd_lso=111.5, elpd_lso_diff=-1.5,
                         elpd_lso_dse=10.0, **lso)])
    text, _ = write_verdict(table)
    assert "Leave-one-subject-out (predicting a new subject's whole course) does not separate H2 from H1 " \
           "(H1 ahead by 1.5 ± 10.0)." in text


def test_verdict_says_how_many_subjects_were_refitted_or_why_not():
    rows = [dict(name="H2", elpd_loo=125, elpd_diff=0, dse=0, elpd_lso=110, elpd_lso_diff=0, elpd_lso_dse=0,
                 elpd_lso_se=10.0, n_high_k_lso=0),
            dict(name="H1", elpd_loo=100, elpd_diff=25, dse=5, elpd_lso=90, elpd_lso_diff=20, elpd_lso_dse=5,
                 elpd_lso_se=10.0, n_high_k_lso=3)]
    done = {"on": True, "reason": "auto: a Dask cluster was given", "subjects_flagged": 7,
            "subjects_refitted": 4, "seconds": 312.4, "workers": 2}
    refits = {"H2": {"loo": [], "lso": [{"subject": "S03", "pareto_k": 0.9, "failed": "ValueError: boom"}]}}
    text, warnings = write_verdict(_table(rows), refits=refits, exact_lso=done)
    assert ("(roughly: 3 subject estimates have high Pareto k) (4 subject estimates with high Pareto k "
            "refitted exactly, in 312 s on 2 Dask worker(s)).") in text
    assert "H2: the exact refit of subject S03 failed (ValueError: boom); its PSIS estimate stands." \
        in warnings
    reason = "auto: only 2 cores (fewer than 4) and no Dask cluster"
    off = {"on": False, "reason": reason, "subjects_flagged": 3}
    text, warnings = write_verdict(_table(rows), exact_lso=off)
    assert "refitted exactly" not in text
    assert ("H1: 3 subjects have Pareto k above the threshold in leave-subject-out: elpd_lso is a rough "
            f"estimate for them (exact refits are off: {reason}); "
            "--exact-lso always refits them exactly (on Dask: --scheduler ADDRESS).") in warnings


def test_ranking_puts_failed_fits_after_sound_ones():
    elpd = {"H0": -20.0, "H1": -10.0, "H2": -5.0}
    assert rank_hypotheses(elpd, {"H0": "pass", "H1": "warn", "H2": "fail"}) == ["H1", "H0", "H2"]
    assert rank_hypotheses(elpd, dict.fromkeys(elpd, "warn")) == ["H2", "H1", "H0"]


def test_check_diagnostics_uses_the_shared_verdict(fitted):
    idata = load_result(fitted["stress_resistance"] / "H1.nc")
    lenient = check_diagnostics(idata, LENIENT)
    assert lenient["status"] in ("pass", "warn") and lenient["problems"] == []
    strict = check_diagnostics(idata, Thresholds(rhat=1.0001, rhat_fail=1.0002))
    assert strict["status"] == "fail" and strict["problems"][0].startswith("Max R-hat")
    assert strict["flagged"]["rhat"].startswith("max R-hat")


# ---- outputs --------------------------------------------------------------------------------------
def test_the_cli_compares_saved_fits_and_never_overwrites_without_force(fitted, tmp_path, capsys):
    folder = fitted["stress_resistance"]
    files = [str(folder / f"H{i}.nc") for i in range(3)]
    out = tmp_path / "cmp"
    assert main(["compare", *files, "--out", str(out), "--evidence", "none", "--exact-lso", "never"]) == 0
    printed = capsys.readouterr().out
    assert "ranking: H2 > " in printed and f"wrote {out / 'comparison.json'}" in printed
    html = (out / "comparison.html").read_text()
    assert html.count("data:image/png;base64,") == 4  # compare plot, differences, two predictive plots
    assert "Where does H2 win?" in html and "cb-report" in html
    before = (out / "comparison.json").read_text()
    assert main(["compare", *files, "--out", str(out), "--evidence", "none", "--exact-lso", "never"]) == 2
    assert "comparison.json exists; pass --force" in capsys.readouterr().err
    assert (out / "comparison.json").read_text() == before
    assert main(["compare", *files, "--out", str(out), "--evidence", "none", "--exact-lso", "never",
                 "--force"]) == 0
    result = json.loads((out / "comparison.json").read_text())
    assert result["hypotheses"]["H2"]["log_marginal_likelihood"] is None
    assert result["settings"]["evidence"] is None


# ---- the shipped hypotheses on the full cohorts (slow) ----------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("cohort", [pytest.param(c, marks=pytest.mark.xdist_group(c)) for c in COHORTS])
def test_the_shipped_hypotheses_rank_the_generating_one_first_or_level_on_the_full_cohort(cohort):
    """data/hypotheses_gc.toml's H0-H2 (random effects, K_C prior) on all 12 subjects, with nutpie.

    About 5 minutes per cohort on 2 cores. H3 (the receptor model) is left out to keep CI short.
    """
    from inference.hypotheses import load_hypotheses

    dataset = load_dataset(ROOT / "data" / f"cohort_{cohort}" / "observations.csv")
    shipped = load_hypotheses(ROOT / "data" / "hypotheses_gc.toml", dataset)
    hypotheses = [h for h in shipped if h.name in ("H0", "H1", "H2")]
    c = compare(dataset=dataset, hypotheses=hypotheses, draws=500, tune=500, chains=2, seed=1,
                thresholds=LENIENT, exact_lso="never")
    truth, best = COHORTS[cohort], c.ranking[0]
    assert best == c.table["elpd_loo"].idxmax()
    # The hypotheses are nested in what they can fit (H1 and H2 contain H0's r = 0; H1's shared r
    # is H2 without a group difference, and random effects absorb much of one), so LOO may put a
    # richer one level with the truth: the truth may trail by noise, never by 2 SE. On the stress
    # cohort H2 led H1 by -1.0 to +3.1 elpd (SE about 2) over seeds 1 and 2 at rtol 1e-6 and 1e-4.
    assert best == truth or c.table.at[truth, "elpd_diff"] < 2 * c.table.at[truth, "dse"]
    if cohort == "stress_resistance":
        # The marginal likelihood charges for that freedom: in the same runs it favoured H2 over H1
        # by a log Bayes factor of 5.9-6.3 (SE 1.4-2.7), and over H0 by 10-16.
        log_ml = c.table["log_ml"]
        assert log_ml[truth] - log_ml.drop(index=truth).max() > 2
