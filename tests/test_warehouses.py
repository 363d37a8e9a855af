"""Every warehouse keeps the same promises: each scenario runs against DuckDB and against BigQuery.

BigQuery is a real BigQuery API server (bqemulator) on loopback. Results are read back as analysts
read them: with DuckDB's own client, and with the real google-cloud-bigquery client.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.cloud import bigquery as bq

import schemas
from pipelines import score
from pipelines.warehouses import (
    AuditError,
    GateLimits,
    PublishingStopped,
    RunRecord,
    StagedResults,
    Warehouse,
    WarehouseConfigError,
    open_warehouse,
)
from schemas.taxi import USE_CASE as TAXI
from tests.conftest import BQ_PROJECT, REPO, BigQueryUnderTest, query, write_partition

DAY = "2026-11-23"
TABLES = schemas.warehouse_tables(TAXI)


def score_args(tmp_path, model_root, warehouse, day=DAY, *extra):
    return [
        f"--date={day}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        *warehouse.args,
        *extra,
    ]


def night(warehouse, day=DAY):
    return warehouse.rows(
        "SELECT trip_id, probability, label, run_id FROM predictions WHERE score_date = ? ORDER BY trip_id",
        date.fromisoformat(day),
    )


def statuses(warehouse):
    return warehouse.rows("SELECT status, error FROM scoring_runs ORDER BY started_at")


def start(tmp_path, model_root, warehouse, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.score", *score_args(tmp_path, model_root, warehouse, DAY, *extra)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def begin_run(warehouse, run_id: str, challenger_version: int | None = None) -> tuple[Warehouse, RunRecord]:
    """A run recorded through the public contract, as the scorer records one, for publishing by hand."""
    contract = open_warehouse(warehouse.location, TAXI)
    run = RunRecord(
        run_id=run_id,
        score_date=date.fromisoformat(DAY),
        model_name="taxi_tipper",
        model_version=1,
        challenger_version=challenger_version,
        input="x",
        started_at=datetime.now(timezone.utc),
    )
    contract.prepare()
    contract.record_run(run)
    return contract, run


def staged_predictions(rows: list[dict], path) -> str:
    """A Parquet file laid out as the load stage stages predictions."""
    pq.write_table(pa.Table.from_pylist(rows, schema=schemas.staged_predictions(TAXI).arrow_schema), path)
    return str(path)


def prediction(
    run_id: str, trip_id: str, probability: float, label: bool, role: str = "champion", version=1, content=0, line=1
):
    return {
        "source": "f.csv",
        "line_number": line,
        "content_hash": content,
        "score_date": date(2026, 11, 23),
        "trip_id": trip_id,
        "probability": probability,
        "label": label,
        "threshold": 0.5,
        "model_name": "taxi_tipper",
        "model_version": version,
        "model_role": role,
        "run_id": run_id,
        "scored_at": datetime.now(timezone.utc),
    }


def test_tables_and_views_are_made_from_the_schema(warehouse):
    contract = open_warehouse(warehouse.location, TAXI)
    for view in contract.views():  # from nothing: the set-up script may have made them
        warehouse.drop(view.name, "VIEW")
    for table in TABLES:
        warehouse.drop(table.name)
    contract.prepare()
    for table in TABLES:
        assert warehouse.columns(table.name) == [(f.name, not f.required) for f in table.fields], table.name
    assert warehouse.rows("SELECT COUNT(*) FROM latest_predictions") == [(0,)]
    assert warehouse.rows("SELECT COUNT(*) FROM daily_score_summary") == [(0,)]


def test_scores_a_date_and_reads_it_back(trained, model_root, warehouse, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 800)
    summary = score.run(score_args(tmp_path, model_root, warehouse))
    got = night(warehouse)
    assert len(got) == 800 and len({r[0] for r in got}) == 800
    assert all(0 <= p <= 1 and label == (p >= trained.version.threshold) for _, p, label, _ in got)
    assert {r[3] for r in got} == {summary["run_id"]}
    assert (summary["status"], summary["input_records"], summary["scored_records"]) == ("succeeded", 800, 800)
    assert warehouse.rows("SELECT status, input_records FROM scoring_runs") == [("succeeded", 800)]
    assert not (warehouse.staging / summary["run_id"]).exists()  # staged files go once published


def test_a_dry_run_writes_nothing_to_an_existing_warehouse(model_root, warehouse, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 20)
    score.run(score_args(tmp_path, model_root, warehouse))
    warehouse.drop("latest_predictions", "VIEW")
    summary = score.run(score_args(tmp_path, model_root, warehouse, DAY, "--dry_run=True"))
    assert summary["dry_run"] and summary["job"] is None
    assert [s for s, _ in statuses(warehouse)] == ["succeeded"]  # no run recorded
    with pytest.raises(Exception, match="latest_predictions"):  # and nothing made
        warehouse.rows("SELECT COUNT(*) FROM latest_predictions")


def test_a_challenger_night_with_nothing_scored_is_refused_not_published(trained, warehouse, tmp_path):
    root = tmp_path / "models" / "taxi_tipper"
    shutil.copytree(trained.version.path, root / "1")
    shutil.copytree(trained.version.path, root / "2")
    meta = json.loads((root / "2" / "metadata.json").read_text())
    (root / "2" / "metadata.json").write_text(json.dumps({**meta, "version": 2}))
    [path] = write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 5)
    lines = open(path).read().splitlines()
    with open(path, "w") as f:  # every record without its fare
        f.write(
            "\n".join([lines[0]] + [",".join(r.split(",")[:2] + [""] + r.split(",")[3:]) for r in lines[1:]]) + "\n"
        )
    args = score_args(tmp_path, tmp_path / "models", warehouse, DAY, "--model_version=1", "--challenger_version=2")
    with pytest.raises(score.Refused, match="scorable_records: 0 records scored"):
        score.run([*args, f"--summary_json={tmp_path}/summary.json"])
    summary = json.load(open(tmp_path / "summary.json"))
    assert (summary["scored_records"], summary["rejected_records"], summary["comparison"]) == (0, 5, None)
    assert [s for s, _ in statuses(warehouse)] == ["refused"]
    assert warehouse.rows("SELECT COUNT(*) FROM refused_errors") == [(5,)]


def test_rerunning_a_date_replaces_it(model_root, warehouse, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 300)
    write_partition(tmp_path / "trips" / "dt=2026-11-22", "2026-11-22", 100)
    score.run(score_args(tmp_path, model_root, warehouse, "2026-11-22"))
    first = score.run(score_args(tmp_path, model_root, warehouse))
    second = score.run(score_args(tmp_path, model_root, warehouse))
    got = night(warehouse)
    assert len(got) == 300 and {r[3] for r in got} == {second["run_id"]} != {first["run_id"]}
    assert len(night(warehouse, "2026-11-22")) == 100  # other dates untouched
    assert [s for s, _ in statuses(warehouse)] == ["succeeded"] * 3


def test_a_failed_audit_publishes_nothing(model_root, warehouse, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 100)
    good = score.run(score_args(tmp_path, model_root, warehouse))
    contract, run = begin_run(warehouse, "bad-run")
    staged = staged_predictions([prediction("bad-run", "t", 1.5, True)], tmp_path / "staged.parquet")
    with pytest.raises(AuditError, match=r"outside \[0, 1\].*input 5 != scored 1"):
        contract.publish_night(run, StagedResults([(staged, 1)], [], {"f.csv": 5}, {"f.csv": 1}))
    with pytest.raises(AuditError, match="hold 1 rows but 2 were written"):
        contract.publish_night(run, StagedResults([(staged, 2)], [], {"f.csv": 1}, {"f.csv": 1}))
    got = night(warehouse)
    assert len(got) == 100 and {r[3] for r in got} == {good["run_id"]}
    assert contract.run_row("bad-run")["status"] == "running"


def test_champion_and_challenger_are_compared_when_published(warehouse, tmp_path):
    contract, run = begin_run(warehouse, "compared", challenger_version=2)
    trips = ["a", "b", "c", "d"]
    champion = [
        prediction("compared", t, p, lab)
        for t, p, lab in zip(trips, [0.1, 0.2, 0.3, 0.4], [False, False, True, True], strict=True)
    ]
    challenger = [
        prediction("compared", t, p, lab, "challenger", 2)
        for t, p, lab in zip(trips, [0.9, 0.7, 0.7, 0.1], [True, True, True, False], strict=True)
    ]
    staged = staged_predictions(champion + challenger, tmp_path / "both.parquet")
    counts = contract.publish_night(run, StagedResults([(staged, 8)], [], {"f.csv": 4}, {"f.csv": 4}))
    assert (counts["scored_records"], counts["prediction_rows"]) == (4, 8)
    row = contract.run_row("compared")
    comparison = json.loads(row["comparison"])
    # Spearman with average ranks for the tie: ranks (1,2,3,4) vs (4,2.5,2.5,1) -> -0.9487
    assert comparison["rank_correlation"] == pytest.approx(-0.9486833, abs=1e-6)
    assert comparison["label_disagreement"] == pytest.approx(0.75)
    assert comparison["champion_mean_probability"] == pytest.approx(0.25)
    assert comparison["records"] == 4 and row["status"] == "succeeded"
    # A retried publishing step (Dataflow retries a bundle that failed after the commit) finds the night
    # published: it returns what was published and changes nothing.
    again = contract.publish_night(run, StagedResults([(staged, 8)], [], {"f.csv": 4}, {"f.csv": 4}))
    assert again == counts and contract.run_row("compared")["finished_at"] == row["finished_at"]


def test_a_run_stopped_after_staging_leaves_the_night(model_root, warehouse, tmp_path):
    """SIGTERM: marked failed on the way out. (SIGKILL at any moment: tests/test_faults.py.)"""
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 200)
    good = score.run(score_args(tmp_path, model_root, warehouse))
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 300_000, rows_per_file=50_000)
    proc = start(tmp_path, model_root, warehouse, "--block_bytes=65536", "--batch_size=2048")
    deadline = time.monotonic() + 120
    while not list(warehouse.staging.glob("*/predictions/*.parquet")):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "nothing staged in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    got = night(warehouse)
    assert len(got) == 200 and {r[3] for r in got} == {good["run_id"]}
    runs = statuses(warehouse)
    assert [s for s, _ in runs] == ["succeeded", "failed"] and "terminated by signal 15" in runs[1][1]


def test_overlapping_runs_end_with_one_runs_rows(model_root, warehouse, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 5000, rows_per_file=1000)
    procs = [start(tmp_path, model_root, warehouse) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    got = night(warehouse)
    assert len(got) == 5000 and len({r[0] for r in got}) == 5000 and len({r[3] for r in got}) == 1
    assert [s for s, _ in statuses(warehouse)] == ["succeeded", "succeeded"]


def test_a_run_that_loses_the_race_to_publish_judges_again_and_publishes(bigquery, tmp_path):
    """BigQuery has no lock from the gates to the transaction: another run publishing in between trips
    the transaction's guard, and the loser judges the gates again against what landed, then publishes."""
    warehouse = BigQueryUnderTest(bigquery, tmp_path)

    def staged(run_id: str, trips: list[str]) -> StagedResults:
        rows = [prediction(run_id, t, 0.7, True, line=i + 1) for i, t in enumerate(trips)]
        path = staged_predictions(rows, tmp_path / f"{run_id}.parquet")
        return StagedResults([(path, len(rows))], [], {"f.csv": len(rows)}, {"f.csv": len(rows)})

    loser, late = begin_run(warehouse, "late-run")
    winner, early = begin_run(warehouse, "early-run")
    judged = []
    judge = loser._judge

    def judge_then_lose_the_race(*args):
        judged.append(judge(*args))
        if len(judged) == 1:  # the gates saw an empty date; now another run publishes it
            winner.publish_night(early, staged("early-run", ["a", "b"]))
        return judged[-1]

    loser._judge = judge_then_lose_the_race
    loser.publish_night(late, staged("late-run", ["c", "d", "e"]))
    assert len(judged) == 2 and {g["name"]: g["value"] for g in json.loads(judged[1][1]["gates"])}["shrink"] == 1.5
    assert [(t, r) for t, _, _, r in night(warehouse)] == [("c", "late-run"), ("d", "late-run"), ("e", "late-run")]
    assert [s for s, _ in statuses(warehouse)] == ["succeeded", "succeeded"]


def test_bad_configuration_fails_before_anything_is_written(model_root, warehouse, tmp_path, capsys):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 10)
    base = [a for a in score_args(tmp_path, model_root, warehouse) if not a.startswith("--warehouse")]
    for location, message in warehouse.bad_locations:
        assert score.main(base + [f"--warehouse={location}"]) == 2
        assert message in capsys.readouterr().err
    assert score.main(base + [f"--warehouse={warehouse.location}", "--date=2026-13-01"]) == 2
    assert "not a real date" in capsys.readouterr().err
    assert not warehouse.staging.exists()
    assert not warehouse.exists() or warehouse.rows("SELECT COUNT(*) FROM scoring_runs") == [(0,)]

    # A table that drifted from schemas/ is refused before any data is read.
    dialect = open_warehouse(warehouse.location, TAXI).dialect
    string, number = (dialect.type_name(t) for t in (schemas.ColumnType.STRING, schemas.ColumnType.FLOAT64))
    warehouse.drop("predictions")
    warehouse.execute(
        f"CREATE TABLE {dialect.table('predictions')} (score_date DATE, trip_id {string}, score {number})"
    )
    assert score.main(base + [f"--warehouse={warehouse.location}"]) == 2
    assert "predictions does not match schemas/" in capsys.readouterr().err
    assert warehouse.rows("SELECT COUNT(*) FROM predictions") == [(0,)]
    assert not warehouse.staging.exists()


def test_views_and_every_example_query(model_root, warehouse, tmp_path):
    [path] = write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 400)
    with open(path, "a") as f:
        f.write("broken,line\n")
    write_partition(tmp_path / "trips" / "dt=2026-11-22", "2026-11-22", 150)
    score.run(score_args(tmp_path, model_root, warehouse, "2026-11-22"))
    score.run(score_args(tmp_path, model_root, warehouse))
    queries = warehouse.example_queries()
    names = {"top_positives", "daily_summary", "latest_scores", "reconciliation", "rejections", "why_refused"}
    names |= {"drift_heat_map", "night_quality"}
    assert set(queries) == names
    d = date.fromisoformat(DAY)

    top = warehouse.rows(queries["top_positives"], date=d)
    labelled = warehouse.rows("SELECT COUNT(*) FROM predictions WHERE score_date = ? AND label", d)[0][0]
    assert len(top) == min(20, labelled) > 0 and [p for _, p in top] == sorted((p for _, p in top), reverse=True)

    summary = warehouse.rows(queries["daily_summary"])
    assert [(str(r[0]), r[2]) for r in summary] == [("2026-11-22", 150), (DAY, 400)]
    shares = warehouse.rows(
        "SELECT score_date, AVG(CASE WHEN label THEN 1 ELSE 0 END) FROM predictions "
        "GROUP BY score_date ORDER BY score_date"
    )
    assert [r[4] for r in summary] == [pytest.approx(s, abs=1e-4) for _, s in shares]
    assert all(0 <= r[3] <= 1 and 0 <= r[4] <= 1 for r in summary)

    records, positives = warehouse.rows(queries["latest_scores"])[0]
    assert records == 550 and 0 < positives < records  # keys carry their night, so none repeats
    aliases = warehouse.rows("SELECT trips, big_tipper_share FROM daily_score_summary ORDER BY score_date")
    assert aliases == [(r[2], r[4]) for r in summary]  # taxi's earlier names, kept beside the generic ones

    assert warehouse.rows(queries["reconciliation"]) == [
        (date(2026, 11, 22), 150, 150, 0, 0, True),
        (d, 401, 400, 1, 0, True),
    ]
    assert warehouse.rows(queries["rejections"], date=d) == [("malformed_line", None, 1)]

    quality = warehouse.rows(queries["night_quality"])
    assert [(r[0], r[1]) for r in quality] == [(d, 401), (date(2026, 11, 22), 150)]
    assert [r[2] for r in quality] == [pytest.approx(1 / 401), 0.0]
    for row, (_, share) in zip(quality, reversed(shares), strict=True):
        night_scores = sorted(
            p for (p,) in warehouse.rows("SELECT probability FROM predictions WHERE score_date = ?", row[0])
        )
        assert row[3] == pytest.approx(sum(night_scores) / len(night_scores)) and row[4] == pytest.approx(share)
        # p10, p50, p90 are values of the night, at most one rank (and the engine's approximation) off.
        for got, q in zip(row[5:], (0.1, 0.5, 0.9), strict=True):
            rank = night_scores.index(got)
            assert abs(rank - q * (len(night_scores) - 1)) <= 0.02 * len(night_scores) + 1


# ---------------------------------------------------------------- what only BigQuery has


def test_bigquery_tables_are_partitioned_clustered_and_described(model_root, bigquery, tmp_path):
    warehouse = BigQueryUnderTest(bigquery, tmp_path)
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 50)
    score.run(score_args(tmp_path, model_root, warehouse))
    table = bigquery.get_table(f"{BQ_PROJECT}.{warehouse.dataset}.predictions")
    assert table.time_partitioning.field == "score_date" and table.clustering_fields == ["model_role", "trip_id"]
    assert {f.name: f.description for f in table.schema} == {
        f.name: f.description for f in schemas.predictions(TAXI).fields
    }
    # Staging tables are gone once published.
    assert [
        t.table_id for t in bigquery.list_tables(f"{BQ_PROJECT}.{warehouse.dataset}") if t.table_id.startswith("_")
    ] == []


def test_bigquery_creates_a_missing_dataset_only_when_asked(model_root, bigquery, tmp_path, capsys):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 10)
    created = f"created_{uuid.uuid4().hex[:8]}"
    args = [
        f"--date={DAY}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        f"--warehouse=bq://{BQ_PROJECT}.{created}",
        f"--staging_dir={tmp_path}/staging",
    ]
    assert score.main(args) == 2
    assert f"dataset {BQ_PROJECT}.{created} does not exist" in capsys.readouterr().err
    assert created not in [d.dataset_id for d in bigquery.list_datasets()]
    assert score.main(args + ["--create_dataset"]) == 0
    config = bq.QueryJobConfig(default_dataset=f"{BQ_PROJECT}.{created}")
    assert list(bigquery.query("SELECT COUNT(*) FROM predictions", job_config=config).result())[0][0] == 10


def test_a_jobs_runs_are_stamped_alive_in_one_statement(warehouse):
    """A range's nights beat together: one UPDATE for all of them, running ones only."""
    contract, first = begin_run(warehouse, "night-1")
    _, second = begin_run(warehouse, "night-2")
    _, done = begin_run(warehouse, "night-3")
    contract.mark_failed(done.run_id, "stopped", datetime.now(timezone.utc))
    now = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=1)
    contract.heartbeat([first.run_id, second.run_id, done.run_id], now)
    stamps = {run_id: contract.run_row(run_id)["heartbeat_at"] for run_id in ("night-1", "night-2", "night-3")}
    assert stamps["night-1"] == stamps["night-2"] == now and stamps["night-3"] != now
    # Workers read the first run's stamp for all: recent, so nothing is written.
    contract.heartbeat([first.run_id, second.run_id], now + timedelta(minutes=1), unless_within=timedelta(minutes=5))
    assert contract.run_row("night-2")["heartbeat_at"] == now


def test_a_process_that_is_stopping_publishes_nothing(warehouse, tmp_path):
    """SIGTERM reaches the main thread while a worker thread may be about to publish: once the process
    is stopping, no publishing transaction starts, and the night stays as it was."""
    contract, run = begin_run(warehouse, "stopping-run")
    rows = [prediction(run.run_id, f"t{i}", 0.7, True, line=i + 1) for i in range(3)]
    staged = StagedResults(
        [(staged_predictions(rows, tmp_path / "stopping.parquet"), 3)], [], {"f.csv": 3}, {"f.csv": 3}
    )

    class Stopping:
        """The guard of a process that received SIGTERM: no publishing transaction starts."""

        def transaction(self, run_id: str):
            raise PublishingStopped(f"run {run_id} is stopping: its night is not published")

    with pytest.raises(PublishingStopped, match="is stopping: its night is not published"):
        contract.publish_night(run, staged, Stopping())
    assert contract.run_row(run.run_id)["status"] == "running"  # the main thread marks it failed next
    assert warehouse.rows("SELECT count(*) FROM predictions") == [(0,)]


# ---------------------------------------------------------------- what is the use case's


def keyed_by(name: str, type_: schemas.ColumnType) -> schemas.UseCase:
    """Taxi with another key column: whatever the warehouse does by key, it must do by this one."""
    key = schemas.Column(name, type_, True, schemas.Role.KEY, "Another use case's key.")
    columns = tuple(key if c.role is schemas.Role.KEY else c for c in TAXI.input.columns)
    return dataclasses.replace(TAXI, name=f"keyed_by_{name}", input=dataclasses.replace(TAXI.input, columns=columns))


def test_another_use_cases_key_is_what_its_warehouse_publishes_and_resolves_by(tmp_path):
    """Nothing in a warehouse names taxi's key: one opened for another use case makes its predictions
    table with that key (and its type), resolves duplicate keys by it, and names it in their errors.
    DuckDB only: the warehouse suite's BigQuery datasets are made for taxi."""
    loans = keyed_by("loan_id", schemas.ColumnType.INT64)
    location = str(tmp_path / "loans.duckdb")
    contract = open_warehouse(location, loans)
    contract.prepare()
    run = RunRecord(
        run_id="loans",
        score_date=date.fromisoformat(DAY),
        model_name=loans.model_name,
        model_version=1,
        input="x",
        started_at=datetime.now(timezone.utc),
        limits=GateLimits(max_rejected_fraction=1),  # the two conflicting copies are 40% of the night
    )
    contract.record_run(run)
    rows = []  # key 1 once; key 2 twice alike (one copy dropped); key 3 twice unlike (both rejected)
    for line, (key, content) in enumerate([(1, 0), (2, 5), (2, 5), (3, 6), (3, 7)], start=2):
        row = prediction(run.run_id, "", 0.7, True, content=content, line=line)
        rows.append({**{k: v for k, v in row.items() if k != "trip_id"}, "loan_id": key})
    path = str(tmp_path / "loans.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=schemas.staged_predictions(loans).arrow_schema), path)
    counts = contract.publish_night(run, StagedResults([(path, 5)], [], {"f.csv": 5}, {"f.csv": 5}))
    assert (counts["scored_records"], counts["rejected_records"], counts["duplicates_dropped"]) == (2, 2, 1)
    assert query(location, "SELECT loan_id FROM predictions ORDER BY loan_id") == [(1,), (2,)]
    assert query(location, "SELECT loan_id FROM latest_predictions ORDER BY loan_id") == [(1,), (2,)]
    assert query(
        location,
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'predictions' AND ordinal_position = 2",
    ) == [("BIGINT",)]
    assert (
        query(location, "SELECT reason, column_name, detail FROM scoring_errors")
        == [("duplicate_key", "loan_id", "key 3 has 2 copies with different content")] * 2
    )


def test_a_warehouse_belongs_to_the_use_case_that_first_prepared_it(warehouse):
    """Prepared once, labelled once; another use case is refused before anything of the warehouse is
    touched, naming both."""
    contract = open_warehouse(warehouse.location, TAXI)
    contract.prepare()
    contract.prepare()
    assert warehouse.rows("SELECT name, value FROM warehouse_info") == [("use_case", "taxi")]
    other = keyed_by("loan_id", schemas.ColumnType.INT64)
    with pytest.raises(WarehouseConfigError, match=f"holds use case taxi's nights, not {other.name}'s"):
        open_warehouse(warehouse.location, other).prepare()
    assert [name for name, _ in warehouse.columns("predictions")][1] == "trip_id"  # untouched
