"""Fit the SS-MELSM with NUTS, compiling once per shape.

``numpyro.infer.MCMC.run`` re-traces on every call; here the functional NUTS kernel
(``numpyro.infer.hmc.hmc``) is driven by ``lax.scan`` inside one ``jax.jit``-ed function,
vmapped over chains and over datasets, compiled ahead of time and cached by
(model structure, MCMC settings, argument shapes). Prior values are runtime arguments, so
refitting a same-shaped dataset, or the same dataset under another ``pi`` or SD prior,
reuses the compiled program. ``chain_method="parallel"`` splits the chains into parts run at
once by one compiled program (:mod:`.chains`): the same draws, on more cores.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from functools import partial

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, potential_energy

from .chains import chain_workers as _chain_parts, join_chains, run_parts, split_chains
from .data import MelsmData
from .ssmelsm import Structure, hyper_arrays, intercept_column, model_arrays, ssmelsm, structure_for
from .priors import Priors
from .response_scale import ResponseScaling, response_scaling
from .result import FitResult, build_results

#: number of times the batched sampler has been traced (a trace precedes every compile)
TRACE_COUNT = 0
#: number of times the continuation (extension) program has been traced
CONTINUE_TRACE_COUNT = 0
#: iterations between progress reports from inside the compiled sampler
PROGRESS_EVERY = 25
_progress_sink = None  # callable(iterations) while a fit with progress reporting runs
_COMPILED: dict[tuple, tuple] = {}
_JAX_CONFIGURED = False


@dataclass(frozen=True)
class MCMCSettings:
    """NUTS settings. ``chains`` x (``warmup`` + ``draws``) iterations per dataset."""

    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    target_accept: float = 0.8
    max_tree_depth: int = 10

    def __post_init__(self):
        for name in ("chains", "warmup", "draws", "max_tree_depth"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < float(self.target_accept) < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {self.target_accept!r}")


def configure_jax(cache_dir: str | None = None) -> None:
    """Enable JAX's persistent compilation cache (once per process).

    Directory: ``cache_dir``, else ``$SIMSTUDY_JAX_CACHE``, else ``~/.cache/simstudy/jax``;
    ``SIMSTUDY_JAX_CACHE=off`` disables it.
    """
    global _JAX_CONFIGURED
    if _JAX_CONFIGURED and cache_dir is None:
        return
    path = cache_dir or os.environ.get("SIMSTUDY_JAX_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "simstudy", "jax"
    )
    if path.lower() != "off":
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
        # every program, small ones too: the pointwise log-likelihood for LOO compiles in under
        # a second, and caching it took 0.85 s off a warm Saeb M1 `simstudy fit`
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    _JAX_CONFIGURED = True


# ----------------------------------------------------------------------------- sampler
def _record_names(structure: Structure) -> tuple[str, ...]:
    names = ["beta", "eta", "tau", "u", "t", "incl_prob", "group_mean", "group_sd"]
    if structure.correlated:
        names.append("L_corr")
    if structure.k_scale > 1:
        names.append("combo_prob")  # for K = 1 it is (1 - incl_prob, incl_prob)
    if structure.beta_pi:
        names.append("pi")
    return tuple(names)


def _report(iterations) -> None:
    """Host side of the in-program progress callback."""
    if _progress_sink is not None:
        _progress_sink(int(iterations))


def _maybe_report(i, enabled) -> None:
    every = PROGRESS_EVERY
    jax.lax.cond(enabled & (i % every == every - 1), lambda: jax.debug.callback(_report, every), lambda: None)


def _nuts(init_params, args, rng_key, *, structure: Structure, settings: MCMCSettings):
    """The NUTS kernel on the flat parameter vector: ``(model, unravel, init_state, sample_kernel)``."""
    model = partial(ssmelsm, structure=structure)
    # NUTS runs on one flat vector: fewer, larger array operations per leapfrog step
    flat_init, unravel = ravel_pytree(init_params)

    def potential_fn_gen(arrays, hyper):
        return lambda x: potential_energy(model, (arrays, hyper), {}, unravel(x))

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")
    state = init_kernel(
        flat_init,
        settings.warmup,
        target_accept_prob=settings.target_accept,
        max_tree_depth=settings.max_tree_depth,
        model_args=args,
        rng_key=rng_key,
    )
    return model, unravel, state, sample_kernel


def _draw_phase(state, sample_kernel, model, unravel, args, report, structure: Structure, n: int):
    """``n`` post-warm-up iterations from ``state``: (final state, records, statistics)."""
    names = _record_names(structure)

    def draw(state, i):
        state = sample_kernel(state, model_args=args)
        _maybe_report(i, report)
        values = constrain_fn(model, args, {}, unravel(state.z), return_deterministic=True)
        record = {k: values[k] for k in names}
        stats = {
            "diverging": state.diverging,
            "n_steps": state.num_steps,
            "accept_prob": state.accept_prob,
            "energy": state.energy,
        }
        return state, (record, stats)

    state, (records, stats) = jax.lax.scan(draw, state, jnp.arange(n))
    stats["step_size"] = jnp.broadcast_to(state.adapt_state.step_size, (n,))
    return state, records, stats


def _run_chain(rng_key, init_params, arrays, hyper, report, *, structure: Structure, settings: MCMCSettings):
    """Warm up and draw one chain; returns per-draw records, sampler statistics and the
    final NUTS state (step size and mass matrix adapted; input of :func:`_continue_chain`).
    With ``report`` (a runtime boolean, so one program serves both) the program calls back
    to the host every ``PROGRESS_EVERY`` iterations (progress bars)."""
    k_init, _ = jax.random.split(rng_key)
    args = (arrays, hyper)
    model, unravel, state, sample_kernel = _nuts(init_params, args, k_init, structure=structure, settings=settings)

    def warm(state, i):
        state = sample_kernel(state, model_args=args)
        _maybe_report(i, report)
        return state, state.diverging

    state, warm_div = jax.lax.scan(warm, state, jnp.arange(settings.warmup))
    state, records, stats = _draw_phase(state, sample_kernel, model, unravel, args, report, structure, settings.draws)
    stats["warmup_divergences"] = jnp.sum(warm_div)
    return records, stats, state


def _continue_chain(state, init_params, arrays, hyper, report, *, structure: Structure, settings: MCMCSettings):
    """Another ``settings.draws`` draws of a chain from its final ``state`` (an extension).
    The state carries the chain's RNG key, adapted step size and mass matrix; its iteration
    counter is past warm-up, so nothing is adapted. ``init_params`` only fixes the layout
    of the flat vector (the kernel's own initial state is discarded)."""
    args = (arrays, hyper)
    model, unravel, _, sample_kernel = _nuts(init_params, args, state.rng_key, structure=structure, settings=settings)
    return _draw_phase(state, sample_kernel, model, unravel, args, report, structure, settings.draws)


def _continuation(structure: Structure, settings: MCMCSettings):
    """One jitted program continuing datasets x chains from their states (``lax.map``)."""

    def run(states, inits, arrays, hyper, report):
        global CONTINUE_TRACE_COUNT
        CONTINUE_TRACE_COUNT += 1
        chain = partial(_continue_chain, report=report, structure=structure, settings=settings)

        def per_dataset(args):
            st, init, a, h = args
            return jax.lax.map(lambda si: chain(si[0], si[1], a, h), (st, init))

        return jax.lax.map(per_dataset, (states, inits, arrays, hyper))

    return jax.jit(run)


def _batched(structure: Structure, settings: MCMCSettings, method: str):
    """One jitted program over datasets x chains.

    ``method="map"`` (default) runs chains and datasets one after another inside the
    compiled program (``lax.map``); ``"vmap"`` vectorises them. Vectorised NUTS makes every
    lane wait for the deepest trajectory of the batch, which measured about twice as slow
    on CPU; it can pay off on accelerators.
    """

    def run(keys, inits, arrays, hyper, report):
        global TRACE_COUNT
        TRACE_COUNT += 1
        chain = partial(_run_chain, report=report, structure=structure, settings=settings)
        if method == "vmap":
            per_dataset = jax.vmap(chain, in_axes=(0, 0, None, None))
            return jax.vmap(per_dataset)(keys, inits, arrays, hyper)

        def per_dataset(args):
            k, init, a, h = args
            return jax.lax.map(lambda ki: chain(ki[0], ki[1], a, h), (k, init))

        return jax.lax.map(per_dataset, (keys, inits, arrays, hyper))

    return jax.jit(run)


def _signature(tree) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (treedef, tuple((np.shape(x), np.result_type(x).str) for x in leaves))


def compiled_sampler(structure: Structure, settings: MCMCSettings, args, method: str = "map") -> tuple[object, float]:
    """The compiled batched sampler for these argument shapes, and the seconds spent
    compiling it now (0.0 when it came from the in-process cache)."""
    if method not in ("map", "vmap"):
        raise ValueError(f"batch method must be 'map' or 'vmap', got {method!r}")
    settings = _local(settings, args)
    key = (structure, settings, method, _signature(args))
    if key in _COMPILED:
        return _COMPILED[key], 0.0
    configure_jax()
    t0 = time.perf_counter()
    compiled = _batched(structure, settings, method).lower(*args).compile()
    seconds = time.perf_counter() - t0
    _COMPILED[key] = compiled
    return compiled, seconds


def compiled_continuation(structure: Structure, settings: MCMCSettings, args) -> tuple[object, float]:
    """The compiled extension program for these argument shapes (one dataset's states), and
    the seconds spent compiling it now (0.0 when cached): compiled once per shape."""
    settings = _local(settings, args)
    key = ("continue", structure, settings, _signature(args))
    if key in _COMPILED:
        return _COMPILED[key], 0.0
    configure_jax()
    t0 = time.perf_counter()
    compiled = _continuation(structure, settings).lower(*args).compile()
    seconds = time.perf_counter() - t0
    _COMPILED[key] = compiled
    return compiled, seconds


def _local(settings: MCMCSettings, args) -> MCMCSettings:
    """``settings`` with the chain count of these arguments (axis 1 of the first): the program
    does not depend on the total, so a part of a parallel fit shares the program of a
    sequential fit with that many chains."""
    return replace(settings, chains=int(np.shape(jax.tree_util.tree_leaves(args[0])[0])[1]))


def clear_compiled_cache() -> None:
    _COMPILED.clear()


# ----------------------------------------------------------------------------- inits
def initial_values(data: MelsmData, structure: Structure, rng: np.random.Generator, chains: int) -> dict:
    """Unconstrained starting points near the data's own moments (finite by construction):
    beta from least squares, the scale intercept at log(residual SD), SDs in [0.2, 0.5],
    correlations 0, random effects near 0."""
    d = data.dims
    beta_ls, *_ = np.linalg.lstsq(data.X, data.y, rcond=None)
    resid = data.y - data.X @ beta_ls
    resid_sd = max(float(np.std(resid)), 1e-3)
    eta0 = np.zeros(d["S"])
    w_int = intercept_column(data.W)
    if w_int is not None:
        eta0[w_int] = np.log(resid_sd)
    J, Q = structure.n_groups, structure.n_random
    init = {
        "beta": beta_ls + 0.1 * resid_sd * rng.uniform(-1, 1, (chains, d["P"])),
        "eta": eta0 + rng.uniform(-0.1, 0.1, (chains, d["S"])),
        "tau": np.log(rng.uniform(0.2, 0.5, (chains, Q))),
    }
    if structure.correlated:
        if Q == 2:
            init["rho"] = np.zeros(chains)
        else:
            init["L_corr"] = np.zeros((chains, Q * (Q - 1) // 2))
    if structure.centered_location:
        match = np.array(structure.loc_match)
        centre = np.where(match >= 0, init["beta"][:, np.maximum(match, 0)], 0.0)  # (chains, Q_loc)
        init["m"] = centre[:, None, :] + 0.1 * resid_sd * rng.uniform(-1, 1, (chains, J, structure.q_loc))
        if not structure.partial_scale:
            init["z_scale"] = rng.uniform(-0.5, 0.5, (chains, J, structure.k_scale))
    else:
        init["z"] = rng.uniform(-0.5, 0.5, (chains, J, structure.q_loc if structure.partial_scale else Q))
    if structure.partial_scale:
        init["x_scale"] = rng.uniform(-0.5, 0.5, (chains, J, structure.k_scale))
    if structure.beta_pi:
        p = rng.uniform(0.1, 0.5, chains)
        init["pi"] = np.log(p) - np.log1p(-p)  # unconstrained: logit(pi)
    return init


def _seed_sequence(seed) -> np.random.SeedSequence:
    """A fresh SeedSequence (a copy when given one: spawning mutates, and the same seed must
    always give the same draws)."""
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key, pool_size=seed.pool_size)
    return np.random.SeedSequence(seed)


# ----------------------------------------------------------------------------- API
def batch_key(data: MelsmData, priors: Priors | None = None, *, centered_location: bool | None = None,
              sufficient: bool | None = None, partial_scale: bool | None = None) -> tuple:
    """Datasets with equal keys can share one :func:`fit_batch` call (and compiled program):
    the model structure and the shapes of the arrays the model reads. On the
    sufficient-statistics path the group sizes do not matter, only J and the design widths."""
    data = response_scaling(data).data(data)  # what fit_batch samples (its default, automatic scaling)
    structure = structure_for(data, priors or Priors(), sufficient=sufficient, centered_location=centered_location,
                              partial_scale=partial_scale)
    return structure, _signature(model_arrays(data, structure))


def fit_batch(
    datasets: list[MelsmData],
    priors: Priors | list[Priors] | None = None,
    *,
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    seeds=None,
    centered_location: bool | None = None,
    sufficient: bool | None = None,
    batch_method: str = "map",
    progress=None,
    pip_diagnostics: bool = True,
    max_extensions: int = 0,
    partial_scale: bool | None = None,
    chain_method: str = "sequential",
    chain_workers: int | None = None,
    standardize: bool | None = None,
) -> list[FitResult]:
    """Fit many same-shaped datasets in one compiled, vmapped call (datasets x chains).

    ``priors`` may be one :class:`Priors` for all or one per dataset (same structure).
    ``seeds``: one seed (int or SeedSequence) per dataset; default 0, 1, 2, ...
    ``batch_method``: ``"map"`` (sequential inside the compiled program, best on CPU) or
    ``"vmap"`` (vectorised). Each dataset's chains depend only on its own seed, so results
    do not depend on how datasets are batched.
    ``progress``: an optional callable ``progress(phase, done, total)`` told about the phases
    ("compiling", "sampling", "done") and, while sampling, the iterations completed out of
    ``datasets x chains x (warmup + draws)`` (reported from inside the compiled program).
    ``pip_diagnostics=False`` skips R-hat/ESS of the per-group inclusion probabilities (about
    0.5 s per J = 160 fit; the grid's convergence rule uses the hyperparameters only).
    ``max_extensions``: a fit failing the convergence rule (:mod:`simstudy.model.diagnostics`)
    continues its own chains from their final state (adapted step size and mass matrix kept)
    for another ``draws`` draws, and is judged again, up to this many times (see
    :func:`extend_fit`; the designs and ``simstudy fit`` default to 2, the library to 0).
    ``chain_method``: ``"sequential"`` (default here: one core, what grid workers use),
    ``"parallel"`` (the chains split into ``min(chains // 2, chain_workers or usable cores)``
    parts run at once by one compiled program, :mod:`simstudy.model.chains`; the same draws) or
    ``"auto"`` (``$SIMSTUDY_CHAIN_METHOD``, else parallel).
    ``standardize``: sample the response standardised, ``(y - mean) / sd``, with every prior
    moved along (an exact change of variables, :mod:`simstudy.model.response_scale`; results
    are reported on the data's scale): None (default) for a response outside the unit band
    only (``sd`` outside [0.01, 100] or ``|mean| > 100 sd``), True always, False never.
    """
    if isinstance(max_extensions, bool) or not isinstance(max_extensions, (int, np.integer)) or max_extensions < 0:
        raise ValueError(f"max_extensions must be a non-negative integer, got {max_extensions!r}")
    if not datasets:
        raise ValueError("fit_batch needs at least one dataset")
    settings = MCMCSettings(chains, warmup, draws, target_accept, max_tree_depth)
    workers = _chain_parts(chain_method, chains, batch_method, chain_workers)
    priors_list = priors if isinstance(priors, list) else [priors or Priors()] * len(datasets)
    if len(priors_list) != len(datasets):
        raise ValueError(f"got {len(priors_list)} priors for {len(datasets)} datasets")
    seeds = list(range(len(datasets))) if seeds is None else list(seeds)
    if len(seeds) != len(datasets):
        raise ValueError(f"got {len(seeds)} seeds for {len(datasets)} datasets")
    # sampled on the unit scale where the response is far from it (exact; mapped back in build_results)
    raw = list(datasets)
    scalings = [response_scaling(d, standardize) for d in raw]
    datasets = [sc.data(d) for sc, d in zip(scalings, raw)]

    # the parameterisation follows dataset 0 (pass centered_location to fix it independently of
    # the batch); everything else structural must agree
    structure = structure_for(datasets[0], priors_list[0], sufficient=sufficient, centered_location=centered_location,
                              partial_scale=partial_scale)
    arrays = [model_arrays(d, structure) for d in datasets]
    signature = _signature(arrays[0])
    for i, (d, p, a) in enumerate(zip(datasets, priors_list, arrays)):
        if _signature(a) != signature:
            raise ValueError(
                f"dataset {i} has shape {d.shape_signature()} but dataset 0 has {datasets[0].shape_signature()}; "
                "fit_batch needs same-shaped datasets (group them with batch_key first; with group-level "
                "scale predictors only J and the design widths matter, not the group sizes)"
            )
        if structure_for(d, p, sufficient=structure.sufficient, centered_location=structure.centered_location,
                         partial_scale=structure.partial_scale) != structure:
            raise ValueError(f"dataset {i}: priors/data give a different model structure than dataset 0")

    keys, inits = [], []
    for d, s in zip(datasets, seeds):
        ss = _seed_sequence(s)
        init_ss, key_ss = ss.spawn(2)
        inits.append(initial_values(d, structure, np.random.default_rng(init_ss), chains))
        words = key_ss.generate_state(2 * chains, dtype=np.uint32).reshape(chains, 2)
        keys.append(words)
    stack = lambda trees: jax.tree_util.tree_map(lambda *xs: np.stack(xs), *trees)  # noqa: E731
    args = (
        np.stack(keys),
        stack(inits),
        stack(arrays),
        stack([sc.hyper(hyper_arrays(r, p), structure.q_loc) for sc, r, p in zip(scalings, raw, priors_list)]),
        np.bool_(progress is not None),
    )
    total = len(datasets) * chains * (warmup + draws)
    if progress is not None:
        progress("compiling", 0, total)
    parts = _split_args(args, workers)
    compiled, compile_s = compiled_sampler(structure, settings, parts[0], batch_method)
    (records, stats, states), sample_s = _execute(compiled, parts, progress, total, chains=chains)
    results = build_results(
        raw, priors_list, structure, settings, records, stats,
        compile_s=compile_s, sample_s=sample_s, seeds=seeds, pip_diagnostics=pip_diagnostics, scalings=scalings,
    )
    for res, sc in zip(results, scalings):
        res.extra["chain_workers"] = workers
        if not sc.identity:
            res.extra["response_scaling"] = sc.describe()
    if max_extensions == 0:
        return results
    one = lambda tree, i: jax.tree_util.tree_map(lambda x: x[i : i + 1], tree)  # noqa: E731
    for i, res in enumerate(results):
        if not res.converged:
            chains_i = _Chains(one(records, i), one(stats, i), one(states, i), one(args[1], i), one(args[2], i),
                               one(args[3], i), workers, scalings[i])
            results[i] = extend_fit(res, chains_i, max_extensions, pip_diagnostics=pip_diagnostics, progress=progress)
    return results


@dataclass
class _Chains:
    """One dataset's sampler output and inputs, each with a leading dataset axis of 1."""

    records: dict
    stats: dict
    states: object  # HMCState, leaves (1, chains, ...)
    inits: dict
    arrays: object
    hyper: object
    workers: int = 1  # parts the chains are split into and run at once (1: sequential)
    scaling: ResponseScaling = ResponseScaling()  # how the response was sampled (records on that scale)


#: target_accept of the rerun of a fit with divergent transitions (see :func:`extend_fit`)
RERUN_TARGET_ACCEPT = 0.99


def extend_fit(res: FitResult, chains: _Chains, max_extensions: int, *, pip_diagnostics: bool = True,
               progress=None) -> FitResult:
    """Extend a fit that fails the convergence rule, at most ``max_extensions`` times:

    - without divergences, continue each chain from its final NUTS state for
      ``settings.draws`` more draws (one compiled program per shape, whatever the extension),
      append them, judge again;
    - with divergent transitions (more draws cannot undo them), rerun the fit once from the
      start, same seed, with smaller steps (``target_accept`` raised to
      :data:`RERUN_TARGET_ACCEPT`); the rerun counts as one extension, keeps only its own
      draws (``res.reruns`` is 1) and may itself be extended with what is left.

    The draws depend only on this fit's own seed and states, never on the batch it was in;
    chains fitted in parallel are continued (or rerun) in parallel, with the same draws."""
    structure, settings = res.structure, res.settings
    n, sample_s, compile_s = 0, res.sample_s, res.compile_s
    while n < max_extensions and not res.converged:
        if res.divergences:
            if res.reruns or settings.target_accept >= RERUN_TARGET_ACCEPT:
                break
            return _rerun_with_smaller_steps(res, max_extensions - n - 1, pip_diagnostics, progress, chains.workers)
        args = (chains.states, chains.inits, chains.arrays, chains.hyper, np.bool_(progress is not None))
        parts = _split_args(args, chains.workers)
        compiled, seconds = compiled_continuation(structure, settings, parts[0])
        compile_s += seconds
        total = settings.chains * settings.draws
        (new_states, records, stats), secs = _execute(compiled, parts, progress, total, phase="extending",
                                                      chains=settings.chains)
        chains.states = new_states
        chains.records = {k: np.concatenate([chains.records[k], records[k]], axis=2) for k in chains.records}
        chains.stats = {k: (np.concatenate([v, stats[k]], axis=2) if k in stats else v) for k, v in chains.stats.items()}
        n += 1
        sample_s += secs
        res = build_results(
            [res.data], [res.priors], structure, settings, chains.records, chains.stats, compile_s=compile_s,
            sample_s=[sample_s], seeds=[res.seed], pip_diagnostics=pip_diagnostics, extensions=[n],
            scalings=[chains.scaling],
        )[0]
        res.extra["chain_workers"] = chains.workers
        if not chains.scaling.identity:
            res.extra["response_scaling"] = chains.scaling.describe()
    return res


def _rerun_with_smaller_steps(res: FitResult, extensions_left: int, pip_diagnostics: bool, progress,
                              workers: int = 1) -> FitResult:
    """The fit of ``res`` again from the start at ``target_accept`` :data:`RERUN_TARGET_ACCEPT`
    (same seed, structure and other settings); its time includes the first attempt's."""
    st, se = res.structure, res.settings
    again = fit_batch(
        [res.data], res.priors, chains=se.chains, warmup=se.warmup, draws=se.draws,
        target_accept=RERUN_TARGET_ACCEPT, max_tree_depth=se.max_tree_depth, seeds=[res.seed],
        centered_location=st.centered_location, sufficient=st.sufficient, partial_scale=st.partial_scale,
        progress=progress, pip_diagnostics=pip_diagnostics, max_extensions=extensions_left,
        chain_method="parallel" if workers > 1 else "sequential", chain_workers=workers,
        standardize="response_scaling" in res.extra,  # sampled on the same scale as the first attempt
    )[0]
    again.extensions += 1
    again.reruns = 1
    again.sample_s += res.sample_s
    again.compile_s += res.compile_s
    return again


def _split_args(args, workers: int) -> list:
    """A program's arguments ``(keys or states, inits, arrays, hyper, report)`` split along
    the chain axis into ``workers`` parts (:func:`simstudy.model.chains.split_chains`)."""
    if workers == 1:
        return [args]
    first, inits, *shared = args
    return [(f, i, *shared) for f, i in zip(split_chains(first, workers), split_chains(inits, workers))]


def _execute(compiled, parts, progress, total, phase: str = "sampling", *, chains: int | None = None):
    """Run a compiled program on each element of ``parts`` (argument tuples; several run at
    once, :func:`simstudy.model.chains.run_parts`), forwarding in-program progress reports to
    ``progress``; returns (the outputs as numpy, chain parts joined, and seconds)."""
    global _progress_sink
    done = 0.0
    lock = threading.Lock()
    # padded chains (split_chains) report too: count each report at the real chains' share
    n_run = sum(np.shape(jax.tree_util.tree_leaves(p[0])[0])[1] for p in parts)
    share = (chains or n_run) / n_run

    def sink(iterations):
        nonlocal done
        with lock:
            done = min(total, done + iterations * share)
            progress(phase, int(round(done)), total)

    if progress is not None:
        progress(phase, 0, total)
        _progress_sink = sink
    t0 = time.perf_counter()
    try:
        outputs = run_parts(lambda *a: jax.block_until_ready(compiled(*a)), parts)
        jax.effects_barrier()
    finally:
        _progress_sink = None
    seconds = time.perf_counter() - t0
    if progress is not None:
        progress("done", total, total)
    if len(parts) == 1:
        return jax.tree_util.tree_map(np.asarray, outputs[0]), seconds
    return join_chains(outputs, chains), seconds


def fit(
    data: MelsmData,
    priors: Priors | None = None,
    *,
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed=0,
    chain_method: str = "auto",
    **kwargs,
) -> FitResult:
    """Fit the SS-MELSM to one dataset. See :func:`fit_batch` for the options; here
    ``chain_method`` defaults to ``"auto"``: the chains run in parallel on the usable cores
    (same draws as sequentially) unless ``$SIMSTUDY_CHAIN_METHOD=sequential``."""
    return fit_batch([data], priors, chains=chains, warmup=warmup, draws=draws, seeds=[seed],
                     chain_method=chain_method, **kwargs)[0]
