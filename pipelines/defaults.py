"""The defaults of the commands' options that the steps use too, stated once.

The steps and the warehouses take these values from here rather than from the command
line's declarations (`pipelines.arguments`), so that a step never imports the layer that parses options.
"""

from __future__ import annotations

from pipelines.choices import DriftGate

# Records per model call when --batch_size is not given: large enough to amortise the call, small
# enough for a copy's activations to fit beside other processes' copies.
DEFAULT_BATCH_SIZE = {"cpu": 65536, "gpu": 262144, "tpu": 131072}
DEFAULT_BLOCK_BYTES = 8 << 20  # about 80,000 records of the bundled example per batch
DEFAULT_MAX_RECORD_BYTES = 16 << 20  # a record may make its block grow up to this, then it is rejected
DEFAULT_SPLIT_BYTES = 256 << 20  # a larger uncompressed file is read as byte ranges
DEFAULT_TEMP_DATASET = "scoring_tmp"  # where a query file's results are kept for the read
DEFAULT_LOCK_TIMEOUT = 60.0  # DuckDB, before any data is read: a held file is said soon, nothing lost
REPORT_DAYS = 60  # days of history on a night's report: a nightly job's last 60 nights
# The quality gates' limits (README: Quality gates): GateLimits' defaults.
MAX_REJECTED_FRACTION = 0.01
MIN_RECORDS = 1
MAX_VOLUME_RATIO = 2.0  # the night's input within [median / r, median * r] of the trailing nights
MAX_VOLUME_Z = 5.0
SHRINK_LIMIT = 0.5  # a re-run keeps at least this share of the date's published records
DRIFT_GATE = DriftGate.WARN
DEFAULT_MODEL_ROOT = "artifacts/models"
DEFAULT_USE_CASE = "taxi"  # the bundled example (schemas/taxi.py); stated here so that --help imports no schema
DEFAULT_WAREHOUSE = "warehouse/scores.duckdb"  # the default use case's local warehouse


def default_warehouse(use_case: str) -> str:
    """The local warehouse when --warehouse is not given: the default use case's is DEFAULT_WAREHOUSE (as
    before use cases), any other's a file of its own beside it, since a warehouse holds one use case's
    nights: `warehouse/flights.duckdb`."""
    if use_case == DEFAULT_USE_CASE:
        return DEFAULT_WAREHOUSE
    return f"{DEFAULT_WAREHOUSE.rsplit('/', 1)[0]}/{use_case}.duckdb"


DEFAULT_STALE_AFTER = "30m"
# A night's publishing, after the whole night was scored: long enough to outlast another run's publishing
# (seconds on DuckDB, a few minutes for tens of millions of rows on BigQuery) and a short outage of the
# warehouse's API, short enough that a nightly schedule learns of a dead warehouse the same night.
DEFAULT_PUBLISH_TIMEOUT = "15m"
