"""Speed of the SS-MELSM sampler on a Saeb-sized problem (prints figures; not a test).

J = 160 groups of 71 (about the Saeb sample: 160 schools, 11,386 students), intercept-only
location and scale, 4 chains x (1000 warm-up + 1000 draws).

Targets on a 2-core machine: <= 5 s per fit after compile; >= 20 fits/minute batched (the
batch runs on one core, so the grid's figure is this times the number of workers);
R-hat < 1.01 for all hyperparameters.

    .venv/bin/python benchmarks/bench_fit.py [--batch 20] [--no-cache]
"""

import argparse
import os
import time
import warnings

warnings.simplefilter("ignore")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

from simstudy.model.sampler import fit, fit_batch  # noqa: E402
from simstudy.study.generate import GeneratorSpec, generate  # noqa: E402

SPEC = GeneratorSpec(n_groups=160, group_size=71, share_inconsistent=0.1, slab_sd=0.668, tau_u=0.33, eta0=-0.25)


def tau_t_ess_per_s(res) -> float:
    ess = float(res.diagnostics["ess_bulk"]["tau"].sel(random_effect="scale:Intercept"))
    return ess / res.sample_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--no-cache", action="store_true", help="disable the persistent compilation cache")
    args = parser.parse_args()
    if args.no_cache:
        os.environ["SIMSTUDY_JAX_CACHE"] = "off"

    data = [generate(SPEC, seed)[0] for seed in range(args.batch + 2)]
    t0 = time.perf_counter()
    first = fit(data[0], seed=0)
    wall_first = time.perf_counter() - t0
    second = fit(data[1], seed=1)
    print(f"single fit: compile {first.compile_s:.1f} s (first call wall {wall_first:.1f} s), "
          f"sampling {first.sample_s:.2f} s / {second.sample_s:.2f} s per fit after compile")
    for name, res in (("fit 1", first), ("fit 2", second)):
        print(f"  {name}: R-hat max (hyperparameters) {res.rhat_max:.4f}, min bulk ESS {res.ess_bulk_min:.0f}, "
              f"divergences {res.divergences}, mean tree depth {float(res.sample_stats['tree_depth'].mean()):.2f}, "
              f"tau_t ESS/s {tau_t_ess_per_s(res):.0f}")

    t0 = time.perf_counter()
    batch = fit_batch(data[2:], seeds=range(2, args.batch + 2))
    wall = time.perf_counter() - t0
    sampling = wall - batch[0].compile_s
    print(f"batch of {args.batch}: compile {batch[0].compile_s:.1f} s, sampling {sampling:.1f} s, "
          f"{60 * args.batch / sampling:.1f} fits/minute on one core "
          f"(x{os.cpu_count()} cores with one worker per core = {60 * args.batch / sampling * os.cpu_count():.1f})")
    rhat = np.array([r.rhat_max for r in batch])
    print(f"  R-hat max over the batch {rhat.max():.4f}; fits with R-hat > 1.01: {(rhat > 1.01).sum()} / {len(batch)}; "
          f"divergent fits: {sum(r.divergences > 0 for r in batch)}")


if __name__ == "__main__":
    main()
