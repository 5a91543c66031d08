"""Milliseconds to generate one dataset (median of repeats).

    .venv/bin/python benchmarks/bench_generate.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from simstudy.study.generate import GeneratorSpec, generate

CASES = {
    "J=300 n=150 intercepts only": GeneratorSpec(n_groups=300, group_size=150),
    "J=300 n=150 covariates": GeneratorSpec(
        n_groups=300, group_size=150, covariates=True, x_between_sd=0.5, beta_within=0.3, eta_within=0.1
    ),
    "J=300 n=150 prior mode": GeneratorSpec(n_groups=300, group_size=150, mode="prior"),
    "J=160 Saeb sizes (ragged)": GeneratorSpec(n_groups=160, size_dist="saeb"),
    "J=300 Saeb sizes (ragged)": GeneratorSpec(n_groups=300, size_dist="saeb"),
}


def median_ms(spec: GeneratorSpec, repeats: int) -> tuple[float, int]:
    generate(spec, 0)  # warm-up (Saeb sizes are read and cached here)
    times, n_obs = [], 0
    for seed in range(1, repeats + 1):
        t0 = time.perf_counter()
        data, _ = generate(spec, seed)
        times.append(time.perf_counter() - t0)
        n_obs = data.n_obs
    return 1e3 * statistics.median(times), n_obs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # Saeb resamples can include its single-student school
    print(f"{'case':32s} {'N (last)':>9s} {'median ms':>10s}")
    for name, spec in CASES.items():
        ms, n_obs = median_ms(spec, args.repeats)
        print(f"{name:32s} {n_obs:9d} {ms:10.2f}")


if __name__ == "__main__":
    main()
