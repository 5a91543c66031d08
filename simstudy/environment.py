"""What software a result was computed with: every installed distribution and how it stands
against the repository's ``requirements.lock`` (the pinned stack ``scripts/bootstrap.sh``
installs). Stores and fit folders record it, so "same seeds, same numbers" can be checked.
"""

from __future__ import annotations

import hashlib
import platform
import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["LOCK_NAME", "lock_path", "read_lock", "installed_distributions", "lock_status", "environment_record"]

LOCK_NAME = "requirements.lock"


def _canonical(name: str) -> str:
    """PEP 503 normalised distribution name (``Typing_Extensions`` -> ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_path() -> Path | None:
    """The lock beside the package's source tree (a checkout or an editable install), or None
    (installed from a wheel: no lock travels with it)."""
    candidate = Path(__file__).resolve().parents[1] / LOCK_NAME
    return candidate if candidate.is_file() else None


def read_lock(path: Path) -> dict[str, str]:
    """``name==version`` lines of a pip constraints file -> {canonical name: version}."""
    pins: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_canonical(name.split("[", 1)[0].strip())] = version.split(";", 1)[0].strip()
    return pins


def installed_distributions() -> dict[str, str]:
    """{canonical name: version} of every distribution this interpreter can import from."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[_canonical(name)] = dist.version
    return dict(sorted(out.items()))


@lru_cache(maxsize=1)
def lock_status() -> dict:
    """How the running environment stands against the lock:
    ``{"lock": "requirements.lock", "sha256": ..., "matches": bool, "differences": [...]}``,
    or ``{"lock": None, ...}`` when there is no lock to compare with. A difference reads
    ``"pandas 3.1.2 (lock 3.1.1)"`` or ``"pandas missing (lock 3.1.1)"``; simstudy itself and pip's
    own tools are not pinned."""
    path = lock_path()
    if path is None:
        return {"lock": None, "sha256": None, "matches": None,
                "differences": ["no requirements.lock beside the package (installed from a wheel?)"]}
    pins = read_lock(path)
    installed = installed_distributions()
    differences = [f"{name} {installed.get(name, 'missing')} (lock {version})"
                   for name, version in pins.items() if installed.get(name) != version]
    return {"lock": LOCK_NAME, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "matches": not differences, "differences": differences}


def environment_record() -> dict:
    """Python, platform, the lock status and every installed distribution's version (JSON-able)."""
    return {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}",
            **lock_status(), "packages": installed_distributions()}
