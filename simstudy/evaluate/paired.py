"""Paired setting-vs-setting differences: two cells that differ only in model settings (pi,
SD priors, ...) fit the same data sets (store version 2: data seeds come from the cell's
``data_id``, the hash of its generator settings only), so the difference of a metric between
them is estimated per replicate and its Monte Carlo SE is the *paired* one,
``sd(r_a - r_b) / sqrt(R)`` (:func:`simstudy.evaluate.methods.paired_rates`, the same code as
the method differences). For a metric that is positively correlated between the two settings
across data sets (TPR, FPR, ... on the same data) it is smaller than the unpaired
``sqrt(se_a^2 + se_b^2)``, which the tables give beside it.

Stores made before data ids (version 1, no ``data_id`` coordinate) fitted every cell to its
own data sets: :func:`setting_pairs` refuses them rather than report a paired MCSE that
does not hold.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from .fits import cell_factors
from .mcse import _mean_mcse
from .methods import paired_rates, replicate_method_rates

__all__ = ["shares_data", "setting_pairs", "setting_difference", "cell_difference"]


def _same(x, y) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return x == y


def _values(ds, name: str) -> list:
    return np.asarray(ds[name].values).tolist()


def shares_data(ds: xr.Dataset) -> bool:
    """Whether the store records data ids (cells with equal ``data_id`` share data sets)."""
    return "data_id" in ds.coords and ds["data_id"].dims == ("cell",)


def setting_pairs(ds: xr.Dataset, factor: str, a, b) -> list[tuple[int, int]]:
    """``(i, j)`` cell positions where cell ``i`` has ``factor == a``, cell ``j`` has
    ``factor == b``, every other cell factor is equal and both fit the same data sets (equal
    ``data_id``). Raises ``ValueError`` for a store without data ids (version 1) or an unknown
    factor."""
    if not shares_data(ds):
        raise ValueError("this store has no data ids (store version 1): its cells were fitted to different data "
                         "sets, so setting differences cannot be paired; rerun the design into a new store")
    if factor not in ds.coords or ds[factor].dims != ("cell",):
        raise ValueError(f"{factor!r} is not a cell coordinate; use one of {cell_factors(ds)}")
    others = [f for f in cell_factors(ds) if f != factor]
    fac = _values(ds, factor)
    data = _values(ds, "data_id")
    rest = {f: _values(ds, f) for f in others}
    out = []
    for i in range(len(fac)):
        if not _same(fac[i], a):
            continue
        for j in range(len(fac)):
            if (j != i and _same(fac[j], b) and data[i] == data[j]
                    and all(_same(rest[f][i], rest[f][j]) for f in others)):
                out.append((i, j))
    return out


def setting_difference(ds: xr.Dataset, metric: str, factor: str, a, b, method: str = "ss_melsm",
                       threshold: float = 0.75, rule: str = "pip", bf: float = 3.0,
                       converged_only: bool = False) -> pd.DataFrame:
    """``metric`` at ``factor = a`` minus at ``factor = b`` for every pair of cells of
    :func:`setting_pairs` (same data sets, every other factor equal), for one ``method``.

    One row per pair: the other varying factors' values, ``a`` / ``a_mcse`` and ``b`` /
    ``b_mcse`` (each cell's mean over its replicates and MCSE ``sd / sqrt(R)``), ``diff`` (mean
    per-replicate difference over the replicates where both are defined), ``mcse`` (paired),
    ``mcse_unpaired`` (``sqrt(a_mcse^2 + b_mcse^2)``, what independent data sets would give)
    and ``n`` (replicates used)."""
    pairs = setting_pairs(ds, factor, a, b)
    rates = replicate_method_rates(ds, method, threshold, rule, bf, converged_only)
    if metric not in rates:
        raise ValueError(f"unknown metric {metric!r}; use one of {sorted(rates)}")
    r = rates[metric]
    varying = [f for f in cell_factors(ds) if f != factor and len({str(v) for v in _values(ds, f)}) > 1]
    rows = []
    for i, j in pairs:
        row = {f: _values(ds, f)[i] for f in varying}
        ma, sa, _ = _mean_mcse(r[i])
        mb, sb, _ = _mean_mcse(r[j])
        p = paired_rates(r[i], r[j])
        row.update({"method": method, "metric": metric, factor + "_a": a, factor + "_b": b,
                    "a": float(ma), "a_mcse": float(sa), "b": float(mb), "b_mcse": float(sb),
                    "diff": float(p["diff"]), "mcse": float(p["mcse"]),
                    "mcse_unpaired": float(np.sqrt(sa**2 + sb**2)), "n": int(p["n"])})
        rows.append(row)
    return pd.DataFrame(rows)


def cell_difference(ds: xr.Dataset, metric: str, i: int, j: int, method: str = "ss_melsm", rates=None,
                    threshold: float = 0.75, rule: str = "pip", bf: float = 3.0,
                    converged_only: bool = False) -> dict:
    """``metric`` of cell ``i`` minus cell ``j`` (positions along ``cell``): ``diff``, ``mcse``
    (paired when the two cells share data sets, else the unpaired ``sqrt(se_i^2 + se_j^2)``),
    ``paired`` and ``n``. ``rates``: :func:`replicate_method_rates` of ``method``, to reuse."""
    rates = rates if rates is not None else replicate_method_rates(ds, method, threshold, rule, bf, converged_only)
    r = rates[metric]
    paired = shares_data(ds) and int(ds["data_id"].values[i]) == int(ds["data_id"].values[j])
    if paired:
        p = paired_rates(r[i], r[j])
        return {"diff": float(p["diff"]), "mcse": float(p["mcse"]), "paired": True, "n": int(p["n"])}
    mi, si, ni = _mean_mcse(r[i])
    mj, sj, nj = _mean_mcse(r[j])
    return {"diff": float(mi - mj), "mcse": float(np.hypot(si, sj)), "paired": False, "n": int(min(ni, nj))}
