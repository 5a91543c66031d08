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

    [mcmc]        chains (4), warmup (1000), draws (1000), target_accept (0.8), max_tree_depth (10),
                  max_extensions (2)
    [generator]   fixed data-generating settings (``simstudy.study.generate.GeneratorSpec`` fields)
    [model]       fixed prior/model settings (``simstudy.model.priors.Priors`` fields)
    [factors]     setting = [level, level, ...]    (full factorial, in file order)
    [[exclude]]   setting = level | [levels]        (drop grid cells matching ALL keys;
                                                     a list means "any of")
    [[extra]]     setting = value, ...              (add one explicit cell)

    methods = ["ss_melsm", "hlm_qq"]  # optional, top level (before any [section]): the methods run on every data set
                                    # (simstudy.methods.METHODS; default ["ss_melsm"]); a design
                                    # without "ss_melsm" runs no MCMC


The settings table is :mod:`simstudy.study.schema`; cells, ids, seeds and design comparison are
:mod:`simstudy.study.grid`. Both are re-exported here.
"""

from __future__ import annotations

import difflib
import itertools
import json
import tomllib
from pathlib import Path
from typing import Any

from .grid import (
    Cell,
    Design,
    DesignDiff,
    Task,
    _canonical,
    _design_hash,
    _make_cell,
    compare_designs,
    diff_designs,
    replicate_seed,
    stable_id,
    tasks,
)
from .schema import (
    DEFAULT_METHODS,
    _C,
    _G,
    _M,
    _SECTIONS,
    _TOP_KEYS,
    MCMC_DEFAULTS,
    SETTINGS,
    SHAPE_KEYS,
    DesignError,
    Setting,
    _Bad,
    _example,
    _typename,
    describe_settings,
)
from .limits import MAX_CELLS, MAX_TASKS, count_design, fmt_count



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

# --------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------


def load_design(path: str | Path, *, max_cells: int | None = MAX_CELLS, max_tasks: int | None = MAX_TASKS) -> Design:
    """Read and validate a design file (UTF-8; a byte that is not is reported with its line
    and column). ``max_cells`` / ``max_tasks``: refuse designs with more (None: no limit),
    counted before any cell is built."""
    from ..fsutil import EncodingError, read_text_utf8

    path = Path(path)
    try:
        text = read_text_utf8(path)
    except EncodingError as exc:
        raise DesignError(str(exc), source=str(path)) from None
    except OSError as exc:
        raise DesignError(f"cannot read the design file: {exc}", source=str(path)) from None
    return parse_design(text, source=str(path), max_cells=max_cells, max_tasks=max_tasks)


#: below this group size a design is warned about, as `simstudy fit` warns about a data set
#: whose median group is smaller (``simstudy.realdata.commands.SMALL_GROUP_MEDIAN``)
SMALL_GROUP = 15


def small_groups_note(design: Design, shown: int = 5) -> str | None:
    """The warning ``simstudy run`` / ``simstudy plan`` print for a design whose cells have
    small groups (``group_size`` below :data:`SMALL_GROUP`, or single-observation groups:
    ``group_size = 1``, or ``size_min = 1`` with uniform sizes), naming the cells; else None.
    Cells resampling the Saeb school sizes are not judged by ``group_size``."""
    from .generate import GeneratorSpec, uniform_bounds

    small, single = [], []
    for cell in design.cells():
        g = cell.generator
        if g.get("size_dist") == "saeb":
            continue
        n = int(g.get("group_size") or 0)
        smallest = n
        if g.get("size_dist") == "uniform":
            smallest = uniform_bounds(GeneratorSpec(**g))[0]
        elif g.get("size_dist") == "poisson":
            smallest = 2
        if smallest <= 1:
            single.append(cell.label or "the design's only cell")
        elif n < SMALL_GROUP:
            small.append(cell.label or "the design's only cell")
    if not small and not single:
        return None

    def cells(labels):
        more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
        return "; ".join(f"({lab})" for lab in labels[:shown]) + more

    parts = []
    if single:
        parts.append(f"{len(single)} cell(s) have single-observation groups, whose scale effects are informed by the "
                     f"prior only: {cells(single)}")
    if small:
        parts.append(f"{len(small)} cell(s) have groups of fewer than {SMALL_GROUP} observations: {cells(small)}")
    return ("; ".join(parts) + f". With fewer than about {SMALL_GROUP} observations per group the SS-MELSM finds few "
            "of the truly inconsistent groups (FINDINGS.md: 7% of them at mean group size 10, 20% at 30), as "
            "`simstudy fit` warns for a data set")


def _suggest(key: str, candidates) -> str:
    hint = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {hint[0]!r}?" if hint else ""


#: other names people give the top-level keys
_TOP_SYNONYMS = {
    "prior": "model", "priors": "model", "models": "model",
    "sampler": "mcmc", "nuts": "mcmc", "sampling": "mcmc", "mcmc_settings": "mcmc",
    "data": "generator", "generate": "generator", "generation": "generator", "simulation": "generator",
    "grid": "factors", "vary": "factors", "levels": "factors",
    "exclusions": "exclude", "exclusion": "exclude", "cells": "extra", "extras": "extra",
    "reps": "replicates", "replications": "replicates", "n_replicates": "replicates", "nrep": "replicates",
    "n_reps": "replicates", "random_seed": "seed", "rng_seed": "seed", "base_seed": "seed",
    "block": "block_size", "batch_size": "block_size", "title": "name",
}


def _suggest_top(key: str) -> str:
    """'did you mean' for a top-level key: close spellings, other case, common synonyms;
    else the list of top-level keys."""
    lower = key.lower()
    if lower in _TOP_KEYS:
        return f"; did you mean {lower!r}? (keys are lower case)"
    if lower in _TOP_SYNONYMS and _TOP_SYNONYMS[lower] in _TOP_KEYS:
        return f"; did you mean {_TOP_SYNONYMS[lower]!r}?"
    hint = difflib.get_close_matches(lower, list(_TOP_KEYS), n=1, cutoff=0.5)
    if hint:
        return f"; did you mean {hint[0]!r}?"
    return f"; the top-level keys are {', '.join(_TOP_KEYS)}"


def parse_design(text: str, source: str = "<string>", *, max_cells: int | None = MAX_CELLS,
                 max_tasks: int | None = MAX_TASKS) -> Design:
    """Parse and validate design text; raises :class:`DesignError` listing every problem.
    ``max_cells`` / ``max_tasks`` (None: no limit) are checked on the factor level counts,
    before the grid is built."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DesignError(f"not valid TOML: {exc}", source=source) from None
    p = _Parser(raw, source, max_cells=max_cells, max_tasks=max_tasks)
    return p.build(text)


class _Parser:
    def __init__(self, raw: dict, source: str, *, max_cells: int | None = None, max_tasks: int | None = None):
        self.raw = raw
        self.source = source
        self.problems: list[str] = []
        self.max_cells = max_cells
        self.max_tasks = max_tasks

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
        if section is None and tuple(allowed) == tuple(_TOP_KEYS):
            self.bad(f"{path}: unknown top-level key {key!r}{_suggest_top(key)}")
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

    def methods(self) -> tuple[str, ...]:
        """``methods = [...]``: the methods run on every data set, in the order of
        ``simstudy.methods.METHODS`` (so the same set always hashes the same)."""
        from ..methods import METHODS

        if "methods" not in self.raw:
            return DEFAULT_METHODS
        v = self.raw["methods"]
        example = 'methods = ["ss_melsm", "hlm_qq"]'
        if not isinstance(v, list) or not v:
            self.bad(f"methods: {v!r} must be a non-empty list of method names, e.g. {example} "
                     f"(known: {', '.join(METHODS)})")
            return DEFAULT_METHODS
        ok, seen = True, set()
        for i, m in enumerate(v):
            if not isinstance(m, str) or m not in METHODS:
                hint = difflib.get_close_matches(str(m), METHODS, n=1)
                dym = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.bad(f"methods[{i}]: {m!r} is not a method{dym}; known: {', '.join(METHODS)}")
                ok = False
            elif m in seen:
                self.bad(f"methods[{i}]: {m!r} is listed twice; remove one")
                ok = False
            seen.add(m)
        return tuple(m for m in METHODS if m in seen) if ok else DEFAULT_METHODS

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

        methods = self.methods()

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

        self.check_counts(factors, extra, replicates, block_size)
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

        pi_explicit = "prior_pi" in fixed_all or "prior_pi" in factors

        def link(settings: dict, explicit: bool) -> dict:
            """Prior-matched data: an unset prior_pi follows the model's pi in prior mode."""
            if settings["mode"] == "prior" and not explicit:
                settings["prior_pi"] = settings["pi"]
            return settings

        for fv in kept:
            add(fv, link({**base, **fv}, pi_explicit), "grid")
        for i, ex in enumerate(extra):
            settings = link({**base, **ex}, pi_explicit or "prior_pi" in ex)
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

        hash_ = _design_hash(seed, replicates, block_size, cells, methods)
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
            methods=methods,
        )

    def check_counts(self, factors: dict, extra: list, replicates: int, block_size: int) -> None:
        """Refuse (before building anything) a grid with more cells or tasks than the limits."""
        counts = {k: len(v) for k, v in factors.items()}
        n_cells, n_tasks = count_design(counts, len(extra), replicates, block_size)
        what = fmt_count(counts, len(extra))
        upto = "up to " if self.raw.get("exclude") else ""
        if self.max_cells is not None and n_cells > self.max_cells:
            self.bad(f"the design has {upto}{n_cells:,} cells ({what}), more than the limit of {self.max_cells:,}; "
                     "remove levels or factors, or raise the limit (simstudy run --max-cells "
                     f"{n_cells}) if you mean it")
        elif self.max_tasks is not None and n_tasks > self.max_tasks:
            self.bad(f"the design has {upto}{n_tasks:,} tasks ({n_cells:,} cell{'s' if n_cells != 1 else ''} x {-(-replicates // block_size):,} blocks "
                     f"of up to {block_size} replicates), more than the limit of {self.max_tasks:,}; use fewer "
                     "replicates or cells, a larger block_size, or raise the limit (simstudy run --max-tasks "
                     f"{n_tasks}) if you mean it")

    def check_cells(self, cells: list[Cell]) -> None:
        from ..model.priors import PriorError, Priors

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
            size_bad = g["size_min"] is not None and g["size_max"] is not None and g["size_min"] > g["size_max"]
            if size_bad:
                report(cell, "generator", f"size_min ({g['size_min']}) is larger than size_max ({g['size_max']})")
            try:
                Priors(**cell.model)
            except (PriorError, TypeError, ValueError) as exc:
                report(cell, "model", str(exc))
            if GeneratorSpec is not None:
                try:
                    GeneratorSpec(**cell.generator)
                except (SpecError, TypeError, ValueError) as exc:
                    if size_bad and ("size_min" in str(exc) or "size_max" in str(exc)):
                        continue  # the same problem, already reported in the words above
                    report(cell, "generator", str(exc))


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
        "methods": list(design.methods),
        "n_cells": design.n_cells,
        "text": design.text,
    }


def design_from_dict(d: dict) -> Design:
    """Inverse of :func:`design_to_dict` (re-parses the stored text; checks the hash)."""
    # no size limits: the store was made for this design (perhaps with --max-cells raised)
    design = parse_design(d["text"], source=d.get("source", "<stored>"), max_cells=None, max_tasks=None)
    if "hash" in d and d["hash"] != design.hash:
        raise DesignError(
            f"the stored design text gives hash {design.hash[:12]}..., not the stored {d['hash'][:12]}...; "
            "the package's defaults changed since the store was written",
            source=d.get("source", "<stored>"),
        )
    return design
