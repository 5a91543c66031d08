"""The SS-MELSM on longitudinal data: the two likelihood paths agree exactly with random time
slopes (two location random effects, the LKJ over three effects), the group log-likelihood
against SciPy, recovery of tau_u0, tau_u1, tau_t and the flags on a large easy dataset, and the
slope summaries of the store record."""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pytest
from numpyro.infer.util import potential_energy
from scipy import stats

from simstudy.model.priors import Priors
from simstudy.model.sampler import initial_values
from simstudy.model.ssmelsm import group_loglik, hyper_arrays, model_arrays, ssmelsm, structure_for
from simstudy.study.generate import GeneratorSpec, generate


def _data(**kw):
    spec = GeneratorSpec(layout="longitudinal", n_groups=9, group_size=6, size_dist="uniform", size_min=2,
                         size_max=9, phi=0.4, dropout=0.2, tau_u1=0.4, gamma1=0.7, share_inconsistent=0.3, **kw)
    return generate(spec, 21)


@pytest.mark.parametrize("centered", [True, False])
@pytest.mark.parametrize("correlated", [True, False])
def test_sufficient_statistics_equal_per_observation_with_random_slopes(centered, correlated):
    data, _ = _data()
    assert data.dims["Q_loc"] == 2 and data.scale_is_group_level
    priors = Priors(pi=0.3, correlated=correlated)
    s_suff = structure_for(data, priors, sufficient=True, centered_location=centered)
    s_obs = structure_for(data, priors, sufficient=False, centered_location=centered)
    assert s_suff.n_random == 3 and s_suff.loc_match == (0, 1)  # random intercept and slope share beta's columns
    hyper = hyper_arrays(data, priors)
    rng = np.random.default_rng(0)
    for seed in range(3):
        init = initial_values(data, s_suff, np.random.default_rng(seed), chains=1)
        params = {k: v[0] + rng.normal(scale=0.3, size=v[0].shape) for k, v in init.items()}
        if correlated:
            assert params["L_corr"].shape == (3,)  # the LKJ Cholesky over three effects
        pe = [float(potential_energy(partial(ssmelsm, structure=s), (model_arrays(data, s), hyper), {}, params))
              for s in (s_suff, s_obs)]
        assert np.isfinite(pe[0])
        assert abs(pe[0] - pe[1]) <= 1e-8 * max(1.0, abs(pe[0]))


def test_group_loglik_with_random_slopes_matches_scipy():
    data, _ = _data()
    rng = np.random.default_rng(7)
    J = data.n_groups
    beta, eta = rng.normal(size=2), rng.normal(scale=0.3, size=1)
    u, t = rng.normal(scale=0.5, size=(J, 2)), rng.normal(scale=0.5, size=(J, 1))
    combos = np.array(list(itertools.product((0.0, 1.0), repeat=1)))
    time = data.X[:, 1]
    expected = np.zeros((J, 2))
    for c, delta in enumerate(combos):
        mu = beta[0] + beta[1] * time + u[data.group, 0] + u[data.group, 1] * time
        sigma = np.exp(eta[0] + (t * delta)[data.group, 0])
        expected[:, c] = np.bincount(data.group, stats.norm.logpdf(data.y, mu, sigma), minlength=J)
    for sufficient in (True, False):
        s = structure_for(data, Priors(), sufficient=sufficient)
        got = np.asarray(group_loglik(model_arrays(data, s), beta, eta, u, t, combos, s))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_scale_time_takes_the_per_observation_path():
    data, _ = _data(scale_time=True, eta1=0.3)
    assert not data.scale_is_group_level
    assert not structure_for(data, Priors()).sufficient
    data, _ = _data(location_random_slope=False)
    assert data.dims["Q_loc"] == 1 and structure_for(data, Priors()).n_random == 2


@pytest.mark.slow
def test_longitudinal_fit_recovers_sds_and_flags():
    """J = 150 persons x T = 30 occasions, independent residuals, large scale effects."""
    from simstudy import fit
    from simstudy.study.scoring import score_fit

    spec = GeneratorSpec(layout="longitudinal", n_groups=150, group_size=30, tau_u=0.5, tau_u1=0.4, rho_u01=0.3,
                         gamma1=0.5, share_inconsistent=0.2, slab_sd=1.0)
    data, truth = generate(spec, 4)
    res = fit(data, Priors(), chains=2, warmup=400, draws=400, seed=2)
    assert res.rhat_max < 1.05 and res.divergences == 0
    rec = score_fit(res, truth, n_groups_max=150)
    post = res.posterior
    # the realised SDs (what the data inform) within 3 posterior SDs (+ a little for the estimate's own noise)
    realised = {"location:Intercept": truth.u.std(), "location:time": truth.u1.std(),
                "scale:Intercept": np.sqrt(np.mean(truth.t[truth.delta] ** 2))}
    for name, true in realised.items():
        draws = post["tau"].sel(random_effect=name).values.ravel()
        assert abs(draws.mean() - true) < 3 * draws.std() + 0.02, (name, draws.mean(), true)
    assert rec["tau_u1_true"] == 0.4 and rec["rho_u01_true"] == 0.3
    assert rec["tau_u1_q05"] < truth.u1.std() < rec["tau_u1_q95"]
    assert rec["tau_u1_mean"] == pytest.approx(post["tau"].sel(random_effect="location:time").values.mean())
    assert abs(rec["rho_u01_mean"] - np.corrcoef(truth.u, truth.u1)[0, 1]) < 0.3
    # flags at PIP >= 0.75: clear effects found, consistent persons rarely flagged
    pip = res.pip.values[:, 0]
    clear = truth.delta & (np.abs(truth.t) > 0.6)
    assert clear.sum() >= 10
    assert (pip[clear] >= 0.75).mean() >= 0.9
    assert (pip[~truth.delta] >= 0.75).mean() <= 0.05
