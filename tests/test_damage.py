"""Damaged files lose nothing: property tests over generated taxi files, damaged at random places.

Each example writes a file of real sample records (some with quoted commas, quotes and newlines in
`company`), damages some of them (bytes that are not UTF-8, quotes opened and never closed, stray
delimiters and newlines, fields far longer than a block, truncation), may add a BOM, CRLF line ends
and compression, and reads it with a random block size. Whatever happens:

- the file's independent count = records valid + records rejected (nothing lost, nothing doubled);
- every undamaged record is valid exactly once, with the values and the probability it has when
  its clean values are scored directly.

The same holds beside fields of 100 KB to 2 MB (valid, within `--max_record_bytes`, longer than most
blocks): a damaged neighbour costs only itself, never the large record. And a compressed delivery cut
at any offset runs end to end through the scorer into a warehouse that holds a good night: unless the
test's own decompressor finds the stream whole, the night is refused by the `complete_input` gate
(exit 3, naming the file), the good night stays exactly as it was, and only `--accept_gate_failures`
publishes what was read.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import itertools
import json
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from models.handler import ExportedModelHandler
from pipelines import score
from pipelines.batches import RawBatch
from pipelines.defaults import MIN_RECORDS, SHRINK_LIMIT
from pipelines.sources import ReadSettings
from pipelines.sources.file_source import ReadFiles
from pipelines.validate import SchemaValidator
from schemas.taxi import TRIPS
from schemas.taxi import USE_CASE as TAXI
from tests.conftest import SAMPLE, query, write_partition
from tests.float32 import assert_close_probabilities

SCHEMA = TRIPS.for_scoring()
NAMES = SCHEMA.names
POOL_SIZE = 200
# Clean values of `company` that need quoting; none starts with a quote's neighbour (a delimiter or a
# newline), which is what keeps a stray quote from pairing into a well-formed record by chance.
COMPANIES = ["Flash Cab", "Blue Ribbon, Inc.", 'The "Best" Cab', "Line one\nLine two", "Cab\r\nCRLF inside"]
DAMAGES = ["invalid_byte", "open_quote", "stray_delimiter", "stray_newline", "too_large"]
# Bounded so the suite stays fast; DAMAGE_EXAMPLES=2000 for a deeper search.
EXAMPLES = int(os.environ.get("DAMAGE_EXAMPLES", "60"))
# Files with fields of 100 KB to 2 MB cost about a second each: DAMAGE_LARGE_EXAMPLES=100 goes deeper.
LARGE_EXAMPLES = int(os.environ.get("DAMAGE_LARGE_EXAMPLES", "8"))
LARGE_FIELD = (100_000, 2_000_000)
LARGE_MAX_RECORD_BYTES = 4 << 20  # above the largest record (a 2 MB field, its quotes doubled)
# What a large field is made of, repeated. Each piece starts with a letter and ends with a space, so no
# quote in it ever touches a delimiter or a newline (the rule COMPANIES keeps, for the same reason).
LARGE_PIECES = ["x", "big cab ", "a, b ", 'the "best" ', "line\nnext ", "crlf\r\nnext "]
# Each cut delivery is scored end to end (seconds a run): DAMAGE_CUT_EXAMPLES=25 goes deeper.
CUT_EXAMPLES = int(os.environ.get("DAMAGE_CUT_EXAMPLES", "2"))
CUT_ROWS = 3000  # about 450 KB: several bzip2 blocks at the lower levels, so a cut keeps some of them
DAY = "2026-11-23"


@pytest.fixture(scope="module")
def pool() -> list[dict]:
    """Sample records as text, each with a trip_id, all valid."""
    table = pacsv.read_csv(
        SAMPLE,
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in NAMES}, strings_can_be_null=True),
    )
    rows = table.slice(0, POOL_SIZE).to_pylist()
    return [{name: row.get(name) or "" for name in NAMES} for row in rows]


@pytest.fixture(scope="module")
def model(trained):
    return ExportedModelHandler(trained.version, TAXI).load_model()


def _encode(record: dict) -> bytes:
    out = io.StringIO()
    # The terminator's characters are what the writer quotes a field for, so keep them and strip them.
    csv.writer(out, lineterminator="\r\n").writerow([record[n] for n in NAMES])
    return out.getvalue().removesuffix("\r\n").encode()


@st.composite
def large_fields(draw) -> str:
    """A valid `company` of 100 KB to 2 MB: quoted commas, quotes, newlines and CRLFs in it, or none."""
    size = draw(st.integers(*LARGE_FIELD))
    pieces = "".join(draw(st.lists(st.sampled_from(LARGE_PIECES), min_size=1, max_size=3)))
    return "Cab " + (pieces * (size // len(pieces) + 1))[: size - 8] + " end"


@st.composite
def damaged_files(draw, large: bool = False):
    """A file's plan. `large`: fewer records, one or two of them with a field of 100 KB to 2 MB, each
    with a neighbour damaged (most often by a byte that is not UTF-8), read within 4 MiB records."""
    n = draw(st.integers(3, 12) if large else st.integers(5, 60))
    if large:
        block_bytes = draw(st.sampled_from([1024, 65536, 1 << 20]))
        max_record_bytes = LARGE_MAX_RECORD_BYTES
    else:
        block_bytes = draw(st.sampled_from([1024, 1500, 2048, 4096, 65536]))
        max_record_bytes = block_bytes * draw(st.integers(1, 3))
    # (index, sample record, company variant: len(COMPANIES) keeps the sample's own)
    records = [(i, draw(st.integers(0, POOL_SIZE - 1)), draw(st.integers(0, len(COMPANIES)))) for i in range(n)]
    # Where in a record damage lands (modulo its length): anywhere in a large one too.
    where = st.integers(0, 1 << 22) if large else st.integers(0, 10_000)
    damage = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(DAMAGES), where), max_size=6))
    fields = {}
    if large:
        for index in draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2, unique=True)):
            fields[index] = draw(large_fields())
            neighbour = draw(st.sampled_from([i for i in (index - 1, index + 1) if 0 <= i < n]))
            kind = draw(st.one_of(st.just("invalid_byte"), st.sampled_from(DAMAGES)))
            damage.append((neighbour, kind, draw(where)))
    truncate = draw(st.one_of(st.none(), st.floats(0.05, 1.0)))
    return {
        "records": records,
        "large": fields,
        "damage": damage,
        "block_bytes": block_bytes,
        "max_record_bytes": max_record_bytes,
        "crlf": draw(st.booleans()),
        "bom": draw(st.booleans()),
        "compression": draw(st.sampled_from(["", ".gz", ".bz2"])),
        "truncate": truncate,
    }


def _build(spec: dict, pool: list[dict]) -> tuple[bytes, dict[str, dict], set[str]]:
    """The file's bytes, the clean record of every key, and the keys of records that are damaged."""
    clean, lines = {}, []
    for i, source, company in spec["records"]:
        record = dict(pool[source], trip_id=f"r{i}")
        if company < len(COMPANIES):
            record["company"] = COMPANIES[company]
        if i in spec["large"]:
            record["company"] = spec["large"][i]
        clean[record["trip_id"]] = record
        lines.append(bytearray(_encode(record)))
    damaged = set()
    for index, kind, where in spec["damage"]:
        line, key = lines[index], f"r{index}"
        at = where % (len(line) + 1)
        if kind == "invalid_byte":
            line[at:at] = b"\xff"
        elif kind == "open_quote":
            commas = [0] + [j + 1 for j, b in enumerate(line) if b == ord(",")]
            at = commas[where % len(commas)]
            line[at:at] = b'"'
        elif kind == "stray_delimiter":
            line[at:at] = b","
        elif kind == "stray_newline":
            line[at:at] = b"\n"
        elif kind == "too_large":
            line[at:at] = b"x" * (spec["max_record_bytes"] + 10)
        damaged.add(key)
    terminator = b"\r\n" if spec["crlf"] else b"\n"
    header = ",".join(NAMES).encode()
    data = (b"\xef\xbb\xbf" if spec["bom"] else b"") + header + terminator
    starts = []
    for line in lines:
        starts.append(len(data))
        data += bytes(line) + terminator
    if spec["truncate"] is not None:
        cut = max(len(header) + len(terminator), int(len(data) * spec["truncate"]))
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(data)
            if start >= cut:
                clean.pop(f"r{i}", None)  # not in the file any more
            elif end > cut:
                damaged.add(f"r{i}")  # cut through
        data = data[:cut]
    return data, clean, damaged


def _read(path: str, spec: dict) -> tuple[int, pa.Table, int, list[str]]:
    """(independent count, valid records, records rejected, reasons)."""
    reader = ReadFiles(SCHEMA, ReadSettings(block_bytes=spec["block_bytes"], max_record_bytes=spec["max_record_bytes"]))
    validator = SchemaValidator(SCHEMA)
    valid, rejected, counts, reasons = [], 0, [], []
    for item in reader.process(path):
        if isinstance(item, RawBatch):
            ok, bad = validator.validate(item)
            valid.append(ok)
            if bad is not None:
                rejected += sum(bad.column("records").to_pylist())
                reasons += bad.column("reason").to_pylist()
        elif item.tag == "rejected":
            rejected += sum(item.value.column("records").to_pylist())
            reasons += item.value.column("reason").to_pylist()
        else:
            counts.append(item.value[1])
    [count] = counts
    table = pa.Table.from_batches(valid, schema=validator.arrow_schema) if valid else None
    return count, table, rejected, reasons


def _typed(records: list[dict]) -> pa.Table:
    batch = pa.RecordBatch.from_pydict({n: pa.array([r[n] or None for r in records], pa.string()) for n in NAMES})
    valid, rejected = SchemaValidator(SCHEMA).validate(RawBatch("clean", batch))
    assert rejected is None
    return pa.Table.from_batches([valid])


def _check_nothing_lost(spec: dict, pool: list[dict], model, directory: Path) -> tuple[list[str], set[str]]:
    """Write the planned file, read it, and check the two promises; returns (rejection reasons, the keys
    of the records that are damaged or cut)."""
    data, clean, damaged = _build(spec, pool)
    path = directory / f"trips.csv{spec['compression']}"
    compress = {"": bytes, ".gz": gzip.compress, ".bz2": bz2.compress}[spec["compression"]]
    path.write_bytes(compress(data))
    count, valid, rejected, reasons = _read(str(path), spec)
    for reason in set(reasons):
        event(reason)

    kept = valid.num_rows if valid is not None else 0
    assert count == kept + rejected, f"count {count} != valid {kept} + rejected {rejected} ({reasons})"

    undamaged = sorted(k for k in clean if k not in damaged)
    keys = valid.column("trip_id").to_pylist() if valid is not None else []
    for key in undamaged:
        assert keys.count(key) == 1, f"{key} is valid {keys.count(key)} times; rejections: {reasons}"
    if not undamaged:
        return reasons, damaged
    expected = _typed([clean[k] for k in undamaged])
    got = valid.filter(pa.compute.is_in(valid.column("trip_id"), pa.array(undamaged)))
    got = got.take(pa.compute.sort_indices(got, [("trip_id", "ascending")]))
    expected = expected.take(pa.compute.sort_indices(expected, [("trip_id", "ascending")]))
    assert got.to_pylist() == expected.to_pylist()
    got_p, _ = model.predict(got)
    want_p, _ = model.predict(expected)
    assert_close_probabilities(got_p, want_p, "undamaged records")
    return reasons, damaged


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=damaged_files())
def test_damage_costs_only_the_records_it_is_in(spec, pool, model, tmp_path_factory):
    _check_nothing_lost(spec, pool, model, tmp_path_factory.mktemp("damaged"))


@settings(
    max_examples=LARGE_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(spec=damaged_files(large=True))
def test_a_large_field_survives_its_damaged_neighbours(spec, pool, model, tmp_path_factory):
    """Fields of 100 KB to 2 MB are valid records like any other, longer than the block that reads them
    (grown up to --max_record_bytes) and read by pyarrow or, beside damage, record by record by Python's
    csv module: each is read once, its value whole, whatever its neighbours hold."""
    _, damaged = _check_nothing_lost(spec, pool, model, tmp_path_factory.mktemp("large"))
    neighbours = {index: kind for index, kind, _ in spec["damage"]}
    for index, value in spec["large"].items():
        size = len(value)
        event("large field: " + ("under 500 KB" if size < 500_000 else "under 1 MB" if size < 1_000_000 else "1-2 MB"))
        event("large field: " + ("longer than the block" if size > spec["block_bytes"] else "within the block"))
        event("large field: " + ("damaged or cut itself" if f"r{index}" in damaged else "undamaged"))
        for beside in (index - 1, index + 1):
            if beside in neighbours:
                event(f"neighbour damage: {neighbours[beside]}")
    event(f"compression: {spec['compression'] or 'none'}")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(
        st.one_of(
            st.integers(0, POOL_SIZE - 1),
            st.sampled_from([b"{not json", b"[1, 2]", b'{"trip_id": "\xff"}', b"   ", b""]),
        ),
        min_size=1,
        max_size=40,
    ),
    block_bytes=st.sampled_from([1024, 2048, 65536]),
    compression=st.sampled_from(["", ".gz"]),
)
def test_json_lines_damage_costs_only_its_line(lines, block_bytes, compression, pool, tmp_path_factory):
    body, good = [], set()
    for i, line in enumerate(lines):
        if isinstance(line, int):
            record = {k: v for k, v in dict(pool[line], trip_id=f"r{i}").items() if v != ""}
            body.append(json.dumps(record).encode())
            good.add(f"r{i}")
        else:
            body.append(line)
    data = b"\n".join(body) + b"\n"
    path = tmp_path_factory.mktemp("json") / f"trips.jsonl{compression}"
    path.write_bytes(gzip.compress(data) if compression else data)
    count, valid, rejected, reasons = _read(str(path), {"block_bytes": block_bytes, "max_record_bytes": 1 << 20})
    kept = valid.num_rows if valid is not None else 0
    assert count == kept + rejected == sum(1 for line in body if line.strip())
    assert sorted(valid.column("trip_id").to_pylist() if valid is not None else []) == sorted(good)


# ---------------------------------------------------------------- cut deliveries, end to end


@dataclass(frozen=True)
class GoodNight:
    """A night published from a whole delivery: its CSV, its warehouse (copied for each example) and
    what the date holds there."""

    csv: bytes
    warehouse: Path
    keys: frozenset[str]
    run_id: str
    model_root: str

    def __repr__(self) -> str:  # a failing example names the night, not its 450 KB and 3,000 keys
        return f"GoodNight({len(self.keys)} records of {DAY}, run {self.run_id}, in {self.warehouse})"


def _score_args(root: Path, model_root: str, warehouse: Path, pattern: str, *extra: str) -> list[str]:
    """The scorer's arguments. No progress lines: a run slowed past --progress_seconds (a busy machine)
    would print one on stderr, where the refusal must be the only line."""
    return [
        f"--date={DAY}",
        f"--input={root}/trips/dt={{date}}/{pattern}",
        f"--model_root={model_root}",
        f"--summary_json={root}/summary.json",
        f"--warehouse={warehouse}",
        "--progress_seconds=0",
        *extra,
    ]


def _published(warehouse: Path) -> tuple[frozenset[str], set[str]]:
    """The keys the date holds for the champion, and the runs they came from."""
    rows = query(
        warehouse,
        "SELECT trip_id, run_id FROM predictions WHERE score_date = ? AND model_role = 'champion'",
        [DAY],
    )
    return frozenset(key for key, _ in rows), {run for _, run in rows}


@pytest.fixture(scope="module")
def good_night(trained, tmp_path_factory) -> GoodNight:
    """Scored once: every example starts from a copy of this warehouse instead of scoring it again."""
    root = tmp_path_factory.mktemp("good_night")
    [path] = write_partition(root / "trips" / f"dt={DAY}", DAY, CUT_ROWS)
    model_root = os.path.dirname(os.path.dirname(trained.version.path))
    warehouse = root / "wh" / "scores.duckdb"
    warehouse.parent.mkdir()
    assert score.main(_score_args(root, model_root, warehouse, "*.csv")) == 0
    keys, [run_id] = _published(warehouse)
    assert len(keys) == CUT_ROWS
    return GoodNight(Path(path).read_bytes(), warehouse, keys, run_id, model_root)


@st.composite
def cut_deliveries(draw) -> dict:
    """The night's file compressed (in one stream, or in several concatenated as `cat` joins them, each
    ending at a record's end) and cut: at a fraction of its length, a few bytes short of its end (inside
    the gzip trailer or the bzip2 end-of-stream marker), or at the end of one of its streams."""
    return {
        "compression": draw(st.sampled_from(["gz", "bz2"])),
        "level": draw(st.integers(1, 9)),
        "streams": draw(st.integers(1, 3)),
        "cut": draw(
            st.one_of(
                st.tuples(st.just("fraction"), st.floats(0, 1)),
                st.tuples(st.just("short_of_end"), st.integers(0, 24)),
                st.tuples(st.just("stream_end"), st.integers(0, 2)),
            )
        ),
    }


def _pack(data: bytes, delivery: dict) -> tuple[bytes, int]:
    """The delivery's compressed bytes, and the offset its cut falls at."""
    lines = data.splitlines(keepends=True)
    n, level = delivery["streams"], delivery["level"]
    bounds = [len(lines) * k // n for k in range(n + 1)]
    parts = [b"".join(lines[a:b]) for a, b in itertools.pairwise(bounds)]
    if delivery["compression"] == "bz2":
        streams = [bz2.compress(part, level) for part in parts]
    else:
        streams = [gzip.compress(part, level, mtime=0) for part in parts]
    packed = b"".join(streams)
    how, at = delivery["cut"]
    if how == "fraction":
        return packed, int(len(packed) * at)
    if how == "short_of_end":
        return packed, max(0, len(packed) - at)
    return packed, sum(len(s) for s in streams[: min(at, n - 1) + 1])


def _unpack(data: bytes, compression: str) -> tuple[bytes, bool]:
    """What a decompressor of the test's own makes of `data`: the bytes it yields, and whether its last
    stream reached its end-of-stream marker (streams concatenated one after another, as gzip and bzip2
    allow). No bytes at all are no stream."""
    out, rest = b"", data
    while True:
        decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16) if compression == "gz" else bz2.BZ2Decompressor()
        out += decompressor.decompress(rest)
        if not decompressor.eof:
            return out, False
        rest = decompressor.unused_data
        if not rest:
            return out, True


def _whole_records(text: bytes) -> list[str]:
    """The keys of the records that end before `text` does (the header left out)."""
    whole = text[: text.rfind(b"\n") + 1].decode()
    return [row[0] for row in list(csv.reader(io.StringIO(whole, newline="")))[1:]]


def _expected_failures(records: int, complete: bool, published: int) -> set[str]:
    """The gates a cut night fails, from what the test itself found in the delivery."""
    failed = set() if complete else {"complete_input"}
    if not records:
        failed |= {"scorable_records"}
    if records < MIN_RECORDS:
        failed |= {"min_records"}
    if records < SHRINK_LIMIT * published:
        failed |= {"shrink"}
    return failed


@settings(
    max_examples=CUT_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(delivery=cut_deliveries())
@example(delivery={"compression": "gz", "level": 6, "streams": 1, "cut": ("short_of_end", 0)})  # whole: published
def test_a_cut_delivery_is_never_published_in_place_of_a_whole_night(delivery, good_night, tmp_path_factory, capsys):
    """The night's file re-delivered compressed and cut, scored by the real scorer over a warehouse that
    holds the whole night. Whether the cut left a whole stream is judged by the test with zlib and bz2,
    not by the reader: only then may the night publish (a cut at the end of one of several concatenated
    streams is whole by every measure a reader has). Otherwise it is refused, naming the file, and the
    good night stays exactly as it was; `--accept_gate_failures` publishes what was read, and no more."""
    root = tmp_path_factory.mktemp("cut")
    warehouse = root / "wh" / "scores.duckdb"
    warehouse.parent.mkdir()
    shutil.copyfile(good_night.warehouse, warehouse)
    packed, cut = _pack(good_night.csv, delivery)
    path = root / "trips" / f"dt={DAY}" / f"part-00000.csv.{delivery['compression']}"
    path.parent.mkdir(parents=True)
    path.write_bytes(packed[:cut])
    text, complete = _unpack(packed[:cut], delivery["compression"])
    keys = _whole_records(text)
    expected = _expected_failures(len(keys), complete, len(good_night.keys))
    event(f"{delivery['compression']}, {delivery['streams']} stream(s), cut by {delivery['cut'][0]}")
    event("whole stream" if complete else "cut short" + ("" if keys else ", no whole record before the cut"))
    event("expected: " + (", ".join(sorted(expected)) + " refused" if expected else "published"))

    capsys.readouterr()
    pattern = f"*.csv.{delivery['compression']}"
    code = score.main(_score_args(root, good_night.model_root, warehouse, pattern))
    err = capsys.readouterr().err
    summary = json.load(open(root / "summary.json"))
    assert code != 0 or complete, f"a delivery cut at {cut} of {len(packed)} bytes was published: {summary}"
    failed = {g["name"] for g in summary["gates"] if not g["passed"]}
    assert failed == expected, err
    assert summary["reconciled"] and summary["scored_records"] == len(keys)
    if not expected:
        assert code == 0 and summary["status"] == "succeeded"
        assert _published(warehouse) == (frozenset(keys), {summary["run_id"]})
        if len(keys) < len(good_night.keys):  # whole streams, one of them left out: nothing can tell
            event("published without an override: a cut at a stream's end")
        return

    assert code == 3 and summary["status"] == "refused", err
    assert _published(warehouse) == (good_night.keys, {good_night.run_id})  # the good night, whole
    if not complete:
        assert len(err.splitlines()) == 1, err
        line = err.strip()
        assert "complete_input: reading stopped part-way in 1 file" in line and str(path) in line, err
        gate = next(g for g in summary["gates"] if g["name"] == "complete_input")
        assert gate["value"] == 1 and f"{path} (after {len(keys)} records:" in gate["detail"]

    reason = "the sender lost the rest; ops ticket 99"
    (root / "summary.json").unlink()  # the next run's own, or none
    code = score.main(_score_args(root, good_night.model_root, warehouse, pattern, f"--accept_gate_failures={reason}"))
    accepted = json.load(open(root / "summary.json"))
    if "scorable_records" in expected:  # an empty night is never published, even on the record
        assert code == 3 and accepted["status"] == "refused"
        assert _published(warehouse) == (good_night.keys, {good_night.run_id})
        return
    assert code == 0 and accepted["status"] == "succeeded" and accepted["accepted_failures"] == reason
    assert _published(warehouse) == (frozenset(keys), {accepted["run_id"]})
    event("published on the record")
