"""Metrics per method (the SS-MELSM and the comparators of ``simstudy.methods``), and paired
comparisons between methods.

Every method flags the groups of the same data sets (one store record per replicate), so a
difference between two methods is estimated per replicate and its Monte Carlo SE is the
*paired* one: for per-replicate rates ``r_a``, ``r_b`` of a cell, ``diff = mean(r_a - r_b)``
over the replicates where both are defined, ``MCSE = sd(r_a - r_b) / sqrt(R)``. Averaged over
``k`` cells (equal weights, as :func:`simstudy.evaluate.marginal`), ``MCSE = sqrt(sum mcse^2) / k``.

The SS-MELSM is classified from ``pip`` with the threshold / rule asked for (its stored flag is
``pip >= 0.75``); a comparator from its stored ``flag`` (unscored groups, NaN, count as not
flagged) and ranked by its stored ``score`` (``|Z|`` for the HLM rules). A store made before the
comparators (no ``method`` dim) is the SS-MELSM alone (:func:`method_view`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .classification import classification, confusion, replicate_auc, replicate_rates
from .fits import factor_levels, usable_fits
from .mcse import _mean_mcse, mcse_mean

__all__ = ["METHOD_LABELS", "store_methods", "method_view", "summarize_methods", "replicate_method_rates",
           "paired_difference", "paired_rates", "overall_by_method", "compare_methods_sentences", "methods_table"]

METHOD_LABELS = {
    "ss_melsm": "SS-MELSM",
    "hlm": "HLM (identity-line envelope)",
    "hlm_z": "HLM (|Z| > 1.96)",
    "hlm_bh": "HLM (BH 5%)",
    "hlm_qq": "HLM (QQ envelope, the published rule)",
}
_SS_FLAG_PIP = 0.75  # simstudy.study.scoring.SS_MELSM_FLAG_PIP (no import: evaluate reads stores only)


def store_methods(ds: xr.Dataset) -> list[str]:
    """The store's methods (``["ss_melsm"]`` for a store without a ``method`` dim)."""
    if "method" in ds.dims and "flag" in ds:
        return [str(m) for m in ds["method"].values]
    return ["ss_melsm"]


def method_view(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with ``flag`` and ``score`` (cell, replicate, method, group); for a store
    without them (made before the comparators) the SS-MELSM's: score = pip, flag = pip >= 0.75."""
    if "flag" in ds and "method" in ds.dims:
        return ds
    pip = ds["pip"]
    flag = xr.where(np.isfinite(pip), (pip >= _SS_FLAG_PIP).astype(float), np.nan)
    return ds.assign(flag=flag.expand_dims(method=["ss_melsm"], axis=2),
                     score=pip.expand_dims(method=["ss_melsm"], axis=2))


def _crmg(ds: xr.Dataset, name: str, method: str) -> np.ndarray:
    return np.asarray(ds[name].sel({"method": method}).transpose("cell", "replicate", "group").values, dtype=float)


def _method_inputs(ds: xr.Dataset, method: str):
    """(flags, scores) for :func:`confusion` / :func:`replicate_auc`: None for the SS-MELSM (PIP rule)."""
    if method == "ss_melsm":
        return None, None
    return _crmg(ds, "flag", method), _crmg(ds, "score", method)


def replicate_method_rates(ds: xr.Dataset, method: str, threshold: float = 0.75, rule: str = "pip",
                           bf: float = 3.0, converged_only: bool = False) -> dict[str, np.ndarray]:
    """Per-replicate rates (cell, replicate) of one method (:func:`replicate_rates`) plus
    ``roc_auc`` and ``pr_auc``."""
    ds = method_view(ds)
    flags, scores = _method_inputs(ds, method)
    rates = replicate_rates(confusion(ds, threshold, rule, bf, converged_only, flags=flags))
    rates.update(replicate_auc(ds, converged_only, scores=scores))
    return rates


def summarize_methods(ds: xr.Dataset, threshold: float = 0.75, rule: str = "pip", bf: float = 3.0,
                      converged_only: bool = False) -> xr.Dataset:
    """Classification metrics (:func:`classification`: ``<m>``, ``<m>_mcse``, pooled variants,
    counts), ``roc_auc``/``pr_auc`` (+ MCSE) and ``method_s`` (mean seconds per data set, + MCSE)
    with dims ``(method, cell)``, the store's cell coordinates kept."""
    ds = method_view(ds)
    methods = store_methods(ds)
    per: dict[str, list[np.ndarray]] = {}
    for m in methods:
        flags, scores = _method_inputs(ds, m)
        out = classification(ds, threshold, rule, bf, converged_only, flags=flags)
        for k, v in replicate_auc(ds, converged_only, scores=scores).items():
            out[k], out[f"{k}_mcse"], _ = _mean_mcse(v)
        if "method_s" in ds:
            secs = np.asarray(ds["method_s"].sel({"method": m}).transpose("cell", "replicate").values, dtype=float)
            secs = np.where(usable_fits(ds, converged_only), secs, np.nan)
            out["method_s"], out["method_s_mcse"], _ = _mean_mcse(secs)
        for k, v in out.items():
            per.setdefault(k, []).append(np.asarray(v))
    coords = {k: v for k, v in ds.coords.items() if v.dims == ("cell",)}
    coords["method"] = ("method", np.array(methods, dtype=str))
    out_ds = xr.Dataset({k: (("method", "cell"), np.stack(v)) for k, v in per.items()}, coords=coords)
    out_ds.attrs.update({"rule": rule, "threshold": float(threshold), "bf": float(bf),
                         "converged_only": int(bool(converged_only))})
    return out_ds


def paired_difference(ds: xr.Dataset, metric: str, a: str, b: str, threshold: float = 0.75, rule: str = "pip",
                      bf: float = 3.0, converged_only: bool = False) -> dict[str, np.ndarray]:
    """Per cell: ``diff`` = mean over replicates of ``metric_a - metric_b`` (both defined),
    its paired MCSE ``sd(diff) / sqrt(R)`` and ``n`` (replicates used)."""
    ra = replicate_method_rates(ds, a, threshold, rule, bf, converged_only)[metric]
    rb = replicate_method_rates(ds, b, threshold, rule, bf, converged_only)[metric]
    return paired_rates(ra, rb)


def paired_rates(ra, rb) -> dict[str, np.ndarray]:
    """The paired difference of two arrays of per-replicate values on the same data sets
    (replicates on the last axis): ``diff`` = mean of ``ra - rb`` over the replicates where
    both are defined, its paired MCSE ``sd(ra - rb) / sqrt(n)`` and ``n``. Used for method
    differences (:func:`paired_difference`) and setting differences
    (:func:`simstudy.evaluate.paired.setting_difference`)."""
    ra, rb = np.asarray(ra, dtype=float), np.asarray(rb, dtype=float)
    d = np.where(np.isfinite(ra) & np.isfinite(rb), ra - rb, np.nan)
    mean, _, n = _mean_mcse(d)
    return {"diff": mean, "mcse": mcse_mean(d), "n": n}


def _average(values: np.ndarray, mcse: np.ndarray) -> tuple[float, float, int]:
    ok = np.isfinite(values)
    k = int(ok.sum())
    if k == 0:
        return float("nan"), float("nan"), 0
    se = mcse[ok]
    return float(values[ok].mean()), float(np.sqrt(np.sum(se**2)) / k) if np.isfinite(se).all() else float("nan"), k


def _cell_mask(summary: xr.Dataset, cells: dict | None) -> np.ndarray:
    mask = np.ones(summary.sizes["cell"], bool)
    for name, levels in (cells or {}).items():
        levels = levels if isinstance(levels, (list, tuple)) else [levels]
        vals = summary[name].values.tolist()
        mask &= np.array([v in levels for v in vals])
    return mask


def overall_by_method(summary: xr.Dataset, metrics=("tpr", "fpr", "precision", "fwer"), cells: dict | None = None,
                      by: str | None = None) -> pd.DataFrame:
    """Equal-weight average over cells (``cells``: ``{factor: level(s)}`` to keep; ``by``: one
    row per level of a factor) of each metric per method, MCSE ``sqrt(sum mcse^2)/k``."""
    rows = []
    base = _cell_mask(summary, cells)
    groups = [(None, base)] if by is None else [
        (lev, base & np.array([v == lev for v in summary[by].values.tolist()])) for lev in factor_levels(summary, by)]
    for lev, mask in groups:
        for m in summary["method"].values.tolist():
            row = {"method": m} if by is None else {by: lev, "method": m}
            for metric in metrics:
                v = np.asarray(summary[metric].sel({"method": m}).values, float)[mask]
                se = np.asarray(summary[f"{metric}_mcse"].sel({"method": m}).values, float)[mask]
                row[metric], row[f"{metric}_mcse"], row[f"{metric}_cells"] = _average(v, se)
            rows.append(row)
    return pd.DataFrame(rows)


_NAMES = {"tpr": "TPR", "fpr": "FPR", "precision": "precision", "fwer": "P(at least one false flag)",
          "f1": "F1", "mcc": "MCC", "roc_auc": "ROC AUC", "pr_auc": "PR AUC", "fdr": "FDR"}


def _ratio_words(a: float, b: float) -> str:
    """How ``a`` relates to ``b``: "a third of", "half", "2.1 times", ... (``b`` follows)."""
    if not (a > 0 and b > 0):
        return "differs from"
    r = a / b
    for frac, word in ((0.25, "a quarter of"), (1 / 3, "a third of"), (0.5, "half")):
        if abs(r - frac) < 0.1 * frac:
            return word
    return f"{r:.2f} times"


def compare_methods_sentences(ds: xr.Dataset, summary: xr.Dataset | None = None, reference: str = "ss_melsm",
                              metrics=("tpr", "fpr", "precision", "fwer"), threshold: float = 0.75, rule: str = "pip",
                              bf: float = 3.0, converged_only: bool = False, cells: dict | None = None) -> list[str]:
    """Sentences comparing ``reference`` with every other method of the store, averaged over the
    cells (``cells`` to restrict), one per metric **only where the paired difference exceeds 2
    MCSE**; e.g. "The SS-MELSM's FPR (0.019, MCSE 0.002) is a third of HLM (QQ envelope)'s
    (0.057, MCSE 0.004); paired difference -0.038 (MCSE 0.003)"."""
    methods = store_methods(ds)
    if reference not in methods or len(methods) < 2:
        return []
    summary = summary if summary is not None else summarize_methods(ds, threshold, rule, bf, converged_only)
    mask = _cell_mask(summary, cells)
    out = []
    for other in methods:
        if other == reference:
            continue
        for metric in metrics:
            pdiff = paired_difference(ds, metric, reference, other, threshold, rule, bf, converged_only)
            d, se, k = _average(pdiff["diff"][mask], pdiff["mcse"][mask])
            if k == 0 or not np.isfinite(se) or abs(d) <= 2 * se:
                continue
            va, sa, _ = _average(np.asarray(summary[metric].sel({"method": reference}).values, float)[mask],
                                 np.asarray(summary[f"{metric}_mcse"].sel({"method": reference}).values, float)[mask])
            vb, sb, _ = _average(np.asarray(summary[metric].sel({"method": other}).values, float)[mask],
                                 np.asarray(summary[f"{metric}_mcse"].sel({"method": other}).values, float)[mask])
            rel = _ratio_words(va, vb)
            verb = rel if rel == "differs from" else f"is {rel}"
            la, lb = METHOD_LABELS.get(reference, reference), METHOD_LABELS.get(other, other)
            out.append(f"The {la}'s {_NAMES.get(metric, metric)} ({va:.3f}, MCSE {sa:.3f}) {verb} the {lb}'s "
                       f"({vb:.3f}, MCSE {sb:.3f}); paired difference {d:+.3f} (MCSE {se:.3f}, {k} cells).")
    return out


def methods_table(summary: xr.Dataset, metrics=("tpr", "fpr", "precision", "fwer", "roc_auc")) -> pd.DataFrame:
    """One row per method: each metric averaged over cells as ``value (MCSE)`` text."""
    df = overall_by_method(summary, metrics)
    rows = []
    for _, r in df.iterrows():
        row = {"method": METHOD_LABELS.get(r["method"], r["method"])}
        for m in metrics:
            row[_NAMES.get(m, m)] = "–" if not np.isfinite(r[m]) else f"{r[m]:.3f} ({r[f'{m}_mcse']:.3f})"
        rows.append(row)
    return pd.DataFrame(rows)
