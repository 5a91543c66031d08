"""MELSM data with known truth.

For groups ``j = 0..J-1`` with ``n_j`` observations each::

    y_ij        ~ N(mu_ij, sigma_ij)
    mu_ij       = gamma0 + u_j        [+ beta_within  xw_ij + beta_between xb_j]
    log sigma_ij = eta0  + t_j        [+ eta_within   xw_ij + eta_between  xb_j]

``u_j = tau_u z_u,j``; the scale effect ``t_j`` is exactly 0 for consistent groups
(``delta_j = 0``) and for inconsistent groups (``delta_j = 1``) either

* ``effect="slab"`` (the published study): ``t_j = s_j``, the slab draw
  ``s_j = slab_sd (rho z_u,j + sqrt(1 - rho^2) z_t,j)`` so ``corr(u_j, s_j) = rho``;
  ``direction`` folds its sign: ``"both"`` keeps it, ``"more_variable"`` uses ``|s_j|``,
  ``"more_consistent"`` ``-|s_j|``; or
* ``effect="fixed"``: ``|t_j| = magnitude``. With ``direction="both"`` exactly half the
  inconsistent groups get ``+magnitude``: the groups are ranked by their latent slab
  draw ``s_j`` and the upper half is positive, the lower half negative (with ``k`` odd the
  middle group takes the sign of its own ``s_j``). With ``rho = 0`` this is a uniformly
  random balanced assignment; with ``rho != 0`` the signs are correlated with ``u_j``, which
  is the only way ``rho`` enters the fixed mode.

``mode="prior"`` draws the truth from the SS-MELSM's own prior instead (for calibration
checks): ``delta_j ~ Bernoulli(pi)`` (with ``pi = "beta(a, b)"`` each dataset first draws
its own ``pi ~ Beta(a, b)``, as the model with a Beta hyperprior assumes), ``tau_u ~ prior_location_sd``, ``tau_t ~
prior_scale_sd``, ``rho ~ U(-1, 1)`` (LKJ(1) in two dimensions) and
``t_j = delta_j tau_t (rho z_u,j + sqrt(1 - rho^2) z_t,j)``; ``share_inconsistent``,
``count_mode``, ``effect``, ``slab_sd``, ``magnitude``, ``direction``, ``tau_u`` and ``rho``
are then ignored.

Every random component (sizes, random effects, indicators, covariates, noise) has its own
child stream spawned from the seed, so e.g. changing ``share_inconsistent`` leaves the group
sizes, ``u`` and the noise unchanged for the same seed. Only local generators are used.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from simstudy.model.data import MelsmData
from simstudy.model.priors import BetaPrior, PriorError, SDPrior, parse_pi

SIZE_DISTS = ("balanced", "poisson", "uniform", "saeb")
COUNT_MODES = ("exact", "bernoulli")
EFFECTS = ("slab", "fixed")
DIRECTIONS = ("both", "more_variable", "more_consistent")
MODES = ("truth", "prior")
COVARIATE_NAMES = ("Intercept", "x_within", "x_between")


class SpecError(ValueError):
    """An invalid generator specification; the message names the field and the fix."""


def slab_sd_from_ratio(s: float) -> float:
    """Slab SD for a ratio ``s`` of within-group SDs: ``sqrt(log(s^2))``.

    The published study used s = 1.05, 1.10, 1.25, 1.50 -> 0.312, 0.437, 0.668, 0.901.
    """
    s = float(s)
    if not s > 1.0:
        raise SpecError(f"slab_sd_from_ratio: the SD ratio s must exceed 1, got {s}")
    return math.sqrt(math.log(s * s))


# ---------------------------------------------------------------------------- spec
_ALLOWED = {
    "size_dist": SIZE_DISTS,
    "count_mode": COUNT_MODES,
    "effect": EFFECTS,
    "direction": DIRECTIONS,
    "mode": MODES,
}


@dataclass(frozen=True)
class GeneratorSpec:
    """What to generate; see the module docstring for the model. Validated on creation."""

    n_groups: int = 50
    group_size: int = 50
    size_dist: str = "balanced"
    size_min: int | None = None
    size_max: int | None = None
    gamma0: float = 0.0
    tau_u: float = 0.33
    eta0: float = -0.25
    share_inconsistent: float = 0.1
    count_mode: str = "exact"
    effect: str = "slab"
    slab_sd: float = 0.437
    magnitude: float = 0.5
    direction: str = "both"
    rho: float = 0.0
    covariates: bool = False
    x_between_sd: float = 0.0
    x_within_sd: float = 1.0
    beta_within: float = 0.0
    beta_between: float = 0.0
    eta_within: float = 0.0
    eta_between: float = 0.0
    mode: str = "truth"
    pi: float | str = 0.5  # a number, or "beta(a, b)" (prior mode draws pi per dataset)
    prior_location_sd: str = "half_normal(0.5)"
    prior_scale_sd: str = "half_normal(0.5)"

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        for name, allowed in _ALLOWED.items():
            if getattr(self, name) not in allowed:
                raise SpecError(f"{name}: unknown value {getattr(self, name)!r}; use one of {list(allowed)}")
        for name in ("prior_location_sd", "prior_scale_sd"):
            try:
                object.__setattr__(self, name, str(SDPrior.parse(getattr(self, name))))
            except PriorError as err:
                raise SpecError(f"{name}: {err}") from None
        self._check_ranges()

    def _check_ranges(self):
        def need(ok: bool, name: str, rule: str):
            if not ok:
                raise SpecError(f"{name} = {getattr(self, name)!r}: {rule}")

        need(self.n_groups >= 2, "n_groups", "a multilevel model needs at least 2 groups; set n_groups >= 2")
        need(self.group_size >= 1, "group_size", "every group needs an observation; set group_size >= 1")
        if self.size_dist == "poisson":
            need(self.group_size >= 2, "group_size", "size_dist='poisson' draws Poisson(n-2)+2; set group_size >= 2")
        for name in ("size_min", "size_max"):
            need(getattr(self, name) is None or getattr(self, name) >= 1, name, "group sizes must be >= 1")
        lo, hi = uniform_bounds(self)
        need(lo <= hi, "size_min", f"must not exceed size_max (resolved bounds [{lo}, {hi}])")
        need(self.tau_u >= 0, "tau_u", "an SD; set tau_u >= 0")
        need(0.0 <= self.share_inconsistent <= 1.0, "share_inconsistent", "a share; set it within [0, 1]")
        need(self.slab_sd > 0, "slab_sd", "the slab SD must be > 0 (use share_inconsistent = 0 for no effects)")
        need(self.magnitude > 0, "magnitude", "|t_j| must be > 0 (use share_inconsistent = 0 for no effects)")
        need(abs(self.rho) < 1, "rho", "a correlation; set -1 < rho < 1")
        need(self.x_within_sd >= 0, "x_within_sd", "an SD; set x_within_sd >= 0")
        need(self.x_between_sd >= 0, "x_between_sd", "an SD; set x_between_sd >= 0")
        if self.covariates:
            need(self.x_within_sd > 0, "x_within_sd", "covariates=true needs x_within_sd > 0 (else x_within is all 0)")
            need(self.x_between_sd > 0, "x_between_sd", "covariates=true needs x_between_sd > 0 (else x_between is all 0)")
        if not isinstance(self.pi, str):
            need(0.0 < self.pi < 1.0, "pi", "a prior inclusion probability; set 0 < pi < 1")

    def replace(self, **changes) -> "GeneratorSpec":
        return spec_from_dict({**asdict(self), **changes})


def _coerce(name: str, kind: str, value):
    """Check a field's type (naming the field) and normalise it (int/float/str/bool)."""
    if name == "pi":
        if isinstance(value, (bool, np.bool_)):
            raise SpecError(f"pi: expected a number in (0, 1) or 'beta(a, b)', got {value!r}")
        if isinstance(value, str):
            try:
                parsed = parse_pi(value)
            except PriorError as err:
                raise SpecError(str(err)) from None
            return str(parsed) if isinstance(parsed, BetaPrior) else parsed
    optional = kind.endswith("| None")
    base = kind.split("|")[0].strip()
    if value is None and optional:
        return None
    if base == "int":
        if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
            return int(value)
        raise SpecError(f"{name}: expected an integer, got {value!r} ({type(value).__name__})")
    if base == "float":
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value):
            return float(value)
        raise SpecError(f"{name}: expected a finite number, got {value!r} ({type(value).__name__})")
    if base == "bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise SpecError(f"{name}: expected true or false, got {value!r} ({type(value).__name__})")
    if isinstance(value, SDPrior) and name.startswith("prior_"):
        return str(value)
    if isinstance(value, str):  # str fields
        return value.strip() if name.startswith("prior_") else value.strip().lower()
    raise SpecError(f"{name}: expected text, got {value!r} ({type(value).__name__})")


def spec_from_dict(d) -> GeneratorSpec:
    """Build a :class:`GeneratorSpec` from a mapping (e.g. a TOML table).

    Unknown keys raise :class:`SpecError` with a "did you mean" suggestion.
    """
    known = [f.name for f in fields(GeneratorSpec)]
    for key in d:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {known}"
            raise SpecError(f"{key}: unknown generator setting{hint}")
    return GeneratorSpec(**dict(d))


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


def generate(spec: GeneratorSpec, seed) -> tuple[MelsmData, Truth]:
    """One dataset and its truth. ``seed``: int, ``SeedSequence`` or ``Generator`` (a
    Generator is advanced). Same spec and seed give identical arrays."""
    rng_size, rng_re, rng_ind, rng_cov, rng_eps = _streams(seed, 5)
    J = spec.n_groups
    sizes = draw_group_sizes(spec, rng_size)
    u, t, delta, slab, params = _group_effects(spec, rng_re, rng_ind)
    g = np.repeat(np.arange(J), sizes)
    N = g.shape[0]

    mu = spec.gamma0 + u[g]
    log_sigma = spec.eta0 + t[g]
    xb = np.zeros(J)
    if spec.covariates:
        xb = spec.x_between_sd * rng_cov.standard_normal(J)
        xw = spec.x_within_sd * rng_cov.standard_normal(N)
        mu += spec.beta_within * xw + spec.beta_between * xb[g]
        log_sigma += spec.eta_within * xw + spec.eta_between * xb[g]
    y = mu + np.exp(log_sigma) * rng_eps.standard_normal(N)

    if spec.covariates:
        design = np.column_stack([np.ones(N), xw, xb[g]])
        names = list(COVARIATE_NAMES)
    else:
        design, names = np.ones((N, 1)), ["Intercept"]
    data = MelsmData.from_arrays(
        y,
        g,
        design,
        np.ones((N, 1)),
        design,
        np.ones((N, 1)),
        x_names=names,
        z_loc_names=["Intercept"],
        w_names=names,
        z_scale_names=["Intercept"],
        group_labels=np.arange(J),
        response="y",
        group_name="group",
        meta={"generator_spec": asdict(spec)},
    )
    params.update(
        gamma0=spec.gamma0,
        eta0=spec.eta0,
        beta_within=spec.beta_within if spec.covariates else 0.0,
        beta_between=spec.beta_between if spec.covariates else 0.0,
        eta_within=spec.eta_within if spec.covariates else 0.0,
        eta_between=spec.eta_between if spec.covariates else 0.0,
    )
    truth = Truth(
        delta=delta,
        t=t,
        u=u,
        sigma=np.exp(spec.eta0 + t),
        group_sizes=sizes,
        slab=slab,
        x_between=xb,
        params=params,
    )
    return data, truth


def generate_many(spec: GeneratorSpec, seeds) -> list[tuple[MelsmData, Truth]]:
    """``[generate(spec, s) for s in seeds]``."""
    return [generate(spec, s) for s in seeds]


# ---------------------------------------------------------------------------- files
def _write_atomic(frame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            frame.to_csv(fh, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(data: MelsmData, truth: Truth, out_dir) -> tuple[Path, Path]:
    """Write ``data.csv`` (group, y, covariate columns) and ``truth.csv`` (group, n, delta
    as 0/1, t, u, sigma) into ``out_dir`` atomically, for fitting the same data with R's ivd.
    Returns the two paths."""
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = {"group": data.group_labels[data.group], "y": data.y}
    for M, names in ((data.X, data.x_names), (data.W, data.w_names)):
        for k, name in enumerate(names):
            if name != "Intercept" and name not in cols:
                cols[name] = M[:, k]
    tf = truth.to_frame()[["group", "n", "delta", "t", "u", "sigma"]].astype({"delta": np.int8})
    paths = out / "data.csv", out / "truth.csv"
    _write_atomic(pd.DataFrame(cols), paths[0])
    _write_atomic(tf, paths[1])
    return paths
