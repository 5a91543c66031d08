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
    _is_unit,
    _level_text,
    format_level,
    metric_label,
    pretty,
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
    width = 0.5
    offs = np.linspace(-width / 2, width / 2, len(hlev)) if len(hlev) > 1 else np.zeros(1)
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
            eb = ax.errorbar(
                pos,
                ys,
                yerr=np.array(es),
                color=colors[h],
                marker=markers[h % len(markers)],
                markersize=5,
                linewidth=1.4,
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
    if _is_unit(metric):
        lo = np.nanmin(np.asarray(sub[metric].values, float)) if np.isfinite(np.asarray(sub[metric].values, float)).any() else 0
        axes[0, 0].set_ylim(-0.03 if lo >= 0 else -1.03, 1.03)
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
    fig.suptitle("ROC curves of PIPs (pooled over replicates)", fontsize=10)
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
            lab = f"n = {nv:g}" if np.isfinite(nv) else "n unknown"
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
            _plain_log(ax, "y")
    if handles:
        _legend(fig, handles, pretty("group_size"))
    fig.suptitle(f"Runtime per fit and sampling efficiency (error bars: ±{err_mult:g} Monte Carlo SE)", fontsize=10)
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
    width = min(0.1, 0.5 / max(len(methods), 1))  # dodge
    handles = {}
    for ax, metric in zip(axes[0], metrics):
        for i, m in enumerate(methods):
            rows = table[table["method"] == m]
            vals = rows[metric].to_numpy(float)
            errs = err_mult * rows[f"{metric}_mcse"].to_numpy(float)
            offset = (i - (len(methods) - 1) / 2) * width
            h = ax.errorbar(pos + offset, vals, yerr=np.where(np.isfinite(errs), errs, 0.0), fmt="o-",
                            color=colors[m], ms=4, lw=1.2, capsize=2)
            handles[METHOD_LABELS.get(m, m)] = h
        ax.set_xticks(pos, [_level_text(lv) if x else "all cells" for lv in levels])
        ax.set_xlabel(pretty(x) if x else "")
        ax.set_title(metric_label(metric))
        ax.grid(axis="y", alpha=0.3)
    _legend(fig, handles, "method")
    fig.suptitle(f"Methods on the same data sets (mean over cells, ±{err_mult:g} MCSE)")
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
) -> list[Path]:
    """Write every study figure of a store into ``out``: ``sensitivity_<metric>`` (one per
    level combination of factors beyond x/hue/col/row), ``reliability``, ``roc`` and
    ``runtime``. Returns the written paths."""
    out = Path(out)
    if summary is None:
        summary = M.summarize(ds, threshold=threshold, rule=rule, converged_only=converged_only)
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
    from .methods import store_methods, summarize_methods

    if store_methods(ds) != ["ss_melsm"]:  # comparators in the store: methods side by side
        keep = ("pip", "delta_true", "t_true", "status", "done", "flag", "score", "method_s")
        summary_m = summarize_methods(ds[[v for v in keep if v in ds]].load(), threshold=threshold, rule=rule,
                                      converged_only=converged_only)
        paths += save_figure(plot_methods(summary_m, x=x), out, "methods", formats)
    return paths


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
) -> list[Path]:
    """``simstudy plot``: every figure of a results store into ``out`` (PNG + PDF)."""
    from .fits import unfinished_note

    ds = M.open_store(store)
    note = unfinished_note(ds, store if not isinstance(store, xr.Dataset) else None)
    if note:
        print(f"note: {note}")
    paths = plot_all(
        ds, out, threshold=threshold, rule=rule, metrics=metrics, x=x, hue=hue, row=row, col=col,
        converged_only=converged_only,
    )  # fmt: skip
    pngs = [p for p in paths if p.suffix == ".png"]
    print(f"wrote {len(paths)} files ({len(pngs)} figures, PNG + PDF) to {Path(out)}")
    return paths
