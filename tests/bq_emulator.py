"""Start bqemulator (a BigQuery REST + Storage gRPC API server) for the tests.

    python -m tests.bq_emulator start --rest-port P --grpc-port G --project test

bqemulator 1.4.0 with duckdb 2.0.0 refuses to start because it downloads DuckDB's `spatial`
extension, which this offline machine cannot; GEOGRAPHY is not used here, so loading it is skipped.
"""

import sys

from bqemulator import cli
from bqemulator.storage.engine import DuckDBEngine

DuckDBEngine._load_spatial = lambda self: None

if __name__ == "__main__":
    sys.argv[0] = "bqemulator"
    cli.main()
