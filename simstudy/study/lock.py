"""One runner per results store, and task leases for runners that share one (``--join``).

Mechanism: atomic exclusive file creation
-----------------------------------------
Both the store lock and the task leases are small JSON files created with
``os.open(path, O_CREAT | O_EXCL)``: of all processes that try, exactly one creates the
file, on a local disk and on the shared file systems clusters keep their stores on (NFS v3
and later, Lustre, GPFS/Spectrum Scale, BeeGFS all make exclusive create atomic). We chose
this over ``fcntl``/``flock`` locks (what the ``filelock`` package's ``FileLock`` uses):
those are not reliable across hosts on every shared file system (Lustre mounted without
``-o flock`` refuses them, NFS needs a working lock daemon, and a lock held by a crashed
client host can outlive it), and a kernel lock cannot say who holds it. A lock file can:
it records the holder's **host, PID, process start time, start time, run id and
command**, so a second runner names the holder, and a stale lock can be recognised.

Staleness (a holder that died without removing its file)
--------------------------------------------------------
The holder *heartbeats*: a background thread touches the file's modification time every
``heartbeat`` seconds (default 30, ``$SIMSTUDY_LOCK_HEARTBEAT_S``). A lock or lease is
**stale** when

* its holder ran on **this host** and that PID is gone, or now belongs to another process
  (its start time differs): decided at once, whatever the heartbeat says; or
* its holder ran on **another host** and the heartbeat is older than ``stale_after``
  seconds (default 300 = 10 missed heartbeats, ``$SIMSTUDY_LOCK_STALE_S``). Another host's
  PIDs cannot be checked, so age is the only evidence; keep the hosts' clocks in sync (NTP)
  to within a small part of ``stale_after``;
* a task lease was taken by **the same run** (run id) that now asks for the task again:
  Dask only resubmits a task whose worker died, so that earlier attempt is over.

A stale file is removed under a short-lived "breaker" file (itself exclusive-created, so
two processes that both saw the same stale lock cannot both take it), and the exclusive
create is retried.

Files, next to the store (not inside it: extending a store swaps its directory):

* ``STORE.lock``: the runner lock (``simstudy run`` holds it from before the store is
  created or extended until it exits);
* ``.STORE.leases/TASK.lease``: one per task being run, taken on the worker right before the
  task starts and removed after its block is written (by every runner, joined or not).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = [
    "HEARTBEAT_S",
    "STALE_AFTER_S",
    "Holder",
    "StoreLock",
    "TaskLease",
    "lock_path",
    "lease_dir",
    "lease_file",
    "lease_holder",
    "live_leases",
    "lock_phase",
    "read_holder",
    "heartbeat_s",
    "stale_after_s",
]

#: seconds between heartbeats (the lock file's mtime is refreshed)
HEARTBEAT_S = 30.0
#: a holder on another host whose heartbeat is older than this is presumed dead
STALE_AFTER_S = 300.0
#: an empty or unreadable lock file (being written) younger than this counts as held
_GRACE_S = 10.0
#: a breaker file older than this is left over from a crash and removed
_BREAKER_STALE_S = 60.0


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def heartbeat_s() -> float:
    return _env_seconds("SIMSTUDY_LOCK_HEARTBEAT_S", HEARTBEAT_S)


def stale_after_s() -> float:
    return _env_seconds("SIMSTUDY_LOCK_STALE_S", STALE_AFTER_S)


def lock_path(store) -> Path:
    """``results/study.zarr`` -> ``results/study.zarr.lock``."""
    store = Path(store).absolute()
    return store.with_name(store.name + ".lock")


def lease_dir(store) -> Path:
    """``results/study.zarr`` -> ``results/.study.zarr.leases``."""
    store = Path(store).absolute()
    return store.with_name(f".{store.name}.leases")


def lease_file(leases: Path, task_id: str) -> Path:
    return Path(leases) / (task_id.replace(":", "_").replace("/", "_") + ".lease")


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - no such process, no permission, no psutil
        return None


def _pid_alive(pid: int, started: float | None) -> bool:
    try:
        import psutil

        if not psutil.pid_exists(pid):
            return False
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped
                return False
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:
            pass
        if started is None:
            return True
        now = _process_start(pid)
        return now is None or abs(now - started) < 2.0
    except ImportError:  # pragma: no cover - psutil comes with distributed
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass(frozen=True)
class Holder:
    """Who holds a lock or lease file, as read from it."""

    path: Path
    host: str
    pid: int
    pid_start: float | None
    started: str
    run: str
    command: str
    age_s: float  # seconds since the last heartbeat (file mtime)

    def describe(self) -> str:
        cmd = f", command: {self.command}" if self.command else ""
        return (f"{self.host}:{self.pid} (started {self.started}, last heartbeat {self.age_s:.0f} s ago, "
                f"run {self.run}{cmd})")

    def stale_reason(self, *, stale_after: float | None = None, run: str | None = None) -> str:
        """Why this holder is presumed dead, or ``""`` when it counts as alive."""
        stale_after = stale_after_s() if stale_after is None else stale_after
        if run is not None and self.run == run:
            return "it was taken by an earlier attempt of this run"
        if self.host == socket.gethostname():
            if self.pid <= 0:
                return "" if self.age_s < _GRACE_S else "its file is empty or unreadable"
            if not _pid_alive(self.pid, self.pid_start):
                return f"process {self.pid} is no longer running on {self.host}"
            return ""
        if self.age_s > stale_after:
            return f"its heartbeat is {self.age_s:.0f} s old (limit {stale_after:.0f} s for another host)"
        return ""


def read_holder(path) -> Holder | None:
    """The holder recorded in a lock or lease file; None when the file does not exist.
    A file being written (empty, unreadable) gives a holder with pid 0."""
    path = Path(path)
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        text = ""
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
    age = max(0.0, time.time() - st.st_mtime)
    try:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError
    except ValueError:
        d = {}
    return Holder(
        path=path,
        host=str(d.get("host", socket.gethostname() if not d else "?")),
        pid=int(d.get("pid", 0) or 0),
        pid_start=d.get("pid_start"),
        started=str(d.get("started", "?")),
        run=str(d.get("run", "")),
        command=str(d.get("command", "")),
        age_s=age,
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _identity(run: str, command: str, extra: dict | None = None) -> dict:
    pid = os.getpid()
    d = {"host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid), "started": _now(),
         "run": run, "command": command}
    d.update(extra or {})
    return d


def _create_exclusive(path: Path, content: dict) -> bool:
    """Create ``path`` holding ``content``; False when it already exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, (json.dumps(content) + "\n").encode())
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
    return True


@contextlib.contextmanager
def _breaker(path: Path):
    """Exclusive right to remove a stale ``path`` (yields False when someone else has it)."""
    brk = path.with_name(path.name + ".break")
    mine = _create_exclusive(brk, _identity("breaker", ""))
    if not mine:
        try:
            if time.time() - brk.stat().st_mtime > _BREAKER_STALE_S:
                brk.unlink()
                mine = _create_exclusive(brk, _identity("breaker", ""))
        except FileNotFoundError:
            mine = _create_exclusive(brk, _identity("breaker", ""))
    try:
        yield mine
    finally:
        if mine:
            with contextlib.suppress(FileNotFoundError):
                brk.unlink()


def _acquire(path: Path, content: dict, *, stale_after: float | None, run: str | None,
             on_takeover=None) -> Holder | None:
    """Create ``path`` exclusively, removing a stale one first. Returns None on success, the
    live holder otherwise."""
    for _ in range(20):
        if _create_exclusive(path, content):
            return None
        holder = read_holder(path)
        if holder is None:  # removed meanwhile: try again
            continue
        reason = holder.stale_reason(stale_after=stale_after, run=run)
        if not reason:
            return holder
        with _breaker(path) as mine:
            if not mine:  # another process is removing it: wait a moment, then look again
                time.sleep(0.05)
                continue
            again = read_holder(path)
            if again is not None and (again.run, again.pid, again.host) == (holder.run, holder.pid, holder.host):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                if on_takeover is not None:
                    on_takeover(holder, reason)
    if _create_exclusive(path, content):
        return None
    holder = read_holder(path)
    if holder is None:  # pragma: no cover - created and removed 20 times over
        raise OSError(f"could not take {path}: it keeps appearing and disappearing")
    return holder


class _Heartbeat:
    """Touches ``path`` every ``interval`` seconds while it still holds ``run``."""

    def __init__(self, path: Path, run: str, interval: float):
        self.path, self.run, self.interval = path, run, interval
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {path.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            holder = read_holder(self.path)
            if holder is None or holder.run != self.run or holder.pid != os.getpid():
                self.lost = True
                return
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def stop(self) -> None:
        self._stop.set()


def _release(path: Path, run: str) -> None:
    holder = read_holder(path)
    if holder is not None and holder.run == run and holder.pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class _HeldFile:
    """A lock or lease file this process may hold: taken atomically (:func:`_acquire`, with
    stale-holder takeover), kept fresh by a heartbeat while held, removed on release."""

    path: Path
    run: str
    stale_after: float | None
    heartbeat: float

    def _setup(self, stale_after: float | None, heartbeat: float | None) -> None:
        self.stale_after = stale_after
        self.heartbeat = heartbeat_s() if heartbeat is None else heartbeat
        self.held = False
        self.took_over: tuple[Holder, str] | None = None
        self._beat: _Heartbeat | None = None

    def _take(self, content: dict, run: str | None) -> Holder | None:
        """None when this process now holds the file, else the live :class:`Holder`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)

        def took(holder, reason):
            self.took_over = (holder, reason)

        holder = _acquire(self.path, content, stale_after=self.stale_after, run=run, on_takeover=took)
        if holder is None:
            self.held = True
            self._beat = _Heartbeat(self.path, self.run, self.heartbeat)
        return holder

    def release(self) -> None:
        if self._beat is not None:
            self._beat.stop()
            self._beat = None
        if self.held:
            _release(self.path, self.run)
            self.held = False

    @property
    def lost(self) -> bool:
        """True when the heartbeat found the file gone or taken by another process."""
        return self._beat is not None and self._beat.lost

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class StoreLock(_HeldFile):
    """The runner lock of one results store (``STORE.lock``, see the module docstring).

    ``acquire()`` returns None when this process now holds it, else the live :class:`Holder`.
    ``set_phase("running")`` tells runners that join (``--join``) the store is ready.
    """

    def __init__(self, store, *, run: str | None = None, command: str = "", stale_after: float | None = None,
                 heartbeat: float | None = None):
        self.store = Path(store).absolute()
        self.path = lock_path(self.store)
        self.run = run or uuid.uuid4().hex[:12]
        self.command = command
        self._setup(stale_after, heartbeat)
        self._phase = "preparing"

    def _content(self) -> dict:
        return _identity(self.run, self.command, {"store": str(self.store), "phase": self._phase})

    def acquire(self) -> Holder | None:
        return self._take(self._content(), run=None)

    def set_phase(self, phase: str) -> None:
        """Rewrite the lock file with ``phase`` (atomically: a new file renamed over it)."""
        if not self.held:
            return
        self._phase = phase
        tmp = self.path.with_name(f".{self.path.name}.{self.run}.tmp")
        content = self._content()
        with contextlib.suppress(OSError):
            old = json.loads(self.path.read_text())
            content["started"] = old.get("started", content["started"])
        tmp.write_text(json.dumps(content) + "\n")
        os.replace(tmp, self.path)


def lock_phase(store) -> str | None:
    """The phase written in the store's lock file (``preparing`` / ``running``), or None."""
    try:
        return json.loads(lock_path(store).read_text()).get("phase")
    except (OSError, ValueError, AttributeError):
        return None


class TaskLease(_HeldFile):
    """A lease on one task: held while a worker runs it (``.STORE.leases/TASK.lease``)."""

    def __init__(self, leases: Path, task_id: str, run: str, *, stale_after: float | None = None,
                 heartbeat: float | None = None):
        self.dir = Path(leases)
        self.path = lease_file(self.dir, task_id)
        self.task_id = task_id
        self.run = run
        self._setup(stale_after, heartbeat)

    def acquire(self) -> Holder | None:
        return self._take(_identity(self.run, "", {"task": self.task_id}), run=self.run)


def lease_holder(leases: Path, task_id: str, *, run: str | None = None) -> Holder | None:
    """The live holder of a task's lease, or None (no lease, or a stale one)."""
    holder = read_holder(lease_file(leases, task_id))
    if holder is None or holder.stale_reason(run=run):
        return None
    return holder


def live_leases(leases: Path) -> list[Holder]:
    """Every live lease in ``leases`` (tasks some runner is running now)."""
    out = []
    d = Path(leases)
    if not d.is_dir():
        return out
    for f in sorted(d.glob("*.lease")):
        holder = read_holder(f)
        if holder is not None and not holder.stale_reason():
            out.append(holder)
    return out
