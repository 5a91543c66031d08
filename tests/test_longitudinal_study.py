"""Longitudinal settings in designs (validation, hashes of existing designs unchanged) and the
smoke design with layout = "longitudinal" end to end through run / summarize / plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simstudy.study.design import DesignError, load_design, parse_design

DESIGNS = Path(__file__).resolve().parents[1] / "designs"

BASE = """
name = "x"
seed = 1
replicates = 2
[generator]
n_groups = 10
group_size = 10
{extra}
[factors]
share_inconsistent = [0.0, 0.2]
"""


def test_new_settings_at_default_leave_the_hash_alone():
    plain = parse_design(BASE.format(extra=""))
    explicit = parse_design(BASE.format(extra='layout = "cross_sectional"\nphi = 0.0\ntau_u1 = 0.2\nscale_time = false'))
    assert explicit.hash == plain.hash
    assert [c.cell_id for c in explicit.cells()] == [c.cell_id for c in plain.cells()]
    assert explicit.cells()[0].generator["phi"] == 0.0  # cells still carry every value used
    longi = parse_design(BASE.format(extra='layout = "longitudinal"\nphi = 0.3'))
    assert longi.hash != plain.hash


@pytest.mark.parametrize("extra, words", [
    ("phi = 0.3", ["phi", "layout = 'longitudinal'"]),  # a longitudinal setting in a cross-sectional design
    ('layout = "longitudinal"\nphi = 1.2', ["generator.phi", "(-1, 1)"]),
    ('layout = "longitudinal"\ndropout = 0.7', ["generator.dropout", "[0, 0.5]"]),
    ('layout = "longitudinal"\nsize_dist = "saeb"', ["size_dist", "balanced, poisson or uniform"]),
    ('layout = "panel"', ["generator.layout", "longitudinal"]),
    ("location_random_slope = 1", ["generator.location_random_slope", "boolean"]),
])
def test_bad_longitudinal_settings_are_reported(extra, words):
    with pytest.raises(DesignError) as err:
        parse_design(BASE.format(extra=extra))
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_shipped_longitudinal_design():
    d = load_design(DESIGNS / "longitudinal.toml")
    assert d.n_cells == 3 * 2 * 3 * 2 + 1
    cells = d.cells()
    assert {c.generator["group_size"] for c in cells} == {10, 30, 60}
    assert {c.generator["phi"] for c in cells} == {0.0, 0.3, 0.6}
    assert all(c.generator["layout"] == "longitudinal" and c.generator["slab_sd"] == 0.668 for c in cells)
    assert sorted(c.generator["dropout"] for c in cells)[-2:] == [0.0, 0.2]
    for c in cells:
        spec = c.generator_spec()
        assert spec.layout == "longitudinal"


@pytest.mark.slow
def test_smoke_longitudinal_run_summarize_plot(tmp_path):
    import xarray as xr
    from typer.testing import CliRunner

    from simstudy.cli import app

    cli = CliRunner()
    store = tmp_path / "long.zarr"
    out = cli.invoke(app, ["run", str(DESIGNS / "smoke_longitudinal.toml"), "--store", str(store), "--workers", "1"])
    assert out.exit_code == 0, out.output
    ds = xr.open_zarr(store).load()
    assert (ds["status"].values != "failed").all(), ds["error"].values
    assert ds["done"].values.all()
    slope = ds["location_random_slope"].values
    phi = ds["phi"].values
    assert slope.tolist().count(True) == 2 and set(phi[slope].tolist()) == {0.0, 0.6}
    # random-slope cells carry tau_u1 / rho_u01 summaries beside their truth; the other cell NaN
    for name in ("tau_u1_mean", "tau_u1_q05", "tau_u1_q95", "rho_u01_mean"):
        assert np.isfinite(ds[name].values[slope]).all() and np.isnan(ds[name].values[~slope]).all()
    assert (ds["tau_u1_q05"].values[slope] <= ds["tau_u1_mean"].values[slope]).all()
    np.testing.assert_array_equal(ds["tau_u1_true"].values[slope], 0.3)
    np.testing.assert_array_equal(ds["rho_u01_true"].values[slope], 0.0)
    assert np.isfinite(ds["tau_t_mean"].values).all() and np.isfinite(ds["pip"].values[..., :12]).all()
    n_obs = ds["n_obs"].values[..., :12]
    assert (n_obs[slope] <= 8).all() and (n_obs[slope] < 8).any()  # 10% MCAR dropout
    assert (n_obs[~slope] == 8).all()

    summary = tmp_path / "summary.csv"
    out = cli.invoke(app, ["summarize", str(store), "--out", str(summary)])
    assert out.exit_code == 0, out.output
    table = pd.read_csv(summary)
    assert len(table) == 3 and {"tpr", "fpr", "tau_u1_bias", "tau_u1_coverage", "rho_u01_bias"} <= set(table.columns)
    assert table["tau_u1_bias"].notna().sum() == 2

    figs = tmp_path / "figs"
    out = cli.invoke(app, ["plot", str(store), "--out", str(figs)])
    assert out.exit_code == 0, out.output
    assert any(figs.glob("*.png"))


def test_grid_fits_longitudinal_cells_non_centred():
    from simstudy.study.generate import GeneratorSpec
    from simstudy.study.task import centered_location_for

    assert centered_location_for(GeneratorSpec(group_size=10)) is None  # cross-sectional: each data set decides
    assert centered_location_for(GeneratorSpec(group_size=9)) is False
    for T in (10, 60):
        assert centered_location_for(GeneratorSpec(layout="longitudinal", group_size=T)) is False
