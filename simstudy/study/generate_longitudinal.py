r"""Longitudinal MELSM data with known truth (``GeneratorSpec(layout="longitudinal")``).

Persons ``j = 1..J`` (the groups) have ``T_j`` planned occasions ``k = 1..T_j`` (``T_j =
group_size`` when balanced, else drawn by ``size_dist``: ``poisson`` or ``uniform``). Time is
the occasion rescaled to the unit interval, ``time_jk = (k - 1) / (T_j - 1)``, so every
person's planned study period runs from 0 (baseline) to 1 (last planned occasion) and the
slopes are changes over the whole period. Then

.. math::

    y_{jk} = \gamma_0 + \gamma_1 time_{jk} + u_{0j} + u_{1j} time_{jk} + e_{jk},\qquad
    \log\sigma_{jk} = \eta_0 + \eta_1 time_{jk} + t_j,

    e_{jk} = \sigma_{jk} a_{jk},\quad a_{j1} = \varepsilon_{j1},\quad
    a_{jk} = \phi a_{j,k-1} + \sqrt{1 - \phi^2}\,\varepsilon_{jk},\quad \varepsilon \sim N(0, 1):

a stationary AR(1) within person with lag-1 autocorrelation ``phi`` and marginal SD
``sigma_jk`` (``phi = 0``: independent residuals). ``u_0j = tau_u z_u,j`` and
``t_j``/``delta_j`` come from the cross-sectional spike-and-slab machinery unchanged (exact
count, slab or fixed magnitude, direction, ``corr(u_0, slab) = rho``); the time slope
``u_1j = tau_u1 (rho_u01 z_u,j + sqrt(1 - rho_u01^2) z_1,j)`` has ``corr(u_0, u_1) =
rho_u01`` (so ``corr(u_1, slab) = rho_u01 rho``).

Missing occasions (the AR process always runs over all ``T_j`` planned occasions; missing
ones are dropped afterwards, so the kept residuals keep their planned lags):

* monotone dropout, share ``dropout_monotone`` (<= 0.5): each person drops out with
  probability ``2 dropout_monotone``, after occasion ``L_j ~ Uniform{1, ..., T_j - 1}``
  (occasions ``L_j + 1 .. T_j`` missing). A dropper loses ``(T_j - L_j) / T_j`` of the
  planned occasions, on average exactly 1/2, so the expected missing share is exactly
  ``dropout_monotone``;
* MCAR, share ``dropout`` (<= 0.5): every occasion after baseline is missing independently
  with probability ``dropout T_j / (T_j - 1)``, so the expected missing share of each person's
  planned occasions is exactly ``dropout``.

The baseline (k = 1) is always observed, so every person keeps at least one observation.
With both kinds (``m = dropout_monotone``, ``d = dropout``) an occasion is kept when neither
removes it; the expected missing share is then exactly ``m + d - m d T_j / (T_j - 1)``.

The fitted design the data carry (what the grid fits): location ``y ~ 1 + time`` with random
``(1 + time | person)`` (``location_random_slope = false``: ``(1 | person)``), scale ``~ 1 +
(1 | person)`` (``scale_time = true``: ``~ 1 + time + (1 | person)``, which is not
person-level, so the per-observation likelihood path). The SS-MELSM assumes independent
residuals: ``phi > 0`` is a misspecification by design.

Streams: children 0..4 of the seed are the cross-sectional ones (sizes, random effects,
indicators, covariates -- unused here --, residual noise), 5 the slope draws and 6 the
missingness, so e.g. changing ``phi`` or ``dropout`` leaves ``u_0``, ``t`` and ``delta``
unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from simstudy.model.data import MelsmData

from .generate_base import Truth, _group_effects, _streams, draw_group_sizes, uniform_bounds

if TYPE_CHECKING:  # annotations only: generate.py imports this module
    from .generate import GeneratorSpec

#: settings that only the longitudinal layout uses, with their (cross-sectional) defaults
LONGITUDINAL_FIELDS = ("gamma1", "tau_u1", "rho_u01", "eta1", "phi", "dropout", "dropout_monotone",
                       "location_random_slope", "scale_time")


def check_layout(spec: GeneratorSpec, need) -> None:
    """Validate the layout settings; ``need(ok, field, rule)`` raises naming the field."""
    defaults = type(spec).__dataclass_fields__  # GeneratorSpec's
    if spec.layout != "longitudinal":
        for name in LONGITUDINAL_FIELDS:
            need(getattr(spec, name) == defaults[name].default, name,
                 f"applies to layout = 'longitudinal' only; set layout = 'longitudinal' or leave {name} at its "
                 f"default {defaults[name].default!r}")
        return
    need(spec.size_dist in ("balanced", "poisson", "uniform"), "size_dist",
         "'saeb' resamples school sizes (some of 1 student); a longitudinal layout needs balanced, poisson or uniform")
    need(spec.group_size >= 2, "group_size", "the number of occasions T; time = (k-1)/(T-1) needs T >= 2")
    if spec.size_dist == "uniform":
        need(uniform_bounds(spec)[0] >= 2, "size_min", "every person needs T_j >= 2 occasions; set size_min >= 2")
    need(not spec.covariates, "covariates", "covariates are cross-sectional only; set covariates = false")
    need(spec.tau_u1 >= 0, "tau_u1", "an SD; set tau_u1 >= 0")
    need(abs(spec.rho_u01) < 1, "rho_u01", "a correlation; set -1 < rho_u01 < 1")
    need(abs(spec.phi) < 1, "phi", "a stationary AR(1) needs -1 < phi < 1")
    need(0.0 <= spec.dropout <= 0.5, "dropout", "the MCAR missing share; set it within [0, 0.5]")
    need(0.0 <= spec.dropout_monotone <= 0.5, "dropout_monotone",
         "the monotone missing share (2 x it drop out, losing half their occasions on average); set it within [0, 0.5]")


# ---------------------------------------------------------------------------- truth
@dataclass(frozen=True, eq=False)
class LongitudinalTruth(Truth):
    """:class:`Truth` plus the longitudinal parts: per person the time slope ``u1`` and the
    planned occasions ``n_planned`` (``group_sizes`` are the realised ones), per realised
    observation its 1-based ``occasion`` and ``time``."""

    u1: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_planned: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    occasion: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    time: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_frame(self):
        frame = super().to_frame()
        frame["u1"] = self.u1
        frame["n_planned"] = self.n_planned
        return frame

    def csv_frame(self):
        """``truth.csv``: group, n (realised), n_planned, delta (0/1), t, u (= u0), u1, sigma."""
        cols = ["group", "n", "n_planned", "delta", "t", "u", "u1", "sigma"]
        return self.to_frame()[cols].astype({"delta": np.int8})

    def observation_columns(self) -> dict:
        """``data.csv`` gains ``occasion`` (``time`` is a design column already)."""
        return {"occasion": self.occasion}


# ---------------------------------------------------------------------------- draws
def occasion_times(n_planned: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Person index, 1-based occasion ``k`` and ``time = (k - 1)/(T_j - 1)`` of every planned
    occasion, person-major: three arrays of length ``sum(T_j)``."""
    g = np.repeat(np.arange(n_planned.size), n_planned)
    starts = np.cumsum(n_planned) - n_planned
    k = np.arange(g.size) - starts[g] + 1
    return g, k, (k - 1) / (n_planned[g] - 1)


def ar1_unit(eps: np.ndarray, g: np.ndarray, k: np.ndarray, phi: float) -> np.ndarray:
    """Stationary AR(1) with unit marginal variance within each person: ``a_1 = eps_1``,
    ``a_k = phi a_{k-1} + sqrt(1 - phi^2) eps_k`` (person-major arrays as in
    :func:`occasion_times`)."""
    if phi == 0.0:
        return eps.copy()
    a = eps.copy()
    c = math.sqrt(1.0 - phi * phi)
    for kk in range(2, int(k.max()) + 1):
        idx = np.flatnonzero(k == kk)
        a[idx] = phi * a[idx - 1] + c * eps[idx]  # idx - 1 is the same person's previous occasion
    return a


def observed_mask(spec: GeneratorSpec, n_planned: np.ndarray, g: np.ndarray, k: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Which planned occasions are observed (see the module docstring) and each person's last
    occasion before monotone dropout (``T_j`` for persons who stay). Draws the same numbers
    whatever the shares, so the missingness of different shares is nested for a seed."""
    J = n_planned.size
    drops = rng.random(J) < 2.0 * spec.dropout_monotone
    last = np.where(drops, rng.integers(1, n_planned), n_planned)  # Uniform{1..T_j-1} for droppers
    q = spec.dropout * n_planned[g] / (n_planned[g] - 1)
    mcar = (rng.random(g.size) < q) & (k > 1)
    return (k <= last[g]) & ~mcar, last


def _slopes(spec: GeneratorSpec, u0: np.ndarray, tau_u: float, rng: np.random.Generator) -> np.ndarray:
    """``u_1j = tau_u1 (rho_u01 z_u,j + sqrt(1 - rho_u01^2) z_1,j)`` with ``z_u = u_0 / tau_u``."""
    z1, z_alt = rng.standard_normal((2, u0.size))
    z_u = u0 / tau_u if tau_u > 0 else z_alt  # tau_u = 0: u_0 = 0, any independent z_u
    return spec.tau_u1 * (spec.rho_u01 * z_u + math.sqrt(1.0 - spec.rho_u01**2) * z1)


def generate_longitudinal(spec: GeneratorSpec, seed) -> tuple[MelsmData, LongitudinalTruth]:
    """One longitudinal dataset and its truth (the model is in the module docstring)."""
    if spec.layout != "longitudinal":
        raise ValueError(f"generate_longitudinal: spec.layout is {spec.layout!r}, not 'longitudinal'")
    rng_size, rng_re, rng_ind, _rng_cov, rng_eps, rng_slope, rng_miss = _streams(seed, 7)
    J = spec.n_groups
    n_planned = draw_group_sizes(spec, rng_size)
    u0, t, delta, slab, params = _group_effects(spec, rng_re, rng_ind)
    u1 = _slopes(spec, u0, params["tau_u"], rng_slope)

    g_all, k_all, time_all = occasion_times(n_planned)
    a = ar1_unit(rng_eps.standard_normal(g_all.size), g_all, k_all, spec.phi)
    mu = spec.gamma0 + u0[g_all] + (spec.gamma1 + u1[g_all]) * time_all
    log_sigma = spec.eta0 + spec.eta1 * time_all + t[g_all]
    y_all = mu + np.exp(log_sigma) * a
    keep, last = observed_mask(spec, n_planned, g_all, k_all, rng_miss)

    g, time, y = g_all[keep], time_all[keep], y_all[keep]
    N = g.size
    ones = np.ones((N, 1))
    both = np.column_stack([np.ones(N), time])
    names = ["Intercept", "time"]
    z_loc, z_loc_names = (both, names) if spec.location_random_slope else (ones, ["Intercept"])
    W, w_names = (both, names) if spec.scale_time else (ones, ["Intercept"])
    data = MelsmData.from_arrays(
        y, g, both, z_loc, W, ones,
        x_names=names, z_loc_names=z_loc_names, w_names=w_names, z_scale_names=["Intercept"],
        group_labels=np.arange(J), response="y", group_name="group",
        meta={"generator_spec": asdict(spec)},
    )
    sizes = np.bincount(g, minlength=J)
    params.update(
        layout="longitudinal",
        gamma0=spec.gamma0, gamma1=spec.gamma1, eta0=spec.eta0, eta1=spec.eta1,
        tau_u1=spec.tau_u1,
        rho_u01=spec.rho_u01, phi=spec.phi, dropout=spec.dropout, dropout_monotone=spec.dropout_monotone,
        share_missing=float(1.0 - N / g_all.size), n_dropped_out=int(np.sum(last < n_planned)),
        beta_within=0.0, beta_between=0.0, eta_within=0.0, eta_between=0.0,
    )
    truth = LongitudinalTruth(
        delta=delta, t=t, u=u0, sigma=np.exp(spec.eta0 + t), group_sizes=sizes, slab=slab,
        x_between=np.zeros(J), params=params,
        u1=u1, n_planned=n_planned, occasion=k_all[keep], time=time,
    )
    return data, truth
