"""`simstudy hlm` on a CSV: the HLM per group, joined with a fit's PIPs, agreement, figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simstudy.realdata.hlm import agreement, hlm_command, join_fit, plot_pip_vs_z


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    from simstudy.study.generate import GeneratorSpec, generate, write_csv

    d = tmp_path_factory.mktemp("hlmdata")
    spec = GeneratorSpec(n_groups=30, group_size=30, share_inconsistent=0.2, effect="fixed", magnitude=0.9)
    data, truth = generate(spec, 2)
    write_csv(data, truth, d)
    return d / "data.csv", truth


def test_hlm_command_table_matches_the_method(csv, tmp_path):
    from rich.console import Console

    from simstudy.methods.hlm import hlm
    from simstudy.realdata.formula import melsm_data_from_formulas

    path, truth = csv
    df = pd.read_csv(path)
    table = hlm_command(path, location="y ~ 1 + (1 | group)", scale="~ 1 + (1 | group)", seed=4,
                        console=Console(file=open("/dev/null", "w")))
    res = hlm(melsm_data_from_formulas(df, "y ~ 1 + (1 | group)", "~ 1 + (1 | group)"), 4)
    np.testing.assert_array_equal(table["z"].to_numpy(), res.z)
    np.testing.assert_array_equal(table["hlm"].to_numpy(), res.flags["hlm"])
    assert (table["n"] == 30).all()
    # |t| = 0.9 with n = 30: the |Z| rule finds the inconsistent groups
    assert table["hlm_z"].to_numpy()[truth.delta.astype(bool)].all()


def test_join_agreement_and_figure(csv, tmp_path):
    from rich.console import Console

    path, truth = csv
    groups = pd.read_csv(path)["group"].drop_duplicates().astype(str).tolist()
    # a fake fit directory: PIP 0.9 for the first 8 groups, 0.1 for the rest
    fit = tmp_path / "fit"
    fit.mkdir()
    pip = np.where(np.arange(len(groups)) < 8, 0.9, 0.1)
    pd.DataFrame({"group": groups, "n": 30, "pip": pip}).to_csv(fit / "groups.csv", index=False)
    out = tmp_path / "out"
    table = hlm_command(path, location="y ~ 1 + (1 | group)", scale="~ 1 + (1 | group)", fit_dir=fit, out=out,
                        console=Console(file=open("/dev/null", "w")))
    a, b = table["ss_melsm"].to_numpy(), table["hlm_z"].to_numpy()
    agr = agreement(table, "hlm_z").set_index("agreement")["groups"]
    assert agr["both"] == (a & b).sum() and agr["SS-MELSM only"] == (a & ~b).sum()
    assert agr["HLM only"] == (~a & b).sum() and agr["neither"] == (~a & ~b).sum() and agr.sum() == len(groups)
    assert (out / "hlm_groups.csv").is_file() and (out / "agreement.csv").is_file() and (out / "pip_vs_z.png").is_file()
    fig = plot_pip_vs_z(table)
    assert fig.axes[0].get_ylabel() == "SS-MELSM: PIP"
    # a fit of other data is refused
    pd.DataFrame({"group": ["x", "y"], "pip": [0.1, 0.2]}).to_csv(tmp_path / "g.csv", index=False)
    with pytest.raises(ValueError, match="not in"):
        join_fit(table[["group", "hlm_z", "hlm"]], tmp_path / "g.csv")
