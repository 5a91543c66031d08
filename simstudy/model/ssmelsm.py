r"""The SS-MELSM as a NumPyro model over plain arrays.

For observation ``i`` in group ``j = g(i)``:

.. math::

    y_i \sim N(\mu_i, \sigma_i),\quad \mu_i = X_i\beta + Z^{loc}_i u_j,\quad
    \log\sigma_i = W_i\eta + Z^{sc}_i (t_j \odot \delta_j),

with ``v_j = (u_j, t_j) = diag(tau) L z_j`` (``L`` the LKJ Cholesky factor, identity for
independent effects) and ``delta_jk ~ Bernoulli(pi)`` for each of the K scale random effects.
``pi`` is a runtime constant, or with a ``beta(a, b)`` hyperprior a sampled site
``pi ~ Beta(a, b)`` (NUTS moves on logit(pi)); the marginal likelihood below then uses the
sampled pi, and ``incl_prob`` is the full conditional given it, so the Rao-Blackwellised PIP
``E[incl_prob | y]`` keeps its form (it now averages over pi's posterior too).

The indicators are marginalised: for each group, with ``c`` running over the ``2^K``
indicator combinations,

.. math:: \log p(y_j \mid \cdot) = \mathrm{logsumexp}_c\,[\log p(c) + \log p(y_j \mid c, \cdot)],

and the full-conditional probabilities ``Pr(delta_jk = 1 | y, everything else)`` are kept as
the deterministic site ``incl_prob``; their posterior mean is the Rao-Blackwellised PIP.

Two exactly equivalent likelihood paths: per-group sufficient statistics when the scale
design is constant within groups (cost O(J), see :class:`simstudy.model.data.GroupStats`), else
per observation (cost O(N 2^K) multiplications, O(N (1 + K)) exponentials; see
:func:`_factored_loglik`), done by a compiled kernel where one could be built
(:func:`_native_loglik`, :mod:`simstudy.model.native`; the same numbers to rounding).

Every prior *value* (pi, SD-prior family and parameters, LKJ eta, fixed-effect prior means
and SDs) is an array in ``hyper``, so one compiled program serves a whole sweep; only the
:class:`Structure` (shapes, likelihood path, correlation on/off, parameterisation) is static.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import gammaln, logsumexp
from numpyro.distributions import constraints

from . import native
from .data import MelsmData
from .group_basis import GroupBasis
from .indicators import indicator_combos  # noqa: F401 - also re-exported here
from .priors import Priors
from .reparam import location_data_dominate, scale_centring_weights

jax.config.update("jax_enable_x64", True)

LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Structure:
    """What the compiled program depends on besides array shapes."""

    n_groups: int
    q_loc: int
    k_scale: int
    correlated: bool = True
    sufficient: bool = True
    centered_location: bool = True
    #: for each location random effect, the fixed-effect column it shares (or -1)
    loc_match: tuple[int, ...] = ()
    #: pi ~ Beta(a, b) is sampled (a and b are runtime values); False: pi is a runtime constant
    beta_pi: bool = False
    #: scale effects centred in the groups whose data pin them down, non-centred elsewhere
    #: (chosen from the data, :mod:`simstudy.model.reparam`; one scale random effect);
    #: False: non-centred in every group
    partial_scale: bool = False

    @property
    def n_random(self) -> int:
        return self.q_loc + self.k_scale

    @property
    def combos(self) -> np.ndarray:
        return indicator_combos(self.k_scale)


def structure_for(data: MelsmData, priors: Priors, *, sufficient: bool | None = None,
                  centered_location: bool | None = None, partial_scale: bool | None = None) -> Structure:
    """Pick the likelihood path and parameterisation for ``data``.

    The location effects are centred when groups are large enough for the data to dominate
    (median group size >= 10), non-centred otherwise; scale effects are always non-centred
    (a group with ``delta = 0`` has a scale effect informed by its prior only).
    """
    d = data.dims
    if sufficient is None:
        sufficient = data.scale_is_group_level
    if sufficient and not data.scale_is_group_level:
        raise ValueError("sufficient statistics need a scale design that is constant within groups")
    if centered_location is None:
        centered_location = bool(np.median(data.group_sizes) >= 10) and location_data_dominate(data)
    correlated = priors.correlated and (d["Q_loc"] + d["K"]) > 1
    if partial_scale is None:
        # only where some group gets centred: with none, the plain non-centred program is the
        # same parameterisation at a lower cost per gradient
        partial_scale = d["K"] == 1 and bool(np.any(scale_centring_weights(data) >= 0.5))
    if partial_scale and d["K"] != 1:
        raise ValueError("partial_scale needs exactly one scale random effect")
    loc_match = tuple(_matching_column(data.Z_loc[:, q], data.X) for q in range(d["Q_loc"]))
    return Structure(data.n_groups, d["Q_loc"], d["K"], correlated, bool(sufficient), bool(centered_location), loc_match,
                     beta_pi=priors.pi_is_beta, partial_scale=bool(partial_scale))


def _matching_column(z: np.ndarray, X: np.ndarray) -> int:
    """Index of the column of ``X`` equal to ``z`` (e.g. the intercept), or -1."""
    same = np.flatnonzero(np.all(X == z[:, None], axis=0))
    return int(same[0]) if same.size else -1


# ----------------------------------------------------------------------------- inputs
def model_arrays(data: MelsmData, structure: Structure, layout: str | None = None) -> dict[str, np.ndarray]:
    """The arrays the model reads (only those its likelihood path needs). ``layout`` of the
    per-observation path: ``"native"`` (:func:`native_arrays`, the compiled kernel of
    :mod:`simstudy.model.native`), ``"factored"`` (:func:`per_observation_arrays`, pure JAX) or
    ``"flat"`` (the earlier formulation, kept as the reference for tests and benchmarks);
    default (None): native where the kernel is available and fits the data, else factored."""
    if layout not in (None, "native", "factored", "flat"):
        raise ValueError(f"layout must be 'native', 'factored' or 'flat', got {layout!r}")
    s = data.stats
    arrays = {
        "X_mean": s.X_mean,
        "Z_loc_mean": s.Z_loc_mean,
        "W_mean": s.W_mean,
        "Z_scale_mean": s.Z_scale_mean,
    }
    if structure.partial_scale:
        centred = scale_centring_weights(data) >= 0.5
        arrays.update(scale_centred=centred.astype(np.float64), n_centred=np.float64(centred.sum()))
    if structure.sufficient:
        arrays.update(n=s.n, yy=s.yy, Ay=s.Ay, AA=s.AA)
    elif layout == "flat":
        arrays.update(y=data.y, group=data.group, X=data.X, Z_loc=data.Z_loc, W=data.W, Z_scale=data.Z_scale)
    else:
        basis, reason = native_basis(data) if layout in (None, "native") else (None, None)
        if layout == "native" and basis is None:
            raise ValueError(f"layout='native' is unavailable here: {reason}")
        arrays.update(per_observation_arrays(data) if basis is None else native_arrays(data, basis))
    return arrays


# ----------------------------------------------------------------------------- per-observation arrays
def per_observation_arrays(data: MelsmData) -> dict[str, np.ndarray]:
    """Arrays of the per-observation likelihood (:func:`_factored_loglik`): the observations
    sorted by group (stable; the likelihood is a sum, so the order is free), and per-group
    sums of the scale design ``W_sum`` (J, S), ``Z_scale_sum`` (J, K) and sizes ``n_group``."""
    order = np.argsort(data.group, kind="stable")
    return {"y": data.y[order], "group": data.group[order], "X": data.X[order], "Z_loc": data.Z_loc[order],
            "W": data.W[order], "Z_scale": data.Z_scale[order], **_scale_design_sums(data)}


def native_arrays(data: MelsmData, basis: GroupBasis) -> dict[str, np.ndarray]:
    """Arrays of :func:`_native_loglik`: the padded group-basis layout of
    :mod:`simstudy.model.group_basis` and the same per-group scale-design sums."""
    return {"y_padded": basis.y, "basis_t": basis.basis_t, "offsets": basis.offsets, "varies": basis.varies,
            **basis.blocks(), **_scale_design_sums(data)}


def _scale_design_sums(data: MelsmData) -> dict[str, np.ndarray]:
    return {"W_sum": data.group_sum(data.W), "Z_scale_sum": data.group_sum(data.Z_scale),
            "n_group": data.group_sizes.astype(np.float64)}


#: largest relative error of a group's design rebuilt from its basis that the kernel path accepts
MAX_BASIS_ERROR = 1e-10


def native_basis(data: MelsmData) -> tuple[GroupBasis | None, str | None]:
    """``data``'s group basis when the compiled kernel can serve its per-observation
    likelihood, else ``(None, why not)``."""
    if data.dims["K"] > native.MAX_K:
        return None, f"{data.dims['K']} scale random effects (the kernel takes at most {native.MAX_K})"
    reason = native.unavailable_reason()
    if reason is not None:
        return None, f"the compiled kernel is unavailable ({reason})"
    basis = data.group_basis  # computed once per dataset (batch_key and fit_batch both ask)
    if basis.width > native.MAX_BASIS:
        return None, (f"the groups' designs need a basis of {basis.width} columns (the kernel takes at most "
                      f"{native.MAX_BASIS})")
    if basis.max_error > MAX_BASIS_ERROR:
        return None, (f"the groups' designs are too close to collinear for the basis layout (relative "
                      f"reconstruction error {basis.max_error:.1e})")
    return basis, None


def hyper_arrays(data: MelsmData, priors: Priors) -> dict[str, np.ndarray]:
    """Runtime prior values. The location intercept prior is ``N(mean(y), 3 sd(y))`` unless
    set; other location effects ``N(0, location_fixed_sd)``; scale effects ``N(0, scale_fixed_sd)``."""
    d = data.dims
    y_mean, y_sd = float(np.mean(data.y)), float(np.std(data.y, ddof=1))
    beta_mean = np.zeros(d["P"])
    beta_sd = np.full(d["P"], priors.location_fixed_sd)
    intercept = intercept_column(data.X)
    if intercept is not None:
        beta_mean[intercept] = y_mean if priors.location_intercept_mean is None else priors.location_intercept_mean
        beta_sd[intercept] = 3.0 * y_sd if priors.location_intercept_sd is None else priors.location_intercept_sd
    sd_prior = np.stack([priors.location_sd.as_array()] * d["Q_loc"] + [priors.scale_sd.as_array()] * d["K"])
    # fixed pi: the value; Beta hyperprior: its (a, b) (a different program, see Structure.beta_pi)
    pi = {"pi_ab": np.array([priors.pi.a, priors.pi.b])} if priors.pi_is_beta else {"pi": np.float64(priors.pi)}
    return {
        **pi,
        "beta_mean": beta_mean,
        "beta_sd": beta_sd,
        "eta_mean": np.zeros(d["S"]),
        "eta_sd": np.full(d["S"], priors.scale_fixed_sd),
        "sd_prior": sd_prior,  # (Q, 3): family code, p1, p2
        "lkj_eta": np.float64(priors.lkj_eta),
    }


def intercept_column(M: np.ndarray) -> int | None:
    """Index of the first all-ones column of a design matrix, or None."""
    ones = np.flatnonzero(np.all(M == 1.0, axis=0))
    return int(ones[0]) if ones.size else None


# ----------------------------------------------------------------------------- priors
def sd_prior_logpdf(tau, spec):
    """Log density of each random-effect SD under its prior family (selected at runtime).

    ``spec[..., 0]`` is the family code (0 half-t(df, s), 1 half-normal(s), 2 half-Cauchy(s),
    3 exponential(rate)); unused parameter slots hold safe values.
    """
    code, p1, p2 = spec[..., 0], spec[..., 1], spec[..., 2]
    half_t = (
        math.log(2.0)
        + gammaln((p1 + 1) / 2) - gammaln(p1 / 2) - 0.5 * jnp.log(p1 * math.pi) - jnp.log(p2)
        - (p1 + 1) / 2 * jnp.log1p((tau / p2) ** 2 / p1)
    )
    half_normal = 0.5 * math.log(2.0 / math.pi) - jnp.log(p1) - 0.5 * (tau / p1) ** 2
    half_cauchy = math.log(2.0 / math.pi) - jnp.log(p1) - jnp.log1p((tau / p1) ** 2)
    exponential = jnp.log(p1) - p1 * tau
    return jnp.select([code == 0, code == 1, code == 2], [half_t, half_normal, half_cauchy], exponential)


# ----------------------------------------------------------------------------- model
def ssmelsm(arrays, hyper, structure: Structure):
    """NumPyro model of the SS-MELSM with marginalised spike-and-slab indicators."""
    J, Ql, K, Q = structure.n_groups, structure.q_loc, structure.k_scale, structure.n_random
    combos = jnp.asarray(structure.combos)  # (C, K)

    beta = numpyro.sample("beta", dist.Normal(hyper["beta_mean"], hyper["beta_sd"]).to_event(1))
    eta = numpyro.sample("eta", dist.Normal(hyper["eta_mean"], hyper["eta_sd"]).to_event(1))
    tau = numpyro.sample("tau", dist.ImproperUniform(constraints.positive, (), (Q,)))
    numpyro.factor("tau_prior", jnp.sum(sd_prior_logpdf(tau, hyper["sd_prior"])))
    if structure.correlated:
        if Q == 2:
            # one correlation: LKJ(eta) is p(rho) ∝ (1 - rho^2)^(eta - 1) (constant dropped);
            # a direct site is much cheaper per gradient than the general Cholesky transform
            rho = numpyro.sample("rho", dist.ImproperUniform(constraints.interval(-1.0, 1.0), (), ()))
            numpyro.factor("rho_prior", (hyper["lkj_eta"] - 1.0) * jnp.log1p(-rho**2))
            L = jnp.array([[1.0, 0.0], [0.0, 0.0]]) + jnp.array([[0.0, 0.0], [1.0, 0.0]]) * rho \
                + jnp.array([[0.0, 0.0], [0.0, 1.0]]) * jnp.sqrt(1.0 - rho**2)
            numpyro.deterministic("L_corr", L)
        else:
            L = numpyro.sample("L_corr", dist.LKJCholesky(Q, hyper["lkj_eta"]))
    else:
        L = jnp.eye(Q)

    if structure.centered_location:
        # Hierarchical centring: m_j = centre + u_j ~ MVN(centre, diag(tau_l) L_ll L_ll' diag(tau_l)),
        # where centre holds the fixed effect sharing each random effect's column (e.g. the
        # intercept), so m_j is nearly independent of beta; t_j | u_j is non-centred.
        match = np.array(structure.loc_match)
        centre = jnp.where(match >= 0, beta[np.maximum(match, 0)], 0.0)
        m = numpyro.sample("m", dist.ImproperUniform(constraints.real, (), (J, Ql)))
        u = m - centre
        L_ll = L[:Ql, :Ql]
        if Ql == 1:
            z_loc = u / tau[:Ql]
        else:
            z_loc = jax.scipy.linalg.solve_triangular(L_ll, (u / tau[:Ql]).T, lower=True).T  # (J, Ql)
        log_det = jnp.sum(jnp.log(tau[:Ql])) + jnp.sum(jnp.log(jnp.diagonal(L_ll)))
        numpyro.factor("m_prior", jnp.sum(-0.5 * z_loc**2) - J * (log_det + 0.5 * Ql * LOG_2PI))
    elif structure.partial_scale:
        z_loc = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([J, Ql]).to_event(2))
        u = (z_loc @ L[:Ql, :Ql].T) * tau[:Ql]
    if structure.partial_scale:
        t = _partially_centred_scale(arrays["scale_centred"], arrays["n_centred"], z_loc, tau[Ql:], L[Ql:, :Ql], L[Ql:, Ql:])
    elif structure.centered_location:
        z_scale = numpyro.sample("z_scale", dist.Normal(0.0, 1.0).expand([J, K]).to_event(2))
        t = tau[Ql:] * (z_loc @ L[Ql:, :Ql].T + z_scale @ L[Ql:, Ql:].T)
    else:
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([J, Q]).to_event(2))
        v = (z @ L.T) * tau
        u, t = v[:, :Ql], v[:, Ql:]

    if structure.beta_pi:
        pi = numpyro.sample("pi", dist.Beta(hyper["pi_ab"][0], hyper["pi_ab"][1]))
    else:
        pi = hyper["pi"]
    ll_jc = group_loglik(arrays, beta, eta, u, t, combos, structure)  # (J, C)
    logits = ll_jc + combo_log_prior(pi, combos)
    numpyro.factor("loglik", jnp.sum(logsumexp(logits, axis=1)))

    combo_prob = jax.nn.softmax(logits, axis=1)
    numpyro.deterministic("combo_prob", combo_prob)
    numpyro.deterministic("incl_prob", combo_prob @ combos)
    numpyro.deterministic("t", t)
    numpyro.deterministic("u", u)
    # group summaries on the data scale: mean of mu_i, and the within-group SD
    # E_delta[exp(mean_i log sigma_i)] at the group's own covariate values
    numpyro.deterministic("group_mean", arrays["X_mean"] @ beta + jnp.sum(arrays["Z_loc_mean"] * u, axis=1))
    ls_group = (arrays["W_mean"] @ eta)[:, None] + (arrays["Z_scale_mean"] * t) @ combos.T
    numpyro.deterministic("group_sd", jnp.sum(combo_prob * jnp.exp(ls_group), axis=1))


def _partially_centred_scale(centred, n_centred, z_loc, tau_t, L_tl, L_tt):
    r"""Scale effects ``t`` (J, 1) from the site ``x_scale``, each group centred or non-centred
    as :mod:`simstudy.model.reparam` chose from its data (``centred`` is 1.0 or 0.0 per group).
    With ``t_j | u_j ~ N(m_j, s^2)``, ``m_j = tau_t L_tl z_loc_j``, ``s = tau_t L_tt``:
    centred ``t_j = x_j ~ N(m_j, s^2)``, non-centred ``t_j = m_j + s x_j``, ``x_j ~ N(0, 1)``.
    No per-group transcendental: the extra cost over non-centred is a select and ``log s``."""
    J = centred.shape[0]
    m = tau_t * (z_loc @ L_tl.T)  # (J, 1)
    s = tau_t * jnp.diagonal(L_tt)  # (1,)
    x = numpyro.sample("x_scale", dist.ImproperUniform(constraints.real, (), (J, 1)))
    z = jnp.where(centred[:, None] > 0.5, (x - m) / s, x)  # = (t - m) / s
    numpyro.factor("x_scale_prior", -0.5 * jnp.sum(z**2) - n_centred * jnp.log(s[0]) - 0.5 * J * LOG_2PI)
    return m + s * z


def combo_log_prior(pi, combos):
    """``log p(c | pi) = n_c log pi + (K - n_c) log(1 - pi)`` for each indicator combination."""
    n_in = jnp.sum(combos, axis=1)
    return n_in * jnp.log(pi) + (combos.shape[1] - n_in) * jnp.log1p(-pi)


def group_loglik(arrays, beta, eta, u, t, combos, structure: Structure):
    """``log p(y_j | c, beta, eta, u_j, t_j)`` for every group and combination: (J, C)."""
    if structure.sufficient:
        J = structure.n_groups
        theta = jnp.concatenate([jnp.broadcast_to(beta, (J, beta.shape[0])), u], axis=1)
        rss = (
            arrays["yy"]
            - 2.0 * jnp.sum(theta * arrays["Ay"], axis=1)
            + jnp.einsum("jp,jpq,jq->j", theta, arrays["AA"], theta)
        )
        log_sigma = (arrays["W_mean"] @ eta)[:, None] + (arrays["Z_scale_mean"] * t) @ combos.T  # (J, C)
        n = arrays["n"][:, None]
        return -n * (log_sigma + 0.5 * LOG_2PI) - 0.5 * rss[:, None] * jnp.exp(-2.0 * log_sigma)
    if "basis_t" in arrays:
        return _native_loglik(arrays, beta, eta, u, t, structure)
    if "W_sum" in arrays:
        return _factored_loglik(arrays, beta, eta, u, t, structure)
    g = arrays["group"]
    mu = arrays["X"] @ beta + jnp.sum(arrays["Z_loc"] * u[g], axis=1)
    log_sigma = (arrays["W"] @ eta)[:, None] + (arrays["Z_scale"] * t[g]) @ combos.T  # (N, C)
    resid = (arrays["y"] - mu)[:, None]
    ll_ic = -log_sigma - 0.5 * LOG_2PI - 0.5 * resid**2 * jnp.exp(-2.0 * log_sigma)
    return jax.ops.segment_sum(ll_ic, g, num_segments=structure.n_groups)


def _factored_loglik(arrays, beta, eta, u, t, structure: Structure):
    r"""The per-observation likelihood, summed per group, with the algebra done once per group
    where it can be. For group ``j`` and combination ``c``:

    .. math::

        \sum_i \log N(y_i \mid \mu_i, \sigma_{ic}) = -\Big(\sum_i W_i\Big)\eta
        - \Big(\sum_i Z^{sc}_i\Big)(t_j \odot c) - \frac{n_j}{2}\log 2\pi
        - \frac12 \sum_i r_i^2 e^{-2 W_i\eta} \prod_{k: c_k = 1} e^{-2 Z^{sc}_{ik} t_{jk}},

    ``r_i = y_i - \mu_i``: 1 + K exponentials per observation instead of 2^K, no (N, 2^K)
    log-sigma array, and one segment sum over sorted groups. Equal to the flat formulation up
    to rounding (products of exponentials for exponentials of sums: both overflow only where
    ``|log sigma| > 350``)."""
    g = arrays["group"]
    mu = arrays["X"] @ beta + jnp.sum(arrays["Z_loc"] * _rows_of_sorted_groups(u, g), axis=1)
    r2 = (arrays["y"] - mu) ** 2 * jnp.exp(-2.0 * (arrays["W"] @ eta))  # (N,)
    e = jnp.exp(-2.0 * arrays["Z_scale"] * _rows_of_sorted_groups(t, g))  # (N, K)
    columns = []
    for combo in structure.combos:
        v = r2
        for k in np.flatnonzero(combo):
            v = v * e[:, k]
        columns.append(v)
    quad = jax.ops.segment_sum(jnp.stack(columns, axis=1), g, num_segments=structure.n_groups,
                               indices_are_sorted=True)  # (J, C)
    return _loglik_from_quad(arrays, eta, t, quad, structure)


def _native_loglik(arrays, beta, eta, u, t, structure: Structure):
    """:func:`_factored_loglik` with its per-observation sum done by the compiled kernel
    (:func:`simstudy.model.native.group_quad`) in each group's own basis
    (:mod:`simstudy.model.group_basis`): the same likelihood up to rounding (tested)."""
    alpha = arrays["coef_X"] @ beta + jnp.einsum("jbq,jq->jb", arrays["coef_Z_loc"], u)  # (J, b)
    gamma = arrays["coef_W"] @ eta  # (J, b)
    lam = jnp.einsum("jbk,jk->jkb", arrays["coef_Z_scale"], t)  # (J, K, b)
    quad = native.group_quad(arrays["y_padded"], arrays["basis_t"], arrays["offsets"], arrays["varies"],
                             alpha, gamma, lam)  # (J, C)
    return _loglik_from_quad(arrays, eta, t, quad, structure)


def _loglik_from_quad(arrays, eta, t, quad, structure: Structure):
    """``-sum_i log sigma_ic - n_j/2 log 2 pi - quad_jc / 2`` from the group sums of the scale
    design: the per-observation log-likelihood summed per group, (J, C)."""
    combos = jnp.asarray(structure.combos)
    log_sigma_sum = (arrays["W_sum"] @ eta)[:, None] + (arrays["Z_scale_sum"] * t) @ combos.T
    return -log_sigma_sum - (0.5 * LOG_2PI) * arrays["n_group"][:, None] - 0.5 * quad


@jax.custom_vjp
def _rows_of_sorted_groups(v, g):
    """``v[g]`` for group indices ``g`` sorted ascending, whose gradient is a sorted segment sum
    rather than XLA's general scatter-add (the same sums; 10-18% off a Saeb M3 likelihood
    gradient on CPU)."""
    return v[g]


def _rows_fwd(v, g):
    return v[g], (g, v.shape[0])


def _rows_bwd(residual, cotangent):
    g, n = residual
    return jax.ops.segment_sum(cotangent, g, num_segments=n, indices_are_sorted=True), None


_rows_of_sorted_groups.defvjp(_rows_fwd, _rows_bwd)


def pointwise_loglik(data: MelsmData, draws: dict, rng_key) -> np.ndarray:
    """Per-observation log-likelihood for PSIS-LOO, as ivd defines it: for each draw the
    group's indicator combination is drawn from its full conditional ``combo_prob``.

    ``draws`` hold arrays with leading (chain, draw) dims: beta, eta, u, t, combo_prob.
    Returns (chain, draw, N).
    """
    combos = jnp.asarray(indicator_combos(data.dims["K"]))
    g = jnp.asarray(data.group)
    y, X, Zl, W, Zs = (jnp.asarray(a) for a in (data.y, data.X, data.Z_loc, data.W, data.Z_scale))

    def one(key, beta, eta, u, t, combo_prob):
        c = jax.random.categorical(key, jnp.log(combo_prob))  # (J,)
        delta = combos[c]  # (J, K)
        mu = X @ beta + jnp.sum(Zl * u[g], axis=1)
        log_sigma = W @ eta + jnp.sum(Zs * (t * delta)[g], axis=1)
        return -log_sigma - 0.5 * LOG_2PI - 0.5 * ((y - mu) * jnp.exp(-log_sigma)) ** 2

    chains, n_draws = draws["beta"].shape[:2]
    keys = jax.random.split(rng_key, chains * n_draws).reshape(chains, n_draws, -1)
    flat = jax.jit(jax.vmap(jax.vmap(one)))
    out = flat(keys, *(jnp.asarray(draws[k]) for k in ("beta", "eta", "u", "t", "combo_prob")))
    return np.asarray(out)
