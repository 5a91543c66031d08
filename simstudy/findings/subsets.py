"""Which cells of each shipped study the findings run fits, as study designs.

A subset keeps the shipped design's seed, block size, MCMC, generator and model settings and
every factor *as a factor*; it only keeps fewer levels of some factors and fewer replicates.
A cell's id is the hash of its factor values (``simstudy.study.grid``) and replicate ``r``
of cell ``c`` uses ``SeedSequence(seed, spawn_key=(c.data_id, r))`` (the hash of its
generator settings), so every subset cell is the shipped design's cell with the same id and
the same data sets, and the shipped design
*extends* the subset: ``simstudy run designs/X.toml --store results/X.zarr`` on a subset's
store runs only the missing cells and replicates (:func:`check_extends` proves it before a
run). ``replicates`` is a multiple of the block size, so no block is run twice.

The ``smoke`` configuration is the exception: tiny data and MCMC for the test suite, not the
shipped cells (it overrides settings, so its cells are new ones).
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ..study.design import Design, diff_designs, load_design, parse_design

#: the studies of the findings run, in run order (cheap first) and the FINDINGS.md section using each
STUDIES: tuple[str, ...] = ("calibration", "multiplicity", "paper_study2", "longitudinal", "sensitivity",
                            "robustness", "paper_study1")
CONFIGS: tuple[str, ...] = ("smoke", "default", "full")


@dataclass(frozen=True)
class Subset:
    """A subset of ``designs/<study>.toml``.

    ``levels``: factor -> levels to keep (others keep all theirs); ``replicates``: replicates
    per cell (None: the design's); ``extras``: keep the design's ``[[extra]]`` cells whose
    factor values are all kept. ``overrides`` (smoke only): top-level keys and
    ``{"mcmc"|"generator"|"model": {...}}`` replaced outright -- the cells are then no longer
    the shipped ones.
    """

    study: str
    replicates: int | None = None
    levels: dict[str, tuple] = field(default_factory=dict)
    extras: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)


_SMOKE_MCMC = {"chains": 2, "warmup": 150, "draws": 150, "max_extensions": 0, "target_accept": 0.8}
_SMOKE_TOP = {"replicates": 2, "block_size": 2}
_SMOKE_XS = {"n_groups": 10, "group_size": 8}  # one compiled shape for every cross-sectional smoke study


def _smoke(study: str, levels: dict, generator: dict | None = None, extras: bool = False) -> Subset:
    """Tiny settings; every cross-sectional smoke study has one compiled shape (J = 10, n = 8,
    independent effects, the same MCMC), the longitudinal one its own."""
    return Subset(study, None, levels, extras,
                  {**_SMOKE_TOP, "mcmc": _SMOKE_MCMC, "generator": generator or {}, "model": {"correlated": False}})


#: The three configurations. ``default`` is the ~2 h run on 2 cores (sizes: FINDINGS.md and
#: analysis/findings.py's docstring); ``full`` is every shipped design unchanged.
SUBSETS: dict[str, dict[str, Subset]] = {
    "smoke": {
        "calibration": _smoke("calibration", {"mode": ("truth",)}, {"n_groups": 10, "group_size": 8}),
        "multiplicity": _smoke("multiplicity", {"n_groups": (10,), "share_inconsistent": (0.0,)}),
        "paper_study2": _smoke("paper_study2", {"n_groups": (10,), "group_size": (8,), "share_inconsistent": (0.1,)}),
        "longitudinal": _smoke("longitudinal", {"group_size": (8,), "n_groups": (10,), "phi": (0.0, 0.6),
                                                "share_inconsistent": (0.1,)}),
        "sensitivity": _smoke("sensitivity", {"pi": (0.1, 0.5), "scale_sd": ("half_t(3, 1)",),
                                              "n_groups": (10,), "group_size": (8,)}),
        "robustness": _smoke("robustness", {"share_inconsistent": (0.0, 0.25), "pi": (0.1, 0.5),
                                            "slab_sd": (0.901,), "scale_sd": ("half_t(3, 1)",),
                                            "n_groups": (10,), "group_size": (8,)}),
        "paper_study1": _smoke("paper_study1", {"n_groups": (10,), "group_size": (8,),
                                                "share_inconsistent": (0.0, 0.1), "slab_sd": (0.312,)}),
    },
    "default": {
        # all 4 cells (prior-matched and fixed-share data x pi 0.5 / beta(1, 1))
        "calibration": Subset("calibration", 30),
        # every J x share x pi cell (fixed pi = 0.5 vs beta(1, 1)), 30 replicates (the design's)
        "multiplicity": Subset("multiplicity", 30),
        # all 8 cells (J 25, 50 x mean n 10, 30 x share 0, 0.1), 20 of 100 replicates
        "paper_study2": Subset("paper_study2", 20),
        # J = 50, T 10, 30, 60 x phi 0, 0.3, 0.6 x share 0, 0.1 = 18 cells (+ the dropout extra), 10 of 50 replicates
        "longitudinal": Subset("longitudinal", 10, {"n_groups": (50,)}),
        # every pi x scale-SD prior x J x n cell (80), 10 of 50 replicates
        "sensitivity": Subset("sensitivity", 10),
        # the whole design: 300 cells (5 truths x 15 prior settings x J 50, 150 x n 20, 50), all 40
        # replicates: the decision rule of section 1 (P(>= 1 false flag) MCSE ~0.047 per cell at 0.1)
        "robustness": Subset("robustness", 40),
        # all 117 cells (J 50, 150, 300 x n 50, 75, 150 x 3 shares x 4 slab SDs + the null share),
        # 20 of 100 replicates: the per-J/n/share means beside the published ones
        "paper_study1": Subset("paper_study1", 20),
    },
    "full": {s: Subset(s) for s in STUDIES},
}


#: seconds per fit (sampling, 4 chains unless the design says 2) measured on single cells of each
#: study's shapes on the shared 2-core development machine (2026-12-01, load average 4-7), averaged
#: over the default subset's shapes; compilation (~30-110 s per shape and worker) comes on top
EST_S_PER_FIT: dict[str, float] = {"calibration": 2.0, "multiplicity": 2.8, "paper_study2": 1.2, "longitudinal": 10.9,
                                   "sensitivity": 5.2, "robustness": 2.7, "paper_study1": 9.9}


class SubsetError(ValueError):
    """A subset that would not be the shipped design's cells (the message names the key and the fix)."""


def _same(a, b) -> bool:
    """Level equality as the design sees it: strings and booleans by value and type, numbers numerically."""
    if isinstance(a, (str, bool)) or isinstance(b, (str, bool)):
        return type(a) is type(b) and a == b
    return float(a) == float(b)


def _in_levels(value, levels) -> bool:
    return any(_same(value, lv) for lv in levels)


def subset_raw(raw: dict, subset: Subset) -> dict:
    """The design dict of ``subset`` from the shipped design dict ``raw`` (pure).

    Factor levels are kept in the shipped order; a ``[[exclude]]`` keeps only kept levels and
    is dropped when a key has none left; an ``[[extra]]`` is kept when every factor it sets
    is at a kept level. Raises :class:`SubsetError` for a level or factor the design lacks
    (unless ``overrides`` mark it a smoke subset) or replicates not a multiple of the block size.
    """
    out = copy.deepcopy(raw)
    factors = out.get("factors", {})
    smoke = bool(subset.overrides)
    for name, keep in subset.levels.items():
        if name not in factors:
            raise SubsetError(f"{subset.study}: levels[{name!r}]: not a factor of the design; "
                              f"use one of {sorted(factors)}")
        if smoke:
            factors[name] = list(keep)
            continue
        missing = [lv for lv in keep if not _in_levels(lv, factors[name])]
        if missing:
            raise SubsetError(f"{subset.study}: levels[{name!r}]: {missing} not among the design's levels "
                              f"{factors[name]}; a subset keeps shipped levels only")
        factors[name] = [lv for lv in factors[name] if _in_levels(lv, keep)]
    kept = {k: v for k, v in factors.items()}
    excl = []
    for e in out.get("exclude", []):
        e2 = {}
        for k, v in e.items():
            vals = v if isinstance(v, list) else [v]
            e2[k] = [x for x in vals if _in_levels(x, kept.get(k, vals))]
        if all(e2.values()):
            excl.append(e2)
    out["exclude"] = excl
    out["extra"] = [x for x in out.get("extra", []) if subset.extras
                    and all(_in_levels(v, kept[k]) for k, v in x.items() if k in kept)]
    for key in ("exclude", "extra"):
        if not out[key]:
            del out[key]
    for key, value in subset.overrides.items():
        if isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    if subset.replicates is not None:
        out["replicates"] = int(subset.replicates)
    block = int(out.get("block_size", min(out["replicates"], 10)))
    if not smoke and out["replicates"] % block:
        raise SubsetError(f"{subset.study}: replicates = {out['replicates']} is not a multiple of block_size = {block}; "
                          "use a multiple so the full design reruns no block")
    return out


def subset_text(design_text: str, subset: Subset, config: str) -> str:
    """TOML text of the subset design (a header comment says where it comes from)."""
    raw = subset_raw(tomllib.loads(design_text), subset)
    head = (f"# findings subset ({config}) of designs/{subset.study}.toml, written by simstudy.findings.subsets\n"
            + ("# smoke: tiny settings for tests, not the shipped cells\n" if subset.overrides else
               "# same cell ids and seeds as the shipped design, which extends it\n"))
    return head + tomli_w.dumps(raw)


def subset_design(designs_dir: str | Path, subset: Subset, config: str) -> Design:
    """The validated subset design of ``designs_dir/<study>.toml``."""
    path = Path(designs_dir) / f"{subset.study}.toml"
    return parse_design(subset_text(path.read_text(encoding="utf-8"), subset, config),
                        source=f"findings:{config}:{subset.study}")


def check_extends(subset: Design, full: Design) -> None:
    """Raise :class:`SubsetError` unless ``full`` is ``subset`` or extends it (same cells, ids,
    seeds and settings; more cells and/or replicates)."""
    diff = diff_designs(subset, full)
    if diff.kind == "changed":
        raise SubsetError(f"the findings subset of {full.name!r} is not part of the shipped design: {diff.explain()}")


def designs_for(config: str, designs_dir: str | Path, studies=STUDIES) -> dict[str, Design]:
    """``{study: Design}`` of a configuration; for ``default`` each is checked to be part of the
    shipped design (:func:`check_extends`)."""
    if config not in SUBSETS:
        raise SubsetError(f"config: {config!r} is not one of {list(SUBSETS)}")
    out = {}
    for study in studies:
        sub = SUBSETS[config][study]
        if config == "full":
            out[study] = load_design(Path(designs_dir) / f"{study}.toml")
            continue
        d = subset_design(designs_dir, sub, config)
        if config != "smoke":
            check_extends(d, load_design(Path(designs_dir) / f"{study}.toml"))
        out[study] = d
    return out
