#!/usr/bin/env bash
# Prints the path of the virtual environment real TFDV runs in for tests/test_tfdv.py, making it first
# if this machine has none for tests/tfdv-requirements.txt (TFDV 1.16.1 pins TensorFlow 2.16 and Beam
# 2.59, so it cannot share the project's). It is made once per machine, under
# ${BATCH_SCORING_CACHE:-~/.cache/batch-scoring}, named by a hash of the requirements file and the
# Python it runs on, so every clone on the machine reuses it and a change of either makes a new one; a
# lock keeps two test runs from making it at once, and a marker written last, once TFDV imports and
# pip finds every requirement met, tells a whole environment from an interrupted or broken one.
# Exit code 1, with the reason, when it cannot be made: the test then fails, it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
requirements=tests/tfdv-requirements.txt
root=${BATCH_SCORING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/batch-scoring}
version=$("$PYTHON" -c 'import sys; print(sys.version)' 2>/dev/null) || {
  echo "error: $PYTHON cannot run: TFDV's environment needs Python 3.11 (set PYTHON)" >&2
  exit 1
}
venv="$root/venv-tfdv-$( { cat "$requirements"; echo "$version"; } | sha256sum | cut -c1-16)"
whole() { [ -f "$venv/.complete" ] && "$venv/bin/python" -c '' 2>/dev/null; }
if ! whole; then
  mkdir -p "$root"
  exec 9>"$root/venv-tfdv.lock"
  flock 9
  if ! whole; then
    rm -rf "$venv"
    started=$SECONDS
    if ! { "$PYTHON" -m venv "$venv" >&2 \
           && "$venv/bin/python" -m pip install --quiet --no-cache-dir --no-deps -r "$requirements" >&2 \
           && "$venv/bin/python" -m pip check >&2 \
           && "$venv/bin/python" -c 'import tensorflow_data_validation' >/dev/null 2>&1; }; then
      echo "error: TFDV's environment could not be made in $venv (the reason above)" >&2
      rm -rf "$venv"
      exit 1
    fi
    touch "$venv/.complete"
    echo "TFDV's environment made in $((SECONDS - started)) s: $venv (reused from now on)" >&2
  fi
fi
echo "$venv"
