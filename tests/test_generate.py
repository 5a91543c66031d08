"""Tests for simstudy.study.generate: determinism, exact truth, distributional checks (tolerances
are ~5 Monte Carlo standard errors, the SE written next to each), validation and CSV export."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import digamma, polygamma

from simstudy.model.data import MelsmData
from simstudy.study.generate import (
    GeneratorSpec,
    SpecError,
    Truth,
    draw_group_sizes,
    generate,
    generate_many,
    n_inconsistent,
    saeb_school_sizes,
    slab_sd_from_ratio,
    spec_from_dict,
    uniform_bounds,
    write_csv,
)

Z = 5.0  # tolerance in Monte Carlo standard errors


def _arrays(data: MelsmData, truth: Truth) -> list[np.ndarray]:
    return [data.y, data.group, data.X, data.W, truth.delta, truth.t, truth.u, truth.sigma, truth.group_sizes]


def _log_var_bias(n):
    """E[log s^2] - log sigma^2 = digamma((n-1)/2) - log((n-1)/2); Var[log s^2] = trigamma((n-1)/2)."""
    a = (np.asarray(n, dtype=float) - 1) / 2
    return digamma(a) - np.log(a), polygamma(1, a)


# ---------------------------------------------------------------------------- determinism
def test_same_seed_identical_different_seed_differs():
    spec = GeneratorSpec(n_groups=30, group_size=20, size_dist="poisson", covariates=True, x_between_sd=0.5)
    ss = np.random.SeedSequence(11, spawn_key=(3, 4))
    for seed_a, seed_b in [(7, 7), (ss, ss), (np.random.default_rng(5), np.random.default_rng(5))]:
        for a, b in zip(_arrays(*generate(spec, seed_a)), _arrays(*generate(spec, seed_b))):
            np.testing.assert_array_equal(a, b)
    y1 = generate(spec, 1)[0].y
    y2 = generate(spec, 2)[0].y
    assert y1.shape != y2.shape or not np.array_equal(y1, y2)
    y3 = generate(spec, np.random.SeedSequence(11, spawn_key=(3, 5)))[0].y
    assert not np.array_equal(generate(spec, ss)[0].y[:10], y3[:10])


def test_global_random_state_untouched():
    np.random.seed(123)
    before = np.random.get_state()
    generate(GeneratorSpec(mode="prior", size_dist="uniform"), 1)
    after = np.random.get_state()
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])


def test_generator_seed_is_advanced_and_many():
    spec = GeneratorSpec(n_groups=5, group_size=4)
    rng = np.random.default_rng(0)
    a, b = generate_many(spec, [rng, rng])
    assert not np.array_equal(a[0].y, b[0].y)
    many = generate_many(spec, range(3))
    assert len(many) == 3 and all(isinstance(d, MelsmData) and isinstance(t, Truth) for d, t in many)


def test_none_seed_refused():
    with pytest.raises(TypeError, match="seed"):
        generate(GeneratorSpec(), None)


def test_components_have_independent_streams():
    """Changing the share leaves sizes, u and the noise alone: y agrees in groups consistent in both."""
    base = GeneratorSpec(n_groups=40, group_size=10, size_dist="poisson", share_inconsistent=0.0)
    d0, t0 = generate(base, 9)
    d1, t1 = generate(base.replace(share_inconsistent=0.25), 9)
    np.testing.assert_array_equal(t0.group_sizes, t1.group_sizes)
    np.testing.assert_array_equal(t0.u, t1.u)
    same = ~t1.delta[d1.group]
    np.testing.assert_array_equal(d0.y[same], d1.y[same])
    assert not np.array_equal(d0.y[~same], d1.y[~same])


# ---------------------------------------------------------------------------- structure
def test_dataset_layout_intercepts_only():
    data, truth = generate(GeneratorSpec(n_groups=12, group_size=7), 3)
    assert data.n_groups == 12 and data.n_obs == 84
    np.testing.assert_array_equal(data.group_labels, np.arange(12))
    np.testing.assert_array_equal(data.group, np.repeat(np.arange(12), 7))
    assert data.x_names == data.w_names == data.z_loc_names == data.z_scale_names == ("Intercept",)
    assert data.response == "y" and data.group_name == "group"
    np.testing.assert_array_equal(truth.sigma, np.exp(-0.25 + truth.t))
    frame = truth.to_frame()
    assert len(frame) == 12 and list(frame.columns[:6]) == ["group", "n", "delta", "t", "u", "sigma"]
    assert data.meta["generator_spec"]["n_groups"] == 12


def test_dataset_layout_covariates():
    spec = GeneratorSpec(n_groups=10, group_size=5, covariates=True, x_between_sd=1.0)
    data, truth = generate(spec, 4)
    assert data.x_names == data.w_names == ("Intercept", "x_within", "x_between")
    assert data.z_loc_names == data.z_scale_names == ("Intercept",)
    np.testing.assert_array_equal(data.X, data.W)
    np.testing.assert_array_equal(data.X[:, 2], truth.x_between[data.group])
    assert not data.scale_is_group_level


@pytest.mark.parametrize("J,share", [(50, 0.0), (50, 0.05), (50, 0.1), (50, 0.25), (100, 0.29), (37, 0.5), (50, 1.0)])
def test_exact_count(J, share):
    data, truth = generate(GeneratorSpec(n_groups=J, group_size=3, share_inconsistent=share), J)
    k = math.floor(round(share * J, 9))
    assert n_inconsistent(share, J) == k
    assert truth.delta.sum() == k == truth.params["n_inconsistent"]
    assert np.all(truth.t[~truth.delta] == 0.0)
    assert np.all(truth.t[truth.delta] != 0.0)


@pytest.mark.parametrize("effect", ["slab", "fixed"])
def test_direction(effect):
    common = dict(n_groups=200, group_size=2, share_inconsistent=0.35, effect=effect, magnitude=0.7)
    for direction, check in [("more_variable", np.greater), ("more_consistent", np.less)]:
        _, truth = generate(GeneratorSpec(direction=direction, **common), 1)
        assert np.all(check(truth.t[truth.delta], 0)) and np.all(truth.t[~truth.delta] == 0)
        if effect == "fixed":
            np.testing.assert_array_equal(np.abs(truth.t[truth.delta]), 0.7)
    _, truth = generate(GeneratorSpec(direction="both", **common), 1)
    pos, neg = np.sum(truth.t > 0), np.sum(truth.t < 0)
    if effect == "fixed":
        assert pos == neg == 35  # 70 inconsistent groups: exactly half each way
    else:
        assert pos > 0 and neg > 0


def test_fixed_both_odd_count_and_rho_sign():
    _, truth = generate(GeneratorSpec(n_groups=100, share_inconsistent=0.07, effect="fixed", group_size=2), 2)
    assert abs(np.sum(truth.t > 0) - np.sum(truth.t < 0)) == 1
    spec = GeneratorSpec(n_groups=2000, group_size=2, share_inconsistent=0.5, effect="fixed", rho=0.9)
    _, truth = generate(spec, 3)
    # with rho = 0.9 the positive half holds the larger u: the mean gap is ~1.3 tau_u, SE ~0.03 tau_u
    assert truth.u[truth.t > 0].mean() - truth.u[truth.t < 0].mean() > 0.5 * spec.tau_u


def test_bernoulli_count_mode():
    J, share = 4000, 0.2
    _, truth = generate(GeneratorSpec(n_groups=J, group_size=2, share_inconsistent=share, count_mode="bernoulli"), 5)
    se = math.sqrt(share * (1 - share) / J)  # 0.0063
    assert abs(truth.delta.mean() - share) < Z * se


def test_slab_sd_from_ratio():
    got = [round(slab_sd_from_ratio(s), 3) for s in (1.05, 1.10, 1.25, 1.50)]
    assert got == [0.312, 0.437, 0.668, 0.901]
    with pytest.raises(SpecError):
        slab_sd_from_ratio(1.0)


# ---------------------------------------------------------------------------- distributions
def test_within_group_sd_matches_sigma():
    """log s_j^2 - log sigma_j^2 - bias has mean 0 and SD sqrt(trigamma((n-1)/2)) = 0.204 (n = 50)."""
    spec = GeneratorSpec(n_groups=4000, group_size=50, share_inconsistent=0.25, slab_sd=0.668, eta0=-0.4)
    data, truth = generate(spec, 21)
    bias, var = _log_var_bias(50)
    log_s2 = 2 * np.log(data.stats.y_sd) - bias
    err = log_s2 - 2 * np.log(truth.sigma)
    for sel in (~truth.delta, truth.delta):  # 3000 consistent (SE 0.0037), 1000 inconsistent (SE 0.0065)
        assert abs(err[sel].mean()) < Z * math.sqrt(var / sel.sum())
    cons = ~truth.delta  # consistent groups: sigma = exp(eta0)
    assert abs(log_s2[cons].mean() - 2 * spec.eta0) < Z * math.sqrt(var / cons.sum())
    # inconsistent groups: slope of log s^2 on 2 (eta0 + t_j) is 1, SE sqrt(var / Sxx) ~ 0.005
    x = 2 * (spec.eta0 + truth.t[truth.delta])
    slope = np.polyfit(x, log_s2[truth.delta], 1)[0]
    assert abs(slope - 1) < Z * math.sqrt(var / np.sum((x - x.mean()) ** 2))
    # the standardised errors have variance 1 (SE ~ sqrt(2/J) = 0.022)
    assert abs(np.var(err / math.sqrt(var)) - 1) < Z * math.sqrt(2 / spec.n_groups)


def test_within_group_mean_matches_location():
    """Group means: ybar_j - gamma0 - u_j ~ N(0, sigma_j^2 / n), standardised mean SE 1/sqrt(J)."""
    spec = GeneratorSpec(n_groups=2000, group_size=20, gamma0=1.5, tau_u=0.8)
    data, truth = generate(spec, 8)
    zs = (data.stats.y_mean - spec.gamma0 - truth.u) / (truth.sigma / math.sqrt(20))
    assert abs(zs.mean()) < Z / math.sqrt(2000)
    assert abs(zs.var() - 1) < Z * math.sqrt(2 / 2000)


@pytest.mark.parametrize("rho", [0.6, -0.4, 0.0])
def test_location_scale_correlation_and_sds(rho):
    J = 2000
    spec = GeneratorSpec(n_groups=J, group_size=2, share_inconsistent=0.5, rho=rho, tau_u=0.5, slab_sd=0.901)
    _, truth = generate(spec, 100 + int(10 * rho))
    d = truth.delta
    m = int(d.sum())  # 1000 slab groups
    r = np.corrcoef(truth.u[d], truth.t[d])[0, 1]
    assert abs(np.arctanh(r) - np.arctanh(rho)) < Z / math.sqrt(m - 3)  # Fisher-z SE 0.032
    r_all = np.corrcoef(truth.u, truth.slab)[0, 1]
    assert abs(np.arctanh(r_all) - np.arctanh(rho)) < Z / math.sqrt(J - 3)
    # sample SD: relative SE ~ 1/sqrt(2(m-1)) = 0.016 (J) and 0.022 (m)
    assert abs(truth.u.std(ddof=1) / spec.tau_u - 1) < Z / math.sqrt(2 * (J - 1))
    assert abs(truth.t[d].std(ddof=1) / spec.slab_sd - 1) < Z / math.sqrt(2 * (m - 1))
    assert abs(truth.u.mean()) < Z * spec.tau_u / math.sqrt(J)


def test_random_effect_sds_large_J():
    """Sample SDs of u (all J) and t (slab groups): relative SE 1/sqrt(2(m-1)) = 0.005 and 0.007."""
    J = 20000
    spec = GeneratorSpec(n_groups=J, group_size=2, share_inconsistent=0.5, tau_u=0.33, slab_sd=0.437, rho=0.3)
    _, truth = generate(spec, 31)
    m = int(truth.delta.sum())
    assert abs(truth.u.std(ddof=1) / spec.tau_u - 1) < Z / math.sqrt(2 * (J - 1))
    assert abs(truth.t[truth.delta].std(ddof=1) / spec.slab_sd - 1) < Z / math.sqrt(2 * (m - 1))
    assert abs(truth.slab.std(ddof=1) / spec.slab_sd - 1) < Z / math.sqrt(2 * (J - 1))


def test_covariate_coefficients_recovered():
    """Given the true u_j and t_j: GLS of y - gamma0 - u on (xw, xb) with the true weights
    recovers beta (exact SE from (A'WA)^-1); OLS of log r^2 - 2 t on (1, xw, xb), where
    r = y - mu, recovers 2 eta (iid errors log eps^2 with variance trigamma(1/2) = pi^2/2)."""
    spec = GeneratorSpec(
        n_groups=500, group_size=100, covariates=True, x_between_sd=0.7, x_within_sd=1.2,
        beta_within=0.4, beta_between=-0.8, eta_within=0.4, eta_between=-0.3, gamma0=0.5, eta0=-0.5,
    )  # fmt: skip
    data, truth = generate(spec, 17)
    xw, xb, g = data.X[:, 1], data.X[:, 2], data.group
    assert abs(xb[np.unique(g, return_index=True)[1]].std(ddof=1) / 0.7 - 1) < Z / math.sqrt(2 * 499)
    assert abs(xw.std() / 1.2 - 1) < Z / math.sqrt(2 * data.n_obs)
    sig = np.exp(spec.eta0 + truth.t[g] + spec.eta_within * xw + spec.eta_between * xb)
    A = np.column_stack([xw, xb]) / sig[:, None]
    b = (data.y - spec.gamma0 - truth.u[g]) / sig
    beta, *_ = np.linalg.lstsq(A, b, rcond=None)
    se = np.sqrt(np.diag(np.linalg.inv(A.T @ A)))  # ~0.003 and ~0.002
    assert np.all(np.abs(beta - [spec.beta_within, spec.beta_between]) < Z * se)

    r = data.y - spec.gamma0 - truth.u[g] - spec.beta_within * xw - spec.beta_between * xb
    A = np.column_stack([np.ones_like(xw), xw, xb])
    coef, *_ = np.linalg.lstsq(A, np.log(r**2) - 2 * truth.t[g], rcond=None)
    se = np.sqrt(np.pi**2 / 2 * np.diag(np.linalg.inv(A.T @ A)))  # ~0.010, 0.008, 0.015
    expect = [2 * spec.eta0 + digamma(0.5) + math.log(2), 2 * spec.eta_within, 2 * spec.eta_between]
    assert np.all(np.abs(coef - expect) < Z * se)
    assert truth.params["beta_within"] == 0.4 and truth.params["eta_between"] == -0.3


# ---------------------------------------------------------------------------- group sizes
def test_poisson_sizes():
    J, n = 4000, 50
    sizes = draw_group_sizes(GeneratorSpec(n_groups=J, group_size=n, size_dist="poisson"), np.random.default_rng(1))
    lam = n - 2
    assert sizes.min() >= 2
    assert abs(sizes.mean() - n) < Z * math.sqrt(lam / J)  # SE 0.11
    assert abs(sizes.var(ddof=1) - lam) < Z * math.sqrt((lam + 2 * lam**2) / J)  # SE 1.08
    data, truth = generate(GeneratorSpec(n_groups=30, group_size=2, size_dist="poisson"), 2)
    np.testing.assert_array_equal(data.group_sizes, truth.group_sizes)
    assert truth.group_sizes.min() >= 2


def test_uniform_sizes():
    J = 3000
    spec = GeneratorSpec(n_groups=J, size_dist="uniform", size_min=3, size_max=12)
    sizes = draw_group_sizes(spec, np.random.default_rng(2))
    assert sizes.min() == 3 and sizes.max() == 12 and len(np.unique(sizes)) == 10
    assert abs(sizes.mean() - 7.5) < Z * math.sqrt((10**2 - 1) / 12 / J)  # SE 0.052
    assert uniform_bounds(GeneratorSpec(size_dist="uniform", group_size=50)) == (25, 75)
    data, truth = generate(GeneratorSpec(n_groups=20, size_dist="uniform", size_min=2, size_max=4), 3)
    np.testing.assert_array_equal(data.group_sizes, truth.group_sizes)


def test_saeb_sizes():
    ref = saeb_school_sizes()
    assert len(ref) == 160 and ref.sum() == 11386 and ref.min() == 1 and ref.max() == 493
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Saeb has a singleton school
        data, truth = generate(GeneratorSpec(n_groups=300, size_dist="saeb"), 4)
    assert set(truth.group_sizes) <= set(ref) and truth.group_sizes.min() >= 1
    np.testing.assert_array_equal(data.group_sizes, truth.group_sizes)
    assert len(set(truth.group_sizes)) > 50  # resampled, not one repeated size


# ---------------------------------------------------------------------------- prior mode
def test_prior_mode_share_and_structure():
    J, pi = 4000, 0.3
    _, truth = generate(GeneratorSpec(n_groups=J, group_size=2, mode="prior", pi=pi), 6)
    assert abs(truth.delta.mean() - pi) < Z * math.sqrt(pi * (1 - pi) / J)  # SE 0.0072
    assert np.all(truth.t[~truth.delta] == 0)
    p = truth.params
    assert p["pi"] == pi and p["tau_u"] > 0 and p["tau_t"] > 0 and -1 < p["rho"] < 1
    assert abs(truth.u.std(ddof=1) / p["tau_u"] - 1) < Z / math.sqrt(2 * (J - 1))


def test_prior_mode_hyperparameters_follow_prior():
    """half_normal(0.5): mean 0.5 sqrt(2/pi) = 0.399, SD 0.301; rho ~ U(-1, 1): mean 0, SD 0.577."""
    R = 400
    draws = [generate(GeneratorSpec(n_groups=3, group_size=2, mode="prior"), s)[1].params for s in range(R)]
    tau_u = np.array([p["tau_u"] for p in draws])
    tau_t = np.array([p["tau_t"] for p in draws])
    rho = np.array([p["rho"] for p in draws])
    mean, sd = 0.5 * math.sqrt(2 / math.pi), 0.5 * math.sqrt(1 - 2 / math.pi)
    for tau in (tau_u, tau_t):
        assert abs(tau.mean() - mean) < Z * sd / math.sqrt(R)  # SE 0.015
    assert abs(rho.mean()) < Z * math.sqrt(1 / 3 / R)  # SE 0.029
    assert np.corrcoef(tau_u, tau_t)[0, 1] < Z / math.sqrt(R)


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(n_groups=1), "n_groups"),
        (dict(group_size=0), "group_size"),
        (dict(group_size=1, size_dist="poisson"), "group_size"),
        (dict(share_inconsistent=-0.1), "share_inconsistent"),
        (dict(share_inconsistent=1.5), "share_inconsistent"),
        (dict(tau_u=-1.0), "tau_u"),
        (dict(slab_sd=0.0), "slab_sd"),
        (dict(magnitude=-0.5), "magnitude"),
        (dict(x_within_sd=-1.0), "x_within_sd"),
        (dict(covariates=True), "x_between_sd"),
        (dict(rho=1.0), "rho"),
        (dict(rho=-1.2), "rho"),
        (dict(pi=1.0), "pi"),
        (dict(size_dist="gamma"), "size_dist"),
        (dict(count_mode="approx"), "count_mode"),
        (dict(effect="huge"), "effect"),
        (dict(direction="up"), "direction"),
        (dict(mode="posterior"), "mode"),
        (dict(size_dist="uniform", size_min=10, size_max=5), "size_min"),
        (dict(size_min=0), "size_min"),
        (dict(prior_scale_sd="half_t(3)"), "prior_scale_sd"),
        (dict(n_groups="50"), "n_groups"),
        (dict(n_groups=50.0), "n_groups"),
        (dict(tau_u="big"), "tau_u"),
        (dict(eta0=float("nan")), "eta0"),
        (dict(covariates=1), "covariates"),
        (dict(size_dist=3), "size_dist"),
    ],
)
def test_invalid_specs(kwargs, field):
    with pytest.raises(SpecError, match=field):
        GeneratorSpec(**kwargs)
    with pytest.raises(SpecError, match=field):
        spec_from_dict(kwargs)


def test_unknown_string_lists_allowed():
    with pytest.raises(SpecError, match="balanced.*poisson.*uniform.*saeb"):
        GeneratorSpec(size_dist="lognormal")


def test_spec_from_dict():
    spec = spec_from_dict({"n_groups": 150, "share_inconsistent": 0.05, "size_dist": "Poisson", "slab_sd": 1})
    assert spec == GeneratorSpec(n_groups=150, share_inconsistent=0.05, size_dist="poisson", slab_sd=1.0)
    assert isinstance(spec.slab_sd, float)
    with pytest.raises(SpecError, match="n_group.*did you mean 'n_groups'"):
        spec_from_dict({"n_group": 50})
    with pytest.raises(SpecError, match="wibble"):
        spec_from_dict({"wibble": 1})
    assert spec_from_dict({"prior_scale_sd": "half_t(3,1)"}).prior_scale_sd == "half_t(3, 1)"
    assert hash(spec) == hash(spec_from_dict({**spec.__dict__}))


# ---------------------------------------------------------------------------- CSV export
@pytest.mark.parametrize("covariates", [False, True])
def test_write_csv_round_trip(tmp_path, covariates):
    spec = GeneratorSpec(n_groups=15, size_dist="uniform", size_min=2, size_max=9, covariates=covariates,
                         x_between_sd=0.5, beta_within=0.3, share_inconsistent=0.4)  # fmt: skip
    data, truth = generate(spec, 12)
    out = tmp_path / "nested" / "cell"
    write_csv(data, truth, out)
    assert sorted(p.name for p in out.iterdir()) == ["data.csv", "truth.csv"]  # no temp files left
    d = pd.read_csv(out / "data.csv", float_precision="round_trip")
    t = pd.read_csv(out / "truth.csv", float_precision="round_trip")
    cols = ["group", "y"] + (["x_within", "x_between"] if covariates else [])
    assert list(d.columns) == cols
    assert list(t.columns) == ["group", "n", "delta", "t", "u", "sigma"]
    np.testing.assert_array_equal(d["y"], data.y)
    np.testing.assert_array_equal(d["group"], data.group)
    if covariates:
        np.testing.assert_array_equal(d[["x_within", "x_between"]].to_numpy(), data.X[:, 1:])
    np.testing.assert_array_equal(t["group"], np.arange(15))
    np.testing.assert_array_equal(t["n"], truth.group_sizes)
    np.testing.assert_array_equal(t["delta"].astype(bool), truth.delta)
    for name in ("t", "u", "sigma"):
        np.testing.assert_array_equal(t[name], getattr(truth, name))
    rebuilt = MelsmData.intercepts_only(d["y"].to_numpy(), d["group"].to_numpy())
    np.testing.assert_array_equal(rebuilt.group_sizes, truth.group_sizes)
    write_csv(data, truth, out)  # overwriting is fine


def test_prior_mode_draws_pi_from_the_beta():
    """pi = "beta(2, 5)": each dataset draws pi ~ Beta(2, 5) (mean 2/7, SD 0.160), then
    delta_j ~ Bernoulli(pi). KS distance below the 1% critical value 1.63 / sqrt(R); the
    share of inconsistent groups tracks the drawn pi (J = 400: SD <= 0.025)."""
    from scipy import stats

    R = 600
    spec = GeneratorSpec(n_groups=400, group_size=1, mode="prior", pi="beta(2, 5)")
    truths = [generate(spec, s)[1] for s in range(R)]
    pi = np.array([t.params["pi"] for t in truths])
    share = np.array([t.delta.mean() for t in truths])
    assert stats.kstest(pi, stats.beta(2, 5).cdf).statistic < 1.63 / math.sqrt(R)
    assert abs(pi.mean() - 2 / 7) < Z * stats.beta(2, 5).std() / math.sqrt(R)
    assert np.max(np.abs(share - pi)) < Z * 0.025
    # a fixed pi is not a draw: the same seed gives the same indicators as before
    fixed = generate(GeneratorSpec(n_groups=400, group_size=1, mode="prior", pi=0.3), 1)[1]
    assert fixed.params["pi"] == 0.3
    with pytest.raises(SpecError, match="beta"):
        GeneratorSpec(mode="prior", pi="beta(1)")
