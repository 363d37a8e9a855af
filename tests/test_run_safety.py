"""Runs that die without a word are reaped; warehouses that cannot be used are refused up front; a
refused night fails a remote job (what Airflow and the Cloud Scheduler alerting see)."""

import dataclasses
import getpass
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone

import apache_beam as beam
import pytest

import schemas
from pipelines import score
from pipelines.warehouses import AuditError, RunRecord, StagedResults, heartbeat, open_warehouse, sql
from schemas.taxi import USE_CASE as TAXI
from tests.conftest import GCS_BUCKET, REPO, write_partition

DAY = "2026-11-23"


def args(tmp_path, model_root, warehouse, *extra):
    return [
        f"--date={DAY}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        f"--summary_json={tmp_path}/summary.json",
        *warehouse.args,
        *extra,
    ]


def start_scorer(tmp_path, model_root, warehouse, *extra) -> subprocess.Popen:
    """The command in a process of its own, reading 16 KiB blocks (files are staged early), its output
    piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.score", *args(tmp_path, model_root, warehouse, "--block_bytes=16384")]
        + list(extra),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def staged_files(warehouse) -> list[str]:
    return [p for p in glob.glob(f"{warehouse.staging}/**", recursive=True) if os.path.isfile(p)]


def test_a_killed_run_is_reaped_by_the_next(model_root, tmp_path, warehouse):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 60_000)
    killed = start_scorer(tmp_path, model_root, warehouse, "--stale_after=2s")
    deadline = time.monotonic() + 240
    while not staged_files(warehouse) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)  # mid-way: scoring, its staged files half written
    killed.wait()
    assert staged_files(warehouse), "the run ended before it staged anything: make its input larger"
    [(killed_id, status)] = warehouse.rows("SELECT run_id, status FROM scoring_runs")
    assert status == "running"
    if warehouse.kind == "bigquery":  # what a run killed while publishing leaves: its staging tables
        warehouse.execute(f"CREATE TABLE _staging_{killed_id.replace('-', '_')}_predictions (x INT64)")

    time.sleep(2.1)
    assert score.main(args(tmp_path, model_root, warehouse, "--stale_after=2s")) == 0
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["status"] == "succeeded" and summary["reaped_runs"] == [killed_id]
    rows = dict(warehouse.rows("SELECT run_id, status FROM scoring_runs"))
    assert rows == {killed_id: "abandoned", summary["run_id"]: "succeeded"}
    [(error,)] = warehouse.rows("SELECT error FROM scoring_runs WHERE run_id = ?", killed_id)
    assert error.startswith("abandoned: no heartbeat since") and summary["run_id"] in error
    assert staged_files(warehouse) == [] and not os.path.exists(os.path.join(warehouse.staging, killed_id))
    if warehouse.kind == "bigquery":
        tables = {t.table_id for t in warehouse.client.list_tables(warehouse.location.removeprefix("bq://"))}
        assert not [t for t in tables if t.startswith("_staging_")]


def test_a_heartbeating_run_is_not_reaped_and_a_silent_one_is(tmp_path):
    warehouse = open_warehouse(str(tmp_path / "scores.duckdb"), TAXI)
    warehouse.prepare()
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    runs = [
        RunRecord(
            run_id=name,
            score_date=date(2026, 11, 23),
            model_name="m",
            model_version=1,
            input="x",
            started_at=hour_ago,
        )
        for name in ("alive", "silent")
    ]
    patient = RunRecord(
        run_id="patient",  # beats once every 20 minutes: silent for an hour is not dead for it
        score_date=date(2026, 11, 23),
        model_name="m",
        model_version=1,
        input="x",
        started_at=hour_ago + timedelta(minutes=10),
        options={"stale_after_seconds": 7200},
    )
    for run in [*runs, patient]:
        warehouse.record_run(run)
    with heartbeat.Heartbeat(warehouse, "alive", seconds=0.1):
        time.sleep(0.5)
    reaped = warehouse.reap(timedelta(minutes=30), datetime.now(timezone.utc), by="test")
    assert [r["run_id"] for r in reaped] == ["silent"]
    assert warehouse.run_row("alive")["status"] == "running" and warehouse.run_row("silent")["status"] == "abandoned"
    assert warehouse.run_row("patient")["status"] == "running"  # reaped after its own --stale_after only
    stamped = warehouse.run_row("alive")["heartbeat_at"]
    assert stamped > hour_ago + timedelta(minutes=59)
    # Workers beat only when no other worker has lately: a recent stamp is left as it is.
    warehouse.heartbeat("alive", stamped + timedelta(minutes=1), unless_within=timedelta(minutes=5))
    assert warehouse.run_row("alive")["heartbeat_at"] == stamped
    warehouse.heartbeat("alive", stamped + timedelta(minutes=10), unless_within=timedelta(minutes=5))
    assert warehouse.run_row("alive")["heartbeat_at"] == stamped + timedelta(minutes=10)
    # An abandoned run stays abandoned: its heartbeat no longer counts, and it cannot publish.
    warehouse.heartbeat("silent", datetime.now(timezone.utc))
    assert warehouse.run_row("silent")["status"] == "abandoned"
    # Two hours on, the patient run's own period has passed too (and alive's beats stopped an hour ago).
    later = warehouse.reap(timedelta(minutes=30), hour_ago + timedelta(hours=3), "x")
    assert sorted(r["run_id"] for r in later) == ["alive", "patient"]
    assert heartbeat.interval(timedelta(minutes=30)) == 300 and heartbeat.interval(timedelta(seconds=3)) == 0.5


def test_a_refused_night_fails_a_remote_job(model_root, tmp_path):
    """On Dataflow nobody waits for the launcher: the job's own state must say the night was refused."""
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 20)
    warehouse = tmp_path / "wh" / "scores.duckdb"
    options = score.options(
        [
            f"--date={DAY}",
            f"--input={tmp_path}/trips/dt={{date}}/*.csv",
            f"--model_root={model_root}",
            f"--warehouse={warehouse}",
            "--create_dataset",
            "--min_records=100",
        ]
    )
    planned = score.plan(options)
    remote = dataclasses.replace(planned.publishing, fail_job_on_refusal=True)
    config = dataclasses.replace(planned, local=False, publishing=remote)  # as on a remote runner
    config.warehouse.prepare()
    config.warehouse.record_run(config.run)
    with pytest.raises(Exception, match="GateRefused|refused by quality gates: min_records"):
        with beam.Pipeline() as p:
            score.build_pipeline(p, config)
    assert config.warehouse.run_row(config.run.run_id)["status"] == "refused"


# ---------------------------------------------------------------- warehouses that cannot be used


def fails_with(tmp_path, model_root, location, *extra, capsys) -> str:
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 10)
    code = score.main(
        [
            f"--date={DAY}",
            f"--input={tmp_path}/trips/dt={{date}}/*.csv",
            f"--model_root={model_root}",
            f"--warehouse={location}",
            *extra,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_a_file_that_is_not_a_duckdb_database_is_refused(model_root, tmp_path, capsys):
    (tmp_path / "scores.duckdb").write_text("trip_id,fare\n")
    err = fails_with(tmp_path, model_root, tmp_path / "scores.duckdb", capsys=capsys)
    assert err.startswith(f"error: --warehouse {tmp_path / 'scores.duckdb'} cannot be opened: IO Error: ")
    assert "not a valid DuckDB database file" in err


def test_a_directory_is_not_a_warehouse(model_root, tmp_path, capsys):
    (tmp_path / "wh").mkdir()
    err = fails_with(tmp_path, model_root, tmp_path / "wh", capsys=capsys)
    assert (
        err == f"error: --warehouse {tmp_path / 'wh'} is a directory; a DuckDB warehouse is a file, such as "
        f"{tmp_path / 'wh' / 'scores.duckdb'}"
    )


@pytest.fixture()
def read_only_folder(tmp_path):
    """A read-only file system (root ignores permissions, so a mode would prove nothing)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only file system here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_file_system_is_refused(model_root, tmp_path, read_only_folder, capsys):
    err = fails_with(tmp_path, model_root, read_only_folder / "scores.duckdb", capsys=capsys)
    assert err == f"error: --warehouse {read_only_folder / 'scores.duckdb'}: {read_only_folder} is not writable"
    err = fails_with(
        tmp_path, model_root, read_only_folder / "sub" / "scores.duckdb", "--create_dataset", capsys=capsys
    )
    assert "Read-only file system" in err


def test_a_locked_duckdb_file_waits_then_names_the_holder(model_root, tmp_path, capsys):
    location = tmp_path / "scores.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(location)!r}); print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        err = fails_with(tmp_path, model_root, location, "--lock_timeout=2", capsys=capsys)
        assert 2 <= time.monotonic() - t0 < 30
    finally:
        holder.kill()
        holder.wait()
    assert err.startswith(f"error: --warehouse {location} is locked by another process (held by ")
    assert f"(PID {holder.pid})); waited 2 s (--lock_timeout)" in err


def test_a_reaped_runs_files_on_gcs_are_deleted(gcs):
    """On Dataflow a run stages under gs://, where a folder is only a prefix: every object goes."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.staged import delete_tree, run_folder

    folder = run_folder(f"gs://{GCS_BUCKET}/staging", "2026-11-23-killed")
    keep = f"gs://{GCS_BUCKET}/staging/2026-11-23-other/predictions/a.parquet"
    for path in (f"{folder}/predictions/a.parquet", f"{folder}/errors/b.parquet", keep):
        with FileSystems.create(path) as f:
            f.write(b"staged")
    delete_tree(folder)
    assert not FileSystems.match([f"{folder}/**"])[0].metadata_list
    assert FileSystems.exists(keep)
    delete_tree(folder)  # nothing left: not an error


def test_who_publishes_anyway_is_the_person_or_the_jobs_service_account():
    from apache_beam.options.pipeline_options import PipelineOptions

    assert score.who_runs(PipelineOptions([])) == f"{getpass.getuser()}@{socket.gethostname()}"
    dataflow = ["--runner=DataflowRunner", "--project=p"]
    account = "scorer@p.iam.gserviceaccount.com"
    assert score.who_runs(PipelineOptions([*dataflow, f"--service_account_email={account}"])) == (
        f"service account {account}"
    )
    assert score.who_runs(PipelineOptions(dataflow)) == "the default Compute Engine service account of project p"


def test_a_reaped_run_cannot_publish(warehouse):
    """A run stalled past --stale_after and reaped must not publish when it wakes up: publishing checks
    its status first, and the transaction itself fails unless the run is still running."""
    from tests.test_warehouses import begin_run

    contract, run = begin_run(warehouse, "stalled")
    later = run.started_at + timedelta(hours=1)
    assert [r["run_id"] for r in contract.reap(timedelta(minutes=30), later, by="next")] == ["stalled"]
    staged = StagedResults([], [], {}, {})
    with pytest.raises(AuditError, match="run stalled is abandoned"):
        contract.publish_night(run, staged)
    with pytest.raises(Exception, match="run stalled is no longer running: nothing published"):
        contract._transaction(run, [sql.still_running(contract.transaction_dialect, run.run_id)])
    assert warehouse.rows("SELECT status FROM scoring_runs") == [("abandoned",)]
    # Nor can a run publish over a date that another run published after this one's gates read it.
    with pytest.raises(Exception, match="published by another run since this one checked it"):
        still = sql.still_as_seen(contract.transaction_dialect, schemas.predictions(TAXI), run.score_date, 7)
        contract._transaction(run, [still])


def test_the_sigterm_guard_a_local_runner_unpickles_is_the_launchers_own():
    """A local runner unpickles the publishing step for its worker threads: the copy of the guard must
    see the launcher's SIGTERM, or a night could publish after its run was marked failed."""
    from apache_beam.internal import pickler

    from pipelines.scoring import SigtermGuard
    from pipelines.warehouses import PublishingStopped

    copy = pickler.loads(pickler.dumps(SigtermGuard()))
    with copy.transaction("r1"):  # not stopping: the transaction runs
        pass
    try:
        SigtermGuard.stop()
        with pytest.raises(PublishingStopped, match="run r1 is stopping"):
            with copy.transaction("r1"):
                pass
    finally:
        SigtermGuard._stopping.clear()  # this test process goes on publishing
