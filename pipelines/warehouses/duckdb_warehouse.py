"""The embedded default warehouse: one DuckDB database file (`--warehouse path/scores.duckdb`).

What is DuckDB's own: a file that one process writes at a time (others wait for its lock: at most
--lock_timeout before any data is read, what is left of --publish_timeout after, saying so), staged
Parquet files read in place rather than loaded, and a transaction on one connection. A path that
cannot be a database file (a directory, a read-only file system, a file another process holds past
--lock_timeout before any data is read) is a configuration error, said in one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipelines.defaults import DEFAULT_LOCK_TIMEOUT
from pipelines.warehouses import sql
from pipelines.warehouses.contract import UNGUARDED, PublishGuard, Warehouse
from pipelines.warehouses.deadline import PublishTimeout, Waiting
from pipelines.warehouses.records import RunRecord, StagedResults, WarehouseConfigError
from pipelines.warehouses.sql import Dialect, StagedTables, Statement, View
from schemas import FEATURE_DRIFT, SCORING_ERRORS, ColumnType, Field, TableSchema, UseCase, staged_predictions

if TYPE_CHECKING:  # the client is imported when a connection is made: a command's --help does not wait for it
    import duckdb

DIALECT = Dialect(
    quote_char='"',
    param_prefix="$",
    type_names={
        ColumnType.STRING: "VARCHAR",
        ColumnType.INT64: "BIGINT",
        ColumnType.FLOAT64: "DOUBLE",
        ColumnType.BOOL: "BOOLEAN",
        ColumnType.DATE: "DATE",
        ColumnType.TIMESTAMP: "TIMESTAMPTZ",
    },
    reported_type_names={"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"},
)
STAGED_PREDICTIONS_NAME, STAGED_ERRORS, STAGED_DUPLICATES, STAGED_DRIFT = (
    "staged_predictions",
    "staged_errors",
    "staged_duplicates",
    "staged_drift",
)  # names on the publishing connection


# Threads of one process share the file (DuckDB keeps one database per path per process) and would
# conflict on the run's row: a heartbeat waits while a publishing holds this.
_PROCESS_LOCKS: defaultdict[str, threading.RLock] = defaultdict(threading.RLock)
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?\(PID \d+\))( by user \S+?)?\.?(\s|$)")


class DuckDBWarehouse(Warehouse):
    DEFAULT_LOCK_TIMEOUT = DEFAULT_LOCK_TIMEOUT  # --lock_timeout's default (pipelines.defaults)
    # Publishing copies the whole night into the table inside the scoring process; without a cap
    # DuckDB's buffer cache grows with the night's size. It spills to disk past the cap instead. The
    # cap is the peak of a large night: at 10M records, 256MB put the run's peak 1.3 times above a 1M
    # night's, 128MB cost publishing a second; 192MB is between (README: Benchmark).
    MEMORY_LIMIT = "192MB"
    dialect = DIALECT

    def __init__(
        self, path: str, use_case: UseCase, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, create_folder: bool = False
    ):
        """`use_case`: whose nights it publishes (its predictions table and key). `create_folder`: make the
        file's folder when it is missing. Otherwise a missing folder is a configuration error: a typo in
        --warehouse must not start a new, empty warehouse unnoticed."""
        if not path.strip() or path.strip().startswith(":memory:"):
            raise WarehouseConfigError(
                f"--warehouse {path!r}: a warehouse must outlive the run; give a DuckDB file such as "
                "warehouse/scores.duckdb"
            )
        if "://" in path:
            raise WarehouseConfigError(
                f"--warehouse {path!r}: a DuckDB warehouse is a local file path (BigQuery: bq://project.dataset)"
            )
        if os.path.isdir(path):
            raise WarehouseConfigError(
                f"--warehouse {path} is a directory; a DuckDB warehouse is a file, such as "
                f"{os.path.join(path, 'scores.duckdb')}"
            )
        folder = os.path.dirname(os.path.abspath(path))
        if not create_folder and not os.path.isdir(folder):
            raise WarehouseConfigError(
                f"--warehouse {path}: there is no folder {folder}; check the path (scoring into a new warehouse "
                "there needs --create_dataset)"
            )
        self.path = self.location = path
        self.use_case = use_case
        self.lock_timeout = lock_timeout
        self._held: duckdb.DuckDBPyConnection | None = None

    def __getstate__(self):  # travels to workers without a connection
        return {**self.__dict__, "_held": None}

    def default_staging_dir(self) -> str:
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), "_staging")

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]

    def default_report_dir(self) -> str:
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), "reports")

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """A connection, waiting for another process's lock as long as the step allows: --lock_timeout
        before any data is read (then a configuration error), what is left of --publish_timeout after
        (then PublishTimeout), saying while it waits who holds the file."""
        import duckdb

        deadline = self._wait()
        waiting = Waiting(f"warehouse {self.path}")
        while True:
            try:
                con = duckdb.connect(
                    self.path,
                    read_only=read_only,
                    config={
                        "memory_limit": self.MEMORY_LIMIT,
                        "preserve_insertion_order": False,  # a table's row order means nothing here
                    },
                )
            except (duckdb.IOException, duckdb.InvalidInputException) as e:
                message = str(e).splitlines()[0]
                if "lock" not in message.lower():
                    raise WarehouseConfigError(f"--warehouse {self.path} cannot be opened: {message}") from None
                holder = _LOCK_HOLDER.search(message)
                by = f"held by {holder[1]}{holder[2] or ''}" if holder else message
                if deadline.remaining() <= 0:
                    error = WarehouseConfigError if self._deadline is None else PublishTimeout
                    raise error(
                        f"--warehouse {self.path} is locked by another process ({by}); waited "
                        f"{deadline.seconds:g} s ({deadline.what})"
                    ) from None
                if self._deadline is not None:  # before any data is read, the wait is short and silent
                    waiting.failed(f"locked, {by}")
                time.sleep(0.2)
                continue
            waiting.answered()
            return con

    @contextlib.contextmanager
    def _holding(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """One connection for a whole step (preparing, publishing): the file is opened once, and the
        staged views of a publishing live on it. Within a step, the step's connection."""
        if self._held is not None:
            yield self._held
            return
        with _PROCESS_LOCKS[os.path.abspath(self.path)], self.connect(read_only) as con:
            self._held = con
            try:
                yield con
            finally:
                self._held = None

    @contextlib.contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The held connection during a step, else a new one."""
        if self._held is not None:
            yield self._held
            return
        with _PROCESS_LOCKS[os.path.abspath(self.path)], self.connect() as con:
            yield con

    def prepare(self, create: bool = True) -> bool:
        """On one connection; a dry run (`create` False) opens the file read-only, or not at all."""
        if not create and not os.path.exists(self.path):
            return False  # nothing exists yet, so nothing can disagree with schemas/
        if create:
            folder = os.path.dirname(os.path.abspath(self.path))
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as e:
                raise WarehouseConfigError(f"--warehouse {self.path}: cannot make {folder}: {e.strerror}") from None
            if not os.access(folder, os.W_OK):
                raise WarehouseConfigError(f"--warehouse {self.path}: {folder} is not writable")
        with self._holding(read_only=not create):
            return super().prepare(create)

    def publish_night(self, run: RunRecord, staged: StagedResults, guard: PublishGuard = UNGUARDED) -> dict[str, Any]:
        """Under the file's lock from the run's status check to the commit, so that nothing another process
        writes can come between what the gates saw and what is published. (How long it waits for the lock
        is the step's: `within` --publish_timeout when the pipeline publishes.)"""
        with self._holding():
            return super().publish_night(run, staged, guard)

    def _open(self, create: bool) -> bool:
        return create or os.path.exists(self.path)  # prepare() made the folder when creating

    def _columns(self, table: str) -> list[tuple[str, str]] | None:
        with self._connection() as con:
            rows = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position",
                [table],
            ).fetchall()
        return [(name, type_) for name, type_ in rows] or None

    def _create_table(self, table: TableSchema) -> None:
        self._query(sql.create_table(self.dialect, table))

    def _add_columns(self, table: TableSchema, fields: tuple[Field, ...]) -> None:
        for f in fields:
            self._query(
                Statement(
                    f"ALTER TABLE {self.dialect.table(table.name)} "
                    f"ADD COLUMN {self.dialect.quote(f.name)} {self.dialect.type_name(f.type)}"
                )
            )

    def _create_view(self, view: View) -> None:
        """Replaced every time: under the file's lock no reader sees it missing, and it stays current."""
        self._query(Statement(f"CREATE OR REPLACE VIEW {self.dialect.table(view.name)} AS {view.sql}"))

    def _query(self, statement: Statement) -> tuple[list[str], list[tuple]]:
        with self._connection() as con:
            cursor = con.execute(statement.sql, statement.values())
            names = [d[0] for d in cursor.description] if cursor.description else []
            return names, cursor.fetchall() if names else []

    @contextlib.contextmanager
    def _staged(self, run: RunRecord, staged: StagedResults) -> Iterator[StagedTables]:
        """Staged Parquet files are read where they lie, as views of the publishing connection."""
        with self._holding() as con:
            for name, table, files in (
                (STAGED_PREDICTIONS_NAME, staged_predictions(self.use_case), staged.prediction_paths),
                (STAGED_ERRORS, SCORING_ERRORS, staged.error_paths),
                (STAGED_DRIFT, FEATURE_DRIFT, staged.drift_paths),
            ):
                if files:
                    relation = con.read_parquet(files)
                else:  # nothing staged: an empty relation of the table's columns
                    d = self.dialect
                    columns = ", ".join(
                        f"CAST(NULL AS {d.type_name(f.type)}) AS {d.quote(f.name)}" for f in table.fields
                    )
                    relation = con.sql(f"SELECT {columns} WHERE false")
                con.register(name, relation)
            predictions = self.dialect.quote(STAGED_PREDICTIONS_NAME)
            duplicates = self.dialect.quote(STAGED_DUPLICATES)
            groups = sql.duplicate_groups(self.dialect, predictions, self.key)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {duplicates} AS {groups.sql}")
            try:
                d = self.dialect
                yield StagedTables(predictions, d.quote(STAGED_ERRORS), duplicates, d.quote(STAGED_DRIFT))
            finally:
                con.execute(f"DROP TABLE IF EXISTS {duplicates}")

    def _drop_staging(self, run_id: str) -> None:
        """Nothing to drop: a run's staged views and tables live on its own connection, gone with it."""

    def _transaction(self, run: RunRecord, statements: list[Statement]) -> None:
        with self._connection() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for statement in statements:
                    con.execute(statement.sql, statement.values())
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
