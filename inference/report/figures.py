"""The report's figures, drawn with matplotlib and embedded as base64 PNG.

Each ``plot_*`` function returns a :class:`matplotlib.figure.Figure` (usable alone in a notebook);
:func:`to_png` encodes one deterministically (no timestamp in the PNG metadata) and closes it.
Axes carry units, panels carry titles, cytokines are on a log scale.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib import MatplotlibDeprecationWarning
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..data import Dataset
from ..loo import quiet_psis
from ..predictive import Predictive
from ..priors import LINKS
from .content import GroupContrast, Quantity

DPI = 100
ENVELOPE = 0.95  # probability of the LOO-PIT envelope
WIDTH = 11.0  # inches: 1100 px, about the report's column width
BAND_COLOUR = "#2b6cb0"
DATA_COLOUR = "#1d2430"
CENSORED_COLOUR = "#c0392b"
PRIOR_COLOUR = "#9aa5b1"
GROUP_COLOURS = ("#2b6cb0", "#c0392b", "#2f855a", "#b7791f", "#6b46c1", "#4a5568")
STYLE = {
    "font.size": 10.5, "axes.titlesize": 11.5, "axes.labelsize": 10.5, "legend.fontsize": 9.5,
    "xtick.labelsize": 9.5, "ytick.labelsize": 9.5, "axes.spines.top": False,
    "axes.spines.right": False, "figure.dpi": DPI, "savefig.dpi": DPI, "svg.hashsalt": "cytokine-balance",
}


def styled(function):
    """Draw inside the report's matplotlib style (without touching the caller's global rcParams).

    ArviZ 0.23's matplotlib backend calls ``normalize_kwargs`` with a dict, which matplotlib 3.11
    deprecates; that one warning (ArviZ's to fix, harmless here) is silenced while drawing.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping",
                                    category=MatplotlibDeprecationWarning)
            return function(*args, **kwargs)

    return wrapper


def to_png(fig: Figure) -> str:
    """Encode a figure as a base64 PNG string (deterministic bytes) and close it."""
    buffer = io.BytesIO()
    with plt.rc_context(STYLE):
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight",
                    facecolor="white")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kwargs):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kwargs)
    return fig, axes


def log_axis(ax, which: str = "x") -> None:
    """Log scale with plain-number labels at 1, 2, 5 x 10^k (no crowded minor labels)."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    low, high = (ax.get_xlim() if which == "x" else ax.get_ylim())
    decades = math.log10(high / low) if low > 0 and high > low else 1.0
    subs = (1.0, 2.0, 5.0) if decades < 1.3 else (1.0, 3.0) if decades < 2.3 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _wants_log(q: Quantity, values: np.ndarray) -> bool:
    values = values[np.isfinite(values) & (values > 0)]
    return q.link == "log" and values.size > 0 and values.max() / values.min() > 20


def use_log_scale(dataset: Dataset, analyte: str) -> bool:
    """Log scale when the analyte's measured values span more than a factor of 10."""
    values = dataset.observations.loc[dataset.observations["analyte"] == analyte, "value"].to_numpy(float)
    values = values[values > 0]
    return bool(values.size and values.max() / values.min() > 10)


# --------------------------------------------------------------------------------------------
# Posterior (or prior) predictive time courses
# --------------------------------------------------------------------------------------------
@styled
def plot_subject_predictive(predictive: Predictive, dataset: Dataset, subject: str,
                            units: dict[str, str], log_scale: dict[str, bool] | None = None) -> Figure:
    """Plot one subject's data and predictive bands, one panel per analyte.

    Bands are the 50 % and 90 % predictive intervals of a new measurement (noise and assay limits
    applied); the line is the median model concentration; censored samples are drawn at their limit.
    """
    curves = predictive.curves
    analytes = [str(a) for a in curves["analyte"].values]
    log_scale = log_scale or {a: use_log_scale(dataset, a) for a in analytes}
    q = predictive.quantiles((0.05, 0.25, 0.75, 0.95), "measurement").sel(subject=subject)
    median = predictive.quantiles((0.5,), "concentration").sel(subject=subject).isel(quantile=0)
    time = curves["time"].sel(subject=subject).values
    obs = dataset.observations[dataset.observations["subject"] == subject]
    group = str(dataset.subjects.loc[subject, "group"])
    label = "posterior" if predictive.group == "posterior" else "prior"
    fig, axes = _figure(WIDTH, 3.5, 1, len(analytes))
    for ax, a in zip(axes[0], analytes, strict=True):
        qa = q.sel(analyte=a).values
        ax.fill_between(time, qa[0], qa[3], color=BAND_COLOUR, alpha=0.18, lw=0)
        ax.fill_between(time, qa[1], qa[2], color=BAND_COLOUR, alpha=0.35, lw=0)
        ax.plot(time, median.sel(analyte=a).values, color=BAND_COLOUR, lw=1.8)
        rows = obs[obs["analyte"] == a]
        quantified = rows[rows["censored"] == "none"]
        ax.plot(quantified["time"], quantified["value"], "o", color=DATA_COLOUR, ms=5, zorder=5)
        for side, marker in (("left", "v"), ("right", "^")):
            cens = rows[rows["censored"] == side]
            ax.plot(cens["time"], cens["value"], marker, mfc="white", mec=CENSORED_COLOUR, mew=1.6,
                    ms=7, zorder=6, ls="none")
        lloq = float(curves["lloq"].sel(subject=subject, analyte=a))
        if math.isfinite(lloq):
            ax.axhline(lloq, color=CENSORED_COLOUR, lw=1, ls="--", alpha=0.8)
        uloq = float(curves["uloq"].sel(subject=subject, analyte=a))
        if math.isfinite(uloq):
            ax.axhline(uloq, color=CENSORED_COLOUR, lw=1, ls=":", alpha=0.8)
        if log_scale.get(a, False):
            log_axis(ax, "y")
        ax.set_xlabel("time since the challenge (h)")
        ax.set_ylabel(f"{a} ({units.get(a, '')})")
        ax.set_title(f"{a}" + ("" if len(rows) else " (not measured)"))
        span = time[-1] - time[0]
        ax.set_xlim(time[0] - 0.025 * span, time[-1] + 0.025 * span)  # end markers stay whole
        ax.grid(True, which="major", alpha=0.25)
    handles = [
        Line2D([], [], marker="o", color=DATA_COLOUR, ls="none", label="measured"),
        Line2D([], [], marker="v", mfc="white", mec=CENSORED_COLOUR, mew=1.6, ls="none",
               label="below LLOQ (drawn at LLOQ)"),
        Line2D([], [], color=CENSORED_COLOUR, ls="--", label="LLOQ"),
        Line2D([], [], color=BAND_COLOUR, lw=1.8, label=f"{label} median concentration"),
        Patch(color=BAND_COLOUR, alpha=0.45, label="50% predictive interval"),
        Patch(color=BAND_COLOUR, alpha=0.18, label="90% predictive interval"),
    ]
    if (obs["censored"] == "right").any():
        handles.insert(2, Line2D([], [], marker="^", mfc="white", mec=CENSORED_COLOUR, mew=1.6,
                                 ls="none", label="above ULOQ (drawn at ULOQ)"))
    fig.legend(handles=handles, loc="lower center", ncol=math.ceil(len(handles) / 2), frameon=False)
    suffix = f", group {group}" if len(dataset.groups) > 1 else ""
    fig.suptitle(f"Subject {subject}{suffix}: {label} predictive", fontsize=12.5, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


# --------------------------------------------------------------------------------------------
# Sampling: rank plots, pair plot, Pareto k
# --------------------------------------------------------------------------------------------
@styled
def plot_rank(idata, quantities: list[Quantity]) -> Figure:
    """Per-chain posterior density and rank histograms (ArviZ ``plot_trace(kind="rank_bars")``).

    Well-mixed chains give overlapping densities and flat, interleaved rank bars.
    """
    var_names = list(dict.fromkeys(q.var for q in quantities))
    coords = {}
    for q in quantities:
        for dim, value in q.sel.items():
            coords.setdefault(dim, []).append(value)
    n_rows = sum(
        int(np.prod([idata.posterior[v].sizes[d] if d not in coords else len(set(coords[d]))
                     for d in idata.posterior[v].dims if d not in ("chain", "draw")]))
        for v in var_names
    )
    axes = az.plot_trace(idata, var_names=var_names, coords={k: list(dict.fromkeys(v))
                                                                for k, v in coords.items()},
                         kind="rank_bars", compact=False, figsize=(WIDTH, 1.9 * n_rows),
                         legend=False, show=False)
    fig = axes.ravel()[0].figure
    by_title = {q.var: q for q in quantities}
    for row in np.atleast_2d(axes):
        title = row[0].get_title()
        q = by_title.get(title.split("\n")[0])
        unit = f" ({q.unit})" if q is not None and q.unit and q.unit != "1" else ""
        row[0].set_title(title.replace("\n", " ") + unit + ": density by chain")
        row[1].set_title(title.replace("\n", " ") + ": rank histogram by chain")
        row[1].set_xlabel("rank of draw (all chains pooled)")
        row[1].set_ylabel("chain")
    fig.tight_layout()
    return fig


@styled
def plot_pair(posterior: xr.Dataset, quantities: list[Quantity], correlation: np.ndarray,
              divergent: np.ndarray | None = None) -> Figure:
    """Pair plot of a few posterior quantities.

    Scatter plots below the diagonal (divergent draws as red crosses), histograms on it and the
    correlation on the link scale above it.
    """
    n = len(quantities)
    size = min(WIDTH, 2.7 * n + 0.6)
    fig, axes = _figure(size, size, n, n)
    values = [q.values(posterior) for q in quantities]
    divergent = divergent.ravel() if divergent is not None else np.zeros(values[0].size, bool)
    log = [_wants_log(q, v) for q, v in zip(quantities, values, strict=True)]
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            if i == j:
                v = values[i]
                bins = (np.geomspace(v.min(), v.max(), 40) if log[i] else 40)
                ax.hist(v, bins=bins, color=BAND_COLOUR, alpha=0.7)
                ax.set_yticks([])
            elif i > j:
                ax.plot(values[j][~divergent], values[i][~divergent], ".", ms=2.5, alpha=0.35,
                        color=BAND_COLOUR)
                if divergent.any():
                    ax.plot(values[j][divergent], values[i][divergent], "x", ms=5, color=CENSORED_COLOUR,
                            label="divergent")
            else:
                ax.axis("off")
                ax.text(0.5, 0.5, f"corr\n{correlation[i, j]:+.2f}", ha="center", va="center",
                        fontsize=13, transform=ax.transAxes,
                        color=CENSORED_COLOUR if abs(correlation[i, j]) > 0.7 else DATA_COLOUR)
                continue
            if log[j]:
                log_axis(ax, "x")
            if i != j and log[i]:
                log_axis(ax, "y")
            if i == n - 1:
                ax.set_xlabel(_axis_label(quantities[j]))
            if j == 0 and i != 0:
                ax.set_ylabel(_axis_label(quantities[i]))
    for j in range(n):  # the diagonal shares its column's x range
        axes[j, j].set_xlim(axes[n - 1, j].get_xlim() if j < n - 1 else axes[j, j].get_xlim())
    fig.suptitle("Most correlated posterior quantities (correlation on the log/logit scale)",
                 fontsize=12, x=0.01, ha="left")
    fig.tight_layout()
    return fig


def _axis_label(q: Quantity) -> str:
    return f"{q.short}\n({q.unit})" if q.unit and q.unit != "1" else q.short


@styled
def plot_pareto_k(k: np.ndarray, threshold: float, analytes: np.ndarray, labels: np.ndarray) -> Figure:
    """PSIS-LOO Pareto k per observation, coloured by analyte, with the reliability threshold.

    ``labels`` name each observation (e.g. ``"S01 TNF 1.5 h"``); those above the threshold are annotated.
    """
    fig, axes = _figure(WIDTH, 3.0)
    ax = axes[0, 0]
    for c, a in enumerate(dict.fromkeys(analytes)):
        idx = np.flatnonzero(analytes == a)
        ax.plot(idx, k[idx], "o", ms=4, color=GROUP_COLOURS[c % len(GROUP_COLOURS)], label=a)
    ax.axhline(threshold, color=CENSORED_COLOUR, ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax.axhline(1.0, color=CENSORED_COLOUR, ls=":", lw=1, label="k = 1")
    for i in np.flatnonzero(k > threshold)[:12]:
        ax.annotate(str(labels[i]), (i, k[i]), textcoords="offset points", xytext=(4, 3), fontsize=8.5)
    ax.set_xlabel("observation (row of the dataset, sorted by subject, time, analyte)")
    ax.set_ylabel("Pareto k")
    ax.set_title("PSIS-LOO Pareto k per observation (above the threshold: leave-one-out unreliable)")
    ax.set_ylim(min(-0.1, float(np.nanmin(k)) - 0.05), max(1.1, float(np.nanmax(k)) + 0.15))
    ax.legend(loc="upper left", ncol=1, frameon=False, bbox_to_anchor=(1.0, 1.0))
    ax.grid(True, alpha=0.25)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Prior against posterior
# --------------------------------------------------------------------------------------------
@styled
def plot_prior_posterior(posterior: xr.Dataset, prior: xr.Dataset, quantities: list[Quantity]) -> Figure:
    """Prior and posterior of each quantity on one axis, with posterior sd / prior sd (link scale)."""
    n = len(quantities)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig, axes = _figure(WIDTH, 2.6 * nrows, nrows, ncols)
    for ax, q in zip(axes.ravel(), quantities, strict=False):
        post = q.values(posterior)
        pri = q.values(prior) if q.var in prior else np.array([])
        pri = pri[np.isfinite(pri)]
        link_post, link_prior = q.on_link_scale(post), q.on_link_scale(pri)
        # Densities by ArviZ's KDE on the link scale: of log(value) for positive quantities (drawn on
        # a log axis, where that is the density the eye reads), of logit(value) for fractions mapped
        # back to the value's own density; the prior is cut to its central 99 % so that its tails do
        # not squeeze the posterior.
        for x, colour, alpha, is_prior in ((link_prior, PRIOR_COLOUR, 0.55, True),
                                           (link_post, BAND_COLOUR, 0.6, False)):
            x = x[np.isfinite(x)]
            if x.size < 2 or np.ptp(x) == 0:
                continue
            if is_prior:
                lo, hi = np.quantile(x, [0.005, 0.995])
                x = x[(x >= lo) & (x <= hi)]
            grid, density = az.kde(x, bound_correction=False, extend=True)
            value = LINKS[q.link].inverse(grid)
            if q.link == "logit":
                density = density / (value * (1.0 - value))  # d logit(r) / dr = 1 / (r (1 - r))
            ax.fill_between(value, density, color=colour, alpha=alpha, lw=0)
        if q.link == "log":
            log_axis(ax, "x")
        ax.set_yticks([])
        ax.set_ylim(bottom=0)
        ax.set_xlabel(q.unit if q.unit and q.unit != "1" else "dimensionless")
        ratio = np.nanstd(link_post) / np.nanstd(link_prior) if pri.size else math.nan
        ax.set_title(f"{q.label}\npost/prior sd {ratio:.2f}" if math.isfinite(ratio) else q.label,
                     fontsize=10.5)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.legend(handles=[Patch(color=PRIOR_COLOUR, alpha=0.55, label="prior"),
                        Patch(color=BAND_COLOUR, alpha=0.6, label="posterior")],
               loc="upper right", ncol=2, frameon=False)
    fig.suptitle("Prior against posterior (sd ratio on the log/logit scale; near 1: the data taught little)",
                 fontsize=12, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------
@styled
def plot_loo_pit(idata, analytes: np.ndarray, keep: np.ndarray, order: tuple[str, ...] = ()) -> Figure:
    """LOO-PIT ECDF difference with its envelope (ArviZ ``plot_loo_pit``), overall and per analyte.

    Only quantified samples enter (a censored sample's PIT is an interval, not a number). Under a
    calibrated model the curve stays inside the envelope; a U shape means the predictive is too
    narrow, an inverted U too wide, a tilt a bias.
    """
    # An analyte with fewer than 3 quantified samples gets no panel of its own (no shape to read).
    present = {a for a in set(analytes[keep]) if np.sum(keep & (analytes == a)) >= 3}
    names = ["all analytes", *[a for a in (*order, *dict.fromkeys(analytes[keep])) if a in present]]
    names = list(dict.fromkeys(names))
    fig, axes = _figure(WIDTH, 3.0, 1, len(names))
    with quiet_psis():
        for ax, name in zip(axes[0], names, strict=True):
            select = keep if name == "all analytes" else keep & (analytes == name)
            subset = idata.isel(obs=np.flatnonzero(select))
            az.plot_loo_pit(subset, y="log_y", ecdf=True, hdi_prob=ENVELOPE, ax=ax, legend=False, show=False)
            ax.set_title(f"{name} (n = {int(select.sum())})")
            ax.set_xlabel("LOO-PIT value")
            ax.set_ylabel("ECDF - uniform")
        fig.suptitle(f"LOO-PIT calibration (inside the shaded {ENVELOPE:.0%} envelope: calibrated)",
                     fontsize=12, x=0.01, ha="left")
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# GC resistance by subject and group
# --------------------------------------------------------------------------------------------
@styled
def plot_resistance(posterior: xr.Dataset, dataset: Dataset, contrast: GroupContrast, name: str = "r",
                    interval: float = 0.9) -> Figure:
    """Forest plot of r per subject (grouped) and per-group typical r, with the group contrast."""
    groups = list(dataset.groups)
    colours = {g: GROUP_COLOURS[i % len(GROUP_COLOURS)] for i, g in enumerate(groups)}
    draws = posterior[name].stack(sample=("chain", "draw"))
    lo_q, hi_q = (1 - interval) / 2, (1 + interval) / 2
    rows = []  # (label, draws, colour, is_group)
    for g in groups:
        members = [s for s in dataset.subject_ids if dataset.subjects.loc[s, "group"] == g]
        members.sort(key=lambda s: float(np.median(draws.sel(subject=s).values)))
        for s in members:
            rows.append((s, draws.sel(subject=s).values, colours[g], False))
        if g in contrast.typical:
            rows.append((f"{g}: typical", contrast.typical[g], colours[g], True))
    height = max(3.0, 0.26 * len(rows) + 1.2)
    fig, axes = _figure(WIDTH, height, 1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    ax, ax2 = axes[0]
    for y, (_, x, colour, is_group) in enumerate(rows[::-1]):
        lo, q1, med, q3, hi = np.quantile(x, [lo_q, 0.25, 0.5, 0.75, hi_q])
        ax.plot([lo, hi], [y, y], color=colour, lw=1.2)
        ax.plot([q1, q3], [y, y], color=colour, lw=4 if not is_group else 6, solid_capstyle="butt")
        ax.plot(med, y, "D" if is_group else "o", color="white" if is_group else colour, mec=colour,
                ms=7 if is_group else 5, mew=1.5, zorder=4)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[0] for r in rows[::-1]])
    for tick, row in zip(ax.get_yticklabels(), rows[::-1], strict=True):
        tick.set_color(row[2])
        if row[3]:
            tick.set_fontweight("bold")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{name}: GC resistance (fraction of cortisol suppression lost)")
    ax.set_title(f"{name} by subject: median, 50% and {interval:.0%} intervals")
    ax.grid(True, axis="x", alpha=0.3)
    source = contrast.typical or contrast.subject_means
    for g in groups:
        grid, density = az.kde(np.asarray(source[g], dtype=float), bound_correction=True)
        ax2.fill_between(grid, density, color=colours[g], alpha=0.35, lw=0)
        ax2.plot(grid, density, color=colours[g], lw=1.5, label=g)
    ax2.set_xlim(0, 1)
    ax2.set_ylim(bottom=0)
    ax2.set_yticks([])
    ax2.set_xlabel(f"typical {name} of the group" if contrast.typical
                   else f"mean {name} of the group's subjects")
    ax2.set_title("\n".join(f"P({k}) = {v:.2f}" for k, v in contrast.probabilities.items()), fontsize=10.5)
    ax2.legend(loc="upper right", frameon=False)
    fig.tight_layout()
    return fig
