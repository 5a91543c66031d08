r"""Which groups' scale random effects to centre, chosen from the data.

The scale effect of group ``j`` given its location effect is ``t_j | u_j ~ N(m_j, s^2)``
(``m_j = tau_t L_{tl} z^{loc}_j``, ``s = tau_t L_{tt}``). NUTS can sample it non-centred,
``t_j = m_j + s x_j`` with ``x_j ~ N(0, 1)``, or centred, ``t_j = x_j ~ N(m_j, s^2)``; both give
the same posterior. Non-centred is best for a group whose data say little about ``t_j`` (its
spike-and-slab indicator is likely 0, or it is small): ``x_j`` is then prior-only and
independent of ``tau_t``. Centred is best for a group whose data pin ``t_j`` down (an included
group with many observations): a non-centred ``x_j = (t_j - m_j)/s`` would be tied to
``tau_t``, the funnel that keeps NUTS at tree depth 5 and mixes tau_t slowly (Papaspiliopoulos,
Roberts & Skold 2007; Gorinova, Moore & Hoffman 2020, who learn a weight per group).

The weight of group ``j`` is the share of ``t_j``'s conditional posterior precision that comes
from its data, times the chance that its data inform ``t_j`` at all (the group is included):

.. math:: \lambda_j = \hat p_j \, \frac{\tau_{lo}^2}{\tau_{lo}^2 + v_j},\qquad v_j = \frac{1}{2(n_j - 1)},

``v_j`` the sampling variance of a group's log residual SD ``d_j``; ``\hat p_j`` and ``\tau^2``
from a two-component normal mixture fitted to ``d_j`` by EM,
``d_j ~ (1 - p) N(c_j, v_j) + p N(c_j, v_j + tau^2)`` (``c_j`` the fixed scale part), and
``\tau_{lo}^2`` two standard errors below ``\hat\tau^2`` (see :func:`_tau2_low`). A group is
centred when ``lambda_j >= 0.5``: a binary choice costs no exponential per group, where
weights in between (``x_j ~ N(lambda_j m_j, s^lambda_j)``) cost one per group per gradient,
about 30% of a J = 50 fit, and measured no better. The choice is a fixed function of the
data, so it changes how NUTS moves, never the model.
"""

from __future__ import annotations

import numpy as np

from .data import MelsmData

EM_ITERATIONS = 200
TAU2_FLOOR = 1e-4
#: standard errors of tau_t^2 below the estimate at which the weights are set (see _tau2_low)
TAU2_SE = 2.0


def _within_group_residuals(data: MelsmData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residuals of a least-squares fit of the location fixed effects, per group: sizes ``n_j``,
    means ``r̄_j`` and sums of squares around them."""
    J, g = data.n_groups, data.group
    beta, *_ = np.linalg.lstsq(data.X, data.y, rcond=None)
    r = data.y - data.X @ beta
    n = np.bincount(g, minlength=J).astype(float)
    mean = np.bincount(g, weights=r, minlength=J) / np.maximum(n, 1.0)
    return n, mean, np.bincount(g, weights=(r - mean[g]) ** 2, minlength=J)


def log_sd_by_group(data: MelsmData) -> tuple[np.ndarray, np.ndarray]:
    """Each group's log residual SD ``d_j`` (residuals from a least-squares fit of the location
    fixed effects, around their group means; bias-corrected, ``E log s_j ≈ log sigma_j - v_j``)
    and its sampling variance ``v_j = 1/(2(n_j - 1))``; groups with fewer than 2 observations
    get ``v_j = inf``."""
    n, _, rss = _within_group_residuals(data)
    dof = n - 1.0
    ok = dof >= 1.0
    v = np.where(ok, 1.0 / (2.0 * np.maximum(dof, 1.0)), np.inf)
    s2 = np.where(ok, rss / np.maximum(dof, 1.0), 1.0)
    d = 0.5 * np.log(np.maximum(s2, 1e-300)) + np.where(ok, v, 0.0)
    return d, v


def scale_centring_weights(data: MelsmData) -> np.ndarray:
    """``lambda_j`` in [0, 1) for each group (see the module docstring; a group is centred when
    it is >= 0.5); needs one scale random effect (K = 1). Groups with fewer than two
    observations get 0 (non-centred)."""
    if data.dims["K"] != 1:
        raise ValueError("data-chosen scale centring needs exactly one scale random effect")
    d, v = log_sd_by_group(data)
    ok = np.isfinite(v)
    lam = np.zeros(data.n_groups)
    if ok.sum() < 3:
        return lam
    d, v, W = d[ok], v[ok], data.stats.W_mean[ok]
    p, tau2 = 0.5, max(float(np.var(d) - np.mean(v)), TAU2_FLOOR)
    for _ in range(EM_ITERATIONS):
        resp = _responsibility(d - _fixed_part(d, v, W, p, tau2), v, p, tau2)
        p_new = float(np.clip(np.mean(resp), 1e-3, 1 - 1e-3))
        e = d - _fixed_part(d, v, W, p_new, tau2)
        # moment step for tau^2: included groups' excess of e^2 over their sampling variance
        tau2_new = max(float(np.sum(resp * (e**2 - v)) / max(np.sum(resp), 1e-12)), TAU2_FLOOR)
        if abs(p_new - p) < 1e-8 and abs(tau2_new - tau2) < 1e-10:
            p, tau2 = p_new, tau2_new
            break
        p, tau2 = p_new, tau2_new
    resp = _responsibility(d - _fixed_part(d, v, W, p, tau2), v, p, tau2)
    lam[ok] = resp * _tau2_low(tau2, resp, v) / (_tau2_low(tau2, resp, v) + v)
    return lam


def _tau2_low(tau2: float, resp: np.ndarray, v: np.ndarray) -> float:
    """A low but plausible ``tau_t^2``: the estimate less ``TAU2_SE`` of its standard errors,
    ``se(tau^2) ≈ (tau^2 + mean v) sqrt(2 / k)`` with ``k`` the expected number of included
    groups. Where few groups are included tau_t is poorly identified and its posterior reaches
    small values, where centred groups would make the funnel the other way round; the low
    value then keeps the weights near 0 (non-centred)."""
    k = max(float(np.sum(resp)), 1e-12)
    se = (tau2 + float(np.sum(resp * v)) / k) * np.sqrt(2.0 / k)
    return max(tau2 - TAU2_SE * se, 0.0)


def _fixed_part(d, v, W, p, tau2):
    """Weighted least-squares fit of ``d`` on the group-level scale design (marginal variance)."""
    w = 1.0 / (v + p * tau2)
    coef, *_ = np.linalg.lstsq(W * np.sqrt(w)[:, None], d * np.sqrt(w), rcond=None)
    return W @ coef


def _responsibility(e, v, p, tau2):
    """Pr(included | e_j) under ``(1 - p) N(0, v) + p N(0, v + tau^2)``."""
    def log_normal(x, var):
        return -0.5 * (np.log(2 * np.pi * var) + x**2 / var)

    a = np.log(p) + log_normal(e, v + tau2)
    b = np.log1p(-p) + log_normal(e, v)
    return 1.0 / (1.0 + np.exp(b - a))


def location_data_dominate(data: MelsmData) -> bool:
    r"""Whether the typical group's data outweigh the prior of its location intercept, the
    condition for centring the location effects: ``median_j(n_j) \hat\tau_u^2 / \hat\sigma^2 >= 1``,
    with ``\hat\sigma^2`` the pooled within-group variance of least-squares residuals and
    ``\hat\tau_u^2 = var_j(\bar r_j) - mean_j(\hat\sigma^2 / n_j)`` (method of moments, 0 if
    negative). Where tau_u is near 0 a centred group mean is tied to tau_u (the location funnel:
    prior-matched data with tau_u < 0.05 gave R-hat up to 1.25 on tau_u); there the location
    effects are non-centred."""
    n, mean, within = _within_group_residuals(data)
    has = n > 0
    dof = float(np.sum(np.maximum(n - 1.0, 0.0)))
    if dof < 1 or has.sum() < 3:
        return True
    sigma2 = float(within.sum()) / dof
    tau2 = max(float(np.var(mean[has], ddof=1) - np.mean(sigma2 / n[has])), 0.0)
    return bool(np.median(n[has]) * tau2 >= sigma2)
