"""Prior sensitivity of the Saeb analyses M1 and M2 (``simstudy sensitivity`` on the shipped data).

    .venv/bin/python analysis/saeb_sensitivity.py                      # M1 and M2, 4 x (1000 + 1000)
    .venv/bin/python analysis/saeb_sensitivity.py --models M1 --chains 2 --warmup 500 --draws 500

For each model, every combination of ``--pi`` (default 0.1, 0.25, 0.5, 0.75, beta(1, 1)) and
``--scale-sd`` (default half_t(3, 1), half_normal(0.25), half_cauchy(1)) is fitted with the same
seed (one compile per structure: fixed pi, Beta pi); ``OUT/<model>/`` gets pips.csv,
settings.csv, psense.csv, pip_trajectories.png/.pdf and summary.txt (see
:mod:`simstudy.realdata.sensitivity`), and ``OUT/results.md`` the summaries for the README.
``OUT`` defaults to ``analysis/saeb_sensitivity_out/`` (git-ignored through its own .gitignore).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from saeb_models import MODELS  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


@app.command()
def main(
    models: list[str] = typer.Option(["M1", "M2"], help="models to sweep (M1, M2)"),
    pi: str = typer.Option("0.1,0.25,0.5,0.75,beta(1,1)", help="pi levels"),
    scale_sd: str = typer.Option("half_t(3, 1),half_normal(0.25),half_cauchy(1)", help="scale-SD prior levels"),
    chains: int = typer.Option(4),
    warmup: int = typer.Option(1000),
    draws: int = typer.Option(1000),
    seed: int = typer.Option(0),
    threshold: float = typer.Option(0.75),
    out: Path = typer.Option(HERE / "saeb_sensitivity_out"),
):
    from simstudy.datasets import add_saeb_predictors, load_saeb
    from simstudy.model.priors import Priors
    from simstudy.realdata.formula import melsm_data_from_formulas
    from simstudy.realdata.sensitivity import (default_index, parse_pi_levels, parse_sd_levels, run_sensitivity,
                                               sweep_settings)

    unknown = [m for m in models if m not in ("M1", "M2")]
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {unknown}; use M1 and/or M2")
    out.mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("*\n")
    df = add_saeb_predictors(load_saeb(), grand_mean="students")
    settings = sweep_settings(Priors(), parse_pi_levels(pi), parse_sd_levels(scale_sd))
    default = default_index(settings, Priors())
    sections = []
    for name in models:
        location, scale = MODELS[name]
        data = melsm_data_from_formulas(df, location, scale)

        def report(i, n, label, name=name):
            print(f"[{name}] {i}/{n} {label}", flush=True)

        result = run_sensitivity(data, settings, out / name, threshold=threshold, default=default, chains=chains,
                                 warmup=warmup, draws=draws, seed=seed, progress=report)
        print(result["summary"])
        sections.append(f"### {name}: `{location}`, scale `{scale}`\n\n```\n{result['summary']}```\n")
    header = (f"Saeb prior sensitivity: {len(settings)} settings, {chains} chains x ({warmup} + {draws}), "
              f"seed {seed}, flag = PIP >= {threshold:g}\n\n")
    (out / "results.md").write_text(header + "\n".join(sections))
    print(f"wrote {out / 'results.md'}")


if __name__ == "__main__":
    app()
