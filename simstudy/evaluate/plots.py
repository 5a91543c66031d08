"""Figures of a simulation study (PNG + PDF), drawn from :mod:`simstudy.evaluate` output.

* :func:`plot_sensitivity`: one cell metric (TPR, FPR, F1, MCC, AUC, ECE, runtime, ...)
  against a factor on x, another factor as hue, two more as facet rows/columns, with
  Monte Carlo error bars (±1.96 MCSE by default). Defaults come from the design's varying
  factors: x = the factor with most levels, then hue, columns, rows.
* :func:`plot_reliability`: reliability diagrams of the PIPs pooled per level of a factor
  (diagonal reference, binomial error bars, bin counts underneath).
* :func:`plot_roc`: ROC curves pooled per level of a factor.
* :func:`plot_runtime`: seconds per fit (sampling, compilation) and ESS per second vs J and n.
* :func:`plot_all` / :func:`plot_cli`: every figure of a results store into a folder.

Single-fit figures (PIP, funnel, outcome plots) live in ``simstudy.realdata.plots``.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402

import simstudy.evaluate as M  # noqa: E402
from .fits import _crg  # noqa: E402
from .labels import (  # noqa: E402
    _REFERENCE,
    DEFAULT_METRICS,
    METRIC_LABELS,
    PRETTY,
    SYMBOLS,
    _level_text,
    format_level,
    metric_label,
    metric_range,
    pretty,
    spans_decades,
)

__all__ = [
    "PRETTY",
    "SYMBOLS",
    "METRIC_LABELS",
    "DEFAULT_METRICS",
    "pretty",
    "metric_label",
    "format_level",
    "default_roles",
    "plot_sensitivity",
    "plot_reliability",
    "plot_roc",
    "plot_runtime",
    "plot_pi_vs_share",
    "plot_decision",
    "parse_metrics",
    "save_figure",
    "plot_all",
    "plot_cli",
]

# ============================================================================ roles
def default_roles(
    summary: xr.Dataset,
    x: str | None = None,
    hue: str | None = None,
    row: str | None = None,
    col: str | None = None,
) -> dict:
    """Assign varying factors to x, hue, col, row (in that order, most levels first; given
    roles are kept). ``rest`` lists varying factors left over (one figure per combination)."""
    given = {"x": x, "hue": hue, "col": col, "row": row}
    for role, name in given.items():
        if name is not None and name not in summary.coords:
            raise ValueError(f"{role}={name!r} is not a cell coordinate; use one of {M.cell_factors(summary)}")
    chosen = [v for v in given.values() if v]
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"a factor can take only one role: {given}")
    varying = [f for f in M.varying_factors(summary) if f not in chosen]
    nlev = {f: len(M.factor_levels(summary, f)) for f in varying}
    ranked = sorted(varying, key=lambda f: -nlev[f])  # stable: design order among ties
    for role in ("x", "hue", "col", "row"):
        if given[role] is None and ranked:
            given[role] = ranked.pop(0)
    given["rest"] = [f for f in M.varying_factors(summary) if f in ranked]
    return given


# ============================================================================ helpers
def _values(summary: xr.Dataset, name: str) -> list:
    return [v.item() if hasattr(v, "item") else v for v in np.asarray(summary[name].values)]


def _levels(summary: xr.Dataset, name: str | None) -> list:
    if name is None:
        return [None]
    return M.factor_levels(summary, name)


def _select(summary: xr.Dataset, fixed: dict | None) -> xr.Dataset:
    if not fixed:
        return summary
    keep = np.ones(summary.sizes["cell"], bool)
    for k, v in fixed.items():
        keep &= np.array([x == v for x in _values(summary, k)])
    return summary.isel(cell=np.nonzero(keep)[0])


def _palette(n: int):
    return sns.color_palette("colorblind" if n <= 10 else "husl", max(n, 1))


def _rotate_if_needed(ax, labels: Sequence[str]) -> None:
    long = sum(len(s) for s in labels) > 40 or max((len(s) for s in labels), default=0) > 10
    if long:
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")


#: largest shift of a colour level's points from its x level, as a share of the level spacing
MAX_DODGE = 0.15


def _dodge(n: int) -> np.ndarray:
    """x offsets of ``n`` colour levels: at most ±MAX_DODGE of the level spacing (points of
    one x level stay next to it, never halfway to the next one)."""
    if n <= 1:
        return np.zeros(1)
    half = min(MAX_DODGE, 0.04 * (n - 1))
    return np.linspace(-half, half, n)


def _as_number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        return None


def ordered_numeric(levels: Sequence) -> bool:
    """Whether factor levels form an ordered numeric scale (lines may join them): every level
    a number, ascending. Levels that mix numbers and text (0.1, 0.5, "beta(1, 1)") or are text
    are categories: points and error bars only."""
    nums = [_as_number(v) for v in levels]
    if len(nums) < 2 or any(v is None or not np.isfinite(v) for v in nums):
        return False
    return bool(np.all(np.diff(nums) > 0))


def clip_errors(y, err, lo: float, hi: float) -> np.ndarray:
    """``(2, k)`` lower/upper error-bar lengths of ``y ± err`` clipped to ``[lo, hi]`` (the
    metric's range, :func:`simstudy.evaluate.labels.metric_range`)."""
    y, err = np.asarray(y, float), np.asarray(err, float)
    err = np.where(np.isfinite(err), err, 0.0)
    down = np.minimum(err, np.maximum(y - lo, 0.0))
    up = np.minimum(err, np.maximum(hi - y, 0.0))
    return np.vstack([np.where(np.isfinite(y), down, 0.0), np.where(np.isfinite(y), up, 0.0)])


#: positive values spanning more decades than this get a log axis (for ratio-scale metrics)
LOG_DECADES = 1.5


def fit_metric_axis(ax, metric: str, drawn) -> None:
    """y limits fitted to the drawn points and error bars (``drawn``: ``(y, lo, hi)`` arrays)
    with a margin, never past the metric's range: a log axis (symlog when zeros are drawn)
    where a ratio-scale metric's positive values span more than LOG_DECADES decades; [0, 1]
    for a rate only when the data spread over most of it."""
    if not drawn:
        return
    y = np.concatenate([d[0] for d in drawn])
    lo = np.concatenate([d[1] for d in drawn])
    hi = np.concatenate([d[2] for d in drawn])
    ok = np.isfinite(y)
    if not ok.any():
        return
    y, lo, hi = y[ok], lo[ok], hi[ok]
    r_lo, r_hi = metric_range(metric)
    pos = y[y > 0]
    if spans_decades(metric) and pos.size >= 2 and np.log10(pos.max() / pos.min()) > LOG_DECADES and r_lo >= 0:
        top = float(np.max(hi)) * 1.6
        bottom = float(pos.min()) / 1.6
        if (y <= 0).any():  # zeros stay visible: linear below the smallest positive value
            ax.set_yscale("symlog", linthresh=float(pos.min()), linscale=0.6)
            ax.set_ylim(0.0, top)
        else:
            _plain_log(ax, "y", subs=(1.0, 2.0, 5.0))
            ax.set_ylim(bottom, top)
        return
    vmin, vmax = float(np.min(lo)), float(np.max(hi))
    for ref, when in ((_REFERENCE.get(metric), metric in _REFERENCE), (0.9, metric.endswith("_coverage")),
                      (0.0, metric.endswith("_bias"))):
        if when and ref is not None and (vmax - vmin) > 0 and abs(ref - (vmin + vmax) / 2) < 2 * (vmax - vmin):
            vmin, vmax = min(vmin, ref), max(vmax, ref)  # a nearby reference line stays in view
    span = vmax - vmin
    if np.isfinite(r_lo) and np.isfinite(r_hi) and span >= 0.6 * (r_hi - r_lo):
        pad = 0.03 * (r_hi - r_lo)
        ax.set_ylim(r_lo - pad, r_hi + pad)
        return
    pad = 0.08 * span if span > 0 else max(0.05 * abs(vmax), 1e-3)
    bottom, top = vmin - pad, vmax + pad
    if np.isfinite(r_lo) and bottom < r_lo:
        bottom = r_lo - 0.3 * pad if vmin > r_lo else r_lo - pad
    if np.isfinite(r_hi) and top > r_hi:
        top = r_hi + 0.3 * pad if vmax < r_hi else r_hi + pad
    ax.set_ylim(bottom, top)


def _aggregate(summary: xr.Dataset, metric: str, keys: dict) -> tuple[float, float]:
    """Mean of ``metric`` (and combined MCSE) over cells matching ``keys`` (factor: value)."""
    m = np.ones(summary.sizes["cell"], bool)
    for k, v in keys.items():
        if k is not None:
            m &= np.array([x == v for x in _values(summary, k)])
    vals = np.asarray(summary[metric].values, float)[m]
    se = np.asarray(summary[f"{metric}_mcse"].values, float)[m] if f"{metric}_mcse" in summary else np.full(vals.shape, np.nan)
    ok = np.isfinite(vals)
    if not ok.any():
        return np.nan, np.nan
    s = se[ok]
    return float(vals[ok].mean()), float(np.sqrt(np.sum(s**2)) / ok.sum()) if np.all(np.isfinite(s)) else np.nan


def _legend(fig, handles: dict, title: str) -> None:
    """One figure legend below the panels (never over the title or the data)."""
    fig.legend(
        list(handles.values()),
        list(handles.keys()),
        title=title,
        loc="outside lower center",
        ncol=min(len(handles), 5),
        frameon=False,
    )


def _plain_log(ax, axis: str = "y", subs=(1.0, 2.0, 5.0)) -> None:
    """Log scale with plain tick labels (2, 5, 10, 20, ...) instead of 2x10^1."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    a.set_major_locator(LogLocator(base=10, subs=subs))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def save_figure(fig, out_dir, name: str, formats: Sequence[str] = ("png", "pdf"), dpi: int = 200) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.<fmt>`` for each format and close it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = out_dir / f"{name}.{fmt}"
        fig.savefig(p, dpi=dpi, bbox_inches="tight", metadata=None if fmt != "pdf" else {"CreationDate": None})
        paths.append(p)
    plt.close(fig)
    return paths


# ============================================================================ sensitivity
def plot_sensitivity(
    summary: xr.Dataset,
    metric: str = "tpr",
    x: str | None = None,
    hue: str | None = None,
    row: str | None = None,
    col: str | None = None,
    fixed: dict | None = None,
    err_mult: float = 1.96,
    title: str | None = None,
):
    """``metric`` against ``x`` (categorical, in level order), one line per ``hue`` level,
    facets ``row`` x ``col``; error bars ±``err_mult`` MCSE. Cells are first restricted to
    ``fixed`` ({factor: level}); cells that still share an (x, hue, row, col) position are
    averaged (MCSE combined). Returns the Figure."""
    if metric not in summary:
        raise KeyError(f"{metric!r} is not in the summary")
    roles = default_roles(summary, x, hue, row, col)
    sub = _select(summary, fixed)
    x, hue, row, col = roles["x"], roles["hue"], roles["row"], roles["col"]
    if x is None:  # a single cell (or nothing varies): one point per cell label
        x = "cell_label" if "cell_label" in sub.coords else None
    xlev = _levels(sub, x) if x else [None]
    hlev, rlev, clev = _levels(sub, hue), _levels(sub, row), _levels(sub, col)
    nrows, ncols = len(rlev), len(clev)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(max(3.8, 0.55 * len(xlev) + 2.4) * ncols, 3.1 * nrows + 0.6 + (0.6 if hue else 0)),
            sharex=True,
            sharey=True,
            squeeze=False,
            layout="constrained",
        )
    colors = _palette(len(hlev))
    markers = ["o", "s", "D", "^", "v", "P", "X", "*", "<", ">"]
    offs = _dodge(len(hlev))
    joined = x is not None and x != "cell_label" and ordered_numeric(xlev)  # lines only along a numeric scale
    lo_ok, hi_ok = metric_range(metric)
    drawn: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (y, y - err, y + err) as drawn
    handles = {}
    xlabels = [_level_text(v) for v in xlev]
    for (i, rv), (j, cv) in itertools.product(enumerate(rlev), enumerate(clev)):
        ax = axes[i, j]
        for h, hv in enumerate(hlev):
            ys, es = [], []
            for xv in xlev:
                y, e = _aggregate(sub, metric, {x: xv, hue: hv, row: rv, col: cv})
                ys.append(y)
                es.append(err_mult * e if np.isfinite(e) else 0.0)
            pos = np.arange(len(xlev)) + offs[h]
            ys = np.array(ys)
            if not np.isfinite(ys).any():
                continue
            yerr = clip_errors(ys, np.array(es), lo_ok, hi_ok)
            drawn.append((ys, ys - yerr[0], ys + yerr[1]))
            eb = ax.errorbar(
                pos,
                ys,
                yerr=yerr,
                color=colors[h],
                marker=markers[h % len(markers)],
                markersize=5,
                linewidth=1.4,
                linestyle="-" if joined else "none",
                capsize=3,
                label=_level_text(hv) if hue else None,
            )
            if hue:
                handles[_level_text(hv)] = eb
        ax.set_xticks(np.arange(len(xlev)))
        ax.set_xticklabels(xlabels)
        _rotate_if_needed(ax, xlabels)
        ax.set_xlim(-0.6, len(xlev) - 0.4)
        if metric in _REFERENCE:
            ax.axhline(_REFERENCE[metric], color="0.5", linestyle=":", linewidth=1)
        if metric.endswith("_coverage"):
            ax.axhline(0.9, color="0.5", linestyle=":", linewidth=1)
        if metric.endswith("_bias"):
            ax.axhline(0.0, color="0.5", linestyle=":", linewidth=1)
        parts = [format_level(n, v) for n, v in ((row, rv), (col, cv)) if n is not None]
        if parts:
            ax.set_title(", ".join(parts), fontsize=10)
    fit_metric_axis(axes[0, 0], metric, drawn)
    for ax in axes[-1, :]:
        ax.set_xlabel(pretty(x) if x else "")
    for ax in axes[:, 0]:
        ax.set_ylabel(metric_label(metric))
    if hue and handles:
        _legend(fig, handles, pretty(hue))
    note = f"error bars: ±{err_mult:g} Monte Carlo SE"
    fixed_txt = "; ".join(format_level(k, v) for k, v in (fixed or {}).items())
    head = title or metric_label(metric)
    fig.suptitle(f"{head}" + (f" ({fixed_txt})" if fixed_txt else "") + f"\n{note}", fontsize=10)
    return fig


# ============================================================================ reliability
def _default_panel_factor(ds, exclude=()) -> str | None:
    varying = [f for f in M.varying_factors(ds) if f not in exclude]
    for pref in ("pi", "scale_sd", "share_inconsistent", "n_groups", "group_size", "slab_sd"):
        if pref in varying:
            return pref
    return varying[0] if varying else None


def _pick_roles(ds, by, hue, max_hue=6):
    if by is None:
        by = _default_panel_factor(ds)
    if hue is None:
        cands = [f for f in M.varying_factors(ds) if f != by and len(M.factor_levels(ds, f)) <= max_hue]
        hue = cands[0] if cands else None
    return by, hue


def _rows(tab, by: str | None, bv, hue: str | None, hv):
    """Rows of a by/hue-keyed DataFrame at ``by == bv`` and ``hue == hv`` (a role that is
    ``None`` selects nothing out)."""
    m = np.ones(len(tab), bool)
    if by:
        m &= tab[by].to_numpy() == bv
    if hue:
        m &= tab[hue].to_numpy() == hv
    return tab[m]


def plot_reliability(
    ds: xr.Dataset,
    by: str | None = None,
    hue: str | None = None,
    n_bins: int = 10,
    strategy: str = "uniform",
    converged_only: bool = False,
    err_mult: float = 1.96,
):
    """Reliability diagram per level of ``by`` (default π, else the first varying factor),
    one curve per ``hue`` level: observed share of truly inconsistent groups against the mean
    PIP per bin, ±``err_mult`` binomial SE, diagonal = perfect calibration; bin counts
    (log scale) underneath. Pools every group of every usable fit. Returns the Figure."""
    by, hue = _pick_roles(ds, by, hue)
    keys = [k for k in (by, hue) if k]
    tab = M.reliability_table(ds, n_bins=n_bins, strategy=strategy, by=keys, converged_only=converged_only)
    blev = _levels(ds, by)
    hlev = _levels(ds, hue)
    colors = _palette(len(hlev))
    n = len(blev)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(
            2,
            n,
            figsize=(max(3.3 * n, 4.5), 4.6 + (0.6 if hue else 0)),
            sharex=True,
            squeeze=False,
            gridspec_kw={"height_ratios": [3, 1]},
            layout="constrained",
        )
    handles = {}
    for j, bv in enumerate(blev):
        ax, axc = axes[0, j], axes[1, j]
        ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="_diag")
        for h, hv in enumerate(hlev):
            t = _rows(tab, by, bv, hue, hv)
            if t.empty:
                continue
            eb = ax.errorbar(
                t["mean_pip"], t["observed"], yerr=err_mult * t["se"], color=colors[h], marker="o",
                markersize=4, linewidth=1.2, capsize=2,
            )  # fmt: skip
            centers = (t["bin_lo"] + t["bin_hi"]) / 2 if strategy == "uniform" else t["mean_pip"]
            axc.plot(centers, t["n"], color=colors[h], marker=".", linewidth=1)
            if hue:
                handles[_level_text(hv)] = eb
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal", adjustable="box") if n == 1 else None
        if by:
            ax.set_title(format_level(by, bv), fontsize=10)
        _plain_log(axc, "y", subs=(1.0,))
        axc.set_xlabel("Mean PIP in bin")
        if j == 0:
            ax.set_ylabel("Observed share inconsistent")
            axc.set_ylabel("Groups")
    if hue and handles:
        _legend(fig, handles, pretty(hue))
    fig.suptitle(
        f"Reliability of PIPs ({'equal-width' if strategy == 'uniform' else 'equal-mass'} bins)\n"
        f"dashed: perfect calibration; error bars: ±{err_mult:g} binomial SE",
        fontsize=10,
    )
    return fig


def plot_roc(ds: xr.Dataset, by: str | None = None, hue: str | None = None, converged_only: bool = False):
    """ROC curves of the PIPs pooled over the replicates and cells of each (``by``, ``hue``)
    level, one panel per ``by`` level. Returns the Figure."""
    by, hue = _pick_roles(ds, by, hue)
    keys = [k for k in (by, hue) if k]
    cur = M.pooled_curves(ds, "roc", by=keys, converged_only=converged_only)
    blev, hlev = _levels(ds, by), _levels(ds, hue)
    colors = _palette(len(hlev))
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(
            1, len(blev), figsize=(max(3.3 * len(blev), 4.5), 3.6 + (0.6 if hue else 0)), sharey=True, squeeze=False, layout="constrained"
        )
    handles = {}
    for j, bv in enumerate(blev):
        ax = axes[0, j]
        ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1)
        for h, hv in enumerate(hlev):
            c = _rows(cur, by, bv, hue, hv)
            if c.empty or not np.isfinite(c["fpr"]).any() or not np.isfinite(c["tpr"]).any():
                continue
            (ln,) = ax.plot(c["fpr"], c["tpr"], color=colors[h], linewidth=1.4)
            if hue:
                handles[_level_text(hv)] = ln
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("False positive rate")
        if by:
            ax.set_title(format_level(by, bv), fontsize=10)
    axes[0, 0].set_ylabel("True positive rate")
    if hue and handles:
        _legend(fig, handles, pretty(hue))
    pooled = [pretty(f).lower() if f not in PRETTY else pretty(f) for f in M.varying_factors(ds) if f not in keys]
    what = "replicates" + (" and cells over " + ", ".join(pooled) if pooled else "")
    fig.suptitle(f"ROC curves of PIPs (pooled over {what})", fontsize=10)
    return fig


# ============================================================================ runtime
def plot_runtime(summary: xr.Dataset, err_mult: float = 1.96):
    """Sampling and compilation seconds per fit and bulk ESS of τ_t per second against J
    (log-log), one line per group size n; cells with the same (J, n) are averaged."""
    J = np.asarray(summary["n_groups_eff"].values, float)
    n = np.asarray(summary["group_size_eff"].values, float)
    n_key = np.where(np.isfinite(n), np.round(n, 1), np.nan)
    panels = [(k, metric_label(k)) for k in ("sample_s", "compile_s", "ess_per_s_tau_t") if k in summary]
    nlev = sorted({v for v in n_key.tolist() if np.isfinite(v)}) or [np.nan]
    colors = _palette(len(nlev))
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.0), squeeze=False, layout="constrained")
    handles = {}
    for j, (metric, label) in enumerate(panels):
        ax = axes[0, j]
        vals = np.asarray(summary[metric].values, float)
        se = np.asarray(summary[f"{metric}_mcse"].values, float)
        for h, nv in enumerate(nlev):
            m = (n_key == nv) if np.isfinite(nv) else ~np.isfinite(n_key)
            xs = sorted({v for v in J[m].tolist() if np.isfinite(v)})
            ys, es = [], []
            for xv in xs:
                mm = m & (J == xv) & np.isfinite(vals)
                if not mm.any():
                    ys.append(np.nan)
                    es.append(0.0)
                    continue
                ys.append(vals[mm].mean())
                s = se[mm]
                es.append(err_mult * np.sqrt(np.sum(s**2)) / mm.sum() if np.all(np.isfinite(s)) else 0.0)
            if not xs or not np.isfinite(ys).any():
                continue
            lab = format_level("group_size", int(nv) if float(nv).is_integer() else nv) if np.isfinite(nv) else "n unknown"
            eb = ax.errorbar(xs, ys, yerr=es, color=colors[h], marker="o", markersize=4, capsize=2, linewidth=1.3)
            handles[lab] = eb
        ax.set_xlabel(pretty("n_groups"))
        ax.set_ylabel(label)
        pos_x = J[np.isfinite(J) & (J > 0)]
        pos_y = vals[np.isfinite(vals) & (vals > 0)]
        if pos_x.size:
            ticks = sorted(set(pos_x.tolist()))
            if len(ticks) > 1:
                ax.set_xscale("log")
                ax.set_xlim(ticks[0] / 1.15, ticks[-1] * 1.15)
            else:
                ax.set_xlim(ticks[0] * 0.8, ticks[0] * 1.25)
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.minorticks_off()
        if pos_y.size and pos_y.max() / max(pos_y.min(), 1e-12) > 5:
            if (vals[np.isfinite(vals)] <= 0).any():  # zero compile times (cached) stay on the axis
                ax.set_yscale("symlog", linthresh=float(pos_y.min()), linscale=0.6)
                ax.set_ylim(bottom=0.0)
            else:
                _plain_log(ax, "y")
    if handles:
        _legend(fig, handles, pretty("group_size"))
    fig.suptitle(f"Runtime per fit and sampling efficiency (error bars: ±{err_mult:g} Monte Carlo SE)", fontsize=10)
    return fig


# ============================================================================ Beta pi
def plot_pi_vs_share(summary: xr.Dataset, hue: str | None = None, err_mult: float = 1.96):
    """E[π | y] (the posterior mean of π under a Beta hyperprior, averaged over a cell's fits)
    against the true share of inconsistent groups, one point per cell with ±``err_mult``
    MCSE bars (clipped to [0, 1]), coloured by ``hue`` (default: the varying factor ``pi``,
    else the first varying factor); dashed: E[π | y] = share. Returns the Figure."""
    if "pi_mean" not in summary or "share_true" not in summary:
        raise KeyError("no pi_mean/share_true in the summary: no cell has a Beta hyperprior on pi")
    est = np.asarray(summary["pi_mean"].values, float)
    share = np.asarray(summary["share_true"].values, float)
    se = np.asarray(summary["pi_mean_mcse"].values, float) if "pi_mean_mcse" in summary else np.full(est.shape, np.nan)
    keep = np.isfinite(est) & np.isfinite(share)
    varying = M.varying_factors(summary)
    if hue is None:
        hue = "pi" if "pi" in varying else (varying[0] if varying else None)
    hv_all = _values(summary, hue) if hue else [None] * est.size
    hlev = [v for v in _levels(summary, hue) if any(k and h == v for k, h in zip(keep, hv_all))] if hue else [None]
    colors = _palette(len(hlev))
    markers = ["o", "s", "D", "^", "v", "P", "X", "*", "<", ">"]
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(4.8, 4.6 + (0.5 if hue else 0)), layout="constrained")
    top = float(np.nanmax(np.concatenate([est[keep] + np.nan_to_num(err_mult * se[keep]), share[keep]]))) if keep.any() else 1.0
    lim = min(1.0, top * 1.12 + 0.01)
    ax.plot([0, lim], [0, lim], color="0.5", linestyle="--", linewidth=1, label="_identity")
    handles = {}
    for h, hv in enumerate(hlev):
        m = keep & np.array([v == hv for v in hv_all]) if hue else keep
        if not m.any():
            continue
        yerr = clip_errors(est[m], err_mult * se[m], 0.0, 1.0)
        eb = ax.errorbar(share[m], est[m], yerr=yerr, color=colors[h], marker=markers[h % len(markers)],
                         linestyle="none", markersize=5, capsize=2)
        if hue:
            handles[_level_text(hv)] = eb
    ax.set_xlim(0.0, lim)
    ax.set_ylim(0.0, lim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("True share of inconsistent groups (mean over fits)")
    ax.set_ylabel("E[π | y] (mean over fits)")
    if hue and handles:
        _legend(fig, handles, pretty(hue))
    fig.suptitle(f"Posterior mean of π against the true share, one point per cell\n"
                 f"dashed: E[π | y] = share; error bars: ±{err_mult:g} Monte Carlo SE", fontsize=10)
    return fig


# ============================================================================ all figures
def _fixed_combos(summary: xr.Dataset, rest: list[str]) -> list[dict]:
    if not rest:
        return [{}]
    return [dict(zip(rest, combo)) for combo in itertools.product(*(M.factor_levels(summary, f) for f in rest))]


def _slug(d: dict) -> str:
    s = "_".join(f"{k}-{_level_text(v)}" for k, v in d.items())
    return re.sub(r"[^A-Za-z0-9.\-_]+", "", s.replace(" ", "").replace(",", "-"))


def plot_methods(
    summary_m: xr.Dataset,
    x: str | None = None,
    metrics: Sequence[str] = ("tpr", "fpr", "precision", "fwer"),
    err_mult: float = 2.0,
):
    """Methods side by side: one panel per metric, its level of ``x`` (default: the first
    varying factor) on the x axis, one colour per method (hue), each point the equal-weight
    average over the other cells with ``err_mult`` x MCSE bars. ``summary_m``:
    :func:`simstudy.evaluate.methods.summarize_methods`."""
    from .methods import METHOD_LABELS, overall_by_method

    varying = M.varying_factors(summary_m)
    x = x or (varying[0] if varying else None)
    metrics = [m for m in metrics if m in summary_m]
    methods = [str(m) for m in summary_m["method"].values]
    colors = dict(zip(methods, _palette(len(methods))))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.4), squeeze=False, layout="constrained")
    table = overall_by_method(summary_m, metrics, by=x)
    levels = M.factor_levels(summary_m, x) if x else [None]
    pos = np.arange(len(levels))
    offs = _dodge(len(methods))  # small: each method stays next to its x level
    handles = {}
    for ax, metric in zip(axes[0], metrics):
        for i, m in enumerate(methods):
            rows = table[table["method"] == m]
            vals = rows[metric].to_numpy(float)
            errs = err_mult * rows[f"{metric}_mcse"].to_numpy(float)
            offset = offs[i]
            yerr = clip_errors(vals, errs, *metric_range(metric))  # never past the metric's range
            h = ax.errorbar(pos + offset, vals, yerr=yerr, fmt="o-" if x and ordered_numeric(levels) else "o",
                            color=colors[m], ms=4, lw=1.2, capsize=2)
            handles[METHOD_LABELS.get(m, m)] = h
        ax.set_xticks(pos, [_level_text(lv) if x else "all cells" for lv in levels])
        ax.set_xlabel(pretty(x) if x else "")
        ax.set_title(metric_label(metric))
        ax.grid(axis="y", alpha=0.3)
    _legend(fig, handles, "method")
    fig.suptitle(f"Methods on the same data sets (mean over cells, ±{err_mult:g} MCSE)")
    return fig


def plot_decision(regret, value: str = "regret", level: float | None = None):
    """Heatmap of settings (rows) x truths (columns) of ``value`` (``"regret"``, ``"fwer"`` or
    ``"tpr"``), one panel per ``by`` group (J, n), from
    :func:`simstudy.evaluate.decision.regret_table`; each cell annotated with its value.
    Settings that are not admissible (P(≥1 false flag) above ``level`` at some truth) are
    marked "✗" on the axis; with ``value="fwer"`` and ``level`` the colour scale is centred on
    the level."""
    import pandas as pd

    attrs = dict(getattr(regret, "attrs", {}))
    tab = pd.DataFrame(regret)
    if value not in tab.columns:
        raise ValueError(f"{value!r} is not a column of the regret table")
    by = list(attrs.get("by", [c for c in ("n_groups", "group_size") if c in tab.columns]))
    groups = [((), tab)] if not by else [((k if isinstance(k, tuple) else (k,)), g)
                                         for k, g in tab.groupby(by, sort=True)]
    settings = list(dict.fromkeys(tab["setting"]))
    # truths where the value is undefined everywhere (regret and TPR at the null share) are left out
    truths = [t for t in dict.fromkeys(tab["truth"]) if np.isfinite(tab.loc[tab["truth"] == t, value].to_numpy(float)).any()]
    if truths:
        tab = tab[tab["truth"].isin(truths)]
    else:  # nothing defined (e.g. no admissible setting): an empty grid, all truths shown
        truths = list(dict.fromkeys(tab["truth"]))
    ncol = min(len(groups), 2)
    nrow = int(np.ceil(len(groups) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.3 * len(truths) * ncol + 3.5, 0.45 * len(settings) * nrow + 1.8),
                             squeeze=False, layout="constrained")
    vals = tab[value].to_numpy(float)
    finite = vals[np.isfinite(vals)]
    if value == "fwer" and level is not None:
        cmap, vmin, vmax, center = "RdBu_r", 0.0, max(2 * level, float(finite.max()) if finite.size else 1.0), level
    else:
        cmap, vmin, vmax, center = "rocket_r", (min(0.0, float(finite.min())) if finite.size else 0.0), (
            float(finite.max()) if finite.size and finite.max() > 0 else 1.0), None
    for ax, (key, g) in zip(axes.flat, groups):
        grid = g.pivot_table(index="setting", columns="truth", values=value, aggfunc="first", dropna=False)
        grid = grid.reindex(index=[s for s in settings if s in grid.index], columns=[t for t in truths if t in grid.columns])
        adm = g.groupby("setting")["admissible"].first() if "admissible" in g else None
        ylabels = [s + ("" if adm is None or bool(adm.get(s, True)) else "  ✗") for s in grid.index]
        sns.heatmap(grid.to_numpy(float), ax=ax, cmap=cmap, vmin=vmin, vmax=vmax, center=center, annot=True,
                    fmt=".2f", cbar=ax is axes.flat[0], linewidths=0.5, annot_kws={"fontsize": 7},
                    xticklabels=list(grid.columns), yticklabels=ylabels)
        ax.set_xlabel("truth")
        ax.set_ylabel("setting" if ax in axes[:, 0] else "")
        ax.set_title(", ".join(f"{pretty(n)} = {_level_text(v)}" for n, v in zip(by, key)) or "all cells", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.tick_params(axis="y", labelsize=7, labelrotation=0)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    what = {"regret": "regret: best admissible TPR at the truth minus the setting's TPR",
            "fwer": "P(at least one false flag)", "tpr": "TPR"}.get(value, value)
    lv = f"; ✗: P(≥1 false flag) > {level:g} at some truth" if level is not None else ""
    fig.suptitle(f"Settings x truths, {what}{lv}", fontsize=10)
    return fig


def plot_all(
    ds: xr.Dataset,
    out,
    threshold: float = 0.75,
    rule: str = "pip",
    summary: xr.Dataset | None = None,
    metrics: Sequence[str] | None = None,
    x: str | None = None,
    hue: str | None = None,
    row: str | None = None,
    col: str | None = None,
    converged_only: bool = False,
    formats: Sequence[str] = ("png", "pdf"),
    bf: float = 3.0,
) -> list[Path]:
    """Write every study figure of a store into ``out``: ``sensitivity_<metric>`` (one per
    level combination of factors beyond x/hue/col/row), ``reliability``, ``roc`` and
    ``runtime``. Returns the written paths."""
    out = Path(out)
    if summary is None:
        summary = M.summarize(ds, threshold=threshold, rule=rule, bf=bf, converged_only=converged_only)
    paths: list[Path] = []
    roles = default_roles(summary, x, hue, row, col)
    for metric in metrics or DEFAULT_METRICS:
        if metric not in summary or not np.isfinite(np.asarray(summary[metric].values, float)).any():
            continue
        for fixed in _fixed_combos(summary, roles["rest"]):
            sub = _select(summary, fixed)
            if not np.isfinite(np.asarray(sub[metric].values, float)).any():
                continue
            fig = plot_sensitivity(summary, metric, roles["x"], roles["hue"], roles["row"], roles["col"], fixed=fixed)
            name = f"sensitivity_{metric}" + (f"_{_slug(fixed)}" if fixed else "")
            paths += save_figure(fig, out, name, formats)
    ds_loaded = ds[[v for v in ("pip", "delta_true", "status", "done") if v in ds]].load()
    if np.isfinite(_crg(ds_loaded, "pip")).any():
        paths += save_figure(plot_reliability(ds_loaded, converged_only=converged_only), out, "reliability", formats)
        y = _crg(ds_loaded, "delta_true")
        if (y > 0.5).any() and (y < 0.5).any():
            paths += save_figure(plot_roc(ds_loaded, converged_only=converged_only), out, "roc", formats)
    if "sample_s" in summary and np.isfinite(np.asarray(summary["sample_s"].values, float)).any():
        paths += save_figure(plot_runtime(summary), out, "runtime", formats)
    if "pi_mean" in summary and "share_true" in summary and np.isfinite(np.asarray(summary["pi_mean"].values, float)).any():
        paths += save_figure(plot_pi_vs_share(summary), out, "pi_vs_share", formats)  # Beta hyperprior on pi
    from .methods import store_methods, summarize_methods

    if store_methods(ds) != ["ss_melsm"]:  # comparators in the store: methods side by side
        keep = ("pip", "delta_true", "t_true", "status", "done", "flag", "score", "method_s")
        summary_m = summarize_methods(ds[[v for v in keep if v in ds]].load(), threshold=threshold, rule=rule,
                                      bf=bf, converged_only=converged_only)
        paths += save_figure(plot_methods(summary_m, x=x), out, "methods", formats)
    return paths


def known_metrics() -> list[str]:
    """Every cell metric name ``simstudy plot --metric`` accepts (the summary's metrics)."""
    from .fits import PARAMS
    from .labels import _STAT_LABELS

    names = list(METRIC_LABELS) + [f"{p}_{s}" for p in PARAMS for s in _STAT_LABELS] + ["pi_mean"]
    return list(dict.fromkeys(names))


def parse_metrics(metrics: Sequence[str] | str | None) -> list[str] | None:
    """``--metric`` values as names: comma lists and repeated options both work
    (``["fpr,tpr", "ece"]`` -> ``["fpr", "tpr", "ece"]``). An unknown name raises one
    ValueError listing the valid ones; ``None``/empty -> ``None`` (the defaults)."""
    if metrics is None:
        return None
    if isinstance(metrics, str):
        metrics = [metrics]
    names = [m.strip() for item in metrics for m in str(item).split(",") if m.strip()]
    if not names:
        return None
    valid = known_metrics()
    bad = [m for m in names if m not in valid]
    if bad:
        raise ValueError(f"--metric {', '.join(repr(b) for b in bad)}: not a metric; use one or more of "
                         f"{', '.join(valid)} (comma-separated or repeated --metric)")
    return list(dict.fromkeys(names))


def plot_cli(
    store,
    out=Path("figures"),
    threshold: float = 0.75,
    rule: str = "pip",
    metrics: Sequence[str] | None = None,
    x: str | None = None,
    hue: str | None = None,
    row: str | None = None,
    col: str | None = None,
    converged_only: bool = False,
    bf: float = 3.0,
) -> list[Path]:
    """``simstudy plot``: every figure of a results store into ``out`` (PNG + PDF); ``bf``: the
    Bayes-factor threshold of ``rule="bf"``."""
    from .fits import unfinished_note

    metrics = parse_metrics(metrics)  # before anything is read or written
    ds = M.open_store(store)
    note = unfinished_note(ds, store if not isinstance(store, xr.Dataset) else None)
    if note:
        print(f"note: {note}")
    paths = plot_all(
        ds, out, threshold=threshold, rule=rule, metrics=metrics, x=x, hue=hue, row=row, col=col,
        converged_only=converged_only, bf=bf,
    )  # fmt: skip
    pngs = [p for p in paths if p.suffix == ".png"]
    print(f"wrote {len(paths)} files ({len(pngs)} figures, PNG + PDF) to {Path(out)}")
    return paths
