#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, slow tier included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export JAX_PLATFORMS=cpu
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@" tests
