"""Cells, tasks, ids and seeds of a study design; design hashes, comparison and serialisation.

Cells and ids
-------------
The grid is the product of the factors' levels (first factor slowest), minus exclusions,
plus extras, de-duplicated by id. ``Cell.factors`` is the cell's *identity*: for grid cells
the value of every factor; for an extra cell the value of every factor (from the extra, or
else the fixed/default value) plus every other key the extra sets to a value different from
the fixed/default one. ``cell_id`` is the first 8 bytes of the sha256 of the canonical JSON of
``Cell.factors`` (sorted keys, canonical values), masked to 63 bits. So adding a level to a
factor, or an extra cell, never changes the id, and therefore the seeds, of existing
cells; adding a new factor changes every id (every cell's identity changes). An extra
equal in settings to a grid cell gets the grid cell's id and is merged with it.

Seeds (paired designs)
----------------------
A cell's ``data_id`` is the same kind of hash of its *generator* settings only (every
generator-namespace setting by design name, those in ``OMIT_AT_DEFAULT`` left out while at
their default). Replicate ``r`` of cell ``c`` generates its data from
``SeedSequence(seed, spawn_key=(c.data_id, r))`` (:func:`replicate_seed`), independent of
the number of workers, task order and block size. So cells that differ only in model
settings (pi, SD priors, ...) or MCMC settings fit *the same data sets* (common random
numbers: setting-vs-setting differences are paired), and every method is scored on them.
The comparators' seed derives from ``data_id`` too (they see only the data); the sampler's
seed stays per cell (``simstudy.study.task.fit_seed``: ``spawn_key=(cell_id, r, ...)``).
Stores written before data ids (store version 1) used ``spawn_key=(cell_id, r)``; they stay
readable but are not extended or resumed (``simstudy.study.store``).

Hash and comparison
-------------------
``Design.hash`` is the sha256 of the canonical JSON of what determines the numbers: seed,
replicates, block_size (the store's chunks follow it), and every cell's id, identity and
full generator/model/mcmc settings. Comments, whitespace, key order, ``name`` and
``description`` do not change it; neither does rewriting the design in a way that yields
the same cells (e.g. listing a factor's levels in another order).
:func:`compare_designs` says ``"same"``, ``"extends"`` (the new design keeps every old
cell with identical settings, same seed and block size, and only adds cells and/or
replicates — existing (cell, replicate) results stay valid) or ``"changed"``;
:func:`diff_designs` gives the details and an explanation for error messages.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .schema import _C, _G, _M, DEFAULT_METHODS, OMIT_AT_DEFAULT, SETTINGS, SHAPE_KEYS


_ID_MASK = (1 << 63) - 1


# --------------------------------------------------------------------------------------
# data classes
# --------------------------------------------------------------------------------------


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def stable_id(values: dict[str, Any]) -> int:
    """63-bit id from the canonical JSON of ``values`` (sorted keys)."""
    digest = hashlib.sha256(_canonical(values).encode()).digest()
    return int.from_bytes(digest[:8], "big") & _ID_MASK


def replicate_seed(base_seed: int, data_id: "int | Cell", replicate: int) -> np.random.SeedSequence:
    """The data seed of one replicate: ``SeedSequence(base_seed, spawn_key=(data_id, replicate))``.

    THE function deriving a replicate's data seed (the runner's tasks and ``Cell.seed`` use
    it). ``data_id`` is a cell's :attr:`Cell.data_id` (hash of its generator settings only,
    so cells differing in model settings share data sets), or the :class:`Cell` itself.
    Pass a data id, not a ``cell_id``: ``cell_id`` seeded data only in version-1 stores."""
    if isinstance(data_id, Cell):
        data_id = data_id.data_id
    if base_seed < 0 or data_id < 0 or replicate < 0:
        raise ValueError("seed, data id and replicate must be non-negative integers")
    return np.random.SeedSequence(int(base_seed), spawn_key=(int(data_id), int(replicate)))


def data_id_of(generator: dict[str, Any]) -> int:
    """The data id of a cell's complete generator settings (GeneratorSpec keywords): the
    :func:`stable_id` of every generator setting by design name, settings in
    ``OMIT_AT_DEFAULT`` left out while at their default (so adding one keeps data ids)."""
    record = {}
    for s in SETTINGS.values():
        if s.namespace != _G:
            continue
        v = generator[s.field]
        if s.name in OMIT_AT_DEFAULT and v == s.default:
            continue
        record[s.name] = v
    return stable_id({"generator": record})


@dataclass(frozen=True, eq=True)
class Cell:
    """One combination of settings.

    ``factors`` is the cell's identity (see the module docstring) and ``cell_id`` its hash;
    ``generator`` holds GeneratorSpec keywords, ``model`` Priors keywords, ``mcmc`` the
    sampler settings, all complete (defaults filled in). ``origin`` is ``"grid"`` or
    ``"extra[i]"``.
    """

    cell_id: int
    factors: dict[str, Any]
    generator: dict[str, Any]
    model: dict[str, Any]
    mcmc: dict[str, Any]
    label: str
    origin: str = "grid"

    def __hash__(self) -> int:
        return hash(self.cell_id)

    def get(self, name: str) -> Any:
        """The value of any setting (design name) in this cell."""
        s = SETTINGS[name]
        return getattr(self, s.namespace)[s.field]

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting of the cell, by design name."""
        return {name: self.get(name) for name in SETTINGS}

    def generator_spec(self):
        """``simstudy.study.generate.GeneratorSpec`` for this cell (imports generate lazily)."""
        from .generate import GeneratorSpec

        return GeneratorSpec(**self.generator)

    def priors(self):
        """``simstudy.model.priors.Priors`` for this cell."""
        from ..model.priors import Priors

        return Priors(**self.model)

    @property
    def data_id(self) -> int:
        """Hash of the generator settings only (:func:`data_id_of`): cells with equal data ids
        fit the same data sets."""
        return data_id_of(self.generator)

    def seed(self, base_seed: int, replicate: int) -> np.random.SeedSequence:
        """The data seed of ``replicate`` (:func:`replicate_seed` of the cell's data id)."""
        return replicate_seed(base_seed, self.data_id, replicate)


@dataclass(frozen=True)
class Task:
    """One unit of work: some replicates of one cell, fitted together (one vmapped fit)."""

    cell: Cell
    replicates: tuple[int, ...]
    seed: int  # the design's base seed
    methods: tuple[str, ...] = DEFAULT_METHODS  # the design's methods (simstudy.methods.METHODS)

    @property
    def shape_key(self) -> tuple:
        """Everything that changes array shapes or the compiled program, incl. the block length."""
        return tuple((k, self.cell.get(k)) for k in SHAPE_KEYS) + (("block", len(self.replicates)),)

    @property
    def task_id(self) -> str:
        return f"{self.cell.cell_id}:{self.replicates[0]}-{self.replicates[-1]}"

    def seed_sequences(self) -> list[np.random.SeedSequence]:
        return [replicate_seed(self.seed, self.cell.data_id, r) for r in self.replicates]


@dataclass(frozen=True)
class Design:
    """A validated study design. Build it with :func:`load_design` / :func:`parse_design`.

    ``generator`` / ``model`` hold the *fixed* settings as written (GeneratorSpec / Priors
    keywords, canonical values); ``mcmc`` is complete. ``factors`` maps design names to
    their levels in file order; ``exclude`` and ``extra`` are as written (canonical values;
    exclusion values as tuples).
    """

    name: str
    description: str
    seed: int
    replicates: int
    block_size: int
    mcmc: dict[str, Any]
    generator: dict[str, Any]
    model: dict[str, Any]
    factors: dict[str, tuple]
    exclude: tuple[dict[str, tuple], ...]
    extra: tuple[dict[str, Any], ...]
    text: str
    source: str
    hash: str
    _cells: tuple[Cell, ...] = field(repr=False, compare=False, default=())
    methods: tuple[str, ...] = DEFAULT_METHODS  # every method runs on the same data sets

    def cells(self) -> list[Cell]:
        """All cells: the grid in factorial order (first factor slowest), then the extras."""
        return list(self._cells)

    def cell(self, cell_id: int) -> Cell:
        for c in self._cells:
            if c.cell_id == cell_id:
                return c
        raise KeyError(f"no cell {cell_id} in design {self.name!r}")

    @property
    def coords(self) -> list[str]:
        """Names that identify cells: the factors, then any other key set by an extra."""
        names = list(self.factors)
        for c in self._cells:
            for k in c.factors:
                if k not in names:
                    names.append(k)
        return names

    @property
    def n_cells(self) -> int:
        return len(self._cells)

    @property
    def n_fits(self) -> int:
        return len(self._cells) * self.replicates

    def tasks(self) -> list[Task]:
        return tasks(self)


def _label(identity: dict) -> str:
    if not identity:
        return "(all fixed)"
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in identity.items())


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _make_cell(identity: dict, settings: dict, origin: str) -> Cell:
    ns: dict[str, dict[str, Any]] = {_G: {}, _M: {}, _C: {}}
    for name, s in SETTINGS.items():
        ns[s.namespace][s.field] = settings[name]
    return Cell(
        cell_id=stable_id(identity),
        factors=dict(identity),
        generator=ns[_G],
        model=ns[_M],
        mcmc=ns[_C],
        label=_label(identity),
        origin=origin,
    )


def _cell_record(c: Cell) -> dict:
    """What the design hash sees of a cell: settings in ``OMIT_AT_DEFAULT`` are left out while
    at their default (so adding such a setting leaves existing designs' hashes unchanged)."""

    def kept(ns: dict, namespace: str) -> dict:
        fields = {s.field: s for s in SETTINGS.values() if s.namespace == namespace}
        return {k: v for k, v in ns.items()
                if not (k in fields and fields[k].name in OMIT_AT_DEFAULT and v == fields[k].default)}

    return {"id": c.cell_id, "factors": c.factors, "generator": kept(c.generator, _G), "model": kept(c.model, _M),
            "mcmc": kept(c.mcmc, _C)}


def _design_hash(seed: int, replicates: int, block_size: int, cells: list[Cell],
                 methods: tuple[str, ...] = DEFAULT_METHODS) -> str:
    content = {
        "seed": seed,
        "replicates": replicates,
        "block_size": block_size,
        "cells": [_cell_record(c) for c in sorted(cells, key=lambda c: c.cell_id)],
    }
    if tuple(methods) != DEFAULT_METHODS:  # designs without `methods` keep their hash
        content["methods"] = list(methods)
    return hashlib.sha256(_canonical(content).encode()).hexdigest()


# --------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------


def _sortable(v: Any) -> tuple:
    if v is None:
        return (0, 0.0, "")
    if isinstance(v, bool):
        return (1, float(v), "")
    if isinstance(v, (int, float)):
        return (2, float(v), "")
    return (3, 0.0, str(v))


def tasks(design: Design) -> list[Task]:
    """Every (cell, block of replicates) of the design, grouped by ``Task.shape_key``.

    Blocks are ``range(replicates)`` cut into runs of ``block_size`` (the last may be
    shorter). Tasks with the same shape key are adjacent, groups ordered by ascending shape
    values (small, fast problems first); within a group, cells keep design order.
    """
    blocks = [tuple(range(s, min(s + design.block_size, design.replicates)))
              for s in range(0, design.replicates, design.block_size)]
    out = [Task(cell, b, design.seed, tuple(design.methods)) for cell in design.cells() for b in blocks]
    order = {id(t): i for i, t in enumerate(out)}
    return sorted(out, key=lambda t: (tuple(_sortable(v) for _, v in t.shape_key), order[id(t)]))


# --------------------------------------------------------------------------------------
# comparison and serialisation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DesignDiff:
    """How a new design relates to an old one (see :func:`diff_designs`)."""

    kind: str  # "same" | "extends" | "changed"
    added_cells: tuple[int, ...] = ()
    removed_cells: tuple[int, ...] = ()
    modified_cells: tuple[int, ...] = ()
    added_replicates: tuple[int, ...] = ()
    reasons: tuple[str, ...] = ()

    def explain(self) -> str:
        if self.kind == "same":
            return "the designs are the same"
        head = "the new design extends the old one" if self.kind == "extends" else "the design changed"
        return head + (":\n" + "\n".join(f"  - {r}" for r in self.reasons) if self.reasons else "")


def diff_designs(old: Design, new: Design) -> DesignDiff:
    """Compare two designs: what was added, removed or changed, and the verdict.

    "extends" means every old cell is in the new design with identical settings, the seed
    and block size are unchanged, and replicates did not shrink: all existing results stay
    valid and only new cells and/or new replicates need running. Anything else is "changed".
    """
    if old.hash == new.hash:
        return DesignDiff("same")
    changed: list[str] = []
    extended: list[str] = []
    if tuple(old.methods) != tuple(new.methods):
        changed.append(f"methods changed from {list(old.methods)} to {list(new.methods)} (the store's method "
                       "dimension follows them)")
    if old.seed != new.seed:
        changed.append(f"seed changed from {old.seed} to {new.seed} (every data set changes)")
    if old.block_size != new.block_size:
        changed.append(f"block_size changed from {old.block_size} to {new.block_size} (the store's chunks follow it)")
    added_reps: tuple[int, ...] = ()
    if new.replicates < old.replicates:
        changed.append(f"replicates reduced from {old.replicates} to {new.replicates}")
    elif new.replicates > old.replicates:
        added_reps = tuple(range(old.replicates, new.replicates))
        extended.append(f"replicates increased from {old.replicates} to {new.replicates}")

    old_cells = {c.cell_id: c for c in old.cells()}
    new_cells = {c.cell_id: c for c in new.cells()}
    removed = tuple(i for i in old_cells if i not in new_cells)
    added = tuple(i for i in new_cells if i not in old_cells)
    modified = []
    for i, oc in old_cells.items():
        nc = new_cells.get(i)
        if nc is None:
            continue
        diffs = [
            f"{k}: {_fmt_value(oc.get(k))} -> {_fmt_value(nc.get(k))}"
            for k in SETTINGS
            if _canonical(oc.get(k)) != _canonical(nc.get(k))
        ]
        if diffs:
            modified.append(i)
            if len(modified) <= 5:
                changed.append(f"cell ({oc.label}) settings changed: {'; '.join(diffs)}")
    if len(modified) > 5:
        changed.append(f"... {len(modified) - 5} more cells with changed settings")
    if removed:
        shown = ", ".join(f"({old_cells[i].label})" for i in removed[:5])
        more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
        if set(new.factors) != set(old.factors):
            changed.append(
                f"factors changed from {sorted(old.factors)} to {sorted(new.factors)}: every cell's identity changes"
            )
        changed.append(f"{len(removed)} cell(s) removed: {shown}{more}")
    if added:
        shown = ", ".join(f"({new_cells[i].label})" for i in added[:5])
        more = f" and {len(added) - 5} more" if len(added) > 5 else ""
        extended.append(f"{len(added)} cell(s) added: {shown}{more}")
    kind = "changed" if changed else ("extends" if extended else "same")
    return DesignDiff(
        kind=kind,
        added_cells=added,
        removed_cells=removed,
        modified_cells=tuple(modified),
        added_replicates=added_reps,
        reasons=tuple(changed + extended),
    )


def compare_designs(old: Design, new: Design) -> str:
    """``"same"``, ``"extends"`` or ``"changed"``; see :func:`diff_designs` for details."""
    return diff_designs(old, new).kind
