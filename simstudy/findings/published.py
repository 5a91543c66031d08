"""The authors' published Study 1 figures (computed from their stored results: 100 replicates per
cell, null cells 400): equal-weight means over the 108 with-slab cells, HLM FPR by J, and the
range of P(at least one false flag) over the 9 null cells. Used by FINDINGS.md and
``analysis/comparators_study1.py``."""

PUBLISHED_STUDY1 = {
    "ss_melsm": {"tpr": 0.705, "fpr": 0.019, "precision": 0.80, "null_fwer": "0.03-0.10"},
    # the two-stage HLM as published, whose QQ-envelope rule simstudy's hlm_qq reproduces
    "hlm_qq": {"tpr": 0.713, "fpr": 0.057, "precision": 0.68, "fpr_by_J": {50: 0.039, 150: 0.057, 300: 0.074},
            "null_fwer": "0.19-0.47"},
}
#: with-slab cells of the published Study 1 (J x n x share 0.05, 0.10, 0.25 x 4 slab SDs)
PUBLISHED_STUDY1_SLAB_CELLS = 108
