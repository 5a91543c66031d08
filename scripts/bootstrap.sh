#!/usr/bin/env bash
# Create or refresh the virtual environment with a Python >= 3.12 and install simstudy with its dev
# extra, every distribution pinned by requirements.lock (same seeds, same numbers, next year too).
# Prints the environment's path on stdout (everything else goes to stderr).
#   SIMSTUDY_LATEST=1  install the newest releases instead, into .venv-latest (the lock is not used):
#                      `SIMSTUDY_LATEST=1 bash scripts/test.sh` tests against them
#   SIMSTUDY_VENV=DIR  another environment folder
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/find_python.sh
if [ "${SIMSTUDY_LATEST:-0}" = 1 ]; then
  venv=${SIMSTUDY_VENV:-.venv-latest}
  install=(--upgrade --upgrade-strategy eager -e ".[dev]")
  want="latest $(date -u +%Y-%m-%d) $(sha256sum pyproject.toml | cut -c1-16)"
else
  venv=${SIMSTUDY_VENV:-.venv}
  install=(-c requirements.lock -e ".[dev]")
  want="lock $(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)"
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
  py=$(find_python) || { echo "error: no Python >= 3.12 found; install one or set PYTHON=/path/to/python3.12" >&2; exit 1; }
  echo "Creating $venv with $py" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
fi
# the stamp holds what was installed (the lock's and pyproject's hash): a changed lock reinstalls
stamp=$venv/.simstudy-installed
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing simstudy into $venv (${want%% *})" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2 || true
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${install[@]}" >&2
  echo "$want" > "$stamp"
fi
echo "$venv"
