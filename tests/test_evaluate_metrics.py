"""Tests of simstudy.evaluate on hand-built results stores (no MCMC)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import xarray as xr

from simstudy import evaluate as M
from simstudy.evaluate.mcse import _ratio_pooled
from simstudy.model.priors import bayes_factor, pip_threshold_for_bf

PARAMS = ("tau_t", "eta0", "tau_u", "rho", "gamma0")


# ============================================================================ store builders
def make_ds(pip, delta, t=None, status=None, coords=None, design=None, **per_fit):
    """A store-shaped Dataset from (cell, replicate, group) arrays; per_fit: (cell, rep)."""
    pip = np.asarray(pip, dtype=float)
    if pip.ndim == 2:
        pip = pip[None]
    delta = np.asarray(delta, dtype=float).reshape(pip.shape)
    C, R, G = pip.shape
    if t is None:
        t = np.where(delta > 0.5, 1.0, np.where(np.isfinite(delta), 0.0, np.nan))
    t = np.asarray(t, dtype=float).reshape(pip.shape)
    if status is None:
        status = np.full((C, R), "ok")
    status = np.asarray(status, dtype=str).reshape(C, R)
    dims3, dims2 = ("cell", "replicate", "group"), ("cell", "replicate")
    data = {
        "pip": (dims3, pip),
        "delta_true": (dims3, delta),
        "t_true": (dims3, t),
        "status": (dims2, status),
        "done": (dims2, status != ""),
    }
    for k, v in per_fit.items():
        data[k] = (dims2, np.asarray(v, dtype=float).reshape(C, R))
    cc = {"cell_id": ("cell", np.arange(C, dtype=np.int64) + 100), "cell_label": ("cell", [f"cell {c}" for c in range(C)])}
    for k, v in (coords or {}).items():
        cc[k] = ("cell", list(v))
    ds = xr.Dataset(data, coords=cc | {"replicate": np.arange(R), "group": np.arange(G)})
    ds.attrs["design"] = json.dumps(design or {"name": "hand", "factors": {k: list(dict.fromkeys(v)) for k, v in (coords or {}).items()}, "model": {}})
    return ds


def synthetic_store(
    factors: dict | None = None,
    replicates: int = 4,
    n_groups: int = 30,
    group_size: int = 30,
    seed: int = 0,
    statuses: dict | None = None,
    model: dict | None = None,
    calibrated: bool = False,
) -> xr.Dataset:
    """A full-schema store with plausible numbers for every variable.

    ``factors`` as in a design (full factorial); ``n_groups``/``group_size``/``share_inconsistent``
    /``pi`` are taken from the factors when present. ``statuses``: {(cell, rep): status}.
    """
    factors = factors if factors is not None else {"pi": [0.25, 0.5], "share_inconsistent": [0.1, 0.3]}
    model = {"correlated": False} | (model or {})
    rng = np.random.default_rng(seed)
    names = list(factors)
    combos = list(itertools.product(*factors.values())) or [()]
    C, R = len(combos), replicates
    Js = [int(dict(zip(names, c)).get("n_groups", n_groups)) for c in combos]
    G = max(Js)
    f3 = np.full((C, R, G), np.nan)
    pip, delta, t, nobs = f3.copy(), f3.copy(), f3.copy(), f3.copy()
    for ci, combo in enumerate(combos):
        v = dict(zip(names, combo))
        J = Js[ci]
        share = float(v.get("share_inconsistent", 0.1))
        pi = float(v.get("pi", model.get("pi", 0.5)))
        n = int(v.get("group_size", group_size))
        k = int(round(share * J))
        for r in range(R):
            d = np.zeros(J)
            d[rng.choice(J, k, replace=False)] = 1
            tt = np.where(d > 0, rng.choice([-1.0, 1.0], J), 0.0)
            if calibrated:
                p = rng.uniform(size=J)
                d = (rng.uniform(size=J) < p).astype(float)
                tt = np.where(d > 0, 1.0, 0.0)
            else:
                z = math.log(pi / (1 - pi)) + np.where(d > 0, 2.5, -2.5) * math.sqrt(n / 30) + rng.normal(0, 1.5, J)
                p = 1 / (1 + np.exp(-z))
            pip[ci, r, :J], delta[ci, r, :J], t[ci, r, :J] = p, d, tt
            nobs[ci, r, :J] = n
    status = np.full((C, R), "ok", dtype=object)
    for (c, r), s in (statuses or {}).items():
        status[c, r] = s
    status = status.astype(str)
    dims3, dims2 = ("cell", "replicate", "group"), ("cell", "replicate")
    data = {
        "pip": (dims3, pip),
        "delta_true": (dims3, delta),
        "t_true": (dims3, t),
        "u_true": (dims3, rng.normal(0, 0.33, (C, R, G)) * np.isfinite(delta)),
        "sigma_true": (dims3, np.exp(-0.25 + np.nan_to_num(t)) * np.where(np.isfinite(delta), 1, np.nan)),
        "t_mean": (dims3, t * 0.8),
        "sigma_mean": (dims3, np.exp(-0.25 + 0.8 * np.nan_to_num(t)) * np.where(np.isfinite(delta), 1, np.nan)),
        "n_obs": (dims3, nobs),
        "observed_sd": (dims3, np.exp(-0.25 + np.nan_to_num(t)) * np.where(np.isfinite(delta), 1, np.nan)),
        "status": (dims2, status),
        "error": (dims2, np.where(status == "failed", "RuntimeError: boom", "")),
        "done": (dims2, status != ""),
    }
    J_arr = np.array(Js, float)[:, None] * np.ones((1, R))
    n_arr = np.nanmean(nobs, -1)
    sample = 0.002 * J_arr * n_arr * rng.lognormal(0, 0.1, (C, R))
    per_fit = {
        "divergences": rng.poisson(0.3, (C, R)).astype(float),
        "rhat_max": 1.0 + rng.exponential(0.004, (C, R)),
        "ess_bulk_min": rng.uniform(300, 800, (C, R)),
        "ess_tail_min": rng.uniform(300, 800, (C, R)),
        "tree_depth_mean": rng.uniform(3, 6, (C, R)),
        "sample_s": sample,
        "compile_s": rng.uniform(5, 8, (C, R)),
        "ess_bulk_tau_t": rng.uniform(400, 900, (C, R)),
        "n_inconsistent_true": np.nansum(delta, -1),
        "extensions": (np.arange(C * R).reshape(C, R) % 3 == 0).astype(float),  # no draw: the rng stream stays
    }
    truths = {"tau_t": 1.0, "tau_u": 0.33, "eta0": -0.25, "gamma0": 0.0, "rho": np.nan}
    for p, val in truths.items():
        est = val + 0.05 + rng.normal(0, 0.1, (C, R))
        half = 1.645 * 0.1
        per_fit[f"{p}_true"] = np.full((C, R), val)
        per_fit[f"{p}_mean"] = est
        per_fit[f"{p}_q05"] = est - half
        per_fit[f"{p}_q95"] = est + half
    for k, v in per_fit.items():
        v = np.where(status == "failed", np.nan, v) if k not in ("n_inconsistent_true",) and not k.endswith("_true") else v
        data[k] = (dims2, v)
    for k in ("pip", "t_mean", "sigma_mean"):
        data[k] = (dims3, np.where((status == "failed")[..., None], np.nan, data[k][1]))
    coords = {
        "cell_id": ("cell", np.arange(C, dtype=np.int64) * 7919 + 11),
        "cell_label": ("cell", [", ".join(f"{k}={x:g}" if isinstance(x, float) else f"{k}={x}" for k, x in zip(names, c)) or "(all fixed)" for c in combos]),
        "replicate": np.arange(R),
        "group": np.arange(G),
    }
    for i, k in enumerate(names):
        coords[k] = ("cell", [c[i] for c in combos])
    ds = xr.Dataset(data, coords=coords)
    design = {
        "name": "synthetic",
        "seed": seed,
        "replicates": R,
        "factors": {k: list(v) for k, v in factors.items()},
        "model": model,
        "generator": {"n_groups": n_groups, "group_size": group_size},
        "coords": names,
    }
    ds.attrs.update({"design": json.dumps(design), "design_hash": "0" * 64, "seed": seed})
    return ds


# ============================================================================ exact counts
def hand_store():
    """One cell: 3 ok replicates with known counts, 1 failed, 1 pending, 1 not converged."""
    nan = np.nan
    delta = [
        [1, 1, 0, 0, 0, 0, nan, nan],
        [0, 0, 0, 0, 0, 0, nan, nan],
        [1, 0, 0, 0, 0, 0, nan, nan],
        [1, 1, 0, 0, 0, 0, nan, nan],  # failed
        [1, 1, 0, 0, 0, 0, nan, nan],  # pending
        [1, 1, 0, 0, 0, 0, nan, nan],  # not converged
    ]
    pip = [
        [0.9, 0.5, 0.8, 0.1, 0.2, 0.75, nan, nan],  # TP1 FN1 FP2 TN2
        [0.1, 0.1, 0.1, 0.8, 0.1, 0.1, nan, nan],  # TP0 FN0 FP1 TN5
        [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, nan, nan],  # TP0 FN1 FP0 TN5
        [nan] * 8,
        [nan] * 8,
        [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, nan, nan],  # TP2 TN4
    ]
    t = [
        [1, -1, 0, 0, 0, 0, nan, nan],
        [0, 0, 0, 0, 0, 0, nan, nan],
        [-1, 0, 0, 0, 0, 0, nan, nan],
        [1, 1, 0, 0, 0, 0, nan, nan],
        [1, 1, 0, 0, 0, 0, nan, nan],
        [1, -1, 0, 0, 0, 0, nan, nan],
    ]
    status = [["ok", "ok", "ok", "failed", "", "not_converged"]]
    return make_ds([pip], [delta], t=[t], status=status)


EXPECTED_REPS = {  # per replicate (ok 0, 1, 2, not_converged 5)
    "tpr": [0.5, nan := float("nan"), 0.0, 1.0],
    "fpr": [0.5, 1 / 6, 0.0, 0.0],
    "precision": [1 / 3, 0.0, nan, 1.0],
    "fdr": [2 / 3, 1.0, 0.0, 0.0],
    "f1": [0.4, 0.0, 0.0, 1.0],
    "mcc": [0.0, nan, nan, 1.0],
    "fwer": [1.0, 1.0, 0.0, 0.0],
    "tpr_more_variable": [1.0, nan, nan, 1.0],
    "tpr_more_consistent": [0.0, nan, 0.0, 1.0],
}


def _expected(metric, reps):
    v = np.array([EXPECTED_REPS[metric][i] for i in reps])
    d = v[np.isfinite(v)]
    return d.mean() if d.size else np.nan, len(reps) - d.size, (d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else np.nan)


@pytest.mark.parametrize("converged_only", [False, True])
def test_exact_counts_and_rates(converged_only):
    ds = hand_store()
    counts = M.confusion(ds, 0.75, converged_only=converged_only)
    assert counts["tp"][0, :3].tolist() == [1, 0, 0]
    assert counts["fp"][0, :3].tolist() == [2, 1, 0]
    assert counts["fn"][0, :3].tolist() == [1, 0, 1]
    assert counts["tn"][0, :3].tolist() == [2, 5, 5]
    assert np.isnan(counts["tp"][0, 3]) and np.isnan(counts["tp"][0, 4])  # failed / pending excluded
    assert np.isnan(counts["tp"][0, 5]) == converged_only

    s = M.summarize(ds, threshold=0.75, converged_only=converged_only)
    reps = [0, 1, 2] if converged_only else [0, 1, 2, 3]  # index into EXPECTED_REPS columns
    assert int(s.n_used[0]) == len(reps)
    assert int(s.n_failed[0]) == 1 and int(s.n_pending[0]) == 1
    assert int(s.n_ok[0]) == 3 and int(s.n_not_converged[0]) == 1
    for m in EXPECTED_REPS:
        mean, n_undef, se = _expected(m, reps)
        np.testing.assert_allclose(float(s[m][0]), mean, atol=1e-12, err_msg=m)
        assert int(s[f"n_undefined_{m}"][0]) == n_undef, m
        if m == "fwer":
            se = math.sqrt(mean * (1 - mean) / len(reps))
        np.testing.assert_allclose(float(s[f"{m}_mcse"][0]), se, atol=1e-12, equal_nan=True, err_msg=m)
    np.testing.assert_allclose(float(s.tnr[0]), 1 - float(s.fpr[0]))
    # pooled counts
    tp = [1, 0, 0, 2][: len(reps)]
    fn = [1, 0, 1, 0][: len(reps)]
    fp = [2, 1, 0, 0][: len(reps)]
    np.testing.assert_allclose(float(s.tpr_pooled[0]), sum(tp) / (sum(tp) + sum(fn)))
    np.testing.assert_allclose(float(s.precision_pooled[0]), sum(tp) / (sum(tp) + sum(fp)))
    assert int(s.tp[0]) == sum(tp) and int(s.fp[0]) == sum(fp)


def test_pooled_ratio_mcse_direct():
    num = np.array([[1.0, 3.0, 2.0, np.nan]])
    den = np.array([[4.0, 5.0, 3.0, 7.0]])
    r, se = _ratio_pooled(num, den)
    p = 6 / 12
    e = np.array([1 - p * 4, 3 - p * 5, 2 - p * 3])
    np.testing.assert_allclose(r, [p])
    np.testing.assert_allclose(se, [math.sqrt((e**2).sum() / (3 * 2)) / 4.0])


def test_pooled_equals_mean_with_exact_counts():
    ds = synthetic_store(replicates=6, seed=3)
    s = M.summarize(ds)
    np.testing.assert_allclose(s.tpr.values, s.tpr_pooled.values, atol=1e-12)


# ============================================================================ BF rule
def test_bf_rule_threshold():
    ds = make_ds(
        np.full((3, 2, 4), 0.6),
        np.tile([1.0, 1.0, 0.0, 0.0], (3, 2, 1)),
        coords={"pi": [0.25, 0.5, 0.1]},
    )
    thr = M.cell_thresholds(ds, rule="bf")
    np.testing.assert_allclose(thr, [0.75 / 1.5, 0.75, 0.3 / 1.2])
    np.testing.assert_allclose(bayes_factor(thr, np.array([0.25, 0.5, 0.1])), 3.0)
    for p in (0.1, 0.25, 0.5, 0.9):
        assert pip_threshold_for_bf(3, p) == pytest.approx(3 * p / (1 + 2 * p))
    s = M.summarize(ds, rule="bf")
    # PIP 0.6 clears the BF-3 bar at pi = 0.25 and 0.1, not at pi = 0.5
    assert s.tpr.values.tolist() == [1.0, 0.0, 1.0]
    assert s.fpr.values.tolist() == [1.0, 0.0, 1.0]
    np.testing.assert_allclose(s.threshold.values, thr)
    assert s.attrs["rule"] == "bf"
    # fixed pi from the design when pi is not a cell coordinate
    ds2 = make_ds(np.full((1, 2, 4), 0.6), np.tile([1.0, 1.0, 0.0, 0.0], (1, 2, 1)), design={"model": {"pi": 0.25}})
    np.testing.assert_allclose(M.cell_thresholds(ds2, rule="bf"), [0.5])
    ds3 = make_ds(np.full((1, 2, 4), 0.6), np.tile([1.0, 1.0, 0.0, 0.0], (1, 2, 1)), design={})
    np.testing.assert_allclose(M.cell_thresholds(ds3, rule="bf"), [0.75])
    with pytest.raises(ValueError):
        M.cell_thresholds(ds3, rule="bayes")


def test_any_threshold():
    ds = hand_store()
    s = M.summarize(ds, threshold=0.0)  # everything flagged
    assert float(s.fpr[0]) == 1.0 and float(s.tpr[0]) == 1.0
    assert int(s.n_undefined_precision[0]) == 0


# ============================================================================ AUC
def _auc_pairwise(s, y):
    pos, neg = s[y == 1], s[y == 0]
    tot = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return tot / (len(pos) * len(neg))


def _ap_direct(s, y):
    ap, prev_recall = 0.0, 0.0
    for thr in sorted(set(s.tolist()), reverse=True):
        flag = s >= thr
        tp = np.sum(flag & (y == 1))
        prec, rec = tp / flag.sum(), tp / (y == 1).sum()
        ap += (rec - prev_recall) * prec
        prev_recall = rec
    return ap


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=60) < 0.3).astype(float)
    s = np.round(rng.uniform(size=60) + 0.3 * y, 1)  # many ties
    assert M.roc_auc(s, y) == pytest.approx(_auc_pairwise(s, y), abs=1e-12)
    assert M.average_precision(s, y) == pytest.approx(_ap_direct(s, y), abs=1e-12)


def test_auc_constant_and_degenerate():
    y = np.array([0, 1, 0, 0, 1, 1, 0, 0.0])
    assert M.roc_auc(np.full(8, 0.3), y) == 0.5
    assert M.average_precision(np.full(8, 0.3), y) == pytest.approx(3 / 8)
    assert M.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # scikit-learn's doc example
    assert M.average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.8333333333)
    assert M.roc_auc([0.9, 0.1], [1, 0]) == 1.0
    assert np.isnan(M.roc_auc([0.2, 0.3], [0, 0]))
    assert np.isnan(M.average_precision([0.2, 0.3], [0, 0]))
    assert M.roc_auc([0.2, np.nan, 0.9], [0, 1, 1]) == 1.0  # NaN (padding) dropped
    # in a store: constant PIP -> AUC exactly 0.5, no-positive replicate undefined and counted
    ds = make_ds(np.full((1, 3, 5), 0.42), [[[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]]])
    s = M.summarize(ds)
    assert float(s.roc_auc[0]) == 0.5 and int(s.n_undefined_roc_auc[0]) == 1
    assert float(s.roc_auc_mcse[0]) == 0.0


def test_curves():
    s = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    y = np.array([1, 1, 0, 0, 1.0])
    fpr, tpr, thr = M.roc_curve(s, y)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(M.roc_auc(s, y))
    rec, prec, _ = M.pr_curve(s, y)
    np.testing.assert_allclose(rec, [1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(prec, [1, 2 / 3, 0.5, 0.6])
    ds = synthetic_store()
    roc = M.pooled_curves(ds, "roc", by=["pi"])
    assert set(roc["pi"]) == {0.25, 0.5} and {"fpr", "tpr", "threshold"} <= set(roc.columns)
    pr = M.pooled_curves(ds, "pr")
    assert pr["cell_id"].nunique() == 4


# ============================================================================ calibration
def test_calibrated_ece_near_zero_within_mcse():
    """Truth ~ Bernoulli(pip): ECE is only its finite-sample floor.

    Under perfect calibration the bin gap d_k = obar_k - pbar_k is ~ N(0, s_k^2) with
    s_k^2 = sum_{i in k} p_i(1-p_i) / n_k^2, so ECE = sum_k w_k |d_k| has mean
    sqrt(2/pi) sum_k w_k s_k (= ece_null) and SD sqrt(1 - 2/pi) sqrt(sum_k w_k^2 s_k^2).
    Tolerance: 4 such SDs around ece_null, and ece_null itself is small.
    """
    ds = synthetic_store(factors={}, replicates=40, n_groups=400, calibrated=True, seed=11)
    s = M.summarize(ds)
    ece, null, se = float(s.ece[0]), float(s.ece_null[0]), float(s.ece_mcse[0])
    pip = ds.pip.values.ravel()
    ok = np.isfinite(pip)
    pip = pip[ok]
    idx = np.minimum((pip * 10).astype(int), 9)
    N = pip.size
    w_s = np.array([np.sqrt(np.sum(pip[idx == k] * (1 - pip[idx == k]))) / N for k in range(10)])  # w_k s_k
    mean_theory = math.sqrt(2 / math.pi) * w_s.sum()
    sd_theory = math.sqrt(1 - 2 / math.pi) * math.sqrt(np.sum(w_s**2))
    assert null == pytest.approx(mean_theory, rel=1e-9)
    assert null < 0.01
    assert abs(ece - null) < 4 * sd_theory
    assert ece < null + 4 * se
    # equal-mass ECE too, and the Brier reliability term ~ 0
    assert float(s.ece_mass[0]) < 0.02
    assert float(s.brier_reliability[0]) < 1e-3
    # a miscalibrated forecaster (truth ~ Bernoulli(pip^2)) is far outside
    rng = np.random.default_rng(2)
    p = ds.pip.values
    d = np.where(np.isfinite(p), (rng.uniform(size=p.shape) < p**2).astype(float), np.nan)
    s2 = M.summarize(ds.assign(delta_true=(ds.delta_true.dims, d)))
    assert float(s2.ece[0]) == pytest.approx(1 / 6, abs=0.02)
    assert float(s2.ece[0]) > null + 20 * float(s2.ece_mcse[0])


def test_brier_decomposition_exact_for_discrete_forecasts():
    rng = np.random.default_rng(5)
    levels = np.arange(0.05, 1.0, 0.1)  # one forecast value per equal-width bin
    p = rng.choice(levels, size=(1, 8, 50))
    y = (rng.uniform(size=p.shape) < p**1.5).astype(float)
    s = M.summarize(make_ds(p, y))
    brier = float(np.mean((p - y) ** 2))
    assert float(s.brier[0]) == pytest.approx(brier)
    assert float(s.brier_reliability[0] - s.brier_resolution[0] + s.brier_uncertainty[0]) == pytest.approx(brier)
    assert float(s.brier_uncertainty[0]) == pytest.approx(y.mean() * (1 - y.mean()))


def test_reliability_table():
    p = np.array([[[0.05, 0.05, 0.15, 0.95, 0.95, 0.95, np.nan]]])
    y = np.array([[[0, 1, 0, 1, 1, 0, np.nan]]], dtype=float)
    tab = M.reliability_table(make_ds(p, y), n_bins=10)
    assert tab["bin"].tolist() == [0, 1, 9]
    assert tab["n"].tolist() == [2, 1, 3]
    np.testing.assert_allclose(tab["observed"], [0.5, 0.0, 2 / 3])
    np.testing.assert_allclose(tab["mean_pip"], [0.05, 0.15, 0.95])
    np.testing.assert_allclose(tab["se"], [math.sqrt(0.25 / 2), 0.0, math.sqrt(2 / 9 / 3)])
    ds = synthetic_store(replicates=3)
    t1 = M.reliability_table(ds, by=["pi"])
    assert list(dict.fromkeys(t1["pi"])) == [0.25, 0.5]
    assert t1.groupby("pi")["n"].sum().tolist() == [2 * 3 * 30] * 2
    tq = M.reliability_table(ds, strategy="quantile", by=[])
    assert tq["n"].sum() == 4 * 3 * 30 and tq["n"].max() - tq["n"].min() <= 2


def test_failed_fits_excluded_everywhere():
    ds = synthetic_store(statuses={(0, 1): "failed", (1, 0): "", (2, 2): "not_converged"})
    s = M.summarize(ds)
    assert s.n_used.values.tolist() == [3, 3, 4, 4]
    assert s.n_failed.values.tolist() == [1, 0, 0, 0]
    assert s.n_pending.values.tolist() == [0, 1, 0, 0]
    # corrupting the failed / pending fits' numbers changes nothing
    bad = ds.copy(deep=True)
    bad["pip"][0, 1] = 0.99
    bad["pip"][1, 0] = 0.99
    bad["sample_s"][0, 1] = 1e6
    bad["tau_t_mean"][1, 0] = 1e6
    s2 = M.summarize(bad)
    for v in s.data_vars:
        np.testing.assert_array_equal(s[v].values, s2[v].values, err_msg=v)
    s3 = M.summarize(ds, converged_only=True)
    assert s3.n_used.values.tolist() == [3, 3, 3, 4]


# ============================================================================ estimation + MCSE
def test_estimation_formulas_direct():
    est = np.array([[1.1, 0.9, 1.3, 1.2, np.nan]])
    true = np.array([[1.0, 1.0, 1.0, 1.0, 1.0]])
    lo, hi = est - 0.15, est + 0.15
    ds = make_ds(
        np.zeros((1, 5, 2)),
        np.zeros((1, 5, 2)),
        tau_t_mean=est,
        tau_t_true=true,
        tau_t_q05=lo,
        tau_t_q95=hi,
    )
    s = M.summarize(ds)
    e = np.array([0.1, -0.1, 0.3, 0.2])
    R = 4
    empse = e.std(ddof=1)
    mse = np.mean(e**2)
    mse_se = math.sqrt(np.sum((e**2 - mse) ** 2) / (R * (R - 1)))
    assert int(s.tau_t_n[0]) == 4
    assert float(s.tau_t_bias[0]) == pytest.approx(e.mean())
    assert float(s.tau_t_bias_mcse[0]) == pytest.approx(empse / math.sqrt(R))
    assert float(s.tau_t_empse[0]) == pytest.approx(empse)
    assert float(s.tau_t_empse_mcse[0]) == pytest.approx(empse / math.sqrt(2 * (R - 1)))
    assert float(s.tau_t_mse[0]) == pytest.approx(mse)
    assert float(s.tau_t_mse_mcse[0]) == pytest.approx(mse_se)
    assert float(s.tau_t_rmse[0]) == pytest.approx(math.sqrt(mse))
    assert float(s.tau_t_rmse_mcse[0]) == pytest.approx(mse_se / (2 * math.sqrt(mse)))
    assert float(s.tau_t_coverage[0]) == pytest.approx(0.5)  # [1.15, 1.45] and [1.05, 1.35] miss 1
    assert float(s.tau_t_coverage_mcse[0]) == pytest.approx(math.sqrt(0.5 * 0.5 / 4))
    assert "eta0_bias" not in s  # not in the store -> not reported


def test_tau_t_estimation_leaves_out_data_sets_without_slab_groups():
    """The slab SD is not estimable from a data set with no inconsistent group: those
    replicates are left out of tau_t's bias and coverage (a null cell has none left)."""
    est = np.array([[1.1, 5.0, 1.3, 0.9], [2.0, 3.0, 4.0, 5.0]])
    ds = make_ds(np.zeros((2, 4, 2)), np.zeros((2, 4, 2)), tau_t_mean=est, tau_t_true=np.ones((2, 4)),
                 tau_t_q05=est - 0.2, tau_t_q95=est + 0.2, n_inconsistent_true=[[2, 0, 1, 3], [0, 0, 0, 0]])
    s = M.summarize(ds)
    assert s.tau_t_n.values.tolist() == [3, 0]
    assert float(s.tau_t_bias[0]) == pytest.approx(np.mean([0.1, 0.3, -0.1]))
    assert float(s.tau_t_coverage[0]) == pytest.approx(2 / 3)  # [1.1 +- .2] and [0.9 +- .2] cover 1
    assert np.isnan(float(s.tau_t_bias[1])) and np.isnan(float(s.tau_t_coverage[1]))


def test_mcse_matches_spread_across_simulated_studies():
    """Cells as 600 independent studies of R = 25 replicates: the reported MCSE of each
    estimate ~ the SD of that estimate across studies. The SD of 600 estimates has a
    relative SE ~ 1/sqrt(2 * 599) ~ 3%, the MCSEs their own noise: tolerance 15%."""
    rng = np.random.default_rng(42)
    S, R, G = 600, 25, 20
    est = 1.0 + 0.1 + rng.normal(0, 0.5, (S, R))
    half = 1.645 * 0.45
    delta = np.zeros((S, R, G))
    delta[..., :5] = 1
    z = np.where(delta > 0, 1.0, -1.0) + rng.normal(0, 1.5, (S, R, G))
    pip = 1 / (1 + np.exp(-z))
    ds = make_ds(
        pip,
        delta,
        tau_t_mean=est,
        tau_t_true=np.ones((S, R)),
        tau_t_q05=est - half,
        tau_t_q95=est + half,
        sample_s=rng.lognormal(0, 0.5, (S, R)),
    )
    s = M.summarize(ds, threshold=0.6)
    for m in ("tau_t_bias", "tau_t_empse", "tau_t_rmse", "tau_t_coverage", "tpr", "fpr", "f1", "roc_auc", "brier", "sample_s", "fwer", "ece"):
        spread = float(np.std(s[m].values, ddof=1))
        reported = float(np.sqrt(np.mean(s[f"{m}_mcse"].values ** 2)))
        assert reported == pytest.approx(spread, rel=0.15), (m, reported, spread)


def test_mcse_helpers():
    assert M.mcse_proportion(0.2, 100) == pytest.approx(0.04)
    x = np.array([1.0, 2.0, 4.0, np.nan])
    assert M.mcse_mean(x) == pytest.approx(np.std([1, 2, 4], ddof=1) / math.sqrt(3))
    assert np.isnan(M.mcse_mean(np.array([1.0])))
    assert M.replicates_needed(0.01) == 2500
    assert M.replicates_needed(0.05, p=0.1) == 36
    assert M.replicates_needed(0.1, sd=2.0) == 400
    with pytest.raises(ValueError):
        M.replicates_needed(0.0)
    with pytest.raises(ValueError):
        M.replicates_needed(0.1, p=0.5, sd=1)


# ============================================================================ runtime
def test_runtime_metrics_and_scaling():
    ds = synthetic_store(factors={"n_groups": [20, 40, 80], "group_size": [10, 40]}, replicates=5, seed=1)
    s = M.summarize(ds)
    np.testing.assert_allclose(s.n_groups_eff.values, [20, 20, 40, 40, 80, 80])
    np.testing.assert_allclose(s.group_size_eff.values, [10, 40] * 3)
    sample = ds.sample_s.values
    np.testing.assert_allclose(s.sample_s.values, sample.mean(1))
    np.testing.assert_allclose(s.total_s.values, (sample + ds.compile_s.values).mean(1))
    np.testing.assert_allclose(s.ess_per_s_tau_t.values, (ds.ess_bulk_tau_t.values / sample).mean(1))
    np.testing.assert_allclose(s.share_rhat_high.values, (ds.rhat_max.values > 1.01).mean(1))
    np.testing.assert_allclose(s.share_divergent.values, (ds.divergences.values > 0).mean(1))
    sc = M.runtime_scaling(ds)
    assert sc["exponent_J"] == pytest.approx(1.0, abs=0.1)  # the synthetic store's time ~ J n
    assert sc["exponent_n"] == pytest.approx(1.0, abs=0.1)
    assert sc["n_fits"] == 30
    assert "share_not_converged" in s and np.all(s.share_not_converged.values == 0)  # every fit "ok"
    one = M.runtime_scaling(synthetic_store(factors={"pi": [0.25, 0.5]}))
    assert np.isnan(one["exponent_J"]) and np.isnan(one["exponent_n"])


# ============================================================================ summary
def test_summary_has_no_nan_where_defined():
    ds = synthetic_store(
        factors={"pi": [0.25, 0.5], "share_inconsistent": [0.0, 0.1, 0.3]},
        replicates=4,
        statuses={(1, 0): "failed", (3, 3): "not_converged"},
    )
    s = M.summarize(ds)
    assert s.sizes["cell"] == 6
    for k in ("cell_id", "cell_label", "pi", "share_inconsistent"):
        assert k in s.coords
    share = s.share_inconsistent.values
    R = s.n_used.values
    for v in s.data_vars:
        vals = s[v].values.astype(float)
        if v.startswith("rho_"):  # rho not generated (correlated = false): undefined
            assert np.all(vals == 0) if v == "rho_n" else np.all(np.isnan(vals)), v
            continue
        undefined_tpr = share == 0
        if v.startswith("tau_t_") and v != "tau_t_n":  # the slab SD: no slab group in a null cell
            assert np.all(np.isnan(vals[undefined_tpr])) and np.all(np.isfinite(vals[~undefined_tpr])), v
            continue
        if any(v.startswith(p) for p in ("tpr", "f1", "mcc", "roc_auc", "pr_auc", "precision")) and not v.startswith("n_"):
            # no truly inconsistent groups -> TPR/AUC undefined (precision, F1, MCC may be too)
            if v.startswith(("tpr", "roc_auc", "pr_auc")):
                assert np.all(np.isnan(vals[undefined_tpr])), v
                assert np.all(np.isfinite(vals[~undefined_tpr])), v
            continue
        if v in ("precision_pooled", "precision_pooled_mcse", "fdr_pooled", "fdr_pooled_mcse"):
            flagged = s.tp.values + s.fp.values
            assert np.all(np.isfinite(vals[flagged > 0])) and np.all(np.isnan(vals[flagged == 0])), v
            continue
        assert np.all(np.isfinite(vals)), (v, vals)
    assert s.n_undefined_tpr.values[share == 0].tolist() == list(R[share == 0])
    assert np.all(s.n_undefined_tpr.values[share > 0] == 0)
    for k, v in s.data_vars.items():
        if not k.endswith("_mcse") and not k.startswith("n_") and k not in ("tp", "fp", "fn", "tn") and f"{k}_mcse" not in s:
            assert k in ("threshold", "model_pi", "n_groups_eff", "group_size_eff") or k.endswith("_n"), k


def test_summary_roundtrip_zarr_and_cli(tmp_path, capsys):
    ds = synthetic_store(statuses={(0, 0): "failed"})
    path = tmp_path / "store.zarr"
    ds.to_zarr(path, consolidated=False)
    s_mem = M.summarize(ds)
    s = M.summarize_cli(path, threshold=0.75, out=tmp_path / "summary.csv")
    for v in s_mem.data_vars:
        np.testing.assert_allclose(s[v].values.astype(float), s_mem[v].values.astype(float), equal_nan=True, err_msg=v)
    text = capsys.readouterr().out
    assert "TPR" in text and "pi=0.25" in text and "1 failed" in text
    import pandas as pd

    df = pd.read_csv(tmp_path / "summary.csv")
    assert len(df) == 4 and {"pi", "share_inconsistent", "tpr", "tpr_mcse", "cell_label"} <= set(df.columns)
    M.summarize_cli(path, rule="bf", out=tmp_path / "summary.nc")
    back = xr.open_dataset(tmp_path / "summary.nc", engine="h5netcdf")
    np.testing.assert_allclose(back.threshold.values, [0.5, 0.5, 0.75, 0.75])
    with pytest.raises(ValueError):
        M.summarize_cli(path, out=tmp_path / "summary.txt")


def test_marginal_and_factor_helpers():
    ds = synthetic_store(factors={"n_groups": [50, 20], "scale_sd": ["half_t(3, 1)", "half_normal(1)"], "pi": [0.5]})
    assert M.cell_factors(ds) == ["n_groups", "scale_sd", "pi"]
    assert M.varying_factors(ds) == ["n_groups", "scale_sd"]
    assert M.factor_levels(ds, "n_groups") == [20, 50]
    assert M.factor_levels(ds, "scale_sd") == ["half_t(3, 1)", "half_normal(1)"]
    s = M.summarize(ds)
    mg = M.marginal(s, "tpr", "n_groups")
    assert mg["level"].tolist() == [20, 50]
    sel = s.tpr.values[s.n_groups.values == 20]
    se = s.tpr_mcse.values[s.n_groups.values == 20]
    assert mg["value"][0] == pytest.approx(sel.mean())
    assert mg["mcse"][0] == pytest.approx(math.sqrt(np.sum(se**2)) / 2)
    assert M.cell_pi(ds).values.tolist() == [0.5] * 4


def test_bf_rule_with_beta_pi_levels():
    """A pi factor mixing numbers and Beta hyperpriors is stored as text labels; the BF rule
    uses each cell's prior mean (prior odds a / b): beta(1, 3) counts as pi = 0.25."""
    ds = make_ds(np.full((3, 2, 4), 0.6), np.tile([1.0, 1.0, 0.0, 0.0], (3, 2, 1)),
                 coords={"pi": ["0.5", "beta(1, 3)", "beta(1, 1)"]},
                 design={"factors": {"pi": [0.5, "beta(1, 3)", "beta(1, 1)"]}})
    np.testing.assert_allclose(M.cell_pi(ds).values, [0.5, 0.25, 0.5])
    np.testing.assert_allclose(M.cell_thresholds(ds, rule="bf"), [0.75, 0.5, 0.75])
    assert M.factor_levels(ds, "pi") == ["0.5", "beta(1, 3)", "beta(1, 1)"]
    s = M.summarize(ds, rule="bf")
    assert s.tpr.values.tolist() == [0.0, 1.0, 0.0]
    ds2 = make_ds(np.full((1, 2, 4), 0.6), np.tile([1.0, 1.0, 0.0, 0.0], (1, 2, 1)), design={"model": {"pi": "beta(1, 3)"}})
    np.testing.assert_allclose(M.cell_thresholds(ds2, rule="bf"), [0.5])


def test_runtime_follows_the_convergence_rule():
    """share_not_converged counts the status set by the rule (after extension) among usable
    fits; share_rhat_high reads the rule's rhat_worst where the store has it."""
    ds = synthetic_store(factors={"pi": [0.25, 0.5]}, replicates=4, seed=3,
                         statuses={(0, 1): "not_converged", (0, 2): "failed", (1, 3): "not_converged"})
    s = M.summarize(ds)
    np.testing.assert_allclose(s.share_not_converged.values, [1 / 3, 1 / 4])
    worst = np.full(ds.rhat_max.shape, 1.0)
    worst[1, 0] = 1.02  # rhat_max of the synthetic store is below 1.01 + noise; rhat_worst decides
    ds2 = ds.assign(rhat_worst=(("cell", "replicate"), worst), extensions=(("cell", "replicate"), np.ones(worst.shape)))
    s2 = M.summarize(ds2)
    np.testing.assert_allclose(s2.share_rhat_high.values, [0.0, 0.25])
    np.testing.assert_allclose(s2.extensions_mean.values, [1.0, 1.0])
