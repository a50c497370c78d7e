"""Notebooks are tests too: each runs top to bottom with reduced draws."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=p.name, marks=pytest.mark.xdist_group(p.name)) for p in NOTEBOOKS]
)
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    monkeypatch.setenv("CYTOKINE_BALANCE_DRAWS", "200")
    monkeypatch.setenv("CYTOKINE_BALANCE_TUNE", "200")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors
    # The figures and, in a notebook that builds a report, the inline report really rendered.
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(images) >= 2
    if any("build_report(" in cell.source for cell in notebook.cells):
        assert any("data:image/png;base64," in h for h in html)
    assert os.environ.get("CYTOKINE_BALANCE_DRAWS") == "200"
