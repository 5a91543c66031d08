"""Shared test set-up: CPU JAX, a persistent compilation cache inside the checkout (shared
by the xdist workers), and small same-shaped datasets whose compiled samplers are reused."""

import os
import pathlib
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SIMSTUDY_JAX_CACHE", str(ROOT / ".jax_cache"))
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
# single fits run their chains sequentially in tests (shared compiled programs, one core per
# xdist worker); tests/test_chains.py asks for parallel chains explicitly
os.environ.setdefault("SIMSTUDY_CHAIN_METHOD", "sequential")

import pytest  # noqa: E402

warnings.filterwarnings("ignore", message=".*single observation.*")


@pytest.fixture(scope="session")
def root() -> pathlib.Path:
    return ROOT


@pytest.fixture(scope="session")
def fit_data(tmp_path_factory):
    """Builder of the small data set for single fits (tests/test_realdata_commands.py and
    tests/test_realdata_plots.py use the same shape, so the sampler compiles once):
    ``fit_data(n_groups, group_size)`` -> data.csv (group, y, x_within, x_between) as
    written by ``write_csv`` and read back."""
    import pandas as pd

    from simstudy.study.generate import GeneratorSpec, generate, write_csv

    def build(n_groups: int, group_size: int) -> pd.DataFrame:
        d = tmp_path_factory.mktemp("fitdata")
        spec = GeneratorSpec(n_groups=n_groups, group_size=group_size, share_inconsistent=0.25, slab_sd=0.9,
                             covariates=True, x_between_sd=0.5)
        data, truth = generate(spec, 3)
        write_csv(data, truth, d)
        return pd.read_csv(d / "data.csv")

    return build
