"""Where a study's tasks run: worker environment and Dask clusters.

Workers are processes with one thread each. Their environment is set before JAX starts
(:func:`worker_env`): single-threaded XLA/BLAS, CPU platform, sequential chains, and ``SIMSTUDY_JAX_CACHE``
(the persistent compilation cache shared by all workers; default ``~/.cache/simstudy/jax``),
so each shape is compiled once per machine, not once per worker. :func:`_client_for` starts
a ``LocalCluster``, a dask-jobqueue SLURM/PBS cluster (configured from
``cluster/jobqueue.yaml``) or connects to a scheduler address.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from ..model.chains import usable_cores

XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def jax_cache_dir() -> str:
    """The persistent compilation cache shared by the workers: ``$SIMSTUDY_JAX_CACHE`` or
    ``~/.cache/simstudy/jax`` (the default of :func:`simstudy.model.sampler.configure_jax`)."""
    return os.environ.get("SIMSTUDY_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "simstudy", "jax")


def worker_env() -> dict[str, str]:
    """Environment of every worker process, set before JAX starts."""
    xla = os.environ.get("XLA_FLAGS", "").strip()
    if "xla_cpu_multi_thread_eigen" not in xla:
        xla = f"{xla} {XLA_FLAGS}".strip()
    return {
        "XLA_FLAGS": xla,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "JAX_PLATFORMS": "cpu",
        "SIMSTUDY_JAX_CACHE": jax_cache_dir(),
        # one thread per worker: a single fit made on a worker runs its chains one after another
        "SIMSTUDY_CHAIN_METHOD": "sequential",
        # the compiled likelihood kernel's switch and cache, where the launching shell set them
        **{k: os.environ[k] for k in ("SIMSTUDY_NATIVE", "SIMSTUDY_NATIVE_CACHE", "CXX") if os.environ.get(k)},
    }


def jobqueue_config_path() -> Path | None:
    """``$SIMSTUDY_JOBQUEUE_CONFIG`` or the repository's ``cluster/jobqueue.yaml``."""
    env = os.environ.get("SIMSTUDY_JOBQUEUE_CONFIG")
    if env:
        return Path(env)
    path = Path(__file__).resolve().parents[1] / "cluster" / "jobqueue.yaml"
    return path if path.is_file() else None




# ----------------------------------------------------------------------------- clusters
def _jobqueue_settings(kind: str) -> dict:
    """The ``jobqueue.<kind>`` settings given explicitly: cluster/jobqueue.yaml, then the
    user's own Dask config files and DASK_* variables on top (dask-jobqueue's defaults fill
    in whatever neither sets)."""
    import dask.config
    import yaml

    settings: dict = {"cores": 1, "processes": 1, "memory": "2GB"}  # if there is no jobqueue.yaml
    path = jobqueue_config_path()
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"jobqueue configuration {path} not found (SIMSTUDY_JOBQUEUE_CONFIG)")
        ours = (yaml.safe_load(path.read_text()) or {}).get("jobqueue", {}).get(kind, {}) or {}
        settings.update(dask.config.expand_environment_variables(ours))
    user = dask.config.collect(paths=dask.config.paths, env=os.environ)
    settings.update(((user.get("jobqueue") or {}).get(kind) or {}))
    return {k.replace("_", "-"): v for k, v in settings.items()}


def jobqueue_kwargs(kind: str) -> dict:
    """Keyword arguments for ``SLURMCluster`` / ``PBSCluster``: the settings of
    :func:`_jobqueue_settings` plus the worker environment exported in the job script."""
    kwargs: dict = {}
    for key, value in _jobqueue_settings(kind).items():
        if value is None:
            continue  # dask-jobqueue's default
        kwargs["job_name" if key == "name" else key.replace("-", "_")] = value
    exports = [f"export {k}={_shell_quote(v)}" for k, v in worker_env().items()]
    kwargs["job_script_prologue"] = exports + list(kwargs.get("job_script_prologue") or [])
    kwargs.setdefault("python", sys.executable)
    return kwargs


def _jobqueue_cluster(kind: str, jobs: int):
    import dask_jobqueue

    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]
    cluster = cls(**jobqueue_kwargs(kind))
    # keep `jobs` jobs running: workers retiring before the walltime (--lifetime) are replaced
    cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)
    return cluster


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(str(value))


@contextlib.contextmanager
def _client_for(cluster: str, workers: int | None, n_tasks: int, say):
    from distributed import Client, LocalCluster

    if cluster == "local":
        n = workers or max(1, min(usable_cores(), n_tasks))
        say(f"starting a local cluster: {n} worker process(es), 1 thread each")
        lc = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            env=worker_env(),
            # no per-worker memory cap: Dask's default (RAM / workers, restart at 95%) would
            # turn a large-J block into a failure on a machine with memory to spare overall
            memory_limit=0,
            dashboard_address=":0",  # any free port: several studies may run side by side
            silence_logs=logging.ERROR,
        )
        client = Client(lc)
        try:
            yield client
        finally:
            _quiet_close(client, lc)
    elif cluster in ("slurm", "pbs"):
        jobs = workers or 1
        jq = _jobqueue_cluster(cluster, jobs)
        say(f"submitting {jobs} {cluster.upper()} worker job(s); job script:\n{jq.job_script()}")
        client = Client(jq)
        try:
            yield client
        finally:
            _quiet_close(client, jq)
    elif "://" in cluster:
        say(f"connecting to the scheduler at {cluster}")
        client = Client(cluster)
        try:
            yield client
        finally:
            _quiet_close(client, None)
    else:
        raise ValueError(f"unknown cluster {cluster!r}; use local, slurm, pbs or a scheduler address tcp://HOST:PORT")


def _quiet_close(client, cluster) -> None:
    with contextlib.suppress(Exception):
        client.close(timeout=30)
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close(timeout=30)


