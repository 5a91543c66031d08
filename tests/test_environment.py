"""The pinned stack: requirements.lock is read exactly, differences from it are named, and
stores and fit folders record the environment they were computed in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simstudy import environment
from simstudy.environment import environment_record, installed_distributions, lock_status, read_lock

ROOT = Path(__file__).resolve().parents[1]


def test_lock_pins_every_dependency_exactly():
    pins = read_lock(ROOT / "requirements.lock")
    for name in ("jax", "jaxlib", "numpyro", "numpy", "scipy", "pandas", "xarray", "zarr", "arviz", "dask",
                 "dask-jobqueue", "statsmodels", "formulae", "typer", "rich", "pytest"):
        assert name in pins, f"{name} is not pinned in requirements.lock"
    assert all(v and v[0].isdigit() for v in pins.values()), pins
    text = (ROOT / "requirements.lock").read_text()
    assert "Typing_Extensions" not in text and all(">=" not in line for line in text.splitlines())


def test_read_lock_normalises_names_and_ignores_comments(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# header\nTyping_Extensions==4.15.0  # why\nzope.interface==7.0\n\npandas==3.1.1 ; python_version>'3'\n")
    assert read_lock(lock) == {"typing-extensions": "4.15.0", "zope-interface": "7.0", "pandas": "3.1.1"}


def test_lock_status_names_each_difference(tmp_path, monkeypatch):
    installed = installed_distributions()
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"numpy=={installed['numpy']}\npandas==0.0.1\nnot-a-real-dist==1.0\n")
    monkeypatch.setattr(environment, "lock_path", lambda: lock)
    lock_status.cache_clear()
    try:
        status = lock_status()
    finally:
        lock_status.cache_clear()
    assert status["matches"] is False
    assert status["differences"] == [f"pandas {installed['pandas']} (lock 0.0.1)", "not-a-real-dist missing (lock 1.0)"]


def test_bootstrapped_environment_matches_the_lock():
    """scripts/bootstrap.sh installs from the lock: the tests run in exactly the locked stack
    (not under SIMSTUDY_LATEST=1, which tests the newest releases on purpose)."""
    import sys

    if Path(sys.prefix).name != ".venv":
        pytest.skip(f"not the locked environment ({sys.prefix})")
    status = lock_status()
    assert status["matches"], status["differences"]


def test_store_records_its_environment(tmp_path):
    from simstudy.study.design import parse_design
    from simstudy.study.store import create_or_open, open_results

    design = parse_design((ROOT / "designs" / "smoke.toml").read_text())
    create_or_open(tmp_path / "s.zarr", design)
    record = json.loads(open_results(tmp_path / "s.zarr").attrs["environment"])
    expected = environment_record()
    assert record["packages"] == expected["packages"] and record["lock"] == expected["lock"]
    assert record["sha256"] == expected["sha256"] and record["matches"] == expected["matches"]
