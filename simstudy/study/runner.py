"""Run a study design into a results store: the only orchestrator.

:func:`run_study` validates the design, creates (or opens, or extends) the store, finds
the tasks still to do, starts or connects to a Dask cluster and runs them; rerunning it
resumes. A task is one cell x one block of replicates (``design.tasks()``, grouped by
shape so a worker compiles each shape once): on a worker, :func:`run_task` generates each
replicate's data from ``replicate_seed(seed, data_id, r)``, runs the design's comparator
methods (:mod:`simstudy.methods`) on each data set, fits the block in one ``fit_batch``
call (one per distinct data shape when group sizes are ragged; skipped, with JAX never
imported, when the design's ``methods`` leave out ``ss_melsm``), scores every fit and
region-writes the block, then marks it done. Every method sees the same data sets. A task that raises is stored as "failed" with its error text and the grid goes on.

Determinism: data come from the replicate's ``SeedSequence(seed, spawn_key=(data_id, r))``
(``data_id``: the hash of the cell's generator settings only, so every model setting fits the
same data sets) and the sampler from :func:`fit_seed` (``spawn_key=(cell_id, r, FIT_STREAM)``, a stream
that none of the generator's child streams can collide with); ``fit_batch`` results of a
dataset do not depend on the other datasets of its batch. So the same design gives the
same numbers on any number of workers, and an interrupted, resumed run gives exactly the
numbers of an uninterrupted one (tests/test_runner.py checks both). Timings differ.

Before anything runs, the design's cells and tasks are counted against limits and the
largest task's memory estimated against a worker's (:mod:`simstudy.study.limits`); the plan of
the tasks to run (counts, and wall time / core-hours from this machine's calibration cache:
:mod:`simstudy.study.plan`, never a calibration fit) is printed. One
runner per store: :func:`run_study` takes the store's lock (:mod:`simstudy.study.lock`)
before it creates, opens or extends the store; a second runner raises
:class:`StoreBusyError` naming the holder, or with ``join=True`` shares the store. Every
task takes a lease before it starts and re-checks that its block is not done, so runners
sharing a store never run a task twice; a task another runner holds is waited for and run
here if that runner dies. :attr:`RunSummary.exit_code` says how the store ended (complete,
complete with failed fits, incomplete, interrupted).

Workers are processes with one thread each. Their environment is set before JAX starts
(:func:`worker_env`): single-threaded XLA/BLAS, CPU platform, and ``SIMSTUDY_JAX_CACHE``
(the persistent compilation cache shared by all workers; default
``~/.cache/simstudy/jax``), so each shape is compiled once per machine, not once per worker.

Clusters (``cluster=``):

* ``"local"`` (default): ``dask.distributed.LocalCluster`` with ``workers`` processes
  (default: the CPUs available, at most one per task), no Dask memory cap per worker;
* ``"slurm"`` / ``"pbs"``: ``dask_jobqueue.SLURMCluster`` / ``PBSCluster`` with
  ``workers`` jobs, configured from ``cluster/jobqueue.yaml`` (or the file named by
  ``--jobqueue-config`` / ``$SIMSTUDY_JOBQUEUE_CONFIG``:
  :func:`~simstudy.study.cluster.jobqueue_config_source`, said at start); the user's own Dask configuration
  (``~/.config/dask/*.yaml``, ``DASK_*`` variables) overrides it. Jobs are kept at
  ``workers`` (adaptive with minimum = maximum), so workers that retire before the
  walltime (``--lifetime``) are replaced;
* ``"tcp://host:port"`` (or another scheme): connect to a running scheduler (before the
  store is created; one that does not answer within 10 s is a clean error); its workers
  must have been started with the environment of :func:`worker_env`.

Anything else is refused before the store is created. A local cluster's worker processes
ignore SIGINT (Ctrl-C reaches the whole process group; the client stops the run).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .design import Design, Task, load_design
from .store import StoreError, StoreInfo, completion, create_or_open, write_block

from .cluster import XLA_FLAGS, jax_cache_dir, jobqueue_config_path, jobqueue_kwargs, worker_env  # noqa: F401
from ..model.chains import usable_cores
from .cluster import _client_for, _jobqueue_settings, _quiet_close, check_cluster, connect, describe_jobqueue_config
from .status import print_status, status_rows  # noqa: F401
from .task import _block_finished, _describe
from .task import (  # noqa: F401
    FIT_STREAM,
    TaskResult,
    comparator_seed,
    fit_block,
    fit_seed,
    pending_tasks,
    run_comparators,
    run_task,
)

__all__ = [
    "XLA_FLAGS",
    "FIT_STREAM",
    "RunSummary",
    "TaskResult",
    "fit_seed",
    "comparator_seed",
    "run_comparators",
    "worker_env",
    "jax_cache_dir",
    "jobqueue_config_path",
    "jobqueue_kwargs",
    "pending_tasks",
    "fit_block",
    "run_task",
    "run_study",
    "check_task_memory",
    "StoreBusyError",
    "EXIT_COMPLETE",
    "EXIT_REFUSED",
    "EXIT_FAILED_FITS",
    "EXIT_INCOMPLETE",
    "EXIT_BUSY",
    "EXIT_INTERRUPTED",
    "status_rows",
    "print_status",
]


# ----------------------------------------------------------------------------- progress
class _Progress:
    """Rich progress bar on a terminal, one log line per task otherwise."""

    def __init__(self, n_tasks: int, n_fits: int, enabled: bool, console):
        self.n_tasks, self.n_fits = n_tasks, n_fits
        self.enabled, self.console = enabled, console
        self.tasks = self.fits = self.failed = self.not_converged = 0
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled and console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("tasks  {task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[failures]}"),
                console=console,
                transient=False,
            )
            self.bar.start()
            self.bar_task = self.bar.add_task("fitting", total=n_tasks, rate="", failures="0 failed")

    def rate(self) -> float:
        minutes = (time.perf_counter() - self.t0) / 60.0
        return self.fits / minutes if minutes > 0 else 0.0

    def update(self, res: TaskResult, label: str) -> None:
        self.tasks += 1
        self.fits += len(res.statuses)
        self.failed += sum(s == "failed" for s in res.statuses)
        self.not_converged += sum(s == "not_converged" for s in res.statuses)
        fails = f"[red]{self.failed} failed[/red]" if self.failed else "0 failed"
        if self.bar is not None:
            self.bar.update(self.bar_task, advance=1, rate=f"{self.rate():.1f} fits/min", failures=fails)
        elif self.enabled:
            from rich.markup import escape

            counts = ", ".join(f"{s} {sum(x == s for x in res.statuses)}" for s in sorted(set(res.statuses)))
            self.console.print(
                f"[{self.tasks}/{self.n_tasks}] {escape(label)} replicates {res.replicates[0]}-{res.replicates[-1]}: "
                f"{counts} ({res.seconds:.1f} s{', compile ' + format(res.compile_s, '.1f') + ' s' if res.compile_s else ''})"
                f"  {self.rate():.1f} fits/min{', ' + str(self.failed) + ' failed' if self.failed else ''}",
                highlight=False,
            )
            if res.error:
                self.console.print(f"    error: {escape(res.error)}", highlight=False)

    def elsewhere(self, res: TaskResult | None, label: str, replicates=None) -> None:
        """A task another runner sharing the store finished."""
        self.tasks += 1
        reps = res.replicates if res is not None else tuple(replicates)
        if self.bar is not None:
            self.bar.update(self.bar_task, advance=1)
        elif self.enabled:
            from rich.markup import escape

            self.console.print(f"[{self.tasks}/{self.n_tasks}] {escape(label)} replicates {reps[0]}-{reps[-1]}: "
                               "done by another runner", highlight=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# ----------------------------------------------------------------------------- run
#: exit codes of ``simstudy run`` (README "Reliability"; ``simstudy run --help``)
EXIT_COMPLETE = 0  # every task of the design is done in the store, no failed fit
EXIT_REFUSED = 2  # nothing ran: invalid design or options, a resource limit, a store problem
EXIT_FAILED_FITS = 3  # every task is done, but some fits failed (their errors are in the store)
EXIT_INCOMPLETE = 4  # the run ended with tasks still pending (e.g. a block whose write failed twice)
EXIT_BUSY = 75  # another runner holds the store's lock (and --join was not given); EX_TEMPFAIL
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: finished blocks are saved, rerun to resume


class StoreBusyError(RuntimeError):
    """Another runner holds the store's lock; the message names it."""


@dataclass
class RunSummary:
    """What :func:`run_study` did, and the state of the store when it ended."""

    design: str
    store: Path
    store_action: str  # "created" | "opened" | "extended" | "joined"
    tasks_total: int
    tasks_skipped: int
    tasks_run: int = 0
    fits_run: int = 0
    fits_failed: int = 0
    fits_not_converged: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    task_results: list[TaskResult] = field(default_factory=list, repr=False)
    #: tasks another runner sharing the store finished (``--join`` / a joined runner)
    tasks_done_elsewhere: int = 0
    joined: bool = False
    #: the whole store when the run ended (all runners' work): fits failed, fits not done
    store_fits_failed: int = 0
    store_fits_pending: int = 0
    store_fits_total: int = 0

    @property
    def fits_per_min(self) -> float:
        return self.fits_run / (self.seconds / 60.0) if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """:data:`EXIT_INTERRUPTED`, :data:`EXIT_INCOMPLETE`, :data:`EXIT_FAILED_FITS` or
        :data:`EXIT_COMPLETE`, from the store's state (not only this run's tasks)."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.store_fits_pending:
            return EXIT_INCOMPLETE
        if self.store_fits_failed:
            return EXIT_FAILED_FITS
        return EXIT_COMPLETE


def _store_counts(path) -> tuple[int, int, int]:
    """(failed, pending, total) fits of the store."""
    done, status = completion(path)
    d, st = np.asarray(done.values, dtype=bool), np.asarray(status.values).astype(str)
    return int(((st == "failed") & d).sum()), int((~d).sum()), int(d.size)


def _worker_memory(cluster: str, workers: int | None, n_tasks: int, client=None) -> tuple[int | None, str]:
    """How much memory one worker has, and where the number comes from (None: unknown)."""
    from ..fsutil import fmt_bytes
    from .limits import machine_memory, parse_size

    if client is not None:
        try:
            infos = list(client.scheduler_info().get("workers", {}).values())
        except Exception:  # noqa: BLE001
            infos = []
        limits = [int(w.get("memory_limit") or 0) for w in infos]
        if limits and all(m > 0 for m in limits):
            return min(limits), "the smallest memory limit of the cluster's workers"
        return None, ""
    if cluster == "local":
        total = machine_memory()
        n = workers or max(1, min(usable_cores(), n_tasks))
        return total // n, f"this machine's {fmt_bytes(total)} shared by {n} worker process(es)"
    if cluster in ("slurm", "pbs"):
        settings = _jobqueue_settings(cluster)
        mem = settings.get("memory")
        procs = int(settings.get("processes") or 1)
        if not mem:
            return None, ""
        try:
            per = parse_size(mem) // max(1, procs)
        except ValueError:
            return None, ""
        return per, f"the {cluster.upper()} job memory {mem} over {procs} worker process(es) (jobqueue configuration)"
    return None, ""  # a scheduler address: checked once connected


def check_task_memory(design: Design, worker_bytes: int | None, source: str) -> None:
    """Refuse (:class:`~simstudy.study.limits.ResourceError`) when the largest task of the
    design is estimated to need more memory than a worker has."""
    from ..fsutil import fmt_bytes
    from .limits import ResourceError, cells_over, largest_task

    if not worker_bytes:
        return
    est = largest_task(design)
    if est.bytes <= worker_bytes:
        return
    n_over = cells_over(design, worker_bytes)
    more = f" ({n_over} of {design.n_cells} cells are over the limit)" if design.n_cells > 1 else ""
    raise ResourceError(
        f"a task of cell ({est.label}) needs about {fmt_bytes(est.bytes)} of memory ({est.explain()}), but a worker "
        f"has {fmt_bytes(worker_bytes)} ({source}){more}. Lower draws, chains or block_size (or n_groups) in the "
        "design, run fewer workers per machine (--workers), or, if a worker has more memory than that, say how much "
        "with --worker-memory SIZE (e.g. 16GB)"
    )


def _busy_message(store: Path, holder, lock_file: Path) -> str:
    return (
        f"the results store {store} is being run by another runner: {holder.describe()} (lock file {lock_file}). "
        "Wait for it to finish; or add --join to share the work (this runner then takes only tasks nobody holds); "
        "a lock whose runner died is taken over automatically (at once on the same host, after "
        f"{_stale_after():.0f} s without a heartbeat from another host)"
    )


def _stale_after() -> float:
    from .lock import stale_after_s

    return stale_after_s()


def _store_io_message(store_path, exc: OSError) -> str:
    import errno

    what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    hint = ""
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = ("; `simstudy run` writes the store and, beside it, its lock file and lease folder: run on a writable "
                "file system (copy the store there); `status`, `summarize`, `plot` and `report` only read it")
    return f"cannot write the results store {store_path} ({what}){hint}"


@contextlib.contextmanager
def _store_io(store_path):
    """An ``OSError`` while the store is locked, created, opened or extended becomes one
    :class:`StoreError` (exit code 2), e.g. on a read-only file system."""
    try:
        yield
    except OSError as exc:
        raise StoreError(_store_io_message(store_path, exc)) from None


def _repair_before_opening(path: Path, design: Design, say) -> None:
    """``--repair``: mark the store's damaged blocks not done (before an extension copies the
    store); a store of a changed design is left alone (``create_or_open`` refuses it next)."""
    from .integrity import repair
    from .store import _match_stored, read_info

    _, diff = _match_stored(path, design)
    if diff is not None and diff.kind == "changed":
        return
    damaged = repair(path, read_info(path).design)
    blocks = sorted({d.block for d in damaged if d.block is not None})
    if damaged:
        say(f"repair: {len(damaged)} damaged chunk(s) in {len(blocks)} block(s) of {path}; those blocks are marked "
            "not done and run again")
    else:
        say(f"repair: every chunk of {path} reads back intact")


def _prepare_store(store_path, design: Design, say, repair: bool = False) -> StoreInfo:
    """Create, open or extend the store (the caller holds the store's lock). An extension
    is refused while other runners still run tasks of the store. Leftovers of interrupted
    creations/extensions are recovered first (:func:`simstudy.study.integrity.recover`);
    ``repair``: damaged blocks are marked not done, so this run redoes them."""
    from .integrity import recover
    from .lock import lease_dir, live_leases

    path = Path(store_path)
    for msg in recover(path):
        say(msg)
    if path.is_dir() and (path / "zarr.json").is_file():
        from .store import _read_attrs

        try:
            same = _read_attrs(path).get("design_hash") == design.hash
        except StoreError:
            same = True  # create_or_open gives the message
        busy = [] if same else live_leases(lease_dir(path))
        if busy:
            raise StoreError(
                f"the design would change the store {path}, but {len(busy)} runner(s)/task(s) of other runners are "
                f"still active in it ({'; '.join(h.describe() for h in busy[:3])}); wait for them to finish first"
            )
    if repair and (path / "zarr.json").is_file():
        _repair_before_opening(path, design, say)
    info = create_or_open(store_path, design)
    if info.action == "created":
        say(f"created results store {info.path} for design {design.name!r}: {design.n_cells} cells x "
            f"{design.replicates} replicates")
    elif info.action == "extended":
        say(f"extended results store {info.path}: {info.explanation}")
    return info


def _join(store_path, design: Design, lock, say, poll: float = 0.5):
    """A runner that joins: wait until the lock holder has the store ready, then open it
    (never create or grow it). If the holder goes away first, take the lock and prepare the
    store as the holder. Returns ``(info, joined)``."""
    from .lock import lock_phase, read_holder
    from .store import open_existing

    announced = False
    while True:
        holder = read_holder(lock.path)
        if holder is None or holder.stale_reason():
            if lock.acquire() is None:
                return _prepare_store(store_path, design, say), False
            continue
        if lock_phase(store_path) == "running" and Path(store_path).is_dir():
            info = open_existing(store_path, design)
            return StoreInfo(info.path, info.design, "joined", info.cell_ids, info.n_groups_max, info.replicates,
                             info.block_size, info.explanation), True
        if not announced:
            say(f"waiting for {holder.host}:{holder.pid} to finish preparing {store_path}")
            announced = True
        time.sleep(poll)


def run_study(
    design_path,
    store_path,
    *,
    cluster: str = "local",
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    client=None,
    console=None,
    join: bool = False,
    max_cells: int | None = None,
    max_tasks: int | None = None,
    worker_memory=None,
    command: str = "",
    repair: bool = False,
) -> RunSummary:
    """Run (or resume) ``design_path`` into the results store ``store_path``.

    ``design_path``: a design file or a :class:`~simstudy.study.design.Design`. ``cluster``:
    ``"local"`` | ``"slurm"`` | ``"pbs"`` | a scheduler address; ``workers``: local worker
    processes or cluster jobs; ``retry_failed``: rerun blocks with failed fits;
    ``client``: an existing ``distributed.Client`` to use instead (left open); ``repair``:
    first verify every chunk of the store and mark the damaged blocks not done, so they are
    rerun (:func:`simstudy.study.integrity.repair`). Leftovers of a killed creation or
    extension are recovered before the store is opened, and an ``OSError`` while locking,
    creating or opening it (a read-only file system) is raised as :class:`StoreError`.

    Before anything runs: the design's cells and tasks are counted against ``max_cells`` /
    ``max_tasks`` (defaults :data:`~simstudy.study.limits.MAX_CELLS` /
    :data:`~simstudy.study.limits.MAX_TASKS`), and the largest task's memory estimate
    against a worker's memory (``worker_memory``: bytes or a size such as ``"16GB"``;
    default: detected), raising :class:`~simstudy.study.limits.ResourceError`.

    One runner per store: the store's lock (:class:`~simstudy.study.lock.StoreLock`) is
    taken before the store is created or opened; if another runner holds it this raises
    :class:`StoreBusyError` naming it, unless ``join``: then this runner shares the store,
    running only tasks nobody holds (task leases), and waits for the tasks other runners
    hold (running them itself if their runner dies). ``RunSummary.exit_code`` says how the
    store ended.
    """
    from rich.console import Console
    from rich.markup import escape

    from .design import small_groups_note
    from .limits import MAX_CELLS, MAX_TASKS, parse_size
    from .lock import StoreLock, TaskLease, lease_dir

    console = console or Console(stderr=True)

    def say(msg: str) -> None:
        # every message, with or without the progress bar; names and paths are not markup
        console.print(escape(msg), highlight=False)

    if client is None:
        check_cluster(cluster)  # before anything is created
    if isinstance(design_path, Design):
        design = design_path
    else:
        design = load_design(design_path, max_cells=MAX_CELLS if max_cells is None else max_cells,
                             max_tasks=MAX_TASKS if max_tasks is None else max_tasks)
    all_tasks = design.tasks()
    if client is None and "://" in cluster:
        # connect before the store is created or touched: an unreachable scheduler leaves nothing behind
        say(f"connecting to the scheduler at {cluster}")
        connected = connect(cluster)
        try:
            if worker_memory is None:
                check_task_memory(design, *_worker_memory(cluster, workers, len(all_tasks), connected))
            return run_study(design, store_path, cluster=cluster, workers=workers, retry_failed=retry_failed,
                             progress=progress, client=connected, console=console, join=join, max_cells=max_cells,
                             max_tasks=max_tasks, worker_memory=worker_memory, command=command, repair=repair)
        finally:
            _quiet_close(connected, None)
    note = small_groups_note(design)
    if note:
        say(f"warning: {note}")
    if client is None and cluster in ("slurm", "pbs"):
        say(describe_jobqueue_config(cluster))  # a missing --jobqueue-config file: FileNotFoundError, here
    if worker_memory is not None:
        mem, mem_source = parse_size(worker_memory), "--worker-memory"
    elif client is None:
        mem, mem_source = _worker_memory(cluster, workers, len(all_tasks))
    else:
        mem, mem_source = None, ""
    check_task_memory(design, mem, mem_source)

    if repair and join:
        raise ValueError("--repair cannot be combined with --join: the runner that holds the store repairs it")
    lock = StoreLock(store_path, command=command)
    with _store_io(store_path):  # a read-only file system: one StoreError, exit 2
        holder = lock.acquire()
    if holder is not None and not join:
        raise StoreBusyError(_busy_message(Path(store_path), holder, lock.path))
    runner_lease = None
    try:
        if lock.took_over:
            old, reason = lock.took_over
            say(f"took over the lock of {store_path} from {old.host}:{old.pid} ({reason})")
        with _store_io(store_path):
            if holder is None:
                info, joined = _prepare_store(store_path, design, say, repair=repair), False
            else:
                say(f"joining the run of {holder.host}:{holder.pid} on {store_path}: taking only tasks nobody holds")
                info, joined = _join(store_path, design, lock, say)
            leases = lease_dir(info.path)
            if joined:  # registered while it runs, so nobody extends the store under it
                runner_lease = TaskLease(leases, f"runner-{lock.run}", lock.run)
                runner_lease.acquire()
            else:
                lock.set_phase("running")
        return _run_pending(design, info, all_tasks, lock.run, leases, joined, cluster=cluster, workers=workers,
                            retry_failed=retry_failed, progress=progress, client=client, console=console, say=say,
                            worker_memory=worker_memory)
    finally:
        if runner_lease is not None:
            runner_lease.release()
        lock.release()
        with contextlib.suppress(OSError):  # the lease folder, once no task holds a lease (a dead one's go)
            from .integrity import clean_stale_leases

            clean_stale_leases(store_path)
            lease_dir(store_path).rmdir()


def _run_pending(design, info, all_tasks, run_id, leases, joined, *, cluster, workers, retry_failed, progress,
                 client, console, say, worker_memory) -> RunSummary:
    from .lock import lease_holder

    done, status = completion(info.path)
    todo = pending_tasks(design, info, done.values, status.values, retry_failed)
    summary = RunSummary(design=design.name, store=info.path, store_action=info.action,
                         tasks_total=len(all_tasks), tasks_skipped=len(all_tasks) - len(todo), joined=joined)
    if not todo:
        say(f"nothing to do: all {len(all_tasks)} tasks of {design.name!r} are done in {info.path}")
        _finish(summary, say)
        return summary
    n_fits = sum(len(t.replicates) for t, _ in todo)
    say(f"{len(todo)} of {len(all_tasks)} tasks to run ({n_fits} fits)")
    _say_plan(design, [t for t, _ in todo], cluster, workers, client, say)

    t0 = time.perf_counter()
    labels = {t.task_id: t.cell.label for t, _ in todo}
    bar = None
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_sigterm_as_interrupt())
            if client is None:
                client = stack.enter_context(_client_for(cluster, workers, len(todo), say))
                if "://" in cluster and worker_memory is None:
                    check_task_memory(design, *_worker_memory(cluster, workers, len(todo), client))
            from distributed import as_completed

            token = uuid.uuid4().hex[:8]
            futures: dict = {}
            attempts: dict[str, int] = {}
            ac = as_completed(loop=client.loop)

            def submit(task, ci, priority):
                n = attempts[task.task_id] = attempts.get(task.task_id, 0) + 1
                fut = client.submit(
                    run_task, task, str(info.path), ci, info.n_groups_max,
                    lease_dir=str(leases), run_id=run_id, retry_failed=retry_failed,
                    key=f"simstudy-{token}-{task.task_id}-{n}", pure=False, priority=priority,
                )
                futures[fut] = (task, ci)
                ac.add(fut)

            for i, (task, ci) in enumerate(todo):
                submit(task, ci, len(todo) - i)
            bar = _Progress(len(todo), n_fits, progress, console)
            held: dict[str, tuple] = {}
            waiting_said = ""
            while True:
                for fut in ac:
                    task, ci = futures.pop(fut)
                    try:
                        res = fut.result()
                    except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: record and go on
                        res = _record_client_side_failure(task, ci, info, exc, leases=leases, run_id=run_id)
                    fut.release()
                    if res.outcome == "held":
                        held[task.task_id] = (task, ci, res.holder)
                        continue
                    if res.outcome == "done_elsewhere":
                        summary.tasks_done_elsewhere += 1
                        bar.elsewhere(res, labels[task.task_id])
                        continue
                    summary.tasks_run += 1
                    summary.task_results.append(res)
                    summary.fits_run += len(res.statuses)
                    summary.fits_failed += sum(s == "failed" for s in res.statuses)
                    summary.fits_not_converged += sum(s == "not_converged" for s in res.statuses)
                    if res.error:
                        summary.errors.append(f"{labels[task.task_id]} {task.replicates}: {res.error}")
                    bar.update(res, labels[task.task_id])
                if not held:
                    break
                # tasks other runners hold: wait for them; rerun any whose runner died
                holders = sorted({h.split(" ")[0] for _, _, h in held.values()})
                msg = f"waiting for {len(held)} task(s) held by other runner(s) ({', '.join(holders)})"
                if msg != waiting_said:
                    say(msg + "; a task whose runner dies is run here")
                    waiting_said = msg
                time.sleep(_poll_s())
                for tid, (task, ci, _) in list(held.items()):
                    if _block_finished(str(info.path), ci, task.replicates, retry_failed):
                        del held[tid]
                        summary.tasks_done_elsewhere += 1
                        bar.elsewhere(None, labels[tid], task.replicates)
                    elif lease_holder(leases, tid) is None:
                        del held[tid]
                        submit(task, ci, 0)
    except KeyboardInterrupt:
        summary.interrupted = True
        say("interrupted: finished blocks are saved; rerun the same command to resume")
    finally:
        if bar is not None:
            bar.stop()
        summary.seconds = time.perf_counter() - t0
    elsewhere = f"; {summary.tasks_done_elsewhere} done by other runners" if summary.tasks_done_elsewhere else ""
    say(f"ran {summary.tasks_run} tasks ({summary.fits_run} fits) in {summary.seconds:.0f} s "
        f"({summary.fits_per_min:.1f} fits/min): {summary.fits_failed} failed, "
        f"{summary.fits_not_converged} not converged{elsewhere}")
    _finish(summary, say)
    return summary


def _say_plan(design: Design, tasks: list[Task], cluster: str, workers: int | None, client, say) -> None:
    """Print the plan of the tasks to run (:mod:`simstudy.study.plan`) from this machine's
    calibration cache only: no calibration fit delays the start (without a cache entry the
    counts are printed and ``simstudy plan`` is named for the time). Never fails the run."""
    from .plan import format_plan, plan_design

    try:
        if client is not None:
            n = len(client.scheduler_info().get("workers", {})) or 1
            plan = plan_design(design, n, calibrate=False, tasks=tasks)
        else:
            plan = plan_design(design, workers, cluster=cluster, calibrate=False, tasks=tasks)
    except Exception as exc:  # noqa: BLE001 - an estimate must never stop a run
        say(f"plan: not available ({exc})")
        return
    say(format_plan(plan, brief=True))


def _poll_s() -> float:
    from .lock import heartbeat_s

    return max(0.2, min(5.0, heartbeat_s() / 6))


def _finish(summary: RunSummary, say) -> None:
    """Read the store's final state into the summary and say what it means."""
    try:
        summary.store_fits_failed, summary.store_fits_pending, summary.store_fits_total = _store_counts(summary.store)
    except Exception:  # noqa: BLE001 - the summary must not fail; the store is checked by status
        return
    store = summary.store
    if summary.interrupted:
        return
    if summary.store_fits_pending:
        say(f"incomplete: {summary.store_fits_pending} of {summary.store_fits_total} fits are not done in {store}; "
            f"see `simstudy status {store}`, rerun the same command to finish")
    elif summary.store_fits_failed:
        say(f"complete with failures: {summary.store_fits_failed} of {summary.store_fits_total} fits failed; see why "
            f"with `simstudy status {store}`, retry them with --retry-failed")
    else:
        say(f"complete: all {summary.store_fits_total} fits are done in {store}")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (batch systems at walltime, `kill`) stops the run like Ctrl-C: the cluster is
    shut down (its worker jobs cancelled) and finished blocks stay in the store."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _record_client_side_failure(task: Task, ci: int, info: StoreInfo, exc: BaseException, *, leases=None,
                                run_id: str = "") -> TaskResult:
    """A task that died outside its own error handling (e.g. its worker was killed
    repeatedly): store the block as failed from the client (and drop the dead worker's
    lease of it, so that no other runner waits for it)."""
    from .scoring import failed_record, stack_records

    error = f"task failed on the cluster: {_describe(exc)}"
    try:
        write_block(info.path, ci, task.replicates,
                    stack_records([failed_record(info.n_groups_max, error, n_methods=max(info.n_methods, 1))
                                   for _ in task.replicates]),
                    check_space=False)
    except Exception as write_exc:  # noqa: BLE001
        error += f"; and the failure could not be stored: {_describe(write_exc)}"
    if leases is not None and run_id:
        from .lock import lease_file, read_holder

        path = lease_file(Path(leases), task.task_id)
        holder = read_holder(path)
        if holder is not None and holder.run == run_id:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return TaskResult(task.task_id, ci, tuple(task.replicates), ["failed"] * len(task.replicates), error=error)


