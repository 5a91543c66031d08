"""The results store: one Zarr directory per study, read and written with xarray.

Layout
------
* dims ``cell``, ``replicate``, ``group`` (padded with NaN to the largest J of the design)
  and ``method`` (the design's ``methods``, a string coordinate; per-method variables
  ``flag``/``score`` have dims ``(cell, replicate, method, group)``, ``method_s``
  ``(cell, replicate, method)``). Stores made before the comparator methods have no
  ``method`` dim; they keep opening and resuming (``simstudy.evaluate`` treats them as
  ``ss_melsm`` only);
* every cell-identifying setting of the design (its factors, then any other key an
  ``[[extra]]`` sets) is a plain coordinate along ``cell``, with ``cell_id`` (int64, the
  design's stable id), ``data_id`` (int64, the hash of the generator settings that seeds the
  data: cells with equal data ids hold results on the same data sets; absent in version-1
  stores) and ``cell_label``; ``replicate`` and ``group`` are integer coordinates;
* data variables as listed in :data:`simstudy.study.scoring.SCHEMA` (per group: dims
  ``(cell, replicate, group)``, per fit: ``(cell, replicate)``), each with CF ``long_name``
  and ``units``, plus ``done`` ``(cell, replicate)``: the record is complete. It is written
  last by :func:`write_block`, so a crash mid-write leaves ``done`` False and the block is
  redone;
* chunks: ``cell`` 1, ``replicate`` the design's ``block_size``, ``group`` all. A task is
  one cell x one block of replicates, so concurrent writes of distinct tasks never touch
  the same chunk (region writes only; appending concurrently would lose data);
* attrs: ``design_text``, ``design_hash``, ``design`` (JSON of
  :func:`simstudy.study.design.design_to_dict`), ``design_name``, ``seed``, ``factors`` (JSON
  list of the cell coordinates), ``versions`` (JSON: simstudy, jax, numpyro, arviz, xarray,
  zarr, dask, numpy, python), ``environment`` (JSON of :func:`simstudy.environment.environment_record`:
  every installed distribution and whether it matches ``requirements.lock``), ``created``,
  ``history``, ``simstudy_store_version``.

Chunks that were never written read as the fill value (NaN, "" or False), so creating the
template writes metadata only. The template is built in a temporary directory next to the
store and renamed into place, so a bad design or an error never leaves a half-made store.

Growing (:func:`create_or_open` with a design that *extends* the stored one, see
:func:`simstudy.study.design.diff_designs`) rebuilds the template for the new design -- old cells
keep their positions, new cells are appended -- copies the existing results into it and
swaps the directories: atomically where the system can (:func:`_exchange`), else by two
renames with the old store aside in ``.STORE.old-OP`` in between. ``.STORE.OP.owner`` says who
runs a creation or extension; :func:`simstudy.study.integrity.recover` puts back or removes
what a killed one left. Do it with no task running (``simstudy run`` does it before it
starts any).

Every chunk of a done block is written, also one equal to the fill value (attr
``all_chunks_written``), so a missing chunk file is damage
(:func:`simstudy.study.integrity.verify_store`). Stores are always opened through
:func:`local_store`: a path, never a URL.

A failed write (a full disk) raises before anything is written where it can be foreseen
(:func:`write_block` checks the free space first) and :class:`StoreError` for creation and
extension; the runner stores a block whose write failed as failed. Who may write a store at
a time is the runner's business (:mod:`simstudy.study.lock`: ``STORE.lock`` and
``.STORE.leases/`` sit next to the store, so extending it, which swaps the directory, keeps
them).

The store knows nothing about models or Dask: it stores named arrays.

Reading: :func:`open_results` gives an ``xarray.Dataset``; :func:`unstack_cells` turns the
``cell`` dim of a full factorial into one dim per factor. A store is a plain directory:
copy it with ``rsync -a``, ``tar`` or ``zip``.
"""

from __future__ import annotations

import errno
import json
import os
import warnings
import shutil
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..environment import environment_record
from .design import SETTINGS, Design, DesignError, design_from_dict, design_to_dict, diff_designs, load_design

__all__ = [
    "StoreError",
    "StoreInfo",
    "not_a_store_message",
    "STORE_VERSION",
    "create_or_open",
    "open_existing",
    "read_info",
    "write_block",
    "completion",
    "open_results",
    "unstack_cells",
    "package_versions",
]

#: 2: data seeds from the cell's ``data_id`` (generator settings only; paired designs) and a
#: ``data_id`` coordinate along ``cell``. 1: data seeds from the ``cell_id``. Stores of an older
#: version stay readable (summarize, plot, report, status) but are never extended or resumed:
#: their new replicates would come from other seeds than their old ones (:func:`_refuse_old_version`).
STORE_VERSION = 2
_DIMS = {"group": ("cell", "replicate", "group"), "fit": ("cell", "replicate"),
         "method_group": ("cell", "replicate", "method", "group"), "method": ("cell", "replicate", "method")}
_DONE_ATTRS = {"long_name": "the record of this replicate is complete (written last, per task)", "units": ""}
_VERSION_PACKAGES = ("simstudy", "jax", "jaxlib", "numpyro", "arviz", "xarray", "zarr", "dask", "distributed", "numpy")


class StoreError(ValueError):
    """A results store cannot be created, opened or written as asked; the message says why
    and what to do."""


@dataclass(frozen=True)
class StoreInfo:
    """What :func:`create_or_open` found or made."""

    path: Path
    design: Design
    action: str  # "created" | "opened" | "extended"
    cell_ids: tuple[int, ...]  # cell ids in store order
    n_groups_max: int
    replicates: int
    block_size: int
    explanation: str = ""
    n_methods: int = 0  # length of the `method` dim (0: a store made before comparators)

    @property
    def cell_index(self) -> dict[int, int]:
        """cell id -> position along the store's ``cell`` dim."""
        return {cid: i for i, cid in enumerate(self.cell_ids)}


# ----------------------------------------------------------------------------- helpers
def _schema() -> dict[str, dict]:
    from .scoring import SCHEMA

    return SCHEMA




def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in _VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _is_store(path: Path) -> bool:
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


def local_store(path, *, read_only: bool = False):
    """A ``zarr.storage.LocalStore`` on ``path``: a ``--store`` is a local path, always (given
    as a string, zarr would read ``#``, ``?`` or ``;`` in it as parts of a URL)."""
    from zarr.storage import LocalStore

    return LocalStore(Path(path), read_only=read_only)


def _writable(arr):
    """``arr`` writing every chunk, also one that equals the fill value: every chunk of a done
    block then exists, so a missing one is damage (:func:`simstudy.study.integrity.verify_store`)."""
    return arr.with_config({"write_empty_chunks": True})


def not_a_store_message(path, missing: str = "design") -> str:
    """What ``status``, ``summarize``, ``plot`` and ``report`` say about a Zarr store that
    simstudy did not write."""
    return (f"{path} is a Zarr store but not a simstudy results store (no {missing!r} attribute); "
            "give the --store path of a `simstudy run`")


def no_store_message(path) -> str:
    return f"no results store at {path}"


def _coord_values(cells, name: str) -> tuple[np.ndarray, dict]:
    """One cell coordinate: the setting's value in every cell, typed by the setting kind."""
    s = SETTINGS[name]
    values = [c.get(name) for c in cells]
    attrs = {"long_name": s.doc or name, "units": ""}
    if s.kind == "bool":
        return np.array(values, dtype=bool), attrs
    if s.kind == "int":
        if any(v is None for v in values):
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64), attrs
        return np.array(values, dtype=np.int64), attrs
    if s.kind == "float" or (s.kind == "pi_prior" and all(isinstance(v, (int, float)) for v in values)):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64), attrs
    if s.kind == "pi_prior":  # numbers mixed with "beta(a, b)": every level as its text label
        from ..model.priors import pi_label

        return np.array([pi_label(v) for v in values], dtype=str), attrs
    return np.array(["" if v is None else str(v) for v in values], dtype=str), attrs


def _template(design: Design, cells, schema: dict):
    """The lazily-filled (dask) template Dataset for ``cells`` (in store order)."""
    import dask.array as da
    import xarray as xr

    C, R, B = len(cells), design.replicates, design.block_size
    G = max(int(c.get("n_groups")) for c in cells)
    methods = tuple(getattr(design, "methods", ("ss_melsm",)))
    M = len(methods)
    reserved = set(schema) | {"done", "cell", "replicate", "group", "cell_id", "cell_label", "data_id", "method"}
    coords: dict[str, Any] = {
        "replicate": ("replicate", np.arange(R, dtype=np.int64), {"long_name": "replicate (data set) index", "units": ""}),
        "group": ("group", np.arange(G, dtype=np.int64), {"long_name": "group index (padded to the largest J)", "units": ""}),
        "cell_id": ("cell", np.array([c.cell_id for c in cells], dtype=np.int64),
                    {"long_name": "stable cell id (hash of the cell's identifying settings; seeds derive from it)",
                     "units": ""}),
        "cell_label": ("cell", np.array([c.label for c in cells], dtype=str), {"long_name": "cell label", "units": ""}),
        "data_id": ("cell", np.array([c.data_id for c in cells], dtype=np.int64),
                    {"long_name": "data id (hash of the cell's generator settings; data seeds derive from it, so "
                                  "cells with equal data ids fit the same data sets)", "units": ""}),
    }
    if any(spec["dims"].startswith("method") for spec in schema.values()):
        coords["method"] = ("method", np.array(methods, dtype=str),
                            {"long_name": "method that flagged the groups (simstudy.methods.METHODS)", "units": ""})
    for name in design.coords:
        if name in reserved:  # pragma: no cover - setting names never clash with the schema
            raise StoreError(f"design setting {name!r} clashes with a store variable name")
        values, attrs = _coord_values(cells, name)
        coords[name] = ("cell", values, attrs)
    data_vars = {}
    encoding = {}
    for name, spec in schema.items():
        dims = _DIMS[spec["dims"]]
        sizes = {"cell": C, "replicate": R, "group": G, "method": M}
        shape = tuple(sizes[d] for d in dims)
        chunks = tuple({"cell": 1, "replicate": B}.get(d, sizes[d]) for d in dims)
        dtype = np.dtype(spec["dtype"])
        fill = "" if dtype.kind == "U" else np.nan
        # one dask chunk per variable: nothing is computed (compute=False), only metadata
        data_vars[name] = (dims, da.full(shape, fill, dtype=dtype, chunks=-1),
                           {"long_name": spec["long_name"], "units": spec["units"]})
        encoding[name] = {"chunks": chunks}
    data_vars["done"] = (_DIMS["fit"], da.zeros((C, R), dtype=bool, chunks=-1), dict(_DONE_ATTRS))
    encoding["done"] = {"chunks": (1, B)}
    ds = xr.Dataset(data_vars, coords=coords)
    return ds, encoding


def _attrs(design: Design, created: str, history: list[str]) -> dict[str, Any]:
    return {
        "title": f"simstudy results: {design.name}",
        "Conventions": "CF-1.10",
        "simstudy_store_version": STORE_VERSION,
        "design_name": design.name,
        "design_text": design.text,
        "design_hash": design.hash,
        "design": json.dumps(design_to_dict(design), sort_keys=True),
        "seed": int(design.seed),
        "replicates": int(design.replicates),
        "block_size": int(design.block_size),
        "factors": json.dumps(list(design.coords)),
        "versions": json.dumps(package_versions(), sort_keys=True),
        "environment": json.dumps(environment_record(), sort_keys=True),
        "created": created,
        "history": "\n".join(history),
        # every chunk of a done block is written, fill-valued or not (see _writable)
        "all_chunks_written": 1,
    }


def _write_template(target: Path, design: Design, cells, schema: dict, created: str, history: list[str],
                    all_chunks_written: bool = True) -> None:
    ds, encoding = _template(design, cells, schema)
    ds.attrs.update(_attrs(design, created, history))
    if not all_chunks_written:  # an extended store made before every chunk was written
        del ds.attrs["all_chunks_written"]
    # consolidated metadata lets a plain xr.open_zarr(path) open the store in one read; it stays
    # valid because tasks write chunks only, never metadata
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        ds.to_zarr(local_store(target), mode="w-", compute=False, consolidated=True, zarr_format=3,
                   encoding=encoding)


def owner_file(path: Path, op: str) -> Path:
    """``results/.study.zarr.OP.owner``: who runs the creation or extension ``op`` of a store
    (host, PID, process start), written before its ``.study.zarr.creating-OP`` /
    ``extending-OP`` / ``old-OP`` directories exist and removed after they are gone, so
    leftovers of a killed process are recognised (:func:`simstudy.study.integrity.recover`)."""
    return path.with_name(f".{path.name}.{op}.owner")


def _take_owner(path: Path, op: str, what: str) -> Path:
    from .lock import _create_exclusive, _identity

    owner = owner_file(path, op)
    _create_exclusive(owner, _identity(op, what))
    return owner


def _drop_owner(owner: Path | None) -> None:
    if owner is not None:
        try:
            owner.unlink()
        except OSError:
            pass


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system cannot (then nothing was changed)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_into_place(tmp: Path, path: Path, backup: Path) -> None:
    """Put the directory ``tmp`` at ``path``, the old ``path`` at ``tmp`` (exchange) or
    ``backup`` (two renames). With the atomic exchange a complete store is at ``path`` at every
    instant; without it a kill between the two renames leaves ``path`` absent and the old store
    at ``backup``, which the next ``run``/``status`` puts back (:func:`simstudy.study.integrity.recover`)."""
    if _exchange(tmp, path):
        return
    os.rename(path, backup)
    os.rename(tmp, path)


def _read_attrs(path: Path) -> dict:
    import zarr

    try:
        return dict(zarr.open_group(local_store(path, read_only=True), mode="r").attrs)
    except Exception as exc:  # noqa: BLE001 - any failure means: not a readable store
        raise StoreError(f"{path} is not a readable results store: {exc}") from None


def _store_cell_ids(path: Path) -> tuple[int, ...]:
    import zarr

    return tuple(int(x) for x in zarr.open_array(local_store(path, read_only=True), path="cell_id", mode="r")[:])


def _info(path: Path, design: Design, action: str, explanation: str = "") -> StoreInfo:
    import zarr

    g = zarr.open_group(local_store(path, read_only=True), mode="r")
    return StoreInfo(
        path=path,
        design=design,
        action=action,
        cell_ids=_store_cell_ids(path),
        n_groups_max=int(g["group"].shape[0]),
        replicates=int(g["replicate"].shape[0]),
        block_size=int(g.attrs["block_size"]),
        explanation=explanation,
        n_methods=int(g["method"].shape[0]) if "method" in g else 0,
    )


def _stored_design(path: Path, attrs: dict) -> Design:
    """The design a store was written for, rebuilt from its stored text (raises
    :class:`StoreError` when this version of simstudy cannot rebuild it)."""
    try:
        return design_from_dict(json.loads(attrs["design"]))
    except (DesignError, KeyError, ValueError) as exc:
        raise StoreError(
            f"cannot rebuild the design stored in {path} with this version of simstudy ({exc}); "
            "write new results to a new store path (--store NEW.zarr)"
        ) from None


def store_version(attrs: dict) -> int:
    """The store version of a store's attributes (1 for stores made before it was recorded)."""
    try:
        return int(attrs.get("simstudy_store_version", 1))
    except (TypeError, ValueError):
        return 1


def _refuse_old_version(path: Path, attrs: dict) -> None:
    """Raise :class:`StoreError` for a store of another version: this simstudy would run its
    missing or new replicates from other data seeds than its stored ones (version 1 seeded
    data from the cell id, version 2 from the data id), mixing two seed schemes in one store."""
    version = store_version(attrs)
    if version == STORE_VERSION:
        return
    why = ("its data sets were seeded from each cell's id, and this simstudy seeds them from the generator "
           "settings only (paired designs: every model setting fits the same data sets)"
           if version < STORE_VERSION else "it was written by a newer simstudy")
    raise StoreError(
        f"the results store {path} has store version {version}, this simstudy writes version {STORE_VERSION}: "
        f"{why}, so it cannot resume or extend it without mixing two seed schemes. Its results stay readable "
        "(status, summarize, plot, report). Write the design to a new store path (--store NEW.zarr), or resume "
        "it with the simstudy version that made it."
    )


def _match_stored(path: Path, design: Design):
    """``(stored design, diff)`` of an existing store against ``design``; ``(None, None)`` when
    the store holds this design (the same hash, or a rewrite giving the same cells)."""
    attrs = _read_attrs(path)
    if "design_hash" not in attrs:
        raise StoreError(not_a_store_message(path, "design_hash"))
    _refuse_old_version(path, attrs)
    if attrs["design_hash"] == design.hash:
        return None, None
    old = _stored_design(path, attrs)
    diff = diff_designs(old, design)
    return (None, None) if diff.kind == "same" else (old, diff)


# ----------------------------------------------------------------------------- API
def read_info(path: str | Path) -> StoreInfo:
    """Open an existing store's description (its design rebuilt from the stored text)."""
    path = Path(path)
    if not _is_store(path):
        raise StoreError(no_store_message(path))
    attrs = _read_attrs(path)
    if "design" not in attrs:
        raise StoreError(not_a_store_message(path))
    return _info(path, _stored_design(path, attrs), "opened")


def create_or_open(path: str | Path, design: Design | str | Path, *, schema: dict | None = None) -> StoreInfo:
    """Create the store for ``design`` at ``path``, or open it if it already holds this design.

    ``design`` may be a :class:`~simstudy.study.design.Design` or a design file (validated first,
    so nothing is created for an invalid design). For an existing store: the same design
    (same hash) is reused; a design that *extends* the stored one (adds cells and/or
    replicates, same seed and block size) grows the store, keeping every result; a
    *changed* design raises :class:`StoreError` explaining what changed.
    """
    if not isinstance(design, Design):
        design = load_design(design)  # raises DesignError before anything is touched
    schema = schema or _schema()
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} exists and is not a directory; choose another --store path")
    if path.is_dir() and not _is_store(path):
        if any(path.iterdir()):
            raise StoreError(f"{path} exists, is not empty and is not a results store; choose another --store path")
        path.rmdir()  # an empty directory: take its place
    if not path.exists():
        return _create(path, design, schema)

    old, diff = _match_stored(path, design)
    if diff is None:
        return _info(path, design, "opened")
    if diff.kind == "changed":
        raise StoreError(
            f"the results store {path} holds results of design {old.name!r} (hash {old.hash[:12]}), and the design "
            f"{design.source} ({design.name!r}, hash {design.hash[:12]}) is not an extension of it: existing results "
            f"would no longer match their settings.\n{diff.explain()}\n"
            "Either undo these changes, or write the new design to a new store path (--store NEW.zarr). "
            "Adding cells, levels or replicates is fine: that extends a store in place."
        )
    _extend(path, old, design, schema, diff.explain())
    return _info(path, design, "extended", diff.explain())


def open_existing(path: str | Path, design: Design) -> StoreInfo:
    """Open a store that already holds ``design`` (same hash, or a rewrite giving the same
    cells), never creating or growing it: what a runner that joins a running store
    (``simstudy run --join``) may do. Anything else raises :class:`StoreError`."""
    path = Path(path)
    if not _is_store(path):
        raise StoreError(no_store_message(path))
    old, diff = _match_stored(path, design)
    if diff is None:
        return _info(path, design, "opened")
    raise StoreError(
        f"the results store {path} holds design {old.name!r} (hash {old.hash[:12]}), not {design.source} "
        f"({design.name!r}, hash {design.hash[:12]}): a runner that joins a running store must run the design the "
        f"store holds.\n{diff.explain()}\n"
        + ("Extending a store needs it to itself: run without --join once the other runners have finished."
           if diff.kind == "extends" else "Write this design to a new store path (--store NEW.zarr).")
    )


def _create(path: Path, design: Design, schema: dict) -> StoreInfo:
    from ..fsutil import disk_full_message, is_disk_full

    op = uuid.uuid4().hex[:8]
    tmp = path.with_name(f".{path.name}.creating-{op}")
    owner = None
    created = _now()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        owner = _take_owner(path, op, "creating the store")  # who made tmp: leftovers of a dead owner are removed
        _write_template(tmp, design, design.cells(), schema, created,
                        [f"{created} created for design {design.name!r} ({design.hash[:12]})"])
        os.rename(tmp, path)
    except OSError as exc:
        # another process made the store first: rename() onto a non-empty directory fails with
        # ENOTEMPTY on Linux (EEXIST elsewhere). Its store is as good as ours if it holds this design.
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and _is_store(path):
            attrs = _read_attrs(path)
            if attrs.get("design_hash") == design.hash:
                return _info(path, design, "opened")
            raise StoreError(f"{path} was created by another run, for another design, while this run was creating "
                             "it; write this design to a new store path (--store NEW.zarr)") from None
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise StoreError(f"{path} appeared while the store was being created and is not a results store; "
                             "choose another --store path") from None
        if is_disk_full(exc):
            raise StoreError(f"cannot create the results store: {disk_full_message(path.parent, str(path))}") from None
        raise StoreError(f"cannot create the results store {path}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        _drop_owner(owner)
    return _info(path, design, "created")


def _extend(path: Path, old: Design, new: Design, schema: dict, explanation: str) -> None:
    """Rebuild the template for ``new`` (old cells first, in store order), copy, swap."""
    import zarr

    old_ids = _store_cell_ids(path)
    new_by_id = {c.cell_id: c for c in new.cells()}
    missing = [i for i in old_ids if i not in new_by_id]
    if missing:  # pragma: no cover - diff_designs calls that "changed"
        raise StoreError(f"the new design drops {len(missing)} cell(s) of the store")
    seen = set(old_ids)
    cells = [new_by_id[i] for i in old_ids] + [c for c in new.cells() if c.cell_id not in seen]
    attrs = _read_attrs(path)
    stamp = _now()
    history = [h for h in str(attrs.get("history", "")).split("\n") if h]
    history.append(f"{stamp} extended to design {new.name!r} ({new.hash[:12]}): "
                   + explanation.replace("\n", " ").replace("  - ", "; "))
    op = uuid.uuid4().hex[:8]
    owner = _take_owner(path, op, "extending the store")
    tmp = path.with_name(f".{path.name}.extending-{op}")
    backup = path.with_name(f".{path.name}.old-{op}")
    try:
        _write_template(tmp, new, cells, schema, str(attrs.get("created", stamp)), history,
                        all_chunks_written="all_chunks_written" in attrs)
        src = zarr.open_group(local_store(path, read_only=True), mode="r")
        dst = zarr.open_group(local_store(tmp), mode="r+")
        C_old = len(old_ids)
        done_old = np.asarray(src["done"][:], dtype=bool)
        for name in list(schema) + ["done"]:
            if name not in src:
                continue
            a, b = src[name], _writable(dst[name])
            for ci in range(C_old):  # one cell at a time: bounded memory
                if not done_old[ci].any():
                    continue
                block = a[ci]
                b[(ci,) + tuple(slice(0, n) for n in block.shape)] = block
        _swap_into_place(tmp, path, backup)
    except BaseException as exc:
        if backup.exists() and not path.exists():
            os.rename(backup, path)
        from ..fsutil import disk_full_message, is_disk_full

        if isinstance(exc, OSError) and is_disk_full(exc):
            raise StoreError(f"cannot extend the results store (it is unchanged): "
                             f"{disk_full_message(path.parent, 'the extended copy of ' + str(path))}") from None
        if isinstance(exc, Exception) and not isinstance(exc, (OSError, StoreError)) and path.exists():
            from .integrity import damage_message, verify_store

            damages = verify_store(path)  # a chunk that cannot be decoded stops the copy: name it
            if damages:
                raise StoreError(f"cannot extend the results store (it is unchanged): "
                                 f"{damage_message(path, damages)}") from None
        raise
    finally:
        if tmp.exists():  # after an atomic exchange: the old store
            shutil.rmtree(tmp, ignore_errors=True)
        if path.exists():
            shutil.rmtree(backup, ignore_errors=True)
        _drop_owner(owner)


def write_block(path: str | Path, cell_index: int, replicate_indices, records: dict[str, np.ndarray], *,
                check_space: bool = True) -> None:
    """Region-write one task's records, then mark its replicates done.

    ``replicate_indices``: consecutive replicate positions (one block); ``records``: every
    schema variable stacked along a first ``replicate`` axis (per-group arrays
    ``(n_replicates, n_groups_max)``, per-fit ``(n_replicates,)``). Text is cut to the
    stored width.

    ``check_space``: before writing anything, raise :class:`simstudy.fsutil.DiskFullError`
    when the store's file system has less free space than the block takes uncompressed
    (so a full disk fails the block cleanly instead of half-writing it).
    """
    import zarr

    path = Path(path)
    reps = [int(r) for r in replicate_indices]
    if not reps or reps != list(range(reps[0], reps[0] + len(reps))):
        raise StoreError(f"replicate indices must be consecutive, got {reps}")
    g = zarr.open_group(local_store(path), mode="r+")
    arrays = {n: _writable(a) for n, a in g.arrays()}
    C, R = arrays["done"].shape
    if not 0 <= cell_index < C or reps[-1] >= R:
        raise StoreError(f"cell {cell_index} / replicates {reps[0]}..{reps[-1]} are outside the store ({C} x {R})")
    values = {}
    for name, value in records.items():
        arr = arrays.get(name)
        if arr is None and name in _schema():
            # a variable added to the schema after this store was created (e.g. the comparator
            # methods, the convergence verdict): the store has no place for it, so an old store
            # keeps resuming; its analysis treats the variable as absent
            continue
        if arr is None or name == "done" or tuple(arr.metadata.dimension_names[:2]) != ("cell", "replicate"):
            raise StoreError(f"{name!r} is not a result variable of the store {path}")
        value = np.asarray(value).astype(arr.dtype)  # numpy cuts text to the stored width
        want = (len(reps),) + tuple(arr.shape[2:])
        if value.shape != want:
            raise StoreError(f"{name}: shape {value.shape}, the store needs {want}")
        values[name] = value
    absent = [n for n, a in arrays.items()
              if n != "done" and tuple(a.metadata.dimension_names[:2]) == ("cell", "replicate") and n not in records]
    if absent:
        raise StoreError(f"records lack {absent}")
    if check_space:
        from ..fsutil import check_free_space

        need = sum(int(v.nbytes) for v in values.values())
        check_free_space(path, need, f"the results of cell {cell_index}, replicates {reps[0]}-{reps[-1]} to {path}")
    # region writes straight through zarr (the chunks of one task belong to it alone);
    # `done` last, so a block interrupted mid-write is redone
    region = (cell_index, slice(reps[0], reps[-1] + 1))
    for name, value in values.items():
        arrays[name][region] = value
    arrays["done"][region] = np.ones(len(reps), dtype=bool)


def completion(path: str | Path):
    """``(done, status)``: DataArrays (cell, replicate) with ``cell_id`` and ``cell_label``
    coordinates; ``status`` is "" where nothing was written yet."""

    ds = open_results(path, chunks=None)
    drop = [c for c in ds.coords if c not in ("cell_id", "cell_label", "replicate")]
    try:
        return (ds["done"].drop_vars(drop, errors="ignore").load(),
                ds["status"].drop_vars(drop, errors="ignore").load())
    except Exception:  # noqa: BLE001 - a chunk that cannot be decoded: name it
        from .integrity import damage_message, verify_store

        damages = verify_store(path)
        if not damages:
            raise
        raise StoreError(damage_message(path, damages)) from None


def open_results(path: str | Path, **kwargs):
    """The results store as an ``xarray.Dataset`` (lazy, dask-backed unless ``chunks=None``)."""
    import xarray as xr

    path = Path(path)
    if not _is_store(path):
        raise StoreError(no_store_message(path))
    with warnings.catch_warnings():
        # stores made before metadata was consolidated, or by hand, open the slower way
        warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated metadata")
        try:
            ds = xr.open_zarr(local_store(path, read_only=True), **kwargs)
        except Exception as exc:  # noqa: BLE001 - a broken or foreign store: say so, no traceback
            raise StoreError(f"{path} is not a readable results store: {type(exc).__name__}: {exc}") from None
    if "design" not in ds.attrs or "cell" not in ds.dims:
        raise StoreError(not_a_store_message(path))
    # the factor coordinates (and cell_id, cell_label, ...) are small: load them, so that
    # ds.groupby("pi"), .sel and unstack_cells work (xarray refuses to group by a dask array)
    lazy = {name: c.variable.compute() for name, c in ds.coords.items()
            if name not in ds.indexes and c.dims == ("cell",)}
    return ds.assign_coords(lazy) if lazy else ds


def unstack_cells(ds, factors: list[str] | None = None):
    """Replace the ``cell`` dim by one dim per factor (full factorials; excluded
    combinations become NaN): ``ds.set_index(cell=factors).unstack("cell")``.

    ``factors`` defaults to the design's cell coordinates (attr ``factors``).
    """
    if factors is None:
        factors = json.loads(ds.attrs.get("factors", "[]"))
    factors = list(factors)
    if not factors:
        raise StoreError("the design has no factors to unstack")
    return ds.set_index(cell=factors).unstack("cell")
