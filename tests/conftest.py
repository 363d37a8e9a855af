"""Shared fixtures: one small model trained once per session, and helpers to write input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import date

import duckdb
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipelines import train  # noqa: E402
from scripts import make_trips  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "data", "chicago_taxi", "trips.csv")


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> train.TrainingResult:
    """A real model trained on the bundled sample (2 epochs: the tests check plumbing, not skill)."""
    root = tmp_path_factory.mktemp("train")
    return train.run(
        [f"--input={SAMPLE}", f"--model_root={root / 'models'}", f"--work_dir={root / 'work'}", "--epochs=2"]
    )


@pytest.fixture()
def model_root(trained) -> str:
    return os.path.dirname(os.path.dirname(trained.version.path))


def write_partition(directory, day: str, rows: int, rows_per_file: int = 1_000_000) -> list[str]:
    return make_trips.write_partition(date.fromisoformat(day), rows, str(directory), rows_per_file, SAMPLE)


def query(db_path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert proc.poll() is None, f"{what} exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"{what} did not start in {seconds} s"
            time.sleep(0.1)


class _Server:
    """A server process on loopback, stopped at the end, with environment variables pointing at it."""

    def __init__(self, cmd: list[str], ports: list[int], env: dict[str, str], what: str):
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": REPO}
        )
        for port in ports:
            wait_for_port(port, self.proc, what)
        self._saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


GCS_BUCKET = "nightly-trips"
BQ_PROJECT = "test"


@pytest.fixture(scope="session")
def gcs():
    """A Google Cloud Storage API server (gcp-storage-emulator) with one bucket; Beam's gs:// uses it."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator")
    server = _Server(
        [exe, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--default-bucket", GCS_BUCKET, "-q"],
        [port],
        {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"},
        "GCS emulator",
    )
    try:
        yield storage.Client(project=BQ_PROJECT, credentials=AnonymousCredentials()).bucket(GCS_BUCKET)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bigquery():
    """A BigQuery API server (bqemulator: REST and Storage gRPC); returns a client of the project."""
    from pipelines.bigquery_source import bigquery_client

    rest, grpc_port = free_port(), free_port()
    server = _Server(
        [
            sys.executable,
            "-m",
            "tests.bq_emulator",
            "start",
            "--rest-host",
            "127.0.0.1",
            "--rest-port",
            str(rest),
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            str(grpc_port),
            "--project",
            BQ_PROJECT,
            "--log-level",
            "warning",
        ],
        [rest, grpc_port],
        {
            "BIGQUERY_EMULATOR_HOST": f"http://127.0.0.1:{rest}",
            "BIGQUERY_STORAGE_EMULATOR_HOST": f"127.0.0.1:{grpc_port}",
        },
        "BigQuery emulator",
    )
    try:
        yield bigquery_client(BQ_PROJECT)
    finally:
        server.stop()
