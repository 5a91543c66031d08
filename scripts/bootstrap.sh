#!/usr/bin/env bash
# Create or refresh .venv with a Python >= 3.12 and install simstudy with its dev extra.
set -euo pipefail
cd "$(dirname "$0")/.."
find_python() {
  for cand in "${PYTHON:-}" python3.14 python3.13 python3.12 python3; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  # pyenv installs that are not on the active version list
  for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
    if [ -x "$p" ] && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
  py=$(find_python) || { echo "error: no Python >= 3.12 found; install one or set PYTHON=/path/to/python3.12" >&2; exit 1; }
  echo "Creating .venv with $py" >&2
  rm -rf .venv
  "$py" -m venv .venv
fi
stamp=.venv/.simstudy-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >&2 || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]" >&2
  touch "$stamp"
fi
