"""``simstudy sensitivity`` and ``simstudy fit --pi "beta(a, b)"``: a prior sweep compiles
once per structure, writes its tables, figure and summary, and psense runs on the default
fit. Same data shape and MCMC setting as tests/test_realdata_commands.py (shared compile)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import simstudy.model.sampler as fitmod
from simstudy.cli import app
from simstudy.model.priors import BetaPrior, PriorError, SDPrior
from simstudy.realdata.sensitivity import (
    flag_stability,
    log_prior,
    parse_pi_levels,
    parse_sd_levels,
    psense_table,
    split_levels,
)

J, N_PER = 12, 20
MCMC_ARGS = ["--chains", "2", "--warmup", "150", "--draws", "150"]
LOC, SCALE = "y ~ 1 + (1 | group)", "~ 1 + (1 | group)"


def _invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def csv(fit_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("sens") / "data.csv"
    fit_data(J, N_PER).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def sweep(csv, tmp_path_factory):
    """4 fixed-pi settings (2 pi x 2 scale-SD priors): one structure, so at most one trace."""
    out = tmp_path_factory.mktemp("sens") / "out"
    traces = fitmod.TRACE_COUNT
    result = _invoke(["sensitivity", csv, "--location", LOC, "--scale", SCALE, "--pi", "0.25,0.5",
                      "--scale-sd", "half_t(3, 1),half_normal(0.25)", *MCMC_ARGS, "--seed", "3", "--out", out,
                      "--no-progress"])
    return result, out, fitmod.TRACE_COUNT - traces


def test_level_parsing():
    assert split_levels('0.1, beta(1, 1),"half_t(3, 1)"') == ["0.1", "beta(1, 1)", "half_t(3, 1)"]
    assert parse_pi_levels("0.1,beta(1,9)") == [0.1, BetaPrior(1, 9)]
    assert parse_sd_levels("half_t(3, 1),half_cauchy(1)") == [SDPrior("half_t", (3, 1)), SDPrior("half_cauchy", (1,))]
    with pytest.raises(PriorError, match="--pi 'beta'"):
        parse_pi_levels("0.1,beta")
    with pytest.raises(PriorError, match="empty level"):
        parse_pi_levels("0.1,,0.5")


def test_sweep_compiles_once_and_writes_tables(sweep):
    result, out, traces = sweep
    assert result.exit_code == 0, result.output
    assert traces <= 1  # 0 when the shape was compiled earlier in the session
    settings = pd.read_csv(out / "settings.csv")
    assert list(settings["setting"]) == ["pi=0.25, scale_sd=half_t(3, 1)", "pi=0.25, scale_sd=half_normal(0.25)",
                                         "pi=0.5, scale_sd=half_t(3, 1)", "pi=0.5, scale_sd=half_normal(0.25)"]
    assert (settings["compile_s"].iloc[1:] == 0).all()  # one compile for the whole sweep
    assert settings["pi_mean"].isna().all()  # fixed pi: no posterior
    pips = pd.read_csv(out / "pips.csv")
    assert len(pips) == 4 * J and set(pips.columns) >= {"group", "setting", "pip", "bf10", "flagged"}
    assert (pips["flagged"] == (pips["pip"] >= 0.75)).all()
    # BF10 uses each setting's prior odds
    for pi in (0.25, 0.5):
        rows = pips[pips["pi"] == pi]
        np.testing.assert_allclose(rows["bf10"], rows["pip"] / (1 - rows["pip"]) / (pi / (1 - pi)), rtol=1e-9)
    # a smaller pi cannot flag more groups under the same scale prior and seed... it lowers PIPs on average
    mean_pip = pips.groupby("pi")["pip"].mean()
    assert mean_pip[0.25] < mean_pip[0.5]
    n_flag = pips.groupby("setting")["flagged"].sum()
    np.testing.assert_array_equal(settings.set_index("setting")["n_flagged"], n_flag[settings["setting"]].values)
    st = flag_stability(pips)
    text = (out / "summary.txt").read_text()
    assert f"{len(st['always'])} groups flagged under every setting, {len(st['depends'])} depend on the prior" in text
    assert (out / "pip_trajectories.png").stat().st_size > 0 and (out / "psense.csv").exists()
    psense = pd.read_csv(out / "psense.csv", index_col=0)
    assert {"prior", "likelihood", "diagnosis"} <= set(psense.columns)


def test_psense_on_a_beta_pi_fit(csv):
    """psense needs log_prior and log_likelihood groups; the log prior includes Beta(pi)."""
    from scipy import stats

    import simstudy

    df = pd.read_csv(csv)
    fit = simstudy.fit_formula(df, LOC, SCALE, pi="beta(2, 3)", chains=2, warmup=150, draws=150, seed=1)
    lp = log_prior(fit)
    assert lp["lprior"].dims == ("chain", "draw") and np.all(np.isfinite(lp["lprior"]))
    table = psense_table(fit)
    assert "log_prior" in fit.tree.children and "log_likelihood" in fit.tree.children
    assert "pi" in table.index and np.all(np.isfinite(table[["prior", "likelihood"]].to_numpy(float)))
    pi = fit.posterior["pi"].values
    np.testing.assert_allclose(lp["lprior"] - log_prior_without_pi(fit), stats.beta.logpdf(pi, 2, 3), rtol=1e-10)


def log_prior_without_pi(fit):
    """The same draws' log prior without the Beta term (pi dropped, pi fixed at its mean)."""
    post = fit.posterior.drop_vars("pi")
    fake = type("F", (), {"posterior": post, "data": fit.data, "priors": fit.priors.replace(pi=fit.priors.pi_mean)})()
    return log_prior(fake)["lprior"]


def test_cli_fit_with_beta_pi_reports_its_posterior(csv, tmp_path):
    out = tmp_path / "beta"
    result = _invoke(["fit", csv, "--location", LOC, "--scale", SCALE, *MCMC_ARGS, "--pi", "beta(1, 1)",
                      "--out", out])
    assert result.exit_code == 0, result.output
    assert "pi = beta(1, 1)" in result.output and "Prior inclusion probability pi" in result.output
    summary = pd.read_csv(out / "summary.csv", index_col=0) if (out / "summary.csv").exists() else None
    assert summary is not None and any(str(i) == "pi" for i in summary.index)
    bad = _invoke(["fit", csv, "--location", LOC, "--scale", SCALE, *MCMC_ARGS, "--pi", "gamma(1, 1)"])
    assert bad.exit_code == 2 and "beta(1, 1)" in bad.output
