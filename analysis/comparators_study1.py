"""Study 1's published comparison, recomputed from a results store of designs/paper_study1.toml
(or its comparator-only copy designs/paper_study1_hlm.toml): per method, over the with-slab cells, TPR / FPR / precision; FPR by
J; and in the null cells P(at least one false flag). Equal-weight averages over the cells that are
done, MCSE sqrt(sum mcse^2) / k.

    python analysis/comparators_study1.py STORE
"""

import sys

import numpy as np

from simstudy.evaluate.methods import overall_by_method, summarize_methods
from simstudy.findings.published import PUBLISHED_STUDY1
from simstudy.study.store import open_results

# the authors' figures (simstudy/findings/published.py); their HLM rule is the envelope around the
# QQ plot's quartile line, our hlm_qq (hlm: the same envelope around the identity line)
PUBLISHED = PUBLISHED_STUDY1  # the published HLM is the QQ-envelope rule (hlm_qq)


def main(path: str) -> None:
    keep = ("pip", "delta_true", "t_true", "status", "done", "flag", "score", "method_s")
    ds = open_results(path)
    ds = ds[[v for v in keep if v in ds]].load()
    done = ds["done"].values.all(axis=1)
    print(f"{int(done.sum())} of {done.size} cells complete; {int(ds['done'].values.sum())} replicates")
    sm = summarize_methods(ds.isel(cell=np.flatnonzero(done)))
    slab = {"share_inconsistent": [0.05, 0.1, 0.25]}
    fmt = lambda v, s: f"{v:.3f} ({s:.3f})"  # noqa: E731
    print("\nwith-slab cells, value (MCSE) [published]")
    for _, r in overall_by_method(sm, ("tpr", "fpr", "precision"), cells=slab).iterrows():
        pub = PUBLISHED.get(r["method"], {})
        print(f"  {r['method']:<9} cells {r['tpr_cells']:>3}  " + "  ".join(
            f"{m} {fmt(r[m], r[m + '_mcse'])} [{pub.get(m, '-')}]" for m in ("tpr", "fpr", "precision")))
    print("\nFPR by J (with-slab cells)")
    for _, r in overall_by_method(sm, ("fpr",), cells=slab, by="n_groups").iterrows():
        pub = PUBLISHED.get(r["method"], {}).get("fpr_by_J", {}).get(int(r["n_groups"]), "-")
        print(f"  J={int(r['n_groups']):<4} {r['method']:<9} {fmt(r['fpr'], r['fpr_mcse'])} [{pub}]")
    print("\nnull cells: P(at least one false flag)")
    null = np.flatnonzero(sm["share_inconsistent"].values == 0.0)
    for m in sm["method"].values:
        v = sm["fwer"].sel({"method": m}).values[null]
        se = sm["fwer_mcse"].sel({"method": m}).values[null]
        cells = ", ".join(f"{a:.2f}" for a in v)
        print(f"  {m:<9} range {np.nanmin(v):.2f}-{np.nanmax(v):.2f} (MCSE up to {np.nanmax(se):.3f}) "
              f"[{PUBLISHED.get(str(m), {}).get('null_fwer', '-')}]: {cells}")


if __name__ == "__main__":
    main(sys.argv[1])
