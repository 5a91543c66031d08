#!/usr/bin/env bash
# The main job: set up .venv, run designs/quickstart.toml on a local Dask cluster into
# results/quickstart.zarr (resumable), then write the summary table and the report.
# DESIGN, STORE and REPORT (environment) name another design, store and report folder;
# further arguments go to `simstudy run` (e.g. --workers 1).
# Exit code: that of `simstudy run` (0 complete; 3 complete with failed fits, still summarised
# and reported; anything else stops before the report: see README "Reliability").
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash scripts/bootstrap.sh)
export JAX_PLATFORMS=cpu
design=${DESIGN:-designs/quickstart.toml}
store=${STORE:-results/quickstart.zarr}
report=${REPORT:-report/quickstart}
rc=0
"$venv"/bin/simstudy run "$design" --store "$store" "$@" || rc=$?
case "$rc" in 0 | 3) ;; *) exit "$rc" ;; esac
"$venv"/bin/simstudy summarize "$store" --out "$report/summary.csv"
"$venv"/bin/simstudy report "$store" --out "$report"
echo "results store: $store    report: $report/report.md"
exit "$rc"
