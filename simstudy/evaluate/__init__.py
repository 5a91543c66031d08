"""What a study found, computed from its results store only.

One module per kind of metric, each a set of pure functions over the store's
``xarray.Dataset`` (dims ``cell``, ``replicate``, ``group``) returning per-cell arrays with
Monte Carlo standard errors:

* :mod:`.fits` — reading the store: factors, thresholds, which fits count;
* :mod:`.mcse` — Monte Carlo standard errors;
* :mod:`.classification` — TPR, FPR, precision, F1, MCC, P(at least one false flag), ROC/PR;
* :mod:`.calibration` — reliability tables, ECE, Brier decomposition;
* :mod:`.estimation` — bias, empirical SE, RMSE, coverage of the hyperparameters;
* :mod:`.runtime` — seconds per fit, ESS per second, scaling exponents;
* :mod:`.summary` — :func:`summarize`: all of the above per cell;
* :mod:`.methods` — classification per method (SS-MELSM and comparators), paired differences;
* :mod:`.paired` — setting-vs-setting differences on shared data sets (paired MCSE);
* :mod:`.decision` — the decision rule over unknown truths (admissible settings, worst-case TPR, regret);
* :mod:`.plots` — seaborn figures; :mod:`.report` — the Markdown report.

The metric functions are re-exported here (``from simstudy import evaluate as E;
E.summarize(ds)``); ``plots`` and ``report`` import matplotlib and are imported on their own.
"""

from .calibration import calibration_stats, pooled_curves, reliability_table
from .classification import (
    CLASSIFICATION_METRICS,
    average_precision,
    classification,
    confusion,
    pr_curve,
    replicate_auc,
    replicate_rates,
    roc_auc,
    roc_curve,
)
from .estimation import estimation
from .fits import (
    PARAMS,
    RHAT_THRESHOLD,
    USABLE_STATUS,
    cell_factors,
    cell_pi,
    cell_thresholds,
    design_info,
    factor_levels,
    fit_counts,
    fit_status,
    open_store,
    usable_fits,
    varying_factors,
)
from .mcse import mcse_mean, mcse_proportion, replicates_needed
from .methods import method_view, paired_difference, store_methods, summarize_methods
from .paired import cell_difference, setting_difference, setting_pairs
from .decision import decision_table, regret_table
from .runtime import runtime, runtime_scaling
from .summary import LONG_NAMES, marginal, summarize, summarize_cli, summary_frame

__all__ = [
    "PARAMS", "USABLE_STATUS", "RHAT_THRESHOLD", "CLASSIFICATION_METRICS", "LONG_NAMES",
    "mcse_proportion", "mcse_mean", "replicates_needed",
    "open_store", "design_info", "cell_factors", "factor_levels", "varying_factors", "cell_pi",
    "cell_thresholds", "fit_status", "usable_fits", "fit_counts",
    "confusion", "replicate_rates", "classification", "roc_auc", "average_precision", "roc_curve",
    "pr_curve", "replicate_auc",
    "calibration_stats", "reliability_table", "pooled_curves",
    "estimation", "runtime", "runtime_scaling",
    "summarize", "summary_frame", "marginal", "summarize_cli",
    "store_methods", "method_view", "summarize_methods", "paired_difference",
    "setting_pairs", "setting_difference", "cell_difference", "decision_table", "regret_table",
]
