"""PSIS-LOO on a Saeb-M1-sized log-likelihood: ArviZ's ``az.loo`` (one Python call per
observation) against ``simstudy.model.loo.psis_loo`` (all observations at once), same input,
same run; prints both times, their ratio and the largest differences (prints figures; not a test).

Default input: 4 chains x 1000 draws of a Saeb-M1-shaped posterior (160 schools of ~71
students, 11,386 observations; autocorrelated draws around a fixed truth, the pointwise
log-likelihood from ``simstudy.model.ssmelsm.pointwise_loglik``). ``--fit`` fits the real
Saeb M1 instead (``--draws`` per chain, as many warm-up draws).

    .venv/bin/python benchmarks/bench_loo.py [--obs 11386] [--fit --draws 1000] [--rounds 3]

``psis_loo`` is timed on one thread and on every core this process may use (its default).
"""

import argparse
import os
import time
import warnings

warnings.simplefilter("ignore")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402


def synthetic_tree(n_obs: int, chains: int, draws: int, seed: int = 0):
    """A DataTree shaped like a Saeb M1 fit with its log_likelihood group."""
    import arviz as az
    import jax

    from simstudy.model.data import MelsmData
    from simstudy.model.ssmelsm import pointwise_loglik

    rng = np.random.default_rng(seed)
    J = 160
    g = np.sort(rng.integers(0, J, n_obs))
    u0, t0 = rng.normal(0, 0.33, J), rng.normal(0, 0.2, J)
    y = 0.1 + u0[g] + np.exp(-0.25 + t0[g]) * rng.standard_t(8, n_obs)
    data = MelsmData.intercepts_only(y, g)

    def ar1(shape, phi=0.6):
        x = np.empty((chains, draws, *shape))
        x[:, 0] = rng.normal(size=(chains, *shape))
        for t in range(1, draws):
            x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=(chains, *shape))
        return x

    n_j = np.bincount(g, minlength=J)[:, None]
    post = {
        "beta": 0.1 + 0.03 * ar1((1,)),
        "eta": -0.25 + 0.01 * ar1((1,)),
        "tau": np.abs([0.33, 0.2] + 0.02 * ar1((2,))),
        "u": u0[:, None] + 0.4 / np.sqrt(n_j) * ar1((J, 1)),
        "t": t0[:, None] + 0.1 * ar1((J, 1)),
    }
    p = 1 / (1 + np.exp(-ar1((J, 1), 0.3) - 1))
    post["incl_prob"] = p
    post["combo_prob"] = np.concatenate([1 - p, p], axis=-1)
    post["corr"] = np.broadcast_to(np.eye(2), (chains, draws, 2, 2)).copy()
    post["group_mean"] = post["beta"] + post["u"][..., 0]
    post["group_sd"] = np.exp(post["eta"] + p[..., 0] * post["t"][..., 0])
    ll = pointwise_loglik(data, post, jax.random.PRNGKey(seed))
    return az.from_dict({"posterior": post, "log_likelihood": {"y": ll}})


def saeb_tree(draws: int):
    from simstudy.datasets import load_saeb
    from simstudy.realdata.fit_formula import fit_formula

    fit = fit_formula(load_saeb(), "math_proficiency ~ 1 + (1 | school_id)", "~ 1 + (1 | school_id)",
                      chains=4, warmup=draws, draws=draws, seed=1)
    fit.add_log_likelihood()
    return fit.tree


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--obs", type=int, default=11386)
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain (4 chains)")
    parser.add_argument("--fit", action="store_true", help="fit the real Saeb M1 instead of a synthetic posterior")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of psis_loo (best of)")
    args = parser.parse_args()
    import arviz as az

    from simstudy.model.loo import psis_loo

    tree = saeb_tree(args.draws) if args.fit else synthetic_tree(args.obs, 4, args.draws)
    var = list(tree["log_likelihood"].data_vars)[0]
    shape = tree["log_likelihood"][var].shape
    print(f"log-likelihood {shape[0]} chains x {shape[1]} draws x {shape[2]} observations "
          f"({'Saeb M1 fit' if args.fit else 'synthetic Saeb-M1-shaped posterior'})")
    from simstudy.model.chains import usable_cores

    n_threads = usable_cores()
    one, many = [], []
    for _ in range(args.rounds):  # interleaved: machine noise hits both alike
        t0 = time.perf_counter()
        psis_loo(tree, var_name=var, threads=1)
        one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours = psis_loo(tree, var_name=var)
        many.append(time.perf_counter() - t0)
    t_one, t_ours = min(one), min(many)
    t0 = time.perf_counter()
    ref = az.loo(tree, pointwise=True, var_name=var)
    t_ref = time.perf_counter() - t0
    print(f"az.loo (ArviZ {az.__version__}): {t_ref:.2f} s")
    print(f"simstudy psis_loo, 1 thread:   {t_one:.2f} s  ->  {t_ref / t_one:.1f}x faster (best of {args.rounds})")
    print(f"simstudy psis_loo, {n_threads} threads:  {t_ours:.2f} s  ->  {t_ref / t_ours:.1f}x faster, "
          f"x{t_one / t_ours:.2f} over 1 thread")
    dk = np.nanmax(np.abs(ours.pareto_k.values - ref.pareto_k.values))
    de = np.max(np.abs(ours.elpd_i.values - ref.elpd_i.values))
    print(f"elpd_loo {ours.elpd:.4f} (ArviZ {ref.elpd:.4f}), p_loo {ours.p:.4f} ({ref.p:.4f}), "
          f"se {ours.se:.4f} ({ref.se:.4f}); max |dk| {dk:.1e}, max |d elpd_i| {de:.1e}; "
          f"k > good_k: {int(np.sum(ours.pareto_k.values > ours.good_k))}")
    print(f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
