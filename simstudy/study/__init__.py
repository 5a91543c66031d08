"""A simulation study: design -> generate -> fit -> score -> results store.

* :mod:`.schema` — the table of design settings (names, types, defaults, checks);
* :mod:`.grid` — cells, tasks, ids and seeds, design hashes and comparisons;
* :mod:`.design` — reading and validating a design file into a :class:`~.grid.Design`;
* :mod:`.generate` — MELSM data with known truth;
* :mod:`.scoring` — a fit and its truth as one store record;
* :mod:`.store` — the Zarr results store;
* :mod:`.runner` — the only orchestrator (local Dask or dask-jobqueue, resume, errors per task);
* :mod:`.lock` — one runner per store: the store lock and task leases;
* :mod:`.limits` — cell/task counts and memory per task, checked before any work.
"""
