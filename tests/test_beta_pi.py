"""pi ~ Beta(a, b): one compiled program for a whole (a, b) sweep, the posterior of pi
reported, and recovery on a small fit."""

import numpy as np
import pytest

import simstudy.model.sampler as fitmod
from simstudy.model.priors import BetaPrior, Priors, bayes_factor
from simstudy.model.sampler import fit
from simstudy.study.generate import GeneratorSpec, generate

SMALL = dict(chains=2, warmup=300, draws=300)
SPEC = GeneratorSpec(n_groups=12, group_size=30, share_inconsistent=0.25, effect="fixed", magnitude=1.2,
                     tau_u=0.3, eta0=-0.25)


@pytest.fixture(scope="module")
def sweep():
    """Four (a, b) settings fitted to one dataset after clearing the in-process cache."""
    data, truth = generate(SPEC, 11)
    fitmod.clear_compiled_cache()
    traces = fitmod.TRACE_COUNT
    settings = ["beta(1, 1)", "beta(1, 9)", "beta(9, 1)", "beta(2, 2)"]
    fits = [fit(data, Priors(pi=s), **SMALL, seed=1) for s in settings]
    return data, truth, dict(zip(settings, fits)), fitmod.TRACE_COUNT - traces


def test_sweep_over_beta_parameters_compiles_once(sweep):
    data, truth, fits, traces = sweep
    assert traces == 1
    compile_s = [f.compile_s for f in fits.values()]
    assert compile_s[0] > 0 and compile_s[1:] == [0.0, 0.0, 0.0]
    # a and b reach the program: the posterior of pi moves with the prior
    means = {s: float(f.posterior["pi"].mean()) for s, f in fits.items()}
    assert means["beta(1, 9)"] < means["beta(1, 1)"] < means["beta(9, 1)"]


def test_posterior_of_pi_recovers_the_share_and_is_reported(sweep):
    data, truth, fits, _ = sweep
    res = fits["beta(1, 1)"]
    pi = res.posterior["pi"].values.ravel()
    assert res.posterior["pi"].dims == ("chain", "draw") and np.all((pi > 0) & (pi < 1))
    # 3 of 12 groups inconsistent with |t| = 1.2 (clearly identified): pi | y is close to
    # Beta(1 + 3, 1 + 9) (mean 0.29, 90% interval 0.11-0.50)
    assert 0.15 < pi.mean() < 0.45
    lo, hi = np.quantile(pi, [0.05, 0.95])
    assert lo < 0.25 < hi
    assert np.all(res.pip.values[truth.delta, 0] > 0.75)
    assert "pi" in res.diagnostics["rhat"] and "pi" in res.summary_table().index
    # BF10 uses the prior mean's odds a / b
    np.testing.assert_allclose(res.bf10.values, bayes_factor(res.pip.values, 0.5))
    np.testing.assert_allclose(fits["beta(1, 9)"].bf10.values, res_odds(fits["beta(1, 9)"], 1 / 9))


def res_odds(res, odds):
    p = res.pip.values
    with np.errstate(divide="ignore"):
        return p / (1 - p) / odds


def test_fixed_and_beta_pi_do_not_share_a_batch(sweep):
    data, *_ = sweep
    with pytest.raises(ValueError, match="different model structure"):
        fitmod.fit_batch([data, data], [Priors(pi=BetaPrior(1, 1)), Priors(pi=0.5)], **SMALL)
