"""Prior specification for the SS-MELSM.

Defaults follow the R package ivd:

* location intercept ``N(mean(y), 3 sd(y))``; other location fixed effects ``N(0, 1000)``
  (ivd's very vague choice; ``location_fixed_sd`` makes it tighter);
* scale fixed effects ``N(0, 3)``;
* every random-effect SD half-Student-t(3, 0, 1); LKJ(1) correlation; ``pi = 0.5``.

``pi`` is either a number in (0, 1) (fixed prior inclusion probability) or a Beta
hyperprior written ``"beta(a, b)"`` (:class:`BetaPrior`): then pi is a parameter, the data
set it, and the multiplicity penalty grows with the number of groups (Scott & Berger 2010).
Bayes factors under a Beta prior use the prior odds of its mean, ``a / b``.

SD priors are written compactly, as in design files: ``"half_t(3, 1)"`` (df, scale),
``"half_normal(0.5)"`` (scale), ``"half_cauchy(1)"`` (scale), ``"exponential(1)"`` (rate).
Every *value* here (pi, scales, df, LKJ eta, prior SDs and the family itself) reaches the
compiled sampler as a runtime array, so sweeping any of them reuses one compiled program.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

#: family name -> (code used inside the compiled model, parameter names)
SD_FAMILIES: dict[str, tuple[int, tuple[str, ...]]] = {
    "half_t": (0, ("df", "scale")),
    "half_normal": (1, ("scale",)),
    "half_cauchy": (2, ("scale",)),
    "exponential": (3, ("rate",)),
}
_ALIASES = {
    "half_student_t": "half_t",
    "halft": "half_t",
    "student_t": "half_t",
    "halfnormal": "half_normal",
    "normal": "half_normal",
    "halfcauchy": "half_cauchy",
    "cauchy": "half_cauchy",
    "exp": "exponential",
}


class PriorError(ValueError):
    """An invalid prior specification; the message names the field and the fix."""


@dataclass(frozen=True)
class SDPrior:
    """Prior on a random-effect standard deviation ``tau > 0``."""

    family: str = "half_t"
    params: tuple[float, ...] = (3.0, 1.0)

    def __post_init__(self):
        fam = _ALIASES.get(self.family, self.family)
        if fam not in SD_FAMILIES:
            raise PriorError(f"unknown SD prior family {self.family!r}; use one of {sorted(SD_FAMILIES)}")
        _, names = SD_FAMILIES[fam]
        params = tuple(float(p) for p in self.params)
        if len(params) != len(names):
            usage = f"{fam}({', '.join(names)})"
            raise PriorError(f"{fam} takes {len(names)} parameter(s) {names}, got {len(params)}; write {usage}")
        for name, value in zip(names, params):
            if not (math.isfinite(value) and value > 0):
                raise PriorError(f"{fam}: parameter {name} must be a positive number, got {value}")
        object.__setattr__(self, "family", fam)
        object.__setattr__(self, "params", params)

    @classmethod
    def parse(cls, text: "str | SDPrior") -> "SDPrior":
        """Parse ``"half_t(3, 1)"``-style text."""
        if isinstance(text, SDPrior):
            return text
        if not isinstance(text, str):
            raise PriorError(f"an SD prior must be text like 'half_t(3, 1)', got {text!r}")
        m = re.fullmatch(r"\s*([A-Za-z_]+)\s*\(\s*([^()]*)\)\s*", text)
        if not m:
            raise PriorError(
                f"cannot read SD prior {text!r}; write e.g. 'half_t(3, 1)', 'half_normal(0.5)', "
                "'half_cauchy(1)' or 'exponential(1)'"
            )
        name = m.group(1).lower()
        try:
            params = tuple(float(p) for p in m.group(2).split(",") if p.strip())
        except ValueError:
            raise PriorError(f"SD prior {text!r}: parameters must be numbers") from None
        return cls(name, params)

    @property
    def code(self) -> int:
        return SD_FAMILIES[self.family][0]

    def as_array(self) -> np.ndarray:
        """``[code, p1, p2]`` with unused slots filled with 1 (safe values)."""
        p = list(self.params) + [1.0] * (2 - len(self.params))
        return np.array([self.code, p[0], p[1]], dtype=np.float64)

    def __str__(self) -> str:
        return f"{self.family}({', '.join(f'{p:g}' for p in self.params)})"

    def sample(self, rng: np.random.Generator, size=None) -> np.ndarray:
        """Draws from the prior (used by prior-matched data generation)."""
        if self.family == "half_t":
            df, s = self.params
            return np.abs(rng.standard_t(df, size=size)) * s
        if self.family == "half_normal":
            return np.abs(rng.standard_normal(size=size)) * self.params[0]
        if self.family == "half_cauchy":
            return np.abs(rng.standard_cauchy(size=size)) * self.params[0]
        return rng.exponential(1.0 / self.params[0], size=size)

    def logpdf(self, tau) -> np.ndarray:
        """Log density on ``tau > 0`` (NumPy reference for tests)."""
        from scipy import stats

        tau = np.asarray(tau, dtype=float)
        if self.family == "half_t":
            df, s = self.params
            return math.log(2) + stats.t.logpdf(tau, df, scale=s)
        if self.family == "half_normal":
            return stats.halfnorm.logpdf(tau, scale=self.params[0])
        if self.family == "half_cauchy":
            return stats.halfcauchy.logpdf(tau, scale=self.params[0])
        return stats.expon.logpdf(tau, scale=1.0 / self.params[0])


#: bounds on ``beta(a, b)`` for pi. Each parameter >= 0.1: below it the Beta piles its mass at 0 or
#: 1 and is nearly improper on the logit scale NUTS samples (divergences from a = 0.05 on in
#: tests). ``a + b`` <= 1e6: the prior SD of pi is at most 0.5 / sqrt(a + b + 1) = 5e-4 there,
#: a fixed pi for any purpose (fits stopped mixing from a + b ~ 1e10, diverged from 1e20 on).
BETA_MIN_PARAM = 0.1
BETA_MAX_SUM = 1e6


@dataclass(frozen=True)
class BetaPrior:
    """Beta(a, b) hyperprior on the prior inclusion probability pi (``"beta(1, 1)"``)."""

    a: float = 1.0
    b: float = 1.0

    def __post_init__(self):
        for name in ("a", "b"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise PriorError(f"pi = beta(a, b): {name} must be a positive number, got {value}; write e.g. 'beta(1, 1)'")
            object.__setattr__(self, name, value)
        for name in ("a", "b"):
            value = getattr(self, name)
            if value < BETA_MIN_PARAM:
                raise PriorError(
                    f"pi = beta({self.a:g}, {self.b:g}): {name} = {value:g} is below {BETA_MIN_PARAM:g}; such a prior "
                    f"puts nearly all its mass at pi = {'0' if name == 'a' else '1'} and is nearly flat on the logit "
                    "scale the sampler works on (divergent transitions); use e.g. beta(0.5, 0.5) or beta(1, 1)")
        if self.a + self.b > BETA_MAX_SUM:
            raise PriorError(
                f"pi = beta({self.a:g}, {self.b:g}): a + b exceeds {BETA_MAX_SUM:g}; the prior SD of pi is then "
                f"below {0.5 / math.sqrt(BETA_MAX_SUM + 1):.0e}, so pi is fixed in all but name (and too narrow for "
                f"the sampler): give the fixed value instead, pi = {1.0 / (1.0 + self.b / self.a):.6g}")

    @classmethod
    def parse(cls, text: "str | BetaPrior") -> "BetaPrior":
        """Parse ``"beta(a, b)"`` (case and spaces free)."""
        if isinstance(text, BetaPrior):
            return text
        m = re.fullmatch(r"\s*beta\s*\(\s*([^,()]+),([^,()]+)\)\s*", str(text), flags=re.IGNORECASE)
        if not m:
            raise PriorError(f"pi: cannot read {text!r}; write a number in (0, 1) such as 0.5, or a Beta "
                             "hyperprior such as 'beta(1, 1)'")
        try:
            a, b = float(m.group(1)), float(m.group(2))
        except ValueError:
            raise PriorError(f"pi: {text!r}: the Beta parameters must be numbers, e.g. 'beta(1, 9)'") from None
        return cls(a, b)

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)

    def sample(self, rng: np.random.Generator, size=None) -> np.ndarray:
        return rng.beta(self.a, self.b, size=size)

    def __str__(self) -> str:
        return f"beta({self.a:g}, {self.b:g})"


def parse_pi(value) -> "float | BetaPrior":
    """A fixed pi (number strictly in (0, 1), also given as text like ``"0.25"``) or a
    :class:`BetaPrior` (``"beta(a, b)"``); anything else raises :class:`PriorError`."""
    if isinstance(value, BetaPrior):
        return value
    if isinstance(value, bool):
        raise PriorError(f"pi must be a number in (0, 1) or 'beta(a, b)', got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return BetaPrior.parse(value)
    try:
        return _check_unit("pi", value)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PriorError):
            raise
        raise PriorError(f"pi must be a number in (0, 1) or 'beta(a, b)', got {value!r}") from None


def pi_mean(pi) -> float:
    """The prior mean of pi: the number itself, or ``a / (a + b)`` for ``beta(a, b)``
    (numeric arrays pass through unchanged)."""
    if isinstance(pi, np.ndarray) and pi.dtype.kind in "fiu" and pi.ndim > 0:
        return pi.astype(float)
    pi = parse_pi(pi)
    return pi.mean if isinstance(pi, BetaPrior) else float(pi)


def pi_label(pi) -> str:
    """Canonical text of a pi setting: ``"0.5"`` or ``"beta(1, 1)"``."""
    pi = parse_pi(pi)
    return str(pi) if isinstance(pi, BetaPrior) else f"{pi:g}"


def _check_unit(name: str, value: float) -> float:
    value = float(value)
    if not (0.0 < value < 1.0):
        raise PriorError(f"{name} must lie strictly between 0 and 1, got {value}")
    return value


def _check_pos(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise PriorError(f"{name} must be a positive number, got {value}")
    return value


@dataclass(frozen=True)
class Priors:
    """All prior settings of the SS-MELSM (ivd's defaults).

    ``location_intercept_mean``/``location_intercept_sd`` of ``None`` mean "from the data":
    ``mean(y)`` and ``3 sd(y)``. ``correlated=False`` drops the LKJ correlation (independent
    random effects, the authors' simulation model); that choice changes the program's
    structure, every other value is a runtime input.
    """

    pi: "float | BetaPrior" = 0.5
    location_sd: SDPrior = field(default_factory=SDPrior)
    scale_sd: SDPrior = field(default_factory=SDPrior)
    lkj_eta: float = 1.0
    location_intercept_mean: float | None = None
    location_intercept_sd: float | None = None
    location_fixed_sd: float = 1000.0
    scale_fixed_sd: float = 3.0
    correlated: bool = True

    def __post_init__(self):
        object.__setattr__(self, "pi", parse_pi(self.pi))
        object.__setattr__(self, "location_sd", SDPrior.parse(self.location_sd))
        object.__setattr__(self, "scale_sd", SDPrior.parse(self.scale_sd))
        object.__setattr__(self, "lkj_eta", _check_pos("lkj_eta", self.lkj_eta))
        object.__setattr__(self, "location_fixed_sd", _check_pos("location_fixed_sd", self.location_fixed_sd))
        object.__setattr__(self, "scale_fixed_sd", _check_pos("scale_fixed_sd", self.scale_fixed_sd))
        if self.location_intercept_sd is not None:
            object.__setattr__(self, "location_intercept_sd", _check_pos("location_intercept_sd", self.location_intercept_sd))

    def replace(self, **changes) -> "Priors":
        return replace(self, **changes)

    @property
    def pi_is_beta(self) -> bool:
        """True when pi has a Beta hyperprior (a sampled parameter)."""
        return isinstance(self.pi, BetaPrior)

    @property
    def pi_mean(self) -> float:
        """Prior mean of pi (the fixed value, or ``a / (a + b)``)."""
        return pi_mean(self.pi)

    @property
    def prior_odds(self) -> float:
        """Prior odds of inclusion used by BF10: ``pi / (1 - pi)``, or ``a / b`` (the odds of
        the prior mean) under ``beta(a, b)``."""
        return self.pi_mean / (1.0 - self.pi_mean)

    def describe(self) -> dict:
        return {
            "pi": self.pi if not self.pi_is_beta else str(self.pi),
            "location_sd": str(self.location_sd),
            "scale_sd": str(self.scale_sd),
            "lkj_eta": self.lkj_eta,
            "location_fixed_sd": self.location_fixed_sd,
            "scale_fixed_sd": self.scale_fixed_sd,
            "correlated": self.correlated,
        }


def bayes_factor(pip, pi) -> np.ndarray:
    """BF10 = posterior odds / prior odds = [PIP/(1-PIP)] / [pi/(1-pi)]; a ``beta(a, b)`` pi
    uses its mean's odds ``a / b``."""
    pi = pi_mean(pi)
    pip = np.asarray(pip, dtype=float)
    with np.errstate(divide="ignore"):
        return (pip / (1.0 - pip)) / (pi / (1.0 - pi))


def pip_threshold_for_bf(bf: float, pi) -> float:
    """PIP at which BF10 equals ``bf``: ``bf pi / (1 - pi + bf pi)`` (3pi/(1+2pi) for BF 3);
    a ``beta(a, b)`` pi uses its mean."""
    pi = pi_mean(pi)
    return bf * pi / (1.0 - pi + bf * pi)
