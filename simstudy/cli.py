"""Command line: ``simstudy run / plan / status / summarize / plot / report / fit / sensitivity / hlm / datasets /
compare / generate / data``.

The five commands on a results store (run, status, summarize, plot, report) take it as an argument
(``STORE``) or as ``--store/-s``, never both.

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
_RUN_HELP = (
    "Run (or resume) a study design into a results store.\n\n"
    "One runner per store: a second `simstudy run` on a store that another runner holds stops with exit code 75 "
    "and names it (host, PID, start time); with --join it shares the store instead, running only tasks nobody "
    "holds. Before anything runs, the design's cells and tasks are counted (--max-cells, --max-tasks) and one "
    "task's memory is estimated against a worker's (--worker-memory).\n\n"
    "Exit codes:\n"
    "0   complete: every fit done (not-converged fits are stored and count as done)\n"
    "3   complete with failed fits: `simstudy status STORE` says why; --retry-failed reruns them\n"
    "4   incomplete: fits still pending (e.g. a block whose results could not be written)\n"
    "130 interrupted (Ctrl-C, SIGTERM): finished blocks are kept; rerun to resume\n"
    "75  busy: another runner holds the store (add --join to share it)\n"
    "2   nothing ran: invalid design or options, a resource limit, a store problem\n"
    "1   an unexpected error (a bug: please report the traceback)\n"
)


def _store_arg(positional: Optional[Path], option: Optional[Path]) -> Path:
    """The results store, given as the STORE argument or as --store/-s (exactly one of them)."""
    if positional is not None and option is not None:
        _fail(f"the results store is given twice ({positional} and --store {option}); give it once, as STORE or "
              "as --store STORE")
    if positional is None and option is None:
        _fail("no results store: give it as STORE or as --store STORE")
    return positional if positional is not None else option


def _use_jobqueue_config(path: Optional[Path]) -> None:
    """--jobqueue-config PATH: the SLURM/PBS settings file, checked before anything is created
    (exit 2 when it does not exist); passed on as $SIMSTUDY_JOBQUEUE_CONFIG."""
    import os

    from .study.cluster import JOBQUEUE_CONFIG_ENV

    if path is None:
        return
    if not path.expanduser().is_file():
        _fail(f"--jobqueue-config {path}: no such file; give the path of a jobqueue.yaml (e.g. cluster/jobqueue.yaml "
              "of the repository)")
    os.environ[JOBQUEUE_CONFIG_ENV] = str(path.expanduser().resolve())


_JOBQUEUE_HELP = ("SLURM/PBS settings file (default: $SIMSTUDY_JOBQUEUE_CONFIG, else ./cluster/jobqueue.yaml, else "
                  "the repository's cluster/jobqueue.yaml; your Dask config on top)")


@app.command(help=_RUN_HELP)
def run(
    design: Path = typer.Argument(..., help="study design TOML file"),
    store_arg: Optional[Path] = typer.Argument(None, metavar="[STORE]", show_default=False,
                                               help="results store (Zarr directory) to create or resume; or --store"),
    store: Optional[Path] = typer.Option(None, "--store", "-s", help="results store (Zarr directory) to create or resume"),
    cluster: str = typer.Option("local", help="local | slurm | pbs | tcp://SCHEDULER:PORT"),
    jobqueue_config: Optional[Path] = typer.Option(None, "--jobqueue-config", help=_JOBQUEUE_HELP),
    workers: Optional[int] = typer.Option(None, help="worker processes (local) or jobs (slurm/pbs)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="rerun tasks whose fits failed"),
    repair: bool = typer.Option(False, "--repair", help="first read every chunk of the store (as `simstudy status "
                                "--verify`) and rerun the blocks with a damaged or missing chunk (same seeds, same "
                                "numbers)"),
    progress: bool = typer.Option(True, help="show a progress bar (--no-progress: no bar and no line per task; "
                                  "the other messages stay)"),
    join: bool = typer.Option(False, "--join", help="if another runner holds the store, share it: run only tasks "
                              "nobody holds, wait for the rest"),
    max_cells: Optional[int] = typer.Option(None, "--max-cells", help="refuse designs with more cells (default 10000)"),
    max_tasks: Optional[int] = typer.Option(None, "--max-tasks", help="refuse designs with more tasks (default 100000)"),
    worker_memory: Optional[str] = typer.Option(None, "--worker-memory", help="memory of one worker, e.g. 16GB "
                                                "(default: detected); tasks estimated to need more are refused"),
):
    import sys

    from .study.design import DesignError
    from .study.runner import EXIT_BUSY, StoreBusyError, run_study
    from .study.store import StoreError

    store = _store_arg(store_arg, store)
    if workers is not None and workers < 1:
        _fail(f"--workers must be at least 1, got {workers}")
    for name, value in (("--max-cells", max_cells), ("--max-tasks", max_tasks)):
        if value is not None and value < 1:
            _fail(f"{name} must be at least 1, got {value}")
    _use_jobqueue_config(jobqueue_config)
    try:
        summary = run_study(design, store, cluster=cluster, workers=workers, retry_failed=retry_failed,
                            progress=progress, join=join, max_cells=max_cells, max_tasks=max_tasks,
                            worker_memory=worker_memory, command=" ".join(["simstudy"] + sys.argv[1:]),
                            repair=repair)
    except StoreBusyError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=EXIT_BUSY)
    except (DesignError, StoreError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:  # before the run started (e.g. while connecting): nothing ran
        typer.secho("interrupted", err=True)
        raise typer.Exit(code=130)
    raise typer.Exit(code=summary.exit_code)


@app.command()
def plan(
    design: Path = typer.Argument(..., help="study design TOML file"),
    workers: Optional[int] = typer.Option(None, help="worker processes (local) or jobs (slurm/pbs); default as "
                                          "`simstudy run`: the CPUs here, at most one per task"),
    cluster: str = typer.Option("local", help="local | slurm | pbs | tcp://SCHEDULER:PORT (then --workers is needed)"),
    jobqueue_config: Optional[Path] = typer.Option(None, "--jobqueue-config", help=_JOBQUEUE_HELP),
    job_script: bool = typer.Option(False, "--job-script", help="with --cluster slurm|pbs: also print the job script "
                                    "each worker job would run (nothing is submitted)"),
    calibrate: bool = typer.Option(True, help="fit the shapes this machine has no calibration for (a few seconds "
                                   "each); --no-calibrate: counts only unless cached"),
    recalibrate: bool = typer.Option(False, "--recalibrate",
                                     help="measure every shape again (e.g. on an idle machine)"),
    extension_rate: Optional[float] = typer.Option(None, "--extension-rate",
                                                   help="expected extensions per fit (default 0.27)"),
    as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
):
    """Before running a design: cells, tasks, fits, memory per task, estimated wall time and core-hours."""
    import json
    import os

    from .study.cluster import worker_env

    # calibrate as a worker runs: one XLA thread (set before JAX starts)
    os.environ.update(worker_env())

    from .study.design import DesignError, load_design
    from .study.limits import ResourceError
    from .study.plan import PlanError, format_plan, plan_design

    if workers is not None and workers < 1:
        _fail(f"--workers must be at least 1, got {workers}")
    if extension_rate is not None and not extension_rate >= 0:
        _fail(f"--extension-rate must be a number >= 0 (expected extensions per fit), got {extension_rate}")
    if not design.is_file():
        _fail(f"no design file {design}; give the path of a design TOML file (e.g. designs/quickstart.toml)")
    if job_script and cluster not in ("slurm", "pbs"):
        _fail(f"--job-script needs --cluster slurm or --cluster pbs (got --cluster {cluster})")
    _use_jobqueue_config(jobqueue_config)
    from .study.cluster import describe_jobqueue_config
    from .study.design import small_groups_note

    try:
        d = load_design(design)
        say = None if as_json else (lambda msg: typer.echo(msg, err=True))
        note = small_groups_note(d)
        if note and say:
            say(f"warning: {note}")
        if cluster in ("slurm", "pbs") and say:
            say(describe_jobqueue_config(cluster))
        result = plan_design(d, workers, cluster=cluster, calibrate=calibrate, recalibrate=recalibrate,
                             extension_rate=extension_rate, progress=say)
        script = None
        if job_script:
            from .study.cluster import job_script as render_job_script

            script = render_job_script(cluster)
    except (DesignError, ResourceError, PlanError, FileNotFoundError) as exc:
        _fail(str(exc))
    if as_json:
        out = result.to_dict()
        if script is not None:
            out["job_script"] = script
        typer.echo(json.dumps(out, indent=1, default=str))
        return
    typer.echo(format_plan(result))
    if script is not None:
        typer.echo(f"\njob script of each {cluster.upper()} worker job (the scheduler's address is filled in when "
                   f"`simstudy run` starts it):\n{script}")


@app.command()
def status(
    store: Optional[Path] = typer.Argument(None, help="results store (or --store)", show_default=False),
    store_opt: Optional[Path] = typer.Option(None, "--store", "-s", help="results store (instead of the STORE argument)"),
    verify: bool = typer.Option(False, "--verify", help="also read every chunk of every variable and check that "
                                "every block marked done has all its chunks; exit code 2 when damage is found"),
):
    """Show how far a study has got: tasks done, failed, pending.

    Leftovers of an interrupted store creation or extension are recovered first (when no runner holds the store).
    Exit codes: 0 shown (with --verify: and every chunk reads back); 2 no readable store, or --verify found damaged
    blocks (listed; `simstudy run DESIGN --store STORE --repair` recomputes them).
    """
    from .study.integrity import recover_unlocked
    from .study.status import print_status, print_verification
    from .study.store import StoreError

    store = _store_arg(store, store_opt)
    for msg in recover_unlocked(store):
        typer.echo(msg, err=True)
    try:
        damaged = print_verification(store) if verify else []
        if not damaged:
            print_status(store)
    except StoreError as exc:
        _fail(str(exc))
    if damaged:
        raise typer.Exit(code=2)


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
    store: Optional[Path] = typer.Argument(None, help="results store (or --store)", show_default=False),
    store_opt: Optional[Path] = typer.Option(None, "--store", "-s", help="results store (instead of the STORE argument)"),
    threshold: float = typer.Option(0.75, help="PIP threshold for flagging (rule pip)"),
    out: Optional[Path] = typer.Option(None, help="write the cell table (.nc or .csv)"),
    rule: str = typer.Option("pip", help="pip: flag PIP >= threshold; bf: flag BF10 >= --bf with each cell's pi"),
    bf: float = typer.Option(3.0, help="Bayes-factor threshold of the bf rule"),
    converged_only: bool = typer.Option(False, "--converged-only", help="use only fits with status ok"),
):
    """Cell-level summary (classification, calibration, estimation, runtime) with MCSEs."""
    from .evaluate import summarize_cli

    _on_store(summarize_cli, _store_arg(store, store_opt), rule, (ValueError,), threshold=threshold, out=out, bf=bf,
              converged_only=converged_only)


@app.command()
def plot(
    store: Optional[Path] = typer.Argument(None, help="results store (or --store)", show_default=False),
    store_opt: Optional[Path] = typer.Option(None, "--store", "-s", help="results store (instead of the STORE argument)"),
    out: Path = typer.Option(Path("figures"), help="output directory (PNG + PDF)"),
    threshold: float = typer.Option(0.75, help="PIP threshold for flagging (rule pip)"),
    rule: str = typer.Option("pip", help="pip: flag PIP >= threshold; bf: flag BF10 >= --bf with each cell's pi"),
    bf: float = typer.Option(3.0, help="Bayes-factor threshold of the bf rule"),
    metric: list[str] = typer.Option([], "--metric", help="cell metric(s) to draw, repeated or comma-separated "
                                                           "(default: tpr, fpr, f1, mcc, roc_auc, ece, ...)"),
    x: Optional[str] = typer.Option(None, help="factor on the x axis (default: the one with most levels)"),
    hue: Optional[str] = typer.Option(None, help="factor drawn as colours"),
    row: Optional[str] = typer.Option(None, help="factor of facet rows"),
    col: Optional[str] = typer.Option(None, help="factor of facet columns"),
    converged_only: bool = typer.Option(False, "--converged-only", help="use only fits with status ok"),
):
    """Sensitivity, reliability and runtime figures from a results store."""
    from .evaluate.plots import plot_cli

    _on_store(plot_cli, _store_arg(store, store_opt), rule, (ValueError, KeyError), out=out, threshold=threshold,
              metrics=metric or None, x=x, hue=hue, row=row, col=col, converged_only=converged_only, bf=bf)


@app.command()
def report(
    store: Optional[Path] = typer.Argument(None, help="results store (or --store)", show_default=False),
    store_opt: Optional[Path] = typer.Option(None, "--store", "-s", help="results store (instead of the STORE argument)"),
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
        from .evaluate.fits import open_store, unfinished_note

        note = unfinished_note(open_store(path), path)
        if note:
            typer.echo(f"note: {note}")
        typer.echo(f"wrote {build_report(path, out, rule=rule, **options)}")

    _on_store(command, _store_arg(store, store_opt), rule, (ValueError, KeyError), threshold=threshold, bf=bf,
              converged_only=converged_only, figures=figures)


# --------------------------------------------------------------------------- single fits
@app.command("fit")
def fit_cmd(
    data: Path = typer.Argument(..., help="CSV file, one row per observation, or a shipped data set by name: saeb "
                                "(see `simstudy datasets`)"),
    location: str = typer.Option(..., help='location formula, e.g. "y ~ x + (1 | school)"'),
    scale: str = typer.Option(..., help='scale formula, e.g. "~ x + (1 | school)"'),
    pi: str = typer.Option("0.5", help='prior inclusion probability: a number in (0, 1) or "beta(a, b)" (pi sampled)'),
    scale_sd: str = typer.Option("half_t(3, 1)", help="prior of the scale random-effect SDs"),
    location_sd: str = typer.Option("half_t(3, 1)", help="prior of the location random-effect SDs"),
    chains: int = typer.Option(4),
    warmup: int = typer.Option(1000),
    draws: int = typer.Option(1000),
    max_extensions: int = typer.Option(2, "--max-extensions",
                                       help="extend a fit failing the convergence rule by another --draws draws, "
                                            "at most this many times"),
    target_accept: float = typer.Option(0.8, "--target-accept", help="NUTS target acceptance rate in (0, 1); "
                                        "higher takes smaller steps (fewer divergences, slower)"),
    within_between: Optional[str] = typer.Option(None, "--within-between", metavar="COLUMN:NEW",
                                                 help="split COLUMN within the formula's groups as ivd does: COLUMN "
                                                      "becomes the deviation from its group mean, NEW the group means "
                                                      "centred on the grand mean over rows (e.g. "
                                                      "student_ses:school_ses for Saeb Model 2)"),
    seed: int = typer.Option(0),
    threshold: float = typer.Option(0.75, help="PIP threshold for flagging"),
    out: Optional[Path] = typer.Option(None, help="directory for posterior (.nc), group CSV and plots"),
    plots: bool = typer.Option(False, "--plots", help="also write the pip / funnel / outcome plots"),
    dropna: bool = typer.Option(False, "--dropna", help="drop rows with missing (NaN) or infinite (inf, -inf) values in used columns"),
    chain_method: str = typer.Option("auto", "--chain-method",
                                     help="auto | parallel | sequential: run the chains at once on the usable cores "
                                          "(parts of at least 2 chains; the same draws as sequential) or one after "
                                          "another; auto = parallel unless $SIMSTUDY_CHAIN_METHOD=sequential"),
):
    """Fit the SS-MELSM to a CSV file with mixed-model formulas and print the summary."""
    from .realdata.commands import fit_command

    fit_command(
        _dataset(data), location=location, scale=scale, pi=pi, scale_sd=scale_sd, location_sd=location_sd,
        chains=chains, warmup=warmup, draws=draws, seed=seed, threshold=threshold, out=out,
        plots=plots, dropna=dropna, max_extensions=max_extensions, chain_method=chain_method,
        target_accept=target_accept, within_between_spec=within_between,
    )


@app.command("hlm")
def hlm_cmd(
    data: Path = typer.Argument(..., help="CSV file, one row per observation"),
    location: str = typer.Option(..., help='location formula, e.g. "y ~ x + (1 | school)"'),
    scale: Optional[str] = typer.Option(None, help='scale formula, used only for its grouping factor, e.g. '
                                        '"~ (1 | school)"; or give --group'),
    group: Optional[str] = typer.Option(None, "--group", help="grouping factor (default: the location formula's "
                                        "single grouping factor)"),
    fit: Optional[Path] = typer.Option(None, "--fit", help="fit directory of `simstudy fit --out` on the same data: "
                                                          "PIPs beside Z, agreement table, PIP-vs-Z figure"),
    threshold: float = typer.Option(0.75, help="PIP threshold of the SS-MELSM's flags"),
    seed: int = typer.Option(0, help="seed of the QQ envelope's simulations"),
    out: Optional[Path] = typer.Option(None, help="directory for hlm_groups.csv, agreement.csv, pip_vs_z.png"),
    dropna: bool = typer.Option(False, "--dropna", help="drop rows with missing values in used columns"),
):
    """The two-stage HLM comparator (Raudenbush & Bryk 1987) per group of a CSV, no MCMC."""
    from .realdata.commands import FitInputError, hlm_scale_formula
    from .realdata.hlm import hlm_command

    try:
        scale = hlm_scale_formula(location, scale, group)
    except FitInputError as exc:
        _fail(str(exc))
    hlm_command(_dataset(data), location=location, scale=scale, fit_dir=fit, threshold=threshold, seed=seed, out=out,
                dropna=dropna)


@app.command()
def sensitivity(
    data: Path = typer.Argument(..., help="CSV file, one row per observation"),
    location: str = typer.Option(..., help='location formula, e.g. "y ~ x + (1 | school)"'),
    scale: str = typer.Option(..., help='scale formula, e.g. "~ x + (1 | school)"'),
    pi: Optional[str] = typer.Option("0.1,0.25,0.5,0.75,beta(1,1)",
                                     help='pi levels, comma-separated: numbers in (0, 1) and "beta(a, b)"'),
    scale_sd: Optional[str] = typer.Option("half_t(3, 1)",
                                           help='scale-SD prior levels, e.g. "half_t(3, 1),half_normal(0.25),half_cauchy(1)"'),
    location_sd: str = typer.Option("half_t(3, 1)", help="prior of the location random-effect SDs (every setting)"),
    out: Path = typer.Option(..., help="output directory: pips.csv, settings.csv, psense.csv, figure, summary.txt"),
    chains: int = typer.Option(4),
    warmup: int = typer.Option(1000),
    draws: int = typer.Option(1000),
    seed: int = typer.Option(0),
    threshold: float = typer.Option(0.75, help="PIP threshold for flagging"),
    max_extensions: int = typer.Option(0, "--max-extensions",
                                       help="extend a setting's fit failing the convergence rule by another --draws "
                                            "draws, at most this many times (default 0: settings that fail are "
                                            "marked; `simstudy fit` extends twice)"),
    target_accept: float = typer.Option(0.8, "--target-accept", help="NUTS target acceptance rate in (0, 1); "
                                        "higher takes smaller steps (fewer divergences, slower)"),
    psense: bool = typer.Option(True, help="power-scaling sensitivity (arviz_stats.psense) of the default fit"),
    dropna: bool = typer.Option(False, "--dropna", help="drop rows with missing values in used columns"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    chain_method: str = typer.Option("auto", "--chain-method",
                                     help="auto | parallel | sequential: run the chains at once on the usable cores "
                                          "(parts of at least 2 chains; the same draws as sequential) or one after "
                                          "another; auto = parallel unless $SIMSTUDY_CHAIN_METHOD=sequential"),
):
    """Refit one dataset under every (pi, scale-SD prior) combination: would the flags survive another prior?"""
    from .realdata.sensitivity import sensitivity_command

    sensitivity_command(_dataset(data), location=location, scale=scale, pi=pi, scale_sd=scale_sd, out=out, threshold=threshold,
                        chains=chains, warmup=warmup, draws=draws, seed=seed, dropna=dropna, psense=psense,
                        progress=progress, chain_method=chain_method, location_sd=location_sd,
                        target_accept=target_accept, max_extensions=max_extensions)


def _dataset(data: Path) -> Path:
    """``saeb`` (a shipped data set's name, when no such file exists here) -> the shipped CSV's path."""
    from .datasets import DATASETS, dataset_path

    if str(data) in DATASETS and not data.exists():
        return dataset_path(str(data))
    return data


@app.command()
def datasets(name: Optional[str] = typer.Argument(None, help="print only this data set's path (e.g. saeb)")):
    """The data sets shipped with simstudy: name, path of the CSV, description. `simstudy fit saeb ...` reads one."""
    from .datasets import DATASETS, dataset_path

    if name is not None:
        if name not in DATASETS:
            _fail(f"no shipped data set {name!r}; shipped: {', '.join(DATASETS)}")
        typer.echo(str(dataset_path(name)))
        return
    for key, (_, about) in DATASETS.items():
        typer.echo(f"{key}\t{dataset_path(key)}\t{about}")


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

    from .fsutil import EncodingError, read_text_utf8

    values: dict = {}
    if spec is not None:
        try:
            values.update(tomllib.loads(read_text_utf8(spec)))
        except EncodingError as exc:
            _fail(f"--spec {exc}")
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


@app.command("data")
def data_cmd(
    design: Path = typer.Argument(..., help="study design TOML file"),
    cell: str = typer.Option(..., "--cell", help='the cell: its id (the store\'s cell_id), its position (0, 1, ...), '
                                                 'its label or factor values, e.g. "pi=0.5,n_groups=30"'),
    replicate: int = typer.Option(..., "--replicate", "-r", help="replicate index (0-based)"),
    out: Path = typer.Option(..., help="output directory for data.csv and truth.csv"),
):
    """Write the exact data set (data.csv) and its truth (truth.csv) that the fits of one (cell, replicate) saw."""
    from .study.design import DesignError, load_design
    from .study.replicate import resolve_cell, write_replicate

    if not design.is_file():
        _fail(f"no design file {design}; give the path of a design TOML file (e.g. designs/quickstart.toml)")
    try:
        d = load_design(design)
        c = resolve_cell(d, cell)
        paths = write_replicate(d, c, replicate, out)
    except (DesignError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"cell ({c.label}) [cell_id {c.cell_id}], replicate {replicate}: wrote {paths[0]} and {paths[1]}")


def main() -> None:  # pragma: no cover
    app()
