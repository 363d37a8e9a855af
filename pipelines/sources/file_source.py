"""Files, local or gs:// (CSV or newline-delimited JSON, compressed by extension), as a source.

Files are matched once, up front, so a date with no input fails before anything is written; the
file list is reshuffled so that a runner with many workers reads files in parallel. Each file is
streamed in blocks (compressed files are decompressed on the fly): memory per worker is bounded by the
block size (or by --max_record_bytes, for a record longer than a block), not the file size, and no
Python object is made per record on the common path. A file larger than --split_bytes is read as
shards by different workers (`shards.py`).

Nothing is fatal to the run and nothing is lost: every record leaves as part of a raw batch or as a
rejection with a reason code, and each file's record count comes from `blocks.py`, counted apart from
the parser (`csv_reader.py`, `json_reader.py`), for the run to reconcile against.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from functools import partial

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines import metrics, progress
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
    returning_memory_pool,
)
from pipelines.choices import InputFormat
from pipelines.observe import timed
from pipelines.sources.contract import InputNotFoundError, NightInput, Read, ReadSettings, Source, SourceConfigError
from pipelines.sources.csv_reader import CsvReader
from pipelines.sources.json_reader import JsonReader
from pipelines.sources.reader import BlockBuffer, FileReader, Unreadable
from pipelines.sources.shards import (
    Bounded,
    CountShard,
    Cut,
    Shard,
    boundary,
    compressed,
    cuts,
    open_seekable,
    plan_shards,
    total_bytes,
)
from schemas import InputSchema

HEADER_BLOCK_BYTES = 1 << 16  # read at a time for the header of a shard that starts after it
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".zstd", ".xz", ".lzma")  # Beam's, by file name
_FORMATS = {".csv": CSV, ".json": JSON, ".jsonl": JSON, ".ndjson": JSON}
READERS: dict[str, type[FileReader]] = {CSV: CsvReader, JSON: JsonReader}


def match_input(pattern: str, date: str, input_format: str = InputFormat.AUTO) -> list[str]:
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


def file_format(path: str, requested: str = InputFormat.AUTO) -> str:
    """csv or json: as requested, else from the file name (compression suffix ignored)."""
    if requested != InputFormat.AUTO:
        return str(requested)
    name = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for suffix, fmt in _FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise SourceConfigError(f"cannot tell the format of {path} from its name; pass --input_format csv or json")


@dataclass(frozen=True)
class FileNight(NightInput):
    """A night's files."""

    day: date | None
    files: tuple[str, ...]

    def names(self) -> list[str]:
        return list(self.files)

    def recorded(self) -> dict[str, int]:
        return {"files": len(self.files)}


class FileSource(Source):
    """Files matched by a pattern; `{date}` in it selects each night's."""

    @staticmethod
    def claims(location: str) -> bool:
        return True  # whatever no other source claims is a file pattern

    @property
    def dated(self) -> bool:
        return "{date}" in self.location

    def plan_night(self, day: date | None) -> FileNight:
        files = match_input(self.location, day.isoformat() if day else "", self.settings.input_format)
        return FileNight(day, tuple(files))

    def distinct(self, nights: list[NightInput]) -> list[NightInput]:
        seen: dict[str, date | None] = {}
        for night in nights:
            for path in night.names():
                if path in seen:
                    raise SourceConfigError(
                        f"{path} matches the input of both {seen[path]} and {night.day}: a file is one night's"
                    )
                seen[path] = night.day
        return nights

    def read(self, nights: Sequence[NightInput], progress_dir: str | None = None) -> beam.PTransform:
        """One read over every night's files: the night of a record is its file's."""
        files = [path for night in nights for path in night.names()]
        return ReadInputFiles(files, self.schema, self.settings, progress_dir)

    def total_bytes(self, nights: Sequence[NightInput]) -> int | None:
        return total_bytes([path for night in nights for path in night.names()])


class ReadFiles(beam.DoFn):
    """One file (or shard) in; raw batches out, plus rejected records and the file's independent count
    (tagged).

    Whatever a file holds, every record it has leaves as part of a raw batch or as a rejection, and
    the count that the run reconciles against comes from `blocks.py`, not from the parser.
    """

    def __init__(self, schema: InputSchema, settings: ReadSettings | None = None, progress_dir: str | None = None):
        self._schema = schema
        self._settings = settings or ReadSettings()
        self._progress = progress_dir  # where this machine's progress bar reads bytes read (None: no bar)
        self._lines_rejected = metrics.MALFORMED_RECORDS.counter()
        self._files_rejected = metrics.FILES_REJECTED.counter()
        self._time = metrics.step_timer("extract")
        self._shards = metrics.INPUT_SHARDS.counter()

    def setup(self) -> None:
        returning_memory_pool()

    def process(self, part: str | Shard, cuts: dict[str, list[Cut]] | None = None) -> Iterator:
        """A file (its path), or one shard of a split file with the first pass's cuts of every split file."""
        part = part if isinstance(part, Shard) else Shard(part)
        self._shards.inc()
        return timed(self._time, self._read(part, (cuts or {}).get(part.path, [])))

    def _read(self, part: Shard, cuts: list[Cut]) -> Iterator:
        path = part.path
        reader = READERS[file_format(path, self._settings.input_format)](path, self._schema, self._settings)
        file_rejected = False
        tally = progress.Tally.of(self._progress) if self._progress else None
        on_read = partial(tally.add, "bytes") if tally and not compressed(path) else None
        try:
            with self._open(part, cuts, reader) as stream:
                for item in reader.read(BlockBuffer(stream, self._settings.block_bytes, on_read)):
                    if isinstance(item, RawBatch):
                        yield item
                        continue
                    if item.column("error_kind")[0].as_py() == FILE_ERROR:
                        file_rejected = True
                        self._files_rejected.inc()
                    else:
                        self._lines_rejected.inc(item.num_rows)
                    yield beam.pvalue.TaggedOutput(REJECTED, item)
        except Unreadable as e:
            # The records before the damage were read and counted; how many follow it cannot be known.
            file_rejected = True
            self._files_rejected.inc()
            yield beam.pvalue.TaggedOutput(
                REJECTED,
                file_error(path, INCOMPLETE_FILE, 0, f"after {reader.counted} records: {e}"),
            )
        if reader.counted == 0 and not file_rejected and part.whole:  # a shard may hold no record: a file may not
            self._files_rejected.inc()
            yield beam.pvalue.TaggedOutput(REJECTED, file_error(path, "empty_file", 0, "no records"))
        count_read(path, reader.counted)
        if tally:  # a compressed file's bytes are known only as the file's size, once it is read
            tally.add("bytes", part.size if compressed(path) else 0, flush=True)
        yield beam.pvalue.TaggedOutput(COUNTS, (path, reader.counted))

    @contextmanager
    def _open(self, part: Shard, cuts: list[Cut], reader: FileReader) -> Iterator:
        """The file's bytes, or a shard's: from its first record boundary to the next shard's. A CSV
        shard after the first takes its header from the file's start."""
        if part.whole:
            with FileSystems.open(part.path) as stream:
                yield stream
            return
        csv_file = isinstance(reader, CsvReader)
        if csv_file and part.index:
            with open_seekable(part.path) as stream:
                reader.read_header(BlockBuffer(stream, min(self._settings.block_bytes, HEADER_BLOCK_BYTES)))
        with open_seekable(part.path) as stream:
            start, line = boundary(stream, part, part.index, cuts, csv_file)
            stop, _ = boundary(stream, part, part.index + 1, cuts, csv_file)
            stream.seek(start)
            if part.index:
                reader.line = line
            yield Bounded(stream, stop - start)


class ReadInputFiles(beam.PTransform):
    """Files -> a `Read`: raw batches; rejected records and files; (file, records) per file or shard (a
    file's count is their sum).

    Files larger than `split_bytes` (0: none) are read as shards by different workers (`shards.py`): the
    first pass over their shards, which finds where each shard's records begin, is added only when some
    file is split.
    """

    def __init__(
        self,
        files: list[str],
        schema: InputSchema,
        settings: ReadSettings | None = None,
        progress_dir: str | None = None,
    ):
        super().__init__()
        settings = settings or ReadSettings()
        self._shards = plan_shards(files, settings.split_bytes)
        self._reader = ReadFiles(schema, settings, progress_dir)

    def expand(self, pbegin) -> Read:
        shards = pbegin | "ListFiles" >> beam.Create(self._shards) | "SpreadFiles" >> beam.Reshuffle()
        if all(part.whole for part in self._shards):
            read = shards | "ParseFiles" >> beam.ParDo(self._reader).with_outputs(REJECTED, COUNTS, main="batches")
            return Read(read.batches, read[REJECTED], read[COUNTS])
        found = (
            shards
            | "SplitShards" >> beam.Filter(lambda part: not part.whole)
            | "CountShards" >> beam.ParDo(CountShard())
            | "GroupShards" >> beam.GroupByKey()
            | "FindCuts" >> beam.MapTuple(lambda path, counted: (path, cuts(counted)))
        )
        read = shards | "ParseFiles" >> beam.ParDo(self._reader, beam.pvalue.AsDict(found)).with_outputs(
            REJECTED, COUNTS, main="batches"
        )
        return Read(read.batches, read[REJECTED], read[COUNTS])
