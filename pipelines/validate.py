"""Validate: raw batches into typed batches, every failing record rejected with its reason.

Checks are column-at-a-time Arrow kernels. The common case (a clean column) costs one cast, or
nothing when a source already typed it; only a column that fails to cast is examined value by value,
as text, with a regular expression, to find which records are bad. A record's reason names the first
column that failed and the value it held. A column a source lacks is all missing; a column the
schema does not know is dropped, or its records rejected, by policy, and counted either way.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from pipelines.batches import REJECTED, RawBatch, raw_text, rejected_batch
from schemas import ColumnType, InputSchema

# What Arrow's string-to-number casts accept, so that only values the cast rejects are flagged.
_NUMBER_PATTERNS = {
    ColumnType.INT64: r"^[+-]?\d+$",
    ColumnType.FLOAT64: r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|nan|Infinity|NaN)$",
}


FLOAT32_MAX = 3.4028234663852886e38
KEEP, REJECT = "keep", "reject"  # what to do with records carrying columns the schema does not know


class SchemaValidator:
    """Types a raw batch by the schema and splits it into valid records and rejected ones."""

    def __init__(self, schema: InputSchema, unknown_columns: str = KEEP):
        if unknown_columns not in (KEEP, REJECT):
            raise ValueError(f"unknown_columns must be {KEEP} or {REJECT}, got {unknown_columns!r}")
        self.schema = schema
        self.unknown_columns = unknown_columns
        self.arrow_schema = pa.schema([pa.field(c.name, c.type.arrow) for c in schema.columns])
        self._names = set(schema.names)

    def unknown_column_counts(self, batch: pa.RecordBatch) -> dict[str, int]:
        """Records holding a value in each column the schema does not know."""
        return {
            name: batch.num_rows - batch.column(name).null_count
            for name in batch.schema.names
            if name not in self._names
        }

    def validate(self, raw: RawBatch) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
        batch = raw.records
        reasons: pa.Array = pa.nulls(batch.num_rows, pa.string())
        unknown = [name for name in batch.schema.names if name not in self._names]
        if unknown and self.unknown_columns == REJECT:
            carrying = pc.invert(pc.is_null(batch.column(unknown[0])))
            for name in unknown[1:]:
                carrying = pc.or_(carrying, pc.is_valid(batch.column(name)))
            reasons = _first_reason(
                reasons, carrying, pa.scalar(f"unknown column(s): {', '.join(unknown)} (--unknown_columns=reject)")
            )
        typed = []
        present = set(batch.schema.names)
        for column in self.schema.columns:
            if column.name in present:
                source = batch.column(column.name)
            else:
                source = pa.nulls(batch.num_rows, column.type.arrow)
            values, bad, text = self._typed(source, column.type)
            if bad is not None:
                reasons = _first_reason(
                    reasons,
                    bad,
                    pc.binary_join_element_wise(
                        f"wrong type: {column.name} is not {column.type.value}: '", text, "'", ""
                    ),
                )
            if column.type is ColumnType.FLOAT64:
                # The model takes float32: a larger magnitude would reach it as infinity.
                not_finite = pc.invert(
                    pc.fill_null(pc.and_(pc.is_finite(values), pc.less_equal(pc.abs(values), FLOAT32_MAX)), True)
                )
                reasons = _first_reason(
                    reasons, not_finite, pa.scalar(f"wrong type: {column.name} is not a finite number")
                )
                values = pc.if_else(not_finite, pa.scalar(None, pa.float64()), values)
            if column.required:
                # A value that failed its type check is null by now but already has its reason.
                reasons = _first_reason(
                    reasons, pc.is_null(values), pa.scalar(f"missing required field: {column.name}")
                )
            typed.append(values)
        typed_batch = pa.RecordBatch.from_arrays(typed, schema=self.arrow_schema)
        if reasons.null_count == len(reasons):
            return typed_batch, None
        ok = pc.is_null(reasons)
        rejected_mask = pc.invert(ok)
        rejected = rejected_batch(
            raw.source,
            raw_text(batch.filter(rejected_mask), raw.format),
            reasons.filter(rejected_mask),
        )
        return typed_batch.filter(ok), rejected

    @staticmethod
    def _typed(source: pa.Array, type_: ColumnType) -> tuple[pa.Array, pa.Array | None, pa.Array]:
        """Cast one column; on failure also the mask of values that would not cast, and their text."""
        target = type_.arrow
        if source.type == target:
            return source, None, source
        try:
            return pc.cast(source, target), None, source
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        text = source if pa.types.is_string(source.type) else pc.cast(source, pa.string())
        if type_ is ColumnType.STRING:
            return text, None, text
        good = pc.match_substring_regex(text, _NUMBER_PATTERNS[type_])
        bad = pc.fill_null(pc.invert(good), False)
        cleaned = pc.if_else(bad, pa.scalar(None, pa.string()), text)
        try:
            return pc.cast(cleaned, target), bad, text
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # Shaped like a number but out of range (an int64 overflow): find those one by one.
            # Only a batch that already failed twice gets here.
            overflow = [v is not None and not _casts(v, type_) for v in cleaned.to_pylist()]
            bad = pc.or_(bad, pa.array(overflow))
            return pc.cast(pc.if_else(bad, pa.scalar(None, pa.string()), text), target), bad, text


def _casts(value: str, type_: ColumnType) -> bool:
    try:
        pc.cast(pa.array([value]), type_.arrow)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def _first_reason(reasons: pa.Array, failed: pa.Array, reason) -> pa.Array:
    """Keep each record's first reason; give `reason` to records failing now with none yet."""
    return pc.if_else(pc.and_(failed, pc.is_null(reasons)), reason, reasons)


class ValidateBatch(beam.DoFn):
    def __init__(self, schema: InputSchema, unknown_columns: str = KEEP):
        self._validator = SchemaValidator(schema, unknown_columns)
        self._valid = Metrics.counter("validate", "records_valid")
        self._rejected = Metrics.counter("validate", "records_rejected")

    def process(self, raw: RawBatch) -> Iterator:
        for name, records in self._validator.unknown_column_counts(raw.records).items():
            Metrics.counter("unknown_columns", name).inc(records)
        valid, rejected = self._validator.validate(raw)
        if valid.num_rows:
            self._valid.inc(valid.num_rows)
            yield valid
        if rejected is not None:
            self._rejected.inc(rejected.num_rows)
            yield beam.pvalue.TaggedOutput(REJECTED, rejected)


class ValidateRecords(beam.PTransform):
    """Raw batches -> typed batches (main) and rejected records (tagged `rejected`)."""

    def __init__(self, schema: InputSchema, unknown_columns: str = KEEP):
        super().__init__()
        self._schema = schema
        self._unknown_columns = unknown_columns

    def expand(self, raw_batches):
        return raw_batches | "CheckSchema" >> beam.ParDo(
            ValidateBatch(self._schema, self._unknown_columns)
        ).with_outputs(REJECTED, main="valid")
