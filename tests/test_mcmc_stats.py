"""R-hat and ESS over many quantities at once (simstudy.model.mcmc_stats) against ArviZ's own
per-quantity functions: the same numbers to 1e-12, NaN where ArviZ gives NaN."""

import warnings

import arviz_stats
import numpy as np
import pytest
import xarray as xr
from arviz_stats.base import array_stats

from simstudy.model import mcmc_stats
from simstudy.model.result import batch_diagnostics


def _ar(rng, shape, phi):
    x = rng.normal(size=shape)
    for t in range(1, shape[-1]):
        x[..., t] = phi * x[..., t - 1] + np.sqrt(1 - phi**2) * x[..., t]
    return x


def _cases():
    rng = np.random.default_rng(0)
    stuck = np.concatenate([rng.normal(size=(5, 3, 300)), rng.normal(size=(5, 1, 300)) + 3], axis=1)
    special = rng.normal(size=(4, 4, 100))
    special[0] = 1.0  # constant: ESS = size, R-hat NaN
    special[1, 2, 5] = np.nan  # a NaN draw: NaN
    return {
        "iid": rng.normal(size=(20, 4, 1000)),
        "ar 0.9": _ar(rng, (20, 4, 1000), 0.9),
        "ar 0.99 (long autocorrelation)": _ar(rng, (8, 4, 1000), 0.99),
        "antithetic": _ar(rng, (8, 4, 1000), -0.7),
        "odd draws": _ar(rng, (8, 3, 501), 0.5),
        "odd halves": _ar(rng, (8, 4, 202), 0.6),
        "short": rng.normal(size=(6, 2, 11)),
        "ties": rng.integers(0, 3, size=(8, 4, 200)).astype(float),
        "probabilities": rng.uniform(size=(20, 4, 1000)),
        "stuck chain": stuck,
        "constant and NaN": special,
        "one chain": rng.normal(size=(5, 1, 400)),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_rhat_and_ess_equal_arviz(name):
    x = _cases()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = {"rhat": array_stats.rhat(x), "ess_bulk": array_stats.ess(x, method="bulk"),
                "ess_tail": array_stats.ess(x, method="tail", prob=0.89)}
    got = mcmc_stats.diagnostics(x)
    for key in want:
        w, g = np.asarray(want[key], float), got[key]
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=key)
        np.testing.assert_allclose(g, w, rtol=1e-12, err_msg=key)
    np.testing.assert_array_equal(mcmc_stats.rhat(x), got["rhat"])
    np.testing.assert_array_equal(mcmc_stats.ess_bulk(x), got["ess_bulk"])
    np.testing.assert_array_equal(mcmc_stats.ess_tail(x), got["ess_tail"])


def test_batch_diagnostics_equal_arviz_on_the_dataset():
    """The wiring: (dataset, chain, draw, ...) records against arviz_stats on an xarray Dataset."""
    rng = np.random.default_rng(1)
    records = {"beta": _ar(rng, (2, 4, 300, 3), 0.3).transpose(0, 1, 2, 3),
               "tau": np.abs(rng.normal(size=(2, 4, 300, 2))),
               "incl_prob": rng.uniform(size=(2, 4, 300, 7)),
               "L_corr": np.broadcast_to(np.eye(2), (2, 4, 300, 2, 2)).copy()}
    got = batch_diagnostics(records, pips=True)
    corr = np.einsum("...ik,...jk->...ij", records["L_corr"], records["L_corr"])
    ds = xr.Dataset({k: (("dataset", "chain", "draw") + tuple(f"{k}_dim{d}" for d in range(v.ndim - 3)), v)
                     for k, v in {"beta": records["beta"], "tau": records["tau"], "incl_prob": records["incl_prob"],
                                  "corr": corr}.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = {"rhat": arviz_stats.rhat(ds, sample_dims=["chain", "draw"]),
                "ess_bulk": arviz_stats.ess(ds, sample_dims=["chain", "draw"], method="bulk"),
                "ess_tail": arviz_stats.ess(ds, sample_dims=["chain", "draw"], method="tail")}
    for stat, w in want.items():
        for name in w.data_vars:
            g = got[name].sel(diagnostic=stat)
            assert g.dims == w[name].dims, (stat, name)
            np.testing.assert_allclose(g.values, w[name].values, rtol=1e-12, err_msg=f"{stat} {name}")
    assert "incl_prob" not in batch_diagnostics(records, pips=False)
