"""Every source a night's records can come from scores them the same, and rejects bad input the same.

Google Cloud Storage is a real API server (gcp-storage-emulator) on loopback, reached through
Beam's own gs:// filesystem, exactly as on Dataflow except for the endpoint and credentials.
"""
import gzip
import json
import os
import socket
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

import schemas
from pipelines import score, train
from tests.conftest import SAMPLE, query, write_partition

DAY = "2026-11-23"
BUCKET = "nightly-trips"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs():
    """A GCS API server on loopback for this module; Beam and google-cloud-storage both use it."""
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator")
    proc = subprocess.Popen([exe, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                             "--default-bucket", BUCKET, "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "GCS emulator did not start"
            time.sleep(0.1)
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    try:
        yield storage.Client(project="test", credentials=AnonymousCredentials()).bucket(BUCKET)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous


def to_json_lines(csv_path: str) -> bytes:
    """The same records as newline-delimited JSON, typed, with missing values left out."""
    table = pacsv.read_csv(csv_path, convert_options=pacsv.ConvertOptions(
        column_types={c.name: c.type.arrow for c in schemas.INPUT.columns}))
    return b"".join(json.dumps({k: v for k, v in row.items() if v is not None}).encode() + b"\n"
                    for row in table.to_pylist())


@pytest.fixture(scope="module")
def sources(tmp_path_factory, gcs):
    """One day's 600 records in every supported form."""
    tmp = tmp_path_factory.mktemp("sources")
    [part_a, part_b] = write_partition(tmp / "csv", DAY, 600, rows_per_file=300)
    paths = {"csv": str(tmp / "csv" / "*.csv")}
    (tmp / "json").mkdir()
    (tmp / "gz").mkdir()
    for i, part in enumerate((part_a, part_b)):
        (tmp / "json" / f"part-{i}.jsonl").write_bytes(to_json_lines(part))
        (tmp / "gz" / f"part-{i}.csv.gz").write_bytes(gzip.compress(open(part, "rb").read()))
        gcs.blob(f"csv/dt={DAY}/part-{i}.csv").upload_from_filename(part)
        gcs.blob(f"json/dt={DAY}/part-{i}.json.gz").upload_from_string(gzip.compress(to_json_lines(part)))
    paths.update({"json": str(tmp / "json" / "*.jsonl"), "gzip_csv": str(tmp / "gz" / "*.csv.gz"),
                  "gcs_csv": f"gs://{BUCKET}/csv/dt={{date}}/*.csv",
                  "gcs_json": f"gs://{BUCKET}/json/dt={{date}}/*.json.gz"})
    return paths


def run_score(tmp_path, model_root, input_path, *extra):
    return score.run([f"--date={DAY}", f"--input={input_path}", f"--model_root={model_root}",
                      f"--warehouse={tmp_path}/w.duckdb", "--no_auth", *extra])


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
        assert got.keys() == reference.keys(), name
        assert max(abs(got[k] - reference[k]) for k in reference) < 1e-6, name


def write_json(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def good_record(i: int) -> dict:
    return {"trip_id": f"j{i}", "fare": 12.5, "trip_start_month": 11, "trip_start_hour": 8, "trip_start_day": 2,
            "trip_start_timestamp": 1795446000, "trip_miles": 1.5, "payment_type": "Cash", "company": "Flash Cab"}


def test_bad_json_records_are_rejected_with_reasons(model_root, tmp_path):
    day = tmp_path / "in" / f"dt={DAY}"
    day.mkdir(parents=True)
    write_json(day / "a.jsonl", [
        good_record(1),
        '{"trip_id": "broken", "fare": ',
        {**good_record(2), "fare": "twelve"},
        {**good_record(3), "trip_miles": None},
        "[1, 2, 3]",
        {k: v for k, v in good_record(4).items() if k != "payment_type"},
        {**good_record(5), "trip_seconds": 5.5},
        good_record(6),
    ])
    (day / "empty.json").write_text("")
    summary = run_score(tmp_path, model_root, str(tmp_path / "in" / "dt={date}" / "*"))
    assert (summary["input_records"], summary["scored_records"], summary["rejected_records"]) == (8, 2, 6)
    assert summary["rejected_files"] == 1 and summary["reconciled"]
    errors = query(tmp_path / "w.duckdb", "SELECT reason, line_number, raw_record FROM scoring_errors "
                   "WHERE error_kind = 'record' ORDER BY reason")
    reasons = [e[0] for e in errors]
    assert reasons == sorted([
        "malformed JSON: Expecting value: line 1 column 31 (char 30)",
        "wrong type: fare is not FLOAT64: 'twelve'",
        "missing required field: trip_miles",
        "malformed JSON: a record must be an object, not list",
        "missing required field: payment_type",
        "wrong type: trip_seconds is not INT64: '5.5'",
    ])
    malformed = [e for e in errors if e[0].startswith("malformed JSON: Expecting")][0]
    assert malformed[1:] == (2, '{"trip_id": "broken", "fare": ')
    assert json.loads([e for e in errors if "twelve" in e[0]][0][2])["trip_id"] == "j2"
    assert sorted(scores(tmp_path)) == ["j1", "j6"]
    assert query(tmp_path / "w.duckdb", "SELECT reason FROM scoring_errors WHERE error_kind = 'file'") == [
        ("empty file: no records",)]


@pytest.mark.parametrize("policy, scored, rejected", [("keep", 3, 0), ("reject", 1, 2)])
def test_unknown_columns_are_kept_or_rejected_and_counted(model_root, tmp_path, policy, scored, rejected):
    day = tmp_path / "in" / f"dt={DAY}"
    day.mkdir(parents=True)
    write_json(day / "a.json", [good_record(1), {**good_record(2), "driver": "x"},
                                {**good_record(3), "driver": "y", "rating": 5}])
    summary = run_score(tmp_path, model_root, str(tmp_path / "in" / "dt={date}" / "*.json"),
                        f"--unknown_columns={policy}")
    assert (summary["scored_records"], summary["rejected_records"]) == (scored, rejected)
    assert summary["unknown_columns"] == {"driver": 2, "rating": 1}
    if policy == "reject":
        assert {r[0] for r in query(tmp_path / "w.duckdb", "SELECT reason FROM scoring_errors")} == {
            "unknown column(s): driver, rating (--unknown_columns=reject)"}


def test_unknown_csv_columns_follow_the_same_policy(model_root, tmp_path):
    [path] = write_partition(tmp_path / "in" / f"dt={DAY}", DAY, 20)
    lines = open(path).read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join([lines[0] + ",driver"] + [line + ",d" for line in lines[1:]]) + "\n")
    kept = run_score(tmp_path / "keep", model_root, str(tmp_path / "in" / "dt={date}" / "*.csv"))
    assert (kept["scored_records"], kept["unknown_columns"]) == (20, {"driver": 20})
    refused = run_score(tmp_path / "reject", model_root, str(tmp_path / "in" / "dt={date}" / "*.csv"),
                        "--unknown_columns=reject")
    assert (refused["scored_records"], refused["rejected_records"], refused["reconciled"]) == (0, 20, True)


def test_missing_gcs_input_is_a_clear_error_and_writes_nothing(model_root, sources, tmp_path, capsys):
    code = score.main([f"--date=2026-11-20", f"--input=gs://{BUCKET}/csv/dt={{date}}/*.csv",
                       f"--model_root={model_root}", f"--warehouse={tmp_path}/w.duckdb", "--no_auth"])
    assert code == 2
    assert "no input files for date 2026-11-20" in capsys.readouterr().err
    assert not (tmp_path / "w.duckdb").exists()


def test_unknown_format_fails_before_reading(model_root, tmp_path, capsys):
    day = tmp_path / "in" / f"dt={DAY}"
    day.mkdir(parents=True)
    (day / "trips.parquet").write_bytes(b"PAR1")
    code = score.main([f"--date={DAY}", f"--input={tmp_path}/in/dt={{date}}/*", f"--model_root={model_root}",
                       f"--warehouse={tmp_path}/w.duckdb"])
    assert code == 2 and "pass --input_format csv or json" in capsys.readouterr().err


def test_training_reads_a_date_range_from_gcs_json(sources, gcs, tmp_path):
    for day in ("2026-11-21", "2026-11-22"):
        gcs.blob(f"train/dt={day}/trips.json").upload_from_string(to_json_lines(SAMPLE))
    result = train.run([f"--input=gs://{BUCKET}/train/dt={{date}}/*.json", "--start_date=2026-11-20",
                        "--end_date=2026-11-22", f"--model_root={tmp_path}/models", f"--work_dir={tmp_path}/work",
                        "--epochs=1", "--no_auth"])
    meta = result.version.metadata
    assert meta["training_records"] + meta["eval_records"] == 2 * 15002 and meta["rejected_records"] == 0
