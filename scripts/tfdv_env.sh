#!/usr/bin/env bash
# Prints the path of the virtual environment real TFDV runs in for tests/test_tfdv.py, making it first
# if this machine has none for tests/tfdv-requirements.txt (TFDV 1.16.1 pins TensorFlow 2.16 and Beam
# 2.59, so it cannot share the project's). It is made once per machine, under
# ${BATCH_SCORING_CACHE:-~/.cache/batch-scoring}, named by a hash of the requirements file, so every
# clone on the machine reuses it and a change of pins makes a new one; a lock keeps two test runs from
# making it at once, and a marker written last tells a whole environment from an interrupted one.
# Exit code 1, with pip's reason, when it cannot be installed: the test then fails, it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
requirements=tests/tfdv-requirements.txt
root=${BATCH_SCORING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/batch-scoring}
venv="$root/venv-tfdv-$(sha256sum "$requirements" | cut -c1-16)"
if [ ! -f "$venv/.complete" ]; then
  mkdir -p "$root"
  exec 9>"$root/venv-tfdv.lock"
  flock 9
  if [ ! -f "$venv/.complete" ]; then
    rm -rf "$venv"
    started=$SECONDS
    "$PYTHON" -m venv "$venv" >&2
    if ! "$venv/bin/python" -m pip install --quiet --no-cache-dir --no-deps -r "$requirements" >&2; then
      echo "error: TFDV's environment could not be installed into $venv (pip's reason above)" >&2
      rm -rf "$venv"
      exit 1
    fi
    touch "$venv/.complete"
    echo "TFDV's environment made in $((SECONDS - started)) s: $venv (reused from now on)" >&2
  fi
fi
echo "$venv"
