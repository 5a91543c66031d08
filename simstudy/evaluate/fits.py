"""Reading a results store for evaluation: factors, thresholds and which fits count.

Which fits count
----------------
A fit (one cell x replicate) is *usable* when its ``status`` is ``"ok"`` or
``"not_converged"`` (``converged_only=True``: only ``"ok"``). Failed fits (``"failed"``) and
fits not yet run (``""``) never enter a performance metric; they are counted
(``n_failed``, ``n_pending``). ``n_used`` is R, the number of usable replicates of a cell.

"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import xarray as xr


#: hyperparameters with posterior summaries and generating values in the store
PARAMS = ("tau_t", "eta0", "tau_u", "rho", "gamma0",
          "tau_u1", "rho_u01")  # longitudinal layout: NaN where a fit has no random time slope
#: fit statuses that count in performance metrics
USABLE_STATUS = ("ok", "not_converged")
#: R-hat above this fails the convergence rule (``simstudy.model.diagnostics.RHAT_MAX``)
RHAT_THRESHOLD = 1.01


# ============================================================================ store access
def _as_str(a) -> np.ndarray:
    """Any array of statuses (unicode, bytes, object, StringDType) as a unicode array."""
    a = np.asarray(a)
    if a.dtype.kind == "S":
        return np.char.decode(a, "utf-8")
    if a.dtype.kind == "O":
        flat = [v.decode() if isinstance(v, bytes) else ("" if v is None or v != v else str(v)) for v in a.ravel()]
        return np.array(flat, dtype=str).reshape(a.shape) if flat else np.zeros(a.shape, dtype=str)
    return a.astype(str)


def _cr(ds: xr.Dataset, name: str) -> np.ndarray:
    """A per-fit variable as a float (cell, replicate) array (NaN if absent)."""
    if name not in ds:
        return np.full((ds.sizes["cell"], ds.sizes["replicate"]), np.nan)
    return np.asarray(ds[name].transpose("cell", "replicate").values, dtype=float)


def _crg(ds: xr.Dataset, name: str) -> np.ndarray:
    """A per-group variable as a float (cell, replicate, group) array (NaN if absent)."""
    if name not in ds:
        return np.full((ds.sizes["cell"], ds.sizes["replicate"], ds.sizes.get("group", 0)), np.nan)
    return np.asarray(ds[name].transpose("cell", "replicate", "group").values, dtype=float)


def open_store(store) -> xr.Dataset:
    """A results store (path) as a lazy Dataset; a Dataset is returned as is."""
    if isinstance(store, xr.Dataset):
        return store
    path = Path(store)
    if not path.exists():
        raise FileNotFoundError(f"no results store at {path}")
    from ..study.integrity import check_readable
    from ..study.store import open_results

    ds = open_results(path)
    check_readable(path)  # a damaged chunk: one StoreError naming it, not a codec traceback later
    return ds


def design_info(ds: xr.Dataset) -> dict:
    """The design dict stored in ``ds.attrs["design"]`` (``{}`` when absent or unreadable)."""
    raw = ds.attrs.get("design")
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, (str, bytes)):
        try:
            out = json.loads(raw)
            return out if isinstance(out, dict) else {}
        except ValueError:
            return {}
    return {}


def cell_factors(ds: xr.Dataset) -> list[str]:
    """Coordinates along ``cell`` that identify cells: the design's factors in file order,
    then other identity keys (from extra cells), then any other cell coordinate."""
    names = [
        k
        for k, v in ds.coords.items()
        if v.dims == ("cell",) and k not in ("cell", "cell_id", "cell_label", "data_id")
    ]
    info = design_info(ds)
    order = list(info.get("factors", {})) + [c for c in info.get("coords", []) if c not in info.get("factors", {})]
    ranked = [k for k in order if k in names] + [k for k in names if k not in order]
    return ranked


def _levels(values: np.ndarray) -> list:
    """Distinct values in order of first appearance (sorted when all numeric)."""
    seen: list = []
    for v in values.tolist():
        if isinstance(v, float) and math.isnan(v):
            continue
        if v not in seen:
            seen.append(v)
    if seen and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in seen):
        seen = sorted(seen)
    return seen


def factor_levels(ds: xr.Dataset, name: str) -> list:
    """The levels of a cell coordinate: design order for factors, else sorted/first-seen."""
    info = design_info(ds)
    present = _levels(np.asarray(ds[name].values))
    declared = info.get("factors", {}).get(name)
    if declared and present and all(isinstance(v, str) for v in present):
        # a factor mixing numbers and text (pi = [0.5, "beta(1, 1)"]) is stored as text labels
        declared = [v if isinstance(v, str) else f"{v:g}" for v in declared]
    if declared:
        ordered = [v for v in declared if v in present]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            ordered = sorted(present)
        else:
            ordered += [v for v in present if v not in ordered]
        return ordered
    return present


def varying_factors(ds: xr.Dataset) -> list[str]:
    """Cell factors that take more than one value, in design order."""
    return [k for k in cell_factors(ds) if len(_levels(np.asarray(ds[k].values))) > 1]


def cell_pi(ds: xr.Dataset) -> xr.DataArray:
    """The model's prior inclusion probability per cell: the ``pi`` coordinate when it is a
    cell coordinate, else the design's fixed ``model.pi`` (default 0.5). A Beta hyperprior
    (text level ``"beta(a, b)"``; where a pi factor mixes numbers and Betas every level is
    text, e.g. ``"0.5"``) counts with its mean ``a / (a + b)``, so the BF rule uses the prior
    odds ``a / b``."""
    from ..model.priors import pi_mean

    if "pi" in ds.coords and ds["pi"].dims == ("cell",):
        vals = np.array([pi_mean(v) for v in _as_str(ds["pi"].values)] if ds["pi"].dtype.kind in "USO"
                        else np.asarray(ds["pi"].values, dtype=float), dtype=float)
    else:
        pi = design_info(ds).get("model", {}).get("pi", 0.5)
        vals = np.full(ds.sizes["cell"], pi_mean(0.5 if pi is None else pi))
    return xr.DataArray(vals, dims="cell", name="model_pi")


def cell_thresholds(ds: xr.Dataset, threshold: float = 0.75, rule: str = "pip", bf: float = 3.0) -> np.ndarray:
    """PIP threshold per cell: ``threshold`` (rule "pip") or the PIP at which BF10 = ``bf``
    for the cell's pi (rule "bf"; 3 pi / (1 + 2 pi) for BF 3)."""
    from ..model.priors import pip_threshold_for_bf

    if rule == "pip":
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        return np.full(ds.sizes["cell"], float(threshold))
    if rule == "bf":
        if not bf > 0:
            raise ValueError(f"bf must be positive, got {bf}")
        pi = cell_pi(ds).values
        return np.array([pip_threshold_for_bf(bf, p) for p in pi], dtype=float)
    raise ValueError(f"rule must be 'pip' or 'bf', got {rule!r}")


def fit_status(ds: xr.Dataset) -> np.ndarray:
    """Status strings per (cell, replicate); from ``done`` when there is no ``status``."""
    if "status" in ds:
        return _as_str(ds["status"].transpose("cell", "replicate").values)
    done = np.asarray(ds["done"].values, dtype=bool) if "done" in ds else np.ones((ds.sizes["cell"], ds.sizes["replicate"]), bool)
    return np.where(done, "ok", "")


def usable_fits(ds: xr.Dataset, converged_only: bool = False) -> np.ndarray:
    """Boolean (cell, replicate): fits that count in performance metrics."""
    ok = ("ok",) if converged_only else USABLE_STATUS
    return np.isin(fit_status(ds), ok)


def fit_counts(ds: xr.Dataset, converged_only: bool = False) -> dict[str, np.ndarray]:
    """Per cell: ``n_ok``, ``n_not_converged``, ``n_failed``, ``n_pending`` and ``n_used``."""
    st = fit_status(ds)
    return {
        "n_used": usable_fits(ds, converged_only).sum(-1),
        "n_ok": (st == "ok").sum(-1),
        "n_not_converged": (st == "not_converged").sum(-1),
        "n_failed": (st == "failed").sum(-1),
        "n_pending": (~np.isin(st, ("ok", "not_converged", "failed"))).sum(-1),
    }


def unfinished_note(ds: xr.Dataset, store=None) -> str | None:
    """A sentence for commands that read a store which is not finished (fits not yet run),
    or None when every fit of the store has been run."""
    st = fit_status(ds)
    pending = int((~np.isin(st, ("ok", "not_converged", "failed"))).sum())
    if not pending:
        return None
    total = int(st.size)
    where = f" (`simstudy status {store}` shows progress)" if store is not None else ""
    return (f"the store is unfinished: {pending} of {total} fits are not done yet{where}; "
            f"what follows uses the {total - pending} finished fits only")
