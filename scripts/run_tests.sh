#!/usr/bin/env bash
# One command from a fresh clone to the whole test suite: installs the project with its test
# dependencies (and, in .venv-airflow, the pinned Airflow the DAG test loads the DAG with), checks
# lint and format with ruff (ruff.toml; a finding fails the run), and runs pytest. Exit code 5 (no
# tests collected) is reported, not hidden as success.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test source scripts/env.sh
if [ ! -x .venv-airflow/bin/airflow ]; then
  rm -rf .venv-airflow
  if ! { "$PYTHON" -m venv .venv-airflow \
         && .venv-airflow/bin/python -m pip install --quiet -r tests/airflow-requirements.txt; }; then
    echo "warning: Airflow could not be installed; the DAG test will be skipped and say so" >&2
    rm -rf .venv-airflow
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
set +e
.venv/bin/python -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests (exit 5): treating as a failure, the suite must run" >&2
  exit 1
fi
exit "$status"
