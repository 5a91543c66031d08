r"""PSIS-LOO over all observations at once: the same numbers as ArviZ 1.x's ``az.loo``,
vectorised across observations instead of one Python call per observation.

For observation ``i`` with log-likelihood draws ``l_is`` (``s = 1..S``), the raw log
importance ratios are ``r_s = -l_is - max_s(-l_is)``. The ``M`` largest ratios are replaced
by the quantiles of a generalised Pareto distribution fitted to their exceedances over the
``(S - M)``-th order statistic (Zhang & Stephens 2009 with ArviZ's weakly informative prior
on ``k``: ``k = (M k_ZS + 10 * 0.5) / (M + 10)``), smoothed ratios above ``max r`` are
capped, and

.. math::

    w_s = \frac{e^{r_s}}{\sum_t e^{r_t}},\quad
    \mathrm{elpd}_i = \log\sum_s w_s e^{l_{is}},\quad
    p_i = \log\frac{1}{S}\sum_s e^{l_{is}} - \mathrm{elpd}_i.

ArviZ's rules are kept exactly: ``M = floor(3 sqrt(S / r_eff))`` if ``S r_eff > 225``, else
``floor(S / 5)``; ``r_eff`` the mean relative ESS (method "mean", split chains, Geyer's
initial monotone sequence) over every posterior variable, 1 for a single chain; no smoothing
when the first quartile of the exceedances equals their minimum (``k`` is NaN) or ``k`` is
not finite; ``good_k = min(1 - 1/log10(S), 0.7)``.

Work is done in chunks of observations so the temporary arrays stay under ``chunk_bytes``;
only the ``M + 1`` largest ratios per observation are sorted (``argpartition``). Chunks are
independent and NumPy releases the GIL in their sorts and ufuncs, so they run on ``threads``
threads (default: the cores this process may use); the numbers do not depend on it.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr
from scipy.special import logsumexp

from .chains import usable_cores
from .mcmc_stats import ess_mean  # re-exported: r_eff's ESS, ArviZ's method="mean"

__all__ = ["psis_loo_arrays", "psis_loo", "relative_eff", "tail_length", "gpd_fit", "ess_mean", "waic_arrays"]

#: ArviZ's GPD fit constants: prior on b (``prior_bs``) and the pseudo-count of the k prior
_PRIOR_BS = 3.0
_PRIOR_K = 10.0


def tail_length(n_samples: int, r_eff: float) -> int:
    """ArviZ's right-tail length ``M`` for PSIS log weights."""
    if n_samples * r_eff > 225:
        return int(np.floor(3 * (n_samples / r_eff) ** 0.5))
    return int(np.floor(n_samples / 5))


def gpd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zhang–Stephens generalised Pareto fit of each row of ``x`` (n, M), rows sorted
    ascending and >= 0, with ArviZ's prior on ``k``. Returns ``(k, sigma)``, each (n,);
    ``(nan, nan)`` where the first quartile equals the minimum, ``(inf, nan)`` where the
    fit fails."""
    n_rows, n = x.shape
    m_est = 30 + int(n**0.5)
    xstar = x[:, int((n / 4 + 0.5) - 1)]
    degenerate = xstar <= x[:, 0]
    grid = 1 - np.sqrt(m_est / (np.arange(1, m_est + 1, dtype=float) - 0.5))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        b = grid[None, :] / (_PRIOR_BS * xstar[:, None]) + 1 / x[:, -1:]  # (n_rows, m_est)
        # k(b) = mean_i log1p(-b x_i) on the grid, in row blocks of ~2 MB (cache-sized)
        k_grid = np.empty_like(b)
        step = max(1, 2**18 // (m_est * n))
        buf = np.empty((min(step, n_rows), m_est, n))
        for i0 in range(0, n_rows, step):
            i1 = min(n_rows, i0 + step)
            g = buf[: i1 - i0]
            np.multiply(-b[i0:i1, :, None], x[i0:i1, None, :], out=g)
            np.log1p(g, out=g)
            np.mean(g, axis=2, out=k_grid[i0:i1])
        len_scale = n * (np.log(-b / k_grid) - k_grid - 1)
        w = np.exp(len_scale - logsumexp(len_scale, axis=1, keepdims=True))
        w = np.where(w >= 10 * np.finfo(float).eps, w, 0.0)  # ArviZ drops negligible weights
        w /= w.sum(axis=1, keepdims=True)
        b_post = np.sum(b * w, axis=1)
        k = np.mean(np.log1p(-b_post[:, None] * x), axis=1)
        sigma = -k / b_post
        k = (n * k + _PRIOR_K * 0.5) / (n + _PRIOR_K)
    failed = np.isnan(k)
    k = np.where(failed, np.inf, k)
    sigma = np.where(failed, np.nan, sigma)
    return np.where(degenerate, np.nan, k), np.where(degenerate, np.nan, sigma)


def _gpd_quantiles(p: np.ndarray, k: np.ndarray, sigma: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """GPD quantile function per row: ``mu + sigma ((1 - p)^-k - 1) / k`` (``k = 0``: the
    exponential limit); NaN where ``sigma <= 0``."""
    k, sigma, mu = k[:, None], sigma[:, None], mu[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        general = mu + sigma * np.expm1(-k * np.log1p(-p)) / k
        exponential = mu - sigma * np.log1p(-p)
    q = np.where(k == 0, exponential, general)
    return np.where(sigma <= 0, np.nan, q)


def _psis_chunk(ll: np.ndarray, n_tail: int, keep_weights: bool):
    """PSIS-LOO of a chunk ``ll`` (n, S), C-contiguous: ``(elpd_i, p_loo_i, k, log_weights
    or None)``.

    Only the tail is materialised: with ``r`` the raw log ratios (``-ll - max(-ll)``) and
    ``r'`` the smoothed ones, ``r'_s + l_s = min_s l_s`` for every draw outside the tail, so
    ``elpd = logsumexp(r' + l) - logsumexp(r')`` needs one pass over the body for
    ``logsumexp(r')`` and one for ``lppd``, besides the partition.
    """
    n, S = ll.shape
    body_n = S - n_tail
    lo = ll.min(axis=1)
    hi = ll.max(axis=1)
    r = np.negative(ll)
    r -= (-lo)[:, None]  # ArviZ: ary = -ll; ary = ary - max(ary)
    first = body_n - 1
    # flat indices of the M + 1 largest ratios per row (unordered), then sorted by value
    flat = np.argpartition(r, first, axis=1)[:, first:] + (S * np.arange(n))[:, None]
    vals = r.ravel().take(flat)
    order = np.argsort(vals, axis=1) + ((n_tail + 1) * np.arange(n))[:, None]
    flat, vals = flat.ravel().take(order), vals.ravel().take(order)
    cutoff, tail, tail_idx = vals[:, 0], vals[:, 1:], flat[:, 1:]
    max_tail = tail[:, -1]
    if np.any(np.abs(max_tail - tail[:, 0]) < np.finfo(float).tiny):
        raise ValueError("All tail values are the same")
    exp_cutoff = np.exp(cutoff)
    k, sigma = gpd_fit(np.exp(tail) - exp_cutoff[:, None])
    smooth = np.isfinite(k)
    new_tail = tail.copy()
    if np.any(smooth):
        p = np.arange(0.5, n_tail) / n_tail
        with np.errstate(divide="ignore", invalid="ignore"):
            smoothed = np.log(_gpd_quantiles(p, k[smooth], sigma[smooth], exp_cutoff[smooth]))
        cap = max_tail[smooth][:, None]
        new_tail[smooth] = np.where(smoothed > cap, cap, smoothed)
    # logsumexp(r'): the body's exp-sum with the tail slots zeroed, plus the smoothed tail
    shift = np.fmax(cutoff, np.nanmax(np.where(np.isnan(new_tail), -np.inf, new_tail), axis=1))
    if keep_weights:
        r_smooth = r.copy()
        r_smooth.ravel()[tail_idx] = new_tail
    work = r
    work -= shift[:, None]
    np.exp(work, out=work)
    work.ravel()[tail_idx] = 0.0
    log_norm = np.log(work.sum(axis=1) + np.exp(new_tail - shift[:, None]).sum(axis=1)) + shift
    # logsumexp(r' + l): body terms all equal min(l); tail terms r'_s + l_s
    tail_terms = new_tail + ll.ravel().take(tail_idx)
    m = np.fmax(lo, np.nanmax(np.where(np.isnan(tail_terms), -np.inf, tail_terms), axis=1))
    elpd = np.log(body_n * np.exp(lo - m) + np.exp(tail_terms - m[:, None]).sum(axis=1)) + m - log_norm
    # lppd = log(mean_s exp(l_s))
    np.subtract(ll, hi[:, None], out=work)
    np.exp(work, out=work)
    lppd = np.log(work.sum(axis=1)) + hi - math.log(S)
    log_w = r_smooth - log_norm[:, None] if keep_weights else None
    return elpd, lppd - elpd, k, log_w


def resolve_lazy_modules() -> list[str]:
    """Finish loading, in the calling thread, every module that sits in ``sys.modules`` as a
    lazy proxy (``importlib.util._LazyModule``, e.g. the ``jax`` and ``numpyro`` that
    ``import arviz_base`` registers through ``lazy_loader``); returns their names.

    Such a proxy loads itself on first attribute access, and before Python 3.12.3 that load is
    not thread-safe (CPython gh-114763): the first thread flips the proxy into a plain, still
    empty module, so a second thread sees ``module 'jax' has no attribute 'Array'``. SciPy's
    array-API dispatch (``logsumexp`` and friends) does ``'jax' in sys.modules`` -> ``jax.Array``
    from every worker thread, so the proxies must be resolved before the threads start (SciPy
    would load ``jax`` in the first call anyway, so this costs nothing extra)."""
    import importlib.util
    import sys

    lazy_type = getattr(importlib.util, "_LazyModule", None)
    if lazy_type is None:  # pragma: no cover - not CPython
        return []
    names = []
    for name, module in list(sys.modules.items()):
        if type(module) is lazy_type:  # noqa: E721 - isinstance would not trigger, but be exact
            try:
                getattr(module, "__name__")  # any attribute access runs the real import
            except Exception:  # noqa: BLE001 - a module that cannot import fails where it is used
                continue
            names.append(name)
    return names


def threaded_map(fn, items, threads: int | None = None) -> list:
    """``[fn(x) for x in items]`` on up to ``threads`` threads (None: :func:`~.chains.usable_cores`),
    in order; an exception in any call is raised here. Lazily loaded modules are resolved
    first, in this thread (:func:`resolve_lazy_modules`)."""
    items = list(items)
    n = min(len(items), usable_cores() if threads is None else max(1, int(threads)))
    if n <= 1:
        return [fn(x) for x in items]
    resolve_lazy_modules()
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(fn, items))


def psis_loo_arrays(log_lik: np.ndarray, r_eff: float = 1.0, *, keep_weights: bool = False,
                    chunk_bytes: int = 8 * 2**20, threads: int | None = None):
    """PSIS-LOO of ``log_lik`` with draws on axis 0 and observations on axis 1, (S, N).

    Returns ``elpd_i``, ``p_loo_i``, ``pareto_k`` (each (N,)) and, with ``keep_weights``, the
    normalised smoothed log weights (N, S); else None. Observations are processed in chunks
    of about ``chunk_bytes`` of draws (and of the GPD fit's grid), on ``threads`` threads
    (None: every usable core; at most ``threads`` chunks in memory at once).
    """
    log_lik = np.asarray(log_lik)
    S, N = log_lik.shape
    n_tail = tail_length(S, r_eff)
    if n_tail < 5:
        raise ValueError("n_draws_tail must be at least 5")
    m_est = 30 + int(n_tail**0.5)
    per_obs = 8 * max(S, m_est * n_tail)
    step = max(1, min(N, chunk_bytes // per_obs))
    elpd, p_loo, k = (np.empty(N) for _ in range(3))
    log_w = np.empty((N, S)) if keep_weights else None

    def one(i0):
        sl = slice(i0, min(N, i0 + step))
        e, p, kk, w = _psis_chunk(np.ascontiguousarray(log_lik[:, sl].T, dtype=np.float64), n_tail, keep_weights)
        elpd[sl], p_loo[sl], k[sl] = e, p, kk
        if keep_weights:
            log_w[sl] = w

    threaded_map(one, range(0, N, step), threads)
    return elpd, p_loo, k, log_w


def waic_arrays(log_lik: np.ndarray, *, chunk_bytes: int = 8 * 2**20, threads: int | None = None) -> dict:
    r"""WAIC of ``log_lik`` (S, N): ``elpd_i = log mean_s exp(l_is) - var_s(l_is)`` (ddof 1);
    returns ``elpd_waic``, ``se`` (``sqrt(N var(elpd_i))``), ``p_waic`` and ``waic`` (-2 elpd).

    Observations are taken in chunks of about ``chunk_bytes`` (on ``threads`` threads, as
    :func:`psis_loo_arrays`): whole-array temporaries of a Saeb-sized input are 360 MB each,
    and a fresh process spends most of its time faulting their pages in. Each observation's
    numbers are computed along the draws exactly as on the whole array."""
    log_lik = np.asarray(log_lik)
    S, N = log_lik.shape
    lppd, p_waic = np.empty(N), np.empty(N)

    def one(i0):
        sl = slice(i0, min(N, i0 + step))
        ll = np.asarray(log_lik[:, sl], dtype=np.float64)
        top = ll.max(0)
        lppd[sl] = np.log(np.mean(np.exp(ll - top), axis=0)) + top
        p_waic[sl] = np.var(ll, axis=0, ddof=1)

    step = max(1, min(N, chunk_bytes // (8 * max(S, 1))))
    threaded_map(one, range(0, N, step), threads)
    elpd_i = lppd - p_waic
    elpd = float(np.sum(elpd_i))
    return {"elpd_waic": elpd, "se": float(np.sqrt(len(elpd_i) * np.var(elpd_i))), "p_waic": float(np.sum(p_waic)),
            "waic": -2.0 * elpd}


# ----------------------------------------------------------------------------- r_eff
def relative_eff(posterior: xr.Dataset, threads: int | None = None) -> float:
    """ArviZ's ``r_eff`` for ``az.loo``: the mean ESS ("mean") over every value of every
    posterior variable, divided by the number of draws; 1 for a single chain (batches of
    series on ``threads`` threads, None: every usable core)."""
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    if n_chain == 1:
        return 1.0
    series = [np.moveaxis(np.asarray(da.transpose("chain", "draw", ...).values, dtype=float), (0, 1), (-2, -1))
              .reshape(-1, n_chain, n_draw) for da in posterior.data_vars.values()]
    series = np.concatenate(series, axis=0)
    step = 64  # series per batch: keeps the FFT buffers in cache
    ess = np.concatenate(threaded_map(ess_mean, [series[i:i + step] for i in range(0, len(series), step)], threads))
    return float(np.mean(ess) / (n_chain * n_draw))


# ----------------------------------------------------------------------------- ELPD object
def psis_loo(tree, var_name: str | None = None, *, reff: float | None = None, pointwise: bool = True,
             keep_weights: bool = False, chunk_bytes: int = 8 * 2**20, threads: int | None = None):
    """PSIS-LOO of a DataTree with ``posterior`` and ``log_likelihood`` groups, as
    ``az.loo(tree, pointwise=pointwise, var_name=var_name, reff=reff)``: an
    ``arviz_stats`` ``ELPDDataLOO`` (usable by ``az.compare`` and the plots). ``log_weights``
    (dims obs..., chain, draw, as ArviZ) only with ``keep_weights`` (S x N doubles); ``threads``:
    see :func:`psis_loo_arrays`."""
    from arviz_stats.utils import ELPDDataLOO

    group = tree["log_likelihood"].to_dataset() if isinstance(tree, xr.DataTree) else tree.log_likelihood
    if var_name is None:
        names = list(group.data_vars)
        if len(names) != 1:
            raise ValueError(f"log_likelihood has variables {names}; pass var_name")
        var_name = names[0]
    da = group[var_name]
    obs_dims = [d for d in da.dims if d not in ("chain", "draw")]
    da = da.transpose("chain", "draw", *obs_dims)
    n_chain, n_draw = da.sizes["chain"], da.sizes["draw"]
    S = n_chain * n_draw
    obs_shape = tuple(da.sizes[d] for d in obs_dims)
    N = int(np.prod(obs_shape))
    if reff is None:
        posterior = tree["posterior"].to_dataset() if isinstance(tree, xr.DataTree) else tree.posterior
        reff = relative_eff(posterior, threads)
    elpd_i, p_i, k, log_w = psis_loo_arrays(da.values.reshape(S, N), reff, keep_weights=keep_weights,
                                            chunk_bytes=chunk_bytes, threads=threads)
    good_k = min(1 - 1 / np.log10(S), 0.7) if S > 1 else 0.7
    warn = bool(np.any(k > good_k))
    if warn:
        warnings.warn(
            f"Estimated shape parameter of Pareto distribution is greater than {good_k:.2f} for one or more "
            "samples. You should consider using a more robust model, this is because importance sampling is less "
            "likely to work well if the marginal posterior and LOO posterior are very different. This is more "
            "likely to happen with a non-robust model and highly influential observations."
        )
    coords = {name: c for name, c in da.coords.items() if set(c.dims) <= set(obs_dims)}
    elpd_da = xr.DataArray(elpd_i.reshape(obs_shape), dims=obs_dims, coords=coords, name=var_name)
    k_da = xr.DataArray(k.reshape(obs_shape), dims=obs_dims, coords=coords, name=var_name)
    lw_da = None
    if keep_weights:
        lw_da = xr.DataArray(log_w.reshape(*obs_shape, n_chain, n_draw), dims=[*obs_dims, "chain", "draw"],
                             coords={**coords, "chain": da["chain"], "draw": da["draw"]}, name=var_name)
    n = elpd_i.size
    return ELPDDataLOO(
        elpd=float(np.sum(elpd_i)),
        se=float(np.sqrt(n * np.var(elpd_i, ddof=1))) if n > 1 else 0.0,
        p=float(np.sum(p_i)),
        n_samples=S,
        n_data_points=N,
        scale="log",
        warning=warn,
        good_k=good_k,
        elpd_i=elpd_da if pointwise else None,
        pareto_k=k_da if pointwise else None,
        approx_posterior=False,
        log_weights=lw_da,
    )
