"""The integrity of a results store: leftovers of interrupted operations, damaged chunks.

Leftovers (:func:`recover`)
---------------------------
Creating a store builds it in ``.STORE.creating-OP`` and renames it into place; extending it
builds ``.STORE.extending-OP`` and swaps it in (atomically where the system can exchange two
directories, else by two renames, the old store going to ``.STORE.old-OP`` for a moment).
``.STORE.OP.owner`` says who runs the operation (host, PID, process start; the format of the
lock files of :mod:`simstudy.study.lock`). A process killed meanwhile leaves them behind.
:func:`recover`, called by the lock holder of the store (``simstudy run``, and ``simstudy
status`` when no runner holds the store), deals with the leftovers of an operation whose
owner is provably gone (:meth:`~simstudy.study.lock.Holder.stale_reason`: same host and PID
gone, or another host's file older than the stale limit):

* no store at the path (a kill between the two renames): the old store is put back, so no
  result is lost and the next run extends it again;
* a store at the path: the leftover directories are removed.

It also removes lease files (``.STORE.leases/*.lease``) whose holder is gone (a killed
joiner's, a killed worker's), as the next holder of the lease would.

Damage (:func:`verify_store`, :func:`repair`)
----------------------------------------------
Zarr reads a chunk file that is missing as the fill value, silently. Stores written by this
version keep every chunk of a done block (attr ``all_chunks_written``; stores made earlier
left out chunks that equal the fill value, so there only ``done`` and ``status`` must exist).
:func:`verify_store` decodes every chunk of every variable and checks that every chunk of
every block marked done exists; each problem is a :class:`Damage` naming the variable, the
chunk and the cell/replicate block. :func:`repair` marks the damaged blocks not done (and
removes their damaged chunk files; a damaged coordinate is rewritten from the design), so
the run reruns them with their own seeds: the same numbers as an undamaged run.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .store import StoreError, _is_store, local_store, owner_file

__all__ = ["Damage", "recover", "recover_unlocked", "clean_stale_leases", "verify_store", "damage_message",
           "repair", "check_readable"]

_TAGS = ("creating", "extending", "old")
#: bytes read at a time per variable while verifying
_SLAB_BYTES = 64 * 2**20


# ============================================================================ leftovers
def _leftovers(path: Path) -> tuple[set[str], dict[str, list[tuple[str, Path]]]]:
    """Operation ids with an owner file, and the leftover directories per operation id."""
    parent = path.parent
    prefix = f".{path.name}."
    owners: set[str] = set()
    dirs: dict[str, list[tuple[str, Path]]] = {}
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return owners, dirs
    for e in entries:
        name = e.name
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if rest.endswith(".owner"):
            owners.add(rest[: -len(".owner")])
            continue
        tag, sep, op = rest.rpartition("-")
        if sep and tag in _TAGS and e.is_dir(follow_symlinks=False):
            dirs.setdefault(op, []).append((tag, Path(e.path)))
    return owners, dirs


def clean_stale_leases(store) -> list[str]:
    """Remove the lease files of ``.STORE.leases/`` whose holder is gone (under the lock
    module's breaker, as a takeover would). Returns what was removed, in words."""
    from .lock import _breaker, lease_dir, read_holder

    d = lease_dir(store)
    out = []
    if not d.is_dir():
        return out
    for f in sorted(d.glob("*.lease")):
        holder = read_holder(f)
        if holder is None:
            continue
        reason = holder.stale_reason()
        if not reason:
            continue
        with _breaker(f) as mine:
            if not mine:
                continue
            again = read_holder(f)
            if again is not None and (again.run, again.pid, again.host) == (holder.run, holder.pid, holder.host):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
                out.append(f"removed the lease {f.name} of {holder.host}:{holder.pid} ({reason})")
    with contextlib.suppress(OSError):
        d.rmdir()  # only when empty
    return out


def recover(store) -> list[str]:
    """Put back or remove the leftovers of interrupted creations and extensions of ``store``
    whose owner is gone, and stale lease files. Call it holding the store's lock. Returns
    what was done, in words (empty: nothing to do)."""
    from .lock import read_holder

    path = Path(store)
    said: list[str] = []
    owners, dirs = _leftovers(path)
    for op in sorted(owners | set(dirs)):
        found = dict(dirs.get(op, []))
        owner = owner_file(path, op)
        holder = read_holder(owner) if op in owners else None
        if holder is not None:
            reason = holder.stale_reason()
            if not reason:
                continue  # its owner is alive: in progress
        elif "old" not in found or _is_store(path):
            # no owner file (made by an older simstudy): nothing proves its owner gone
            continue
        else:
            reason = "no owner file"
        old = found.get("old")
        if not _is_store(path) and old is not None and _is_store(old):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
            os.rename(old, path)
            del found["old"]
            said.append(f"restored the results store {path} from {old.name}, left by an extension that was "
                        f"interrupted ({reason}); the next run extends it again")
        if _is_store(path) or set(found) <= {"creating"}:
            for tag, d in found.items():
                shutil.rmtree(d, ignore_errors=True)
                said.append(f"removed {d.name}, left by an interrupted {_OPS[tag]} ({reason})")
            found = {t: d for t, d in found.items() if d.exists()}
        if not found:
            with contextlib.suppress(FileNotFoundError):
                owner.unlink()
    said.extend(clean_stale_leases(path))
    return said


_OPS = {"creating": "creation of the store", "extending": "extension of the store",
        "old": "extension of the store"}


def recover_unlocked(store) -> list[str]:
    """:func:`recover` for a command that does not hold the store's lock (``simstudy
    status``): takes the lock for the moment when there is something to recover and no
    runner holds it; otherwise only stale lease files are removed. Never raises for a
    file system that cannot be written (a read-only one): then nothing is done."""
    from .lock import StoreLock, lease_dir

    path = Path(store)
    owners, dirs = _leftovers(path)
    try:
        if not owners and not dirs:
            return clean_stale_leases(path) if lease_dir(path).is_dir() else []
        lock = StoreLock(path, command="simstudy status (recovering leftovers)")
        if lock.acquire() is not None:  # a runner holds the store: its business
            return clean_stale_leases(path)
        try:
            return recover(path)
        finally:
            lock.release()
    except OSError:
        return []


# ============================================================================ damage
@dataclass(frozen=True)
class Damage:
    """One damaged chunk of a results store."""

    variable: str
    chunk: tuple[int, ...]  # chunk index along the variable's dims ((): its metadata)
    problem: str  # "missing" | "unreadable: ..." | "metadata unreadable: ..."
    cell: int | None = None  # store cell index (per-replicate variables)
    replicates: tuple[int, int] | None = None  # first, last replicate of the block
    cell_label: str = ""

    @property
    def block(self) -> tuple[int, int] | None:
        """``(cell index, first replicate)`` of the task block, or None (not a block variable)."""
        return None if self.cell is None else (self.cell, self.replicates[0])

    def describe(self) -> str:
        where = ""
        if self.cell is not None:
            label = f" ({self.cell_label})" if self.cell_label else ""
            where = f" = cell {self.cell}{label}, replicates {self.replicates[0]}-{self.replicates[1]}"
        chunk = f" chunk {'.'.join(map(str, self.chunk))}" if self.chunk else ""
        return f"{self.variable}{chunk}{where}: {self.problem}"


def _chunk_grid(arr) -> list[range]:
    return [range(math.ceil(s / c)) if s else range(0) for s, c in zip(arr.shape, arr.chunks)]


def _region(arr, coords) -> tuple[slice, ...]:
    return tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(coords, arr.chunks, arr.shape))


def _problem(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"unreadable: {type(exc).__name__}" + (f": {text[:160]}" if text else "")


def _read_chunks(arr):
    """Decode every chunk of ``arr`` (a slab of cells at a time, chunk by chunk where a slab
    fails). Yields ``(chunk coords, problem)`` for the damaged chunks only."""
    grid = _chunk_grid(arr)
    if not arr.ndim or not grid or any(len(g) == 0 for g in grid):
        try:
            arr[...]
        except Exception as exc:  # noqa: BLE001
            yield (0,) * arr.ndim, _problem(exc)
        return
    row = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize)
    step = max(arr.chunks[0], (_SLAB_BYTES // row) // arr.chunks[0] * arr.chunks[0])
    for start in range(0, arr.shape[0], step):
        stop = min(start + step, arr.shape[0])
        try:
            arr[start:stop]
            continue
        except Exception:  # noqa: BLE001 - find the chunk(s)
            pass
        first = [range(start // arr.chunks[0], math.ceil(stop / arr.chunks[0]))]
        for coords in itertools.product(*(first + grid[1:])):
            try:
                arr[_region(arr, coords)]
            except Exception as exc:  # noqa: BLE001
                yield tuple(coords), _problem(exc)


def _safe_values(arr):
    """The whole (small) array, damaged chunks read as the fill value."""
    bad = {c for c, _ in _read_chunks(arr)}
    if not bad:
        return np.asarray(arr[...])
    out = np.full(arr.shape, arr.fill_value, dtype=arr.dtype)
    for coords in itertools.product(*_chunk_grid(arr)):
        if tuple(coords) not in bad:
            reg = _region(arr, coords)
            out[reg] = arr[reg]
    return out


def verify_store(store) -> list[Damage]:
    """Decode every chunk of every variable of ``store`` and check that every chunk of every
    block marked ``done`` exists. Returns the damage found (empty: the store is intact).
    Raises :class:`StoreError` when the store cannot be opened at all."""
    import zarr

    path = Path(store)
    if not _is_store(path):
        from .store import no_store_message

        raise StoreError(no_store_message(path))
    try:
        g = zarr.open_group(local_store(path, read_only=True), mode="r")
        attrs = dict(g.attrs)
        names = sorted(g.array_keys())
    except Exception as exc:  # noqa: BLE001
        raise StoreError(f"{path} is not a readable results store: {type(exc).__name__}: {exc}") from None
    damages: list[Damage] = []
    arrays = {}
    for name in names:
        try:
            arrays[name] = g[name]
        except Exception as exc:  # noqa: BLE001
            damages.append(Damage(name, (), f"metadata unreadable: {_problem(exc)[len('unreadable: '):]}"))
    labels: list[str] = []
    if "cell_label" in arrays:
        labels = [str(x) for x in _safe_values(arrays["cell_label"])]
    done_blocks = None  # (cell, replicate chunk) -> done
    if "done" in arrays:
        done = arrays["done"]
        done_blocks = np.zeros(tuple(len(r) for r in _chunk_grid(done)), dtype=bool)
        values = _safe_values(done)
        for coords in itertools.product(*_chunk_grid(done)):
            done_blocks[coords] = bool(np.asarray(values[_region(done, coords)]).any())
    strict = "all_chunks_written" in attrs

    def block_of(arr, coords) -> dict:
        dims = tuple(arr.metadata.dimension_names or ())
        if dims[:2] != ("cell", "replicate"):
            return {}
        ci, k = coords[0], coords[1]
        first = k * arr.chunks[1]
        last = min(first + arr.chunks[1], arr.shape[1]) - 1
        return {"cell": ci, "replicates": (first, last), "cell_label": labels[ci] if ci < len(labels) else ""}

    for name, arr in arrays.items():
        for coords, problem in _read_chunks(arr):
            damages.append(Damage(name, coords, problem, **block_of(arr, coords)))
        dims = tuple(arr.metadata.dimension_names or ())
        if done_blocks is None or dims[:2] != ("cell", "replicate") or not (strict or name in ("done", "status")):
            continue
        if arr.chunks[:2] != arrays["done"].chunks:
            continue  # pragma: no cover - every block variable is chunked as `done`
        bad = {d.chunk for d in damages if d.variable == name}
        rest = [r for r in _chunk_grid(arr)[2:]]
        for ci, k in zip(*np.nonzero(done_blocks)):
            for tail in itertools.product(*rest):
                coords = (int(ci), int(k)) + tuple(tail)
                if coords in bad:
                    continue
                if not (path / name / arr.metadata.encode_chunk_key(coords)).is_file():
                    damages.append(Damage(name, coords, "missing (the block is marked done)",
                                          **block_of(arr, coords)))
    return damages


def damage_message(store, damages: list[Damage], limit: int = 3) -> str:
    """One message about a damaged store: the first damaged chunks and what to do."""
    blocks = {d.block for d in damages if d.block is not None}
    shown = "; ".join(d.describe() for d in damages[:limit])
    more = f"; and {len(damages) - limit} more" if len(damages) > limit else ""
    return (f"the results store {store} is damaged ({len(damages)} chunk(s) in {len(blocks)} block(s)): {shown}{more}. "
            f"`simstudy status {store} --verify` lists them; `simstudy run DESIGN --store {store} --repair` "
            "recomputes the damaged blocks with their own seeds")


def check_readable(store) -> None:
    """Raise :class:`StoreError` (:func:`damage_message`) when ``store`` has damaged chunks:
    what every reader of a store (``summarize``, ``plot``, ``report``) calls first."""
    damages = verify_store(store)
    if damages:
        raise StoreError(damage_message(store, damages))


def repair(store, design, damages: list[Damage] | None = None) -> list[Damage]:
    """Make a damaged store whole again by the run that follows: every damaged block is
    marked not done (its damaged chunk files removed first where ``done`` itself is damaged),
    so it is rerun with its own seeds; a damaged coordinate is rewritten from ``design``.
    Call it holding the store's lock. Returns the damage dealt with; raises
    :class:`StoreError` for damage a rerun cannot mend (metadata)."""
    import zarr

    from .store import _schema, _template, _writable

    path = Path(store)
    damages = verify_store(path) if damages is None else damages
    if not damages:
        return []
    meta = [d for d in damages if not d.chunk and d.problem.startswith("metadata")]
    if meta:
        raise StoreError(f"the results store {path} has damaged metadata that rerunning tasks cannot mend: "
                         + "; ".join(d.describe() for d in meta[:3])
                         + ". Write the design to a new store path (--store NEW.zarr)")
    g = zarr.open_group(local_store(path), mode="r+")

    def unlink(d: Damage) -> None:
        with contextlib.suppress(FileNotFoundError):
            (path / d.variable / g[d.variable].metadata.encode_chunk_key(d.chunk)).unlink()

    blocks = sorted({d.block + (d.replicates[1],) for d in damages if d.block is not None})
    # 1. a damaged `done` chunk goes first (it then reads "not done"), 2. every damaged block
    # is marked not done, 3. its other damaged chunks go: a kill at any point leaves the
    # blocks not done, so the next run redoes them
    for d in damages:
        if d.variable == "done":
            unlink(d)
    done = _writable(g["done"])
    for ci, first, last in blocks:
        done[ci, first:last + 1] = np.zeros(last - first + 1, dtype=bool)
    for d in damages:
        if d.block is not None and d.variable != "done":
            unlink(d)
    coords = sorted({d.variable for d in damages if d.block is None})
    if coords:
        from .store import _store_cell_ids

        by_id = {c.cell_id: c for c in design.cells()}
        ids = _store_cell_ids(path) if "cell_id" not in coords else None
        if ids is None or any(i not in by_id for i in ids):
            raise StoreError(f"the results store {path} has a damaged cell coordinate that cannot be rebuilt: "
                             "write the design to a new store path (--store NEW.zarr)")
        template, _ = _template(design, [by_id[i] for i in ids], _schema())
        for name in coords:
            if name not in template.coords:
                raise StoreError(f"the results store {path}: variable {name!r} is damaged and is no coordinate "
                                 "that can be rebuilt from the design; write the design to a new store path")
            for d in damages:
                if d.variable == name:
                    unlink(d)
            _writable(g[name])[...] = np.asarray(template[name].values).astype(g[name].dtype)
    return damages
