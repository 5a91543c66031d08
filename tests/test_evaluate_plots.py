"""Tests of simstudy.evaluate.plots and analysis/sensitivity_report.py on synthetic stores (no MCMC)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from test_evaluate_metrics import make_ds, synthetic_store  # noqa: E402  (tests/ is on sys.path)

from simstudy import evaluate as M  # noqa: E402
from simstudy.evaluate import plots as P  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"pi": [0.25, 0.5], "share_inconsistent": [0.1, 0.3]}


from simstudy.evaluate import report as R  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ============================================================================ labels + roles
def test_pretty_labels():
    assert P.pretty("n_groups") == "Number of groups J"
    assert P.pretty("group_size") == "Group size n"
    assert P.pretty("share_inconsistent") == "Share of inconsistent groups"
    assert P.pretty("slab_sd") == "Slab SD"
    assert P.pretty("pi") == "Prior inclusion probability π"
    assert P.pretty("scale_sd") == "Prior on scale RE SD"
    assert P.pretty("something_new") == "Something new"
    assert P.format_level("n_groups", 50) == "J = 50"
    assert P.format_level("pi", 0.25) == "π = 0.25"
    assert P.format_level("scale_sd", "half_t(3, 1)") == "scale-SD prior = half-t(3, 1)"
    assert P.metric_label("tau_t_bias") == "Bias of τ_t"
    assert "(s)" in P.metric_label("sample_s")


def test_default_roles_and_overrides():
    s = M.summarize(synthetic_store(factors={"pi": [0.1, 0.5], "scale_sd": ["half_t(3, 1)", "half_normal(1)", "exponential(1)"],
                                             "n_groups": [10, 20], "group_size": [5, 10], "slab_sd": [0.3, 0.6]}, replicates=2))
    roles = P.default_roles(s)
    assert roles["x"] == "scale_sd"  # most levels
    assert (roles["hue"], roles["col"], roles["row"]) == ("pi", "n_groups", "group_size")  # design order among ties
    assert roles["rest"] == ["slab_sd"]
    roles = P.default_roles(s, x="pi", hue="slab_sd")
    assert roles["x"] == "pi" and roles["hue"] == "slab_sd" and roles["col"] == "scale_sd" and roles["rest"] == ["group_size"]
    with pytest.raises(ValueError, match="not a cell coordinate"):
        P.default_roles(s, x="nope")
    with pytest.raises(ValueError, match="only one role"):
        P.default_roles(s, x="pi", hue="pi")


# ============================================================================ figures
def test_sensitivity_facets_and_lines():
    s = M.summarize(synthetic_store(factors={"pi": [0.1, 0.25, 0.5], "n_groups": [10, 20], "group_size": [5, 10, 20],
                                             "share_inconsistent": [0.2, 0.4]}, replicates=3))
    fig = P.plot_sensitivity(s, "tpr", x="pi", hue="share_inconsistent", row="n_groups", col="group_size")
    fig.canvas.draw()
    axes = fig.axes
    assert len(axes) == 2 * 3
    for ax in axes:
        assert len(ax.containers) == 2  # one errorbar line per hue level
    assert [t.get_text() for t in axes[-1].get_xticklabels()] == ["0.1", "0.25", "0.5"]
    assert axes[0].get_ylabel() == "True positive rate (sensitivity)"
    assert axes[-1].get_xlabel() == "Prior inclusion probability π"
    assert axes[0].get_title() == "J = 10, n = 5"
    assert fig.legends and fig.legends[0].get_title().get_text() == "Share of inconsistent groups"
    # error bars are ±1.96 MCSE of the cell
    c = np.nonzero((s.pi.values == 0.1) & (s.share_inconsistent.values == 0.2) & (s.n_groups.values == 10) & (s.group_size.values == 5))[0][0]
    seg = axes[0].containers[0].lines[2][0].get_segments()[0]
    e, y = 1.96 * float(s.tpr_mcse[c]), float(s.tpr[c])  # clipped to the rate's range [0, 1] (issue 23)
    assert seg[1][1] - seg[0][1] == pytest.approx(min(e, y) + min(e, 1 - y))


def test_sensitivity_single_cell_and_strings():
    s = M.summarize(synthetic_store(factors={}, replicates=3))
    fig = P.plot_sensitivity(s, "fpr")
    assert len(fig.axes) == 1 and len(fig.axes[0].containers) == 1
    s2 = M.summarize(synthetic_store(factors={"scale_sd": ["half_t(3, 1)", "half_normal(0.25)", "half_cauchy(1)", "exponential(1)"]}))
    fig = P.plot_sensitivity(s2, "ece")
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["half-t(3, 1)", "half-normal(0.25)", "half-cauchy(1)", "exponential(1)"]
    assert fig.axes[0].get_xticklabels()[0].get_rotation() == 30  # long labels rotated
    with pytest.raises(KeyError):
        P.plot_sensitivity(s2, "no_such_metric")


def test_reliability_roc_runtime_figures():
    ds = synthetic_store(factors={"pi": [0.25, 0.5, 0.75], "n_groups": [20, 40]}, replicates=3)
    fig = P.plot_reliability(ds)
    assert len(fig.axes) == 2 * 3  # reliability + counts per pi level
    top = fig.axes[0]
    diag = [ln for ln in top.get_lines() if list(ln.get_xdata()) == [0, 1] and list(ln.get_ydata()) == [0, 1]]
    assert diag, "diagonal reference missing"
    assert len(top.containers) == 2  # one curve per J
    assert fig.axes[1].get_title() == "π = 0.5"
    fig = P.plot_roc(ds)
    assert len(fig.axes) == 3
    s = M.summarize(ds)
    fig = P.plot_runtime(s)
    assert len(fig.axes) == 3
    assert fig.axes[0].get_xlabel() == "Number of groups J"
    assert fig.axes[0].get_ylabel() == "Sampling time per fit (s)"


def test_plot_all_tiny_store(tmp_path):
    ds = synthetic_store(factors=QUICK, statuses={(0, 1): "failed"})
    paths = P.plot_all(ds, tmp_path / "figs")
    names = {p.name for p in paths}
    for stem in ("sensitivity_tpr", "sensitivity_fpr", "sensitivity_f1", "sensitivity_mcc", "sensitivity_roc_auc",
                 "sensitivity_ece", "sensitivity_sample_s", "reliability", "roc", "runtime"):
        assert f"{stem}.png" in names and f"{stem}.pdf" in names, stem
    for p in paths:
        assert p.exists() and p.stat().st_size > (10_000 if p.suffix == ".png" else 3_000), p
    # a fifth varying factor -> one figure per level of it
    ds5 = synthetic_store(factors={"pi": [0.25, 0.5], "n_groups": [10, 20], "group_size": [5, 10],
                                   "share_inconsistent": [0.1, 0.3], "slab_sd": [0.3, 0.6]}, replicates=2)
    paths = P.plot_all(ds5, tmp_path / "f5", metrics=["tpr"], formats=("png",))
    assert sorted(p.name for p in paths if p.name.startswith("sensitivity")) == [
        "sensitivity_tpr_slab_sd-0.3.png", "sensitivity_tpr_slab_sd-0.6.png"]


def test_plot_all_degenerate_stores(tmp_path):
    # every fit failed: nothing to draw, no crash
    ds = synthetic_store(factors=QUICK, replicates=2, statuses={(c, r): "failed" for c in range(4) for r in range(2)})
    P.plot_all(ds, tmp_path / "a")
    # one replicate, no inconsistent groups in some cells (TPR/AUC undefined there)
    ds = synthetic_store(factors={"share_inconsistent": [0.0, 0.2]}, replicates=1)
    assert P.plot_all(ds, tmp_path / "b", formats=("png",))
    # only share 0: TPR never defined -> no TPR figure, FPR still drawn
    ds = synthetic_store(factors={"pi": [0.25, 0.5]}, replicates=2)
    ds["delta_true"] = ds.delta_true * 0
    paths = P.plot_all(ds, tmp_path / "c", formats=("png",))
    names = {p.name for p in paths}
    assert "sensitivity_fpr.png" in names and "sensitivity_tpr.png" not in names and "roc.png" not in names


def test_cli_commands(tmp_path):
    from typer.testing import CliRunner

    from simstudy.cli import app

    store = tmp_path / "store.zarr"
    synthetic_store(factors=QUICK).to_zarr(store, consolidated=False)
    runner = CliRunner()
    res = runner.invoke(app, ["summarize", str(store), "--out", str(tmp_path / "s.csv"), "--rule", "bf"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s.csv").exists()
    res = runner.invoke(app, ["plot", str(store), "--out", str(tmp_path / "figs"), "--metric", "tpr", "--metric", "ece",
                              "--x", "share_inconsistent"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "figs" / "sensitivity_tpr.png").exists() and (tmp_path / "figs" / "sensitivity_ece.pdf").exists()
    assert not (tmp_path / "figs" / "sensitivity_fpr.png").exists()
    res = runner.invoke(app, ["plot", str(store), "--out", str(tmp_path / "f2"), "--x", "nope"])
    assert res.exit_code == 2 and "not a cell coordinate" in res.output
    res = runner.invoke(app, ["summarize", str(tmp_path / "missing.zarr")])
    assert res.exit_code == 2


# ============================================================================ report
def _summary_with(values, mcse, factor="n_groups", levels=(50, 150, 300)):
    n = len(levels)
    ds = xr.Dataset(
        {"tpr": ("cell", np.asarray(values, float)), "tpr_mcse": ("cell", np.asarray(mcse, float))},
        coords={factor: ("cell", list(levels)), "cell_label": ("cell", [f"c{i}" for i in range(n)])},
    )
    return ds


def test_describe_trend_sentences():
    s = _summary_with([0.41, 0.55, 0.62], [0.05, 0.04, 0.04])
    txt = R.describe_trend(s, "tpr", "n_groups", "TPR")
    assert txt == ("TPR rises from 0.41 (MCSE 0.05) at J = 50, through 0.55 (MCSE 0.04) at J = 150, "
                   "to 0.62 (MCSE 0.04) at J = 300 (difference +0.21, MCSE 0.06).")
    txt = R.describe_trend(_summary_with([0.62, 0.41, 0.40], [0.05, 0.04, 0.04]), "tpr", "n_groups", "TPR")
    assert txt.startswith("TPR falls from 0.62 (MCSE 0.05) at J = 50")
    txt = R.describe_trend(_summary_with([0.50, 0.52, 0.49], [0.05, 0.05, 0.05]), "tpr", "n_groups", "TPR")
    assert "does not change with number of groups J beyond Monte Carlo error" in txt
    txt = R.describe_trend(_summary_with([0.2, 0.8, 0.3], [0.02, 0.02, 0.02]), "tpr", "n_groups", "TPR")
    assert "non-monotonically" in txt and "highest at J = 150" in txt and "lowest at J = 50" in txt
    txt = R.describe_trend(_summary_with([np.nan, 0.5, 0.7], [np.nan, 0.02, 0.02]), "tpr", "n_groups", "TPR")
    assert "rises from 0.50 (MCSE 0.02) at J = 150 to 0.70" in txt and "undefined at J = 50" in txt
    txt = R.describe_trend(_summary_with([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]), "tpr", "n_groups", "FPR")
    assert txt == "FPR is 0.000 at every level of number of groups J in every replicate."
    txt = R.describe_trend(_summary_with([np.nan] * 3, [np.nan] * 3), "tpr", "n_groups", "TPR")
    assert "undefined at every level" in txt
    s = _summary_with([0.3, 0.6], [0.05, 0.05], factor="pi", levels=(0.25, 0.5))
    assert R.describe_trend(s, "tpr", "pi", "TPR").startswith("TPR rises from 0.30 (MCSE 0.05) at π = 0.25 to 0.60")


def test_report_script_on_tiny_zarr_store(tmp_path):
    store = tmp_path / "quick.zarr"
    synthetic_store(factors=QUICK, replicates=4, statuses={(1, 2): "failed", (2, 0): "not_converged"}).to_zarr(store, consolidated=False)
    out = tmp_path / "report"
    res = subprocess.run([sys.executable, str(ROOT / "analysis" / "sensitivity_report.py"), str(store), "--out", str(out)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    md = (out / "report.md").read_text()
    assert "# Sensitivity report: synthetic" in md
    assert "### Prior inclusion probability π" in md and "### Share of inconsistent groups" in md
    assert "TPR " in md and "(MCSE " in md and "at π = 0.25" in md
    assert "1 failed" in md and "BF₁₀ ≥ 3" in md
    assert "![reliability](figures/reliability.png)" in md
    for f in ("figures/sensitivity_tpr.png", "figures/reliability.png", "figures/runtime.png",
              "tables/summary.csv", "tables/summary_bf.csv", "tables/marginals.csv", "tables/reliability.csv"):
        assert (out / f).exists(), f
    for link in [ln.split("](")[1].rstrip(")") for ln in md.splitlines() if ln.startswith("![")]:
        assert (out / link).exists(), link


@pytest.mark.parametrize(
    "factors, kwargs",
    [
        ({}, {}),  # a single cell
        ({"share_inconsistent": [0.0, 0.1]}, {"replicates": 1}),  # undefined rates, no MCSE
        ({"scale_sd": ["half_t(3, 1)", "half_normal(1)"], "location_sd": ["half_t(3, 1)", "exponential(1)"],
          "n_groups": [10, 20], "group_size": [5, 10], "slab_sd": [0.3, 0.6]}, {"replicates": 2}),  # 5 factors
    ],
)
def test_report_any_design(tmp_path, factors, kwargs):
    ds = synthetic_store(factors=factors, **kwargs)
    path = R.build_report(ds, tmp_path / "r", figures=False)
    md = path.read_text()
    assert "## Cell results" in md and "## Runtime and sampling quality" in md
    assert "nan" not in md.replace("n/a", "")
    for f in factors:
        if len(factors[f]) > 1:
            assert f"### {P.pretty(f)}" in md
    if not factors:
        assert "No factor varies" in md
    if factors.get("share_inconsistent") == [0.0, 0.1]:
        assert "undefined at share inconsistent = 0" in md


def test_report_bf_rule_and_no_pi(tmp_path):
    ds = synthetic_store(factors={"n_groups": [10, 20]}, model={"pi": 0.25}, replicates=2)
    md = R.build_report(ds, tmp_path / "r", rule="bf", figures=False).read_text()
    assert "BF₁₀ ≥ 3" in md
    s = M.summarize(ds, rule="bf")
    np.testing.assert_allclose(s.threshold.values, 0.5)
    assert not (tmp_path / "r" / "tables" / "summary_bf.csv").exists()  # the main table already is the BF rule


def test_marginals_table_matches_marginal():
    s = M.summarize(synthetic_store(factors=QUICK))
    t = R.marginals_table(s, ["tpr", "ece"])
    assert set(t["factor"]) == {"pi", "share_inconsistent"} and set(t["metric"]) == {"tpr", "ece"}
    row = t[(t.factor == "pi") & (t.metric == "tpr") & (t.level == 0.25)].iloc[0]
    assert row.value == pytest.approx(float(s.tpr.values[s.pi.values == 0.25].mean()))


def test_make_ds_store_plots_hand_store(tmp_path):
    """A hand-built store with string statuses from bytes/object arrays still works."""
    ds = make_ds(np.full((1, 3, 4), 0.8), np.tile([1.0, 0.0, 0.0, 1.0], (1, 3, 1)))
    ds["status"] = ds.status.astype(object)
    s = M.summarize(ds)
    assert int(s.n_used[0]) == 3 and float(s.tpr[0]) == 1.0 and float(s.fpr[0]) == 1.0
    ds["status"] = ds.status.astype("S")
    assert int(M.summarize(ds).n_used[0]) == 3
