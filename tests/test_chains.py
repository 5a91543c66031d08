"""Parallel chains for single fits (simstudy.model.chains): the same draws as the sequential
path, bit for bit, with the chains split into parts run at once; padding; progress; errors.

Exact equality is what the maths demands here: each part is run by the same compiled
per-chain loop body on the same keys and initial values (XLA host devices with ``shard_map``,
or parts of one chain, could not promise this; see the module docstring)."""

import inspect

import numpy as np
import pytest

import simstudy.model.sampler as fitmod
from simstudy.model.chains import chain_workers, join_chains, split_chains
from simstudy.model.sampler import fit, fit_batch
from simstudy.study.generate import GeneratorSpec, generate

# the shapes of tests/test_sampler.py (J = 12, 300 + 300): a part of 2 chains runs its 2-chain program
SMALL = dict(chains=2, warmup=300, draws=300)
FOUR = dict(SMALL, chains=4)
SPEC = GeneratorSpec(n_groups=12, group_size=30, share_inconsistent=0.25, effect="fixed", magnitude=1.2,
                     tau_u=0.3, eta0=-0.25)


def _assert_same_draws(a, b):
    for name in a.posterior.data_vars:
        np.testing.assert_array_equal(a.posterior[name].values, b.posterior[name].values, err_msg=name)
    for name in ("diverging", "n_steps", "accept_prob", "energy", "step_size"):
        np.testing.assert_array_equal(a.sample_stats[name].values, b.sample_stats[name].values, err_msg=name)


@pytest.fixture(scope="module")
def data():
    return generate(SPEC, 11)[0]


def test_parallel_chains_give_the_sequential_draws(data):
    seq = fit(data, **FOUR, seed=2, chain_method="sequential")
    reports = []
    par = fit(data, **FOUR, seed=2, chain_method="parallel", chain_workers=2,
              progress=lambda phase, done, total: reports.append((phase, done, total)))
    assert seq.extra["chain_workers"] == 1 and par.extra["chain_workers"] == 2
    assert seq.divergences > 0  # divergent transitions are where one-chain parts drifted: a hard case
    _assert_same_draws(seq, par)
    assert par.rhat_max == seq.rhat_max and par.ess_bulk_min == seq.ess_bulk_min
    # in-program progress still arrives from both parts, counted once, monotone, up to the total
    total = 4 * (300 + 300)
    sampling = [d for p, d, t in reports if p == "sampling"]
    assert reports[-1] == ("done", total, total) and all(t == total for _, _, t in reports)
    assert sampling == sorted(sampling) and sampling[-1] == total
    assert len(sampling) >= total // fitmod.PROGRESS_EVERY  # reports came from inside both parts
    # 2 chains cannot be split into parts of two: sequential
    assert fit(data, **SMALL, seed=1, chain_method="parallel", chain_workers=2).extra["chain_workers"] == 1


def test_uneven_split_pads_and_drops_the_padding(data):
    # 5 chains on 2 workers: parts of 3 chains (the last padded with a copy of chain 4)
    seq = fit(data, **dict(SMALL, chains=5), seed=4, chain_method="sequential")
    par = fit(data, **dict(SMALL, chains=5), seed=4, chain_method="parallel", chain_workers=2)
    assert par.posterior.sizes["chain"] == 5 and par.extra["chain_workers"] == 2
    _assert_same_draws(seq, par)
    # a part has the shape of a 3-chain fit: one compiled program for both
    traces = fitmod.TRACE_COUNT
    fit(data, **dict(SMALL, chains=3), seed=4, chain_method="sequential")
    assert fitmod.TRACE_COUNT == traces


def test_parallel_fit_batch_keeps_each_datasets_draws(data):
    other = generate(SPEC, 12)[0]
    seq = fit_batch([data, other], **FOUR, seeds=[1, 2])
    par = fit_batch([data, other], **FOUR, seeds=[1, 2], chain_method="parallel", chain_workers=2)
    for a, b in zip(seq, par):
        _assert_same_draws(a, b)


def test_split_and_join_are_inverse():
    rng = np.random.default_rng(0)
    tree = {"a": rng.normal(size=(2, 5, 3)), "b": rng.normal(size=(2, 5))}
    parts = split_chains(tree, 2)
    assert [p["a"].shape[1] for p in parts] == [3, 3]
    np.testing.assert_array_equal(parts[1]["a"][:, 2], tree["a"][:, 4])  # padding repeats the last chain
    back = join_chains(parts, 5)
    for k in tree:
        np.testing.assert_array_equal(back[k], tree[k])


def test_chain_method_choices_and_errors(monkeypatch):
    assert chain_workers("sequential", 4) == 1
    assert chain_workers("parallel", 4, workers=2) == 2
    assert chain_workers("parallel", 8, workers=3) == 3
    assert chain_workers("parallel", 5, workers=8) == 2  # parts of at least two chains
    assert chain_workers("parallel", 2, workers=8) == 1
    monkeypatch.delenv("SIMSTUDY_CHAIN_METHOD", raising=False)
    assert chain_workers("auto", 4, workers=2) == 2  # auto without the variable: parallel
    monkeypatch.setenv("SIMSTUDY_CHAIN_METHOD", "sequential")
    assert chain_workers("auto", 4, workers=2) == 1
    monkeypatch.setenv("SIMSTUDY_CHAIN_METHOD", "parallel")
    assert chain_workers("auto", 4, workers=2) == 2
    assert chain_workers("auto", 4, batch_method="vmap", workers=2) == 1
    monkeypatch.setenv("SIMSTUDY_CHAIN_METHOD", "threads")
    with pytest.raises(ValueError, match="SIMSTUDY_CHAIN_METHOD"):
        chain_workers("auto", 4)
    with pytest.raises(ValueError, match="chain_method must be one of auto, sequential, parallel"):
        chain_workers("pmap", 4)
    with pytest.raises(ValueError, match="chain_workers must be a positive integer"):
        chain_workers("parallel", 4, workers=0)
    with pytest.raises(ValueError, match="needs batch_method='map'"):
        chain_workers("parallel", 4, batch_method="vmap")
    # checked before anything is compiled
    data = generate(SPEC, 11)[0]
    traces = fitmod.TRACE_COUNT
    with pytest.raises(ValueError, match="chain_method"):
        fit(data, **SMALL, chain_method="threads")
    assert fitmod.TRACE_COUNT == traces


def test_grid_stays_sequential():
    # grid workers fit with fit_batch (sequential unless asked) and get the variable that makes
    # any single fit on a worker sequential too: one thread per worker
    from simstudy.study.cluster import worker_env

    assert inspect.signature(fit_batch).parameters["chain_method"].default == "sequential"
    assert worker_env()["SIMSTUDY_CHAIN_METHOD"] == "sequential"
    assert inspect.signature(fit).parameters["chain_method"].default == "auto"
