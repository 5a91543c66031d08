"""The two-stage HLM comparator (Raudenbush & Bryk 1987), as the authors ran it beside the SS-MELSM.

Each step is a small pure function over arrays:

1. :func:`fit_location` -- the location mixed model by REML (lme4's criterion). For a random
   intercept (``Z_loc`` one column of ones, what the generator and the usual formulas give)
   the REML criterion is profiled exactly over ``lambda = tau_u^2 / sigma^2`` from per-group
   sums (:func:`reml_random_intercept`); other random-effect structures use statsmodels'
   ``MixedLM(reml=True)``. Residuals are conditional on the BLUPs:
   ``e_ij = y_ij - x_ij' beta - z_ij' u_j``.
2. :func:`log_sd_stats` -- per group, ``s_j`` = SD of the residuals (ddof 1),
   ``df_j = n_j - 1``, ``d_j = log s_j + 1/(2 df_j)`` with known sampling variance
   ``v_j = 1/(2 df_j)``. Groups with ``n_j < 2`` (no residual SD) or ``s_j = 0`` get NaN:
   **they get no score and are never flagged.**
3. :func:`reml_meta` -- random-effects meta-analysis ``d_j = mu + theta_j + e_j``,
   ``theta_j ~ N(0, tau^2)``, ``e_j ~ N(0, v_j)``: tau^2 maximises the restricted likelihood
   ``-1/2 [sum log(v_j + tau^2) + log sum w_j + sum w_j (d_j - mu_hat)^2]``, ``w_j = 1/(v_j + tau^2)``,
   on ``tau^2 >= 0``. :func:`meta_blups` gives ``mu_hat = sum w d / sum w``, the BLUPs
   ``theta_j = lambda_j (d_j - mu_hat)``, ``lambda_j = tau^2/(tau^2 + v_j)``, and their SEs
   ``sqrt(lambda_j v_j + lambda_j^2 / sum w)`` (Raudenbush & Bryk 1985, Appendix; what
   metafor's ``ranef()`` reports); ``Z_j = theta_j / SE_j`` (0 when ``tau^2 = 0``).
4. Flag rules (each a named method): ``hlm`` (:func:`flag_envelope`: Z outside the 95%
   pointwise envelope of the normal QQ plot from 1,000 standard-normal samples of size J,
   seeded from the replicate's seed, around the identity line), ``hlm_qq`` (the same envelope
   around the plot's quartile line, :func:`flag_envelope_line`: the rule that reproduces the
   authors' published figures), ``hlm_z`` (:func:`flag_z`: ``|Z| > 1.96``), ``hlm_bh``
   (:func:`flag_bh`: Benjamini-Hochberg at 0.05 on the two-sided p-values). The score for
   ROC/PR curves is ``|Z_j|``; a flag's direction is the sign of ``Z_j``.

Also :func:`homogeneity`: ``H = sum (d_j - d_bar)^2 / v_j`` with the fixed-effect mean
``d_bar = sum(d/v) / sum(1/v)``, chi-square with J - 1 df under equal residual variances.

The scale design (``W``, ``Z_scale``) is ignored: the two-stage HLM has no scale covariates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "COMPARATORS",
    "HLMResult",
    "LocationFit",
    "fit_location",
    "reml_random_intercept",
    "log_sd_stats",
    "reml_meta",
    "meta_blups",
    "homogeneity",
    "qq_envelope",
    "flag_envelope",
    "qq_line",
    "flag_envelope_line",
    "flag_z",
    "flag_bh",
    "two_sided_p",
    "hlm",
]

#: the flag rules of the two-stage HLM, each a method name of a study
COMPARATORS = ("hlm", "hlm_z", "hlm_bh", "hlm_qq")
ENVELOPE_SIMS = 1000
Z_CRIT = 1.959963984540054  # qnorm(0.975)
BH_ALPHA = 0.05


# ----------------------------------------------------------------------------- stage 1
@dataclass(frozen=True)
class LocationFit:
    """REML fit of the location model: fixed effects, BLUPs (J, Q), variances, residuals (N,)."""

    beta: np.ndarray
    u: np.ndarray
    sigma2: float
    tau2: np.ndarray  # (Q, Q) random-effect covariance
    resid: np.ndarray


def _group_sums(y, X, group, J):
    n = np.bincount(group, minlength=J).astype(float)
    Sy = np.bincount(group, weights=y, minlength=J)
    Syy = np.bincount(group, weights=y * y, minlength=J)
    P = X.shape[1]
    Sx = np.stack([np.bincount(group, weights=X[:, k], minlength=J) for k in range(P)], axis=1)
    Sxy = np.stack([np.bincount(group, weights=X[:, k] * y, minlength=J) for k in range(P)], axis=1)
    Sxx = np.zeros((J, P, P))
    np.add.at(Sxx, group, X[:, :, None] * X[:, None, :])
    return n, Sy, Syy, Sx, Sxy, Sxx


def _profile(lam, n, Sy, Syy, Sx, Sxy, Sxx, N, P):
    """-2 x profiled REML log-likelihood (constants dropped) at ``lambda``, and beta, sigma^2."""
    g = lam / (1.0 + n * lam)
    XHX = Sxx.sum(0) - np.einsum("j,jk,jl->kl", g, Sx, Sx)
    XHy = Sxy.sum(0) - np.einsum("j,jk,j->k", g, Sx, Sy)
    yHy = Syy.sum() - np.sum(g * Sy * Sy)
    beta = np.linalg.solve(XHX, XHy)
    rss = yHy - beta @ XHy
    sigma2 = rss / (N - P)
    _, logdet = np.linalg.slogdet(XHX)
    return (N - P) * math.log(sigma2) + np.sum(np.log1p(n * lam)) + logdet, beta, sigma2


def reml_random_intercept(y, X, group, J: int) -> LocationFit:
    """REML of ``y = X beta + u_group + e``, ``u ~ N(0, tau^2)``, ``e ~ N(0, sigma^2)``, exact.

    With ``H_j = I + lambda 11'``, ``lambda = tau^2/sigma^2``: ``beta(lambda)`` is GLS,
    ``sigma^2(lambda) = r'H^-1 r / (N - P)``, and ``lambda`` minimises
    ``(N-P) log sigma^2 + sum_j log(1 + n_j lambda) + log|X'H^-1 X|`` on ``lambda >= 0``
    (bounded Brent on log lambda, compared with the boundary ``lambda = 0``). BLUPs
    ``u_j = lambda/(1 + n_j lambda) sum_i (y_ij - x_ij' beta)``.
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, float)
    X = np.asarray(X, float)
    group = np.asarray(group, np.int64)
    N, P = X.shape
    sums = _group_sums(y, X, group, J)
    n, Sy = sums[0], sums[1]

    def crit(loglam):
        return _profile(math.exp(loglam), *sums, N, P)[0]

    res = minimize_scalar(crit, bounds=(-25.0, 12.0), method="bounded", options={"xatol": 1e-10})
    lam = math.exp(res.x)
    if _profile(0.0, *sums, N, P)[0] <= res.fun:
        lam = 0.0
    _, beta, sigma2 = _profile(lam, *sums, N, P)
    g = lam / (1.0 + n * lam)
    u = g * (Sy - sums[3] @ beta)
    resid = y - X @ beta - u[group]
    return LocationFit(beta=beta, u=u[:, None], sigma2=float(sigma2), tau2=np.array([[lam * sigma2]]), resid=resid)


def _statsmodels_reml(y, X, Z, group, J: int) -> LocationFit:
    import warnings

    from statsmodels.regression.mixed_linear_model import MixedLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; REML estimates are what we want
        res = MixedLM(y, X, groups=group, exog_re=Z).fit(reml=True)
    u = np.zeros((J, Z.shape[1]))
    for key, eff in res.random_effects.items():
        u[int(key)] = np.asarray(eff, float)
    beta = np.asarray(res.fe_params, float)
    resid = y - X @ beta - np.sum(Z * u[group], axis=1)
    return LocationFit(beta=beta, u=u, sigma2=float(res.scale), tau2=np.asarray(res.cov_re, float), resid=resid)


def fit_location(data) -> LocationFit:
    """REML location fit of a :class:`~simstudy.model.data.MelsmData` (see the module doc)."""
    Z = data.Z_loc
    if Z.shape[1] == 1 and np.all(Z == 1.0):
        return reml_random_intercept(data.y, data.X, data.group, data.n_groups)
    return _statsmodels_reml(data.y, data.X, Z, data.group, data.n_groups)


# ----------------------------------------------------------------------------- stage 2
def log_sd_stats(resid, group, J: int):
    """Per group ``(n, s, d, v)``: size, residual SD (ddof 1), ``d = log s + 1/(2 df)`` and
    ``v = 1/(2 df)``, ``df = n - 1``; ``s, d, v`` NaN where ``n < 2`` (and ``d, v`` where ``s = 0``)."""
    resid = np.asarray(resid, float)
    group = np.asarray(group, np.int64)
    n = np.bincount(group, minlength=J).astype(float)
    mean = np.bincount(group, weights=resid, minlength=J) / np.maximum(n, 1)
    ss = np.bincount(group, weights=(resid - mean[group]) ** 2, minlength=J)
    df = n - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(df >= 1, np.sqrt(ss / np.where(df >= 1, df, 1)), np.nan)
        ok = np.isfinite(s) & (s > 0)
        v = np.where(ok, 1.0 / (2.0 * df), np.nan)
        d = np.where(ok, np.log(np.where(ok, s, 1.0)) + v, np.nan)
    return n, s, d, v


# ----------------------------------------------------------------------------- stage 3
def _reml_nll(tau2, d, v):
    w = 1.0 / (v + tau2)
    mu = np.sum(w * d) / np.sum(w)
    return 0.5 * (np.sum(np.log(v + tau2)) + math.log(np.sum(w)) + np.sum(w * (d - mu) ** 2))


def reml_meta(d, v) -> float:
    """REML estimate of tau^2 for ``d_j ~ N(mu, v_j + tau^2)`` (finite entries only), >= 0.

    Bounded Brent on ``[0, 10 var(d) + max v]`` (the likelihood is unimodal in practice),
    compared with the boundary 0, then polished by Fisher scoring (as metafor's ``rma``). Equal ``v`` gives ``max(0, S^2 - v)``, ``S^2`` the sample variance.
    """
    from scipy.optimize import minimize_scalar

    d = np.asarray(d, float)
    v = np.asarray(v, float)
    ok = np.isfinite(d) & np.isfinite(v)
    d, v = d[ok], v[ok]
    if d.size < 2:
        return math.nan
    hi = 10.0 * float(np.var(d, ddof=1)) + float(v.max())
    res = minimize_scalar(_reml_nll, bounds=(0.0, hi), args=(d, v), method="bounded",
                          options={"xatol": 1e-12 * max(hi, 1e-12) + 1e-14})
    tau2 = float(res.x)
    if _reml_nll(0.0, d, v) <= res.fun:
        return 0.0
    for _ in range(50):  # polish by Fisher scoring (Brent stops at ~sqrt(eps) of the optimum)
        w = 1.0 / (v + tau2)
        sw, sw2 = w.sum(), (w**2).sum()
        mu = np.sum(w * d) / sw
        score = np.sum(w**2 * (d - mu) ** 2) - sw + sw2 / sw  # 2 dl/dtau2
        info = sw2 - 2.0 * np.sum(w**3) / sw + (sw2 / sw) ** 2  # tr(P^2) = 2 E[-d2l/dtau2^2]
        step = score / info
        tau2 = max(0.0, tau2 + step)
        if abs(step) < 1e-14 * max(1.0, tau2):
            break
    return float(tau2)


def meta_blups(d, v, tau2: float):
    """``(mu, var_mu, blup, se, z)``: the random-effects mean and its variance ``1/sum w``, and per
    group ``blup = lambda (d - mu)``, ``se = sqrt(lambda v + lambda^2 var_mu)``, ``z = blup / se``
    (0 when tau^2 = 0; NaN where ``d`` is)."""
    d = np.asarray(d, float)
    v = np.asarray(v, float)
    ok = np.isfinite(d) & np.isfinite(v)
    w = 1.0 / (v[ok] + tau2)
    mu = float(np.sum(w * d[ok]) / np.sum(w))
    var_mu = float(1.0 / np.sum(w))
    lam = np.where(ok, tau2 / (tau2 + np.where(ok, v, 1.0)), np.nan)
    blup = lam * (d - mu)
    se = np.sqrt(lam * v + lam**2 * var_mu)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(ok, np.where(se > 0, blup / np.where(se > 0, se, 1.0), 0.0), np.nan)
    return mu, var_mu, blup, se, z


def homogeneity(d, v):
    """``(H, df, p)``: ``H = sum (d - d_bar)^2 / v``, ``d_bar = sum(d/v)/sum(1/v)``, ``df = J - 1``,
    ``p = P(chi2_df > H)`` (finite entries only)."""
    from scipy.stats import chi2

    d = np.asarray(d, float)
    v = np.asarray(v, float)
    ok = np.isfinite(d) & np.isfinite(v)
    d, v = d[ok], v[ok]
    if d.size < 2:
        return math.nan, 0, math.nan
    dbar = np.sum(d / v) / np.sum(1.0 / v)
    H = float(np.sum((d - dbar) ** 2 / v))
    df = int(d.size - 1)
    return H, df, float(chi2.sf(H, df))


# ----------------------------------------------------------------------------- stage 4
def qq_envelope(J: int, rng: np.random.Generator, n_sims: int = ENVELOPE_SIMS, level: float = 0.95):
    """Pointwise envelope of the sorted standard-normal sample of size J: ``(lo, hi)``, the
    ``(1-level)/2`` and ``(1+level)/2`` quantiles (numpy's linear rule, R's type 7) of each
    order statistic over ``n_sims`` simulated samples (one ``(n_sims, J)`` draw from ``rng``)."""
    sims = np.sort(rng.standard_normal((n_sims, J)), axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(sims, [a, 1.0 - a], axis=0)
    return lo, hi


def flag_envelope(z, lo, hi) -> np.ndarray:
    """True where the group's Z, at its rank among the finite Z, lies outside ``[lo, hi]`` of that
    rank (the QQ-plot rule); NaN Z (unscored groups) are never flagged. ``lo, hi``: length = number
    of finite Z."""
    z = np.asarray(z, float)
    ok = np.flatnonzero(np.isfinite(z))
    out = np.zeros(z.shape, bool)
    order = ok[np.argsort(z[ok], kind="mergesort")]
    zs = z[order]
    out[order] = (zs < lo) | (zs > hi)
    return out


def qq_line(z) -> tuple[float, float]:
    """``(a, b)``: the line of a normal QQ plot through the first and third quartiles of the
    finite ``z`` (R's ``qqline``, ``car::qqPlot``'s default line): ``b = IQR(z) / IQR(N(0, 1))``,
    ``a = Q1(z) - b Phi^-1(1/4)`` (quartiles by numpy's linear rule, R's type 7)."""
    from scipy.stats import norm

    z = np.asarray(z, float)
    q1, q3 = np.quantile(z[np.isfinite(z)], [0.25, 0.75])
    b = (q3 - q1) / (2.0 * norm.ppf(0.75))
    return float(q1 + b * norm.ppf(0.75)), float(b)


def flag_envelope_line(z, lo, hi) -> np.ndarray:
    """The QQ-envelope rule around the plot's quartile line (``hlm_qq``): the standard-normal
    envelope ``[lo, hi]`` of each order statistic mapped to ``a + b [lo, hi]``
    (:func:`qq_line`), so the Z's own centre and spread are the reference, as in a QQ plot
    read against its fitted line. This reproduces the authors' published Study 1 figures
    (``analysis/hlm_rules.py``): the envelope around the identity line (``hlm``) flags every
    extreme rank whenever shrinkage pulls the Z towards 0 (all of them when tau^2 = 0)."""
    z = np.asarray(z, float)
    if not np.isfinite(z).any():
        return np.zeros(z.shape, bool)
    a, b = qq_line(z)
    return flag_envelope(z, a + b * np.asarray(lo), a + b * np.asarray(hi))


def flag_z(z, crit: float = Z_CRIT) -> np.ndarray:
    """``|Z| > crit`` (NaN: never flagged)."""
    z = np.asarray(z, float)
    return np.isfinite(z) & (np.abs(np.where(np.isfinite(z), z, 0.0)) > crit)


def two_sided_p(z) -> np.ndarray:
    """``2 P(N(0,1) > |z|)``."""
    from scipy.stats import norm

    return 2.0 * norm.sf(np.abs(np.asarray(z, float)))


def flag_bh(z, alpha: float = BH_ALPHA) -> np.ndarray:
    """Benjamini-Hochberg at ``alpha`` on the two-sided p-values of the finite Z (statsmodels'
    ``fdrcorrection``); NaN Z are not tests and never flagged."""
    from statsmodels.stats.multitest import fdrcorrection

    z = np.asarray(z, float)
    ok = np.isfinite(z)
    out = np.zeros(z.shape, bool)
    if ok.any():
        out[ok] = fdrcorrection(two_sided_p(z[ok]), alpha=alpha, method="indep")[0]
    return out


# ----------------------------------------------------------------------------- all steps
@dataclass(frozen=True)
class HLMResult:
    """Per group (length J): ``n, s, d, v, blup, se, z``, ``score = |z|`` and ``flags``
    (method name -> bool array); per dataset: location ``sigma2, tau2_u``, meta ``mu, tau2``,
    homogeneity ``H, H_df, H_p`` and ``seconds``."""

    n: np.ndarray
    s: np.ndarray
    d: np.ndarray
    v: np.ndarray
    blup: np.ndarray
    se: np.ndarray
    z: np.ndarray
    flags: dict
    sigma2: float
    tau2_u: float
    mu: float
    tau2: float
    H: float
    H_df: int
    H_p: float
    seconds: float = 0.0

    @property
    def score(self) -> np.ndarray:
        return np.abs(self.z)


def hlm(data, seed, n_sims: int = ENVELOPE_SIMS) -> HLMResult:
    """Run the two-stage HLM on one :class:`~simstudy.model.data.MelsmData`. ``seed``: anything
    ``np.random.default_rng`` takes (the runner passes the replicate's own stream), used only
    for the QQ envelope."""
    import time

    t0 = time.perf_counter()
    loc = fit_location(data)
    n, s, d, v = log_sd_stats(loc.resid, data.group, data.n_groups)
    tau2 = reml_meta(d, v)
    if math.isfinite(tau2):
        mu, _, blup, se, z = meta_blups(d, v, tau2)
    else:  # fewer than two scored groups: nothing to compare
        mu, blup, se, z = math.nan, np.full_like(d, np.nan), np.full_like(d, np.nan), np.full_like(d, np.nan)
    H, H_df, H_p = homogeneity(d, v)
    k = int(np.isfinite(z).sum())
    if k:
        lo, hi = qq_envelope(k, np.random.default_rng(seed), n_sims)
        env, env_line = flag_envelope(z, lo, hi), flag_envelope_line(z, lo, hi)
    else:
        env = env_line = np.zeros(z.shape, bool)
    flags = {"hlm": env, "hlm_z": flag_z(z), "hlm_bh": flag_bh(z), "hlm_qq": env_line}
    return HLMResult(n=n, s=s, d=d, v=v, blup=blup, se=se, z=z, flags=flags, sigma2=loc.sigma2,
                     tau2_u=float(loc.tau2[0, 0]), mu=mu, tau2=tau2, H=H, H_df=H_df, H_p=H_p,
                     seconds=time.perf_counter() - t0)
