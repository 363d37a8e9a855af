"""Every source a night's records can come from scores them the same, and rejects bad input the same.

Google Cloud Storage and BigQuery are real API servers on loopback (gcp-storage-emulator, bqemulator),
reached through Beam's own gs:// filesystem and Google's clients, exactly as in production except for
the endpoints and credentials.
"""

import gzip
import io
import json

import pyarrow.csv as pacsv
import pytest
from google.cloud import bigquery as bq

from pipelines import score, train
from schemas.taxi import TRIPS
from tests.conftest import BQ_PROJECT, SAMPLE, query, write_partition
from tests.conftest import GCS_BUCKET as BUCKET
from tests.float32 import assert_same_scores

DAY = "2026-11-23"


def to_json_lines(csv_path: str) -> bytes:
    """The same records as newline-delimited JSON, typed, with missing values left out."""
    table = pacsv.read_csv(
        csv_path,
        convert_options=pacsv.ConvertOptions(column_types={c.name: c.type.arrow for c in TRIPS.columns}),
    )
    return b"".join(
        json.dumps({k: v for k, v in row.items() if v is not None}).encode() + b"\n" for row in table.to_pylist()
    )


def bq_schema(extra: tuple = ()) -> list:
    return [bq.SchemaField(c.name, c.type.value, mode="NULLABLE") for c in TRIPS.columns] + list(extra)


def load_table(client, table: str, json_lines: bytes, schema: list) -> None:
    client.create_dataset("raw", exists_ok=True)
    client.create_table(bq.Table(f"{BQ_PROJECT}.raw.{table}", schema=schema), exists_ok=True)
    client.load_table_from_file(
        io.BytesIO(json_lines),
        f"{BQ_PROJECT}.raw.{table}",
        job_config=bq.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON", schema=schema),
    ).result()


@pytest.fixture(scope="module")
def sources(tmp_path_factory, gcs, bigquery):
    """One day's 600 records in every supported form (and, in BigQuery, another day's beside them)."""
    tmp = tmp_path_factory.mktemp("sources")
    [part_a, part_b] = write_partition(tmp / "csv", DAY, 600, rows_per_file=300)
    [other_day] = write_partition(tmp / "other", "2026-11-22", 100)
    load_table(bigquery, "trips", b"".join(to_json_lines(p) for p in (part_a, part_b, other_day)), bq_schema())
    query_file = tmp / "trips_of_day.sql"
    query_file.write_text("SELECT * FROM raw.trips\nWHERE DATE(TIMESTAMP_SECONDS(trip_start_timestamp)) = @date\n")
    paths = {"csv": str(tmp / "csv" / "*.csv")}
    (tmp / "json").mkdir()
    (tmp / "gz").mkdir()
    for i, part in enumerate((part_a, part_b)):
        (tmp / "json" / f"part-{i}.jsonl").write_bytes(to_json_lines(part))
        (tmp / "gz" / f"part-{i}.csv.gz").write_bytes(gzip.compress(open(part, "rb").read()))
        gcs.blob(f"csv/dt={DAY}/part-{i}.csv").upload_from_filename(part)
        gcs.blob(f"json/dt={DAY}/part-{i}.json.gz").upload_from_string(gzip.compress(to_json_lines(part)))
    paths.update(
        {
            "json": str(tmp / "json" / "*.jsonl"),
            "gzip_csv": str(tmp / "gz" / "*.csv.gz"),
            "gcs_csv": f"gs://{BUCKET}/csv/dt={{date}}/*.csv",
            "gcs_json": f"gs://{BUCKET}/json/dt={{date}}/*.json.gz",
            "bigquery_table": f"bq://{BQ_PROJECT}.raw.trips",
            "bigquery_query": str(query_file),
        }
    )
    return paths


def run_score(tmp_path, model_root, input_path, *extra):
    return score.run(
        [
            f"--date={DAY}",
            f"--input={input_path}",
            f"--model_root={model_root}",
            f"--warehouse={tmp_path}/w.duckdb",
            "--create_dataset",
            "--no_auth",
            f"--bq_project={BQ_PROJECT}",
            "--max_rejected_fraction=1",  # damaged on purpose; tests/test_gates.py gates such nights
            *extra,
        ]
    )


def scores(tmp_path) -> dict[str, float]:
    return dict(query(tmp_path / "w.duckdb", "SELECT trip_id, probability FROM predictions"))


def test_every_source_gives_the_same_predictions(model_root, sources, tmp_path):
    results = {}
    for name, path in sources.items():
        out = tmp_path / name
        summary = run_score(out, model_root, path)
        assert (summary["input_records"], summary["scored_records"], summary["rejected_records"]) == (600, 600, 0), name
        results[name] = scores(out)
    reference = results.pop("csv")
    assert len(reference) == 600
    for name, got in results.items():
        assert_same_scores(got, reference, name)


def write_json(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def good_record(i: int) -> dict:
    return {
        "trip_id": f"j{i}",
        "fare": 12.5,
        "trip_start_month": 11,
        "trip_start_hour": 8,
        "trip_start_day": 2,
        "trip_start_timestamp": 1795446000,
        "trip_miles": 1.5,
        "payment_type": "Cash",
        "company": "Flash Cab",
    }


def test_bad_json_records_are_rejected_with_reasons(model_root, tmp_path):
    day = tmp_path / "in" / f"dt={DAY}"
    day.mkdir(parents=True)
    write_json(
        day / "a.jsonl",
        [
            good_record(1),
            '{"trip_id": "broken", "fare": ',
            {**good_record(2), "fare": "twelve"},
            {**good_record(3), "trip_miles": None},
            "[1, 2, 3]",
            {k: v for k, v in good_record(4).items() if k != "payment_type"},
            {**good_record(5), "trip_seconds": 5.5},
            good_record(6),
        ],
    )
    (day / "empty.json").write_text("")
    summary = run_score(tmp_path, model_root, str(tmp_path / "in" / "dt={date}" / "*"))
    assert (summary["input_records"], summary["scored_records"], summary["rejected_records"]) == (8, 2, 6)
    assert summary["rejected_files"] == 1 and summary["reconciled"]
    errors = query(
        tmp_path / "w.duckdb",
        "SELECT reason, line_number, column_name, detail, raw_record FROM scoring_errors "
        "WHERE error_kind = 'record' ORDER BY line_number",
    )
    assert [e[:4] for e in errors] == [
        ("malformed_json", 2, None, "Expecting value: line 1 column 31 (char 30)"),
        ("wrong_type", 3, "fare", "'twelve' is not FLOAT64"),
        ("missing_required", 4, "trip_miles", "no value"),
        ("malformed_json", 5, None, "a record must be an object, not list"),
        ("missing_required", 6, "payment_type", "no value"),
        ("not_integer", 7, "trip_seconds", "'5.5' is not a whole number"),
    ]
    assert errors[0][4] == '{"trip_id": "broken", "fare": '
    assert json.loads(errors[1][4])["trip_id"] == "j2"
    assert sorted(scores(tmp_path)) == ["j1", "j6"]
    assert query(tmp_path / "w.duckdb", "SELECT reason FROM scoring_errors WHERE error_kind = 'file'") == [
        ("empty_file",)
    ]


@pytest.mark.parametrize("policy, scored, rejected", [("keep", 3, 0), ("reject", 1, 2)])
def test_unknown_columns_are_kept_or_rejected_and_counted(model_root, tmp_path, policy, scored, rejected):
    day = tmp_path / "in" / f"dt={DAY}"
    day.mkdir(parents=True)
    write_json(
        day / "a.json",
        [good_record(1), {**good_record(2), "driver": "x"}, {**good_record(3), "driver": "y", "rating": 5}],
    )
    summary = run_score(
        tmp_path, model_root, str(tmp_path / "in" / "dt={date}" / "*.json"), f"--unknown_columns={policy}"
    )
    assert (summary["scored_records"], summary["rejected_records"]) == (scored, rejected)
    assert summary["unknown_columns"] == {"driver": 2, "rating": 1}
    if policy == "reject":
        assert set(query(tmp_path / "w.duckdb", "SELECT reason, column_name FROM scoring_errors")) == {
            ("unknown_column", "driver, rating")
        }


def test_unknown_csv_columns_follow_the_same_policy(model_root, tmp_path):
    [path] = write_partition(tmp_path / "in" / f"dt={DAY}", DAY, 20)
    lines = open(path).read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join([lines[0] + ",driver"] + [line + ",d" for line in lines[1:]]) + "\n")
    kept = run_score(tmp_path / "keep", model_root, str(tmp_path / "in" / "dt={date}" / "*.csv"))
    assert (kept["scored_records"], kept["unknown_columns"]) == (20, {"driver": 20})
    summary = tmp_path / "reject.json"
    with pytest.raises(score.Refused, match="scorable_records: 0 records scored"):  # every record rejected
        run_score(
            tmp_path / "reject",
            model_root,
            str(tmp_path / "in" / "dt={date}" / "*.csv"),
            "--unknown_columns=reject",
            f"--summary_json={summary}",
        )
    refused = json.loads(summary.read_text())
    assert (refused["scored_records"], refused["rejected_records"], refused["reconciled"]) == (0, 20, True)
    assert refused["rejected_by_reason"] == {"unknown_column": 20}


def test_missing_gcs_input_is_a_clear_error_and_writes_nothing(model_root, sources, tmp_path, capsys):
    code = score.main(
        [
            "--date=2026-11-20",
            f"--input=gs://{BUCKET}/csv/dt={{date}}/*.csv",
            f"--model_root={model_root}",
            f"--warehouse={tmp_path}/w.duckdb",
            "--create_dataset",
            "--no_auth",
        ]
    )
    assert code == 2
    assert "no input files for date 2026-11-20" in capsys.readouterr().err
    assert not (tmp_path / "w.duckdb").exists()


def test_unknown_format_fails_before_reading(model_root, tmp_path, capsys):
    day = tmp_path / "in" / f"dt={DAY}"
    day.mkdir(parents=True)
    (day / "trips.parquet").write_bytes(b"PAR1")
    code = score.main(
        [
            f"--date={DAY}",
            f"--input={tmp_path}/in/dt={{date}}/*",
            f"--model_root={model_root}",
            f"--warehouse={tmp_path}/w.duckdb",
            "--create_dataset",
        ]
    )
    assert code == 2 and "pass --input_format csv or json" in capsys.readouterr().err


def test_training_reads_a_date_range_from_gcs_json(sources, gcs, tmp_path):
    for day in ("2026-11-21", "2026-11-22"):
        gcs.blob(f"train/dt={day}/trips.json").upload_from_string(to_json_lines(SAMPLE))
    result = train.run(
        [
            f"--input=gs://{BUCKET}/train/dt={{date}}/*.json",
            "--start_date=2026-11-20",
            "--end_date=2026-11-22",
            f"--model_root={tmp_path}/models",
            f"--work_dir={tmp_path}/work",
            "--epochs=1",
            "--no_auth",
        ]
    )
    meta = result.version.metadata
    assert meta["training_records"] + meta["eval_records"] == 2 * 15002 and meta["rejected_records"] == 0


def test_bad_bigquery_rows_are_rejected_with_reasons(model_root, bigquery, tmp_path):
    rows = [
        good_record(1),
        {**good_record(2), "fare": None},
        {**good_record(3), "trip_miles": float("nan")},
        {**good_record(4), "driver": "x"},
        {**good_record(5), "trip_start_timestamp": 1795446000 - 86400},
    ]
    data = b"".join(json.dumps(r).replace("NaN", '"NaN"').encode() + b"\n" for r in rows)
    load_table(bigquery, "dirty", data, bq_schema(extra=(bq.SchemaField("driver", "STRING"),)))
    summary = run_score(tmp_path, model_root, f"bq://{BQ_PROJECT}.raw.dirty", "--unknown_columns=reject")
    # The row of another day never left BigQuery: the date filter is pushed down.
    assert (summary["input_records"], summary["scored_records"], summary["rejected_records"]) == (4, 1, 3)
    assert summary["unknown_columns"] == {"driver": 1}
    reasons = sorted(query(tmp_path / "w.duckdb", "SELECT reason, column_name, line_number FROM scoring_errors"))
    assert reasons == [
        ("missing_required", "fare", None),
        ("non_finite", "trip_miles", None),
        ("unknown_column", "driver", None),
    ]
    [(source, raw)] = query(
        tmp_path / "w.duckdb", "SELECT source, raw_record FROM scoring_errors WHERE reason = 'missing_required'"
    )
    assert source == f"bq://{BQ_PROJECT}.raw.dirty" and json.loads(raw)["trip_id"] == "j2"


@pytest.mark.parametrize(
    "table, schema, message",
    [
        ("absent", None, "does not exist"),
        ("retyped", "fare:STRING", "fare is STRING in BigQuery but FLOAT64 in schemas/"),
        ("lacking", "-payment_type", "required column payment_type is missing"),
    ],
)
def test_bad_bigquery_configuration_fails_before_reading(
    model_root, bigquery, tmp_path, capsys, table, schema, message
):
    if schema:
        fields = bq_schema()
        if schema.startswith("-"):
            fields = [f for f in fields if f.name != schema[1:]]
        else:
            name, kind = schema.split(":")
            fields = [bq.SchemaField(name, kind) if f.name == name else f for f in fields]
        bigquery.create_dataset("raw", exists_ok=True)
        bigquery.create_table(bq.Table(f"{BQ_PROJECT}.raw.{table}", schema=fields), exists_ok=True)
    code = score.main(
        [
            f"--date={DAY}",
            f"--input=bq://{BQ_PROJECT}.raw.{table}",
            f"--model_root={model_root}",
            f"--warehouse={tmp_path}/w.duckdb",
            "--create_dataset",
        ]
    )
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "w.duckdb").exists()


def test_a_bigquery_date_without_rows_is_a_clear_error(model_root, sources, tmp_path, capsys):
    code = score.main(
        [
            "--date=2026-11-01",
            f"--input=bq://{BQ_PROJECT}.raw.trips",
            f"--model_root={model_root}",
            f"--warehouse={tmp_path}/w.duckdb",
            "--create_dataset",
        ]
    )
    assert code == 2 and "no input rows for date 2026-11-01" in capsys.readouterr().err
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.parametrize("location", ["bq://not a table", "bq://proj.dataset"])
def test_malformed_table_names_are_refused(model_root, tmp_path, capsys, location):
    code = score.main(
        [
            f"--date={DAY}",
            f"--input={location}",
            f"--model_root={model_root}",
            f"--warehouse={tmp_path}/w.duckdb",
            "--create_dataset",
        ]
    )
    assert code == 2 and "expected bq://project.dataset.table" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["gzip", "gcs_csv", "gcs_json"])
def test_bad_records_are_rejected_the_same_from_every_file_source(model_root, gcs, tmp_path, where):
    [path] = write_partition(tmp_path / "plain", DAY, 30)
    lines = open(path).read().splitlines()
    first = lines[1].split(",")
    bad = [
        ",".join(["bad-type"] + first[1:2] + ["12x"] + first[3:]),
        ",".join(["no-fare"] + first[1:2] + [""] + first[3:]),
    ]
    text = "\n".join(lines + bad + ["cut,short"]) + "\n"
    if where == "gcs_json":
        typed = "".join(json.dumps(good_record(i)) + "\n" for i in range(30))
        data = (
            typed
            + json.dumps({**good_record(90), "fare": "12x"})
            + "\n"
            + json.dumps({**good_record(91), "fare": None})
            + "\n"
            + '{"cut": \n'
        ).encode()
        gcs.blob(f"bad/json/dt={DAY}/a.json").upload_from_string(data)
        gcs.blob(f"bad/json/dt={DAY}/empty.json").upload_from_string(b"")
        location = f"gs://{BUCKET}/bad/json/dt={{date}}/*.json"
    elif where == "gcs_csv":
        gcs.blob(f"bad/csv/dt={DAY}/a.csv").upload_from_string(text.encode())
        gcs.blob(f"bad/csv/dt={DAY}/empty.csv").upload_from_string(b"")
        location = f"gs://{BUCKET}/bad/csv/dt={{date}}/*.csv"
    else:
        (tmp_path / "gz").mkdir()
        (tmp_path / "gz" / "a.csv.gz").write_bytes(gzip.compress(text.encode()))
        (tmp_path / "gz" / "empty.csv.gz").write_bytes(gzip.compress(b""))
        location = str(tmp_path / "gz" / "*.csv.gz")
    summary = run_score(tmp_path, model_root, location)
    assert (
        summary["input_records"],
        summary["scored_records"],
        summary["rejected_records"],
        summary["rejected_files"],
        summary["reconciled"],
    ) == (33, 30, 3, 1, True)
    reasons = sorted(r[0] for r in query(tmp_path / "w.duckdb", "SELECT reason FROM scoring_errors"))
    assert reasons == sorted(
        ["empty_file", "missing_required", "wrong_type", "malformed_json" if where == "gcs_json" else "malformed_line"]
    )


def test_a_range_over_bigquery_reads_each_night_apart(model_root, sources, tmp_path):
    """Two nights of one table in one job: a read session per night, each night its own run and count."""
    table = f"bq://{BQ_PROJECT}.raw.trips"
    summary = score.run(
        [
            "--start_date=2026-11-22",
            f"--end_date={DAY}",
            f"--input={table}",
            f"--model_root={model_root}",
            f"--warehouse={tmp_path}/w.duckdb",
            "--create_dataset",
            "--no_auth",
            f"--bq_project={BQ_PROJECT}",
            "--max_volume_ratio=100",  # 100 records, then 600: not what this test is about
        ]
    )
    nights = [(n["date"], n["status"], n["input_records"], n["scored_records"]) for n in summary["nights"]]
    assert nights == [("2026-11-22", "succeeded", 100, 100), (DAY, "succeeded", 600, 600)]
    counted = [{source: files["records"] for source, files in n["input_files"].items()} for n in summary["nights"]]
    assert counted == [{f"{table}@2026-11-22": 100}, {f"{table}@{DAY}": 600}]
    published = query(tmp_path / "w.duckdb", "SELECT score_date, count(*) FROM predictions GROUP BY 1 ORDER BY 1")
    assert [(str(d), n) for d, n in published] == [("2026-11-22", 100), (DAY, 600)]
