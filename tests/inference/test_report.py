"""The HTML report: every section, images that decode, self-contained, deterministic, renders in a browser."""

import base64
import io
import json
import re
import shutil
import subprocess

import matplotlib.pyplot as plt
import pytest
from bs4 import BeautifulSoup
from PIL import Image
from report_fits import COHORT_SUBJECTS, SINGLE_FREE, cohort_fit, single_fit

from inference import cli
from inference.fit import save_result
from inference.record import read_record
from inference.report import Report, build_report, render_report
from inference.report.figures import plot_subject_predictive

SECTIONS = ("overview", "diagnostics", "parameters", "predictive", "sampling", "prior-posterior",
            "calibration")
COHORT_SECTIONS = ("subjects", "resistance")
DRAWS = 150  # predictive draws: enough for bands, quick to plot
DATE = "2026-01-01 00:00 UTC"


@pytest.fixture(scope="module")
def single_result():
    return single_fit()


@pytest.fixture(scope="module")
def single_report(single_result, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "single.html"
    return render_report(single_result, path, draws=DRAWS, created=DATE)


@pytest.fixture(scope="module")
def cohort_report(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "cohort.html"
    return render_report(cohort_fit(), path, draws=DRAWS, created=DATE)


def _soup(report: Report) -> BeautifulSoup:
    return BeautifulSoup(report.path.read_text(encoding="utf-8"), "html.parser")


def _decode(img) -> Image.Image:
    src = img["src"]
    assert src.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
    image.load()  # decodes every pixel; raises on a truncated or corrupt PNG
    return image


def _check_document(report: Report, sections):
    soup = _soup(report)
    assert soup.find("html") and soup.find("head") and soup.find("title").text.startswith("Posterior report")
    for section_id in sections:
        assert soup.find("section", id=section_id) is not None, section_id
    # Self-contained: no scripts, stylesheets or images from anywhere else; links stay in the page.
    assert not soup.find_all("script") and not soup.find_all("link", rel="stylesheet")
    for tag in soup.find_all(src=True):
        assert tag["src"].startswith("data:")
    for tag in soup.find_all("a", href=True):
        assert tag["href"].startswith("#") and soup.find(id=tag["href"][1:]) is not None
    images = soup.find_all("img")
    assert images
    for img in images:
        image = _decode(img)
        assert image.format == "PNG" and image.width >= 500 and image.height >= 150
        assert (int(img["width"]), int(img["height"])) == image.size
        assert img["alt"]
    return soup


def test_single_subject_report_has_every_section(single_report, single_result):
    soup = _check_document(single_report, SECTIONS)
    assert [s.id for s in single_report.sections] == list(SECTIONS)
    text = soup.get_text(" ", strip=True)
    overview = soup.find("section", id="overview")
    # Header: model and equations, data summary, seed, solver, versions, date.
    assert "acute_inflammation" in overview.h1.text
    assert "dT/dt = d_T (T_b - T) + k_T M h" in overview.find("pre", class_="equations").text
    assert "42, of which 5 censored" in text
    assert "TNF" in text and "pg/mL" in text and "nmol/L" in text
    seed = single_result.attrs["seed"]
    assert f"seed {seed} (report draws use seed {seed})" in text
    assert "auto, rtol 0.0001, atol 1e-06" in text
    versions = json.loads(single_result.attrs["versions"])
    assert f"pymc {versions['pymc']}" in text and f"arviz {versions['arviz']}" in text
    assert single_result.attrs["created"] in text
    # Diagnostics: the verdict with one row per check and its number.
    rows = soup.find("section", id="diagnostics").find("table").find_all("tr")[1:]
    assert len(rows) == 8
    banner = soup.find("div", class_="verdict-banner")
    assert banner["class"] == ["verdict-banner", f"status-{single_report.verdict.status}"]
    # Posterior summary: every free parameter and sigma with units and an R-hat.
    table = soup.find("section", id="parameters").find("table")
    labels = [row.find("code").text for row in table.find_all("tr")[1:]]
    assert labels == [*SINGLE_FREE, "sigma TNF", "sigma IL6", "sigma cortisol"]
    assert "1/h" in table.text and "R-hat" in table.text and "5%" in table.text
    # One predictive figure (three analytes) for the single subject; rank, pair, prior, LOO-PIT plots.
    assert len(soup.find("section", id="predictive").find_all("img")) == 1
    assert soup.find("section", id="sampling").find_all("img")
    assert "LOO-PIT" in soup.find("section", id="calibration").text
    assert soup.find("footer").text.strip().endswith(f"on {DATE}.")


def test_cohort_report_compares_gc_resistance_between_groups(cohort_report):
    soup = _check_document(cohort_report, SECTIONS + COHORT_SECTIONS)
    subjects = soup.find("section", id="subjects")
    for s in COHORT_SUBJECTS:
        assert s in subjects.text
    resistance = soup.find("section", id="resistance")
    sentence = resistance.find("p", class_="probability").text
    match = re.search(r"chronic_stress more resistant than control: ([0-9.]+)", sentence)
    assert match and 0.0 <= float(match.group(1)) <= 1.0
    assert resistance.find("img") is not None and "typical" in resistance.text
    # Per-subject predictive plots, grouped by group.
    assert len(soup.find("section", id="predictive").find_all("img")) == len(COHORT_SUBJECTS)
    groups = soup.find("section", id="predictive").find_all("details")
    assert [d.summary.text.split(" (")[0] for d in groups] == ["Group control", "Group chronic_stress"]
    # A short, unconverged run is called out, with advice.
    assert cohort_report.verdict.status == "fail"
    assert "What to try" in soup.find("section", id="diagnostics").text


def test_report_is_deterministic_apart_from_the_date(single_result, single_report):
    again = build_report(single_result, draws=DRAWS, created="2030-12-31 23:59 UTC")
    first = single_report.html
    assert again.html != first
    assert again.html.replace("2030-12-31 23:59 UTC", DATE) == first


def test_render_report_refuses_to_overwrite(single_result, single_report):
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        render_report(single_result, single_report.path, draws=DRAWS)


def test_cli_report_command_writes_the_file(single_result, tmp_path):
    result = save_result(single_result, tmp_path / "fit.nc")
    out = tmp_path / "fit.html"
    assert cli.main(["report", str(result), "--out", str(out)]) == 0
    assert out.exists() and "Posterior report" in out.read_text(encoding="utf-8")
    assert cli.main(["report", str(result), "--out", str(out)]) == cli.EXIT_BAD_INPUT


def test_report_and_sections_display_inline_in_a_notebook(single_report):
    page = single_report._repr_html_()
    assert page.startswith("<style>") and '<div class="cb-report">' in page
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    # The inline style must not restyle the notebook around it: every rule is scoped.
    css = page.split("<style>", 1)[1].split("</style>", 1)[0]
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    for selector_group in re.findall(r"([^{}]+)\{", css):
        for selector in selector_group.split(","):
            selector = selector.strip()
            assert selector.startswith((".cb-report", "@media")), selector
    one = single_report["diagnostics"]._repr_html_()
    assert '<section id="diagnostics">' in one and '<section id="predictive">' not in one
    with pytest.raises(KeyError, match="no section 'nope'"):
        single_report["nope"]


def test_predictive_figure_is_readable(single_report, single_result):
    fig = plot_subject_predictive(single_report.predictive, read_record(single_result).dataset, "S01",
                                  {"TNF": "pg/mL", "IL6": "pg/mL", "cortisol": "nmol/L"})
    try:
        axes = fig.axes
        assert [ax.get_title() for ax in axes] == ["TNF", "IL6", "cortisol"]
        assert [ax.get_yscale() for ax in axes] == ["log", "log", "linear"]
        assert [ax.get_ylabel() for ax in axes] == ["TNF (pg/mL)", "IL6 (pg/mL)", "cortisol (nmol/L)"]
        assert all(ax.get_xlabel() == "time since the challenge (h)" for ax in axes)
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "below LLOQ (drawn at LLOQ)" in legend and "90% predictive interval" in legend
    finally:
        plt.close(fig)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Injected into a copy of the report: after load, record how many images decoded.
PROBE = """<script>window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", imgs.length);
  document.body.setAttribute("data-images-ok", ok);
});</script>"""


@pytest.mark.skipif(CHROMIUM is None,
                    reason="chromium is not installed (CI installs the Debian package 'chromium')")
def test_report_renders_in_headless_chromium_without_console_errors(cohort_report, tmp_path):
    page = tmp_path / "probe.html"
    page.write_text(cohort_report.html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    body = BeautifulSoup(done.stdout, "html.parser").find("body")
    assert int(body["data-images"]) == len(_soup(cohort_report).find_all("img")) > 0
    assert body["data-images-ok"] == body["data-images"]
    assert body.find("section", id="resistance") is not None
