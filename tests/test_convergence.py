"""The convergence rule (simstudy.model.diagnostics) and the extension of fits that fail it."""

import numpy as np
import pytest
import arviz as az
import xarray as xr

import simstudy.model.sampler as fitmod
from simstudy.model.diagnostics import ESS_PER_CHAIN, RHAT_MAX, judge, suggest_settings
from simstudy.model.priors import Priors
from simstudy.model.sampler import MCMCSettings, fit, fit_batch
from simstudy.study.generate import GeneratorSpec, generate


# ----------------------------------------------------------------------------- the rule
def _diagnostics(post: xr.Dataset) -> dict:
    return {
        "rhat": az.rhat(post, sample_dims=["chain", "draw"]),
        "ess_bulk": az.ess(post, sample_dims=["chain", "draw"], method="bulk"),
        "ess_tail": az.ess(post, sample_dims=["chain", "draw"], method="tail"),
    }


def _posterior(rng, chains=4, draws=1000) -> xr.Dataset:
    """Independent draws (what a perfectly mixing sampler gives) of the hyperparameters."""
    re = ["location:Intercept", "scale:Intercept"]
    corr = np.broadcast_to(np.eye(2), (chains, draws, 2, 2)).copy()
    corr[..., 0, 1] = corr[..., 1, 0] = np.tanh(rng.normal(0, 0.3, (chains, draws)))
    return xr.Dataset(
        {
            "beta": (("chain", "draw", "location_fixed"), rng.normal(size=(chains, draws, 2))),
            "eta": (("chain", "draw", "scale_fixed"), rng.normal(size=(chains, draws, 1))),
            "tau": (("chain", "draw", "random_effect"), np.exp(rng.normal(-1, 0.3, (chains, draws, 2)))),
            "corr": (("chain", "draw", "random_effect", "random_effect_bis"), corr),
        },
        coords={"location_fixed": ["Intercept", "x"], "scale_fixed": ["Intercept"], "random_effect": re,
                "random_effect_bis": re},
    )


def test_rule_passes_independent_draws_and_flags_a_stuck_chain():
    rng = np.random.default_rng(0)
    post = _posterior(rng)
    good = judge(_diagnostics(post), divergences=0, chains=4)
    # 4000 independent draws: ESS ~ 4000 >> 400 and R-hat within ~1e-3 of 1
    assert good.converged and good.reason == ""
    assert good.rhat_worst < 1.005 and good.ess_worst > 0.5 * 4000
    assert good.ess_needed == ESS_PER_CHAIN * 4

    # chain 2 never leaves its starting value of tau_t (a stuck chain)
    tau = post["tau"].values.copy()
    tau[2, :, 1] = 0.05
    stuck = judge(_diagnostics(post.assign(tau=(post["tau"].dims, tau))), divergences=0, chains=4)
    assert not stuck.converged
    assert stuck.worst_param == "tau[scale:Intercept]"
    assert stuck.rhat_worst > 1.2 and "R-hat" in stuck.reason and "tau[scale:Intercept]" in stuck.reason

    # a chain drifting slowly (strong autocorrelation, same marginal): ESS fails first
    walk = np.cumsum(rng.normal(0, 0.02, (4, 1000)), axis=1)
    beta = post["beta"].values.copy()
    beta[..., 1] = walk
    slow = judge(_diagnostics(post.assign(beta=(post["beta"].dims, beta))), divergences=0, chains=4)
    assert not slow.converged and slow.worst_param == "beta[x]" and slow.ess_worst < 400


def test_rule_divergences_nan_and_correlation_diagonal():
    rng = np.random.default_rng(1)
    post = _posterior(rng)
    diag = _diagnostics(post)
    # the constant diagonal of corr (R-hat NaN) is not judged; the off-diagonal is
    assert np.isnan(diag["rhat"]["corr"].values[0, 0])
    assert judge(diag, divergences=0, chains=4).converged
    bad = judge(diag, divergences=3, chains=4)
    assert not bad.converged and "3 divergent transitions" in bad.reason
    # a NaN R-hat of a judged parameter fails (e.g. every chain stuck)
    diag["rhat"]["eta"][...] = np.nan
    nan = judge(diag, divergences=0, chains=4)
    assert not nan.converged and nan.worst_param == "eta[Intercept]" and nan.rhat_worst == np.inf
    assert "warmup" in suggest_settings(nan, MCMCSettings(4, 500, 500), 2)
    assert "target_accept" in suggest_settings(bad, MCMCSettings(4, 500, 500), 2)
    assert RHAT_MAX == 1.01


def test_rule_judges_pi_when_sampled():
    """A sampled pi (records "pi", one value per draw) enters the batch diagnostics and the rule."""
    from simstudy.model.result import _unit_diagnostics, batch_diagnostics

    rng = np.random.default_rng(2)
    records = {"beta": rng.normal(size=(1, 4, 500, 1)), "eta": rng.normal(size=(1, 4, 500, 1)),
               "tau": np.exp(rng.normal(size=(1, 4, 500, 2))), "pi": rng.uniform(size=(1, 4, 500))}
    records["pi"][0, 1] = 0.9  # chain 1 stuck in pi only
    dims = {"beta": ["location_fixed"], "eta": ["scale_fixed"], "tau": ["random_effect"]}
    coords = {"location_fixed": ["Intercept"], "scale_fixed": ["Intercept"], "random_effect": ["loc", "scale"]}
    v = judge(_unit_diagnostics(batch_diagnostics(records, pips=False), 0, dims, coords), 0, 4)
    assert not v.converged and v.worst_param == "pi"


# ----------------------------------------------------------------------------- extension
SPEC = GeneratorSpec(n_groups=12, group_size=30, share_inconsistent=0.25, effect="fixed", magnitude=1.2,
                     tau_u=0.3, eta0=-0.25)
SHORT = dict(chains=2, warmup=50, draws=150, target_accept=0.9)
PRIORS = Priors(correlated=False)


@pytest.fixture(scope="module")
def short_fits():
    data = [generate(SPEC, s)[0] for s in (11, 12)]
    alone = fit(data[0], PRIORS, **SHORT, seed=1, max_extensions=2)
    plain = fit(data[0], PRIORS, **SHORT, seed=1)
    traces = fitmod.CONTINUE_TRACE_COUNT
    batch = fit_batch([data[1], data[0]], PRIORS, **SHORT, seeds=[2, 1], max_extensions=2)
    return data, alone, plain, batch, fitmod.CONTINUE_TRACE_COUNT - traces


def test_extension_continues_the_chains_deterministically_and_independently_of_the_batch(short_fits):
    data, alone, plain, batch, retraces = short_fits
    assert not plain.converged and plain.extensions == 0  # 50 warm-up iterations are too few
    assert alone.extensions >= 1 and alone.draws_used == 150 * (1 + alone.extensions)
    # the extension continues the chains: the first block is the unextended fit's draws
    np.testing.assert_array_equal(alone.posterior["tau"].values[:, :150], plain.posterior["tau"].values)
    # same seed -> same draws, whatever else is in the batch and whether it was extended
    np.testing.assert_array_equal(batch[1].posterior["tau"].values, alone.posterior["tau"].values)
    np.testing.assert_array_equal(batch[1].posterior["incl_prob"].values, alone.posterior["incl_prob"].values)
    assert batch[1].extensions == alone.extensions
    # compiled once per shape: no retrace for further extensions or fits
    assert retraces == 0
    # the step size adapted in warm-up is kept through the extension
    step = alone.sample_stats["step_size"].values
    assert (step == step[:, :1]).all()


def test_short_run_is_extended_and_then_converges(short_fits):
    data, alone, plain, batch, _ = short_fits
    # 50 warm-up iterations and 2 x 150 draws fail the rule (ESS < 200); one more block of
    # draws from the same adapted chains is enough for this data set
    first = fit(data[1], PRIORS, **SHORT, seed=2)
    assert not first.converged and first.verdict.ess_worst < first.verdict.ess_needed
    extended = batch[0]
    assert extended.extensions >= 1 and extended.converged and extended.status == "ok"
    assert extended.verdict.rhat_worst <= 1.01 and extended.verdict.ess_worst >= 200
    assert extended.draws_used == 150 * (1 + extended.extensions)
    # without extensions the same fit is reported as not converged
    assert first.status == "not_converged"


def test_fit_command_advice_names_the_parameter_and_settings(short_fits):
    from simstudy.realdata.commands import convergence_advice

    _, _, plain, _, _ = short_fits
    text = convergence_advice(plain)
    v = plain.verdict
    assert v.worst_param and v.worst_param in text
    assert "after 0 extension(s) (150 draws per chain)" in text
    assert "--draws 300" in text or "target_accept" in text


def test_divergent_fit_is_rerun_with_smaller_steps(short_fits):
    """A fit with divergent transitions is not extended (more draws cannot undo them): it is
    rerun once from the start with the same seed at target_accept 0.99, counted as an extension,
    with the very draws a direct fit at 0.99 gives, whatever batch it was in."""
    data = short_fits[0]
    loose = dict(chains=2, warmup=50, draws=150, target_accept=0.6)
    plain = fit(data[1], PRIORS, **loose, seed=1)
    assert plain.divergences > 0 and plain.status == "not_converged"
    rerun = fit(data[1], PRIORS, **loose, seed=1, max_extensions=1)
    direct = fit(data[1], PRIORS, **{**loose, "target_accept": fitmod.RERUN_TARGET_ACCEPT}, seed=1)
    assert rerun.reruns == 1 and rerun.extensions == 1
    assert rerun.settings.target_accept == fitmod.RERUN_TARGET_ACCEPT
    assert rerun.divergences == direct.divergences == 0
    np.testing.assert_array_equal(rerun.posterior["tau"].values, direct.posterior["tau"].values)
    batch = fit_batch([data[0], data[1]], PRIORS, **loose, seeds=[2, 1], max_extensions=1)
    np.testing.assert_array_equal(batch[1].posterior["tau"].values, rerun.posterior["tau"].values)
    assert batch[1].reruns == 1


def test_parallel_chains_are_extended_with_the_sequential_draws():
    # 4 chains in 2 parts of 2 (the 2-chain programs of short_fits), extended in the same parts
    data = generate(SPEC, 11)[0]
    kw = dict(SHORT, chains=4)
    seq = fit(data, PRIORS, **kw, seed=1, max_extensions=2, chain_method="sequential")
    par = fit(data, PRIORS, **kw, seed=1, max_extensions=2, chain_method="parallel", chain_workers=2)
    assert seq.extensions >= 1 and par.extensions == seq.extensions and par.extra["chain_workers"] == 2
    for name in ("tau", "beta", "incl_prob"):
        np.testing.assert_array_equal(par.posterior[name].values, seq.posterior[name].values)
    np.testing.assert_array_equal(par.sample_stats["energy"].values, seq.sample_stats["energy"].values)
    assert par.converged == seq.converged and par.status == seq.status
