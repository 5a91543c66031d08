"""Names, symbols and axis labels of factors and metrics for figures and reports
(``"n_groups"`` -> "Number of groups J", ``"tau_t_bias"`` -> "Bias of τ_t")."""

from __future__ import annotations

import re

import numpy as np

#: factor names spelled out for axis labels, legends and reports
PRETTY: dict[str, str] = {
    "n_groups": "Number of groups J",
    "group_size": "Group size n",
    "share_inconsistent": "Share of inconsistent groups",
    "slab_sd": "Slab SD",
    "pi": "Prior inclusion probability π",
    "scale_sd": "Prior on scale RE SD",
    "location_sd": "Prior on location RE SD",
    "lkj_eta": "LKJ prior η",
    "correlated": "Correlated random effects",
    "location_fixed_sd": "Prior SD of location fixed effects",
    "scale_fixed_sd": "Prior SD of scale fixed effects",
    "size_dist": "Group-size distribution",
    "size_min": "Smallest group size",
    "size_max": "Largest group size",
    "gamma0": "Location intercept γ₀",
    "tau_u": "Location RE SD τ_u",
    "eta0": "Scale intercept η₀",
    "count_mode": "Count of inconsistent groups",
    "effect": "Scale-effect distribution",
    "magnitude": "Scale-effect magnitude |t|",
    "direction": "Scale-effect direction",
    "rho": "Location–scale correlation ρ",
    "covariates": "Covariates",
    "mode": "Generating mode",
    "prior_pi": "Generating inclusion probability",
    "prior_location_sd": "Generating location RE SD prior",
    "prior_scale_sd": "Generating scale RE SD prior",
    "chains": "Chains",
    "warmup": "Warm-up iterations",
    "draws": "Draws per chain",
    "target_accept": "Target acceptance rate",
    "max_tree_depth": "Maximum tree depth",
    "cell_label": "Cell",
    # longitudinal layout
    "layout": "Data layout",
    "gamma1": "Location time slope γ₁",
    "tau_u1": "Random time-slope SD τ_u1",
    "rho_u01": "Intercept–slope correlation ρ_u01",
    "eta1": "Scale time slope η₁",
    "phi": "Residual autocorrelation φ (AR(1))",
    "dropout": "MCAR missing share",
    "dropout_monotone": "Monotone dropout share",
    "location_random_slope": "Random time slopes fitted",
    "scale_time": "Time in the scale model",
}

#: short symbols for legends and facet titles ("J = 50")
SYMBOLS: dict[str, str] = {
    "n_groups": "J",
    "group_size": "n",
    "share_inconsistent": "share inconsistent",
    "slab_sd": "slab SD",
    "pi": "π",
    "scale_sd": "scale-SD prior",
    "location_sd": "location-SD prior",
    "lkj_eta": "LKJ η",
    "gamma0": "γ₀",
    "tau_u": "τ_u",
    "eta0": "η₀",
    "rho": "ρ",
    "magnitude": "|t|",
    "phi": "φ",
    "tau_u1": "τ_u1",
    "rho_u01": "ρ_u01",
    "dropout": "MCAR missing share",
    "dropout_monotone": "dropout share",
}

_PARAM_SYMBOLS = {"tau_t": "τ_t", "tau_u": "τ_u", "eta0": "η₀", "gamma0": "γ₀", "rho": "ρ",
                  "tau_u1": "τ_u1", "rho_u01": "ρ_u01"}  # the last two: longitudinal layout

#: axis labels (with units) of cell metrics
METRIC_LABELS: dict[str, str] = {
    "tpr": "True positive rate (sensitivity)",
    "fpr": "False positive rate",
    "tnr": "True negative rate (specificity)",
    "precision": "Precision",
    "fdr": "False discovery rate",
    "f1": "F1 score",
    "mcc": "Matthews correlation coefficient",
    "fwer": "P(at least one false flag)",
    "tpr_more_variable": "TPR, more variable groups",
    "tpr_more_consistent": "TPR, more consistent groups",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC (average precision)",
    "ece": "Expected calibration error",
    "ece_mass": "ECE (equal-mass bins)",
    "ece_null": "ECE floor under perfect calibration",
    "brier": "Brier score",
    "brier_reliability": "Brier reliability term",
    "brier_resolution": "Brier resolution term",
    "sample_s": "Sampling time per fit (s)",
    "compile_s": "Compilation time per fit (s)",
    "total_s": "Time per fit (s)",
    "ess_per_s_tau_t": "Bulk ESS of τ_t per second (1/s)",
    "ess_min_per_s": "Smallest bulk ESS per second (1/s)",
    "share_rhat_high": "Share of fits with R-hat > 1.01",
    "share_divergent": "Share of fits with divergences",
    "share_not_converged": "Share of fits not converged (after extension)",
    "extensions_mean": "Extensions per fit",
    "divergences_mean": "Divergent transitions per fit",
}
_STAT_LABELS = {
    "bias": "Bias of {p}",
    "empse": "Empirical SE of {p}",
    "rmse": "RMSE of {p}",
    "mse": "MSE of {p}",
    "coverage": "Coverage of the 90% interval for {p}",
}
_UNIT_INTERVAL = {
    "tpr", "fpr", "tnr", "precision", "fdr", "f1", "fwer", "tpr_more_variable", "tpr_more_consistent",
    "roc_auc", "pr_auc", "share_rhat_high", "share_divergent",
    "share_not_converged",
}  # fmt: skip
_REFERENCE = {"roc_auc": 0.5, "mcc": 0.0}

#: metrics drawn by :func:`plot_all` (those present with a finite value)
DEFAULT_METRICS = (
    "tpr",
    "fpr",
    "fwer",
    "precision",
    "f1",
    "mcc",
    "roc_auc",
    "pr_auc",
    "ece",
    "brier",
    "tau_t_bias",
    "tau_t_coverage",
    "sample_s",
)


def pretty(name: str) -> str:
    """A factor's name spelled out ("n_groups" -> "Number of groups J")."""
    if name in PRETTY:
        return PRETTY[name]
    return name.replace("_", " ").capitalize()


def metric_label(metric: str) -> str:
    """Axis label of a cell metric (``tau_t_bias`` -> "Bias of τ_t")."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    for p, sym in _PARAM_SYMBOLS.items():
        for stat, fmt in _STAT_LABELS.items():
            if metric == f"{p}_{stat}":
                return fmt.format(p=sym)
    return metric.replace("_", " ").capitalize()


def _level_text(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    if isinstance(value, str):
        return re.sub(r"half_(\w)", r"half-\1", value)  # "half_t(3, 1)" -> "half-t(3, 1)"
    return str(value)


def format_level(name: str, value) -> str:
    """"J = 50", "π = 0.25", "scale-SD prior = half-t(3, 1)"."""
    sym = SYMBOLS.get(name, pretty(name).lower() if name not in PRETTY else pretty(name))
    return f"{sym} = {_level_text(value)}"


def _is_unit(metric: str) -> bool:
    return metric in _UNIT_INTERVAL or metric.endswith("_coverage")


_NONNEG = {
    "ece", "ece_mass", "ece_null", "brier", "brier_reliability", "brier_resolution", "brier_uncertainty",
    "sample_s", "compile_s", "total_s", "ess_per_s_tau_t", "ess_min_per_s", "extensions_mean",
    "divergences_mean", "prevalence", "flagged",
}  # fmt: skip
#: metrics whose values lie on a ratio scale that can span decades (log axis when they do)
_DECADE_METRICS = {"fpr", "fwer", "fdr", "ece", "ece_mass", "ece_null", "brier", "brier_reliability",
                   "brier_resolution", "sample_s", "compile_s", "total_s", "ess_per_s_tau_t", "ess_min_per_s"}


def metric_range(metric: str) -> tuple[float, float]:
    """The values a cell metric can take, ``(lo, hi)`` (``±inf`` when unbounded): the one table
    figures clip error bars to (rates and coverage in [0, 1], MCC in [-1, 1], ECE, Brier,
    times, SEs and RMSEs >= 0)."""
    if _is_unit(metric):
        return 0.0, 1.0
    if metric == "mcc":
        return -1.0, 1.0
    if metric in _NONNEG or metric.endswith(("_empse", "_rmse", "_mse", "_mcse")):
        return 0.0, np.inf
    if metric in ("model_pi", "share_true") or metric.startswith("pi_"):
        return 0.0, 1.0
    return -np.inf, np.inf


def spans_decades(metric: str) -> bool:
    """Whether ``metric`` may be drawn on a log axis (a positive ratio-scale quantity)."""
    return metric in _DECADE_METRICS
