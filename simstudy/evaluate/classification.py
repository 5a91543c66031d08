"""Classification of groups (flag vs truth) per replicate and per cell, and threshold-free scores.

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

Threshold-free
--------------
``roc_auc`` is the Mann-Whitney probability that an inconsistent group has a higher PIP than
a consistent one (ties count 1/2); ``pr_auc`` is the average precision (step-wise area under
the precision-recall curve, as in scikit-learn). Both are per replicate, then averaged.

"""

from __future__ import annotations


import numpy as np
import xarray as xr

from .fits import _crg, cell_thresholds, usable_fits
from .mcse import _mean_mcse, _ratio_pooled


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


# ============================================================================ classification
def confusion(
    ds: xr.Dataset,
    threshold: float = 0.75,
    rule: str = "pip",
    bf: float = 3.0,
    converged_only: bool = False,
    flags: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Confusion counts per (cell, replicate) as float arrays (NaN for unusable fits).

    Keys: ``tp, fp, fn, tn``, ``tp_more_variable, pos_more_variable, tp_more_consistent,
    pos_more_consistent`` and ``n`` (groups with a PIP and a truth).

    ``flags``: a comparator method's stored flags (cell, replicate, group) instead of the PIP
    rule; every group with a truth counts (an unscored group, NaN flag, is not flagged), and a
    replicate is used when its fit is usable and the method ran on it (any flag not NaN).
    """
    y = _crg(ds, "delta_true")
    t = _crg(ds, "t_true")
    use = usable_fits(ds, converged_only)
    if flags is None:
        pip = _crg(ds, "pip")
        thr = cell_thresholds(ds, threshold, rule, bf)[:, None, None]
        valid = np.isfinite(pip) & np.isfinite(y)
        flag = valid & (pip >= thr)
    else:
        flags = np.asarray(flags, dtype=float)
        valid = np.isfinite(y)
        flag = valid & (np.where(np.isfinite(flags), flags, 0.0) > 0.5)
        use = use & np.isfinite(flags).any(-1)
    pos = valid & (y > 0.5)
    neg = valid & (y <= 0.5)

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
    flags: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-cell classification metrics: ``<m>``, ``<m>_mcse``, ``n_undefined_<m>`` for every
    metric of :data:`CLASSIFICATION_METRICS`, ``<m>_pooled`` (+ MCSE) for the ratios, and
    the summed confusion counts ``tp, fp, fn, tn`` (``flags``: see :func:`confusion`)."""
    counts = confusion(ds, threshold, rule, bf, converged_only, flags=flags)
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


def replicate_auc(ds: xr.Dataset, converged_only: bool = False, scores: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
    """ROC AUC and average precision per (cell, replicate) (NaN: unusable or undefined);
    ``scores`` (cell, replicate, group): a comparator's scores instead of the PIP."""
    pip = _crg(ds, "pip") if scores is None else np.asarray(scores, dtype=float)
    y = _crg(ds, "delta_true")
    use = usable_fits(ds, converged_only)
    if scores is not None:
        use = use & np.isfinite(pip).any(-1)
    roc = np.full(use.shape, np.nan)
    ap = np.full(use.shape, np.nan)
    for c, r in zip(*np.nonzero(use)):
        roc[c, r] = roc_auc(pip[c, r], y[c, r])
        ap[c, r] = average_precision(pip[c, r], y[c, r])
    return {"roc_auc": roc, "pr_auc": ap}


