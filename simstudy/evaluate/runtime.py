"""Runtime and sampling quality per cell, and scaling exponents.

Runtime and sampling quality
----------------------------
``sample_s``, ``compile_s``, ``total_s`` (seconds per fit), ``ess_per_s_tau_t`` (bulk ESS of
tau_t per sampling second) and ``ess_min_per_s``, shares of fits with R-hat > 1.01
(``share_rhat_high``; the rule's worst R-hat ``rhat_worst`` where the store has it, else
``rhat_max``) or any divergence (``share_divergent``), the share failing the convergence
rule of :mod:`simstudy.model.diagnostics` even after extension (``share_not_converged``)
and the extensions per fit (``extensions_mean``); ``n_groups_eff`` and
``group_size_eff`` (J and mean n actually in the data) for scaling plots, and
:func:`runtime_scaling` for log-log exponents.
"""

from __future__ import annotations


import numpy as np
import xarray as xr

from .fits import RHAT_THRESHOLD, _as_str, _cr, _crg, usable_fits
from .mcse import _mean_mcse, _nanmean_last


# ============================================================================ runtime
def _fit_size(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """J (groups with a truth) and mean group size per (cell, replicate)."""
    y = _crg(ds, "delta_true")
    J = np.isfinite(y).sum(-1).astype(float)
    nobs = _crg(ds, "n_obs")
    n = _nanmean_last(nobs)
    return np.where(J > 0, J, np.nan), n


def runtime(ds: xr.Dataset, converged_only: bool = False) -> dict[str, np.ndarray]:
    """Per-cell runtime and sampling quality over usable fits (see module doc)."""
    use = usable_fits(ds, converged_only)

    def u(x):
        return np.where(use, x, np.nan)

    sample, compile_ = u(_cr(ds, "sample_s")), u(_cr(ds, "compile_s"))
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        per_fit = {
            "sample_s": sample,
            "compile_s": compile_,
            "total_s": sample + compile_,
            "ess_per_s_tau_t": np.where(sample > 0, u(_cr(ds, "ess_bulk_tau_t")) / sample, np.nan),
            "ess_min_per_s": np.where(sample > 0, u(_cr(ds, "ess_bulk_min")) / sample, np.nan),
            "divergences_mean": u(_cr(ds, "divergences")),
            "extensions_mean": u(_cr(ds, "extensions")),
        }
    for k, v in per_fit.items():
        out[k], out[f"{k}_mcse"], _ = _mean_mcse(v)
    worst = _cr(ds, "rhat_worst")
    rhat = u(np.where(np.isnan(worst), _cr(ds, "rhat_max"), worst))
    div = u(_cr(ds, "divergences"))
    status = _as_str(ds["status"].transpose("cell", "replicate").values)
    not_conv = u(np.where(use, (status == "not_converged").astype(float), np.nan))
    for k, v, x in (("share_rhat_high", rhat, rhat > RHAT_THRESHOLD), ("share_divergent", div, div > 0),
                    ("share_not_converged", not_conv, not_conv > 0)):
        out[k], out[f"{k}_mcse"], _ = _mean_mcse(np.where(np.isfinite(v), x.astype(float), np.nan), proportion=True)
    J, n = _fit_size(ds)
    out["n_groups_eff"] = _mean_mcse(u(J))[0]
    out["group_size_eff"] = _mean_mcse(u(n))[0]
    return out


def runtime_scaling(ds: xr.Dataset, what: str = "sample_s", converged_only: bool = False) -> dict[str, float]:
    """Log-log least squares of per-fit ``what`` (seconds) on J and mean n over usable fits:
    ``{"exponent_J", "exponent_J_se", "exponent_n", "exponent_n_se", "n_fits"}``. An
    exponent is NaN when its size does not vary across fits."""
    use = usable_fits(ds, converged_only)
    secs = _cr(ds, what)
    J, n = _fit_size(ds)
    ok = use & (secs > 0) & (J > 0)
    out = {"exponent_J": np.nan, "exponent_J_se": np.nan, "exponent_n": np.nan, "exponent_n_se": np.nan, "n_fits": int(ok.sum())}
    cols, names = [np.ones(ok.sum())], []
    for name, v in (("J", J), ("n", n)):
        x = np.log(v[ok]) if np.all(np.isfinite(v[ok])) and np.all(v[ok] > 0) else None
        if x is not None and x.size and np.ptp(x) > 1e-9:
            cols.append(x)
            names.append(name)
    if not names:
        return out
    X = np.column_stack(cols)
    yv = np.log(secs[ok])
    if X.shape[0] <= X.shape[1]:
        return out
    beta, *_ = np.linalg.lstsq(X, yv, rcond=None)
    resid = yv - X @ beta
    s2 = resid @ resid / (X.shape[0] - X.shape[1])
    try:
        cov = s2 * np.linalg.inv(X.T @ X)
    except np.linalg.LinAlgError:
        return out
    for i, name in enumerate(names, start=1):
        out[f"exponent_{name}"] = float(beta[i])
        out[f"exponent_{name}_se"] = float(np.sqrt(cov[i, i]))
    return out


