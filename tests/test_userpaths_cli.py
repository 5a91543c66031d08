"""Issue 22, items 3, 9 and 11 (parts), tried as a user runs them: ``simstudy`` subprocesses
started from a working directory outside the repository.

* item 3: the SLURM settings file (``cluster/jobqueue.yaml``) is found from anywhere, said at
  start, and ``--jobqueue-config`` / ``$SIMSTUDY_JOBQUEUE_CONFIG`` name another one; the job
  script renders its walltime and ``--lifetime``;
* item 9: design names are text, not Rich markup;
* item 11: ``--cluster`` is checked (and a scheduler reached) before any store is created;
  Ctrl-C prints no worker tracebacks; ``--no-progress`` keeps the final line; ``run --help``
  lists exit code 1; designs with small groups get the warning ``simstudy fit`` gives.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIMSTUDY = str(Path(sys.executable).parent / "simstudy")
SMOKE = ROOT / "designs" / "smoke.toml"
SHIPPED = ROOT / "cluster" / "jobqueue.yaml"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_JOBQUEUE__")}
    env.pop("SIMSTUDY_JOBQUEUE_CONFIG", None)
    env.update(JAX_PLATFORMS="cpu", COLUMNS="200", **extra)
    return env


def simstudy(*args, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([SIMSTUDY, *map(str, args)], cwd=cwd, env=env or _env(), capture_output=True, text=True,
                          timeout=timeout)


def design(tmp_path: Path, name: str, methods: str | None = 'methods = ["hlm"]', replace: dict | None = None) -> Path:
    """The smoke design under another name (HLM only by default: no MCMC, quick)."""
    text = SMOKE.read_text().replace('name = "smoke"', f"name = {json.dumps(name)}")
    if methods:
        text = text.replace("description =", f"{methods}\ndescription =", 1)
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "design.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- item 3
@pytest.fixture
def no_user_dask_config(monkeypatch):
    """In-process: neither the user's Dask config files nor DASK_JOBQUEUE__* variables."""
    import dask.config

    monkeypatch.setattr(dask.config, "paths", [])
    for key in [k for k in os.environ if k.startswith("DASK_JOBQUEUE__")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("SIMSTUDY_JOBQUEUE_CONFIG", raising=False)


def test_shipped_jobqueue_yaml_is_found_outside_the_repository(tmp_path, monkeypatch, no_user_dask_config):
    from simstudy.study.cluster import describe_jobqueue_config, jobqueue_config_path, jobqueue_kwargs

    monkeypatch.chdir(tmp_path)
    assert jobqueue_config_path() == SHIPPED.resolve()
    assert str(SHIPPED.resolve()) in describe_jobqueue_config("slurm")
    kw = jobqueue_kwargs("slurm")
    assert kw["walltime"] == "04:00:00" and kw["worker_extra_args"][:2] == ["--lifetime", "210m"]
    # ./cluster/jobqueue.yaml in the working directory comes first
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "jobqueue.yaml").write_text("jobqueue:\n  slurm:\n    walltime: '00:07:00'\n")
    assert jobqueue_config_path() == (tmp_path / "cluster" / "jobqueue.yaml").resolve()
    assert jobqueue_kwargs("slurm")["walltime"] == "00:07:00"


def test_slurm_job_script_of_the_runner_has_the_shipped_walltime_and_lifetime(tmp_path, monkeypatch,
                                                                             no_user_dask_config):
    """What the runner submits: SLURMCluster(**jobqueue_kwargs('slurm')).job_script(), no SLURM needed."""
    import dask_jobqueue

    from simstudy.study.cluster import jobqueue_kwargs

    monkeypatch.chdir(tmp_path)
    with dask_jobqueue.SLURMCluster(**jobqueue_kwargs("slurm")) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -t 04:00:00" in script
    assert "--lifetime 210m" in script and "--lifetime-stagger 15m" in script
    assert "export XLA_FLAGS=" in script and "--nthreads 1" in script


def _custom_yaml(path: Path) -> Path:
    path.write_text("jobqueue:\n  slurm:\n    cores: 1\n    processes: 1\n    memory: 3GB\n    walltime: '01:23:00'\n"
                    "    worker-extra-args: ['--lifetime', '42m']\n")
    return path


def test_env_var_jobqueue_config_wins(tmp_path, monkeypatch, no_user_dask_config):
    import dask_jobqueue

    from simstudy.study.cluster import jobqueue_kwargs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMSTUDY_JOBQUEUE_CONFIG", str(_custom_yaml(tmp_path / "site.yaml")))
    with dask_jobqueue.SLURMCluster(**jobqueue_kwargs("slurm")) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -t 01:23:00" in script and "--lifetime 42m" in script and "04:00:00" not in script


def test_plan_job_script_shows_the_settings_file_and_option_wins(tmp_path):
    """`simstudy plan DESIGN --cluster slurm --job-script` (cluster/README.md's check)."""
    shipped = simstudy("plan", SMOKE, "--cluster", "slurm", "--workers", "4", "--no-calibrate", "--job-script",
                       cwd=tmp_path)
    assert shipped.returncode == 0, shipped.stderr
    assert "#SBATCH -t 04:00:00" in shipped.stdout and "--lifetime 210m" in shipped.stdout
    assert f"SLURM job settings: {SHIPPED.resolve()}" in shipped.stderr
    assert not (tmp_path / "dask-logs").exists()  # rendering creates nothing

    custom = _custom_yaml(tmp_path / "site.yaml")
    by_option = simstudy("plan", SMOKE, "--cluster", "slurm", "--no-calibrate", "--job-script",
                         "--jobqueue-config", custom, cwd=tmp_path)
    by_env = simstudy("plan", SMOKE, "--cluster", "slurm", "--no-calibrate", "--job-script", cwd=tmp_path,
                      env=_env(SIMSTUDY_JOBQUEUE_CONFIG=str(custom)))
    for res in (by_option, by_env):
        assert res.returncode == 0, res.stderr
        assert "#SBATCH -t 01:23:00" in res.stdout and "--lifetime 42m" in res.stdout
        assert "04:00:00" not in res.stdout and f"SLURM job settings: {custom.resolve()}" in res.stderr


def test_missing_jobqueue_config_is_refused_before_anything_is_created(tmp_path):
    for args, env in ((["--jobqueue-config", "nope.yaml"], None), ([], _env(SIMSTUDY_JOBQUEUE_CONFIG="nope.yaml"))):
        res = simstudy("run", SMOKE, "--store", "st.zarr", "--cluster", "slurm", *args, cwd=tmp_path, env=env)
        assert res.returncode == 2, res.stderr
        assert "nope.yaml" in res.stderr and "Traceback" not in res.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == []
    res = simstudy("plan", SMOKE, "--cluster", "slurm", "--jobqueue-config", "nope.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "nope.yaml" in res.stderr


# --------------------------------------------------------------------------- item 9
@pytest.mark.parametrize("name", ["[/bold] x", "study1 [pilot]"])
def test_design_names_are_printed_literally(tmp_path, name):
    d = design(tmp_path, name)
    ran = simstudy("run", d, "--store", "st.zarr", "--workers", "1", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert f"for design {name!r}" in ran.stderr and "Traceback" not in ran.stderr
    for args in (["status", "st.zarr"], ["summarize", "st.zarr"]):
        res = simstudy(*args, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert name in res.stdout, res.stdout
    planned = simstudy("plan", d, "--no-calibrate", cwd=tmp_path)
    assert planned.returncode == 0 and f"plan for design {name!r}" in planned.stdout


def test_markup_in_labels_and_errors_of_the_task_log_is_text():
    """The per-task log line (no terminal) prints cell labels and error texts as they are."""
    import io

    from rich.console import Console

    from simstudy.study.runner import _Progress
    from simstudy.study.task import TaskResult

    buf = io.StringIO()
    bar = _Progress(1, 2, True, Console(file=buf, width=300))
    bar.update(TaskResult("t", 0, (0, 1), ["failed", "failed"], error="bad [/red] value [bold]x"), "pi=[/i]")
    assert "pi=[/i] replicates 0-1" in buf.getvalue() and "bad [/red] value [bold]x" in buf.getvalue()


# --------------------------------------------------------------------------- item 11
def test_unknown_cluster_is_refused_before_the_store_is_created(tmp_path):
    res = simstudy("run", SMOKE, "--store", "st.zarr", "--cluster", "foo", cwd=tmp_path)
    assert res.returncode == 2 and "--cluster 'foo'" in res.stderr and "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []
    res = simstudy("run", SMOKE, "--store", "st.zarr", "--cluster", "tcp://login1", cwd=tmp_path)  # no port
    assert res.returncode == 2 and "tcp://HOST:PORT" in res.stderr and list(tmp_path.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_one_clear_line_and_nothing_is_written(tmp_path):
    port = _free_port()  # nobody listens: refused
    t0 = time.perf_counter()
    res = simstudy("run", SMOKE, "--store", "st.zarr", "--cluster", f"tcp://127.0.0.1:{port}", cwd=tmp_path)
    assert time.perf_counter() - t0 < 25
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    error = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"tcp://127.0.0.1:{port}" in error[0] and "nothing was written" in error[0]
    assert "dask scheduler" in error[0]
    assert list(tmp_path.iterdir()) == []


def test_something_else_at_the_scheduler_address_is_a_clear_error(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer():  # an HTTP server, not a Dask scheduler
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    try:
        res = simstudy("run", SMOKE, "--store", "st.zarr", "--cluster", f"tcp://127.0.0.1:{port}", cwd=tmp_path,
                       timeout=120)
    finally:
        server.close()
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"tcp://127.0.0.1:{port}" in res.stderr and not (tmp_path / "st.zarr").exists()


def test_ctrl_c_prints_no_worker_tracebacks(tmp_path):
    """Ctrl-C in a terminal: SIGINT to the whole process group (the client and its local workers).
    Short HLM tasks, so that the workers are mostly idle in their event loop when it comes (a
    worker in the middle of a long fit is often killed by the closing cluster before it prints)."""
    d = design(tmp_path, "interrupted", replace={"replicates = 2\n": "replicates = 400\n"})
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([SIMSTUDY, "run", str(d), "--store", "st.zarr", "--workers", "2"], cwd=tmp_path,
                                env=_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            deadline = time.time() + 300
            while " replicates " not in err_path.read_text():  # a task finished: the workers are running
                assert proc.poll() is None and time.time() < deadline, err_path.read_text()
                time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGINT)
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    text = err_path.read_text()
    assert rc == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert "interrupted: finished blocks are saved" in text


def test_no_progress_hides_only_the_bar(tmp_path):
    res = simstudy("run", design(tmp_path, "quiet"), "--store", "st.zarr", "--workers", "1", "--no-progress",
                   cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "complete: all 4 fits are done in st.zarr" in res.stderr
    assert " replicates 0-1" not in res.stderr  # no line per task


def test_run_help_lists_exit_code_1(tmp_path):
    res = simstudy("run", "--help", cwd=tmp_path)
    assert res.returncode == 0
    assert "1   an unexpected error (a bug: please report the traceback)" in res.stdout


def test_small_groups_warning_of_a_design(tmp_path):
    from simstudy.realdata.commands import SMALL_GROUP_MEDIAN
    from simstudy.study.design import SMALL_GROUP, parse_design, small_groups_note

    assert SMALL_GROUP == SMALL_GROUP_MEDIAN  # the threshold of `simstudy fit`'s warning
    text = SMOKE.read_text().replace("group_size = 10", "group_size = 50")
    assert small_groups_note(parse_design(text)) is None
    grid = text.replace("[factors]", "[factors]\ngroup_size = [1, 8, 50]")
    note = small_groups_note(parse_design(grid.replace("group_size = 50\n", "", 1)))
    assert "single-observation groups" in note and "group_size=1" in note and "group_size=8" in note
    assert "group_size=50" not in note

    d = tmp_path / "ones.toml"
    d.write_text(text.replace("group_size = 50", "group_size = 1"))
    res = simstudy("plan", d, "--no-calibrate", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "single-observation groups" in warnings[0]
