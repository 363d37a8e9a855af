"""Where records end in raw bytes (`pipelines/sources/blocks.py`), tested directly on known buffers.

`scan_csv` decides where each block a file is read in ends, and its count is the file's independent
record count, which the parser's output must reconcile with: a block cut inside a record loses or
splits it, and a wrong count fails the night. So every case here states the exact `Records`: where
the cut falls, how many records, how many newlines, and (where quotes made it look) each record's span
and first line. The last test is a property: records of random fields written by Python's csv module,
cut at random, are never cut inside and counted as csv.reader reads them.

The readers built on these functions are tested through files in `tests/test_extract_validate.py`,
`tests/test_damage.py` and `tests/test_shards.py`.
"""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.batches import RawBatch
from pipelines.sources import ReadSettings
from pipelines.sources.blocks import BOM, COUNT_SLICE, Records, count_newlines, exact, json_lines, scan_csv
from pipelines.sources.csv_reader import CsvReader
from pipelines.sources.reader import BlockBuffer
from schemas.taxi import TRIPS
from tests.conftest import write_partition


def spans(records: Records) -> tuple:
    """A `Records` as plain values, to compare exactly: (cut, count, newlines, simple, starts, ends, lines)."""

    def listed(values):
        return None if values is None else [int(v) for v in values]

    return (
        records.cut,
        records.count,
        records.newlines,
        records.simple,
        listed(records.starts),
        listed(records.ends),
        listed(records.line_offsets),
    )


def scan(data: bytes, fields: int, final: bool, force: bool = False) -> tuple:
    return spans(scan_csv(bytearray(data), len(data), fields, final, force))


# ---------------------------------------------------------------- no quotes: counted by newlines alone


def test_records_without_quotes_are_counted_by_their_newlines():
    assert scan(b"a,b\nc,d\ne,f\n", 2, final=False) == (12, 3, 3, True, None, None, None)
    assert scan(b"a,b\nc,d\ne,f\n", 2, final=True) == (12, 3, 3, True, None, None, None)


def test_a_block_ends_after_its_last_whole_record():
    # The partial record after the last newline waits for the next block.
    assert scan(b"a,b\nc,d\ne,", 2, final=False) == (8, 2, 2, True, None, None, None)


def test_the_final_block_ends_its_last_record_without_a_newline():
    assert scan(b"a,b\nc,d\ne,f", 2, final=True) == (11, 3, 2, True, None, None, None)
    assert scan(b"e,f", 2, final=True) == (3, 1, 0, True, None, None, None)


def test_an_empty_buffer_and_a_block_without_a_whole_record():
    assert scan(b"", 2, final=False) == (0, 0, 0, True, None, None, None)
    assert scan(b"", 2, final=True) == (0, 0, 0, True, None, None, None)
    # No newline yet: no record ends in the block, whatever the parser would make of it.
    cut, count, newlines, *_ = scan(b"a,b", 2, final=False)
    assert (cut, count, newlines) == (0, 0, 0)


def test_crlf_records_without_quotes():
    assert scan(b"a,b\r\nc,d\r\n", 2, final=False) == (10, 2, 2, True, None, None, None)
    assert scan(b"a,b\r\nc,d\r", 2, final=False) == (5, 1, 1, True, None, None, None)


def test_blank_lines_are_newlines_to_the_fast_count_and_no_records_to_the_exact_one():
    """The fast path counts newlines; a block with a blank line, which the parser skips, is counted again
    by `exact` (the reader does so when the two disagree)."""
    data = bytearray(b"a,b\n\nc,d\n")
    assert spans(scan_csv(data, len(data), 2, final=False)) == (9, 3, 3, True, None, None, None)
    assert spans(exact(data, len(data), 2)) == (9, 2, 3, False, [0, 5], [3, 8], [0, 2])
    crlf = bytearray(b"a,b\r\n\r\nc,d\r\n")  # a line holding only the CR of a CRLF is blank too
    assert spans(exact(crlf, len(crlf), 2)) == (12, 2, 3, False, [0, 7], [4, 11], [0, 2])


def test_count_newlines_across_slices():
    data = bytearray((b"x" * 6 + b"\n") * (COUNT_SLICE // 3))  # several of count_newlines' slices
    assert len(data) > 2 * COUNT_SLICE
    assert count_newlines(data, len(data)) == COUNT_SLICE // 3
    assert count_newlines(data, 7) == 1 and count_newlines(data, 6) == 0
    assert count_newlines(data, COUNT_SLICE + 1) == bytes(data[: COUNT_SLICE + 1]).count(b"\n")


# ---------------------------------------------------------------- quotes: spans placed record by record


@pytest.mark.parametrize(
    "data, force, expected",
    [
        # Records [0, 7) and [8, 11); the second starts on line 2 (the first spans lines 0 and 1).
        (b'a,"x\ny"\nc,d\n', False, (12, 2, 3, False, [0, 8], [7, 11], [0, 2])),
        (b'a,"say ""hi"", then go"\n"x,y",d\n', False, (32, 2, 2, False, [0, 24], [23, 31], [0, 1])),
        # A quoted newline at the block's end waits for the rest of its record.
        (b'a,b\nc,"x\ny', False, (4, 1, 1, False, [0], [3], [0])),
        # A record still open past --max_record_bytes: its first line becomes a record (the parser
        # rejects it), and reading starts again on the next line.
        (b'a,b\nc,"x\ny', True, (9, 2, 2, False, [0, 4], [3, 8], [0, 1])),
        (b'"a",b\r\n"c\r\nd",e\r\n', False, (17, 2, 3, False, [0, 7], [6, 16], [0, 1])),
    ],
    ids=["newline-in-quotes", "doubled-quotes-and-commas", "open-at-block-end", "forced-cut", "crlf"],
)
def test_quoted_records_are_placed_whole(data, force, expected):
    assert scan(data, 2, final=False, force=force) == expected


def test_doubled_quotes_and_commas_read_as_the_csv_module_reads_them():
    data = b'a,"say ""hi"", then go"\n"x,y",d\n'
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert rows == [["a", 'say "hi", then go'], ["x,y", "d"]]


def test_the_final_block_without_a_newline_ends_a_quoted_record():
    data = b'a,"x\ny"\nc,"d"'
    assert scan(data, 2, final=True) == (13, 2, 2, False, [0, 8], [7, 13], [0, 2])
    assert scan(data, 2, final=False) == (8, 1, 2, False, [0], [7], [0])


def test_a_stray_quote_costs_only_its_own_line():
    """A quote opened by mistake never closes; read literally it would swallow the rest of the block."""
    data = b'a,"b\nc,d\ne,f\n'
    assert scan(data, 2, final=True) == (13, 3, 3, False, [0, 5, 9], [4, 8, 12], [0, 1, 2])
    # Spanning lines, a record must parse into the header's number of fields: 'a,"b\nc,d"' is two
    # fields, one record where the header has two, three lines' worth of damage where it has three.
    closed = b'a,"b\nc,d"\ne,f\n'
    assert scan(closed, 2, final=True) == (14, 2, 3, False, [0, 10], [9, 13], [0, 2])
    assert scan(closed, 3, final=True) == (14, 3, 3, False, [0, 5, 10], [4, 9, 13], [0, 1, 2])


# ---------------------------------------------------------------- the header and newline-delimited JSON


def test_a_header_with_or_without_a_bom_is_read_the_same(tmp_path):
    """The reader drops a UTF-8 BOM before the header; without one the header is the first line as is."""
    [path] = write_partition(tmp_path, "2026-11-23", 25)
    plain = open(path, "rb").read()
    assert not plain.startswith(BOM)
    schema = TRIPS.for_scoring()
    read = {}
    for name, data in (("plain", plain), ("bom", BOM + plain)):
        reader = CsvReader(name, schema, ReadSettings(block_bytes=1 << 12))
        batches = list(reader.read(BlockBuffer(io.BytesIO(data), 1 << 12)))
        rows = sum(b.records.num_rows for b in batches if isinstance(b, RawBatch))
        read[name] = (reader.header, reader.counted, rows, reader.refusal)
    header = plain.split(b"\n", 1)[0].decode().split(",")
    assert read["plain"] == read["bom"] == (header, 25, 25, None)


def test_json_lines_counts_blank_lines_and_cuts_after_the_last_newline():
    data = bytearray(b'{"a": 1}\n\n{"a": 2}\n{"a"')
    assert json_lines(data, len(data), final=False) == (19, 3)
    assert json_lines(data, len(data), final=True) == (23, 4)
    whole = bytearray(b'{"a": 1}\n\n')
    assert json_lines(whole, len(whole), final=True) == (10, 2)
    assert json_lines(bytearray(b'{"a"'), 4, final=False) == (0, 0)
    assert json_lines(bytearray(), 0, final=True) == (0, 0)


# ---------------------------------------------------------------- the property: never inside a record

# Pieces of fields. A carriage return comes only where the writer quotes it (beside a quote or a
# newline): csv.writer leaves a lone CR unquoted when the line terminator is "\n", and a lone CR outside
# quotes is a line break to csv.reader and pyarrow but not to the independent count, which the reader
# settles by counting such a block again with `exact` (see scan_csv).
PIECES = ["a", "b", " ", "é", ",", '"', "\n", "\r\n", '"\r']
FIELD = st.lists(st.sampled_from(PIECES), max_size=4).map("".join)


@st.composite
def csv_file(draw) -> tuple[bytes, list[int], int]:
    """(bytes, each record's end offset, fields): records written by Python's csv module."""
    fields = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(FIELD, min_size=fields, max_size=fields), min_size=1, max_size=25))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    data, ends = b"", []
    for row in rows:
        out = io.StringIO()
        csv.writer(out, lineterminator=terminator).writerow(row)
        data += out.getvalue().encode()
        ends.append(len(data))
    return data, ends, fields


@settings(max_examples=200, deadline=None)
@given(written=csv_file(), data=st.data())
def test_a_random_cut_never_falls_inside_a_record(written, data):
    content, ends, fields = written
    cut_at = data.draw(st.integers(0, len(content)), label="cut")
    prefix = bytearray(content[:cut_at])
    records = scan_csv(prefix, len(prefix), fields, final=False)
    # The block ends exactly after the last record that ends within it.
    whole = [end for end in ends if end <= cut_at]
    assert records.cut == (whole[-1] if whole else 0)
    assert records.count == len(whole)
    assert records.count == len(list(csv.reader(io.StringIO(prefix[: records.cut].decode(), newline=""))))
    assert records.newlines == prefix[: records.cut].count(b"\n")
    if not records.simple:
        starts = [0, *whole][: len(whole)]
        assert [int(s) for s in records.starts] == starts
        assert [int(e) for e in records.ends] == [end - 1 for end in whole]  # each end before its newline
        assert [int(n) for n in records.line_offsets] == [content[:s].count(b"\n") for s in starts]
    # The same file read to its end counts every record; so does a walk in blocks of any size.
    assert scan_csv(bytearray(content), len(content), fields, final=True).count == len(ends)
    block = data.draw(st.integers(1, max(1, len(content))), label="block")
    assert _walk(content, fields, block) == len(ends)


def _walk(content: bytes, fields: int, block: int) -> int:
    """Records counted block by block, as a reader does: a block too short for a record grows."""
    position, size, counted = 0, block, 0
    while position < len(content):
        end = min(len(content), position + size)
        buffer = bytearray(content[position:end])
        records = scan_csv(buffer, len(buffer), fields, final=end == len(content))
        if not records.cut:
            size += block
            continue
        counted += records.count
        position += records.cut
        size = block
    return counted
