"""One-call fitting of the SS-MELSM to a DataFrame with mixed-model formulas.

    >>> from simstudy import fit_formula, load_saeb
    >>> fit = fit_formula(load_saeb(), location="math_proficiency ~ 1 + (1 | school_id)",
    ...                   scale="~ 1 + (1 | school_id)")
    >>> fit.groups_table().query("flagged")

:func:`fit_formula` validates the formulas and priors (raising :class:`FormulaError` /
:class:`PriorError` before anything is compiled), fits with NUTS via :func:`simstudy.model.sampler.fit`
and returns the :class:`~simstudy.model.result.FitResult`. With ``progress=True`` a rich progress
bar shows the phase ("compiling", then "sampling" with iterations done out of the total,
reported from inside the compiled sampler).
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import pandas as pd

from .formula import FormulaError, melsm_data_from_formulas
from ..model.priors import PriorError, Priors, SDPrior

__all__ = ["fit_formula", "make_priors", "fitting_progress"]


def make_priors(
    priors: Priors | None = None,
    *,
    pi: "float | str | None" = None,
    scale_sd: str | SDPrior | None = None,
    location_sd: str | SDPrior | None = None,
) -> Priors:
    """``priors`` (default: ivd's defaults) with ``pi`` / ``scale_sd`` / ``location_sd``
    replaced where given. SD priors may be text such as ``"half_t(3, 1)"``. Raises
    :class:`PriorError` naming the bad value."""
    if priors is not None and not isinstance(priors, Priors):
        raise PriorError(f"priors must be a simstudy.model.priors.Priors, got {type(priors).__name__}")
    base = priors or Priors()
    changes = {}
    if pi is not None:
        from ..model.priors import parse_pi

        changes["pi"] = parse_pi(pi)
    if scale_sd is not None:
        changes["scale_sd"] = SDPrior.parse(scale_sd)
    if location_sd is not None:
        changes["location_sd"] = SDPrior.parse(location_sd)
    try:
        return base.replace(**changes) if changes else base
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PriorError):
            raise
        raise PriorError(str(exc)) from exc


@contextlib.contextmanager
def fitting_progress(enabled: bool = True, console=None, label: str = "SS-MELSM") -> Iterator[object]:
    """A rich progress bar for :func:`simstudy.model.sampler.fit`: yields a ``progress(phase, done,
    total)`` callable to pass as ``fit(..., progress=...)`` (``None`` when disabled).

    Phases: "compiling" (a spinner; skipped quickly when the program is cached), then
    "sampling" with iterations done out of chains x (warm-up + draws), reported from inside
    the compiled sampler every few iterations; "extending" while a fit failing the convergence
    rule gets more draws.
    """
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
    from rich.progress import TimeElapsedColumn, TimeRemainingColumn

    console = console or Console(stderr=True)
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task(f"{label}: compiling the sampler (once per data shape)", total=None)

    def report(phase: str, done: int, total: int) -> None:
        if phase == "compiling":
            bar.update(task, description=f"{label}: compiling the sampler (once per data shape)", total=None)
        elif phase == "extending":
            bar.update(task, description=f"{label}: not converged yet, extending the chains", total=total,
                       completed=done)
        else:
            bar.update(task, description=f"{label}: sampling (iterations, all chains)", total=total, completed=done)

    with bar:
        yield report


def fit_formula(
    df: pd.DataFrame,
    location: str,
    scale: str,
    priors: Priors | None = None,
    *,
    pi: "float | str | None" = None,
    scale_sd: str | SDPrior | None = None,
    location_sd: str | SDPrior | None = None,
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed=0,
    dropna: bool = False,
    progress: bool = False,
    **fit_kwargs,
):
    """Fit the SS-MELSM to ``df`` with lme4-style formulas and return a
    :class:`~simstudy.model.result.FitResult`.

    ``location``: ``"y ~ fixed + (random | g)"``; ``scale``: ``"~ fixed + (random | g)"``
    (same grouping factor; see :mod:`simstudy.realdata.formula`). ``priors`` (default ivd's) with
    ``pi``, ``scale_sd``, ``location_sd`` overriding its fields (SD priors as text, e.g.
    ``"half_t(3, 1)"``). ``dropna=True`` drops rows with missing values in the columns the
    formulas use (the count is in ``fit.data.meta["dropped_rows"]``). ``progress=True`` shows
    a progress bar (compiling, then sampling iterations). Other keyword arguments go to
    :func:`simstudy.model.sampler.fit` (``target_accept``, ``max_tree_depth``, ...).

    Everything is validated before compiling: bad formulas raise :class:`FormulaError`, bad
    priors :class:`PriorError`, bad MCMC settings ``ValueError``.
    """
    from ..model.sampler import MCMCSettings, fit

    priors = make_priors(priors, pi=pi, scale_sd=scale_sd, location_sd=location_sd)
    MCMCSettings(chains, warmup, draws)  # validates before the (slow) formula evaluation and compile
    data = melsm_data_from_formulas(df, location, scale, dropna=dropna)
    t0 = time.perf_counter()
    with fitting_progress(progress) as report:
        result = fit(data, priors, chains=chains, warmup=warmup, draws=draws, seed=seed, progress=report, **fit_kwargs)
    result.extra.update(
        location_formula=location,
        scale_formula=scale,
        dropped_rows=int(data.meta.get("dropped_rows", 0)),
        wall_s=time.perf_counter() - t0,
    )
    return result


# re-exported for callers that catch validation errors from here
__all__ += ["FormulaError", "PriorError"]
