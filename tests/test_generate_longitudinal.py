"""The longitudinal generator: AR(1) residuals (lag-1 autocorrelation, marginal SD, lags across
missing occasions), dropout shares, random slopes, determinism, truth, validation and CSV export.
Tolerances are Z = 5 Monte Carlo standard errors (each SE computed from independent persons)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from simstudy.cli import app
from simstudy.study.generate import GeneratorSpec, SpecError, generate, write_csv
from simstudy.study.generate_longitudinal import LongitudinalTruth, ar1_unit, occasion_times

Z = 5.0


def _long(**kw) -> GeneratorSpec:
    return GeneratorSpec(layout="longitudinal", **kw)


def _standardised_residuals(data, truth, spec):
    """a_jk = (y - mu_jk) / sigma_jk from the true parameters."""
    g, time = data.group, truth.time
    mu = spec.gamma0 + truth.u[g] + (spec.gamma1 + truth.u1[g]) * time
    sigma = np.exp(spec.eta0 + spec.eta1 * time + truth.t[g])
    return (data.y - mu) / sigma


def _person_mean(values, persons, J):
    """Per-person means of ``values`` (persons with none dropped) -> mean and its SE."""
    n = np.bincount(persons, minlength=J)
    m = np.bincount(persons, weights=values, minlength=J)[n > 0] / n[n > 0]
    return m.mean(), m.std(ddof=1) / np.sqrt(m.size)


# ------------------------------------------------------------------------------ AR(1) residuals
@pytest.mark.parametrize("phi", [0.0, 0.3, 0.6, -0.4])
def test_ar1_lag1_autocorrelation_and_marginal_sd(phi):
    J, T = 1500, 12
    spec = _long(n_groups=J, group_size=T, phi=phi, gamma1=0.5, eta1=0.4, tau_u1=0.3, rho_u01=0.5,
                 share_inconsistent=0.2, slab_sd=0.668)
    data, truth = generate(spec, 11)
    a = _standardised_residuals(data, truth, spec)
    # marginal variance 1 overall and at the first and last occasion (stationarity)
    mean, se = _person_mean(a**2, data.group, J)
    assert abs(mean - 1.0) < Z * se
    for k in (1, T):
        ak = a[truth.occasion == k]
        assert abs(ak.var() - 1.0) < Z * np.sqrt(2.0 / ak.size)
    # lag-1 autocorrelation phi: E[a_k a_{k-1}] = phi (unit variance)
    pair = np.flatnonzero(np.diff(truth.occasion) == 1)  # same person, consecutive occasions
    mean, se = _person_mean(a[pair] * a[pair + 1], data.group[pair], J)
    assert abs(mean - phi) < Z * se


def test_missing_occasions_are_dropped_after_the_ar_process():
    """With MCAR gaps the kept neighbours k and k + h correlate phi^h: the process ran over
    every planned occasion."""
    J, T, phi = 1500, 10, 0.6
    spec = _long(n_groups=J, group_size=T, phi=phi, dropout=0.4, tau_u1=0.0)
    data, truth = generate(spec, 5)
    a = _standardised_residuals(data, truth, spec)
    same = data.group[1:] == data.group[:-1]
    gap = np.diff(truth.occasion)
    for h in (1, 2, 3):
        pair = np.flatnonzero(same & (gap == h))
        mean, se = _person_mean(a[pair] * a[pair + 1], data.group[pair], J)
        assert abs(mean - phi**h) < Z * se, h


def test_ar1_unit_recursion_exact():
    g, k, time = occasion_times(np.array([3, 1 + 1, 4]))
    np.testing.assert_array_equal(k, [1, 2, 3, 1, 2, 1, 2, 3, 4])
    np.testing.assert_allclose(time, [0, 0.5, 1, 0, 1, 0, 1 / 3, 2 / 3, 1])
    eps = np.arange(1.0, 10.0)
    a = ar1_unit(eps, g, k, 0.5)
    c = np.sqrt(0.75)
    np.testing.assert_allclose(a[:3], [1, 0.5 * 1 + c * 2, 0.5 * (0.5 + c * 2) + c * 3])
    assert a[3] == 4 and a[5] == 6  # every person starts afresh at a_1 = eps_1
    np.testing.assert_array_equal(ar1_unit(eps, g, k, 0.0), eps)


# ------------------------------------------------------------------------------ dropout
def test_mcar_dropout_removes_the_stated_share():
    J, T, d = 600, 10, 0.2
    data, truth = generate(_long(n_groups=J, group_size=T, dropout=d), 3)
    q = d * T / (T - 1)
    se = np.sqrt(J * (T - 1) * q * (1 - q)) / (J * T)
    assert abs(truth.params["share_missing"] - d) < Z * se
    assert truth.params["share_missing"] == 1 - data.n_obs / (J * T)
    assert np.all(np.bincount(data.group, weights=truth.occasion == 1) == 1)  # baseline always observed


def test_monotone_dropout_removes_the_stated_share_and_is_monotone():
    J, T, m = 800, 10, 0.2
    data, truth = generate(_long(n_groups=J, group_size=T, dropout_monotone=m), 4)
    p = 2 * m
    e_u2 = (T - 1) * (2 * T - 1) / 6  # E[U^2], U ~ Uniform{1..T-1} occasions lost by a dropper
    var_m = p * e_u2 - (p * T / 2) ** 2
    se = np.sqrt(J * var_m) / (J * T)
    assert abs(truth.params["share_missing"] - m) < Z * se
    # monotone: every person keeps occasions 1..n_j, nothing after a gap
    starts = np.cumsum(truth.group_sizes) - truth.group_sizes
    np.testing.assert_array_equal(truth.occasion, np.arange(data.n_obs) - np.repeat(starts, truth.group_sizes) + 1)
    dropped = truth.group_sizes < T
    assert truth.params["n_dropped_out"] == dropped.sum()
    assert abs(dropped.mean() - p) < Z * np.sqrt(p * (1 - p) / J)


def test_both_dropout_kinds_combine_as_documented():
    J, T, m, d = 1500, 8, 0.15, 0.1
    _, truth = generate(_long(n_groups=J, group_size=T, dropout=d, dropout_monotone=m), 9)
    expected = m + d - m * d * T / (T - 1)
    assert abs(truth.params["share_missing"] - expected) < 0.01  # SE ~0.003


def test_missingness_is_nested_across_shares_and_leaves_effects_alone():
    base = _long(n_groups=40, group_size=12, phi=0.3, share_inconsistent=0.2)
    d0, t0 = generate(base, 8)
    d1, t1 = generate(base.replace(dropout=0.3, phi=0.5), 8)
    for name in ("u", "u1", "t", "delta", "slab"):
        np.testing.assert_array_equal(getattr(t0, name), getattr(t1, name))
    d2, t2 = generate(base.replace(dropout=0.15, phi=0.5), 8)
    kept1 = set(zip(d1.group, t1.occasion))
    kept2 = set(zip(d2.group, t2.occasion))
    assert kept1 < kept2  # a smaller share removes a subset of the same occasions


# ------------------------------------------------------------------------------ random effects, truth
def test_random_slopes_sds_and_correlation():
    J = 4000
    _, truth = generate(_long(n_groups=J, group_size=3, tau_u=0.5, tau_u1=0.3, rho_u01=-0.4, rho=0.5,
                              share_inconsistent=1.0, slab_sd=0.668), 2)
    for x, sd in ((truth.u, 0.5), (truth.u1, 0.3)):
        assert abs(x.std() / sd - 1) < Z / np.sqrt(2 * J)
    z = np.arctanh
    assert abs(z(np.corrcoef(truth.u, truth.u1)[0, 1]) - z(-0.4)) < Z / np.sqrt(J - 3)
    # the slab keeps corr rho with u0, hence rho * rho_u01 with u1
    assert abs(z(np.corrcoef(truth.u1, truth.t)[0, 1]) - z(-0.2)) < Z / np.sqrt(J - 3)


def test_truth_records_the_realised_occasions_and_ragged_sizes():
    spec = _long(n_groups=30, group_size=8, size_dist="poisson", dropout=0.2, gamma1=1.0)
    data, truth = generate(spec, 1)
    assert isinstance(truth, LongitudinalTruth)
    np.testing.assert_array_equal(truth.group_sizes, data.group_sizes)
    assert truth.occasion.shape == truth.time.shape == data.y.shape
    np.testing.assert_allclose(truth.time, (truth.occasion - 1) / (truth.n_planned[data.group] - 1))
    np.testing.assert_array_equal(data.X[:, 1], truth.time)
    assert data.x_names == ("Intercept", "time") and data.z_loc_names == ("Intercept", "time")
    assert data.w_names == ("Intercept",) and data.scale_is_group_level
    assert (truth.occasion <= truth.n_planned[data.group]).all()
    assert truth.params["phi"] == 0.0 and truth.params["gamma1"] == 1.0 and truth.params["layout"] == "longitudinal"
    np.testing.assert_allclose(truth.sigma, np.exp(spec.eta0 + truth.t))


def test_fitted_design_switches():
    d, _ = generate(_long(n_groups=10, group_size=5, location_random_slope=False, scale_time=True, eta1=0.3), 1)
    assert d.z_loc_names == ("Intercept",) and d.w_names == ("Intercept", "time")
    assert not d.scale_is_group_level  # scale_time: the per-observation likelihood path


def test_same_seed_same_data():
    spec = _long(n_groups=25, group_size=9, size_dist="uniform", phi=0.4, dropout=0.1, dropout_monotone=0.1)
    ss = np.random.SeedSequence(4, spawn_key=(1, 2))
    (da, ta), (db, tb) = generate(spec, ss), generate(spec, ss)
    for a, b in ((da.y, db.y), (da.group, db.group), (ta.occasion, tb.occasion), (ta.u1, tb.u1), (ta.t, tb.t)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(generate(spec, 5)[0].y[:5], da.y[:5])


# ------------------------------------------------------------------------------ cross-sectional unchanged
def _fingerprint(data, truth) -> str:
    h = hashlib.sha256()
    for a in (data.y, data.group, data.X, data.W, data.Z_loc, data.Z_scale, truth.delta, truth.t, truth.u,
              truth.sigma, truth.slab, truth.x_between, truth.group_sizes):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


@pytest.mark.parametrize("kw, digest", [
    (dict(n_groups=30, group_size=20, size_dist="poisson", covariates=True, x_between_sd=0.5, rho=0.4,
          beta_within=0.3, eta_between=0.2), "347841117f8969a5c3d421b377ccb8a2"),
    (dict(n_groups=40, group_size=8, effect="fixed", direction="both", share_inconsistent=0.3),
     "1390c81e3ce8c0df3dcbe79801ba0ad5"),
])
def test_cross_sectional_output_is_unchanged(kw, digest):
    """Digests of the cross-sectional generator's arrays from before the longitudinal layout."""
    assert _fingerprint(*generate(GeneratorSpec(**kw), 123)) == digest


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("kw, field", [
    (dict(phi=0.3), "phi"),  # cross-sectional layout
    (dict(dropout=0.1), "dropout"),
    (dict(location_random_slope=False), "location_random_slope"),
    (dict(layout="longitudinal", phi=1.0), "phi"),
    (dict(layout="longitudinal", dropout=0.6), "dropout"),
    (dict(layout="longitudinal", dropout_monotone=-0.1), "dropout_monotone"),
    (dict(layout="longitudinal", rho_u01=1.0), "rho_u01"),
    (dict(layout="longitudinal", tau_u1=-0.1), "tau_u1"),
    (dict(layout="longitudinal", size_dist="saeb"), "size_dist"),
    (dict(layout="longitudinal", group_size=1), "group_size"),
    (dict(layout="longitudinal", size_dist="uniform", size_min=1, size_max=5), "size_min"),
    (dict(layout="longitudinal", covariates=True, x_between_sd=1.0), "covariates"),
    (dict(layout="panel"), "layout"),
])
def test_invalid_longitudinal_specs_name_the_field(kw, field):
    with pytest.raises(SpecError, match=rf"^{field}\b"):
        GeneratorSpec(**kw)


# ------------------------------------------------------------------------------ export
def test_write_csv_and_cli_export_time_and_occasion(tmp_path):
    spec = _long(n_groups=8, group_size=6, phi=0.3, dropout=0.2)
    data, truth = generate(spec, 2)
    write_csv(data, truth, tmp_path / "a")
    frame = pd.read_csv(tmp_path / "a" / "data.csv")
    assert list(frame.columns) == ["group", "y", "time", "occasion"]
    np.testing.assert_allclose(frame["y"], data.y)
    np.testing.assert_allclose(frame["time"], truth.time)
    groups = pd.read_csv(tmp_path / "a" / "truth.csv")
    assert list(groups.columns) == ["group", "n", "n_planned", "delta", "t", "u", "u1", "sigma"]
    np.testing.assert_allclose(groups["u1"], truth.u1)

    result = CliRunner().invoke(app, ["generate", "--seed", "2", "--out", str(tmp_path / "b"), "--set",
                                      "layout=longitudinal", "--set", "n_groups=8", "--set", "group_size=6",
                                      "--set", "phi=0.3", "--set", "dropout=0.2"])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b" / "data.csv"), frame)
