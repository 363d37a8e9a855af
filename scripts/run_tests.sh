#!/usr/bin/env bash
# One command from a fresh clone to the whole test suite: installs the project with its test
# dependencies and runs pytest. Exit code 5 (no tests collected) is reported, not hidden as success.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test source scripts/env.sh
set +e
.venv/bin/python -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests (exit 5): treating as a failure, the suite must run" >&2
  exit 1
fi
exit "$status"
