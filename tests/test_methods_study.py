"""Comparator methods in a study: the `methods` design key, the store's `method` dim, the
runner (same data for every method, no JAX for comparator-only designs), old stores."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from simstudy.study.design import DesignError, diff_designs, parse_design
from simstudy.study.scoring import METHOD_VARIABLES, SCHEMA, SS_MELSM_FLAG_PIP
from simstudy.study.store import create_or_open, open_results, read_info, write_block

from test_runner import SMALL  # noqa: E402  (tests/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]

#: tests/test_runner.py's SMALL design (same shape: the sampler is compiled once), with a
#: top-level `methods` line
BODY = SMALL.replace("block_size = 2\n", "block_size = 2\n{methods}\n", 1)
assert "{methods}" in BODY


def design_text(methods: str = "") -> str:
    return BODY.format(methods=methods)


# ------------------------------------------------------------------------------ design
def test_methods_default_keeps_the_hash_and_order_is_canonical():
    plain = parse_design(design_text())
    explicit = parse_design(design_text('methods = ["ss_melsm"]'))
    assert plain.methods == explicit.methods == ("ss_melsm",)
    assert plain.hash == explicit.hash  # designs without `methods` hash as before
    a = parse_design(design_text('methods = ["hlm", "ss_melsm", "hlm_bh"]'))
    b = parse_design(design_text('methods = ["ss_melsm", "hlm_bh", "hlm"]'))
    assert a.methods == b.methods == ("ss_melsm", "hlm", "hlm_bh") and a.hash == b.hash != plain.hash
    assert all(t.methods == a.methods for t in a.tasks())
    assert [c.cell_id for c in a.cells()] == [c.cell_id for c in plain.cells()]  # same seeds, same data
    assert diff_designs(plain, a).kind == "changed" and "methods changed" in diff_designs(plain, a).explain()


@pytest.mark.parametrize(
    "line, message",
    [
        ('methods = ["hlmz"]', "did you mean 'hlm_z'"),
        ('methods = ["ss_melsm", "ss_melsm"]', "listed twice"),
        ("methods = []", "non-empty list"),
        ('methods = "hlm"', "non-empty list"),
    ],
)
def test_methods_are_validated(line, message):
    with pytest.raises(DesignError, match=message) as err:
        parse_design(design_text(line))
    assert "methods" in str(err.value)


# ------------------------------------------------------------------------------ store
def test_store_has_a_method_dim(tmp_path):
    design = parse_design(design_text('methods = ["ss_melsm", "hlm", "hlm_z"]'))
    info = create_or_open(tmp_path / "m.zarr", design)
    ds = open_results(info.path)
    assert info.n_methods == 3 and list(ds["method"].values) == ["ss_melsm", "hlm", "hlm_z"]
    assert ds["flag"].dims == ("cell", "replicate", "method", "group")
    assert ds["score"].dims == ("cell", "replicate", "method", "group")
    assert ds["method_s"].dims == ("cell", "replicate", "method")
    assert ds["pip"].dims == ("cell", "replicate", "group")


def test_a_store_without_methods_still_opens_and_takes_new_records(tmp_path):
    """A store written by the first release (its schema: tests/data/schema_v0.txt; no method
    dim, no convergence verdict, no pi posterior, no slope summaries): opening, resuming
    (records that carry every variable added since) and evaluating still work."""
    from simstudy.evaluate.methods import method_view
    from simstudy.study.scoring import failed_record, stack_records

    design = parse_design(design_text())
    v0 = set((ROOT / "tests" / "data" / "schema_v0.txt").read_text().split())
    old_schema = {k: v for k, v in SCHEMA.items() if k in v0}
    assert set(METHOD_VARIABLES) <= set(SCHEMA) - v0
    path = tmp_path / "old.zarr"
    create_or_open(path, design, schema=old_schema)
    info = read_info(path)
    assert info.n_methods == 0 and create_or_open(path, design).action == "opened"
    rec = failed_record(info.n_groups_max, "")
    rec["pip"][:] = np.linspace(0, 1, 10)
    rec["delta_true"][:] = 0.0
    rec["status"] = np.asarray("ok", dtype=SCHEMA["status"]["dtype"])
    write_block(path, 0, [0, 1], stack_records([rec, rec]))
    ds = open_results(path).load()
    assert "method" not in ds.dims and ds["done"].values[0].all()
    view = method_view(ds)
    assert list(view["method"].values) == ["ss_melsm"]
    np.testing.assert_array_equal(view["score"].values[0, 0, 0], rec["pip"])
    np.testing.assert_array_equal(view["flag"].values[0, 0, 0], rec["pip"] >= SS_MELSM_FLAG_PIP)
    from simstudy.evaluate import summarize

    s = summarize(ds)  # the evaluation copes with the variables the old store lacks
    assert s.fpr.values[0] == pytest.approx(0.3)  # 3 of 10 PIPs >= 0.75, no inconsistent group
    assert s.share_not_converged.values[0] == 0.0


# ------------------------------------------------------------------------------ runner
def _run_all(design, path) -> Path:
    from simstudy.study.runner import run_task

    info = create_or_open(path, design)
    for task in design.tasks():
        run_task(task, str(info.path), info.cell_index[task.cell.cell_id], info.n_groups_max)
    return info.path


def test_comparator_only_design_runs_without_jax(tmp_path):
    """methods = ["hlm", ...] runs in a fresh interpreter without ever importing JAX."""
    text = design_text('methods = ["hlm", "hlm_z", "hlm_bh"]')
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from simstudy.study.design import parse_design
        from test_methods_study import _run_all
        _run_all(parse_design({text!r}), {str(tmp_path / 'c.zarr')!r})
        assert "jax" not in sys.modules and "numpyro" not in sys.modules, "JAX was imported"
        print("no jax")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and "no jax" in out.stdout, out.stderr[-3000:]
    ds = open_results(tmp_path / "c.zarr").load()
    assert ds["done"].values.all() and (ds["status"].values == "ok").all()
    assert np.isnan(ds["pip"].values).all()  # no SS-MELSM
    assert np.isfinite(ds["score"].values).all() and set(np.unique(ds["flag"].values)) <= {0.0, 1.0}
    np.testing.assert_array_equal(ds["score"].sel({"method": "hlm"}).values, np.abs(ds["hlm_z"].values))
    np.testing.assert_array_equal(ds["flag"].sel({"method": "hlm_z"}).values, np.abs(ds["hlm_z"].values) > 1.959963984540054)


def test_every_method_sees_the_same_data(tmp_path):
    """One task with the SS-MELSM and the HLM rules: the HLM's stored Z is the HLM of the
    replicate's data set (regenerated from its seed), the SS-MELSM's stored data summaries
    are of that same data set, and the comparator-only run stores identical HLM numbers."""
    from simstudy.methods.hlm import hlm
    from simstudy.study.generate import generate
    from simstudy.study.runner import comparator_seed

    both = parse_design(design_text('methods = ["ss_melsm", "hlm", "hlm_z", "hlm_bh"]'))
    only = parse_design(design_text('methods = ["hlm", "hlm_z", "hlm_bh"]'))
    ds = open_results(_run_all(both, tmp_path / "both.zarr")).load()
    ds_only = open_results(_run_all(only, tmp_path / "only.zarr")).load()
    assert ds["done"].values.all()
    for ci, cell in enumerate(both.cells()):
        for r in range(both.replicates):
            data, truth = generate(cell.generator_spec(), cell.seed(both.seed, r))
            res = hlm(data, comparator_seed(both.seed, cell.data_id, r))  # the comparators' seed follows the data
            np.testing.assert_array_equal(ds["hlm_z"].values[ci, r], res.z)
            np.testing.assert_array_equal(ds["observed_sd"].values[ci, r], data.stats.y_sd)  # the fit's data
            np.testing.assert_array_equal(ds["delta_true"].values[ci, r], truth.delta)
            for m in ("hlm", "hlm_z", "hlm_bh"):
                np.testing.assert_array_equal(ds["flag"].sel({"method": m}).values[ci, r], res.flags[m].astype(float))
            pip = ds["pip"].values[ci, r]
            np.testing.assert_array_equal(ds["score"].sel({"method": "ss_melsm"}).values[ci, r], pip)
            np.testing.assert_array_equal(ds["flag"].sel({"method": "ss_melsm"}).values[ci, r], pip >= SS_MELSM_FLAG_PIP)
    for name in ("hlm_z", "hlm_tau2", "hlm_H", "hlm_H_p", "delta_true"):
        np.testing.assert_array_equal(ds[name].values, ds_only[name].values, err_msg=name)
    np.testing.assert_array_equal(ds["flag"].sel({"method": ["hlm", "hlm_z", "hlm_bh"]}).values, ds_only["flag"].values)
    assert (ds["method_s"].values > 0).all()
