"""Shared test set-up: CPU JAX, a persistent compilation cache inside the checkout (shared
by the xdist workers), and small same-shaped datasets whose compiled samplers are reused."""

import os
import pathlib
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SIMSTUDY_JAX_CACHE", str(ROOT / ".jax_cache"))
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import pytest  # noqa: E402

warnings.filterwarnings("ignore", message=".*single observation.*")


@pytest.fixture(scope="session")
def root() -> pathlib.Path:
    return ROOT
