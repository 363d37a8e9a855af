"""BigQuery as the warehouse, against a real BigQuery API server (bqemulator) on loopback.

Results are read back with the real google-cloud-bigquery client, as an analyst's tools would.
"""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.cloud import bigquery as bq

import schemas
from pipelines import score
from pipelines.warehouse import AuditError, RunRecord, StagedResults
from pipelines.warehouse_bigquery import BigQueryWarehouse
from scripts import setup_bigquery
from tests.conftest import BQ_PROJECT, REPO, write_partition

DAY = "2026-11-23"


@pytest.fixture()
def dataset(bigquery):
    name = f"scores_{uuid.uuid4().hex[:8]}"
    setup_bigquery.setup(BQ_PROJECT, name)
    return name


def args(tmp_path, model_root, dataset, day=DAY, *extra):
    return [
        f"--date={day}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        f"--warehouse=bq://{BQ_PROJECT}.{dataset}",
        f"--staging_dir={tmp_path}/staging",
        *extra,
    ]


def rows(client, dataset, sql, **params):
    config = bq.QueryJobConfig(
        default_dataset=f"{BQ_PROJECT}.{dataset}",
        query_parameters=[
            bq.ScalarQueryParameter(k, "DATE" if isinstance(v, date) else "STRING", v) for k, v in params.items()
        ],
    )
    return [tuple(r.values()) for r in client.query(sql, job_config=config).result()]


def night(client, dataset, day=DAY):
    return rows(
        client,
        dataset,
        "SELECT trip_id, probability, label, run_id FROM predictions WHERE score_date = @d ORDER BY trip_id",
        d=date.fromisoformat(day),
    )


def test_scores_a_date_into_bigquery(trained, model_root, dataset, bigquery, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 800)
    summary = score.run(args(tmp_path, model_root, dataset))
    got = night(bigquery, dataset)
    assert len(got) == 800 and len({r[0] for r in got}) == 800
    assert all(0 <= p <= 1 and label == (p >= trained.version.threshold) for _, p, label, _ in got)
    assert {r[3] for r in got} == {summary["run_id"]}
    assert (summary["status"], summary["input_records"], summary["scored_records"]) == ("succeeded", 800, 800)
    table = bigquery.get_table(f"{BQ_PROJECT}.{dataset}.predictions")
    assert table.time_partitioning.field == "score_date" and table.clustering_fields == ["model_role", "trip_id"]
    assert {f.name: f.description for f in table.schema} == {f.name: f.description for f in schemas.PREDICTIONS.fields}
    # Staging tables are gone once published.
    assert [t.table_id for t in bigquery.list_tables(f"{BQ_PROJECT}.{dataset}") if t.table_id.startswith("_")] == []


def test_rerunning_a_date_replaces_it(model_root, dataset, bigquery, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 300)
    write_partition(tmp_path / "trips" / "dt=2026-11-22", "2026-11-22", 100)
    score.run(args(tmp_path, model_root, dataset, "2026-11-22"))
    score.run(args(tmp_path, model_root, dataset))
    second = score.run(args(tmp_path, model_root, dataset))
    got = night(bigquery, dataset)
    assert len(got) == 300 and {r[3] for r in got} == {second["run_id"]}
    assert len(night(bigquery, dataset, "2026-11-22")) == 100


def _start(tmp_path, model_root, dataset, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.score", *args(tmp_path, model_root, dataset, DAY, *extra)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_run_stopped_after_staging_leaves_the_night_and_says_failed(model_root, dataset, bigquery, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 200)
    good = score.run(args(tmp_path, model_root, dataset))
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 300_000, rows_per_file=50_000)
    proc = _start(tmp_path, model_root, dataset, "--block_bytes=65536", "--batch_size=2048")
    deadline = time.monotonic() + 120
    while not list((tmp_path / "staging").glob("*/predictions/*.parquet")):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "nothing staged in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    got = night(bigquery, dataset)
    assert len(got) == 200 and {r[3] for r in got} == {good["run_id"]}
    statuses = rows(bigquery, dataset, "SELECT status, error FROM scoring_runs ORDER BY started_at")
    assert [s for s, _ in statuses] == ["succeeded", "failed"] and "terminated by signal 15" in statuses[1][1]


def test_overlapping_runs_end_with_one_runs_rows(model_root, dataset, bigquery, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 5000, rows_per_file=1000)
    procs = [_start(tmp_path, model_root, dataset) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    got = night(bigquery, dataset)
    assert len(got) == 5000 and len({r[0] for r in got}) == 5000 and len({r[3] for r in got}) == 1
    runs = rows(bigquery, dataset, "SELECT status FROM scoring_runs")
    assert sorted(s for (s,) in runs) == ["succeeded", "succeeded"]


def test_a_failed_audit_publishes_nothing(model_root, dataset, bigquery, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 100)
    good = score.run(args(tmp_path, model_root, dataset))
    warehouse = BigQueryWarehouse(f"bq://{BQ_PROJECT}.{dataset}")
    run = RunRecord("bad-run", date(2026, 11, 23), "taxi_tipper", 1, "x", datetime.now(timezone.utc))
    warehouse.prepare(run)
    staged = tmp_path / "bad.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "score_date": date(2026, 11, 23),
                    "trip_id": "t",
                    "probability": 1.5,
                    "label": True,
                    "threshold": 0.5,
                    "model_name": "taxi_tipper",
                    "model_version": 1,
                    "model_role": "champion",
                    "run_id": "bad-run",
                    "scored_at": datetime.now(timezone.utc),
                }
            ],
            schema=schemas.PREDICTIONS.arrow_schema,
        ),
        staged,
    )
    with pytest.raises(AuditError, match=r"outside \[0, 1\].*input 5 != scored 1"):
        warehouse.publish(run, StagedResults([(str(staged), 1)], [], 5), datetime.now(timezone.utc))
    got = night(bigquery, dataset)
    assert len(got) == 100 and {r[3] for r in got} == {good["run_id"]}


def test_bad_configuration_fails_before_anything_is_written(model_root, bigquery, tmp_path, capsys):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 10)
    base = [a for a in args(tmp_path, model_root, "unused") if not a.startswith("--warehouse")]
    missing = f"absent_{uuid.uuid4().hex[:8]}"
    for warehouse, extra, message in [
        ("bq://test.has-dash", [], "is not a BigQuery dataset: expected bq://project.dataset"),
        ("bq://Test.scores", [], "is not a BigQuery dataset"),
        (f"bq://{BQ_PROJECT}.{missing}", [], f"dataset {BQ_PROJECT}.{missing} does not exist"),
        (f"bq://{BQ_PROJECT}.{missing}", ["--date=2026-13-01"], "not a real date"),
    ]:
        assert score.main(base + [f"--warehouse={warehouse}"] + extra) == 2
        assert message in capsys.readouterr().err
    assert missing not in [d.dataset_id for d in bigquery.list_datasets()]
    assert not (tmp_path / "staging").exists()

    # A table that drifted from schemas/ is refused before any data is read.
    drifted = f"drifted_{uuid.uuid4().hex[:8]}"
    bigquery.create_dataset(drifted)
    bigquery.create_table(
        bq.Table(
            f"{BQ_PROJECT}.{drifted}.predictions",
            schema=[
                bq.SchemaField("score_date", "DATE"),
                bq.SchemaField("trip_id", "STRING"),
                bq.SchemaField("score", "FLOAT64"),
            ],
        )
    )
    assert score.main(base + [f"--warehouse=bq://{BQ_PROJECT}.{drifted}"]) == 2
    assert "predictions does not match schemas/" in capsys.readouterr().err
    assert rows(bigquery, drifted, "SELECT COUNT(*) FROM predictions") == [(0,)]

    # --create_dataset creates what is missing.
    created = f"created_{uuid.uuid4().hex[:8]}"
    assert score.main(base + [f"--warehouse=bq://{BQ_PROJECT}.{created}", "--create_dataset"]) == 0
    assert len(night(bigquery, created)) == 10


def analyst_queries() -> dict[str, str]:
    text = open(os.path.join(REPO, "scripts", "analyst_queries.sql")).read()
    return {m[0]: m[1].strip().rstrip(";") for m in re.findall(r"-- name: (\w+)\n(.*?;)", text, re.S)}


def test_views_and_every_example_query(model_root, dataset, bigquery, tmp_path):
    [path] = write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 400)
    with open(path, "a") as f:
        f.write("broken,line\n")
    write_partition(tmp_path / "trips" / "dt=2026-11-22", "2026-11-22", 150)
    score.run(args(tmp_path, model_root, dataset, "2026-11-22"))
    score.run(args(tmp_path, model_root, dataset))
    queries = analyst_queries()
    assert set(queries) == {"top_tippers", "daily_summary", "latest_scores", "reconciliation", "rejections"}
    d = date.fromisoformat(DAY)

    top = rows(bigquery, dataset, queries["top_tippers"], date=d)
    labelled = rows(bigquery, dataset, "SELECT COUNT(*) FROM predictions WHERE score_date = @d AND label", d=d)[0][0]
    assert len(top) == min(20, labelled) > 0 and [p for _, p in top] == sorted((p for _, p in top), reverse=True)

    summary = rows(bigquery, dataset, queries["daily_summary"])
    assert [(str(r[0]), r[2]) for r in summary] == [("2026-11-22", 150), (DAY, 400)]
    shares = rows(
        bigquery,
        dataset,
        "SELECT score_date, AVG(CASE WHEN label THEN 1 ELSE 0 END) FROM predictions "
        "GROUP BY score_date ORDER BY score_date",
    )
    assert [r[4] for r in summary] == [pytest.approx(s, abs=1e-4) for _, s in shares]

    trips, big_tippers = rows(bigquery, dataset, queries["latest_scores"])[0]
    assert trips == 550 and 0 < big_tippers < trips  # keys carry their night, so none repeats

    assert rows(bigquery, dataset, queries["reconciliation"]) == [
        (date(2026, 11, 22), 150, 150, 0, True),
        (d, 401, 400, 1, True),
    ]
    assert rows(bigquery, dataset, queries["rejections"], date=d) == [
        ("malformed line: expected 19 fields, found 2", "record", 1)
    ]
