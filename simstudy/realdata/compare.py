"""PSIS-LOO model comparison of SS-MELSM fits (ArviZ 1.x ``az.compare`` on ``az.loo``'s
numbers, computed by :func:`simstudy.model.loo.psis_loo`).

Each fit needs the pointwise log-likelihood (``log_likelihood`` group of its DataTree, ivd's
definition: per observation, with each group's spike-and-slab indicators drawn from their
full conditional in every draw). :class:`~simstudy.model.result.FitResult` objects get it on
demand; DataTrees read from ``posterior.nc`` files written by ``simstudy fit --out`` already
carry it.

Sign convention (as R's ``loo_compare`` and ivd's papers): ``elpd_diff`` is the model's ELPD
minus the reference's, so a worse model has a negative value; ``dse`` is the standard error
of that difference from the pointwise differences, ``sqrt(N var(elpd_i,a - elpd_i,b))``.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["loo_of", "compare_fits", "elpd_difference", "PARETO_K_BAD"]

#: Pareto-k above this marks an unreliable PSIS estimate for that observation (the classic
#: rule; ArviZ 1.x also reports its sample-size-dependent threshold, column ``good_k``)
PARETO_K_BAD = 0.7


def _tree_of(fit) -> xr.DataTree:
    if isinstance(fit, xr.DataTree):
        return fit
    tree = getattr(fit, "tree", None)
    if isinstance(tree, xr.DataTree):
        if hasattr(fit, "add_log_likelihood"):
            fit.add_log_likelihood()
        return fit.tree
    raise TypeError(f"expected a FitResult, a DataTree or an ELPD result, got {type(fit).__name__}")


def loo_of(fit, var_name: str | None = None):
    """PSIS-LOO (pointwise; the numbers of ``az.loo``, vectorised over observations by
    :func:`simstudy.model.loo.psis_loo`) of a FitResult, a DataTree with a
    ``log_likelihood`` group, or an ELPD result (returned as is)."""
    from ..model.loo import psis_loo

    if hasattr(fit, "elpd_i") and hasattr(fit, "pareto_k"):
        return fit
    tree = _tree_of(fit)
    if "log_likelihood" not in tree.children:
        raise ValueError(
            "this fit has no log_likelihood group; call FitResult.add_log_likelihood() before saving it "
            "(`simstudy fit --out` does)"
        )
    if var_name is None:
        names = list(tree["log_likelihood"].data_vars)
        if len(names) != 1:
            raise ValueError(f"log_likelihood has variables {names}; pass var_name")
        var_name = names[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # high Pareto k: reported in the table instead
        return psis_loo(tree, var_name=var_name, pointwise=True)


def _pointwise(loo) -> np.ndarray:
    return np.asarray(loo.elpd_i).ravel()


def elpd_difference(a, b) -> tuple[float, float]:
    """``(elpd_a - elpd_b, SE)`` with the SE from the pointwise differences (as
    ``loo_compare``). ``a`` and ``b``: fits, DataTrees or ELPD results on the same data."""
    la, lb = loo_of(a), loo_of(b)
    ea, eb = _pointwise(la), _pointwise(lb)
    if ea.shape != eb.shape:
        raise ValueError(f"the fits have {ea.size} and {eb.size} observations; LOO compares fits of the same data")
    diff = ea - eb
    return float(diff.sum()), float(np.sqrt(diff.size * np.var(diff)))


def compare_fits(fits: Mapping[str, object], *, reference: str | None = None, method: str = "stacking") -> pd.DataFrame:
    """Compare fits of the same data by PSIS-LOO.

    ``fits``: ``{"M1": fit, "M2": fit, ...}`` (FitResults, DataTrees with a
    ``log_likelihood`` group, or ELPD results). Returns one row per model, best first:
    ``rank``, ``elpd_loo``, ``se``, ``elpd_diff`` (vs ``reference``, default the best model;
    negative = worse), ``dse`` (its SE), ``p_loo``, ``weight`` (``method``),
    ``pareto_k_bad`` (observations with k > 0.7), ``pareto_k_max``, ``good_k`` (ArviZ's
    sample-size-dependent k threshold), ``n_k_above_good`` and ``warning`` (ArviZ's flag).
    """
    import arviz as az

    if not isinstance(fits, Mapping) or len(fits) < 2:
        raise ValueError("compare_fits needs a mapping of at least two named fits")
    loos = {str(name): loo_of(fit) for name, fit in fits.items()}
    sizes = {name: _pointwise(loo).size for name, loo in loos.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"the fits have different numbers of observations {sizes}; LOO compares fits of the same data")
    if reference is not None and reference not in loos:
        raise ValueError(f"reference {reference!r} is not one of {list(loos)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = az.compare(loos, method=method, reference=reference, round_to="none")
    rows = []
    for name in table.index:
        loo = loos[name]
        k = np.asarray(loo.pareto_k).ravel()
        good_k = float(getattr(loo, "good_k", PARETO_K_BAD))
        rows.append(
            {
                "model": name,
                "rank": int(table.loc[name, "rank"]),
                "elpd_loo": float(loo.elpd),
                "se": float(loo.se),
                "elpd_diff": float(table.loc[name, "elpd_diff"]),
                "dse": float(table.loc[name, "dse"]),
                "p_loo": float(loo.p),
                "weight": float(table.loc[name, "weight"]),
                "pareto_k_bad": int(np.sum(k > PARETO_K_BAD)),
                "pareto_k_max": float(np.nanmax(k)),
                "good_k": good_k,
                "n_k_above_good": int(np.sum(k > good_k)),
                "warning": bool(getattr(loo, "warning", False)),
            }
        )
    # ArviZ 1.x: elpd_diff = elpd_model - elpd_reference (<= 0 against the best model)
    return pd.DataFrame(rows).set_index("model")
