"""A user's working directory outside the repository, where documented commands run verbatim.

It holds what the documents assume a user has: ``designs/`` (the shipped designs, shrunk to
small settings: fewer levels and replicates, short chains), ``cluster/`` and ``analysis/``
(copies), ``.venv`` (a link to the environment running the tests) and ``data.csv`` (a user's own
data: one row per student, columns ``school``, ``y``, ``x``). Commands run with ``bash -c`` in
that folder, the environment's ``bin/`` first on ``PATH``.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parents[2]
#: the environment running the tests (.venv, or .venv-latest under SIMSTUDY_LATEST=1)
VENV = Path(sys.prefix)

#: the sampler settings every shrunk design gets (plumbing, not statistics)
SMALL_MCMC = {"chains": 2, "warmup": 60, "draws": 60, "max_extensions": 0}
#: small levels for the size factors (J, n), in order
SMALL_LEVELS = {"n_groups": [12], "group_size": [10]}


def shrink_design(design: dict) -> dict:
    """The same design at small settings: 2 replicates, short chains, at most two levels of the
    first two factors that are not J or n and one of the others, one small J and n (one data
    shape, so one compiled program); ``[[extra]]``/``[[exclude]]``
    entries kept only where they name levels still there."""
    d = copy.deepcopy(design)
    d["replicates"] = 2
    d["block_size"] = 2
    d["mcmc"] = {**d.get("mcmc", {}), **SMALL_MCMC}
    generator = d.setdefault("generator", {})
    for name, small in SMALL_LEVELS.items():
        if name in generator:
            generator[name] = min(generator[name], small[0])
    factors = d.get("factors", {})
    two = [name for name in factors if name not in SMALL_LEVELS][:2]
    for name in list(factors):
        if name in SMALL_LEVELS:  # one data shape: one compiled program per design
            factors[name] = SMALL_LEVELS[name][:1]
        else:
            factors[name] = list(factors[name])[: 2 if name in two else 1]

    def still_there(entry: dict) -> bool:
        for key, value in entry.items():
            if key in factors:
                values = value if isinstance(value, list) else [value]
                if not set(map(repr, values)) <= set(map(repr, factors[key])):
                    return False
            elif key in SMALL_LEVELS:
                return False
        return True

    for table in ("extra", "exclude"):
        if table in d:
            kept = [e for e in d[table] if still_there(e)]
            if kept:
                d[table] = kept
            else:
                del d[table]
    return d


def user_data(path: Path, seed: int = 7) -> Path:
    """data.csv of 16 schools x 20 students (columns school, y, x), made by `simstudy generate`."""
    import pandas as pd

    out = path.parent / "generated"
    subprocess.run([str(VENV / "bin" / "simstudy"), "generate", "--seed", str(seed), "--out", str(out),
                    "--set", "n_groups=16", "--set", "group_size=20", "--set", "share_inconsistent=0.25",
                    "--set", "slab_sd=1.0", "--set", "covariates=true", "--set", "x_between_sd=0.5"],
                   check=True, capture_output=True, env=base_env())
    df = pd.read_csv(out / "data.csv")
    df = df.rename(columns={"group": "school", "x_within": "x"}).drop(columns=["x_between"])
    df["school"] = "s" + df["school"].astype(str)
    df.to_csv(path, index=False)
    return path


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("SIMSTUDY_JAX_CACHE", str(ROOT / ".jax_cache"))
    env.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    env["COLUMNS"] = "120"
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


class Workspace:
    """A user's folder with the documents' files; :meth:`sh` runs a command line in it."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        (path / ".venv").symlink_to(VENV, target_is_directory=True)
        (path / "designs").mkdir()
        for src in sorted((ROOT / "designs").glob("*.toml")):
            small = shrink_design(tomllib.loads(src.read_text(encoding="utf-8")))
            (path / "designs" / src.name).write_text(tomli_w.dumps(small), encoding="utf-8")
        shutil.copytree(ROOT / "cluster", path / "cluster")
        (path / "analysis").mkdir()
        for src in (ROOT / "analysis").glob("*.py"):
            shutil.copy2(src, path / "analysis" / src.name)
        user_data(path / "data.csv")
        self.env = base_env()
        self.log: list[str] = []

    def sh(self, command: str, *, timeout: float = 900, env: dict | None = None,
           check_rc: int | tuple[int, ...] | None = 0) -> subprocess.CompletedProcess:
        """Run a command line with bash in the workspace; assert its exit code (``None``: any)."""
        proc = subprocess.run(["bash", "-c", command], cwd=self.path, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)
        self.log.append(f"$ {command}\n[exit {proc.returncode}]\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        if check_rc is not None:
            codes = (check_rc,) if isinstance(check_rc, int) else check_rc
            assert proc.returncode in codes, (
                f"`{command}` exited {proc.returncode} (expected {codes})\n"
                f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
            assert "Traceback" not in proc.stderr, f"`{command}` printed a traceback:\n{proc.stderr[-4000:]}"
        return proc
