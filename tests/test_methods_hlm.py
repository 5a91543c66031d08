"""The two-stage HLM comparator: each step against a hand-checked example or a library."""

import math

import numpy as np
import pytest

from simstudy.methods import hlm as H


def test_location_reml_balanced_equals_anova():
    """Balanced random-intercept model, intercept only: REML = the ANOVA estimators
    sigma^2 = MSW, tau^2 = (MSB - MSW)/n (when positive), beta = grand mean, and
    u_j = tau^2/(tau^2 + sigma^2/n) (ybar_j - ybar)."""
    y = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 9.0, 11.0, 12.0, 14.0, 13.0])
    g = np.repeat(np.arange(4), 3)
    n, J = 3, 4
    ybar = y.reshape(J, n).mean(1)  # 2, 6, 10, 13
    msw = ((y.reshape(J, n) - ybar[:, None]) ** 2).sum() / (J * (n - 1))  # (2 + 8 + 2 + 2) / 8 = 1.75
    msb = n * ((ybar - y.mean()) ** 2).sum() / (J - 1)
    assert msw == pytest.approx(1.75)
    fit = H.reml_random_intercept(y, np.ones((12, 1)), g, J)
    tau2 = (msb - msw) / n
    assert fit.sigma2 == pytest.approx(msw, rel=1e-7)
    assert fit.tau2[0, 0] == pytest.approx(tau2, rel=1e-7)
    assert fit.beta[0] == pytest.approx(y.mean(), rel=1e-9)
    shrink = tau2 / (tau2 + msw / n)
    np.testing.assert_allclose(fit.u[:, 0], shrink * (ybar - y.mean()), rtol=1e-6)
    np.testing.assert_allclose(fit.resid, y - y.mean() - fit.u[g, 0], atol=1e-12)


def test_location_reml_matches_statsmodels_mixedlm_with_a_covariate():
    from statsmodels.regression.mixed_linear_model import MixedLM

    rng = np.random.default_rng(1)
    J = 12
    sizes = rng.integers(2, 9, J)
    g = np.repeat(np.arange(J), sizes)
    x = rng.normal(size=g.size)
    X = np.c_[np.ones(g.size), x]
    y = 1 + 0.5 * x + rng.normal(0, 0.7, J)[g] + rng.normal(size=g.size)
    fit = H.reml_random_intercept(y, X, g, J)
    ref = MixedLM(y, X, groups=g).fit(reml=True)
    np.testing.assert_allclose(fit.beta, ref.fe_params, rtol=1e-5)
    assert fit.sigma2 == pytest.approx(ref.scale, rel=1e-5)
    assert fit.tau2[0, 0] == pytest.approx(ref.cov_re[0, 0], rel=1e-4)
    u_ref = np.array([ref.random_effects[j].iloc[0] for j in range(J)])
    np.testing.assert_allclose(fit.u[:, 0], u_ref, atol=1e-5)


def test_location_reml_boundary_gives_zero_tau2():
    # group means identical: no between-group variance; REML sits on the boundary
    y = np.array([0.0, 2.0, 1.0, 1.0, 2.0, 0.0])
    g = np.array([0, 0, 1, 1, 2, 2])
    fit = H.reml_random_intercept(y, np.ones((6, 1)), g, 3)
    assert fit.tau2[0, 0] == 0.0
    np.testing.assert_allclose(fit.u, 0.0)


def test_log_sd_stats_by_hand_and_small_groups_unscored():
    resid = np.array([1.0, -1.0, 0.5, 2.0, 2.0, 5.0])
    g = np.array([0, 0, 0, 1, 1, 2])  # group 1 constant (s = 0), group 2 a singleton
    n, s, d, v = H.log_sd_stats(resid, g, 4)  # group 3 empty
    np.testing.assert_array_equal(n, [3, 2, 1, 0])
    s0 = np.std([1.0, -1.0, 0.5], ddof=1)
    assert s[0] == pytest.approx(s0)
    assert v[0] == pytest.approx(1 / 4) and d[0] == pytest.approx(math.log(s0) + 1 / 4)
    assert s[1] == 0.0 and np.isnan(d[1:]).all() and np.isnan(v[1:]).all()


def test_reml_meta_equal_variances_closed_form():
    """With equal v the REML estimate is max(0, S^2 - v), S^2 the sample variance."""
    d = np.array([0.1, -0.3, 0.5, 0.0, 0.25])
    s2 = np.var(d, ddof=1)  # 0.09325
    assert H.reml_meta(d, np.full(5, 0.02)) == pytest.approx(s2 - 0.02, rel=1e-8)
    assert H.reml_meta(d, np.full(5, 0.2)) == 0.0  # S^2 < v: boundary


def test_reml_meta_solves_the_reml_score_equation_with_unequal_variances():
    rng = np.random.default_rng(4)
    v = rng.uniform(0.01, 0.1, 40)
    d = rng.normal(0, np.sqrt(v + 0.05))
    tau2 = H.reml_meta(d, v)
    assert tau2 > 0
    w = 1 / (v + tau2)
    mu = (w * d).sum() / w.sum()
    # d l_R / d tau^2 = 1/2 [sum w^2 (d - mu)^2 - sum w + sum w^2 / sum w] = 0 at the optimum
    score = (w**2 * (d - mu) ** 2).sum() - w.sum() + (w**2).sum() / w.sum()
    assert abs(score) < 1e-6 * w.sum()


def test_meta_blups_hand_checked():
    """Equal v = 0.02, four groups: tau^2 = S^2 - v, lambda = tau^2/(tau^2+v), mu = mean(d),
    BLUP = lambda (d - mu), SE^2 = lambda v + lambda^2 (v + tau^2)/J (metafor's ranef)."""
    d = np.array([0.0, 0.2, 0.4, 1.0])
    v = np.full(4, 0.02)
    # mean 0.4; squared deviations 0.16, 0.04, 0, 0.36 -> S^2 = 0.56 / 3
    tau2 = H.reml_meta(d, v)
    assert tau2 == pytest.approx(0.56 / 3 - 0.02, rel=1e-8)
    mu, var_mu, blup, se, z = H.meta_blups(d, v, tau2)
    lam = tau2 / (tau2 + 0.02)
    assert mu == pytest.approx(0.4) and var_mu == pytest.approx((0.02 + tau2) / 4)
    np.testing.assert_allclose(blup, lam * (d - 0.4))
    np.testing.assert_allclose(se, np.sqrt(lam * 0.02 + lam**2 * (0.02 + tau2) / 4))
    np.testing.assert_allclose(z, blup / se)
    # no heterogeneity: every Z is 0 (the limit tau^2 -> 0), NaN inputs stay unscored
    z0 = H.meta_blups(np.array([0.1, np.nan, 0.2]), np.array([0.1, np.nan, 0.1]), 0.0)[4]
    assert z0[0] == 0.0 and z0[2] == 0.0 and np.isnan(z0[1])


def test_homogeneity_by_hand():
    d = np.array([0.0, 0.3, 0.6])
    v = np.array([0.1, 0.1, 0.05])
    dbar = (0 / 0.1 + 0.3 / 0.1 + 0.6 / 0.05) / (10 + 10 + 20)  # 0.375
    h = (0.375**2 + 0.075**2) / 0.1 + 0.225**2 / 0.05
    Hs, df, p = H.homogeneity(d, v)
    assert dbar == pytest.approx(0.375) and Hs == pytest.approx(h) and df == 2
    assert p == pytest.approx(math.exp(-h / 2))  # chi2 with 2 df: survival exp(-x/2)


def test_envelope_rule_matches_brute_force():
    rng_seed = 7
    z = np.array([0.3, -2.9, np.nan, 1.1, 2.4, -0.2, 0.05, -1.0, 3.5, np.nan, 0.7, -0.6])
    k = int(np.isfinite(z).sum())
    lo, hi = H.qq_envelope(k, np.random.default_rng(rng_seed), n_sims=1000)
    flags = H.flag_envelope(z, lo, hi)
    # brute force: the same 1000 samples, each sorted by hand; rank each finite Z by counting
    sims = np.random.default_rng(rng_seed).standard_normal((1000, k))
    order_stats = [sorted(row) for row in sims]
    for j, zj in enumerate(z):
        if not np.isfinite(zj):
            assert not flags[j]
            continue
        rank = sum(1 for x in z if np.isfinite(x) and x < zj)
        column = sorted(row[rank] for row in order_stats)
        lo_b = np.percentile(column, 2.5)
        hi_b = np.percentile(column, 97.5)
        assert flags[j] == (zj < lo_b or zj > hi_b), j
    assert flags[1] and flags[8]  # -2.9 and 3.5 lie outside at k = 10
    assert not flags[5]


def test_z_and_bh_rules():
    from statsmodels.stats.multitest import multipletests

    z = np.array([3.2, -2.5, 2.0, 1.0, np.nan, -0.1, 1.97, -1.95])
    np.testing.assert_array_equal(H.flag_z(z), [1, 1, 1, 0, 0, 0, 1, 0])
    p = H.two_sided_p(z)
    # hand check: p = 0.00137, 0.0124, 0.0455, 0.317, -, 0.920, 0.0488, 0.0512 (7 tests);
    # BH thresholds i/7 * 0.05: sorted p 0.00137 < 0.0071, 0.0124 < 0.0143, 0.0455 > 0.0214 ... -> two
    np.testing.assert_array_equal(H.flag_bh(z), [1, 1, 0, 0, 0, 0, 0, 0])
    ok = np.isfinite(z)
    np.testing.assert_array_equal(H.flag_bh(z)[ok], multipletests(p[ok], alpha=0.05, method="fdr_bh")[0])


def test_hlm_end_to_end_is_deterministic_and_flags_inconsistent_groups():
    from simstudy.study.generate import GeneratorSpec, generate

    spec = GeneratorSpec(n_groups=60, group_size=40, share_inconsistent=0.2, effect="fixed", magnitude=0.8)
    data, truth = generate(spec, 11)
    a, b = H.hlm(data, 5), H.hlm(data, 5)
    for k in H.COMPARATORS:
        np.testing.assert_array_equal(a.flags[k], b.flags[k])
    np.testing.assert_array_equal(a.z, b.z)
    np.testing.assert_allclose(a.score, np.abs(a.z))
    assert a.H_p < 1e-6  # strong heterogeneity of residual SDs
    delta = truth.delta.astype(bool)
    # |t| = 0.8 with n = 40 (v = 1/78): inconsistent groups lie ~7 SE out; |Z| > 1.96 finds them all
    assert a.flags["hlm_z"][delta].all()
    assert a.flags["hlm_z"][~delta].mean() < 0.2


def test_hlm_small_groups_get_no_score():
    from simstudy.model.data import MelsmData

    rng = np.random.default_rng(0)
    sizes = np.array([1, 8, 8, 8, 8, 8, 1, 8])
    g = np.repeat(np.arange(8), sizes)
    data = MelsmData.intercepts_only(rng.normal(size=g.size) * np.where(g == 3, 4.0, 1.0), g)
    res = H.hlm(data, 1)
    assert np.isnan(res.z[[0, 6]]).all() and np.isfinite(res.z[[1, 2, 3, 4, 5, 7]]).all()
    for k in H.COMPARATORS:
        assert not res.flags[k][[0, 6]].any()


def test_quartile_line_is_equivariant_and_recovers_a_normal_line():
    rng = np.random.default_rng(4)
    z = rng.normal(size=300)
    z[[3, 40]] = np.nan
    a, b = H.qq_line(z)
    a2, b2 = H.qq_line(4.0 * z - 1.5)  # a QQ line moves with the data: exactly (4 a - 1.5, 4 b)
    assert a2 == pytest.approx(4 * a - 1.5, rel=1e-12) and b2 == pytest.approx(4 * b, rel=1e-12)
    # exact normal quantiles lie on the line a = 2, b = 3
    from scipy.stats import norm

    q = 2.0 + 3.0 * norm.ppf((np.arange(1, 2002) - 0.5) / 2001)
    assert H.qq_line(q) == pytest.approx((2.0, 3.0), abs=2e-3)


def test_envelope_around_the_quartile_line():
    rng = np.random.default_rng(5)
    k = 60
    lo, hi = H.qq_envelope(k, np.random.default_rng(1))
    z = rng.normal(size=k)
    z[7] = 6.0  # one planted outlier
    flags = H.flag_envelope_line(z, lo, hi)
    assert flags[7]
    # the reference is the Z's own centre and spread: shifting and scaling (by a power of 2, so
    # exactly) changes nothing
    np.testing.assert_array_equal(H.flag_envelope_line(8.0 * z + 4.0, lo, hi), flags)
    # shrunken Z (tau^2 = 0 gives Z = 0 for every group): the identity-line envelope flags the
    # extreme ranks, the quartile-line envelope flags nothing
    zero = np.zeros(k)
    assert H.flag_envelope(zero, lo, hi).sum() >= 2 and not H.flag_envelope_line(zero, lo, hi).any()
    assert not H.flag_envelope_line(np.full(k, np.nan), lo, hi).any()


def test_quartile_line_rule_reproduces_the_published_study1_rates():
    """Two cells of the authors' Study 1, HLM only. Published (Study 1, 100 replicates per cell):
    FPR 0.057 at J = 150 (0.039 at 50, 0.074 at 300); null cells P(>= 1 false flag)
    0.19-0.47. Here 40 replicates: FPR SE ~0.006 (groups within a data set correlate: x2),
    P(>= 1) SE ~0.07; bands of about 3 SE. The identity-line rule (hlm) misses both."""
    from simstudy.study.design import load_design
    from simstudy.study.generate import generate

    design = load_design(__import__("pathlib").Path(__file__).parents[1] / "designs" / "paper_study1.toml")
    cells = {(c.generator["n_groups"], c.generator["group_size"], c.generator["share_inconsistent"],
              c.generator["slab_sd"]): c for c in design.cells()}
    null, slab = cells[(150, 50, 0.0, 0.312)], cells[(150, 50, 0.1, 0.668)]
    any_fp = {"hlm": [], "hlm_qq": []}
    for r in range(40):
        data, truth = generate(null.generator_spec(), null.seed(design.seed, r))
        res = H.hlm(data, r)
        for m in any_fp:
            any_fp[m].append(res.flags[m].any())
    assert 0.10 <= np.mean(any_fp["hlm_qq"]) <= 0.55
    assert np.mean(any_fp["hlm"]) > 0.9
    fp = {"hlm": [0, 0], "hlm_qq": [0, 0]}
    for r in range(40):
        data, truth = generate(slab.generator_spec(), slab.seed(design.seed, r))
        res = H.hlm(data, r)
        consistent = ~truth.delta.astype(bool)
        for m in fp:
            fp[m][0] += res.flags[m][consistent].sum()
            fp[m][1] += consistent.sum()
    assert 0.035 <= fp["hlm_qq"][0] / fp["hlm_qq"][1] <= 0.095
    assert fp["hlm"][0] / fp["hlm"][1] > 0.1
