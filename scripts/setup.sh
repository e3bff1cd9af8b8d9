#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs the locked environment into it.
# Safe to run again: it only installs what changed in requirements.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python310() {
  if command -v python3.10 >/dev/null 2>&1 && python3.10 --version >/dev/null 2>&1; then
    command -v python3.10; return
  fi
  # pyenv installs 3.10 beside the global version without putting it on PATH.
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
    if [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
  echo "setup: Python 3.10 not found; install it (e.g. 'pyenv install 3.10') and run again." >&2
  exit 1
}

if [ ! -x .venv/bin/python ]; then
  python="$(find_python310)"
  echo "setup: creating .venv with $python"
  "$python" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$(grep -E "^uv==" requirements.lock)"
fi
# The lock is complete (it was resolved with overrides.txt), so install it as is, without re-resolving.
.venv/bin/uv pip sync --quiet --python .venv/bin/python requirements.lock
.venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
echo "setup: .venv ready ($(.venv/bin/python --version))"
