"""Hardening (issue 14): one runner per store (lock, stale locks, task leases, the creation
race), resource limits checked before any work, exit codes, clean failures on full disks,
foreign and unfinished stores, non-UTF-8 files and the smaller input checks.

The real concurrent run of two runners on one store is in tests/test_runner.py (it reuses
that module's uninterrupted reference run)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from simstudy.cli import app
from simstudy.study import lock as L
from simstudy.study.design import DesignError, load_design, parse_design

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "designs" / "smoke.toml"


def _invoke(args, **kw):
    return CliRunner().invoke(app, [str(a) for a in args], **kw)


def _output(result) -> str:
    """stdout and stderr of a CliRunner result (click >= 8.2 interleaves both in ``output``)."""
    return result.output


@pytest.fixture
def sleeper():
    """A live process on this host that is not us (a lock holder that is alive)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_holder(path: Path, *, host=None, pid: int, run="other-run", age: float = 0.0, phase="running"):
    path.parent.mkdir(parents=True, exist_ok=True)
    started = L._process_start(pid)
    path.write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid, "pid_start": started,
                                "started": "2026-01-01T00:00:00+00:00", "run": run,
                                "command": "simstudy run other.toml", "phase": phase}))
    if age:
        t = time.time() - age
        os.utime(path, (t, t))


# =============================================================================== store lock
def test_lock_excludes_second_holder_and_names_the_first(tmp_path):
    store = tmp_path / "s.zarr"
    first = L.StoreLock(store, command="simstudy run a.toml")
    assert first.acquire() is None and first.held
    info = json.loads(L.lock_path(store).read_text())
    assert info["host"] == socket.gethostname() and info["pid"] == os.getpid() and info["started"]
    # a second lock object in the same (live) process: the first is alive, so it is refused
    second = L.StoreLock(store)
    holder = second.acquire()
    assert holder is not None and not second.held
    assert holder.pid == os.getpid() and "simstudy run a.toml" in holder.describe()
    first.release()
    assert not L.lock_path(store).exists()
    assert second.acquire() is None
    second.release()


def test_stale_lock_of_dead_process_on_this_host_is_taken_over(tmp_path):
    store = tmp_path / "s.zarr"
    _write_holder(L.lock_path(store), pid=_dead_pid())
    lock = L.StoreLock(store)
    assert lock.acquire() is None
    _, reason = lock.took_over
    assert "no longer running" in reason
    assert json.loads(L.lock_path(store).read_text())["pid"] == os.getpid()
    lock.release()


def test_lock_of_live_process_is_kept_whatever_its_heartbeat(tmp_path, sleeper):
    store = tmp_path / "s.zarr"
    _write_holder(L.lock_path(store), pid=sleeper.pid, age=10_000)
    holder = L.StoreLock(store).acquire()
    assert holder is not None and holder.pid == sleeper.pid


def test_lock_of_other_host_goes_stale_by_heartbeat_age(tmp_path, monkeypatch):
    store = tmp_path / "s.zarr"
    path = L.lock_path(store)
    _write_holder(path, host="node-elsewhere", pid=12345, age=30)
    assert L.StoreLock(store, stale_after=300).acquire() is not None  # fresh heartbeat: alive
    _write_holder(path, host="node-elsewhere", pid=12345, age=400)
    lock = L.StoreLock(store, stale_after=300)
    assert lock.acquire() is None
    assert "heartbeat is 400 s old" in lock.took_over[1]
    lock.release()
    # the limit comes from the environment too
    monkeypatch.setenv("SIMSTUDY_LOCK_STALE_S", "20")
    _write_holder(path, host="node-elsewhere", pid=12345, age=30)
    assert L.StoreLock(store).acquire() is None


def test_heartbeat_refreshes_the_lock(tmp_path):
    store = tmp_path / "s.zarr"
    lock = L.StoreLock(store, heartbeat=0.1)
    assert lock.acquire() is None
    t = time.time() - 100
    os.utime(lock.path, (t, t))
    time.sleep(0.5)
    assert time.time() - lock.path.stat().st_mtime < 5
    lock.release()


def test_task_lease_same_run_takes_over_other_run_refused(tmp_path, sleeper):
    leases = tmp_path / "leases"
    _write_holder(L.lease_file(leases, "7:0-1"), pid=sleeper.pid, run="run-a")
    # another run: the holder is alive -> held
    other = L.TaskLease(leases, "7:0-1", "run-b")
    assert other.acquire() is not None
    # the same run asking again means its earlier attempt died (Dask resubmitted it)
    same = L.TaskLease(leases, "7:0-1", "run-a")
    assert same.acquire() is None and "earlier attempt" in same.took_over[1]
    same.release()
    assert not L.lease_file(leases, "7:0-1").exists()


def test_concurrent_breakers_take_a_stale_lock_once(tmp_path):
    """Many processes race for one stale lock: exactly one gets it."""
    store = tmp_path / "s.zarr"
    _write_holder(L.lock_path(store), pid=_dead_pid())
    code = (
        "import sys, time; from simstudy.study.lock import StoreLock\n"
        f"l = StoreLock({str(store)!r})\n"
        "h = l.acquire()\n"
        "print('GOT' if h is None else 'HELD', flush=True)\n"
        "time.sleep(3)\n"
        "l.release()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert sorted(outs) == ["GOT", "HELD", "HELD", "HELD"], outs


def test_second_run_is_refused_naming_the_holder(tmp_path, sleeper):
    """Exit 75 and the holder's host, PID and start time; nothing created."""
    store = tmp_path / "busy.zarr"
    _write_holder(L.lock_path(store), pid=sleeper.pid)
    result = _invoke(["run", SMOKE, "--store", store, "--workers", "1", "--no-progress"])
    assert result.exit_code == 75, _output(result)
    out = _output(result)
    assert f"{socket.gethostname()}:{sleeper.pid}" in out and "2026-01-01" in out and "--join" in out
    assert "simstudy run other.toml" in out
    assert not store.exists()


def test_join_refuses_a_store_of_another_design(tmp_path, sleeper):
    from simstudy.study.runner import run_study
    from simstudy.study.store import StoreError, create_or_open

    store = tmp_path / "s.zarr"
    create_or_open(store, SMOKE)
    _write_holder(L.lock_path(store), pid=sleeper.pid)
    other = tmp_path / "other.toml"
    other.write_text(SMOKE.read_text().replace("seed = 1", "seed = 2"))
    with pytest.raises(StoreError, match="must run the design the store holds"):
        run_study(other, store, join=True, progress=False, worker_memory="64GB")


def test_store_creation_race_enotempty(tmp_path, monkeypatch):
    """rename() onto a store another process just made fails with ENOTEMPTY on Linux: the
    run opens that store when it holds the same design, else says what happened."""
    import simstudy.study.store as S

    design = load_design(SMOKE)
    store = tmp_path / "race.zarr"
    real_rename = os.rename

    def racing_rename(src, dst):
        if Path(dst) == store and not store.exists():
            shutil.copytree(src, dst)  # another run of the same design renamed its copy first
            raise OSError(errno.ENOTEMPTY, "Directory not empty", str(src))
        return real_rename(src, dst)

    monkeypatch.setattr(S.os, "rename", racing_rename)
    # first: the "other process" made the store from our own template -> same design -> opened
    info = S.create_or_open(store, design)
    assert info.action == "opened" and store.is_dir()
    assert not list(tmp_path.glob(".race.zarr.creating-*"))

    other = parse_design(SMOKE.read_text().replace("seed = 1", "seed = 5"), source="other.toml")
    store2 = tmp_path / "race2.zarr"

    def racing_rename_other(src, dst):
        if Path(dst) == store2 and not store2.exists():
            monkeypatch.setattr(S.os, "rename", real_rename)
            S._create(store2, other, S._schema())  # a run of another design won
            raise OSError(errno.ENOTEMPTY, "Directory not empty", str(src))
        return real_rename(src, dst)

    monkeypatch.setattr(S.os, "rename", racing_rename_other)
    with pytest.raises(S.StoreError, match="created by another run, for another design"):
        S.create_or_open(store2, design)
    assert not list(tmp_path.glob(".race2.zarr.creating-*"))


# =============================================================================== limits
HUGE = """
seed = 1
replicates = 2
[factors]
n_groups = {a}
pi = {b}
draws = {c}
"""


def test_cell_count_refused_before_building():
    text = HUGE.format(a=list(range(2, 102)), b=[round(0.001 * i, 3) for i in range(1, 101)],
                       c=list(range(1, 1001)))
    t0 = time.perf_counter()
    with pytest.raises(DesignError) as exc:
        parse_design(text)
    assert time.perf_counter() - t0 < 10
    msg = str(exc.value)
    assert "10,000,000 cells" in msg and "100 x 100 x 1000" in msg and "--max-cells 10000000" in msg
    # the limit is an option
    small = HUGE.format(a=[10, 20], b=[0.2, 0.5], c=[100, 200])
    with pytest.raises(DesignError, match="8 cells"):
        parse_design(small, max_cells=5)
    assert parse_design(small, max_cells=8).n_cells == 8


def test_task_count_refused_and_overridable(tmp_path):
    text = "seed = 1\nreplicates = 1000000000\nblock_size = 1\n"
    with pytest.raises(DesignError, match="1,000,000,000 tasks"):
        parse_design(text)
    path = tmp_path / "many.toml"
    path.write_text("seed = 1\nreplicates = 50\nblock_size = 1\n[factors]\npi = [0.2, 0.5]\n")
    result = _invoke(["run", path, "--store", tmp_path / "m.zarr", "--max-tasks", "10", "--no-progress"])
    assert result.exit_code == 2 and "100 tasks" in _output(result) and "--max-tasks 100" in _output(result)
    assert not (tmp_path / "m.zarr").exists()


def test_stored_design_is_not_refused_by_limits(tmp_path):
    """A store made with a raised limit stays readable (status re-parses its design)."""
    from simstudy.study.store import create_or_open, read_info

    text = SMOKE.read_text()
    info = create_or_open(tmp_path / "s.zarr", parse_design(text, source="smoke.toml"))
    import simstudy.study.limits as lim

    old = lim.MAX_CELLS
    try:
        lim.MAX_CELLS = 1
        assert read_info(info.path).design.n_cells == 2
    finally:
        lim.MAX_CELLS = old


def test_memory_per_task_refused_before_anything(tmp_path):
    from simstudy.study.limits import ResourceError, task_memory
    from simstudy.study.runner import run_study

    big = tmp_path / "big.toml"
    big.write_text(SMOKE.read_text().replace("draws = 50", "draws = 10000000000"))
    store = tmp_path / "big.zarr"
    with pytest.raises(ResourceError) as exc:
        run_study(big, store, workers=1, progress=False, worker_memory="8GB")
    msg = str(exc.value)
    assert "10,000,000,000 draws" in msg and "8.0 GB" in msg and "--worker-memory" in msg
    assert "TB of memory" in msg or "PB of memory" in msg
    assert not store.exists() and not L.lock_path(store).exists()
    # the CLI: one message, exit 2, detected worker memory named
    result = _invoke(["run", big, "--store", store, "--workers", "2", "--no-progress"])
    assert result.exit_code == 2 and "worker process(es)" in _output(result), _output(result)
    # the estimate grows with J, chains, draws and block size, and is in the measured range
    base = dict(n_groups=300, group_size=150, chains=4, draws=1000, correlated=False)
    est = task_memory(base, 10).bytes
    assert 1.0 * 2**30 < est < 2.0 * 2**30  # measured 1.06 GB peak for this cell
    for key, value in (("n_groups", 600), ("chains", 8), ("draws", 2000)):
        assert task_memory(base | {key: value}, 10).bytes > est
    assert task_memory(base, 20).bytes > est


def test_parse_size():
    from simstudy.study.limits import parse_size

    assert parse_size("2GB") == 2 * 2**30 and parse_size("1.5 GiB") == int(1.5 * 2**30)
    assert parse_size("800M") == 800 * 2**20 and parse_size(1000) == 1000 and parse_size("2e9") == 2 * 10**9
    with pytest.raises(ValueError, match="not a memory size"):
        parse_size("lots")


# =============================================================================== exit codes
def test_exit_code_from_store_state():
    from simstudy.study.runner import RunSummary

    s = RunSummary("d", Path("s"), "opened", 4, 0, store_fits_total=8)
    assert s.exit_code == 0
    s.store_fits_failed = 2
    assert s.exit_code == 3
    s.store_fits_pending = 1
    assert s.exit_code == 4
    s.interrupted = True
    assert s.exit_code == 130


@pytest.mark.parametrize("state, code", [((0, 0, False), 0), ((3, 0, False), 3), ((0, 2, False), 4),
                                          ((0, 2, True), 130)])
def test_cli_run_exit_codes(tmp_path, monkeypatch, state, code):
    import simstudy.study.runner as R

    failed, pending, interrupted = state

    def fake_run_study(design, store, **kw):
        return R.RunSummary("d", Path(store), "opened", 1, 0, interrupted=interrupted, store_fits_failed=failed,
                            store_fits_pending=pending, store_fits_total=8)

    monkeypatch.setattr(R, "run_study", fake_run_study)
    result = _invoke(["run", SMOKE, "--store", tmp_path / "s.zarr"])
    assert result.exit_code == code


def test_help_documents_exit_codes():
    result = _invoke(["run", "--help"], terminal_width=200)
    out = _output(result)
    for text in ("Exit codes", "0   complete", "3   complete with failed fits", "130 interrupted", "75  busy",
                 "4   incomplete", "--join"):
        assert text in out, text


def test_all_fits_failed_exits_3_and_status_says_why(tmp_path, monkeypatch):
    """Every fit fails: the summary counts them and points to `simstudy status`, the exit
    code is 3, and status lists the error. (In-process workers so the failure can be injected.)"""
    from distributed import Client, LocalCluster
    from rich.console import Console

    import simstudy.study.generate
    from simstudy.study.runner import EXIT_FAILED_FITS, run_study

    store = tmp_path / "f.zarr"

    def broken(spec, seed):
        raise RuntimeError("injected: every fit fails")

    monkeypatch.setattr(simstudy.study.generate, "generate", broken)
    log = tmp_path / "log.txt"
    with open(log, "w") as fh, LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                            dashboard_address=None) as lc, Client(lc) as client:
        console = Console(file=fh, width=200)
        summary = run_study(SMOKE, store, client=client, progress=True, console=console)
        again = run_study(SMOKE, store, client=client, progress=True, console=console)
    assert summary.fits_failed == 4 and summary.exit_code == EXIT_FAILED_FITS
    assert again.tasks_run == 0 and again.exit_code == EXIT_FAILED_FITS  # the store's state, not this run's
    text = log.read_text()
    assert "4 of 4 fits failed" in text and f"simstudy status {store}" in text and "--retry-failed" in text
    result = _invoke(["status", store], terminal_width=200)
    assert result.exit_code == 0
    out = " ".join(result.output.split())  # rich wraps at the console width
    assert "why fits failed" in out and "4 fit(s)" in out and "injected: every fit fails" in out
    assert not L.lock_path(store).exists()


# =============================================================================== store writes
def _task_setup(tmp_path):
    from simstudy.study.store import create_or_open

    design = load_design(SMOKE)
    info = create_or_open(tmp_path / "w.zarr", design)
    task = design.tasks()[0]
    return design, info, task, info.cell_index[task.cell.cell_id]


def test_task_whose_write_fails_is_recorded_failed(tmp_path, monkeypatch):
    """A full disk during the block's write: the block is stored as failed (done, with the
    reason), not half-written. (The fit itself is replaced by an error to keep this fast.)"""
    import simstudy.study.generate
    import simstudy.study.runner as R
    import simstudy.study.task as T
    from simstudy.study.store import open_results

    _, info, task, ci = _task_setup(tmp_path)
    monkeypatch.setattr(simstudy.study.generate, "generate",
                        lambda spec, seed: (_ for _ in ()).throw(RuntimeError("no fit here")))
    real = T.write_block
    calls = []

    def full_disk(path, cell_index, reps, records, **kw):
        calls.append(kw)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, cell_index, reps, records, **kw)

    monkeypatch.setattr(T, "write_block", full_disk)
    res = R.run_task(task, str(info.path), ci, info.n_groups_max)
    assert res.statuses == ["failed", "failed"] and "no space left on" in res.error
    ds = open_results(info.path).load()
    assert ds["done"].values[ci].all()
    assert list(ds["status"].values[ci]) == ["failed", "failed"]
    assert "could not be written to the store: no space left on" in ds["error"].values[ci, 0]


def test_block_stays_pending_when_even_the_failure_cannot_be_written(tmp_path, monkeypatch):
    import simstudy.study.generate
    import simstudy.study.runner as R
    import simstudy.study.task as T
    from simstudy.study.store import open_results

    _, info, task, ci = _task_setup(tmp_path)
    monkeypatch.setattr(simstudy.study.generate, "generate",
                        lambda spec, seed: (_ for _ in ()).throw(RuntimeError("no fit here")))
    monkeypatch.setattr(T, "write_block", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    res = R.run_task(task, str(info.path), ci, info.n_groups_max)  # does not raise
    assert res.statuses == ["failed", "failed"] and "stays pending" in res.error
    assert not open_results(info.path)["done"].values[ci].any()


def test_write_block_checks_free_space_first(tmp_path, monkeypatch):
    import simstudy.fsutil as F
    from simstudy.study.scoring import failed_record, stack_records
    from simstudy.study.store import open_results, write_block

    _, info, task, ci = _task_setup(tmp_path)
    monkeypatch.setattr(F, "free_bytes", lambda path: 1000)
    records = stack_records([failed_record(info.n_groups_max, "x") for _ in task.replicates])
    with pytest.raises(F.DiskFullError, match="no space left on .* while writing the results of cell"):
        write_block(info.path, ci, task.replicates, records)
    ds = open_results(info.path).load()
    assert not ds["done"].values.any() and (ds["status"].values == "").all()  # nothing written


def test_store_creation_on_full_disk_is_one_clean_error(tmp_path, monkeypatch):
    import simstudy.study.store as S

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(S, "_write_template", full)
    with pytest.raises(S.StoreError, match="cannot create the results store: no space left on"):
        S.create_or_open(tmp_path / "full.zarr", SMOKE)
    assert not list(tmp_path.iterdir())


# =============================================================================== foreign / unfinished stores
@pytest.fixture
def foreign_zarr(tmp_path):
    import xarray as xr

    path = tmp_path / "foreign.zarr"
    xr.Dataset({"x": ("t", np.arange(5.0))}).to_zarr(path, consolidated=False)
    return path


@pytest.mark.parametrize("command", ["status", "summarize", "plot", "report"])
def test_foreign_zarr_store_gives_the_status_message(foreign_zarr, tmp_path, command):
    args = [command, foreign_zarr] + (["--out", tmp_path / "o"] if command in ("plot", "report") else [])
    result = _invoke(args)
    assert result.exit_code == 2, _output(result)
    out = _output(result)
    assert "is a Zarr store but not a simstudy results store" in out and "Traceback" not in out
    assert not (tmp_path / "o").exists()


def test_plot_and_summarize_say_the_store_is_unfinished(tmp_path):
    from test_evaluate_metrics import synthetic_store

    store = tmp_path / "u.zarr"
    synthetic_store(factors={"pi": [0.25, 0.5]}, replicates=3, statuses={(1, 2): ""}).to_zarr(store, consolidated=False)
    result = _invoke(["plot", store, "--out", tmp_path / "figs", "--metric", "tpr"])
    assert result.exit_code == 0, _output(result)
    assert "the store is unfinished: 1 of 6 fits are not done yet" in _output(result)
    assert f"simstudy status {store}" in _output(result)
    result = _invoke(["summarize", store])
    assert result.exit_code == 0 and "unfinished" in _output(result)


# =============================================================================== files and inputs
def test_non_utf8_design_names_line_column_and_fix(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'seed = 1\nreplicates = 2\ndescription = "caf\xe9 study"\n')
    with pytest.raises(DesignError) as exc:
        load_design(path)
    msg = str(exc.value)
    assert str(path) in msg and "line 3, column 19" in msg and "0xe9" in msg and "UTF-8" in msg and "iconv" in msg
    result = _invoke(["run", path, "--store", tmp_path / "s.zarr"])
    assert result.exit_code == 2 and "line 3, column 19" in _output(result)
    assert "codec can't decode" not in _output(result)


def test_generate_spec_non_utf8(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(b"n_groups = 10\n# r\xe9sum\xe9\n")
    result = _invoke(["generate", "--out", tmp_path / "o", "--seed", "1", "--spec", spec])
    assert result.exit_code == 2 and "line 2, column 4" in _output(result)


def test_unknown_top_level_key_did_you_mean():
    for key, hint in (("replicate = 2", "'replicates'"), ("[priors]\npi = 0.3", "'model'"),
                      ("Seed = 3", "'seed'"), ("[sampler]\nchains = 2", "'mcmc'")):
        with pytest.raises(DesignError) as exc:
            parse_design(f"seed = 1\nreplicates = 2\n{key}\n")
        assert f"did you mean {hint}" in str(exc.value), str(exc.value)
    with pytest.raises(DesignError, match="the top-level keys are name, description, seed"):
        parse_design("seed = 1\nreplicates = 2\nzzz = 1\n")


def test_size_min_above_size_max_reported_once():
    with pytest.raises(DesignError) as exc:
        parse_design('seed = 1\nreplicates = 2\n[generator]\nsize_dist = "uniform"\nsize_min = 10\nsize_max = 5\n')
    assert len(exc.value.problems) == 1
    assert "size_min (10) is larger than size_max (5)" in exc.value.problems[0]


def test_constant_group_warning_says_what_it_does():
    from simstudy.model.data import ConstantGroupWarning, MelsmData

    rng = np.random.default_rng(1)
    y = rng.normal(size=40)
    g = np.repeat(np.arange(4), 10)
    y[g == 2] = 3.0
    with pytest.warns(ConstantGroupWarning) as rec:
        data = MelsmData.from_arrays(y, g)
    msg = str(rec[0].message)
    assert "1 group(s)" in msg and "(2)" in msg and "divergent" in msg and "PIP of 1" in msg and "BF10" in msg
    assert list(data.constant_groups()) == [2]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantGroupWarning)
        MelsmData.from_arrays(rng.normal(size=40), g)  # no constant group: no warning


def test_duplicate_csv_columns_refused(tmp_path):
    from simstudy.realdata.commands import FitInputError, read_csv_checked

    path = tmp_path / "dup.csv"
    path.write_text("group,y,x,x\n1,0.5,1,2\n2,0.7,3,4\n")
    with pytest.raises(FitInputError, match=r"duplicate column names \('x' is column 3 and 4\)"):
        read_csv_checked(path)
    result = _invoke(["fit", path, "--location", "y ~ x + (1 | group)", "--scale", "~ 1 + (1 | group)"])
    assert result.exit_code == 2 and "duplicate column names" in _output(result)


def test_dropna_drops_infinite_rows_too():
    from simstudy.realdata.formula import FormulaError, melsm_data_from_formulas

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"g": np.repeat(np.arange(5), 8), "y": rng.normal(size=40), "x": rng.normal(size=40)})
    df.loc[3, "y"] = np.inf
    df.loc[9, "x"] = -np.inf
    df.loc[20, "y"] = np.nan
    with pytest.raises(FormulaError, match="missing or infinite values") as exc:
        melsm_data_from_formulas(df, "y ~ x + (1 | g)", "~ 1 + (1 | g)")
    assert "--dropna" in str(exc.value)
    data = melsm_data_from_formulas(df, "y ~ x + (1 | g)", "~ 1 + (1 | g)", dropna=True)
    assert data.n_obs == 37 and data.meta["dropped_rows"] == 3 and np.isfinite(data.y).all()
    only_inf = df.drop(index=20)
    with pytest.raises(FormulaError, match="^infinite values"):
        melsm_data_from_formulas(only_inf, "y ~ x + (1 | g)", "~ 1 + (1 | g)")


def test_bf10_prints_a_bound():
    from simstudy.realdata.summary import format_bf

    assert format_bf(float("inf")) == "> 10^6" and format_bf(3e7) == "> 10^6"
    assert format_bf(12.34) == "12.3" and format_bf(5e4) == "5.00e+04" and format_bf(float("nan")) == "–"


def test_utf8_message_positions():
    from simstudy.fsutil import EncodingError, read_text_utf8

    raw = "a = 1\nb = \"é\"\n".encode() + b"c = '\xff'\n"
    p = Path(os.environ.get("TMPDIR", "/tmp")) / f"enc-{os.getpid()}.txt"
    p.write_bytes(raw)
    try:
        with pytest.raises(EncodingError, match=r"line 3, column 6: byte 0xff"):
            read_text_utf8(p)
    finally:
        p.unlink()


# =============================================================================== fit --out on a full disk
FIT_J, FIT_N = 12, 20  # the shape of tests/test_realdata_commands.py: its sampler is compiled already
FIT_ARGS = ["--location", "y ~ 1 + (1 | group)", "--scale", "~ 1 + (1 | group)", "--chains", "2", "--warmup",
            "150", "--draws", "150"]


@pytest.fixture(scope="module")
def fit_csv(fit_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("fitcsv") / "data.csv"
    fit_data(FIT_J, FIT_N).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def one_fit(fit_csv):
    import simstudy

    return simstudy.fit_formula(pd.read_csv(fit_csv), "y ~ 1 + (1 | group)", "~ 1 + (1 | group)", seed=1,
                                chains=2, warmup=150, draws=150)


def test_fit_out_enospc_while_writing(fit_csv, tmp_path, monkeypatch):
    """ENOSPC in the middle of writing posterior.nc: one error line naming the file system,
    the file and the space needed; exit 1; the temporary directory is gone."""
    import simstudy.realdata.fitdir as C

    def full(path, data):
        Path(path).write_bytes(data[: len(data) // 2])  # a partial file, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C, "_write_bytes", full)
    out_dir = tmp_path / "fits" / "m1"
    result = _invoke(["fit", fit_csv, *FIT_ARGS, "--out", out_dir])
    assert result.exit_code == 1, _output(result)
    err = " ".join(_output(result).split())
    assert "error: no space left on" in err and "while writing posterior.nc to" in err and "need about" in err
    assert "MB" in err and "partial files were removed" in err and "Traceback" not in err
    assert err.count("error:") == 1
    assert not out_dir.exists() and list((tmp_path / "fits").iterdir()) == []


def test_fit_out_free_space_checked_first(fit_csv, tmp_path, monkeypatch):
    import simstudy.fsutil as F

    monkeypatch.setattr(F, "free_bytes", lambda path: 2000)
    out_dir = tmp_path / "fits" / "m1"
    result = _invoke(["fit", fit_csv, *FIT_ARGS, "--out", out_dir])
    assert result.exit_code == 1
    err = " ".join(_output(result).split())
    assert "no space left on" in err and "need about" in err and "2.0 KB free" in err
    assert not out_dir.exists() and list((tmp_path / "fits").iterdir()) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 256 KB tmpfs (needs root and mount rights; skipped otherwise)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False, capture_output=True, timeout=30)


def test_fit_out_on_a_really_full_file_system(one_fit, tiny_tmpfs, monkeypatch):
    """On a real 256 KB file system: refused before writing; and, with the check switched
    off, the real ENOSPC is caught, reported the same way, and nothing is left behind."""
    import simstudy.fsutil as F
    from simstudy.realdata.commands import write_fit_dir

    out_dir = tiny_tmpfs / "fit"
    with pytest.raises(F.DiskFullError, match=r"no space left on .*tiny.* while writing posterior.nc") as exc:
        write_fit_dir(one_fit, out_dir)
    assert "need about" in str(exc.value)
    assert list(tiny_tmpfs.iterdir()) == []
    monkeypatch.setattr(F, "check_free_space", lambda *a, **k: None)
    with pytest.raises(F.DiskFullError, match="partial files were removed"):
        write_fit_dir(one_fit, out_dir)
    assert list(tiny_tmpfs.iterdir()) == []


def test_task_held_by_a_runner_that_dies_is_run_here(tmp_path, monkeypatch, sleeper):
    """A task whose lease another (live) runner holds is waited for, not run; when that
    runner dies, this run takes the task over and the store completes."""
    import threading

    from distributed import Client, LocalCluster

    from simstudy.study.runner import run_study
    from simstudy.study.store import open_results

    monkeypatch.setenv("SIMSTUDY_LOCK_HEARTBEAT_S", "1")  # poll every 0.2 s
    store = tmp_path / "h.zarr"
    design = load_design(SMOKE)
    held = design.tasks()[0]
    _write_holder(L.lease_file(L.lease_dir(store), held.task_id), pid=sleeper.pid, run="other-runner")
    killer = threading.Timer(8.0, lambda: (sleeper.kill(), sleeper.wait()))
    killer.start()
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
                Client(lc) as client:
            summary = run_study(SMOKE, store, client=client, progress=False)
    finally:
        killer.cancel()
    assert summary.exit_code == 0 and summary.tasks_run == 2 and summary.tasks_done_elsewhere == 0
    assert open_results(store)["done"].values.all()
    assert not L.lease_dir(store).exists()


def test_exited_but_unreaped_holder_is_dead(tmp_path):
    """A holder that exited but was not yet waited for (a zombie) holds nothing."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            import psutil

            if psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE:
                break
        except Exception:  # noqa: BLE001
            break
        time.sleep(0.05)
    try:
        _write_holder(L.lock_path(tmp_path / "z.zarr"), pid=proc.pid)
        lock = L.StoreLock(tmp_path / "z.zarr")
        assert lock.acquire() is None
        lock.release()
    finally:
        proc.wait()
