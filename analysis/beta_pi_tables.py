"""Markdown tables of the Beta-pi studies for the README (designs/calibration.toml,
designs/multiplicity.toml or a subset of it):

    .venv/bin/python analysis/beta_pi_tables.py results/calibration.zarr results/multiplicity.zarr

Per cell: usable fits, TPR, FPR, P(>= 1 false flag), ECE, bias and 90% coverage of tau_t
(each ± its Monte Carlo SE; flag = PIP >= 0.75), and for Beta-pi cells the posterior mean
of pi and how often its 90% interval covers the dataset's true share of inconsistent groups.
"""

from __future__ import annotations

import sys

import numpy as np


def _pm(s, name: str, i: int, digits: int = 3) -> str:
    v, se = float(s[name].values[i]), float(s[f"{name}_mcse"].values[i])
    return "–" if not np.isfinite(v) else f"{v:.{digits}f} ± {se:.{digits}f}"


def table(path: str) -> str:
    from simstudy.evaluate import summarize
    from simstudy.evaluate.fits import open_store, usable_fits

    ds = open_store(path)
    s = summarize(ds)
    usable = usable_fits(ds)
    pi_mean = np.asarray(ds["pi_mean"].values, float) if "pi_mean" in ds else None
    lines = ["| cell | fits (ok) | TPR | FPR | P(≥1 false flag) | ECE | bias τ_t | cover τ_t | E[pi \\| y] | pi 90% covers share |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i in range(ds.sizes["cell"]):
        u = usable[i]
        pim, cover = "–", "–"
        if pi_mean is not None and np.isfinite(pi_mean[i][u]).any():
            share = np.asarray(ds["share_true"].values[i], float)[u]
            lo, hi = (np.asarray(ds[k].values[i], float)[u] for k in ("pi_q05", "pi_q95"))
            pim = f"{np.nanmean(pi_mean[i][u]):.3f}"
            cover = f"{np.mean((lo <= share) & (share <= hi)):.2f}"
        lines.append(f"| {s.cell_label.values[i]} | {int(s.n_used.values[i])} ({int(s.n_ok.values[i])}) | "
                     f"{_pm(s, 'tpr', i)} | {_pm(s, 'fpr', i)} | {_pm(s, 'fwer', i, 2)} | {_pm(s, 'ece', i)} | "
                     f"{_pm(s, 'tau_t_bias', i)} | {_pm(s, 'tau_t_coverage', i, 2)} | {pim} | {cover} |")
    return "\n".join(lines)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(f"\n{p}\n")
        print(table(p))
