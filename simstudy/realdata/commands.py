"""Single fits from the command line (``simstudy fit`` / ``simstudy compare``); the printed
summary is :mod:`.summary`, the fit directory :mod:`.fitdir`.

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
   ``outcome.png``, ``trace.png`` and ``rank.png`` (the hyperparameters' chains).

``simstudy compare DIR1 DIR2 ...`` reads ``posterior.nc`` from each directory and prints the
PSIS-LOO comparison (:func:`simstudy.realdata.compare.compare_fits`).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from rich.markup import escape

from .fitdir import FitInputError, load_fit_dir, write_fit_dir  # noqa: F401
from .summary import GROUP_COLUMNS, groups_csv_table, print_summary, summary_sections  # noqa: F401
from .summary import _console, _fmt

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



# =============================================================================== summary
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
def _fail(message: str, code: int = 2):
    import typer

    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


def within_between(df: pd.DataFrame, spec: str, location: str) -> pd.DataFrame:
    """``--within-between COLUMN:NEW``: ivd's centring of ``COLUMN`` within the grouping factor of
    the ``location`` formula (:func:`simstudy.datasets.add_saeb_predictors` with
    ``grand_mean="students"``): ``COLUMN`` becomes each row's deviation from its group mean
    (within), ``NEW`` the group means centred on the grand mean over rows (between), and
    ``COLUMN_raw`` keeps the original. Raises :class:`FitInputError`."""
    from ..datasets import add_saeb_predictors
    from .formula import parse_formula

    column, sep, between = (part.strip() for part in str(spec).partition(":"))
    if not sep or not column or not between or column == between:
        raise FitInputError(f"--within-between {spec!r}: write COLUMN:NEW, e.g. student_ses:school_ses (COLUMN is "
                            "centred within groups, NEW gets the centred group means)")
    groups = parse_formula(location, "location").grouping_factors
    if len(groups) != 1:
        raise FitInputError(f"--within-between needs exactly one grouping factor in the location formula, "
                            f"found {len(groups)} ({', '.join(groups) or 'none'})")
    if column not in df.columns:
        raise FitInputError(f"--within-between: no column {column!r} in the data (columns: {', '.join(map(str, df.columns))})")
    for name in (between, f"{column}_raw"):
        if name in df.columns:
            raise FitInputError(f"--within-between: the data already have a column {name!r}; pick another name")
    if not _is_number_column(df[column]):
        raise FitInputError(f"--within-between: column {column!r} is not numeric")
    return add_saeb_predictors(df, group=groups[0], ses=column, grand_mean="students", between=between)


def hlm_scale_formula(location: str, scale: str | None, group: str | None) -> str:
    """The scale formula of ``simstudy hlm``, which uses it only for the grouping factor:
    ``scale`` as given; else ``~ 1 + (1 | GROUP)`` for ``--group`` or, without it, for the
    location formula's single grouping factor. Raises :class:`FitInputError`."""
    from .formula import FormulaError, parse_formula

    if scale:
        if group:
            try:
                named = parse_formula(scale, "scale").grouping_factors
            except FormulaError:
                named = [group]  # the formula's own error comes later, with its context
            if named != [group]:
                raise FitInputError(f"--group {group} but the scale formula groups by {', '.join(named) or 'nothing'}; "
                                    "give one of them (--scale is needed only to name the grouping factor)")
        return scale
    if not group:
        try:
            groups = parse_formula(location, "location").grouping_factors
        except FormulaError as exc:
            raise FitInputError(str(exc)) from None
        if len(groups) != 1:
            raise FitInputError("name the grouping factor: --group NAME (or --scale \"~ (1 | NAME)\"); the location "
                                f"formula has {len(groups)} grouping factors ({', '.join(groups) or 'none'})")
        group = groups[0]
    if not str(group).isidentifier():
        raise FitInputError(f"--group {group!r}: not a column name a formula can use")
    return f"~ 1 + (1 | {group})"


def _is_number_column(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _check_chain_method(chain_method: str, chains: int) -> None:
    """``--chain-method``: auto, parallel or sequential (raises :class:`FitInputError`)."""
    from ..model.chains import chain_workers

    try:
        chain_workers(chain_method, chains)
    except ValueError as exc:
        raise FitInputError(f"--chain-method: {exc}") from None


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
    chain_method: str = "auto",
    target_accept: float = 0.8,
    within_between_spec: str | None = None,
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
            MCMCSettings(chains, warmup, draws, target_accept=target_accept)
        except ValueError as exc:
            raise FitInputError(f"MCMC settings: {exc}") from None
        _check_chain_method(chain_method, chains)
        if isinstance(max_extensions, bool) or not isinstance(max_extensions, int) or max_extensions < 0:
            raise FitInputError(f"--max-extensions must be an integer >= 0, got {max_extensions!r}")
        if out is not None:
            out = check_out_dir(out)
        df = read_csv_checked(data)
        if within_between_spec:
            df = within_between(df, within_between_spec, location)
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
    from ..model.response_scale import prior_units_advice

    for advice in (small_groups_advice(mdata.group_sizes), prior_units_advice(mdata, priors)):
        if advice:
            console.print(f"[yellow]warning:[/yellow] {escape(advice)}", highlight=False)

    # ------------------------------------------------------------ fit
    from .compare import loo_of
    from ..model.sampler import fit as fit_data

    t0 = time.perf_counter()
    try:
        with fitting_progress(progress, label=f"fitting {Path(data).name}") as report:
            result = fit_data(mdata, priors, chains=chains, warmup=warmup, draws=draws, seed=seed, progress=report,
                              max_extensions=max_extensions, chain_method=chain_method, target_accept=target_accept)
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
                                     "total": time.perf_counter() - t0}, "dropna": dropna,
                       "within_between": within_between_spec},
            )
        except OSError as exc:  # full disk (DiskFullError), permissions, ...: one line, exit 1
            from ..fsutil import DiskFullError

            _fail(str(exc) if isinstance(exc, DiskFullError) else
                  f"cannot write --out {out}: {exc.strerror or exc}; nothing was written", code=1)
        console.print(escape(f"wrote {', '.join(p.name for p in paths.values())} to {out}"), highlight=False)
    return result


#: below this median group size `simstudy fit` says that few inconsistent groups can be found
SMALL_GROUP_MEDIAN = 15


def small_groups_advice(group_sizes) -> str | None:
    """A warning when the median group is small (FINDINGS.md, section 3: with ragged groups
    of mean size 10 the SS-MELSM found 7% of the truly inconsistent groups, at 30 it found 20%),
    else None."""
    median = float(np.median(group_sizes))
    if median >= SMALL_GROUP_MEDIAN:
        return None
    return (f"the median group has {median:g} observations: with fewer than about {SMALL_GROUP_MEDIAN} per group "
            "the SS-MELSM finds few of the truly inconsistent groups (in FINDINGS.md's simulations it found "
            "7% of them at mean group size 10, 20% at 30), so a PIP near pi means too little data to tell, "
            "not a consistent group")


def convergence_advice(fit) -> str:
    """What ``simstudy fit`` prints when a fit still fails the convergence rule after its
    extensions: why, the slowest parameter, and settings to try."""
    from ..model.diagnostics import suggest_settings

    v = fit.verdict
    return (f"warning: not converged after {fit.extensions} extension(s) ({fit.draws_used} draws per chain): "
            f"{v.reason}. The slowest parameter is {v.worst_param}; try "
            f"{suggest_settings(v, fit.settings, fit.extensions - fit.reruns)}.")


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
