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


#: the environment variable naming the SLURM/PBS settings file (``--jobqueue-config`` sets it)
JOBQUEUE_CONFIG_ENV = "SIMSTUDY_JOBQUEUE_CONFIG"


def _checkout_jobqueue_yaml() -> Path | None:
    """``cluster/jobqueue.yaml`` of the repository this package runs from (a checkout or an
    editable install: the folder above ``simstudy/`` holds ``pyproject.toml``); None for an
    installed package."""
    root = Path(__file__).resolve().parents[2]
    path = root / "cluster" / "jobqueue.yaml"
    return path if (root / "pyproject.toml").is_file() and path.is_file() else None


def jobqueue_config_source() -> tuple[Path | None, str]:
    """The SLURM/PBS settings file and why it is the one: ``$SIMSTUDY_JOBQUEUE_CONFIG``
    (``simstudy run/plan --jobqueue-config PATH`` sets it; a missing file raises
    :class:`FileNotFoundError`), else ``./cluster/jobqueue.yaml`` in the working directory,
    else the ``cluster/jobqueue.yaml`` of the repository the package runs from, else None
    (dask-jobqueue's defaults and the user's own Dask config only)."""
    env = os.environ.get(JOBQUEUE_CONFIG_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"the SLURM/PBS settings file {path} does not exist (named by --jobqueue-config "
                                    f"or ${JOBQUEUE_CONFIG_ENV}); give the path of a jobqueue.yaml such as the "
                                    "repository's cluster/jobqueue.yaml")
        return path.resolve(), f"--jobqueue-config / ${JOBQUEUE_CONFIG_ENV}"
    here = Path.cwd() / "cluster" / "jobqueue.yaml"
    if here.is_file():
        return here.resolve(), "cluster/jobqueue.yaml in the working directory"
    ours = _checkout_jobqueue_yaml()
    if ours is not None:
        return ours, "the repository's cluster/jobqueue.yaml"
    return None, "no simstudy settings file found"


def jobqueue_config_path() -> Path | None:
    """The SLURM/PBS settings file used (:func:`jobqueue_config_source`), or None."""
    return jobqueue_config_source()[0]


def describe_jobqueue_config(kind: str) -> str:
    """One line saying which settings file a ``--cluster slurm|pbs`` run uses."""
    path, why = jobqueue_config_source()
    user = "your Dask config (~/.config/dask/*.yaml, DASK_JOBQUEUE__* variables) on top"
    if path is None:
        return (f"{kind.upper()} job settings: {why} (give one with --jobqueue-config PATH or "
                f"${JOBQUEUE_CONFIG_ENV}): dask-jobqueue's defaults, {user}")
    return f"{kind.upper()} job settings: {path} ({why}), {user}"




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


def job_script(kind: str, scheduler: str = "tcp://SCHEDULER:PORT") -> str:
    """The job script a ``--cluster slurm|pbs`` run submits for each worker job (the
    scheduler's address is only known once a run starts). Nothing is started or submitted,
    and nothing is created here (dask-jobqueue makes the log folder: in a scratch folder)."""
    import tempfile

    import dask_jobqueue

    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]
    kwargs = jobqueue_kwargs(kind)
    name = kwargs.pop("job_name", None) or "dask-worker"
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        return cls.job_cls(scheduler=scheduler, name=f"{name}-0", job_name=name, **kwargs).job_script()


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


class ClusterError(ValueError):
    """A ``--cluster`` that cannot be used: not a known kind, or a scheduler that cannot be
    reached. Raised before the store is created or touched."""


#: seconds to wait for a scheduler (``--cluster tcp://HOST:PORT``) to answer; Dask's default is 30
CONNECT_TIMEOUT_S = 10.0

#: worker processes of a local cluster ignore Ctrl-C: the terminal sends SIGINT to the whole
#: process group, and only the client should handle it (it closes the cluster)
WORKER_PRELOAD = "simstudy.study.worker_preload"


def check_cluster(cluster: str) -> str:
    """``cluster`` if it is ``local``, ``slurm``, ``pbs`` or a scheduler address
    (``tcp://HOST:PORT``, ``tls://HOST:PORT``, ...); else :class:`ClusterError`."""
    import re

    if cluster in ("local", "slurm", "pbs"):
        return cluster
    if re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+", cluster or ""):
        scheme, rest = cluster.split("://", 1)
        if scheme in ("tcp", "tls", "ws", "wss") and not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:/\[\]]+):\d{1,5}", rest):
            raise ClusterError(f"--cluster {cluster}: a scheduler address is {scheme}://HOST:PORT, e.g. "
                               f"{scheme}://login1:8786")
        return cluster
    raise ClusterError(f"--cluster {cluster!r}: use local, slurm, pbs or a scheduler address tcp://HOST:PORT "
                       "(cluster/README.md)")


def connect(address: str, timeout: float | None = None):
    """A ``distributed.Client`` of the scheduler at ``address``, or :class:`ClusterError`
    naming it (within ``timeout`` seconds, default :data:`CONNECT_TIMEOUT_S`)."""
    import socket
    from urllib.parse import urlsplit

    from distributed import Client

    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout

    def unreachable(reason: str) -> ClusterError:
        port = urlsplit(address).port or "PORT"
        return ClusterError(
            f"cannot reach a Dask scheduler at {address} ({reason}); nothing was written. Start one there with "
            f"`dask scheduler --port {port}` and its workers with `dask worker {address} --nthreads 1` "
            "(cluster/README.md, 'Any Dask cluster'), or use --cluster local"
        )

    parts = urlsplit(address)
    if parts.scheme in ("tcp", "tls") and parts.hostname and parts.port:
        try:  # a refused or unroutable address fails at once, not after Dask's retries
            socket.create_connection((parts.hostname, parts.port), timeout=timeout).close()
        except OSError as exc:
            raise unreachable(exc.strerror or str(exc) or type(exc).__name__) from None
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise unreachable(f"no answer within {timeout:g} s") from None
    except Exception as exc:  # noqa: BLE001 - e.g. something that is not a Dask scheduler answered
        raise unreachable(f"what answered there is not a Dask scheduler: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


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
            preload=[WORKER_PRELOAD],  # Ctrl-C: no KeyboardInterrupt traceback from each worker
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
        client = connect(cluster)
        try:
            yield client
        finally:
            _quiet_close(client, None)
    else:
        check_cluster(cluster)
        raise ClusterError(f"unknown cluster {cluster!r}; use local, slurm, pbs or a scheduler address tcp://HOST:PORT")


def _quiet_close(client, cluster) -> None:
    with contextlib.suppress(Exception):
        client.close(timeout=30)
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close(timeout=30)


