"""A warehouse that stops answering after a night was scored: the run waits, says so, and publishes
once it answers, or fails within --publish_timeout (exit code 1, never the configuration error's 2),
the date as it was and the run reaped by the next.

DuckDB stops answering when another process holds its file; BigQuery when its API server is stopped
(SIGSTOP: connections are accepted and nothing answers, as a hung endpoint does). Both stalls begin
once the run has staged files, so the whole night was read and scoring is ending.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone

import pytest

from pipelines import score
from tests.conftest import write_partition
from tests.test_run_safety import DAY, args, staged_files, start_scorer

RECORDS = 30_000  # with 16 KiB blocks, files are staged seconds before publishing begins


class HeldFile:
    """Another process holding the DuckDB file (an analyst's session, a stuck job) until released."""

    SCRIPT = textwrap.dedent(
        """
        import sys, time, duckdb
        while True:
            try:
                con = duckdb.connect(sys.argv[1])
                break
            except duckdb.Error:
                time.sleep(0.01)
        [(running,)] = con.execute("SELECT count(*) FROM scoring_runs WHERE status = 'running'").fetchall()
        print(running, flush=True)
        sys.stdin.read()
        """
    )

    def __init__(self, warehouse):
        self._path = warehouse.location
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, self._path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        running = int(self._proc.stdout.readline())
        assert running == 1, "the file was taken after the run had published: make the input larger"

    def end(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)


class StoppedServer:
    """The BigQuery API server stopped: every call hangs until it is continued."""

    def __init__(self, server):
        self._pid = server.proc.pid

    def start(self) -> None:
        os.kill(self._pid, signal.SIGSTOP)

    def end(self) -> None:
        os.kill(self._pid, signal.SIGCONT)


@pytest.fixture()
def stall(warehouse, request):
    made = (
        HeldFile(warehouse) if warehouse.kind == "duckdb" else StoppedServer(request.getfixturevalue("bigquery_server"))
    )
    yield made
    made.end()


def stall_once_staged(scorer: subprocess.Popen, warehouse, stall) -> None:
    deadline = time.monotonic() + 240
    while not staged_files(warehouse) and scorer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scorer.poll() is None, "the run ended before it staged anything"
    stall.start()


def date_rows(warehouse) -> dict[str, int]:
    return dict(warehouse.rows("SELECT run_id, count(*) FROM predictions WHERE score_date = ? GROUP BY run_id", DAY))


def test_a_warehouse_that_stops_answering_mid_publish_is_waited_for_then_given_up(
    model_root, tmp_path, warehouse, stall
):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, RECORDS)

    # A stall shorter than --publish_timeout: waited out, said while it lasts, then published.
    scorer = start_scorer(tmp_path, model_root, warehouse, "--publish_timeout=2m", "--lock_timeout=3")
    stall_once_staged(scorer, warehouse, stall)
    time.sleep(7)  # past SAY_AFTER: a call BigQuery does not answer is said while it waits
    resumed = datetime.now(timezone.utc)
    stall.end()
    out, err = scorer.communicate(timeout=240)
    assert scorer.returncode == 0, err
    assert f"warehouse {warehouse.location} not answering since" in err  # then ", retrying" or ", waiting"
    assert f"warehouse {warehouse.location} answers again, after" in err
    good = json.load(open(tmp_path / "summary.json"))
    assert good["status"] == "succeeded" and good["reconciled"]
    assert date_rows(warehouse) == {good["run_id"]: RECORDS}
    # finished_at is the commit's time, which came after the warehouse answered again.
    assert datetime.fromisoformat(good["timings"]["finished_at"]) >= resumed.replace(microsecond=0)
    assert staged_files(warehouse) == []

    # Silent past --publish_timeout: exit 1 in one line, bounded; the night published above untouched.
    scorer = start_scorer(
        tmp_path, model_root, warehouse, "--publish_timeout=6s", "--lock_timeout=2", "--stale_after=2s"
    )
    stall_once_staged(scorer, warehouse, stall)
    stalled = time.monotonic()
    out, err = scorer.communicate(timeout=240)
    waited = time.monotonic() - stalled
    stall.end()
    # Bounded: publishing's 6 s, marking the run failed's 6 s, the last heartbeat's --lock_timeout, slack.
    assert scorer.returncode == 1, err
    assert waited < 60, f"waited {waited:.0f} s"
    [error] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "previous results left as they were" in error and "(--publish_timeout)" in error, err
    assert "Traceback" not in err, err
    assert f"warehouse {warehouse.location} not answering since" in err
    assert "could not be marked failed" in err and "marks it abandoned after --stale_after" in err
    assert date_rows(warehouse) == {good["run_id"]: RECORDS}
    [(stalled_id, status)] = warehouse.rows("SELECT run_id, status FROM scoring_runs WHERE run_id != ?", good["run_id"])
    assert status == "running" and staged_files(warehouse)  # the heartbeat stopped: the next run reaps it

    time.sleep(2.1)
    assert score.main(args(tmp_path, model_root, warehouse, "--stale_after=2s")) == 0
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["reaped_runs"] == [stalled_id]
    assert dict(warehouse.rows("SELECT run_id, status FROM scoring_runs")) == {
        good["run_id"]: "succeeded",
        stalled_id: "abandoned",
        summary["run_id"]: "succeeded",
    }
    assert staged_files(warehouse) == [] and not glob.glob(os.path.join(warehouse.staging, stalled_id))
