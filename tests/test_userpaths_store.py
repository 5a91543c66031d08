"""Issue 22, stores and files (items 4-7), as a user meets them:

4. a --store path with ``#``, ``?`` or ``;`` is a local path (zarr read it as a URL);
5. extending a store survives a kill at any point: the store path is never left empty, and a
   run or status that finds the leftovers restores them;
6. damaged chunks (a missing or undecodable chunk file) are found by ``status --verify``,
   recomputed to the same numbers by ``run --repair``, and readers stop with one message;
7. a read-only file system is one clean error (exit 2); leftovers of killed processes
   (``.STORE.creating-*``, a killed joiner's lease) are removed once their owner is gone.

Most stores here are of a comparator-only design (no MCMC: a run takes seconds); the exact
repair is also checked on the SS-MELSM smoke design.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from simstudy.cli import app
from simstudy.study import lock as L

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "designs" / "smoke.toml"
PYTHON = sys.executable
SIMSTUDY = str(Path(sys.executable).with_name("simstudy"))

TINY = """\
name = "tiny"
seed = 1
replicates = {replicates}
block_size = 2
methods = ["hlm"]

[generator]
n_groups = 10
group_size = 10
effect = "fixed"
magnitude = 1.0

[factors]
share_inconsistent = [0.0, 0.2]
"""


def _invoke(args, **kw):
    return CliRunner().invoke(app, [str(a) for a in args], terminal_width=200, **kw)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _env() -> dict:
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc) as c:
        yield c


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(replicates=4))
    return path


def _run(design, store, client, **kw):
    from rich.console import Console

    from simstudy.study.runner import run_study

    with open(os.devnull, "w") as fh:
        return run_study(design, store, client=client, console=Console(file=fh), **kw)


@pytest.fixture(scope="module")
def tiny_ref(tmp_path_factory, client):
    """A complete store of the tiny design (the undamaged reference)."""
    d = tmp_path_factory.mktemp("ref")
    design = d / "tiny.toml"
    design.write_text(TINY.format(replicates=4))
    summary = _run(design, d / "ref.zarr", client)
    assert summary.exit_code == 0 and summary.tasks_run == 4
    return d / "ref.zarr"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _values(store) -> dict:
    """Every result variable except timings (which differ between runs)."""
    from simstudy.study.store import open_results

    ds = open_results(store).load()
    return {k: ds[k].values for k in ds.data_vars if not (k.endswith("_s") or ds[k].attrs.get("units") == "s")}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if x.dtype.kind in "fc":
            assert np.array_equal(x, y, equal_nan=True), k
        else:
            assert np.array_equal(x, y), k


# =============================================================================== 4. paths are paths
def test_store_path_with_url_characters_is_a_local_path(tmp_path, monkeypatch):
    """`--store "sb/new#dir/semi;colon?.zarr"` makes exactly that directory (zarr read `#`
    as a URL fragment: a complete store landed in `sb/new`, then the run failed; `;` left an
    orphan `s/.semi`), and every command reads it back."""
    (tmp_path / "tiny.toml").write_text(TINY.format(replicates=2))
    store = "sb/new#dir/semi;colon?.zarr"
    proc = subprocess.run([SIMSTUDY, "run", "tiny.toml", "--store", store, "--workers", "1", "--no-progress"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / store / "zarr.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sb", "tiny.toml"]
    assert [p.name for p in (tmp_path / "sb").iterdir()] == ["new#dir"]
    assert [p.name for p in (tmp_path / "sb" / "new#dir").iterdir()] == ["semi;colon?.zarr"]
    monkeypatch.chdir(tmp_path)
    for args in (["status", store, "--verify"], ["summarize", store],
                 ["plot", store, "--out", "figs", "--metric", "fpr"], ["report", store, "--out", "rep", "--no-figures"]):
        result = _invoke(args)
        assert result.exit_code == 0, (args, result.output)
    assert "every chunk of every variable reads back" in _flat(_invoke(["status", store, "--verify"]).output)


# =============================================================================== 5. extensions survive a kill
_KILL_SCRIPT = """
import os, shutil, sys
import simstudy.study.store as S
where, store, design = sys.argv[1], sys.argv[2], sys.argv[3]
if where == "between-renames":            # a file system without the atomic exchange: two renames
    S._exchange = lambda a, b: False
    real_rename = os.rename
    def rename(src, dst):
        if ".extending-" in str(src):     # the old store is aside, the new one not yet in place
            os._exit(9)
        real_rename(src, dst)
    os.rename = rename
elif where == "after-swap":               # the new store is in place, the old one not yet removed
    real_rmtree = shutil.rmtree
    def rmtree(p, *a, **k):
        if ".extending-" in str(p) or ".old-" in str(p):
            os._exit(9)
        real_rmtree(p, *a, **k)
    shutil.rmtree = rmtree
elif where == "copying":                  # killed while copying the results into the new store
    S._writable = lambda arr: os._exit(9)
elif where == "creating":                 # killed while writing a new store's template
    real = S._write_template
    def write(*a, **k):
        real(*a, **k)
        os._exit(9)
    S._write_template = write
S.create_or_open(store, design)
print("not killed")
"""


def _killed(where: str, store: Path, design: Path) -> None:
    proc = subprocess.run([PYTHON, "-c", _KILL_SCRIPT, where, str(store), str(design)], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stdout + proc.stderr


def _leftovers(store: Path) -> list[str]:
    return sorted(p.name for p in store.parent.iterdir() if p.name.startswith(f".{store.name}."))


def _extended(tmp_path) -> Path:
    path = tmp_path / "tiny6.toml"
    path.write_text(TINY.format(replicates=6))
    return path


def test_extension_killed_between_renames_is_restored_by_status(tmp_path, tiny_ref, client):
    """A kill between the two renames of an extension (file systems without an atomic
    exchange) left no store at the path: status said "no results store" and the next run
    recomputed everything. Now status puts the old store back, and the run extends it again,
    keeping every result."""
    store = _copy(tiny_ref, tmp_path / "s.zarr")
    design6 = _extended(tmp_path)
    _killed("between-renames", store, design6)
    assert not store.exists() and any(".old-" in n for n in _leftovers(store))  # the crash point
    result = _invoke(["status", store])
    assert result.exit_code == 0, result.output
    out = _flat(result.output)
    assert "restored the results store" in out and "4/4 tasks finished" in out
    assert _leftovers(store) == []
    summary = _run(design6, store, client)
    assert summary.store_action == "extended" and summary.tasks_skipped == 4 and summary.tasks_run == 2
    assert summary.exit_code == 0 and _leftovers(store) == []


def test_extension_killed_between_renames_is_restored_by_run(tmp_path, tiny_ref, client):
    store = _copy(tiny_ref, tmp_path / "s.zarr")
    design6 = _extended(tmp_path)
    _killed("between-renames", store, design6)
    assert not store.exists()
    summary = _run(design6, store, client)
    assert summary.store_action == "extended" and summary.tasks_skipped == 4 and summary.tasks_run == 2
    assert _leftovers(store) == []
    ref = _values(tiny_ref)
    now = _values(store)
    for k, v in ref.items():  # the first 4 replicates are the reference's, untouched
        x = now[k][:, :4]
        assert np.array_equal(v, x, equal_nan=True) if v.dtype.kind in "fc" else np.array_equal(v, x), k


@pytest.mark.parametrize("where", ["after-swap", "copying"])
def test_extension_killed_elsewhere_keeps_a_store_at_the_path(tmp_path, tiny_ref, client, where):
    """Killed while copying (the old store in place) or after the swap (the new one in place,
    with the atomic exchange): a complete store is at the path, and the leftovers go."""
    from simstudy.study.store import read_info

    store = _copy(tiny_ref, tmp_path / "s.zarr")
    design6 = _extended(tmp_path)
    _killed(where, store, design6)
    assert read_info(store).replicates == (6 if where == "after-swap" else 4)
    assert _leftovers(store)  # the killed process's directory and owner file
    result = _invoke(["status", store])
    assert result.exit_code == 0 and "removed" in _flat(result.output), result.output
    assert _leftovers(store) == []
    summary = _run(design6, store, client)
    assert summary.tasks_skipped == 4 and summary.tasks_run == 2 and summary.exit_code == 0


def test_swap_is_atomic_where_the_system_can():
    from simstudy.study.store import _exchange

    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2(RENAME_EXCHANGE) is Linux's")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        a, b = Path(d, "a"), Path(d, "b")
        a.mkdir(), b.mkdir()
        (a / "x").touch()
        if not _exchange(a, b):
            pytest.skip("this file system cannot exchange directories (the two-rename path is tested above)")
        assert (b / "x").exists() and not (a / "x").exists()


# =============================================================================== 6. damaged chunks
def _damage(store: Path) -> None:
    """A deleted `flag` chunk (cell 1, replicates 0-1) and an undecodable `score` chunk (cell 0,
    replicates 2-3). (A comparator-only store has no PIPs; the SS-MELSM test below deletes a
    `pip` chunk.)"""
    (store / "flag" / "c" / "1" / "0" / "0" / "0").unlink()
    (store / "score" / "c" / "0" / "1" / "0" / "0").write_bytes(b"garbage")


def test_status_verify_names_the_damaged_blocks(tmp_path, tiny_ref):
    store = _copy(tiny_ref, tmp_path / "s.zarr")
    assert _invoke(["status", store, "--verify"]).exit_code == 0
    _damage(store)
    result = _invoke(["status", store, "--verify"])
    assert result.exit_code == 2, result.output
    out = _flat(result.output)
    assert "2 chunk(s) in 2 block(s)" in out
    assert "flag chunk 1.0.0.0 = cell 1 (share_inconsistent=0.2), replicates 0-1: missing (the block is marked done)" in out
    assert "score chunk 0.1.0.0 = cell 0 (share_inconsistent=0), replicates 2-3: unreadable" in out
    assert "--repair" in out and "Traceback" not in out


@pytest.mark.parametrize("command", ["summarize", "plot", "report"])
def test_readers_stop_with_one_message_naming_the_block(tmp_path, tiny_ref, command):
    """A deleted chunk was dropped silently, a garbage one crashed with a Zstd traceback."""
    store = _copy(tiny_ref, tmp_path / "s.zarr")
    _damage(store)
    args = [command, store] + (["--out", tmp_path / "o"] if command in ("plot", "report") else [])
    result = _invoke(args)
    assert result.exit_code == 2, result.output
    out = _flat(result.output)
    assert "is damaged" in out and "flag chunk 1.0.0.0 = cell 1" in out and "score chunk 0.1.0.0 = cell 0" in out
    assert f"simstudy status {store} --verify" in out and "--repair" in out
    assert "Traceback" not in out and "Zstd" in out


def test_summarize_refuses_a_store_with_a_deleted_chunk(tmp_path, tiny_ref):
    """A deleted chunk read as NaN: summarize dropped those replicates without a word."""
    store = _copy(tiny_ref, tmp_path / "s.zarr")
    (store / "flag" / "c" / "1" / "0" / "0" / "0").unlink()
    result = _invoke(["summarize", store])
    assert result.exit_code == 2, result.output
    assert "flag chunk 1.0.0.0 = cell 1 (share_inconsistent=0.2), replicates 0-1: missing" in _flat(result.output)


def test_damaged_done_chunk_makes_status_and_run_say_so(tmp_path, tiny_ref, tiny, client):
    from simstudy.study.store import StoreError

    store = _copy(tiny_ref, tmp_path / "s.zarr")
    (store / "done" / "c" / "1" / "1").write_bytes(b"garbage")
    result = _invoke(["status", store])
    assert result.exit_code == 2 and "done chunk 1.1 = cell 1" in _flat(result.output), result.output
    with pytest.raises(StoreError, match="done chunk 1.1 = cell 1 .*--repair"):
        _run(tiny, store, client)


def test_run_repair_recomputes_the_same_numbers(tmp_path, tiny_ref, tiny, client):
    store = _copy(tiny_ref, tmp_path / "s.zarr")
    _damage(store)
    (store / "done" / "c" / "1" / "1").write_bytes(b"garbage")  # a third block: its `done` itself
    plain = _invoke(["run", tiny, "--store", store, "--no-progress"])
    assert plain.exit_code == 2 and "--repair" in _flat(plain.output)  # refused, says what to do
    summary = _run(tiny, store, client, repair=True)
    assert summary.tasks_run == 3 and summary.tasks_skipped == 1 and summary.exit_code == 0
    from simstudy.study.integrity import verify_store

    assert verify_store(store) == []
    _assert_same(_values(tiny_ref), _values(store))
    again = _run(tiny, store, client, repair=True)
    assert again.tasks_run == 0


def test_repair_before_an_extension(tmp_path, tiny_ref, client):
    """A damaged store cannot be extended (the copy would fail in the codec): said in one
    message; with --repair the damaged block is rerun and the store extended in one run."""
    from simstudy.study.store import StoreError

    store = _copy(tiny_ref, tmp_path / "s.zarr")
    (store / "score" / "c" / "0" / "1" / "0" / "0").write_bytes(b"garbage")
    design6 = _extended(tmp_path)
    with pytest.raises(StoreError, match="cannot extend the results store .it is unchanged.: .*score chunk 0.1.0.0"):
        _run(design6, store, client)
    assert _leftovers(store) == []
    summary = _run(design6, store, client, repair=True)
    assert summary.store_action == "extended" and summary.tasks_run == 3 and summary.exit_code == 0
    now, ref = _values(store), _values(tiny_ref)
    for k, v in ref.items():
        x = now[k][:, :4]
        assert np.array_equal(v, x, equal_nan=True) if v.dtype.kind in "fc" else np.array_equal(v, x), k


def test_run_repair_smoke_ssmelsm_identical(tmp_path, client):
    """The SS-MELSM's numbers too: a repaired block is the uninterrupted run's, exactly."""
    ref = tmp_path / "ref.zarr"
    assert _run(SMOKE, ref, client).exit_code == 0
    store = _copy(ref, tmp_path / "s.zarr")
    (store / "pip" / "c" / "1" / "0" / "0").unlink()
    summary = _run(SMOKE, store, client, repair=True)
    assert summary.tasks_run == 1 and summary.exit_code == 0
    _assert_same(_values(ref), _values(store))


def test_every_chunk_of_a_done_block_is_written(tmp_path, tiny_ref):
    """Zarr leaves out chunks equal to the fill value (an all-NaN `pip` of a comparator-only
    design): a missing chunk could not be told from damage. Every chunk of a done block exists."""
    from simstudy.study.store import _read_attrs

    assert _read_attrs(tiny_ref)["all_chunks_written"] == 1
    assert len(list((tiny_ref / "pip" / "c").rglob("*"))) >= 4 * 1 + 2  # 4 chunk files (+ folders)
    assert sorted(str(p.relative_to(tiny_ref / "pip")) for p in (tiny_ref / "pip").rglob("*") if p.is_file()) == \
        ["c/0/0/0", "c/0/1/0", "c/1/0/0", "c/1/1/0", "zarr.json"]


# =============================================================================== 7. read-only file systems
@pytest.fixture
def read_only(monkeypatch):
    """Make every write under a directory fail with EROFS (as on a read-only mount; we may run
    as root, where chmod stops nothing)."""

    def install(root: Path):
        root = str(Path(root).resolve())

        def under(p) -> bool:
            try:
                return str(Path(os.fsdecode(p)).resolve()).startswith(root)
            except (TypeError, ValueError):
                return False

        def refuse(p):
            raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(p))

        real_open, real_bopen = os.open, builtins.open
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

        def fake_open(path, flags, *a, **k):
            if flags & writes and under(path):
                refuse(path)
            return real_open(path, flags, *a, **k)

        def fake_bopen(file, mode="r", *a, **k):
            if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and under(file):
                refuse(file)
            return real_bopen(file, mode, *a, **k)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(builtins, "open", fake_bopen)
        for name in ("mkdir", "rmdir", "unlink", "remove"):
            real = getattr(os, name)

            def fake(path, *a, _real=real, **k):
                if under(path):
                    refuse(path)
                return _real(path, *a, **k)

            monkeypatch.setattr(os, name, fake)
        for name in ("rename", "replace"):
            real = getattr(os, name)

            def fake2(src, dst, *a, _real=real, **k):
                if under(src) or under(dst):
                    refuse(dst)
                return _real(src, dst, *a, **k)

            monkeypatch.setattr(os, name, fake2)

    return install


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


def _write_holder(path: Path, pid: int, run="other-run", **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    d = {"host": socket.gethostname(), "pid": pid, "pid_start": L._process_start(pid),
         "started": "2026-01-01T00:00:00+00:00", "run": run, "command": "simstudy run other.toml"}
    d.update(extra)
    path.write_text(json.dumps(d))


def _dead_pid() -> int:
    proc = subprocess.Popen([PYTHON, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("case", ["new store", "resume", "join"])
def test_read_only_file_system_is_one_clean_error(tmp_path, tiny_ref, tiny, read_only, sleeper, case):
    ro = tmp_path / "ro"
    ro.mkdir()
    store = ro / "s.zarr"
    args = ["run", tiny, "--store", store, "--no-progress"]
    if case != "new store":
        _copy(tiny_ref, store)
    if case == "join":
        _write_holder(L.lock_path(store), sleeper.pid, phase="running")
        args.append("--join")
    read_only(ro)
    result = _invoke(args)
    assert result.exit_code == 2, result.output
    out = _flat(result.output)
    assert "error: cannot write the results store" in out and "Read-only file system" in out
    assert "writable file system" in out and "Traceback" not in out and "Errno" not in out


def test_real_read_only_mount(tmp_path, tiny_ref, tiny):
    """The same on a real read-only bind mount, where this machine allows one (root with
    CAP_SYS_ADMIN); skipped elsewhere."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    _copy(tiny_ref, src / "s.zarr")
    mnt.mkdir()
    if subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        for store in (mnt / "s.zarr", mnt / "new" / "n.zarr"):
            result = _invoke(["run", tiny, "--store", store, "--no-progress"])
            assert result.exit_code == 2, result.output
            assert "Read-only file system" in _flat(result.output) and "Traceback" not in result.output
        assert _invoke(["status", mnt / "s.zarr", "--verify"]).exit_code == 0
        assert _invoke(["summarize", mnt / "s.zarr"]).exit_code == 0
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_status_and_readers_work_on_a_read_only_store(tmp_path, tiny_ref, read_only):
    store = _copy(tiny_ref, tmp_path / "ro" / "s.zarr")
    read_only(tmp_path / "ro")
    assert _invoke(["status", store, "--verify"]).exit_code == 0
    assert _invoke(["summarize", store]).exit_code == 0


# =============================================================================== 7. leftovers of dead processes
def test_leftover_of_a_killed_creation_is_removed(tmp_path, tiny, client):
    store = tmp_path / "s.zarr"
    _killed("creating", store, tiny)
    assert not store.exists() and any(".creating-" in n for n in _leftovers(store))
    assert any(n.endswith(".owner") for n in _leftovers(store))
    summary = _run(tiny, store, client)
    assert summary.store_action == "created" and summary.exit_code == 0
    assert _leftovers(store) == []


def test_leftover_of_a_live_creation_is_kept(tmp_path, tiny, sleeper):
    from simstudy.study.integrity import recover

    store = tmp_path / "s.zarr"
    partial = tmp_path / ".s.zarr.creating-0123abcd"
    partial.mkdir()
    _write_holder(tmp_path / ".s.zarr.0123abcd.owner", sleeper.pid, run="0123abcd")
    assert recover(store) == []
    assert partial.is_dir()
    _invoke(["status", store])
    assert partial.is_dir()


def test_lease_of_a_killed_joiner_is_removed(tmp_path, tiny_ref, tiny, client, sleeper):
    store = _copy(tiny_ref, tmp_path / "s.zarr")
    leases = L.lease_dir(store)
    dead = leases / "runner-deadbeef.lease"
    live = leases / "runner-alive.lease"
    _write_holder(dead, _dead_pid(), run="deadbeef")
    _write_holder(live, sleeper.pid, run="alive")
    result = _invoke(["status", store])
    assert result.exit_code == 0 and "removed the lease runner-deadbeef.lease" in _flat(result.output)
    assert not dead.exists() and live.exists()
    # the run removes them too (here: after its end, once the live one is gone)
    _write_holder(dead, _dead_pid(), run="deadbeef")
    live.unlink()
    assert _run(tiny, store, client).exit_code == 0
    assert not leases.exists()
