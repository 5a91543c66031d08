"""Tests of simstudy.study.design: validation, expansion, stable ids, seeds, hashing, tasks."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from simstudy.study.design import (
    SETTINGS,
    DesignError,
    compare_designs,
    design_from_dict,
    design_to_dict,
    diff_designs,
    load_design,
    parse_design,
    replicate_seed,
    tasks,
)

DESIGNS = Path(__file__).resolve().parents[1] / "designs"

BASE = """
name = "t"
seed = 7
replicates = 4
block_size = 2

[mcmc]
chains = 2
warmup = 20
draws = 20

[generator]
n_groups = 20
group_size = 10

[model]
correlated = false
"""


def design(extra_text: str = "", base: str = BASE):
    return parse_design(base + "\n" + extra_text)


def error_of(text: str, base: str = BASE) -> str:
    with pytest.raises(DesignError) as info:
        parse_design(base + "\n" + text)
    return str(info.value)


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "text, path, suggestion",
    [
        ("[factors]\nn_group = [10, 20]", "factors.n_group", "n_groups"),
        ("[[extra]]\nshare_inconsistnt = 0.2", "extra[0].share_inconsistnt", "share_inconsistent"),
        ("[factors]\npi = [0.5]\n[[exclude]]\npie = 0.5", "exclude[0].pie", "pi"),
    ],
)
def test_unknown_key_with_suggestion(text, path, suggestion):
    msg = error_of(text)
    assert f"{path}:" in msg
    assert f"did you mean {suggestion!r}" in msg


def test_unknown_top_level_key():
    msg = error_of("", base=BASE.replace("replicates = 4", "replicate = 4"))
    assert "replicate:" in msg and "did you mean 'replicates'" in msg
    assert "replicates: missing" in msg


def test_unknown_key_in_fixed_sections():
    base = BASE.replace("warmup = 20", "warmpu = 20").replace("group_size = 10", "group_sise = 10")
    msg = error_of("", base=base)
    assert "mcmc.warmpu" in msg and "'warmup'" in msg
    assert "generator.group_sise" in msg and "'group_size'" in msg
    assert "2 problems" in msg  # collected into one error


def test_setting_in_the_wrong_section():
    msg = error_of("", base=BASE.replace("correlated = false", "correlated = false\nn_groups = 30"))
    assert "model.n_groups" in msg and "[generator]" in msg
    msg = error_of("", base=BASE.replace("group_size = 10", "group_size = 10\npi = 0.3"))
    assert "generator.pi" in msg and "prior_pi" in msg
    msg = error_of("tau_u = 0.3", base=BASE.replace('name = "t"', 'name = "t"\ntau_u = 0.3'))
    assert "tau_u" in msg and "[generator]" in msg


@pytest.mark.parametrize(
    "text, path",
    [
        ("[factors]\nn_groups = [20, 30.0]", "factors.n_groups[1]"),
        ("[factors]\npi = [true]", "factors.pi[0]"),
        ('[factors]\ncovariates = ["yes"]', "factors.covariates[0]"),
        ("[factors]\nsize_dist = [1]", "factors.size_dist[0]"),
        ("[[extra]]\nchains = 2.5", "extra[0].chains"),
    ],
)
def test_wrong_type(text, path):
    assert f"{path}:" in error_of(text)


def test_ints_accepted_for_floats_and_canonicalised():
    d = design("[factors]\ntau_u = [1, 0.5]")
    assert d.factors["tau_u"] == (1.0, 0.5)
    assert all(isinstance(v, float) for v in d.factors["tau_u"])
    assert {c.generator["tau_u"] for c in d.cells()} == {1.0, 0.5}


@pytest.mark.parametrize(
    "text, path, words",
    [
        ("[factors]\npi = [0.25, 0.5, 1.5]", "factors.pi[2]", "outside (0, 1)"),
        ("[factors]\nshare_inconsistent = [-0.1]", "factors.share_inconsistent[0]", "outside [0, 1]"),
        ("[factors]\nslab_sd = [0]", "factors.slab_sd[0]", "> 0"),
        ("[factors]\nrho = [1.0]", "factors.rho[0]", "outside (-1, 1)"),
        ("[factors]\nn_groups = [1, 20]", "factors.n_groups[0]", ">= 2"),
        ("[factors]\ngroup_size = [0]", "factors.group_size[0]", ">= 1"),
        ("[[extra]]\nchains = 0", "extra[0].chains", ">= 1"),
        ("[[extra]]\ntarget_accept = 1.0", "extra[0].target_accept", "outside (0, 1)"),
    ],
)
def test_out_of_range(text, path, words):
    msg = error_of(text)
    assert f"{path}:" in msg and words in msg


def test_top_level_values():
    assert "replicates" in error_of("", base=BASE.replace("replicates = 4", "replicates = 0"))
    assert "seed: missing" in error_of("", base=BASE.replace("seed = 7", ""))
    assert "seed" in error_of("", base=BASE.replace("seed = 7", "seed = -1"))
    msg = error_of("", base=BASE.replace("block_size = 2", "block_size = 9"))
    assert "block_size" in msg and "replicates" in msg
    assert "block_size" in error_of("", base=BASE.replace("block_size = 2", "block_size = 0"))
    assert "replicates" in error_of("", base=BASE.replace("replicates = 4", 'replicates = "4"'))


def test_default_block_size():
    d = parse_design(BASE.replace("block_size = 2\n", "").replace("replicates = 4", "replicates = 25"))
    assert d.block_size == 10
    d = parse_design(BASE.replace("block_size = 2\n", ""))
    assert d.block_size == 4


def test_bad_prior_string():
    msg = error_of("", base=BASE.replace("correlated = false", 'correlated = false\nscale_sd = "half_z(1)"'))
    assert "model.scale_sd:" in msg and "unknown SD prior family" in msg
    msg = error_of('[factors]\nscale_sd = ["half_t(3, 1)", "half_normal(-1)"]')
    assert "factors.scale_sd[1]:" in msg and "positive" in msg
    msg = error_of('[factors]\nlocation_sd = ["half_t 3"]')
    assert "factors.location_sd[0]:" in msg


def test_prior_strings_canonical():
    d = design('[factors]\nscale_sd = ["half_t(3,1)", "halfnormal(1.0)"]')
    assert d.factors["scale_sd"] == ("half_t(3, 1)", "half_normal(1)")
    msg = error_of('[factors]\nscale_sd = ["half_t(3,1)", "half_t(3.0, 1)"]')
    assert "factors.scale_sd[1]:" in msg and "duplicate" in msg


def test_bad_enum_suggests():
    msg = error_of('[factors]\nsize_dist = ["balanced", "poison"]')
    assert "factors.size_dist[1]:" in msg and "did you mean 'poisson'" in msg


def test_duplicate_level():
    msg = error_of("[factors]\nn_groups = [20, 30, 20]")
    assert "factors.n_groups[2]:" in msg and "duplicate" in msg


def test_factor_also_fixed():
    msg = error_of("[factors]\nn_groups = [20, 30]")
    assert "factors.n_groups:" in msg and "[generator]" in msg
    msg = error_of("[factors]\nchains = [1, 2]")
    assert "factors.chains:" in msg and "[mcmc]" in msg


def test_factor_must_be_a_list():
    msg = error_of("[factors]\npi = 0.5")
    assert "factors.pi:" in msg and "list" in msg
    assert "factors.pi:" in error_of("[factors]\npi = []")


def test_empty_grid():
    msg = error_of("[factors]\npi = [0.25, 0.5]\n[[exclude]]\npi = [0.25, 0.5]")
    assert "no cells" in msg and "exclusion" in msg


def test_exclusion_matching_nothing():
    msg = error_of("[factors]\npi = [0.25, 0.5]\nshare_inconsistent = [0.0, 0.1]\n[[exclude]]\npi = 0.3")
    assert "exclude[0].pi:" in msg and "not a level" in msg
    msg = error_of("[factors]\npi = [0.25, 0.5]\n[[exclude]]\neta0 = 0.0")
    assert "exclude[0].eta0:" in msg and "not a factor" in msg
    msg = error_of("[factors]\npi = [0.25, 0.5]\n[[exclude]]\npi = [0.25, 0.7]")
    assert "exclude[0].pi[1]:" in msg
    assert "exclude[0]:" in error_of("[factors]\npi = [0.25, 0.5]\n[[exclude]]\n")


def test_structure_errors():
    assert "factors:" in error_of('factors = "pi"')
    assert "exclude:" in error_of("[exclude]\npi = 0.5")
    assert "not valid TOML" in error_of("[factors\n")


def test_per_cell_generator_check():
    # each value is fine alone, but GeneratorSpec rejects the combination
    msg = error_of('[[extra]]\nsize_dist = "poisson"\ngroup_size = 1')
    assert "extra[0]" in msg and "group_size" in msg
    msg = error_of("[[extra]]\nsize_dist = \"uniform\"\nsize_min = 10\nsize_max = 5")
    assert "extra[0]" in msg and "size_min" in msg


def test_many_problems_in_one_error():
    with pytest.raises(DesignError) as info:
        parse_design("bogus = 1\n" + BASE + "\n[factors]\npi = [0.5, 2.0]\nn_grups = [3]\n")
    problems = info.value.problems
    assert len(problems) == 3
    assert any(p.startswith("bogus") for p in problems)
    assert any(p.startswith("factors.pi[1]") for p in problems)
    assert any(p.startswith("factors.n_grups") for p in problems)


def test_defaults_match_generator_spec_and_priors():
    from simstudy.model.priors import Priors

    pri = {f.name: f.default for f in dataclasses.fields(Priors) if f.default is not dataclasses.MISSING}
    pri.update({f.name: str(f.default_factory()) for f in dataclasses.fields(Priors) if f.default_factory is not dataclasses.MISSING})
    for s in SETTINGS.values():
        if s.namespace == "model":
            assert s.default == pri[s.field], s.name
    generate = pytest.importorskip("simstudy.study.generate")
    gen = {f.name: f.default for f in dataclasses.fields(generate.GeneratorSpec)}
    mine = {s.field: s.default for s in SETTINGS.values() if s.namespace == "generator"}
    assert mine == gen


# ------------------------------------------------------------------------------ shipped designs


@pytest.mark.parametrize("path", sorted(DESIGNS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_designs_load(path):
    d = load_design(path)
    assert d.n_cells >= 1
    assert d.name == path.stem
    for c in d.cells():
        c.priors()
        c.generator_spec()


def test_shipped_designs_expected():
    names = {p.stem for p in DESIGNS.glob("*.toml")}
    assert {"quickstart", "smoke", "paper_study1", "paper_study2", "sensitivity"} <= names
    q = load_design(DESIGNS / "quickstart.toml")
    assert q.n_cells == 2 * 2 * 2 and q.replicates == 6 and q.block_size == 3 and len(tasks(q)) == 16
    s = load_design(DESIGNS / "smoke.toml")
    assert s.n_cells == 2 and len(tasks(s)) == 2
    assert load_design(DESIGNS / "paper_study2.toml").n_cells == 8
    assert load_design(DESIGNS / "sensitivity.toml").n_cells == 4 * 5 * 2 * 2


def test_paper_study1():
    d = load_design(DESIGNS / "paper_study1.toml")
    assert d.n_cells == 3 * 3 * (3 * 4 + 1) == 117
    nulls = [c for c in d.cells() if c.generator["share_inconsistent"] == 0.0]
    assert len(nulls) == 9 and {c.generator["slab_sd"] for c in nulls} == {0.312}
    c = d.cells()[0]
    # the authors' log-variance priors on our log-SD scale: half-t(3, 1) -> half-t(3, 0.5), N(0, 10) -> N(0, 5)
    assert c.model["pi"] == 0.5 and c.model["scale_sd"] == "half_t(3, 0.5)" and c.model["correlated"] is False
    assert c.model["scale_fixed_sd"] == 5.0 and c.model["location_sd"] == "half_t(3, 1)"
    assert d.methods[0] == "ss_melsm" and set(d.methods) == {"ss_melsm", "hlm_qq", "hlm_z", "hlm_bh"}
    assert c.generator["eta0"] == -0.25 and c.generator["tau_u"] == 0.33 and c.generator["rho"] == 0.0
    assert d.replicates == 100 and d.block_size == 10
    assert d.mcmc == {"chains": 4, "warmup": 1000, "draws": 1000, "target_accept": 0.9, "max_tree_depth": 10,
                      "max_extensions": 2}
    assert len(tasks(d)) == 117 * 10


# ------------------------------------------------------------------------------ cells, ids, seeds


def test_cells_full_factorial_in_file_order():
    d = design('[factors]\nshare_inconsistent = [0.0, 0.1]\npi = [0.25, 0.5, 0.75]')
    labels = [c.label for c in d.cells()]
    assert labels[:3] == [
        "share_inconsistent=0, pi=0.25",
        "share_inconsistent=0, pi=0.5",
        "share_inconsistent=0, pi=0.75",
    ]
    assert len(set(c.cell_id for c in d.cells())) == 6
    c = d.cells()[4]
    assert c.factors == {"share_inconsistent": 0.1, "pi": 0.5}
    assert c.generator["n_groups"] == 20 and c.model["pi"] == 0.5 and c.mcmc["chains"] == 2
    assert c.get("pi") == 0.5 and c.get("n_groups") == 20
    assert all(0 <= c.cell_id < 2**63 for c in d.cells())


def test_adding_a_level_keeps_ids_and_seeds():
    base = BASE.replace("n_groups = 20\n", "")
    a = parse_design(base + "[factors]\nn_groups = [20, 30]\npi = [0.25, 0.5]\n")
    b = parse_design(base + "[factors]\nn_groups = [20, 30, 40]\npi = [0.1, 0.25, 0.5]\n")
    ids_a = {c.label: c.cell_id for c in a.cells()}
    ids_b = {c.label: c.cell_id for c in b.cells()}
    assert len(ids_b) == 9
    for label, cid in ids_a.items():
        assert ids_b[label] == cid
    for label, cid in ids_a.items():
        ra = np.random.default_rng(replicate_seed(a.seed, cid, 3)).normal(size=4)
        rb = np.random.default_rng(replicate_seed(b.seed, ids_b[label], 3)).normal(size=4)
        np.testing.assert_array_equal(ra, rb)
    assert compare_designs(a, b) == "extends"


def test_replicate_seeds_differ_and_reproduce():
    # data seeds follow the generator's settings (data_id), so vary a generator factor
    d = design("[factors]\nshare_inconsistent = [0.05, 0.1, 0.2]")
    draws = {}
    for c in d.cells():
        for r in range(d.replicates):
            draws[(c.cell_id, r)] = tuple(np.random.default_rng(replicate_seed(d.seed, c.data_id, r)).random(3))
    assert len(set(draws.values())) == len(draws) == 12
    # reproducible: same numbers again, and through Cell.seed / Task.seed_sequences / the Cell itself
    c = d.cells()[1]
    again = tuple(np.random.default_rng(c.seed(d.seed, 2)).random(3))
    assert again == draws[(c.cell_id, 2)]
    assert tuple(np.random.default_rng(replicate_seed(d.seed, c, 2)).random(3)) == again
    t = next(t for t in tasks(d) if t.cell.cell_id == c.cell_id and 2 in t.replicates)
    ss = t.seed_sequences()[t.replicates.index(2)]
    assert tuple(np.random.default_rng(ss).random(3)) == draws[(c.cell_id, 2)]
    # another base seed changes them
    other = tuple(np.random.default_rng(replicate_seed(d.seed + 1, c.data_id, 2)).random(3))
    assert other != draws[(c.cell_id, 2)]
    ss = replicate_seed(d.seed, c.data_id, 2)
    assert ss.entropy == d.seed and ss.spawn_key == (c.data_id, 2)


def test_model_settings_share_data_ids():
    # paired designs: cells differing only in model (or MCMC) settings have one data id
    d = design("[factors]\npi = [0.25, 0.5, \"beta(1, 1)\"]\nscale_sd = [\"half_t(3, 1)\", \"half_normal(1)\"]")
    assert len({c.cell_id for c in d.cells()}) == 6 and len({c.data_id for c in d.cells()}) == 1
    g = design("[factors]\nshare_inconsistent = [0.0, 0.1]\npi = [0.25, 0.5]")
    ids = {(c.get("share_inconsistent"), c.get("pi")): c.data_id for c in g.cells()}
    assert ids[(0.0, 0.25)] == ids[(0.0, 0.5)] != ids[(0.1, 0.25)] == ids[(0.1, 0.5)]


def test_extras_and_exclusions():
    d = design(
        "[factors]\npi = [0.25, 0.5]\nshare_inconsistent = [0.0, 0.1]\n"
        "[[exclude]]\npi = 0.25\nshare_inconsistent = 0.0\n"
        "[[extra]]\npi = 0.5\nshare_inconsistent = 0.1\n"  # same as a grid cell: merged
        "[[extra]]\nshare_inconsistent = 0.3\ncovariates = true\nx_between_sd = 0.5\nn_groups = 20\n"
    )
    labels = [c.label for c in d.cells()]
    assert "pi=0.25, share_inconsistent=0" not in labels
    assert len(d.cells()) == 4
    ex = d.cells()[-1]
    assert ex.origin == "extra[1]"
    # unset factor pi takes the default; n_groups equals the fixed value so it is not identity
    assert ex.factors == {"pi": 0.5, "share_inconsistent": 0.3, "covariates": True, "x_between_sd": 0.5}
    assert ex.generator["covariates"] is True and ex.generator["n_groups"] == 20
    assert d.coords == ["pi", "share_inconsistent", "covariates", "x_between_sd"]
    assert d.cells()[0].get("covariates") is False
    # adding an extra extends the design without touching existing ids
    plain = design("[factors]\npi = [0.25, 0.5]\nshare_inconsistent = [0.0, 0.1]\n[[exclude]]\npi = 0.25\nshare_inconsistent = 0.0\n")
    assert {c.cell_id for c in plain.cells()} < {c.cell_id for c in d.cells()}
    assert compare_designs(plain, d) == "extends"


def test_no_factors_single_cell():
    d = design()
    assert d.n_cells == 1 and d.cells()[0].label == "(all fixed)"
    assert d.cells()[0].generator["n_groups"] == 20


# ------------------------------------------------------------------------------ hash and comparison


def test_hash_ignores_formatting_but_not_values():
    a = design("[factors]\npi = [0.25, 0.5]")
    b = parse_design(
        "# a comment\n" + BASE.replace("seed = 7", "seed   =   7   # base seed").replace("draws = 20", "draws=20\n\n")
        + "\n[factors]\npi = [ 0.25,\n  0.50 ]  # levels\n"
    )
    assert a.hash == b.hash
    assert compare_designs(a, b) == "same"
    c = design("[factors]\npi = [0.25, 0.6]")
    assert c.hash != a.hash
    d = parse_design(BASE.replace("warmup = 20", "warmup = 21") + "\n[factors]\npi = [0.25, 0.5]")
    assert d.hash != a.hash
    e = parse_design(BASE.replace('name = "t"', 'name = "other"\ndescription = "words"') + "\n[factors]\npi = [0.25, 0.5]")
    assert e.hash == a.hash  # name/description do not affect the numbers
    assert len(a.hash) == 64


def test_compare_designs():
    a = design("[factors]\npi = [0.25, 0.5]")
    assert compare_designs(a, a) == "same"
    more_reps = parse_design(BASE.replace("replicates = 4", "replicates = 8") + "\n[factors]\npi = [0.25, 0.5]")
    diff = diff_designs(a, more_reps)
    assert diff.kind == "extends" and diff.added_replicates == (4, 5, 6, 7)
    fewer = design("[factors]\npi = [0.25]")
    diff = diff_designs(a, fewer)
    assert diff.kind == "changed" and len(diff.removed_cells) == 1 and "removed" in diff.explain()
    changed = parse_design(BASE.replace("group_size = 10", "group_size = 11") + "\n[factors]\npi = [0.25, 0.5]")
    diff = diff_designs(a, changed)
    assert diff.kind == "changed" and len(diff.modified_cells) == 2 and "group_size: 10 -> 11" in diff.explain()
    reseeded = parse_design(BASE.replace("seed = 7", "seed = 8") + "\n[factors]\npi = [0.25, 0.5]")
    assert compare_designs(a, reseeded) == "changed"
    assert "seed" in diff_designs(a, reseeded).explain()
    reblocked = parse_design(BASE.replace("block_size = 2", "block_size = 4") + "\n[factors]\npi = [0.25, 0.5]")
    assert compare_designs(a, reblocked) == "changed"
    new_factor = design("[factors]\npi = [0.25, 0.5]\nrho = [0.0]")
    diff = diff_designs(a, new_factor)
    assert diff.kind == "changed" and "factors changed" in diff.explain()


def test_design_to_dict_roundtrip():
    d = load_design(DESIGNS / "paper_study1.toml")
    dd = design_to_dict(d)
    text = json.dumps(dd)
    back = design_from_dict(json.loads(text))
    assert back.hash == d.hash and back.n_cells == 117
    assert dd["factors"]["slab_sd"] == [0.312, 0.437, 0.668, 0.901]
    assert dd["exclude"] == [{"share_inconsistent": [0.0], "slab_sd": [0.437, 0.668, 0.901]}]
    bad = dict(dd, hash="0" * 64)
    with pytest.raises(DesignError):
        design_from_dict(bad)


# ------------------------------------------------------------------------------ tasks


def test_tasks_cover_everything_once_and_group_by_shape():
    d = parse_design(
        BASE.replace("replicates = 4", "replicates = 5").replace("n_groups = 20\n", "")
        + "\n[factors]\npi = [0.25, 0.5]\nn_groups = [40, 20]\n[[extra]]\nn_groups = 20\npi = 0.5\nwarmup = 30\n"
    )
    ts = tasks(d)
    covered = Counter((t.cell.cell_id, r) for t in ts for r in t.replicates)
    assert set(covered.values()) == {1}
    assert len(covered) == d.n_cells * d.replicates == 5 * 5
    assert {len(t.replicates) for t in ts} == {2, 1}  # blocks (0,1), (2,3), (4,)
    # each shape key forms one contiguous run
    keys = [t.shape_key for t in ts]
    runs = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(runs) == len(set(keys))
    # smaller problems first
    assert ts[0].cell.generator["n_groups"] == 20
    assert dict(ts[0].shape_key)["block"] in (1, 2)
    assert len({t.task_id for t in ts}) == len(ts)


def test_sensitivity_shares_compiled_programs():
    d = load_design(DESIGNS / "sensitivity.toml")
    keys = {t.shape_key for t in tasks(d)}
    assert len(keys) == 4  # one per (n_groups, group_size): pi and priors are runtime inputs


# ------------------------------------------------------------------------------ Beta hyperprior on pi
#: hashes of the shipped designs as first stored (frozen copies in tests/data/designs_v0): every
#: setting added since (Beta pi, methods, longitudinal layout, max_extensions, ...) must leave an
#: old design's hash, ids and therefore its seeds unchanged, so its stores keep resuming
DESIGNS_V0 = Path(__file__).parent / "data" / "designs_v0"
SHIPPED_HASHES = {
    "paper_study1.toml": "463691720045ed7d0e4ffe6f15423c54e903a728a31d78c2fc4e94d043290fea",
    "paper_study2.toml": "93148da7ae89d8408a55013009d2f64efe4abd9d2c94bb632547861910491ef7",
    "quickstart.toml": "c8030caccfa3c2aab089136b273a14d3afda77ca1128fd2086a34f3f7ef18cc2",
    "sensitivity.toml": "b4655e7139e7c648a0f8e0ca72e55eafc07b38dee2605b02415f89f4ab48706e",
    "smoke.toml": "d7e5c1e6a38f063d6e5441730501388f94e50e0c30212d1928fac865c0a5ab9d",
}


@pytest.mark.parametrize("name", sorted(SHIPPED_HASHES))
def test_existing_designs_hash_the_same(name):
    assert load_design(DESIGNS_V0 / name).hash == SHIPPED_HASHES[name]


def test_pi_factor_mixes_numbers_and_beta_levels():
    d = design('[factors]\npi = [0.1, 0.5, "Beta( 1,1 )", "beta(1, 9)"]')
    cells = d.cells()
    assert [c.model["pi"] for c in cells] == [0.1, 0.5, "beta(1, 1)", "beta(1, 9)"]
    assert cells[2].priors().pi_is_beta and cells[3].priors().pi_mean == 0.1
    assert not cells[0].priors().pi_is_beta
    # a fixed-pi level keeps its id (and seeds) when Beta levels are added
    plain = design("[factors]\npi = [0.1, 0.5]").cells()
    assert [c.cell_id for c in plain] == [c.cell_id for c in cells[:2]]
    assert "factors.pi[1]" in error_of('[factors]\npi = [0.5, "gamma(1, 1)"]')
    assert "beta(1, 1)" in error_of('[factors]\npi = [0.5, "gamma(1, 1)"]')
    assert "must be a positive" in error_of('[factors]\npi = ["beta(-1, 1)"]')
    assert "duplicate level" in error_of('[factors]\npi = ["beta(1, 1)", "beta(1.0, 1)"]')


def test_prior_mode_prior_pi_follows_the_model_pi_unless_set():
    prior = BASE.replace("[generator]\n", '[generator]\nmode = "prior"\n')
    d = design('[factors]\npi = [0.2, "beta(2, 3)"]', base=prior)
    assert [c.generator["pi"] for c in d.cells()] == [0.2, "beta(2, 3)"]
    assert d.cells()[1].generator_spec().pi == "beta(2, 3)"
    fixed = design('[factors]\npi = [0.2, "beta(2, 3)"]', base=prior.replace("[generator]\n", "[generator]\nprior_pi = 0.3\n"))
    assert [c.generator["pi"] for c in fixed.cells()] == [0.3, 0.3]
    truth = design('[factors]\npi = [0.2, "beta(2, 3)"]')  # truth mode: prior_pi unused, default kept
    assert [c.generator["pi"] for c in truth.cells()] == [0.5, 0.5]
