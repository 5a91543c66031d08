"""Performance metrics of a simulation study, computed from the results store.

Everything here is a pure function of an ``xarray.Dataset`` with the store's schema
(dims ``cell``, ``replicate``, ``group``; see ``simstudy.store``) and returns NumPy arrays,
``xarray`` objects or ``pandas`` frames. Every cell-level summary comes with its Monte
Carlo standard error (MCSE) in ``<metric>_mcse``.

Which fits count
----------------
A fit (one cell x replicate) is *usable* when its ``status`` is ``"ok"`` or
``"not_converged"`` (``converged_only=True``: only ``"ok"``). Failed fits (``"failed"``) and
fits not yet run (``""``) never enter a performance metric; they are counted
(``n_failed``, ``n_pending``). ``n_used`` is R, the number of usable replicates of a cell.

Classification (definitions)
----------------------------
A group is *flagged* when ``pip >= threshold``. ``rule="pip"`` uses one threshold (default
0.75) for every cell; ``rule="bf"`` flags when the Bayes factor ``BF10 >= bf`` (default 3),
i.e. ``pip >= bf pi / (1 - pi + bf pi)`` (``3 pi / (1 + 2 pi)`` for BF 3), with each cell's
own model ``pi``. Truth is ``delta_true`` (1 = inconsistent group = "positive").

Per replicate: TP, FP, FN, TN and

* ``tpr`` (sensitivity) = TP / (TP + FN): undefined (NaN) without truly inconsistent groups;
* ``fpr`` = FP / (FP + TN), ``tnr`` = 1 - fpr: undefined without consistent groups;
* ``precision`` = TP / (TP + FP): undefined when nothing is flagged;
* ``fdr`` = FP / max(TP + FP, 1): the Benjamini-Hochberg convention, 0 when nothing is
  flagged, so always defined (its cell mean is the FDR of multiple-testing theory; it is
  *not* 1 - precision when some replicates flag nothing);
* ``f1`` = 2TP / (2TP + FP + FN): undefined when there is nothing to find and nothing flagged;
* ``mcc`` (Matthews) = (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)): undefined when
  any margin is 0;
* ``fwer``: 1 if at least one consistent group is flagged (FP > 0), else 0 (defined when
  there is a consistent group): its cell mean is the family-wise error rate;
* ``tpr_more_variable`` / ``tpr_more_consistent``: TPR among inconsistent groups with
  ``t_true > 0`` / ``t_true < 0``.

The **primary cell value is the mean of the per-replicate rates** over the replicates where
the rate is defined (replicates are the independent units, so MCSE = SD / sqrt(R_defined));
``n_undefined_<metric>`` counts the usable replicates where it was not. Ratios also come
*pooled* over replicates, ``<metric>_pooled`` = sum(numerator) / sum(denominator), with the
ratio-estimator MCSE sqrt(sum_r (num_r - p den_r)^2 / (R (R-1))) / mean(den). With a fixed
number of inconsistent groups per replicate (``count_mode = "exact"``) pooled and mean TPR
coincide.

Threshold-free and calibration
------------------------------
``roc_auc`` is the Mann-Whitney probability that an inconsistent group has a higher PIP than
a consistent one (ties count 1/2); ``pr_auc`` is the average precision (step-wise area under
the precision-recall curve, as in scikit-learn). Both are per replicate, then averaged.

Calibration pools every group of every usable replicate of a cell. ``ece`` uses equal-width
PIP bins, ``ece_mass`` equal-mass (quantile) bins: sum_k (n_k / N) |mean pip_k - share
true_k|. ECE is positive even for a perfectly calibrated forecaster; ``ece_null`` is its
approximate expected value under perfect calibration, sqrt(2/pi) sum_k sqrt(sum_{i in k}
p_i (1 - p_i)) / N, the reference to compare with. ``brier`` is the mean per-replicate Brier
score; ``brier_reliability`` - ``brier_resolution`` + ``brier_uncertainty`` is Murphy's
decomposition of the pooled score on the equal-width bins (exact up to the within-bin
spread of the PIPs). Pooled calibration statistics get jackknife (leave-one-replicate-out)
MCSEs.

Estimation (Morris, White & Crowther 2019, Stat Med 38:2074)
------------------------------------------------------------
For ``tau_t, eta0, tau_u, rho, gamma0``: ``bias`` = mean(est - true), MCSE EmpSE/sqrt(R);
``empse`` = SD(est - true) (= SD(est) when the truth is fixed in a cell), MCSE
EmpSE/sqrt(2(R-1)); ``mse`` = mean((est - true)^2), MCSE sqrt(sum((e^2 - MSE)^2)/(R(R-1)));
``rmse`` = sqrt(MSE), MCSE(MSE)/(2 RMSE) (delta method); ``coverage`` of the 90% interval
[q05, q95], MCSE sqrt(C(1-C)/R).

Runtime and sampling quality
----------------------------
``sample_s``, ``compile_s``, ``total_s`` (seconds per fit), ``ess_per_s_tau_t`` (bulk ESS of
tau_t per sampling second) and ``ess_min_per_s``, shares of fits with R-hat > 1.01
(``share_rhat_high``) or any divergence (``share_divergent``); ``n_groups_eff`` and
``group_size_eff`` (J and mean n actually in the data) for scaling plots, and
:func:`runtime_scaling` for log-log exponents.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "PARAMS",
    "USABLE_STATUS",
    "RHAT_THRESHOLD",
    "CLASSIFICATION_METRICS",
    "mcse_proportion",
    "mcse_mean",
    "replicates_needed",
    "open_store",
    "design_info",
    "cell_factors",
    "varying_factors",
    "cell_pi",
    "cell_thresholds",
    "fit_status",
    "usable_fits",
    "fit_counts",
    "confusion",
    "replicate_rates",
    "roc_auc",
    "average_precision",
    "roc_curve",
    "pr_curve",
    "replicate_auc",
    "calibration_stats",
    "reliability_table",
    "pooled_curves",
    "estimation",
    "runtime",
    "runtime_scaling",
    "classification",
    "summarize",
    "summary_frame",
    "marginal",
    "summarize_cli",
]

#: hyperparameters with posterior summaries and generating values in the store
PARAMS = ("tau_t", "eta0", "tau_u", "rho", "gamma0")
#: fit statuses that count in performance metrics
USABLE_STATUS = ("ok", "not_converged")
#: R-hat above this marks a fit as not converged (as in ``simstudy.result.RHAT_MAX``)
RHAT_THRESHOLD = 1.01

#: per-replicate classification rates summarised per cell (mean of defined replicates)
CLASSIFICATION_METRICS = (
    "tpr",
    "fpr",
    "tnr",
    "precision",
    "fdr",
    "f1",
    "mcc",
    "fwer",
    "tpr_more_variable",
    "tpr_more_consistent",
)
_PROPORTION_METRICS = ("fwer",)  # 0/1 per replicate: MCSE sqrt(p(1-p)/R)

LONG_NAMES = {
    "tpr": "true positive rate (sensitivity)",
    "fpr": "false positive rate",
    "tnr": "true negative rate (specificity)",
    "precision": "precision (positive predictive value)",
    "fdr": "false discovery rate (0 when nothing is flagged)",
    "f1": "F1 score",
    "mcc": "Matthews correlation coefficient",
    "fwer": "probability of at least one false flag",
    "tpr_more_variable": "true positive rate, more variable groups (t > 0)",
    "tpr_more_consistent": "true positive rate, more consistent groups (t < 0)",
    "roc_auc": "area under the ROC curve",
    "pr_auc": "area under the precision-recall curve (average precision)",
    "brier": "Brier score",
    "brier_reliability": "Brier reliability (calibration) term",
    "brier_resolution": "Brier resolution term",
    "brier_uncertainty": "Brier uncertainty term",
    "ece": "expected calibration error, equal-width bins",
    "ece_mass": "expected calibration error, equal-mass bins",
    "ece_null": "expected ECE of a perfectly calibrated forecaster, equal-width bins",
    "prevalence": "share of truly inconsistent groups",
    "flagged": "share of groups flagged",
    "sample_s": "sampling time per fit",
    "compile_s": "compilation time per fit",
    "total_s": "compilation + sampling time per fit",
    "ess_per_s_tau_t": "bulk ESS of tau_t per sampling second",
    "ess_min_per_s": "smallest bulk ESS per sampling second",
    "share_rhat_high": "share of fits with R-hat > 1.01",
    "share_divergent": "share of fits with divergent transitions",
    "divergences_mean": "divergent transitions per fit",
    "n_groups_eff": "number of groups J in the data",
    "group_size_eff": "mean group size n in the data",
    "threshold": "PIP threshold for flagging",
    "model_pi": "model prior inclusion probability",
}
_UNITS = {"sample_s": "s", "compile_s": "s", "total_s": "s", "ess_per_s_tau_t": "1/s", "ess_min_per_s": "1/s"}


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


# ============================================================================ store access
def _as_str(a) -> np.ndarray:
    """Any array of statuses (unicode, bytes, object, StringDType) as a unicode array."""
    a = np.asarray(a)
    if a.dtype.kind == "S":
        return np.char.decode(a, "utf-8")
    if a.dtype.kind == "O":
        flat = [v.decode() if isinstance(v, bytes) else ("" if v is None or v != v else str(v)) for v in a.ravel()]
        return np.array(flat, dtype=str).reshape(a.shape) if flat else np.zeros(a.shape, dtype=str)
    return a.astype(str)


def _cr(ds: xr.Dataset, name: str) -> np.ndarray:
    """A per-fit variable as a float (cell, replicate) array (NaN if absent)."""
    if name not in ds:
        return np.full((ds.sizes["cell"], ds.sizes["replicate"]), np.nan)
    return np.asarray(ds[name].transpose("cell", "replicate").values, dtype=float)


def _crg(ds: xr.Dataset, name: str) -> np.ndarray:
    """A per-group variable as a float (cell, replicate, group) array (NaN if absent)."""
    if name not in ds:
        return np.full((ds.sizes["cell"], ds.sizes["replicate"], ds.sizes.get("group", 0)), np.nan)
    return np.asarray(ds[name].transpose("cell", "replicate", "group").values, dtype=float)


def open_store(store) -> xr.Dataset:
    """A results store (path) as a lazy Dataset; a Dataset is returned as is."""
    if isinstance(store, xr.Dataset):
        return store
    path = Path(store)
    if not path.exists():
        raise FileNotFoundError(f"no results store at {path}")
    try:
        from .store import open_results
    except ImportError:  # pragma: no cover - store module absent
        return xr.open_zarr(path, consolidated=False)
    return open_results(path)


def design_info(ds: xr.Dataset) -> dict:
    """The design dict stored in ``ds.attrs["design"]`` (``{}`` when absent or unreadable)."""
    raw = ds.attrs.get("design")
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, (str, bytes)):
        try:
            out = json.loads(raw)
            return out if isinstance(out, dict) else {}
        except ValueError:
            return {}
    return {}


def cell_factors(ds: xr.Dataset) -> list[str]:
    """Coordinates along ``cell`` that identify cells: the design's factors in file order,
    then other identity keys (from extra cells), then any other cell coordinate."""
    names = [
        k
        for k, v in ds.coords.items()
        if v.dims == ("cell",) and k not in ("cell", "cell_id", "cell_label")
    ]
    info = design_info(ds)
    order = list(info.get("factors", {})) + [c for c in info.get("coords", []) if c not in info.get("factors", {})]
    ranked = [k for k in order if k in names] + [k for k in names if k not in order]
    return ranked


def _levels(values: np.ndarray) -> list:
    """Distinct values in order of first appearance (sorted when all numeric)."""
    seen: list = []
    for v in values.tolist():
        if isinstance(v, float) and math.isnan(v):
            continue
        if v not in seen:
            seen.append(v)
    if seen and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in seen):
        seen = sorted(seen)
    return seen


def factor_levels(ds: xr.Dataset, name: str) -> list:
    """The levels of a cell coordinate: design order for factors, else sorted/first-seen."""
    info = design_info(ds)
    present = _levels(np.asarray(ds[name].values))
    declared = info.get("factors", {}).get(name)
    if declared:
        ordered = [v for v in declared if v in present]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            ordered = sorted(present)
        else:
            ordered += [v for v in present if v not in ordered]
        return ordered
    return present


def varying_factors(ds: xr.Dataset) -> list[str]:
    """Cell factors that take more than one value, in design order."""
    return [k for k in cell_factors(ds) if len(_levels(np.asarray(ds[k].values))) > 1]


def cell_pi(ds: xr.Dataset) -> xr.DataArray:
    """The model's prior inclusion probability per cell: the ``pi`` coordinate when it is a
    cell coordinate, else the design's fixed ``model.pi`` (default 0.5)."""
    if "pi" in ds.coords and ds["pi"].dims == ("cell",):
        vals = np.asarray(ds["pi"].values, dtype=float)
    else:
        pi = design_info(ds).get("model", {}).get("pi", 0.5)
        vals = np.full(ds.sizes["cell"], float(0.5 if pi is None else pi))
    return xr.DataArray(vals, dims="cell", name="model_pi")


def cell_thresholds(ds: xr.Dataset, threshold: float = 0.75, rule: str = "pip", bf: float = 3.0) -> np.ndarray:
    """PIP threshold per cell: ``threshold`` (rule "pip") or the PIP at which BF10 = ``bf``
    for the cell's pi (rule "bf"; 3 pi / (1 + 2 pi) for BF 3)."""
    from .priors import pip_threshold_for_bf

    if rule == "pip":
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        return np.full(ds.sizes["cell"], float(threshold))
    if rule == "bf":
        if not bf > 0:
            raise ValueError(f"bf must be positive, got {bf}")
        pi = cell_pi(ds).values
        return np.array([pip_threshold_for_bf(bf, p) for p in pi], dtype=float)
    raise ValueError(f"rule must be 'pip' or 'bf', got {rule!r}")


def fit_status(ds: xr.Dataset) -> np.ndarray:
    """Status strings per (cell, replicate); from ``done`` when there is no ``status``."""
    if "status" in ds:
        return _as_str(ds["status"].transpose("cell", "replicate").values)
    done = np.asarray(ds["done"].values, dtype=bool) if "done" in ds else np.ones((ds.sizes["cell"], ds.sizes["replicate"]), bool)
    return np.where(done, "ok", "")


def usable_fits(ds: xr.Dataset, converged_only: bool = False) -> np.ndarray:
    """Boolean (cell, replicate): fits that count in performance metrics."""
    ok = ("ok",) if converged_only else USABLE_STATUS
    return np.isin(fit_status(ds), ok)


def fit_counts(ds: xr.Dataset, converged_only: bool = False) -> dict[str, np.ndarray]:
    """Per cell: ``n_ok``, ``n_not_converged``, ``n_failed``, ``n_pending`` and ``n_used``."""
    st = fit_status(ds)
    return {
        "n_used": usable_fits(ds, converged_only).sum(-1),
        "n_ok": (st == "ok").sum(-1),
        "n_not_converged": (st == "not_converged").sum(-1),
        "n_failed": (st == "failed").sum(-1),
        "n_pending": (~np.isin(st, ("ok", "not_converged", "failed"))).sum(-1),
    }


# ============================================================================ classification
def confusion(
    ds: xr.Dataset,
    threshold: float = 0.75,
    rule: str = "pip",
    bf: float = 3.0,
    converged_only: bool = False,
) -> dict[str, np.ndarray]:
    """Confusion counts per (cell, replicate) as float arrays (NaN for unusable fits).

    Keys: ``tp, fp, fn, tn``, ``tp_more_variable, pos_more_variable, tp_more_consistent,
    pos_more_consistent`` and ``n`` (groups with a PIP and a truth).
    """
    pip = _crg(ds, "pip")
    y = _crg(ds, "delta_true")
    t = _crg(ds, "t_true")
    thr = cell_thresholds(ds, threshold, rule, bf)[:, None, None]
    valid = np.isfinite(pip) & np.isfinite(y)
    pos = valid & (y > 0.5)
    neg = valid & (y <= 0.5)
    flag = valid & (pip >= thr)
    use = usable_fits(ds, converged_only)

    def count(mask):
        return np.where(use, mask.sum(-1).astype(float), np.nan)

    return {
        "tp": count(pos & flag),
        "fp": count(neg & flag),
        "fn": count(pos & ~flag),
        "tn": count(neg & ~flag),
        "tp_more_variable": count(pos & flag & (t > 0)),
        "pos_more_variable": count(pos & (t > 0)),
        "tp_more_consistent": count(pos & flag & (t < 0)),
        "pos_more_consistent": count(pos & (t < 0)),
        "n": count(valid),
    }


def _div(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def replicate_rates(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-replicate rates from :func:`confusion` counts; NaN where undefined (see module doc)."""
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    used = np.isfinite(tp)
    flagged = tp + fp
    fpr = _div(fp, fp + tn)
    with np.errstate(invalid="ignore", divide="ignore"):
        margins = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        mcc = np.where(margins > 0, (tp * tn - fp * fn) / np.sqrt(np.where(margins > 0, margins, 1)), np.nan)
    return {
        "tpr": _div(tp, tp + fn),
        "fpr": fpr,
        "tnr": 1.0 - fpr,
        "precision": _div(tp, flagged),
        "fdr": np.where(used, fp / np.maximum(flagged, 1), np.nan),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "mcc": mcc,
        "fwer": np.where(used & (fp + tn > 0), (fp > 0).astype(float), np.nan),
        "tpr_more_variable": _div(counts["tp_more_variable"], counts["pos_more_variable"]),
        "tpr_more_consistent": _div(counts["tp_more_consistent"], counts["pos_more_consistent"]),
        "prevalence": _div(tp + fn, counts["n"]),
        "flagged": _div(flagged, counts["n"]),
    }


def classification(
    ds: xr.Dataset,
    threshold: float = 0.75,
    rule: str = "pip",
    bf: float = 3.0,
    converged_only: bool = False,
) -> dict[str, np.ndarray]:
    """Per-cell classification metrics: ``<m>``, ``<m>_mcse``, ``n_undefined_<m>`` for every
    metric of :data:`CLASSIFICATION_METRICS`, ``<m>_pooled`` (+ MCSE) for the ratios, and
    the summed confusion counts ``tp, fp, fn, tn``."""
    counts = confusion(ds, threshold, rule, bf, converged_only)
    rates = replicate_rates(counts)
    used = np.isfinite(counts["tp"])
    n_used = used.sum(-1)
    out: dict[str, np.ndarray] = {}
    for m in CLASSIFICATION_METRICS + ("prevalence", "flagged"):
        mean, se, n = _mean_mcse(rates[m], proportion=m in _PROPORTION_METRICS)
        out[m], out[f"{m}_mcse"] = mean, se
        if m in CLASSIFICATION_METRICS:
            out[f"n_undefined_{m}"] = (n_used - n).astype(np.int64)
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    pooled = {
        "tpr": (tp, tp + fn),
        "fpr": (fp, fp + tn),
        "tnr": (tn, fp + tn),
        "precision": (tp, tp + fp),
        "fdr": (fp, tp + fp),
        "f1": (2 * tp, 2 * tp + fp + fn),
    }
    for m, (num, den) in pooled.items():
        out[f"{m}_pooled"], out[f"{m}_pooled_mcse"] = _ratio_pooled(num, den)
    for k in ("tp", "fp", "fn", "tn"):
        out[k] = np.nansum(counts[k], axis=-1).astype(np.int64)
    return out


# ============================================================================ threshold-free
def _clean(scores, labels):
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels, dtype=float).ravel()
    ok = np.isfinite(s) & np.isfinite(y)
    return s[ok], y[ok] > 0.5


def roc_auc(scores, labels) -> float:
    """ROC AUC = Mann-Whitney U / (n1 n0) with mid-ranks for ties (P(s+ > s-) + P(s+ = s-)/2).

    NaN pairs are dropped; NaN when either class is empty.
    """
    from scipy.stats import rankdata

    s, y = _clean(scores, labels)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    u = ranks[y].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def _distinct_threshold_counts(s: np.ndarray, y: np.ndarray):
    """Cumulative TP and FP counts at each distinct score, scores descending."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last].astype(float)
    fps = (last + 1 - tps).astype(float)
    return tps, fps, s[last]


def average_precision(scores, labels) -> float:
    """Average precision: sum_k (R_k - R_{k-1}) P_k over distinct thresholds (scores
    descending), the step-wise area under the precision-recall curve. NaN without positives;
    equals the prevalence for a constant score."""
    s, y = _clean(scores, labels)
    n1 = int(y.sum())
    if n1 == 0:
        return float("nan")
    tps, fps, _ = _distinct_threshold_counts(s, y)
    precision = tps / (tps + fps)
    recall = tps / n1
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(scores, labels):
    """ROC curve ``(fpr, tpr, thresholds)`` starting at (0, 0); flagging is ``score >= t``."""
    s, y = _clean(scores, labels)
    n1, n0 = int(y.sum()), int((~y).sum())
    if s.size == 0:
        return np.array([0.0]), np.array([0.0]), np.array([np.inf])
    tps, fps, thr = _distinct_threshold_counts(s, y)
    fpr = np.r_[0.0, fps / n0] if n0 else np.full(tps.size + 1, np.nan)
    tpr = np.r_[0.0, tps / n1] if n1 else np.full(tps.size + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, thr]


def pr_curve(scores, labels):
    """Precision-recall curve ``(recall, precision, thresholds)``, scores descending."""
    s, y = _clean(scores, labels)
    n1 = int(y.sum())
    if s.size == 0 or n1 == 0:
        return np.array([np.nan]), np.array([np.nan]), np.array([np.nan])
    tps, fps, thr = _distinct_threshold_counts(s, y)
    return tps / n1, tps / (tps + fps), thr


def replicate_auc(ds: xr.Dataset, converged_only: bool = False) -> dict[str, np.ndarray]:
    """ROC AUC and average precision per (cell, replicate) (NaN: unusable or undefined)."""
    pip = _crg(ds, "pip")
    y = _crg(ds, "delta_true")
    use = usable_fits(ds, converged_only)
    roc = np.full(use.shape, np.nan)
    ap = np.full(use.shape, np.nan)
    for c, r in zip(*np.nonzero(use)):
        roc[c, r] = roc_auc(pip[c, r], y[c, r])
        ap[c, r] = average_precision(pip[c, r], y[c, r])
    return {"roc_auc": roc, "pr_auc": ap}


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


# ============================================================================ estimation
def estimation(ds: xr.Dataset, params: Iterable[str] = PARAMS, converged_only: bool = False) -> dict[str, np.ndarray]:
    """Bias, EmpSE, MSE, RMSE and 90%-interval coverage per cell with Morris et al. MCSEs,
    for each parameter with ``<p>_mean`` and ``<p>_true`` in the store. Keys
    ``<p>_bias``, ``<p>_bias_mcse``, ``<p>_empse``, ``<p>_empse_mcse``, ``<p>_mse``,
    ``<p>_mse_mcse``, ``<p>_rmse``, ``<p>_rmse_mcse``, ``<p>_coverage``,
    ``<p>_coverage_mcse``, ``<p>_n`` (replicates used)."""
    use = usable_fits(ds, converged_only)
    out: dict[str, np.ndarray] = {}
    for p in params:
        if f"{p}_mean" not in ds or f"{p}_true" not in ds:
            continue
        est, true = _cr(ds, f"{p}_mean"), _cr(ds, f"{p}_true")
        lo, hi = _cr(ds, f"{p}_q05"), _cr(ds, f"{p}_q95")
        ok = use & np.isfinite(est) & np.isfinite(true)
        e = np.where(ok, est - true, np.nan)
        R = ok.sum(-1).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            bias = np.where(R > 0, np.nansum(e, -1) / np.maximum(R, 1), np.nan)
            empse = _nanstd(e)
            mse = np.where(R > 0, np.nansum(e**2, -1) / np.maximum(R, 1), np.nan)
            mse_se = np.sqrt(np.nansum((e**2 - mse[:, None]) ** 2, -1) / np.maximum(R * (R - 1), 1))
            mse_se = np.where(R >= 2, mse_se, np.nan)
            rmse = np.sqrt(mse)
            rmse_se = np.where(rmse > 0, mse_se / (2 * rmse), np.where(R >= 2, 0.0, np.nan))
            okc = ok & np.isfinite(lo) & np.isfinite(hi)
            Rc = okc.sum(-1)
            cov = np.where(Rc > 0, np.sum(okc & (lo <= true) & (true <= hi), -1) / np.maximum(Rc, 1), np.nan)
        out[f"{p}_bias"] = bias
        out[f"{p}_bias_mcse"] = np.where(R >= 2, empse / np.sqrt(np.maximum(R, 1)), np.nan)
        out[f"{p}_empse"] = empse
        out[f"{p}_empse_mcse"] = np.where(R >= 2, empse / np.sqrt(2 * np.maximum(R - 1, 1)), np.nan)
        out[f"{p}_mse"] = mse
        out[f"{p}_mse_mcse"] = mse_se
        out[f"{p}_rmse"] = rmse
        out[f"{p}_rmse_mcse"] = rmse_se
        out[f"{p}_coverage"] = cov
        out[f"{p}_coverage_mcse"] = mcse_proportion(cov, Rc)
        out[f"{p}_n"] = R.astype(np.int64)
    return out


# ============================================================================ runtime
def _fit_size(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """J (groups with a truth) and mean group size per (cell, replicate)."""
    y = _crg(ds, "delta_true")
    J = np.isfinite(y).sum(-1).astype(float)
    nobs = _crg(ds, "n_obs")
    n = _nanmean_last(nobs)
    return np.where(J > 0, J, np.nan), n


def runtime(ds: xr.Dataset, converged_only: bool = False) -> dict[str, np.ndarray]:
    """Per-cell runtime and sampling quality over usable fits (see module doc)."""
    use = usable_fits(ds, converged_only)

    def u(x):
        return np.where(use, x, np.nan)

    sample, compile_ = u(_cr(ds, "sample_s")), u(_cr(ds, "compile_s"))
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        per_fit = {
            "sample_s": sample,
            "compile_s": compile_,
            "total_s": sample + compile_,
            "ess_per_s_tau_t": np.where(sample > 0, u(_cr(ds, "ess_bulk_tau_t")) / sample, np.nan),
            "ess_min_per_s": np.where(sample > 0, u(_cr(ds, "ess_bulk_min")) / sample, np.nan),
            "divergences_mean": u(_cr(ds, "divergences")),
        }
    for k, v in per_fit.items():
        out[k], out[f"{k}_mcse"], _ = _mean_mcse(v)
    rhat, div = u(_cr(ds, "rhat_max")), u(_cr(ds, "divergences"))
    for k, v, x in (("share_rhat_high", rhat, rhat > RHAT_THRESHOLD), ("share_divergent", div, div > 0)):
        out[k], out[f"{k}_mcse"], _ = _mean_mcse(np.where(np.isfinite(v), x.astype(float), np.nan), proportion=True)
    J, n = _fit_size(ds)
    out["n_groups_eff"] = _mean_mcse(u(J))[0]
    out["group_size_eff"] = _mean_mcse(u(n))[0]
    return out


def runtime_scaling(ds: xr.Dataset, what: str = "sample_s", converged_only: bool = False) -> dict[str, float]:
    """Log-log least squares of per-fit ``what`` (seconds) on J and mean n over usable fits:
    ``{"exponent_J", "exponent_J_se", "exponent_n", "exponent_n_se", "n_fits"}``. An
    exponent is NaN when its size does not vary across fits."""
    use = usable_fits(ds, converged_only)
    secs = _cr(ds, what)
    J, n = _fit_size(ds)
    ok = use & (secs > 0) & (J > 0)
    out = {"exponent_J": np.nan, "exponent_J_se": np.nan, "exponent_n": np.nan, "exponent_n_se": np.nan, "n_fits": int(ok.sum())}
    cols, names = [np.ones(ok.sum())], []
    for name, v in (("J", J), ("n", n)):
        x = np.log(v[ok]) if np.all(np.isfinite(v[ok])) and np.all(v[ok] > 0) else None
        if x is not None and x.size and np.ptp(x) > 1e-9:
            cols.append(x)
            names.append(name)
    if not names:
        return out
    X = np.column_stack(cols)
    yv = np.log(secs[ok])
    if X.shape[0] <= X.shape[1]:
        return out
    beta, *_ = np.linalg.lstsq(X, yv, rcond=None)
    resid = yv - X @ beta
    s2 = resid @ resid / (X.shape[0] - X.shape[1])
    try:
        cov = s2 * np.linalg.inv(X.T @ X)
    except np.linalg.LinAlgError:
        return out
    for i, name in enumerate(names, start=1):
        out[f"exponent_{name}"] = float(beta[i])
        out[f"exponent_{name}_se"] = float(np.sqrt(cov[i, i]))
    return out


# ============================================================================ summary
def _cell_coords(ds: xr.Dataset) -> dict:
    coords = {k: v for k, v in ds.coords.items() if v.dims == ("cell",)}
    return coords


def summarize(
    ds: xr.Dataset,
    threshold: float = 0.75,
    rule: str = "pip",
    bf: float = 3.0,
    converged_only: bool = False,
    n_bins: int = 10,
) -> xr.Dataset:
    """Every cell-level metric of this module as one Dataset along ``cell`` (the store's
    cell coordinates kept): fit counts, classification (with ``n_undefined_*`` and pooled
    variants), ``roc_auc``/``pr_auc``, calibration, estimation and runtime, each metric with
    ``<metric>_mcse``. attrs record the threshold rule."""
    needed = [
        v
        for v in ds.data_vars
        if v
        in {"pip", "delta_true", "t_true", "n_obs", "status", "done", "sample_s", "compile_s", "ess_bulk_tau_t", "ess_bulk_min", "rhat_max", "divergences"}
        or any(v.startswith(p + "_") for p in PARAMS)
    ]
    ds = ds[needed].load()
    out: dict[str, np.ndarray] = {}
    out.update(fit_counts(ds, converged_only))
    out["threshold"] = cell_thresholds(ds, threshold, rule, bf)
    out["model_pi"] = cell_pi(ds).values
    out.update(classification(ds, threshold, rule, bf, converged_only))
    auc = replicate_auc(ds, converged_only)
    n_used = out["n_used"]
    for k, v in auc.items():
        out[k], out[f"{k}_mcse"], n = _mean_mcse(v)
        out[f"n_undefined_{k}"] = (n_used - n).astype(np.int64)
    out.update(calibration_stats(ds, n_bins, converged_only))
    out.update(estimation(ds, converged_only=converged_only))
    out.update(runtime(ds, converged_only))

    summary = xr.Dataset({k: ("cell", np.asarray(v)) for k, v in out.items()}, coords=_cell_coords(ds))
    for k in summary.data_vars:
        base = k[:-5] if k.endswith("_mcse") else k
        base = base[:-7] if base.endswith("_pooled") else base
        if base in LONG_NAMES:
            summary[k].attrs["long_name"] = LONG_NAMES[base] + (" (MCSE)" if k.endswith("_mcse") else "") + (
                ", pooled over replicates" if "_pooled" in k else ""
            )
        if base in _UNITS:
            summary[k].attrs["units"] = _UNITS[base]
    summary.attrs.update(
        {
            "rule": rule,
            "threshold": float(threshold) if rule == "pip" else float("nan"),
            "bf": float(bf) if rule == "bf" else float("nan"),
            "converged_only": int(bool(converged_only)),
            "n_bins": int(n_bins),
            "primary_rates": "mean of per-replicate rates over replicates where defined",
        }
    )
    for k in ("design", "design_hash", "seed"):
        if k in ds.attrs:
            summary.attrs[k] = ds.attrs[k]
    return summary


def summary_frame(summary: xr.Dataset) -> pd.DataFrame:
    """The summary as one row per cell (cell coordinates first, then the metrics)."""
    df = summary.to_dataframe().reset_index()
    coords = [k for k in summary.coords if summary[k].dims == ("cell",) and k != "cell"]
    first = [c for c in ["cell", *coords] if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def marginal(summary: xr.Dataset, metric: str, factor: str) -> pd.DataFrame:
    """Mean of a cell metric at each level of ``factor``, averaged over the other cells
    (equal weights, cells where the metric is defined), with MCSE sqrt(sum mcse^2)/k
    (independent cells). Columns ``level, value, mcse, n_cells``."""
    vals = np.asarray(summary[metric].values, dtype=float)
    se = np.asarray(summary[f"{metric}_mcse"].values, dtype=float) if f"{metric}_mcse" in summary else np.full(vals.shape, np.nan)
    fac = np.asarray(summary[factor].values)
    rows = []
    for lev in factor_levels(summary, factor):
        m = np.array([v == lev for v in fac.tolist()]) & np.isfinite(vals)
        k = int(m.sum())
        if k == 0:
            rows.append({"level": lev, "value": np.nan, "mcse": np.nan, "n_cells": 0})
            continue
        s = se[m]
        rows.append(
            {
                "level": lev,
                "value": float(vals[m].mean()),
                "mcse": float(np.sqrt(np.sum(s**2)) / k) if np.all(np.isfinite(s)) else np.nan,
                "n_cells": k,
            }
        )
    return pd.DataFrame(rows, columns=["level", "value", "mcse", "n_cells"])


# ============================================================================ CLI
_CLI_COLUMNS = [
    ("tpr", "TPR"),
    ("fpr", "FPR"),
    ("fwer", "P(≥1 FP)"),
    ("f1", "F1"),
    ("mcc", "MCC"),
    ("roc_auc", "ROC AUC"),
    ("ece", "ECE"),
    ("brier", "Brier"),
    ("tau_t_bias", "bias τ_t"),
    ("tau_t_coverage", "cover τ_t"),
    ("sample_s", "s/fit"),
]


def _fmt(v: float, se: float | None = None, digits: int = 3) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    s = f"{v:.{digits}f}"
    if se is not None and np.isfinite(se):
        s += f" ± {se:.{digits}f}"
    return s


def summarize_cli(
    store,
    threshold: float = 0.75,
    out=None,
    rule: str = "pip",
    bf: float = 3.0,
    converged_only: bool = False,
) -> xr.Dataset:
    """``simstudy summarize``: print a table of the key metrics (value ± MCSE) per cell and
    write the full summary to ``out`` (``.nc`` netCDF or ``.csv``)."""
    from rich.console import Console
    from rich.table import Table

    ds = open_store(store)
    summary = summarize(ds, threshold=threshold, rule=rule, bf=bf, converged_only=converged_only)
    rule_txt = f"PIP ≥ {threshold:g}" if rule == "pip" else f"BF₁₀ ≥ {bf:g} (PIP ≥ {bf:g}π/(1−π+{bf:g}π))"
    table = Table(title=f"{design_info(ds).get('name', 'study')}: {rule_txt}; value ± MCSE", show_lines=False)
    table.add_column("cell", no_wrap=True)
    table.add_column("fits", justify="right")
    cols = [(k, h) for k, h in _CLI_COLUMNS if k in summary]
    for _, h in cols:
        table.add_column(h, justify="right")
    labels = summary["cell_label"].values if "cell_label" in summary.coords else np.arange(summary.sizes["cell"])
    for c in range(summary.sizes["cell"]):
        fits = f"{int(summary.n_used[c])}"
        if int(summary.n_failed[c]):
            fits += f" ({int(summary.n_failed[c])} failed)"
        if int(summary.n_pending[c]):
            fits += f" ({int(summary.n_pending[c])} pending)"
        row = [str(labels[c]), fits]
        for k, _ in cols:
            se = summary[f"{k}_mcse"].values[c] if f"{k}_mcse" in summary else None
            row.append(_fmt(float(summary[k].values[c]), None if se is None else float(se), 2 if k == "sample_s" else 3))
        table.add_row(*row)
    import sys

    console = Console(width=None if sys.stdout.isatty() else 240)  # files/pipes: never squeeze the table
    console.print(table)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".nc":
            _to_netcdf(summary, out)
        elif out.suffix == ".csv":
            summary_frame(summary).to_csv(out, index=False)
        else:
            raise ValueError(f"--out {out}: write a .nc or .csv file")
        console.print(f"wrote {out}")
    return summary


def _to_netcdf(summary: xr.Dataset, path: Path) -> None:
    s = summary.copy()
    for k in list(s.coords) + list(s.data_vars):
        if s[k].dtype.kind in ("O", "U", "T"):
            s[k] = s[k].astype(str).astype(object)
    s.to_netcdf(path, engine="h5netcdf")
