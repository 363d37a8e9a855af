"""Every record accounted for, end to end through `python -m pipelines.score`: one test per rule.

The independent count and its reconciliation, recovery from damage, exact integer coercion, header
drift, one answer per key, reason codes (and the migration that brings them to an older warehouse),
declared ranges. Rules that touch BigQuery run against the emulator too, through the `warehouse`
fixture (DuckDB and BigQuery) or a BigQuery source table.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pytest
from google.cloud import bigquery as bq

import schemas
from pipelines import score
from pipelines.batches import REASONS
from pipelines.validate import SchemaValidator
from pipelines.warehouses import AuditError, RunRecord, StagedResults, open_warehouse
from pipelines.warehouses.contract import StagedCounts, check_staged
from schemas import SCORING_ERRORS, SCORING_RUNS, TableSchema
from schemas.taxi import TRIPS
from schemas.taxi import USE_CASE as TAXI
from tests.conftest import BQ_PROJECT, SAMPLE, query, read_as_text, write_partition
from tests.float32 import assert_same_scores
from tests.test_sources import bq_schema, load_table, to_json_lines

DAY = "2026-11-23"


def run(tmp_path, model_root, input_path, *extra, warehouse=None):
    """`python -m pipelines.score` in this process: (exit code, summary JSON or None)."""
    summary = tmp_path / f"summary-{uuid.uuid4().hex[:6]}.json"
    args = [
        f"--date={DAY}",
        f"--input={input_path}",
        f"--model_root={model_root}",
        *(warehouse.args if warehouse else [f"--warehouse={tmp_path}/w.duckdb", "--create_dataset"]),
        f"--summary_json={summary}",
        "--no_auth",
        f"--bq_project={BQ_PROJECT}",
        "--max_rejected_fraction=1",  # these nights are mostly damage on purpose; tests/test_gates.py gates them
        *extra,
    ]
    code = score.main(args)
    return code, (json.loads(summary.read_text()) if summary.exists() else None)


def rows_of(path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    return lines[0], lines[1:]


def write_csv(path, header, rows, newline="\n") -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerows([header, *rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue(), newline="")
    return str(path)


def probabilities(db, day=DAY) -> dict[str, float]:
    return dict(
        query(db, "SELECT trip_id, probability FROM predictions WHERE score_date = ?", [date.fromisoformat(day)])
    )


# ---------------------------------------------------------------- 1. an independent count


def test_a_count_that_does_not_reconcile_fails_the_run_and_names_the_file(model_root, tmp_path, monkeypatch, capsys):
    [path] = write_partition(tmp_path / "in" / f"dt={DAY}", DAY, 200)
    assert run(tmp_path, model_root, path)[0] == 0
    before = probabilities(tmp_path / "w.duckdb")

    # A validation bug that silently drops one record: the parser-side numbers cannot see it, the
    # independent count does.
    check = SchemaValidator.check

    def losing_one(self, raw):
        valid, ok, rejected = check(self, raw)
        kept = np.ones(raw.records.num_rows, bool) if ok is None else ok.to_numpy(zero_copy_only=False).copy()
        kept[np.flatnonzero(kept)[0]] = False
        return valid.slice(1), pa.array(kept), rejected

    monkeypatch.setattr(SchemaValidator, "check", losing_one)
    code, summary = run(tmp_path, model_root, path)
    assert code == 1 and summary["status"] == "failed"
    err = capsys.readouterr().err
    assert f"{path} does not reconcile: 200 records by the independent count, 199 valid + 0 rejected" in err
    assert probabilities(tmp_path / "w.duckdb") == before  # the night is untouched
    statuses = query(tmp_path / "w.duckdb", "SELECT status, error FROM scoring_runs ORDER BY started_at")
    assert [s for s, _ in statuses] == ["succeeded", "failed"] and "does not reconcile" in statuses[1][1]


# ---------------------------------------------------------------- 2. recover, don't drop


def test_damage_costs_only_the_records_it_is_in(model_root, tmp_path):
    [clean] = write_partition(tmp_path / "clean" / f"dt={DAY}", DAY, 2000)
    assert run(tmp_path / "a", model_root, clean)[0] == 0
    reference = probabilities(tmp_path / "a" / "w.duckdb")
    header, rows = rows_of(clean)
    company = header.index("company")
    rows[10][company] = "Caf\udce9"  # a latin-1 é, as a byte that is not UTF-8
    rows[500][company] = "x" * 5000  # longer than --max_record_bytes below
    rows[700][company] = "y" * 3000  # longer than --block_bytes, within --max_record_bytes: the block grows
    for row in rows[1000:1500]:
        row[company] = f"{row[company]}\nsecond line, with a comma"  # quoted newlines across block edges
    path = tmp_path / "damaged" / f"dt={DAY}" / "part.csv.gz"
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows([header, *rows])
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(text.getvalue().encode("utf-8", "surrogateescape")))

    code, summary = run(tmp_path / "b", model_root, path, "--block_bytes=1024", "--max_record_bytes=4096")
    assert code == 0 and summary["reconciled"]
    assert (summary["input_records"], summary["scored_records"], summary["rejected_records"]) == (2000, 1998, 2)
    errors = query(tmp_path / "b" / "w.duckdb", "SELECT reason, line_number, raw_record, detail FROM scoring_errors")
    by_reason = {e[0]: e for e in errors}
    assert by_reason["invalid_utf8"][1] == 12 and "Caf\\xe9" in by_reason["invalid_utf8"][2]
    assert (
        by_reason["record_too_large"][1] == 502
        and "more than --max_record_bytes 4096" in by_reason["record_too_large"][3]
    )
    got = probabilities(tmp_path / "b" / "w.duckdb")
    changed = (10, 500, 700)
    untouched = [k for i, (k, *_) in enumerate(rows) if i < 1000 and i not in changed] + [r[0] for r in rows[1500:]]
    assert len(got) == 1998 and rows[700][0] in got
    assert_same_scores({k: got[k] for k in untouched}, {k: reference[k] for k in untouched}, "undamaged records")


def test_twenty_thousand_quoted_newlines_read_with_small_blocks(model_root, tmp_path):
    [clean] = write_partition(tmp_path / "clean" / f"dt={DAY}", DAY, 20000)
    header, rows = rows_of(clean)
    company = header.index("company")
    for row in rows:
        row[company] = f"{row[company]}\nline two"
    path = write_csv(tmp_path / "in" / f"dt={DAY}" / "part.csv", header, rows)
    code, summary = run(tmp_path, model_root, path, "--block_bytes=4096")
    assert code == 0 and summary["scored_records"] == 20000 and summary["rejected_records"] == 0


# ---------------------------------------------------------------- 3. exact integer coercion


def exponent(value: int) -> str:
    """480 -> '4.80e+02': the exponent form, exactly."""
    digits = str(abs(value))
    return f"{'-' if value < 0 else ''}{digits[0]}.{digits[1:] or '0'}e+{len(digits) - 1:02d}"


def pandas_style(header: list[str], rows: list[list[str]]) -> list[list[str]]:
    """Integer columns as pandas writes those holding a missing value (480.0, 17031839100.0), and some in
    exponent form (4.80e+02)."""
    ints = {c.name for c in TRIPS.columns if c.type is schemas.ColumnType.INT64}
    return [
        [
            (f"{int(v)}.0" if i % 2 else exponent(int(v))) if name in ints and v else v
            for i, (name, v) in enumerate(zip(header, row, strict=True))
        ]
        for row in rows
    ]


def test_integers_written_as_floats_score_exactly_like_integers(model_root, tmp_path):
    [clean] = write_partition(tmp_path / "in" / f"dt={DAY}", DAY, 500)
    assert run(tmp_path / "a", model_root, clean)[0] == 0
    header, rows = rows_of(clean)
    rows = pandas_style(header, rows)
    seconds = header.index("trip_seconds")
    assert any(v.endswith(".0") for r in rows for v in r) and any("e+" in r[seconds] for r in rows)
    rows[0][seconds], rows[1][seconds], rows[2][seconds] = "480.5", "1e30", "nan"
    floats = write_csv(tmp_path / "pandas" / f"dt={DAY}" / "part.csv", header, rows)
    code, summary = run(tmp_path / "b", model_root, floats)
    assert code == 0 and (summary["scored_records"], summary["rejected_records"]) == (497, 3)
    assert sorted(query(tmp_path / "b" / "w.duckdb", "SELECT reason, column_name FROM scoring_errors")) == [
        ("not_integer", "trip_seconds"),
        ("not_integer", "trip_seconds"),
        ("out_of_range", "trip_seconds"),
    ]
    reference, got = probabilities(tmp_path / "a" / "w.duckdb"), probabilities(tmp_path / "b" / "w.duckdb")
    assert len(got) == 497
    assert_same_scores(got, {k: reference[k] for k in got}, "integers written as floats")


def test_a_float64_bigquery_column_is_coerced_by_the_same_rule(model_root, bigquery, warehouse, tmp_path):
    [part] = write_partition(tmp_path / "in", DAY, 50)
    records = [json.loads(line) for line in to_json_lines(part).splitlines()]
    records[0]["trip_seconds"], records[1]["trip_seconds"], records[2]["trip_seconds"] = 480.5, 1e30, 480.0
    schema = [
        bq.SchemaField(f.name, "FLOAT64", mode="NULLABLE") if f.name == "trip_seconds" else f for f in bq_schema()
    ]
    table = f"float_seconds_{uuid.uuid4().hex[:6]}"
    load_table(bigquery, table, b"".join(json.dumps(r).encode() + b"\n" for r in records), schema)
    code, summary = run(tmp_path, model_root, f"bq://{BQ_PROJECT}.raw.{table}", warehouse=warehouse)
    assert code == 0 and (summary["input_records"], summary["scored_records"], summary["rejected_records"]) == (
        50,
        48,
        2,
    )
    assert sorted(warehouse.rows("SELECT reason, column_name, detail, line_number FROM scoring_errors")) == [
        ("not_integer", "trip_seconds", "'480.5' is not a whole number", None),
        ("out_of_range", "trip_seconds", "'1e+30' is outside int64", None),
    ]


# ---------------------------------------------------------------- 4. header drift


def without(path, column: str, target) -> str:
    """The file without `column`, its keys made new (the same keys would be duplicates)."""
    header, rows = rows_of(path)
    i = header.index(column)
    rows = [[f"{column}-less-{r[0]}", *r[1:i], *r[i + 1 :]] for r in rows]
    return write_csv(target, header[:i] + header[i + 1 :], rows)


def test_a_file_missing_a_column_is_one_file_error_counting_its_records(model_root, tmp_path):
    [good] = write_partition(tmp_path / "in" / f"dt={DAY}", DAY, 100)
    without(good, "fare", tmp_path / "in" / f"dt={DAY}" / "no-fare.csv")
    without(good, "company", tmp_path / "in" / f"dt={DAY}" / "no-company.csv")
    pattern = str(tmp_path / "in" / "dt={date}" / "*.csv")

    code, summary = run(tmp_path / "refuse", model_root, pattern)
    assert code == 0 and summary["reconciled"]
    assert (summary["input_records"], summary["scored_records"], summary["rejected_records"]) == (300, 100, 200)
    assert summary["rejected_files"] == 2 and summary["missing_columns"] == {"company": 100, "fare": 100}
    errors = query(
        tmp_path / "refuse" / "w.duckdb",
        "SELECT reason, error_kind, column_name, records, detail FROM scoring_errors ORDER BY column_name",
    )
    assert [e[:4] for e in errors] == [
        ("missing_column", "file", "company", 100),
        ("missing_column", "file", "fare", 100),
    ]
    assert "--missing_nullable_columns null" in errors[0][4]

    code, summary = run(tmp_path / "null", model_root, pattern, "--missing_nullable_columns=null")
    assert code == 0 and (summary["scored_records"], summary["rejected_records"]) == (200, 100)
    assert summary["missing_columns"] == {"company": 100, "fare": 100}


# ---------------------------------------------------------------- 5. one answer per key


def test_duplicate_keys_get_one_answer_or_none(model_root, warehouse, tmp_path):
    [part] = write_partition(tmp_path / "in" / f"dt={DAY}", DAY, 100)
    header, rows = rows_of(part)
    write_csv(tmp_path / "in" / f"dt={DAY}" / "again.csv", header, rows[:30])  # delivered twice
    conflicting = [list(r) for r in rows[30:35]]
    for row in conflicting:
        row[header.index("fare")] = "99.5"  # same key, other content
    write_csv(tmp_path / "in" / f"dt={DAY}" / "conflict.csv", header, conflicting)

    code, summary = run(tmp_path, model_root, str(tmp_path / "in" / "dt={date}" / "*.csv"), warehouse=warehouse)
    assert code == 0 and summary["reconciled"]
    assert (summary["input_records"], summary["scored_records"], summary["rejected_records"]) == (135, 95, 10)
    assert summary["duplicates_dropped"] == 30
    assert summary["rejected_by_reason"] == {"duplicate_key": 10}  # resolved while publishing, read back
    keys = [r[0] for r in warehouse.rows("SELECT trip_id FROM predictions")]
    assert len(keys) == len(set(keys)) == 95
    assert not {r[0] for r in rows[30:35]} & set(keys)
    errors = warehouse.rows("SELECT reason, column_name, source, line_number, records FROM scoring_errors")
    assert len(errors) == 10 and {e[:2] for e in errors} == {("duplicate_key", "trip_id")}
    assert {(e[2].rsplit("/", 1)[-1], e[3]) for e in errors} == {
        *(("part-00000.csv", i) for i in range(32, 37)),
        *(("conflict.csv", i) for i in range(2, 7)),
    }
    [(dropped, files)] = warehouse.rows("SELECT duplicates_dropped, input_files FROM scoring_runs")
    assert dropped == 30 and json.loads(files)[str(tmp_path / "in" / f"dt={DAY}" / "again.csv")] == {
        "records": 30,
        "valid": 30,
        "rejected": 0,
    }


def test_the_audit_refuses_a_night_that_would_repeat_a_key():
    run_ = RunRecord(
        run_id="r", score_date=date(2026, 11, 23), model_name="m", model_version=1, input="x", started_at=datetime.now()
    )
    staged = StagedResults([("p", 2)], [], {"f": 2}, {"f": 2})
    found = StagedCounts(prediction_rows=2, champion=2, repeated_keys=1)
    with pytest.raises(AuditError, match="1 .model role, key. pairs would be published more than once"):
        check_staged(run_, staged, found, {})


# ---------------------------------------------------------------- 6. reason codes and the migration


def previous_release(table: TableSchema) -> TableSchema:
    """The table as the release before reason codes made it: the same DDL, without the added columns."""
    added = {"column_name", "detail", "records", "duplicates_dropped", "input_files"}
    added |= {"gates", "accepted_failures", "accepted_by", "heartbeat_at", "statistics"}  # and of later releases
    return TableSchema(table.name, tuple(f for f in table.fields if f.name not in added), table.description)


def test_a_warehouse_of_the_previous_release_is_migrated(model_root, warehouse, tmp_path):
    old = {t.name: previous_release(t) for t in (SCORING_ERRORS, SCORING_RUNS)}
    assert old["scoring_errors"].names[-1] == "recorded_at" and old["scoring_runs"].names[-1] == "options"
    contract = open_warehouse(warehouse.location, TAXI)
    contract._open(True)
    for table in schemas.warehouse_tables(TAXI):
        warehouse.drop(table.name, "table")
    for table in (schemas.predictions(TAXI), SCORING_ERRORS, SCORING_RUNS):  # the tables that release had
        contract._create_table(old.get(table.name, table))
    timestamp = contract.dialect.type_name(schemas.ColumnType.TIMESTAMP)
    warehouse.execute(
        "INSERT INTO scoring_errors (score_date, run_id, source, line_number, raw_record, reason, error_kind, "
        "recorded_at) VALUES (DATE '2026-11-20', 'old', 'a.csv', 3, 'x,y', 'malformed line: expected 19 fields, "
        f"found 2', 'record', CAST('2026-11-21 00:00:00+00' AS {timestamp}))"
    )
    [part] = write_partition(tmp_path / "in" / f"dt={DAY}", DAY, 50)
    with open(part, "a") as f:
        f.write("cut,short\n")
    code, summary = run(tmp_path, model_root, part, warehouse=warehouse)
    assert code == 0 and summary["rejected_records"] == 1
    for table in schemas.warehouse_tables(TAXI):
        assert [name for name, _ in warehouse.columns(table.name)] == table.names
    assert sorted(warehouse.rows("SELECT run_id, reason, column_name, detail, records FROM scoring_errors")) == [
        (summary["run_id"], "malformed_line", None, "expected 19 fields, found 2", 1),
        ("old", "malformed line: expected 19 fields, found 2", None, None, 1),
    ]


def test_every_reason_code_is_documented_in_the_readme():
    readme = open("README.md").read()
    section = readme[readme.index("## Every record is accounted for") :]
    section = section[: section.index("\n## ", 4)]
    for code in REASONS:
        assert f"| `{code}` |" in section, code


# ---------------------------------------------------------------- 7. declared ranges


def test_the_bundled_sample_loses_nothing_to_the_declared_ranges():
    table = read_as_text(SAMPLE)
    from pipelines.batches import RawBatch

    _, rejected = SchemaValidator(TRIPS.for_training()).validate(
        RawBatch(SAMPLE, table.combine_chunks().to_batches()[0])
    )
    assert rejected is None and table.num_rows == 15002


def test_values_outside_declared_ranges_are_rejected(model_root, tmp_path):
    [part] = write_partition(tmp_path / "in" / f"dt={DAY}", DAY, 20)
    header, rows = rows_of(part)
    rows[0][header.index("trip_start_hour")] = "24"
    rows[1][header.index("pickup_latitude")] = "48.8566"  # Paris
    rows[2][header.index("fare")] = "-3"
    write_csv(tmp_path / "in" / f"dt={DAY}" / "part-00000.csv", header, rows)
    code, summary = run(tmp_path, model_root, part)
    assert code == 0 and (summary["scored_records"], summary["rejected_records"]) == (17, 3)
    assert sorted(query(tmp_path / "w.duckdb", "SELECT column_name, detail, line_number FROM scoring_errors")) == [
        ("fare", "'-3' is below the declared minimum 0", 4),
        ("pickup_latitude", "'48.8566' is outside the declared range [41.6, 42.1]", 3),
        ("trip_start_hour", "'24' is outside the declared range [0, 23]", 2),
    ]
    assert summary["rejected_by_reason"] == {"out_of_range": 3}
