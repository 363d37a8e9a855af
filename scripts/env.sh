# Sourced by the set-up scripts: a Python 3.11 virtual environment in .venv with the project installed.
# EXTRAS selects optional dependencies (e.g. EXTRAS=test).
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
