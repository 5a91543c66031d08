"""Turn one fit and its truth into one record of the results store (pure functions).

:func:`score_fit` reduces a :class:`~simstudy.model.result.FitResult` and the generating
:class:`~simstudy.study.generate.Truth` to a flat dict of numpy arrays: per-group arrays of length
``n_groups_max`` (NaN-padded) and per-fit scalars (0-d arrays). :func:`failed_record` is
the record of a fit that raised. :data:`SCHEMA` lists every variable with its dims, dtype
and CF ``long_name``/``units``; the results store is built from it and ``simstudy.evaluate`` reads
these names.

Only random-intercept scale models (K = 1 scale random effect, what the generator
produces) are scored; other structures raise ``ValueError``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .generate import Truth
    from ..model.result import FitResult

__all__ = ["SCHEMA", "STATUS_DTYPE", "ERROR_DTYPE", "ERROR_MAX", "PARAM_DTYPE", "STATUSES", "score_fit", "failed_record",
           "empty_value", "stack_records", "truth_record", "add_methods", "METHOD_VARIABLES", "SS_MELSM_FLAG_PIP"]

#: fit statuses stored in ``status``
STATUSES = ("ok", "not_converged", "failed")
#: fixed-width string dtypes (Zarr stores them as fixed_length_utf32)
STATUS_DTYPE = "<U13"
ERROR_MAX = 500
ERROR_DTYPE = f"<U{ERROR_MAX}"
#: parameter names such as "corr[scale:Intercept, location:Intercept]"
PARAM_DTYPE = "<U64"

_G = "group"  # (cell, replicate, group)
_F = "fit"  # (cell, replicate)
_MG = "method_group"  # (cell, replicate, method, group)
_MF = "method"  # (cell, replicate, method)

#: the SS-MELSM's stored flag: PIP >= this (the default threshold of simstudy.evaluate);
#: the evaluation recomputes SS-MELSM flags from ``pip`` at any threshold or rule
SS_MELSM_FLAG_PIP = 0.75
#: variables added with the comparator methods; stores made before them lack them and
#: :func:`simstudy.study.store.write_block` leaves them out there
METHOD_VARIABLES = ("flag", "score", "method_s", "hlm_z", "hlm_tau2", "hlm_H", "hlm_H_p")


def _v(dims: str, long_name: str, units: str, dtype: str = "float64") -> dict:
    return {"dims": dims, "dtype": dtype, "long_name": long_name, "units": units}


def _summaries(base: str, what: str, units: str) -> dict:
    return {
        f"{base}_mean": _v(_F, f"posterior mean of {what}", units),
        f"{base}_q05": _v(_F, f"posterior 5% quantile of {what} (lower end of the 90% interval)", units),
        f"{base}_q95": _v(_F, f"posterior 95% quantile of {what} (upper end of the 90% interval)", units),
    }


#: name -> {"dims": "group" | "fit", "dtype", "long_name", "units"}. "group" variables have
#: dims (cell, replicate, group), "fit" variables (cell, replicate). Every float is NaN
#: where missing (padding groups, failed fits, not applicable).
SCHEMA: dict[str, dict] = {
    # ---- per group
    "pip": _v(_G, "posterior inclusion probability of the group's scale effect (Rao-Blackwellised)", "1"),
    "delta_true": _v(_G, "true inclusion indicator: 1 inconsistent group, 0 consistent", "1"),
    "t_true": _v(_G, "true scale random effect t_j (log within-group SD scale)", "1"),
    "u_true": _v(_G, "true location random effect u_j", "units of y"),
    "sigma_true": _v(_G, "true within-group SD exp(eta0 + t_j)", "units of y"),
    "t_mean": _v(_G, "posterior mean of the effective scale effect t_j * incl_prob_j", "1"),
    "sigma_mean": _v(_G, "posterior mean of the group's within-group SD", "units of y"),
    "n_obs": _v(_G, "observations in the group", "1"),
    "observed_sd": _v(_G, "sample SD of y within the group (ddof=1)", "units of y"),
    # ---- per fit: status and diagnostics
    "status": _v(_F, "fit status: ok | not_converged | failed", "", STATUS_DTYPE),
    "error": _v(_F, f"error message of a failed fit (first {ERROR_MAX} characters; empty if none)", "", ERROR_DTYPE),
    "divergences": _v(_F, "divergent transitions after warm-up, all chains", "1"),
    "rhat_max": _v(_F, "largest rank-normalised R-hat over the hyperparameters", "1"),
    "ess_bulk_min": _v(_F, "smallest bulk ESS over the hyperparameters", "1"),
    "ess_tail_min": _v(_F, "smallest tail ESS over the hyperparameters", "1"),
    "rhat_worst": _v(_F, "largest R-hat over the hyperparameters judged by the convergence rule "
                         "(simstudy.model.diagnostics; inf when one is NaN)", "1"),
    "ess_worst": _v(_F, "smallest bulk or tail ESS (all chains) over the hyperparameters judged by the rule", "1"),
    "worst_param": _v(_F, "the hyperparameter furthest past the convergence rule's limits", "", PARAM_DTYPE),
    "draws_used": _v(_F, "kept draws per chain, extensions included", "1"),
    "extensions": _v(_F, "extensions after failing the convergence rule (another `draws` draws per chain, or a rerun)", "1"),
    "reruns": _v(_F, "1 if the fit diverged and was rerun from the start at target_accept 0.99", "1"),
    "tree_depth_mean": _v(_F, "mean NUTS tree depth over the kept draws", "1"),
    "sample_s": _v(_F, "sampling wall time of the fit (its share of the batched call)", "s"),
    "compile_s": _v(_F, "compile time of the batched call the fit was part of (0 when cached in-process)", "s"),
    # ---- per fit: posterior summaries
    **_summaries("tau_t", "the SD of the scale random intercepts (tau at scale:Intercept)", "1"),
    **_summaries("tau_u", "the SD of the location random intercepts (tau at location:Intercept)", "units of y"),
    **_summaries("eta0", "the scale intercept (log residual SD)", "1"),
    **_summaries("gamma0", "the location intercept", "units of y"),
    **_summaries("rho", "the location-scale random-intercept correlation (NaN: uncorrelated model)", "1"),
    "ess_bulk_tau_t": _v(_F, "bulk ESS of tau_t", "1"),
    **_summaries("pi", "the prior inclusion probability pi (NaN: pi fixed by the model)", "1"),
    # ---- per fit: truth
    "tau_t_true": _v(_F, "true SD of the scale effects: the slab SD (NaN for effect = 'fixed')", "1"),
    "tau_u_true": _v(_F, "true SD of the location random intercepts", "units of y"),
    "eta0_true": _v(_F, "true scale intercept", "1"),
    "gamma0_true": _v(_F, "true location intercept", "units of y"),
    "rho_true": _v(_F, "true location-scale correlation of the slab draws", "1"),
    "n_inconsistent_true": _v(_F, "number of truly inconsistent groups", "1"),
    "share_true": _v(_F, "true share of inconsistent groups in the dataset (n_inconsistent_true / J)", "1"),
    "pi_true": _v(_F, "generating inclusion probability of prior-mode data (NaN in truth mode)", "1"),
    # ---- per fit: longitudinal layout (random time slopes); NaN where the fit has none
    **_summaries("tau_u1", "the SD of the location random time slopes (tau at location:time)", "units of y"),
    **_summaries("rho_u01", "the correlation of the location random intercepts and time slopes", "1"),
    "tau_u1_true": _v(_F, "true SD of the location random time slopes (longitudinal layout)", "units of y"),
    "rho_u01_true": _v(_F, "true correlation of the location random intercepts and time slopes", "1"),
    # ---- per method (simstudy.methods.METHODS; the design's `methods` along dim `method`)
    "flag": _v(_MG, "group flagged as inconsistent by the method: 1 yes, 0 no, NaN unscored or not run", "1"),
    "score": _v(_MG, "the method's score for ROC/PR curves: PIP (ss_melsm) or |Z| (hlm rules)", "1"),
    "method_s": _v(_MF, "wall time of the method on this data set (ss_melsm: its sampling share; "
                        "hlm rules: the one two-stage HLM run they share)", "s"),
    # ---- two-stage HLM (simstudy.methods.hlm); NaN when no hlm rule ran
    "hlm_z": _v(_G, "two-stage HLM: Z = BLUP / SE of the group's log residual SD deviation (NaN: n < 2)", "1"),
    "hlm_tau2": _v(_F, "two-stage HLM: REML tau^2 of the meta-analysis of d_j = log s_j + 1/(2 df_j)", "1"),
    "hlm_H": _v(_F, "two-stage HLM: homogeneity statistic H = sum (d_j - d_bar)^2 / v_j", "1"),
    "hlm_H_p": _v(_F, "two-stage HLM: p-value of H (chi-square, J - 1 df)", "1"),
}


def empty_value(name: str):
    """The fill value of a variable: NaN for numbers, "" for text."""
    return "" if SCHEMA[name]["dtype"].startswith("<U") else np.nan


def _blank(n_groups_max: int, n_methods: int = 1) -> dict[str, np.ndarray]:
    out = {}
    for name, spec in SCHEMA.items():
        shape = {_G: (n_groups_max,), _F: (), _MG: (n_methods, n_groups_max), _MF: (n_methods,)}[spec["dims"]]
        out[name] = np.full(shape, empty_value(name), dtype=spec["dtype"])
    return out


def _truncate(text: str) -> str:
    text = str(text)
    return text if len(text) <= ERROR_MAX else text[: ERROR_MAX - 3] + "..."


def failed_record(n_groups_max: int, error: str, n_methods: int = 1) -> dict[str, np.ndarray]:
    """The record of a fit that raised: every number NaN, status "failed", the error text."""
    rec = _blank(n_groups_max, n_methods)
    rec["status"] = np.asarray("failed", dtype=STATUS_DTYPE)
    rec["error"] = np.asarray(_truncate(error), dtype=ERROR_DTYPE)
    return rec


def _pad(values, n_groups_max: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size > n_groups_max:
        raise ValueError(f"{values.size} groups do not fit the store's {n_groups_max} group slots")
    out = np.full(n_groups_max, np.nan)
    out[: values.size] = values
    return out


def _draws(da) -> np.ndarray:
    return np.asarray(da.values, dtype=np.float64).reshape(-1)


def _summary(draws: np.ndarray) -> tuple[float, float, float]:
    if draws.size == 0 or not np.all(np.isfinite(draws)):
        return math.nan, math.nan, math.nan
    q05, q95 = np.quantile(draws, [0.05, 0.95])
    return float(np.mean(draws)), float(q05), float(q95)


def _sel_name(da, dim: str, name: str):
    values = [str(v) for v in da[dim].values]
    if name not in values:
        raise ValueError(f"no {name!r} along {dim} (have {values})")
    return da.isel({dim: values.index(name)})


def _min_over(ds, names=("beta", "eta", "tau", "corr")) -> float:
    values = [np.ravel(ds[v].values) for v in names if v in ds]
    if not values:
        return math.nan
    vals = np.concatenate(values).astype(np.float64)
    vals = vals[np.isfinite(vals)]
    return float(vals.min()) if vals.size else math.nan


def _param(params: dict, key: str) -> float:
    v = params.get(key, math.nan)
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _fill_truth(rec: dict, data, truth: "Truth", n_groups_max: int) -> None:
    """The truth and data variables of a record (per group and per fit), the same for a fit's
    record (:func:`score_fit`) and a comparator-only one (:func:`truth_record`). The slope
    truths are NaN unless the model has a random ``time`` slope in the location."""
    scalar = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
    rec["delta_true"] = _pad(np.asarray(truth.delta, dtype=np.float64), n_groups_max)
    rec["t_true"] = _pad(truth.t, n_groups_max)
    rec["u_true"] = _pad(truth.u, n_groups_max)
    rec["sigma_true"] = _pad(truth.sigma, n_groups_max)
    rec["n_obs"] = _pad(data.group_sizes, n_groups_max)
    rec["observed_sd"] = _pad(data.stats.y_sd, n_groups_max)
    p = truth.params
    rec["tau_t_true"] = scalar(_param(p, "tau_t"))
    rec["tau_u_true"] = scalar(_param(p, "tau_u"))
    rec["eta0_true"] = scalar(_param(p, "eta0"))
    rec["gamma0_true"] = scalar(_param(p, "gamma0"))
    rec["rho_true"] = scalar(_param(p, "rho"))
    has_slope = "time" in data.z_loc_names
    rec["tau_u1_true"] = scalar(_param(p, "tau_u1") if has_slope else math.nan)
    rec["rho_u01_true"] = scalar(_param(p, "rho_u01") if has_slope else math.nan)
    rec["n_inconsistent_true"] = scalar(_param(p, "n_inconsistent") if "n_inconsistent" in p
                                        else float(np.sum(truth.delta)))
    rec["share_true"] = scalar(float(np.mean(truth.delta)))
    rec["pi_true"] = scalar(_param(p, "pi"))


def truth_record(data, truth: "Truth", n_groups_max: int, n_methods: int = 1) -> dict[str, np.ndarray]:
    """The record of a data set no SS-MELSM fit was made for (a comparator-only design):
    the truth and the group sizes, status "ok", every SS-MELSM variable NaN."""
    if truth.n_groups != data.n_groups:
        raise ValueError(f"the truth has {truth.n_groups} groups but the data have {data.n_groups}")
    rec = _blank(n_groups_max, n_methods)
    _fill_truth(rec, data, truth, n_groups_max)
    rec["status"] = np.asarray("ok", dtype=STATUS_DTYPE)
    rec["error"] = np.asarray("", dtype=ERROR_DTYPE)
    return rec


def add_methods(rec: dict, methods, n_groups_max: int, *, pip=None, pip_seconds: float = math.nan,
                hlm=None, hlm_error: str = "") -> dict[str, np.ndarray]:
    """Fill the per-method variables of ``rec`` (in place; returned): for ``ss_melsm`` the
    score is ``pip`` and the flag ``pip >= SS_MELSM_FLAG_PIP``; for the HLM rules the score is
    ``|Z|`` and the flag the rule's (``hlm``: a :class:`simstudy.methods.hlm.HLMResult`).
    Unscored groups (NaN score) have a NaN flag. A comparator that raised (``hlm_error``)
    leaves its rows NaN and its message in ``error``."""
    M = len(methods)
    flag = np.full((M, n_groups_max), np.nan)
    score = np.full((M, n_groups_max), np.nan)
    secs = np.full(M, np.nan)
    for i, m in enumerate(methods):
        if m == "ss_melsm":
            if pip is None:
                continue
            sc = _pad(pip, n_groups_max)
            score[i] = sc
            flag[i] = np.where(np.isfinite(sc), (sc >= SS_MELSM_FLAG_PIP).astype(float), np.nan)
            secs[i] = pip_seconds
        elif hlm is not None:
            sc = _pad(hlm.score, n_groups_max)
            score[i] = sc
            flag[i] = np.where(np.isfinite(sc), _pad(hlm.flags[m], n_groups_max), np.nan)
            secs[i] = hlm.seconds
    rec["flag"], rec["score"], rec["method_s"] = flag, score, secs
    if hlm is not None:
        rec["hlm_z"] = _pad(hlm.z, n_groups_max)
        rec["hlm_tau2"] = np.asarray(hlm.tau2, dtype=np.float64)
        rec["hlm_H"] = np.asarray(hlm.H, dtype=np.float64)
        rec["hlm_H_p"] = np.asarray(hlm.H_p, dtype=np.float64)
    if hlm_error:
        old = str(rec.get("error", ""))
        rec["error"] = np.asarray(_truncate(f"{old}; hlm: {hlm_error}" if old else f"hlm: {hlm_error}"),
                                  dtype=ERROR_DTYPE)
    return rec


def score_fit(fit: "FitResult", truth: "Truth", n_groups_max: int, n_methods: int = 1) -> dict[str, np.ndarray]:
    """One store record: per-group arrays padded with NaN to ``n_groups_max`` and per-fit
    scalars (0-d arrays), keyed by the names of :data:`SCHEMA` (the per-method variables
    blank: :func:`add_methods` fills them)."""
    post = fit.posterior
    if post.sizes.get("scale_random", 1) != 1:
        raise ValueError("score_fit handles one scale random effect (a random scale intercept); "
                         f"this fit has {post.sizes['scale_random']}")
    J = int(post.sizes["group"])
    if truth.n_groups != J:
        raise ValueError(f"the truth has {truth.n_groups} groups but the fit has {J}")
    rec = _blank(n_groups_max, n_methods)

    # per group
    _fill_truth(rec, fit.data, truth, n_groups_max)
    rec["pip"] = _pad(fit.pip.values[:, 0], n_groups_max)
    t_eff = (post["t"].isel(scale_random=0) * post["incl_prob"].isel(scale_random=0)).mean(("chain", "draw"))
    rec["t_mean"] = _pad(t_eff.values, n_groups_max)
    rec["sigma_mean"] = _pad(post["group_sd"].mean(("chain", "draw")).values, n_groups_max)

    # per fit: status and diagnostics
    scalar = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
    rec["status"] = np.asarray(fit.status, dtype=STATUS_DTYPE)
    rec["error"] = np.asarray("", dtype=ERROR_DTYPE)
    rec["divergences"] = scalar(fit.divergences)
    rec["rhat_max"] = scalar(fit.rhat_max)
    rec["ess_bulk_min"] = scalar(fit.ess_bulk_min)
    rec["ess_tail_min"] = scalar(_min_over(fit.diagnostics["ess_tail"]))
    verdict = fit.verdict
    rec["rhat_worst"] = scalar(verdict.rhat_worst)
    rec["ess_worst"] = scalar(verdict.ess_worst)
    rec["worst_param"] = np.asarray(verdict.worst_param[:64], dtype=PARAM_DTYPE)
    rec["draws_used"] = scalar(fit.draws_used)
    rec["extensions"] = scalar(fit.extensions)
    rec["reruns"] = scalar(fit.reruns)
    stats = fit.sample_stats
    rec["tree_depth_mean"] = scalar(float(np.mean(stats["tree_depth"].values)) if "tree_depth" in stats else math.nan)
    rec["sample_s"] = scalar(fit.sample_s)
    rec["compile_s"] = scalar(fit.compile_s)

    # posterior summaries
    tau = post["tau"]
    summaries = {
        "tau_t": _draws(_sel_name(tau, "random_effect", "scale:Intercept")),
        "tau_u": _draws(_sel_name(tau, "random_effect", "location:Intercept")),
        "eta0": _draws(_sel_name(post["eta"], "scale_fixed", "Intercept")),
        "gamma0": _draws(_sel_name(post["beta"], "location_fixed", "Intercept")),
    }
    if "corr" in post:
        corr = _sel_name(post["corr"], "random_effect", "location:Intercept")
        summaries["rho"] = _draws(_sel_name(corr, "random_effect_bis", "scale:Intercept"))
    else:
        summaries["rho"] = np.array([])
    summaries["pi"] = _draws(post["pi"]) if "pi" in post else np.array([])
    summaries.update(_slope_summaries(post))
    for base, draws in summaries.items():
        mean, q05, q95 = _summary(draws)
        rec[f"{base}_mean"], rec[f"{base}_q05"], rec[f"{base}_q95"] = scalar(mean), scalar(q05), scalar(q95)
    ess_tau = _sel_name(fit.diagnostics["ess_bulk"]["tau"], "random_effect", "scale:Intercept")
    rec["ess_bulk_tau_t"] = scalar(float(ess_tau.values))
    return rec


def _slope_summaries(post) -> dict[str, np.ndarray]:
    """Draws of tau_u1 (SD of the random time slopes) and rho_u01 (their correlation with the
    random intercepts) when the fit has a location random effect ``time``; empty otherwise."""
    names = [str(v) for v in post["tau"]["random_effect"].values]
    if "location:time" not in names:
        return {"tau_u1": np.array([]), "rho_u01": np.array([])}
    out = {"tau_u1": _draws(_sel_name(post["tau"], "random_effect", "location:time")), "rho_u01": np.array([])}
    if "corr" in post:
        corr = _sel_name(post["corr"], "random_effect", "location:Intercept")
        out["rho_u01"] = _draws(_sel_name(corr, "random_effect_bis", "location:time"))
    return out


def stack_records(records: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack per-replicate records along a new first axis (replicate)."""
    if not records:
        raise ValueError("no records to stack")
    return {name: np.stack([r[name] for r in records]).astype(SCHEMA[name]["dtype"]) for name in SCHEMA}
