"""Monte Carlo standard errors of simulation-study summaries (replicates are the independent units)."""

from __future__ import annotations

import math

import numpy as np


# ============================================================================ MCSE helpers
def mcse_proportion(p, n) -> np.ndarray:
    """MCSE of a proportion estimated from ``n`` independent replicates: sqrt(p(1-p)/n)."""
    p = np.asarray(p, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, np.sqrt(np.clip(p * (1.0 - p), 0.0, None) / n), np.nan)


def mcse_mean(x, axis=-1) -> np.ndarray:
    """MCSE of a mean of independent replicates: SD / sqrt(R), NaNs ignored (NaN if R < 2)."""
    x = np.asarray(x, dtype=float)
    n = np.sum(np.isfinite(x), axis=axis)
    sd = _nanstd(x, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n >= 2, sd / np.sqrt(np.maximum(n, 1)), np.nan)


def replicates_needed(target_mcse: float, p: float | None = None, sd: float | None = None) -> int:
    """Replicates R needed for a Monte Carlo SE of at most ``target_mcse``.

    For a proportion ``p`` (default 0.5, the worst case): R = p(1-p)/target^2; for a mean with
    replicate SD ``sd``: R = sd^2/target^2. E.g. ``replicates_needed(0.01)`` = 2500.
    """
    if not (target_mcse > 0):
        raise ValueError("target_mcse must be positive")
    if sd is not None:
        if p is not None:
            raise ValueError("give p (a proportion) or sd (a mean), not both")
        var = float(sd) ** 2
    else:
        p = 0.5 if p is None else float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must lie in [0, 1]")
        var = p * (1.0 - p)
    return max(1, math.ceil(var / target_mcse**2 - 1e-9))


def _nanstd(x: np.ndarray, axis=-1) -> np.ndarray:
    n = np.sum(np.isfinite(x), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(x, axis=axis) / np.where(n > 0, n, 1)
        dev = np.where(np.isfinite(x), x - np.expand_dims(mean, axis), 0.0)
        var = np.sum(dev**2, axis=axis) / np.where(n > 1, n - 1, 1)
    return np.where(n >= 2, np.sqrt(var), np.nan)


def _nanmean_last(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the finite entries; NaN (no warning) when there are none."""
    fin = np.isfinite(x)
    n = fin.sum(-1)
    return np.where(n > 0, np.where(fin, x, 0.0).sum(-1) / np.maximum(n, 1), np.nan)


def _mean_mcse(x: np.ndarray, proportion: bool = False):
    """Cell mean over replicates (last axis) of finite entries, its MCSE and count."""
    x = np.asarray(x, dtype=float)
    n = np.sum(np.isfinite(x), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(x, axis=-1) / np.where(n > 0, n, 1), np.nan)
    se = mcse_proportion(mean, n) if proportion else mcse_mean(x)
    return mean, se, n


def _ratio_pooled(num: np.ndarray, den: np.ndarray):
    """Pooled ratio sum(num)/sum(den) over replicates (last axis; NaN = unused) and its
    ratio-estimator MCSE (NaN with fewer than 2 replicates)."""
    ok = np.isfinite(num) & np.isfinite(den)
    num = np.where(ok, num, 0.0)
    den = np.where(ok, den, 0.0)
    r = ok.sum(-1)
    sn, sd = num.sum(-1), den.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(sd > 0, sn / np.where(sd > 0, sd, 1), np.nan)
        resid = np.where(ok, num - ratio[..., None] * den, 0.0)
        dbar = sd / np.maximum(r, 1)
        se = np.sqrt((resid**2).sum(-1) / np.maximum(r * (r - 1), 1)) / dbar
    se = np.where((r >= 2) & (sd > 0), se, np.nan)
    return ratio, se


