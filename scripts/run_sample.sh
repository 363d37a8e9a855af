#!/usr/bin/env bash
# One command from a fresh clone to predictions in the local warehouse: installs the project, writes a
# use case's sample night (and training file) with its sample maker, trains its model if it has none,
# and scores the night. Arguments go to the scorer: `--use_case flights` runs the second bundled use
# case, into warehouse/flights.duckdb; DATE=... and ROWS=... choose another night and its size.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=samples source scripts/env.sh
DATE=$(.venv/bin/python scripts/prepare_sample.py ${DATE:+--date "$DATE"} ${ROWS:+--records "$ROWS"} "$@" | tail -n 1)
.venv/bin/python -m pipelines.score --date "$DATE" --summary_json "warehouse/summary-$DATE.json" "$@"
