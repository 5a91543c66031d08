"""Calibration of PIPs: reliability tables, ECE and the Brier decomposition, pooled per cell.

Calibration pools every group of every usable replicate of a cell. ``ece`` uses equal-width
PIP bins, ``ece_mass`` equal-mass (quantile) bins: sum_k (n_k / N) |mean pip_k - share
true_k|. ECE is positive even for a perfectly calibrated forecaster; ``ece_null`` is its
approximate expected value under perfect calibration, sqrt(2/pi) sum_k sqrt(sum_{i in k}
p_i (1 - p_i)) / N, the reference to compare with. ``brier`` is the mean per-replicate Brier
score; ``brier_reliability`` - ``brier_resolution`` + ``brier_uncertainty`` is Murphy's
decomposition of the pooled score on the equal-width bins (exact up to the within-bin
spread of the PIPs). Pooled calibration statistics get jackknife (leave-one-replicate-out)
MCSEs.

"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .classification import pr_curve, roc_curve
from .fits import _crg, cell_factors, factor_levels, usable_fits
from .mcse import _mean_mcse, _nanmean_last


# ============================================================================ calibration
def _uniform_edges(n_bins: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, n_bins + 1)


def _mass_edges(p: np.ndarray, n_bins: int) -> np.ndarray:
    p = p[np.isfinite(p)]
    if p.size == 0:
        return _uniform_edges(1)
    inner = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.r_[0.0, inner[(inner > 0) & (inner < 1)], 1.0]


def _bin_index(p: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin k holds edges[k] <= p < edges[k+1]; the last bin is closed; -1 for NaN."""
    idx = np.searchsorted(edges[1:-1], p, side="right")
    return np.where(np.isfinite(p), idx, -1)


def _bin_stats(pip: np.ndarray, y: np.ndarray, idx: np.ndarray, n_bins: int) -> np.ndarray:
    """Additive per-bin statistics over the last axis: [..., k, (n, sum p, sum y, sum p(1-p))]."""
    out = np.zeros(pip.shape[:-1] + (n_bins, 4))
    ok = np.isfinite(pip) & np.isfinite(y) & (idx >= 0)
    p0 = np.where(ok, pip, 0.0)
    y0 = np.where(ok, y, 0.0)
    for k in range(n_bins):
        m = ok & (idx == k)
        out[..., k, 0] = m.sum(-1)
        out[..., k, 1] = np.where(m, p0, 0.0).sum(-1)
        out[..., k, 2] = np.where(m, y0, 0.0).sum(-1)
        out[..., k, 3] = np.where(m, p0 * (1 - p0), 0.0).sum(-1)
    return out


def _calib_from_stats(st: np.ndarray, sse: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """ECE, its null expectation and Murphy's terms from pooled bin stats [..., k, 4]."""
    n, sp, sy, sv = st[..., 0], st[..., 1], st[..., 2], st[..., 3]
    N = n.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fbar = np.where(n > 0, sp / np.where(n > 0, n, 1), 0.0)
        obar_k = np.where(n > 0, sy / np.where(n > 0, n, 1), 0.0)
        obar = sy.sum(-1) / N
        ece = np.sum(n * np.abs(fbar - obar_k), -1) / N
        ece_null = math.sqrt(2 / math.pi) * np.sum(np.sqrt(sv), -1) / N
        rel = np.sum(n * (fbar - obar_k) ** 2, -1) / N
        res = np.sum(n * (obar_k - obar[..., None]) ** 2, -1) / N
        unc = obar * (1 - obar)
    out = {"ece": ece, "ece_null": ece_null, "brier_reliability": rel, "brier_resolution": res, "brier_uncertainty": unc}
    return {k: np.where(N > 0, v, np.nan) for k, v in out.items()}


def _jackknife(stats: np.ndarray, use: np.ndarray, fn) -> tuple[dict, dict]:
    """Pooled statistics per cell and their leave-one-replicate-out jackknife SEs.

    ``stats``: additive per-replicate statistics [cell, replicate, ...]; ``use``: [cell, rep];
    ``fn`` maps pooled statistics [..., ...] to a dict of [...] arrays.
    """
    st = np.where(use.reshape(use.shape + (1,) * (stats.ndim - 2)), stats, 0.0)
    total = st.sum(1)
    est = fn(total)
    loo = fn(total[:, None] - st)  # [cell, replicate]
    R = use.sum(1)
    se = {}
    for k, v in est.items():
        lv = np.where(use, loo[k], np.nan)
        fin = np.isfinite(lv)
        mean = np.where(fin, lv, 0.0).sum(1) / np.maximum(fin.sum(1), 1)
        dev = np.where(use & np.isfinite(lv), (lv - mean[:, None]) ** 2, 0.0)
        bad = (use & ~np.isfinite(lv)).any(1)
        s = np.sqrt((R - 1) / np.maximum(R, 1) * dev.sum(1))
        se[k] = np.where((R >= 2) & ~bad & np.isfinite(v), s, np.nan)
    return est, se


def calibration_stats(ds: xr.Dataset, n_bins: int = 10, converged_only: bool = False) -> dict[str, np.ndarray]:
    """Per-cell calibration: ``brier`` (mean per replicate), ``ece`` (equal width),
    ``ece_mass`` (equal mass), ``ece_null`` and Murphy's terms, each with ``_mcse``."""
    pip = _crg(ds, "pip")
    y = _crg(ds, "delta_true")
    use = usable_fits(ds, converged_only)
    ok = np.isfinite(pip) & np.isfinite(y) & use[..., None]
    pip = np.where(ok, pip, np.nan)
    y = np.where(ok, y, np.nan)
    out: dict[str, np.ndarray] = {}

    brier_r = np.where(use, _nanmean_last(np.where(ok, (pip - y) ** 2, np.nan)), np.nan)
    out["brier"], out["brier_mcse"], _ = _mean_mcse(brier_r)

    edges = _uniform_edges(n_bins)
    st = _bin_stats(pip, y, _bin_index(pip, edges), n_bins)
    est, se = _jackknife(st, use, _calib_from_stats)
    for k in ("ece", "ece_null", "brier_reliability", "brier_resolution", "brier_uncertainty"):
        out[k], out[f"{k}_mcse"] = est[k], se[k]

    idx = np.full(pip.shape, -1)
    for c in range(pip.shape[0]):
        e = _mass_edges(pip[c].ravel(), n_bins)
        idx[c] = _bin_index(pip[c], e)
    st = _bin_stats(pip, y, idx, n_bins)
    est, se = _jackknife(st, use, lambda s: {"ece": _calib_from_stats(s)["ece"]})
    out["ece_mass"], out["ece_mass_mcse"] = est["ece"], se["ece"]
    return out


def _cell_keys(ds: xr.Dataset, by: Sequence[str] | None):
    """Group cells: ``by=None`` -> one group per cell (keyed by cell_id, cell_label and the
    factors); else by the values of the named cell coordinates, in factor-level order
    (``[]`` pools every cell). Returns (key names, [(key values, cell indices), ...])."""
    if by is None:
        names = [n for n in ("cell_id", "cell_label") if n in ds.coords] + cell_factors(ds)
        vals = [np.asarray(ds[n].values) for n in names]
        return names, [(tuple(_py(v[c]) for v in vals), [c]) for c in range(ds.sizes["cell"])]
    names = list(by)
    for n in names:
        if n not in ds.coords:
            raise KeyError(f"{n!r} is not a cell coordinate; use one of {cell_factors(ds)}")
    vals = [np.asarray(ds[n].values) for n in names]
    groups: dict[tuple, list[int]] = {}
    for c in range(ds.sizes["cell"]):
        groups.setdefault(tuple(_py(v[c]) for v in vals), []).append(c)
    orders = [factor_levels(ds, n) for n in names]

    def sort_key(item):
        return tuple(o.index(k) if k in o else len(o) for o, k in zip(orders, item[0]))

    return names, sorted(groups.items(), key=sort_key)


def _py(v):
    return v.item() if hasattr(v, "item") else v


def _pooled_groups(ds: xr.Dataset, by: Sequence[str] | None, converged_only: bool):
    """Key names and an iterator of (key values, PIPs, truths) per ``_cell_keys`` group: the
    usable fits' PIPs and true inconsistency flags of the group's cells, flattened."""
    pip = _crg(ds, "pip")
    y = _crg(ds, "delta_true")
    use = usable_fits(ds, converged_only)
    names, groups = _cell_keys(ds, by)
    pooled = ((key, pip[cells][use[cells]].ravel(), y[cells][use[cells]].ravel()) for key, cells in groups)
    return names, pooled


def reliability_table(
    ds: xr.Dataset,
    n_bins: int = 10,
    strategy: str = "uniform",
    by: Sequence[str] | None = None,
    converged_only: bool = False,
) -> pd.DataFrame:
    """Reliability table: PIPs of every usable fit pooled within groups of cells (``by``
    coordinates; ``None`` = per cell; ``[]`` = all cells), binned (``"uniform"`` equal width
    or ``"quantile"`` equal mass). One row per non-empty bin: ``bin, bin_lo, bin_hi, n,
    mean_pip, observed`` (share truly inconsistent), ``se`` (binomial sqrt(o(1-o)/n)) and
    ``expected_se`` (sqrt(mean_pip(1-mean_pip)/n), the band for perfect calibration)."""
    if strategy not in ("uniform", "quantile"):
        raise ValueError("strategy must be 'uniform' or 'quantile'")
    names, pooled = _pooled_groups(ds, by, converged_only)
    rows = []
    for key, p, t in pooled:
        ok = np.isfinite(p) & np.isfinite(t)
        p, t = p[ok], t[ok]
        edges = _uniform_edges(n_bins) if strategy == "uniform" else _mass_edges(p, n_bins)
        idx = _bin_index(p, edges)
        for k in range(len(edges) - 1):
            m = idx == k
            n = int(m.sum())
            if n == 0:
                continue
            fbar, obar = float(p[m].mean()), float(t[m].mean())
            rows.append(
                dict(zip(names, key))
                | {
                    "bin": k,
                    "bin_lo": float(edges[k]),
                    "bin_hi": float(edges[k + 1]),
                    "n": n,
                    "mean_pip": fbar,
                    "observed": obar,
                    "se": math.sqrt(obar * (1 - obar) / n),
                    "expected_se": math.sqrt(fbar * (1 - fbar) / n),
                }
            )
    cols = names + ["bin", "bin_lo", "bin_hi", "n", "mean_pip", "observed", "se", "expected_se"]
    return pd.DataFrame(rows, columns=cols)


def pooled_curves(
    ds: xr.Dataset, kind: str = "roc", by: Sequence[str] | None = None, converged_only: bool = False
) -> pd.DataFrame:
    """ROC (``kind="roc"``: columns fpr, tpr, threshold) or precision-recall (``"pr"``:
    recall, precision, threshold) curves of the PIPs pooled over replicates and the cells of
    each ``by`` group (``None`` = per cell)."""
    if kind not in ("roc", "pr"):
        raise ValueError("kind must be 'roc' or 'pr'")
    names, pooled = _pooled_groups(ds, by, converged_only)
    frames = []
    for key, p, t in pooled:
        if kind == "roc":
            a, b, thr = roc_curve(p, t)
            cols = {"fpr": a, "tpr": b, "threshold": thr}
        else:
            a, b, thr = pr_curve(p, t)
            cols = {"recall": a, "precision": b, "threshold": thr}
        f = pd.DataFrame(cols)
        for n, v in zip(names, key):
            f[n] = v
        frames.append(f)
    if not frames:
        return pd.DataFrame(columns=names + list(("fpr", "tpr") if kind == "roc" else ("recall", "precision")) + ["threshold"])
    out = pd.concat(frames, ignore_index=True)
    return out[names + [c for c in out.columns if c not in names]]


