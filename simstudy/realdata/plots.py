"""The three single-fit figures of ivd's ``plot()``: PIP, funnel and outcome.

* :func:`pip_plot`: groups ranked by PIP (x: rank, y: PIP), the threshold as a dashed line,
  flagged groups coloured and labelled with their group label;
* :func:`funnel_plot`: PIP against the estimated within-group SD (the "V" of the published
  figure: groups far from the typical SD on either side get high PIPs);
* :func:`outcome_plot`: PIP against the group mean, coloured by within-group SD (colorbar).

Every function takes a :class:`~simstudy.model.result.FitResult` or its ``groups_table()``
DataFrame and returns a :class:`matplotlib.figure.Figure` (no pyplot state, safe in
scripts and workers). With K > 1 scale random effects there is one panel per effect (columns
``pip[name]``). In every panel the first collection (``ax.collections[0]``) is the scatter of
all J groups. :func:`save_figure` writes a PNG; :func:`save_fit_plots` writes all three.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = [
    "pip_plot",
    "funnel_plot",
    "outcome_plot",
    "save_figure",
    "save_fit_plots",
    "trace_plot",
    "rank_plot",
    "save_trace_rank",
    "pip_columns",
    "PLOTS",
]

_FLAG_COLOR = "#c0392b"
_BASE_COLOR = "#4c72b0"
_PANEL_W, _PANEL_H = 5.2, 4.0


# ----------------------------------------------------------------------------- inputs
def _table(fit_or_table, threshold: float) -> pd.DataFrame:
    if isinstance(fit_or_table, pd.DataFrame):
        table = fit_or_table.copy()
    elif hasattr(fit_or_table, "groups_table"):
        table = fit_or_table.groups_table(threshold)
    else:
        raise TypeError(f"expected a FitResult or its groups_table(), got {type(fit_or_table).__name__}")
    if "group" not in table.columns or not pip_columns(table):
        raise ValueError(f"the groups table needs 'group' and 'pip' columns, has {list(table.columns)}")
    return table


def pip_columns(table: pd.DataFrame) -> list[str]:
    """``["pip"]`` for one scale effect, ``["pip[Intercept]", "pip[x]", ...]`` for several."""
    return [c for c in table.columns if c == "pip" or (c.startswith("pip[") and c.endswith("]"))]


def _effect_name(col: str) -> str | None:
    return col[4:-1] if col.startswith("pip[") else None


def _panels(n: int, title: str | None) -> tuple[Figure, list]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(_PANEL_W * n, _PANEL_H), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer for label placement, without pyplot
    axes = fig.subplots(1, n, squeeze=False)[0].tolist()
    if title:
        fig.suptitle(title)
    return fig, axes


def _style(ax, threshold: float, xlabel: str, ylabel: str = "PIP") -> None:
    ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1.0, zorder=1)
    ax.set_ylim(-0.03, 1.06)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.92", linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _panel_title(ax, col: str, n_flagged: int, threshold: float) -> None:
    name = _effect_name(col)
    effect = f"scale effect {name}: " if name else ""
    ax.set_title(f"{effect}{n_flagged} group{'s' if n_flagged != 1 else ''} with PIP ≥ {threshold:g}", fontsize=10)


# ----------------------------------------------------------------------------- labels
def _overlaps(box, boxes, pad: float = 1.0) -> bool:
    for other in boxes:
        if (
            box.x0 - pad < other.x1
            and box.x1 + pad > other.x0
            and box.y0 - pad < other.y1
            and box.y1 + pad > other.y0
        ):
            return True
    return False


_OFFSETS = [(4, 4), (4, -11), (-4, 4), (-4, -11), (6, 12), (-6, 12), (6, -19), (-6, -19),
            (10, 20), (-10, 20), (12, -27), (-12, -27), (14, 28), (-14, 28), (16, 36), (-16, 36)]


def label_points(ax, x, y, labels, fontsize: float = 7.5, color: str = _FLAG_COLOR) -> list:
    """Label the points ``(x, y)`` with ``labels``, avoiding overlaps where practical: each
    label takes the first candidate offset whose box overlaps no earlier label or the axes
    frame; a thin leader line joins labels moved away from their point."""
    fig = ax.figure
    texts = []
    if len(labels) == 0:
        return texts
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()  # settle the layout so display coordinates are final
    axes_box = ax.get_window_extent(renderer)
    placed = []
    order = np.argsort(-np.asarray(y, dtype=float), kind="stable")
    for i in order:
        chosen = None
        for k, (dx, dy) in enumerate(_OFFSETS):
            ha = "left" if dx >= 0 else "right"
            t = ax.annotate(
                str(labels[i]), (x[i], y[i]), xytext=(dx, dy), textcoords="offset points",
                fontsize=fontsize, color=color, ha=ha, va="bottom", zorder=5,
                arrowprops=None if k < 4 else {"arrowstyle": "-", "color": "0.6", "linewidth": 0.5},
            )
            box = t.get_window_extent(renderer)
            inside = axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and box.y1 <= axes_box.y1 + 4
            if inside and not _overlaps(box, placed):
                chosen = t
                placed.append(box)
                break
            t.remove()
        if chosen is None:  # crowded: keep the first choice rather than lose the label
            chosen = ax.annotate(str(labels[i]), (x[i], y[i]), xytext=_OFFSETS[0], textcoords="offset points",
                                 fontsize=fontsize, color=color, ha="left", va="bottom", zorder=5)
            placed.append(chosen.get_window_extent(renderer))
        texts.append(chosen)
    return texts


# ----------------------------------------------------------------------------- plots
def pip_plot(fit_or_table, threshold: float = 0.75, *, label: bool = True, title: str | None = None) -> Figure:
    """Groups sorted by PIP (x: rank, 1 = lowest PIP), PIP on y, dashed threshold line;
    groups at or above the threshold in red and labelled."""
    table = _table(fit_or_table, threshold)
    cols = pip_columns(table)
    fig, axes = _panels(len(cols), title)
    for ax, col in zip(axes, cols):
        order = np.argsort(table[col].to_numpy(), kind="stable")
        pip = table[col].to_numpy()[order]
        groups = table["group"].to_numpy()[order]
        rank = np.arange(1, len(pip) + 1)
        flagged = pip >= threshold
        colors = np.where(flagged, _FLAG_COLOR, _BASE_COLOR)
        ax.scatter(rank, pip, c=colors, s=16, alpha=0.85, edgecolors="none", zorder=3)
        _style(ax, threshold, "groups ranked by PIP")
        ax.set_xlim(0, len(pip) + 1 + 0.08 * len(pip))
        _panel_title(ax, col, int(flagged.sum()), threshold)
        if label:
            label_points(ax, rank[flagged], pip[flagged], groups[flagged])
    return fig


def funnel_plot(fit_or_table, threshold: float = 0.75, *, label: bool = True, title: str | None = None) -> Figure:
    """PIP against the estimated within-group SD (posterior mean, scale covariates at the
    group's own values); flagged groups in red and labelled."""
    table = _table(fit_or_table, threshold)
    cols = pip_columns(table)
    fig, axes = _panels(len(cols), title)
    sd = table["within_sd"].to_numpy()
    groups = table["group"].to_numpy()
    for ax, col in zip(axes, cols):
        pip = table[col].to_numpy()
        flagged = pip >= threshold
        colors = np.where(flagged, _FLAG_COLOR, _BASE_COLOR)
        ax.scatter(sd, pip, c=colors, s=16, alpha=0.85, edgecolors="none", zorder=3)
        _style(ax, threshold, "estimated within-group SD")
        _panel_title(ax, col, int(flagged.sum()), threshold)
        if label:
            label_points(ax, sd[flagged], pip[flagged], groups[flagged])
    return fig


def outcome_plot(fit_or_table, threshold: float = 0.75, *, label: bool = True, title: str | None = None,
                 cmap: str = "viridis") -> Figure:
    """PIP against the estimated group mean, points coloured by the within-group SD
    (colorbar); flagged groups labelled."""
    table = _table(fit_or_table, threshold)
    cols = pip_columns(table)
    fig, axes = _panels(len(cols), title)
    mean = table["mean"].to_numpy()
    sd = table["within_sd"].to_numpy()
    groups = table["group"].to_numpy()
    for ax, col in zip(axes, cols):
        pip = table[col].to_numpy()
        flagged = pip >= threshold
        points = ax.scatter(mean, pip, c=sd, cmap=cmap, s=18, alpha=0.9, edgecolors="none", zorder=3)
        _style(ax, threshold, "estimated group mean")
        _panel_title(ax, col, int(flagged.sum()), threshold)
        fig.colorbar(points, ax=ax, label="within-group SD")
        if label:
            label_points(ax, mean[flagged], pip[flagged], groups[flagged], color="0.15")
    return fig


PLOTS = {"pip": pip_plot, "funnel": funnel_plot, "outcome": outcome_plot}


def save_figure(fig: Figure, path, dpi: int = 150) -> Path:
    """Write ``fig`` as PNG (or the format of ``path``'s suffix) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def save_fit_plots(fit_or_table, out_dir, threshold: float = 0.75, *, title: str | None = None,
                   dpi: int = 150) -> dict[str, Path]:
    """Write ``pip.png``, ``funnel.png`` and ``outcome.png`` into ``out_dir``."""
    table = _table(fit_or_table, threshold)
    return {name: save_figure(make(table, threshold, title=title), Path(out_dir) / f"{name}.png", dpi=dpi)
            for name, make in PLOTS.items()}


# ============================================================================ sampler diagnostics
def hyper_draws(fit, max_params: int = 16) -> dict[str, np.ndarray]:
    """The hyperparameters' draws (fixed effects, random-effect SDs and correlations, pi) as
    ``{"tau[scale:Intercept]": (chain, draw) array}``, at most ``max_params`` of them (constant
    entries, such as a correlation matrix's diagonal, left out)."""
    from ..model.diagnostics import HYPER_VARS

    post = fit.posterior
    out: dict[str, np.ndarray] = {}
    for var in HYPER_VARS:
        if var not in post:
            continue
        da = post[var].transpose("chain", "draw", ...)
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        flat = da.values.reshape(da.sizes["chain"], da.sizes["draw"], -1)
        idx = list(np.ndindex(*[da.sizes[d] for d in extra])) if extra else [()]
        for k, ii in enumerate(idx):
            x = flat[:, :, k]
            if var == "corr" and len(ii) == 2 and ii[0] >= ii[1]:
                continue  # a correlation matrix: each pair once (upper triangle), no diagonal
            if not np.isfinite(x).any() or np.nanstd(x) < 1e-9:
                continue
            parts = [str(da[d].values[i]) if d in da.coords else str(i) for d, i in zip(extra, ii)]
            out[f"{var}[{', '.join(parts)}]" if parts else var] = np.asarray(x, float)
            if len(out) >= max_params:
                return out
    return out


def _param_grid(n: int, ncols: int, title: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    nrows = max(1, -(-n // ncols))
    fig = Figure(figsize=(3.2 * ncols, 1.9 * nrows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return fig, list(axes.flat[:n])


def trace_plot(fit, max_params: int = 16) -> Figure:
    """Trace of each hyperparameter: draws against iteration, one line per chain."""
    draws = hyper_draws(fit, max_params)
    fig, axes = _param_grid(len(draws), 3, "Trace plots of the hyperparameters (one colour per chain)")
    colors = matplotlib.colormaps["tab10"]
    for ax, (name, x) in zip(axes, draws.items()):
        for c in range(x.shape[0]):
            ax.plot(np.arange(x.shape[1]), x[c], color=colors(c % 10), lw=0.6, alpha=0.8, label=f"chain {c}")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("draw", fontsize=7)
    return fig


def rank_plot(fit, max_params: int = 16, bins: int = 20) -> Figure:
    """Rank plot of each hyperparameter (Vehtari et al. 2021): the ranks of all draws pooled
    over chains, one histogram per chain; well-mixed chains give flat, overlapping histograms
    around the dashed line (draws per chain / bins)."""
    from scipy.stats import rankdata

    draws = hyper_draws(fit, max_params)
    fig, axes = _param_grid(len(draws), 3, "Rank plots of the hyperparameters (flat = chains mix well)")
    colors = matplotlib.colormaps["tab10"]
    for ax, (name, x) in zip(axes, draws.items()):
        ranks = rankdata(x.ravel()).reshape(x.shape)
        edges = np.linspace(0.5, x.size + 0.5, bins + 1)
        for c in range(x.shape[0]):
            counts, _ = np.histogram(ranks[c], edges)
            ax.stairs(counts, edges, color=colors(c % 10), lw=1.1, label=f"chain {c}")
        ax.axhline(x.shape[1] / bins, color="0.4", ls="--", lw=0.8)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("rank (all chains)", fontsize=7)
    return fig


def save_trace_rank(fit, out_dir, dpi: int = 150) -> dict[str, Path]:
    """Write ``trace.png`` and ``rank.png`` (the hyperparameters of a fit) into ``out_dir``."""
    out = {}
    for name, make in (("trace", trace_plot), ("rank", rank_plot)):
        out[name] = save_figure(make(fit), Path(out_dir) / f"{name}.png", dpi=dpi)
    return out
