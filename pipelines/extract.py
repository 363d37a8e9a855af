"""Extract: a day's input files into raw (text) Arrow record batches.

Files are matched once, up front, so a date with no input fails before anything is written; the
file list is reshuffled so that a runner with many workers reads files in parallel. Each file is
streamed in blocks with pyarrow's CSV reader: memory per worker is bounded by the block size, not
by the file size, and no Python object is made per record. Lines of the wrong shape are not
fatal: they leave the reader as rejected records with their text and line number.
"""
from __future__ import annotations

from typing import Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.csv as pacsv
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines.batches import FILE_ERROR, RawBatch, rejected_batch
from schemas import InputSchema

REJECTED = "rejected"
COUNTS = "counts"
DEFAULT_BLOCK_BYTES = 8 << 20  # about 80,000 taxi records per batch


class InputNotFoundError(FileNotFoundError):
    """No input files for the date: the run must stop before writing anything."""


def match_input(pattern: str, date: str) -> list[str]:
    """Expand `pattern` (with `{date}` substituted) to the files to read, or fail clearly."""
    path = pattern.format(date=date)
    try:
        result = FileSystems.match([path])[0]
    except Exception as e:  # Beam raises BeamIOError for a missing directory
        raise InputNotFoundError(f"no input files for date {date}: {path} ({e})") from e
    files = sorted(m.path for m in result.metadata_list)
    if not files:
        raise InputNotFoundError(f"no input files for date {date}: nothing matches {path}")
    return files


class ReadCsvFile(beam.DoFn):
    """One CSV file in, raw batches out (plus rejected lines and the file's record count)."""

    def __init__(self, schema: InputSchema, block_bytes: int = DEFAULT_BLOCK_BYTES):
        self._schema = schema
        self._block_bytes = block_bytes
        self._records_read = Metrics.counter("extract", "records_read")
        self._lines_rejected = Metrics.counter("extract", "malformed_lines")
        self._files_rejected = Metrics.counter("extract", "files_rejected")

    def process(self, path: str) -> Iterator:
        malformed: list[tuple[int | None, str, str]] = []

        def on_invalid_row(row) -> str:
            malformed.append(
                (row.number, row.text,
                 f"malformed line: expected {row.expected_columns} fields, found {row.actual_columns}")
            )
            return "skip"

        records = 0
        with FileSystems.open(path) as stream:
            try:
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(block_size=self._block_bytes, use_threads=False),
                    parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
                    convert_options=pacsv.ConvertOptions(
                        # Everything is read as text; validation does the typing so that one bad
                        # value rejects one record, not the whole block.
                        column_types={name: pa.string() for name in self._schema.names},
                        include_columns=self._schema.names,
                        include_missing_columns=True,
                        strings_can_be_null=True,
                        null_values=[""],
                    ),
                )
            except pa.ArrowInvalid as e:
                if "Empty CSV file" not in str(e):
                    raise
                reader = None
            if reader is None:
                yield self._file_error(path, "empty file: no header and no records")
                yield beam.pvalue.TaggedOutput(COUNTS, 0)
                return
            for batch in reader:
                records += batch.num_rows
                if batch.num_rows:
                    yield RawBatch(path, batch)
                if malformed:
                    records += len(malformed)
                    yield self._malformed(path, malformed)
            if malformed:
                records += len(malformed)
                yield self._malformed(path, malformed)
        if records == 0:
            yield self._file_error(path, "empty file: a header but no records")
        self._records_read.inc(records)
        yield beam.pvalue.TaggedOutput(COUNTS, records)

    def _malformed(self, path: str, malformed: list) -> beam.pvalue.TaggedOutput:
        # A malformed line is an input record too: the caller counts it, so input = scored + rejected.
        lines, texts, reasons = zip(*malformed)
        malformed.clear()
        self._lines_rejected.inc(len(lines))
        return beam.pvalue.TaggedOutput(
            REJECTED, rejected_batch(path, list(texts), list(reasons), list(lines))
        )

    def _file_error(self, path: str, reason: str) -> beam.pvalue.TaggedOutput:
        self._files_rejected.inc()
        return beam.pvalue.TaggedOutput(REJECTED, rejected_batch(path, [None], [reason], kind=FILE_ERROR))


class ReadCsvBatches(beam.PTransform):
    """Files -> raw batches; tagged outputs `rejected` (malformed lines, empty files) and `counts`."""

    def __init__(self, files: list[str], schema: InputSchema, block_bytes: int = DEFAULT_BLOCK_BYTES):
        super().__init__()
        self._files = files
        self._schema = schema
        self._block_bytes = block_bytes

    def expand(self, pbegin):
        return (
            pbegin
            | "ListFiles" >> beam.Create(self._files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ParseCsv" >> beam.ParDo(ReadCsvFile(self._schema, self._block_bytes)).with_outputs(
                REJECTED, COUNTS, main="batches"
            )
        )
