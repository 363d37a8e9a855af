"""What every stage exchanges: the columnar units, the output tags they travel under, the read count.

Stages exchange Arrow record batches, never one Python object per record: a raw batch holds a
file's columns as text, a typed batch holds them as the schema's types, and rejected records travel
as batches laid out like the `scoring_errors` table minus its run-level columns. A source's reader
(files or BigQuery) emits its raw batches as the main output, and tags its rejected records and its
per-source record counts, so every stage downstream reads sources the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pyarrow as pa
from apache_beam.metrics import Metrics

from schemas import SCORING_ERRORS

# Output tags of every reader and of validation: rejected records, and records read per source.
REJECTED = "rejected"
COUNTS = "counts"
READ_BY_SOURCE = "read_by_source"  # metrics namespace: records read per file or table

# Run-level columns that the load stage adds; everything else is known where a record is rejected.
RUN_LEVEL_ERROR_FIELDS = ("score_date", "run_id", "recorded_at")
REJECTED_SCHEMA = pa.schema([f for f in SCORING_ERRORS.arrow_schema if f.name not in RUN_LEVEL_ERROR_FIELDS])

RECORD_ERROR = "record"
FILE_ERROR = "file"
CSV, JSON, TABLE = "csv", "json", "table"  # the form a source's records are shown in when rejected


def count_read(source: str, records: int) -> None:
    """Records read from one source (a file or a BigQuery table), in total and per source."""
    Metrics.counter("extract", "records_read").inc(records)
    Metrics.counter(READ_BY_SOURCE, source).inc(records)


@dataclass(frozen=True)
class RawBatch:
    """Records of one source before validation: text columns (CSV) or loosely typed ones (JSON, tables)."""

    source: str
    records: pa.RecordBatch
    format: str = CSV


_NEEDS_QUOTES = re.compile(r'[",\n\r]')


def raw_text(batch: pa.RecordBatch, fmt: str) -> list[str]:
    """Records as their source would show them, for the errors table (rare path: rejected rows only)."""
    rows = batch.to_pylist()
    if fmt != CSV:
        return [json.dumps(row, default=str) for row in rows]

    def field(v) -> str:
        if v is None:
            return ""
        v = str(v)
        return '"' + v.replace('"', '""') + '"' if _NEEDS_QUOTES.search(v) else v

    return [",".join(field(v) for v in row.values()) for row in rows]


def rejected_batch(
    source: str,
    raw_records: list[str | None] | pa.Array,
    reasons: list[str] | pa.Array,
    line_numbers: list[int | None] | pa.Array | None = None,
    kind: str = RECORD_ERROR,
) -> pa.RecordBatch:
    n = len(reasons)
    if line_numbers is None:
        line_numbers = pa.nulls(n, pa.int64())
    return pa.RecordBatch.from_arrays(
        [
            pa.array([source] * n, pa.string()),
            pa.array(line_numbers, pa.int64()),
            pa.array(raw_records, pa.string()),
            pa.array(reasons, pa.string()),
            pa.array([kind] * n, pa.string()),
        ],
        schema=REJECTED_SCHEMA,
    )
