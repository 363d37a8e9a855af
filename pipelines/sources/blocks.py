"""Where records begin and end in raw bytes, found without the parser: safe block edges and the independent count.

A file is read a block at a time, and a block must end where a record ends: a parser handed half a
record loses it, or the rest of the file. For CSV a record ends at a newline outside quotes (RFC 4180:
a field that opens with a quote runs to its closing quote, newlines and delimiters included), so the
quotes before each newline tell which newlines end records. On the common block, with no quote at
all, every newline ends a record and the count is a newline count; otherwise numpy places the quotes
of the whole block at once. The count made here is the file's independent record count, which the
parser's output (valid + rejected) must match. For newline-delimited JSON, every line is a record.

Damage must cost only the records it is in. A quote opened by mistake never closes, and read
literally it swallows the rest of the file into one record. So a record that spans lines has to parse
into exactly the header's number of fields; when it does not, its first line is taken as a record of
its own (the parser will reject it) and scanning starts again on the next line. A record still open
after `max_record_bytes` is cut the same way.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

Bytes = bytes | bytearray
NEWLINE, QUOTE, CR = 10, 34, 13
WINDOW = 4096  # newlines examined at a time when a block holds quotes
COUNT_SLICE = 1 << 16  # bytes compared at a time when counting newlines
BOM = b"\xef\xbb\xbf"
# Python's csv module refuses a field over 128 KiB by default. Every record that reaches a csv parser
# here (the independent count's check of a record spanning lines, the record-by-record fallback, a
# header) is already bounded by --max_record_bytes, so the field limit only has to stay out of the
# way: a 2 MB field is read as pyarrow reads it. Process-wide, as the csv module keeps it.
CSV_FIELD_LIMIT = (1 << 31) - 1  # the largest a C long holds on every platform
csv.field_size_limit(CSV_FIELD_LIMIT)


@dataclass(frozen=True)
class Records:
    """The whole records at the head of a buffer.

    `starts` and `ends` are the records' byte spans in the buffer (an end excludes its newline; blank
    lines are not records); both are None when the records were counted by their newlines alone (no
    quotes), which is the case that needs no array at all.
    """

    cut: int  # the records end here: the buffer's rest is the start of the next record
    count: int
    newlines: int  # newlines before `cut`, so that the next buffer knows its first line
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None
    line_offsets: np.ndarray | None = None  # each record's first line, counted from the buffer's first

    @property
    def simple(self) -> bool:
        return self.starts is None


def well_formed(record: Bytes, fields: int) -> bool:
    """One CSV record with exactly `fields` fields (what a record that spans lines must be)."""
    try:
        rows = list(csv.reader(io.StringIO(record.decode("utf-8", "replace"), newline=""), strict=True))
    except csv.Error:
        return False
    return len(rows) == 1 and len(rows[0]) == fields


def scan_csv(buffer: Bytes, size: int, fields: int, final: bool, force: bool = False) -> Records:
    """The whole records at the head of `buffer[:size]`, which starts where a record starts.

    `final`: the buffer ends the file, so its last record ends there too. `force`: the record left
    open at the end is too long to wait for; it is cut after its first line.

    A head with no quote at all (the common case) is counted by its newlines alone. Blank lines and
    lone carriage returns, which are rare, are not looked for there: the parser reads them differently
    (it skips the one and breaks lines at the other), and a block the parser counts differently is
    counted again by `exact`.
    """
    if not size:
        return Records(0, 0, 0)
    head_end = size if final else buffer.rfind(b"\n", 0, size) + 1
    if head_end and buffer.find(b'"', 0, head_end) < 0:
        newlines = count_newlines(buffer, head_end)
        count = newlines + (1 if final and buffer[head_end - 1] != NEWLINE else 0)
        if count or not force:
            return Records(head_end, count, newlines)
    return _scan_quoted(buffer, size, fields, final, force)


def count_newlines(buffer: Bytes, end: int) -> int:
    """Newlines in `buffer[:end]`, with numpy (three times `bytes.count`'s speed) a slice at a time: one
    temporary the size of a block would make the C allocator hand out later large blocks (the pickled
    batches of a local run among them) as fresh pages, which costs more than the count."""
    arr = np.frombuffer(buffer, np.uint8, count=end)
    return sum(int(np.count_nonzero(arr[i : i + COUNT_SLICE] == NEWLINE)) for i in range(0, end, COUNT_SLICE))


def exact(buffer: Bytes, cut: int, fields: int) -> Records:
    """Every record of `buffer[:cut]` (whole records only) with its span and line, blank lines left out."""
    return _scan_quoted(buffer, cut, fields, final=True, force=False)


def _scan_quoted(buffer: Bytes, size: int, fields: int, final: bool, force: bool) -> Records:
    if not size:
        none = np.zeros(0, np.int64)
        return Records(0, 0, 0, none, none, none)
    arr = np.frombuffer(buffer, np.uint8, count=size)
    newlines = np.flatnonzero(arr == NEWLINE)
    real_newlines = len(newlines)
    if final and (not real_newlines or newlines[-1] != size - 1):
        newlines = np.append(newlines, size)  # the file's end ends its last record
    quotes = np.flatnonzero(arr == QUOTE)
    before = np.searchsorted(quotes, newlines)  # quotes before each newline
    boundaries: list[np.ndarray] = []
    n, start, base = len(newlines), 0, 0  # first newline not yet placed; quotes before the current record
    width = WINDOW
    while start < n:
        # Windows of newlines, so that resyncing after a broken record costs a window, not the block.
        stop = min(n, start + width)
        closing = np.flatnonzero(((before[start:stop] - base) & 1) == 0) + start
        if not len(closing) and stop < n:
            width *= 2  # one record spans the whole window: look further
            continue
        width = WINDOW
        # A record spans lines where consecutive closing newlines are not adjacent.
        previous = np.concatenate(([start - 1], closing[:-1]))
        broken = _first_broken(buffer, newlines, previous, closing, fields)
        if broken is not None:
            boundaries.append(closing[:broken])
            cut_at = previous[broken] + 1  # the broken record's first line is a record of its own
        else:
            boundaries.append(closing)
            last = closing[-1] if len(closing) else start - 1
            if stop < n:
                start = last + 1
                continue
            if last == n - 1 or not (final or force):
                break
            cut_at = last + 1  # the record left open at the end must end now: after its first line
        boundaries.append(np.array([cut_at]))
        start, base = cut_at + 1, before[cut_at]
    closed = np.concatenate(boundaries) if boundaries else np.zeros(0, np.int64)
    return _records(arr, newlines, real_newlines, closed[closed < len(newlines)], size)


def _first_broken(buffer: Bytes, newlines: np.ndarray, previous: np.ndarray, closing: np.ndarray, fields: int):
    """The first record spanning lines (its closing newline not next to the previous one) that does not
    parse into `fields` fields; None if every one does."""
    for i in np.flatnonzero(closing - previous > 1):
        start = newlines[previous[i]] + 1 if previous[i] >= 0 else 0
        if not well_formed(buffer[start : newlines[closing[i]]], fields):
            return i
    return None


def _records(arr: np.ndarray, newlines: np.ndarray, real_newlines: int, closed: np.ndarray, size: int) -> Records:
    """The records ending at the `closed` newlines, blank lines left out."""
    ends = newlines[closed]
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else ends
    cut = int(min(ends[-1] + 1, size)) if len(ends) else 0
    lengths = ends - starts
    # A line holding nothing (or only the CR of a CRLF) is no record.
    blank = (lengths == 0) | ((lengths == 1) & (arr[np.minimum(starts, len(arr) - 1)] == CR))
    keep = ~blank
    line_offsets = np.searchsorted(newlines[:real_newlines], starts)
    return Records(
        cut,
        int(keep.sum()),
        int(np.searchsorted(newlines[:real_newlines], cut)),
        starts[keep],
        ends[keep],
        line_offsets[keep],
    )


def json_lines(block: Bytes, size: int, final: bool) -> tuple[int, int]:
    """(cut, lines): the whole lines at the head of `block[:size]` and how many, blank ones included."""
    cut = size if final else block.rfind(b"\n", 0, size) + 1
    lines = count_newlines(block, cut)
    if final and cut and block[cut - 1] != NEWLINE:
        lines += 1
    return cut, lines
