# Sourced by scripts/bootstrap.sh and scripts/lock.sh: find_python prints the first Python >= 3.12
# ($PYTHON, python3.14 ... python3, then pyenv's versions), or returns 1.
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
