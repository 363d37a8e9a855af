"""Extract and validate: every record is typed, or rejected with a reason; nothing disappears."""

import csv
import os

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.batches import FILE_ERROR, RECORD_ERROR, RawBatch
from pipelines.sources import InputNotFoundError, ReadSettings
from pipelines.sources.file_source import ReadInputFiles, match_input
from pipelines.validate import SchemaValidator, ValidateRecords
from schemas.taxi import TRIPS

SCHEMA = TRIPS.for_scoring()
HEADER = ",".join(SCHEMA.names)
GOOD = "t1,8,12.5,11,15,2,1795446000,41.88,-87.63,,,1.5,,17031839100,Cash,Flash Cab,540,32,0.0"


def raw(**overrides) -> RawBatch:
    values = dict(zip(SCHEMA.names, GOOD.split(","), strict=True))
    values.update(overrides)
    return RawBatch(
        "f.csv",
        pa.RecordBatch.from_pydict({k: pa.array([v if v != "" else None], pa.string()) for k, v in values.items()}),
    )


def test_good_record_is_typed_exactly():
    valid, rejected = SchemaValidator(SCHEMA).validate(raw())
    assert rejected is None
    row = valid.to_pylist()[0]
    assert row["fare"] == 12.5 and row["trip_seconds"] == 540 and row["pickup_census_tract"] is None
    assert row["dropoff_census_tract"] == 17031839100 and row["company"] == "Flash Cab"
    assert valid.schema.field("trip_start_hour").type == pa.int64()


@pytest.mark.parametrize(
    "overrides, reason, detail",
    [
        ({"fare": "12,50"}, "wrong_type", "'12,50' is not FLOAT64"),
        ({"trip_seconds": "5.5"}, "not_integer", "'5.5' is not a whole number"),
        ({"trip_seconds": "nan"}, "not_integer", "'nan' is not a whole number"),
        ({"trip_seconds": "1e30"}, "out_of_range", "'1e30' is outside int64"),
        ({"trip_start_hour": "99999999999999999999"}, "out_of_range", "'99999999999999999999' is outside int64"),
        ({"trip_start_hour": "24"}, "out_of_range", "'24' is outside the declared range [0, 23]"),
        ({"fare": "-0.5"}, "out_of_range", "'-0.5' is below the declared minimum 0"),
        ({"pickup_latitude": "48.85"}, "out_of_range", "'48.85' is outside the declared range [41.6, 42.1]"),
        ({"trip_miles": "inf"}, "non_finite", "'inf' is not a finite number"),
        ({"fare": "1e39"}, "out_of_range", "'1e+39' is outside float32, the model's input type"),
        ({"fare": ""}, "missing_required", "no value"),
        ({"trip_id": ""}, "missing_required", "no value"),
        ({"payment_type": ""}, "missing_required", "no value"),
    ],
)
def test_bad_record_is_rejected_with_its_reason(overrides, reason, detail):
    valid, rejected = SchemaValidator(SCHEMA).validate(raw(**overrides))
    assert valid.num_rows == 0
    [row] = rejected.to_pylist()
    assert (row["reason"], row["column_name"], row["detail"]) == (reason, next(iter(overrides)), detail)
    assert row["error_kind"] == RECORD_ERROR and row["source"] == "f.csv" and row["records"] == 1
    assert row["raw_record"].split(",")[0] == (overrides.get("trip_id") or "t1") or "trip_id" in overrides


@pytest.mark.parametrize(
    "text, value",
    [("480", 480), ("480.0", 480), ("480.", 480), ("4.8e2", 480), ("4.8E+02", 480), ("-0.0", 0), ("+7", 7)],
)
def test_whole_numbers_written_as_floats_are_integers_exactly(text, value):
    valid, rejected = SchemaValidator(SCHEMA).validate(raw(trip_seconds=text))
    assert rejected is None and valid.column("trip_seconds").to_pylist() == [value]


def test_large_integers_in_float_form_are_exact_not_rounded():
    # 2**53 + 1 is not a float64: a float round trip would make it 9007199254740992.
    valid, rejected = SchemaValidator(SCHEMA.for_scoring()).validate(
        raw(dropoff_census_tract="17031839100.0", trip_seconds="9007199254740993.0")
    )
    assert rejected is None
    assert valid.column("trip_seconds").to_pylist() == [9007199254740993]
    assert valid.column("dropoff_census_tract").to_pylist() == [17031839100]


def test_float_columns_become_integers_only_when_whole():
    values = pa.array([480.0, -0.0, 480.5, float("nan"), 1e30, None], pa.float64())
    batch = raw().records
    batch = pa.RecordBatch.from_arrays(
        [pa.concat_arrays([batch.column(i)] * 6) for i in range(batch.num_columns)], names=batch.schema.names
    )
    batch = batch.set_column(batch.schema.get_field_index("trip_seconds"), "trip_seconds", values)
    valid, rejected = SchemaValidator(SCHEMA).validate(RawBatch("t", batch, "table"))
    assert valid.column("trip_seconds").to_pylist() == [480, 0, None]
    assert rejected.column("reason").to_pylist() == ["not_integer", "not_integer", "out_of_range"]


def test_nullable_columns_may_be_empty_but_not_wrong():
    valid, rejected = SchemaValidator(SCHEMA).validate(raw(company="", trip_seconds="", tips=""))
    assert rejected is None and valid.num_rows == 1
    _, rejected = SchemaValidator(SCHEMA).validate(raw(pickup_latitude="north"))
    assert rejected.column("reason")[0].as_py() == "wrong_type"
    assert rejected.column("detail")[0].as_py() == "'north' is not FLOAT64"


def test_training_view_requires_the_label_and_not_the_key():
    training = TRIPS.for_training()
    valid, rejected = SchemaValidator(training).validate(raw(trip_id="", tips=""))
    assert valid.num_rows == 0
    assert rejected.column("reason")[0].as_py() == "missing_required"
    assert rejected.column("column_name")[0].as_py() == "tips"


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_extract_and_validate_in_a_pipeline(tmp_path):
    bad_type = GOOD.replace("12.5", "twelve").replace("t1,", "t2,")
    files = [
        _write(
            tmp_path / "a.csv", "\n".join([HEADER, GOOD, "t3,only,three", bad_type, GOOD.replace("t1,", "t4,")]) + "\n"
        ),
        _write(tmp_path / "empty.csv", ""),
        _write(tmp_path / "header_only.csv", HEADER + "\n"),
    ]
    with BeamTestPipeline() as p:
        read = p | ReadInputFiles(files, SCHEMA)
        checked = read.batches | ValidateRecords(SCHEMA)
        keys = checked.valid | beam.FlatMap(lambda b: b.column("trip_id").to_pylist())
        rejected = (
            (read.rejected, checked.rejected)
            | beam.Flatten()
            | beam.FlatMap(
                lambda b: [
                    (r["source"].rsplit("/", 1)[-1], r["line_number"], r["reason"], r["error_kind"], r["records"])
                    for r in b.to_pylist()
                ]
            )
        )
        assert_that(keys, equal_to(["t1", "t4"]), label="Scored")
        assert_that(
            rejected,
            equal_to(
                [
                    ("a.csv", 3, "malformed_line", RECORD_ERROR, 1),
                    ("a.csv", 4, "wrong_type", RECORD_ERROR, 1),
                    ("empty.csv", None, "empty_file", FILE_ERROR, 0),
                    ("header_only.csv", None, "empty_file", FILE_ERROR, 0),
                ]
            ),
            label="Rejected",
        )
        counts = read.counts | beam.Map(lambda c: (c[0].rsplit("/", 1)[-1], c[1]))
        assert_that(counts, equal_to([("a.csv", 4), ("empty.csv", 0), ("header_only.csv", 0)]), label="InputCount")


def test_no_input_files_is_a_clear_error(tmp_path):
    with pytest.raises(InputNotFoundError, match="2026-11-23.*nothing matches"):
        match_input(str(tmp_path / "dt={date}" / "*.csv"), "2026-11-23")


def test_a_bad_value_late_in_a_file_loses_and_repeats_nothing(tmp_path):
    """Typed parsing fails on the block holding 'twelve'; that column is read as text from then on."""
    from pipelines.sources.file_source import ReadFiles

    lines = [HEADER]
    for i in range(300):
        line = GOOD.replace("t1,", f"t{i},", 1)
        if i == 120:
            line = "t120,short,line"
        if i == 250:
            line = line.replace("12.5", "twelve")
        lines.append(line)
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    reader = ReadFiles(SCHEMA, ReadSettings(block_bytes=2048))  # about 20 records a block
    validator = SchemaValidator(SCHEMA)
    kept, rejected, counts = [], [], []
    for item in reader.process(str(path)):
        if isinstance(item, RawBatch):
            valid, bad = validator.validate(item)
            kept += valid.column("trip_id").to_pylist()
            rejected += (
                []
                if bad is None
                else [(r["raw_record"].split(",")[0], r["reason"], r["line_number"]) for r in bad.to_pylist()]
            )
        elif item.tag == "rejected":
            rejected += [(r["raw_record"].split(",")[0], r["reason"], r["line_number"]) for r in item.value.to_pylist()]
        else:
            counts.append(item.value[1])
    assert counts == [300]
    assert sorted(rejected) == [("t120", "malformed_line", 122), ("t250", "wrong_type", 252)]
    assert sorted(kept) == sorted(f"t{i}" for i in range(300) if i not in (120, 250))


def _read_all(path, schema=SCHEMA, **kwargs):
    from pipelines.sources.file_source import ReadFiles

    validator = SchemaValidator(schema)
    kept, rejected, counts = [], [], []
    for item in ReadFiles(schema, ReadSettings(**kwargs)).process(str(path)):
        if isinstance(item, RawBatch):
            valid, bad = validator.validate(item)
            kept += valid.column("trip_id").to_pylist()
            rejected += [] if bad is None else [r["reason"] for r in bad.to_pylist()]
        elif item.tag == "rejected":
            rejected += [r["reason"] for r in item.value.to_pylist()]
        else:
            counts.append(item.value[1])
    return kept, rejected, counts


def test_malformed_lines_are_reported_once_when_unknown_columns_make_the_reader_reopen(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text(
        "\n".join([HEADER + ",driver", GOOD + ",d1", "cut,short", GOOD.replace("t1,", "t2,") + ",d2"]) + "\n"
    )
    kept, rejected, counts = _read_all(path)
    assert kept == ["t1", "t2"] and counts == [3]
    assert rejected == ["malformed_line"]


def test_a_byte_that_is_not_utf8_costs_only_its_record(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        (HEADER + "\n" + GOOD + "\n").encode()
        + GOOD.replace("Flash Cab", "Caf\xe9").replace("t1,", "t2,").encode("latin-1")
        + b"\n"
        + (GOOD.replace("t1,", "t3,") + "\n").encode()
    )
    kept, rejected, counts = _read_all(path)
    assert kept == ["t1", "t3"] and rejected == ["invalid_utf8"] and counts == [3]


def test_empty_json_objects_are_counted_and_rejected(tmp_path):
    path = tmp_path / "empty_objects.json"
    path.write_text("{}\n{}\n{bad\n")
    kept, rejected, counts = _read_all(path)
    assert kept == [] and counts == [3]
    assert sorted(rejected) == ["malformed_json", "missing_required", "missing_required"]


@pytest.mark.parametrize("mixed", [False, True], ids=["every-record-nested", "nested-beside-text"])
def test_an_object_or_array_in_a_string_column_is_wrong_type_not_json_text(tmp_path, mixed):
    import json

    record = {name: value or None for name, value in zip(SCHEMA.names, next(csv.reader([GOOD])), strict=True)}
    nested = [
        {**record, "trip_id": "obj", "company": {"name": "Flash"}},
        {**record, "trip_id": "arr", "company": ["a"]},
    ]
    plain = [{**record, "trip_id": "text"}] if mixed else []
    path = tmp_path / "nested.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*nested, *plain]))
    kept, rejected, counts = _read_all(path)
    assert (
        kept == (["text"] if mixed else []) and rejected == ["wrong_type", "wrong_type"] and counts == [len(kept) + 2]
    )


def test_batches_stay_whole_after_the_reader_moves_on(tmp_path):
    """The reader reuses one buffer for a whole file: batches already out must not change with it."""
    from pipelines.sources.file_source import ReadFiles

    lines = [HEADER] + [GOOD.replace("t1,", f"t{i},", 1).replace("Flash Cab", f"Cab {i}") for i in range(400)]
    path = tmp_path / "many.csv"
    path.write_text("\n".join(lines) + "\n")
    read = ReadFiles(SCHEMA, ReadSettings(block_bytes=1024)).process(str(path))
    batches = [item for item in read if isinstance(item, RawBatch)]
    assert len(batches) > 10
    companies = [c for b in batches for c in b.records.column("company").to_pylist()]
    assert companies == [f"Cab {i}" for i in range(400)]


@pytest.mark.parametrize("suffix, compress", [(".gz", "gzip"), (".bz2", "bz2"), (".xz", "lzma")])
def test_a_truncated_archive_is_an_incomplete_file_not_a_shorter_one(tmp_path, suffix, compress):
    import importlib

    lines = [HEADER] + [GOOD.replace("t1,", f"t{i},", 1) for i in range(20000)]  # bzip2: several blocks
    packed = importlib.import_module(compress).compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / f"cut.csv{suffix}"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    kept, rejected, counts = _read_all(path, block_bytes=65536)
    assert rejected == ["incomplete_file"] and counts == [len(kept)] and 0 < len(kept) < 20000


@settings(max_examples=25, deadline=None)
@given(cut=st.floats(0.02, 0.98), compress=st.sampled_from(["gzip", "bz2"]), block=st.sampled_from([1024, 65536]))
def test_a_compressed_file_cut_anywhere_is_never_read_as_a_shorter_whole_one(tmp_path_factory, cut, compress, block):
    """Wherever a delivery is cut, the read says so (incomplete_file: the complete_input gate refuses the
    night) and what was read reconciles; it is never a smaller file that reads cleanly."""
    import importlib

    lines = [HEADER] + [GOOD.replace("t1,", f"t{i},", 1) for i in range(3000)]
    packed = importlib.import_module(compress).compress(("\n".join(lines) + "\n").encode())
    path = tmp_path_factory.mktemp("cut") / f"cut.csv.{'gz' if compress == 'gzip' else 'bz2'}"
    path.write_bytes(packed[: max(1, int(len(packed) * cut))])
    kept, rejected, counts = _read_all(path, block_bytes=block)
    assert rejected == ["incomplete_file"] and counts == [len(kept)] and len(kept) < 3000
    assert kept == [f"t{i}" for i in range(len(kept))]  # the records before the cut, each once


@settings(max_examples=12, deadline=None)
@given(
    size=st.integers(100_000, 2_000_000),
    quoted=st.booleans(),
    bad_first=st.booleans(),
    block=st.sampled_from([1 << 16, 1 << 20]),
)
def test_a_large_field_is_read_and_a_bad_neighbour_costs_only_itself(tmp_path_factory, size, quoted, bad_first, block):
    """Fields from 100 KB to 2 MB, within --max_record_bytes, beside a record with a byte that is not
    UTF-8: the large record is read whole, whichever parser reads it, and only the bad one is rejected."""
    company = "Cab " + "x" * size + (",\n" if quoted else "")
    large = GOOD.replace("t1,", "big,", 1).replace("Flash Cab", f'"{company}"' if quoted else company)
    bad = GOOD.replace("t1,", "bad,", 1).encode().replace(b"Flash Cab", b"Caf\xe9 Cab")
    rows = [HEADER.encode(), GOOD.encode(), *([bad, large.encode()] if bad_first else [large.encode(), bad])]
    path = tmp_path_factory.mktemp("large") / "large.csv"
    path.write_bytes(b"\n".join([*rows, GOOD.replace("t1,", "t2,", 1).encode()]) + b"\n")
    kept, rejected, counts = _read_all(path, block_bytes=block, max_record_bytes=4 << 20)
    assert sorted(kept) == ["big", "t1", "t2"] and rejected == ["invalid_utf8"] and counts == [4]


def test_the_steps_and_the_command_use_a_memory_pool_that_returns_freed_memory(monkeypatch):
    """pyarrow's default pool (mimalloc) held about 100 MB more at a 10M-record night's peak: the steps'
    workers switch to the system allocator when they set up, and the command asks for it before pyarrow
    loads (README: Benchmark)."""
    from pipelines import score
    from pipelines.sources.file_source import ReadFiles
    from pipelines.validate import ValidateBatch

    saved = pa.default_memory_pool()
    try:
        for step in (ReadFiles(TRIPS.for_scoring()), ValidateBatch(TRIPS.for_scoring())):
            pa.set_memory_pool(pa.mimalloc_memory_pool())
            step.setup()
            assert pa.default_memory_pool().backend_name == "system"
    finally:
        pa.set_memory_pool(saved)
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "")  # so that the test's end restores what was there
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
    score.options(["--date=2026-11-23"])
    assert os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "system"
