"""Fit reports: one self-contained HTML file per fit, also displayable inline in a notebook.

``render_report(idata, "report.html")`` writes the file (the ``cytokine-balance report`` and ``fit``
commands call it); ``build_report(idata)`` returns the :class:`Report` without writing, whose
sections (``report["diagnostics"]``, ...) display alone in a notebook. The figures are in
:mod:`inference.report.figures` for use on their own.
The comparison page of :func:`inference.compare.compare` is written by ``write_comparison``
(:mod:`inference.report.comparison`).
"""

from .comparison import render_comparison, write_comparison
from .document import Report, Section, build_report, render_report

__all__ = ["Report", "Section", "build_report", "render_comparison", "render_report", "write_comparison"]
