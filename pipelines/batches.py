"""What every step exchanges: the columnar units, the output tags they travel under, the read count.

Steps exchange Arrow record batches, never one Python object per record: a raw batch holds a
file's columns as text, a typed batch holds them as the schema's types, and rejected records travel
as batches laid out like the `scoring_errors` table minus its run-level columns. Inside a step, a DoFn
emits its main output and tags its rejected records and counts (`REJECTED`, `COUNTS`); the step's
transform hands them on as a typed tuple (`sources.Read`, `validate.Checked`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipelines import metrics
from schemas import PROVENANCE, SCORING_ERRORS, UseCase, staged_predictions


def returning_memory_pool() -> None:
    """Arrow's memory pool in a worker: the system allocator, which hands freed blocks back, rather than
    pyarrow's default (mimalloc), which kept about 100 MB more at the peak of a 10M-record local run with
    two bundles at a time, at the same speed (jemalloc did as well, but the Arrow that tfx-bsl carries
    reads the same ARROW_DEFAULT_MEMORY_POOL and knows only "system"). Called from the steps' DoFn setup,
    so every runner's workers get it; `python -m pipelines.score` sets that variable before pyarrow loads."""
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


# Output tags of a reader's and validation's DoFns: rejected records, and records read per source.
REJECTED = "rejected"
COUNTS = "counts"

# Run-level columns that the load step adds; everything else is known where a record is rejected.
RUN_LEVEL_ERROR_FIELDS = ("score_date", "run_id", "recorded_at")
REJECTED_SCHEMA = pa.schema([f for f in SCORING_ERRORS.arrow_schema if f.name not in RUN_LEVEL_ERROR_FIELDS])

# What validation appends to each valid record for scoring: where it came from and its content hash, the
# source dictionary-encoded since a batch's records share it (a string per record would be copied through
# inference and staging for nothing). Staged predictions keep that layout.
PROVENANCE_LAYOUT = pa.schema(
    [
        pa.field(f.name, pa.dictionary(pa.int32(), pa.string()) if f.name == "source" else f.type.arrow)
        for f in PROVENANCE
    ]
)


def staged_predictions_layout(use_case: UseCase) -> pa.Schema:
    """The use case's staged predictions as files hold them: provenance laid out as validation made it."""
    table = staged_predictions(use_case).arrow_schema
    return pa.schema([f for f in table if f.name not in PROVENANCE_LAYOUT.names] + list(PROVENANCE_LAYOUT))


def staged_per_record(use_case: UseCase) -> tuple[str, ...]:
    """Staged prediction columns with a value per record (the rest repeat: run, model, source), which a
    Parquet dictionary would not shrink."""
    return (use_case.input.key.name, "probability", "label", "line_number", "content_hash")


RECORD_ERROR = "record"
FILE_ERROR = "file"
CSV, JSON, TABLE = "csv", "json", "table"  # the form a source's records are shown in when rejected

INCOMPLETE_FILE = "incomplete_file"  # the one file error whose records cannot all be known
# `scoring_errors.reason`: short codes that analysts group by; `column_name` and `detail` say the rest.
# The README's "Every record is accounted for" lists them (a test keeps the two the same).
REASONS = {
    "malformed_line": "CSV record whose fields do not match the header (count, or a quote left open)",
    "malformed_json": "JSON line that is not valid JSON, or not an object",
    "invalid_utf8": "record holding bytes that are not UTF-8 (kept as \\x escapes in raw_record)",
    "record_too_large": "record longer than --max_record_bytes; reading resumes at the next one",
    "wrong_type": "value that is not of its column's type ('twelve' for a FLOAT64; a JSON object or array "
    "for any column, never stored as its JSON text)",
    "not_integer": "INT64 value that is a number but not a whole one (480.5, nan, inf)",
    "out_of_range": "value outside int64, outside float32 (the model's input type), or outside the "
    "range or allowed set that schemas/ declares for the column",
    "non_finite": "FLOAT64 value that is nan or infinite",
    "missing_required": "required column with no value",
    "unknown_column": "value in a column the schema does not know, with --unknown_columns reject",
    "duplicate_key": "key that appears more than once in the night with different content (all copies rejected)",
    "missing_column": "file error: the header lacks a column of the schema (all the file's records rejected)",
    "empty_file": "file error: the file holds no records",
    "unreadable_file": "file error: the file cannot be read as the format (no header line, a header of "
    "repeated or empty names); its records are counted and rejected",
    INCOMPLETE_FILE: "file error: reading stopped part-way (a truncated or corrupt archive, an I/O error): the "
    "records before are scored, how many came after cannot be known, so the night is refused (gate complete_input)",
}


def count_read(source: str, records: int) -> None:
    """Records read from one source (a file or a BigQuery table), in total and per source."""
    metrics.RECORDS_READ.counter().inc(records)
    Metrics.counter(metrics.READ_BY_SOURCE, source).inc(records)


@dataclass(frozen=True)
class RawBatch:
    """Records of one source before validation: text columns (CSV) or loosely typed ones (JSON, tables).

    Where each record sits in its file travels with it, so that a rejection downstream still names its
    line: consecutive lines from `first_line` (the common case, no array made), or `line_numbers`.
    """

    source: str
    records: pa.RecordBatch
    format: str = CSV
    first_line: int | None = None
    line_numbers: pa.Array | None = None

    def lines(self) -> pa.Array:
        if self.line_numbers is not None:
            return self.line_numbers
        n = self.records.num_rows
        if self.first_line is None:
            return pa.nulls(n, pa.int64())
        return pa.array(np.arange(self.first_line, self.first_line + n, dtype=np.int64))


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
    *,
    columns: list[str | None] | pa.Array | None = None,
    details: list[str | None] | pa.Array | None = None,
) -> pa.RecordBatch:
    """Rejected records, one row each."""
    n = len(reasons)
    return _rejected(source, raw_records, reasons, line_numbers, columns, details, RECORD_ERROR, [1] * n)


def file_error(source: str, reason: str, records: int, detail: str, column: str | None = None) -> pa.RecordBatch:
    """A whole file rejected: one row standing for all `records` the file held."""
    return _rejected(source, [None], [reason], None, [column], [detail], FILE_ERROR, [records])


def _rejected(source, raw_records, reasons, line_numbers, columns, details, kind, records) -> pa.RecordBatch:
    if isinstance(reasons, list) and not REASONS.keys() >= set(reasons):
        raise ValueError(f"undocumented reason codes: {sorted(set(reasons) - REASONS.keys())}")
    n = len(reasons)

    def column(values, type_=None):
        type_ = type_ or pa.string()
        return pa.nulls(n, type_) if values is None else pa.array(values, type_)

    by_name = {
        "source": pa.array([source] * n, pa.string()),
        "line_number": column(line_numbers, pa.int64()),
        "raw_record": column(raw_records),
        "reason": column(reasons),
        "error_kind": pa.array([kind] * n, pa.string()),
        "column_name": column(columns),
        "detail": column(details),
        "records": pa.array(records, pa.int64()),
    }
    return pa.RecordBatch.from_arrays([by_name[f.name] for f in REJECTED_SCHEMA], schema=REJECTED_SCHEMA)
