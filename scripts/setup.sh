#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs the locked environment into it.
# With --with-airflow, also .venv-airflow: the same plus Apache Airflow, whose pins cannot share
# .venv (requirements-airflow.lock). With --with-chromium, also Debian's chromium (apt-get), which
# the run report's rendering test drives headless. Safe to run again: it only installs what changed.
set -euo pipefail
with_airflow=false
with_chromium=false
for arg in "$@"; do
  case "$arg" in
    --with-airflow) with_airflow=true ;;
    --with-chromium) with_chromium=true ;;
    *) echo "setup: unknown argument $arg (only --with-airflow, --with-chromium)" >&2; exit 2 ;;
  esac
done
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

install_env() {  # install_env VENV LOCK
  if [ ! -x "$1/bin/python" ]; then
    python="$(find_python310)"
    echo "setup: creating $1 with $python"
    "$python" -m venv "$1"
  fi
  # The lock is complete (resolved with overrides.txt), so it is installed as is, not re-resolved.
  .venv/bin/uv pip sync --quiet --python "$1/bin/python" "$2"
  .venv/bin/uv pip install --quiet --python "$1/bin/python" --no-deps -e .
  echo "setup: $1 ready ($("$1/bin/python" --version))"
}

if [ ! -x .venv/bin/python ]; then
  python="$(find_python310)"
  "$python" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$(grep -E "^uv==" requirements.lock)"
fi
install_env .venv requirements.lock
if $with_airflow; then
  install_env .venv-airflow requirements-airflow.lock
fi

install_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "setup: chromium already installed ($(command -v chromium || command -v chromium-browser))"
    return
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: --with-chromium needs apt-get (Debian/Ubuntu); install Chromium yourself" >&2
    exit 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "setup: installing Debian's chromium with apt-get"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
  echo "setup: chromium ready ($(command -v chromium))"
}
if $with_chromium; then
  install_chromium
fi
