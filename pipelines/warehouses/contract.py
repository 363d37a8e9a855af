"""The run life cycle every warehouse implements, written once over a few engine-specific steps.

A run never writes a table while it scores. The pipeline stages Parquet files; publishing audits
them and then, in one transaction, replaces the date's predictions and errors and marks the run
succeeded. A run that dies before that commit leaves the date exactly as it was, and two runs of
one date serialise on the transaction, so the date ends with exactly one run's rows.

`Warehouse` holds that life cycle for one use case (`use_case`: its predictions tables and key column
come from it; the platform's other tables are every use case's): prepare (tables checked against
`schemas/`, missing tables and the analyst views made), reap runs that stopped heartbeating, record the
run, publish a night (stage, audit, quality gates, compare, one transaction: published, or kept in the
refused tables), mark a run failed, record its metrics, read its row. The SQL comes from
`warehouses.sql` in the warehouse's dialect. A backend writes only what differs between engines: its
connection, how a table's columns are read and a table is made, how staged files become queryable, and
how a transaction runs.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from pipelines.defaults import DEFAULT_LOCK_TIMEOUT
from pipelines.warehouses import gates, sql
from pipelines.warehouses.deadline import Deadline
from pipelines.warehouses.records import (
    AlreadyPublished,
    AuditError,
    GateRefused,
    NightReport,
    PublishedMeanwhile,
    RunRecord,
    StagedCounts,
    StagedResults,
    WarehouseConfigError,
    check_staged,
    comparison_result,
    published_counts,
)
from pipelines.warehouses.sql import COMMIT_TIME, RUNNING, SUCCEEDED, Dialect, StagedTables, Statement
from schemas import (
    REFUSED_ERRORS,
    REFUSED_FEATURE_DRIFT,
    Field,
    TableSchema,
    UseCase,
    predictions,
    refused_predictions,
    warehouse_tables,
)
from schemas.platform import WAREHOUSE_INFO

FAILED, REFUSED, ABANDONED = "failed", "refused", "abandoned"
DEFAULT_REPORT_DIR = "warehouse/reports"  # beside the default DuckDB warehouse, warehouse/scores.duckdb
MAX_ERROR_CHARS = 4000  # a failed run's error as stored; the rest is in the job's log
REJUDGE_ATTEMPTS = 5  # overlapping runs of one date: each lost race re-reads what the other published


class PublishGuard(Protocol):
    """Held by the caller around each publishing transaction. A run stopped by SIGTERM must leave its
    night as it was; where the pipeline runs on threads of the process, the signal reaches the main
    thread while a worker thread may be publishing. Stopping is the process's business, not the
    warehouse's: the caller's guard refuses a transaction once the process is stopping, and lets the
    main thread wait for one in flight before it marks the run failed."""

    def transaction(self, run_id: str) -> AbstractContextManager[None]:
        """Held around a publishing transaction; raises PublishingStopped where this process is stopping."""


class _Unguarded:
    """Nothing stops publishing: the guard of a caller that handles no signal (a test, a script)."""

    def transaction(self, run_id: str) -> AbstractContextManager[None]:
        return contextlib.nullcontext()


UNGUARDED: PublishGuard = _Unguarded()


class Warehouse(abc.ABC):
    """Where a run's nights are published, and its bookkeeping kept."""

    location: str  # what the user passed as --warehouse
    use_case: UseCase  # whose nights it publishes: the predictions table and its key come from it
    dialect: Dialect
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT  # the wait before any data is read (--lock_timeout)
    _deadline: Deadline | None = None  # set by `within`: the step after the data was read

    # ------------------------------------------------------------ how long it is waited for

    @contextlib.contextmanager
    def within(self, deadline: Deadline) -> Iterator[None]:
        """Every call in the block waits as long as `deadline` allows (publishing, after a night was
        scored), not --lock_timeout, and failing to answer in time is PublishTimeout (exit code 1), not
        a configuration error: data was read by then."""
        saved, self._deadline = self._deadline, deadline
        try:
            yield
        finally:
            self._deadline = saved

    def _wait(self) -> Deadline:
        """The current step's deadline; before any data is read, one of --lock_timeout per call."""
        return self._deadline or Deadline(self.lock_timeout, "--lock_timeout")

    # ------------------------------------------------------------ the use case's tables

    @property
    def tables(self) -> tuple[TableSchema, ...]:
        """Every table of the use case's warehouse, in the order they are made."""
        return warehouse_tables(self.use_case)

    @property
    def key(self) -> str:
        """The use case's key column: what the audit, duplicate keys and the comparison pair records by."""
        return self.use_case.input.key.name

    def views(self) -> list[sql.View]:
        """The analysts' views over the use case's predictions."""
        return sql.views(self.dialect, predictions(self.use_case), self.key, self.use_case.words)

    # ------------------------------------------------------------ the life cycle, the same everywhere

    def prepare(self, create: bool = True) -> bool:
        """Check existing tables against `schemas/`; with `create`, make missing tables and views.
        Returns whether this made a new warehouse (none of its tables was there), for the run to say so.

        With `create` False (a dry run) nothing is created or written.
        """
        if not self._open(create):
            return False  # nothing exists yet, so nothing can disagree with schemas/
        labelled = self._check_use_case()
        made, tables = [], self.tables
        for table in tables:
            have = self._columns(table.name)
            if have is None:
                if create:
                    self._create_table(table)
                    made.append(table.name)
                continue
            have = [(name, self.dialect.reported_type(type_)) for name, type_ in have]
            want = [(f.name, self.dialect.type_name(f.type)) for f in table.fields]
            if have == want:
                continue
            if len(have) < len(want) and want[: len(have)] == have:
                # Made by an earlier release: the columns added since go on the end, old rows filled in.
                if create:
                    added = table.fields[len(have) :]
                    self._add_columns(table, added)
                    for statement in sql.backfill(self.dialect, table, added):
                        self._query(statement)
                continue
            raise WarehouseConfigError(
                f"{self.location}: table {table.name} does not match schemas/: has {have}, schemas/ "
                f"defines {want}; migrate it or move it away"
            )
        if create:
            for view in self.views():
                self._create_view(view)
            if labelled is None:  # a new warehouse, or one made before use cases: it is this one's now
                self._query(sql.label(self.dialect, self.use_case.name))
        return len(made) == len(tables)

    def _check_use_case(self) -> str | None:
        """The use case the warehouse belongs to (None: not labelled yet); another use case's is refused
        before anything of it is touched."""
        if self._columns(WAREHOUSE_INFO.name) is None:
            return None
        rows = self._query(sql.label_of(self.dialect))[1]
        labelled = rows[0][0] if rows else None
        if labelled is not None and labelled != self.use_case.name:
            raise WarehouseConfigError(
                f"{self.location} holds use case {labelled}'s nights, not {self.use_case.name}'s: "
                f"--use_case {labelled}, or another --warehouse"
            )
        return labelled

    def exists(self) -> bool:
        """Whether there is a warehouse to read (a BigQuery dataset missing is a configuration error)."""
        return self._open(create=False)

    def record_run(self, run: RunRecord) -> None:
        """The run's row, status running, before any data is read."""
        values = {
            "run_id": run.run_id,
            "score_date": run.score_date,
            "status": RUNNING,
            "model_name": run.model_name,
            "model_version": run.model_version,
            "challenger_version": run.challenger_version,
            "input": run.input,
            "started_at": run.started_at,
            "heartbeat_at": run.started_at,
            "options": json.dumps(run.options, sort_keys=True),
        }
        self._query(sql.insert_run(self.dialect, values))

    def publish_night(self, run: RunRecord, staged: StagedResults, guard: PublishGuard = UNGUARDED) -> dict[str, Any]:
        """Audit the staged files and hold the night to its quality gates; then, in one transaction,
        either replace the date's rows and complete the run, or keep the night's rows in the refused
        tables and mark the run refused (GateRefused). The date's published rows are untouched then.
        The run's `finished_at` is the transaction's time, by the warehouse's clock (CURRENT_TIMESTAMP in
        it: DuckDB's transaction start, BigQuery's statement), however long publishing waited before.
        `guard` is held around each transaction: PublishingStopped where the caller's process is stopping."""
        try:
            self._check_still_running(run)
        except AlreadyPublished as done:  # a retried publishing step (Dataflow retries a failed bundle)
            return done.counts
        with self._staged(run, staged) as tables:
            [row] = self._query(sql.audit(self.dialect, tables, self.key, run.run_id, run.score_date))[1]
            published = predictions(self.use_case)
            [duplicates] = self._query(sql.duplicates(self.dialect, tables, published, self.key))[1]
            by_source = dict(self._query(sql.rejected_by_source(self.dialect, tables.errors))[1])
            counts = check_staged(run, staged, StagedCounts(*row, *duplicates), by_source)
            incomplete = [(s, d) for s, d in self._query(sql.incomplete_sources(self.dialect, tables.errors))[1]]
            comparison = None
            if run.challenger_version is not None and counts["prediction_rows"]:
                [row] = self._query(sql.compare(self.dialect, tables.predictions, self.key))[1]
                comparison = comparison_result(row)
            for attempt in range(REJUDGE_ATTEMPTS):
                decision, completion, statements = self._judge(run, staged, tables, counts, comparison, incomplete)
                try:
                    with guard.transaction(run.run_id):
                        self._transaction(run, statements)
                    break
                except PublishedMeanwhile:
                    # No lock spans the gates and the transaction on BigQuery: the check in the
                    # transaction (sql.still_as_seen) saw another run's night land, so the gates see it now.
                    if attempt == REJUDGE_ATTEMPTS - 1:
                        raise
        if not decision.publish:
            raise GateRefused(f"run {run.run_id}: {completion['error']}")
        return counts

    def _judge(
        self,
        run: RunRecord,
        staged: StagedResults,
        tables: StagedTables,
        counts: dict[str, Any],
        comparison: dict[str, Any] | None,
        incomplete: list[tuple[str, str]],
    ) -> tuple[gates.Decision, dict[str, Any], list[Statement]]:
        """The gates' decision against the warehouse as it is now, and the transaction carrying it out."""
        trailing = [n for (n,) in self._query(sql.trailing_inputs(self.dialect, run.score_date))[1]]
        scores = predictions(self.use_case)
        [(published,)] = self._query(sql.published_records(self.dialect, scores, run.score_date))[1]
        decision = gates.decide(counts, trailing, published, run.limits, list(staged.drift_flagged), incomplete)
        completion = {
            "status": SUCCEEDED if decision.publish else REFUSED,
            **{k: v for k, v in counts.items() if k != "prediction_rows"},
            "finished_at": COMMIT_TIME,
            "comparison": json.dumps(comparison) if comparison else None,
            "gates": decision.to_json(),
            "statistics": staged.statistics,
        }
        if decision.publish:
            if decision.failed:
                completion |= {"accepted_failures": run.limits.accept_failures, "accepted_by": run.limits.accepted_by}
            targets = {"predictions": scores, "published_seen": published}
        else:
            completion["error"] = f"refused by quality gates: {decision.explain()}"[:MAX_ERROR_CHARS]
            refused = refused_predictions(self.use_case)
            targets = {"predictions": refused, "errors": REFUSED_ERRORS, "drift": REFUSED_FEATURE_DRIFT}
        statements = sql.publish_night(
            self.transaction_dialect, tables, run.run_id, run.score_date, completion, key=self.key, **targets
        )
        return decision, completion, statements

    def _check_still_running(self, run: RunRecord) -> None:
        """A run publishes only while its row says running: a retried publishing step of a refused run
        is refused again, and a run that another run reaped as abandoned (its staged files deleted)
        must not publish."""
        row = self.run_row(run.run_id)
        if row["status"] == REFUSED:
            raise GateRefused(f"run {run.run_id}: {row['error']}")
        if row["status"] == SUCCEEDED:
            raise AlreadyPublished(published_counts(run, row))
        if row["status"] != RUNNING:
            raise AuditError(f"run {run.run_id} is {row['status']} ({row['error']}): nothing published")

    def mark_failed(self, run_id: str, error: str, finished_at: datetime) -> None:
        """A run that has not published is failed; one that did publish keeps its status."""
        values = {"status": FAILED, "error": error[:MAX_ERROR_CHARS], "finished_at": finished_at}
        self._query(sql.update_run(self.dialect, run_id, values, while_status=RUNNING))

    def heartbeat(self, run_id: str | Sequence[str], now: datetime, unless_within: timedelta | None = None) -> None:
        """The run (or each run of a range's job, in one statement) is alive; a running run whose
        heartbeat is older than --stale_after is reaped.

        With `unless_within`, a stamp that recent is left as it is: many workers beating for one run
        then mostly read (BigQuery queues a table's updates and allows few at a time) and rarely write.
        A job's runs are stamped together, so the first one's stamp stands for all."""
        if unless_within is not None:
            last = self.run_row(run_id if isinstance(run_id, str) else run_id[0])["heartbeat_at"]
            if last is not None and last > now - unless_within:
                return
        self._query(sql.update_run(self.dialect, run_id, {"heartbeat_at": now}, while_status=RUNNING))

    def reap(self, stale_after: timedelta, now: datetime, by: str) -> list[dict[str, Any]]:
        """Mark running runs without a heartbeat for longer than `stale_after` (or than their own
        --stale_after, if longer: they beat that much less often) abandoned, and drop what the warehouse
        staged for them. The rows of the runs this call did reap (run id, options: where their files
        were staged) are returned, so that the caller deletes their staged files too."""
        reaped = []
        for row in self._records(sql.stale_runs(self.dialect, now - stale_after)):
            options = json.loads(row["options"])
            own = timedelta(seconds=options.get("stale_after_seconds", 0))
            cutoff = now - max(stale_after, own)
            if row["last_seen"] >= cutoff:
                continue
            error = f"abandoned: no heartbeat since {row['last_seen'].isoformat()}; reaped by run {by}"
            values = {"status": ABANDONED, "error": error, "finished_at": now}
            self._query(sql.abandon_run(self.dialect, row["run_id"], values, cutoff))
            if self.run_row(row["run_id"])["error"] != error:
                continue  # it beat, finished or was reaped by another run meanwhile
            try:
                self._drop_staging(row["run_id"])
            except Exception as e:  # they expire on their own; tonight's run matters more
                logging.warning("staging tables of reaped run %s stay until they expire: %s", row["run_id"], e)
            reaped.append({**row, "options": options})
        return reaped

    def rejections(self, run_id: str) -> dict[str, int]:
        """A judged run's rejected records per reason, duplicate keys included (resolved in publishing)."""
        by_reason: dict[str, int] = {}
        for row in self._records(sql.rejections_of_run(self.dialect, run_id)):
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + row["records"]
        return by_reason

    def drop_staging(self, run_id: str) -> None:
        """Drop what the warehouse staged for a failed run (its staged files are the caller's)."""
        self._drop_staging(run_id)

    def previous_statistics(self, score_date: date) -> str | None:
        """The last published night's statistics before `score_date` (base64), if any."""
        rows = self._query(sql.previous_statistics(self.dialect, score_date))[1]
        return rows[0][0] if rows else None

    def record_metrics(self, run_id: str, metrics: dict[str, Any]) -> None:
        self._query(sql.update_run(self.dialect, run_id, {"metrics": json.dumps(metrics, sort_keys=True)}))

    def night_report(self, score_date: date, days: int, run_id: str | None = None) -> NightReport:
        """What a night's report shows, read from the warehouse alone: the run (`run_id`, or the date's
        latest finished run), and the history of the published nights of the `days` days up to the date."""
        run = self.night_run(score_date, run_id)
        since = score_date - timedelta(days=days)
        return NightReport(
            run=run,
            quality=self._records(sql.quality_between(self.dialect, predictions(self.use_case), since, score_date)),
            rejections=self._records(sql.rejections_of_run(self.dialect, run["run_id"])),
            drift=self._records(sql.drift_between(self.dialect, since, score_date, run["run_id"])),
            previous_statistics=self.previous_statistics(score_date),
        )

    def night_run(self, score_date: date, run_id: str | None = None) -> dict[str, Any]:
        """A night's run row: `run_id` (which must have scored that date), or the date's latest finished run
        (published, refused or failed)."""
        if run_id is None:
            latest = self._records(sql.latest_finished_run(self.dialect, score_date))
            if not latest:
                raise LookupError(f"{self.location}: no finished scoring run for {score_date}")
            return latest[0]
        try:
            run = self.run_row(run_id)
        except KeyError:
            raise LookupError(f"{self.location}: no scoring run {run_id}") from None
        if run["score_date"] != score_date:
            raise LookupError(f"run {run_id} scored {run['score_date']}, not {score_date}")
        return run

    def run_row(self, run_id: str) -> dict[str, Any]:
        rows = self._records(sql.select_run(self.dialect, run_id))
        if not rows:
            raise KeyError(run_id)
        return rows[0]

    def _records(self, statement: Statement) -> list[dict[str, Any]]:
        """A query's rows, each as a dict by column name."""
        names, rows = self._query(statement)
        return [dict(zip(names, row, strict=True)) for row in rows]

    # ------------------------------------------------------------ what each warehouse writes

    @property
    def transaction_dialect(self) -> Dialect:
        """The dialect the publishing transaction's statements are written in."""
        return self.dialect

    @abc.abstractmethod
    def default_staging_dir(self) -> str:
        """Where a run stages its files when --staging_dir is not given."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """A short name of the warehouse for what it writes beside others: its report pages' names."""

    def default_report_dir(self) -> str:
        """Where a local run writes its night's report when --report_dir is not given."""
        return DEFAULT_REPORT_DIR

    @abc.abstractmethod
    def _open(self, create: bool) -> bool:
        """Make sure the warehouse itself (a file, a dataset) is there; False if it is not and may not be made."""

    @abc.abstractmethod
    def _columns(self, table: str) -> list[tuple[str, str]] | None:
        """A table's (column, type as reported) in order, or None when there is no such table."""

    @abc.abstractmethod
    def _create_table(self, table: TableSchema) -> None: ...

    @abc.abstractmethod
    def _add_columns(self, table: TableSchema, fields: tuple[Field, ...]) -> None:
        """Add nullable columns at the end of an existing table."""

    @abc.abstractmethod
    def _create_view(self, view: sql.View) -> None:
        """Make the view (a warehouse may keep an existing one as it is)."""

    @abc.abstractmethod
    def _query(self, statement: Statement) -> tuple[list[str], list[tuple]]:
        """Run one statement; its column names and rows."""

    @abc.abstractmethod
    def _staged(self, run: RunRecord, staged: StagedResults) -> AbstractContextManager[StagedTables]:
        """Make the staged files queryable for the duration of the publishing."""

    @abc.abstractmethod
    def _drop_staging(self, run_id: str) -> None:
        """Drop what the warehouse itself staged for a run (tables), if it outlives the run's process."""

    @abc.abstractmethod
    def _transaction(self, run: RunRecord, statements: list[Statement]) -> None:
        """Run the statements as one transaction: all of them take effect or none."""
