"""Estimation of hyperparameters: bias, empirical SE, RMSE and coverage with MCSEs.

Estimation (Morris, White & Crowther 2019, Stat Med 38:2074)
------------------------------------------------------------
For ``tau_t, eta0, tau_u, rho, gamma0``: ``bias`` = mean(est - true), MCSE EmpSE/sqrt(R);
``empse`` = SD(est - true) (= SD(est) when the truth is fixed in a cell), MCSE
EmpSE/sqrt(2(R-1)); ``mse`` = mean((est - true)^2), MCSE sqrt(sum((e^2 - MSE)^2)/(R(R-1)));
``rmse`` = sqrt(MSE), MCSE(MSE)/(2 RMSE) (delta method); ``coverage`` of the 90% interval
[q05, q95], MCSE sqrt(C(1-C)/R).

``tau_t`` is the slab SD: a data set with no truly inconsistent group has no draw from the
slab, so its tau_t posterior is the prior's and says nothing about the method; such replicates
(``n_inconsistent_true == 0``, e.g. every replicate of a null cell) are left out of tau_t's
bias, RMSE and coverage (``tau_t_n`` counts the replicates used; NaN where none is left).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import xarray as xr

from .fits import PARAMS, _cr, usable_fits
from .mcse import _nanstd, mcse_proportion

#: parameter -> per-fit count that must be positive for the parameter to be estimable
ESTIMABLE_WHEN: dict[str, str] = {"tau_t": "n_inconsistent_true"}


# ============================================================================ estimation
def estimation(ds: xr.Dataset, params: Iterable[str] = PARAMS, converged_only: bool = False) -> dict[str, np.ndarray]:
    """Bias, EmpSE, MSE, RMSE and 90%-interval coverage per cell with Morris et al. MCSEs,
    for each parameter with ``<p>_mean`` and ``<p>_true`` in the store. Keys
    ``<p>_bias``, ``<p>_bias_mcse``, ``<p>_empse``, ``<p>_empse_mcse``, ``<p>_mse``,
    ``<p>_mse_mcse``, ``<p>_rmse``, ``<p>_rmse_mcse``, ``<p>_coverage``,
    ``<p>_coverage_mcse``, ``<p>_n`` (replicates used)."""
    use = usable_fits(ds, converged_only)
    out: dict[str, np.ndarray] = {}
    for p in params:
        if f"{p}_mean" not in ds or f"{p}_true" not in ds:
            continue
        est, true = _cr(ds, f"{p}_mean"), _cr(ds, f"{p}_true")
        lo, hi = _cr(ds, f"{p}_q05"), _cr(ds, f"{p}_q95")
        ok = use & np.isfinite(est) & np.isfinite(true)
        if p in ESTIMABLE_WHEN and ESTIMABLE_WHEN[p] in ds:
            ok &= np.nan_to_num(_cr(ds, ESTIMABLE_WHEN[p])) > 0
        e = np.where(ok, est - true, np.nan)
        R = ok.sum(-1).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            bias = np.where(R > 0, np.nansum(e, -1) / np.maximum(R, 1), np.nan)
            empse = _nanstd(e)
            mse = np.where(R > 0, np.nansum(e**2, -1) / np.maximum(R, 1), np.nan)
            mse_se = np.sqrt(np.nansum((e**2 - mse[:, None]) ** 2, -1) / np.maximum(R * (R - 1), 1))
            mse_se = np.where(R >= 2, mse_se, np.nan)
            rmse = np.sqrt(mse)
            rmse_se = np.where(rmse > 0, mse_se / (2 * rmse), np.where(R >= 2, 0.0, np.nan))
            okc = ok & np.isfinite(lo) & np.isfinite(hi)
            Rc = okc.sum(-1)
            cov = np.where(Rc > 0, np.sum(okc & (lo <= true) & (true <= hi), -1) / np.maximum(Rc, 1), np.nan)
        out[f"{p}_bias"] = bias
        out[f"{p}_bias_mcse"] = np.where(R >= 2, empse / np.sqrt(np.maximum(R, 1)), np.nan)
        out[f"{p}_empse"] = empse
        out[f"{p}_empse_mcse"] = np.where(R >= 2, empse / np.sqrt(2 * np.maximum(R - 1, 1)), np.nan)
        out[f"{p}_mse"] = mse
        out[f"{p}_mse_mcse"] = mse_se
        out[f"{p}_rmse"] = rmse
        out[f"{p}_rmse_mcse"] = rmse_se
        out[f"{p}_coverage"] = cov
        out[f"{p}_coverage_mcse"] = mcse_proportion(cov, Rc)
        out[f"{p}_n"] = R.astype(np.int64)
    return out


