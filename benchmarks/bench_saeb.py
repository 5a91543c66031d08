"""Where `simstudy fit` spends its time on the Saeb data, stage by stage: imports, data prep,
compile, sampling, pointwise log-likelihood, LOO, WAIC, summary, writing the fit directory;
Models M1 and M2 (``analysis/saeb_models.py``), each cold (empty JAX compilation cache) and warm
(the cache that cold run filled), every run in a fresh process as the CLI would be (prints
figures; not a test).

    .venv/bin/python benchmarks/bench_saeb.py [--models M1,M2] [--chains 4] [--warmup 1000] [--draws 1000]

Short chains (e.g. ``--warmup 200 --draws 200``) make a smoke run: every stage but sampling
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
}
STAGES = ("imports", "prep", "compile", "sampling", "loglik", "loo", "waic", "summary", "writing")


def child(model: str, chains: int, warmup: int, draws: int) -> dict:
    """One `simstudy fit`-like run; returns the seconds per stage."""
    t = {}
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
    result = fit(data, priors, chains=chains, warmup=warmup, draws=draws, seed=1)
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
    return t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="M1,M2")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.chains, args.warmup, args.draws)))
        return
    rows = []
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as cache:
            for state in ("cold", "warm"):
                env = dict(os.environ, SIMSTUDY_JAX_CACHE=cache, JAX_PLATFORMS="cpu")
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, __file__, "--child", model, "--chains", str(args.chains),
                                      "--warmup", str(args.warmup), "--draws", str(args.draws)],
                                     env=env, capture_output=True, text=True, check=True)
                wall = time.perf_counter() - t0
                stages = json.loads(out.stdout.strip().splitlines()[-1])
                stages["start-up"] = wall - sum(stages.values())  # interpreter start and teardown
                rows.append((model, state, wall, stages))
                print(f"{model} {state}: {wall:.1f} s wall", flush=True)
    names = ("start-up",) + STAGES
    print(f"\n{args.chains} chains x ({args.warmup} + {args.draws}); seconds per stage "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{'run':<10}" + "".join(f"{n:>10}" for n in names) + f"{'total':>10}")
    for model, state, wall, stages in rows:
        print(f"{model + ' ' + state:<10}" + "".join(f"{stages[n]:10.2f}" for n in names) + f"{wall:10.2f}")


if __name__ == "__main__":
    main()
