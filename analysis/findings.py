"""Run the shipped studies' findings subsets and write FINDINGS.md with its figures.

    python analysis/findings.py                              # default: ~10 h on 2 cores (resumable), then FINDINGS.md
    python analysis/findings.py --report-only                # rewrite FINDINGS.md from the stores in results/
    python analysis/findings.py --config full --cluster slurm --workers 40   # every shipped design, same output
    python analysis/findings.py --config smoke --results /tmp/r --out /tmp/F.md   # tiny plumbing run (tests)

Each study runs into its own store ``results/<study>.zarr`` through ``simstudy.study.runner.run_study``
(local Dask cluster, 2 workers by default); rerunning resumes. Then FINDINGS.md (``--out``) and
its PNG figures (``findings/`` beside it) are written from the stores alone, so ``--report-only``
on the same stores gives the same text except the lines marked ``<!-- timing -->``.

Subsets (``--config default``; ``simstudy.findings.subsets.SUBSETS``). A subset keeps every factor
and setting of the shipped design and only fewer levels and replicates, so its cells have the
shipped cell ids and seeds (the same data sets) and ``--config full`` (or ``simstudy run
designs/X.toml --store results/X.zarr``) extends the same stores: replicates are multiples of the
block size (10), so no block is run twice.

| study | cells run (of the shipped design's) | replicates | fits | s/fit | est. core-min |
|---|---|---|---|---|---|
| calibration | all 4: prior-matched / fixed 10 % data x pi 0.5, beta(1, 1) | 30 of 30 | 120 | 2.0 | 4 |
| multiplicity | all 18: J 50, 150, 300 x share 0, 0.05, 0.25 x pi 0.5, beta(1, 1) | 30 of 30 | 540 | 2.8 | 25 |
| paper_study2 | all 8: J 25, 50 x mean n 10, 30 x share 0, 0.1 | 20 of 100 | 160 | 1.2 | 3 |
| longitudinal | 19 of 37: J = 50 only (T 10, 30, 60 x phi 0, 0.3, 0.6 x share 0, 0.1, + the dropout cell) | 10 of 50 | 190 | 10.9 | 35 |
| sensitivity | all 80: pi 0.1, 0.25, 0.5, 0.75 x 5 scale-SD priors x J 50, 150 x n 25, 75 | 10 of 50 | 800 | 5.2 | 69 |
| robustness | all 300: 5 truths (share 0, 0.05, 0.25 x slab SD 0.437, 0.901) x 15 priors (pi x scale-SD prior) x J 50, 150 x n 20, 50 | 40 of 40 | 12000 | 2.7 | 540 |
| paper_study1 | all 117: J 50, 150, 300 x n 50, 75, 150 x share 0.05, 0.1, 0.25 x 4 slab SDs, + share 0 | 20 of 100 | 2340 | 9.9 | 386 |
| total | 546 cells | | 16350 | | 1062 |

s/fit: sampling seconds per fit (each design's own MCMC settings) measured on single cells, 2
replicates each, one in-process worker, on the shared 2-core development machine (2026-12-01, load
average 4-9 from other work): sensitivity J = 50, n = 25: 1.9; J = 150, n = 25: 4.0; J = 150,
n = 75: 10.0; paper_study1 J = 50, n = 50: 3.7; J = 150, n = 75: 17.6; paper_study2 J = 25, n = 10:
0.9; J = 50, n = 30: 1.4; longitudinal J = 50, T = 10: 7.3; T = 30: 10.1; T = 60: 15.3;
multiplicity (2 x (400 + 400), one extension each) J = 150: 2.3; J = 300: 5.2; calibration J = 50:
2.0; robustness: `simstudy plan designs/robustness.toml` on an idle machine (2026-12-04), 9.06
core-hours for 12,000 fits. The table averages them over each subset's shapes (unmeasured shapes
scaled from the measured ones). On top: compilation (3-110 s per shape and worker) and extensions
of unconverged fits (~10-27 %). Total ~1,100-1,300 core-minutes: ~9-11 h on 2 workers; run it in
the background (`nohup python analysis/findings.py > results_findings.log 2>&1 &`) and rerun to
resume after an interruption, or use `--config full --cluster slurm`. The robustness and
paper_study1 stores are the long ones; the others take ~3 h together.
FINDINGS.md's Cost section reports what the run took (core-seconds from the
stores' sample_s / compile_s / method_s, wall time from results/findings_runs.json).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=["smoke", "default", "full"], default="default",
                   help="which cells: smoke (tiny, tests), default (~10 h on 2 cores, resumable), full (the shipped designs)")
    p.add_argument("--cluster", default="local", help="local | slurm | pbs | tcp://scheduler:port (default local)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes or cluster jobs (default 2)")
    p.add_argument("--results", type=Path, default=None,
                   help="folder of the stores (default results/; results/findings_smoke/ for --config smoke)")
    p.add_argument("--out", type=Path, default=ROOT / "FINDINGS.md", help="the document (default FINDINGS.md)")
    p.add_argument("--figures", type=Path, default=None, help="figure folder (default findings/ beside --out)")
    p.add_argument("--designs", type=Path, default=ROOT / "designs", help="the shipped designs (default designs/)")
    p.add_argument("--report-only", action="store_true", help="rewrite FINDINGS.md from the stores; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    a = p.parse_args(argv)
    if a.workers < 1:
        p.error(f"--workers: {a.workers} is not a positive number of workers; use e.g. --workers 2")
    if a.cluster not in ("local", "slurm", "pbs") and "://" not in a.cluster:
        p.error(f"--cluster: {a.cluster!r} is not local, slurm, pbs or a scheduler address (tcp://HOST:PORT)")
    if a.results is None:
        a.results = ROOT / "results" / ("findings_smoke" if a.config == "smoke" else "")
    return a


def main(argv=None, client=None) -> int:
    """Run (unless ``--report-only``) and write FINDINGS.md; ``client``: an existing Dask client
    (tests) instead of ``--cluster``. Returns the worst exit code of the runs (0: all complete)."""
    a = parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from simstudy.study.cluster import worker_env

    # the plan's calibration fits run here: one XLA thread, as on the workers it times
    os.environ.update(worker_env())
    from simstudy.findings.document import write_findings
    from simstudy.findings.run import run_designs
    from simstudy.findings.subsets import designs_for

    code = 0
    if not a.report_only:
        designs = designs_for(a.config, a.designs)  # every subset checked before anything runs
        codes = run_designs(designs, a.results, a.config, cluster=a.cluster, workers=a.workers, client=client,
                            progress=not a.quiet, plan=a.config != "smoke")
        code = max(codes.values(), default=0)
        from simstudy.study.runner import EXIT_INTERRUPTED

        if EXIT_INTERRUPTED in codes.values():
            print("interrupted: FINDINGS.md not rewritten; rerun the same command to resume", file=sys.stderr)
            return EXIT_INTERRUPTED
    out = write_findings(a.results, a.out, a.figures, designs_dir=a.designs, workers=a.workers)
    if not a.quiet:
        print(f"wrote {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
