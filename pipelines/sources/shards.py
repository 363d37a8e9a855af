"""Large files read in parallel: shards, byte ranges of a file that begin and end where records do.

The unit of parallelism is otherwise a file, and a night delivered as one 50 GB file would be read by
one worker while the others wait. A file larger than `--split_bytes` is cut at every multiple of it;
each cut moves forward to the first record boundary after it, and each shard is read by whichever
worker gets it, from its boundary to the next one (so it ends with the record that crosses its end).

For CSV a newline ends a record only outside quotes (a quoted field may hold newlines), and whether a
byte is inside quotes depends on every quote before it in the file. So reading is done in two passes
over the shards, both in parallel: the first counts each shard's quotes and newlines (numpy, at memory
speed), a prefix sum of those gives every cut its quote parity and line number, and the second reads
each shard from the first newline at even parity on or after its cut. Both sides of a cut compute the
same boundary from the same bytes, so every record is read exactly once, wherever the cuts fall. A file
whose records are damaged (a quote opened and never closed) can split differently from a whole read
(the sequential reader contains such a quote, the parity does not), but never loses or repeats a record.

Newline-delimited JSON cuts after any newline. Compressed files cannot be entered in the middle and
are read whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.sources.blocks import NEWLINE, QUOTE

MIN_SPLIT_BYTES = 1 << 10  # smaller shards cost more in seeks and boundary scans than they spread
SCAN_BYTES = 1 << 20  # read at a time while counting or looking for a boundary


@dataclass(frozen=True)
class Shard:
    """Shard `index` of the `count` a file is read in; a file read whole is shard 0 of 1."""

    path: str
    index: int = 0
    count: int = 1
    size: int = 0  # the file's bytes (0: not known, for a file handed to a reader by path alone)

    @property
    def whole(self) -> bool:
        return self.count == 1

    def cut(self, index: int) -> int:
        """Where cut `index` falls before it moves to a record boundary."""
        return min(index * (self.size // self.count + (self.size % self.count > 0)), self.size)

    @property
    def span(self) -> tuple[int, int]:
        return self.cut(self.index), self.cut(self.index + 1)


@dataclass(frozen=True)
class Cut:
    """What the first pass knows of a cut: the quote parity and the newlines in the file before it."""

    odd_quotes: bool
    newlines: int


def plan_shards(files: list[str], split_bytes: int) -> list[Shard]:
    """Each file as one shard, or as about size / split_bytes shards when it is larger than
    `split_bytes` and not compressed (0: never split)."""
    sizes = file_sizes(files)
    shards = []
    for path in files:
        size = sizes.get(path, 0)
        if not split_bytes or size <= split_bytes or compressed(path):
            shards.append(Shard(path, size=size))
            continue
        count = -(-size // split_bytes)
        shards.extend(Shard(path, i, count, size) for i in range(count))
    return shards


def file_sizes(files: list[str]) -> dict[str, int]:
    return {m.path: m.size_in_bytes for found in FileSystems.match(files) for m in found.metadata_list}


def total_bytes(files: list[str]) -> int:
    """The bytes of all the files, as the progress bar's whole."""
    return sum(file_sizes(files).values())


def compressed(path: str) -> bool:
    """Whether Beam decompresses the file as it reads it (by its suffix): such a file is read whole."""
    return CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED


def open_seekable(path: str):
    """The file's raw bytes, seekable (never decompressed: only uncompressed files are split)."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


class CountShard(beam.DoFn):
    """First pass: a split shard's quotes and newlines, between its cuts (not its boundaries)."""

    def process(self, part: Shard) -> Iterable[tuple[str, tuple[int, int, int]]]:
        start, stop = part.span
        quotes = newlines = 0
        with open_seekable(part.path) as stream:
            stream.seek(start)
            left = stop - start
            while left > 0:
                chunk = stream.read(min(SCAN_BYTES, left))
                if not chunk:
                    break
                left -= len(chunk)
                data = np.frombuffer(chunk, np.uint8)
                quotes += int(np.count_nonzero(data == QUOTE))
                newlines += int(np.count_nonzero(data == NEWLINE))
        yield part.path, (part.index, quotes, newlines)


def cuts(counted: Iterable[tuple[int, int, int]]) -> list[Cut]:
    """The prefix sums: cut i's parity and line, for every cut of one file (cut 0 is the file's start)."""
    ordered = sorted(counted)
    found, quotes, newlines = [], 0, 0
    for _, q, n in ordered:
        found.append(Cut(bool(quotes & 1), newlines))
        quotes, newlines = quotes + q, newlines + n
    return found


def boundary(stream, part: Shard, index: int, cuts: list[Cut], csv: bool) -> tuple[int, int]:
    """(position, line) of the record boundary for cut `index` of `part`'s file: the first position on or
    after the cut that follows a newline outside quotes (any newline for JSON); the file's end if none.
    `line` is the line number of the record starting there (not needed, and not known, at the end)."""
    if index == 0:
        return 0, 1
    if index >= part.count:
        return part.size, 0
    position, cut = part.cut(index), cuts[index]
    stream.seek(position - 1)
    odd = cut.odd_quotes  # parity of the quotes before `position - 1`'s byte is checked with it
    previous = stream.read(1)
    if previous == b"\n" and not odd:
        return position, cut.newlines + 1
    # The quotes before the cut include the byte before it, so parity is right from `position` on.
    newlines = cut.newlines
    while True:
        chunk = stream.read(SCAN_BYTES)
        if not chunk:
            return part.size, newlines + 1
        data = np.frombuffer(chunk, np.uint8)
        ends = np.flatnonzero(data == NEWLINE)
        if csv:
            quotes_before = np.cumsum(data == QUOTE)[ends] if len(ends) else ends  # quotes up to each newline
            even = np.flatnonzero(((quotes_before + odd) & 1) == 0)
            chosen = int(ends[even[0]]) if len(even) else None
        else:
            chosen = int(ends[0]) if len(ends) else None
        if chosen is not None:
            newlines += int(np.count_nonzero(data[:chosen] == NEWLINE)) + 1
            return position + chosen + 1, newlines + 1
        newlines += len(ends)
        if csv:
            odd = (odd + int(np.count_nonzero(data == QUOTE))) & 1
        position += len(chunk)


class Bounded:
    """A stream's bytes up to `size` of them: a shard's reader sees its shard end as the file's end."""

    def __init__(self, stream, size: int):
        self._stream = stream
        self._left = size

    def readinto(self, target) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(target)[: self._left]
        n = self._stream.readinto(view) if hasattr(self._stream, "readinto") else _read_into(self._stream, view)
        self._left -= n or 0
        return n or 0


def _read_into(stream, view: memoryview) -> int:
    chunk = stream.read(len(view))
    view[: len(chunk)] = chunk
    return len(chunk)
