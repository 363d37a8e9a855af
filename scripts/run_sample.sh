#!/usr/bin/env bash
# One command from a fresh clone to predictions in the local warehouse: installs the project,
# writes the sample partition for DATE, trains the bundled model if no version exists, scores DATE.
set -euo pipefail
cd "$(dirname "$0")/.."
DATE=${DATE:-2026-11-23}
ROWS=${ROWS:-100000}
source scripts/env.sh
if [ -z "$(ls data/trips/dt=$DATE/*.csv 2>/dev/null)" ]; then
  .venv/bin/python scripts/make_trips.py --date "$DATE" --rows "$ROWS"
fi
if [ -z "$(ls artifacts/models/taxi_tipper/*/metadata.json 2>/dev/null)" ]; then
  .venv/bin/python -m pipelines.train
fi
.venv/bin/python -m pipelines.score --date "$DATE" --summary_json "warehouse/summary-$DATE.json" "$@"
