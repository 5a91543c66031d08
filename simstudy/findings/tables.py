"""Pure tables and sentences of FINDINGS.md, from the per-cell summaries of ``simstudy.evaluate``.

A group of cells (the cells at given factor levels) is summarised as in
:func:`simstudy.evaluate.marginal`: the equal-weight mean of the cell values where defined,
``MCSE = sqrt(sum_k mcse_k^2) / k`` (independent cells), the number of cells ``k`` and the
fits it rests on (sum of the cells' usable fits ``n_used``). Two values differ "beyond Monte
Carlo error" when ``|a - b| > 2 sqrt(se_a^2 + se_b^2)``. Every sentence takes its numbers
*and* its direction words from these values; nothing is hard-coded.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import xarray as xr

from ..evaluate.fits import factor_levels
from ..evaluate.report import _digits, _f

#: marker ending every line whose numbers are wall-clock measurements (masked when comparing reruns)
TIMING = "<!-- timing -->"


# ----------------------------------------------------------------------------- numbers
def pm(v: float, se: float | None = None) -> str:
    """``0.041 ± 0.005``: decimals follow the MCSE's first significant digit; ``n/a`` if undefined."""
    if v is None or not np.isfinite(v):
        return "n/a"
    if se is None or not np.isfinite(se):
        return _f(v, 3)
    d = _digits(se)
    return f"{_f(v, d)} ± {_f(se, d)}"


def differs(a: float, sa: float, b: float, sb: float) -> bool:
    """``|a - b| > 2 sqrt(sa^2 + sb^2)`` (False when anything is undefined)."""
    vals = np.array([a, sa, b, sb], float)
    return bool(np.isfinite(vals).all() and abs(a - b) > 2 * math.hypot(sa, sb))


def compare_word(a: float, sa: float, b: float, sb: float, more: str = "higher than", less: str = "lower than",
                 same: str = "within Monte Carlo error of") -> str:
    """How ``a`` relates to ``b``: ``more`` / ``less`` when they differ beyond 2 MCSE, else ``same``."""
    if not differs(a, sa, b, sb):
        return same
    return more if a > b else less


def ratio_text(a: float, b: float) -> str:
    """``a / b`` as "2.3 times" (``n/a`` when undefined or b = 0)."""
    if not (np.isfinite(a) and np.isfinite(b)) or b == 0:
        return "n/a"
    return f"{a / b:.1f} times"


# ----------------------------------------------------------------------------- groups of cells
def _mask(summary: xr.Dataset, where: dict | None) -> np.ndarray:
    m = np.ones(summary.sizes["cell"], bool)
    for k, v in (where or {}).items():
        levels = v if isinstance(v, (list, tuple)) else [v]
        m &= np.array([x in levels for x in summary[k].values.tolist()])
    return m


def group_mean(summary: xr.Dataset, metric: str, mask: np.ndarray) -> tuple[float, float, int]:
    """(mean, MCSE, cells with the metric defined) of ``metric`` over the cells in ``mask``."""
    if metric not in summary:
        return float("nan"), float("nan"), 0
    v = np.asarray(summary[metric].values, float)[mask]
    se = (np.asarray(summary[f"{metric}_mcse"].values, float)[mask] if f"{metric}_mcse" in summary
          else np.full(v.shape, np.nan))
    ok = np.isfinite(v)
    k = int(ok.sum())
    if k == 0:
        return float("nan"), float("nan"), 0
    s = se[ok]
    return float(v[ok].mean()), float(np.sqrt(np.sum(s**2)) / k) if np.isfinite(s).all() else float("nan"), k


def grouped(summary: xr.Dataset, by: list[str], metrics: list[str], where: dict | None = None) -> pd.DataFrame:
    """One row per combination of the levels of ``by`` (design order) among the cells matching
    ``where`` ({factor: level(s)}): each metric's group mean and ``<metric>_mcse``, ``cells``
    (cells in the group) and ``fits`` (their usable fits). Empty combinations are left out."""
    base = _mask(summary, where)
    levels = [factor_levels(summary, f) for f in by]
    rows = []
    for combo in itertools.product(*levels):
        m = base & _mask(summary, dict(zip(by, [[c] for c in combo])))
        if not m.any():
            continue
        row = dict(zip(by, combo))
        for metric in metrics:
            row[metric], row[f"{metric}_mcse"], _ = group_mean(summary, metric, m)
        row["cells"] = int(m.sum())
        row["fits"] = int(np.asarray(summary["n_used"].values)[m].sum())
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, *[c for m in metrics for c in (m, f"{m}_mcse")], "cells", "fits"])


def formatted(frame: pd.DataFrame, by: list[str], metrics: dict[str, str], names: dict[str, str] | None = None
              ) -> pd.DataFrame:
    """``grouped``'s frame for Markdown: factor columns as written, each metric ``v ± MCSE``
    (``metrics``: column -> header), then cells and fits."""
    names = names or {}
    out = {names.get(f, f): [_level(v) for v in frame[f]] for f in by}
    for m, head in metrics.items():
        out[head] = [pm(v, s) for v, s in zip(frame[m], frame[f"{m}_mcse"])]
    out["cells"] = frame["cells"].tolist()
    out["fits"] = frame["fits"].tolist()
    return pd.DataFrame(out)


def _level(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def row_at(frame: pd.DataFrame, **levels) -> pd.Series | None:
    """The row of ``frame`` at the given factor levels (None when absent)."""
    m = np.ones(len(frame), bool)
    for k, v in levels.items():
        m &= np.array([x == v for x in frame[k].tolist()])
    return frame[m].iloc[0] if m.any() else None


def extreme(frame: pd.DataFrame, metric: str, largest: bool = True) -> pd.Series | None:
    """The row with the largest (smallest) defined ``metric``."""
    f = frame[np.isfinite(frame[metric].to_numpy(float))]
    if f.empty:
        return None
    return f.loc[f[metric].idxmax() if largest else f[metric].idxmin()]


def v(row: pd.Series | None, metric: str) -> str:
    """``pm`` of ``metric`` in ``row`` (``n/a`` for a missing row)."""
    if row is None:
        return "n/a"
    return pm(float(row[metric]), float(row[f"{metric}_mcse"]))


def vals(row: pd.Series | None, metric: str) -> tuple[float, float]:
    if row is None:
        return float("nan"), float("nan")
    return float(row[metric]), float(row[f"{metric}_mcse"])


# ----------------------------------------------------------------------------- cost
def core_seconds(ds: xr.Dataset, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: (done fits, core-seconds) of a store. Core-seconds = sampling seconds of every
    done fit + each block's compile seconds (stored per fit, the same for a block's fits: the
    largest in each block of ``block_size`` replicates is counted once) + every comparator's
    ``method_s`` except the SS-MELSM's (its sampling share, already counted)."""
    done = np.asarray(ds["done"].transpose("cell", "replicate").values, bool)
    samp = np.nan_to_num(np.asarray(ds["sample_s"].transpose("cell", "replicate").values, float))
    comp = np.nan_to_num(np.asarray(ds["compile_s"].transpose("cell", "replicate").values, float))
    R = done.shape[1]
    secs = np.where(done, samp, 0.0).sum(1)
    for b0 in range(0, R, block_size):
        secs += np.where(done[:, b0:b0 + block_size], comp[:, b0:b0 + block_size], 0.0).max(1)
    if "method_s" in ds and "method" in ds.dims:
        others = [m for m in ds["method"].values.tolist() if m != "ss_melsm"]
        if others:
            ms = np.nan_to_num(np.asarray(ds["method_s"].sel(method=others).transpose("cell", "replicate", "method")
                                          .values, float)).sum(-1)
            secs += np.where(done, ms, 0.0).sum(1)
    return done.sum(1), secs
