#!/usr/bin/env bash
# One command from a fresh clone to the whole test suite: installs the project with its test
# dependencies (and, at the same time: in .venv-airflow, the pinned Airflow the DAG test loads the DAG
# with; and, once per machine, the pinned TFDV the statistics are checked with, scripts/tfdv_env.sh), checks lint and format with ruff (ruff.toml; a finding fails the run), and runs
# pytest on two worker processes (pytest-xdist; extra arguments go to pytest). Exit code 5 (no tests
# collected) is reported, not hidden as success.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
airflow=""
if [ ! -x .venv-airflow/bin/airflow ]; then
  (
    rm -rf .venv-airflow
    if ! { "$PYTHON" -m venv .venv-airflow \
           && .venv-airflow/bin/python -m pip install --quiet --no-cache-dir -r tests/airflow-requirements.txt; }; then
      echo "warning: Airflow could not be installed; the DAG test will be skipped and say so" >&2
      rm -rf .venv-airflow
    fi
  ) &
  airflow=$!
fi
bash scripts/tfdv_env.sh > /dev/null &
tfdv=$!
trap 'kill "$tfdv" 2>/dev/null || true' EXIT  # not left installing if the project's install fails
EXTRAS=test source scripts/env.sh
if [ -n "$airflow" ]; then
  wait "$airflow"
fi
if ! wait "$tfdv"; then
  echo "warning: TFDV's environment could not be made (the reason above): tests/test_tfdv.py will fail" >&2
fi
trap - EXIT
.venv/bin/ruff check .
.venv/bin/ruff format --check .
set +e
.venv/bin/python -m pytest -p no:cacheprovider --numprocesses "${TEST_WORKERS:-2}" --dist loadgroup "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests (exit 5): treating as a failure, the suite must run" >&2
  exit 1
fi
exit "$status"
