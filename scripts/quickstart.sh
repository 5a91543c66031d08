#!/usr/bin/env bash
# The main job: set up .venv, run designs/quickstart.toml on a local Dask cluster into
# results/quickstart.zarr (resumable), then write the summary table and the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export JAX_PLATFORMS=cpu
store=${STORE:-results/quickstart.zarr}
report=${REPORT:-report/quickstart}
.venv/bin/simstudy run designs/quickstart.toml --store "$store" "$@"
.venv/bin/simstudy summarize "$store" --out "$report/summary.csv"
.venv/bin/python analysis/sensitivity_report.py "$store" --out "$report"
echo "results store: $store    report: $report/report.md"
