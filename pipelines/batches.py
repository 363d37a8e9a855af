"""The columnar units that flow between stages.

Stages exchange Arrow record batches, never one Python object per record: a raw batch holds a
file's columns as text, a typed batch holds them as the schema's types, and rejected records travel
as batches laid out like the `scoring_errors` table minus its run-level columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from schemas import SCORING_ERRORS

# Run-level columns that the load stage adds; everything else is known where a record is rejected.
RUN_LEVEL_ERROR_FIELDS = ("score_date", "run_id", "recorded_at")
REJECTED_SCHEMA = pa.schema([f for f in SCORING_ERRORS.arrow_schema if f.name not in RUN_LEVEL_ERROR_FIELDS])

RECORD_ERROR = "record"
FILE_ERROR = "file"


@dataclass(frozen=True)
class RawBatch:
    """Records of one source as text columns, before validation."""

    source: str
    records: pa.RecordBatch


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
