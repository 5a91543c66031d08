r"""Prior sensitivity of one real fit: ``simstudy sensitivity``.

Refit one dataset under every combination of prior inclusion probabilities (numbers or
``beta(a, b)``) and scale-SD priors. Prior values are runtime arguments of the compiled
sampler, so a sweep costs one compile per model structure (fixed pi, Beta pi) plus one
sampling time per setting. Writes

* ``pips.csv``: one row per group x setting: PIP, BF10 (prior odds of the setting's pi, or
  ``a / b`` under ``beta(a, b)``), flagged (PIP >= threshold);
* ``settings.csv``: one row per setting: flagged count, posterior of the scale SD ``tau_t``
  and of pi (Beta settings), worst R-hat, smallest bulk ESS, divergences, timings;
* ``pip_trajectories.png``/``.pdf``: PIP across settings, one line per group; groups whose
  flag depends on the prior are coloured and labelled;
* ``flags_heatmap.png``/``.pdf``: groups x settings, PIP as colour, flagged cells marked;
* ``psense.csv``: the power-scaling prior/likelihood sensitivity (Kallioinen et al. 2024,
  ``arviz_stats.psense_summary``) of the default fit's hyperparameters; the log prior is
  that of the hyperparameters the user sets (fixed effects, random-effect SDs, correlation,
  pi), as brms' ``lprior``; the log likelihood is the per-observation one used for LOO;
* ``summary.txt``: "k groups flagged under every setting, m depend on the prior (list)".
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..model.priors import Priors, PriorError, SDPrior, parse_pi, pi_label

#: hyperparameters whose power-scaling sensitivity is reported
PSENSE_VARS = ("beta", "eta", "tau", "pi")


# ============================================================================ settings
def split_levels(text: str) -> list[str]:
    """Split ``"0.1, beta(1, 1), half_t(3, 1)"`` on commas outside parentheses (quotes dropped)."""
    parts, depth, cur = [], 0, ""
    for ch in str(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = [p.strip().strip("'\"").strip() for p in parts]
    if any(not p for p in out):
        raise PriorError(f"{text!r}: empty level; separate levels by commas, e.g. 0.1,0.5,beta(1,1)")
    return out


def parse_pi_levels(text: str) -> list:
    """``--pi`` levels: numbers in (0, 1) and ``beta(a, b)``."""
    levels = []
    for part in split_levels(text):
        try:
            levels.append(parse_pi(part))
        except PriorError as exc:
            raise PriorError(f"--pi {part!r}: {exc}") from None
    return levels


def parse_sd_levels(text: str) -> list[SDPrior]:
    """``--scale-sd`` levels such as ``half_t(3, 1),half_normal(0.25)``."""
    levels = []
    for part in split_levels(text):
        try:
            levels.append(SDPrior.parse(part))
        except PriorError as exc:
            raise PriorError(f"--scale-sd {part!r}: {exc}") from None
    return levels


@dataclass(frozen=True)
class SweepSetting:
    """One prior setting of a sweep."""

    label: str
    priors: Priors


def sweep_settings(base: Priors, pis: list, scale_sds: list) -> list[SweepSetting]:
    """Every (pi, scale SD prior) combination on top of ``base``, pi slowest; duplicates dropped."""
    out, seen = [], set()
    for pi, sd in itertools.product(pis or [base.pi], scale_sds or [base.scale_sd]):
        label = f"pi={pi_label(pi)}, scale_sd={sd}"
        if label not in seen:
            seen.add(label)
            out.append(SweepSetting(label, base.replace(pi=pi, scale_sd=sd)))
    return out


def default_index(settings: list[SweepSetting], base: Priors) -> int:
    """The setting equal to ``base`` (the package defaults unless changed), else the first."""
    for i, s in enumerate(settings):
        if s.priors == base:
            return i
    return 0


# ============================================================================ fitting
def run_sweep(data, settings: list[SweepSetting], *, chains=4, warmup=1000, draws=1000, seed=0, progress=None,
              **fit_kwargs) -> list:
    """Fit ``data`` under every setting with the same seed (so settings differ only by prior).
    Settings sharing a structure reuse one compiled program. ``progress(i, n, label)`` is
    called before each fit and ``progress(n, n, "done")`` at the end."""
    from ..model.sampler import fit

    fits = []
    for i, s in enumerate(settings):
        if progress is not None:
            progress(i, len(settings), s.label)
        fits.append(fit(data, s.priors, chains=chains, warmup=warmup, draws=draws, seed=seed, **fit_kwargs))
    if progress is not None:
        progress(len(settings), len(settings), "done")
    return fits


# ============================================================================ tables
def _quantiles(draws: np.ndarray) -> tuple[float, float, float]:
    draws = np.asarray(draws, dtype=float).ravel()
    if draws.size == 0:
        return math.nan, math.nan, math.nan
    q05, q95 = np.quantile(draws, [0.05, 0.95])
    return float(draws.mean()), float(q05), float(q95)


def pip_table(fits: list, settings: list[SweepSetting], threshold: float = 0.75) -> pd.DataFrame:
    """Long table, one row per group x setting (x scale effect when K > 1): group, setting,
    pi, scale_sd, effect, pip, bf10, flagged."""
    rows = []
    for fit, s in zip(fits, settings):
        pip = fit.pip.values
        bf = fit.bf10.values
        for k, effect in enumerate(fit.pip["scale_random"].values):
            rows.append(pd.DataFrame({
                "group": fit.data.group_labels, "setting": s.label, "pi": pi_label(s.priors.pi),
                "scale_sd": str(s.priors.scale_sd), "effect": str(effect), "pip": pip[:, k], "bf10": bf[:, k],
                "flagged": pip[:, k] >= threshold,
            }))
    return pd.concat(rows, ignore_index=True)


def settings_table(fits: list, settings: list[SweepSetting], threshold: float = 0.75) -> pd.DataFrame:
    """One row per setting: flagged groups, posterior of tau_t (the first scale random-effect
    SD) and of pi (NaN when fixed), convergence and timings."""
    rows = []
    for fit, s in zip(fits, settings):
        post = fit.posterior
        tau = post["tau"]
        names = [str(v) for v in tau["random_effect"].values]
        scale = next(i for i, n in enumerate(names) if n.startswith("scale:"))
        tau_t = _quantiles(tau.isel(random_effect=scale).values)
        pi = _quantiles(post["pi"].values) if "pi" in post else (math.nan,) * 3
        rows.append({
            "setting": s.label, "pi": pi_label(s.priors.pi), "scale_sd": str(s.priors.scale_sd),
            "n_flagged": int((fit.pip.values >= threshold).any(axis=1).sum()),
            "tau_t_mean": tau_t[0], "tau_t_q05": tau_t[1], "tau_t_q95": tau_t[2],
            "pi_mean": pi[0], "pi_q05": pi[1], "pi_q95": pi[2],
            "rhat_max": fit.rhat_max, "ess_bulk_min": fit.ess_bulk_min, "divergences": fit.divergences,
            # the convergence rule of simstudy.model.diagnostics (as `simstudy fit` and the studies)
            "converged": bool(fit.converged), "convergence": "" if fit.converged else fit.verdict.reason,
            "compile_s": fit.compile_s, "sample_s": fit.sample_s,
        })
    return pd.DataFrame(rows)


def flag_stability(pips: pd.DataFrame) -> dict[str, list]:
    """Groups flagged under every setting (``always``), under some (``depends``), never."""
    by_group = pips.groupby("group", sort=False)["flagged"]
    any_, all_ = by_group.any(), by_group.all()
    return {
        "always": [g for g in all_.index if all_[g]],
        "depends": [g for g in any_.index if any_[g] and not all_[g]],
        "never": [g for g in any_.index if not any_[g]],
    }


def summary_text(pips: pd.DataFrame, settings_df: pd.DataFrame, threshold: float, psense: pd.DataFrame | None = None,
                 default_label: str = "") -> str:
    """The short text summary of a sweep."""
    st = flag_stability(pips)
    n_groups = pips["group"].nunique()
    lines = [
        f"Prior sensitivity: {len(settings_df)} settings, {n_groups} groups, flag = PIP >= {threshold:g}.",
        f"{len(st['always'])} groups flagged under every setting, {len(st['depends'])} depend on the prior"
        + (f" ({', '.join(map(str, st['depends']))})" if st["depends"] else "") + ".",
    ]
    if st["always"]:
        lines.append(f"Flagged under every setting: {', '.join(map(str, st['always']))}.")
    lines.append("")
    lines.append("Flagged groups per setting:")
    for _, r in settings_df.iterrows():
        pi_post = "" if not math.isfinite(r["pi_mean"]) else f"; pi | y {r['pi_mean']:.3f} [{r['pi_q05']:.3f}, {r['pi_q95']:.3f}]"
        bad = "converged" in r and not bool(r["converged"])
        lines.append(f"{'! ' if bad else '  '}{r['setting']}: {r['n_flagged']} flagged; tau_t {r['tau_t_mean']:.3f}"
                     f"{pi_post}; max R-hat {r['rhat_max']:.3f}" + (f"  NOT CONVERGED ({r['convergence']})" if bad else ""))
    n_bad = int((~settings_df["converged"].astype(bool)).sum()) if "converged" in settings_df else 0
    if n_bad:
        lines.append(f"! {n_bad} setting(s) fail the convergence rule: their PIPs and flags are not reliable; rerun "
                     "with more --draws, --max-extensions or a higher --target-accept.")
    if psense is not None and len(psense):
        lines.append("")
        lines.append(f"Power-scaling sensitivity of the default fit ({default_label}), arviz_stats.psense_summary:")
        lines.append(psense.to_string())
    return "\n".join(lines) + "\n"


# ============================================================================ psense
def log_prior(fit) -> xr.Dataset:
    """Per-draw log prior density of the hyperparameters the user sets: fixed effects
    (normal), random-effect SDs (their family), the correlation (LKJ), pi (Beta, when
    sampled). Dims (chain, draw); one variable ``lprior``."""
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from scipy import stats

    from ..model.ssmelsm import hyper_arrays, sd_prior_logpdf

    post = fit.posterior
    h = hyper_arrays(fit.data, fit.priors)
    lp = stats.norm.logpdf(post["beta"].values, h["beta_mean"], h["beta_sd"]).sum(-1)
    lp += stats.norm.logpdf(post["eta"].values, h["eta_mean"], h["eta_sd"]).sum(-1)
    lp += np.asarray(sd_prior_logpdf(jnp.asarray(post["tau"].values), jnp.asarray(h["sd_prior"]))).sum(-1)
    if "corr" in post:
        corr = post["corr"].values
        L = np.linalg.cholesky(corr)
        L = L / np.linalg.norm(L, axis=-1, keepdims=True)  # unit rows exactly (LKJCholesky's support)
        lp += np.asarray(dist.LKJCholesky(corr.shape[-1], float(h["lkj_eta"])).log_prob(jnp.asarray(L)))
    if "pi" in post:
        a, b = h["pi_ab"]
        lp += stats.beta.logpdf(post["pi"].values, a, b)
    return xr.Dataset({"lprior": (("chain", "draw"), lp)}, coords={"chain": post["chain"], "draw": post["draw"]})


def psense_table(fit, seed: int = 0) -> pd.DataFrame:
    """``arviz_stats.psense_summary`` of the hyperparameters: adds ``log_likelihood`` (per
    observation) and ``log_prior`` groups to ``fit.tree`` when missing."""
    from arviz_stats import psense_summary

    fit.add_log_likelihood(seed)
    if "log_prior" not in fit.tree.children:
        fit.tree["log_prior"] = xr.DataTree(log_prior(fit))
    names = [v for v in PSENSE_VARS if v in fit.posterior]
    return psense_summary(fit.tree, var_names=names)


# ============================================================================ figure
def plot_trajectories(pips: pd.DataFrame, out_base: Path, threshold: float = 0.75, max_labels: int = 15) -> list[Path]:
    """PIP against setting, one line per group (first scale effect); groups whose flag
    changes are coloured (the ``max_labels`` whose PIP moves most are labelled), the rest
    grey. Writes ``out_base`` .png and .pdf."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    effect = pips["effect"].iloc[0]
    d = pips[pips["effect"] == effect]
    order = list(dict.fromkeys(d["setting"]))
    wide = d.pivot(index="group", columns="setting", values="pip")[order]
    depends = set(flag_stability(d)["depends"])
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(order) + 3), 4.5))
    for g, row in wide.iterrows():
        if g not in depends:
            ax.plot(x, row.values, color="0.75", lw=0.8, zorder=1)
    colours = plt.get_cmap("tab10")
    changing = wide[wide.index.isin(depends)]
    spread = (changing.max(axis=1) - changing.min(axis=1)).sort_values(ascending=False)
    labelled = set(spread.index[:max_labels])  # label the groups whose PIP moves most
    for i, (g, row) in enumerate(changing.iterrows()):
        c = colours(i % 10)
        ax.plot(x, row.values, color=c, lw=1.6, marker="o", ms=3, zorder=3)
        if g in labelled:
            ax.annotate(str(g), (x[-1], row.values[-1]), xytext=(4, 0), textcoords="offset points", color=c,
                        fontsize=8, va="center")
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set_xticks(x, [s.replace(", scale_sd=", "\n") for s in order], fontsize=7)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("PIP" if effect == "Intercept" else f"PIP ({effect})")
    ax.set_title(f"PIP across prior settings: {len(depends)} group(s) change flag (coloured)")
    fig.tight_layout()
    paths = []
    for ext in ("png", "pdf"):
        path = Path(out_base).with_suffix(f".{ext}")
        fig.savefig(path, dpi=150)
        paths.append(path)
    plt.close(fig)
    return paths


def plot_flags_heatmap(pips: pd.DataFrame, threshold: float = 0.75, max_groups: int = 60):
    """Groups (rows) x prior settings (columns): colour = PIP (first scale effect), a white
    dot where the group is flagged (PIP >= threshold). Rows: groups flagged under every setting,
    then those whose flag depends on the prior, then the rest, each by mean PIP (highest first);
    with more than ``max_groups`` groups, groups never flagged are left out (the title says how
    many). Returns the Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    effect = pips["effect"].iloc[0]
    d = pips[pips["effect"] == effect]
    order = list(dict.fromkeys(d["setting"]))
    groups = list(dict.fromkeys(d["group"]))
    wide = d.pivot(index="group", columns="setting", values="pip").reindex(index=groups, columns=order)
    flags = wide >= threshold
    st = flag_stability(d)
    rank = {g: 0 for g in st["always"]} | {g: 1 for g in st["depends"]}
    mean = wide.mean(axis=1)
    rows = sorted(groups, key=lambda g: (rank.get(g, 2), -mean[g]))
    omitted = 0
    if len(rows) > max_groups:
        shown = [g for g in rows if rank.get(g, 2) < 2]
        rest = [g for g in rows if rank.get(g, 2) == 2][: max(0, max_groups - len(shown))]
        omitted = len(rows) - len(shown) - len(rest)
        rows = shown + rest
    wide, flags = wide.loc[rows], flags.loc[rows]
    h = max(2.6, 0.22 * len(rows) + 1.8)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(order) + 3.0), h), layout="constrained")
    im = ax.imshow(wide.to_numpy(float), aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    yy, xx = np.nonzero(flags.to_numpy())
    ax.scatter(xx, yy, s=18, color="white", edgecolors="black", linewidths=0.5, label=f"flagged (PIP ≥ {threshold:g})")
    ax.set_xticks(np.arange(len(order)), [s.replace(", scale_sd=", "\n") for s in order], fontsize=7)
    ax.set_yticks(np.arange(len(rows)), [str(g) for g in rows], fontsize=7 if len(rows) > 30 else 8)
    ax.set_xlabel("prior setting")
    ax.set_ylabel("group")
    fig.colorbar(im, ax=ax, label="PIP" if effect == "Intercept" else f"PIP ({effect})", shrink=0.8)
    note = f"; {omitted} group(s) never flagged not shown" if omitted else ""
    ax.set_title(f"Flags across prior settings: {len(st['always'])} flagged under every setting, "
                 f"{len(st['depends'])} depend on the prior{note}\nwhite dots: flagged (PIP ≥ {threshold:g})",
                 fontsize=9)
    return fig


# ============================================================================ the whole job
def run_sensitivity(data, settings: list[SweepSetting], out, *, threshold: float = 0.75, default: int = 0,
                    psense: bool = True, chains=4, warmup=1000, draws=1000, seed=0, progress=None,
                    chain_method: str = "auto", **fit_kwargs) -> dict:
    """Fit every setting, write the tables, figure and summary to ``out``; returns the
    tables and paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fits = run_sweep(data, settings, chains=chains, warmup=warmup, draws=draws, seed=seed, progress=progress,
                     chain_method=chain_method, **fit_kwargs)  # e.g. target_accept, max_extensions
    pips = pip_table(fits, settings, threshold)
    table = settings_table(fits, settings, threshold)
    ps = psense_table(fits[default], seed) if psense else None
    paths = {"pips": out / "pips.csv", "settings": out / "settings.csv", "summary": out / "summary.txt"}
    from .csvsafe import spreadsheet_safe  # group labels a spreadsheet would run get a leading quote

    spreadsheet_safe(pips).to_csv(paths["pips"], index=False)
    spreadsheet_safe(table).to_csv(paths["settings"], index=False)
    if ps is not None:
        paths["psense"] = out / "psense.csv"
        spreadsheet_safe(ps).to_csv(paths["psense"])
    text = summary_text(pips, table, threshold, ps, settings[default].label)
    paths["summary"].write_text(text)
    png, pdf = plot_trajectories(pips, out / "pip_trajectories", threshold)
    paths.update(figure=png, figure_pdf=pdf)
    import matplotlib.pyplot as plt

    heat = plot_flags_heatmap(pips, threshold)
    for ext in ("png", "pdf"):
        paths[f"heatmap_{ext}"] = out / f"flags_heatmap.{ext}"
        heat.savefig(paths[f"heatmap_{ext}"], dpi=150)
    plt.close(heat)
    return {"fits": fits, "pips": pips, "settings": table, "psense": ps, "summary": text, "paths": paths}


def sensitivity_command(data_file, *, location: str, scale: str, pi: str | None, scale_sd: str | None, out,
                        threshold: float = 0.75, chains=4, warmup=1000, draws=1000, seed=0, dropna=False,
                        psense: bool = True, progress: bool = True, console=None, chain_method: str = "auto",
                        location_sd: str = "half_t(3, 1)", target_accept: float = 0.8,
                        max_extensions: int = 0) -> dict:
    """``simstudy sensitivity``: validate every input (exit 2 with one message), then sweep."""
    import warnings

    from rich.console import Console

    from ..model.data import DataError
    from ..model.sampler import MCMCSettings
    from .commands import FitInputError, _check_chain_method, _fail, _check_threshold, read_csv_checked
    from .formula import FormulaError, melsm_data_from_formulas

    console = console or Console(stderr=True)
    try:
        threshold = _check_threshold(threshold)
        pis = parse_pi_levels(pi) if pi else []
        sds = parse_sd_levels(scale_sd) if scale_sd else []
        try:
            MCMCSettings(chains, warmup, draws, target_accept=target_accept)
        except ValueError as exc:
            raise FitInputError(f"MCMC settings: {exc}") from None
        _check_chain_method(chain_method, chains)
        if isinstance(max_extensions, bool) or not isinstance(max_extensions, int) or max_extensions < 0:
            raise FitInputError(f"--max-extensions must be an integer >= 0, got {max_extensions!r}")
        base = Priors().replace(location_sd=SDPrior.parse(location_sd))
        if out is None:
            raise FitInputError("--out DIR is required (pips.csv, settings.csv, the figure and summary go there)")
        df = read_csv_checked(data_file)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = melsm_data_from_formulas(df, location, scale, dropna=dropna)
    except (FitInputError, FormulaError, PriorError, DataError) as exc:
        _fail(str(exc))
    settings = sweep_settings(base, pis, sds)
    default = default_index(settings, base)

    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.progress import TimeRemainingColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=console, transient=True, disable=not progress)
    task = bar.add_task("prior settings", total=len(settings))

    def report(i, n, label):
        bar.update(task, completed=i, description=f"prior settings: {escape(label)}")

    with bar:
        result = run_sensitivity(data, settings, out, threshold=threshold, default=default, psense=psense,
                                 chains=chains, warmup=warmup, draws=draws, seed=seed, progress=report,
                                 chain_method=chain_method, target_accept=target_accept,
                                 max_extensions=max_extensions)
    print(result["summary"], end="")
    console.print(escape(f"wrote {', '.join(p.name for p in result['paths'].values())} to {out}"), highlight=False)
    return result
