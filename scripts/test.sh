#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, slow tier included, in the locked environment
# (SIMSTUDY_LATEST=1: against the newest releases, in .venv-latest).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash scripts/bootstrap.sh)
export JAX_PLATFORMS=cpu
exec "$venv/bin/python" -m pytest -n 2 --dist loadfile "$@" tests
