"""Pieces shared by the cross-sectional generator (:mod:`simstudy.study.generate`) and the
longitudinal one (:mod:`simstudy.study.generate_longitudinal`): group sizes, the truth record,
random streams and the group effects (truth or prior mode). Both generators import this module;
it imports neither (``spec`` is a :class:`~simstudy.study.generate.GeneratorSpec`, duck-typed).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from simstudy.model.priors import BetaPrior, SDPrior

if TYPE_CHECKING:  # annotations only: generate.py imports this module
    from .generate import GeneratorSpec


def uniform_bounds(spec: GeneratorSpec) -> tuple[int, int]:
    """``[size_min, size_max]`` for ``size_dist="uniform"``; a missing bound defaults to
    ``n - floor(n/2)`` / ``n + floor(n/2)`` so the mean size stays near ``group_size``."""
    n = spec.group_size
    lo = spec.size_min if spec.size_min is not None else max(1, n - n // 2)
    hi = spec.size_max if spec.size_max is not None else n + n // 2
    return lo, hi


# ---------------------------------------------------------------------------- truth
@dataclass(frozen=True, eq=False)
class Truth:
    """The generating values, one entry per group (labels 0..J-1).

    ``sigma_j = exp(eta0 + t_j)`` is the group's within-SD at covariate value 0; ``slab`` is
    the latent slab draw ``s_j`` of every group (used only where ``delta_j``); ``x_between``
    the group covariate ``xb_j`` (zeros without covariates).
    """

    delta: np.ndarray
    t: np.ndarray
    u: np.ndarray
    sigma: np.ndarray
    group_sizes: np.ndarray
    slab: np.ndarray
    x_between: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return int(self.delta.shape[0])

    def to_frame(self):
        """One row per group: group, n, delta, t, u, sigma, slab, x_between."""
        import pandas as pd

        return pd.DataFrame(
            {
                "group": np.arange(self.n_groups),
                "n": self.group_sizes,
                "delta": self.delta,
                "t": self.t,
                "u": self.u,
                "sigma": self.sigma,
                "slab": self.slab,
                "x_between": self.x_between,
            }
        )

    def csv_frame(self):
        """The columns of ``truth.csv``: group, n, delta (0/1), t, u, sigma."""
        return self.to_frame()[["group", "n", "delta", "t", "u", "sigma"]].astype({"delta": np.int8})

    def observation_columns(self) -> dict:
        """Extra per-observation columns of ``data.csv`` (none in the cross-sectional layout)."""
        return {}


# ---------------------------------------------------------------------------- draws
@cache
def saeb_school_sizes() -> np.ndarray:
    """Students per school in the shipped Saeb data (160 schools), read once."""
    import pandas as pd

    with resources.files("simstudy").joinpath("datasets", "saeb.csv").open("rb") as fh:
        ids = pd.read_csv(fh, usecols=["school_id"])["school_id"].to_numpy()
    sizes = np.unique(ids, return_counts=True)[1]
    sizes.setflags(write=False)
    return sizes


def draw_group_sizes(spec: GeneratorSpec, rng: np.random.Generator) -> np.ndarray:
    """``n_j`` for every group: balanced ``n``; ``Poisson(n-2)+2``; uniform integers in
    ``[size_min, size_max]``; or Saeb school sizes resampled with replacement."""
    J, n = spec.n_groups, spec.group_size
    if spec.size_dist == "balanced":
        return np.full(J, n, dtype=np.int64)
    if spec.size_dist == "poisson":
        return rng.poisson(n - 2, size=J).astype(np.int64) + 2
    if spec.size_dist == "uniform":
        lo, hi = uniform_bounds(spec)
        return rng.integers(lo, hi + 1, size=J, dtype=np.int64)
    return rng.choice(saeb_school_sizes(), size=J, replace=True).astype(np.int64)


def n_inconsistent(share: float, J: int) -> int:
    """``floor(share J)``, robust to float round-off (0.29 * 100 -> 29, not 28)."""
    return int(math.floor(share * J + 1e-9))


def draw_indicators(share: float, J: int, count_mode: str, rng: np.random.Generator) -> np.ndarray:
    """``delta`` (J,) bool: exactly ``floor(share J)`` at random positions ("exact") or
    independent ``Bernoulli(share)`` ("bernoulli")."""
    if count_mode == "bernoulli":
        return rng.random(J) < share
    delta = np.zeros(J, dtype=bool)
    delta[rng.permutation(J)[: n_inconsistent(share, J)]] = True
    return delta


def correlated_slab(z_u: np.ndarray, z_t: np.ndarray, scale: float, rho: float) -> np.ndarray:
    """``s = scale (rho z_u + sqrt(1 - rho^2) z_t)``: N(0, scale^2) with corr(z_u, s) = rho."""
    return scale * (rho * z_u + math.sqrt(1.0 - rho * rho) * z_t)


def slab_effects(slab: np.ndarray, delta: np.ndarray, direction: str) -> np.ndarray:
    """``t_j = delta_j s_j`` with the sign folded by ``direction``."""
    if direction == "more_variable":
        slab = np.abs(slab)
    elif direction == "more_consistent":
        slab = -np.abs(slab)
    return np.where(delta, slab, 0.0)


def fixed_effects(slab: np.ndarray, delta: np.ndarray, magnitude: float, direction: str) -> np.ndarray:
    """``|t_j| = magnitude`` for ``delta_j``; with ``direction="both"`` the upper half of the
    inconsistent groups by latent ``s_j`` is positive, the lower half negative, an odd middle
    group takes ``sign(s_j)``."""
    sign = np.zeros(slab.shape)
    idx = np.flatnonzero(delta)
    if direction == "more_variable":
        sign[idx] = 1.0
    elif direction == "more_consistent":
        sign[idx] = -1.0
    else:
        order = idx[np.argsort(slab[idx])]  # ascending latent draw
        half = len(order) // 2
        sign[order[:half]] = -1.0
        sign[order[len(order) - half :]] = 1.0
        if len(order) % 2:
            mid = order[half]
            sign[mid] = 1.0 if slab[mid] >= 0 else -1.0
    return magnitude * sign


def _streams(seed, n: int) -> list[np.random.Generator]:
    """``n`` independent child generators. An int or ``SeedSequence`` is never mutated (so
    the same seed always gives the same streams); a ``Generator`` is advanced."""
    if isinstance(seed, np.random.Generator):
        ss = np.random.SeedSequence(seed.integers(0, 2**63, size=4))
    elif isinstance(seed, np.random.SeedSequence):
        ss = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key, pool_size=seed.pool_size)
    elif isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)):
        ss = np.random.SeedSequence(int(seed))
    else:
        raise TypeError(f"generate: seed must be an int, SeedSequence or Generator, got {seed!r}")
    return [np.random.default_rng(child) for child in ss.spawn(n)]


def _group_effects(spec: GeneratorSpec, rng_re, rng_ind):
    """``(u, t, delta, slab, params)`` for the truth or prior mode."""
    J = spec.n_groups
    z_u, z_t = rng_re.standard_normal((2, J))
    if spec.mode == "prior":
        tau_u = float(SDPrior.parse(spec.prior_location_sd).sample(rng_re))
        tau_t = float(SDPrior.parse(spec.prior_scale_sd).sample(rng_re))
        rho = float(rng_re.uniform(-1.0, 1.0))
        pi = float(BetaPrior.parse(spec.pi).sample(rng_ind)) if isinstance(spec.pi, str) else spec.pi
        delta = rng_ind.random(J) < pi
        slab = correlated_slab(z_u, z_t, tau_t, rho)
        t = np.where(delta, slab, 0.0)
        params = dict(tau_u=tau_u, tau_t=tau_t, rho=rho, pi=pi, magnitude=math.nan)
    else:
        tau_u, rho = spec.tau_u, spec.rho
        delta = draw_indicators(spec.share_inconsistent, J, spec.count_mode, rng_ind)
        slab = correlated_slab(z_u, z_t, spec.slab_sd, rho)
        if spec.effect == "slab":
            t = slab_effects(slab, delta, spec.direction)
            params = dict(tau_u=tau_u, tau_t=spec.slab_sd, rho=rho, pi=math.nan, magnitude=math.nan)
        else:
            t = fixed_effects(slab, delta, spec.magnitude, spec.direction)
            params = dict(tau_u=tau_u, tau_t=math.nan, rho=rho, pi=math.nan, magnitude=spec.magnitude)
    params.update(share_inconsistent=float(delta.mean()), n_inconsistent=int(delta.sum()))
    return tau_u * z_u, t, delta, slab, params
