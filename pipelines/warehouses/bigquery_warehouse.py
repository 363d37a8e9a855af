"""BigQuery as the warehouse (`--warehouse bq://project.dataset`).

What is BigQuery's own:
1. staged Parquet files go into expiring staging tables by load jobs (from gs:// URIs server-side on
   Dataflow, uploaded from a local staging directory otherwise): no per-row calls;
2. the publishing transaction is one multi-statement script, so analysts see all of a night or none
   of it, and two overlapping runs end with one run's rows (BigQuery serialises transactions on a
   table; a conflicting one is retried);
3. tables are made through the API, partitioned by date, clustered and described.

Every call has a deadline and is retried with backoff while BigQuery does not answer (see
`warehouses.deadline`): jobs run under ids of ours, so a retried start finds a job BigQuery already
received instead of running it twice, and the run polls a job's state with bounded calls rather than
waiting on one that may never answer. The commit, once sent, is waited for until its outcome is known.

Every value reaches SQL as a query parameter. The transaction script reads the run's values from a
one-row staging table written by a parameterised query, as script variables, because scripts are
given no parameters here (bqemulator does not bind them); table names are checked identifiers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from apache_beam.io.filesystems import FileSystems

from pipelines import bigquery as bq
from pipelines.bigquery import SCHEME, DatasetRef
from pipelines.defaults import DEFAULT_LOCK_TIMEOUT
from pipelines.warehouses import sql
from pipelines.warehouses.contract import Warehouse
from pipelines.warehouses.deadline import SAY_EVERY, Deadline, PublishTimeout, Waiting, patiently
from pipelines.warehouses.records import AuditError, PublishedMeanwhile, RunRecord, StagedResults, WarehouseConfigError
from pipelines.warehouses.sql import Dialect, StagedTables, Statement, View
from schemas import FEATURE_DRIFT, SCORING_ERRORS, ColumnType, Field, TableSchema, UseCase, staged_predictions

DATASET_DESCRIPTION = "Nightly batch scores (see the project's README)."
STAGING_HOURS = 24  # staging tables outlive a failed run long enough to inspect, then expire
STAGING_TABLES = ("predictions", "errors", "duplicates", "drift", "run")  # what a publishing stages, per run
PUBLISH_ATTEMPTS = 5  # a transaction that lost a race with another run's is retried
POLL_SECONDS = 0.5  # a running job's state is read this often
T = TypeVar("T")


log = logging.getLogger(__name__)


class CommitUnknown(RuntimeError):
    """The commit was sent and BigQuery stopped answering before its outcome was known."""


def retryable_job_failures() -> tuple[type[BaseException], ...]:
    """A job that failed on BigQuery's side (backendError, rateLimitExceeded): worth running again."""
    from google.api_core import exceptions

    return (exceptions.ServerError, exceptions.TooManyRequests)


def transient_errors() -> tuple[type[BaseException], ...]:
    """What a call that may succeed when tried again raises: no answer, a refused or dropped
    connection, a server error, too many requests."""
    import requests
    from google.api_core import exceptions
    from google.auth import exceptions as auth

    return (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        TimeoutError,
        exceptions.RetryError,
        exceptions.ServerError,
        exceptions.TooManyRequests,
        auth.TransportError,
    )


def is_bigquery_warehouse(location: str) -> bool:
    return location.startswith(SCHEME)


class BigQueryWarehouse(Warehouse):
    def __init__(
        self,
        uri: str,
        use_case: UseCase,
        create_dataset: bool = False,
        dataset_location: str | None = None,
        partition_expiration_days: int | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ):
        ref = DatasetRef.parse(uri) if uri.startswith(SCHEME) else None
        if ref is None:
            raise WarehouseConfigError(f"--warehouse {uri!r} is not a BigQuery dataset: expected bq://project.dataset")
        self.location = uri
        self.use_case = use_case
        self.ref = ref
        self.dialect = Dialect(
            quote_char="`",
            param_prefix="@",
            type_names={t: t.value for t in ColumnType},
            reported_type_names=bq.STANDARD_TYPES,
            table_prefix=f"{ref}.",
            percentile_template="APPROX_QUANTILES({column}, 100)[OFFSET({percent})]",
            hash_template=None,  # grouping the keys is the warehouse's work, in parallel
        )
        self._create_dataset = create_dataset
        self._dataset_location = dataset_location
        self._partition_expiration_days = partition_expiration_days
        self.lock_timeout = lock_timeout
        self._job_location = dataset_location  # where jobs run: the dataset's location, read by _open
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = bq.client(self.ref.project)
        return self._client

    def __getstate__(self):  # travels to workers without its connection
        return {**self.__dict__, "_client": None}

    # ------------------------------------------------------------------ calls, bounded

    def _timeout(self) -> type[Exception]:
        """Out of time: a configuration error before any data is read, PublishTimeout after."""
        return WarehouseConfigError if self._deadline is None else PublishTimeout

    def _call(self, call: Callable[[float], T], deadline: Deadline | None = None) -> T:
        """One API call, each try bounded, retried while BigQuery does not answer, until `deadline` (the
        step's by default)."""
        waiting = Waiting(f"warehouse {self.location}")
        return patiently(call, deadline or self._wait(), waiting, transient_errors(), self._timeout())

    def _job(self, start: Callable[[dict[str, Any]], Any], deadline: Deadline | None = None, started=None):
        """A job started under an id of ours (`start(how)`, `how` the start's job id, location and timeout
        as the client's keyword arguments) within `deadline` (default the
        step's) and waited for until it is done (within `started(job_id)`'s deadline, if given: the
        commit's outcome is waited for as long again once it may have been sent). A start retried after a
        lost answer finds the job BigQuery received rather than running it twice. A job that failed
        raises its error here, once: it is BigQuery's answer, not a warehouse that does not answer."""
        from google.api_core import exceptions
        from google.cloud.bigquery.job.base import _error_result_to_exception

        job_id = f"scoring_{uuid.uuid4().hex}"

        def begin(seconds: float):
            try:
                return start({"job_id": job_id, "location": self._job_location, "timeout": seconds})
            except exceptions.Conflict:  # an earlier try reached BigQuery: that job it is
                return self.client.get_job(job_id, location=self._job_location, timeout=seconds, retry=None)

        deadline = deadline or self._wait()
        job = self._call(begin, deadline)
        polls = started(job_id) if started else deadline
        said = time.monotonic()
        while not self._call(lambda seconds: job.done(retry=None, timeout=seconds), polls):
            if polls.remaining() <= 0:
                raise self._timeout()(f"BigQuery job {job_id} still not done after {polls.seconds:g} s ({polls.what})")
            if time.monotonic() - said >= SAY_EVERY:
                said = time.monotonic()
                log.warning("warehouse %s: job %s still running, waiting (%s)", self.location, job_id, polls.what)
            time.sleep(POLL_SECONDS)
        if job.error_result:
            raise _error_result_to_exception(job.error_result, job.errors)
        return job

    def _delete_table(self, table: str) -> None:
        self._call(lambda seconds: self.client.delete_table(table, not_found_ok=True, retry=None, timeout=seconds))

    def default_staging_dir(self) -> str:
        return os.path.join(tempfile.gettempdir(), "batch-scoring-staging")

    @property
    def transaction_dialect(self) -> Dialect:
        """Script variables (`v_name`) in place of parameters: see the module's docstring."""
        return dataclasses.replace(self.dialect, param_prefix="v_")

    # ------------------------------------------------------------------ tables

    @property
    def name(self) -> str:
        return self.ref.dataset

    def _open(self, create: bool) -> bool:
        from google.api_core import exceptions

        try:
            dataset = self._call(lambda seconds: self.client.get_dataset(str(self.ref), retry=None, timeout=seconds))
            self._job_location = dataset.location or self._job_location
        except exceptions.NotFound:
            if not (create and self._create_dataset):
                raise WarehouseConfigError(
                    f"BigQuery dataset {self.ref} does not exist; create it with "
                    "scripts/setup_bigquery.py or pass --create_dataset"
                ) from None
            definition = self._dataset_definition()
            self._call(
                lambda seconds: self.client.create_dataset(definition, exists_ok=True, retry=None, timeout=seconds)
            )
        return True

    def _dataset_definition(self):
        from google.cloud import bigquery

        dataset = bigquery.Dataset(str(self.ref))
        if self._dataset_location:
            dataset.location = self._dataset_location
        dataset.description = DATASET_DESCRIPTION
        return dataset

    def set_up(self) -> None:
        """What scripts/setup_bigquery.py does: the dataset (located, described), the missing tables, and
        the views made anew so that a changed definition reaches them. Existing tables are left as they
        are; the scorer refuses one that no longer matches `schemas/`. Like `prepare`, it refuses a
        dataset of another use case and labels an unlabelled one as this use case's."""
        self.client.create_dataset(self._dataset_definition(), exists_ok=True)
        labelled = self._check_use_case()
        for table in self.tables:
            self._create_table(table)
        for view in self.views():
            self.client.delete_table(f"{self.ref}.{view.name}", not_found_ok=True)
            self._create_view(view)
        if labelled is None:
            self._query(sql.label(self.dialect, self.use_case.name))

    def _columns(self, table: str) -> list[tuple[str, str]] | None:
        from google.api_core import exceptions

        try:
            existing = self._call(
                lambda seconds: self.client.get_table(f"{self.ref}.{table}", retry=None, timeout=seconds)
            )
        except exceptions.NotFound:
            return None
        return [(f.name, f.field_type) for f in existing.schema]

    def _create_table(self, table: TableSchema) -> None:
        definition = bq.table_definition(self.ref, table, self._partition_expiration_days)
        self._call(lambda seconds: self.client.create_table(definition, exists_ok=True, retry=None, timeout=seconds))

    def _add_columns(self, table: TableSchema, fields: tuple[Field, ...]) -> None:
        # The schema through the API (descriptions included), then the same columns by DDL, IF NOT EXISTS: a
        # no-op on BigQuery, while the emulator keeps a table's metadata and its rows apart and needs both.
        existing = self.client.get_table(f"{self.ref}.{table.name}")
        existing.schema = [*existing.schema, *bq.schema_fields(TableSchema(table.name, fields, table.description))]
        self.client.update_table(existing, ["schema"])
        d = self.dialect
        for f in fields:  # one column per statement, which both accept
            add = f"ADD COLUMN IF NOT EXISTS {d.quote(f.name)} {d.type_name(f.type)}"
            self._query(Statement(f"ALTER TABLE {d.table(table.name)} {add}"))

    def _create_view(self, view: View) -> None:
        """Made when missing; replaced only by `set_up`, so analysts never see it vanish mid-query."""
        from google.cloud import bigquery

        definition = bigquery.Table(f"{self.ref}.{view.name}")
        definition.view_query = view.sql
        definition.description = view.description
        self._call(lambda seconds: self.client.create_table(definition, exists_ok=True, retry=None, timeout=seconds))

    # ------------------------------------------------------------------ queries

    def _query(self, statement: Statement) -> tuple[list[str], list[tuple]]:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[bq.query_parameter(n, t, v) for n, (t, v) in statement.params.items()]
        )
        job = self._job(
            lambda how: self.client.query(statement.sql, job_config=config, retry=None, job_retry=None, **how)
        )

        def rows(seconds: float) -> tuple[list[str], list[tuple]]:
            result = job.result(retry=None, job_retry=None, timeout=seconds)
            return [f.name for f in result.schema or []], [tuple(row.values()) for row in result]

        return self._call(rows)

    # ------------------------------------------------------------------ publishing

    @staticmethod
    def _staging_name(run_id: str, what: str) -> str:
        return f"_staging_{re.sub(r'[^A-Za-z0-9_]', '_', run_id)}_{what}"

    @contextlib.contextmanager
    def _staged(self, run: RunRecord, staged: StagedResults) -> Iterator[StagedTables]:
        """Load jobs into expiring staging tables; dropped once published, kept to inspect otherwise."""
        predictions = self._load(
            self._staging_name(run.run_id, "predictions"), staged_predictions(self.use_case), staged.prediction_paths
        )
        errors = self._load(self._staging_name(run.run_id, "errors"), SCORING_ERRORS, staged.error_paths)
        drift = self._load(self._staging_name(run.run_id, "drift"), FEATURE_DRIFT, staged.drift_paths)
        duplicates = self._staging_name(run.run_id, "duplicates")
        groups = sql.duplicate_groups(self.dialect, self.dialect.table(predictions), self.key)
        self._query(
            Statement(
                f"CREATE OR REPLACE TABLE {self.dialect.table(duplicates)} OPTIONS (expiration_timestamp = "
                f"TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {STAGING_HOURS} HOUR)) AS {groups.sql}"
            )
        )
        d = self.dialect
        yield StagedTables(d.table(predictions), d.table(errors), d.table(duplicates), d.table(drift))
        for table in (predictions, errors, duplicates, drift):
            self._delete_table(f"{self.ref}.{table}")

    def _drop_staging(self, run_id: str) -> None:
        """A killed run's staging tables would expire in a day; a reaped run's go now."""
        for what in STAGING_TABLES:
            self._delete_table(f"{self.ref}.{self._staging_name(run_id, what)}")

    def _load(self, name: str, table: TableSchema, files: list[str]) -> str:
        """One load job per upload, or one server-side load job for all files on gs://."""
        from google.cloud import bigquery

        definition = bigquery.Table(f"{self.ref}.{name}", schema=bq.schema_fields(table))
        definition.expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=STAGING_HOURS)
        self._delete_table(f"{self.ref}.{name}")  # a retried publish starts clean
        self._call(lambda seconds: self.client.create_table(definition, exists_ok=True, retry=None, timeout=seconds))
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET, write_disposition=bigquery.WriteDisposition.WRITE_APPEND
        )
        remote = [f for f in files if f.startswith("gs://")]
        if remote:
            self._job(
                lambda how: self.client.load_table_from_uri(
                    remote, definition.reference, job_config=config, retry=None, **how
                )
            )
        for path in (f for f in files if not f.startswith("gs://")):
            self._job(lambda how, path=path: self._upload(path, definition, config, how))
        return name

    def _upload(self, path: str, definition, config, how: dict[str, Any]):
        """One local file as a load job; the file is opened anew for each try."""
        with FileSystems.open(path) as f:
            return self.client.load_table_from_file(f, definition.reference, job_config=config, **how)

    def _transaction(self, run: RunRecord, statements: list[Statement]) -> None:
        d, script = self.dialect, self.transaction_dialect
        params = {name: param for statement in statements for name, param in statement.params.items()}
        values_name = self._staging_name(run.run_id, "run")
        values = d.table(values_name)
        self._query(
            Statement(
                f"CREATE OR REPLACE TABLE {values} OPTIONS (expiration_timestamp = "
                f"TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {STAGING_HOURS} HOUR)) AS SELECT "
                + ", ".join(f"{d.param(name)} AS {d.quote(name)}" for name in params),
                params,
            )
        )
        declarations = [
            f"DECLARE {script.param(name)} {d.type_name(type_)} DEFAULT (SELECT {d.quote(name)} FROM {values});"
            for name, (type_, _) in params.items()
        ]
        body = "".join(f"{statement.sql};\n" for statement in statements)
        self._run_script("\n".join(declarations) + f"\nBEGIN TRANSACTION;\n{body}COMMIT TRANSACTION;")
        self._delete_table(f"{self.ref}.{values_name}")

    def _commit(self, script: str) -> None:
        """Send the transaction and wait for its outcome. Until it is sent, the step's deadline holds
        (out of time: PublishTimeout, nothing sent). Once a try to send it was made, BigQuery may have
        it: the outcome is waited for as long again, and if it never comes, CommitUnknown (the run's row
        says which it was: the transaction marks it succeeded, or it stays running and is reaped)."""
        deadline = self._wait()
        if deadline.remaining() <= 0:
            raise PublishTimeout(f"{deadline.what} ({deadline.seconds:g} s) passed before the commit: nothing sent")
        try:
            self._job(
                lambda how: self.client.query(script, retry=None, job_retry=None, **how),
                started=lambda job_id: Deadline(deadline.seconds, f"{deadline.what}, again, for the commit's outcome"),
            )
        except PublishTimeout as e:
            raise CommitUnknown(
                f"the commit was sent but its outcome is unknown ({e}); scoring_runs says whether the night "
                "was published (succeeded), and a run left running is reaped by the next"
            ) from None

    def _run_script(self, script: str) -> None:
        from google.api_core import exceptions

        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                self._commit(script)
                return
            except (exceptions.BadRequest, exceptions.Conflict, *retryable_job_failures()) as e:
                # The transaction failed: nothing of it committed, so it may run again (as a new job).
                if sql.PUBLISHED_MEANWHILE in str(e):
                    raise PublishedMeanwhile(f"nothing published: {e}") from e
                retryable = (
                    isinstance(e, retryable_job_failures())
                    or "concurrent" in str(e).lower()
                    or "serialize" in str(e).lower()
                )
                if not retryable or attempt == PUBLISH_ATTEMPTS - 1:
                    raise AuditError(f"publishing failed, nothing published: {e}") from e
                time.sleep(2**attempt)
