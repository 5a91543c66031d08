"""One-call fitting of the SS-MELSM to a DataFrame with mixed-model formulas.

    >>> from simstudy import fit_formula, load_saeb
    >>> fit = fit_formula(load_saeb(), location="math_proficiency ~ 1 + (1 | school_id)",
    ...                   scale="~ 1 + (1 | school_id)")
    >>> fit.groups_table().query("flagged")

:func:`fit_formula` validates the formulas and priors (raising :class:`FormulaError` /
:class:`PriorError` before anything is compiled), fits with NUTS via :func:`simstudy.fit.fit`
and returns the :class:`~simstudy.result.FitResult`. With ``progress=True`` a rich spinner
shows the phase ("compiling ..." / "sampling ...") and the elapsed time: the compiled sampler
runs as one call, so there is no per-draw progress bar.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import pandas as pd

from .formula import FormulaError, melsm_data_from_formulas
from .priors import PriorError, Priors, SDPrior

__all__ = ["fit_formula", "make_priors", "fitting_progress"]


def make_priors(
    priors: Priors | None = None,
    *,
    pi: float | None = None,
    scale_sd: str | SDPrior | None = None,
    location_sd: str | SDPrior | None = None,
) -> Priors:
    """``priors`` (default: ivd's defaults) with ``pi`` / ``scale_sd`` / ``location_sd``
    replaced where given. SD priors may be text such as ``"half_t(3, 1)"``. Raises
    :class:`PriorError` naming the bad value."""
    if priors is not None and not isinstance(priors, Priors):
        raise PriorError(f"priors must be a simstudy.priors.Priors, got {type(priors).__name__}")
    base = priors or Priors()
    changes = {}
    if pi is not None:
        changes["pi"] = pi
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
def fitting_progress(enabled: bool = True, console=None, label: str = "SS-MELSM") -> Iterator[None]:
    """A rich status line with a spinner, the current phase and the elapsed time while
    :func:`simstudy.fit.fit` runs.

    The sampler is compiled and then run as a single XLA call, so the phases are
    "compiling" (skipped when the program is cached) and "sampling"; the switch between them
    is detected by wrapping :func:`simstudy.fit.compiled_sampler` for the duration of the
    block (restored afterwards). Disabled, it does nothing.
    """
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from . import fit as fit_module

    console = console or Console(stderr=True)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task(f"{label}: compiling the sampler (once per data shape) ...", total=None)
    original = getattr(fit_module, "compiled_sampler", None)

    def wrapped(*args, **kwargs):
        out = original(*args, **kwargs)
        progress.update(task, description=f"{label}: sampling (NUTS, all chains in one call) ...")
        return out

    if original is not None:
        fit_module.compiled_sampler = wrapped
    try:
        with progress:
            yield
    finally:
        if original is not None:
            fit_module.compiled_sampler = original


def fit_formula(
    df: pd.DataFrame,
    location: str,
    scale: str,
    priors: Priors | None = None,
    *,
    pi: float | None = None,
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
    :class:`~simstudy.result.FitResult`.

    ``location``: ``"y ~ fixed + (random | g)"``; ``scale``: ``"~ fixed + (random | g)"``
    (same grouping factor; see :mod:`simstudy.formula`). ``priors`` (default ivd's) with
    ``pi``, ``scale_sd``, ``location_sd`` overriding its fields (SD priors as text, e.g.
    ``"half_t(3, 1)"``). ``dropna=True`` drops rows with missing values in the columns the
    formulas use (the count is in ``fit.data.meta["dropped_rows"]``). ``progress=True`` shows
    a spinner with the phase and elapsed time. Other keyword arguments go to
    :func:`simstudy.fit.fit` (``target_accept``, ``max_tree_depth``, ...).

    Everything is validated before compiling: bad formulas raise :class:`FormulaError`, bad
    priors :class:`PriorError`, bad MCMC settings ``ValueError``.
    """
    from .fit import MCMCSettings, fit

    priors = make_priors(priors, pi=pi, scale_sd=scale_sd, location_sd=location_sd)
    MCMCSettings(chains, warmup, draws)  # validates before the (slow) formula evaluation and compile
    data = melsm_data_from_formulas(df, location, scale, dropna=dropna)
    t0 = time.perf_counter()
    with fitting_progress(progress):
        result = fit(data, priors, chains=chains, warmup=warmup, draws=draws, seed=seed, **fit_kwargs)
    result.extra.update(
        location_formula=location,
        scale_formula=scale,
        dropped_rows=int(data.meta.get("dropped_rows", 0)),
        wall_s=time.perf_counter() - t0,
    )
    return result


# re-exported for callers that catch validation errors from here
__all__ += ["FormulaError", "PriorError"]
