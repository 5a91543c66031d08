"""Fitting: results layout, compile-once behaviour, batching, K = 2, errors, agreement with a
discrete-indicator sampler, and recovery of known truth."""

import numpy as np
import pytest
import jax

import simstudy.model.sampler as fitmod
from simstudy.model.data import DataError, MelsmData
from simstudy.model.sampler import fit, fit_batch
from simstudy.study.generate import GeneratorSpec, generate
from simstudy.model.ssmelsm import pointwise_loglik
from simstudy.model.priors import Priors, bayes_factor

SMALL = dict(chains=2, warmup=300, draws=300)
SPEC = GeneratorSpec(n_groups=12, group_size=30, share_inconsistent=0.25, effect="fixed", magnitude=1.2,
                     tau_u=0.3, eta0=-0.25)


@pytest.fixture(scope="module")
def small():
    data, truth = generate(SPEC, 11)
    return data, truth, fit(data, **SMALL, seed=1)


def test_result_layout(small):
    data, truth, res = small
    J = data.n_groups
    assert res.pip.dims == ("group", "scale_random") and res.pip.shape == (J, 1)
    assert np.all((res.pip >= 0) & (res.pip <= 1))
    np.testing.assert_allclose(res.bf10, bayes_factor(res.pip.values, 0.5))
    post = res.posterior
    assert post["incl_prob"].dims == ("chain", "draw", "group", "scale_random")
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 300
    assert list(post["tau"]["random_effect"].values) == ["location:Intercept", "scale:Intercept"]
    assert set(res.sample_stats) >= {"diverging", "tree_depth", "n_steps", "accept_prob", "step_size"}
    assert res.sample_stats["tree_depth"].min() >= 1
    for stat in ("rhat", "ess_bulk", "ess_tail"):
        assert set(res.diagnostics[stat]) >= {"beta", "eta", "tau", "corr", "incl_prob"}
    assert res.compile_s >= 0 and res.sample_s > 0
    table = res.groups_table(0.75)
    assert list(table.columns) == ["group", "n", "observed_sd", "pip", "bf10", "within_sd", "mean", "flagged"]
    assert table["flagged"].sum() == int((res.pip.values[:, 0] >= 0.75).sum())
    np.testing.assert_allclose(table["n"], data.group_sizes)
    summary = res.summary_table()
    assert {"mean", "sd", "r_hat", "ess_bulk", "ess_tail"} <= set(summary.columns)
    assert any("corr[" in str(i) for i in summary.index)


def test_large_effects_flagged_and_sd_recovered(small):
    data, truth, res = small
    pip = res.pip.values[:, 0]
    # |t| = 1.2 with n = 30: the log-SD is estimated with SE ~ 1/sqrt(2 (n-1)) = 0.13, 9 SE away
    assert np.all(pip[truth.delta] > 0.75)
    # within-group SD estimates track the true SDs (log scale, shrinkage allowed)
    est = res.groups_table()["within_sd"].to_numpy()
    assert np.corrcoef(np.log(est), np.log(truth.sigma))[0, 1] > 0.9


def test_compile_once_across_datasets_and_prior_values(small):
    data, truth, res = small
    traces = fitmod.TRACE_COUNT
    other, _ = generate(SPEC, 12)
    r2 = fit(other, **SMALL, seed=2)
    r3 = fit(data, Priors(pi=0.2), **SMALL, seed=1)
    r4 = fit(data, Priors(scale_sd="half_normal(0.5)", location_sd="exponential(2)", lkj_eta=2.0), **SMALL, seed=1)
    assert fitmod.TRACE_COUNT == traces
    assert r2.compile_s == r3.compile_s == r4.compile_s == 0.0
    # prior values do reach the program: a smaller pi lowers every PIP's odds
    assert not np.allclose(r3.pip, res.pip)
    assert float(r3.pip.mean()) < float(res.pip.mean())


def test_same_seed_same_draws_and_batch_composition_irrelevant(small):
    data, truth, res = small
    again = fit(data, **SMALL, seed=1, pip_diagnostics=False)
    np.testing.assert_array_equal(again.posterior["tau"].values, res.posterior["tau"].values)
    assert "incl_prob" not in again.diagnostics["rhat"] and "incl_prob" in res.diagnostics["rhat"]
    assert again.rhat_max == res.rhat_max and again.ess_bulk_min == res.ess_bulk_min
    other, _ = generate(SPEC, 12)
    batch = fit_batch([other, data], **SMALL, seeds=[2, 1])
    np.testing.assert_allclose(batch[1].posterior["tau"].values, res.posterior["tau"].values, rtol=1e-9)
    np.testing.assert_allclose(batch[1].pip.values, res.pip.values, rtol=1e-9, atol=1e-12)


def test_two_scale_random_effects_random_slope():
    rng = np.random.default_rng(5)
    J, n = 10, 25
    g = np.repeat(np.arange(J), n)
    x = rng.normal(size=J * n)
    slope = np.where(np.arange(J) < 2, 1.0, 0.0)
    y = rng.normal(size=J * n) * np.exp(-0.2 + slope[g] * x)
    X = np.column_stack([np.ones(J * n), x])
    data = MelsmData.from_arrays(y, g, X, X[:, :1], X, X, x_names=["Intercept", "x"], z_loc_names=["Intercept"],
                                 w_names=["Intercept", "x"], z_scale_names=["Intercept", "x"])
    res = fit(data, chains=2, warmup=300, draws=300, seed=3)
    assert not res.structure.sufficient
    assert res.pip.shape == (J, 2)
    assert list(res.pip["scale_random"].values) == ["Intercept", "x"]
    assert res.posterior["combo_prob"].shape[-1] == 4
    np.testing.assert_allclose(res.posterior["combo_prob"].sum("combo"), 1.0, atol=1e-12)
    table = res.groups_table()
    assert {"pip[Intercept]", "pip[x]", "bf10[x]"} <= set(table.columns)
    # the two groups with a strong random slope in the scale get a high slope PIP
    assert np.all(res.pip.values[:2, 1] > 0.75)


def test_pointwise_loglik_with_known_indicators():
    """With one-hot indicator probabilities the sampled indicator is known: the pointwise
    log-likelihood must equal the normal log density exactly."""
    from scipy import stats

    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(4), 5)
    data = MelsmData.intercepts_only(rng.normal(size=20), g)
    delta = np.array([1, 0, 1, 0])
    draws = {"beta": np.full((1, 2, 1), 0.2), "eta": np.full((1, 2, 1), -0.1),
             "u": np.tile(rng.normal(size=(4, 1)), (1, 2, 1, 1)), "t": np.tile(rng.normal(size=(4, 1)), (1, 2, 1, 1))}
    draws["combo_prob"] = np.tile(np.eye(2)[delta], (1, 2, 1, 1))
    ll = pointwise_loglik(data, draws, jax.random.PRNGKey(0))
    mu = 0.2 + draws["u"][0, 0, g, 0]
    sigma = np.exp(-0.1 + draws["t"][0, 0, g, 0] * delta[g])
    np.testing.assert_allclose(ll[0, 0], stats.norm.logpdf(data.y, mu, sigma), rtol=1e-12)


def test_loo_and_waic(small):
    data, truth, res = small
    loo = res.loo()
    assert res.tree["log_likelihood"]["y"].shape == (2, 300, data.n_obs)
    assert np.isfinite(loo.elpd) and loo.elpd < 0
    import arviz as az  # the vectorised PSIS-LOO gives ArviZ's numbers on a real fit

    ref = az.loo(res.tree, pointwise=True, var_name="y")
    np.testing.assert_allclose(loo.pareto_k.values, ref.pareto_k.values, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose([loo.elpd, loo.p, loo.se], [ref.elpd, ref.p, ref.se], rtol=1e-10)
    waic = res.waic()
    assert abs(waic["elpd_waic"] - loo.elpd) < 0.05 * abs(loo.elpd)


def test_bad_inputs():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(3), 4)
    y = rng.normal(size=12)
    with pytest.raises(DataError, match="NaN"):
        MelsmData.intercepts_only(np.where(np.arange(12) == 3, np.nan, y), g)
    with pytest.raises(DataError, match="constant"):
        MelsmData.intercepts_only(np.ones(12), g)
    with pytest.raises(DataError, match="at least 2"):
        MelsmData.intercepts_only(y, np.zeros(12))
    with pytest.raises(DataError, match="rows"):
        MelsmData.from_arrays(y, g, X=np.ones((11, 1)))
    with pytest.raises(DataError, match="non-numeric"):
        MelsmData.from_arrays(y, g, X=np.array(["a"] * 12)[:, None])
    with pytest.raises(DataError, match="infinite"):
        MelsmData.from_arrays(y, g, W=np.where(np.arange(12) == 0, np.inf, 1.0)[:, None])
    with pytest.raises(DataError, match="shape"):
        MelsmData.intercepts_only(y, g[:5])
    d1 = MelsmData.intercepts_only(y, g)
    d2 = MelsmData.intercepts_only(rng.normal(size=16), np.repeat(np.arange(4), 4))
    with pytest.raises(ValueError, match="same-shaped"):
        fit_batch([d1, d2], **SMALL)
    with pytest.raises(ValueError, match="chains"):
        fit(d1, chains=0)
    with pytest.raises(ValueError, match="pi"):
        fit(d1, Priors(pi=1.0))
    with pytest.warns(UserWarning, match="single observation"):
        MelsmData.intercepts_only(rng.normal(size=5), [0, 0, 0, 1, 2])


def test_ragged_groups_share_one_compiled_program_on_the_sufficient_path():
    """With group-level scale predictors only J matters: datasets with different group sizes
    batch together (one compile) and give the same draws as separate fits."""
    spec = GeneratorSpec(n_groups=12, group_size=30, size_dist="poisson", share_inconsistent=0.25,
                         effect="fixed", magnitude=1.2)
    (d1, _), (d2, _) = generate(spec, 1), generate(spec, 2)
    assert d1.n_obs != d2.n_obs
    assert fitmod.batch_key(d1, centered_location=True) == fitmod.batch_key(d2, centered_location=True)
    both = fit_batch([d1, d2], **SMALL, seeds=[5, 6], centered_location=True)
    traces = fitmod.TRACE_COUNT
    (d3, _), (d4, _) = generate(spec, 3), generate(spec, 4)
    assert len({d1.n_obs, d2.n_obs, d3.n_obs, d4.n_obs}) > 2
    again = fit_batch([d3, d4], **SMALL, seeds=[7, 8], centered_location=True)
    assert fitmod.TRACE_COUNT == traces and again[0].compile_s == 0.0  # other sizes, same program
    alone = fit(d2, **SMALL, seed=6, centered_location=True)
    np.testing.assert_allclose(both[1].posterior["tau"].values, alone.posterior["tau"].values, rtol=1e-9)


def test_vectorised_batch_method(small):
    """``batch_method="vmap"`` (vectorised chains and datasets, for accelerators) samples the
    same posterior: with 600 draws per fit the PIP Monte Carlo SE is below ~0.05, so the two
    methods' PIPs agree within 0.25 everywhere, and both flag the large effects."""
    data, truth, res = small
    vec = fit_batch([data], **SMALL, seeds=[1], batch_method="vmap")[0]
    assert vec.pip.shape == res.pip.shape
    assert np.max(np.abs(vec.pip.values - res.pip.values)) < 0.25
    assert np.all(vec.pip.values[truth.delta, 0] > 0.75)
    with pytest.raises(ValueError, match="batch method"):
        fit_batch([data], **SMALL, batch_method="pmap")
