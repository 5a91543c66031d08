"""The results store (no MCMC): template, region writes, completion, growth, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from simstudy.study.design import DesignError, parse_design
from simstudy.study.scoring import ERROR_MAX, SCHEMA, failed_record, stack_records
from simstudy.study.store import (
    StoreError,
    completion,
    create_or_open,
    open_results,
    read_info,
    unstack_cells,
    write_block,
)

BASE = """
name = "{name}"
seed = {seed}
replicates = {replicates}
block_size = {block_size}

[mcmc]
chains = 2
warmup = 20
draws = 20

[generator]
group_size = 10

[factors]
n_groups = {n_groups}
share_inconsistent = {shares}
"""


def make_design(name="d", seed=1, replicates=4, block_size=2, n_groups=(10, 12), shares=(0.0, 0.2)):
    text = BASE.format(name=name, seed=seed, replicates=replicates, block_size=block_size,
                       n_groups=json.dumps(list(n_groups)), shares=json.dumps(list(shares)))
    return parse_design(text, source=f"{name}.toml")


def fake_records(n_reps: int, G: int, J: int, value: float, status="ok") -> dict[str, np.ndarray]:
    """Hand-made records: every number = value (+ replicate index), groups beyond J NaN."""
    recs = []
    for r in range(n_reps):
        rec = failed_record(G, "")
        for name, spec in SCHEMA.items():
            if spec["dtype"].startswith("<U"):
                continue
            if spec["dims"] == "group":
                arr = np.full(G, np.nan)
                arr[:J] = value + r + np.arange(J) / 100
                rec[name] = arr
            elif spec["dims"].startswith("method"):  # one method (ss_melsm): (1, G) or (1,)
                arr = np.full(rec[name].shape, value + r, dtype=float)
                if spec["dims"] == "method_group":
                    arr[:, J:] = np.nan
                rec[name] = arr
            else:
                rec[name] = np.asarray(value + r)
        rec["status"] = np.asarray(status, dtype=SCHEMA["status"]["dtype"])
        rec["error"] = np.asarray("", dtype=SCHEMA["error"]["dtype"])
        recs.append(rec)
    return stack_records(recs)


def test_round_trip(tmp_path):
    design = make_design()
    path = tmp_path / "r.zarr"
    info = create_or_open(path, design)
    assert info.action == "created" and info.n_groups_max == 12 and info.replicates == 4
    ds = open_results(path)
    assert dict(ds.sizes) == {"cell": 4, "replicate": 4, "group": 12, "method": 1}
    assert list(ds["method"].values) == ["ss_melsm"] and ds["flag"].dims == ("cell", "replicate", "method", "group")
    # template: NaN / "" / False everywhere
    assert np.isnan(ds["pip"].values).all() and (ds["status"].values == "").all() and not ds["done"].values.any()
    # coordinates along cell, no MultiIndex
    for name in ("n_groups", "share_inconsistent", "cell_id", "cell_label"):
        assert ds[name].dims == ("cell",)
    assert ds["cell_id"].dtype == np.int64
    assert list(ds["cell_id"].values) == [c.cell_id for c in design.cells()]
    assert list(ds["n_groups"].values) == [10, 10, 12, 12]
    # attrs
    assert ds.attrs["design_hash"] == design.hash and ds.attrs["design_text"] == design.text
    assert ds.attrs["seed"] == 1
    versions = json.loads(ds.attrs["versions"])
    for pkg in ("simstudy", "jax", "numpyro", "arviz", "xarray", "zarr", "dask"):
        assert pkg in versions
    assert json.loads(ds.attrs["design"])["hash"] == design.hash
    assert ds.attrs["created"]
    for name in list(SCHEMA) + ["done"]:
        assert "long_name" in ds[name].attrs and "units" in ds[name].attrs, name

    cell = 2  # n_groups = 12
    recs = fake_records(2, 12, 12, 5.0, status="not_converged")
    recs["error"][1] = "x" * (ERROR_MAX + 100)
    write_block(path, cell, [2, 3], recs)
    ds = open_results(path).load()
    np.testing.assert_array_equal(ds["pip"].values[cell, 2:4], recs["pip"])
    np.testing.assert_array_equal(ds["tau_t_mean"].values[cell, 2:4], [5.0, 6.0])
    assert list(ds["status"].values[cell, 2:4]) == ["not_converged", "not_converged"]
    assert len(ds["error"].values[cell, 3]) == ERROR_MAX
    expect_done = np.zeros((4, 4), bool)
    expect_done[cell, 2:4] = True
    np.testing.assert_array_equal(ds["done"].values, expect_done)
    assert np.isnan(ds["pip"].values[cell, :2]).all() and np.isnan(ds["pip"].values[:cell]).all()

    done, status = completion(path)
    np.testing.assert_array_equal(done.values, expect_done)
    assert status.values[cell, 2] == "not_converged" and status.values[0, 0] == ""
    assert list(done["cell_id"].values) == [c.cell_id for c in design.cells()]

    # reopening with the same design reuses the store
    assert create_or_open(path, design).action == "opened"
    assert read_info(path).design.hash == design.hash


def test_failed_record_and_padding(tmp_path):
    design = make_design(n_groups=(10, 12))
    path = tmp_path / "f.zarr"
    create_or_open(path, design)
    write_block(path, 0, [0, 1], fake_records(2, 12, 10, 1.0))  # J = 10: two padding groups
    failed = stack_records([failed_record(12, "ValueError: boom")] * 2)
    write_block(path, 1, [2, 3], failed)
    ds = open_results(path).load()
    assert np.isnan(ds["pip"].values[0, :2, 10:]).all() and np.isfinite(ds["pip"].values[0, :2, :10]).all()
    assert list(ds["status"].values[1, 2:]) == ["failed", "failed"]
    assert list(ds["error"].values[1, 2:]) == ["ValueError: boom"] * 2
    for name, spec in SCHEMA.items():
        if not spec["dtype"].startswith("<U"):
            assert np.isnan(ds[name].values[1, 2:]).all(), name


def test_write_block_validates(tmp_path):
    design = make_design()
    path = tmp_path / "v.zarr"
    create_or_open(path, design)
    recs = fake_records(2, 12, 12, 1.0)
    with pytest.raises(StoreError, match="consecutive"):
        write_block(path, 0, [0, 2], recs)
    with pytest.raises(StoreError, match="outside"):
        write_block(path, 9, [0, 1], recs)
    bad = dict(recs)
    bad["pip"] = bad["pip"][:, :5]
    with pytest.raises(StoreError, match="pip"):
        write_block(path, 0, [0, 1], bad)
    incomplete = {k: v for k, v in recs.items() if k != "rhat_max"}
    with pytest.raises(StoreError, match="rhat_max"):
        write_block(path, 0, [0, 1], incomplete)
    assert not completion(path)[0].values.any()


def test_chunks_align_with_tasks(tmp_path):
    design = make_design(replicates=5, block_size=2)
    path = tmp_path / "c.zarr"
    info = create_or_open(path, design)
    g = zarr.open_group(str(path), mode="r")
    B, G = design.block_size, info.n_groups_max
    for name, spec in SCHEMA.items():
        want = {"group": (1, B, G), "fit": (1, B), "method_group": (1, B, 1, G), "method": (1, B, 1)}[spec["dims"]]
        assert g[name].chunks == want, name
    assert g["done"].chunks == (1, B)
    # every task covers exactly one chunk along replicate (and one along cell)
    seen = set()
    for task in design.tasks():
        r0, r1 = task.replicates[0], task.replicates[-1]
        assert r0 % B == 0 and r0 // B == r1 // B
        key = (info.cell_index[task.cell.cell_id], r0 // B)
        assert key not in seen
        seen.add(key)
    assert len(seen) == design.n_cells * 3


def test_extend_adds_cells_and_replicates_without_touching_data(tmp_path):
    old = make_design(replicates=2, n_groups=(10, 12), shares=(0.0, 0.2))
    path = tmp_path / "e.zarr"
    create_or_open(path, old)
    for ci in range(old.n_cells):
        J = old.cells()[ci].get("n_groups")
        write_block(path, ci, [0, 1], fake_records(2, 12, J, 10.0 * ci))
    before = open_results(path).load()

    # one more level of each factor (incl. a larger J: the group dim grows) and 2 more replicates
    new = make_design(replicates=4, n_groups=(10, 12, 20), shares=(0.0, 0.2, 0.4))
    info = create_or_open(path, new)
    assert info.action == "extended" and "cell(s) added" in info.explanation
    after = open_results(path).load()
    assert dict(after.sizes) == {"cell": 9, "replicate": 4, "group": 20, "method": 1}
    # old cells first, in their old positions
    old_ids = list(before["cell_id"].values)
    assert list(after["cell_id"].values[:4]) == old_ids
    assert set(after["cell_id"].values) == {c.cell_id for c in new.cells()}
    for name in list(SCHEMA) + ["done"]:
        old_vals = before[name].values
        new_vals = after[name].values[(slice(0, 4), slice(0, 2)) + tuple(slice(0, n) for n in old_vals.shape[2:])]
        np.testing.assert_array_equal(new_vals, old_vals, err_msg=name)
    assert np.isnan(after["pip"].values[:4, :, 12:]).all()  # new padding
    assert not after["done"].values[:4, 2:].any() and not after["done"].values[4:].any()
    assert np.isnan(after["pip"].values[4:]).all()
    assert after.attrs["design_hash"] == new.hash
    assert "extended" in after.attrs["history"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert create_or_open(path, new).action == "opened"


def test_changed_design_is_refused(tmp_path):
    design = make_design()
    path = tmp_path / "x.zarr"
    create_or_open(path, design)
    write_block(path, 0, [0, 1], fake_records(2, 12, 10, 1.0))
    changed = make_design(seed=2)
    with pytest.raises(StoreError) as err:
        create_or_open(path, changed)
    msg = str(err.value)
    assert "seed changed from 1 to 2" in msg and "new store path" in msg
    fewer = make_design(shares=(0.0,))
    with pytest.raises(StoreError, match="removed"):
        create_or_open(path, fewer)
    ds = open_results(path)
    assert ds.attrs["design_hash"] == design.hash and ds["done"].values.sum() == 2


def test_nothing_written_for_a_bad_design(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = 1\nreplicates = 2\n[factors]\npi = [0.5, 1.5]\n")
    path = tmp_path / "out" / "bad.zarr"
    with pytest.raises(DesignError, match=r"factors.pi\[1\]"):
        create_or_open(path, bad)
    assert not path.exists() and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_refuses_foreign_directories(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "file.txt").write_text("x")
    with pytest.raises(StoreError, match="not a results store"):
        create_or_open(other, make_design())
    empty = tmp_path / "empty"
    empty.mkdir()
    assert create_or_open(empty, make_design()).action == "created"


def test_unstack_full_factorial(tmp_path):
    design = make_design()
    path = tmp_path / "u.zarr"
    create_or_open(path, design)
    write_block(path, 3, [0, 1], fake_records(2, 12, 12, 7.0))
    ds = unstack_cells(open_results(path).load())
    assert ds["pip"].dims[-2:] == ("n_groups", "share_inconsistent")
    assert ds["tau_t_mean"].sel(n_groups=12, share_inconsistent=0.2, replicate=1).item() == 8.0
    assert Path(path).is_dir()
