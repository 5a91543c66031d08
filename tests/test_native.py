"""The compiled per-observation likelihood kernel (simstudy.model.native) and the per-group
basis layout it reads (simstudy.model.group_basis): the same log density and gradient as the
pure-JAX path, batched calls, extreme and non-finite values, and the fallback when the kernel
cannot be built."""

import os
import subprocess
import sys
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import potential_energy

from simstudy.model import native
from simstudy.model.data import MelsmData
from simstudy.model.group_basis import group_basis
from simstudy.model.priors import Priors
from simstudy.model.sampler import initial_values
from simstudy.model.ssmelsm import hyper_arrays, model_arrays, ssmelsm, structure_for

needs_kernel = pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler on this machine")


@pytest.fixture(scope="module", autouse=True)
def kernel_built():
    """Where a compiler exists the kernel must build and load (a failure is a failure, not a skip)."""
    if native.compiler() is not None:
        assert native.available(), native.unavailable_reason()


def _data(kind: str, K: int = 2, seed: int = 5) -> MelsmData:
    """Per-observation-path datasets, rows not sorted by group, groups of 1 to 20 rows.

    ``saeb``: Saeb M3's shape (X = W = [1, x, xb, x*xb], Z_scale = [1, x][:K]);
    ``group_scale``: group-level W, student-level Z_scale (W's predictor constant in groups);
    ``loc_slope``: a random location slope too (Q_loc = 2) and a third scale effect;
    ``no_intercept``: no design spans the intercept."""
    rng = np.random.default_rng(seed)
    J = 13
    g = rng.permutation(np.repeat(np.arange(J), rng.integers(1, 21, J)))
    n = g.size
    x, x2, xb = rng.normal(size=n), rng.normal(size=n), rng.normal(size=J)
    one = np.ones(n)
    y = 1.0 + 0.5 * x + rng.normal(size=n) * np.exp(0.3 * x)
    if kind == "saeb":
        X = np.column_stack([one, x, xb[g], x * xb[g]])
        return MelsmData.from_arrays(y, g, X, None, X.copy(), np.column_stack([one, x])[:, :K])
    if kind == "group_scale":
        return MelsmData.from_arrays(y, g, np.column_stack([one, x]), None, np.column_stack([one, xb[g]]),
                                     np.column_stack([one, x, x2])[:, :K])
    if kind == "loc_slope":
        return MelsmData.from_arrays(y, g, np.column_stack([one, x]), np.column_stack([one, x]),
                                     np.column_stack([one, x2]), np.column_stack([one, x, x2])[:, :K])
    if kind == "no_intercept":
        return MelsmData.from_arrays(y, g, np.column_stack([x, xb[g]]), x[:, None], x2[:, None],
                                     np.column_stack([x, x2, x * x2])[:, :K])
    raise ValueError(kind)


KINDS = [("saeb", 1), ("saeb", 2), ("group_scale", 2), ("group_scale", 3), ("loc_slope", 3), ("no_intercept", 2)]


# ----------------------------------------------------------------------------- the basis layout
@pytest.mark.parametrize("kind,K", KINDS)
def test_group_basis_reconstructs_every_design(kind, K):
    data = _data(kind, K)
    basis = group_basis(data)
    assert basis.max_error <= 1e-13
    D = np.concatenate([data.X, data.Z_loc, data.W, data.Z_scale], axis=1)
    order = np.argsort(data.group, kind="stable")
    sizes = data.group_sizes
    for j in range(data.n_groups):
        rows = slice(basis.offsets[j], basis.offsets[j] + sizes[j])
        Dj = D[order][np.searchsorted(data.group[order], j):][: sizes[j]]
        np.testing.assert_allclose(basis.basis_t[:, rows].T @ basis.coef[j], Dj, rtol=0, atol=1e-13 * (1 + np.abs(Dj).max()))
        np.testing.assert_array_equal(basis.y[rows], data.y[order][data.group[order] == j])
        pad = slice(basis.offsets[j] + sizes[j], basis.offsets[j + 1])
        assert not basis.y[pad].any() and not basis.basis_t[:, pad].any()  # padded rows add exactly 0
    assert np.all(basis.offsets % 8 == 0) and basis.offsets[-1] == basis.y.size
    assert np.all(np.diff(basis.offsets) - sizes < 8)


def test_group_basis_width_and_constant_predictors():
    saeb = group_basis(_data("saeb", 2))
    assert saeb.width == 2  # 11 design columns, within a school spanned by [1, x]
    big = saeb.varies[_data("saeb", 2).group_sizes >= 2]
    np.testing.assert_array_equal(big, np.tile([1, 0, 1], (len(big), 1)))  # W varies; scale intercept constant
    gs = group_basis(_data("group_scale", 3))
    big = gs.varies[_data("group_scale", 3).group_sizes >= 3]
    np.testing.assert_array_equal(big, np.tile([0, 0, 1, 1], (len(big), 1)))
    ni = group_basis(_data("no_intercept", 2))
    # no intercept in the span (a one-row group spans it: any nonzero row does)
    assert np.all(ni.varies[_data("no_intercept", 2).group_sizes >= 4] == 1)


# ----------------------------------------------------------------------------- kernel == JAX path
def _value_and_grad(structure, arrays, hyper):
    model = partial(ssmelsm, structure=structure)
    return jax.jit(jax.value_and_grad(lambda p: potential_energy(model, (arrays, hyper), {}, p)))


def _random_params(data, structure, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    init = initial_values(data, structure, rng, chains=1)
    return {k: v[0] + rng.normal(scale=scale, size=v[0].shape) for k, v in init.items()}


@needs_kernel
@pytest.mark.parametrize("kind,K", KINDS)
def test_native_log_density_and_gradient_equal_factored(kind, K):
    data = _data(kind, K)
    priors = Priors(pi=0.4)
    structure = structure_for(data, priors)
    assert not structure.sufficient
    hyper = hyper_arrays(data, priors)
    nat, fac = (model_arrays(data, structure, layout=lay) for lay in ("native", "factored"))
    assert "basis_t" in nat and "basis_t" in model_arrays(data, structure)  # the default where available
    f_nat, f_fac = (_value_and_grad(structure, a, hyper) for a in (nat, fac))
    for seed in range(3):
        params = _random_params(data, structure, seed)
        (v1, g1), (v0, g0) = f_nat(params), f_fac(params)
        assert np.isfinite(float(v0)) and abs(float(v1) - float(v0)) <= 1e-11 * abs(float(v0))
        for name in g0:
            np.testing.assert_allclose(g1[name], g0[name], rtol=1e-10, atol=1e-10 * (1 + np.max(np.abs(g0[name]))))


def _kernel_inputs(seed, J=5, b=2, K=2, scale=0.3):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 19, J)
    offsets = np.concatenate([[0], np.cumsum(-(-sizes // 8) * 8)]).astype(np.int64)
    y, xt = np.zeros(offsets[-1]), np.zeros((b, offsets[-1]))
    for j, n in enumerate(sizes):
        y[offsets[j]: offsets[j] + n] = rng.normal(size=n)
        xt[:, offsets[j]: offsets[j] + n] = np.vstack([np.ones(n), rng.normal(size=(b - 1, n))])
    varies = np.ones((J, 1 + K), dtype=np.int64)
    coef = [rng.normal(scale=scale, size=s) for s in ((J, b), (J, b), (J, K, b))]
    return (y, xt, offsets, varies, *coef), sizes


def _quad_reference(y, xt, offsets, alpha, gamma, lam):
    """Q_jc straight from the definition, in NumPy."""
    J, K = lam.shape[:2]
    combos = np.array([[(c >> (K - 1 - k)) & 1 for k in range(K)] for c in range(2**K)])
    out = np.zeros((J, 2**K))
    for j in range(J):
        x = xt[:, offsets[j]: offsets[j + 1]].T
        r = y[offsets[j]: offsets[j + 1]] - x @ alpha[j]
        for c, delta in enumerate(combos):
            out[j, c] = np.sum(r**2 * np.exp(-2 * x @ gamma[j] - 2 * x @ (lam[j].T @ delta)))
    return out


@needs_kernel
def test_kernel_matches_numpy_over_the_whole_exponent_range():
    """The kernel's own vectorised exp: within a few ulp of NumPy's from e^-700 to e^700."""
    args, _ = _kernel_inputs(0)
    y, xt, offsets, varies, alpha, gamma, lam = args
    for shift in (-350.0, -100.0, -3.0, 0.0, 3.0, 100.0, 349.0):
        g = gamma.copy()
        g[:, 0] = shift  # -2 log sigma around -2 * shift
        got = np.asarray(native.group_quad(y, xt, offsets, varies, alpha, g, lam))
        np.testing.assert_allclose(got, _quad_reference(y, xt, offsets, alpha, g, lam), rtol=1e-13)


@needs_kernel
def test_kernel_passes_on_non_finite_values():
    args, _ = _kernel_inputs(1)
    y, xt, offsets, varies, alpha, gamma, lam = args
    nan_alpha = alpha.copy()
    nan_alpha[2, 0] = np.nan
    got = np.asarray(native.group_quad(y, xt, offsets, varies, nan_alpha, gamma, lam))
    assert np.all(np.isnan(got[2])) and np.all(np.isfinite(np.delete(got, 2, axis=0)))
    huge = gamma.copy()
    huge[3, 0] = -400.0  # sigma = e^-400: exp(800) overflows, as in NumPy
    got = np.asarray(native.group_quad(y, xt, offsets, varies, alpha, huge, lam))
    assert np.all(np.isposinf(got[3]))


@needs_kernel
def test_kernel_gradient_matches_jax_autodiff_of_the_reference():
    args, _ = _kernel_inputs(2, b=3, K=2)
    y, xt, offsets, varies = (jnp.asarray(a) for a in args[:4])
    alpha, gamma, lam = args[4:]
    combos = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=jnp.float64)
    seg = jnp.asarray(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)))

    def reference(a, g, lm):
        x = xt.T  # padded rows have x = 0 and y = 0: they add 0 here too
        r = y - jnp.sum(x * a[seg], axis=1)
        e = -2 * jnp.sum(x * g[seg], axis=1)[:, None] - 2 * jnp.einsum("nb,nkb,ck->nc", x, lm[seg], combos)
        return jax.ops.segment_sum(r[:, None] ** 2 * jnp.exp(e), seg, num_segments=len(offsets) - 1)

    weights = jnp.asarray(np.random.default_rng(3).normal(size=(len(offsets) - 1, 4)))
    f_native = lambda a, g, lm: jnp.sum(weights * native.group_quad(y, xt, offsets, varies, a, g, lm))  # noqa: E731
    f_ref = lambda a, g, lm: jnp.sum(weights * reference(a, g, lm))  # noqa: E731
    for got, want in zip(jax.grad(f_native, argnums=(0, 1, 2))(alpha, gamma, lam),
                         jax.grad(f_ref, argnums=(0, 1, 2))(alpha, gamma, lam)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


@needs_kernel
def test_batched_calls_equal_one_at_a_time():
    """vmap over parameters (chains), and nested vmap over datasets x chains with the data
    batched too: the kernel's broadcasting over leading dimensions."""
    (y, xt, offsets, varies, alpha, gamma, lam), _ = _kernel_inputs(4)
    rng = np.random.default_rng(5)
    A, G, L = (np.stack([v + rng.normal(scale=0.1, size=v.shape) for _ in range(3)]) for v in (alpha, gamma, lam))
    one = lambda a, g, lm: native.group_quad(y, xt, offsets, varies, a, g, lm)  # noqa: E731
    batched = jax.jit(jax.vmap(one))(A, G, L)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], one(A[i], G[i], L[i]))
    Y = np.stack([y, y * 0.5])  # two datasets of one padded shape
    per_dataset = jax.vmap(lambda yy, a, g, lm: native.group_quad(yy, xt, offsets, varies, a, g, lm),
                           in_axes=(None, 0, 0, 0))
    nested = jax.jit(jax.vmap(per_dataset, in_axes=(0, None, None, None)))(Y, A, G, L)
    assert nested.shape == (2, 3) + alpha.shape[:1] + (4,)
    for d in range(2):
        for i in range(3):
            np.testing.assert_allclose(nested[d, i], native.group_quad(Y[d], xt, offsets, varies, A[i], G[i], L[i]),
                                       rtol=1e-15)
    grads = jax.vmap(jax.grad(lambda a, g, lm: jnp.sum(one(a, g, lm) ** 0.5)))(A, G, L)
    for i in range(3):
        np.testing.assert_allclose(grads[i], jax.grad(lambda a: jnp.sum(one(a, G[i], L[i]) ** 0.5))(A[i]), rtol=1e-14)


# ----------------------------------------------------------------------------- choosing the path
def test_wide_group_designs_fall_back_to_the_jax_path():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(4), 30)
    W = np.column_stack([np.ones(g.size), rng.normal(size=(g.size, 9))])  # 10 columns varying in every group
    data = MelsmData.from_arrays(rng.normal(size=g.size), g, W=W, Z_scale=np.column_stack([np.ones(g.size), W[:, 1]]))
    structure = structure_for(data, Priors())
    assert "basis_t" not in model_arrays(data, structure) and "W_sum" in model_arrays(data, structure)
    if native.available():
        with pytest.raises(ValueError, match="basis of 10 columns"):
            model_arrays(data, structure, layout="native")


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu", **env})


_CHOICE = """
import warnings, numpy as np
from simstudy.model.data import MelsmData
from simstudy.model.priors import Priors
from simstudy.model.ssmelsm import model_arrays, structure_for
from simstudy.model import native
rng = np.random.default_rng(0); g = np.repeat(np.arange(5), 6); x = rng.normal(size=30)
data = MelsmData.from_arrays(rng.normal(size=30), g, W=np.column_stack([np.ones(30), x]))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    arrays = model_arrays(data, structure_for(data, Priors()))
print("native" if "basis_t" in arrays else "factored", native.unavailable_reason(),
      [type(w.message).__name__ for w in caught])
"""


def test_switched_off_uses_the_jax_path_silently():
    out = _run(_CHOICE, SIMSTUDY_NATIVE="0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["factored", "off", "[]"]


def test_a_failed_build_warns_once_and_uses_the_jax_path(tmp_path):
    out = _run(_CHOICE, CXX=str(tmp_path / "no-such-compiler"), SIMSTUDY_NATIVE_CACHE=str(tmp_path / "cache"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("factored RuntimeError: no C++ compiler found")
    assert out.stdout.rstrip().endswith("['NativeKernelWarning']")


@needs_kernel
def test_build_is_cached_and_atomic(tmp_path):
    cache = tmp_path / "cache"
    code = "from simstudy.model import native; print(native.build())"
    first = _run(code, SIMSTUDY_NATIVE_CACHE=str(cache))
    assert first.returncode == 0, first.stderr
    path = first.stdout.strip()
    mtime = os.stat(path).st_mtime_ns
    second = _run(code, SIMSTUDY_NATIVE_CACHE=str(cache))
    assert second.stdout.strip() == path and os.stat(path).st_mtime_ns == mtime  # not rebuilt
    assert sorted(p.name for p in cache.iterdir()) == [os.path.basename(path)]  # no build leftovers


def test_worker_env_carries_the_kernel_settings(monkeypatch):
    from simstudy.study.cluster import worker_env

    monkeypatch.setenv("SIMSTUDY_NATIVE", "0")
    monkeypatch.setenv("SIMSTUDY_NATIVE_CACHE", "/shared/native")
    env = worker_env()
    assert env["SIMSTUDY_NATIVE"] == "0" and env["SIMSTUDY_NATIVE_CACHE"] == "/shared/native"
    monkeypatch.delenv("SIMSTUDY_NATIVE")
    monkeypatch.delenv("SIMSTUDY_NATIVE_CACHE")
    assert "SIMSTUDY_NATIVE" not in worker_env() and "SIMSTUDY_NATIVE_CACHE" not in worker_env()


@needs_kernel
def test_group_basis_is_computed_once_per_dataset(monkeypatch):
    import simstudy.model.group_basis as gb

    calls = []
    real = gb.group_basis
    monkeypatch.setattr(gb, "group_basis", lambda data, **kw: calls.append(1) or real(data, **kw))
    data = _data("saeb", 2, seed=11)
    structure = structure_for(data, Priors())
    first, second = model_arrays(data, structure), model_arrays(data, structure)
    assert len(calls) == 1 and first["basis_t"] is second["basis_t"]


def test_nearly_collinear_designs_fall_back_to_the_jax_path():
    """A column within 1e-10 (relative) of the others is left out of the basis; if rebuilding it
    then errs by more than MAX_BASIS_ERROR, the JAX path is used, not a rounded design."""
    from simstudy.model.ssmelsm import MAX_BASIS_ERROR, native_basis

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(2), 400)
    x = rng.normal(size=g.size)
    near = x.copy()
    near[5] += 1e-9  # residual 1e-9 against a column norm of ~20: below the rank tolerance
    W = np.column_stack([np.ones(g.size), x, near])
    data = MelsmData.from_arrays(rng.normal(size=g.size), g, W=W, Z_scale=np.column_stack([np.ones(g.size), x]))
    assert data.group_basis.max_error > MAX_BASIS_ERROR
    if native.available():
        basis, reason = native_basis(data)
        assert basis is None and "collinear" in reason
    assert "basis_t" not in model_arrays(data, structure_for(data, Priors()))
