"""The single-fit figures (simstudy.realdata.plots): one point per group in each panel, the
threshold line, flagged groups coloured and labelled without overlaps, one panel per scale
effect for K > 1, PNG output. One small fit for the module (same shape and settings as
tests/test_realdata_commands.py, so a full run compiles the sampler once); K > 1 layouts use a
groups table built by hand."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import simstudy
from simstudy.realdata import plots as fitplots

matplotlib.use("Agg")

J, N_PER = 12, 20
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def fit(fit_data):
    df = fit_data(J, N_PER)
    return simstudy.fit_formula(df, "y ~ 1 + (1 | group)", "~ 1 + (1 | group)", chains=2, warmup=150, draws=150,
                                seed=1)


@pytest.fixture(scope="module")
def table(fit):
    return fit.groups_table(THRESHOLD)


def _scatter(ax):
    return ax.collections[0]


def _no_overlap(fig, texts):
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    for i in range(len(boxes)):
        for j in range(i):
            a, b = boxes[i], boxes[j]
            assert not (a.x0 < b.x1 and a.x1 > b.x0 and a.y0 < b.y1 and a.y1 > b.y0), (texts[i], texts[j])


def test_pip_plot(fit, table):
    fig = fitplots.pip_plot(fit, THRESHOLD)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    offsets = _scatter(ax).get_offsets()
    assert len(offsets) == J
    np.testing.assert_allclose(offsets[:, 0], np.arange(1, J + 1))
    np.testing.assert_allclose(offsets[:, 1], np.sort(table["pip"].to_numpy()))
    assert np.all(np.diff(offsets[:, 1]) >= 0)
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert dashed and np.allclose(dashed[0].get_ydata(), THRESHOLD)
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == sorted(str(g) for g in table.loc[table["flagged"], "group"])
    colors = _scatter(ax).get_facecolors()
    flagged = offsets[:, 1] >= THRESHOLD
    if flagged.any() and (~flagged).any():
        assert not np.allclose(colors[flagged][0], colors[~flagged][0])


def test_funnel_plot(fit, table):
    fig = fitplots.funnel_plot(fit, THRESHOLD)
    ax = fig.axes[0]
    offsets = _scatter(ax).get_offsets()
    assert len(offsets) == J
    np.testing.assert_allclose(offsets[:, 0], table["within_sd"])
    np.testing.assert_allclose(offsets[:, 1], table["pip"])
    assert "within-group SD" in ax.get_xlabel()


def test_outcome_plot_has_colorbar(fit, table):
    fig = fitplots.outcome_plot(fit, THRESHOLD)
    ax = fig.axes[0]
    points = _scatter(ax)
    assert len(points.get_offsets()) == J
    np.testing.assert_allclose(points.get_offsets()[:, 0], table["mean"])
    np.testing.assert_allclose(points.get_array(), table["within_sd"])  # colour = within-group SD
    assert len(fig.axes) == 2 and "within-group SD" in fig.axes[1].get_ylabel()


def test_plots_accept_groups_table(table):
    for make in fitplots.PLOTS.values():
        fig = make(table, THRESHOLD)
        assert len(fig.axes[0].collections[0].get_offsets()) == J


def test_save_fit_plots_writes_pngs(fit, tmp_path):
    paths = fitplots.save_fit_plots(fit, tmp_path / "plots", THRESHOLD)
    assert sorted(paths) == ["funnel", "outcome", "pip"]
    for path in paths.values():
        assert path.suffix == ".png" and path.stat().st_size > 10_000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _table_k2(j=60, seed=0):
    rng = np.random.default_rng(seed)
    pip_a = rng.uniform(0, 0.7, j)
    pip_a[:8] = np.linspace(0.76, 0.99, 8)  # eight flagged groups close together, as in Saeb M1
    pip_b = rng.uniform(0, 0.6, j)
    pip_b[10:12] = [0.8, 0.9]
    return pd.DataFrame({
        "group": np.arange(100, 100 + j), "n": 30,
        "pip[Intercept]": pip_a, "bf10[Intercept]": pip_a / (1 - pip_a),
        "pip[student_ses]": pip_b, "bf10[student_ses]": pip_b / (1 - pip_b),
        "within_sd": rng.uniform(0.5, 1.1, j), "mean": rng.normal(0, 0.5, j),
    })


@pytest.mark.parametrize("name", ["pip", "funnel", "outcome"])
def test_one_panel_per_scale_effect(name):
    table = _table_k2()
    fig = fitplots.PLOTS[name](table, 0.75)
    panels = [ax for ax in fig.axes if ax.collections and len(ax.collections[0].get_offsets()) == len(table)]
    assert len(panels) == 2
    assert "Intercept" in panels[0].get_title() and "student_ses" in panels[1].get_title()
    assert len(panels[0].texts) == 8 and len(panels[1].texts) == 2


def test_labels_do_not_overlap():
    fig = fitplots.pip_plot(_table_k2(), 0.75)
    ax = fig.axes[0]
    assert len(ax.texts) == 8
    _no_overlap(fig, ax.texts)
    fig = fitplots.funnel_plot(_table_k2(), 0.75)
    _no_overlap(fig, fig.axes[0].texts)


def test_bad_input():
    with pytest.raises(TypeError):
        fitplots.pip_plot([0.1, 0.2])
    with pytest.raises(ValueError, match="pip"):
        fitplots.pip_plot(pd.DataFrame({"group": [1, 2]}))
