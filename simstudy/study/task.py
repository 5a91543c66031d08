"""One task of a study, on a worker: generate a block of replicates, run the comparator
methods and the SS-MELSM on the same data sets, score and region-write the block.

A task is one cell x one block of replicates. :func:`run_task` generates each replicate's
data from ``replicate_seed(seed, data_id, r)`` (the cell's data id: generator settings only,
so cells differing only in model settings fit the same data sets), runs the design's comparator
methods (:mod:`simstudy.methods`) with :func:`comparator_seed` (also from the data id: the
comparators see only the data), fits the block in one ``fit_batch``
call (:func:`fit_block`; skipped, with JAX never imported, when the design's ``methods``
leave out ``ss_melsm``) with :func:`fit_seed` (per *cell*: ``cell_id``), scores every fit and writes the block, then
marks it done. It never raises for a failing fit or a failing write: the block is stored as
failed. With a lease directory it first takes the task's lease (:mod:`simstudy.study.lock`).
"""

from __future__ import annotations

import os
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .design import Design, Task, replicate_seed
from .store import StoreInfo, write_block

#: last spawn-key element of the sampler's seed; generate() uses children 0..4 (longitudinal: 0..6) of the
#: replicate's seed, so this stream never coincides with a data stream
FIT_STREAM = 2**31
#: last spawn-key element of the comparators' seed (the HLM's QQ envelope)
COMPARATOR_STREAM = 2**31 + 1



# ----------------------------------------------------------------------------- seeds, env
def fit_seed(base_seed: int, cell_id: int, replicate: int) -> np.random.SeedSequence:
    """The sampler's seed of one replicate (a fresh object: ``fit_batch`` spawns from it).
    Per cell (``cell_id``), not per data set: two model settings fit the same data with
    their own sampler streams (the data ids' and cell ids' hashes never coincide in practice)."""
    return np.random.SeedSequence(int(base_seed), spawn_key=(int(cell_id), int(replicate), FIT_STREAM))


def comparator_seed(base_seed: int, data_id: int, replicate: int) -> np.random.SeedSequence:
    """The comparators' seed of one replicate (the HLM envelope's simulations): a stream of
    the replicate's data seed (``data_id``: :attr:`simstudy.study.grid.Cell.data_id`) that
    neither the data nor the sampler use, so cells sharing data sets get the same comparator
    results."""
    return np.random.SeedSequence(int(base_seed), spawn_key=(int(data_id), int(replicate), COMPARATOR_STREAM))


def run_comparators(data, methods, seed) -> tuple[object | None, str]:
    """The two-stage HLM on one data set when any of its rules is among ``methods``:
    ``(HLMResult or None, error text)``; never raises."""
    from ..methods.hlm import COMPARATORS, hlm

    if not any(m in COMPARATORS for m in methods):
        return None, ""
    try:
        return hlm(data, seed), ""
    except Exception as exc:  # noqa: BLE001 - recorded with the replicate
        return None, _describe(exc)


# ----------------------------------------------------------------------------- tasks
@dataclass
class TaskResult:
    """What a task reports back to the client (the records themselves go to the store)."""

    task_id: str
    cell_index: int
    replicates: tuple[int, ...]
    statuses: list[str]
    error: str = ""
    seconds: float = 0.0
    compile_s: float = 0.0
    sample_s: float = 0.0
    fit_s: float = 0.0  # wall time of the fit_batch call(s), compilation included
    generate_s: float = 0.0
    score_s: float = 0.0
    write_s: float = 0.0
    worker: str = ""
    #: "ran"; "held": another runner holds the task's lease (nothing done here);
    #: "done_elsewhere": another runner finished it since this run listed it
    outcome: str = "ran"
    holder: str = ""


def _describe(exc: BaseException) -> str:
    """``Type: message (at file:line in function)`` -- short enough for the store."""
    where = ""
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        frame = tb[-1]
        where = f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"
    msg = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {msg}{where}"


def fit_block(datasets, priors, seeds, mcmc: dict, centered_location: bool | None = None) -> tuple[list, float]:
    """``fit_batch`` over a block: one call per distinct compiled shape (a single call for
    balanced designs, and for ragged ones on the sufficient-statistics path; per-observation
    likelihoods with ragged group sizes give replicates different shapes). A dataset's fit
    does not depend on the other datasets of its call, so the split changes no number.
    Returns the fits in input order and the total compile seconds."""
    from ..model.sampler import batch_key, fit_batch

    groups: dict[tuple, list[int]] = {}
    for i, data in enumerate(datasets):
        groups.setdefault(batch_key(data, priors, centered_location=centered_location), []).append(i)
    fits: list = [None] * len(datasets)
    compile_s = 0.0
    for idx in groups.values():
        out = fit_batch([datasets[i] for i in idx], priors, seeds=[seeds[i] for i in idx],
                        centered_location=centered_location, pip_diagnostics=False, **mcmc)
        compile_s += float(out[0].compile_s)
        for i, f in zip(idx, out):
            fits[i] = f
    return fits, compile_s


def centered_location_for(spec) -> bool | None:
    """Location parameterisation of a cell: non-centred for small groups (nominal size < 10)
    and for ``layout = "longitudinal"``, whose random time slopes are weakly informed by each
    person (slope SE ~ sigma sqrt(12 / T) vs tau_u1 ~ 0.2 -- centred fits there gave R-hat up to
    1.2 and divergences at T = 10, 30 and 60, non-centred ones R-hat <= 1.03); otherwise None:
    each data set decides from its own data (:func:`simstudy.model.ssmelsm.structure_for`:
    centred unless tau_u looks near 0), so a replicate never depends on its block."""
    if getattr(spec, "layout", "cross_sectional") == "longitudinal":
        return False
    return None if spec.group_size >= 10 else False


def _block_finished(store_path: str, cell_index: int, reps, retry_failed: bool) -> bool:
    """The block is done in the store (and, with ``retry_failed``, has no failed fit)."""
    import zarr

    sl = (int(cell_index), slice(reps[0], reps[-1] + 1))
    from .store import local_store

    store = local_store(store_path, read_only=True)  # a local path, never a URL
    done = np.asarray(zarr.open_array(store, path="done", mode="r")[sl])
    if not done.all():
        return False
    if retry_failed:
        status = np.asarray(zarr.open_array(store, path="status", mode="r")[sl]).astype(str)
        return not (status == "failed").any()
    return True


def run_task(task: Task, store_path: str, cell_index: int, n_groups_max: int, *, lease_dir: str | None = None,
             run_id: str = "", retry_failed: bool = False) -> TaskResult:
    """Generate, fit (:func:`fit_block`: one batched call), score and write one block; never
    raises for a failing fit or a failing store write (the block is stored as failed).

    With ``lease_dir`` (what :func:`run_study` passes) the task first takes its lease
    (:class:`simstudy.study.lock.TaskLease`): when another runner holds it the task returns
    at once with ``outcome="held"``; when the block was finished meanwhile (by another
    runner sharing the store) it returns ``outcome="done_elsewhere"``. So no block is run
    twice, however many runners share the store."""
    reps = tuple(task.replicates)
    if lease_dir is None:
        return _run_task(task, store_path, cell_index, n_groups_max)
    from .lock import TaskLease

    lease = TaskLease(Path(lease_dir), task.task_id, run_id)
    holder = lease.acquire()
    if holder is not None:
        return TaskResult(task.task_id, cell_index, reps, [], outcome="held", holder=holder.describe(),
                          worker=f"{os.uname().nodename}:{os.getpid()}")
    try:
        if _block_finished(store_path, cell_index, reps, retry_failed):
            return TaskResult(task.task_id, cell_index, reps, [], outcome="done_elsewhere",
                              worker=f"{os.uname().nodename}:{os.getpid()}")
        return _run_task(task, store_path, cell_index, n_groups_max)
    finally:
        lease.release()


def _run_task(task: Task, store_path: str, cell_index: int, n_groups_max: int) -> TaskResult:
    """The work of one task (see :func:`run_task`)."""
    from .scoring import add_methods, failed_record, score_fit, stack_records, truth_record

    t0 = time.perf_counter()
    reps = tuple(task.replicates)
    methods = tuple(task.methods)
    M = len(methods)
    error = ""
    compile_s = sample_s = fit_s = generate_s = score_s = 0.0
    try:
        from .generate import generate

        spec = task.cell.generator_spec()
        t_gen = time.perf_counter()
        with warnings.catch_warnings():
            # expected in simulations with ragged sizes (e.g. Saeb's one-student school);
            # printed by every worker for every replicate it would drown the progress output
            warnings.filterwarnings("ignore", message=r".*single observation")
            generated = [generate(spec, replicate_seed(task.seed, task.cell.data_id, r)) for r in reps]
        generate_s = time.perf_counter() - t_gen
        # comparators first, on the very data sets the SS-MELSM gets next
        compared = [run_comparators(data, methods, comparator_seed(task.seed, task.cell.data_id, r))
                    for (data, _), r in zip(generated, reps)]
        fits = [None] * len(reps)
        if "ss_melsm" in methods:  # a comparator-only design never starts JAX
            t_fit = time.perf_counter()
            fits, compile_s = fit_block(
                [data for data, _ in generated],
                task.cell.priors(),
                [fit_seed(task.seed, task.cell.cell_id, r) for r in reps],
                task.cell.mcmc,
                # the parameterisation follows the cell's settings, so a replicate's
                # numbers never depend on the other replicates of its block
                centered_location=centered_location_for(spec),
            )
            fit_s = time.perf_counter() - t_fit
            sample_s = float(sum(f.sample_s for f in fits))
        t_score = time.perf_counter()
        records = []
        for fit, (data, truth), (res, hlm_error) in zip(fits, generated, compared):
            try:
                if fit is not None:
                    rec = score_fit(fit, truth, n_groups_max, n_methods=M)
                    add_methods(rec, methods, n_groups_max, pip=fit.pip.values[:, 0], pip_seconds=fit.sample_s,
                                hlm=res, hlm_error=hlm_error)
                elif hlm_error:  # comparator-only and the comparator failed
                    rec = failed_record(n_groups_max, f"hlm: {hlm_error}", n_methods=M)
                    error = error or hlm_error
                else:
                    rec = add_methods(truth_record(data, truth, n_groups_max, n_methods=M), methods,
                                      n_groups_max, hlm=res)
                records.append(rec)
            except Exception as exc:  # noqa: BLE001 - one bad fit must not sink the block
                error = error or _describe(exc)
                records.append(failed_record(n_groups_max, _describe(exc), n_methods=M))
        score_s = time.perf_counter() - t_score
        del fits
    except Exception as exc:  # noqa: BLE001 - recorded in the store, the grid goes on
        error = _describe(exc)
        records = [failed_record(n_groups_max, error, n_methods=M) for _ in reps]
    stacked = stack_records(records)
    t_write = time.perf_counter()
    statuses = [str(s) for s in stacked["status"]]
    try:
        write_block(store_path, cell_index, reps, stacked)
    except Exception as exc:  # noqa: BLE001 - e.g. a full disk: the block is failed, not half-done
        error, statuses = _store_write_failure(store_path, cell_index, reps, n_groups_max, exc, n_methods=M)
    write_s = time.perf_counter() - t_write
    return TaskResult(
        task_id=task.task_id,
        cell_index=cell_index,
        replicates=reps,
        statuses=statuses,
        error=error,
        seconds=time.perf_counter() - t0,
        compile_s=compile_s,
        sample_s=sample_s,
        fit_s=fit_s,
        generate_s=generate_s,
        score_s=score_s,
        write_s=write_s,
        worker=f"{os.uname().nodename}:{os.getpid()}",
    )


def _store_write_failure(store_path, cell_index: int, reps, n_groups_max: int, exc: BaseException,
                         n_methods: int = 1) -> tuple[str, list[str]]:
    """The block's results could not be written: store it as failed (every variable
    overwritten by the failed record, then ``done``), so no half-written block stays
    behind. If even that write fails the block stays pending (``done`` False) and is
    redone by the next run. Returns the error text and the statuses."""
    from ..fsutil import DiskFullError, disk_full_message, is_disk_full
    from .scoring import failed_record, stack_records

    if isinstance(exc, DiskFullError):
        why = str(exc)
    elif is_disk_full(exc):
        why = disk_full_message(store_path, f"the results of replicates {reps[0]}-{reps[-1]}")
    else:
        why = _describe(exc)
    error = f"the block's results could not be written to the store: {why}"
    try:
        write_block(store_path, cell_index, reps,
                    stack_records([failed_record(n_groups_max, error, n_methods=n_methods) for _ in reps]),
                    check_space=False)
    except Exception as exc2:  # noqa: BLE001
        error += (f"; recording the failure failed too ({_describe(exc2)}): the block stays pending "
                  "and the next run redoes it")
    return error, ["failed"] * len(reps)


def pending_tasks(design: Design, info: StoreInfo, done, status, retry_failed: bool = False) -> list[tuple[Task, int]]:
    """``(task, store cell index)`` for every block not done (and, with ``retry_failed``,
    every block with a failed fit), in ``design.tasks()`` order."""
    index = info.cell_index
    done = np.asarray(done)
    status = np.asarray(status)
    out = []
    for task in design.tasks():
        ci = index[task.cell.cell_id]
        reps = list(task.replicates)
        if not done[ci, reps].all() or (retry_failed and (status[ci, reps] == "failed").any()):
            out.append((task, ci))
    return out


