"""The documented commands of the 'reports' group (tests/acceptance/recipes.py), run as a user runs
them: as subprocesses in a folder outside the repository, with small settings."""

import pytest

from recipes import documented_command_tests

ws, test_documented_command = documented_command_tests("reports")


def _metrics():
    from simstudy.evaluate.plots import DEFAULT_METRICS

    return list(DEFAULT_METRICS)


@pytest.mark.parametrize("metric", _metrics())
def test_plot_each_metric(ws, metric):
    """`simstudy plot STORE --metric M` draws a figure for every metric it offers by default."""
    from recipes import ensure

    ensure(ws, ("results/quickstart.zarr",))
    ws.sh(f"simstudy plot results/quickstart.zarr --metric {metric} --out figures_{metric}/")
    drawn = sorted(p.name for p in (ws.path / f"figures_{metric}").glob("*.png"))
    assert drawn and any(metric in name for name in drawn), (metric, drawn)
