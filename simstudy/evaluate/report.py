"""Sensitivity report of a results store: figures, CSV tables and a Markdown summary.

    simstudy report STORE --out report/        (or: python analysis/sensitivity_report.py ...)
    from simstudy.evaluate.report import build_report

writes into ``report/``:

* ``report.md``: the design, which fits count, and for every factor that varies generated
  sentences on how TPR, FPR, the family-wise false-flag rate, ROC AUC and calibration (ECE,
  Brier score) move with it, each value with its Monte Carlo SE; cell tables; estimation of
  the hyperparameters; runtime and sampling quality; the BF >= 3 rule for comparison;
* ``figures/``: every study figure (PNG + PDF) of :func:`simstudy.evaluate.plots.plot_all`;
* ``tables/``: ``summary.csv`` (every cell metric with MCSE), ``summary_bf.csv`` (flagging by
  BF >= 3), ``marginals.csv`` (each metric averaged per factor level), ``reliability.csv``
  and ``roc_curves.csv``.

Works for any factor set, single-cell designs, and tiny studies with undefined rates.
"""

from __future__ import annotations

import argparse
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import simstudy.evaluate as M

from . import plots as P

#: metrics described factor by factor (name in sentences, summary variable)
TREND_METRICS = [
    ("TPR", "tpr"),
    ("FPR", "fpr"),
    ("the probability of at least one false flag", "fwer"),
    ("ROC AUC", "roc_auc"),
    ("ECE", "ece"),
    ("the Brier score", "brier"),
]
#: factors discussed first (the brief: pi, the tau priors, J and n), then any other
FACTOR_ORDER = ["pi", "scale_sd", "location_sd", "n_groups", "group_size"]

CELL_COLUMNS = [
    ("tpr", "TPR"),
    ("fpr", "FPR"),
    ("fwer", "P(≥1 FP)"),
    ("precision", "Precision"),
    ("f1", "F1"),
    ("mcc", "MCC"),
    ("roc_auc", "ROC AUC"),
    ("ece", "ECE"),
    ("brier", "Brier"),
]


# ============================================================================ formatting
def _digits(se: float, min_digits: int = 2) -> int:
    """Decimals that show the first significant digit of the MCSE (at least ``min_digits``)."""
    if se is None or not np.isfinite(se) or se <= 0:
        return max(3, min_digits)
    return int(min(4, max(min_digits, -math.floor(math.log10(se)))))


def num(v: float, se: float | None = None, paren: str = "MCSE ", min_digits: int = 2) -> str:
    """``0.41 (MCSE 0.05)``; digits follow the MCSE; "n/a" for undefined values."""
    if v is None or not np.isfinite(v):
        return "n/a"
    d = _digits(se if se is not None else np.nan, min_digits)
    s = _f(v, d)
    if se is not None:
        s += f" ({paren}{_f(se, d)})" if np.isfinite(se) else f" ({paren}n/a)"
    return s


def _f(v: float, d: int, sign: bool = False) -> str:
    """Fixed-point text without a negative zero ("-0.00" -> "0.00")."""
    s = f"{v:+.{d}f}" if sign else f"{v:.{d}f}"
    if float(s) == 0:
        s = f"{0:.{d}f}"
    return s


def cell_value(v: float, se: float, min_digits: int = 2) -> str:
    """Table entry ``0.41 (0.05)``."""
    return num(v, se, paren="", min_digits=min_digits)


def md_table(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub Markdown table (no extra dependencies)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row.tolist()) + " |")
    return "\n".join(lines)


def _at(factor: str, level) -> str:
    return P.format_level(factor, level)


# ============================================================================ sentences
def describe_trend(summary: xr.Dataset, metric: str, factor: str, name: str | None = None) -> str:
    """One sentence on how a cell metric moves across the levels of ``factor`` (averaged
    over the other factors), with MCSEs. A change counts when the largest and smallest
    level means differ by more than 2 MCSE of their difference."""
    name = name or metric.upper()
    mg = M.marginal(summary, metric, factor)
    defined = mg[np.isfinite(mg["value"])]
    undefined = mg[~np.isfinite(mg["value"])]
    tail = ""
    if len(undefined):
        tail = " It is undefined at " + ", ".join(_at(factor, v) for v in undefined["level"]) + "."
    if len(defined) == 0:
        return f"{_cap(name)} is undefined at every level of {_low(P.pretty(factor))} (see the notes on undefined rates)."
    parts = [f"{num(r.value, r.mcse)} at {_at(factor, r.level)}" for r in defined.itertuples()]
    if len(defined) == 1:
        return f"{_cap(name)} is {parts[0]}.{tail}"
    vals, ses = defined["value"].to_numpy(), defined["mcse"].to_numpy()
    if np.ptp(vals) == 0:
        top = np.nanmax(ses) if np.isfinite(ses).any() else np.nan
        se_txt = "" if not np.isfinite(top) else (" in every replicate" if top == 0 else f" (MCSE at most {top:.{_digits(top)}f})")
        return f"{_cap(name)} is {vals[0]:.{_digits(np.nanmax(ses) if np.isfinite(ses).any() else np.nan)}f} at every level of {_low(P.pretty(factor))}{se_txt}.{tail}"
    imax, imin = int(np.argmax(vals)), int(np.argmin(vals))
    se_range = math.sqrt(ses[imax] ** 2 + ses[imin] ** 2)
    spread = vals[imax] - vals[imin]
    first, last = defined.iloc[0], defined.iloc[-1]
    steps = np.diff(vals)
    mono_up = np.all(steps >= 0)
    mono_down = np.all(steps <= 0)
    if not np.isfinite(se_range):
        verdict = " (Monte Carlo error not available with fewer than two replicates)"
        sig = spread > 0
    else:
        sig = spread > 2 * se_range
        verdict = ""
    if not sig:
        return (
            f"{_cap(name)} does not change with {_low(P.pretty(factor))} beyond Monte Carlo error: "
            + "; ".join(parts)
            + f" (largest difference {spread:.{_digits(se_range)}f}, MCSE {se_range:.{_digits(se_range)}f}).{tail}"
        )
    d = _digits(se_range)
    if not P.ordered_numeric(list(mg["level"])):  # categories (0.1, 0.5, beta(1, 1)): no order to rise along
        return (
            f"{_cap(name)} differs across the levels of {_low(P.pretty(factor))} (categories, not an ordered "
            "scale): " + "; ".join(parts)
            + f"; highest at {_at(factor, defined.iloc[imax].level)}, lowest at {_at(factor, defined.iloc[imin].level)}"
            + f" (difference {spread:.{d}f}, MCSE {se_range:.{d}f}){verdict}.{tail}"
        )
    diff = last.value - first.value
    se_diff = math.sqrt(first.mcse**2 + last.mcse**2) if np.isfinite(first.mcse) and np.isfinite(last.mcse) else np.nan
    diff_txt = f" (difference {_f(diff, d, True)}, MCSE {_f(se_diff, d)})" if np.isfinite(se_diff) else f" (difference {_f(diff, d, True)})"
    if mono_up or mono_down:
        verb = "rises" if mono_up else "falls"
        middle = f", through {', '.join(parts[1:-1])}," if len(parts) > 2 else ""
        return f"{_cap(name)} {verb} from {parts[0]}{middle} to {parts[-1]}{diff_txt}{verdict}.{tail}"
    return (
        f"{_cap(name)} varies non-monotonically with {_low(P.pretty(factor))}: "
        + "; ".join(parts)
        + f"; highest at {_at(factor, defined.iloc[imax].level)}, lowest at {_at(factor, defined.iloc[imin].level)}"
        + f" (difference {spread:.{d}f}, MCSE {se_range:.{d}f}){verdict}.{tail}"
    )


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _low(s: str) -> str:
    """Lower-case the first letter only ("Number of groups J" -> "number of groups J")."""
    return s[:1].lower() + s[1:]


def ordered_factors(summary: xr.Dataset) -> list[str]:
    varying = M.varying_factors(summary)
    return [f for f in FACTOR_ORDER if f in varying] + [f for f in varying if f not in FACTOR_ORDER]


# ============================================================================ tables
def marginals_table(summary: xr.Dataset, metrics: list[str]) -> pd.DataFrame:
    rows = []
    for f in M.varying_factors(summary):
        for m in metrics:
            if m not in summary:
                continue
            mg = M.marginal(summary, m, f)
            for r in mg.itertuples():
                rows.append({"factor": f, "level": r.level, "metric": m, "value": r.value, "mcse": r.mcse, "n_cells": r.n_cells})
    return pd.DataFrame(rows, columns=["factor", "level", "metric", "value", "mcse", "n_cells"])


def _cell_names(summary: xr.Dataset) -> list[str]:
    if "cell_label" in summary.coords:
        return [str(v) for v in summary["cell_label"].values]
    return [f"cell {i}" for i in range(summary.sizes["cell"])]


def cell_table(summary: xr.Dataset, columns=CELL_COLUMNS) -> pd.DataFrame:
    data = {"Cell": _cell_names(summary), "Fits": [int(v) for v in summary["n_used"].values]}
    for k, h in columns:
        if k in summary:
            se = summary[f"{k}_mcse"].values if f"{k}_mcse" in summary else np.full(summary.sizes["cell"], np.nan)
            data[h] = [cell_value(float(v), float(s)) for v, s in zip(summary[k].values, se)]
    return pd.DataFrame(data)


def estimation_table(summary: xr.Dataset) -> pd.DataFrame | None:
    cols = {"Cell": _cell_names(summary)}
    for p, sym in (("tau_t", "τ_t"), ("eta0", "η₀"), ("tau_u", "τ_u"), ("gamma0", "γ₀"), ("rho", "ρ")):
        if f"{p}_bias" not in summary or not np.isfinite(summary[f"{p}_bias"].values).any():
            continue
        cols[f"bias {sym}"] = [cell_value(float(v), float(s)) for v, s in zip(summary[f"{p}_bias"].values, summary[f"{p}_bias_mcse"].values)]
        cols[f"RMSE {sym}"] = [cell_value(float(v), float(s)) for v, s in zip(summary[f"{p}_rmse"].values, summary[f"{p}_rmse_mcse"].values)]
        cols[f"90% cover {sym}"] = [
            cell_value(float(v), float(s)) for v, s in zip(summary[f"{p}_coverage"].values, summary[f"{p}_coverage_mcse"].values)
        ]
    return pd.DataFrame(cols) if len(cols) > 1 else None


def runtime_table(summary: xr.Dataset) -> pd.DataFrame:
    data = {"Cell": _cell_names(summary)}
    for k, h, md in (
        ("sample_s", "sampling s/fit", 0),
        ("compile_s", "compile s/fit", 0),
        ("ess_per_s_tau_t", "ESS/s τ_t", 0),
        ("share_rhat_high", "R-hat > 1.01", 2),
        ("share_divergent", "divergent fits", 2),
        ("share_not_converged", "not converged", 2),
    ):
        if k in summary:
            data[h] = [cell_value(float(v), float(s), md) for v, s in zip(summary[k].values, summary[f"{k}_mcse"].values)]
    data["failed"] = [int(v) for v in summary["n_failed"].values]
    return pd.DataFrame(data)


# ============================================================================ report
def pi_section(summary: xr.Dataset) -> list[str]:
    """Markdown on E[pi | y] of fits with a Beta hyperprior on pi, per cell beside the true
    share of inconsistent groups (empty when pi is fixed in every cell)."""
    if "pi_mean" not in summary or not np.isfinite(summary["pi_mean"].values).any():
        return []
    L = ["## Posterior inclusion probability pi (Beta hyperprior)\n",
         "E[π | y] (mean over fits, MCSE) per cell with a Beta hyperprior on π, beside the true share of "
         "inconsistent groups in the data it estimates (figure `pi_vs_share`).\n"]
    names = _cell_names(summary)
    rows = []
    for c in range(summary.sizes["cell"]):
        v = float(summary["pi_mean"].values[c])
        if not np.isfinite(v):
            continue
        se = float(summary["pi_mean_mcse"].values[c]) if "pi_mean_mcse" in summary else np.nan
        share = float(summary["share_true"].values[c]) if "share_true" in summary else np.nan
        rows.append({"cell": names[c], "E[π | y]": cell_value(v, se),
                     "true share": "–" if not np.isfinite(share) else f"{share:.3f}",
                     "E[π | y] − share": "–" if not np.isfinite(share) else f"{v - share:+.3f}"})
    L.append(md_table(pd.DataFrame(rows)) + "\n")
    return L


def _range_sentence(summary: xr.Dataset, metric: str, label: str, unit: str = "", min_digits: int = 2) -> str | None:
    if metric not in summary:
        return None
    v = np.asarray(summary[metric].values, float)
    se = np.asarray(summary[f"{metric}_mcse"].values, float) if f"{metric}_mcse" in summary else np.full(v.shape, np.nan)
    ok = np.isfinite(v)
    if not ok.any():
        return None
    names = _cell_names(summary)
    i, j = int(np.nanargmin(np.where(ok, v, np.nan))), int(np.nanargmax(np.where(ok, v, np.nan)))
    if v[i] == v[j] and ok.sum() > 1:
        return f"{label} is {num(v[i], np.nanmax(se[ok]) if np.isfinite(se[ok]).any() else None, min_digits=min_digits)}{unit} in every cell."
    if i == j:
        return f"{label}: {num(v[i], se[i], min_digits=min_digits)}{unit} ({names[i]})."
    return (
        f"{label} ranges from {num(v[i], se[i], min_digits=min_digits)}{unit} ({names[i]}) "
        f"to {num(v[j], se[j], min_digits=min_digits)}{unit} ({names[j]})."
    )


def methods_section(ds, threshold: float, rule: str, bf: float, converged_only: bool, out: Path) -> list[str]:
    """"## Methods compared": per method the cell-averaged TPR, FPR, precision, P(≥1 false flag)
    and ROC AUC (MCSE), and sentences comparing the SS-MELSM with each comparator only where the
    paired difference exceeds 2 MCSE; empty for a store with the SS-MELSM alone. Writes
    ``tables/methods.csv`` (every metric per method and cell)."""
    from .methods import compare_methods_sentences, methods_table, store_methods, summarize_methods

    methods = store_methods(ds)
    if methods == ["ss_melsm"]:
        return []
    keep = ("pip", "delta_true", "t_true", "status", "done", "flag", "score", "method_s")
    small = ds[[v for v in keep if v in ds]].load()
    sm = summarize_methods(small, threshold, rule, bf, converged_only)
    sm.to_dataframe().reset_index().to_csv(out / "tables" / "methods.csv", index=False)
    L = ["## Methods compared\n",
         "Every method flagged the groups of the same data sets; averages over cells with equal weights (MCSE). "
         "Differences are paired by replicate.\n",
         md_table(methods_table(sm)) + "\n"]
    sentences = compare_methods_sentences(small, sm, threshold=threshold, rule=rule, bf=bf,
                                          converged_only=converged_only)
    if sentences:
        L += [f"- {x}" for x in sentences]
    elif "ss_melsm" in methods:
        L.append("- No difference between the SS-MELSM and a comparator exceeds 2 paired MCSE.")
    L.append("")
    return L


def decision_section(ds, summary: xr.Dataset, out: Path, level: float = 0.1, figures: bool = True,
                     threshold: float = 0.75, rule: str = "pip", bf: float = 3.0,
                     converged_only: bool = False) -> list[str]:
    """"## Choosing a prior without knowing the truth": the decision rule of
    :mod:`simstudy.evaluate.decision` for a design that crosses truth factors (share, slab SD)
    with prior factors (pi, SD priors); empty otherwise. Per (J, n): the recommended setting
    (P(≥1 false flag) ≤ ``level`` at every truth, best worst-case TPR) with MCSEs, and whether it
    beats the runner-up beyond 2 paired MCSE (the TPR difference at the recommended setting's
    worst truth, a lower bound of the worst-case difference); a table of every setting. Writes
    ``tables/decision.csv``, ``tables/regret.csv`` and, with ``figures``, the heatmaps
    ``figures/decision_regret`` and ``figures/decision_fwer``."""
    from .decision import crosses_truth_and_priors, decision_table, regret_table

    if not crosses_truth_and_priors(summary):
        return []
    dec = decision_table(summary, level)
    reg = regret_table(summary, level)
    dec.to_csv(out / "tables" / "decision.csv", index=False)
    reg.to_csv(out / "tables" / "regret.csv", index=False)
    if figures:
        for value in ("regret", "fwer"):
            P.save_figure(P.plot_decision(reg, value, level), out / "figures", f"decision_{value}")
    truth = dec.attrs["truth"]
    L = ["## Choosing a prior without knowing the truth\n",
         f"A setting is admissible when its P(≥1 false flag) is at most {level:g} at every truth "
         f"({', '.join(P.pretty(t) for t in truth)}; the null share included); admissible settings are ranked by "
         "their worst-case TPR over the non-null truths. Regret: the best admissible TPR at a truth minus the "
         "setting's (figures `decision_regret`, `decision_fwer`; tables `decision.csv`, `regret.csv`). "
         "Values with MCSE.\n"]
    L += recommendation_lines(ds, dec, reg, level, threshold, rule, bf, converged_only)
    L.append("")
    L.append(decision_overview(dec) + "\n")
    return L


def decision_overview(dec: pd.DataFrame) -> str:
    """Markdown table of every setting of :func:`simstudy.evaluate.decision.decision_table`:
    rank (blank: inadmissible), worst-case P(≥1 false flag) and TPR, max regret, ± MCSE."""
    tab = dec.assign(**{
        "rank": [("" if pd.isna(r) else str(int(r))) for r in dec["rank"]],
        "worst P(≥1 FP)": [cell_value(v, s) for v, s in zip(dec.worst_fwer, dec.worst_fwer_mcse)],
        "worst TPR": [cell_value(v, s) for v, s in zip(dec.worst_tpr, dec.worst_tpr_mcse)],
        "max regret": [cell_value(v, s) for v, s in zip(dec.max_regret, dec.max_regret_mcse)],
    })
    return md_table(tab[dec.attrs["by"] + ["setting", "rank", "worst P(≥1 FP)", "worst TPR", "max regret"]])


def recommendation_lines(ds, dec: pd.DataFrame, reg: pd.DataFrame, level: float = 0.1, threshold: float = 0.75,
                         rule: str = "pip", bf: float = 3.0, converged_only: bool = False) -> list[str]:
    """One Markdown bullet per ``by`` group of :func:`simstudy.evaluate.decision.decision_table`
    ``dec``: the recommended setting with its worst-case TPR and P(≥1 false flag) (± MCSE), and
    whether it beats the runner-up beyond 2 MCSE (the TPR difference at the recommended
    setting's worst truth, paired when the two cells share data sets; ``ds``: the store, for
    the per-replicate rates; ``reg``: :func:`~simstudy.evaluate.decision.regret_table`)."""
    from .methods import replicate_method_rates
    from .paired import cell_difference

    by = dec.attrs["by"]
    rates = None
    L: list[str] = []
    groups = [((), dec)] if not by else [((k if isinstance(k, tuple) else (k,)), g) for k, g in
                                         dec.groupby(by, sort=True)]
    for key, g in groups:
        where = ", ".join(f"{P.pretty(n)} = {P.format_level(n, v)}" for n, v in zip(by, key)) or "All cells"
        ranked = g[g["admissible"]].sort_values("rank")
        if ranked.empty:
            worst = g.sort_values("worst_fwer").iloc[0]
            L.append(f"- {where}: no setting keeps P(≥1 false flag) ≤ {level:g} at every truth; the lowest worst "
                     f"case is {num(worst.worst_fwer, worst.worst_fwer_mcse)} ({worst.setting}, at {worst.worst_fwer_at}).")
            continue
        best = ranked.iloc[0]
        text = (f"- {where}: **{best.setting}**, worst-case TPR {num(best.worst_tpr, best.worst_tpr_mcse)} "
                f"(at {best.worst_tpr_at}), P(≥1 false flag) at most {num(best.worst_fwer, best.worst_fwer_mcse)} "
                f"(at {best.worst_fwer_at})")
        if len(ranked) > 1:
            second = ranked.iloc[1]
            at = reg[(reg["truth"] == best.worst_tpr_at)]
            for n, v in zip(by, key):
                at = at[at[n].astype(str) == str(v)]
            ci = at.loc[at["setting"] == best.setting, "cell"].tolist() if "cell" in at else []
            cj = at.loc[at["setting"] == second.setting, "cell"].tolist() if "cell" in at else []
            i = int(ci[0]) if len(ci) == 1 else None
            j = int(cj[0]) if len(cj) == 1 else None
            if i is not None and j is not None and "pip" in ds:
                rates = rates or replicate_method_rates(ds, "ss_melsm", threshold, rule, bf, converged_only)
                d = cell_difference(ds, "tpr", i, j, rates=rates)
                kind = "paired" if d["paired"] else "unpaired"
                beats = np.isfinite(d["mcse"]) and d["diff"] > 2 * d["mcse"]
                text += (f"; ahead of the runner-up {second.setting} (worst-case TPR "
                         f"{num(second.worst_tpr, second.worst_tpr_mcse)}) by {d['diff']:+.3f} ({kind} MCSE "
                         f"{d['mcse']:.3f}) at that truth: "
                         + ("beyond 2 MCSE." if beats else "the two are indistinguishable at this precision."))
            else:
                text += f"; runner-up {second.setting} (worst-case TPR {num(second.worst_tpr, second.worst_tpr_mcse)})."
        else:
            text += "; the only admissible setting."
        L.append(text)
    return L


def build_report(
    store,
    out,
    threshold: float = 0.75,
    rule: str = "pip",
    bf: float = 3.0,
    converged_only: bool = False,
    figures: bool = True,
) -> Path:
    """Write figures, tables and ``report.md`` for a results store (path or Dataset) into
    ``out``; returns the path of ``report.md``."""
    out = Path(out)
    ds = M.open_store(store)  # first: nothing is written for a path that is not a results store
    (out / "tables").mkdir(parents=True, exist_ok=True)
    info = M.design_info(ds)
    summary = M.summarize(ds, threshold=threshold, rule=rule, bf=bf, converged_only=converged_only)
    summary_bf = M.summarize(ds, rule="bf", bf=bf, converged_only=converged_only) if rule == "pip" else None
    factors = ordered_factors(summary)

    # ---------------------------------------------------------------- tables
    M.summary_frame(summary).to_csv(out / "tables" / "summary.csv", index=False)
    if summary_bf is not None:
        M.summary_frame(summary_bf).to_csv(out / "tables" / "summary_bf.csv", index=False)
    metric_names = [m for _, m in TREND_METRICS] + ["precision", "f1", "mcc", "pr_auc", "ece_mass", "tau_t_bias", "tau_t_coverage", "sample_s"]
    marginals_table(summary, metric_names).to_csv(out / "tables" / "marginals.csv", index=False)
    small = ds[[v for v in ("pip", "delta_true", "status", "done") if v in ds]].load()
    by = [f for f in factors[:2]]
    M.reliability_table(small, by=by or None, converged_only=converged_only).to_csv(out / "tables" / "reliability.csv", index=False)
    M.pooled_curves(small, "roc", by=by or None, converged_only=converged_only).to_csv(out / "tables" / "roc_curves.csv", index=False)

    # ---------------------------------------------------------------- figures
    fig_paths: list[Path] = []
    if figures:
        fig_paths = P.plot_all(ds, out / "figures", summary=summary, converged_only=converged_only)
    pngs = [p for p in fig_paths if p.suffix == ".png"]

    # ---------------------------------------------------------------- markdown
    L: list[str] = []
    name = info.get("name", "study")
    L.append(f"# Sensitivity report: {name}\n")
    if info.get("description"):
        L.append(f"_{info['description']}_\n")
    rule_txt = (
        f"a group is flagged when its PIP ≥ {threshold:g}"
        if rule == "pip"
        else f"a group is flagged when BF₁₀ ≥ {bf:g}, i.e. PIP ≥ {bf:g}π/(1 − π + {bf:g}π) with each cell's π"
    )
    n_used = int(summary.n_used.sum())
    L.append("## Design and fits\n")
    L.append(
        f"- Design hash `{str(ds.attrs.get('design_hash', 'n/a'))[:12]}`, seed {ds.attrs.get('seed', info.get('seed', 'n/a'))}; "
        f"{summary.sizes['cell']} cells × {ds.sizes['replicate']} replicates; generated "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}."
    )
    if factors:
        for f in factors:
            levels = ", ".join(P._level_text(v) for v in M.factor_levels(summary, f))
            L.append(f"- {P.pretty(f)} (`{f}`): {levels}")
    else:
        L.append("- No factor varies: every number below is for the single setting of the design.")
    L.append(
        f"- Fits: {n_used} used ({int(summary.n_ok.sum())} ok, {int(summary.n_not_converged.sum())} not converged"
        f"{', excluded: only converged fits count' if converged_only else ''}), "
        f"{int(summary.n_failed.sum())} failed and {int(summary.n_pending.sum())} not yet run (both excluded)."
    )
    L.append(f"- Flagging rule: {rule_txt}.")
    L.append(
        "- Rates (TPR, FPR, precision, F1, MCC, P(≥1 false flag)) are means over replicates of per-replicate rates, "
        "over the replicates where the rate is defined; AUCs are per replicate, then averaged; calibration (ECE, "
        "Brier terms) pools all groups of a cell. Numbers in parentheses are Monte Carlo standard errors (MCSE). "
        "Factor effects average cells with equal weight over the other factors' levels; a change is reported only "
        "when the extreme levels differ by more than 2 MCSE.\n"
    )

    L.append("## How the results move with each factor\n")
    if not factors:
        L.append("No factor varies in this design; see the cell table below.\n")
    for f in factors:
        L.append(f"### {P.pretty(f)}\n")
        for label, m in TREND_METRICS:
            if m in summary:
                L.append("- " + describe_trend(summary, m, f, label))
        if "ece_null" in summary and np.isfinite(summary.ece_null.values).any():
            L.append(
                f"- For reference, the ECE of a perfectly calibrated forecaster with these bin counts would be about "
                f"{np.nanmean(summary.ece_null.values):.3f} on average (finite-sample floor)."
            )
        if summary_bf is not None and f == "pi":
            L.append("- With the BF₁₀ ≥ " + f"{bf:g} rule instead (threshold 3π/(1+2π) for BF 3): " + describe_trend(summary_bf, "tpr", f, "TPR"))
            L.append("  " + describe_trend(summary_bf, "fpr", f, "FPR"))
        L.append("")

    L.append("## Cell results\n")
    L.append(f"Value (MCSE) per cell; {rule_txt}.\n")
    L.append(md_table(cell_table(summary)) + "\n")
    if summary_bf is not None:
        L.append(f"### Flagging by BF₁₀ ≥ {bf:g}\n")
        bf_tab = cell_table(summary_bf, [("tpr", "TPR"), ("fpr", "FPR"), ("fwer", "P(≥1 FP)"), ("f1", "F1")])
        bf_tab.insert(2, "PIP threshold", [f"{v:.3f}" for v in summary_bf.threshold.values])
        L.append(md_table(bf_tab) + "\n")

    # undefined rates
    undef = []
    for k in sorted(v for v in summary.data_vars if v.startswith("n_undefined_")):
        tot = int(summary[k].sum())
        if tot:
            undef.append(f"- {k[len('n_undefined_'):]}: undefined in {tot} of {n_used} used replicates")
    L.append("### Undefined rates\n")
    if undef:
        L.append(
            "A rate is undefined in a replicate when its denominator is 0 (TPR and AUC without truly inconsistent "
            "groups, precision without flags, MCC with an empty margin); such replicates are left out of that cell's "
            "mean and counted here (per cell: `n_undefined_<metric>` in `tables/summary.csv`).\n"
        )
        L.extend(undef)
    else:
        L.append("Every rate was defined in every used replicate.")
    L.append("")

    L.append("## Calibration\n")
    for s in (
        _range_sentence(summary, "ece", "ECE (equal-width bins)"),
        _range_sentence(summary, "ece_mass", "ECE (equal-mass bins)"),
        _range_sentence(summary, "brier", "The Brier score"),
        _range_sentence(summary, "brier_reliability", "Its reliability (miscalibration) term"),
    ):
        if s:
            L.append("- " + s)
    L.append("")

    est = estimation_table(summary)
    L.append("## Estimation of the hyperparameters\n")
    if est is not None:
        L.append("Bias, RMSE and coverage of the 90% interval against the generating values (MCSE).\n")
        L.append(md_table(est) + "\n")
    else:
        L.append("No hyperparameter estimates with generating values in the store.\n")

    L.extend(pi_section(summary))

    L.append("## Runtime and sampling quality\n")
    for s in (
        _range_sentence(summary, "sample_s", "Sampling time per fit", " s", min_digits=0),
        _range_sentence(summary, "compile_s", "Compilation time per fit", " s", min_digits=0),
        _range_sentence(summary, "ess_per_s_tau_t", "Bulk ESS of τ_t per second", min_digits=0),
        _range_sentence(summary, "share_rhat_high", "The share of fits with R-hat > 1.01"),
        _range_sentence(summary, "share_divergent", "The share of fits with divergent transitions"),
        _range_sentence(summary, "share_not_converged", "The share of fits failing the convergence rule after extension"),
    ):
        if s:
            L.append("- " + s)
    sc = M.runtime_scaling(ds, converged_only=converged_only)
    for k, lab in (("J", "the number of groups J"), ("n", "the group size n")):
        if np.isfinite(sc[f"exponent_{k}"]):
            L.append(
                f"- Sampling time grows like {lab} to the power {sc[f'exponent_{k}']:.2f} (SE {sc[f'exponent_{k}_se']:.2f}; "
                f"log-log regression over {sc['n_fits']} fits)."
            )
    L.append("")
    L.append(md_table(runtime_table(summary)) + "\n")

    L.extend(methods_section(ds, threshold, rule, bf, converged_only, out))
    L.extend(decision_section(ds, summary, out, figures=figures, threshold=threshold, rule=rule, bf=bf,
                              converged_only=converged_only))

    L.append("## Monte Carlo precision\n")
    if "tpr_mcse" in summary and np.isfinite(summary.tpr_mcse.values).any():
        worst = float(np.nanmax(summary.tpr_mcse.values))
        L.append(
            f"- The largest MCSE of a cell's TPR is {worst:.3f}. A proportion near 0.5 needs "
            f"{M.replicates_needed(0.05)} replicates for an MCSE of 0.05, {M.replicates_needed(0.025)} for 0.025 and "
            f"{M.replicates_needed(0.01)} for 0.01 (worst case p(1 − p) = 1/4)."
        )
    L.append(f"- Replicates per cell in this store: {ds.sizes['replicate']}.\n")

    L.append("## Figures\n")
    if pngs:
        for p in pngs:
            rel = p.relative_to(out)
            L.append(f"![{p.stem}]({rel.as_posix()})\n")
        L.append("(PDF versions alongside.)\n")
    else:
        L.append("Figures were not drawn.\n")

    L.append("## Tables\n")
    for t in sorted((out / "tables").glob("*.csv")):
        L.append(f"- [`{t.relative_to(out).as_posix()}`]({t.relative_to(out).as_posix()})")
    L.append("")

    path = out / "report.md"
    path.write_text("\n".join(L), encoding="utf-8")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", type=Path, help="results store (Zarr directory)")
    ap.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report/)")
    ap.add_argument("--threshold", type=float, default=0.75, help="PIP threshold for flagging (default 0.75)")
    ap.add_argument("--rule", choices=("pip", "bf"), default="pip", help="flag by PIP threshold or by BF >= --bf")
    ap.add_argument("--bf", type=float, default=3.0, help="Bayes-factor threshold of the BF rule (default 3)")
    ap.add_argument("--converged-only", action="store_true", help="use only fits with status ok")
    ap.add_argument("--no-figures", action="store_true", help="tables and Markdown only")
    args = ap.parse_args(argv)
    if not args.store.exists():
        ap.error(f"store {args.store} does not exist")
    path = build_report(
        args.store,
        args.out,
        threshold=args.threshold,
        rule=args.rule,
        bf=args.bf,
        converged_only=args.converged_only,
        figures=not args.no_figures,
    )
    print(f"wrote {path}")
    return 0
