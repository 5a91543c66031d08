"""Command line: ``simstudy run / status / summarize / plot / report / fit / compare / generate``.

Each command parses its options and delegates to one function of the module that owns the
work; heavy imports happen inside the commands so ``simstudy --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Simulation and sensitivity studies of the Spike-and-Slab Mixed-Effects Location Scale Model.",
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


# --------------------------------------------------------------------------- grid
@app.command()
def run(
    design: Path = typer.Argument(..., help="study design TOML file"),
    store: Path = typer.Option(..., "--store", "-s", help="results store (Zarr directory) to create or resume"),
    cluster: str = typer.Option("local", help="local | slurm | pbs | tcp://SCHEDULER:PORT"),
    workers: Optional[int] = typer.Option(None, help="worker processes (local) or jobs (slurm/pbs)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="rerun tasks whose fits failed"),
    progress: bool = typer.Option(True, help="show a progress bar"),
):
    """Run (or resume) a study design into a results store."""
    from .study.design import DesignError
    from .study.runner import run_study
    from .study.store import StoreError

    if workers is not None and workers < 1:
        _fail(f"--workers must be at least 1, got {workers}")
    try:
        summary = run_study(design, store, cluster=cluster, workers=workers, retry_failed=retry_failed,
                            progress=progress)
    except (DesignError, StoreError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    if summary.interrupted:
        raise typer.Exit(code=130)


@app.command()
def status(store: Path = typer.Argument(..., help="results store")):
    """Show how far a study has got: tasks done, failed, pending."""
    from .study.runner import print_status
    from .study.store import StoreError

    try:
        print_status(store)
    except StoreError as exc:
        _fail(str(exc))


# --------------------------------------------------------------------------- analysis
def _on_store(command, store: Path, rule: str, errors: tuple[type[Exception], ...], **options) -> None:
    """``command(store, rule=rule, **options)`` after checking ``--rule`` and that the store
    exists; ``errors`` become a clean exit 2."""
    if rule not in ("pip", "bf"):
        _fail(f"--rule {rule!r}: use pip or bf")
    if not store.exists():
        _fail(f"no results store at {store}")
    try:
        command(store, rule=rule, **options)
    except errors as exc:
        _fail(str(exc))


@app.command()
def summarize(
    store: Path = typer.Argument(..., help="results store"),
    threshold: float = typer.Option(0.75, help="PIP threshold for flagging (rule pip)"),
    out: Optional[Path] = typer.Option(None, help="write the cell table (.nc or .csv)"),
    rule: str = typer.Option("pip", help="pip: flag PIP >= threshold; bf: flag BF10 >= --bf with each cell's pi"),
    bf: float = typer.Option(3.0, help="Bayes-factor threshold of the bf rule"),
    converged_only: bool = typer.Option(False, "--converged-only", help="use only fits with status ok"),
):
    """Cell-level summary (classification, calibration, estimation, runtime) with MCSEs."""
    from .evaluate import summarize_cli

    _on_store(summarize_cli, store, rule, (ValueError,), threshold=threshold, out=out, bf=bf,
              converged_only=converged_only)


@app.command()
def plot(
    store: Path = typer.Argument(..., help="results store"),
    out: Path = typer.Option(Path("figures"), help="output directory (PNG + PDF)"),
    threshold: float = typer.Option(0.75, help="PIP threshold for flagging (rule pip)"),
    rule: str = typer.Option("pip", help="pip: flag PIP >= threshold; bf: flag BF10 >= 3 with each cell's pi"),
    metric: list[str] = typer.Option([], "--metric", help="cell metric(s) to draw (default: tpr, fpr, f1, mcc, roc_auc, ece, ...)"),
    x: Optional[str] = typer.Option(None, help="factor on the x axis (default: the one with most levels)"),
    hue: Optional[str] = typer.Option(None, help="factor drawn as colours"),
    row: Optional[str] = typer.Option(None, help="factor of facet rows"),
    col: Optional[str] = typer.Option(None, help="factor of facet columns"),
    converged_only: bool = typer.Option(False, "--converged-only", help="use only fits with status ok"),
):
    """Sensitivity, reliability and runtime figures from a results store."""
    from .evaluate.plots import plot_cli

    _on_store(plot_cli, store, rule, (ValueError, KeyError), out=out, threshold=threshold, metrics=metric or None,
              x=x, hue=hue, row=row, col=col, converged_only=converged_only)


@app.command()
def report(
    store: Path = typer.Argument(..., help="results store"),
    out: Path = typer.Option(Path("report"), help="output folder: report.md, figures/, tables/"),
    threshold: float = typer.Option(0.75, help="PIP threshold for flagging (rule pip)"),
    rule: str = typer.Option("pip", help="pip: flag PIP >= threshold; bf: flag BF10 >= --bf with each cell's pi"),
    bf: float = typer.Option(3.0, help="Bayes-factor threshold of the bf rule"),
    converged_only: bool = typer.Option(False, "--converged-only", help="use only fits with status ok"),
    figures: bool = typer.Option(True, help="also draw every figure (PNG + PDF)"),
):
    """The Markdown sensitivity report of a results store, with its tables and figures."""
    from .evaluate.report import build_report

    def command(path, rule, **options):
        typer.echo(f"wrote {build_report(path, out, rule=rule, **options)}")

    _on_store(command, store, rule, (ValueError, KeyError), threshold=threshold, bf=bf,
              converged_only=converged_only, figures=figures)


# --------------------------------------------------------------------------- single fits
@app.command("fit")
def fit_cmd(
    data: Path = typer.Argument(..., help="CSV file, one row per observation"),
    location: str = typer.Option(..., help='location formula, e.g. "y ~ x + (1 | school)"'),
    scale: str = typer.Option(..., help='scale formula, e.g. "~ x + (1 | school)"'),
    pi: float = typer.Option(0.5, help="prior inclusion probability"),
    scale_sd: str = typer.Option("half_t(3, 1)", help="prior of the scale random-effect SDs"),
    location_sd: str = typer.Option("half_t(3, 1)", help="prior of the location random-effect SDs"),
    chains: int = typer.Option(4),
    warmup: int = typer.Option(1000),
    draws: int = typer.Option(1000),
    max_extensions: int = typer.Option(2, "--max-extensions",
                                       help="extend a fit failing the convergence rule by another --draws draws, "
                                            "at most this many times"),
    seed: int = typer.Option(0),
    threshold: float = typer.Option(0.75, help="PIP threshold for flagging"),
    out: Optional[Path] = typer.Option(None, help="directory for posterior (.nc), group CSV and plots"),
    plots: bool = typer.Option(False, "--plots", help="also write the pip / funnel / outcome plots"),
    dropna: bool = typer.Option(False, "--dropna", help="drop rows with missing values in used columns"),
):
    """Fit the SS-MELSM to a CSV file with mixed-model formulas and print the summary."""
    from .realdata.commands import fit_command

    fit_command(
        data, location=location, scale=scale, pi=pi, scale_sd=scale_sd, location_sd=location_sd,
        chains=chains, warmup=warmup, draws=draws, seed=seed, threshold=threshold, out=out,
        plots=plots, dropna=dropna, max_extensions=max_extensions,
    )


@app.command()
def compare(fits: list[Path] = typer.Argument(..., help="fit directories written by `simstudy fit --out`")):
    """PSIS-LOO comparison of saved fits (ArviZ's compare table)."""
    from .realdata.commands import compare_command

    compare_command(fits)


@app.command()
def generate(
    out: Path = typer.Option(..., help="output directory for data.csv and truth.csv"),
    seed: int = typer.Option(..., help="random seed"),
    spec: Optional[Path] = typer.Option(None, help="TOML file of generator settings"),
    setting: list[str] = typer.Option([], "--set", help="override a setting, e.g. --set n_groups=100"),
):
    """Generate one MELSM dataset with known truth and write it as CSV (e.g. for ivd)."""
    import tomllib

    from .study.generate import SpecError, generate as generate_data, spec_from_dict, write_csv

    values: dict = {}
    if spec is not None:
        try:
            values.update(tomllib.loads(spec.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            _fail(f"--spec {spec}: {exc}")
    for item in setting:
        key, sep, raw = item.partition("=")
        if not sep:
            _fail(f"--set {item!r}: write KEY=VALUE")
        try:
            values[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = raw
    try:
        data, truth = generate_data(spec_from_dict(values), seed)
    except SpecError as exc:
        _fail(str(exc))
    paths = write_csv(data, truth, out)
    typer.echo(f"wrote {paths[0]} ({data.n_obs} rows) and {paths[1]} ({data.n_groups} groups, "
               f"{int(truth.delta.sum())} inconsistent)")


def main() -> None:  # pragma: no cover
    app()
