"""Extract: a day's input files (CSV or newline-delimited JSON, local or gs://) into Arrow batches.

Files are matched once, up front, so a date with no input fails before anything is written; the
file list is reshuffled so that a runner with many workers reads files in parallel. Each file is
streamed in blocks (compressed files are decompressed on the fly, by extension): memory per worker
is bounded by the block size (or by --max_record_bytes, for a record longer than a block), not the
file size, and no Python object is made per record on the common path.

Nothing is fatal to the run and nothing is lost: every record leaves as part of a raw batch or as a
rejection with a reason code, and each file's record count comes from `pipelines.blocks`, counted
apart from the parser, for the run to reconcile against. A block pyarrow cannot read whole is read
record by record, so damage costs only the records it is in.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from functools import partial

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines import progress
from pipelines.arguments import DEFAULT_BLOCK_BYTES, DEFAULT_MAX_RECORD_BYTES, DEFAULT_SPLIT_BYTES, NULL, REFUSE
from pipelines.batches import (
    COUNTS,
    CSV,
    FILE_ERROR,
    INCOMPLETE_FILE,
    JSON,
    REJECTED,
    RawBatch,
    count_read,
    file_error,
    rejected_batch,
)
from pipelines.blocks import BOM, Records, exact, json_lines, scan_csv
from pipelines.observe import stage_timer, timed
from pipelines.ranges import (
    Bounded,
    CountRange,
    Cut,
    InputRange,
    boundary,
    compressed,
    cuts,
    open_range,
    plan_ranges,
)
from schemas import InputSchema, Role

PARSE_PIECE_BYTES = 1 << 20  # a block is parsed in pieces of this size, in parallel
HEADER_BLOCK_BYTES = 1 << 16  # read at a time for the header of a range that starts after it
INPUT_RANGES = "extract/input_ranges"  # the counter: files read whole, plus ranges of split files
PREVIEW_BYTES = 1024  # of a record too large to keep, what raw_record shows
# The counter of files whose content is another format than their name says, by the format it looks
# like: what a refusal names as the likely cause (README: Every record is accounted for).
LOOKS_LIKE = "input_looks_like"
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".zstd", ".xz", ".lzma")  # Beam's, by file name
_FORMATS = {".csv": CSV, ".json": JSON, ".jsonl": JSON, ".ndjson": JSON}


class InputNotFoundError(FileNotFoundError):
    """No input files for the date: the run must stop before writing anything."""


def match_input(pattern: str, date: str, input_format: str = "auto") -> list[str]:
    """Expand `pattern` (with `{date}` substituted) to the files to read, or fail clearly.

    Each file's format is checked here too, so an unreadable kind of file stops the run before
    anything is read or written.
    """
    path = pattern.format(date=date)
    which = f"no input files for date {date}" if date else "no input files"
    try:
        result = FileSystems.match([path])[0]
    except Exception as e:  # Beam raises BeamIOError for a missing directory or bucket
        raise InputNotFoundError(f"{which}: {path} ({e})") from e
    files = sorted(m.path for m in result.metadata_list if not m.path.endswith("/"))
    if not files:
        raise InputNotFoundError(f"{which}: nothing matches {path}")
    for file in files:
        file_format(file, input_format)
    return files


def file_format(path: str, requested: str = "auto") -> str:
    """csv or json: as requested, else from the file name (compression suffix ignored)."""
    if requested != "auto":
        return requested
    name = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for suffix, fmt in _FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise ValueError(f"cannot tell the format of {path} from its name; pass --input_format csv or json")


class ReadFiles(beam.DoFn):
    """One file in; raw batches out, plus rejected records and the file's independent count (tagged).

    Whatever a file holds, every record it has leaves as part of a raw batch or as a rejection, and
    the count that the run reconciles against comes from `pipelines.blocks`, not from the parser.
    """

    def __init__(
        self,
        schema: InputSchema,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        input_format: str = "auto",
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        missing_nullable_columns: str = REFUSE,
        progress_dir: str | None = None,
    ):
        if missing_nullable_columns not in (REFUSE, NULL):
            raise ValueError(f"missing_nullable_columns must be {REFUSE} or {NULL}, got {missing_nullable_columns!r}")
        self._schema = schema
        self._block_bytes = block_bytes
        self._format = input_format
        self._max_record_bytes = max(max_record_bytes, block_bytes)
        self._missing_nullable = missing_nullable_columns
        self._progress = progress_dir  # where this machine's progress bar reads bytes read (None: no bar)
        self._lines_rejected = Metrics.counter("extract", "malformed_records")
        self._files_rejected = Metrics.counter("extract", "files_rejected")
        self._time = stage_timer("extract")
        self._ranges = Metrics.counter(*INPUT_RANGES.split("/"))

    def process(self, part: str | InputRange, cuts: dict[str, list[Cut]] | None = None) -> Iterator:
        """A file (its path), or one range of a split file with the first pass's cuts of every split file."""
        part = part if isinstance(part, InputRange) else InputRange(part)
        self._ranges.inc()
        return timed(self._time, self._read(part, (cuts or {}).get(part.path, [])))

    def _read(self, part: InputRange, cuts: list[Cut]) -> Iterator:
        path = part.path
        fmt = file_format(path, self._format)
        reader = _CsvFile(self, path) if fmt == CSV else _JsonFile(self, path)
        file_rejected = False
        tally = progress.Tally.of(self._progress) if self._progress else None
        on_read = partial(tally.add, "bytes") if tally and not compressed(path) else None
        try:
            with self._open(part, cuts, reader) as stream:
                for item in reader.read(_Blocks(stream, self._block_bytes, on_read)):
                    if isinstance(item, RawBatch):
                        yield item
                        continue
                    if item.column("error_kind")[0].as_py() == FILE_ERROR:
                        file_rejected = True
                        self._files_rejected.inc()
                    else:
                        self._lines_rejected.inc(item.num_rows)
                    yield beam.pvalue.TaggedOutput(REJECTED, item)
        except _Unreadable as e:
            # The records before the damage were read and counted; how many follow it cannot be known.
            file_rejected = True
            self._files_rejected.inc()
            yield beam.pvalue.TaggedOutput(
                REJECTED,
                file_error(path, INCOMPLETE_FILE, 0, f"after {reader.counted} records: {e}"),
            )
        if reader.counted == 0 and not file_rejected and part.whole:  # a range may hold no record: a file may not
            self._files_rejected.inc()
            yield beam.pvalue.TaggedOutput(REJECTED, file_error(path, "empty_file", 0, "no records"))
        count_read(path, reader.counted)
        if tally:  # a compressed file's bytes are known only as the file's size, once it is read
            tally.add("bytes", part.size if compressed(path) else 0, flush=True)
        yield beam.pvalue.TaggedOutput(COUNTS, (path, reader.counted))

    @contextmanager
    def _open(self, part: InputRange, cuts: list[Cut], reader: _CsvFile | _JsonFile) -> Iterator:
        """The file's bytes, or a range's: from its first record boundary to the next range's. A CSV
        range after the first takes its header from the file's start."""
        if part.whole:
            with FileSystems.open(part.path) as stream:
                yield stream
            return
        csv_file = isinstance(reader, _CsvFile)
        if csv_file and part.index:
            with open_range(part.path) as stream:
                reader.read_header(_Blocks(stream, min(self._block_bytes, HEADER_BLOCK_BYTES)))
        with open_range(part.path) as stream:
            start, line = boundary(stream, part, part.index, cuts, csv_file)
            stop, _ = boundary(stream, part, part.index + 1, cuts, csv_file)
            stream.seek(start)
            if part.index:
                reader.line = line
            yield Bounded(stream, stop - start)


class _Unreadable(Exception):
    """The file's bytes could not be read any further."""


class _Blocks:
    """A file's bytes a block at a time, in one buffer kept for the whole file.

    The bytes of a record not yet complete move to the front and the next block is read in after them,
    so a block is neither allocated afresh nor copied again (the buffer grows only for a record longer
    than a block). Its contents are overwritten as reading goes on: what leaves a reader is parsed
    into new Arrow arrays first.
    """

    def __init__(self, stream, block_bytes: int, on_read: Callable[[int], None] | None = None):
        self._stream = stream
        self._block_bytes = block_bytes
        self._on_read = on_read  # told how many bytes each read brought (the progress bar)
        self.data = bytearray(2 * block_bytes)
        self.size = 0  # bytes of `data` holding the file
        self.last = False  # the file's end has been read

    def read(self) -> None:
        """Append the next block (compressed files are decompressed on the fly, by extension)."""
        if self.size + self._block_bytes > len(self.data):  # a new buffer: the old one may still be viewed
            grown = bytearray(max(2 * len(self.data), self.size + self._block_bytes))
            grown[: self.size] = memoryview(self.data)[: self.size]
            self.data = grown
        try:
            target = memoryview(self.data)[self.size : self.size + self._block_bytes]
            if hasattr(self._stream, "readinto"):
                n = self._stream.readinto(target)
            else:
                chunk = self._stream.read(self._block_bytes)
                n = len(chunk)
                target[:n] = chunk
        except Exception as e:  # only the reading itself: a corrupt archive, a truncated stream, I/O
            raise _Unreadable(f"{type(e).__name__}: {e}") from e
        self.size += n or 0
        self.last = not n
        if n and self._on_read is not None:
            self._on_read(n)
        if self.last and not _stream_complete(self._stream):
            raise _Unreadable("the compressed stream ends before its end-of-stream marker: the file is truncated")

    def drop(self, n: int) -> None:
        """Forget the first `n` bytes: the rest moves to the front."""
        self.data[: self.size - n] = memoryview(self.data)[n : self.size]
        self.size -= n

    def find(self, byte: bytes, start: int = 0) -> int:
        return self.data.find(byte, start, self.size)


def _stream_complete(stream) -> bool:
    """Whether a compressed file was read to its end-of-stream marker.

    Beam's CompressedFile (apache-beam 2.77) takes the end of a truncated gzip, bzip2, xz or zstd file
    for the end of the data, so a file cut short would silently lose its tail; its decompressor knows
    better (a file of no bytes at all named .gz is no gzip file either). Uncompressed streams have no
    such marker.
    """
    decompressor = getattr(stream, "_decompressor", None)
    return decompressor is None or getattr(decompressor, "eof", True)


class _File:
    """What both formats share: the file's running count and line, and oversized records."""

    def __init__(self, owner: ReadFiles, path: str):
        self.path = path
        self.schema = owner._schema
        self.max_record_bytes = owner._max_record_bytes
        self.counted = 0  # records found by the independent count
        self.line = 1  # line number of the buffer's first byte

    def too_large(self, blocks: _Blocks) -> pa.RecordBatch:
        """The buffer starts a record with no end in sight: reject it and skip to its end."""
        preview, size = bytes(blocks.data[:PREVIEW_BYTES]), 0
        end = blocks.find(b"\n")
        while end < 0 and not blocks.last:
            size += blocks.size
            blocks.drop(blocks.size)
            blocks.read()
            end = blocks.find(b"\n")
        size += end + 1 if end >= 0 else blocks.size
        blocks.drop(end + 1 if end >= 0 else blocks.size)
        self.counted += 1
        self.line += 1
        return rejected_batch(
            self.path,
            [preview.decode("utf-8", "backslashreplace") + "..."],
            ["record_too_large"],
            [self.line - 1],
            details=[f"{size} bytes, more than --max_record_bytes {self.max_record_bytes}"],
        )

    @staticmethod
    def decoded(raw: bytes, line: int, rejected: list) -> str | None:
        """The record as text; or None, the record noted in `rejected` with its bytes escaped."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            detail = f"byte {e.start} (0x{raw[e.start]:02x}) is not UTF-8"
            rejected.append((line, raw.decode("utf-8", "backslashreplace"), "invalid_utf8", None, detail))
            return None

    def bad_records(self, rejected: list[tuple[int, str, str, str | None, str]]) -> pa.RecordBatch:
        lines, raws, reasons, columns, details = zip(*rejected, strict=True)
        return rejected_batch(
            self.path, list(raws), list(reasons), list(lines), columns=list(columns), details=list(details)
        )


class _CsvFile(_File):
    """A CSV file: its header decides the columns, its blocks end where records end."""

    def __init__(self, owner: ReadFiles, path: str):
        super().__init__(owner, path)
        self.missing_nullable = owner._missing_nullable
        self.header: list[str] = []
        self.text_columns: set[str] = set()  # columns that once failed to parse typed: read as text after
        self.refusal: tuple[str, str | None, str] | None = None  # (reason, column, detail): the file is refused
        self.missing: list = []  # schema columns the header lacks

    def read_header(self, blocks: _Blocks) -> None:
        """Only the header: for a range that starts after it."""
        while not self.header and self.refusal is None and not blocks.last:
            blocks.read()
            self._take_header(blocks)

    def read(self, blocks: _Blocks) -> Iterator:
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
            Metrics.counter("missing_columns", column.name).inc(self.counted)
        if self.refusal is not None and self.counted:
            reason, column, detail = self.refusal
            yield file_error(self.path, reason, self.counted, detail, column)

    def _take_header(self, blocks: _Blocks) -> None:
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
        # not need (tips at scoring, trip_id at training) may be absent.
        refused = [c for c in missing if c.required or (c.role is Role.FEATURE and self.missing_nullable == REFUSE)]
        self.missing = missing
        if refused:
            kind = "required" if any(c.required for c in refused) else "nullable"
            json_instead = _json_record_of(raw, self.schema)
            if json_instead:
                Metrics.counter(LOOKS_LIKE, JSON).inc()
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
                if invalid is None and message.startswith("CSV parse error") and _utf8(data.to_pybytes()):
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


class _JsonFile(_File):
    """Newline-delimited JSON: one record per line that is not blank.

    pyarrow parses a block of whole lines in one go, typed by the schema. A column whose values come
    in another JSON type (numbers written as strings, say) is left to pyarrow to infer and to
    validation to type; a block pyarrow refuses, or reads into another number of records than it has
    lines, is read line by line, so only the bad lines are lost. pyarrow replaces bytes that are not
    UTF-8 instead of refusing them, so that is checked first. An object or array where the schema has
    a column is `wrong_type`, never its JSON text.
    """

    def __init__(self, owner: ReadFiles, path: str):
        super().__init__(owner, path)
        self.types = {c.name: c.type.value for c in self.schema.columns}

    def read(self, blocks: _Blocks) -> Iterator:
        typed = {c.name: pa.field(c.name, c.type.arrow) for c in self.schema.columns}
        while not blocks.last:
            blocks.read()
            cut, lines = json_lines(blocks.data, blocks.size, blocks.last)
            if not cut:
                if blocks.size > self.max_record_bytes:
                    yield self.too_large(blocks)
                continue
            block = bytes(memoryview(blocks.data)[:cut])
            blocks.drop(cut)
            parsed = None if not (block.isascii() or _utf8(block)) else self._arrow(block, typed)
            if parsed is not None and parsed.num_rows == lines:
                self.counted += lines
                yield RawBatch(self.path, parsed, JSON, first_line=self.line)
            else:
                yield from self._lines(block)
            self.line += lines

    def _arrow(self, block: bytes, typed: dict) -> pa.RecordBatch | None:
        explicit = dict(typed)
        while True:
            try:
                table = pajson.read_json(
                    io.BytesIO(block),
                    read_options=pajson.ReadOptions(use_threads=False, block_size=len(block) + 1),
                    parse_options=pajson.ParseOptions(
                        explicit_schema=pa.schema(list(explicit.values())), unexpected_field_behavior="infer"
                    ),
                )
            except pa.ArrowInvalid as e:
                changed = _CHANGED_TYPE.search(str(e))
                if changed and changed.group(1) in explicit:
                    del explicit[changed.group(1)]
                    continue
                return None
            if any(pa.types.is_nested(f.type) for f in table.schema if f.name in typed):
                return None  # an object or array where the schema has a scalar: rejected line by line
            batches = table.combine_chunks().to_batches()
            return batches[0] if batches else None

    def _lines(self, block: bytes) -> Iterator:
        """The slow path: each line on its own, values kept as text for validation to type."""
        rows, lines, bad = [], [], []
        for number, line in enumerate(block.split(b"\n"), start=self.line):
            if not line.strip():
                continue
            self.counted += 1
            text = self.decoded(line, number, bad)
            if text is None:
                continue
            try:
                record = json.loads(text)
            except ValueError as e:
                hint = ""
                if number == 1 and _csv_header_of(text, self.schema):
                    Metrics.counter(LOOKS_LIKE, CSV).inc()
                    hint = f"; {LOOKS_LIKE_HINT[CSV]}"
                bad.append((number, text, "malformed_json", None, f"{e}{hint}"))
                continue
            if not isinstance(record, dict):
                bad.append(
                    (number, text, "malformed_json", None, f"a record must be an object, not {type(record).__name__}")
                )
                continue
            nested = next((k for k, v in record.items() if k in self.types and isinstance(v, dict | list)), None)
            if nested is not None:  # never stored as its JSON text in a column of another type
                held = "an object" if isinstance(record[nested], dict) else "an array"
                bad.append((number, text, "wrong_type", nested, f"{nested} is {held}, not {self.types[nested]}"))
                continue
            rows.append({k: _as_text(v) for k, v in record.items()})
            lines.append(number)
        if rows:
            # The key column is always there, so a block of empty objects still has its rows.
            names = list(dict.fromkeys([self.schema.key.name] + [k for row in rows for k in row]))
            yield RawBatch(
                self.path,
                pa.RecordBatch.from_pydict({n: pa.array([row.get(n) for row in rows], pa.string()) for n in names}),
                JSON,
                line_numbers=pa.array(lines, pa.int64()),
            )
        if bad:
            yield self.bad_records(bad)


def _collector(invalid: list):
    """pyarrow's invalid-row handler: note the row, skip it."""

    def on_invalid(row) -> str:
        invalid.append((row.number, row.text, row.expected_columns, row.actual_columns))
        return "skip"

    return on_invalid


class _Unparsed(Exception):
    """pyarrow could not read a block whole."""


def _utf8(block: bytes) -> bool:
    try:
        block.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _first_record_end(blocks: _Blocks) -> int | None:
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
_CHANGED_TYPE = re.compile(r"Column\(/([^)/]+)\) changed from")


LOOKS_LIKE_HINT = {
    CSV: "its first line is a CSV header of the schema's columns: the file holds CSV (pass --input_format csv or "
    "name it .csv)",
    JSON: "its first line is a JSON object with the schema's columns: the file holds JSON lines (pass "
    "--input_format json or name it .json)",
}


def _csv_header_of(line: str, schema: InputSchema) -> bool:
    """Whether a line that is not JSON is a CSV header naming the schema's key and required columns."""
    try:
        [names] = list(csv.reader([line]))
    except (csv.Error, ValueError):
        return False
    return {c.name for c in schema.columns if c.required or c.role is Role.KEY} <= set(names)


def _json_record_of(raw: bytes, schema: InputSchema) -> bool:
    """Whether a line that is no CSV header of the schema is a JSON object holding its key."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return False
    return isinstance(record, dict) and schema.key.name in record


def _as_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)  # an object or array where a scalar belongs: validation rejects it


class ReadInputFiles(beam.PTransform):
    """Files -> raw batches; tagged `rejected` (records and files) and `counts` ((file, records) per file
    or range: a file's count is their sum).

    Files larger than `split_bytes` (0: none) are read as ranges by different workers
    (`pipelines.ranges`): the first pass over their ranges, which finds where each range's records begin,
    is added only when some file is split.
    """

    def __init__(
        self,
        files: list[str],
        schema: InputSchema,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        input_format: str = "auto",
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        missing_nullable_columns: str = REFUSE,
        split_bytes: int = DEFAULT_SPLIT_BYTES,
        progress_dir: str | None = None,
    ):
        super().__init__()
        self._ranges = plan_ranges(files, split_bytes)
        self._reader = ReadFiles(
            schema, block_bytes, input_format, max_record_bytes, missing_nullable_columns, progress_dir
        )

    def expand(self, pbegin):
        ranges = pbegin | "ListFiles" >> beam.Create(self._ranges) | "SpreadFiles" >> beam.Reshuffle()
        if all(part.whole for part in self._ranges):
            return ranges | "ParseFiles" >> beam.ParDo(self._reader).with_outputs(REJECTED, COUNTS, main="batches")
        found = (
            ranges
            | "SplitRanges" >> beam.Filter(lambda part: not part.whole)
            | "CountRanges" >> beam.ParDo(CountRange())
            | "GroupRanges" >> beam.GroupByKey()
            | "FindCuts" >> beam.MapTuple(lambda path, counted: (path, cuts(counted)))
        )
        return ranges | "ParseFiles" >> beam.ParDo(self._reader, beam.pvalue.AsDict(found)).with_outputs(
            REJECTED, COUNTS, main="batches"
        )
