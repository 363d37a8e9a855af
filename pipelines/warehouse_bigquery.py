"""BigQuery as the warehouse (`--warehouse bq://project.dataset`): load jobs, audit, one transaction.

Publishing a night:
1. the run's staged Parquet files go into expiring staging tables by load jobs (from gs:// URIs
   server-side on Dataflow, uploaded from a local staging directory otherwise): no per-row calls;
2. one query audits the staging tables (row counts, null keys or scores, scores in [0, 1], the run
   and date, input = scored + rejected) and nothing is published if it fails;
3. one multi-statement transaction replaces the date's predictions and errors and marks the run
   succeeded, so analysts see all of the night or none of it, and two overlapping runs end with one
   run's rows (BigQuery serialises transactions on a table; a conflicting one is retried).

Every value reaches SQL as a query parameter. The transaction script reads the run's values from a
one-row staging table written by a parameterised query, because scripts are given no parameters
here (bqemulator does not bind them); table names are checked identifiers.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

from apache_beam.io.filesystems import FileSystems

from pipelines.bigquery_source import bigquery_client
from pipelines.warehouse import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    AuditError,
    RunRecord,
    StagedCounts,
    StagedResults,
    WarehouseConfigError,
    audit_params,
    audit_sql,
    check_staged,
    comparison_result,
    comparison_sql,
)
from schemas import CHALLENGER, CHAMPION, PREDICTIONS, SCORING_ERRORS, SCORING_RUNS, WAREHOUSE_TABLES, TableSchema

SCHEME = "bq://"
_WAREHOUSE = re.compile(r"^bq://(?P<project>[a-z][a-z0-9-]{0,61}[a-z0-9])\.(?P<dataset>[A-Za-z0-9_]{1,1024})$")
STAGING_HOURS = 24  # staging tables outlive a failed run long enough to inspect, then expire
PUBLISH_ATTEMPTS = 5  # a transaction that lost a race with another run's is retried


def is_bigquery(location: str) -> bool:
    return location.startswith(SCHEME)


def bq_schema(table: TableSchema) -> list:
    from google.cloud import bigquery

    return [
        bigquery.SchemaField(
            f.name, f.type.value, mode="REQUIRED" if f.required else "NULLABLE", description=f.description
        )
        for f in table.fields
    ]


def table_definition(project: str, dataset: str, table: TableSchema, partition_expiration_days: int | None = None):
    """A warehouse table as BigQuery should hold it: partitioned by date, clustered, described."""
    from google.cloud import bigquery

    definition = bigquery.Table(f"{project}.{dataset}.{table.name}", schema=bq_schema(table))
    definition.description = table.description
    if table.partition_field:
        definition.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY,
            field=table.partition_field,
            expiration_ms=partition_expiration_days * 86_400_000 if partition_expiration_days else None,
        )
    if table.cluster_fields:
        definition.clustering_fields = list(table.cluster_fields)
    return definition


class BigQueryWarehouse:
    def __init__(self, uri: str, create_dataset: bool = False, dataset_location: str | None = None):
        match = _WAREHOUSE.match(uri)
        if not match:
            raise WarehouseConfigError(f"--warehouse {uri!r} is not a BigQuery dataset: expected bq://project.dataset")
        self.location = uri
        self.project, self.dataset = match["project"], match["dataset"]
        self._create_dataset = create_dataset
        self._dataset_location = dataset_location
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = bigquery_client(self.project)
        return self._client

    def __getstate__(self):  # travels to workers without its connection
        return {**self.__dict__, "_client": None}

    def ref(self, table: str) -> str:
        return f"`{self.project}.{self.dataset}.{table}`"

    def default_staging_dir(self) -> str:
        return os.path.join(tempfile.gettempdir(), "batch-scoring-staging")

    # ------------------------------------------------------------------ before the run

    def prepare(self, run: RunRecord, record: bool = True) -> None:
        """Dataset and tables exist and match `schemas`; the run is recorded as running.

        With `record` False (a dry run) nothing is created or written: what exists is checked.
        """
        from google.api_core import exceptions
        from google.cloud import bigquery

        try:
            self.client.get_dataset(f"{self.project}.{self.dataset}")
        except exceptions.NotFound:
            if not self._create_dataset or not record:
                raise WarehouseConfigError(
                    f"BigQuery dataset {self.project}.{self.dataset} does not exist; create it with "
                    "scripts/setup_bigquery.py or pass --create_dataset"
                ) from None
            dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
            if self._dataset_location:
                dataset.location = self._dataset_location
            self.client.create_dataset(dataset, exists_ok=True)
        for table in WAREHOUSE_TABLES:
            try:
                existing = self.client.get_table(f"{self.project}.{self.dataset}.{table.name}")
            except exceptions.NotFound:
                if record:
                    self.client.create_table(table_definition(self.project, self.dataset, table), exists_ok=True)
                continue
            have = [(f.name, _standard_type(f.field_type)) for f in existing.schema]
            want = [(f.name, f.type.value) for f in table.fields]
            if have != want:
                raise WarehouseConfigError(
                    f"BigQuery table {self.project}.{self.dataset}.{table.name} does not match schemas/: has "
                    f"{have}, schemas/ defines {want}; migrate it or move it away"
                )
        if not record:
            return
        self._query(
            f"INSERT INTO {self.ref(SCORING_RUNS.name)} (run_id, score_date, status, model_name, model_version, "
            "challenger_version, input, started_at, options) VALUES (@run_id, @score_date, @status, @model_name, "
            "@model_version, @challenger_version, @input, @started_at, @options)",
            run_id=run.run_id,
            score_date=run.score_date,
            status=RUNNING,
            model_name=run.model_name,
            model_version=run.model_version,
            challenger_version=("INT64", run.challenger_version),
            input=run.input,
            started_at=run.started_at,
            options=json.dumps(run.options, sort_keys=True),
        )

    # ------------------------------------------------------------------ publishing

    def publish(self, run: RunRecord, staged: StagedResults, finished_at: datetime) -> dict[str, int]:
        stage = "_staging_" + re.sub(r"[^A-Za-z0-9_]", "_", run.run_id)
        predictions = self._stage(f"{stage}_predictions", PREDICTIONS, [p for p, _ in staged.prediction_files])
        errors = self._stage(f"{stage}_errors", SCORING_ERRORS, [p for p, _ in staged.error_files])
        found = StagedCounts(
            *list(self._query(audit_sql(self.ref(predictions), self.ref(errors), "@"), **audit_params(run)))[0]
        )
        counts = check_staged(run, staged, found)
        comparison = None
        if run.challenger_version is not None:
            comparison = comparison_result(
                list(self._query(comparison_sql(self.ref(predictions), "@"), champion=CHAMPION, challenger=CHALLENGER))[
                    0
                ]
            )
        values = f"{stage}_run"
        self._query(
            f"CREATE OR REPLACE TABLE {self.ref(values)} OPTIONS (expiration_timestamp = "
            f"TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {STAGING_HOURS} HOUR)) AS SELECT @run_id AS run_id, "
            "@score_date AS score_date, @input_records AS input_records, @scored_records AS scored_records, "
            "@rejected_records AS rejected_records, @rejected_files AS rejected_files, "
            "@finished_at AS finished_at, @comparison AS comparison",
            run_id=run.run_id,
            score_date=run.score_date,
            finished_at=finished_at,
            comparison=("STRING", json.dumps(comparison) if comparison else None),
            **{k: v for k, v in counts.items() if k != "prediction_rows"},
        )
        pred_cols = ", ".join(f"`{n}`" for n in PREDICTIONS.names)
        err_cols = ", ".join(f"`{n}`" for n in SCORING_ERRORS.names)
        script = f"""
            DECLARE run_date DATE DEFAULT (SELECT score_date FROM {self.ref(values)});
            BEGIN TRANSACTION;
            DELETE FROM {self.ref(PREDICTIONS.name)} WHERE score_date = run_date;
            INSERT INTO {self.ref(PREDICTIONS.name)} ({pred_cols}) SELECT {pred_cols} FROM {self.ref(predictions)};
            DELETE FROM {self.ref(SCORING_ERRORS.name)} WHERE score_date = run_date;
            INSERT INTO {self.ref(SCORING_ERRORS.name)} ({err_cols}) SELECT {err_cols} FROM {self.ref(errors)};
            UPDATE {self.ref(SCORING_RUNS.name)} r SET status = '{SUCCEEDED}', input_records = s.input_records,
                scored_records = s.scored_records, rejected_records = s.rejected_records,
                rejected_files = s.rejected_files, finished_at = s.finished_at, comparison = s.comparison
              FROM {self.ref(values)} s WHERE r.run_id = s.run_id;
            COMMIT TRANSACTION;"""
        self._publish(script)
        for table in (predictions, errors, values):
            self.client.delete_table(f"{self.project}.{self.dataset}.{table}", not_found_ok=True)
        return counts

    def _stage(self, name: str, table: TableSchema, files: list[str]) -> str:
        """Load staged Parquet files into an expiring staging table: one load job per upload, or one
        server-side load job for all files on gs://."""
        from google.cloud import bigquery

        definition = bigquery.Table(f"{self.project}.{self.dataset}.{name}", schema=bq_schema(table))
        definition.expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=STAGING_HOURS)
        self.client.delete_table(definition.reference, not_found_ok=True)  # a retried publish starts clean
        self.client.create_table(definition)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET, write_disposition=bigquery.WriteDisposition.WRITE_APPEND
        )
        remote = [f for f in files if f.startswith("gs://")]
        if remote:
            self.client.load_table_from_uri(remote, definition.reference, job_config=config).result()
        for path in (f for f in files if not f.startswith("gs://")):
            with FileSystems.open(path) as f:
                self.client.load_table_from_file(f, definition.reference, job_config=config).result()
        return name

    def _publish(self, script: str) -> None:
        from google.api_core import exceptions

        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                self.client.query(script).result()
                return
            except (exceptions.BadRequest, exceptions.Conflict) as e:
                retryable = "concurrent" in str(e).lower() or "serialize" in str(e).lower()
                if not retryable or attempt == PUBLISH_ATTEMPTS - 1:
                    raise AuditError(f"publishing failed, nothing published: {e}") from e
                time.sleep(2**attempt)

    # ------------------------------------------------------------------ bookkeeping

    def mark_failed(self, run_id: str, error: str, finished_at: datetime) -> None:
        self._query(
            f"UPDATE {self.ref(SCORING_RUNS.name)} SET status = @failed, error = @error, "
            "finished_at = @finished_at WHERE run_id = @run_id AND status = @running",
            failed=FAILED,
            error=error[:4000],
            finished_at=finished_at,
            run_id=run_id,
            running=RUNNING,
        )

    def record_metrics(self, run_id: str, metrics: dict[str, Any]) -> None:
        self._query(
            f"UPDATE {self.ref(SCORING_RUNS.name)} SET metrics = @metrics WHERE run_id = @run_id",
            metrics=json.dumps(metrics, sort_keys=True),
            run_id=run_id,
        )

    def run_row(self, run_id: str) -> dict[str, Any]:
        rows = list(self._query(f"SELECT * FROM {self.ref(SCORING_RUNS.name)} WHERE run_id = @run_id", run_id=run_id))
        if not rows:
            raise KeyError(run_id)
        return dict(rows[0].items())

    def _query(self, sql: str, **params):
        from google.cloud import bigquery

        return self.client.query(
            sql, job_config=bigquery.QueryJobConfig(query_parameters=[_parameter(k, v) for k, v in params.items()])
        ).result()


_STANDARD = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}


def _standard_type(bq_type: str) -> str:
    return _STANDARD.get(bq_type, bq_type)


def _parameter(name: str, value):
    """A query parameter typed from its value; a (type, value) pair types a value that may be None."""
    from google.cloud import bigquery

    if isinstance(value, tuple):
        return bigquery.ScalarQueryParameter(name, *value)
    if isinstance(value, bool):
        kind = "BOOL"
    elif isinstance(value, int):
        kind = "INT64"
    elif isinstance(value, float):
        kind = "FLOAT64"
    elif isinstance(value, datetime):
        kind = "TIMESTAMP"
    elif isinstance(value, date):
        kind = "DATE"
    else:
        kind = "STRING"
    return bigquery.ScalarQueryParameter(name, kind, value)
