"""The runner on real (tiny) fits: a LocalCluster with process workers, resume,
kill-and-resume, error capture, --retry-failed and determinism across worker counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from simstudy.study.design import parse_design
from simstudy.study.scoring import SCHEMA
from simstudy.study.store import completion, open_results

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("sample_s", "compile_s", "method_s")

#: 4 cells x 8 replicates in blocks of 2 = 16 tasks of ~1 s each on 2 workers: long
#: enough to kill things mid-run, short enough for the default test tier
GRID = """
name = "grid16"
seed = 7
replicates = 8
block_size = 2

[mcmc]
chains = 2
warmup = 200
draws = 200

[generator]
n_groups = 10
group_size = 10
effect = "fixed"
magnitude = 1.0

[model]
correlated = false

[factors]
share_inconsistent = [0.0, 0.1, 0.2, 0.3]
"""


def write_design(path: Path, text: str = GRID) -> Path:
    path.write_text(text)
    return path


def assert_same_results(a: Path, b: Path) -> None:
    """Every stored array identical (bit for bit), timings excluded."""
    da, db = open_results(a).load(), open_results(b).load()
    assert da.attrs["design_hash"] == db.attrs["design_hash"]
    np.testing.assert_array_equal(da["cell_id"].values, db["cell_id"].values)
    for name in list(SCHEMA) + ["done"]:
        if name in TIMING:
            continue
        np.testing.assert_array_equal(da[name].values, db[name].values, err_msg=name)


@pytest.fixture(scope="module")
def design_file(tmp_path_factory) -> Path:
    return write_design(tmp_path_factory.mktemp("design") / "grid16.toml")


@pytest.fixture(scope="module")
def reference(design_file, tmp_path_factory):
    """One uninterrupted run on 2 worker processes, shared by the tests below."""
    from simstudy.study.runner import run_study

    store = tmp_path_factory.mktemp("ref") / "ref.zarr"
    summary = run_study(design_file, store, workers=2, progress=False)
    return store, summary


def test_store_complete(reference, design_file):
    store, summary = reference
    assert summary.tasks_run == 16 and summary.fits_run == 32 and summary.fits_failed == 0
    ds = open_results(store).load()
    assert ds["done"].values.all()
    assert set(np.unique(ds["status"].values)) <= {"ok", "not_converged"}
    assert (ds["error"].values == "").all()
    real = np.isfinite(ds["n_obs"].values)
    assert real.sum() == 4 * 8 * 10
    pip = ds["pip"].values
    assert np.isfinite(pip[real]).all() and ((pip[real] >= 0) & (pip[real] <= 1)).all()
    # scores are consistent with the truth
    np.testing.assert_array_equal(np.nansum(ds["delta_true"].values, axis=-1), ds["n_inconsistent_true"].values)
    np.testing.assert_array_equal(ds["n_inconsistent_true"].values[:, 0], [0, 1, 2, 3])
    assert (ds["t_true"].values[ds["delta_true"].values == 0] == 0).all()
    np.testing.assert_allclose(ds["sigma_true"].values, np.exp(-0.25 + ds["t_true"].values))
    assert (ds["tau_u_true"].values == 0.33).all() and np.isnan(ds["tau_t_true"].values).all()  # effect = fixed
    assert np.isnan(ds["rho_mean"].values).all()  # uncorrelated model
    for name in ("tau_t_mean", "tau_u_mean", "eta0_mean", "gamma0_mean", "rhat_max", "ess_bulk_min",
                 "ess_tail_min", "tree_depth_mean", "ess_bulk_tau_t", "divergences"):
        assert np.isfinite(ds[name].values).all(), name
    assert (ds["tau_t_q05"].values <= ds["tau_t_mean"].values).all()
    assert (ds["tau_t_mean"].values <= ds["tau_t_q95"].values).all()
    # pip is higher, on average, for the truly inconsistent groups
    assert np.nanmean(pip[ds["delta_true"].values == 1]) > np.nanmean(pip[ds["delta_true"].values == 0])


def test_resume_skips_done_tasks(reference, design_file, tmp_path):
    from simstudy.study.runner import run_study

    store, _ = reference
    again = run_study(design_file, store, workers=2, progress=False)
    assert again.store_action == "opened" and again.tasks_run == 0 and again.fits_run == 0
    assert again.tasks_skipped == 16

    # forget one block in a copy: only that block is redone, with the same numbers
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    done = zarr.open_array(str(copy / "done"), mode="r+")
    done[2, 4:6] = False
    resumed = run_study(design_file, copy, workers=1, progress=False)
    assert resumed.tasks_run == 1 and resumed.fits_run == 2
    assert_same_results(store, copy)


def _worker_pids(client_pid: int) -> list[int]:
    import psutil

    out = []
    for p in psutil.Process(client_pid).children(recursive=True):
        try:
            if "multiprocessing" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline()):
                out.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _done_count(store: Path) -> int:
    try:
        return int(completion(store)[0].values.sum())
    except Exception:  # noqa: BLE001 - store not there yet, or a chunk being written
        return -1


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow
def test_kill_worker_and_client_then_resume(reference, design_file, tmp_path):
    """SIGKILL a worker mid-run, then SIGKILL the client; rerunning completes the store with
    exactly the numbers of the uninterrupted run."""
    import psutil

    from simstudy.study.runner import run_study

    ref_store, _ = reference
    store = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-c", "from simstudy.cli import app; app()", "run", str(design_file),
           "--store", str(store), "--workers", "2", "--no-progress"]
    log = open(tmp_path / "client.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    family: set[int] = set()
    try:
        _wait(lambda: _done_count(store) >= 2, 180, "the first finished block")
        workers = _worker_pids(proc.pid)
        assert workers, "no worker processes found"
        family.update(p.pid for p in psutil.Process(proc.pid).children(recursive=True))
        os.kill(workers[0], signal.SIGKILL)
        n_at_worker_kill = _done_count(store)
        _wait(lambda: _done_count(store) >= n_at_worker_kill + 2, 180, "a block after the worker kill")
        family.update(p.pid for p in psutil.Process(proc.pid).children(recursive=True))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pid in family:  # the orphaned workers of the killed client
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        log.close()
    n_killed = _done_count(store)
    assert 0 < n_killed < 32, f"the run was not interrupted mid-way ({n_killed} of 32 fits done)"

    resumed = run_study(design_file, store, workers=2, progress=False)
    assert resumed.store_action == "opened"
    assert 0 < resumed.tasks_run < 16
    assert resumed.tasks_skipped >= n_killed // 2
    assert_same_results(ref_store, store)


def test_same_numbers_on_one_worker(reference, design_file, tmp_path):
    from simstudy.study.runner import run_study

    ref_store, _ = reference
    store = tmp_path / "one.zarr"
    summary = run_study(design_file, store, workers=1, progress=False)
    assert summary.tasks_run == 16
    assert_same_results(ref_store, store)


SMALL = """
name = "errors"
seed = 3
replicates = 2
block_size = 2

[mcmc]
chains = 2
warmup = 30
draws = 30

[generator]
n_groups = 10
group_size = 10

[model]
correlated = false

[factors]
share_inconsistent = [0.0, 0.3]
"""


def test_error_capture_and_retry_failed(tmp_path, monkeypatch):
    """A cell whose task raises is stored as failed with its error; the other cell is done;
    --retry-failed reruns only the failed block. (In-process threads so the failure can
    be injected with monkeypatch.)"""
    from distributed import Client, LocalCluster

    import simstudy.study.generate
    from simstudy.study.runner import run_study

    design = write_design(tmp_path / "errors.toml", SMALL)
    store = tmp_path / "errors.zarr"
    real_generate = simstudy.study.generate.generate

    def flaky(spec, seed):
        if spec.share_inconsistent == 0.3:
            raise RuntimeError("injected failure for this cell")
        return real_generate(spec, seed)

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc) as client:
        monkeypatch.setattr(simstudy.study.generate, "generate", flaky)
        first = run_study(design, store, client=client, progress=False)
        assert first.tasks_run == 2 and first.fits_failed == 2
        assert any("injected failure" in e for e in first.errors)
        ds = open_results(store).load()
        failed_cell = int(np.flatnonzero(ds["share_inconsistent"].values == 0.3)[0])
        ok_cell = 1 - failed_cell
        assert ds["done"].values.all()
        assert list(ds["status"].values[failed_cell]) == ["failed", "failed"]
        err = ds["error"].values[failed_cell, 0]
        assert err.startswith("RuntimeError: injected failure for this cell") and "test_runner.py" in err
        assert np.isnan(ds["pip"].values[failed_cell]).all() and np.isnan(ds["rhat_max"].values[failed_cell]).all()
        assert set(ds["status"].values[ok_cell]) <= {"ok", "not_converged"}
        assert np.isfinite(ds["pip"].values[ok_cell]).all()

        # without --retry-failed a rerun has nothing to do
        assert run_study(design, store, client=client, progress=False).tasks_run == 0

        monkeypatch.setattr(simstudy.study.generate, "generate", real_generate)
        retried = run_study(design, store, client=client, retry_failed=True, progress=False)
        assert retried.tasks_run == 1 and retried.fits_failed == 0
        ds2 = open_results(store).load()
        assert set(ds2["status"].values.ravel()) <= {"ok", "not_converged"}
        assert (ds2["error"].values == "").all()
        np.testing.assert_array_equal(ds2["pip"].values[ok_cell], ds["pip"].values[ok_cell])


def test_client_side_failure_is_recorded(tmp_path):
    """A task that dies with its worker (KilledWorker) is stored as failed by the client."""
    from simstudy.study.runner import _record_client_side_failure
    from simstudy.study.store import create_or_open

    design = parse_design(SMALL, source="errors.toml")
    info = create_or_open(tmp_path / "k.zarr", design)
    task = design.tasks()[0]
    ci = info.cell_index[task.cell.cell_id]
    res = _record_client_side_failure(task, ci, info, RuntimeError("worker died"))
    assert res.statuses == ["failed", "failed"]
    ds = open_results(info.path).load()
    assert list(ds["status"].values[ci]) == ["failed", "failed"]
    assert "task failed on the cluster: RuntimeError: worker died" in ds["error"].values[ci, 0]


def test_cli_status_and_run(reference, design_file):
    from typer.testing import CliRunner

    from simstudy.cli import app

    store, _ = reference
    out = CliRunner().invoke(app, ["status", str(store)], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "grid16" in out.output and "tasks done" in out.output and "16/16 tasks finished" in out.output
    out = CliRunner().invoke(app, ["run", str(design_file), "--store", str(store), "--workers", "1"])
    assert out.exit_code == 0, out.output
    assert "nothing to do" in out.output


def test_batch_composition_does_not_change_results():
    """A replicate's fit is the same whether it is fitted alone or within a block (so
    blocks could be re-cut without changing any number). Through the runner's batched call
    (``fit_block``): it splits a block by model structure, as each data set picks its own
    location parameterisation (here replicate 0 is fitted non-centred, replicate 1 centred)."""
    from simstudy.study.generate import generate
    from simstudy.study.runner import fit_seed
    from simstudy.study.task import fit_block

    design = parse_design(SMALL, source="errors.toml")
    task = design.tasks()[0]
    cell, seed = task.cell, design.seed
    data = [generate(cell.generator_spec(), task.seed_sequences()[i])[0] for i in range(2)]
    mcmc = cell.mcmc
    both, _ = fit_block(data, cell.priors(), [fit_seed(seed, cell.cell_id, r) for r in (0, 1)], mcmc)
    alone, _ = fit_block(data[1:], cell.priors(), [fit_seed(seed, cell.cell_id, 1)], mcmc)
    swapped, _ = fit_block(data[::-1], cell.priors(), [fit_seed(seed, cell.cell_id, r) for r in (1, 0)], mcmc)
    for name in ("beta", "eta", "tau", "t", "incl_prob"):
        np.testing.assert_array_equal(both[1].posterior[name].values, alone[0].posterior[name].values, err_msg=name)
        np.testing.assert_array_equal(both[1].posterior[name].values, swapped[0].posterior[name].values, err_msg=name)


def test_extended_design_runs_only_new_cells_and_replicates(reference, tmp_path):
    """Adding a level and replicates grows the store in place; old results are untouched."""
    import shutil

    from simstudy.study.runner import run_study

    ref_store, _ = reference
    store = tmp_path / "grown.zarr"
    shutil.copytree(ref_store, store)
    bigger = GRID.replace("replicates = 8", "replicates = 10").replace(
        "share_inconsistent = [0.0, 0.1, 0.2, 0.3]", "share_inconsistent = [0.0, 0.1, 0.2, 0.3, 0.4]")
    design = write_design(tmp_path / "bigger.toml", bigger)
    summary = run_study(design, store, workers=2, progress=False)
    assert summary.store_action == "extended"
    assert summary.tasks_run == 4 * 1 + 1 * 5 and summary.tasks_skipped == 16
    old, new = open_results(ref_store).load(), open_results(store).load()
    assert new["done"].values.all() and dict(new.sizes)["cell"] == 5
    for name in list(SCHEMA) + ["done"]:
        np.testing.assert_array_equal(new[name].values[:4, :8], old[name].values, err_msg=name)


def _tasks_run_in(log: str) -> list[str]:
    """``label replicates a-b`` of every block a runner's log says it ran itself."""
    import re

    out = []
    for line in log.splitlines():
        m = re.match(r"\[\d+/\d+\] (.+ replicates \d+-\d+): (.*)$", line.strip())
        if m and not m.group(2).startswith("done by another runner"):
            out.append(m.group(1))
    return out


@pytest.mark.slow
def test_two_runners_share_one_store(reference, design_file, tmp_path):
    """A real concurrent run: two `simstudy run --join` started together on a new store. One
    creates the store (the other waits, then joins; no ENOTEMPTY traceback), they split the
    tasks by leases, every task runs exactly once, both exit 0 and the store equals the
    uninterrupted run."""
    from simstudy.study.lock import lease_dir, lock_path

    ref_store, _ = reference
    store = tmp_path / "shared.zarr"
    cmd = [sys.executable, "-c", "from simstudy.cli import app; app()", "run", str(design_file),
           "--store", str(store), "--workers", "1", "--join"]
    env = dict(os.environ, COLUMNS="400")  # one progress line per task, unwrapped
    logs = [tmp_path / f"runner{i}.log" for i in (0, 1)]
    handles = [open(log, "w") for log in logs]
    procs = [subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env) for fh in handles]
    try:
        codes = [p.wait(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for fh in handles:
            fh.close()
    texts = [log.read_text() for log in logs]
    both = "\n---\n".join(texts)
    assert codes == [0, 0], both
    assert "Traceback" not in both
    assert sum("joining the run of" in t for t in texts) == 1, both
    ran = [_tasks_run_in(t) for t in texts]
    every = ran[0] + ran[1]
    assert len(every) == 16 and len(set(every)) == 16, both  # no task twice, none left out
    assert all(ran), f"one runner ran every task: {both}"
    assert all("complete: all 32 fits are done" in t for t in texts), both
    assert_same_results(ref_store, store)
    assert not lock_path(store).exists() and not lease_dir(store).exists()
