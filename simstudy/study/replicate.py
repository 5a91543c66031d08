"""One replicate's data set, back from a design's seeds (``simstudy data``; SimDesign's ``load_seed``).

A fit of (cell, replicate) saw ``generate(cell.generator_spec(), cell.seed(design.seed, r))``
(:meth:`simstudy.study.grid.Cell.seed`, i.e. :func:`simstudy.study.grid.replicate_seed`, the one
function that derives a replicate's data seed; :mod:`simstudy.study.task` generates its blocks the
same way). :func:`replicate_data` regenerates it; :func:`resolve_cell` finds a cell by its stable id,
its position, its label or some of its factor values.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from .grid import Cell, Design

__all__ = ["resolve_cell", "replicate_data", "write_replicate"]

_ITEM = re.compile(r",\s*(?=[A-Za-z_][A-Za-z0-9_]*\s*=)")


def _same(value, text: str) -> bool:
    """A cell's setting equals the user's text (``0.5`` = ``0.50``, ``beta(1,1)`` = ``beta(1, 1)``)."""
    from .grid import _fmt_value

    if isinstance(value, bool):
        return text.strip().lower() == ("true" if value else "false")
    try:
        return float(text) == float(value)
    except (TypeError, ValueError):
        squash = lambda s: re.sub(r"\s+", "", str(s)).lower()  # noqa: E731
        return squash(_fmt_value(value)) == squash(text)


def resolve_cell(design: Design, text: str) -> Cell:
    """The cell named by ``text``: its stable ``cell_id`` (the store's ``cell_id`` coordinate), its
    0-based position in the design's cells (the row of ``simstudy status``), its label
    (``"pi=0.5, n_groups=30"``) or some of its factor values (``"pi=0.5,n_groups=30"``), which must
    pick exactly one cell. Raises ``ValueError`` naming the cells when it does not."""
    cells = design.cells()
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        number = int(text)
        for c in cells:
            if c.cell_id == number:
                return c
        if number < len(cells):
            return cells[number]
        raise ValueError(f"--cell {text}: no cell has this id, and the design has {len(cells)} cells "
                         f"(positions 0-{len(cells) - 1})")
    for c in cells:
        if c.label == text:
            return c
    wanted = {}
    for item in _ITEM.split(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--cell {text!r}: give a cell id, a position, or factor values as NAME=VALUE,NAME=VALUE")
        wanted[key.strip()] = value.strip()
    unknown = [k for k in wanted if not any(k in c.settings for c in cells[:1])]
    if unknown:
        raise ValueError(f"--cell {text!r}: unknown setting(s) {', '.join(unknown)}; the design's factors are "
                         f"{', '.join(design.factors) or '(none)'}")
    hits = [c for c in cells if all(_same(c.get(k), v) for k, v in wanted.items())]
    if len(hits) == 1:
        return hits[0]
    shown = "; ".join(f"({c.label})" for c in (hits or cells)[:6])
    if not hits:
        raise ValueError(f"--cell {text!r} matches no cell; cells: {shown}")
    raise ValueError(f"--cell {text!r} matches {len(hits)} cells; name more factors: {shown}")


def replicate_data(design: Design, cell: Cell, replicate: int):
    """``(MelsmData, Truth)`` of replicate ``replicate`` of ``cell``: the very data set its fits saw."""
    from . import generate as gen

    if not 0 <= int(replicate) < design.replicates:
        raise ValueError(f"--replicate {replicate}: the design has replicates 0-{design.replicates - 1}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*single observation")  # as the tasks do
        return gen.generate(cell.generator_spec(), cell.seed(design.seed, int(replicate)))


def write_replicate(design: Design, cell: Cell, replicate: int, out) -> tuple[Path, Path]:
    """Write ``data.csv`` and ``truth.csv`` of one replicate into ``out``; their paths."""
    from .generate import write_csv

    data, truth = replicate_data(design, cell, replicate)
    return write_csv(data, truth, out)
