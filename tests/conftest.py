"""Shared fixtures: one small model trained once per session, helpers to write input, the emulators,
and `warehouse`: each warehouse scenario runs against DuckDB and against BigQuery (the emulator)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from models import quiet  # noqa: E402
from schemas.taxi import TRIPS
from schemas.taxi import USE_CASE as TAXI

quiet.configure(verbose=False)  # as the commands do: TensorFlow's start-up notices left out of test output
quiet.tensorflow()

from models import registry  # noqa: E402
from pipelines import train, training  # noqa: E402
from pipelines.batches import RawBatch  # noqa: E402
from pipelines.validate import SchemaValidator  # noqa: E402
from scripts import make_trips  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "data", "chicago_taxi", "trips.csv")


def train_sample(root: Path) -> training.TrainingResult:
    """A real model trained on the bundled sample (2 epochs: the tests check plumbing, not skill)."""
    return train.run(
        [f"--input={SAMPLE}", f"--model_root={root / 'models'}", f"--work_dir={root / 'work'}", "--epochs=2"]
    )


@pytest.fixture(scope="session")
def trained(tmp_path_factory, worker_id) -> training.TrainingResult:
    """The sample's model, trained once per session: under xdist the first worker trains it into the
    session's shared folder while the others wait, then each worker scores from its own copy (tests add
    versions beside it). Training is seeded, so every worker's copy is the model it would have trained."""
    root = tmp_path_factory.mktemp("train")
    if worker_id == "master":  # not under xdist
        return train_sample(root)
    shared = tmp_path_factory.getbasetemp().parent / "trained"  # this session's, shared by its workers
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "result.json").exists():
            result = train_sample(shared)
            transform = os.path.relpath(result.transform_dir, shared)
            (shared / "result.json").write_text(json.dumps({"metrics": result.metrics, "transform_dir": transform}))
    shutil.copytree(shared, root, dirs_exist_ok=True)
    said = json.loads((root / "result.json").read_text())
    version = registry.resolve(str(root / "models"), TAXI.model_name, "latest", TAXI)
    return training.TrainingResult(version, said["metrics"], str(root / said["transform_dir"]))


@pytest.fixture()
def model_root(trained) -> str:
    return os.path.dirname(os.path.dirname(trained.version.path))


@pytest.fixture(scope="module")
def typed_trips(tmp_path_factory) -> pa.Table:
    """4,000 sample trips, validated and typed as the scorer's model sees them."""
    tmp = tmp_path_factory.mktemp("trips")
    [path] = write_partition(tmp, "2026-11-23", 4000)
    raw = read_as_text(path)
    valid, rejected = SchemaValidator(TRIPS.for_scoring()).validate(
        RawBatch(path, raw.combine_chunks().to_batches()[0])
    )
    assert rejected is None
    return pa.Table.from_batches([valid])


def read_as_text(path: str) -> pa.Table:
    """A CSV file with every schema column as text (empty fields null), as a reader hands it to validation."""
    return pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in TRIPS.names}, strings_can_be_null=True, null_values=[""]
        ),
    )


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
def bigquery(bigquery_server):
    """A client of the BigQuery API server's project."""
    from pipelines.bigquery import client

    return client(BQ_PROJECT)


@pytest.fixture(scope="session")
def bigquery_server():
    """A BigQuery API server (bqemulator: REST and Storage gRPC) on loopback; its process is there for
    tests that stop it (SIGSTOP) to see what a run does when BigQuery does not answer."""
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
        yield server
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)  # a test stopped it and failed before resuming it
        server.stop()


# ---------------------------------------------------------------- one warehouse suite, two engines


def readme_example_queries() -> dict[str, str]:
    """The README's DuckDB queries, by the name each block starts with (`-- name: what it answers`)."""
    text = open(os.path.join(REPO, "README.md")).read()
    analysts = text.split("## For analysts", 1)[1].split("\n## ", 1)[0]
    return {
        name: sql.strip().rstrip(";") for name, sql in re.findall(r"```sql\n-- (\w+): [^\n]*\n(.*?)```", analysts, re.S)
    }


def analyst_example_queries() -> dict[str, str]:
    """scripts/analyst_queries.sql (BigQuery), by the `-- name:` line before each."""
    text = open(os.path.join(REPO, "scripts", "analyst_queries.sql")).read()
    return {m[0]: m[1].strip().rstrip(";") for m in re.findall(r"-- name: (\w+)\n(.*?;)", text, re.S)}


class DuckDBUnderTest:
    """A DuckDB warehouse file as its analysts read it; the staging directory is the default one."""

    kind = "duckdb"
    # Locations the scorer must refuse, with what it says.
    bad_locations = [
        ("gs://bucket/scores.duckdb", "a DuckDB warehouse is a local file path"),
        ("no/such/dir/scores.duckdb", "there is no folder"),  # a typo starts no new warehouse
        ("", "a warehouse must outlive the run"),
        (":memory:", "a warehouse must outlive the run"),
    ]

    def __init__(self, tmp_path: Path):
        (tmp_path / "wh").mkdir()  # the warehouse's folder exists; the file does not yet
        self.location = str(tmp_path / "wh" / "scores.duckdb")
        self.staging = tmp_path / "wh" / "_staging"
        self.args = [f"--warehouse={self.location}"]

    def exists(self) -> bool:
        return os.path.exists(self.location)

    def rows(self, sql: str, *params, **named) -> list[tuple]:
        return query(self.location, sql, named or list(params))

    def execute(self, sql: str) -> None:
        os.makedirs(os.path.dirname(self.location), exist_ok=True)
        with duckdb.connect(self.location) as con:
            con.execute(sql)

    def drop(self, name: str, kind: str = "TABLE") -> None:
        self.execute(f'DROP {kind} IF EXISTS "{name}"')

    def columns(self, table: str) -> list[tuple[str, bool]]:
        """(name, nullable) of a table's columns, in order."""
        return self.rows(
            "SELECT column_name, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_name = ? ORDER BY ordinal_position",
            table,
        )

    @staticmethod
    def example_queries() -> dict[str, str]:
        return readme_example_queries()


class BigQueryUnderTest:
    """A BigQuery dataset made by scripts/setup_bigquery.py, read with the real client."""

    kind = "bigquery"

    def __init__(self, client, tmp_path: Path):
        from scripts import setup_bigquery

        self.client = client
        self.dataset = f"scores_{uuid.uuid4().hex[:8]}"
        setup_bigquery.setup(BQ_PROJECT, self.dataset)
        self.location = f"bq://{BQ_PROJECT}.{self.dataset}"
        self.staging = tmp_path / "staging"
        self.reports = tmp_path / "reports"
        self.args = [f"--warehouse={self.location}", f"--staging_dir={self.staging}", f"--report_dir={self.reports}"]
        missing = f"absent_{uuid.uuid4().hex[:8]}"
        self.bad_locations = [
            ("bq://test.has-dash", "is not a BigQuery dataset: expected bq://project.dataset"),
            ("bq://Test.scores", "is not a BigQuery dataset"),
            (f"bq://{BQ_PROJECT}.{missing}", f"dataset {BQ_PROJECT}.{missing} does not exist"),
        ]

    def exists(self) -> bool:
        return True  # made by the set-up script before any run

    def rows(self, sql: str, *params, **named) -> list[tuple]:
        from google.cloud import bigquery as bq

        def parameter(name, value):
            kind = {date: "DATE", int: "INT64", float: "FLOAT64"}.get(type(value), "STRING")
            return bq.ScalarQueryParameter(name, kind, value)

        config = bq.QueryJobConfig(
            default_dataset=f"{BQ_PROJECT}.{self.dataset}",
            query_parameters=[parameter(None, v) for v in params] + [parameter(k, v) for k, v in named.items()],
        )
        return [tuple(r.values()) for r in self.client.query(sql, job_config=config).result()]

    def execute(self, sql: str) -> None:
        from google.cloud import bigquery as bq

        self.client.query(sql, job_config=bq.QueryJobConfig(default_dataset=f"{BQ_PROJECT}.{self.dataset}")).result()

    def drop(self, name: str, kind: str = "TABLE") -> None:
        """Through the API: the emulator keeps views made through it as tables, which SQL cannot drop."""
        self.client.delete_table(f"{BQ_PROJECT}.{self.dataset}.{name}", not_found_ok=True)

    def columns(self, table: str) -> list[tuple[str, bool]]:
        return [
            (f.name, f.mode != "REQUIRED") for f in self.client.get_table(f"{BQ_PROJECT}.{self.dataset}.{table}").schema
        ]

    @staticmethod
    def example_queries() -> dict[str, str]:
        return analyst_example_queries()


@pytest.fixture(params=["duckdb", "bigquery"])
def warehouse(request, tmp_path):
    """A warehouse to score into, one of each kind; `.args` are the scorer's options that name it."""
    if request.param == "duckdb":
        return DuckDBUnderTest(tmp_path)
    return BigQueryUnderTest(request.getfixturevalue("bigquery"), tmp_path)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed when missing (CI runs as root on a clean machine)."""
    if shutil.which("chromium"):
        return shutil.which("chromium")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no chromium, and it cannot be installed here (needs apt-get as root): apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    with open(os.path.join(tempfile.gettempdir(), "chromium-install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test processes (pytest-xdist) install it one at a time
        if not shutil.which("chromium"):
            if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
                subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900)
                done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    pytest.skip(f"chromium could not be installed: {done.stderr.strip()[-300:]}")
    return shutil.which("chromium")
