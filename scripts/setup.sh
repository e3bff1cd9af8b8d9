#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs the locked environment into it.
# With --with-airflow, also .venv-airflow: the same plus Apache Airflow, whose pins cannot share
# .venv (requirements-airflow.lock). With --with-chromium, also Debian's chromium (apt-get), which
# the run report's rendering test drives headless. With --with-flink, also the files of a local
# Flink cluster (scripts/flink_cluster.sh) and of Beam's FlinkRunner, cached in
# ~/.cache/tfx_poets/flink: the Flink distribution from PyPI's apache-flink-libraries and Beam's
# Flink job-server jar from Maven Central. Safe to run again: it only installs what changed.
set -euo pipefail
with_airflow=false
with_chromium=false
with_flink=false
for arg in "$@"; do
  case "$arg" in
    --with-airflow) with_airflow=true ;;
    --with-chromium) with_chromium=true ;;
    --with-flink) with_flink=true ;;
    *) echo "setup: unknown argument $arg (only --with-airflow, --with-chromium, --with-flink)" >&2
       exit 2 ;;
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
  # --compile-bytecode: uv writes no .pyc files by default, and with PYTHONDONTWRITEBYTECODE
  # (set on these machines) Python never caches them either, so every process compiled
  # TensorFlow, TFX and Beam from source: importing the pipeline took 46 s instead of 17 s
  # (BENCHMARKS.md, "Startup"). About a minute once per environment; seconds after that.
  .venv/bin/uv pip sync --quiet --compile-bytecode --python "$1/bin/python" "$2"
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

# Flink 1.19: Beam 2.74's job server supports 1.17-1.20 and 2.0, and 1.19 runs on Java 17.
FLINK_VERSION=1.19.3
BEAM_VERSION="$(grep -E "^apache-beam==" requirements.lock | cut -d= -f3)"
install_flink() {
  local cache="${TFX_POETS_CACHE_DIR:-$HOME/.cache/tfx_poets}/flink"
  local home="$cache/flink-$FLINK_VERSION"
  mkdir -p "$cache/downloads"
  if ! ls "$home"/lib/flink-dist-*.jar >/dev/null 2>&1; then
    # The package is a source archive whose deps/ is a Flink distribution (lib/, plugins/ and
    # bin/bash-java-utils.jar); it is only unpacked, never installed next to Beam.
    .venv/bin/python -m pip download --quiet --no-deps --no-binary :all: \
      -d "$cache/downloads" "apache-flink-libraries==$FLINK_VERSION"
    mkdir -p "$home"
    tar xzf "$cache/downloads/apache-flink-libraries-$FLINK_VERSION.tar.gz" -C "$home" \
      --strip-components=2 "apache-flink-libraries-$FLINK_VERSION/deps"
  fi
  echo "setup: Flink $FLINK_VERSION in $home"
  local jar="beam-runners-flink-${FLINK_VERSION%.*}-job-server"
  if [ -f "$cache/$jar-$BEAM_VERSION.jar" ]; then
    echo "setup: Beam's Flink job server in $cache/$jar-$BEAM_VERSION.jar"
  elif ! command -v mvn >/dev/null 2>&1; then
    echo "setup: warning: mvn not found, so Beam's Flink job-server jar was not fetched;" \
      "install Maven (apt-get install maven) and run again" >&2
  elif mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
      "-Dartifact=org.apache.beam:$jar:$BEAM_VERSION" "-DoutputDirectory=$cache" \
      > "$cache/mvn.log" 2>&1; then
    echo "setup: Beam's Flink job server in $cache/$jar-$BEAM_VERSION.jar"
  else
    # Not fatal: the cluster works without it; FlinkRunner then stops with one line.
    echo "setup: warning: Maven could not fetch org.apache.beam:$jar:$BEAM_VERSION (see" \
      "$cache/mvn.log); --beam-runner FlinkRunner needs it (--beam-arg=--flink_job_server_jar)" >&2
  fi
}
if $with_flink; then
  install_flink
fi
