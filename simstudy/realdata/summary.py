"""The printed, ivd-style summary of one fit and its tables: fixed effects of both
submodels, random-effect SDs and correlations with intervals, R-hat and bulk/tail ESS on
every row, pi when sampled, WAIC and PSIS-LOO, and the groups with PIP >= threshold
(:func:`print_summary`); ``groups.csv`` / ``summary.csv`` tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from rich.markup import escape

#: column order of groups.csv (per-effect ``pip[name]``/``bf10[name]`` when K > 1)
GROUP_COLUMNS = ("group", "n", "observed_sd", "pip", "bf10", "within_sd", "mean", "flagged")


def _console():
    """A rich console; 120 columns wide when output is not a terminal (files, pipes, tests)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


_SECTIONS = (
    ("beta", "Location model: fixed effects"),
    ("eta", "Scale model: fixed effects (log residual SD)"),
    ("tau", "Random effects: standard deviations"),
    ("corr", "Random effects: correlations"),
    ("pi", "Prior inclusion probability pi (Beta hyperprior)"),
)


def _ci_columns(table: pd.DataFrame) -> tuple[str, str]:
    lb = next(c for c in table.columns if c.endswith("_lb"))
    ub = next(c for c in table.columns if c.endswith("_ub"))
    return lb, ub


def summary_sections(fit, ci_prob: float = 0.95) -> dict[str, pd.DataFrame]:
    """``fit.summary_table(ci_prob)`` split into sections (title -> rows), with the row
    names stripped of their variable prefix (``beta[x]`` -> ``x``)."""
    table = fit.summary_table(ci_prob)
    out = {}
    for var, title in _SECTIONS:
        rows = table[[str(i).startswith(var + "[") or str(i) == var for i in table.index]]
        if len(rows):
            rows = rows.copy()
            rows.index = [str(i)[len(var) + 1 : -1] if str(i).startswith(var + "[") else str(i) for i in rows.index]
            out[title] = rows
    return out


def _pi_text(pi) -> str:
    """``0.5`` or ``beta(1, 1)`` (BF10 then uses the prior mean's odds a/b)."""
    from ..model.priors import pi_label

    return pi_label(pi)


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


#: Bayes factors from this on print as a bound: with a few thousand draws the exact size of
#: a larger one is Monte Carlo noise (and PIP = 1 gives an infinite one)
BF_DISPLAY_MAX = 1e6


def format_bf(bf) -> str:
    """BF10 for printing: ``12.3``, ``4.56e+04``, or ``> 10^6`` at and above
    :data:`BF_DISPLAY_MAX` (infinite included); ``–`` when undefined."""
    try:
        bf = float(bf)
    except (TypeError, ValueError):
        return "–"
    if math.isnan(bf):
        return "–"
    if bf >= BF_DISPLAY_MAX:
        return f"> 10^{int(round(math.log10(BF_DISPLAY_MAX)))}"
    return f"{bf:.1f}" if bf < 1e4 else f"{bf:.2e}"


def _fmt_int(value) -> str:
    try:
        return "–" if not math.isfinite(float(value)) else f"{float(value):.0f}"
    except (TypeError, ValueError):
        return "–"


def _rhat_cell(value) -> str:
    text = _fmt(value, 3)
    return f"[red]{text}[/red]" if isinstance(value, float) and math.isfinite(value) and value > 1.01 else text


def _ess_cell(value, n_draws: int) -> str:
    text = _fmt_int(value)
    try:
        low = float(value) < min(400, 0.1 * n_draws)
    except (TypeError, ValueError):
        low = False
    return f"[yellow]{text}[/yellow]" if low else text


def groups_csv_table(fit, threshold: float = 0.75) -> pd.DataFrame:
    """``fit.groups_table(threshold)`` in the column order of ``groups.csv``."""
    table = fit.groups_table(threshold)
    cols = []
    for base in GROUP_COLUMNS:
        cols += [c for c in table.columns if c == base or c.startswith(base + "[")]
    return table[cols]


def _pip_cols(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c == "pip" or c.startswith("pip[")]


def flagged_groups(fit, threshold: float = 0.75) -> pd.DataFrame:
    """Groups with PIP >= threshold for any scale effect, highest PIP first."""
    table = groups_csv_table(fit, threshold)
    pips = _pip_cols(table)
    # select first, then order by the selected rows' own PIPs (positions, not index labels):
    # ``.assign(_top=<Series of all groups>)`` on an empty selection makes pandas >= 3 adopt
    # the Series' index, producing all-NaN rows instead of an empty table
    flagged = table[table["flagged"].to_numpy(dtype=bool)]
    top = flagged[pips].max(axis=1).to_numpy(dtype=float)
    return flagged.iloc[np.argsort(-top, kind="stable")]


def print_summary(fit, threshold: float = 0.75, *, console=None, loo=None, waic=None, ic: bool = True,
                  ci_prob: float = 0.95, title: str | None = None) -> None:
    """Print an ivd-style summary of a :class:`~simstudy.model.result.FitResult` with rich tables.

    ``loo`` / ``waic``: precomputed results (``az.loo`` output / ``fit.waic()``); with
    ``ic=True`` and none given they are computed here (adds the log-likelihood to the fit).
    """
    from rich import box
    from rich.table import Table

    from .compare import PARETO_K_BAD, loo_of

    console = console or _console()
    data = fit.data
    settings = fit.settings
    n_draws = settings.chains * fit.draws_used
    meta = data.meta or {}

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    if "location_formula" in meta:
        head.add_row("Location", escape(str(meta["location_formula"])))
        head.add_row("Scale", escape(str(meta["scale_formula"])))
    dropped = int(meta.get("dropped_rows", 0) or 0)
    head.add_row("Data", f"{data.n_obs} observations in {data.n_groups} groups ({escape(str(data.group_name))})"
                 + (f"; {dropped} rows with missing or infinite values dropped" if dropped else ""))
    p = fit.priors
    head.add_row("Priors", f"pi = {_pi_text(p.pi)}; location SDs {p.location_sd}; scale SDs {p.scale_sd}; LKJ({p.lkj_eta:g})")
    head.add_row("MCMC", f"NUTS, {settings.chains} chains x ({settings.warmup} warmup + {settings.draws} draws), "
                 f"seed {fit.seed}")
    head.add_row("Time", f"compile {fit.compile_s:.1f} s, sampling {fit.sample_s:.1f} s")
    warm_div = int(fit.tree["sample_stats"].attrs.get("warmup_divergences", 0))
    conv = "[green]converged[/green]" if fit.converged else "[red]NOT converged[/red]"
    v = fit.verdict
    ext = f", {fit.extensions} extension(s): {fit.draws_used} draws per chain" if fit.extensions else ""
    head.add_row("Convergence", f"{conv} (R-hat ≤ 1.01, bulk/tail ESS ≥ {v.ess_needed:.0f}, no divergences{ext}): "
                 f"max R-hat {v.rhat_worst:.3f}, min ESS {v.ess_worst:.0f} (worst: {escape(v.worst_param)}), "
                 f"{fit.divergences} divergent transitions after warmup ({warm_div} during warmup)")
    console.print(title or "[bold]SS-MELSM fit[/bold]")
    console.print(head)

    lo, hi = f"{50 * (1 - ci_prob):g}%", f"{100 - 50 * (1 - ci_prob):g}%"
    for section, rows in summary_sections(fit, ci_prob).items():
        lb, ub = _ci_columns(rows)
        table = Table(title=section, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        table.add_column("", overflow="fold", min_width=12)
        for name in ("mean", "sd", lo, hi, "R-hat", "ESS_bulk", "ESS_tail"):
            table.add_column(name, justify="right", no_wrap=True)
        for name, r in rows.iterrows():
            table.add_row(escape(str(name)), _fmt(r["mean"]), _fmt(r["sd"]), _fmt(r[lb]), _fmt(r[ub]), _rhat_cell(r["r_hat"]),
                          _ess_cell(r["ess_bulk"], n_draws), _ess_cell(r["ess_tail"], n_draws))
        console.print(table)

    if ic:
        loo = loo if loo is not None else loo_of(fit)
        waic = waic if waic is not None else fit.waic()
        k = np.asarray(loo.pareto_k).ravel()
        table = Table(title="Information criteria (per-observation log-lik.)", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for name in ("", "elpd", "SE", "p", "IC (-2 elpd)", "Pareto k > 0.7"):
            table.add_column(name, justify="right" if name else "left")
        table.add_row("WAIC", _fmt(waic["elpd_waic"], 1), _fmt(waic["se"], 1), _fmt(waic["p_waic"], 1),
                      _fmt(-2 * waic["elpd_waic"], 1), "")
        bad = int(np.sum(k > PARETO_K_BAD))
        table.add_row("PSIS-LOO", _fmt(float(loo.elpd), 1), _fmt(float(loo.se), 1), _fmt(float(loo.p), 1),
                      _fmt(-2 * float(loo.elpd), 1), f"[yellow]{bad}[/yellow]" if bad else "0")
        console.print(table)

    flagged = flagged_groups(fit, threshold)
    pips = _pip_cols(flagged)
    title_g = (f"Groups with PIP ≥ {threshold:g} (pi = {_pi_text(fit.priors.pi)}): {len(flagged)} of {data.n_groups}")
    if len(flagged) == 0:
        console.print(f"[bold]{title_g}[/bold]")
        return
    table = Table(title=title_g, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column(escape(str(data.group_name)))
    table.add_column("n", justify="right")
    for col in pips:
        suffix = col[3:]
        table.add_column(escape(f"PIP{suffix}"), justify="right")
        table.add_column(escape(f"BF10{suffix}"), justify="right")
    table.add_column("within SD", justify="right")
    table.add_column("mean", justify="right")
    for _, r in flagged.iterrows():
        cells = [escape(str(r["group"])), str(int(r["n"]))]
        for col in pips:
            bf = float(r["bf10" + col[3:]])
            cells += [_fmt(r[col], 3), format_bf(bf)]
        cells += [_fmt(r["within_sd"], 3), _fmt(r["mean"], 3)]
        table.add_row(*cells)
    console.print(table)


# =============================================================================== inputs
