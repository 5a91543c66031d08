"""Study designs: parse and validate a TOML file, expand it into cells, tasks and seeds.

A design file describes one simulation study. Everything is validated before anything
runs, and every problem found is reported at once in one :class:`DesignError` whose lines
name the key path (``factors.pi[2]: 1.5 is outside (0, 1)``) and the fix.

Schema
------
Top level::

    name = "quickstart"        # optional; default: the file's stem
    description = "..."        # optional, free text
    seed = 20261122            # required: base seed, an integer >= 0
    replicates = 4             # required: data sets per cell, >= 1
    block_size = 2             # optional: replicates per task (one vmapped fit);
                               # default min(replicates, 10); at most `replicates`

    [mcmc]        chains (4), warmup (1000), draws (1000), target_accept (0.8), max_tree_depth (10)
    [generator]   fixed data-generating settings (``simstudy.generate.GeneratorSpec`` fields)
    [model]       fixed prior/model settings (``simstudy.priors.Priors`` fields)
    [factors]     setting = [level, level, ...]    (full factorial, in file order)
    [[exclude]]   setting = level | [levels]        (drop grid cells matching ALL keys;
                                                     a list means "any of")
    [[extra]]     setting = value, ...              (add one explicit cell)

Setting names are unqualified and each belongs to exactly one namespace (see
:data:`SETTINGS`, or ``describe_settings()``):

* generator: n_groups, group_size, size_dist, size_min, size_max, gamma0, tau_u, eta0,
  share_inconsistent, count_mode, effect, slab_sd, magnitude, direction, rho, covariates,
  x_between_sd, x_within_sd, beta_within, beta_between, eta_within, eta_between, mode,
  prior_pi, prior_location_sd, prior_scale_sd. (``prior_pi`` is GeneratorSpec's ``pi``,
  the inclusion probability used when ``mode = "prior"``; it is renamed here because
  ``pi`` is the model's prior inclusion probability.)
* model: pi, location_sd, scale_sd, lkj_eta, correlated, location_fixed_sd,
  scale_fixed_sd, location_intercept_mean, location_intercept_sd.
* mcmc: chains, warmup, draws, target_accept, max_tree_depth.

Rules: ints are accepted for float settings, bools never for numbers; SD priors are text
read by :meth:`simstudy.priors.SDPrior.parse` and stored in canonical form
(``"half_t(3, 1)"``); a factor may not also be set in a fixed section; factor levels must be
distinct; an exclusion may only name factors, only with values that are levels of them, and
must match at least one grid cell (anything else is probably a typo); the design must have
at least one cell. Settings not given take the library defaults (the ``default`` column of
:data:`SETTINGS`, equal to GeneratorSpec's / Priors' defaults), and every cell carries its
*full* settings so the store records every value used.

Cells and ids
-------------
The grid is the product of the factors' levels (first factor slowest), minus exclusions,
plus extras, de-duplicated by id. ``Cell.factors`` is the cell's *identity*: for grid cells
the value of every factor; for an extra cell the value of every factor (from the extra, or
else the fixed/default value) plus every other key the extra sets to a value different from
the fixed/default one. ``cell_id`` is the first 8 bytes of the sha256 of the canonical JSON of
``Cell.factors`` (sorted keys, canonical values), masked to 63 bits. So adding a level to a
factor, or an extra cell, never changes the id, and therefore the seeds, of existing
cells; adding a new factor changes every id (every cell's identity changes). An extra
equal in settings to a grid cell gets the grid cell's id and is merged with it.

Seeds: replicate ``r`` of cell ``c`` uses ``SeedSequence(seed, spawn_key=(c, r))``
(:func:`replicate_seed`), independent of the number of workers, task order and block size.

Hash and comparison
-------------------
``Design.hash`` is the sha256 of the canonical JSON of what determines the numbers: seed,
replicates, block_size (the store's chunks follow it), and every cell's id, identity and
full generator/model/mcmc settings. Comments, whitespace, key order, ``name`` and
``description`` do not change it; neither does rewriting the design in a way that yields
the same cells (e.g. listing a factor's levels in another order).
:func:`compare_designs` says ``"same"``, ``"extends"`` (the new design keeps every old
cell with identical settings, same seed and block size, and only adds cells and/or
replicates — existing (cell, replicate) results stay valid) or ``"changed"``;
:func:`diff_designs` gives the details and an explanation for error messages.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = [
    "DesignError",
    "Setting",
    "SETTINGS",
    "MCMC_DEFAULTS",
    "SHAPE_KEYS",
    "Design",
    "Cell",
    "Task",
    "DesignDiff",
    "load_design",
    "parse_design",
    "replicate_seed",
    "stable_id",
    "tasks",
    "compare_designs",
    "diff_designs",
    "design_to_dict",
    "design_from_dict",
    "describe_settings",
]

_ID_MASK = (1 << 63) - 1


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
        elif kind == "sd_prior":
            from .priors import PriorError, SDPrior

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
        _S("prior_pi", _G, "float", 0.5, _open(0, 1), field_name="pi", doc="inclusion probability for mode = 'prior', in (0, 1)"),
        _S("prior_location_sd", _G, "sd_prior", "half_normal(0.5)", doc="location SD prior for mode = 'prior'"),
        _S("prior_scale_sd", _G, "sd_prior", "half_normal(0.5)", doc="scale SD prior for mode = 'prior'"),
        # model (Priors)
        _S("pi", _M, "float", 0.5, _open(0, 1), doc="prior inclusion probability, in (0, 1)"),
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
)

_TOP_KEYS = ("name", "description", "seed", "replicates", "block_size", "mcmc", "generator", "model", "factors", "exclude", "extra")
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


# --------------------------------------------------------------------------------------
# data classes
# --------------------------------------------------------------------------------------


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def stable_id(values: dict[str, Any]) -> int:
    """63-bit id from the canonical JSON of ``values`` (sorted keys)."""
    digest = hashlib.sha256(_canonical(values).encode()).digest()
    return int.from_bytes(digest[:8], "big") & _ID_MASK


def replicate_seed(base_seed: int, cell_id: int, replicate: int) -> np.random.SeedSequence:
    """The seed of one replicate: ``SeedSequence(base_seed, spawn_key=(cell_id, replicate))``."""
    if base_seed < 0 or cell_id < 0 or replicate < 0:
        raise ValueError("seed, cell id and replicate must be non-negative integers")
    return np.random.SeedSequence(int(base_seed), spawn_key=(int(cell_id), int(replicate)))


@dataclass(frozen=True, eq=True)
class Cell:
    """One combination of settings.

    ``factors`` is the cell's identity (see the module docstring) and ``cell_id`` its hash;
    ``generator`` holds GeneratorSpec keywords, ``model`` Priors keywords, ``mcmc`` the
    sampler settings, all complete (defaults filled in). ``origin`` is ``"grid"`` or
    ``"extra[i]"``.
    """

    cell_id: int
    factors: dict[str, Any]
    generator: dict[str, Any]
    model: dict[str, Any]
    mcmc: dict[str, Any]
    label: str
    origin: str = "grid"

    def __hash__(self) -> int:
        return hash(self.cell_id)

    def get(self, name: str) -> Any:
        """The value of any setting (design name) in this cell."""
        s = SETTINGS[name]
        return getattr(self, s.namespace)[s.field]

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting of the cell, by design name."""
        return {name: self.get(name) for name in SETTINGS}

    def generator_spec(self):
        """``simstudy.generate.GeneratorSpec`` for this cell (imports generate lazily)."""
        from .generate import GeneratorSpec

        return GeneratorSpec(**self.generator)

    def priors(self):
        """``simstudy.priors.Priors`` for this cell."""
        from .priors import Priors

        return Priors(**self.model)

    def seed(self, base_seed: int, replicate: int) -> np.random.SeedSequence:
        return replicate_seed(base_seed, self.cell_id, replicate)


@dataclass(frozen=True)
class Task:
    """One unit of work: some replicates of one cell, fitted together (one vmapped fit)."""

    cell: Cell
    replicates: tuple[int, ...]
    seed: int  # the design's base seed

    @property
    def shape_key(self) -> tuple:
        """Everything that changes array shapes or the compiled program, incl. the block length."""
        return tuple((k, self.cell.get(k)) for k in SHAPE_KEYS) + (("block", len(self.replicates)),)

    @property
    def task_id(self) -> str:
        return f"{self.cell.cell_id}:{self.replicates[0]}-{self.replicates[-1]}"

    def seed_sequences(self) -> list[np.random.SeedSequence]:
        return [replicate_seed(self.seed, self.cell.cell_id, r) for r in self.replicates]


@dataclass(frozen=True)
class Design:
    """A validated study design. Build it with :func:`load_design` / :func:`parse_design`.

    ``generator`` / ``model`` hold the *fixed* settings as written (GeneratorSpec / Priors
    keywords, canonical values); ``mcmc`` is complete. ``factors`` maps design names to
    their levels in file order; ``exclude`` and ``extra`` are as written (canonical values;
    exclusion values as tuples).
    """

    name: str
    description: str
    seed: int
    replicates: int
    block_size: int
    mcmc: dict[str, Any]
    generator: dict[str, Any]
    model: dict[str, Any]
    factors: dict[str, tuple]
    exclude: tuple[dict[str, tuple], ...]
    extra: tuple[dict[str, Any], ...]
    text: str
    source: str
    hash: str
    _cells: tuple[Cell, ...] = field(repr=False, compare=False, default=())

    def cells(self) -> list[Cell]:
        """All cells: the grid in factorial order (first factor slowest), then the extras."""
        return list(self._cells)

    def cell(self, cell_id: int) -> Cell:
        for c in self._cells:
            if c.cell_id == cell_id:
                return c
        raise KeyError(f"no cell {cell_id} in design {self.name!r}")

    @property
    def coords(self) -> list[str]:
        """Names that identify cells: the factors, then any other key set by an extra."""
        names = list(self.factors)
        for c in self._cells:
            for k in c.factors:
                if k not in names:
                    names.append(k)
        return names

    @property
    def n_cells(self) -> int:
        return len(self._cells)

    @property
    def n_fits(self) -> int:
        return len(self._cells) * self.replicates

    def tasks(self) -> list[Task]:
        return tasks(self)


# --------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------


def load_design(path: str | Path) -> Design:
    """Read and validate a design file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DesignError(f"cannot read the design file: {exc}", source=str(path)) from None
    return parse_design(text, source=str(path))


def _suggest(key: str, candidates) -> str:
    hint = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {hint[0]!r}?" if hint else ""


def parse_design(text: str, source: str = "<string>") -> Design:
    """Parse and validate design text; raises :class:`DesignError` listing every problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DesignError(f"not valid TOML: {exc}", source=source) from None
    p = _Parser(raw, source)
    return p.build(text)


class _Parser:
    def __init__(self, raw: dict, source: str):
        self.raw = raw
        self.source = source
        self.problems: list[str] = []

    def bad(self, msg: str) -> None:
        self.problems.append(msg)

    def fail_if_bad(self) -> None:
        if self.problems:
            raise DesignError(self.problems, source=self.source)

    # -- helpers ---------------------------------------------------------------------------

    def unknown_key(self, path: str, key: str, allowed, section: str | None) -> None:
        """Report an unknown key, pointing to the right section when it is a known setting."""
        if key in SETTINGS and section is not None:
            s = SETTINGS[key]
            self.bad(f"{path}: {key!r} is a {s.namespace} setting, not a {section} one; move it under [{s.namespace}]")
            return
        if key in SETTINGS:
            s = SETTINGS[key]
            self.bad(
                f"{path}: {key!r} is a {s.namespace} setting; put it under [{s.namespace}] (fixed) or [factors] (varied)"
            )
            return
        self.bad(f"{path}: unknown key {key!r}{_suggest(key, allowed)}")

    def value(self, path: str, name: str, value: Any) -> tuple[bool, Any]:
        try:
            return True, SETTINGS[name].normalize(value)
        except _Bad as exc:
            self.bad(f"{path}: {exc}")
            return False, None

    def top_int(self, key: str, lo: int, required: bool, default=None):
        if key not in self.raw:
            if required:
                self.bad(f"{key}: missing; add e.g. `{key} = {1 if key != 'seed' else 20260101}` at the top of the file")
            return default
        v = self.raw[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.bad(f"{key}: {v!r} is not an integer ({_typename(v)})")
            return default
        if v < lo:
            self.bad(f"{key}: {v} must be >= {lo}")
            return default
        return v

    def top_str(self, key: str, default: str) -> str:
        v = self.raw.get(key, default)
        if not isinstance(v, str):
            self.bad(f"{key}: {v!r} is not text; write {key} = \"...\"")
            return default
        return v

    def table(self, key: str) -> dict:
        v = self.raw.get(key, {})
        if not isinstance(v, dict):
            self.bad(f"{key}: must be a table; write [{key}] on its own line followed by `setting = value` lines")
            return {}
        return v

    def array_of_tables(self, key: str) -> list[dict]:
        v = self.raw.get(key, [])
        if isinstance(v, dict):
            self.bad(f"{key}: must be an array of tables; write [[{key}]] (double brackets) for each entry")
            return []
        if not isinstance(v, list) or not all(isinstance(e, dict) for e in v):
            self.bad(f"{key}: must be an array of tables; write [[{key}]] (double brackets) for each entry")
            return []
        return v

    # -- the build ------------------------------------------------------------------------

    def build(self, text: str) -> Design:
        raw = self.raw
        for key in raw:
            if key not in _TOP_KEYS:
                self.unknown_key(key, key, _TOP_KEYS, None)

        stem = Path(self.source).stem if self.source != "<string>" else "study"
        name = self.top_str("name", stem)
        description = self.top_str("description", "")
        seed = self.top_int("seed", 0, required=True, default=0)
        replicates = self.top_int("replicates", 1, required=True, default=None)
        reps_ok = replicates is not None
        replicates = replicates or 1
        block_size = self.top_int("block_size", 1, required=False, default=None)
        if block_size is None:
            block_size = min(replicates, 10)
        elif block_size > replicates and reps_ok:
            self.bad(f"block_size: {block_size} is larger than replicates ({replicates}); use block_size <= {replicates}")
            block_size = replicates

        # fixed sections
        fixed: dict[str, dict[str, Any]] = {}  # namespace -> {design name: value}
        for ns in _SECTIONS:
            fixed[ns] = {}
            allowed = [s.name for s in SETTINGS.values() if s.namespace == ns]
            for key, v in self.table(ns).items():
                path = f"{ns}.{key}"
                if key not in allowed:
                    if ns == _G and key == "pi":
                        self.bad(f"{path}: the generator's inclusion probability is called 'prior_pi' in designs "
                                 "('pi' is the model's prior; put it under [model])")
                    else:
                        self.unknown_key(path, key, allowed, ns)
                    continue
                ok, val = self.value(path, key, v)
                if ok:
                    fixed[ns][key] = val
        fixed_all = {k: v for ns in _SECTIONS for k, v in fixed[ns].items()}

        # factors
        factors: dict[str, tuple] = {}
        factors_raw = self.table("factors")
        for key, levels in factors_raw.items():
            path = f"factors.{key}"
            if key not in SETTINGS:
                self.bad(f"{path}: unknown setting {key!r}{_suggest(key, SETTINGS)}")
                continue
            if not isinstance(levels, list):
                self.bad(f"{path}: must be a list of levels, e.g. {key} = [{_example(SETTINGS[key])}, ...]; "
                         f"to fix a single value, set it under [{SETTINGS[key].namespace}]")
                continue
            if not levels:
                self.bad(f"{path}: has no levels; give at least one")
                continue
            ns = SETTINGS[key].namespace
            if key in fixed[ns]:
                self.bad(f"{path}: {key!r} is also set in [{ns}] ({key} = {json.dumps(fixed[ns][key])}); "
                         "remove it from one of the two")
            out, seen, all_ok = [], {}, True
            for i, lv in enumerate(levels):
                ok, val = self.value(f"{path}[{i}]", key, lv)
                if not ok:
                    all_ok = False
                    continue
                ck = _canonical(val)
                if ck in seen:
                    self.bad(f"{path}[{i}]: duplicate level {json.dumps(val)} (same as {path}[{seen[ck]}]); remove one")
                    all_ok = False
                    continue
                seen[ck] = i
                out.append(val)
            if all_ok:
                factors[key] = tuple(out)

        # mcmc: defaults <- fixed
        mcmc = dict(MCMC_DEFAULTS)
        mcmc.update({SETTINGS[k].field: v for k, v in fixed[_C].items()})

        # exclusions
        exclude: list[dict[str, tuple]] = []
        for i, entry in enumerate(self.array_of_tables("exclude")):
            path = f"exclude[{i}]"
            if not entry:
                self.bad(f"{path}: is empty; name at least one factor and its level(s)")
                continue
            rule, ok_rule = {}, True
            for key, v in entry.items():
                kp = f"{path}.{key}"
                if key not in SETTINGS:
                    self.bad(f"{kp}: unknown setting {key!r}{_suggest(key, list(factors) or SETTINGS)}")
                    ok_rule = False
                    continue
                if key not in factors:
                    if key in factors_raw:
                        ok_rule = False  # the factor itself is invalid; already reported
                        continue
                    self.bad(f"{kp}: {key!r} is not a factor; exclusions can only name factors "
                             f"({', '.join(factors) or 'none defined'})")
                    ok_rule = False
                    continue
                values = v if isinstance(v, list) else [v]
                if not values:
                    self.bad(f"{kp}: empty list; give a level or a list of levels")
                    ok_rule = False
                    continue
                vals = []
                for j, x in enumerate(values):
                    vp = f"{kp}[{j}]" if isinstance(v, list) else kp
                    ok, val = self.value(vp, key, x)
                    if not ok:
                        ok_rule = False
                        continue
                    if not any(_canonical(val) == _canonical(lv) for lv in factors[key]):
                        self.bad(f"{vp}: {json.dumps(val)} is not a level of factor {key} "
                                 f"(levels: {', '.join(json.dumps(lv) for lv in factors[key])})")
                        ok_rule = False
                        continue
                    vals.append(val)
                rule[key] = tuple(vals)
            if ok_rule:
                exclude.append(rule)

        # extras
        extra: list[dict[str, Any]] = []
        for i, entry in enumerate(self.array_of_tables("extra")):
            path = f"extra[{i}]"
            if not entry:
                self.bad(f"{path}: is empty; set at least one setting")
                continue
            cell, ok_cell = {}, True
            for key, v in entry.items():
                kp = f"{path}.{key}"
                if key not in SETTINGS:
                    self.bad(f"{kp}: unknown setting {key!r}{_suggest(key, SETTINGS)}")
                    ok_cell = False
                    continue
                ok, val = self.value(kp, key, v)
                if not ok:
                    ok_cell = False
                    continue
                cell[key] = val
            if ok_cell:
                extra.append(cell)

        self.fail_if_bad()

        # ---- expansion ------------------------------------------------------------------
        base = {name: s.default for name, s in SETTINGS.items()}
        base.update(fixed_all)

        names = list(factors)
        grid = [dict(zip(names, combo)) for combo in itertools.product(*(factors[n] for n in names))]
        used = [False] * len(exclude)

        def matches(rule, fv):
            return all(any(_canonical(fv[k]) == _canonical(x) for x in vals) for k, vals in rule.items())

        kept = []
        for fv in grid:
            hit = False
            for r, rule in enumerate(exclude):
                if matches(rule, fv):
                    used[r] = True
                    hit = True
            if not hit:
                kept.append(fv)
        for r, rule in enumerate(exclude):
            if not used[r]:  # pragma: no cover - levels are checked, so every rule matches
                self.bad(f"exclude[{r}]: matches no cell of the grid; check its keys and values")

        cells: list[Cell] = []
        by_id: dict[int, Cell] = {}

        def add(identity: dict, settings: dict, origin: str) -> None:
            cell = _make_cell(identity, settings, origin)
            prev = by_id.get(cell.cell_id)
            if prev is not None:
                if (prev.generator, prev.model, prev.mcmc) != (cell.generator, cell.model, cell.mcmc):
                    self.bad(f"{origin}: has the same id as {prev.origin} ({prev.label}) but different settings")
                return
            by_id[cell.cell_id] = cell
            cells.append(cell)

        for fv in kept:
            add(fv, {**base, **fv}, "grid")
        for i, ex in enumerate(extra):
            settings = {**base, **ex}
            identity = {n: settings[n] for n in names}
            for k, v in ex.items():
                if k not in identity and _canonical(v) != _canonical(base[k]):
                    identity[k] = v
            add(identity, settings, f"extra[{i}]")

        if not cells:
            if exclude:
                self.bad("the design has no cells: the exclusions remove every cell of the grid and there are no "
                         "[[extra]] cells; loosen an exclusion")
            else:  # pragma: no cover - an empty product still has one cell
                self.bad("the design has no cells")

        # cross-checks per cell with the real specs
        self.check_cells(cells)
        self.fail_if_bad()

        hash_ = _design_hash(seed, replicates, block_size, cells)
        return Design(
            name=name,
            description=description,
            seed=seed,
            replicates=replicates,
            block_size=block_size,
            mcmc=mcmc,
            generator={SETTINGS[k].field: v for k, v in fixed[_G].items()},
            model={SETTINGS[k].field: v for k, v in fixed[_M].items()},
            factors=factors,
            exclude=tuple(exclude),
            extra=tuple(extra),
            text=text,
            source=self.source,
            hash=hash_,
            _cells=tuple(cells),
        )

    def check_cells(self, cells: list[Cell]) -> None:
        from .priors import PriorError, Priors

        try:
            from .generate import GeneratorSpec, SpecError  # optional: may not exist yet
        except ImportError:
            GeneratorSpec = SpecError = None  # noqa: N806

        reported: set[str] = set()

        def report(cell: Cell, what: str, msg: str) -> None:
            key = f"{what}: {msg}"
            if key in reported:  # the same problem in many cells: say it once
                return
            reported.add(key)
            where = cell.origin if cell.origin != "grid" else f"cell ({cell.label})"
            self.bad(f"{where}: {what}: {msg}")

        for cell in cells:
            g = cell.generator
            if g["size_min"] is not None and g["size_max"] is not None and g["size_min"] > g["size_max"]:
                report(cell, "generator", f"size_min ({g['size_min']}) is larger than size_max ({g['size_max']})")
            try:
                Priors(**cell.model)
            except (PriorError, TypeError, ValueError) as exc:
                report(cell, "model", str(exc))
            if GeneratorSpec is not None:
                try:
                    GeneratorSpec(**cell.generator)
                except (SpecError, TypeError, ValueError) as exc:
                    report(cell, "generator", str(exc))


def _label(identity: dict) -> str:
    if not identity:
        return "(all fixed)"
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in identity.items())


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _make_cell(identity: dict, settings: dict, origin: str) -> Cell:
    ns: dict[str, dict[str, Any]] = {_G: {}, _M: {}, _C: {}}
    for name, s in SETTINGS.items():
        ns[s.namespace][s.field] = settings[name]
    return Cell(
        cell_id=stable_id(identity),
        factors=dict(identity),
        generator=ns[_G],
        model=ns[_M],
        mcmc=ns[_C],
        label=_label(identity),
        origin=origin,
    )


def _cell_record(c: Cell) -> dict:
    return {"id": c.cell_id, "factors": c.factors, "generator": c.generator, "model": c.model, "mcmc": c.mcmc}


def _design_hash(seed: int, replicates: int, block_size: int, cells: list[Cell]) -> str:
    content = {
        "seed": seed,
        "replicates": replicates,
        "block_size": block_size,
        "cells": [_cell_record(c) for c in sorted(cells, key=lambda c: c.cell_id)],
    }
    return hashlib.sha256(_canonical(content).encode()).hexdigest()


# --------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------


def _sortable(v: Any) -> tuple:
    if v is None:
        return (0, 0.0, "")
    if isinstance(v, bool):
        return (1, float(v), "")
    if isinstance(v, (int, float)):
        return (2, float(v), "")
    return (3, 0.0, str(v))


def tasks(design: Design) -> list[Task]:
    """Every (cell, block of replicates) of the design, grouped by ``Task.shape_key``.

    Blocks are ``range(replicates)`` cut into runs of ``block_size`` (the last may be
    shorter). Tasks with the same shape key are adjacent, groups ordered by ascending shape
    values (small, fast problems first); within a group, cells keep design order.
    """
    blocks = [tuple(range(s, min(s + design.block_size, design.replicates)))
              for s in range(0, design.replicates, design.block_size)]
    out = [Task(cell, b, design.seed) for cell in design.cells() for b in blocks]
    order = {id(t): i for i, t in enumerate(out)}
    return sorted(out, key=lambda t: (tuple(_sortable(v) for _, v in t.shape_key), order[id(t)]))


# --------------------------------------------------------------------------------------
# comparison and serialisation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DesignDiff:
    """How a new design relates to an old one (see :func:`diff_designs`)."""

    kind: str  # "same" | "extends" | "changed"
    added_cells: tuple[int, ...] = ()
    removed_cells: tuple[int, ...] = ()
    modified_cells: tuple[int, ...] = ()
    added_replicates: tuple[int, ...] = ()
    reasons: tuple[str, ...] = ()

    def explain(self) -> str:
        if self.kind == "same":
            return "the designs are the same"
        head = "the new design extends the old one" if self.kind == "extends" else "the design changed"
        return head + (":\n" + "\n".join(f"  - {r}" for r in self.reasons) if self.reasons else "")


def diff_designs(old: Design, new: Design) -> DesignDiff:
    """Compare two designs: what was added, removed or changed, and the verdict.

    "extends" means every old cell is in the new design with identical settings, the seed
    and block size are unchanged, and replicates did not shrink: all existing results stay
    valid and only new cells and/or new replicates need running. Anything else is "changed".
    """
    if old.hash == new.hash:
        return DesignDiff("same")
    changed: list[str] = []
    extended: list[str] = []
    if old.seed != new.seed:
        changed.append(f"seed changed from {old.seed} to {new.seed} (every data set changes)")
    if old.block_size != new.block_size:
        changed.append(f"block_size changed from {old.block_size} to {new.block_size} (the store's chunks follow it)")
    added_reps: tuple[int, ...] = ()
    if new.replicates < old.replicates:
        changed.append(f"replicates reduced from {old.replicates} to {new.replicates}")
    elif new.replicates > old.replicates:
        added_reps = tuple(range(old.replicates, new.replicates))
        extended.append(f"replicates increased from {old.replicates} to {new.replicates}")

    old_cells = {c.cell_id: c for c in old.cells()}
    new_cells = {c.cell_id: c for c in new.cells()}
    removed = tuple(i for i in old_cells if i not in new_cells)
    added = tuple(i for i in new_cells if i not in old_cells)
    modified = []
    for i, oc in old_cells.items():
        nc = new_cells.get(i)
        if nc is None:
            continue
        diffs = [
            f"{k}: {_fmt_value(oc.get(k))} -> {_fmt_value(nc.get(k))}"
            for k in SETTINGS
            if _canonical(oc.get(k)) != _canonical(nc.get(k))
        ]
        if diffs:
            modified.append(i)
            if len(modified) <= 5:
                changed.append(f"cell ({oc.label}) settings changed: {'; '.join(diffs)}")
    if len(modified) > 5:
        changed.append(f"... {len(modified) - 5} more cells with changed settings")
    if removed:
        shown = ", ".join(f"({old_cells[i].label})" for i in removed[:5])
        more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
        if set(new.factors) != set(old.factors):
            changed.append(
                f"factors changed from {sorted(old.factors)} to {sorted(new.factors)}: every cell's identity changes"
            )
        changed.append(f"{len(removed)} cell(s) removed: {shown}{more}")
    if added:
        shown = ", ".join(f"({new_cells[i].label})" for i in added[:5])
        more = f" and {len(added) - 5} more" if len(added) > 5 else ""
        extended.append(f"{len(added)} cell(s) added: {shown}{more}")
    kind = "changed" if changed else ("extends" if extended else "same")
    return DesignDiff(
        kind=kind,
        added_cells=added,
        removed_cells=removed,
        modified_cells=tuple(modified),
        added_replicates=added_reps,
        reasons=tuple(changed + extended),
    )


def compare_designs(old: Design, new: Design) -> str:
    """``"same"``, ``"extends"`` or ``"changed"``; see :func:`diff_designs` for details."""
    return diff_designs(old, new).kind


def design_to_dict(design: Design) -> dict:
    """JSON-serialisable description of a design (for the results store's attrs).

    ``design_from_dict`` rebuilds the Design from the stored ``text``.
    """
    return {
        "name": design.name,
        "description": design.description,
        "source": design.source,
        "hash": design.hash,
        "seed": design.seed,
        "replicates": design.replicates,
        "block_size": design.block_size,
        "mcmc": dict(design.mcmc),
        "generator": dict(design.generator),
        "model": dict(design.model),
        "factors": {k: list(v) for k, v in design.factors.items()},
        "exclude": [{k: list(v) for k, v in e.items()} for e in design.exclude],
        "extra": [dict(e) for e in design.extra],
        "coords": design.coords,
        "n_cells": design.n_cells,
        "text": design.text,
    }


def design_from_dict(d: dict) -> Design:
    """Inverse of :func:`design_to_dict` (re-parses the stored text; checks the hash)."""
    design = parse_design(d["text"], source=d.get("source", "<stored>"))
    if "hash" in d and d["hash"] != design.hash:
        raise DesignError(
            f"the stored design text gives hash {design.hash[:12]}..., not the stored {d['hash'][:12]}...; "
            "the package's defaults changed since the store was written",
            source=d.get("source", "<stored>"),
        )
    return design
