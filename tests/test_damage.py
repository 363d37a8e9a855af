"""Damaged files lose nothing: property tests over generated taxi files, damaged at random places.

Each example writes a file of real sample records (some with quoted commas, quotes and newlines in
`company`), damages some of them (bytes that are not UTF-8, quotes opened and never closed, stray
delimiters and newlines, fields far longer than a block, truncation), may add a BOM, CRLF line ends
and compression, and reads it with a random block size. Whatever happens:

- the file's independent count = records valid + records rejected (nothing lost, nothing doubled);
- every undamaged record is valid exactly once, with the values and the probability it has when
  its clean values are scored directly.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import os

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import schemas
from models.handler import ExportedModelHandler
from pipelines.batches import RawBatch
from pipelines.extract import ReadFiles
from pipelines.validate import SchemaValidator
from tests.conftest import SAMPLE
from tests.float32 import assert_close_probabilities

SCHEMA = schemas.INPUT.for_scoring()
NAMES = SCHEMA.names
POOL_SIZE = 200
# Clean values of `company` that need quoting; none starts with a quote's neighbour (a delimiter or a
# newline), which is what keeps a stray quote from pairing into a well-formed record by chance.
COMPANIES = ["Flash Cab", "Blue Ribbon, Inc.", 'The "Best" Cab', "Line one\nLine two", "Cab\r\nCRLF inside"]
DAMAGES = ["invalid_byte", "open_quote", "stray_delimiter", "stray_newline", "too_large"]
# Bounded so the suite stays fast; DAMAGE_EXAMPLES=2000 for a deeper search.
EXAMPLES = int(os.environ.get("DAMAGE_EXAMPLES", "60"))


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
    return ExportedModelHandler(trained.version, SCHEMA).load_model()


def _encode(record: dict) -> bytes:
    out = io.StringIO()
    # The terminator's characters are what the writer quotes a field for, so keep them and strip them.
    csv.writer(out, lineterminator="\r\n").writerow([record[n] for n in NAMES])
    return out.getvalue().removesuffix("\r\n").encode()


@st.composite
def damaged_files(draw):
    n = draw(st.integers(5, 60))
    block_bytes = draw(st.sampled_from([1024, 1500, 2048, 4096, 65536]))
    max_record_bytes = block_bytes * draw(st.integers(1, 3))
    # (index, sample record, company variant: len(COMPANIES) keeps the sample's own)
    records = [(i, draw(st.integers(0, POOL_SIZE - 1)), draw(st.integers(0, len(COMPANIES)))) for i in range(n)]
    damage = draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(DAMAGES), st.integers(0, 10_000)), max_size=6)
    )
    truncate = draw(st.one_of(st.none(), st.floats(0.05, 1.0)))
    return {
        "records": records,
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
    reader = ReadFiles(SCHEMA, block_bytes=spec["block_bytes"], max_record_bytes=spec["max_record_bytes"])
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


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=damaged_files())
def test_damage_costs_only_the_records_it_is_in(spec, pool, model, tmp_path_factory):
    data, clean, damaged = _build(spec, pool)
    path = tmp_path_factory.mktemp("damaged") / f"trips.csv{spec['compression']}"
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
        return
    expected = _typed([clean[k] for k in undamaged])
    got = valid.filter(pa.compute.is_in(valid.column("trip_id"), pa.array(undamaged)))
    got = got.take(pa.compute.sort_indices(got, [("trip_id", "ascending")]))
    expected = expected.take(pa.compute.sort_indices(expected, [("trip_id", "ascending")]))
    assert got.to_pylist() == expected.to_pylist()
    got_p, _ = model.predict(got)
    want_p, _ = model.predict(expected)
    assert_close_probabilities(got_p, want_p, "undamaged records")


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
