"""Extract and validate: every record is typed, or rejected with a reason; nothing disappears."""

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

import schemas
from pipelines.batches import FILE_ERROR, RECORD_ERROR, RawBatch
from pipelines.extract import InputNotFoundError, ReadInputFiles, match_input
from pipelines.validate import SchemaValidator, ValidateRecords

SCHEMA = schemas.INPUT.for_scoring()
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
    "overrides, reason",
    [
        ({"fare": "12,50"}, "wrong type: fare is not FLOAT64: '12,50'"),
        ({"trip_seconds": "5.5"}, "wrong type: trip_seconds is not INT64: '5.5'"),
        ({"trip_start_hour": "99999999999999999999"}, "wrong type: trip_start_hour is not INT64"),
        ({"trip_miles": "inf"}, "wrong type: trip_miles is not a finite number"),
        ({"fare": ""}, "missing required field: fare"),
        ({"trip_id": ""}, "missing required field: trip_id"),
        ({"payment_type": ""}, "missing required field: payment_type"),
    ],
)
def test_bad_record_is_rejected_with_its_reason(overrides, reason):
    valid, rejected = SchemaValidator(SCHEMA).validate(raw(**overrides))
    assert valid.num_rows == 0
    [row] = rejected.to_pylist()
    assert row["reason"].startswith(reason)
    assert row["error_kind"] == RECORD_ERROR and row["source"] == "f.csv"
    assert row["raw_record"].split(",")[0] == (overrides.get("trip_id") or "t1") or "trip_id" in overrides


def test_nullable_columns_may_be_empty_but_not_wrong():
    valid, rejected = SchemaValidator(SCHEMA).validate(raw(company="", trip_seconds="", tips=""))
    assert rejected is None and valid.num_rows == 1
    _, rejected = SchemaValidator(SCHEMA).validate(raw(pickup_latitude="north"))
    assert rejected.column("reason")[0].as_py() == "wrong type: pickup_latitude is not FLOAT64: 'north'"


def test_training_view_requires_the_label_and_not_the_key():
    training = schemas.INPUT.for_training()
    valid, rejected = SchemaValidator(training).validate(raw(trip_id="", tips=""))
    assert valid.num_rows == 0
    assert rejected.column("reason")[0].as_py() == "missing required field: tips"


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
                    (r["source"].rsplit("/", 1)[-1], r["line_number"], r["reason"], r["error_kind"])
                    for r in b.to_pylist()
                ]
            )
        )
        assert_that(keys, equal_to(["t1", "t4"]), label="Scored")
        assert_that(
            rejected,
            equal_to(
                [
                    ("a.csv", 3, "malformed line: expected 19 fields, found 3", RECORD_ERROR),
                    ("a.csv", None, "wrong type: fare is not FLOAT64: 'twelve'", RECORD_ERROR),
                    ("empty.csv", None, "empty file: no records", FILE_ERROR),
                    ("header_only.csv", None, "empty file: no records", FILE_ERROR),
                ]
            ),
            label="Rejected",
        )
        assert_that(read.counts | beam.CombineGlobally(sum), equal_to([4]), label="InputCount")


def test_no_input_files_is_a_clear_error(tmp_path):
    with pytest.raises(InputNotFoundError, match="2026-11-23.*nothing matches"):
        match_input(str(tmp_path / "dt={date}" / "*.csv"), "2026-11-23")


def test_a_bad_value_late_in_a_file_loses_and_repeats_nothing(tmp_path):
    """Typed parsing stops at the block holding 'twelve'; the text pass resumes exactly there."""
    from pipelines.extract import ReadFiles

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
    reader = ReadFiles(SCHEMA, block_bytes=2048)  # about 20 records a block
    validator = SchemaValidator(SCHEMA)
    kept, rejected, counts = [], [], []
    for item in reader.process(str(path)):
        if isinstance(item, RawBatch):
            valid, bad = validator.validate(item)
            kept += valid.column("trip_id").to_pylist()
            rejected += [] if bad is None else [(r["raw_record"].split(",")[0], r["reason"]) for r in bad.to_pylist()]
        elif item.tag == "rejected":
            rejected += [(r["raw_record"].split(",")[0], r["reason"]) for r in item.value.to_pylist()]
        else:
            counts.append(item.value)
    assert counts == [300]
    assert sorted(rejected) == [
        ("t120", "malformed line: expected 19 fields, found 3"),
        ("t250", "wrong type: fare is not FLOAT64: 'twelve'"),
    ]
    assert sorted(kept) == sorted(f"t{i}" for i in range(300) if i not in (120, 250))


def _read_all(path, schema=SCHEMA, **kwargs):
    from pipelines.extract import ReadFiles

    validator = SchemaValidator(schema)
    kept, rejected, counts = [], [], []
    for item in ReadFiles(schema, **kwargs).process(str(path)):
        if isinstance(item, RawBatch):
            valid, bad = validator.validate(item)
            kept += valid.column("trip_id").to_pylist()
            rejected += [] if bad is None else [r["reason"] for r in bad.to_pylist()]
        elif item.tag == "rejected":
            rejected += [r["reason"] for r in item.value.to_pylist()]
        else:
            counts.append(item.value)
    return kept, rejected, counts


def test_malformed_lines_are_reported_once_when_unknown_columns_make_the_reader_reopen(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text(
        "\n".join([HEADER + ",driver", GOOD + ",d1", "cut,short", GOOD.replace("t1,", "t2,") + ",d2"]) + "\n"
    )
    kept, rejected, counts = _read_all(path)
    assert kept == ["t1", "t2"] and counts == [3]
    assert rejected == ["malformed line: expected 20 fields, found 2"]


def test_an_unreadable_file_is_a_file_error_not_a_failed_run(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        (HEADER + "\n" + GOOD + "\n").encode() + GOOD.replace("Flash Cab", "Caf\xe9").encode("latin-1") + b"\n"
    )
    kept, rejected, counts = _read_all(path)
    assert len(rejected) == 1 and rejected[0].startswith("unreadable file after 0 records")
    assert counts == [len(kept)]


def test_values_beyond_float32_are_rejected():
    valid, rejected = SchemaValidator(SCHEMA).validate(raw(fare="1e39"))
    assert valid.num_rows == 0 and rejected.column("reason")[0].as_py().startswith(
        "wrong type: fare is not a finite number"
    )


def test_empty_json_objects_are_counted_and_rejected(tmp_path):
    path = tmp_path / "empty_objects.json"
    path.write_text("{}\n{}\n{bad\n")
    kept, rejected, counts = _read_all(path)
    assert kept == [] and counts == [3]
    assert sorted(r.split(":")[0] for r in rejected) == [
        "malformed JSON",
        "missing required field",
        "missing required field",
    ]
