"""The warehouse a run publishes to: tables from `schemas`, one transaction per published date.

A run never writes a table while it scores. The pipeline stages Parquet files; publishing audits
them and then, in one transaction, replaces the date's predictions and errors and marks the run
succeeded. A run that dies before that commit leaves the date exactly as it was, and two runs of
one date serialise on the transaction, so the date ends with exactly one run's rows.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import duckdb

from pipelines.batches import FILE_ERROR, RECORD_ERROR
from schemas import (
    CHALLENGER,
    CHAMPION,
    INPUT,
    PREDICTIONS,
    SCORING_ERRORS,
    SCORING_RUNS,
    WAREHOUSE_TABLES,
    TableSchema,
)

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


class WarehouseConfigError(ValueError):
    """The warehouse cannot be used as configured; raised before any data is read."""


class AuditError(RuntimeError):
    """Staged results failed their audit; nothing was published."""


@dataclass(frozen=True)
class RunRecord:
    """What the warehouse needs to know about a run, fixed when it starts."""

    run_id: str
    score_date: date
    model_name: str
    model_version: int
    input: str
    started_at: datetime
    options: dict[str, Any] = field(default_factory=dict)
    challenger_version: int | None = None


@dataclass(frozen=True)
class StagedResults:
    """Files the pipeline staged, with the row counts their writers reported, and the input count."""

    prediction_files: list[tuple[str, int]]
    error_files: list[tuple[str, int]]
    input_records: int


class DuckDBWarehouse:
    """The embedded default warehouse: one DuckDB database file."""

    LOCK_WAIT_SECONDS = 300  # another run may hold the file's lock while it publishes
    # Publishing copies the whole night into the table inside the scoring process; without a cap
    # DuckDB's buffer cache grows with the night's size. It spills to disk past the cap instead.
    MEMORY_LIMIT = "256MB"

    def __init__(self, path: str):
        if "://" in path:
            raise WarehouseConfigError(
                f"--warehouse {path!r}: a DuckDB warehouse is a local file path (BigQuery: bq://project.dataset)"
            )
        self.path = self.location = path

    def default_staging_dir(self) -> str:
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), "_staging")

    def connect(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.LOCK_WAIT_SECONDS
        while True:
            try:
                return duckdb.connect(
                    self.path,
                    config={
                        "memory_limit": self.MEMORY_LIMIT,
                        "preserve_insertion_order": False,  # a table's row order means nothing here
                    },
                )
            except duckdb.IOException as e:
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def prepare(self, run: RunRecord, record: bool = True) -> None:
        """Create missing tables, check existing ones against `schemas`, record the run as running.

        With `record` False (a dry run) nothing is created or written: existing tables are checked.
        """
        if not record:
            if os.path.exists(self.path):
                with duckdb.connect(self.path, read_only=True) as con:
                    for table in WAREHOUSE_TABLES:
                        if con.execute(
                            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table.name]
                        ).fetchone()[0]:
                            _check_columns(con, table)
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with self.connect() as con:
            for table in WAREHOUSE_TABLES:
                con.execute(table.duckdb_ddl())
                _check_columns(con, table)
            con.execute(
                f'INSERT INTO "{SCORING_RUNS.name}" (run_id, score_date, status, model_name, model_version, '
                "challenger_version, input, started_at, options) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run.run_id,
                    run.score_date,
                    RUNNING,
                    run.model_name,
                    run.model_version,
                    run.challenger_version,
                    run.input,
                    run.started_at,
                    json.dumps(run.options, sort_keys=True),
                ],
            )

    def publish(self, run: RunRecord, staged: StagedResults, finished_at: datetime) -> dict[str, int]:
        """Audit the staged files, then replace the date's rows in one transaction."""
        pred_files = [p for p, _ in staged.prediction_files]
        err_files = [p for p, _ in staged.error_files]
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                counts = _audit(con, run, staged)
                comparison = _compare(con, pred_files) if run.challenger_version is not None and pred_files else None
                for table, files in ((PREDICTIONS, pred_files), (SCORING_ERRORS, err_files)):
                    con.execute(f'DELETE FROM "{table.name}" WHERE score_date = ?', [run.score_date])
                    if files:
                        con.execute(f'INSERT INTO "{table.name}" BY NAME SELECT * FROM read_parquet(?)', [files])
                con.execute(
                    f'UPDATE "{SCORING_RUNS.name}" SET status = ?, input_records = ?, scored_records = ?, '
                    "rejected_records = ?, rejected_files = ?, finished_at = ?, comparison = ? WHERE run_id = ?",
                    [
                        SUCCEEDED,
                        counts["input_records"],
                        counts["scored_records"],
                        counts["rejected_records"],
                        counts["rejected_files"],
                        finished_at,
                        json.dumps(comparison) if comparison else None,
                        run.run_id,
                    ],
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return counts

    def mark_failed(self, run_id: str, error: str, finished_at: datetime) -> None:
        with self.connect() as con:
            con.execute(
                f'UPDATE "{SCORING_RUNS.name}" SET status = ?, error = ?, finished_at = ? '
                "WHERE run_id = ? AND status = ?",
                [FAILED, error[:4000], finished_at, run_id, RUNNING],
            )

    def record_metrics(self, run_id: str, metrics: dict[str, Any]) -> None:
        with self.connect() as con:
            con.execute(
                f'UPDATE "{SCORING_RUNS.name}" SET metrics = ? WHERE run_id = ?',
                [json.dumps(metrics, sort_keys=True), run_id],
            )

    def run_row(self, run_id: str) -> dict[str, Any]:
        with self.connect() as con:
            cursor = con.execute(f'SELECT * FROM "{SCORING_RUNS.name}" WHERE run_id = ?', [run_id])
            names = [d[0] for d in cursor.description]
            row = cursor.fetchone()
        if row is None:
            raise KeyError(run_id)
        return dict(zip(names, row))


def _check_columns(con: duckdb.DuckDBPyConnection, table: TableSchema) -> None:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [table.name],
    ).fetchall()
    have = [(name, dtype) for name, dtype in rows]
    want = [(f.name, f.type.duckdb.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")) for f in table.fields]
    if have != want:
        raise WarehouseConfigError(
            f"table {table.name} does not match schemas/: has {have}, schemas/ defines {want}; "
            "migrate or move the old table away"
        )


@dataclass(frozen=True)
class StagedCounts:
    """What an audit query found in the staged files (or staging tables)."""

    prediction_rows: int = 0
    null_fields: int = 0
    out_of_range: int = 0
    other_runs: int = 0
    champion: int = 0
    challenger: int = 0
    rejected_records: int = 0
    rejected_files: int = 0


def audit_sql(predictions: str, errors: str | None, p: str) -> str:
    """One query over the staged rows; `p` is the dialect's parameter prefix ($ DuckDB, @ BigQuery)."""
    key = INPUT.key.name
    errors_part = (
        (
            f"(SELECT count(*) FROM {errors} WHERE error_kind = {p}record), "
            f"(SELECT count(*) FROM {errors} WHERE error_kind = {p}file)"
        )
        if errors
        else "0, 0"
    )
    return f"""
        SELECT count(*),
               count(CASE WHEN `{key}` IS NULL OR probability IS NULL THEN 1 END),
               count(CASE WHEN NOT (probability BETWEEN 0 AND 1) THEN 1 END),
               count(CASE WHEN run_id <> {p}run_id OR score_date <> {p}score_date THEN 1 END),
               count(CASE WHEN model_role = {p}champion THEN 1 END),
               count(CASE WHEN model_role = {p}challenger THEN 1 END),
               {errors_part}
        FROM {predictions}"""


def audit_params(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "score_date": run.score_date,
        "champion": CHAMPION,
        "challenger": CHALLENGER,
        "record": RECORD_ERROR,
        "file": FILE_ERROR,
    }


def check_staged(run: RunRecord, staged: StagedResults, found: StagedCounts) -> dict[str, int]:
    """What is staged must be whole and sane before anyone can see it; AuditError says why not."""
    problems = []
    written = sum(n for _, n in staged.prediction_files)
    if found.prediction_rows != written:
        problems.append(f"staged predictions hold {found.prediction_rows} rows but {written} were written")
    if found.null_fields:
        problems.append(f"{found.null_fields} staged predictions have a null key or probability")
    if found.out_of_range:
        problems.append(f"{found.out_of_range} staged probabilities are outside [0, 1]")
    if found.other_runs:
        problems.append(f"{found.other_runs} staged rows belong to another run or date")
    if run.challenger_version is not None and found.challenger != found.champion:
        problems.append(f"the challenger scored {found.challenger} records but the champion {found.champion}")
    if run.challenger_version is None and found.challenger:
        problems.append(f"{found.challenger} challenger rows staged but no challenger was asked for")
    if staged.input_records != found.champion + found.rejected_records:
        problems.append(
            f"counts do not reconcile: input {staged.input_records} != scored {found.champion} "
            f"+ rejected {found.rejected_records}"
        )
    if problems:
        raise AuditError("audit failed, nothing published: " + "; ".join(problems))
    return {
        "input_records": staged.input_records,
        "scored_records": found.champion,
        "rejected_records": found.rejected_records,
        "rejected_files": found.rejected_files,
        "prediction_rows": found.prediction_rows,
    }


def comparison_sql(predictions: str, p: str) -> str:
    """Champion vs challenger on the same records: how different would switching make tomorrow?"""
    key = INPUT.key.name
    return f"""
        WITH champion AS (SELECT `{key}` AS k, probability AS cp, label AS cl FROM {predictions}
                          WHERE model_role = {p}champion),
             challenger AS (SELECT `{key}` AS k, probability AS hp, label AS hl FROM {predictions}
                            WHERE model_role = {p}challenger),
             paired AS (SELECT cp, hp, cl, hl FROM champion JOIN challenger USING (k)),
             ranked AS (  -- average ranks, so ties do not bias Spearman's coefficient
                SELECT cp, hp, cl, hl,
                       RANK() OVER (ORDER BY cp) + (COUNT(*) OVER (PARTITION BY cp) - 1) / 2.0 AS rc,
                       RANK() OVER (ORDER BY hp) + (COUNT(*) OVER (PARTITION BY hp) - 1) / 2.0 AS rh
                FROM paired)
        SELECT count(*), avg(cp), avg(hp), avg(CASE WHEN cl <> hl THEN 1.0 ELSE 0.0 END), corr(rc, rh)
        FROM ranked"""


def comparison_result(row) -> dict[str, float | int | None]:
    records, champion_mean, challenger_mean, differ, spearman = row
    return {
        "records": records,
        "champion_mean_probability": champion_mean,
        "challenger_mean_probability": challenger_mean,
        "label_disagreement": differ,
        "rank_correlation": spearman,
    }


def _audit(con: duckdb.DuckDBPyConnection, run: RunRecord, staged: StagedResults) -> dict[str, int]:
    pred_files = [p for p, _ in staged.prediction_files]
    err_files = [p for p, _ in staged.error_files]
    if not pred_files and not err_files:
        return check_staged(run, staged, StagedCounts())
    empty_predictions = f"(SELECT * FROM {PREDICTIONS.name} WHERE false)"
    sql = audit_sql(
        "read_parquet($pred_files)" if pred_files else empty_predictions,
        "read_parquet($err_files)" if err_files else None,
        "$",
    ).replace("`", '"')
    params = audit_params(run)
    if pred_files:
        params["pred_files"] = pred_files
    if err_files:
        params["err_files"] = err_files
    else:
        params = {k: v for k, v in params.items() if k not in ("record", "file")}
    return check_staged(run, staged, StagedCounts(*con.execute(sql, params).fetchone()))


def _compare(con: duckdb.DuckDBPyConnection, pred_files: list[str]) -> dict[str, float | int | None]:
    sql = comparison_sql("read_parquet($files)", "$").replace("`", '"')
    return comparison_result(
        con.execute(sql, {"files": pred_files, "champion": CHAMPION, "challenger": CHALLENGER}).fetchone()
    )
