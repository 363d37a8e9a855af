"""Validate: raw batches into typed batches, every failing record rejected with a reason code.

Checks are column-at-a-time Arrow kernels. The common case (a clean column) costs one cast, or
nothing when a source already typed it; only a column that fails to cast is examined further, and
only its failing values one by one. A record's reason is the first check it fails, as a code from
`pipelines.batches.REASONS`, with the column and what was found in `column_name` and `detail`.

Integers are coerced exactly: an INT64 value written as a float (`480.0`, `4.8e2`, `-0.0`, or a
FLOAT64 source column) is accepted when it is a whole number within int64, since that is how pandas
and many exports write integer columns; anything else is `not_integer` or `out_of_range`, never
rounded. For scoring, each valid record also leaves with where it came from and a hash of its
content, so that duplicate keys can be resolved where the night is published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from pipelines import metrics
from pipelines.batches import PROVENANCE_LAYOUT, REJECTED, RawBatch, raw_text, rejected_batch, returning_memory_pool
from pipelines.choices import UnknownColumns
from pipelines.observe import timed
from schemas import Column, ColumnType, InputSchema

VALID_COUNTS = "valid_counts"  # the DoFn's tagged output: (source, records valid) per batch
FLOAT32_MAX = 3.4028234663852886e38
INT64_BOUND = 2.0**63  # floats in [-2**63, 2**63) are int64s when whole
DETAIL_CHARS = 200  # of an offending value, what `detail` shows

_INTEGER = r"^[+-]?\d+$"
_WHOLE_DECIMAL = r"^[+-]?\d+\.0*$"  # 480.0, as pandas writes an integer column holding a missing value
_NUMBER = r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|nan|Infinity|NaN)$"

# (mask, reason code, detail): the detail is a scalar, or made only when some record fails (a callable),
# since formatting a whole column's values as text would cost more than every check together.
_Failure = tuple[pa.Array, str, "pa.Scalar | Callable[[], pa.Array]"]


class SchemaValidator:
    """Types a raw batch by the schema and sorts its records into valid ones and rejected ones."""

    def __init__(self, schema: InputSchema, unknown_columns: str = UnknownColumns.KEEP):
        self.schema = schema
        self.unknown_columns = UnknownColumns(unknown_columns)  # a value it does not know: ValueError
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
        """(valid records, typed; rejected records or None)."""
        valid, _, rejected = self.check(raw)
        return valid, rejected

    def check(self, raw: RawBatch) -> tuple[pa.RecordBatch, pa.Array | None, pa.RecordBatch | None]:
        """(valid records, typed; which of the batch's records they are, None for all; rejected ones)."""
        batch = raw.records
        reasons = _Reasons(batch.num_rows)
        unknown = [name for name in batch.schema.names if name not in self._names]
        if unknown and self.unknown_columns == UnknownColumns.REJECT:
            carrying = pc.is_valid(batch.column(unknown[0]))
            for name in unknown[1:]:
                carrying = pc.or_(carrying, pc.is_valid(batch.column(name)))
            detail = pa.scalar("a value in a column the schema does not know (--unknown_columns reject)")
            reasons.add(carrying, "unknown_column", ", ".join(unknown), detail)
        typed = []
        present = set(batch.schema.names)
        for column in self.schema.columns:
            source = (
                batch.column(column.name) if column.name in present else pa.nulls(batch.num_rows, column.type.arrow)
            )
            values, failures = _typed(source, column.type)
            values, more = _checked(values, column)
            for mask, code, detail in failures + more:
                reasons.add(mask, code, column.name, detail)
            typed.append(values)
        typed_batch = pa.RecordBatch.from_arrays(typed, schema=self.arrow_schema)
        if reasons.clean:
            return typed_batch, None, None
        ok = pc.is_null(reasons.codes)
        bad = pc.invert(ok)
        rejected = rejected_batch(
            raw.source,
            raw_text(batch.filter(bad), raw.format),
            reasons.codes.filter(bad),
            raw.lines().filter(bad),
            columns=reasons.columns.filter(bad),
            details=reasons.details.filter(bad),
        )
        return typed_batch.filter(ok), ok, rejected


class _Reasons:
    """Each record's first failure: its code, column and detail (null while the record is fine)."""

    def __init__(self, n: int):
        self.codes = pa.nulls(n, pa.string())
        self.columns = pa.nulls(n, pa.string())
        self.details = pa.nulls(n, pa.string())

    @property
    def clean(self) -> bool:
        return self.codes.null_count == len(self.codes)

    def add(self, failed: pa.Array, code: str, column: str, detail) -> None:
        if not pc.any(failed).as_py():  # the common case: nothing failed (a null is no failure)
            return
        first = pc.and_(pc.fill_null(failed, False), pc.is_null(self.codes))
        if not pc.any(first).as_py():
            return
        if callable(detail):
            detail = detail()
        self.codes = pc.if_else(first, pa.scalar(code), self.codes)
        self.columns = pc.if_else(first, pa.scalar(column), self.columns)
        self.details = pc.if_else(first, detail, self.details)


def _quoted(text: pa.Array | Callable[[], pa.Array], suffix: str) -> Callable[[], pa.Array]:
    """`'value' suffix` for each value, the value cut to DETAIL_CHARS; made when called."""

    def detail() -> pa.Array:
        values = text() if callable(text) else text
        return pc.binary_join_element_wise("'", pc.utf8_slice_codeunits(values, 0, DETAIL_CHARS), "' " + suffix, "")

    return detail


def _text_of(values: pa.Array) -> Callable[[], pa.Array]:
    return lambda: pc.cast(values, pa.string())


def _typed(source: pa.Array, type_: ColumnType) -> tuple[pa.Array, list[_Failure]]:
    """Cast one column to its type; the values that would not cast become null, with their failure."""
    target = type_.arrow
    if source.type == target:
        return source, []
    if type_ is ColumnType.INT64 and pa.types.is_floating(source.type):
        return _whole_floats(pc.cast(source, pa.float64()))
    try:
        return pc.cast(source, target), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = source if pa.types.is_string(source.type) else pc.cast(source, pa.string())
    if type_ is ColumnType.STRING:
        return text, []
    if type_ is ColumnType.INT64:
        return _integers_from_text(text)
    if type_ is ColumnType.FLOAT64:
        good = pc.fill_null(pc.match_substring_regex(text, _NUMBER), True)
    else:  # dates, timestamps, booleans: rare in inputs, so value by value
        good = pa.array([v is None or _casts(v, target) for v in text.to_pylist()])
    wrong = pc.invert(good)
    values = pc.cast(pc.if_else(wrong, pa.scalar(None, pa.string()), text), target)
    return values, [(wrong, "wrong_type", _quoted(text, f"is not {type_.value}"))]


def _whole_floats(values: pa.Array) -> tuple[pa.Array, list[_Failure]]:
    """Floats (JSON numbers, a FLOAT64 column) to int64 where they are whole and in range."""
    whole = pc.and_(pc.is_finite(values), pc.equal(pc.floor(values), values))
    fits = pc.and_(pc.greater_equal(values, -INT64_BOUND), pc.less(values, INT64_BOUND))
    not_integer = pc.invert(whole)
    out_of_range = pc.and_(whole, pc.invert(fits))
    keep = pc.and_(whole, fits)
    text = _text_of(values)
    ints = pc.cast(pc.if_else(keep, values, pa.scalar(None, pa.float64())), pa.int64(), safe=False)
    return ints, [
        (not_integer, "not_integer", _quoted(text, "is not a whole number")),
        (out_of_range, "out_of_range", _quoted(text, "is outside int64")),
    ]


def _integers_from_text(text: pa.Array) -> tuple[pa.Array, list[_Failure]]:
    """Text to int64, exactly. Whole numbers written as decimals are common and handled in bulk; other
    number forms (exponents, fractions, nan) are rare and decided one by one, exactly, with Decimal."""
    integer = pc.fill_null(pc.match_substring_regex(text, _INTEGER), True)
    whole_decimal = pc.fill_null(pc.match_substring_regex(text, _WHOLE_DECIMAL), False)
    # Arrow's cast takes neither a decimal point nor a plus sign: drop both where they change nothing.
    cleaned = pc.replace_substring_regex(
        pc.if_else(whole_decimal, pc.replace_substring_regex(text, r"\.0*$", ""), text), r"^\+", ""
    )
    other = pc.invert(pc.or_(integer, whole_decimal))
    failures: list[_Failure] = []
    if pc.any(other).as_py():
        decided = [_exact_integer(v) for v in text.filter(other).to_pylist()]
        cleaned = pc.replace_with_mask(cleaned, other, pa.array([d[0] for d in decided], pa.string()))
        codes = pc.replace_with_mask(
            pa.nulls(len(text), pa.string()), other, pa.array([d[1] for d in decided], pa.string())
        )
        for code, suffix in (
            ("wrong_type", "is not INT64"),
            ("not_integer", "is not a whole number"),
            ("out_of_range", "is outside int64"),
        ):
            failures.append((pc.fill_null(pc.equal(codes, code), False), code, _quoted(text, suffix)))
    try:
        return pc.cast(cleaned, pa.int64()), failures
    except pa.ArrowInvalid:
        # Digits beyond int64 (only a batch that already failed once gets here): find them one by one.
        overflow = pa.array([v is not None and not _casts(v, pa.int64()) for v in cleaned.to_pylist()])
        failures.append((overflow, "out_of_range", _quoted(text, "is outside int64")))
        return pc.cast(pc.if_else(overflow, pa.scalar(None, pa.string()), cleaned), pa.int64()), failures


def _exact_integer(value: str) -> tuple[str | None, str | None]:
    """(integer text, None) or (None, reason code) for one value that is not plain digits."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None, "wrong_type"
    if not number.is_finite() or number != number.to_integral_value():
        return None, "not_integer"
    integer = int(number)
    if not -(2**63) <= integer < 2**63:
        return None, "out_of_range"
    return str(integer), None


def _checked(values: pa.Array, column: Column) -> tuple[pa.Array, list[_Failure]]:
    """Finite numbers the model can take, declared ranges and allowed values, required values present."""
    failures: list[_Failure] = []
    if column.type is ColumnType.FLOAT64:
        text = _text_of(values)
        non_finite = pc.invert(pc.fill_null(pc.is_finite(values), True))
        # The model takes float32: a larger magnitude would reach it as infinity.
        too_big = pc.fill_null(pc.greater(pc.abs(values), FLOAT32_MAX), False)
        failures += [
            (non_finite, "non_finite", _quoted(text, "is not a finite number")),
            (too_big, "out_of_range", _quoted(text, "is outside float32, the model's input type")),
        ]
        unusable = pc.or_(non_finite, too_big)
        if pc.any(unusable).as_py():
            values = pc.if_else(unusable, pa.scalar(None, pa.float64()), values)
    if column.minimum is not None or column.maximum is not None:
        outside = pa.repeat(pa.scalar(False), len(values))
        if column.minimum is not None:
            outside = pc.or_(outside, pc.fill_null(pc.less(values, column.minimum), False))
        if column.maximum is not None:
            outside = pc.or_(outside, pc.fill_null(pc.greater(values, column.maximum), False))
        bounds = _bounds(column)
        failures.append((outside, "out_of_range", _quoted(_text_of(values), bounds)))
        if pc.any(outside).as_py():
            values = pc.if_else(outside, pa.scalar(None, values.type), values)
    if column.allowed is not None:
        refused = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, pa.array(sorted(column.allowed)))))
        failures.append((refused, "out_of_range", _quoted(values, "is not an allowed value")))
        values = pc.if_else(refused, pa.scalar(None, values.type), values)
    if column.required:
        # A value that failed a check above is null by now but already has its reason.
        failures.append((pc.is_null(values), "missing_required", pa.scalar("no value", pa.string())))
    return values, failures


def _bounds(column: Column) -> str:
    if column.maximum is None:
        return f"is below the declared minimum {column.minimum:g}"
    if column.minimum is None:
        return f"is above the declared maximum {column.maximum:g}"
    return f"is outside the declared range [{column.minimum:g}, {column.maximum:g}]"


def _casts(value: str, type_: pa.DataType) -> bool:
    try:
        pc.cast(pa.array([value]), type_)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


# ---------------------------------------------------------------- content hash, for duplicate keys

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL = np.uint64(0x6A09E667F3BCC909)
_POWERS = np.cumprod(np.full(64, 0x100000001B3, dtype=np.uint64), dtype=np.uint64)


def content_hash(batch: pa.RecordBatch, schema: InputSchema) -> pa.Array:
    """A 64-bit hash of each record's typed values, the key left out: equal records, equal hashes.

    Computed with numpy over whole columns, so it costs no Python per record; -0.0 and 0.0 hash alike.
    """
    h = np.zeros(batch.num_rows, np.uint64)
    for column in schema.columns:
        if column.name == schema.key.name:
            continue
        h = _mix(h * _GOLDEN + _column_hash(batch.column(column.name)))
    return pa.array(h.view(np.int64))


def _column_hash(values: pa.Array) -> np.ndarray:
    if pa.types.is_string(values.type):
        hashed = _string_hash(values)
    elif pa.types.is_floating(values.type):
        hashed = (pc.fill_null(values, 0.0).to_numpy(zero_copy_only=False) + 0.0).view(np.uint64)
    elif pa.types.is_boolean(values.type):
        hashed = pc.fill_null(values, False).to_numpy(zero_copy_only=False).astype(np.uint64)
    else:  # integers, dates, timestamps
        if pa.types.is_date32(values.type):  # days since 1970: Arrow casts a date to int32, not int64
            values = pc.cast(values, pa.int32())
        hashed = pc.fill_null(pc.cast(values, pa.int64()), 0).to_numpy(zero_copy_only=False).view(np.uint64)
    if values.null_count:
        hashed = np.where(values.is_null().to_numpy(zero_copy_only=False), _NULL, hashed)
    return hashed


def _string_hash(values: pa.Array) -> np.ndarray:
    """Each string's hash: its distinct values hashed once (a dictionary encoding), then looked up."""
    encoded = pc.dictionary_encode(values)
    if not len(encoded.dictionary):  # all null: _column_hash marks them
        return np.zeros(len(values), np.uint64)
    return _bytes_hash(encoded.dictionary)[pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)]


def _bytes_hash(values: pa.Array) -> np.ndarray:
    """Polynomial hash of each string's bytes, weights by position (cycling every 64 bytes)."""
    offsets = np.frombuffer(values.buffers()[1], np.int32, count=len(values) + 1, offset=values.offset * 4)
    lengths = np.diff(offsets).astype(np.int64)
    total = int(offsets[-1] - offsets[0])
    if not total:
        return lengths.astype(np.uint64)
    raw = np.frombuffer(values.buffers()[2], np.uint8, count=total, offset=int(offsets[0])).astype(np.uint64)
    starts = (offsets[:-1] - offsets[0]).astype(np.int64)
    position = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
    weighted = (raw + np.uint64(1)) * _POWERS[position % 64]
    sums = np.add.reduceat(weighted, np.minimum(starts, total - 1))
    sums[lengths == 0] = 0
    return sums ^ lengths.astype(np.uint64)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the whole hash."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


class ValidateBatch(beam.DoFn):
    """Typed valid records out (with their provenance when scoring), rejections and valid counts tagged."""

    def __init__(self, schema: InputSchema, unknown_columns: str = UnknownColumns.KEEP, provenance: bool = False):
        self._validator = SchemaValidator(schema, unknown_columns)
        self._schema = schema
        self._provenance = provenance
        self._valid = metrics.RECORDS_VALID.counter()
        self._rejected = metrics.RECORDS_REJECTED.counter()
        self._time = metrics.step_timer("validate")

    def setup(self) -> None:
        returning_memory_pool()

    def process(self, raw: RawBatch) -> Iterator:
        return timed(self._time, self._validate(raw))

    def _validate(self, raw: RawBatch) -> Iterator:
        for name, records in self._validator.unknown_column_counts(raw.records).items():
            Metrics.counter(metrics.UNKNOWN_COLUMNS, name).inc(records)
        valid, ok, rejected = self._validator.check(raw)
        if valid.num_rows:
            self._valid.inc(valid.num_rows)
            yield self._with_provenance(valid, raw, ok) if self._provenance else valid
        if rejected is not None:
            self._rejected.inc(rejected.num_rows)
            yield beam.pvalue.TaggedOutput(REJECTED, rejected)
        yield beam.pvalue.TaggedOutput(VALID_COUNTS, (raw.source, valid.num_rows))

    def _with_provenance(self, valid: pa.RecordBatch, raw: RawBatch, ok: pa.Array | None) -> pa.RecordBatch:
        lines = raw.lines() if ok is None else raw.lines().filter(ok)
        columns = [
            *valid.columns,
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(valid.num_rows, np.int32)), pa.array([raw.source])),
            lines,
            content_hash(valid, self._schema),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=pa.schema([*valid.schema, *PROVENANCE_LAYOUT]))


class Checked(NamedTuple):
    """What validation gives the steps after it."""

    valid: beam.PCollection  # typed record batches (with their provenance when scoring)
    rejected: beam.PCollection  # record batches laid out as `batches.REJECTED_SCHEMA`
    valid_counts: beam.PCollection  # (source, records valid) per batch


class ValidateRecords(beam.PTransform):
    """Raw batches -> `Checked`: typed batches, rejected records, valid counts per source."""

    def __init__(self, schema: InputSchema, unknown_columns: str = UnknownColumns.KEEP, provenance: bool = False):
        super().__init__()
        self._schema = schema
        self._unknown_columns = unknown_columns
        self._provenance = provenance

    def expand(self, raw_batches) -> Checked:
        checked = raw_batches | "CheckSchema" >> beam.ParDo(
            ValidateBatch(self._schema, self._unknown_columns, self._provenance)
        ).with_outputs(REJECTED, VALID_COUNTS, main="valid")
        return Checked(checked.valid, checked[REJECTED], checked[VALID_COUNTS])
