"""Scale random effects: non-centred vs centred where the data pin them down (issue #13; prints figures).

For each cell, the same data sets and seeds are fitted twice in one run, interleaved (so machine
noise hits both alike): "before", every group's scale effect non-centred, and "after", the
default (``partial_scale=None``: groups whose data pin their scale effect down are centred, and
where no group qualifies the program is the non-centred one): mean leapfrog steps per iteration (gradients), tree
depth, bulk ESS of tau_t per second of sampling, sampling wall time per fit, divergences and
fits failing the convergence rule (before extension). The ratios are what to read.

    .venv/bin/python benchmarks/bench_scale_param.py [--reps 6] [--cells j50,j160] [--draws 1000]
"""

import argparse
import os
import warnings

warnings.simplefilter("ignore")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

from simstudy.model.priors import Priors, SDPrior  # noqa: E402
from simstudy.model.sampler import fit_batch  # noqa: E402
from simstudy.model.ssmelsm import model_arrays  # noqa: E402
from simstudy.study.generate import GeneratorSpec, generate  # noqa: E402

PAPER = Priors(pi=0.5, location_sd=SDPrior.parse("half_t(3, 1)"), scale_sd=SDPrior.parse("half_t(3, 0.5)"),
               scale_fixed_sd=5.0, correlated=False)
CELLS = {
    # paper Study 1, J = 50: the cells where divergences remained
    "j50_s05": (GeneratorSpec(n_groups=50, group_size=50, share_inconsistent=0.05, slab_sd=0.901), PAPER),
    "j50_s10": (GeneratorSpec(n_groups=50, group_size=50, share_inconsistent=0.10, slab_sd=0.437), PAPER),
    "j50_s25": (GeneratorSpec(n_groups=50, group_size=75, share_inconsistent=0.25, slab_sd=0.668), PAPER),
    # Saeb-sized (160 schools of 71), ivd's default priors, correlated location and scale
    "j160": (GeneratorSpec(n_groups=160, group_size=71, share_inconsistent=0.1, slab_sd=0.668, tau_u=0.33,
                           eta0=-0.25, rho=0.3), Priors()),
    # small groups: the non-centred location path
    "j100_n8": (GeneratorSpec(n_groups=100, group_size=8, share_inconsistent=0.1, slab_sd=0.901), PAPER),
}


def figures(results) -> dict:
    steps = np.concatenate([r.sample_stats["n_steps"].values.ravel() for r in results])
    depth = np.concatenate([r.sample_stats["tree_depth"].values.ravel() for r in results])
    ess = np.array([float(r.diagnostics["ess_bulk"]["tau"].isel(random_effect=-1)) for r in results])
    secs = np.array([r.sample_s for r in results])
    return {
        "steps": steps.mean(), "depth": depth.mean(), "ess_tau_t": ess.mean(),
        "ess_per_s": float(np.mean(ess / secs)), "sample_s": secs.mean(),
        "divergent_fits": sum(r.divergences > 0 for r in results),
        "unconverged": sum(not r.converged for r in results),
    }


def main() -> None:
    import simstudy.model.ssmelsm as ssm

    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    print(f"{args.reps} data sets per cell, {args.chains} x ({args.warmup} + {args.draws}), target_accept 0.9")
    print(f"{'cell':8} {'param':12} {'steps':>6} {'depth':>5} {'ESS tau_t':>9} {'ESS/s':>7} {'s/fit':>6} "
          f"{'div fits':>8} {'unconv':>6}")
    for name in args.cells.split(","):
        spec, priors = CELLS[name]
        data = [generate(spec, 1000 + r)[0] for r in range(args.reps)]
        fits = {False: [], None: []}
        for partial in (False, None):  # one untimed fit compiles each program
            fit_batch(data[:1], priors, chains=args.chains, warmup=50, draws=50, seeds=[0], target_accept=0.9,
                      partial_scale=partial, pip_diagnostics=False)
        for r, d in enumerate(data):  # interleaved, so machine noise hits both alike
            for partial in (False, None):
                fits[partial].append(fit_batch([d], priors, chains=args.chains, warmup=args.warmup,
                                               draws=args.draws, seeds=[r], target_accept=0.9,
                                               partial_scale=partial, pip_diagnostics=False)[0])
        out = {}
        for label, partial in (("before", False), ("after", None)):
            f = out[label] = figures(fits[partial])
            centred = model_arrays(data[0], fits[partial][0].structure).get("scale_centred", np.zeros(1))
            print(f"{name:8} {label:12} {f['steps']:6.1f} {f['depth']:5.2f} {f['ess_tau_t']:9.0f} "
                  f"{f['ess_per_s']:7.0f} {f['sample_s']:6.2f} {f['divergent_fits']:8d} {f['unconverged']:6d}"
                  f"   ({int(np.sum(centred))} groups centred in data set 0)", flush=True)
        a, b = out["before"], out["after"]
        print(f"{name:8} {'after/before':12} {b['steps'] / a['steps']:6.2f} {'':5} {b['ess_tau_t'] / a['ess_tau_t']:9.2f} "
              f"{b['ess_per_s'] / a['ess_per_s']:7.2f} {b['sample_s'] / a['sample_s']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
