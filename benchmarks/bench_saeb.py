"""Where `simstudy fit` spends its time on the Saeb data, stage by stage: imports, data prep,
compile, sampling, pointwise log-likelihood, LOO, WAIC, summary, writing the fit directory;
Models M1 and M2 (``analysis/saeb_models.py``; ``--models M3`` adds the random-slope scale
model), each cold (empty JAX compilation cache) and warm (the cache that cold run filled),
every run in a fresh process as the CLI would be (prints figures; not a test). Then
sequential against parallel chains (``chain_method``) on the first model, in one process with
the programs compiled: sampling seconds of each (best of ``--rounds``), the speed-up ratio,
and a check that the draws are identical.

    .venv/bin/python benchmarks/bench_saeb.py [--models M1,M2[,M3]] [--chains 4] [--warmup 1000] [--draws 1000]
        [--chain-method auto] [--before DIR] [--jax-path]

``--before DIR``: also run the stage table with the package found in DIR (e.g. an export of
the main branch: ``git archive main | tar -x -C DIR``), for before/after figures in one run.
``--jax-path``: also run it with the compiled per-observation kernel switched off
(``SIMSTUDY_NATIVE=0``, rows labelled "jax"): M2 and M3 take the per-observation path.
Short chains (e.g. ``--warmup 300 --draws 300``) make a smoke run: every stage but sampling
and LOO/WAIC keeps its cost.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {
    "M1": ("math_proficiency ~ 1 + (1 | school_id)", "~ 1 + (1 | school_id)"),
    "M2": ("math_proficiency ~ student_ses * school_ses + (1 | school_id)",
           "~ student_ses * school_ses + (1 | school_id)"),
    # a random student_ses slope in the scale: the per-observation likelihood, 4 indicator combinations
    "M3": ("math_proficiency ~ student_ses * school_ses + (1 | school_id)",
           "~ student_ses * school_ses + (1 + student_ses | school_id)"),
}
STAGES = ("imports", "prep", "compile", "sampling", "loglik", "loo", "waic", "summary", "writing")


def child(model: str, chains: int, warmup: int, draws: int, chain_method: str | None) -> dict:
    """One `simstudy fit`-like run; returns the seconds per stage."""
    t = {"_begin": time.time()}
    t0 = time.perf_counter()
    import simstudy.cli  # noqa: F401  (what `simstudy fit` imports before the command runs)
    from simstudy.datasets import add_saeb_predictors, load_saeb
    from simstudy.model.sampler import fit
    from simstudy.realdata.commands import print_summary, write_fit_dir
    from simstudy.realdata.compare import loo_of
    from simstudy.realdata.fit_formula import make_priors
    from simstudy.realdata.formula import melsm_data_from_formulas

    t["imports"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = melsm_data_from_formulas(add_saeb_predictors(load_saeb(), grand_mean="students"), *MODELS[model])
    priors = make_priors(pi=0.5)
    t["prep"] = time.perf_counter() - t0
    kw = {} if chain_method is None else {"chain_method": chain_method}  # the --before tree has no option
    result = fit(data, priors, chains=chains, warmup=warmup, draws=draws, seed=1, **kw)
    t["compile"], t["sampling"] = result.compile_s, result.sample_s
    t0 = time.perf_counter()
    result.add_log_likelihood()
    t["loglik"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    loo = loo_of(result)
    t["loo"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    waic = result.waic()
    t["waic"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from rich.console import Console

    print_summary(result, console=Console(file=open(os.devnull, "w")), loo=loo, waic=waic)
    t["summary"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        write_fit_dir(result, os.path.join(d, "fit"), loo=loo, waic=waic)
    t["writing"] = time.perf_counter() - t0
    t["_end"] = time.time()
    return t


def chains_child(model: str, chains: int, warmup: int, draws: int, rounds: int) -> dict:
    """Sequential against parallel chains on one model, in one process (programs compiled
    first): best sampling seconds of each, and whether the draws are identical."""
    import numpy as np

    from simstudy.datasets import add_saeb_predictors, load_saeb
    from simstudy.model.chains import chain_workers
    from simstudy.model.sampler import fit
    from simstudy.realdata.fit_formula import make_priors
    from simstudy.realdata.formula import melsm_data_from_formulas

    import resource

    data = melsm_data_from_formulas(add_saeb_predictors(load_saeb(), grand_mean="students"), *MODELS[model])
    priors = make_priors(pi=0.5)
    times = {"sequential": [], "parallel": []}
    draws_of = {}

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    for _ in range(rounds + 1):  # the first round compiles (not counted)
        for method in times:
            c0 = cpu()
            res = fit(data, priors, chains=chains, warmup=warmup, draws=draws, seed=1, chain_method=method)
            # cores this process got while sampling: CPU seconds (all threads; sampling dominates a
            # compiled fit) over sampling seconds
            times[method].append((res.sample_s, (cpu() - c0) / res.sample_s))
            draws_of[method] = res.posterior["tau"].values
    best = {m: min(t[1:]) for m, t in times.items()}
    return {
        "sequential": best["sequential"][0], "parallel": best["parallel"][0],
        "cores_sequential": best["sequential"][1], "cores_parallel": best["parallel"][1],
        "workers": chain_workers("parallel", chains),
        "identical": bool(np.array_equal(draws_of["sequential"], draws_of["parallel"])),
    }


def _run_child(extra: list[str], env: dict) -> tuple[dict, float]:
    t0, start = time.perf_counter(), time.time()
    out = subprocess.run([sys.executable, __file__, *extra], env=env, capture_output=True, text=True)
    wall, end = time.perf_counter() - t0, time.time()
    if out.returncode != 0:
        raise SystemExit(f"child {extra} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if "_begin" in result:  # interpreter start (before the child's first line) and teardown (after its last)
        result["start-up"] = result.pop("_begin") - start
        result["teardown"] = end - result.pop("_end")
    return result, wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="M1,M2")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chain-method", default="auto", help="chain_method of the stage-table runs")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of the sequential/parallel comparison")
    parser.add_argument("--before", default=None, help="also time the package found in this directory")
    parser.add_argument("--skip-stages", action="store_true", help="only the sequential/parallel comparison")
    parser.add_argument("--jax-path", action="store_true",
                        help="also run the stage table with the compiled likelihood kernel off (SIMSTUDY_NATIVE=0)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--chains-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    method = None if args.chain_method == "none" else args.chain_method
    if args.child:
        print(json.dumps(child(args.child, args.chains, args.warmup, args.draws, method)))
        return
    if args.chains_child:
        print(json.dumps(chains_child(args.chains_child, args.chains, args.warmup, args.draws, args.rounds)))
        return
    mcmc = ["--chains", str(args.chains), "--warmup", str(args.warmup), "--draws", str(args.draws)]
    models = args.models.split(",")
    variants = [("", {})]
    if args.before:
        variants.append(("before ", {"PYTHONPATH": os.path.abspath(args.before)}))
    if args.jax_path:
        variants.append(("jax ", {"SIMSTUDY_NATIVE": "0"}))
    rows = []
    for model in [] if args.skip_stages else models:
        for label, extra_env in variants:
            with tempfile.TemporaryDirectory() as cache:
                for state in ("cold", "warm"):
                    env = dict(os.environ, SIMSTUDY_JAX_CACHE=cache, JAX_PLATFORMS="cpu", **extra_env)
                    before = "PYTHONPATH" in extra_env
                    stages, wall = _run_child(["--child", model, *mcmc, "--chain-method",
                                               "none" if before else args.chain_method], env)
                    stages["pre-sampling"] = stages["start-up"] + stages["imports"] + stages["prep"] + stages["compile"]
                    rows.append((f"{label}{model} {state}", wall, stages))
                    print(f"{label}{model} {state}: {wall:.1f} s wall", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, SIMSTUDY_JAX_CACHE=cache, JAX_PLATFORMS="cpu")
        cmp, _ = _run_child(["--chains-child", models[0], *mcmc, "--rounds", str(args.rounds)], env)
    names = ("start-up",) + STAGES + ("teardown", "pre-sampling")
    print(f"\n{args.chains} chains x ({args.warmup} + {args.draws}); seconds per stage, chain_method="
          f"{args.chain_method} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); "
          "start-up = interpreter start; pre-sampling = start-up + imports + prep + compile")
    if rows:
        print(f"{'run':<16}" + "".join(f"{n:>13}" for n in names) + f"{'total':>10}")
    for label, wall, stages in rows:
        print(f"{label:<16}" + "".join(f"{stages[n]:13.2f}" for n in names) + f"{wall:10.2f}")
    print(f"\n{models[0]} sampling, {args.chains} chains x ({args.warmup} + {args.draws}), best of {args.rounds}: "
          f"sequential {cmp['sequential']:.2f} s, parallel ({cmp['workers']} parts at once) {cmp['parallel']:.2f} s, "
          f"speed-up x{cmp['sequential'] / cmp['parallel']:.2f}; draws identical: {cmp['identical']}; CPU seconds of "
          f"the fit call per sampling second: {cmp['cores_sequential']:.2f} sequential, {cmp['cores_parallel']:.2f} "
          "parallel (diagnostics included; the kernel shares CPU between sessions, so a busy machine caps the gain)")


if __name__ == "__main__":
    main()
