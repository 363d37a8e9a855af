# Sourced by the set-up scripts: a Python 3.11 virtual environment in .venv with the project installed.
# EXTRAS selects optional dependencies (e.g. EXTRAS=test). No pip cache: a clean machine (CI) gains
# nothing from it, and it once cost a CI run its disk space.
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --no-cache-dir --upgrade pip
fi
.venv/bin/python -m pip install --quiet --no-cache-dir -e ".${EXTRAS:+[$EXTRAS]}"
