"""Simulation-based calibration and coverage: the rank test, the likelihood, a reduced study."""

import cloudpickle
import decay
import numpy as np
import pytest
from bs4 import BeautifulSoup

from inference.build import ModelOptions
from inference.cli import main
from inference.data import load_dataset
from inference.report.validation import render_coverage, render_sbc
from inference.sampler import SamplerSettings
from inference.validate import (
    LOG_LIKELIHOOD,
    Design,
    coverage_table,
    design_from_dataset,
    log_likelihood,
    rank,
    rank_uniformity,
    run_study,
    sbc_table,
    simulate_replicates,
)

cloudpickle.register_pickle_by_value(decay)

L = 99  # ranks in 0..99


def _conjugate_ranks(rng, n_replicates, shift=0.0, scale=1.0):
    """SBC of a normal mean with a known posterior: theta ~ N(0, 1), y_1..5 ~ N(theta, 1).

    The exact posterior is N(sum(y) / 6, 1 / 6); ``shift`` (in posterior sd) and ``scale``
    miscalibrate it on purpose. Draws are exact, so this checks the rank and uniformity code
    that the sampler-based SBC uses, in milliseconds.
    """
    ranks = []
    for _ in range(n_replicates):
        theta = rng.standard_normal()
        y = theta + rng.standard_normal(5)
        sd = np.sqrt(1 / 6)
        draws = y.sum() / 6 + shift * sd + scale * sd * rng.standard_normal(400)
        ranks.append(rank(draws, theta, L, rng))
    return np.array(ranks)


def test_sbc_passes_the_exact_posterior_and_rejects_miscalibrated_ones(rng):
    assert rank_uniformity(_conjugate_ranks(rng, 300), L).passed
    shifted = rank_uniformity(_conjugate_ranks(rng, 300, shift=0.5), L)
    assert not shifted.passed
    # Posterior too far right of the truth: the truth ranks low, the ECDF bulges above uniform.
    assert np.max(shifted.ecdf - shifted.points) > 0.1
    assert not rank_uniformity(_conjugate_ranks(rng, 300, scale=0.6), L).passed  # overconfident
    assert not rank_uniformity(_conjugate_ranks(rng, 300, scale=1.6), L).passed  # underconfident


def test_band_false_alarm_rate_is_about_five_percent(rng):
    # The band is simultaneous: uniform ranks leave it in about 5% of studies, not in most.
    alarms = np.mean([not rank_uniformity(rng.integers(0, L + 1, 100), L).passed for _ in range(200)])
    assert 0.01 <= alarms <= 0.11


def test_rank_counts_draws_below_and_breaks_ties(rng):
    draws = np.arange(1000.0)
    assert rank(draws, -1.0, L, rng) == 0
    assert rank(draws, 2000.0, L, rng) == L
    assert rank(draws, 500.0, L, rng) == 49  # 49 of the 99 kept draws lie below 500 (the 50th is 504.5)
    tied = [rank(np.zeros(200), 0.0, L, rng) for _ in range(300)]
    assert min(tied) == 0 and max(tied) == L  # ties spread over every rank, not piled at one end
    with pytest.raises(ValueError, match="at least 99"):
        rank(np.zeros(50), 0.0, L, rng)
    with pytest.raises(ValueError, match="integers in"):
        rank_uniformity(np.array([0, 100]), L)


def test_design_of_the_shipped_single_subject():
    design = design_from_dataset("acute_inflammation", load_dataset("data/single_subject/observations.csv"))
    assert set(design.times) == {"TNF", "IL6", "cortisol"}
    assert design.times["TNF"][0] == 0 and design.times["TNF"][-1] == 24 and len(design.times["TNF"]) == 14
    assert design.lloq == {"TNF": 2.0, "IL6": 2.0}
    assert design.inputs == {"dose": 2.0}
    with pytest.raises(ValueError, match="20 subjects; choose"):
        design_from_dataset("acute_inflammation", load_dataset("data/cohort/observations.csv"))


DESIGN = Design({"tracer": (0.5, 1, 2, 3, 4, 6, 8, 12)}, {"tracer": 5.0}, {}, "decay test design")


def test_replicates_draw_from_the_prior_and_censor_at_the_lloq():
    replicates = simulate_replicates(decay.DECAY, DESIGN, ModelOptions(), 200, seed=1)
    k = np.array([r.truth["k"] for r in replicates])
    # Prior LogNormal(median 0.5, sigma 0.4): the draws' log-median and log-sd match it.
    assert abs(np.median(np.log(k)) - np.log(0.5)) < 0.1 and abs(np.log(k).std() - 0.4) < 0.06
    observations = [r.dataset.observations for r in replicates]
    assert all((o["value"] >= 5.0).all() for o in observations)
    assert any((o["censored"] == "left").any() for o in observations)
    again = simulate_replicates(decay.DECAY, DESIGN, ModelOptions(), 3, seed=1)
    assert [r.truth for r in again] == [r.truth for r in replicates[:3]]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A reduced SBC of the decay model: 6 replicates, fitted by nutpie on one Dask worker."""
    out = tmp_path_factory.mktemp("sbc")
    return run_study(decay.DECAY, DESIGN, 6, out, sampler=SamplerSettings(draws=200, tune=300, chains=2),
                     seed=3, workers=1, progress=False)


def test_study_ranks_every_quantity_and_the_log_likelihood(study):
    assert study.quantities == ["k", "X0", "sigma[tracer]"]
    assert list(study.ranks.columns) == ["replicate", "k", "X0", "sigma[tracer]", LOG_LIKELIHOOD]
    assert len(study.ranks) == 6 and not study.failed
    values = study.ranks.drop(columns="replicate").to_numpy()
    assert values.min() >= 0 and values.max() <= L
    table, tests = sbc_table(study)
    assert list(table["quantity"]) == [*study.quantities, LOG_LIKELIHOOD]
    assert (table["replicates"] == 6).all()
    coverage = coverage_table(study)
    assert ((coverage["coverage_90"] >= 0) & (coverage["coverage_90"] <= 1)).all()
    assert (coverage["width_90"] > coverage["width_50"]).all()


def test_log_likelihood_matches_the_fits_log_likelihood_group(study, tmp_path):
    # The truth's log-likelihood is ranked against the fit's stored ones: they must be the same
    # function. Check at posterior draws of a replicate with censored samples.
    from inference.fit import load_result
    from inference.record import read_record

    for path in study.fits["path"]:
        idata = load_result(path)
        dataset = read_record(idata).dataset
        if (dataset.observations["censored"] == "left").any():
            break
    else:
        pytest.fail("no replicate with a censored sample")
    stored = idata.log_likelihood["log_y"].sum("obs")
    for chain, draw in ((0, 0), (1, 57)):
        posterior = idata.posterior.isel(chain=chain, draw=draw)
        values = {"k": float(posterior["k"]), "X0": float(posterior["X0"]),
                  "sigma[tracer]": float(posterior["sigma"].sel(analyte="tracer"))}
        ours = log_likelihood(decay.DECAY, dataset, ModelOptions(), values)
        assert ours == pytest.approx(float(stored[chain, draw]), rel=1e-6, abs=1e-6)


def test_pages_show_the_tables_and_plots(study):
    table, tests = sbc_table(study)
    for html, heading in ((render_sbc(study, table, tests), "Simulation-based calibration"),
                          (render_coverage(study, coverage_table(study)), "Coverage of posterior intervals")):
        page = BeautifulSoup(html, "html.parser")
        assert page.h1.text == heading
        rows = page.select("#table + table tbody tr") or page.find("table").find_all("tr")
        assert any("sigma[tracer]" in r.text for r in rows)
        images = page.find_all("img")
        assert images and all(img["src"].startswith("data:image/png;base64,") for img in images)
        assert "6 fitted" in page.text and "decay test design" in page.text


def test_validate_command_refuses_bad_input(tmp_path, capsys):
    common = ["--out", str(tmp_path), "--draws", "50"]
    assert main(["validate", "sbc", "--design", "data/cohort/observations.csv", "--n", "3", *common]) == 2
    assert "choose the design's subject" in capsys.readouterr().err
    assert main(["validate", "coverage", "--design", "data/single_subject/observations.csv", "--n", "1",
                 *common]) == 2
    assert "--n must be at least 2" in capsys.readouterr().err
    assert main(["fit-many", "--out", str(tmp_path)]) == 2
    assert "either a data CSV" in capsys.readouterr().err
