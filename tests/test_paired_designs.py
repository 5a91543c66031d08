"""Paired designs (issue 24): data seeds from the generator's settings only, so every model
setting fits the same data sets; paired setting differences with their MCSE; the store
version that says so (old stores readable, never extended); the decision rule over truths."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from simstudy.evaluate.decision import crosses_truth_and_priors, decision_roles, decision_table, regret_table
from simstudy.evaluate.fits import cell_factors
from simstudy.evaluate.paired import setting_difference, setting_pairs
from simstudy.study.design import parse_design
from simstudy.study.scoring import SCHEMA, failed_record, stack_records
from simstudy.study.store import STORE_VERSION, StoreError, create_or_open, local_store, open_results, read_info, write_block

ROOT = Path(__file__).resolve().parents[1]

#: comparator-only (no MCMC, no JAX): two priors x two truths, 6 replicates
HLM_DESIGN = """
name = "paired"
seed = 11
replicates = 6
block_size = 3
methods = ["hlm_z", "hlm_qq"]

[generator]
n_groups = 24
group_size = 12
effect = "fixed"
magnitude = 1.0

[factors]
share_inconsistent = [0.0, 0.25]
pi = [0.1, 0.5]
"""


def _run(design, path: Path):
    from simstudy.study.runner import run_task

    info = create_or_open(path, design)
    for task in design.tasks():
        res = run_task(task, str(info.path), info.cell_index[task.cell.cell_id], info.n_groups_max)
        assert res.error == "", res.error
    return open_results(info.path).load()


@pytest.fixture(scope="module")
def hlm_store(tmp_path_factory):
    design = parse_design(HLM_DESIGN)
    return _run(design, tmp_path_factory.mktemp("paired") / "p.zarr")


# ------------------------------------------------------------------------------ paired data
def test_model_settings_see_the_same_data(hlm_store):
    ds = hlm_store
    assert int(ds.attrs["simstudy_store_version"]) == STORE_VERSION == 2
    assert "data_id" in ds.coords and "data_id" not in cell_factors(ds)
    share, pi, data = (ds[k].values.tolist() for k in ("share_inconsistent", "pi", "data_id"))
    cell = {(s, p): i for i, (s, p) in enumerate(zip(share, pi))}
    assert len(set(data)) == 2  # one data id per truth
    for s in (0.0, 0.25):
        a, b = cell[(s, 0.1)], cell[(s, 0.5)]
        assert data[a] == data[b]
        for var in ("delta_true", "u_true", "t_true", "sigma_mean"):
            if var in ds:
                np.testing.assert_array_equal(ds[var].isel(cell=a).values, ds[var].isel(cell=b).values)
        # comparators see only the data, and their seed follows the data id: same flags
        np.testing.assert_array_equal(ds["flag"].isel(cell=a).values, ds["flag"].isel(cell=b).values)
    # different truths: different data sets
    t0, t1 = cell[(0.0, 0.1)], cell[(0.25, 0.1)]
    assert not np.array_equal(ds["u_true"].isel(cell=t0).values, ds["u_true"].isel(cell=t1).values)
    # replicates of one cell differ
    u = ds["u_true"].isel(cell=t1).values
    assert not np.array_equal(u[0], u[1])


def test_paired_mcse_is_smaller_than_unpaired(hlm_store):
    df = setting_difference(hlm_store, "fpr", "pi", 0.1, 0.5, method="hlm_z")
    assert len(df) == 2 and set(df["share_inconsistent"]) == {0.0, 0.25}
    # identical data and comparator flags: the difference is exactly 0 with paired MCSE 0,
    # while treating the cells as independent would give a positive SE
    assert (df["diff"] == 0).all() and (df["mcse"] == 0).all()
    assert (df["mcse_unpaired"] > 0).all() and (df["mcse"] < df["mcse_unpaired"]).all()
    assert setting_pairs(hlm_store, "pi", 0.1, 0.5) and not setting_pairs(hlm_store, "share_inconsistent", 0.0, 0.25)


# a store with hand-made, correlated but different per-replicate results of two priors
SYNTH = """
name = "synth"
seed = 3
replicates = 8
block_size = 8

[generator]
n_groups = 6
group_size = 5

[factors]
pi = [0.1, 0.5]
"""


def _synthetic_store(tmp_path):
    design = parse_design(SYNTH)
    info = create_or_open(tmp_path / "s.zarr", design)
    rng = np.random.default_rng(0)
    G = info.n_groups_max
    delta = np.array([1, 1, 0, 0, 0, 0], float)
    strength = np.array([0.6, 0.8, 0.95, 1.0, 0.7, 0.92, 0.85, 0.98])  # a data set's ease: shared by both priors
    cells = {float(p): i for i, p in enumerate(open_results(info.path)["pi"].values)}
    pips = {}
    for pi, shift in ((0.1, -0.15), (0.5, 0.0)):
        recs = []
        for r in range(8):
            rec = failed_record(G, "", n_methods=1)
            rec["status"] = np.asarray("ok", dtype=SCHEMA["status"]["dtype"])
            rec["error"] = np.asarray("", dtype=SCHEMA["error"]["dtype"])
            rec["delta_true"] = delta.copy()
            rec["t_true"] = delta * 0.5
            noise = rng.normal(0, 0.005, size=G)
            rec["pip"] = np.clip(np.where(delta > 0, strength[r], strength[r] - 0.3) + shift + noise, 0, 1)
            rec["flag"] = (rec["pip"] >= 0.75).astype(float)[None, :]
            rec["score"] = rec["pip"][None, :]
            recs.append(rec)
        pips[pi] = np.stack([x["pip"] for x in recs])
        write_block(info.path, cells[pi], list(range(8)), stack_records(recs))
    return open_results(info.path).load(), pips, delta


def test_paired_mcse_matches_a_hand_computation(tmp_path):
    ds, pips, delta = _synthetic_store(tmp_path)
    df = setting_difference(ds, "tpr", "pi", 0.5, 0.1)
    assert len(df) == 1
    tpr = {p: (pips[p][:, delta > 0] >= 0.75).mean(1) for p in pips}
    d = tpr[0.5] - tpr[0.1]
    row = df.iloc[0]
    assert row["diff"] == pytest.approx(d.mean())
    assert row["mcse"] == pytest.approx(d.std(ddof=1) / math.sqrt(8))
    se = {p: tpr[p].std(ddof=1) / math.sqrt(8) for p in tpr}
    assert row["mcse_unpaired"] == pytest.approx(math.hypot(se[0.5], se[0.1]))
    assert np.corrcoef(tpr[0.5], tpr[0.1])[0, 1] > 0  # positively correlated: the paired SE is smaller
    assert 0 < row["mcse"] < row["mcse_unpaired"]


# ------------------------------------------------------------------------------ store versions
def test_old_version_store_is_readable_but_never_extended(tmp_path):
    design = parse_design(SYNTH)
    path = tmp_path / "old.zarr"
    create_or_open(path, design)
    g = zarr.open_group(local_store(path), mode="r+")
    g.attrs["simstudy_store_version"] = 1
    with pytest.raises(StoreError, match=r"store version 1.*new store path"):
        create_or_open(path, design)  # resuming
    more = parse_design(SYNTH.replace("replicates = 8", "replicates = 16"))
    with pytest.raises(StoreError, match="store version 1"):
        create_or_open(path, more)  # extending
    assert read_info(path).design.hash == design.hash  # still readable (status, summarize)
    from simstudy.evaluate import summarize

    assert summarize(open_results(path)).sizes["cell"] == 2


def test_a_version_1_store_cannot_be_paired(tmp_path):
    ds, _, _ = _synthetic_store(tmp_path)
    with pytest.raises(ValueError, match="store version 1"):
        setting_pairs(ds.drop_vars("data_id"), "pi", 0.1, 0.5)


# ------------------------------------------------------------------------------ decision rule
def _summary(rows: list[tuple]) -> pd.DataFrame:
    """rows: (n_groups, pi, share, tpr, fwer); MCSE 0.01 for every TPR and 0.02 for every FWER."""
    df = pd.DataFrame(rows, columns=["n_groups", "pi", "share_inconsistent", "tpr", "fwer"])
    df["tpr_mcse"] = 0.01
    df["fwer_mcse"] = 0.02
    return df


#: J = 50: pi 0.1 admissible (fwer <= 0.1 everywhere), worst TPR 0.4;
#:         pi 0.25 admissible, worst TPR 0.5 (the recommendation), though 0.1 beats it at share 0.25;
#:         pi 0.5 inadmissible (fwer 0.3 at the null), best TPRs.
#: J = 150: nothing admissible except beta
ROWS = [
    (50, 0.1, 0.0, np.nan, 0.05), (50, 0.1, 0.05, 0.4, 0.02), (50, 0.1, 0.25, 0.9, 0.01),
    (50, 0.25, 0.0, np.nan, 0.10), (50, 0.25, 0.05, 0.5, 0.04), (50, 0.25, 0.25, 0.8, 0.03),
    (50, 0.5, 0.0, np.nan, 0.30), (50, 0.5, 0.05, 0.7, 0.05), (50, 0.5, 0.25, 0.95, 0.02),
    (150, 0.1, 0.0, np.nan, 0.2), (150, 0.1, 0.05, 0.6, 0.1), (150, 0.1, 0.25, 0.9, 0.1),
    (150, 0.5, 0.0, np.nan, 0.5), (150, 0.5, 0.05, 0.8, 0.1), (150, 0.5, 0.25, 0.99, 0.1),
]


def test_decision_table_ranks_by_worst_case_tpr():
    tab = decision_table(_summary(ROWS))
    assert tab.attrs["level"] == 0.1
    j50 = tab[tab["n_groups"] == 50].set_index("pi")
    assert list(tab[tab["n_groups"] == 50]["pi"]) == [0.25, 0.1, 0.5]  # admissible by rank, then the rest
    assert j50.loc[0.25, "rank"] == 1 and j50.loc[0.1, "rank"] == 2 and pd.isna(j50.loc[0.5, "rank"])
    assert bool(j50.loc[0.25, "recommended"]) and not j50.loc[0.1, "recommended"]
    assert bool(j50.loc[0.25, "admissible"])  # fwer exactly at the level counts
    assert j50.loc[0.25, "worst_tpr"] == 0.5 and j50.loc[0.25, "worst_tpr_at"] == "share_inconsistent=0.05"
    assert j50.loc[0.25, "worst_tpr_mcse"] == 0.01
    assert j50.loc[0.5, "worst_fwer"] == 0.3 and j50.loc[0.5, "worst_fwer_at"] == "share_inconsistent=0"
    assert j50.loc[0.1, "mean_tpr"] == pytest.approx(0.65)
    # regret: best admissible TPR per truth (0.05: pi 0.25's 0.5; 0.25: pi 0.1's 0.9)
    assert j50.loc[0.25, "max_regret"] == pytest.approx(0.1) and j50.loc[0.25, "max_regret_at"] == "share_inconsistent=0.25"
    assert j50.loc[0.1, "max_regret"] == pytest.approx(0.1) and j50.loc[0.1, "max_regret_at"] == "share_inconsistent=0.05"
    assert j50.loc[0.5, "max_regret"] == pytest.approx(-0.05)  # inadmissible settings may beat the best
    # J = 150: fwer 0.2 and 0.5 at the null: no setting is admissible, nothing recommended
    j150 = tab[tab["n_groups"] == 150]
    assert not j150["admissible"].any() and not j150["recommended"].any() and j150["rank"].isna().all()
    assert j150["max_regret"].isna().all()


def test_the_level_is_an_argument():
    tab = decision_table(_summary(ROWS), level=0.3)
    j50 = tab[tab["n_groups"] == 50].set_index("pi")
    assert j50.loc[0.5, "rank"] == 1  # now admissible, and best in the worst case (0.7)
    j150 = tab[tab["n_groups"] == 150].set_index("pi")
    assert j150.loc[0.1, "rank"] == 1 and pd.isna(j150.loc[0.5, "rank"])


def test_regret_table_is_exact():
    reg = regret_table(_summary(ROWS))
    r = reg[(reg["n_groups"] == 50)].set_index(["pi", "share_inconsistent"])
    assert r.loc[(0.1, 0.05), "best_setting"] == "pi=0.25" and r.loc[(0.1, 0.05), "regret"] == pytest.approx(0.1)
    assert r.loc[(0.1, 0.05), "regret_mcse"] == pytest.approx(math.hypot(0.01, 0.01))
    assert r.loc[(0.25, 0.05), "regret"] == 0 and r.loc[(0.25, 0.05), "regret_mcse"] == 0
    assert r.loc[(0.25, 0.25), "best_setting"] == "pi=0.1" and r.loc[(0.25, 0.25), "regret"] == pytest.approx(0.1)
    assert np.isnan(r.loc[(0.1, 0.0), "regret"]) and bool(r.loc[(0.1, 0.0), "null"])
    assert len(reg) == len(ROWS)


def test_two_truth_factors_and_two_setting_factors_from_an_xarray_summary():
    rows = []
    for pi in (0.1, 0.5):
        for sd in ("half_t(3, 1)", "half_normal(1)"):
            for share in (0.0, 0.1):
                for slab in (0.3, 0.6):
                    tpr = np.nan if share == 0 else slab + (0.1 if pi == 0.5 else 0) + (0.05 if sd == "half_normal(1)" else 0)
                    fwer = 0.05 if pi == 0.1 else 0.2
                    rows.append((pi, sd, share, slab, tpr, fwer))
    df = pd.DataFrame(rows, columns=["pi", "scale_sd", "share_inconsistent", "slab_sd", "tpr", "fwer"])
    summary = xr.Dataset({"tpr": ("cell", df["tpr"]), "tpr_mcse": ("cell", np.full(len(df), 0.01)),
                          "fwer": ("cell", df["fwer"]), "fwer_mcse": ("cell", np.full(len(df), 0.01))},
                         coords={k: ("cell", df[k].to_numpy()) for k in ("pi", "scale_sd", "share_inconsistent", "slab_sd")}
                         | {"cell_id": ("cell", np.arange(len(df))), "data_id": ("cell", np.arange(len(df)))})
    assert crosses_truth_and_priors(summary)
    roles = decision_roles(summary)
    assert roles.truth == ("share_inconsistent", "slab_sd") and roles.settings == ("pi", "scale_sd") and roles.by == ()
    tab = decision_table(summary)
    best = tab[tab["recommended"]].iloc[0]
    assert best["setting"] == "pi=0.1, scale_sd=half_normal(1)" and best["worst_tpr"] == pytest.approx(0.35)
    assert best["worst_tpr_at"] == "share_inconsistent=0.1, slab_sd=0.3"
    assert tab["admissible"].sum() == 2
    assert not crosses_truth_and_priors(summary.isel(cell=np.flatnonzero(df["pi"] == 0.1)[:1]))


# ------------------------------------------------------------------------------ report section
CROSSED = """
name = "crossed"
seed = 5
replicates = 8
block_size = 8

[generator]
n_groups = 8
group_size = 5

[factors]
share_inconsistent = [0.0, 0.25]
pi = [0.1, 0.25, 0.5]
"""


def _crossed_store(tmp_path):
    """pi 0.5 flags null groups (inadmissible); pi 0.25 finds more than pi 0.1 on the same data sets."""
    design = parse_design(CROSSED)
    info = create_or_open(tmp_path / "c.zarr", design)
    ds0 = open_results(info.path)
    G = info.n_groups_max
    ease = np.array([0.6, 0.8, 0.95, 1.0, 0.7, 0.92, 0.85, 0.98])
    for ci in range(ds0.sizes["cell"]):
        share, pi = float(ds0["share_inconsistent"].values[ci]), float(ds0["pi"].values[ci])
        delta = np.zeros(G)
        delta[: round(share * G)] = 1
        recs = []
        for r in range(8):
            rec = failed_record(G, "", n_methods=1)
            rec["status"] = np.asarray("ok", dtype=SCHEMA["status"]["dtype"])
            rec["error"] = np.asarray("", dtype=SCHEMA["error"]["dtype"])
            rec["delta_true"] = delta
            rec["t_true"] = delta * 0.5
            null_pip = 0.9 if (pi == 0.5 and r % 2 == 0) else 0.1
            rec["pip"] = np.where(delta > 0, ease[r] - (0.3 if pi == 0.1 else 0.0), null_pip)
            rec["flag"] = (rec["pip"] >= 0.75).astype(float)[None, :]
            rec["score"] = rec["pip"][None, :]
            recs.append(rec)
        write_block(info.path, ci, list(range(8)), stack_records(recs))
    return info.path


def test_report_shows_the_decision_for_a_crossed_design(tmp_path):
    from simstudy.evaluate import summarize
    from simstudy.evaluate.plots import plot_decision
    from simstudy.evaluate.report import build_report, decision_section

    path = _crossed_store(tmp_path)
    ds = open_results(path).load()
    summary = summarize(ds)
    tab = decision_table(summary)
    assert list(tab["setting"]) == ["pi=0.25", "pi=0.1", "pi=0.5"] and not tab.iloc[2]["admissible"]
    fig = plot_decision(regret_table(summary), "fwer", level=0.1)
    assert len(fig.axes) >= 1
    md = build_report(path, tmp_path / "rep", figures=True).read_text()
    assert "## Choosing a prior without knowing the truth" in md
    line = next(x for x in md.splitlines() if x.startswith("- All cells: **pi=0.25**"))
    # same data sets: per replicate TPR 1 for pi 0.25 where ease >= 0.75 (6 of 8), 0 for pi 0.1 (ease - 0.3
    # < 0.75): paired difference 0.75, MCSE sd([1]*6 + [0]*2) / sqrt(8) = 0.164: beyond 2 MCSE
    assert "paired MCSE 0.164" in line and "beyond 2 MCSE" in line and "+0.750" in line
    assert (tmp_path / "rep" / "tables" / "decision.csv").is_file()
    assert (tmp_path / "rep" / "figures" / "decision_regret.png").is_file()
    # a design without varying priors has no such section
    sub = summary.isel(cell=np.flatnonzero(summary["pi"].values == 0.1))
    assert decision_section(ds, sub, tmp_path / "rep") == []
