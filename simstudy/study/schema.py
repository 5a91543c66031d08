"""The table of design settings: every key a design file may set, its namespace, type,
default and check.

Setting names are unqualified and each belongs to exactly one namespace (see
:data:`SETTINGS`, or ``describe_settings()``):

* generator: n_groups, group_size, size_dist, size_min, size_max, gamma0, tau_u, eta0,
  share_inconsistent, count_mode, effect, slab_sd, magnitude, direction, rho, covariates,
  x_between_sd, x_within_sd, beta_within, beta_between, eta_within, eta_between, mode,
  prior_pi, prior_location_sd, prior_scale_sd; longitudinal layout: layout, gamma1, tau_u1,
  rho_u01, eta1, phi, dropout, dropout_monotone, location_random_slope, scale_time. (``prior_pi`` is GeneratorSpec's ``pi``,
  the inclusion probability used when ``mode = "prior"``; it is renamed here because
  ``pi`` is the model's prior inclusion probability.)
* model: pi, location_sd, scale_sd, lkj_eta, correlated, location_fixed_sd,
  scale_fixed_sd, location_intercept_mean, location_intercept_sd.
* mcmc: chains, warmup, draws, target_accept, max_tree_depth, max_extensions.

``pi`` and ``prior_pi`` are a number in (0, 1) or a Beta hyperprior ``"beta(a, b)"`` (text,
stored in canonical form ``"beta(1, 1)"``; numbers stay numbers, so designs without a Beta
level hash as before); a factor may mix them: ``pi = [0.1, 0.5, "beta(1, 1)"]``. With
``mode = "prior"`` and ``prior_pi`` not set anywhere in the design, a cell's ``prior_pi``
is its model ``pi`` (prior-matched data: under ``beta(a, b)`` each dataset draws its own pi).

Rules: ints are accepted for float settings, bools never for numbers; SD priors are text
read by :meth:`simstudy.model.priors.SDPrior.parse` and stored in canonical form
(``"half_t(3, 1)"``); a factor may not also be set in a fixed section; factor levels must be
distinct; an exclusion may only name factors, only with values that are levels of them, and
must match at least one grid cell (anything else is probably a typo); the design must have
at least one cell. Settings not given take the library defaults (the ``default`` column of
:data:`SETTINGS`, equal to GeneratorSpec's / Priors' defaults), and every cell carries its
*full* settings so the store records every value used.

"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from typing import Any, Callable


class DesignError(ValueError):
    """An invalid design. ``problems`` lists every problem found, each naming its key path."""

    def __init__(self, problems: list[str] | str, source: str = "<string>"):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        if len(self.problems) == 1:
            msg = f"invalid design {source}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            msg = f"invalid design {source} ({len(self.problems)} problems):\n{lines}"
        super().__init__(msg)



# --------------------------------------------------------------------------------------
# the table of known settings
# --------------------------------------------------------------------------------------


class _Bad(Exception):
    """A value check failed; the message completes '<path>: <value> ...'."""


@dataclass(frozen=True)
class Setting:
    """One known setting: its namespace, the field name there, type, default and range."""

    name: str  # name in design files
    namespace: str  # "generator" | "model" | "mcmc"
    field: str  # keyword for GeneratorSpec / Priors / the mcmc dict
    kind: str  # "int" | "float" | "str" | "bool" | "sd_prior"
    default: Any
    check: Callable[[Any], None] | None = None  # raises _Bad(reason)
    choices: tuple[str, ...] | None = None
    doc: str = ""

    def normalize(self, value: Any) -> Any:
        """Type-check and canonicalise one value; raises _Bad with the reason."""
        kind = self.kind
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise _Bad(f"{value!r} is not an integer ({_typename(value)}); write e.g. {self.name} = {_example(self)}")
            out: Any = value
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _Bad(f"{value!r} is not a number ({_typename(value)}); write e.g. {self.name} = {_example(self)}")
            out = float(value)
            if not math.isfinite(out):
                raise _Bad(f"{value!r} is not a finite number")
        elif kind == "bool":
            if not isinstance(value, bool):
                raise _Bad(f"{value!r} is not a boolean ({_typename(value)}); write true or false (lower case, no quotes)")
            out = value
        elif kind == "str":
            if not isinstance(value, str):
                raise _Bad(f"{value!r} is not text ({_typename(value)}); use one of {_fmt_choices(self.choices)}")
            if self.choices and value not in self.choices:
                hint = difflib.get_close_matches(value, self.choices, n=1)
                dym = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise _Bad(f"{value!r} is not one of {_fmt_choices(self.choices)}{dym}")
            out = value
        elif kind == "pi_prior":
            from ..model.priors import BetaPrior, PriorError

            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise _Bad(f"{value!r} is not a number or text ({_typename(value)}); write e.g. {self.name} = 0.5 "
                           f"or {self.name} = \"beta(1, 1)\"")
            if isinstance(value, str):
                try:
                    parsed = BetaPrior.parse(value)
                except PriorError as exc:
                    raise _Bad(f"{value!r}: {exc}") from None
                return str(parsed)
            out = float(value)
            if not math.isfinite(out):
                raise _Bad(f"{value!r} is not a finite number")
        elif kind == "sd_prior":
            from ..model.priors import PriorError, SDPrior

            try:
                out = str(SDPrior.parse(value))
            except PriorError as exc:
                raise _Bad(f"{value!r}: {exc}") from None
        else:  # pragma: no cover - table error
            raise AssertionError(kind)
        if self.check is not None:
            self.check(out)
        return out


def _typename(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "text", list: "a list", dict: "a table"}.get(
        type(value), type(value).__name__
    )


def _fmt_choices(choices) -> str:
    return ", ".join(repr(c) for c in choices or ())


def _example(s: Setting) -> str:
    d = s.default
    if d is None:
        return "10" if s.kind == "int" else "1.0"
    return json.dumps(d)


def _gt(lo: float) -> Callable[[Any], None]:
    def check(v):
        if not v > lo:
            raise _Bad(f"{v!r} must be > {lo:g}")

    return check


def _ge(lo: float) -> Callable[[Any], None]:
    def check(v):
        if not v >= lo:
            raise _Bad(f"{v!r} must be >= {lo:g}")

    return check


def _open(lo: float, hi: float) -> Callable[[Any], None]:
    def check(v):
        if not lo < v < hi:
            raise _Bad(f"{v!r} is outside ({lo:g}, {hi:g})")

    return check


def _closed(lo: float, hi: float) -> Callable[[Any], None]:
    def check(v):
        if not lo <= v <= hi:
            raise _Bad(f"{v!r} is outside [{lo:g}, {hi:g}]")

    return check


def _S(name, ns, kind, default, check=None, choices=None, doc="", field_name=None) -> Setting:
    return Setting(name, ns, field_name or name, kind, default, check, choices, doc)


_G, _M, _C = "generator", "model", "mcmc"

#: Every setting a design may name: design name -> Setting.
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        # generator (GeneratorSpec)
        _S("n_groups", _G, "int", 50, _ge(2), doc="number of groups J (>= 2)"),
        _S("group_size", _G, "int", 50, _ge(1), doc="observations per group n (mean size when ragged)"),
        _S("size_dist", _G, "str", "balanced", choices=("balanced", "poisson", "uniform", "saeb"),
           doc="group sizes: balanced, poisson (Poisson(n-2)+2), uniform(size_min, size_max), saeb"),
        _S("size_min", _G, "int", None, _ge(1), doc="smallest group (ragged sizes)"),
        _S("size_max", _G, "int", None, _ge(1), doc="largest group (ragged sizes)"),
        _S("gamma0", _G, "float", 0.0, doc="location intercept"),
        _S("tau_u", _G, "float", 0.33, _ge(0), doc="SD of the location random intercepts (>= 0)"),
        _S("eta0", _G, "float", -0.25, doc="scale intercept (log residual SD)"),
        _S("share_inconsistent", _G, "float", 0.1, _closed(0, 1), doc="share of groups with a scale effect, in [0, 1]"),
        _S("count_mode", _G, "str", "exact", choices=("exact", "bernoulli"),
           doc="exact: round(share J) inconsistent groups; bernoulli: each group independently"),
        _S("effect", _G, "str", "slab", choices=("slab", "fixed"), doc="scale effects from the slab N(0, slab_sd) or fixed magnitude"),
        _S("slab_sd", _G, "float", 0.437, _gt(0), doc="SD of the slab (> 0)"),
        _S("magnitude", _G, "float", 0.5, _gt(0), doc="|scale effect| when effect = 'fixed' (> 0)"),
        _S("direction", _G, "str", "both", choices=("both", "more_variable", "more_consistent"), doc="sign of the scale effects"),
        _S("rho", _G, "float", 0.0, _open(-1, 1), doc="location-scale random-effect correlation, |rho| < 1"),
        _S("covariates", _G, "bool", False, doc="generate a within/between covariate"),
        _S("x_between_sd", _G, "float", 0.0, _ge(0), doc="SD of the covariate's group means (>= 0)"),
        _S("x_within_sd", _G, "float", 1.0, _ge(0), doc="SD of the covariate within groups (>= 0)"),
        _S("beta_within", _G, "float", 0.0, doc="location slope, within"),
        _S("beta_between", _G, "float", 0.0, doc="location slope, between"),
        _S("eta_within", _G, "float", 0.0, doc="scale slope, within"),
        _S("eta_between", _G, "float", 0.0, doc="scale slope, between"),
        _S("mode", _G, "str", "truth", choices=("truth", "prior"), doc="truth: fixed parameters; prior: draw them from the prior"),
        _S("prior_pi", _G, "pi_prior", 0.5, _open(0, 1), field_name="pi",
           doc="inclusion probability for mode = 'prior', in (0, 1), or 'beta(a, b)' (default: the model's pi)"),
        _S("prior_location_sd", _G, "sd_prior", "half_normal(0.5)", doc="location SD prior for mode = 'prior'"),
        _S("prior_scale_sd", _G, "sd_prior", "half_normal(0.5)", doc="scale SD prior for mode = 'prior'"),
        # ---- longitudinal layout (simstudy.study.generate_longitudinal); see OMIT_AT_DEFAULT
        _S("layout", _G, "str", "cross_sectional", choices=("cross_sectional", "longitudinal"),
           doc="cross_sectional: students in schools; longitudinal: persons x occasions (n_groups persons, "
               "group_size occasions T)"),
        _S("gamma1", _G, "float", 0.0, doc="longitudinal: fixed time slope (time = (k-1)/(T-1) in [0, 1])"),
        _S("tau_u1", _G, "float", 0.2, _ge(0), doc="longitudinal: SD of the random time slopes (>= 0)"),
        _S("rho_u01", _G, "float", 0.0, _open(-1, 1), doc="longitudinal: correlation of random intercepts and slopes"),
        _S("eta1", _G, "float", 0.0, doc="longitudinal: time slope of the log residual SD"),
        _S("phi", _G, "float", 0.0, _open(-1, 1), doc="longitudinal: AR(1) coefficient of the residuals, |phi| < 1"),
        _S("dropout", _G, "float", 0.0, _closed(0, 0.5), doc="longitudinal: MCAR share of missing occasions, in [0, 0.5]"),
        _S("dropout_monotone", _G, "float", 0.0, _closed(0, 0.5),
           doc="longitudinal: monotone dropout share of occasions, in [0, 0.5]"),
        _S("location_random_slope", _G, "bool", True,
           doc="longitudinal: fit (1 + time | person) in the location (false: (1 | person))"),
        _S("scale_time", _G, "bool", False, doc="longitudinal: fit a fixed time effect in the scale (per-observation path)"),
        # model (Priors)
        _S("pi", _M, "pi_prior", 0.5, _open(0, 1), doc="prior inclusion probability, in (0, 1), or 'beta(a, b)'"),
        _S("location_sd", _M, "sd_prior", "half_t(3, 1)", doc="prior of the location random-effect SD"),
        _S("scale_sd", _M, "sd_prior", "half_t(3, 1)", doc="prior of the scale random-effect SD (slab)"),
        _S("lkj_eta", _M, "float", 1.0, _gt(0), doc="LKJ shape of the random-effect correlation (> 0)"),
        _S("correlated", _M, "bool", True, doc="model the location-scale correlation"),
        _S("location_fixed_sd", _M, "float", 1000.0, _gt(0), doc="prior SD of location fixed effects (> 0)"),
        _S("scale_fixed_sd", _M, "float", 3.0, _gt(0), doc="prior SD of scale fixed effects (> 0)"),
        _S("location_intercept_mean", _M, "float", None, doc="prior mean of the location intercept (default: mean(y))"),
        _S("location_intercept_sd", _M, "float", None, _gt(0), doc="prior SD of the location intercept (default: 3 sd(y))"),
        # mcmc
        _S("chains", _C, "int", 4, _ge(1), doc="chains per fit (>= 1)"),
        _S("warmup", _C, "int", 1000, _ge(1), doc="warm-up iterations per chain (>= 1)"),
        _S("draws", _C, "int", 1000, _ge(1), doc="kept draws per chain (>= 1)"),
        _S("target_accept", _C, "float", 0.8, _open(0, 1), doc="NUTS target acceptance, in (0, 1)"),
        _S("max_tree_depth", _C, "int", 10, _closed(1, 20), doc="NUTS maximum tree depth, in [1, 20]"),
        _S("max_extensions", _C, "int", 2, _ge(0),
           doc="extensions of a fit failing the convergence rule by another `draws` draws (>= 0)"),
    ]
}

MCMC_DEFAULTS: dict[str, Any] = {s.field: s.default for s in SETTINGS.values() if s.namespace == _C}

#: Settings that change array shapes or the compiled program (plus the block length).
SHAPE_KEYS: tuple[str, ...] = (
    "n_groups",
    "group_size",
    "size_dist",
    "size_min",
    "size_max",
    "covariates",
    "correlated",
    "chains",
    "warmup",
    "draws",
    "target_accept",
    "max_tree_depth",
    "max_extensions",
    # longitudinal layout
    "layout",
    "location_random_slope",
    "scale_time",
)

#: Settings added after designs were first stored: left out of a cell's record in the design
#: hash while at their default, so every existing design keeps its hash (and its stores open).
OMIT_AT_DEFAULT: frozenset[str] = frozenset({
    # automatic extension of unconverged fits (a store run before it resumes with it)
    "max_extensions",
    # longitudinal layout
    "layout", "gamma1", "tau_u1", "rho_u01", "eta1", "phi", "dropout", "dropout_monotone",
    "location_random_slope", "scale_time",
})

_TOP_KEYS = ("name", "description", "seed", "replicates", "block_size", "mcmc", "generator", "model", "factors", "exclude", "extra",
             "methods")

#: the methods a design runs when it names none (``methods = [...]`` at the top level)
DEFAULT_METHODS: tuple[str, ...] = ("ss_melsm",)
_SECTIONS = (_G, _M, _C)


def describe_settings() -> str:
    """A plain-text table of every setting (for ``simstudy`` help and docs)."""
    rows = []
    for ns in _SECTIONS:
        rows.append(f"[{ns}]")
        for s in SETTINGS.values():
            if s.namespace == ns:
                d = "unset" if s.default is None else json.dumps(s.default)
                ch = f" one of {_fmt_choices(s.choices)};" if s.choices else ""
                rows.append(f"  {s.name:<24} {s.kind:<8} default {d:<20}{ch} {s.doc}")
    return "\n".join(rows)


