"""CSV files: the header decides the columns; pyarrow parses each block whole, typed by the schema.

A block ends where a record ends (`blocks.py` finds it, quote-aware, and that count is the file's
independent count). A block pyarrow reads differently from that count (bad bytes, bad quoting, blank
lines, rows with the wrong number of fields) is read record by record with Python's csv module, so
damage costs only the records it is in. A header lacking a column the run needs refuses the file: its
records are counted and rejected as one file error.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Generator, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from apache_beam.metrics import Metrics

from pipelines import metrics
from pipelines.batches import CSV, JSON, RawBatch, file_error
from pipelines.choices import MissingColumns
from pipelines.sources.blocks import BOM, Records, exact, scan_csv
from pipelines.sources.contract import ReadSettings
from pipelines.sources.reader import LOOKS_LIKE_HINT, PREVIEW_BYTES, BlockBuffer, FileReader, is_utf8
from schemas import InputSchema, Role

PARSE_PIECE_BYTES = 1 << 20  # a block is parsed in pieces of this size, in parallel


class CsvReader(FileReader):
    """A CSV file: its header decides the columns, its blocks end where records end."""

    def __init__(self, path: str, schema: InputSchema, settings: ReadSettings):
        super().__init__(path, schema, settings)
        self.header: list[str] = []
        self.text_columns: set[str] = set()  # columns that once failed to parse typed: read as text after
        self.refusal: tuple[str, str | None, str] | None = None  # (reason, column, detail): the file is refused
        self.missing: list = []  # schema columns the header lacks

    def read_header(self, blocks: BlockBuffer) -> None:
        """Only the header: for a shard that starts after it."""
        while not self.header and self.refusal is None and not blocks.last:
            blocks.read()
            self._take_header(blocks)

    def read(self, blocks: BlockBuffer) -> Iterator:
        fields = len(self.header)
        while not blocks.last:
            blocks.read()
            if not self.header and self.refusal is None:
                self._take_header(blocks)
                if not self.header and self.refusal is None:
                    continue  # the header is longer than what was read so far
                fields = len(self.header)
            records = scan_csv(blocks.data, blocks.size, fields, blocks.last)
            if not blocks.last and blocks.size - records.cut > self.max_record_bytes:
                records = scan_csv(blocks.data, blocks.size, fields, blocks.last, force=True)
                if records.cut == 0:  # one line longer than the limit
                    yield self.too_large(blocks)
                    records = scan_csv(blocks.data, blocks.size, fields, blocks.last)
            if records.simple and self.refusal is not None:
                records = exact(blocks.data, records.cut, fields)  # a refused file: counted exactly
            elif records.count and self.refusal is None:
                records = yield from self._parse(blocks.data, records)
            self.counted += records.count
            self.line += records.newlines
            blocks.drop(records.cut)
        for column in self.missing:
            Metrics.counter(metrics.MISSING_COLUMNS, column.name).inc(self.counted)
        if self.refusal is not None and self.counted:
            reason, column, detail = self.refusal
            yield file_error(self.path, reason, self.counted, detail, column)

    def _take_header(self, blocks: BlockBuffer) -> None:
        """Read the header off the buffer once it holds it; the rest of the buffer is records."""
        if blocks.data.startswith(BOM, 0, blocks.size):
            blocks.drop(len(BOM))
        end = _first_record_end(blocks)
        if end is None:
            if blocks.size > self.max_record_bytes:
                self.refusal = ("unreadable_file", None, "no header line within --max_record_bytes")
            return
        raw = bytes(blocks.data[:end])
        blocks.drop(end)
        self.line += raw.count(b"\n")
        try:
            [names] = list(csv.reader(io.StringIO(raw.decode("utf-8").rstrip("\r\n"), newline="")))
        except (UnicodeDecodeError, csv.Error, ValueError):
            names = []
        if not names or len(set(names)) != len(names) or "" in names:
            self.refusal = (
                "unreadable_file",
                None,
                f"the header is not one line of distinct column names: {raw[:PREVIEW_BYTES]!r}",
            )
            self.header = names or ["?"]
            return
        self.header = names
        missing = [c for c in self.schema.columns if c.name not in names]
        # A nullable feature read as all-null would shift every prediction; a label or key the run does
        # not need (the label at scoring, the key at training) may be absent.
        refuse_nullable = self.settings.missing_nullable_columns == MissingColumns.REFUSE
        refused = [c for c in missing if c.required or (c.role is Role.FEATURE and refuse_nullable)]
        self.missing = [c for c in missing if c.role is Role.FEATURE]  # counted: features scored as null
        if refused:
            kind = "required" if any(c.required for c in refused) else "nullable"
            json_instead = _json_record_of(raw, self.schema)
            if json_instead:
                Metrics.counter(metrics.LOOKS_LIKE, JSON).inc()
            self.refusal = (
                "missing_column",
                ", ".join(c.name for c in refused),
                f"the header lacks {kind} column(s) {', '.join(c.name for c in refused)}"
                + ("" if kind == "required" else " (--missing_nullable_columns null scores them as null)")
                + (f"; {LOOKS_LIKE_HINT[JSON]}" if json_instead else ""),
            )

    def _parse(self, buffer: bytearray, records: Records) -> Generator[RawBatch | pa.RecordBatch, None, Records]:
        """The whole records at the head of `buffer` -> a raw batch and rejections; returns the records
        as finally counted. pyarrow parses the block in one go; a block it reads differently from the
        independent count (bad bytes, bad quoting, blank lines) is counted exactly and read record by
        record."""
        data = pa.py_buffer(buffer).slice(0, records.cut)  # no copy
        try:
            batch, invalid = self._arrow(data, quoted=not records.simple)
        except _Unparsed:
            return (yield from self._slowly(buffer, records))
        if batch.num_rows + len(invalid) != records.count or (invalid and not records.simple):
            return (yield from self._slowly(buffer, records))
        if records.simple and not invalid:
            raw = RawBatch(self.path, batch, CSV, first_line=self.line)
        elif records.simple:  # pyarrow's row number of a skipped row is its line within the block
            kept = np.delete(np.arange(records.count), [number - 1 for number, *_ in invalid])
            raw = RawBatch(self.path, batch, CSV, line_numbers=pa.array(self.line + kept))
        else:
            raw = RawBatch(self.path, batch, CSV, line_numbers=pa.array(self.line + records.line_offsets))
        if batch.num_rows:
            yield raw
        if invalid:
            yield self.bad_records(
                [
                    (
                        self.line + number - 1,
                        text,
                        "malformed_line",
                        None,
                        f"expected {expected} fields, found {actual}",
                    )
                    for number, text, expected, actual in invalid
                ]
            )
        return records

    def _arrow(self, data: pa.Buffer, quoted: bool) -> tuple[pa.RecordBatch, list]:
        """pyarrow's parse, typed by the schema where the file's values allow it.

        Rows with the wrong number of fields are collected by an invalid-row handler, but only once
        pyarrow has met one: a handler makes every block parse about a third slower.
        """
        types = {c.name: c.type.arrow for c in self.schema.columns}
        invalid: list[tuple] | None = None
        while True:
            column_types = {
                name: pa.string() if name in self.text_columns else types.get(name, pa.string()) for name in self.header
            }
            if invalid is not None:
                invalid.clear()
            try:
                table = pacsv.read_csv(
                    pa.BufferReader(data),
                    # Until a row with the wrong field count turns up, pyarrow parses the block's
                    # pieces on all cores; the invalid-row handler needs one piece in one thread,
                    # so that it is told each row's true number.
                    read_options=pacsv.ReadOptions(
                        column_names=self.header,
                        block_size=PARSE_PIECE_BYTES if invalid is None else data.size + 1,
                        use_threads=invalid is None,
                    ),
                    parse_options=pacsv.ParseOptions(
                        invalid_row_handler=None if invalid is None else _collector(invalid),
                        newlines_in_values=quoted,
                    ),
                    convert_options=pacsv.ConvertOptions(
                        column_types=column_types, strings_can_be_null=True, null_values=[""]
                    ),
                )
            except pa.ArrowInvalid as e:
                message = str(e)
                failed = _FAILED_COLUMN.search(message)
                if failed and "UTF8" not in message and self.header[int(failed.group(1))] not in self.text_columns:
                    self.text_columns.add(self.header[int(failed.group(1))])  # validation types it, value by value
                    continue
                if invalid is None and message.startswith("CSV parse error") and is_utf8(data.to_pybytes()):
                    # A row with the wrong number of fields: parse again, collecting such rows. (Not where
                    # the block holds bytes that are not UTF-8: pyarrow cannot hand the handler such a
                    # row's text, and prints its own complaint; record by record says which row it is.)
                    invalid = []
                    continue
                raise _Unparsed(message) from e
            batch = table.combine_chunks().to_batches()
            invalid = invalid or []
            return (batch[0] if batch else pa.RecordBatch.from_pylist([], table.schema)), invalid

    def _slowly(self, buffer: bytearray, records: Records) -> Generator[RawBatch | pa.RecordBatch, None, Records]:
        """One record at a time, for a block pyarrow could not read whole: each record parsed or rejected."""
        fields = len(self.header)
        if records.simple:
            records = exact(buffer, records.cut, fields)
        starts, ends, offsets = records.starts, records.ends, records.line_offsets
        rows, lines, rejected = [], [], []
        for start, end, offset in zip(starts.tolist(), ends.tolist(), offsets.tolist(), strict=True):
            raw = bytes(buffer[start:end])
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            line = self.line + offset
            text = self.decoded(raw, line, rejected)
            if text is None:
                continue
            try:
                parsed = list(csv.reader(io.StringIO(text, newline="")))
            except csv.Error as e:
                rejected.append((line, text, "malformed_line", None, str(e)))
                continue
            found = len(parsed[0]) if len(parsed) == 1 else sum(len(p) for p in parsed)
            if len(parsed) != 1 or found != fields:
                rejected.append((line, text, "malformed_line", None, f"expected {fields} fields, found {found}"))
                continue
            rows.append(parsed[0])
            lines.append(line)
        if rows:
            columns = [pa.array([row[i] or None for row in rows], pa.string()) for i in range(fields)]
            yield RawBatch(
                self.path,
                pa.RecordBatch.from_arrays(columns, names=self.header),
                CSV,
                line_numbers=pa.array(lines, pa.int64()),
            )
        if rejected:
            yield self.bad_records(rejected)
        return records


def _collector(invalid: list):
    """pyarrow's invalid-row handler: note the row, skip it."""

    def on_invalid(row) -> str:
        invalid.append((row.number, row.text, row.expected_columns, row.actual_columns))
        return "skip"

    return on_invalid


class _Unparsed(Exception):
    """pyarrow could not read a block whole."""


def _first_record_end(blocks: BlockBuffer) -> int | None:
    """End (after its newline) of the first CSV record: the first newline outside quotes."""
    quotes, position = 0, 0
    while True:
        newline = blocks.find(b"\n", position)
        if newline < 0:
            return blocks.size if blocks.last else None
        quotes += blocks.data.count(b'"', position, newline)
        position = newline + 1
        if quotes % 2 == 0:
            return position


_FAILED_COLUMN = re.compile(r"In CSV column #(\d+)")


def _json_record_of(raw: bytes, schema: InputSchema) -> bool:
    """Whether a line that is no CSV header of the schema is a JSON object holding its key."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return False
    return isinstance(record, dict) and schema.key.name in record
