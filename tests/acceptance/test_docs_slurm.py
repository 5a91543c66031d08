"""On a real (single-node) SLURM cluster: the documented SLURM commands (recipes of the group
'slurm' in tests/acceptance/recipes.py) run as a user runs them, and the smoke design's store
equals a local run's.

Starts SLURM with cluster/start_local_slurm.sh (as root, or with passwordless sudo; it
installs slurm-wlm + munge with apt-get when missing). Outside CI the test is skipped, with the reason, when that is not
possible; in CI (CI=true) it must run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from simstudy.study.scoring import SCHEMA
from simstudy.study.store import open_results

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "designs" / "smoke.toml"
START = ROOT / "cluster" / "start_local_slurm.sh"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytestmark = pytest.mark.slow


def _sudo() -> list[str] | None:
    """How to run the start script as root: directly, with passwordless sudo, or not at all."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def _why_not_possible() -> str | None:
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "SLURM needs a POSIX machine"
    if _sudo() is None:
        return "starting a local SLURM needs root (or passwordless sudo)"
    have_slurm = all(shutil.which(x) for x in ("slurmctld", "slurmd", "sbatch", "munged"))
    if not have_slurm and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is not available to install it"
    return None


@pytest.fixture(scope="module")
def slurm():
    reason = _why_not_possible()
    if reason:
        if IN_CI:
            pytest.fail(f"CI must run the SLURM test, but: {reason}")
        pytest.skip(reason)
    proc = subprocess.run(_sudo() + ["bash", str(START)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        msg = f"cluster/start_local_slurm.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        if IN_CI:
            pytest.fail(msg)
        if "apt-get" in proc.stderr or "Could not" in proc.stderr or "Temporary failure" in proc.stderr:
            pytest.skip(f"SLURM could not be installed here: {proc.stderr.strip()[-300:]}")
        pytest.fail(msg)
    cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()
    return int(cpus[0]) if cpus else 0


def _need_cpus(slurm: int, n: int) -> None:
    """A documented command whose client runs as a job of its own needs a CPU for it and one per
    worker job, or it waits forever for resources."""
    if slurm < n:
        message = f"the test SLURM node has {slurm} CPU(s); this command needs {n} (client job + worker job)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    from user_workspace import Workspace

    return Workspace(tmp_path_factory.mktemp("user") / "work")


def _slurm_recipes():
    from recipes import RECIPES

    return [r for r in RECIPES if r.group == "slurm" and not r.covered_by]


@pytest.mark.parametrize("recipe", _slurm_recipes(), ids=lambda r: r.doc[:70])
def test_documented_slurm_command(slurm, ws, recipe, root):
    from recipes import run_recipe

    if recipe.command.startswith("sbatch"):
        _need_cpus(slurm, 2)

    run_recipe(ws, recipe, root)


def test_smoke_design_on_slurm_equals_local(slurm, tmp_path, monkeypatch):
    from simstudy.study.runner import run_study

    # the user's Dask config overrides cluster/jobqueue.yaml: keep worker logs out of the checkout
    monkeypatch.setenv("DASK_JOBQUEUE__SLURM__LOG_DIRECTORY", str(tmp_path / "dask-logs"))
    monkeypatch.setenv("DASK_JOBQUEUE__SLURM__WALLTIME", "00:20:00")

    slurm_store = tmp_path / "slurm.zarr"
    summary = run_study(SMOKE, slurm_store, cluster="slurm", workers=2, progress=False)
    logs = sorted((tmp_path / "dask-logs").glob("*"))
    assert logs, "no SLURM worker job ran (no job logs)"
    assert summary.tasks_run == 2 and summary.fits_failed == 0, summary.errors

    local_store = tmp_path / "local.zarr"
    run_study(SMOKE, local_store, cluster="local", workers=2, progress=False)

    a, b = open_results(slurm_store).load(), open_results(local_store).load()
    assert a["done"].values.all()
    assert set(np.unique(a["status"].values)) <= {"ok", "not_converged"}
    for name in SCHEMA:
        if name in ("sample_s", "compile_s", "method_s"):
            continue
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)

    # nothing left in the queue
    queue = subprocess.run(["squeue", "-h", "-n", "simstudy-worker"], capture_output=True, text=True)
    assert queue.stdout.strip() == "" or "CG" in queue.stdout
