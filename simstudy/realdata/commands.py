"""Single fits from the command line (``simstudy fit`` / ``simstudy compare``) and the
printed, ivd-style summary of a fit.

``simstudy fit data.csv --location "y ~ x + (1 | g)" --scale "~ x + (1 | g)" --out DIR``

1. validates everything before fitting: the file exists and reads as CSV, the formulas
   (columns, response, grouping factor, types, missing values), the priors, the MCMC
   settings, the threshold and ``--out``. Any problem: one ``error: ...`` line, exit code 2,
   nothing written;
2. fits with a progress bar (a spinner while compiling, then iterations done / total with
   elapsed and remaining time, reported from inside the compiled sampler);
3. prints the summary (:func:`print_summary`): fixed effects of both submodels, random-effect
   SDs and correlations with 95% intervals, R-hat and bulk/tail ESS on every row, WAIC and
   PSIS-LOO, and the groups with PIP >= threshold;
4. with ``--out DIR`` writes, via a temporary directory renamed into place (never half-written):
   ``posterior.nc`` (DataTree: posterior, sample_stats, log_likelihood), ``groups.csv``,
   ``summary.csv``, ``fit.json`` and with ``--plots`` ``pip.png``, ``funnel.png``,
   ``outcome.png``.

``simstudy compare DIR1 DIR2 ...`` reads ``posterior.nc`` from each directory and prints the
PSIS-LOO comparison (:func:`simstudy.realdata.compare.compare_fits`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from rich.markup import escape

__all__ = [
    "FitInputError",
    "print_summary",
    "summary_sections",
    "groups_csv_table",
    "read_csv_checked",
    "check_out_dir",
    "write_fit_dir",
    "fit_command",
    "compare_command",
    "load_fit_dir",
    "print_compare",
]

#: column order of groups.csv (per-effect ``pip[name]``/``bf10[name]`` when K > 1)
GROUP_COLUMNS = ("group", "n", "observed_sd", "pip", "bf10", "within_sd", "mean", "flagged")


class FitInputError(ValueError):
    """A problem with the command's inputs (file, options, output directory)."""


# =============================================================================== summary
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
    top = table[pips].max(axis=1)
    return table[table["flagged"]].assign(_top=top).sort_values("_top", ascending=False).drop(columns="_top")


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
def read_csv_checked(path) -> pd.DataFrame:
    """Read a CSV file, turning every failure into one :class:`FitInputError` message."""
    path = Path(path)
    if not path.exists():
        raise FitInputError(f"data file {str(path)!r} does not exist")
    if not path.is_file():
        raise FitInputError(f"data file {str(path)!r} is not a file")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise FitInputError(f"data file {str(path)!r} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FitInputError(f"cannot read {str(path)!r} as CSV: {first}") from None
    except OSError as exc:
        raise FitInputError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if len(df) == 0:
        raise FitInputError(f"data file {str(path)!r} has a header but no rows")
    _check_header(path, df)
    if len(df.columns) < 2:
        raise FitInputError(
            f"data file {str(path)!r} has a single column {list(df.columns)}; is it comma-separated?"
        )
    return df


def _check_header(path: Path, df: pd.DataFrame) -> None:
    """Refuse duplicate column names (pandas would silently rename the second ``x`` to
    ``x.1``, so a formula naming ``x`` would use the first column only)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            header = next(csv.reader(fh), [])
    except OSError:
        return
    header = [h.strip() for h in header]
    seen: dict[str, int] = {}
    dups: dict[str, list[int]] = {}
    for i, name in enumerate(header, start=1):
        if name in seen:
            dups.setdefault(name, [seen[name]]).append(i)
        else:
            seen[name] = i
    if dups:
        detail = "; ".join(f"{name!r} is column {' and '.join(str(i) for i in cols)}" for name, cols in dups.items())
        raise FitInputError(f"data file {str(path)!r} has duplicate column names ({detail}); rename them so that "
                            "every column has its own name (a formula could not tell them apart)")


def check_out_dir(out) -> Path:
    """``--out`` must be a new or empty directory, or an earlier fit directory (with
    ``fit.json``), which is replaced; its nearest existing ancestor must be writable."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise FitInputError(f"--out {str(out)!r} exists and is not a directory")
        contents = [p.name for p in out.iterdir()]
        if contents and "fit.json" not in contents:
            raise FitInputError(
                f"--out {str(out)!r} exists and holds other files ({', '.join(sorted(contents)[:3])}"
                f"{', ...' if len(contents) > 3 else ''}); give a new or empty directory "
                "(an earlier fit directory, with fit.json, is replaced)"
            )
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise FitInputError(f"cannot write --out {str(out)!r}: {str(ancestor)!r} is not a writable directory")
    return out


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not (0.0 < threshold <= 1.0):
        raise FitInputError(f"--threshold must lie in (0, 1], got {threshold}")
    return threshold


# =============================================================================== output
def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return value


def fit_info(fit, *, threshold: float, loo=None, waic=None, data_file=None, extra: dict | None = None) -> dict:
    """What ``fit.json`` records: formulas, priors, settings, timings, diagnostics, data."""
    import arviz
    import jax
    import numpyro

    from .. import __version__
    from .compare import PARETO_K_BAD

    meta = fit.data.meta or {}
    s = fit.settings
    table = fit.groups_table(threshold)
    info = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_file": None if data_file is None else Path(data_file).name,
        "data_path": None if data_file is None else str(Path(data_file).absolute()),
        "location_formula": meta.get("location_formula"),
        "scale_formula": meta.get("scale_formula"),
        "response": fit.data.response,
        "group": fit.data.group_name,
        "n_obs": fit.data.n_obs,
        "n_groups": fit.data.n_groups,
        "dropped_rows": int(meta.get("dropped_rows", 0) or 0),
        "scale_random_effects": list(fit.data.z_scale_names),
        "priors": fit.priors.describe(),
        "settings": {
            "chains": s.chains, "warmup": s.warmup, "draws": s.draws, "target_accept": s.target_accept,
            "max_tree_depth": s.max_tree_depth, "seed": fit.seed, "threshold": threshold,
        },
        "timings_s": {"compile": fit.compile_s, "sampling": fit.sample_s},
        "diagnostics": {
            "converged": fit.converged,
            "rhat_max": fit.rhat_max,
            "ess_bulk_min": fit.ess_bulk_min,
            "divergences": fit.divergences,
            "rhat_worst": fit.verdict.rhat_worst,
            "ess_worst": fit.verdict.ess_worst,
            "worst_param": fit.verdict.worst_param,
            "draws_used": fit.draws_used,
            "extensions": fit.extensions,
            "warmup_divergences": int(fit.tree["sample_stats"].attrs.get("warmup_divergences", 0)),
        },
        "n_flagged": int(table["flagged"].sum()),
        "versions": {"simstudy": __version__, "jax": jax.__version__, "numpyro": numpyro.__version__,
                     "arviz": arviz.__version__},
    }
    if loo is not None:
        k = np.asarray(loo.pareto_k).ravel()
        info["loo"] = {"elpd_loo": float(loo.elpd), "se": float(loo.se), "p_loo": float(loo.p),
                       "pareto_k_bad": int(np.sum(k > PARETO_K_BAD)), "pareto_k_max": float(np.nanmax(k))}
    if waic is not None:
        info["waic"] = dict(waic)
    if extra:
        info.update(extra)
    return _jsonable(info)


def _summary_csv_table(fit) -> pd.DataFrame:
    frames = []
    sections = summary_sections(fit)
    names = {title: var for var, title in _SECTIONS}
    for title, rows in sections.items():
        rows = rows.copy()
        rows.insert(0, "section", names[title])
        rows.insert(1, "term", rows.index)
        rows.index = [names[title] if t == names[title] else f"{names[title]}[{t}]" for t in rows.index]  # pi: scalar
        frames.append(rows)
    table = pd.concat(frames)
    table.index.name = "parameter"
    return table


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_fit_dir(fit, out, *, threshold: float = 0.75, plots: bool = False, loo=None, waic=None,
                  data_file=None, extra: dict | None = None) -> dict[str, Path]:
    """Write a fit directory atomically: every file goes into a temporary sibling directory
    that is renamed to ``out`` at the end (an earlier ``out`` is replaced only then).

    Files: ``posterior.nc`` (DataTree with ``posterior``, ``sample_stats`` and
    ``log_likelihood``), ``groups.csv``, ``summary.csv``, ``fit.json`` and, with ``plots``,
    ``pip.png``, ``funnel.png``, ``outcome.png``. Returns name -> final path.
    """
    from ..fsutil import check_free_space

    out = Path(out)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    fit.add_log_likelihood()
    need = posterior_nc_bytes(fit) + (3 << 20 if plots else 0) + (1 << 20)
    # before anything is written: a write that fills the disk can crash h5py instead of raising
    check_free_space(parent, need, f"posterior.nc to {out}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    current = "posterior.nc"
    try:
        tmp.chmod(0o777 & ~_umask())
        written = {}
        _write_bytes(tmp / "posterior.nc", _netcdf_bytes(fit))
        written["posterior"] = "posterior.nc"
        current = "groups.csv, summary.csv"
        groups_csv_table(fit, threshold).to_csv(tmp / "groups.csv", index=False)
        written["groups"] = "groups.csv"
        _summary_csv_table(fit).to_csv(tmp / "summary.csv")
        written["summary"] = "summary.csv"
        if plots:
            from .plots import save_fit_plots

            current = "the plots"
            for name, path in save_fit_plots(fit, tmp, threshold).items():
                written[name] = path.name
        current = "fit.json"
        info = fit_info(fit, threshold=threshold, loo=loo, waic=waic, data_file=data_file, extra=extra)
        info["files"] = sorted(written.values()) + ["fit.json"]
        (tmp / "fit.json").write_text(json.dumps(info, indent=2) + "\n")
        written["fit"] = "fit.json"
        if out.exists():
            old = parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        from ..fsutil import DiskFullError, disk_full_message, is_disk_full

        if isinstance(exc, Exception) and not isinstance(exc, DiskFullError) and is_disk_full(exc):
            raise DiskFullError(disk_full_message(parent, f"{current} to {out}", need)
                                + "; nothing was written (the partial files were removed)") from None
        raise
    return {name: out / fname for name, fname in written.items()}


def posterior_nc_bytes(fit) -> int:
    """Size of ``posterior.nc`` before compression: every array of the fit's DataTree."""
    try:
        return int(sum(node.to_dataset().nbytes for node in fit.tree.subtree))
    except Exception:  # noqa: BLE001 - an estimate only
        return 0


def _netcdf_bytes(fit) -> bytes:
    """``posterior.nc`` serialised in memory: the file is then written with plain Python I/O,
    where a full disk is an ``OSError`` (h5py writing to a full disk itself may crash)."""
    import io

    buf = io.BytesIO()
    fit.to_netcdf(buf)
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


# =============================================================================== commands
def _fail(message: str, code: int = 2):
    import typer

    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


def fit_command(
    data,
    *,
    location: str,
    scale: str,
    pi: "float | str" = 0.5,
    scale_sd: str = "half_t(3, 1)",
    location_sd: str = "half_t(3, 1)",
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed: int = 0,
    threshold: float = 0.75,
    out=None,
    plots: bool = False,
    dropna: bool = False,
    progress: bool = True,
    console=None,
    max_extensions: int = 2,
):
    """``simstudy fit``: validate everything, fit, print the summary, write ``--out``.

    Invalid input -> ``error: ...`` on stderr and ``typer.Exit(2)`` before anything is fitted
    or written. Returns the :class:`~simstudy.model.result.FitResult`."""

    from .fit_formula import fitting_progress, make_priors
    from ..model.data import DataError
    from ..model.sampler import MCMCSettings
    from .formula import FormulaError, melsm_data_from_formulas
    from ..model.priors import PriorError

    console = console or _console()
    # ------------------------------------------------------------ validate (nothing written)
    try:
        if plots and out is None:
            raise FitInputError("--plots needs --out DIR (the plots are written there)")
        threshold = _check_threshold(threshold)
        priors = make_priors(pi=pi, scale_sd=scale_sd, location_sd=location_sd)
        try:
            MCMCSettings(chains, warmup, draws)
        except ValueError as exc:
            raise FitInputError(f"MCMC settings: {exc}") from None
        if isinstance(max_extensions, bool) or not isinstance(max_extensions, int) or max_extensions < 0:
            raise FitInputError(f"--max-extensions must be an integer >= 0, got {max_extensions!r}")
        if out is not None:
            out = check_out_dir(out)
        df = read_csv_checked(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mdata = melsm_data_from_formulas(df, location, scale, dropna=dropna)
    except (FitInputError, FormulaError, PriorError, DataError) as exc:
        _fail(str(exc))
    for w in caught:
        if issubclass(w.category, UserWarning):
            console.print(f"[yellow]warning:[/yellow] {escape(str(w.message))}", highlight=False)
    dropped = int(mdata.meta.get("dropped_rows", 0) or 0)
    if dropped:
        console.print(f"dropped {dropped} rows with missing or infinite values (--dropna)", highlight=False)

    # ------------------------------------------------------------ fit
    from .compare import loo_of
    from ..model.sampler import fit as fit_data

    t0 = time.perf_counter()
    try:
        with fitting_progress(progress, label=f"fitting {Path(data).name}") as report:
            result = fit_data(mdata, priors, chains=chains, warmup=warmup, draws=draws, seed=seed, progress=report,
                              max_extensions=max_extensions)
        t_ll = time.perf_counter()
        result.add_log_likelihood()
        loo = loo_of(result)
        waic = result.waic()
        ic_s = time.perf_counter() - t_ll
    except Exception as exc:  # a failure inside JAX/NumPyro/ArviZ: report, exit 1
        _fail(f"fitting failed: {type(exc).__name__}: {exc}", code=1)
    result.extra.update(location_formula=location, scale_formula=scale, data_file=str(data))

    print_summary(result, threshold, console=console, loo=loo, waic=waic)
    if not result.converged:
        console.print(escape(convergence_advice(result)), style="yellow", highlight=False)
    if out is not None:
        try:
            paths = write_fit_dir(
                result, out, threshold=threshold, plots=plots, loo=loo, waic=waic, data_file=data,
                extra={"timings_s": {"compile": result.compile_s, "sampling": result.sample_s, "loo_waic": ic_s,
                                     "total": time.perf_counter() - t0}, "dropna": dropna},
            )
        except OSError as exc:  # full disk (DiskFullError), permissions, ...: one line, exit 1
            from ..fsutil import DiskFullError

            _fail(str(exc) if isinstance(exc, DiskFullError) else
                  f"cannot write --out {out}: {exc.strerror or exc}; nothing was written", code=1)
        console.print(escape(f"wrote {', '.join(p.name for p in paths.values())} to {out}"), highlight=False)
    return result


def convergence_advice(fit) -> str:
    """What ``simstudy fit`` prints when a fit still fails the convergence rule after its
    extensions: why, the slowest parameter, and settings to try."""
    from ..model.diagnostics import suggest_settings

    v = fit.verdict
    return (f"warning: not converged after {fit.extensions} extension(s) ({fit.draws_used} draws per chain): "
            f"{v.reason}. The slowest parameter is {v.worst_param}; try "
            f"{suggest_settings(v, fit.settings, fit.extensions)}.")


def load_fit_dir(path):
    """``(DataTree, fit.json dict or {})`` from a directory written by ``simstudy fit --out``."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise FitInputError(f"fit directory {str(path)!r} does not exist")
    nc = path / "posterior.nc" if path.is_dir() else path
    if not nc.is_file():
        raise FitInputError(f"{str(path)!r} has no posterior.nc; give directories written by `simstudy fit --out`")
    try:
        tree = xr.open_datatree(nc, engine="h5netcdf")
        tree = tree.load()
        tree.close()
    except Exception as exc:
        raise FitInputError(f"cannot read {str(nc)!r}: {exc}") from None
    if "log_likelihood" not in tree.children:
        raise FitInputError(f"{str(nc)!r} has no log_likelihood group; refit with `simstudy fit --out`")
    info = {}
    if path.is_dir() and (path / "fit.json").is_file():
        try:
            info = json.loads((path / "fit.json").read_text())
        except (OSError, json.JSONDecodeError):
            info = {}
    return tree, info


def print_compare(table: pd.DataFrame, console=None, title: str = "PSIS-LOO model comparison") -> None:
    """Print a :func:`simstudy.realdata.compare.compare_fits` table with rich."""
    from rich import box
    from rich.table import Table

    console = console or _console()
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("model", "rank", "elpd_loo", "SE", "Δelpd", "SE(Δ)", "p_loo", "weight", "k > 0.7"):
        t.add_column(name, justify="left" if name == "model" else "right")
    for model, r in table.iterrows():
        t.add_row(escape(str(model)), str(int(r["rank"])), _fmt(r["elpd_loo"], 1), _fmt(r["se"], 1),
                  _fmt(r["elpd_diff"], 1), _fmt(r["dse"], 1), _fmt(r["p_loo"], 1), _fmt(r["weight"], 2),
                  f"[yellow]{int(r['pareto_k_bad'])}[/yellow]" if r["pareto_k_bad"] else "0")
    console.print(t)
    console.print("Δelpd: the model's ELPD minus the best model's (negative = worse); "
                  "SE(Δ) from the pointwise differences.", highlight=False)


def compare_command(fits, console=None) -> pd.DataFrame:
    """``simstudy compare DIR ...``: PSIS-LOO comparison of saved fits of the same data."""

    from .compare import compare_fits

    console = console or _console()
    fits = [Path(f) for f in fits]
    try:
        if len(fits) < 2:
            raise FitInputError("compare needs at least two fit directories")
        trees, infos, names = {}, {}, []
        for path in fits:
            name = path.name or str(path)
            if name in names:
                name = str(path)
            if name in names:
                raise FitInputError(f"fit directory {str(path)!r} is given twice")
            names.append(name)
            trees[name], infos[name] = load_fit_dir(path)
        sizes = {n: int(t["log_likelihood"].to_dataset().sizes.get("obs", -1)) for n, t in trees.items()}
        if len(set(sizes.values())) != 1:
            raise FitInputError(f"the fits have different numbers of observations {sizes}; "
                                "LOO compares fits of the same data")
    except FitInputError as exc:
        _fail(str(exc))
    files = {infos[n].get("data_file") for n in names if infos[n]}
    if len(files) > 1:
        console.print(f"[yellow]warning:[/yellow] the fits come from different data files {escape(str(sorted(map(str, files))))}",
                      highlight=False)
    table = compare_fits(trees)
    print_compare(table, console)
    return table
