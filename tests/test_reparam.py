"""The per-group, data-chosen centring of the scale effects (simstudy.model.reparam): an exact
change of variables, weights that follow the data, and the same posterior as non-centred."""

from functools import partial

import numpy as np
import pytest
from arviz_stats import ess
from numpyro.infer.util import constrain_fn, potential_energy

from simstudy.model.data import MelsmData
from simstudy.model.priors import Priors
from simstudy.model.reparam import location_data_dominate, scale_centring_weights
from simstudy.model.sampler import fit, initial_values
from simstudy.model.ssmelsm import hyper_arrays, model_arrays, ssmelsm, structure_for
from simstudy.study.generate import GeneratorSpec, generate


def _data(seed: int = 3) -> MelsmData:
    """Two location random effects, one scale random effect, tiny groups included."""
    rng = np.random.default_rng(seed)
    sizes = np.r_[1, 2, rng.integers(3, 40, 10)]
    g = np.repeat(np.arange(sizes.size), sizes)
    x = rng.normal(size=g.size)
    X = np.column_stack([np.ones(g.size), x])
    t = rng.normal(scale=0.6, size=sizes.size) * (rng.uniform(size=sizes.size) < 0.5)
    y = 1.0 + 0.5 * x + rng.normal(scale=0.5, size=sizes.size)[g] + rng.normal(size=g.size) * np.exp(t[g])
    return MelsmData.from_arrays(y, g, X, X.copy(), np.ones((g.size, 1)), np.ones((g.size, 1)))


@pytest.mark.parametrize("centered", [True, False])
def test_per_group_centring_is_a_change_of_variables(centered):
    """At the same (beta, eta, tau, correlations, u, t) the two parameterisations' potentials
    differ by exactly the log-Jacobian: a centred group's log N(t | m, s) = log N(z | 0, 1) - log s,
    so U_partial = U_noncentred + (number of centred groups) log s."""
    data = _data()
    priors = Priors(pi=0.3)
    s_nc = structure_for(data, priors, centered_location=centered, partial_scale=False)
    s_pc = structure_for(data, priors, centered_location=centered, partial_scale=True)
    a_nc, a_pc, hyper = model_arrays(data, s_nc), model_arrays(data, s_pc), hyper_arrays(data, priors)
    assert a_pc["scale_centred"][0] == 0.0  # a group of one is always non-centred
    rng = np.random.default_rng(1)
    # the identity holds for any choice, not only the data's
    centred = a_pc["scale_centred"] = (rng.uniform(size=data.n_groups) < 0.5).astype(float)
    a_pc["n_centred"] = np.float64(centred.sum())
    for _ in range(3):
        init = initial_values(data, s_nc, rng, chains=1)
        params = {k: v[0] + rng.normal(scale=0.3, size=v[0].shape) for k, v in init.items()}
        values = constrain_fn(partial(ssmelsm, structure=s_nc), (a_nc, hyper), {}, params, return_deterministic=True)
        tau, L, u, t = (np.asarray(values[k]) for k in ("tau", "L_corr", "u", "t"))
        z_loc = np.linalg.solve(L[:2, :2], (u / tau[:2]).T).T
        m = tau[2] * (z_loc @ L[2, :2])
        s = tau[2] * L[2, 2]
        x = np.where(centred > 0, t[:, 0], (t[:, 0] - m) / s)
        p_params = {k: v for k, v in params.items() if k not in ("z_scale", "z")}
        p_params["x_scale"] = x[:, None]
        if not centered:
            p_params["z"] = params["z"][:, :2]
        u_nc = float(potential_energy(partial(ssmelsm, structure=s_nc), (a_nc, hyper), {}, params))
        u_pc = float(potential_energy(partial(ssmelsm, structure=s_pc), (a_pc, hyper), {}, p_params))
        assert u_pc == pytest.approx(u_nc + np.sum(centred) * np.log(s), abs=1e-9 * max(1.0, abs(u_nc)))


def test_weights_follow_the_data():
    """Large clearly inconsistent groups are (nearly) centred, consistent ones non-centred."""
    spec = GeneratorSpec(n_groups=300, group_size=60, share_inconsistent=0.2, effect="fixed", magnitude=0.8)
    data, truth = generate(spec, 5)
    lam = scale_centring_weights(data)
    inconsistent = truth.delta.astype(bool)
    assert lam.min() >= 0.0 and lam.max() < 1.0
    assert lam[inconsistent].mean() > 0.85
    assert lam[~inconsistent].mean() < 0.2


def test_structure_centres_only_where_the_data_call_for_it():
    """The default picks the per-group program only when some group is centred."""
    few = generate(GeneratorSpec(n_groups=50, group_size=50, share_inconsistent=0.05, slab_sd=0.9), 1)[0]
    many = generate(GeneratorSpec(n_groups=50, group_size=75, share_inconsistent=0.25, slab_sd=0.67), 1)[0]
    assert not structure_for(few, Priors()).partial_scale
    assert structure_for(many, Priors()).partial_scale
    assert "scale_centred" not in model_arrays(few, structure_for(few, Priors()))


def test_weights_need_one_scale_effect():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(5), 4)
    W = np.column_stack([np.ones(20), rng.normal(size=20)])
    data = MelsmData.from_arrays(rng.normal(size=20), g, np.ones((20, 1)), np.ones((20, 1)), W, W)
    with pytest.raises(ValueError, match="one scale random effect"):
        scale_centring_weights(data)
    with pytest.raises(ValueError, match="one scale random effect"):
        structure_for(data, Priors(), partial_scale=True)


def test_same_posterior_as_non_centred():
    """Both parameterisations sample one posterior: PIPs and tau_t agree within Monte Carlo error
    (|difference| <= 4 joint MCSE; MCSE from each fit's bulk ESS)."""
    spec = GeneratorSpec(n_groups=30, group_size=30, share_inconsistent=0.3, slab_sd=1.0)
    data, _ = generate(spec, 11)
    assert np.sum(scale_centring_weights(data) >= 0.5) >= 5  # the partial form is really in use
    fits = [fit(data, Priors(pi=0.5), chains=2, warmup=300, draws=400, seed=3, partial_scale=p) for p in (False, None)]
    assert fits[1].structure.partial_scale and not fits[0].structure.partial_scale  # None: chosen from the data

    def mean_and_se(res, name, sel):
        draws = res.posterior[name].sel(sel).transpose("chain", "draw").values
        return float(draws.mean()), float(draws.std()) / np.sqrt(float(ess(draws, method="bulk")))

    checks = [("tau", {"random_effect": "scale:Intercept"})]
    checks += [("incl_prob", {"group": g, "scale_random": "Intercept"}) for g in fits[0].posterior.group.values]
    for name, sel in checks:
        (m0, se0), (m1, se1) = (mean_and_se(f, name, sel) for f in fits)
        assert abs(m0 - m1) <= 4.0 * np.hypot(se0, se1) + 1e-3, (name, sel, m0, m1)


def test_location_centred_unless_tau_u_looks_near_zero():
    """Centred location effects need data that outweigh tau_u's prior in the typical group:
    tau_u = 0.33 with n = 30 (n tau_u^2 / sigma^2 ~ 5) is centred, tau_u = 0.01 is not."""
    big = generate(GeneratorSpec(n_groups=50, group_size=30, tau_u=0.33), 2)[0]
    tiny = generate(GeneratorSpec(n_groups=50, group_size=30, tau_u=0.01), 2)[0]
    assert location_data_dominate(big) and structure_for(big, Priors()).centered_location
    assert not location_data_dominate(tiny) and not structure_for(tiny, Priors()).centered_location
    # small groups stay non-centred whatever tau_u
    small = generate(GeneratorSpec(n_groups=50, group_size=8, tau_u=0.33), 2)[0]
    assert not structure_for(small, Priors()).centered_location
