"""The SS-MELSM log density: both likelihood paths against each other and against a direct
NumPy/SciPy computation, and the runtime-selected SD priors against SciPy."""

import itertools
import re
from functools import partial

import jax
import numpy as np
import pytest
from numpyro.infer.util import potential_energy
from scipy import stats
from scipy.special import logsumexp

from simstudy.model.data import MelsmData
from simstudy.model.sampler import initial_values
from simstudy.model.ssmelsm import group_loglik, hyper_arrays, model_arrays, sd_prior_logpdf, ssmelsm, structure_for
from simstudy.model.priors import Priors, SDPrior


def _group_level_data(K: int, seed: int = 3) -> MelsmData:
    """Student-level location predictors, group-level scale predictors (so both paths apply)."""
    rng = np.random.default_rng(seed)
    J = 9
    sizes = rng.integers(1, 12, J)  # includes tiny groups
    g = np.repeat(np.arange(J), sizes)
    x = rng.normal(size=g.size)
    xb = rng.normal(size=J)
    X = np.column_stack([np.ones(g.size), x, xb[g]])
    Z_loc = np.column_stack([np.ones(g.size), x])
    W = np.column_stack([np.ones(g.size), xb[g]])
    Z_scale = np.column_stack([np.ones(g.size), xb[g]])[:, :K]
    y = 2.0 + 0.5 * x + rng.normal(size=g.size) * np.exp(0.3 * xb[g])
    return MelsmData.from_arrays(y, g, X, Z_loc, W, Z_scale)


def _random_params(data, structure, seed):
    rng = np.random.default_rng(seed)
    init = initial_values(data, structure, rng, chains=1)
    return {k: v[0] + rng.normal(scale=0.3, size=v[0].shape) for k, v in init.items()}


@pytest.mark.parametrize("K", [1, 2])
@pytest.mark.parametrize("centered", [True, False])
def test_sufficient_statistics_equal_per_observation(K, centered):
    data = _group_level_data(K)
    assert data.scale_is_group_level
    priors = Priors(pi=0.3)
    s_suff = structure_for(data, priors, sufficient=True, centered_location=centered)
    s_obs = structure_for(data, priors, sufficient=False, centered_location=centered)
    hyper = hyper_arrays(data, priors)
    for seed in range(3):
        params = _random_params(data, s_suff, seed)
        pe = [
            float(potential_energy(partial(ssmelsm, structure=s), (model_arrays(data, s), hyper), {}, params))
            for s in (s_suff, s_obs)
        ]
        assert np.isfinite(pe[0])
        assert abs(pe[0] - pe[1]) <= 1e-8 * max(1.0, abs(pe[0]))


@pytest.mark.parametrize("K", [1, 2])
def test_group_loglik_matches_scipy(K):
    """log p(y_j | c, ...) for every indicator combination c, against scipy.stats.norm."""
    data = _group_level_data(K)
    rng = np.random.default_rng(7)
    d = data.dims
    beta, eta = rng.normal(size=d["P"]), rng.normal(scale=0.3, size=d["S"])
    u, t = rng.normal(scale=0.5, size=(data.n_groups, d["Q_loc"])), rng.normal(scale=0.5, size=(data.n_groups, K))
    combos = np.array(list(itertools.product((0.0, 1.0), repeat=K)))
    expected = np.zeros((data.n_groups, len(combos)))
    for c, delta in enumerate(combos):
        mu = data.X @ beta + np.sum(data.Z_loc * u[data.group], axis=1)
        sigma = np.exp(data.W @ eta + np.sum(data.Z_scale * (t * delta)[data.group], axis=1))
        expected[:, c] = np.bincount(data.group, stats.norm.logpdf(data.y, mu, sigma), minlength=data.n_groups)
    for sufficient in (True, False):
        s = structure_for(data, Priors(), sufficient=sufficient)
        got = np.asarray(group_loglik(model_arrays(data, s), beta, eta, u, t, combos, s))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    # marginal over indicators at pi: logsumexp_c [log p(c) + log p(y_j | c)]
    pi = 0.3
    log_prior = combos.sum(1) * np.log(pi) + (K - combos.sum(1)) * np.log1p(-pi)
    marginal = logsumexp(expected + log_prior, axis=1)
    brute = np.log(sum(np.exp(expected[:, c]) * np.prod(np.where(combos[c] == 1, pi, 1 - pi)) for c in range(len(combos))))
    np.testing.assert_allclose(marginal, brute, rtol=1e-10)


def test_per_observation_path_for_student_level_scale_predictors():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(5), 6)
    x = rng.normal(size=g.size)
    data = MelsmData.from_arrays(rng.normal(size=g.size), g, W=np.column_stack([np.ones(g.size), x]))
    assert not data.scale_is_group_level
    assert not structure_for(data, Priors()).sufficient
    with pytest.raises(ValueError, match="constant within groups"):
        structure_for(data, Priors(), sufficient=True)


def _student_level_scale_data(K: int, seed: int = 5) -> MelsmData:
    """Scale predictors varying within groups (the per-observation path), rows not sorted by
    group, group sizes from 1 up."""
    rng = np.random.default_rng(seed)
    J = 11
    g = rng.permutation(np.repeat(np.arange(J), rng.integers(1, 15, J)))
    x, xb = rng.normal(size=g.size), rng.normal(size=J)
    X = np.column_stack([np.ones(g.size), x, xb[g], x * xb[g]])
    W = X.copy()
    Z_scale = np.column_stack([np.ones(g.size), x, xb[g] ** 2])[:, :K]
    y = 1.0 + 0.5 * x + rng.normal(size=g.size) * np.exp(0.3 * x)
    return MelsmData.from_arrays(y, g, X, None, W, Z_scale)


@pytest.mark.parametrize("K", [1, 2, 3])
def test_factored_per_observation_likelihood_equals_flat(K):
    """The factored per-observation likelihood (group sums, products of exponentials, sorted
    rows) equals the flat formulation: log density and gradient to 1e-10."""
    data = _student_level_scale_data(K)
    priors = Priors(pi=0.4)
    structure = structure_for(data, priors)
    assert not structure.sufficient
    hyper = hyper_arrays(data, priors)
    factored, flat = (model_arrays(data, structure, layout=lay) for lay in ("factored", "flat"))
    assert "W_sum" in factored and "W_sum" not in flat
    model = partial(ssmelsm, structure=structure)

    def value_and_grad(arrays, params):
        return jax.value_and_grad(lambda p: potential_energy(model, (arrays, hyper), {}, p))(params)

    for seed in range(3):
        params = _random_params(data, structure, seed)
        (v1, g1), (v0, g0) = value_and_grad(factored, params), value_and_grad(flat, params)
        assert np.isfinite(float(v0)) and abs(float(v1) - float(v0)) <= 1e-10 * abs(float(v0))
        for name in g0:
            np.testing.assert_allclose(g1[name], g0[name], rtol=1e-10, atol=1e-10 * (1 + np.max(np.abs(g0[name]))))
    # the per-group likelihood for every indicator combination, too
    rng = np.random.default_rng(1)
    d = data.dims
    beta, eta = rng.normal(size=d["P"]), rng.normal(scale=0.3, size=d["S"])
    u, t = rng.normal(size=(data.n_groups, d["Q_loc"])), rng.normal(size=(data.n_groups, K))
    combos = structure.combos
    np.testing.assert_allclose(group_loglik(factored, beta, eta, u, t, combos, structure),
                               group_loglik(flat, beta, eta, u, t, combos, structure), rtol=1e-10)


@pytest.mark.parametrize(
    "prior", ["half_t(3, 1)", "half_t(7, 0.4)", "half_normal(0.25)", "half_cauchy(2)", "exponential(1.5)"]
)
def test_sd_prior_logpdf_matches_scipy(prior):
    spec = SDPrior.parse(prior)
    tau = np.array([0.01, 0.3, 1.0, 4.0])
    got = np.asarray(sd_prior_logpdf(tau, np.broadcast_to(spec.as_array(), (4, 3))))
    np.testing.assert_allclose(got, spec.logpdf(tau), rtol=1e-10)
    # it is a density on (0, inf)
    grid = np.linspace(1e-6, 200, 400001)
    dens = np.exp(np.asarray(sd_prior_logpdf(grid, np.broadcast_to(spec.as_array(), (grid.size, 3)))))
    tail = 1.0 - (stats.t.cdf(200 / spec.params[1], spec.params[0]) * 2 - 1) if spec.family == "half_t" else 0.0
    if spec.family == "half_cauchy":
        tail = 1.0 - 2 / np.pi * np.arctan(200 / spec.params[0])
    assert abs(np.trapezoid(dens, grid) + tail - 1.0) < 2e-3


def test_structure_choices():
    rng = np.random.default_rng(1)
    small = MelsmData.intercepts_only(rng.normal(size=20), np.repeat(np.arange(10), 2))
    # groups of 20 that differ (tau_u ~ 1): centred; see tests/test_reparam.py for tau_u near 0
    large = MelsmData.intercepts_only(rng.normal(size=200) + np.repeat(rng.normal(size=10), 20),
                                      np.repeat(np.arange(10), 20))
    assert not structure_for(small, Priors()).centered_location
    assert structure_for(large, Priors()).centered_location
    assert structure_for(large, Priors()).loc_match == (0,)
    assert structure_for(large, Priors(correlated=False)).correlated is False
    assert hyper_arrays(large, Priors()).keys() == hyper_arrays(large, Priors(pi=0.1)).keys()


def test_intercept_prior_from_data():
    rng = np.random.default_rng(2)
    y = 5 + 2 * rng.normal(size=40)
    data = MelsmData.intercepts_only(y, np.repeat(np.arange(4), 10))
    h = hyper_arrays(data, Priors())
    assert h["beta_mean"][0] == pytest.approx(y.mean())
    assert h["beta_sd"][0] == pytest.approx(3 * y.std(ddof=1))
    assert h["eta_sd"][0] == 3.0
    h2 = hyper_arrays(data, Priors(location_intercept_mean=0.0, location_intercept_sd=10.0))
    assert (h2["beta_mean"][0], h2["beta_sd"][0]) == (0.0, 10.0)


@pytest.mark.parametrize("eta", [1.0, 2.5, 0.6])
def test_two_effect_correlation_prior_equals_lkj(eta):
    """With one location and one scale effect the model samples the correlation directly;
    its prior must equal numpyro's LKJCholesky(2, eta) up to a constant (the LKJ density of
    the Cholesky factor is a density of L21 = rho when d = 2)."""
    import numpyro.distributions as dist
    from numpyro.handlers import seed, substitute, trace

    rng = np.random.default_rng(0)
    data = MelsmData.intercepts_only(rng.normal(size=40), np.repeat(np.arange(4), 10))
    priors = Priors(lkj_eta=eta)
    s = structure_for(data, priors)
    assert s.correlated and s.n_random == 2
    params = {k: v[0] for k, v in initial_values(data, s, rng, 1).items()}

    def lkj(rho):
        return float(dist.LKJCholesky(2, eta).log_prob(np.array([[1.0, 0.0], [rho, np.sqrt(1 - rho**2)]])))

    def ours(rho):
        return (eta - 1.0) * np.log1p(-rho**2)

    for a, b in ((-0.7, 0.2), (0.0, 0.9), (0.5, -0.3)):
        assert ours(a) - ours(b) == pytest.approx(lkj(a) - lkj(b), abs=1e-10)
    # and the model adds exactly that term
    for rho in (-0.7, 0.0, 0.9):
        model = substitute(partial(ssmelsm, structure=s), data={**params, "rho": rho})
        tr = trace(seed(model, 0)).get_trace(model_arrays(data, s), hyper_arrays(data, priors))
        assert np.allclose(tr["L_corr"]["value"], [[1, 0], [rho, np.sqrt(1 - rho**2)]])
        factor = tr["rho_prior"]["fn"].log_prob(tr["rho_prior"]["value"])
        assert float(np.sum(factor)) == pytest.approx(ours(rho), abs=1e-12)


@pytest.mark.parametrize("K", [1, 2])
@pytest.mark.parametrize("sufficient", [True, False])
def test_beta_pi_at_a_point_equals_fixed_pi(K, sufficient):
    """With pi ~ Beta(a, b) sampled, the log density at pi = p is the fixed-pi (p) model's
    plus log Beta(p | a, b) plus the logit Jacobian log p(1 - p), exactly; the full-conditional
    inclusion probabilities are the same numbers."""
    from numpyro.infer.util import constrain_fn

    data = _group_level_data(K)
    beta_priors = Priors(pi="beta(2, 7)")
    s_beta = structure_for(data, beta_priors, sufficient=sufficient)
    assert s_beta.beta_pi
    arrays = model_arrays(data, s_beta)
    h_beta = hyper_arrays(data, beta_priors)
    for seed, p in [(0, 0.13), (1, 0.5), (2, 0.91)]:
        s_fix = structure_for(data, Priors(pi=p), sufficient=sufficient)
        assert not s_fix.beta_pi
        h_fix = hyper_arrays(data, Priors(pi=p))
        params = _random_params(data, s_fix, seed)
        params_b = {**params, "pi": np.log(p) - np.log1p(-p)}
        pe_fix = float(potential_energy(partial(ssmelsm, structure=s_fix), (arrays, h_fix), {}, params))
        pe_beta = float(potential_energy(partial(ssmelsm, structure=s_beta), (arrays, h_beta), {}, params_b))
        expected = stats.beta.logpdf(p, 2, 7) + np.log(p * (1 - p))
        assert abs((-pe_beta) - (-pe_fix) - expected) <= 1e-9 * max(1.0, abs(pe_fix))
        det_fix = constrain_fn(partial(ssmelsm, structure=s_fix), (arrays, h_fix), {}, params, True)
        det_beta = constrain_fn(partial(ssmelsm, structure=s_beta), (arrays, h_beta), {}, params_b, True)
        np.testing.assert_allclose(det_beta["pi"], p, rtol=1e-12)
        np.testing.assert_allclose(det_beta["incl_prob"], det_fix["incl_prob"], rtol=1e-10, atol=1e-14)


def test_pi_parsing():
    from simstudy.model.priors import BetaPrior, PriorError, bayes_factor, parse_pi, pip_threshold_for_bf

    assert parse_pi("beta(1, 9)") == BetaPrior(1.0, 9.0)
    assert parse_pi(" Beta( 2 ,3 ) ") == BetaPrior(2.0, 3.0)
    assert parse_pi("0.25") == 0.25 and parse_pi(0.5) == 0.5
    assert str(Priors(pi="beta(1,1)").pi) == "beta(1, 1)"
    p = Priors(pi="beta(1, 3)")
    assert p.pi_is_beta and p.pi_mean == 0.25 and abs(p.prior_odds - 1 / 3) < 1e-15
    # BF10 under beta(a, b) uses the prior odds a / b (the odds of the prior mean)
    np.testing.assert_allclose(bayes_factor([0.5, 0.75], BetaPrior(1, 3)), [3.0, 9.0])
    assert pip_threshold_for_bf(3.0, BetaPrior(1, 1)) == pip_threshold_for_bf(3.0, 0.5)
    for bad, words in [("beta(0, 1)", "a must be a positive"), ("beta(1)", "beta(1, 1)"), ("gamma(1, 2)", "beta(1, 1)"),
                       (1.5, "between 0 and 1"), (True, "number in (0, 1)")]:
        with pytest.raises(PriorError, match=re.escape(words)):
            Priors(pi=bad)
