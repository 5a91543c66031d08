"""Issue 23, items 1-6: figures a paper can use, tested by their data (axis limits and scale,
the points' x positions, line segments, labels, legend texts, error-bar extents), never by
pixels. Synthetic stores (no MCMC) except the trace/rank plots, which reuse the small fit of
tests/test_realdata_plots.py (same shape and settings: the sampler compiles once)."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from test_evaluate_metrics import synthetic_store  # noqa: E402  (tests/ is on sys.path)

from simstudy import evaluate as M  # noqa: E402
from simstudy.evaluate import plots as P  # noqa: E402
from simstudy.evaluate import report as R  # noqa: E402
from simstudy.evaluate.labels import metric_range  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _summary(factors, replicates=3, **set_metrics):
    s = M.summarize(synthetic_store(factors=factors, replicates=replicates))
    for k, v in set_metrics.items():
        s[k] = ("cell", np.asarray(v, float))
    return s


def _err_extent(ax):
    """(lowest, highest) y of every error-bar segment in ``ax``."""
    lo, hi = np.inf, -np.inf
    for c in ax.containers:
        for coll in c.lines[2]:
            for seg in coll.get_segments():
                ys = np.asarray(seg)[:, 1]
                lo, hi = min(lo, ys.min()), max(hi, ys.max())
    return lo, hi


def _mixed_pi(ds, labels):
    """``ds`` with its numeric pi levels replaced by text labels (as the store keeps a factor
    mixing numbers and "beta(a, b)")."""
    old = [float(v) for v in M.factor_levels(ds, "pi")]
    to = dict(zip(old, labels))
    ds = ds.assign_coords(pi=("cell", np.array([to[float(v)] for v in ds["pi"].values], dtype=object).astype(str)))
    info = json.loads(ds.attrs["design"])
    info["factors"]["pi"] = [0.1, 0.5, "beta(1, 1)"]
    ds.attrs["design"] = json.dumps(info)
    return ds


# ============================================================================ item 1: fitted axes
def test_small_fpr_gets_an_axis_fitted_to_the_data():
    fac = {"pi": [0.1, 0.25, 0.5], "n_groups": [20, 40]}
    vals = np.array([0.010, 0.014, 0.018, 0.022, 0.026, 0.030])
    s = _summary(fac, fpr=vals, fpr_mcse=np.full(6, 0.001))
    fig = P.plot_sensitivity(s, "fpr", x="pi", hue="n_groups")
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert ax.get_yscale() == "linear"
    assert -0.01 < lo <= 0.01 - 1.96 * 0.001 and 0.03 + 1.96 * 0.001 <= hi < 0.045  # not 0-1


@pytest.mark.parametrize("metric", ["fpr", "fwer", "ece", "brier"])
def test_values_spanning_decades_get_a_log_axis(metric):
    fac = {"pi": [0.1, 0.25, 0.5], "n_groups": [20, 40]}
    vals = np.array([0.0004, 0.001, 0.004, 0.01, 0.03, 0.06])  # 2.2 decades
    s = _summary(fac, **{metric: vals, f"{metric}_mcse": vals * 0.1})
    ax = P.plot_sensitivity(s, metric, x="pi", hue="n_groups").axes[0]
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    assert 0.0004 / 3 < lo < 0.0004 and 0.06 < hi < 0.2


def test_log_axis_keeps_zeros_with_symlog():
    fac = {"pi": [0.1, 0.25, 0.5], "n_groups": [20, 40]}
    vals = np.array([0.0, 0.001, 0.004, 0.01, 0.03, 0.06])
    s = _summary(fac, fpr=vals, fpr_mcse=np.full(6, 0.0))
    ax = P.plot_sensitivity(s, "fpr", x="pi", hue="n_groups").axes[0]
    assert ax.get_yscale() == "symlog" and ax.get_ylim()[0] == 0.0


def test_rates_keep_unit_interval_only_when_spread_over_it():
    fac = {"pi": [0.1, 0.25, 0.5], "n_groups": [20, 40]}
    s = _summary(fac, tpr=[0.05, 0.3, 0.5, 0.7, 0.9, 0.98], tpr_mcse=np.full(6, 0.01))
    lo, hi = P.plot_sensitivity(s, "tpr", x="pi", hue="n_groups").axes[0].get_ylim()
    assert lo == pytest.approx(-0.03) and hi == pytest.approx(1.03)
    s = _summary(fac, tpr=[0.80, 0.82, 0.84, 0.86, 0.88, 0.90], tpr_mcse=np.full(6, 0.005))
    lo, hi = P.plot_sensitivity(s, "tpr", x="pi", hue="n_groups").axes[0].get_ylim()
    assert 0.7 < lo < 0.8 and 0.9 < hi <= 1.0


# ============================================================================ item 2: dodge, lines, clipping
def test_dodge_is_small():
    fac = {"pi": [0.1, 0.25, 0.5], "n_groups": [10, 20, 30, 40]}
    ax = P.plot_sensitivity(_summary(fac), "tpr", x="pi", hue="n_groups").axes[0]
    assert len(ax.containers) == 4
    for c in ax.containers:
        off = np.asarray(c.lines[0].get_xdata(), float) - np.arange(3)
        assert np.all(np.abs(off) <= P.MAX_DODGE + 1e-12) and np.ptp(off) < 1e-12
    offsets = sorted(float(c.lines[0].get_xdata()[0]) for c in ax.containers)
    assert offsets[-1] - offsets[0] <= 2 * P.MAX_DODGE  # not halfway to the next level


def test_lines_only_along_ordered_numeric_factors():
    ds = synthetic_store(factors={"pi": [0.1, 0.5, 0.9], "n_groups": [20, 40]}, replicates=3)
    ax = P.plot_sensitivity(M.summarize(ds), "tpr", x="pi", hue="n_groups").axes[0]
    assert all(c.lines[0].get_linestyle() == "-" for c in ax.containers)  # 0.1 -> 0.5 -> 0.9: a scale
    mixed = M.summarize(_mixed_pi(ds, ["0.1", "0.5", "beta(1, 1)"]))
    ax = P.plot_sensitivity(mixed, "tpr", x="pi", hue="n_groups").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "0.5", "beta(1, 1)"]
    assert all(c.lines[0].get_linestyle() == "None" for c in ax.containers)  # points + error bars only
    assert all(len(c.lines[2]) == 1 for c in ax.containers)  # the error bars are still there
    assert P.ordered_numeric([0.1, 0.5, 1.0]) and not P.ordered_numeric(["0.1", "0.5", "beta(1, 1)"])
    assert not P.ordered_numeric(["half_t(3, 1)", "exponential(1)"])


@pytest.mark.parametrize("metric,vals,mcse", [
    ("ece", [0.005, 0.01, 0.02, 0.01, 0.004, 0.03], 0.02),   # bars would run below 0
    ("brier", [0.01, 0.02, 0.015, 0.03, 0.02, 0.01], 0.05),
    ("mcc", [0.95, 0.99, 0.9, 0.97, 0.98, 0.93], 0.05),      # bars would run above 1
    ("tpr", [0.98, 0.99, 0.97, 0.995, 0.96, 1.0], 0.05),
    ("fpr", [0.0, 0.01, 0.02, 0.0, 0.01, 0.02], 0.03),
])
def test_error_bars_are_clipped_to_the_metric_range(metric, vals, mcse):
    fac = {"pi": [0.1, 0.25, 0.5], "n_groups": [20, 40]}
    s = _summary(fac, **{metric: vals, f"{metric}_mcse": np.full(6, mcse)})
    ax = P.plot_sensitivity(s, metric, x="pi", hue="n_groups").axes[0]
    lo, hi = _err_extent(ax)
    r_lo, r_hi = metric_range(metric)
    assert lo >= r_lo - 1e-12 and hi <= r_hi + 1e-12
    assert metric_range("ece") == (0.0, np.inf) and metric_range("mcc") == (-1.0, 1.0)
    assert metric_range("tpr") == (0.0, 1.0) and metric_range("tau_t_bias") == (-np.inf, np.inf)


# ============================================================================ item 3: --metric
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("st") / "s.zarr"
    synthetic_store(factors={"pi": [0.25, 0.5], "share_inconsistent": [0.1, 0.3]}).to_zarr(path, consolidated=False)
    return path


def test_plot_metric_validated_and_comma_lists(store, tmp_path):
    from typer.testing import CliRunner

    from simstudy.cli import app

    runner = CliRunner()
    out = tmp_path / "bad"
    res = runner.invoke(app, ["plot", str(store), "--out", str(out), "--metric", "nonsense"])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "'nonsense'" in text and "tpr" in text and "fwer" in text and "ece" in text
    assert not out.exists()
    res = runner.invoke(app, ["plot", str(store), "--out", str(out), "--metric", "fpr,nonsense"])
    assert res.exit_code == 2 and not out.exists()
    out = tmp_path / "ok"
    res = runner.invoke(app, ["plot", str(store), "--out", str(out), "--metric", "fpr,tpr", "--metric", "ece"])
    assert res.exit_code == 0, res.output
    sens = sorted(p.name for p in out.glob("sensitivity_*.png"))
    assert sens == ["sensitivity_ece.png", "sensitivity_fpr.png", "sensitivity_tpr.png"]
    assert P.parse_metrics(["fpr, tpr", "fpr"]) == ["fpr", "tpr"] and P.parse_metrics([]) is None


# ============================================================================ item 4: HLM labels
def test_pip_vs_z_marks_hlm_qq_by_default_and_labels_hlm_honestly():
    from simstudy.evaluate.methods import METHOD_LABELS
    from simstudy.realdata.hlm import RULES, agreement, plot_pip_vs_z

    z = np.array([-3.0, -0.5, 0.2, 0.4, 2.6])
    table = pd.DataFrame({"group": list("abcde"), "z": z, "pip": [0.9, 0.1, 0.2, 0.1, 0.95],
                          "hlm_qq": [True, False, False, False, True], "hlm": [False, True, True, False, False],
                          "hlm_z": np.abs(z) > 1.96, "hlm_bh": [True, False, False, False, True]})
    table["ss_melsm"] = table["pip"] >= 0.75
    assert RULES[0] == "hlm_qq"
    ax = plot_pip_vs_z(table).axes[0]
    flagged = [c for c in ax.collections if "HLM flag" in str(c.get_label())][0]
    assert sorted(np.asarray(flagged.get_offsets())[:, 0]) == [-3.0, 2.6]  # the extreme-|Z| groups
    labels = [str(c.get_label()) for c in ax.collections]
    assert any("hlm_qq" in lb and "QQ envelope" in lb for lb in labels)
    ax = plot_pip_vs_z(table, rule="hlm").axes[0]
    labels = " ".join(str(c.get_label()) for c in ax.collections)
    assert "identity-line envelope" in labels and "QQ envelope" not in labels
    assert agreement(table).set_index("agreement")["groups"]["both"] == 2  # hlm_qq by default
    assert "identity-line" in METHOD_LABELS["hlm"] and "QQ envelope" in METHOD_LABELS["hlm_qq"]
    assert "QQ" not in METHOD_LABELS["hlm"]


def test_quickstart_design_suggests_hlm_qq():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "designs" / "quickstart.toml").read_text()
    assert '"hlm_qq"' in text and '"hlm" (QQ envelope)' not in text and 'methods = ["ss_melsm", "hlm_qq"]' in text


# ============================================================================ item 5a: heatmap
def _pips_long():
    settings = ["pi=0.1, scale_sd=half_t(3, 1)", "pi=0.5, scale_sd=half_t(3, 1)", "pi=beta(1, 1), scale_sd=half_t(3, 1)"]
    pip = {"a": [0.9, 0.95, 0.97], "b": [0.5, 0.8, 0.9], "c": [0.1, 0.2, 0.3], "d": [0.05, 0.1, 0.2]}
    rows = [{"group": g, "setting": s, "effect": "Intercept", "pip": p[k], "flagged": p[k] >= 0.75}
            for g, p in pip.items() for k, s in enumerate(settings)]
    return pd.DataFrame(rows), settings, pip


def test_flags_heatmap_data():
    from simstudy.realdata.sensitivity import plot_flags_heatmap

    pips, settings, pip = _pips_long()
    fig = plot_flags_heatmap(pips, 0.75)
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows == ["a", "b", "c", "d"]  # always flagged, then prior-dependent, then by mean PIP
    img = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(img, np.array([pip[g] for g in rows]))
    assert ax.images[0].get_clim() == (0.0, 1.0)
    marks = {(int(x), int(y)) for x, y in ax.collections[0].get_offsets()}
    assert marks == {(0, 0), (1, 0), (2, 0), (1, 1), (2, 1)}  # (setting, group) flagged
    assert len(ax.get_xticklabels()) == 3
    assert "1 flagged under every setting" in ax.get_title() and "1 depend" in ax.get_title()
    # many groups: the never-flagged ones are left out and counted
    many = pd.concat([pips] + [pips[pips.group == "d"].assign(group=f"z{i}") for i in range(70)])
    ax = plot_flags_heatmap(many, 0.75, max_groups=10).axes[0]
    assert len(ax.get_yticklabels()) == 10 and "not shown" in ax.get_title()


# ============================================================================ item 5b + 6: Beta pi
def _beta_store():
    ds = synthetic_store(factors={"pi": [0.1, 0.5, 0.9], "share_inconsistent": [0.1, 0.3]}, replicates=3)
    ds = _mixed_pi(ds, ["0.1", "0.5", "beta(1, 1)"])
    beta = np.array([v == "beta(1, 1)" for v in ds["pi"].values])
    share = ds["n_inconsistent_true"] / 30.0
    ds["share_true"] = share
    ds["pi_mean"] = (share + 0.02).where(xr_mask(ds, beta))
    return ds, beta


def xr_mask(ds, cells):
    import xarray as xr

    return xr.DataArray(np.broadcast_to(cells[:, None], (ds.sizes["cell"], ds.sizes["replicate"])),
                        dims=("cell", "replicate"))


def test_pi_mean_in_summary_and_figure(tmp_path):
    ds, beta = _beta_store()
    s = M.summarize(ds)
    assert "pi_mean" in s and "pi_mean_mcse" in s and "share_true" in s
    assert np.isfinite(s.pi_mean.values[beta]).all() and np.isnan(s.pi_mean.values[~beta]).all()
    np.testing.assert_allclose(s.pi_mean.values[beta], s.share_true.values[beta] + 0.02)
    assert "pi_mean" in M.summary_frame(s).columns
    fig = P.plot_pi_vs_share(s)
    ax = fig.axes[0]
    pts = np.vstack([np.column_stack([c.lines[0].get_xdata(), c.lines[0].get_ydata()]) for c in ax.containers])
    assert len(pts) == beta.sum()
    np.testing.assert_allclose(np.sort(pts[:, 0]), np.sort(s.share_true.values[beta]))
    np.testing.assert_allclose(pts[:, 1] - pts[:, 0], 0.02)
    assert ax.get_xlim() == ax.get_ylim() and ax.get_xlim()[1] < 0.6  # fitted, not 0-1
    assert ax.get_ylabel().startswith("E[π | y]")
    paths = P.plot_all(ds, tmp_path / "f", metrics=["tpr"], formats=("png",))
    assert "pi_vs_share.png" in {p.name for p in paths}
    # a store without a Beta hyperprior: no pi_mean, no figure
    plain = synthetic_store(factors={"pi": [0.25, 0.5]}, replicates=2)
    assert "pi_mean" not in M.summarize(plain)


def test_report_on_beta_pi(tmp_path):
    ds, beta = _beta_store()
    path = R.build_report(ds, tmp_path / "rep", figures=False)
    text = path.read_text()
    assert "non-monotonic" not in text
    assert "not an ordered scale" in text
    assert "E[π | y]" in text and "Beta hyperprior" in text
    assert "pi_mean" in pd.read_csv(tmp_path / "rep" / "tables" / "summary.csv").columns


# ============================================================================ item 5d: runtime
def test_runtime_shows_zero_compile_times_and_one_legend_style():
    ds = synthetic_store(factors={"n_groups": [10, 20, 40], "group_size": [10, 20]}, replicates=2)
    ds["compile_s"] = ds["compile_s"].where(ds["n_groups"] != 10, 0.0) * 100  # cached compiles: 0 s
    s = M.summarize(ds)
    fig = P.plot_runtime(s)
    comp = [ax for ax in fig.axes if ax.get_ylabel() == P.metric_label("compile_s")][0]
    assert comp.get_yscale() in ("symlog", "linear")
    ys = np.concatenate([c.lines[0].get_ydata() for c in comp.containers])
    assert (ys == 0).any()
    assert comp.get_ylim()[0] <= 0.0  # the zeros are on the axis
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["n = 10", "n = 20"]


# ============================================================================ item 5e: ROC
def test_roc_says_what_it_pools():
    ds = synthetic_store(factors={"pi": [0.25, 0.5], "n_groups": [20, 40], "share_inconsistent": [0.1, 0.3]},
                         replicates=2)
    fig = P.plot_roc(ds)
    title = fig._suptitle.get_text()
    assert "pooled over replicates and cells over" in title and "share of inconsistent groups" in title.lower()
    fig = P.plot_roc(ds, by="pi", hue="n_groups")
    assert "share" in fig._suptitle.get_text().lower()


# ============================================================================ item 5c: trace + rank
J, N_PER = 12, 20  # as tests/test_realdata_plots.py


@pytest.fixture(scope="module")
def fit(fit_data):
    import simstudy

    df = fit_data(J, N_PER)
    return simstudy.fit_formula(df, "y ~ 1 + (1 | group)", "~ 1 + (1 | group)", chains=2, warmup=150, draws=150,
                                seed=1)


def test_trace_and_rank_plots(fit, tmp_path):
    from simstudy.realdata import plots as fitplots

    draws = fitplots.hyper_draws(fit)
    assert draws and all(v.shape == (2, 150) for v in draws.values())
    assert any(k.startswith("tau[") for k in draws)
    assert sum(k.startswith("corr[") for k in draws) == 1  # the one pair, once; no diagonal
    fig = fitplots.trace_plot(fit)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == list(draws)
    for ax, x in zip(shown, draws.values()):
        assert len(ax.lines) == 2  # one line per chain
        np.testing.assert_allclose(ax.lines[0].get_ydata(), x[0])
    fig = fitplots.rank_plot(fit)
    ax = [a for a in fig.axes if a.get_visible()][0]
    steps = [p for p in ax.patches]
    assert len(steps) == 2  # one rank histogram per chain
    assert np.asarray(steps[0].get_data()[0]).sum() == 150  # every draw of chain 0 ranked once
    paths = fitplots.save_trace_rank(fit, tmp_path)
    assert sorted(paths) == ["rank", "trace"] and all(p.stat().st_size > 10_000 for p in paths.values())
