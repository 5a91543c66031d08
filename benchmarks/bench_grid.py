"""Throughput of the grid runner for Saeb-sized cells (J = 160 groups, n = 71 per group).

    .venv/bin/python benchmarks/bench_grid.py [--replicates 4] [--block-size 2] [--workers N]
                                               [--chains 4 --warmup 1000 --draws 1000]
                                               [--size-dist balanced|saeb]

Runs the same datasets twice -- first with ``fit_batch`` called directly in this process,
block by block (after one warm-up compile; ``runner.fit_block``: one call per data shape,
i.e. per replicate with ``--size-dist saeb``), then as a grid (``run_study`` on a LocalCluster
with ``--workers`` single-threaded worker processes, into a temporary store) -- and prints

* fits per minute of the grid, end to end (cluster start, compilation, writes included)
  and in steady state;
* the grid's overhead over calling ``fit_batch`` directly on the same datasets, per task
  (worker-seconds per fit: data generation, scoring and the store write included) and end
  to end (wall time x workers);
* the peak resident memory (RSS) of every worker process and of the direct run.

Both runs use the worker settings (single-threaded XLA, CPU) and the same compilation
cache, so the grid's workers load the compiled program instead of compiling it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from simstudy.study.runner import worker_env

os.environ.update(worker_env())  # before JAX starts: the workers' settings for the direct run too

DESIGN = """
name = "bench_grid"
seed = 2024
replicates = {replicates}
block_size = {block_size}

[mcmc]
chains = {chains}
warmup = {warmup}
draws = {draws}

[generator]
n_groups = 160
group_size = 71
size_dist = "{size_dist}"
effect = "slab"
slab_sd = 0.437

[model]
correlated = false

[factors]
share_inconsistent = [0.10, 0.25]
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def direct(design) -> dict:
    """fit_batch on every task's block, in this process, after a warm-up compile."""
    from simstudy.study.generate import generate
    from simstudy.study.runner import fit_block, fit_seed

    tasks = design.tasks()
    t = tasks[0]
    warm = [generate(t.cell.generator_spec(), s)[0] for s in t.seed_sequences()]
    t0 = time.perf_counter()
    res, compile_s = fit_block(warm, t.cell.priors(), [fit_seed(design.seed, t.cell.cell_id, r) for r in t.replicates],
                               t.cell.mcmc)
    first_call = time.perf_counter() - t0
    del res, warm
    fit_s = sample_s = 0.0
    n_fits = 0
    for task in tasks:
        data = [generate(task.cell.generator_spec(), s)[0] for s in task.seed_sequences()]
        t0 = time.perf_counter()
        fits, _ = fit_block(data, task.cell.priors(),
                            [fit_seed(design.seed, task.cell.cell_id, r) for r in task.replicates], task.cell.mcmc)
        fit_s += time.perf_counter() - t0
        sample_s += sum(f.sample_s for f in fits)
        n_fits += len(data)
        del fits
    return {"compile_s": compile_s, "first_call_s": first_call, "fit_s": fit_s, "sample_s": sample_s,
            "n_fits": n_fits, "rss_mb": peak_rss_mb()}


def grid(design, store: Path, workers: int) -> dict:
    from simstudy.study.runner import _client_for, run_study

    def worker_rss():
        import resource as r

        return r.getrusage(r.RUSAGE_SELF).ru_maxrss / 1024.0

    t0 = time.perf_counter()
    with _client_for("local", workers, len(design.tasks()), lambda msg: None) as client:
        client.wait_for_workers(workers)
        started = time.perf_counter() - t0
        summary = run_study(design, store, client=client, progress=False)
        rss = sorted(client.run(worker_rss).values())
    wall = time.perf_counter() - t0
    results = summary.task_results
    # steady state: every task but the first of each worker (which imports JAX/ArviZ and
    # compiles or loads the program)
    first: dict[str, object] = {}
    for r in results:  # in completion order
        first.setdefault(r.worker, r)
    steady = [r for r in results if first[r.worker] is not r]
    return {
        "steady_n": sum(len(r.statuses) for r in steady),
        "steady_task_s": sum(r.seconds for r in steady),
        "steady_fit_s": sum(r.fit_s for r in steady),
        "steady_sample_s": sum(r.sample_s for r in steady),
        "steady_other_s": sum(r.generate_s + r.score_s + r.write_s for r in steady),
        "steady_compile_s": sum(r.compile_s for r in steady),
        "wall_s": wall,
        "start_s": started,
        "run_s": summary.seconds,
        "n_fits": summary.fits_run,
        "failed": summary.fits_failed,
        "task_s": sum(r.seconds for r in results),
        "compile_s": sum(r.compile_s for r in results),
        "sample_s": sum(r.sample_s for r in results),
        "fit_s": sum(r.fit_s for r in results),
        "generate_s": sum(r.generate_s for r in results),
        "score_s": sum(r.score_s for r in results),
        "write_s": sum(r.write_s for r in results),
        "rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=6, help="replicates per cell (2 cells)")
    parser.add_argument("--block-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="default: the CPUs available")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--size-dist", default="balanced", choices=["balanced", "saeb"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=r".*single observation")  # Saeb sizes include 1-student schools

    from simstudy.study.design import parse_design

    design = parse_design(DESIGN.format(replicates=args.replicates, block_size=args.block_size, chains=args.chains,
                                        warmup=args.warmup, draws=args.draws, size_dist=args.size_dist),
                          source="bench_grid.toml")
    workers = args.workers or len(os.sched_getaffinity(0))
    n_fits = design.n_fits
    print(f"load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"design: 2 cells x {args.replicates} replicates (blocks of {args.block_size}) = {n_fits} fits; "
          f"J = 160, n = 71 ({args.size_dist}); {args.chains} chains x ({args.warmup} + {args.draws}); "
          f"{workers} worker(s) on {os.cpu_count()} CPUs")

    d = direct(design)
    per_fit_direct = d["fit_s"] / d["n_fits"]
    print(f"\ndirect fit_batch (1 process): compile {d['compile_s']:.1f} s (first call {d['first_call_s']:.1f} s); "
          f"{d['n_fits']} fits in {d['fit_s']:.1f} s = {per_fit_direct:.2f} s/fit ({60 / per_fit_direct:.1f} fits/min; "
          f"sampling {d['sample_s'] / d['n_fits']:.2f} s/fit, the rest is fit_batch's post-processing); "
          f"peak RSS {d['rss_mb']:.0f} MB")

    tmp = Path(tempfile.mkdtemp(prefix="bench_grid-"))
    try:
        g = grid(design, tmp / "bench.zarr", workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = g["n_fits"]
    print(f"grid ({workers} workers): {n} fits ({g['failed']} failed) in {g['wall_s']:.1f} s wall "
          f"(cluster start {g['start_s']:.1f} s, run {g['run_s']:.1f} s); compilation / cache loads in the workers "
          f"{g['compile_s']:.1f} s in total")
    print(f"  fits/min end to end:          {60 * n / g['wall_s']:.1f}")
    ns = g["steady_n"]
    if ns:
        per_fit_grid = g["steady_task_s"] / ns
        fit_in_grid = g["steady_fit_s"] / ns
        runner_work = (g["steady_task_s"] - g["steady_fit_s"]) / ns
        print(f"  fits/min steady state:        {60 * workers / per_fit_grid:.1f} "
              f"({per_fit_grid:.2f} worker-s per fit; {ns} fits after each worker's first task)")
        print(f"  fits/min ideal (direct x {workers}):   {60 * workers / per_fit_direct:.1f}")
        print(f"  per fit in a task: fit_batch {fit_in_grid:.2f} s (sampling {g['steady_sample_s'] / ns:.2f} s), "
              f"generate + score + store write {g['steady_other_s'] / ns * 1e3:.0f} ms "
              f"(store write {g['write_s'] / n * 1e3:.0f} ms, score {g['score_s'] / n * 1e3:.0f} ms)")
        print("\noverhead of the grid vs calling fit_batch directly on the same datasets (target <= 10%):")
        print(f"  the runner's own work per fit (generate, score, write): "
              f"{100 * runner_work / fit_in_grid:+.1f}% of the fit_batch time")
        print(f"  steady state, worker-s per fit vs direct s per fit:    "
              f"{100 * (per_fit_grid / per_fit_direct - 1):+.1f}%  (includes {workers} processes sharing "
              f"{os.cpu_count()} CPUs with whatever else runs: fit_batch alone {100 * (fit_in_grid / per_fit_direct - 1):+.1f}%)")
    print(f"  end to end (wall x workers / direct time - 1):         "
          f"{100 * (g['wall_s'] * workers / d['fit_s'] - 1):+.1f}%  (cluster start, imports, compilation and the "
          "idle tail included: fixed costs that shrink with longer runs)")
    print(f"\npeak RSS per worker: {', '.join(f'{x:.0f}' for x in g['rss_mb'])} MB "
          f"(blocks of {args.block_size} fits x {args.chains} chains x {args.draws} draws, J = 160); "
          f"direct process {d['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
