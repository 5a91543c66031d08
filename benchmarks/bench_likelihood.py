"""Milliseconds per gradient of the SS-MELSM log density on the per-observation likelihood path,
Saeb M3 (11,386 students in 160 schools, a random ``student_ses`` slope in the scale: K = 2,
four indicator combinations): the earlier flat formulation (``layout="flat"``: an (N, 2^K) log-sigma array, 2^K exponentials per
observation, an unsorted segment sum) against the factored one (``simstudy.model.ssmelsm.
_factored_loglik``: group sums of the scale design, 1 + K exponentials per observation, one
sorted segment sum), same run, same points, interleaved; prints wall-clock and CPU time per
call, their ratios, and the largest differences of log density and gradient (prints figures;
not a test). CPU time (``time.process_time``) is the steadier figure on a shared machine.

    .venv/bin/python benchmarks/bench_likelihood.py [--reps 300]
"""

import argparse
import os
import time
import warnings

warnings.simplefilter("ignore")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

M3 = ("math_proficiency ~ student_ses * school_ses + (1 | school_id)",
      "~ student_ses * school_ses + (1 + student_ses | school_id)")


def gradient_fn(data, layout: str, init):
    """A jitted ``x -> (potential, gradient)`` on the sampler's flat unconstrained vector."""
    from functools import partial

    import jax
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import potential_energy

    from simstudy.model.priors import Priors
    from simstudy.model.ssmelsm import hyper_arrays, model_arrays, ssmelsm, structure_for

    priors = Priors()
    structure = structure_for(data, priors)
    arrays = model_arrays(data, structure, layout=layout)
    hyper = hyper_arrays(data, priors)
    model = partial(ssmelsm, structure=structure)
    flat, unravel = ravel_pytree(init)
    f = jax.jit(jax.value_and_grad(lambda x: potential_energy(model, (arrays, hyper), {}, unravel(x))))
    return f, flat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    import jax

    from simstudy.datasets import add_saeb_predictors, load_saeb
    from simstudy.model.priors import Priors
    from simstudy.model.sampler import initial_values
    from simstudy.model.ssmelsm import structure_for
    from simstudy.realdata.formula import melsm_data_from_formulas

    data = melsm_data_from_formulas(add_saeb_predictors(load_saeb(), grand_mean="students"), *M3)
    structure = structure_for(data, Priors())
    assert not structure.sufficient
    init = {k: v[0] for k, v in initial_values(data, structure, np.random.default_rng(0), 1).items()}
    layouts = ["flat", "factored", "native"]
    fns = {}
    for layout in layouts:
        f, x = gradient_fn(data, layout, init)
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        fns[layout] = (f, x, time.perf_counter() - t0)
    # random points around the start (the same for every layout)
    rng = np.random.default_rng(1)
    x0 = fns["flat"][1]
    points = [x0 + 0.05 * rng.normal(size=x0.shape) for _ in range(5)]
    values = {k: [jax.tree.map(np.asarray, f(p)) for p in points] for k, (f, _, _) in fns.items()}
    times = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for rep in range(args.reps):  # interleaved: machine noise hits every layout alike
        for k, (f, _, _) in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(f(points[rep % 5]))
            cpu[k].append(time.process_time() - c0)
            times[k].append(time.perf_counter() - t0)
    print(f"Saeb M3: N = {data.n_obs}, J = {data.n_groups}, K = {data.dims['K']} ({2 ** data.dims['K']} combinations); "
          f"median of {args.reps} value-and-gradient calls")
    base, base_cpu = np.median(times["flat"]), np.median(cpu["flat"])
    for k in fns:
        v0, g0 = values["flat"][0]
        dv = max(abs(float(v[0]) - float(w[0])) / abs(float(w[0])) for v, w in zip(values[k], values["flat"]))
        dg = max(float(np.max(np.abs(v[1] - w[1]) / (np.abs(w[1]) + 1.0))) for v, w in zip(values[k], values["flat"]))
        med, med_cpu = np.median(times[k]), np.median(cpu[k])
        print(f"  {k:>8}: {1e3 * med:6.3f} ms wall, {1e3 * med_cpu:6.3f} ms CPU per gradient "
              f"(compile {fns[k][2]:.1f} s); x{base / med:4.2f} wall, x{base_cpu / med_cpu:4.2f} CPU vs flat; "
              f"rel. diff: log density {dv:.1e}, gradient {dg:.1e}")
    print(f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
