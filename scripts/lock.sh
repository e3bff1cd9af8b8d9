#!/usr/bin/env bash
# Regenerates requirements.lock from requirements.in for Python 3.10 on manylinux x86_64.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/uv pip compile --quiet --python-version 3.10 --python-platform x86_64-manylinux_2_28 \
  --override overrides.txt requirements.in -o requirements.lock
.venv/bin/uv pip compile --quiet --python-version 3.10 --python-platform x86_64-manylinux_2_28 \
  --override overrides.txt requirements-airflow.in -o requirements-airflow.lock
