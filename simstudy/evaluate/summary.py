"""The per-cell summary of a study: every metric of ``simstudy.evaluate`` with its MCSE.

Everything here is a pure function of an ``xarray.Dataset`` with the store's schema
(dims ``cell``, ``replicate``, ``group``; see ``simstudy.study.store``) and returns NumPy arrays,
``xarray`` objects or ``pandas`` frames. Every cell-level summary comes with its Monte
Carlo standard error (MCSE) in ``<metric>_mcse``.

:func:`summarize` gathers classification, threshold-free, calibration, estimation and runtime
metrics into one ``xarray.Dataset`` over ``cell`` (CF-style ``long_name``/``units`` attrs);
:func:`summarize_cli` prints and writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .fits import PARAMS, cell_pi, cell_thresholds, design_info, factor_levels, fit_counts, open_store, usable_fits
from .mcse import _mean_mcse
from .classification import classification, replicate_auc
from .calibration import calibration_stats
from .estimation import ESTIMABLE_WHEN, estimation
from .runtime import runtime


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
    "share_not_converged": "share of fits failing the convergence rule after the last extension",
    "extensions_mean": "extensions (blocks of draws added) per fit",
    "divergences_mean": "divergent transitions per fit",
    "n_groups_eff": "number of groups J in the data",
    "group_size_eff": "mean group size n in the data",
    "threshold": "PIP threshold for flagging",
    "model_pi": "model prior inclusion probability",
    "pi_mean": "posterior mean of pi, E[pi | y] (Beta hyperprior on pi), mean over fits",
    "pi_q05": "5% posterior quantile of pi, mean over fits",
    "pi_q95": "95% posterior quantile of pi, mean over fits",
    "share_true": "true share of inconsistent groups in the data, mean over fits",
}
_UNITS = {"sample_s": "s", "compile_s": "s", "total_s": "s", "ess_per_s_tau_t": "1/s", "ess_min_per_s": "1/s"}


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
        in {"pip", "delta_true", "t_true", "n_obs", "status", "done", "sample_s", "compile_s", "ess_bulk_tau_t", "ess_bulk_min", "rhat_max", "divergences",
              "rhat_worst", "extensions", "pi_mean", "pi_q05", "pi_q95", "share_true", *ESTIMABLE_WHEN.values()}
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
    out.update(posterior_pi(ds, converged_only))

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


def posterior_pi(ds: xr.Dataset, converged_only: bool = False) -> dict[str, np.ndarray]:
    """Per cell, for fits with a Beta hyperprior on pi (a finite ``pi_mean`` in the store):
    ``pi_mean`` (mean of E[pi | y] over usable fits), ``pi_q05``/``pi_q95`` and ``share_true``
    (the true share of inconsistent groups it estimates), each with ``_mcse``. Empty when
    pi is fixed everywhere."""
    if "pi_mean" not in ds or not np.isfinite(np.asarray(ds["pi_mean"].values, float)).any():
        return {}
    use = usable_fits(ds, converged_only)
    out = {}
    for k in ("pi_mean", "pi_q05", "pi_q95", "share_true"):
        if k in ds:
            v = np.where(use, np.asarray(ds[k].values, float), np.nan)
            out[k], out[f"{k}_mcse"], _ = _mean_mcse(v)
    return out


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


def cell_tables(title: str, headers: list[str], rows: list[list[str]], width: int | None) -> list:
    """Rich tables of ``rows`` (cell label, fits, one value per header): one table when it fits
    ``width`` (None: any width), else the value columns split greedily over several tables that
    each fit, every one repeating the cell and fits columns. Value columns never wrap or shrink."""
    from rich.console import Console
    from rich.table import Table

    def build(idx: list[int], part: str) -> Table:
        table = Table(title=title + part, show_lines=False)
        table.add_column("cell", overflow="fold", ratio=3)  # long labels fold within the width
        table.add_column("fits", justify="right", no_wrap=True)
        for i in idx:
            cells = [headers[i]] + [r[2 + i] for r in rows]
            table.add_column(headers[i], justify="right", no_wrap=True, min_width=max(map(len, cells)))
        for r in rows:
            table.add_row(r[0], r[1], *[r[2 + i] for i in idx])
        return table

    def fits(idx: list[int]) -> bool:
        return width is None or Console(width=100_000).measure(build(idx, "")).minimum <= width

    groups: list[list[int]] = [[]]
    for i in range(len(headers)):
        if groups[-1] and not fits(groups[-1] + [i]):
            groups.append([])
        groups[-1].append(i)
    if len(groups) == 1:
        return [build(groups[0], "")]
    return [build(g, f" ({n} of {len(groups)})") for n, g in enumerate(groups, start=1)]


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
    from rich.markup import escape  # design names, labels, paths are text, not markup
    from rich.table import Table

    ds = open_store(store)
    summary = summarize(ds, threshold=threshold, rule=rule, bf=bf, converged_only=converged_only)
    from .fits import unfinished_note

    note = unfinished_note(ds, store if not isinstance(store, xr.Dataset) else None)
    if note:
        Console(stderr=True).print(f"note: {escape(note)}", highlight=False)
    rule_txt = f"PIP ≥ {threshold:g}" if rule == "pip" else f"BF₁₀ ≥ {bf:g} (PIP ≥ {bf:g}π/(1−π+{bf:g}π))"
    title = f"{escape(str(design_info(ds).get('name', 'study')))}: {rule_txt}; value ± MCSE"
    cols = [(k, h) for k, h in _CLI_COLUMNS if k in summary]
    labels = summary["cell_label"].values if "cell_label" in summary.coords else np.arange(summary.sizes["cell"])
    rows = []
    for c in range(summary.sizes["cell"]):
        fits = f"{int(summary.n_used[c])}"
        if int(summary.n_failed[c]):
            fits += f" ({int(summary.n_failed[c])} failed)"
        if int(summary.n_pending[c]):
            fits += f" ({int(summary.n_pending[c])} pending)"
        row = [escape(str(labels[c])), fits]
        for k, _ in cols:
            se = summary[f"{k}_mcse"].values[c] if f"{k}_mcse" in summary else None
            row.append(_fmt(float(summary[k].values[c]), None if se is None else float(se), 2 if k == "sample_s" else 3))
        rows.append(row)
    import shutil

    # a terminal's width ($COLUMNS first): the metric columns are split over as many tables as
    # needed (cell labels fold, numbers and headers are never cut); a file or pipe without
    # $COLUMNS gets one table at its natural width
    terminal = shutil.get_terminal_size(fallback=(0, 0)).columns
    console = Console(width=terminal) if terminal > 0 else Console(width=100_000)  # the other lines
    for table in cell_tables(title, [h for _, h in cols], rows, terminal or None):
        natural = Console(width=100_000).measure(table).maximum
        Console(width=min(natural, terminal) if terminal > 0 else natural).print(table)
    from .methods import methods_table, store_methods, summarize_methods

    if store_methods(ds) != ["ss_melsm"]:  # comparators: one row per method, averaged over cells
        keep = ("pip", "delta_true", "t_true", "status", "done", "flag", "score", "method_s")
        sm = summarize_methods(ds[[v for v in keep if v in ds]].load(), threshold, rule, bf, converged_only)
        mt = methods_table(sm)
        t2 = Table(title="methods on the same data sets: mean over cells, value (MCSE)")
        for c in mt.columns:
            t2.add_column(c, justify="left" if c == "method" else "right")
        for row in mt.itertuples(index=False):
            t2.add_row(*[escape(str(v)) for v in row])
        console.print(t2)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".nc":
            _to_netcdf(summary, out)
        elif out.suffix == ".csv":
            summary_frame(summary).to_csv(out, index=False)
        else:
            raise ValueError(f"--out {out}: write a .nc or .csv file")
        console.print(f"wrote {escape(str(out))}", highlight=False)
    return summary


def _to_netcdf(summary: xr.Dataset, path: Path) -> None:
    s = summary.copy()
    for k in list(s.coords) + list(s.data_vars):
        if s[k].dtype.kind in ("O", "U", "T"):
            s[k] = s[k].astype(str).astype(object)
    s.to_netcdf(path, engine="h5netcdf")
