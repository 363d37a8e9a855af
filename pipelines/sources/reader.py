"""What the CSV and JSON readers share: the file's bytes in one buffer, its running count, oversized
and undecodable records.

A reader is handed a file's `BlockBuffer` and yields raw batches and rejected records (as
`pipelines.batches.rejected_batch` lays them out), counting every record it meets in `counted`: the
file's independent count, which the run reconciles against. `pipelines/sources/file_source.py` picks
the reader by format and opens the file or shard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa

from pipelines.batches import CSV, JSON, rejected_batch
from pipelines.sources.contract import ReadSettings
from schemas import InputSchema

PREVIEW_BYTES = 1024  # of a record too large to keep, what raw_record shows

# What a rejection says when a file holds the other format than its name says.
LOOKS_LIKE_HINT = {
    CSV: "its first line is a CSV header of the schema's columns: the file holds CSV (pass --input_format csv or "
    "name it .csv)",
    JSON: "its first line is a JSON object with the schema's columns: the file holds JSON lines (pass "
    "--input_format json or name it .json)",
}


class Unreadable(Exception):
    """The file's bytes could not be read any further."""


class BlockBuffer:
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
            raise Unreadable(f"{type(e).__name__}: {e}") from e
        self.size += n or 0
        self.last = not n
        if n and self._on_read is not None:
            self._on_read(n)
        if self.last and not stream_complete(self._stream):
            raise Unreadable("the compressed stream ends before its end-of-stream marker: the file is truncated")

    def drop(self, n: int) -> None:
        """Forget the first `n` bytes: the rest moves to the front."""
        self.data[: self.size - n] = memoryview(self.data)[n : self.size]
        self.size -= n

    def find(self, byte: bytes, start: int = 0) -> int:
        return self.data.find(byte, start, self.size)


def stream_complete(stream) -> bool:
    """Whether a compressed file was read to its end-of-stream marker.

    Beam's CompressedFile (apache-beam 2.77) takes the end of a truncated gzip, bzip2, xz or zstd file
    for the end of the data, so a file cut short would silently lose its tail; its decompressor knows
    better (a file of no bytes at all named .gz is no gzip file either). Uncompressed streams have no
    such marker.
    """
    decompressor = getattr(stream, "_decompressor", None)
    return decompressor is None or getattr(decompressor, "eof", True)


class FileReader:
    """What both formats share: the file's running count and line, and oversized records."""

    def __init__(self, path: str, schema: InputSchema, settings: ReadSettings):
        self.path = path
        self.schema = schema
        self.settings = settings
        self.max_record_bytes = settings.record_limit
        self.counted = 0  # records found by the independent count
        self.line = 1  # line number of the buffer's first byte

    def read(self, blocks: BlockBuffer) -> Iterator:
        """Raw batches and rejected records, to the file's (or shard's) end."""
        raise NotImplementedError

    def too_large(self, blocks: BlockBuffer) -> pa.RecordBatch:
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


def is_utf8(block: bytes) -> bool:
    try:
        block.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
