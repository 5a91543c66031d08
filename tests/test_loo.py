"""Vectorised PSIS-LOO (simstudy.model.loo) against ArviZ's ``az.loo`` on the same
log-likelihood: every pointwise number, the totals, the tail and r_eff rules."""

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

from simstudy.model.loo import ess_mean, gpd_fit, psis_loo, psis_loo_arrays, relative_eff, tail_length

TOL = dict(rtol=1e-10, atol=1e-10)


def _ar1(rng, shape, phi):
    """AR(1) draws along axis 1 of (chain, draw, ...)."""
    x = np.empty(shape)
    x[:, 0] = rng.normal(size=(shape[0], *shape[2:]))
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=(shape[0], *shape[2:]))
    return x


def _tree(rng, chains, draws, n_obs, *, phi=0.5):
    """A posterior with autocorrelated, constant and bounded variables, and a log-likelihood
    mixing well-behaved observations (k small) with heavy-tailed ones (k large)."""
    post = {
        "beta": _ar1(rng, (chains, draws, 2), phi),
        "u": _ar1(rng, (chains, draws, 7), 0.9),
        "corr": np.ones((chains, draws, 2)),  # constant: ESS = sample size
        "p": rng.uniform(size=(chains, draws, 3)),
    }
    mu = post["beta"][..., :1] * 0.1
    y = rng.normal(size=n_obs)
    y[: n_obs // 5] *= 6  # outliers: large Pareto k
    ll = -0.5 * (y - mu) ** 2 / 0.8 - 0.5 * np.log(2 * np.pi * 0.8)
    ll[..., 1::7] += rng.standard_t(2, size=ll[..., 1::7].shape)
    return az.from_dict({"posterior": post, "log_likelihood": {"y": ll}})


def _reference(tree, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.loo(tree, pointwise=True, **kwargs)


def _assert_same(ours, ref):
    np.testing.assert_allclose(ours.elpd_i.values, ref.elpd_i.values, **TOL)
    np.testing.assert_allclose(ours.pareto_k.values, ref.pareto_k.values, **TOL)
    np.testing.assert_allclose([ours.elpd, ours.p, ours.se], [ref.elpd, ref.p, ref.se], **TOL)
    assert (ours.n_samples, ours.n_data_points, ours.good_k, ours.warning) == \
        (ref.n_samples, ref.n_data_points, ref.good_k, ref.warning)
    assert ours.elpd_i.dims == ref.elpd_i.dims and ours.pareto_k.dims == ref.pareto_k.dims
    assert ours.kind == ref.kind == "loo" and ours.scale == ref.scale


@pytest.mark.parametrize("chains, draws, n_obs", [(4, 250, 60), (2, 100, 25), (3, 151, 30)])
def test_psis_loo_matches_arviz(chains, draws, n_obs):
    """Long tails (S r_eff > 225), short ones (S / 5), odd draws (split chains drop one)."""
    tree = _tree(np.random.default_rng(chains * draws), chains, draws, n_obs)
    ref = _reference(tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = psis_loo(tree)
    _assert_same(ours, ref)
    k = ours.pareto_k.values
    assert np.nanmin(k) < 0.5 < np.nanmax(k)  # both regimes are exercised


def test_psis_loo_given_reff_and_chunking():
    """Small chunks (one observation at a time) and a given r_eff change nothing."""
    tree = _tree(np.random.default_rng(7), 4, 200, 40)
    ref = _reference(tree, reff=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = psis_loo(tree, reff=0.3, chunk_bytes=1)
    _assert_same(ours, ref)


def test_log_weights_match_arviz():
    tree = _tree(np.random.default_rng(3), 2, 200, 15)
    ref = _reference(tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = psis_loo(tree, keep_weights=True)
    assert ours.log_weights.dims == ref.log_weights.dims
    np.testing.assert_allclose(ours.log_weights.values, ref.log_weights.values, **TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert psis_loo(tree).log_weights is None


def test_unsmoothed_tail_when_first_quartile_is_the_minimum():
    """Tied tail draws: ArviZ's GPD fit returns k = NaN and the tail is left as is."""
    rng = np.random.default_rng(5)
    ll = rng.normal(size=(1, 200, 3))
    order = np.argsort(ll[0, :, 0])
    ll[0, order[30:46], 0] = ll[0, order[30], 0]  # ranks 30..45 tied: cutoff (rank 40) and the tail's lowest 10
    tree = az.from_dict({"posterior": {"a": rng.normal(size=(1, 200))}, "log_likelihood": {"y": ll}})
    ref = _reference(tree)
    ours = psis_loo(tree)
    assert np.isnan(ref.pareto_k.values[0]) and np.isnan(ours.pareto_k.values[0])
    _assert_same(ours, ref)


def test_compare_accepts_our_results():
    """``az.compare`` gives the same table from our ELPD objects as from ``az.loo``'s."""
    rng = np.random.default_rng(11)
    trees = {"a": _tree(rng, 2, 150, 30), "b": _tree(rng, 2, 150, 30)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = az.compare({k: psis_loo(t) for k, t in trees.items()}, round_to="none")
        ref = az.compare({k: _reference(t) for k, t in trees.items()}, round_to="none")
    assert list(ours.index) == list(ref.index)
    num = ["elpd", "p", "elpd_diff", "weight", "se", "dse"]
    np.testing.assert_allclose(ours[num].to_numpy(float), ref[num].to_numpy(float), **TOL)


def test_ess_mean_matches_arviz():
    rng = np.random.default_rng(2)
    for chains, draws in ((4, 300), (2, 51), (1, 80)):
        x = np.concatenate([_ar1(rng, (chains, draws, 3), 0.95), _ar1(rng, (chains, draws, 3), -0.4),
                            np.full((chains, draws, 1), 2.0), np.cumsum(rng.normal(size=(chains, draws, 1)), 1)], -1)
        ref = az.ess(xr.Dataset({"x": (("chain", "draw", "k"), x)}), method="mean")["x"].values
        np.testing.assert_allclose(ess_mean(np.moveaxis(x, -1, 0)), ref, rtol=1e-10)
    tree = _tree(rng, 4, 120, 5)
    from arviz_stats.loo.loo_helper import _get_r_eff

    assert relative_eff(tree["posterior"].to_dataset()) == pytest.approx(_get_r_eff(tree, 480), rel=1e-12)
    assert relative_eff(tree["posterior"].to_dataset(), threads=1) == relative_eff(tree["posterior"].to_dataset(), threads=3)


def test_tail_length_and_gpd_rules():
    assert tail_length(4000, 1.0) == int(np.floor(3 * np.sqrt(4000)))
    assert tail_length(4000, 0.05) == 800  # S r_eff <= 225: S / 5
    assert tail_length(200, 1.0) == 40
    # exponential exceedances: k near 0 (shrunk toward 0.5 by the prior), sigma near the scale
    x = np.sort(np.random.default_rng(0).exponential(2.0, size=(1, 4000)), axis=1)
    k, sigma = gpd_fit(x)
    assert abs(k[0]) < 0.05 and sigma[0] == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ValueError, match="at least 5"):
        psis_loo_arrays(np.zeros((20, 3)))


def test_threads_do_not_change_a_number():
    """Chunks are independent: any thread count gives the same arrays, bit for bit."""
    rng = np.random.default_rng(5)
    ll = rng.normal(size=(400, 37)) * rng.uniform(0.1, 3.0, size=37) - 2.0
    one = psis_loo_arrays(ll, 0.7, keep_weights=True, chunk_bytes=8 * 400 * 4, threads=1)
    for threads in (2, 5):
        many = psis_loo_arrays(ll, 0.7, keep_weights=True, chunk_bytes=8 * 400 * 4, threads=threads)
        for a, b in zip(one, many):
            np.testing.assert_array_equal(a, b)


def test_waic_chunked_equals_the_whole_array_formula():
    """ArviZ 1.x has no WAIC: the reference is the formula on the whole array,
    elpd_i = log mean_s exp(l_is) - var_s(l_is); chunks and threads change no number."""
    from simstudy.model.loo import waic_arrays

    rng = np.random.default_rng(6)
    ll = rng.normal(size=(300, 53)) * rng.uniform(0.1, 2.0, size=53) - 3.0
    top = ll.max(0)
    elpd_i = np.log(np.mean(np.exp(ll - top), axis=0)) + top - np.var(ll, axis=0, ddof=1)
    ref = {"elpd_waic": elpd_i.sum(), "p_waic": np.var(ll, axis=0, ddof=1).sum(),
           "se": np.sqrt(53 * np.var(elpd_i)), "waic": -2 * elpd_i.sum()}
    whole = waic_arrays(ll, chunk_bytes=10**9, threads=1)
    for key, value in ref.items():
        assert whole[key] == pytest.approx(value, rel=1e-13), key
    for threads in (1, 3):
        assert waic_arrays(ll, chunk_bytes=8 * 300 * 5, threads=threads) == whole
