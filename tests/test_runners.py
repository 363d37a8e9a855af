"""Where a job stages its files and writes its report depends on where its workers run.

Workers on this machine (the DirectRunner; a portable runner whose SDK workers are this process, its
children or a pool at a loopback address, the process layout of Dataflow Runner v2) share its local
folders: the defaults beside the warehouse serve. Workers on other machines (Dataflow) stage under
--temp_location unless --staging_dir says otherwise, the report beside the staged files; a local
folder for either is refused before anything runs, naming the option.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipelines import score, scoring
from tests.conftest import BQ_PROJECT, REPO, free_port, wait_for_port, write_partition
from tests.test_run_safety import DAY, staged_files


@pytest.fixture()
def worker_pool(warehouse):
    """An SDK worker pool on loopback, started after the warehouse (its workers inherit the emulator's
    address); it starts each worker with the `python` on its PATH, the project's."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": REPO,
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
    }
    pool = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, pool, "SDK worker pool")
        yield f"localhost:{port}"
    finally:
        pool.kill()
        pool.wait()


def test_a_portable_runner_with_a_worker_pool_on_loopback_scores_with_the_defaults(
    model_root, tmp_path, warehouse, worker_pool
):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 2000)
    defaults = [a for a in warehouse.args if not a.startswith("--report_dir")]  # the default report
    argv = [
        f"--date={DAY}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        f"--summary_json={tmp_path}/summary.json",
        *defaults,
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=EXTERNAL",
        f"--environment_config={worker_pool}",
    ]
    assert score.main(argv) == 0
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["status"] == "succeeded" and summary["reconciled"] and summary["scored_records"] == 2000
    assert warehouse.rows("SELECT count(*) FROM predictions WHERE score_date = ?", DAY) == [(2000,)]
    assert summary["report"] and os.path.isfile(summary["report"]), summary["report_dir"]
    assert staged_files(warehouse) == []


def plan_for(*argv: str) -> scoring.ScoringConfig:
    options = score.options(list(argv))
    return scoring.plan(options)


DATAFLOW = ["--runner=DataflowRunner", "--project=my-project", "--region=us-central1"]


def night(tmp_path, *extra: str) -> list[str]:
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 20)
    return [f"--date={DAY}", f"--input={tmp_path}/trips/dt={{date}}/*.csv", *extra]


def test_a_remote_runner_stages_under_temp_location_and_reports_beside(model_root, bigquery, tmp_path):
    bigquery.create_dataset("remote", exists_ok=True)
    config = plan_for(
        *night(tmp_path, f"--model_root={model_root}", f"--warehouse=bq://{BQ_PROJECT}.remote"),
        *DATAFLOW,
        "--temp_location=gs://bucket/tmp",
    )
    assert config.publishing.staging_dir == "gs://bucket/tmp/batch-scoring-staging"
    assert config.monitoring.monitor.page_dir == "gs://bucket/tmp/batch-scoring-staging/reports"
    assert config.runs[0].options["staging"].startswith("gs://bucket/tmp/batch-scoring-staging/")


@pytest.mark.parametrize(
    "extra, says",
    [
        ([], "--staging_dir is needed: workers on other machines"),
        (["--temp_location=/tmp/local"], "--temp_location /tmp/local is a local folder"),
        (["--temp_location=gs://bucket/tmp", "--staging_dir=/tmp/here"], "--staging_dir /tmp/here is a local folder"),
        (["--temp_location=gs://bucket/tmp", "--report_dir=/tmp/here"], "--report_dir /tmp/here is a local folder"),
        (["--environment_type=DOCKER", "--temp_location=/tmp/local"], "--staging_dir is needed"),
    ],
    ids=["nothing", "local-temp", "local-staging", "local-report", "docker"],
)
def test_a_local_folder_for_workers_elsewhere_is_refused_naming_the_option(
    model_root, bigquery, tmp_path, capsys, extra, says
):
    bigquery.create_dataset("remote", exists_ok=True)
    argv = night(tmp_path, f"--model_root={model_root}", f"--warehouse=bq://{BQ_PROJECT}.remote")
    runner = DATAFLOW if "--environment_type=DOCKER" not in extra else ["--runner=PortableRunner"]
    assert score.main([*argv, *runner, *extra, "--dry_run=True"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and says in line


@pytest.mark.parametrize(
    "options, here",
    [
        ([], True),
        (["--runner=DataflowRunner"], False),
        (["--runner=PortableRunner", "--environment_type=LOOPBACK"], True),
        (["--runner=PortableRunner", "--environment_type=PROCESS"], True),
        (["--runner=PortableRunner", "--environment_type=EXTERNAL", "--environment_config=127.0.0.1:5000"], True),
        (["--runner=PortableRunner", "--environment_type=EXTERNAL", "--environment_config=[::1]:5000"], True),
        (["--runner=PortableRunner", "--environment_type=EXTERNAL", "--environment_config=pool.internal:5000"], False),
        (["--runner=PortableRunner", "--environment_type=DOCKER"], False),
        # A remote cluster's task managers start PROCESS workers and host sidecar pools at their localhost.
        (["--runner=PortableRunner", "--job_endpoint=flink-jobserver:8099", "--environment_type=PROCESS"], False),
        (
            ["--runner=FlinkRunner", "--flink_master=flink:8081", "--environment_type=EXTERNAL"]
            + ["--environment_config=localhost:50000"],
            False,
        ),
        (["--runner=FlinkRunner", "--flink_master=[local]", "--environment_type=LOOPBACK"], True),
    ],
)
def test_which_workers_share_this_machines_folders(options, here):
    assert scoring.workers_here(score.options(options)) is here
