"""Parallel chains for single fits: split the chain axis, run the parts at once, join them.

The sequential sampler runs datasets x chains with ``lax.map`` inside one compiled program
(one core). A chain's draws depend only on its own key and initial values, and the compiled
loop body that runs a chain is the same whatever the number (>= 2) of chains the loop maps
over, so the chains can be split into ``k`` equal parts of ``ceil(C / k) >= 2`` chains, each
part run by one compiled program (one per shape, compiled once; it is also the program of a
sequential fit with that many chains) from its own host thread, and the outputs joined: the
draws are bit-for-bit those of the sequential path. JAX's CPU client runs independent
executions at once, so ``k`` parts use ``k`` cores; no XLA device-count flag is needed, so
nothing changes for processes that do not ask for it (grid workers keep one thread each).
When ``k`` does not divide ``C`` the last part is padded with copies of its last chain, whose
output is dropped (wall time is ``ceil(C / k)`` chains either way).

Why parts of at least two chains: XLA compiles a loop it knows runs once differently (the
body is inlined), and measured here that program rounds differently on rare paths (a chain
with divergent transitions drifted from its sequential twin from the first iteration, while
the other chains matched bit for bit); hiding the trip count behind an optimisation barrier
did not help. So 4 chains use 2 cores (the CLI's default on a 2-core machine: 2 parts of 2),
and 2 chains run sequentially.

Why not XLA host devices (``jax_num_cpu_devices`` / ``--xla_force_host_platform_device_count``)
with ``shard_map``/``pmap`` over chains? Measured here: the partitioned program rounds
differently (~1e-14 within the first iterations), and NUTS amplifies that to O(1) differences
within ~20 iterations, so its draws are not those of the sequential path; the flag also has to
be set before JAX starts its backend. One single-device executable per device is exact but
compiles once per device (the persistent cache keys on the device). One process per chain
pays JAX's import and a compile (or cache load) per process.

Chain axis: every array handled here has leading axes (dataset, chain, ...).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

CHAIN_METHODS = ("auto", "sequential", "parallel")
#: environment variable read by ``chain_method="auto"``: "sequential" or "parallel"
ENV = "SIMSTUDY_CHAIN_METHOD"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def chain_workers(chain_method: str, chains: int, batch_method: str = "map", workers: int | None = None) -> int:
    """How many parts the chains are split into (1 = the sequential path).

    ``"sequential"`` -> 1; ``"parallel"`` -> ``min(chains // 2, workers or usable_cores())``
    (parts of at least two chains, see the module docstring; at least 1);
    ``"auto"`` -> ``$SIMSTUDY_CHAIN_METHOD`` if set, else parallel; parallel needs
    ``batch_method="map"`` (vectorised chains are one computation)."""
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {', '.join(CHAIN_METHODS)}, got {chain_method!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ValueError(f"chain_workers must be a positive integer (or None: every usable core), got {workers!r}")
    method = chain_method
    if method == "auto":
        method = os.environ.get(ENV, "").strip().lower() or "parallel"
        if method not in ("sequential", "parallel"):
            raise ValueError(f"${ENV} must be 'sequential' or 'parallel', got {os.environ[ENV]!r}")
        if batch_method != "map":
            method = "sequential"
    if method == "sequential":
        return 1
    if batch_method != "map":
        raise ValueError(f"chain_method='parallel' needs batch_method='map' (got {batch_method!r}): "
                         "vectorised chains run as one computation")
    return max(1, min(int(chains) // 2, int(workers or usable_cores())))


def split_chains(tree, parts: int) -> list:
    """``parts`` pytrees of ``ceil(C / parts)`` chains each (axis 1); the last is padded by
    repeating the final chain."""
    import jax

    leaves = jax.tree_util.tree_leaves(tree)
    chains = np.shape(leaves[0])[1]
    size = math.ceil(chains / parts)
    out = []
    for p in range(parts):
        idx = np.minimum(np.arange(p * size, (p + 1) * size), chains - 1)
        out.append(jax.tree_util.tree_map(lambda x: np.take(np.asarray(x), idx, axis=1), tree))
    return out


def join_chains(parts: list, chains: int):
    """Inverse of :func:`split_chains`: concatenate along axis 1 and drop the padding."""
    import jax

    return jax.tree_util.tree_map(lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=1)[:, :chains], *parts)


def run_parts(run, part_args: list) -> list:
    """``run(*args)`` for every element of ``part_args`` at once, one host thread each
    (JAX releases the interpreter lock while a compiled program runs); outputs in order."""
    if len(part_args) == 1:
        return [run(*part_args[0])]
    with ThreadPoolExecutor(max_workers=len(part_args), thread_name_prefix="simstudy-chains") as pool:
        return list(pool.map(lambda args: run(*args), part_args))
