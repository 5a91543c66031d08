"""Issue 22, the real-data commands as a user runs them (``simstudy`` in a subprocess, from a
working directory outside the repository), and the defects found that way:

* item 1: ``simstudy fit`` with no group at the threshold (pandas >= 3: the flagged-groups
  table of an empty selection took the full index and crashed on NaN rows), 2 groups, and
  single-observation groups;
* item 2: ``simstudy compare`` (the threaded PSIS-LOO raced the lazy ``jax`` module that
  ``import arviz_base`` leaves in ``sys.modules``);
* item 8: formulas are data, never Python code (``np.save``, ``pd.read_pickle``, ``__import__``
  refused before any evaluation; the documented transforms still work);
* item 10: inputs that were accepted but broken (a degenerate Beta hyperprior on pi, a response
  shifted by 1e9 or scaled by 1e6 / 1e300, a constant predictor);
* item 11: ``groups.csv`` cells a spreadsheet would run, ``simstudy hlm``'s raw warnings.

Small fits only: 10 groups (the intercept-only model's sufficient-statistics program depends on
J, not on the group sizes, so every 10-group fit here shares one compiled sampler), 2 chains x
(100 + 100) draws.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SIMSTUDY = Path(sys.executable).with_name("simstudy")
LOC, SCALE = "y ~ 1 + (1 | group)", "~ 1 + (1 | group)"
MCMC = ["--chains", "2", "--warmup", "100", "--draws", "100"]


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.pop("PYTHONPATH", None)  # the installed package, as a user has it
    return env


def simstudy(*args, cwd, timeout: int = 600) -> subprocess.CompletedProcess:
    """``simstudy ARGS`` in ``cwd`` (outside the repository), output captured."""
    cmd = [str(SIMSTUDY)] if SIMSTUDY.exists() else [sys.executable, "-m", "simstudy.cli"]
    return subprocess.run(cmd + [str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def python(code: str, *, cwd, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -c CODE`` in a fresh process in ``cwd``."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A user's working directory, outside the repository."""
    d = tmp_path_factory.mktemp("user")
    assert ROOT not in d.resolve().parents
    return d


@pytest.fixture(scope="module")
def null_data(workdir) -> Path:
    """The issue's data: 10 groups of 30, no inconsistent group (``simstudy generate``)."""
    _ok(simstudy("generate", "--seed", "3", "--set", "n_groups=10", "--set", "group_size=30", "--set",
                 "share_inconsistent=0", "--out", "g0", cwd=workdir))
    return workdir / "g0" / "data.csv"


@pytest.fixture(scope="module")
def null_fits(workdir, null_data) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """Two fits of the null data written with ``--out`` (pi = 0.5 and pi = 0.2)."""
    first = simstudy("fit", null_data, "--location", LOC, "--scale", SCALE, *MCMC, "--out", "fit_a", cwd=workdir)
    _ok(simstudy("fit", null_data, "--location", LOC, "--scale", SCALE, *MCMC, "--pi", "0.2", "--seed", "1",
                 "--out", "fit_b", cwd=workdir))
    return workdir / "fit_a", workdir / "fit_b", first


# ====================================================================== item 1: no group flagged
def test_fit_with_no_group_at_the_threshold_prints_and_writes(null_fits):
    a, _, proc = null_fits
    _ok(proc)
    assert "Groups with PIP ≥ 0.75 (pi = 0.5): 0 of 10" in proc.stdout
    assert "wrote" in proc.stdout
    groups = pd.read_csv(a / "groups.csv")
    assert len(groups) == 10 and not groups["flagged"].any()
    assert json.loads((a / "fit.json").read_text())["n_flagged"] == 0


class _StubFit:
    """Just what :func:`simstudy.realdata.summary.flagged_groups` reads."""

    def __init__(self, pips):
        self.pips = np.asarray(pips, dtype=float)

    def groups_table(self, threshold):
        k = len(self.pips)
        table = pd.DataFrame({"group": [f"g{i}" for i in range(k)], "n": np.full(k, 5), "observed_sd": np.ones(k),
                              "pip": self.pips, "bf10": self.pips / (1 - self.pips), "within_sd": np.ones(k),
                              "mean": np.zeros(k)})
        table["flagged"] = table["pip"] >= threshold
        return table


@pytest.mark.parametrize("pips, expected", [
    ([0.1, 0.2, 0.3], []),  # none at the threshold: an empty table, not NaN rows
    ([0.8, 0.2, 0.95, 0.76], ["g2", "g0", "g3"]),  # highest PIP first
    ([0.1, 0.9], ["g1"]),  # two groups
])
def test_flagged_groups_selects_then_orders(pips, expected):
    from simstudy.realdata.summary import flagged_groups

    table = flagged_groups(_StubFit(pips), 0.75)
    assert table["group"].tolist() == expected
    assert not table.isna().any().any()


def test_fit_with_two_groups_and_with_single_observation_groups(workdir):
    rng = np.random.default_rng(4)
    pd.DataFrame({"group": np.repeat(["a", "b"], 15), "y": rng.normal(size=30)}).to_csv(workdir / "two.csv",
                                                                                      index=False)
    proc = _ok(simstudy("fit", "two.csv", "--location", LOC, "--scale", SCALE, *MCMC, "--out", "fit_two",
                        cwd=workdir))
    assert "of 2" in proc.stdout and (workdir / "fit_two" / "groups.csv").is_file()
    # 10 groups of one observation each, except one pair (y must vary within some group... or not:
    # the model needs only a varying response overall)
    pd.DataFrame({"group": list(range(10)), "y": rng.normal(size=10)}).to_csv(workdir / "single.csv", index=False)
    proc = _ok(simstudy("fit", "single.csv", "--location", LOC, "--scale", SCALE, *MCMC, "--out", "fit_single",
                        cwd=workdir))
    assert "of 10" in proc.stdout and (workdir / "fit_single" / "groups.csv").is_file()
    assert "single observation" in proc.stdout + proc.stderr


def test_sensitivity_and_hlm_with_no_group_flagged(workdir, null_data, null_fits):
    a, _, _ = null_fits
    proc = _ok(simstudy("sensitivity", null_data, "--location", LOC, "--scale", SCALE, "--pi", "0.5,0.2", *MCMC,
                        "--out", "sens_null", cwd=workdir))
    assert "0 groups flagged under every setting" in proc.stdout
    pips = pd.read_csv(workdir / "sens_null" / "pips.csv")
    assert len(pips) == 20 and not pips["flagged"].any()
    assert (workdir / "sens_null" / "pip_trajectories.png").is_file()
    proc = _ok(simstudy("hlm", null_data, "--location", LOC, "--scale", SCALE, "--fit", a.name, "--out", "hlm_null",
                        cwd=workdir))
    assert "agreement with hlm_qq" in proc.stdout
    assert pd.read_csv(workdir / "hlm_null" / "hlm_groups.csv")["ss_melsm"].sum() == 0


# ====================================================================== item 2: compare
def test_compare_as_a_user_runs_it(null_fits, workdir):
    a, b, _ = null_fits
    proc = _ok(simstudy("compare", a.name, b.name, cwd=workdir))
    assert "PSIS-LOO model comparison" in proc.stdout
    assert "fit_a" in proc.stdout and "fit_b" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_threaded_loo_after_arviz_numpyro_converter_in_a_fresh_process(workdir):
    """``import arviz_base`` registers ``jax`` as a lazy module; SciPy's ``logsumexp`` then
    touches ``jax.Array`` from every LOO thread. Before the fix, 8 threads failed with
    ``module 'jax' has no attribute 'Array'`` every time (Python < 3.12.3 loads lazy modules
    without a lock)."""
    proc = _ok(python("""
        import importlib.util, sys
        import numpy as np
        import arviz_base  # noqa: F401  (arviz_base.io_numpyro: jax = lazy_loader.load("jax"))
        from arviz_base import from_numpyro  # noqa: F401
        assert 'jax' not in sys.modules or True
        from simstudy.model.loo import psis_loo_arrays, relative_eff, waic_arrays
        ll = np.random.default_rng(0).normal(size=(400, 2000))
        elpd = psis_loo_arrays(ll, 1.0, chunk_bytes=2**14, threads=8)
        waic = waic_arrays(ll, chunk_bytes=2**14, threads=8)
        assert type(sys.modules['jax']) is not getattr(importlib.util, '_LazyModule', None)
        print('ok', float(np.sum(elpd[0])), float(waic['elpd_waic']) if isinstance(waic, dict) else '')
    """, cwd=workdir))
    assert proc.stdout.startswith("ok")


def test_threaded_map_resolves_lazy_modules_first(workdir):
    proc = _ok(python("""
        import importlib.util, sys
        import lazy_loader
        mod = lazy_loader.load("fractions")
        assert type(sys.modules["fractions"]) is importlib.util._LazyModule
        from simstudy.model.loo import threaded_map
        out = threaded_map(lambda i: sys.modules["fractions"].Fraction(i, 3), range(16), threads=8)
        assert type(sys.modules["fractions"]) is not importlib.util._LazyModule
        print("ok", out[3])
    """, cwd=workdir))
    assert proc.stdout.strip() == "ok 1"


# ====================================================================== item 8: formulas are data
@pytest.fixture(scope="module")
def xdata(workdir) -> Path:
    rng = np.random.default_rng(8)
    n = 200
    df = pd.DataFrame({"group": np.repeat(np.arange(10), 20), "y": rng.normal(size=n), "x": rng.uniform(1, 2, n),
                       "g": rng.choice(["a", "b", "c"], n)})
    df.to_csv(workdir / "xdata.csv", index=False)
    return workdir / "xdata.csv"


@pytest.mark.parametrize("location, needle", [
    ("y ~ np.save('pwned', x) + (1 | group)", "np.save"),
    ("y ~ I(np.save('pwned', x)) + (1 | group)", "np.save"),
    ("y ~ pd.read_pickle('evil.pkl') + (1 | group)", "pd.read_pickle"),
    ("y ~ __import__('os') + (1 | group)", "__import__"),
    ("y ~ x.__class__ + (1 | group)", "x.__class__"),
    ("y ~ offset(x) + (1 | group)", "offset"),
])
def test_formula_code_is_refused_and_nothing_written(workdir, xdata, location, needle):
    before = set(os.listdir(workdir))
    proc = simstudy("fit", xdata.name, "--location", location, "--scale", SCALE, *MCMC, "--out", "never",
                    cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    err = " ".join(proc.stderr.split())
    assert needle in err and "center" in err and "log" in err and "C," in err  # the allowed list
    assert "Traceback" not in proc.stderr
    assert set(os.listdir(workdir)) == before  # no pwned.npy, no --out


def test_formula_never_unpickles(workdir, xdata):
    """A pickle whose loading would write a file: the formula is refused before evaluation,
    through the library too."""
    from simstudy.realdata.formula import FormulaError, melsm_data_from_formulas

    class Evil:
        def __reduce__(self):
            return (open, (str(workdir / "unpickled.txt"), "w"))

    pd.to_pickle(Evil(), workdir / "evil.pkl")
    df = pd.read_csv(xdata)
    evil = workdir / "evil.pkl"  # absolute: before the fix pandas found and unpickled it
    for loc in (f"y ~ pd.read_pickle('{evil}') + (1 | group)", f"y ~ read_pickle('{evil}') + (1 | group)",
                f"y ~ pandas.read_pickle('{evil}') + (1 | group)"):
        with pytest.raises(FormulaError, match="may not"):
            melsm_data_from_formulas(df, loc, SCALE)
    assert not (workdir / "unpickled.txt").exists()


@pytest.mark.parametrize("location, scale, x_names, w_names", [
    ("y ~ x + (1|group)", SCALE, ["Intercept", "x"], ["Intercept"]),
    ("y ~ log(x) + C(g) + (1 + x | group)", "~ center(x) + (1 | group)",
     ["Intercept", "log(x)", "C(g)[b]", "C(g)[c]"], ["Intercept", "center(x)"]),
    ("y ~ np.log(x) + I(x ** 2) + scale(x) + (1 | group)", "~ sqrt(x) + exp(x) + (1 | group)",
     ["Intercept", "np.log(x)", "I(x ** 2)", "scale(x)"], ["Intercept", "sqrt(x)", "exp(x)"]),
    ("y ~ C(g, Treatment) + poly(x, 2) + (1 | group)", SCALE,
     ["Intercept", "C(g, Treatment)[b]", "C(g, Treatment)[c]", "poly(x, 2)[0]", "poly(x, 2)[1]"], ["Intercept"]),
])
def test_documented_transforms_still_work(xdata, location, scale, x_names, w_names):
    from simstudy.realdata.formula import melsm_data_from_formulas

    df = pd.read_csv(xdata)
    data = melsm_data_from_formulas(df, location, scale)
    assert list(data.x_names) == x_names and list(data.w_names) == w_names
    assert np.all(np.isfinite(data.X))
    if "log(x)" in x_names:
        np.testing.assert_allclose(data.X[:, 1], np.log(df["x"]))
    if "center(x)" in w_names:
        np.testing.assert_allclose(data.W[:, 1], df["x"] - df["x"].mean())


# ====================================================================== item 10: accepted but broken
@pytest.mark.parametrize("pi, needle", [
    ("beta(1e308, 1e308)", "a + b exceeds 1e+06"),
    ("beta(3e6, 1e6)", "pi = 0.75"),
    ("beta(0.01, 1)", "below 0.1"),
    ("beta(1, 1e-300)", "below 0.1"),
])
def test_degenerate_beta_hyperprior_is_refused(workdir, null_data, pi, needle):
    proc = simstudy("fit", null_data, "--location", LOC, "--scale", SCALE, *MCMC, "--pi", pi, "--out", "never_pi",
                    cwd=workdir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in " ".join(proc.stderr.split())
    assert not (workdir / "never_pi").exists()


def test_beta_bounds_in_the_api():
    from simstudy.model.priors import BetaPrior, PriorError, Priors

    for a, b in [(1e308, 1e308), (1e6, 1), (0.05, 1), (1, 0.05)]:
        with pytest.raises(PriorError):
            Priors(pi=f"beta({a}, {b})")
    for a, b in [(0.1, 0.1), (0.5, 0.5), (1, 1), (1, 9), (5e5, 5e5)]:
        assert Priors(pi=f"beta({a}, {b})").pi == BetaPrior(a, b)


@pytest.fixture(scope="module")
def scaled_frame(workdir) -> pd.DataFrame:
    """10 groups of 30 with inconsistent groups (share 0.3): the response the shift/scale fits use."""
    _ok(simstudy("generate", "--seed", "5", "--set", "n_groups=10", "--set", "group_size=30", "--set",
                 "share_inconsistent=0.3", "--out", "g5", cwd=workdir))
    return pd.read_csv(workdir / "g5" / "data.csv")


def _fit(df, **kwargs):
    import warnings

    import simstudy as s

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return s.fit_formula(df, LOC, SCALE, chains=2, warmup=150, draws=150, seed=1, **kwargs)


def test_shifted_and_rescaled_response_give_the_same_pips(scaled_frame):
    """A response shifted by 1e9 (before: every transition diverged, three groups at PIP 1)
    and one in units a million times smaller (with the SD prior in the same units) give the
    fit of the response itself, up to Monte Carlo error, on the data's own scale."""
    base = _fit(scaled_frame)
    shifted = _fit(scaled_frame.assign(y=scaled_frame["y"] + 1e9))
    scaled = _fit(scaled_frame.assign(y=scaled_frame["y"] * 1e6), location_sd="half_t(3, 1e6)")
    forced = _fit(scaled_frame, standardize=True)  # unit data sampled standardised: the same posterior
    assert "response_scaling" not in base.extra  # unit-scale data are sampled as given
    assert shifted.extra["response_scaling"]["shift"] == pytest.approx(1e9, rel=1e-6)
    pip0 = base.pip.values[:, 0]
    for fit in (shifted, scaled, forced):
        assert fit.divergences <= 2, fit.divergences
        pip = fit.pip.values[:, 0]
        assert np.max(np.abs(pip - pip0)) < 0.2 and np.mean(np.abs(pip - pip0)) < 0.07, (pip, pip0)
    post = {name: f.posterior for name, f in (("base", base), ("shifted", shifted), ("scaled", scaled))}
    eta0 = float(post["base"]["eta"].mean())
    assert float(post["shifted"]["eta"].mean()) == pytest.approx(eta0, abs=0.1)
    assert float(post["scaled"]["eta"].mean()) == pytest.approx(eta0 + np.log(1e6), abs=0.1)
    beta0 = float(post["base"]["beta"].mean())
    assert float(post["shifted"]["beta"].mean()) - 1e9 == pytest.approx(beta0, abs=0.15)
    assert float(post["scaled"]["beta"].mean()) / 1e6 == pytest.approx(beta0, abs=0.15)
    gm = base.groups_table()["mean"].to_numpy()
    np.testing.assert_allclose(shifted.groups_table()["mean"].to_numpy() - 1e9, gm, atol=0.15)
    np.testing.assert_allclose(scaled.groups_table()["within_sd"].to_numpy() / 1e6,
                               base.groups_table()["within_sd"].to_numpy(), rtol=0.15)


def test_standardised_sampling_is_an_exact_change_of_variables(scaled_frame):
    """Log prior + log likelihood of the draws mapped back, under the data-scale priors, minus
    those of the sampled draws under the moved priors, is the same constant at every point
    (the map is linear: a constant Jacobian), so the two posteriors are one."""
    from scipy import stats

    import jax.numpy as jnp

    from simstudy.model.priors import Priors
    from simstudy.model.response_scale import response_scaling
    from simstudy.model.ssmelsm import hyper_arrays, sd_prior_logpdf
    from simstudy.realdata.formula import melsm_data_from_formulas

    df = scaled_frame.assign(y=3e7 + 4e5 * scaled_frame["y"], x=np.linspace(-1, 1, len(scaled_frame)))
    data = melsm_data_from_formulas(df, "y ~ x + (1 + x | group)", "~ x + (1 | group)")
    for priors in (Priors(), Priors(location_sd="half_normal(2)", location_intercept_mean=1e7),
                   Priors(location_sd="exponential(0.5)", scale_sd="half_cauchy(1)")):
        sc = response_scaling(data, standardize=True)
        inner = sc.data(data)
        q_loc, J = data.Z_loc.shape[1], data.n_groups
        h_raw = hyper_arrays(data, priors)
        h_int = sc.hyper(h_raw, q_loc)

        def log_joint(d, h, p):
            lp = stats.norm.logpdf(p["beta"], h["beta_mean"], h["beta_sd"]).sum()
            lp += stats.norm.logpdf(p["eta"], h["eta_mean"], h["eta_sd"]).sum()
            lp += float(jnp.sum(sd_prior_logpdf(jnp.asarray(p["tau"]), jnp.asarray(h["sd_prior"]))))
            lp += stats.norm.logpdf(p["u"], 0.0, p["tau"][:q_loc]).sum()  # independent effects
            lp += stats.norm.logpdf(p["t"], 0.0, p["tau"][q_loc:]).sum()
            mu = d.X @ p["beta"] + np.sum(d.Z_loc * p["u"][d.group], axis=1)
            log_sigma = d.W @ p["eta"] + np.sum(d.Z_scale * p["t"][d.group], axis=1)
            return lp + stats.norm.logpdf(d.y, mu, np.exp(log_sigma)).sum()

        rng = np.random.default_rng(0)
        diffs = []
        for _ in range(3):
            p_int = {"beta": rng.normal(size=data.X.shape[1]), "eta": rng.normal(size=data.W.shape[1]),
                     "tau": rng.uniform(0.2, 1.0, q_loc + data.Z_scale.shape[1]),
                     "u": rng.normal(size=(J, q_loc)), "t": rng.normal(scale=0.3, size=(J, 1))}
            p_raw = sc.posterior(p_int, q_loc)
            diffs.append(log_joint(data, h_raw, p_raw) - log_joint(inner, h_int, p_int))
        np.testing.assert_allclose(diffs, diffs[0], rtol=0, atol=1e-6 * abs(diffs[0]) + 1e-6)
        # the constant is the Jacobian: -(N + P + Q_loc (1 + J)) log s
        n_scaled = data.n_obs + data.X.shape[1] + q_loc * (1 + J)
        assert diffs[0] == pytest.approx(-n_scaled * np.log(sc.scale), rel=1e-9)


def test_shifted_response_from_the_command_line(workdir, scaled_frame):
    scaled_frame.assign(y=scaled_frame["y"] + 1e9).to_csv(workdir / "shifted.csv", index=False)
    proc = _ok(simstudy("fit", "shifted.csv", "--location", LOC, "--scale", SCALE, *MCMC, cwd=workdir))
    text = " ".join(proc.stdout.split())
    import re

    # before: max R-hat 9.9e15 (every transition of the first attempt diverged)
    assert float(re.search(r"max R-hat ([0-9.]+)", text).group(1)) < 1.1, text
    assert "0 divergent transitions after warmup" in text
    assert "Intercept 999999999." in text or "Intercept 1000000000." in text  # reported on the data's scale


def test_response_units_far_from_the_sd_prior_are_named(workdir, scaled_frame):
    scaled_frame.assign(y=scaled_frame["y"] * 1e6).to_csv(workdir / "micro.csv", index=False)
    proc = _ok(simstudy("fit", "micro.csv", "--location", LOC, "--scale", SCALE, *MCMC, "--max-extensions", "0",
                        cwd=workdir))
    text = " ".join(proc.stdout.split())
    assert "in the response's units" in text and '--location-sd "half_t(3, ' in text


@pytest.mark.parametrize("transform, needle", [
    (lambda y: y * 1e300, "rescale the response"),
    (lambda y: y + 1e15, "subtract a constant"),
])
def test_absurd_response_magnitudes_are_refused(workdir, scaled_frame, transform, needle):
    scaled_frame.assign(y=transform(scaled_frame["y"])).to_csv(workdir / "absurd.csv", index=False)
    proc = simstudy("fit", "absurd.csv", "--location", LOC, "--scale", SCALE, *MCMC, "--out", "never_abs",
                    cwd=workdir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr
    assert not (workdir / "never_abs").exists()


def test_constant_predictor_is_refused_naming_the_column(workdir, xdata):
    df = pd.read_csv(xdata).assign(site=7.0)
    df.to_csv(workdir / "const.csv", index=False)
    for loc, scale in (("y ~ x + site + (1 | group)", SCALE), (LOC, "~ site + (1 | group)"),
                       ("y ~ 1 + (1 + site | group)", SCALE)):
        proc = simstudy("fit", "const.csv", "--location", loc, "--scale", scale, *MCMC, cwd=workdir)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        err = " ".join(proc.stderr.split())
        assert "'site'" in err and "constant" in err


def test_collinear_predictor_is_warned_naming_the_column(xdata):
    from simstudy.realdata.formula import CollinearDesignWarning, melsm_data_from_formulas

    df = pd.read_csv(xdata)
    df["x2"] = 2 * df["x"] - 1
    with pytest.warns(CollinearDesignWarning, match="'x2'"):
        melsm_data_from_formulas(df, "y ~ x + x2 + (1 | group)", SCALE)


# ====================================================================== item 11: CSV cells, hlm warnings
DANGEROUS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@SUM(A1)", "\tTab", "\rcr", "'=quoted", "-5", "ok", "b"]


def test_escape_round_trip():
    from simstudy.realdata.csvsafe import escape_label, spreadsheet_safe, unescape_label

    for label in DANGEROUS + ["", "'", "'plain", 3, None, 2.5]:
        assert unescape_label(escape_label(label)) == label
    escaped = [escape_label(x) for x in DANGEROUS]
    assert escaped[:7] == ["'" + x for x in DANGEROUS[:7]]
    assert escaped[7:] == ["-5", "ok", "b"]  # a number and plain text stay
    frame = spreadsheet_safe(pd.DataFrame({"group": DANGEROUS, "pip": np.linspace(0, 1, 10)}))
    assert frame["pip"].dtype == float and frame["group"].iloc[0] == "'=cmd|' /C calc'!A0"


def test_groups_csv_labels_do_not_run_in_a_spreadsheet(workdir, null_data):
    df = pd.read_csv(null_data)
    labels = np.array(DANGEROUS, dtype=object)
    df["group"] = labels[df["group"].to_numpy()]
    df.to_csv(workdir / "labels.csv", index=False)
    _ok(simstudy("fit", "labels.csv", "--location", LOC, "--scale", SCALE, *MCMC, "--out", "fit_labels",
                 cwd=workdir))
    import csv

    def cells(path):
        with open(path, newline="") as fh:
            return [row for row in csv.reader(fh)]

    rows = cells(workdir / "fit_labels" / "groups.csv")
    first = [r[0] for r in rows[1:]]
    for cell in first:
        assert cell[:1] not in ("=", "+", "@", "\t", "\r") and not (cell[:1] == "-" and cell != "-5"), cell
    assert "'=cmd|' /C calc'!A0" in first and "-5" in first
    # simstudy reads its own file back: hlm --fit joins on the original labels
    proc = _ok(simstudy("hlm", "labels.csv", "--location", LOC, "--scale", SCALE, "--fit", "fit_labels",
                        "--out", "hlm_labels", cwd=workdir))
    assert "agreement with hlm" in proc.stdout
    hlm_first = [r[0] for r in cells(workdir / "hlm_labels" / "hlm_groups.csv")[1:]]
    assert sorted(hlm_first) == sorted(first)


def test_hlm_prints_clean_warning_lines(workdir):
    rng = np.random.default_rng(11)
    g = np.r_[np.repeat(np.arange(8), 10), [8]]
    y = rng.normal(size=g.size)
    y[:10] = 1.0  # group 0: the same value in every observation
    pd.DataFrame({"group": g, "y": y}).to_csv(workdir / "hlm_warn.csv", index=False)
    proc = _ok(simstudy("hlm", "hlm_warn.csv", "--location", LOC, "--scale", SCALE, cwd=workdir))
    out = proc.stdout + proc.stderr
    assert "Warning:" not in out and "warnings.warn" not in out and ".py:" not in out, out
    lines = [ln for ln in out.splitlines() if ln.startswith("warning:")]
    assert any("single observation" in ln and "no Z" in ln for ln in lines), out
    assert any("same 'y' in every observation (0)" in ln for ln in lines), out
