r"""A compiled CPU kernel for the per-observation likelihood (XLA FFI), built on first use.

:func:`group_quad` is the sum over a group's observations that the per-observation path of
the SS-MELSM spends its time in (:func:`simstudy.model.ssmelsm._factored_loglik`):

.. math:: Q_{jc} = \sum_{i \in j} (y_i - x_i\alpha_j)^2\, e^{-2 x_i\gamma_j}
          \prod_{k \in c} e^{-2 x_i\lambda_{jk}},

with each group's design written in its own basis ``x_i`` (:mod:`simstudy.model.group_basis`).
One pass over the observations returns ``Q`` and the sums its gradient needs, so a value and
gradient of the log density costs one kernel call; XLA's own program for the same sums is a
few dozen small kernels plus their reverse passes, most of the per-gradient time on CPU.

The C++ source (``group_quad.cc``) is compiled with the machine's C++ compiler against the
XLA FFI headers that jaxlib ships, once per machine, into ``$SIMSTUDY_NATIVE_CACHE`` (default
``~/.cache/simstudy/native``), keyed by the source, jaxlib, the compiler and the CPU (a shared
home directory on a cluster with mixed nodes gets one build per CPU kind). Where it cannot be
built or loaded, :func:`available` says why and the model keeps the pure-JAX path (the same
likelihood; tests hold the two equal). ``SIMSTUDY_NATIVE=0`` turns the kernel off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = Path(__file__).with_name("group_quad.cc")
TARGET = "simstudy_group_quad"
#: widest per-group basis and most scale random effects the kernel is instantiated for
MAX_BASIS, MAX_K = 8, 3
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC")
ENV_SWITCH = "SIMSTUDY_NATIVE"
ENV_CACHE = "SIMSTUDY_NATIVE_CACHE"

_LOCK = threading.Lock()
_STATE: dict[str, object] = {}  # "ok": bool, "reason": str, "library": ctypes.CDLL


class NativeKernelWarning(UserWarning):
    """The compiled likelihood kernel could not be built or loaded (the pure-JAX path is used)."""


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "simstudy" / "native")


def compiler() -> str | None:
    """``$CXX``, else the first of ``c++``, ``g++``, ``clang++`` on the PATH."""
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx) or None
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _cpu_signature() -> str:
    """What decides which instructions a ``-march=native`` build may use."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _build_key(cxx: str) -> str:
    import jaxlib

    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), jaxlib.__version__.encode(), version.encode(), " ".join(FLAGS).encode(),
                 _cpu_signature().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def build(force: bool = False) -> Path:
    """Compile the kernel into the cache and return the shared library's path. Raises
    ``RuntimeError`` with the compiler's message when it fails.

    No lock: each builder compiles into a directory of its own and renames the library into
    place (atomic, also on shared file systems), so readers see a whole library or none; workers
    that start together on a fresh machine may each compile once (a few seconds)."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++/clang++)")
    target = cache_dir() / f"group_quad-{_build_key(cxx)}.so"
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        out = Path(tmp) / target.name
        cmd = [cxx, *FLAGS, "-isystem", jax.ffi.include_dir(), str(SOURCE), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed ({' '.join(cmd)}):\n{proc.stderr.strip()[-2000:]}")
        os.replace(out, target)
    return target


def available() -> bool:
    """Whether the kernel is built, loaded and registered with XLA in this process (built on
    the first call; warns once, with the reason, when it cannot be)."""
    with _LOCK:
        if "ok" not in _STATE:
            _STATE.update(_load())
            if not _STATE["ok"] and not _STATE.get("quiet"):
                warnings.warn(f"compiled likelihood kernel unavailable ({_STATE['reason']}); the per-observation "
                              f"likelihood uses the pure-JAX path, the same numbers about twice as slow. "
                              f"Set {ENV_SWITCH}=0 to choose that path silently.", NativeKernelWarning, stacklevel=2)
        return bool(_STATE["ok"])


def unavailable_reason() -> str | None:
    """Why :func:`available` is False ("off" when switched off), or None when it is True."""
    available()
    return None if _STATE["ok"] else str(_STATE["reason"])


def _load() -> dict:
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "off", "no"):
        return {"ok": False, "reason": "off", "quiet": True}
    if jax.default_backend() != "cpu":  # an accelerator runs the JAX path well: nothing to warn about
        return {"ok": False, "reason": f"the kernel is CPU-only and JAX runs on {jax.default_backend()}", "quiet": True}
    try:
        library = ctypes.cdll.LoadLibrary(str(build()))
        jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.SimstudyGroupQuad), platform="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure means: use the JAX path, say why
        return {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "reason": None, "library": library}


def _call(y, basis_t, offsets, varies, alpha, gamma, lam):
    J, b = alpha.shape[-2:]
    C = 2 ** lam.shape[-2]
    out = [jax.ShapeDtypeStruct((J, C), jnp.float64), jax.ShapeDtypeStruct((J, C, b), jnp.float64),
           jax.ShapeDtypeStruct((J, C, b), jnp.float64)]
    return jax.ffi.ffi_call(TARGET, out, vmap_method="expand_dims")(y, basis_t, offsets, varies, alpha, gamma, lam)


@jax.custom_vjp
def group_quad(y, basis_t, offsets, varies, alpha, gamma, lam):
    """``Q`` (J, 2^K) from the padded, group-sorted data (``y`` (Np,), ``basis_t`` (b, Np),
    ``offsets`` (J + 1,), ``varies`` (J, 1 + K)) and each group's coefficients ``alpha`` (J, b),
    ``gamma`` (J, b), ``lam`` (J, K, b). Differentiable in ``alpha``, ``gamma`` and ``lam``
    (the data get no gradient). Needs :func:`available`."""
    return _call(y, basis_t, offsets, varies, alpha, gamma, lam)[0]


def _group_quad_fwd(y, basis_t, offsets, varies, alpha, gamma, lam):
    quad, s, t = _call(y, basis_t, offsets, varies, alpha, gamma, lam)
    return quad, (s, t)


def _group_quad_bwd(residuals, cotangent):
    from ..indicators import indicator_combos

    s, t = residuals  # (J, C, b): sums of r^2 e^.. x and r e^.. x
    combos = jnp.asarray(indicator_combos(int(np.log2(s.shape[-2]))))  # (C, K)
    d_alpha = -2.0 * jnp.einsum("jc,jcb->jb", cotangent, t)
    d_gamma = -2.0 * jnp.einsum("jc,jcb->jb", cotangent, s)
    d_lam = -2.0 * jnp.einsum("jc,ck,jcb->jkb", cotangent, combos, s)
    return None, None, None, None, d_alpha, d_gamma, d_lam


group_quad.defvjp(_group_quad_fwd, _group_quad_bwd)
