"""Extract: a day's input files (CSV or newline-delimited JSON, local or gs://) into Arrow batches.

Files are matched once, up front, so a date with no input fails before anything is written; the
file list is reshuffled so that a runner with many workers reads files in parallel. Each file is
streamed in blocks (compressed files are decompressed on the fly, by extension): memory per worker
is bounded by the block size, not the file size, and no Python object is made per record on the
common path. Nothing is fatal to the run: malformed lines and empty files leave as rejected
records with a reason.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines.batches import COUNTS, CSV, FILE_ERROR, JSON, REJECTED, RawBatch, count_read, rejected_batch
from schemas import InputSchema

DEFAULT_BLOCK_BYTES = 8 << 20  # about 80,000 taxi records per batch
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".xz")
_FORMATS = {".csv": CSV, ".json": JSON, ".jsonl": JSON, ".ndjson": JSON}


class InputNotFoundError(FileNotFoundError):
    """No input files for the date: the run must stop before writing anything."""


def match_input(pattern: str, date: str, input_format: str = "auto") -> list[str]:
    """Expand `pattern` (with `{date}` substituted) to the files to read, or fail clearly.

    Each file's format is checked here too, so an unreadable kind of file stops the run before
    anything is read or written.
    """
    path = pattern.format(date=date)
    try:
        result = FileSystems.match([path])[0]
    except Exception as e:  # Beam raises BeamIOError for a missing directory or bucket
        raise InputNotFoundError(f"no input files for date {date}: {path} ({e})") from e
    files = sorted(m.path for m in result.metadata_list if not m.path.endswith("/"))
    if not files:
        raise InputNotFoundError(f"no input files for date {date}: nothing matches {path}")
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


class _ReadOnly(io.RawIOBase):
    """A Beam filesystem stream as a standard raw stream.

    pyarrow's readers check `closed` as a property; Beam's CompressedFile (every .gz/.bz2/...)
    defines it as a method, which pyarrow takes for "closed".
    """

    def __init__(self, stream):
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class ReadFiles(beam.DoFn):
    """One file in; raw batches out, plus rejected records and the file's record count (tagged)."""

    def __init__(self, schema: InputSchema, block_bytes: int = DEFAULT_BLOCK_BYTES, input_format: str = "auto"):
        self._schema = schema
        self._block_bytes = block_bytes
        self._format = input_format
        self._lines_rejected = Metrics.counter("extract", "malformed_records")
        self._files_rejected = Metrics.counter("extract", "files_rejected")

    def process(self, path: str) -> Iterator:
        fmt = file_format(path, self._format)
        records, file_error = 0, False
        for item in self._csv(path) if fmt == CSV else self._json(path):
            if isinstance(item, RawBatch):
                records += item.records.num_rows
                yield item
            elif isinstance(item, beam.pvalue.TaggedOutput):  # a file-level error
                file_error = True
                yield item
            else:  # a batch of malformed records: input records too, so counted
                records += item.num_rows
                self._lines_rejected.inc(item.num_rows)
                yield beam.pvalue.TaggedOutput(REJECTED, item)
        if records == 0 and not file_error:
            self._files_rejected.inc()
            yield beam.pvalue.TaggedOutput(
                REJECTED, rejected_batch(path, [None], ["empty file: no records"], kind=FILE_ERROR)
            )
        count_read(path, records)
        yield beam.pvalue.TaggedOutput(COUNTS, records)

    @staticmethod
    @contextlib.contextmanager
    def _open(path: str):
        with FileSystems.open(path) as beam_stream:
            yield io.BufferedReader(_ReadOnly(beam_stream), buffer_size=1 << 20)

    def _csv(self, path: str) -> Iterator:
        """Typed first: clean files (nearly all) parse straight into the schema's types. A value that
        does not fit its type stops that pass; the file is then read again as text from the record
        where it stopped, so validation can reject just the bad records."""
        reported: set[int] = set()  # line numbers of malformed lines already emitted
        emitted = 0
        try:
            for item in self._csv_pass(path, typed=True, skip=0, reported=reported):
                if isinstance(item, RawBatch):
                    emitted += item.records.num_rows
                yield item
            return
        except pa.ArrowInvalid:
            pass
        try:
            for item in self._csv_pass(path, typed=False, skip=emitted, reported=reported):
                if isinstance(item, RawBatch):
                    emitted += item.records.num_rows
                yield item
        except (pa.ArrowInvalid, OSError, EOFError) as e:
            # Not a bad value but a bad file (invalid UTF-8, a corrupt archive): keep what was read,
            # reject the rest of the file with the reason.
            yield self._unreadable(path, emitted, e)

    def _unreadable(self, path: str, records_read: int, error: Exception) -> beam.pvalue.TaggedOutput:
        self._files_rejected.inc()
        return beam.pvalue.TaggedOutput(
            REJECTED,
            rejected_batch(
                path,
                [None],
                [f"unreadable file after {records_read} records: {type(error).__name__}: {error}"],
                kind=FILE_ERROR,
            ),
        )

    def _csv_pass(self, path: str, typed: bool, skip: int, reported: set[int]) -> Iterator:
        malformed: list[tuple[int | None, str, str]] = []

        def on_invalid_row(row) -> str:
            if row.number not in reported:
                malformed.append(
                    (
                        row.number,
                        row.text,
                        f"malformed line: expected {row.expected_columns} fields, found {row.actual_columns}",
                    )
                )
            return "skip"

        def flush() -> pa.RecordBatch:
            reported.update(number for number, _, _ in malformed)
            return self._malformed(path, malformed)

        known = {c.name: c.type.arrow if typed else pa.string() for c in self._schema.columns}
        with self._open(path) as stream:
            reader = self._csv_reader(stream, known, on_invalid_row)
            if reader is not None and any(n not in known for n in reader.schema.names):
                # Columns the schema does not know are read as text, never guessed per block. The
                # first reader already parsed a block: forget its malformed lines, they come again.
                malformed.clear()
                known.update({n: pa.string() for n in reader.schema.names if n not in known})
                with self._open(path) as again:
                    yield from self._blocks(
                        path, self._csv_reader(again, known, on_invalid_row), skip, malformed, flush
                    )
                return
            yield from self._blocks(path, reader, skip, malformed, flush)

    def _csv_reader(self, stream, column_types: dict, on_invalid_row):
        try:
            return pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=self._block_bytes, use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
                convert_options=pacsv.ConvertOptions(
                    column_types=column_types, strings_can_be_null=True, null_values=[""]
                ),
            )
        except pa.ArrowInvalid as e:
            if "Empty CSV file" in str(e):
                return None
            raise

    @staticmethod
    def _blocks(path: str, reader, skip: int, malformed: list, flush) -> Iterator:
        if reader is None:
            return
        for batch in reader:
            if skip:  # records a previous pass already emitted
                dropped = min(skip, batch.num_rows)
                batch, skip = batch.slice(dropped), skip - dropped
            if batch.num_rows:
                yield RawBatch(path, batch, CSV)
            if malformed:
                yield flush()
        if malformed:
            yield flush()

    @staticmethod
    def _malformed(path: str, malformed: list) -> pa.RecordBatch:
        lines, texts, reasons = zip(*malformed, strict=True)
        malformed.clear()
        return rejected_batch(path, list(texts), list(reasons), list(lines))

    def _json(self, path: str) -> Iterator:
        """Newline-delimited JSON, a block of whole lines at a time.

        pyarrow parses a block in one go, typed by the schema. A column whose values come in another
        JSON type (numbers written as strings, say) is left to pyarrow to infer and to validation to
        type; a block pyarrow still refuses (a malformed line) is parsed line by line, so only the bad
        lines are lost.
        """
        typed = {c.name: pa.field(c.name, c.type.arrow) for c in self._schema.columns}
        carry, first_line = b"", 1
        with self._open(path) as stream:
            while True:
                try:
                    chunk = stream.read(self._block_bytes)
                except (OSError, EOFError) as e:
                    yield self._unreadable(path, first_line - 1, e)
                    return
                data = carry + chunk
                if not chunk:
                    carry, block = b"", data
                else:
                    cut = data.rfind(b"\n") + 1
                    carry, block = data[cut:], data[:cut]
                if block.strip():
                    yield from self._json_block(path, block, first_line, typed)
                first_line += block.count(b"\n")
                if not chunk:
                    return

    def _json_block(self, path: str, block: bytes, first_line: int, typed: dict) -> Iterator:
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
                yield from self._json_lines(path, block, first_line)
                return
            for batch in table.combine_chunks().to_batches():
                yield RawBatch(path, batch, JSON)
            return

    def _json_lines(self, path: str, block: bytes, first_line: int) -> Iterator:
        """The slow path for a block pyarrow refused: each line on its own, values kept as text."""
        rows, bad = [], []
        for number, line in enumerate(block.split(b"\n"), start=first_line):
            if not line.strip():
                continue
            text = line.decode("utf-8", errors="replace")
            try:
                record = json.loads(text)
            except ValueError as e:
                bad.append((number, text, f"malformed JSON: {e}"))
                continue
            if not isinstance(record, dict):
                bad.append((number, text, f"malformed JSON: a record must be an object, not {type(record).__name__}"))
                continue
            rows.append({k: _as_text(v) for k, v in record.items()})
        if rows:
            # The key column is always there, so a block of empty objects still has its rows.
            names = list(dict.fromkeys([self._schema.key.name] + [k for row in rows for k in row]))
            yield RawBatch(
                path,
                pa.RecordBatch.from_pydict({n: pa.array([row.get(n) for row in rows], pa.string()) for n in names}),
                JSON,
            )
        if bad:
            yield self._malformed(path, bad)


_CHANGED_TYPE = re.compile(r"Column\(/([^)/]+)\) changed from")


def _as_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)  # an object or array where a scalar belongs: validation rejects it


class ReadInputFiles(beam.PTransform):
    """Files -> raw batches; tagged outputs `rejected` (malformed records, empty files) and `counts`."""

    def __init__(
        self, files: list[str], schema: InputSchema, block_bytes: int = DEFAULT_BLOCK_BYTES, input_format: str = "auto"
    ):
        super().__init__()
        self._files = files
        self._reader = ReadFiles(schema, block_bytes, input_format)

    def expand(self, pbegin):
        return (
            pbegin
            | "ListFiles" >> beam.Create(self._files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ParseFiles" >> beam.ParDo(self._reader).with_outputs(REJECTED, COUNTS, main="batches")
        )
