"""Reproduce the three published SS-MELSM analyses of the Saeb data (ivd's ``saeb``).

    .venv/bin/python analysis/saeb_models.py                       # M1, M2, M3; 4 x (1000 + 1000)
    .venv/bin/python analysis/saeb_models.py --models M1 --draws 500 --warmup 500

Models (``simstudy/datasets/saeb.md``); ``school_ses`` is the school mean of ``student_ses``
grand-mean centred over students and ``student_ses`` is centred within school, exactly as in
ivd's README (``add_saeb_predictors(grand_mean="students")``):

* M1: location ``math_proficiency ~ 1 + (1 | school_id)``, scale ``~ 1 + (1 | school_id)``;
* M2: both ``~ student_ses * school_ses + (1 | school_id)``;
* M3: M2 with a random ``student_ses`` slope in the scale, ``(1 + student_ses | school_id)``:
  K = 2 scale random effects, each with its own spike-and-slab indicator.

For every model: the printed summary, a fit directory ``OUT/<model>/`` as written by
``simstudy fit --out`` (posterior.nc with log_likelihood, groups.csv, summary.csv, fit.json,
pip/funnel/outcome PNGs). Then the PSIS-LOO comparison of all models fitted and the pairwise
differences M2 - M1 and M3 - M2, printed and written to ``OUT/comparison.csv``,
``OUT/pairwise.csv`` and ``OUT/results.md`` (our numbers beside the published ones).
``OUT`` defaults to ``analysis/saeb_out/`` and gets a ``.gitignore`` so nothing in it is
committed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

HERE = Path(__file__).resolve().parent

MODELS = {
    "M1": ("math_proficiency ~ 1 + (1 | school_id)", "~ 1 + (1 | school_id)"),
    "M2": (
        "math_proficiency ~ student_ses * school_ses + (1 | school_id)",
        "~ student_ses * school_ses + (1 | school_id)",
    ),
    "M3": (
        "math_proficiency ~ student_ses * school_ses + (1 | school_id)",
        "~ student_ses * school_ses + (1 + student_ses | school_id)",
    ),
}

#: published results (saeb.md / ivd): schools flagged by M1, and loo_compare differences
PUBLISHED = {
    "M1_flagged": 8,
    ("M2", "M1"): (-43.6, 10.5),  # M1 is worse than M2 by 43.6 elpd (SE 10.5)
    ("M3", "M2"): (-1.3, 0.6),  # M3 and M2 indistinguishable
}
PAIRS = (("M2", "M1"), ("M3", "M2"))

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


def _md_table(df, floatfmt: str = ".3f", index: bool = True) -> str:
    """A DataFrame as a GitHub markdown table (no tabulate dependency)."""
    frame = df.reset_index() if index else df
    cols = [str(c) for c in frame.columns]

    def cell(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def fit_one(name: str, df, *, chains: int, warmup: int, draws: int, seed: int, threshold: float, out: Path,
            plots: bool, console):
    """Fit one model, print its summary, write its fit directory; return (fit, loo, record)."""
    from simstudy.realdata.fit_formula import fit_formula
    from simstudy.realdata.compare import PARETO_K_BAD, loo_of
    from simstudy.realdata.commands import print_summary, write_fit_dir

    location, scale = MODELS[name]
    t0 = time.perf_counter()
    fit = fit_formula(df, location, scale, chains=chains, warmup=warmup, draws=draws, seed=seed, progress=True)
    t_fit = time.perf_counter() - t0
    t1 = time.perf_counter()
    fit.add_log_likelihood()
    loo = loo_of(fit)
    waic = fit.waic()
    t_ic = time.perf_counter() - t1
    console.rule(f"[bold]{name}")
    print_summary(fit, threshold, console=console, loo=loo, waic=waic, title=f"[bold]{name}[/bold]")
    write_fit_dir(
        fit, out / name, threshold=threshold, plots=plots, loo=loo, waic=waic, data_file="saeb (simstudy.datasets)",
        extra={"model": name, "timings_s": {"compile": fit.compile_s, "sampling": fit.sample_s,
                                            "fit_wall": t_fit, "loo_waic": t_ic}},
    )
    table = fit.groups_table(threshold)
    pips = [c for c in table.columns if c == "pip" or c.startswith("pip[")]
    import numpy as np

    k = np.asarray(loo.pareto_k).ravel()
    record = {
        "model": name,
        "location": location,
        "scale": scale,
        "n_flagged": int(table["flagged"].sum()),
        "flagged_per_effect": {c: int((table[c] >= threshold).sum()) for c in pips},
        "flagged_groups": table.loc[table["flagged"], "group"].tolist(),
        "elpd_loo": float(loo.elpd),
        "se_loo": float(loo.se),
        "p_loo": float(loo.p),
        "pareto_k_bad": int(np.sum(k > PARETO_K_BAD)),
        "elpd_waic": waic["elpd_waic"],
        "p_waic": waic["p_waic"],
        "rhat_max": fit.rhat_max,
        "ess_bulk_min": fit.ess_bulk_min,
        "divergences": fit.divergences,
        "warmup_divergences": int(fit.tree["sample_stats"].attrs.get("warmup_divergences", 0)),
        "converged": fit.converged,
        "compile_s": fit.compile_s,
        "sample_s": fit.sample_s,
        "fit_wall_s": t_fit,
        "loo_waic_s": t_ic,
    }
    return fit, loo, record


def write_results(out: Path, records: dict, comparison, pairwise, summaries: dict, settings: dict) -> Path:
    """``results.md``: settings, per-model diagnostics and runtime, flagged schools, fixed
    effects, the LOO comparison and the published numbers beside ours."""
    import pandas as pd

    lines = ["# SS-MELSM on the Saeb data: Models 1-3", ""]
    lines.append(
        f"NUTS, {settings['chains']} chains x ({settings['warmup']} warmup + {settings['draws']} draws), "
        f"seed {settings['seed']}, PIP threshold {settings['threshold']}; priors: ivd defaults "
        "(pi = 0.5, half-t(3, 1) random-effect SDs, LKJ(1))."
    )
    lines += ["", "## Fits", ""]
    rows = []
    for name, r in records.items():
        rows.append({
            "model": name, "flagged (PIP >= thr.)": r["n_flagged"],
            "per effect": ", ".join(f"{k}: {v}" for k, v in r["flagged_per_effect"].items()),
            "elpd_loo": f"{r['elpd_loo']:.1f}", "SE": f"{r['se_loo']:.1f}", "p_loo": f"{r['p_loo']:.1f}",
            "k > 0.7": r["pareto_k_bad"], "max R-hat": f"{r['rhat_max']:.3f}",
            "min bulk ESS": f"{r['ess_bulk_min']:.0f}", "divergences": r["divergences"],
            "compile s": f"{r['compile_s']:.1f}", "sampling s": f"{r['sample_s']:.1f}",
        })
    lines.append(_md_table(pd.DataFrame(rows), index=False))
    lines += ["", "Flagged schools:", ""]
    for name, r in records.items():
        lines.append(f"- {name}: {', '.join(map(str, r['flagged_groups'])) or 'none'}")
    if comparison is not None:
        lines += ["", "## PSIS-LOO comparison", ""]
        cols = ["rank", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "weight", "pareto_k_bad"]
        lines.append(_md_table(comparison[cols], floatfmt=".1f"))
    if pairwise is not None and len(pairwise):
        lines += ["", "## Ours vs published", ""]
        lines.append(_md_table(pairwise, floatfmt=".1f", index=False))
    if "M1" in records:
        lines += ["", f"M1 flags {records['M1']['n_flagged']} schools with PIP >= {settings['threshold']} "
                  f"(published: {PUBLISHED['M1_flagged']} with PIP > 0.75)."]
    for name, table in summaries.items():
        lines += ["", f"## {name}: fixed effects and random-effect SDs", ""]
        cols = [c for c in table.columns if c in ("mean", "sd") or c.endswith("_lb") or c.endswith("_ub")]
        shown = table[cols].map(lambda v: f"{v:.3f}")
        shown["r_hat"] = table["r_hat"].map(lambda v: f"{v:.3f}")
        for c in ("ess_bulk", "ess_tail"):
            shown[c] = table[c].map(lambda v: f"{v:.0f}")
        shown.index.name = "parameter"
        lines.append(_md_table(shown))
    path = out / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


@app.command()
def main(
    models: str = typer.Option("M1,M2,M3", help="comma-separated subset of M1,M2,M3"),
    chains: int = typer.Option(4),
    warmup: int = typer.Option(1000),
    draws: int = typer.Option(1000),
    seed: int = typer.Option(0),
    threshold: float = typer.Option(0.75, help="PIP threshold for flagging"),
    out: Path = typer.Option(HERE / "saeb_out", help="output directory (gitignored)"),
    plots: bool = typer.Option(True, help="write pip / funnel / outcome plots per model"),
    width: Optional[int] = typer.Option(None, help="console width"),
):
    """Fit the published Saeb models, print their summaries and the LOO comparison."""
    import warnings

    import pandas as pd
    from rich.console import Console

    from simstudy.realdata.compare import compare_fits, elpd_difference
    from simstudy.datasets import add_saeb_predictors, load_saeb
    from simstudy.realdata.commands import print_compare

    names = [m.strip().upper() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        raise typer.BadParameter(f"unknown model(s) {unknown}; choose from {list(MODELS)}", param_hint="--models")
    console = Console(width=width) if width else Console()
    if not console.is_terminal and width is None:
        console = Console(width=120)
    out.mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("# analysis outputs: not committed\n*\n")

    df = add_saeb_predictors(load_saeb(), grand_mean="students")
    settings = {"chains": chains, "warmup": warmup, "draws": draws, "seed": seed, "threshold": threshold}
    fits, loos, records, summaries = {}, {}, {}, {}
    t_all = time.perf_counter()
    for name in names:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*single observation.*")  # school 80 has one student
            fit, loo, record = fit_one(name, df, chains=chains, warmup=warmup, draws=draws, seed=seed,
                                       threshold=threshold, out=out, plots=plots, console=console)
        fits[name], loos[name], records[name] = fit, loo, record
        summaries[name] = fit.summary_table()

    comparison = pairwise = None
    if len(loos) >= 2:
        console.rule("[bold]model comparison")
        comparison = compare_fits(loos)
        print_compare(comparison, console)
        comparison.to_csv(out / "comparison.csv")
        rows = []
        for a, b in PAIRS:
            if a in loos and b in loos:
                # loo_compare convention: the worse model's elpd minus the better one's (<= 0)
                diff, se = elpd_difference(loos[b], loos[a])
                better, worse = (a, b) if diff <= 0 else (b, a)
                pub = PUBLISHED[(a, b)]
                rows.append({"comparison": f"{a} vs {b}", "better (ours)": better,
                             "elpd worse - better (ours)": -abs(diff), "SE (ours)": se,
                             "published Δelpd": pub[0], "published SE": pub[1]})
        pairwise = pd.DataFrame(rows)
        if len(pairwise):
            pairwise.to_csv(out / "pairwise.csv", index=False)
            console.print(pairwise.to_string(index=False, float_format=lambda v: f"{v:.1f}"), highlight=False)
    total = time.perf_counter() - t_all
    settings["total_s"] = total
    (out / "records.json").write_text(json.dumps({"settings": settings, "models": records}, indent=2, default=str) + "\n")
    path = write_results(out, records, comparison, pairwise, summaries, settings)
    if "M1" in records:
        console.print(f"M1 flags {records['M1']['n_flagged']} schools (published: {PUBLISHED['M1_flagged']})",
                      highlight=False)
    console.print(f"total {total:.0f} s; wrote {path} and one directory per model under {out}", highlight=False)


if __name__ == "__main__":
    app()
