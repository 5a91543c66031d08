r"""R-hat and ESS for many quantities at once: ArviZ's numbers without its per-quantity loop.

``arviz_stats.rhat`` / ``ess`` call their NumPy kernels once per scalar quantity, about 2 ms
each; a Saeb-sized fit has ~170 quantities (160 schools' inclusion probabilities) and three
diagnostics, so about 1 s of every ``simstudy fit`` went there. The functions below run the
same algorithms (Vehtari et al. 2021, as arviz-stats 1.x implements them) on arrays of shape
``(..., chain, draw)`` in one pass; tests hold them to ArviZ's values to 1e-12.

* :func:`rhat`: rank-normalised split R-hat, ``max(R(z(x)), R(z(|x - median x|)))``, ``z``
  the normal scores of the pooled ranks (Blom, c = 3/8) of the split chains;
* :func:`ess_bulk`: ESS of the rank-normalised split chains (Geyer's initial monotone sequence
  over FFT autocovariances);
* :func:`ess_mean`: the ESS of the split chains themselves (the mean's; PSIS-LOO's ``r_eff``);
* :func:`ess_tail`: the smaller ESS of the indicators ``x <= q`` at the quantiles
  ``sorted(p, 1 - p)``, ``p`` arviz-stats' default ``ci_prob``.

A quantity with a NaN draw gets NaN (ArviZ's rule); fewer than 4 draws, or fewer than 2 chains
for R-hat, gives NaN for all.
"""

from __future__ import annotations

import numpy as np
from scipy.fftpack import next_fast_len
from scipy.special import ndtri
from scipy.stats import rankdata


def _split(x: np.ndarray) -> np.ndarray:
    """(..., C, D) -> (..., 2C, D // 2): each chain's first and last halves (the middle draw
    of an odd count dropped)."""
    half = x.shape[-1] // 2
    return np.concatenate([x[..., :half], x[..., x.shape[-1] - half:]], axis=-2)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks of each quantity's (chain, draw) block."""
    flat = x.reshape(x.shape[:-2] + (-1,))
    ranks = rankdata(flat, method="average", axis=-1)
    return ndtri((ranks - 3 / 8) / (flat.shape[-1] - 2 * 3 / 8 + 1)).reshape(x.shape)


def _rhat_of(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    between = n * np.var(np.mean(x, axis=-1), axis=-1, ddof=1)
    within = np.mean(np.var(x, axis=-1, ddof=1), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _invalid(x: np.ndarray, min_chains: int) -> np.ndarray:
    """Quantities ArviZ returns NaN for: any NaN draw, or too few chains/draws."""
    bad = np.isnan(x).any(axis=(-2, -1))
    if x.shape[-2] < min_chains or x.shape[-1] < 4:
        bad = np.ones_like(bad)
    return bad


def _prepared(x, min_chains: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x as floats with invalid quantities zeroed, which are invalid)``."""
    x = np.asarray(x, dtype=float)
    bad = _invalid(x, min_chains=min_chains)
    return np.where(bad[..., None, None], 0.0, x), bad


def _rhat_rank(split: np.ndarray, z: np.ndarray) -> np.ndarray:
    bulk = _rhat_of(z)
    folded = np.abs(split - np.median(split, axis=(-2, -1), keepdims=True))
    tail = _rhat_of(_z_scale(folded))
    return np.where(tail > bulk, tail, bulk)  # Python's max(bulk, tail), NaN included


def rhat(x) -> np.ndarray:
    """Rank-normalised split R-hat of each quantity of ``x`` (..., chain, draw)."""
    clean, bad = _prepared(x, min_chains=2)
    split = _split(clean)
    return np.where(bad, np.nan, _rhat_rank(split, _z_scale(split)))


def diagnostics(x, prob: float | None = None) -> dict[str, np.ndarray]:
    """``{"rhat", "ess_bulk", "ess_tail"}`` of each quantity of ``x`` (..., chain, draw), as
    :func:`rhat`, :func:`ess_bulk` and :func:`ess_tail` give them (R-hat and bulk ESS share
    the ranks of the split chains)."""
    clean, bad = _prepared(x, min_chains=1)
    split = _split(clean)
    z = _z_scale(split)
    too_few_chains = np.asarray(x).shape[-2] < 2
    return {"rhat": np.where(bad | too_few_chains, np.nan, _rhat_rank(split, z)),
            "ess_bulk": np.where(bad, np.nan, _ess(z)),
            "ess_tail": np.where(bad, np.nan, _ess_tail(clean, prob))}


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of each quantity's already split chains (..., C, n): ArviZ's ``_ess``."""
    C, n = x.shape[-2:]
    total = C * n
    constant = (np.max(x, axis=(-2, -1)) - np.min(x, axis=(-2, -1))) < np.finfo(float).resolution
    centred = x - x.mean(axis=-1, keepdims=True)
    m = next_fast_len(2 * n)
    spec = np.fft.rfft(centred, n=m, axis=-1)
    spec *= np.conjugate(spec)
    acov = np.fft.irfft(spec, n=m, axis=-1)[..., :n] / n  # (..., C, n)
    mean_var = np.mean(acov[..., 0], axis=-1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if C > 1:
        var_plus = var_plus + np.var(np.mean(x, axis=-1), axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[..., None] - np.mean(acov, axis=-2)) / var_plus[..., None]  # (..., n)
    rho[..., 0] = 1.0
    lead = rho.shape[:-1]
    n_pairs = (n + 3) // 2  # pairs of positions 0 .. 2 n_pairs - 1 >= n + 1: room for a last pair past n
    rho = np.concatenate([rho, np.zeros(lead + (2 * n_pairs - n,))], axis=-1)
    pos = np.arange(2 * n_pairs)
    # Geyer's initial positive sequence. Pair p is (rho[2p], rho[2p + 1]), S_p its sum; ArviZ's
    # loop computes pairs 1, 2, ... while 2p + 1 < n - 3 and S_p > 0 held for the pair before:
    # p_last = the first p with that condition false; it keeps pairs 0 .. p_last - 1, and pair
    # p_last if S >= 0.
    sums = rho[..., 0::2] + rho[..., 1::2]  # (..., n_pairs)
    go_on = (2 * np.arange(n_pairs) + 1 < n - 3) & (sums > 0)
    p_last = np.where(go_on.all(axis=-1), n_pairs, np.argmax(~go_on, axis=-1))
    p_of = pos // 2
    last_sum = np.take_along_axis(sums, np.minimum(p_last, n_pairs - 1)[..., None], axis=-1)
    kept = (p_of < p_last[..., None]) | ((p_of == p_last[..., None]) & (last_sum >= 0) & (p_last[..., None] >= 1))
    kept |= pos < 2
    rho_t = np.where(kept, rho, 0.0)
    rho_even = np.where(p_last >= 1, np.take_along_axis(rho, np.minimum(2 * p_last, 2 * n_pairs - 1)[..., None],
                                                        axis=-1)[..., 0], 1.0)
    at_end = pos == 2 * p_last[..., None]
    rho_t = np.where(at_end & (rho_even > 0)[..., None], rho_even[..., None], rho_t)
    # Geyer's initial monotone sequence over pairs 1 .. p_last - 1: a pair whose sum exceeds the
    # (already lowered) sum before it becomes two halves of that sum: the sums' running minimum
    pair_sums = rho_t[..., 0::2] + rho_t[..., 1::2]  # (..., n_pairs)
    active = np.arange(pair_sums.shape[-1]) < p_last[..., None]
    running = np.minimum.accumulate(np.where(active, pair_sums, np.inf), axis=-1)
    before = np.concatenate([np.full(lead + (1,), np.inf), running[..., :-1]], axis=-1)
    lowered = active & (pair_sums > before)
    rho_t = np.where(np.repeat(lowered, 2, axis=-1), np.repeat(before / 2.0, 2, axis=-1), rho_t)
    body = np.sum(np.where(pos < 2 * p_last[..., None], rho_t, 0.0), axis=-1)
    last = np.sum(np.where(at_end & (pos < n), rho_t, 0.0), axis=-1)
    tau = np.maximum(-1.0 + 2.0 * body + last, 1.0 / np.log10(total))
    ess = np.where(np.isnan(rho_t[..., :n]).any(axis=-1), np.nan, total / tau)
    return np.where(constant, float(total), ess)


def ess_mean(x) -> np.ndarray:
    """ESS for the mean (ArviZ's ``method="mean"``, what ``r_eff`` of PSIS-LOO uses) of each
    quantity of ``x`` (..., chain, draw): the split chains as they are."""
    clean, bad = _prepared(x, min_chains=1)
    return np.where(bad, np.nan, _ess(_split(clean)))


def ess_bulk(x) -> np.ndarray:
    """Bulk ESS of each quantity of ``x`` (..., chain, draw)."""
    clean, bad = _prepared(x, min_chains=1)
    return np.where(bad, np.nan, _ess(_z_scale(_split(clean))))


def ess_tail(x, prob: float | None = None) -> np.ndarray:
    """Tail ESS of each quantity of ``x`` (..., chain, draw): ``min`` of the ESS of the
    indicators ``x <= q_low`` and ``x <= q_high`` at the quantiles ``sorted(prob, 1 - prob)``
    (default ``prob``: arviz-stats' ``ci_prob``)."""
    clean, bad = _prepared(x, min_chains=1)
    return np.where(bad, np.nan, _ess_tail(clean, prob))


def _ess_tail(clean: np.ndarray, prob: float | None) -> np.ndarray:
    if prob is None:
        from arviz_stats.validate import validate_ci_prob

        prob = validate_ci_prob(None)
    low, high = (_ess(_split((clean <= np.quantile(clean, p, axis=(-2, -1), method="linear")[..., None, None])
                             .astype(float))) for p in sorted((prob, 1 - prob)))
    return np.where(high < low, high, low)  # Python's min(low, high), NaN included
