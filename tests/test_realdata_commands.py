"""Single fits: ``simstudy.fit_formula``, the printed summary, ``simstudy fit`` / ``simstudy
compare`` end to end (CliRunner), the files written, LOO comparison, and every input error
(exit code 2, a message naming the problem, nothing written).

One small data shape and one MCMC setting throughout, so the sampler compiles once per test
session (the intercept-only model uses per-group sufficient statistics: dropping rows that
leave every group in place keeps the shape).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

import simstudy
from simstudy.cli import app

J, N_PER = 12, 20
MCMC = {"chains": 2, "warmup": 150, "draws": 150}
MCMC_ARGS = ["--chains", "2", "--warmup", "150", "--draws", "150", "--max-extensions", "0"]  # draws pinned
LOC, SCALE = "y ~ 1 + (1 | group)", "~ 1 + (1 | group)"


def _invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def data_dir(fit_data, tmp_path_factory):
    """data.csv (group, y, x_within, x_between, school, kind) plus variants for the error cases."""
    d = tmp_path_factory.mktemp("data")
    df = fit_data(J, N_PER)
    df["school"] = df["group"] % 3  # a second grouping column
    df["kind"] = np.where(df["x_within"] > 0, "high", "low")  # a string column
    df.to_csv(d / "data.csv", index=False)
    na = df.copy()
    na.loc[[3, 50], "y"] = np.nan  # rows in groups 0 and 2: every group keeps observations
    na.to_csv(d / "missing.csv", index=False)
    (d / "empty.csv").write_text("")
    (d / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00binary")
    return d


@pytest.fixture(scope="module")
def frame(data_dir):
    return pd.read_csv(data_dir / "data.csv")


@pytest.fixture(scope="module")
def small_fit(frame):
    return simstudy.fit_formula(frame, LOC, SCALE, seed=1, **MCMC)


@pytest.fixture(scope="module")
def cli_fit(data_dir, tmp_path_factory):
    """``simstudy fit ... --out DIR --plots`` once for the module."""
    out = tmp_path_factory.mktemp("fits") / "m1"
    result = _invoke(["fit", data_dir / "data.csv", "--location", LOC, "--scale", SCALE, *MCMC_ARGS,
                      "--seed", "2", "--out", out, "--plots"])
    return result, out


# ------------------------------------------------------------------------------ API
def test_fit_formula_returns_fit_with_groups_and_formulas(small_fit):
    table = small_fit.groups_table(0.75)
    assert len(table) == J
    assert set(table["group"]) == set(range(J))
    assert table["pip"].between(0, 1).all()
    assert (table["flagged"] == (table["pip"] >= 0.75)).all()
    assert small_fit.extra["location_formula"] == LOC and small_fit.extra["scale_formula"] == SCALE
    assert small_fit.posterior.sizes["chain"] == 2 and small_fit.posterior.sizes["draw"] == 150
    assert small_fit.priors.pi == 0.5


def test_fit_formula_validates_before_fitting(frame):
    from simstudy.realdata.formula import FormulaError
    from simstudy.model.priors import PriorError

    with pytest.raises(FormulaError, match="nope"):
        simstudy.fit_formula(frame, "y ~ nope + (1 | group)", SCALE, **MCMC)
    with pytest.raises(PriorError, match="pi"):
        simstudy.fit_formula(frame, LOC, SCALE, pi=1.2, **MCMC)
    with pytest.raises(PriorError):
        simstudy.fit_formula(frame, LOC, SCALE, scale_sd="half_t(3)", **MCMC)
    with pytest.raises(ValueError, match="chains"):
        simstudy.fit_formula(frame, LOC, SCALE, chains=0)


def test_make_priors_overrides_fields():
    from simstudy.realdata.fit_formula import make_priors
    from simstudy.model.priors import Priors

    p = make_priors(Priors(lkj_eta=2.0), pi=0.3, scale_sd="half_normal(0.5)")
    assert p.pi == 0.3 and str(p.scale_sd) == "half_normal(0.5)" and p.lkj_eta == 2.0
    assert make_priors() == Priors()


def test_print_summary_has_every_section(small_fit):
    from rich.console import Console

    from simstudy.realdata.commands import print_summary

    console = Console(record=True, width=140)
    print_summary(small_fit, 0.5, console=console)
    text = console.export_text()
    for needle in ("Location model", "Scale model", "standard deviations", "correlations", "R-hat", "ESS_bulk",
                   "ESS_tail", "2.5%", "97.5%", "WAIC", "PSIS-LOO", "Groups with PIP ≥ 0.5", "BF10", "within SD"):
        assert needle in text, needle
    # flagged groups are listed by decreasing PIP
    table = small_fit.groups_table(0.5)
    flagged = table[table["flagged"]].sort_values("pip", ascending=False)
    if len(flagged) >= 2:
        lines = [ln.split() for ln in text.splitlines()]
        order = [int(ln[0]) for ln in lines if len(ln) == 6 and ln[0].isdigit() and ln[1] == str(N_PER)]
        assert order == flagged["group"].tolist()


def test_loo_and_compare_one_row_per_model(small_fit, frame):
    other = simstudy.fit_formula(frame, LOC, SCALE, pi=0.2, seed=5, **MCMC)  # same shape: no recompile
    table = simstudy.compare_fits({"pi=0.5": small_fit, "pi=0.2": other})
    assert sorted(table.index) == ["pi=0.2", "pi=0.5"]
    for col in ("elpd_loo", "se", "elpd_diff", "dse", "p_loo", "pareto_k_bad", "weight"):
        assert col in table.columns
    assert table["elpd_diff"].iloc[0] == 0.0 and (table["elpd_diff"] <= 0).all()
    assert np.isfinite(table["elpd_loo"]).all() and (table["se"] > 0).all()
    best = table.index[0]
    assert table.loc[best, "elpd_loo"] == table["elpd_loo"].max()
    from simstudy.realdata.compare import elpd_difference

    diff, se = elpd_difference(small_fit, other)
    assert diff == pytest.approx(table.loc["pi=0.5", "elpd_loo"] - table.loc["pi=0.2", "elpd_loo"])
    assert se >= 0
    with pytest.raises(ValueError):
        simstudy.compare_fits({"only": small_fit})


def test_float32_log_likelihood_leaves_comparison_unchanged(small_fit, frame, tmp_path):
    """posterior.nc stores the log-likelihood as float32: LOO and the comparison table from the
    saved files equal those of the float64 fits up to float32 rounding."""
    other = simstudy.fit_formula(frame, LOC, SCALE, pi=0.2, seed=5, **MCMC)
    fits = {"a": small_fit, "b": other}
    saved = {}
    for name, fit in fits.items():
        fit.add_log_likelihood()
        fit.to_netcdf(tmp_path / f"{name}.nc")
        saved[name] = xr.open_datatree(tmp_path / f"{name}.nc", engine="h5netcdf").load()
        ll64 = fit.tree["log_likelihood"]["y"].values
        ll32 = saved[name]["log_likelihood"]["y"].values
        assert ll32.dtype == np.float32 and np.array_equal(ll32, ll64.astype(np.float32))
    ref, ours = simstudy.compare_fits(fits), simstudy.compare_fits(saved)
    assert list(ours.index) == list(ref.index)
    n = J * N_PER
    for col in ("elpd_loo", "se", "elpd_diff", "dse", "p_loo"):
        np.testing.assert_allclose(ours[col], ref[col], rtol=1e-5, atol=n * 1e-6)
    np.testing.assert_allclose(ours["pareto_k_max"], ref["pareto_k_max"], atol=1e-4)
    assert (ours["pareto_k_bad"] == ref["pareto_k_bad"]).all()
    np.testing.assert_allclose(ours["weight"], ref["weight"], atol=1e-4)
    from simstudy.model.loo import waic_arrays

    waic32 = waic_arrays(saved["a"]["log_likelihood"]["y"].values.reshape(300, -1))
    for key, value in small_fit.waic().items():
        assert waic32[key] == pytest.approx(value, rel=1e-5, abs=n * 1e-6)


# ------------------------------------------------------------------------------ CLI: fit
def test_cli_fit_writes_every_file(cli_fit):
    result, out = cli_fit
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert names == {"posterior.nc", "groups.csv", "summary.csv", "fit.json", "pip.png", "funnel.png", "outcome.png",
                     "trace.png", "rank.png"}
    for png in ("pip.png", "funnel.png", "outcome.png", "trace.png", "rank.png"):
        assert (out / png).stat().st_size > 10_000
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temporary directory left behind"
    assert "PSIS-LOO" in result.output and "Location model" in result.output


def test_cli_fit_groups_csv_consistent(cli_fit):
    _, out = cli_fit
    groups = pd.read_csv(out / "groups.csv")
    assert list(groups.columns) == ["group", "n", "observed_sd", "pip", "bf10", "within_sd", "mean", "flagged"]
    assert len(groups) == J and (groups["n"] == N_PER).all()
    assert (groups["flagged"] == (groups["pip"] >= 0.75)).all()
    info = json.loads((out / "fit.json").read_text())
    assert info["n_flagged"] == int(groups["flagged"].sum())
    odds = groups["pip"] / (1 - groups["pip"])
    np.testing.assert_allclose(groups["bf10"], odds, rtol=1e-9)  # pi = 0.5: BF10 = posterior odds


def test_cli_fit_json_and_summary(cli_fit):
    _, out = cli_fit
    info = json.loads((out / "fit.json").read_text())
    assert info["location_formula"] == LOC and info["scale_formula"] == SCALE
    assert info["data_file"] == "data.csv"
    assert info["settings"]["chains"] == 2 and info["settings"]["draws"] == 150 and info["settings"]["seed"] == 2
    assert info["settings"]["chain_workers"] == 1  # 2 chains (and tests ask for sequential chains)
    assert info["priors"]["pi"] == 0.5 and info["priors"]["scale_sd"] == "half_t(3, 1)"
    assert info["n_obs"] == J * N_PER and info["n_groups"] == J
    for key in ("compile", "sampling", "loo_waic", "total"):
        assert info["timings_s"][key] >= 0
    for key in ("rhat_max", "ess_bulk_min", "divergences", "converged"):
        assert key in info["diagnostics"]
    assert np.isfinite(info["loo"]["elpd_loo"]) and np.isfinite(info["waic"]["elpd_waic"])
    summary = pd.read_csv(out / "summary.csv", index_col="parameter")
    assert {"beta[Intercept]", "eta[Intercept]", "tau[location:Intercept]", "tau[scale:Intercept]"} <= set(summary.index)
    assert {"section", "mean", "sd", "r_hat", "ess_bulk", "ess_tail"} <= set(summary.columns)


def test_cli_fit_posterior_has_log_likelihood(cli_fit):
    _, out = cli_fit
    tree = xr.open_datatree(out / "posterior.nc", engine="h5netcdf")
    try:
        assert {"posterior", "sample_stats", "log_likelihood"} <= set(tree.children)
        assert tree["log_likelihood"]["y"].shape == (2, 150, J * N_PER)
        assert tree["log_likelihood"]["y"].dtype == np.float32  # kept for comparison only
        assert tree["posterior"]["incl_prob"].dtype == np.float64
        assert tree["posterior"]["incl_prob"].shape == (2, 150, J, 1)
    finally:
        tree.close()


def test_cli_dropna_and_replace_previous_fit(data_dir, cli_fit, tmp_path):
    out = tmp_path / "dropna"
    args = ["fit", data_dir / "missing.csv", "--location", LOC, "--scale", SCALE, *MCMC_ARGS, "--out", out]
    result = _invoke([*args, "--dropna"])
    assert result.exit_code == 0, result.output
    assert "dropped 2 rows" in result.output
    info = json.loads((out / "fit.json").read_text())
    assert info["dropped_rows"] == 2 and info["n_obs"] == J * N_PER - 2
    first = info["created"], (out / "posterior.nc").stat().st_mtime_ns
    # an earlier fit directory is replaced as a whole
    result = _invoke([*args, "--dropna", "--pi", "0.3"])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "fit.json").read_text())
    assert info["priors"]["pi"] == 0.3 and "pip.png" not in {p.name for p in out.iterdir()}
    assert (out / "posterior.nc").stat().st_mtime_ns != first[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dropna"]


# ------------------------------------------------------------------------------ CLI: compare
def test_cli_compare_reads_fit_directories(cli_fit, data_dir, tmp_path):
    _, out1 = cli_fit
    out2 = tmp_path / "m2"
    result = _invoke(["fit", data_dir / "data.csv", "--location", LOC, "--scale", SCALE, *MCMC_ARGS,
                      "--pi", "0.25", "--out", out2])
    assert result.exit_code == 0, result.output
    result = _invoke(["compare", out1, out2])
    assert result.exit_code == 0, result.output
    assert "m1" in result.output and "m2" in result.output and "elpd_loo" in result.output
    from simstudy.realdata.commands import compare_command

    table = compare_command([out1, out2])
    assert list(table.index) != [] and sorted(table.index) == ["m1", "m2"]


def test_cli_compare_errors(cli_fit, tmp_path):
    _, out1 = cli_fit
    result = _invoke(["compare", out1])
    assert result.exit_code == 2 and "at least two" in result.output
    (tmp_path / "empty").mkdir()
    result = _invoke(["compare", out1, tmp_path / "empty"])
    assert result.exit_code == 2 and "posterior.nc" in result.output
    result = _invoke(["compare", out1, tmp_path / "absent"])
    assert result.exit_code == 2 and "does not exist" in result.output


# ------------------------------------------------------------------------------ CLI: errors
ERRORS = [
    pytest.param("data.csv", "y ~ 1 + (1 | group)", "~ x_whithin + (1 | group)", [], "x_whithin",
                 id="unknown-column"),
    pytest.param("data.csv", "y ~ 1 + (1 | group)", "y ~ 1 + (1 | group)", [], "has a response", id="response-in-scale"),
    pytest.param("data.csv", "y ~ 1 + x_within", "~ 1 + (1 | group)", [], "no random-effect term", id="no-grouping"),
    pytest.param("data.csv", "y ~ 1 + (1 | group)", "~ 1 + (1 | school)", [], "same grouping factor",
                 id="different-grouping"),
    pytest.param("data.csv", "y ~ kind + (1 | group)", "~ 1 + (1 | group)", [], "'kind'", id="non-numeric"),
    pytest.param("missing.csv", LOC, SCALE, [], "--dropna", id="missing-values"),
    pytest.param("absent.csv", LOC, SCALE, [], "does not exist", id="missing-file"),
    pytest.param("empty.csv", LOC, SCALE, [], "is empty", id="empty-file"),
    pytest.param("binary.csv", LOC, SCALE, [], "as CSV", id="not-csv"),
    pytest.param("data.csv", LOC, SCALE, ["--pi", "1.5"], "pi", id="bad-pi"),
    pytest.param("data.csv", LOC, SCALE, ["--scale-sd", "half_t(3)"], "half_t", id="bad-sd-prior"),
    pytest.param("data.csv", LOC, SCALE, ["--chains", "0"], "chains", id="bad-chains"),
    pytest.param("data.csv", LOC, SCALE, ["--threshold", "1.5"], "threshold", id="bad-threshold"),
    pytest.param("data.csv", LOC, SCALE, ["--chain-method", "pmap"], "--chain-method", id="bad-chain-method"),
]


@pytest.mark.parametrize(("file", "location", "scale", "extra", "message"), ERRORS)
def test_cli_fit_input_errors(data_dir, tmp_path, file, location, scale, extra, message):
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _invoke(["fit", data_dir / file, "--location", location, "--scale", scale, *MCMC_ARGS,
                          "--out", out, *extra])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "nothing may be written on an input error"


def test_cli_fit_refuses_foreign_out_dir(data_dir, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = _invoke(["fit", data_dir / "data.csv", "--location", LOC, "--scale", SCALE, *MCMC_ARGS, "--out", out])
    assert result.exit_code == 2 and "other files" in result.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_cli_plots_need_out(data_dir):
    result = _invoke(["fit", data_dir / "data.csv", "--location", LOC, "--scale", SCALE, *MCMC_ARGS, "--plots"])
    assert result.exit_code == 2 and "--out" in result.output


# ------------------------------------------------------------------------------ K = 2 scale effects
def test_summary_escapes_effect_names(small_fit, monkeypatch):
    """Effect names in brackets must print literally (rich would read ``[x]`` as markup)."""
    from rich.console import Console

    from simstudy.realdata.commands import print_summary

    base = small_fit.groups_table(0.75)
    fake = base.drop(columns=["pip", "bf10"]).assign(**{
        "pip[Intercept]": base["pip"], "bf10[Intercept]": base["bf10"],
        "pip[student_ses]": 0.9, "bf10[student_ses]": 9.0, "flagged": True,
    })
    monkeypatch.setattr(small_fit, "groups_table", lambda threshold=0.75: fake)
    console = Console(record=True, width=160)
    print_summary(small_fit, 0.75, console=console, ic=False)
    text = console.export_text()
    assert "PIP[student_ses]" in text and "BF10[student_ses]" in text and "PIP[Intercept]" in text


def test_cli_fit_two_scale_effects(data_dir, tmp_path):
    """``(1 + x | g)`` in the scale: one spike-and-slab indicator per effect, per-effect PIP
    columns in groups.csv, one plot panel per effect."""
    out = tmp_path / "k2"
    result = _invoke(["fit", data_dir / "data.csv", "--location", "y ~ x_within + (1 | group)",
                      "--scale", "~ x_within + (1 + x_within | group)", *MCMC_ARGS, "--out", out, "--plots"])
    assert result.exit_code == 0, result.output
    groups = pd.read_csv(out / "groups.csv")
    assert list(groups.columns) == ["group", "n", "observed_sd", "pip[Intercept]", "pip[x_within]",
                                    "bf10[Intercept]", "bf10[x_within]", "within_sd", "mean", "flagged"]
    flagged = (groups[["pip[Intercept]", "pip[x_within]"]] >= 0.75).any(axis=1)
    assert (groups["flagged"] == flagged).all()
    info = json.loads((out / "fit.json").read_text())
    assert info["scale_random_effects"] == ["Intercept", "x_within"]
    summary = pd.read_csv(out / "summary.csv", index_col="parameter")
    assert "tau[scale:x_within]" in summary.index
    assert "PIP[x_within]" in result.output or int(groups["flagged"].sum()) == 0


def test_progress_bar_counts_iterations(frame):
    """The bar names the phases and reaches chains x (warm-up + draws) iterations, reported
    from inside the compiled sampler; reporting does not change the draws."""
    import io

    from rich.console import Console

    import simstudy.model.sampler as fit_module
    from simstudy.realdata.fit_formula import fitting_progress
    from simstudy.realdata.formula import melsm_data_from_formulas

    data = melsm_data_from_formulas(frame, LOC, SCALE)
    calls = []
    fit_module.fit(data, chains=2, warmup=150, draws=150, progress=lambda *a: calls.append(a))
    assert calls[0] == ("compiling", 0, 600) and calls[-1] == ("done", 600, 600)
    done = [c[1] for c in calls if c[0] == "sampling"]
    assert done == sorted(done) and done[-1] == 600 and len(done) > 10
    buf = io.StringIO()
    with fitting_progress(True, console=Console(file=buf, force_terminal=True, width=120)) as report:
        with_bar = fit_module.fit(data, chains=2, warmup=150, draws=150, progress=report)
    assert "compiling" in buf.getvalue() and "sampling" in buf.getvalue()
    plain = fit_module.fit(data, chains=2, warmup=150, draws=150)
    np.testing.assert_array_equal(with_bar.posterior["tau"].values, plain.posterior["tau"].values)


def test_small_groups_advice():
    from simstudy.realdata.commands import SMALL_GROUP_MEDIAN, small_groups_advice

    assert small_groups_advice(np.full(40, SMALL_GROUP_MEDIAN)) is None
    assert small_groups_advice([2, 3, 50, 60, 70]) is None  # median 50
    text = small_groups_advice([3, 8, 10, 12, 400])
    assert "median group has 10 observations" in text and "too little data" in text


def test_cli_fit_warns_about_small_groups(data_dir, frame, tmp_path, cli_fit):
    """8 observations per group (the compiled shape of the module: only J matters here)."""
    assert "median group has" not in cli_fit[0].output  # 20 per group: no warning
    small = frame.groupby("group").head(8)
    small.to_csv(tmp_path / "small.csv", index=False)
    result = _invoke(["fit", tmp_path / "small.csv", "--location", LOC, "--scale", SCALE, *MCMC_ARGS])
    assert result.exit_code == 0, result.output
    assert "median group has 8 observations" in " ".join(result.output.split())
