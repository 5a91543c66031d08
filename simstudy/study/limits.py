"""Resource limits checked before any work: how many cells and tasks a design makes, and
how much memory one task needs against how much a worker has.

Counting (:func:`count_design`) works on the factor level counts alone, so a design whose
grid would not fit in memory is refused before one cell is built; the limits
(:data:`MAX_CELLS`, :data:`MAX_TASKS`) are overridable (``simstudy run --max-cells N
--max-tasks N``, ``load_design(..., max_cells=None)`` for none).

Memory (:func:`task_memory`): a task fits one block of replicates in one call and holds
every kept draw of the block while it scores it. Per draw and replicate the sampler keeps,
in float64: ``u``, ``t``, ``incl_prob``, the group means and SDs (5 J values), the fixed
effects and SDs (P + S + Q), the correlation matrix (Q^2, correlated models) and 5
sampler statistics. Measured peaks (cluster/jobqueue.yaml) are 0.77 GB for J = 160 in
blocks of 2 and 1.06 GB for J = 300, n = 150 in blocks of 10 (4 x 1000 draws); the
estimate ``0.5 GB + 2 x draws kept + data`` is 0.6 and 1.5 GB there: it errs high, so a
refusal means a task really cannot fit, not that it might be tight.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

__all__ = [
    "MAX_CELLS",
    "MAX_TASKS",
    "BASE_BYTES",
    "ResourceError",
    "MemoryEstimate",
    "count_design",
    "task_memory",
    "largest_task",
    "parse_size",
    "machine_memory",
]

#: cells a design may have before ``--max-cells`` must be raised
MAX_CELLS = 10_000
#: tasks (cell x block of replicates) a design may have before ``--max-tasks`` must be raised
MAX_TASKS = 100_000
#: Python, JAX/XLA and the compiled programs of one worker process
BASE_BYTES = 512 * 2**20
#: the kept draws are held about twice (JAX's output and the NumPy/ArviZ copies)
COPIES = 2


class ResourceError(ValueError):
    """A design needs more than the limits allow (cells, tasks, memory per task); the
    message gives the numbers and the options that change them."""


def count_design(level_counts: dict[str, int], n_extra: int, replicates: int, block_size: int) -> tuple[int, int]:
    """``(cells, tasks)`` upper bounds from the factor level counts, before any cell exists:
    the full factorial (exclusions only remove cells) plus the extra cells, times the
    blocks of replicates."""
    cells = math.prod(level_counts.values()) + int(n_extra) if level_counts else 1 + int(n_extra)
    blocks = -(-int(replicates) // max(1, int(block_size)))
    return cells, cells * blocks


def fmt_count(level_counts: dict[str, int], n_extra: int) -> str:
    """``"100 x 100 x 1000 levels (n_groups x pi x draws) + 2 extra cells"``."""
    if not level_counts:
        return f"{n_extra} extra cell(s)"
    levels = " x ".join(str(n) for n in level_counts.values())
    names = " x ".join(level_counts)
    extra = f" + {n_extra} extra cell(s)" if n_extra else ""
    return f"{levels} levels ({names}){extra}"


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory one task needs, and how the number was made."""

    bytes: int
    block: int
    chains: int
    draws: int
    values_per_draw: int
    data_bytes: int
    label: str = ""

    def explain(self) -> str:
        from ..fsutil import fmt_bytes

        return (f"{self.block} replicate(s) per block x {self.chains} chain(s) x {self.draws:,} draws x "
                f"{self.values_per_draw:,} values per draw x 8 bytes, held about {COPIES} times, "
                f"+ {fmt_bytes(self.data_bytes)} of data + {fmt_bytes(BASE_BYTES)} for Python and JAX")


def task_memory(settings: dict, block: int, label: str = "") -> MemoryEstimate:
    """Estimated peak memory of one task of a cell (design names: ``n_groups``,
    ``group_size``, ``size_max``, ``covariates``, ``correlated``, ``chains``, ``draws``)."""
    J = int(settings.get("n_groups") or 1)
    chains = int(settings.get("chains") or 1)
    draws = int(settings.get("draws") or 1)
    width = 3 if settings.get("covariates") else 1  # intercept (+ within, between)
    Q = 2  # one location and one scale random effect per group
    per_draw = 5 * J + 2 * width + Q + (Q * Q if settings.get("correlated", True) else 0) + 5
    n = max(int(settings.get("group_size") or 1), int(settings.get("size_max") or 0))
    data = int(block) * J * n * 8 * (2 * width + 4)
    total = BASE_BYTES + COPIES * int(block) * chains * draws * per_draw * 8 + data
    return MemoryEstimate(total, int(block), chains, draws, per_draw, data, label)


def largest_task(design) -> MemoryEstimate:
    """The largest per-task estimate over a design's cells (a full block of replicates)."""
    block = min(design.block_size, design.replicates)
    return max((task_memory(c.settings, block, c.label) for c in design.cells()), key=lambda e: e.bytes)


def cells_over(design, limit: int) -> int:
    """How many cells have tasks estimated above ``limit`` bytes."""
    block = min(design.block_size, design.replicates)
    return sum(task_memory(c.settings, block).bytes > limit for c in design.cells())


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)


def parse_size(text) -> int:
    """``"16GB"``, ``"1.5 GiB"``, ``"800M"``, ``"2e9"``, ``2000000000`` -> bytes. Units are
    powers of 1024 (as Dask and SLURM read them)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"a memory size must be >= 0, got {text}")
        return int(text)
    s = str(text).strip()
    try:
        value = float(s)
        if value < 0:
            raise ValueError
        return int(value)
    except ValueError:
        pass
    m = _SIZE.match(s)
    if not m:
        raise ValueError(f"{text!r} is not a memory size; write e.g. 16GB, 1.5GiB or 800MB")
    number, unit = float(m.group(1)), m.group(2).lower()
    power = " kmgtp".index(unit) if unit else 0
    return int(number * 1024**power)


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text and text != "max":
            try:
                value = int(text)
            except ValueError:
                continue
            if 0 < value < 2**60:
                return value
    return None


def machine_memory() -> int:
    """Physical memory of this machine, or its container's limit when lower."""
    try:
        import psutil

        total = int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - psutil comes with distributed
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = _cgroup_limit()
    return min(total, limit) if limit else total
