"""The statements of publishing a night, over the tables a warehouse staged for the run (`StagedTables`):
the audit of the staged rows, the resolution of duplicate keys, the champion/challenger comparison, and
the one transaction that replaces the date's rows (or keeps a refused night apart) and completes the run.

Apart from the run's row (`bookkeeping`) and the published nights read back (`history`), because this
is the one place where a night's rows are written, and what a change here risks is a wrong night.
The predictions table and its key column are the use case's: each statement takes them from the
warehouse (`predictions`, `key`), so that nothing here names a use case's column.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.batches import FILE_ERROR, INCOMPLETE_FILE, RECORD_ERROR
from pipelines.warehouses.bookkeeping import RUNNING, update_run
from pipelines.warehouses.dialect import Dialect, Param, StagedTables, Statement, column_list
from pipelines.warehouses.history import published_records
from schemas import (
    CHALLENGER,
    CHAMPION,
    FEATURE_DRIFT,
    SCORING_ERRORS,
    SCORING_RUNS,
    ColumnType,
    TableSchema,
)

# ---------------------------------------------------------------- publishing a night


def replace_night(d: Dialect, table: TableSchema, rows: Statement, score_date) -> list[Statement]:
    """Delete the date's rows of `table` and insert `rows` (a query in the table's columns) in their place."""
    date = d.quote(table.partition_field or "score_date")
    columns = ", ".join(d.quote(name) for name in table.names)
    return [
        Statement(
            f"DELETE FROM {d.table(table.name)} WHERE {date} = {d.param('score_date')}",
            {"score_date": (ColumnType.DATE, score_date)},
        ),
        Statement(f"INSERT INTO {d.table(table.name)} ({columns}) {rows.sql}", rows.params),
    ]


def publish_night(
    d: Dialect,
    tables: StagedTables,
    run_id: str,
    score_date,
    completion: Mapping[str, Any],
    predictions: TableSchema,
    key: str,
    errors: TableSchema = SCORING_ERRORS,
    drift: TableSchema = FEATURE_DRIFT,
    published_seen: int | None = None,
) -> list[Statement]:
    """One transaction's statements: the night's predictions (one per `key`) and errors (conflicting
    duplicates included) replaced in `predictions` and `errors` (the refused tables for a refused
    night), the run completed while it is still running. With `published_seen`, the date must still
    hold that many champion rows, as the gates saw it: a run of the same date that published in the
    meantime fails this one rather than letting it replace a night its shrink guard never saw."""
    conflicts = conflicting_duplicates(d, tables, key)
    staged_errors = ", ".join(d.quote(name) for name in SCORING_ERRORS.names)
    rejected = Statement(f"SELECT {staged_errors} FROM {tables.errors} UNION ALL {conflicts.sql}", conflicts.params)
    guards = [still_running(d, run_id)]
    if published_seen is not None:
        guards.append(still_as_seen(d, predictions, score_date, published_seen))
    return [
        *guards,
        *replace_night(d, predictions, resolved_predictions(d, tables, predictions, key), score_date),
        *replace_night(d, errors, rejected, score_date),
        *replace_night(d, drift, Statement(f"SELECT {column_list(d, FEATURE_DRIFT)} FROM {tables.drift}"), score_date),
        update_run(d, run_id, completion, while_status=RUNNING),
    ]


def still_running(d: Dialect, run_id: str) -> Statement:
    """Fails the transaction it opens unless the run is still running: a run that another run reaped as
    abandoned in the meantime publishes nothing. (ERROR() in BigQuery, error() in DuckDB.)"""
    p, runs = d.param, d.table(SCORING_RUNS.name)
    return Statement(
        f"SELECT CASE WHEN (SELECT status FROM {runs} WHERE run_id = {p('run_id')}) = {p('running')} THEN 1 "
        f"ELSE ERROR(CONCAT('run ', {p('run_id')}, ' is no longer running: nothing published')) END",
        {"run_id": (ColumnType.STRING, run_id), "running": (ColumnType.STRING, RUNNING)},
    )


PUBLISHED_MEANWHILE = "the date was published by another run since this one checked it"


def still_as_seen(d: Dialect, predictions: TableSchema, score_date, published_seen: int) -> Statement:
    """Fails the transaction unless the date holds `published_seen` champion rows, as the gates saw."""
    counted = published_records(d, predictions, score_date)
    return Statement(
        f"SELECT CASE WHEN ({counted.sql}) = {d.param('published_seen')} THEN 1 "
        f"ELSE ERROR('{PUBLISHED_MEANWHILE}: nothing published') END",
        {**counted.params, "published_seen": (ColumnType.INT64, published_seen)},
    )


# ---------------------------------------------------------------- duplicate keys
# Resolved where the night is published, over the staged rows, by SQL: no record is shipped again.
# Copies of a key with the same content hash are one record scored once (the first copy by file and
# line is kept); copies with different content all go to scoring_errors as duplicate_key. One
# aggregation finds the keys with copies (few, on any real night) and the warehouse keeps them as a
# table for the publishing; everything else joins against that small table, so the night's rows are
# read once more, never sorted or windowed whole.


def duplicate_groups(d: Dialect, predictions: str, key: str) -> Statement:
    """Per (model role, key) with more than one staged row: how many, and the lowest and highest hash.

    Where the engine hashes cheaply, the keys are first grouped by a 64-bit hash of (role, key), which
    is much cheaper than grouping the strings; only rows whose hash repeats (true copies, and the rare
    collision, which the exact grouping then drops) are grouped by the key itself."""
    key = d.quote(key)
    candidates = ""
    if d.hash_template:
        hashed = d.hash_template.format(columns=f"model_role, {key}")
        candidates = f" WHERE {hashed} IN (SELECT {hashed} FROM {predictions} GROUP BY {hashed} HAVING COUNT(*) > 1)"
    return Statement(
        f"SELECT model_role, {key}, COUNT(*) AS copies, MIN(content_hash) AS lowest, MAX(content_hash) AS highest "
        f"FROM {predictions}{candidates} GROUP BY model_role, {key} HAVING COUNT(*) > 1"
    )


def _same_key(d: Dialect, key: str, left: str, right: str) -> str:
    key = d.quote(key)
    return f"{left}.model_role = {right}.model_role AND {left}.{key} = {right}.{key}"


def _unique_rows(d: Dialect, tables: StagedTables, predictions: TableSchema, key: str) -> str:
    """Staged rows whose (model role, key) has no copy: the night's rows, nearly all of them."""
    return f"""
        SELECT {column_list(d, predictions)} FROM {tables.predictions} AS s
        WHERE NOT EXISTS (SELECT 1 FROM {tables.duplicates} AS g WHERE {_same_key(d, key, "g", "s")})"""


def _first_copies(d: Dialect, tables: StagedTables, predictions: TableSchema, key: str) -> str:
    """For each (model role, key) whose copies all have the same content, the first copy by file and line."""
    first_copies = ", ".join(f"s.{d.quote(name)}" for name in predictions.names)
    same_key, key = _same_key(d, key, "g", "s"), d.quote(key)
    return f"""
        SELECT {column_list(d, predictions)} FROM (
          SELECT {first_copies},
                 ROW_NUMBER() OVER (PARTITION BY s.model_role, s.{key} ORDER BY s.source, s.line_number) AS copy_number
          FROM {tables.predictions} AS s JOIN {tables.duplicates} AS g ON {same_key}
          WHERE g.lowest = g.highest) AS c
        WHERE copy_number = 1"""


def resolved_predictions(d: Dialect, tables: StagedTables, predictions: TableSchema, key: str) -> Statement:
    """The staged predictions with one row per (model role, key), in `predictions`' columns: what
    publishing inserts."""
    unique, first = _unique_rows(d, tables, predictions, key), _first_copies(d, tables, predictions, key)
    return Statement(f"{unique}\n        UNION ALL{first}")


def conflicting_duplicates(d: Dialect, tables: StagedTables, key: str) -> Statement:
    """Champion rows whose key has copies of different content, as `scoring_errors` rows."""
    p, quoted = d.param, d.quote(key)
    text = d.type_name(ColumnType.STRING)
    values = {
        "score_date": "s.score_date",
        "run_id": "s.run_id",
        "source": "s.source",
        "line_number": "s.line_number",
        "raw_record": f"CAST(NULL AS {text})",
        "reason": p("duplicate_key"),
        "error_kind": p("record"),
        "recorded_at": "s.scored_at",
        "column_name": p("key_column"),
        # The key cast to text: BigQuery's CONCAT takes strings only, and a use case's key may be a number.
        "detail": f"CONCAT('key ', CAST(s.{quoted} AS {text}), ' has ', CAST(g.copies AS {text}), "
        "' copies with different content')",
        "records": "1",
    }
    selected = ", ".join(f"{values[name]} AS {d.quote(name)}" for name in SCORING_ERRORS.names)
    return Statement(
        f"SELECT {selected} FROM {tables.predictions} AS s "
        f"JOIN {tables.duplicates} AS g ON {_same_key(d, key, 'g', 's')} "
        f"WHERE g.lowest <> g.highest AND s.model_role = {p('champion')}",
        {
            "champion": (ColumnType.STRING, CHAMPION),
            "duplicate_key": (ColumnType.STRING, "duplicate_key"),
            "record": (ColumnType.STRING, RECORD_ERROR),
            "key_column": (ColumnType.STRING, key),
        },
    )


def duplicates(d: Dialect, tables: StagedTables, predictions: TableSchema, key: str) -> Statement:
    """(champion records dropped as identical copies, champion records rejected as conflicting copies,
    (role, key) pairs that publishing would still repeat: must be 0). Only a key with staged copies
    can repeat (the other rows are unique keys by `duplicate_groups`, and `_unique_rows` takes no row of
    a key with copies), so the check runs on the rows publishing inserts for those keys."""
    quoted, p = d.quote(key), d.param
    return Statement(
        f"""
        SELECT
          (SELECT COALESCE(SUM(CASE WHEN lowest = highest THEN copies - 1 ELSE 0 END), 0)
           FROM {tables.duplicates} WHERE model_role = {p("champion")}),
          (SELECT COALESCE(SUM(CASE WHEN lowest <> highest THEN copies ELSE 0 END), 0)
           FROM {tables.duplicates} WHERE model_role = {p("champion")}),
          (SELECT COUNT(*) FROM (
             SELECT model_role, {quoted} FROM ({_first_copies(d, tables, predictions, key)}) AS r
             GROUP BY model_role, {quoted} HAVING COUNT(*) > 1) AS repeated)""",
        {"champion": (ColumnType.STRING, CHAMPION)},
    )


def rejected_by_source(d: Dialect, errors: str) -> Statement:
    """Input records rejected per source, file errors counting the records they stand for."""
    return Statement(f"SELECT source, COALESCE(SUM(records), 0) FROM {errors} GROUP BY source")


def incomplete_sources(d: Dialect, errors: str) -> Statement:
    """Files whose reading stopped part-way, with what their error says (the complete_input gate)."""
    p = d.param
    return Statement(
        f"SELECT source, detail FROM {errors} WHERE error_kind = {p('file')} AND reason = {p('incomplete')} "
        "ORDER BY source",
        {"file": (ColumnType.STRING, FILE_ERROR), "incomplete": (ColumnType.STRING, INCOMPLETE_FILE)},
    )


# ---------------------------------------------------------------- audit and comparison


def audit(d: Dialect, tables: StagedTables, key: str, run_id: str, score_date) -> Statement:
    """One query over the staged rows; the fields of `StagedCounts`, in order."""
    key, p = d.quote(key), d.param
    return Statement(
        f"""
        SELECT count(*),
               count(CASE WHEN {key} IS NULL OR probability IS NULL THEN 1 END),
               count(CASE WHEN NOT (probability BETWEEN 0 AND 1) THEN 1 END),
               count(CASE WHEN run_id <> {p("run_id")} OR score_date <> {p("score_date")} THEN 1 END),
               count(CASE WHEN model_role = {p("champion")} THEN 1 END),
               count(CASE WHEN model_role = {p("challenger")} THEN 1 END),
               (SELECT COALESCE(SUM(records), 0) FROM {tables.errors}),
               (SELECT count(DISTINCT source) FROM {tables.errors} WHERE error_kind = {p("file")})
        FROM {tables.predictions}""",
        {
            "run_id": (ColumnType.STRING, run_id),
            "score_date": (ColumnType.DATE, score_date),
            **_roles(),
            "file": (ColumnType.STRING, FILE_ERROR),
        },
    )


def compare(d: Dialect, predictions: str, key: str) -> Statement:
    """Champion vs challenger on the same records: how different would switching make tomorrow?"""
    key, p = d.quote(key), d.param
    return Statement(
        f"""
        WITH champion AS (SELECT {key} AS k, probability AS cp, label AS cl FROM {predictions}
                          WHERE model_role = {p("champion")}),
             challenger AS (SELECT {key} AS k, probability AS hp, label AS hl FROM {predictions}
                            WHERE model_role = {p("challenger")}),
             paired AS (SELECT cp, hp, cl, hl FROM champion JOIN challenger USING (k)),
             ranked AS (  -- average ranks, so ties do not bias Spearman's coefficient
                SELECT cp, hp, cl, hl,
                       RANK() OVER (ORDER BY cp) + (COUNT(*) OVER (PARTITION BY cp) - 1) / 2.0 AS rc,
                       RANK() OVER (ORDER BY hp) + (COUNT(*) OVER (PARTITION BY hp) - 1) / 2.0 AS rh
                FROM paired)
        SELECT count(*), avg(cp), avg(hp), avg(CASE WHEN cl <> hl THEN 1.0 ELSE 0.0 END), corr(rc, rh)
        FROM ranked""",
        _roles(),
    )


def _roles() -> dict[str, Param]:
    return {"champion": (ColumnType.STRING, CHAMPION), "challenger": (ColumnType.STRING, CHALLENGER)}
