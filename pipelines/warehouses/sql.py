"""The warehouse SQL, written once from `schemas/` and rendered in each warehouse's dialect.

Run bookkeeping, the audit of staged rows, the champion/challenger comparison, the publishing of a
night and the analyst views are generated here. A `Dialect` says only what differs between SQL
engines: how identifiers are quoted, how a parameter is written, how a table is referenced and what
each column type is called. Every value reaches SQL as a parameter of the statement that uses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.batches import FILE_ERROR, INCOMPLETE_FILE, RECORD_ERROR
from pipelines.warehouses.gates import VOLUME_HISTORY
from schemas import (
    CHALLENGER,
    CHAMPION,
    FEATURE_DRIFT,
    INPUT,
    PREDICTIONS,
    REFUSED_ERRORS,
    REFUSED_FEATURE_DRIFT,
    SCORING_ERRORS,
    SCORING_RUNS,
    ColumnType,
    Field,
    TableSchema,
)

RUNNING, SUCCEEDED = "running", "succeeded"  # values of scoring_runs.status (all of them: contract)
Param = tuple[ColumnType, Any]  # a value with its type, so that a None is still typed
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the parameters it names, no more and no fewer."""

    sql: str
    params: dict[str, Param] = field(default_factory=dict)

    def values(self) -> dict[str, Any]:
        return {name: value for name, (_, value) in self.params.items()}


@dataclass(frozen=True)
class Dialect:
    """What one SQL engine calls things."""

    quote_char: str
    param_prefix: str
    type_names: Mapping[ColumnType, str]
    reported_type_names: Mapping[str, str] = field(default_factory=dict)  # as its catalog reports a type
    table_prefix: str = ""  # BigQuery: "project.dataset."
    # An aggregate's percentile, {column} and {percent} (an integer) filled in: each engine has its own.
    percentile_template: str = "quantile_disc({column}, {percent} / 100)"
    # A 64-bit hash of the columns filled in for {columns}, where grouping on it is cheaper than on the
    # columns themselves (DuckDB); None: group on the columns alone.
    hash_template: str | None = "hash({columns})"

    def quote(self, name: str) -> str:
        if not _IDENTIFIER.match(name):
            raise ValueError(f"{name!r} is not an identifier this project generates")
        return f"{self.quote_char}{name}{self.quote_char}"

    def table(self, name: str) -> str:
        self.quote(name)  # checks the name
        return f"{self.quote_char}{self.table_prefix}{name}{self.quote_char}"

    def param(self, name: str) -> str:
        return f"{self.param_prefix}{name}"

    def type_name(self, type_: ColumnType) -> str:
        return self.type_names[type_]

    def percentile(self, column: str, percent: int) -> str:
        return self.percentile_template.format(column=column, percent=int(percent))

    def reported_type(self, reported: str) -> str:
        """A type as the catalog reports it, in the names `type_name` uses."""
        return self.reported_type_names.get(reported, reported)


@dataclass(frozen=True)
class StagedTables:
    """How a warehouse's SQL refers to a run's staged predictions, rejected records and drift metrics,
    and to the keys with more than one staged row (`duplicate_groups`, kept as a table while publishing)."""

    predictions: str
    errors: str
    duplicates: str
    drift: str


# ---------------------------------------------------------------- run bookkeeping (scoring_runs)


# A value of update_run: the warehouse's clock when the statement runs. The publishing transaction
# stamps `finished_at` with it, so that the stamp is the commit's time however long publishing waited.
class _CommitTime:
    def __repr__(self) -> str:
        return "COMMIT_TIME"


COMMIT_TIME = _CommitTime()


def run_params(values: Mapping[str, Any]) -> dict[str, Param]:
    """Values of `scoring_runs` columns, typed by their columns."""
    return {name: (SCORING_RUNS.field(name).type, value) for name, value in values.items() if value is not COMMIT_TIME}


def insert_run(d: Dialect, values: Mapping[str, Any]) -> Statement:
    columns = ", ".join(d.quote(name) for name in values)
    params = ", ".join(d.param(name) for name in values)
    return Statement(f"INSERT INTO {d.table(SCORING_RUNS.name)} ({columns}) VALUES ({params})", run_params(values))


def update_run(
    d: Dialect, run_id: str | Sequence[str], values: Mapping[str, Any], while_status: str | None = None
) -> Statement:
    """Set `values` on the run's row (or on each of several runs' rows: a range's nights, in one
    statement); with `while_status`, only while a run still has that status."""
    assignments = ", ".join(
        f"{d.quote(name)} = {'CURRENT_TIMESTAMP' if value is COMMIT_TIME else d.param(name)}"
        for name, value in values.items()
    )
    if isinstance(run_id, str) or len(run_id) == 1:
        params = run_params({**values, "run_id": run_id if isinstance(run_id, str) else run_id[0]})
        where = f"{d.quote('run_id')} = {d.param('run_id')}"
    else:
        ids = {f"run_id_{i}": (ColumnType.STRING, one) for i, one in enumerate(run_id)}
        params = {**run_params(values), **ids}
        where = f"{d.quote('run_id')} IN ({', '.join(d.param(name) for name in ids)})"
    if while_status is not None:
        where += f" AND {d.quote('status')} = {d.param('while_status')}"
        params["while_status"] = (ColumnType.STRING, while_status)
    return Statement(f"UPDATE {d.table(SCORING_RUNS.name)} SET {assignments} WHERE {where}", params)


def select_run(d: Dialect, run_id: str) -> Statement:
    return Statement(
        f"SELECT * FROM {d.table(SCORING_RUNS.name)} WHERE {d.quote('run_id')} = {d.param('run_id')}",
        run_params({"run_id": run_id}),
    )


def latest_finished_run(d: Dialect, score_date) -> Statement:
    """The date's most recent run that has finished, whatever its outcome: the one a report describes."""
    p = d.param
    return Statement(
        f"SELECT * FROM {d.table(SCORING_RUNS.name)} WHERE score_date = {p('score_date')} "
        f"AND status != {p('running')} ORDER BY started_at DESC LIMIT 1",
        {"score_date": (ColumnType.DATE, score_date), "running": (ColumnType.STRING, RUNNING)},
    )


# ---------------------------------------------------------------- what a night's report reads


def quality_between(d: Dialect, since, through) -> Statement:
    """`night_quality` of the published nights after `since` up to `through`, oldest first. Bounded by
    dates, not by a count of nights, so that BigQuery reads only those partitions."""
    p = d.param
    window = f"AND score_date > {p('since')} AND score_date <= {p('through')}"
    return Statement(
        f"SELECT * FROM ({night_quality(d, (through - since).days, window)}) AS q ORDER BY score_date",
        {"since": (ColumnType.DATE, since), "through": (ColumnType.DATE, through)},
    )


def rejections_of_run(d: Dialect, run_id: str) -> Statement:
    """A run's rejected records per reason, from the published or the refused errors (only one holds it)."""
    unions = " UNION ALL ".join(
        f"SELECT reason, error_kind, COALESCE(records, 1) AS records FROM {d.table(t.name)} "
        f"WHERE run_id = {d.param('run_id')}"
        for t in (SCORING_ERRORS, REFUSED_ERRORS)
    )
    return Statement(
        f"SELECT reason, error_kind, SUM(records) AS records FROM ({unions}) AS e "
        "GROUP BY reason, error_kind ORDER BY records DESC, reason",
        {"run_id": (ColumnType.STRING, run_id)},
    )


def drift_between(d: Dialect, since, through, run_id: str) -> Statement:
    """Drift metrics of the published nights after `since` up to `through`, and those of the run
    `run_id` if it was refused (kept apart in refused_feature_drift)."""
    p, columns = d.param, _columns(d, FEATURE_DRIFT)
    return Statement(
        f"""
        SELECT {columns} FROM {d.table(FEATURE_DRIFT.name)}
        WHERE score_date > {p("since")} AND score_date <= {p("through")}
        UNION ALL
        SELECT {columns} FROM {d.table(REFUSED_FEATURE_DRIFT.name)} WHERE run_id = {p("run_id")}""",
        {
            "since": (ColumnType.DATE, since),
            "through": (ColumnType.DATE, through),
            "run_id": (ColumnType.STRING, run_id),
        },
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
    predictions: TableSchema = PREDICTIONS,
    errors: TableSchema = SCORING_ERRORS,
    drift: TableSchema = FEATURE_DRIFT,
    published_seen: int | None = None,
) -> list[Statement]:
    """One transaction's statements: the night's predictions (one per key) and errors (conflicting
    duplicates included) replaced in `predictions` and `errors` (the refused tables for a refused
    night), the run completed while it is still running. With `published_seen`, the date must still
    hold that many champion rows, as the gates saw it: a run of the same date that published in the
    meantime fails this one rather than letting it replace a night its shrink guard never saw."""
    conflicts = conflicting_duplicates(d, tables)
    staged_errors = ", ".join(d.quote(name) for name in SCORING_ERRORS.names)
    rejected = Statement(f"SELECT {staged_errors} FROM {tables.errors} UNION ALL {conflicts.sql}", conflicts.params)
    guards = [still_running(d, run_id)]
    if published_seen is not None:
        guards.append(still_as_seen(d, score_date, published_seen))
    return [
        *guards,
        *replace_night(d, predictions, resolved_predictions(d, tables), score_date),
        *replace_night(d, errors, rejected, score_date),
        *replace_night(d, drift, Statement(f"SELECT {_columns(d, FEATURE_DRIFT)} FROM {tables.drift}"), score_date),
        update_run(d, run_id, completion, while_status=RUNNING),
    ]


def _columns(d: Dialect, table: TableSchema) -> str:
    return ", ".join(d.quote(name) for name in table.names)


def previous_statistics(d: Dialect, score_date) -> Statement:
    """The statistics of the last published night before `score_date`: the previous_night baseline."""
    p = d.param
    return Statement(
        f"SELECT statistics FROM {d.table(SCORING_RUNS.name)} WHERE status = {p('succeeded')} "
        f"AND score_date < {p('score_date')} AND statistics IS NOT NULL "
        "ORDER BY score_date DESC, finished_at DESC LIMIT 1",
        {"succeeded": (ColumnType.STRING, SUCCEEDED), "score_date": (ColumnType.DATE, score_date)},
    )


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


def still_as_seen(d: Dialect, score_date, published_seen: int) -> Statement:
    """Fails the transaction unless the date holds `published_seen` champion rows, as the gates saw."""
    counted = published_records(d, score_date)
    return Statement(
        f"SELECT CASE WHEN ({counted.sql}) = {d.param('published_seen')} THEN 1 "
        f"ELSE ERROR('{PUBLISHED_MEANWHILE}: nothing published') END",
        {**counted.params, "published_seen": (ColumnType.INT64, published_seen)},
    )


# ---------------------------------------------------------------- what the quality gates compare with


def trailing_inputs(d: Dialect, score_date, nights: int = VOLUME_HISTORY) -> Statement:
    """Input records of the published nights before `score_date`, newest first: per date its latest
    succeeded run."""
    runs, p = d.table(SCORING_RUNS.name), d.param
    return Statement(
        f"""
        SELECT input_records FROM (
          SELECT score_date, input_records,
                 ROW_NUMBER() OVER (PARTITION BY score_date ORDER BY finished_at DESC) AS newest
          FROM {runs}
          WHERE status = {p("succeeded")} AND score_date < {p("score_date")} AND input_records IS NOT NULL) AS r
        WHERE newest = 1
        ORDER BY score_date DESC
        LIMIT {int(nights)}""",
        {"succeeded": (ColumnType.STRING, SUCCEEDED), "score_date": (ColumnType.DATE, score_date)},
    )


SCORE_PERCENTILES = (10, 25, 50, 75, 90)
QUALITY_NIGHTS = 30  # the analysts' view; the report looks back further (pipelines/monitoring/report.py)


def night_quality(d: Dialect, nights: int, window: str = "") -> str:
    """Per published night (its latest succeeded run): volume, rejection rate and the champion's score
    distribution, over the last `nights` nights; `window` ("AND ..." on score_date) limits what is read."""
    runs, predictions = d.table(SCORING_RUNS.name), d.table(PREDICTIONS.name)
    percentiles = ", ".join(f"{d.percentile('probability', q)} AS score_p{q}" for q in SCORE_PERCENTILES)
    return f"""
        SELECT r.score_date, r.run_id, r.model_version, r.input_records, r.scored_records, r.rejected_records,
               r.rejected_files, r.rejected_records / NULLIF(r.input_records, 0) AS rejection_rate,
               s.score_mean, s.positive_rate, {", ".join(f"s.score_p{q}" for q in SCORE_PERCENTILES)}
        FROM (SELECT score_date, run_id, model_version, input_records, scored_records, rejected_records,
                     rejected_files, ROW_NUMBER() OVER (PARTITION BY score_date ORDER BY finished_at DESC) AS newest
              FROM {runs} WHERE status = '{SUCCEEDED}' {window}) AS r
        JOIN (SELECT score_date, AVG(probability) AS score_mean,
                     AVG(CASE WHEN label THEN 1 ELSE 0 END) AS positive_rate, {percentiles}
              FROM {predictions} WHERE model_role = '{CHAMPION}' {window}
              GROUP BY score_date) AS s ON s.score_date = r.score_date
        WHERE r.newest = 1
        QUALIFY ROW_NUMBER() OVER (ORDER BY r.score_date DESC) <= {int(nights)}"""


def published_records(d: Dialect, score_date) -> Statement:
    """Champion records the date holds now: what a re-run would replace."""
    p = d.param
    return Statement(
        f"SELECT COUNT(*) FROM {d.table(PREDICTIONS.name)} "
        f"WHERE score_date = {p('score_date')} AND model_role = {p('champion')}",
        {"score_date": (ColumnType.DATE, score_date), "champion": (ColumnType.STRING, CHAMPION)},
    )


def abandon_run(d: Dialect, run_id: str, values: Mapping[str, Any], cutoff) -> Statement:
    """`values` on a run that is still running and still silent since `cutoff`, in one statement."""
    statement = update_run(d, run_id, values, while_status=RUNNING)
    return Statement(
        f"{statement.sql} AND COALESCE(heartbeat_at, started_at) < {d.param('cutoff')}",
        {**statement.params, "cutoff": (ColumnType.TIMESTAMP, cutoff)},
    )


def stale_runs(d: Dialect, cutoff) -> Statement:
    """Running runs with no sign of life since `cutoff`."""
    p = d.param
    last_seen = "COALESCE(heartbeat_at, started_at)"
    return Statement(
        f"SELECT run_id, score_date, options, {last_seen} AS last_seen FROM {d.table(SCORING_RUNS.name)} "
        f"WHERE status = {p('running')} AND {last_seen} < {p('cutoff')}",
        {"running": (ColumnType.STRING, RUNNING), "cutoff": (ColumnType.TIMESTAMP, cutoff)},
    )


# ---------------------------------------------------------------- duplicate keys
# Resolved where the night is published, over the staged rows, by SQL: no record is shipped again.
# Copies of a key with the same content hash are one record scored once (the first copy by file and
# line is kept); copies with different content all go to scoring_errors as duplicate_key. One
# aggregation finds the keys with copies (few, on any real night) and the warehouse keeps them as a
# table for the publishing; everything else joins against that small table, so the night's rows are
# read once more, never sorted or windowed whole.


def duplicate_groups(d: Dialect, predictions: str) -> Statement:
    """Per (model role, key) with more than one staged row: how many, and the lowest and highest hash.

    Where the engine hashes cheaply, the keys are first grouped by a 64-bit hash of (role, key), which
    is much cheaper than grouping the strings; only rows whose hash repeats (true copies, and the rare
    collision, which the exact grouping then drops) are grouped by the key itself."""
    key = d.quote(INPUT.key.name)
    candidates = ""
    if d.hash_template:
        hashed = d.hash_template.format(columns=f"model_role, {key}")
        candidates = f" WHERE {hashed} IN (SELECT {hashed} FROM {predictions} GROUP BY {hashed} HAVING COUNT(*) > 1)"
    return Statement(
        f"SELECT model_role, {key}, COUNT(*) AS copies, MIN(content_hash) AS lowest, MAX(content_hash) AS highest "
        f"FROM {predictions}{candidates} GROUP BY model_role, {key} HAVING COUNT(*) > 1"
    )


def _same_key(d: Dialect, left: str, right: str) -> str:
    key = d.quote(INPUT.key.name)
    return f"{left}.model_role = {right}.model_role AND {left}.{key} = {right}.{key}"


def _unique_rows(d: Dialect, tables: StagedTables) -> str:
    """Staged rows whose (model role, key) has no copy: the night's rows, nearly all of them."""
    columns = ", ".join(d.quote(name) for name in PREDICTIONS.names)
    return f"""
        SELECT {columns} FROM {tables.predictions} AS s
        WHERE NOT EXISTS (SELECT 1 FROM {tables.duplicates} AS g WHERE {_same_key(d, "g", "s")})"""


def _first_copies(d: Dialect, tables: StagedTables) -> str:
    """For each (model role, key) whose copies all have the same content, the first copy by file and line."""
    columns = ", ".join(d.quote(name) for name in PREDICTIONS.names)
    first_copies = ", ".join(f"s.{d.quote(name)}" for name in PREDICTIONS.names)
    key = d.quote(INPUT.key.name)
    return f"""
        SELECT {columns} FROM (
          SELECT {first_copies},
                 ROW_NUMBER() OVER (PARTITION BY s.model_role, s.{key} ORDER BY s.source, s.line_number) AS copy_number
          FROM {tables.predictions} AS s JOIN {tables.duplicates} AS g ON {_same_key(d, "g", "s")}
          WHERE g.lowest = g.highest) AS c
        WHERE copy_number = 1"""


def resolved_predictions(d: Dialect, tables: StagedTables) -> Statement:
    """The staged predictions with one row per (model role, key): what publishing inserts."""
    return Statement(f"{_unique_rows(d, tables)}\n        UNION ALL{_first_copies(d, tables)}")


def conflicting_duplicates(d: Dialect, tables: StagedTables) -> Statement:
    """Champion rows whose key has copies of different content, as `scoring_errors` rows."""
    p, key = d.param, d.quote(INPUT.key.name)
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
        "detail": f"CONCAT('key ', s.{key}, ' has ', CAST(g.copies AS {text}), ' copies with different content')",
        "records": "1",
    }
    selected = ", ".join(f"{values[name]} AS {d.quote(name)}" for name in SCORING_ERRORS.names)
    return Statement(
        f"SELECT {selected} FROM {tables.predictions} AS s JOIN {tables.duplicates} AS g ON {_same_key(d, 'g', 's')} "
        f"WHERE g.lowest <> g.highest AND s.model_role = {p('champion')}",
        {
            "champion": (ColumnType.STRING, CHAMPION),
            "duplicate_key": (ColumnType.STRING, "duplicate_key"),
            "record": (ColumnType.STRING, RECORD_ERROR),
            "key_column": (ColumnType.STRING, INPUT.key.name),
        },
    )


def duplicates(d: Dialect, tables: StagedTables) -> Statement:
    """(champion records dropped as identical copies, champion records rejected as conflicting copies,
    (role, key) pairs that publishing would still repeat: must be 0). Only a key with staged copies
    can repeat (the other rows are unique keys by `duplicate_groups`, and `_unique_rows` takes no row of
    a key with copies), so the check runs on the rows publishing inserts for those keys."""
    key, p = d.quote(INPUT.key.name), d.param
    return Statement(
        f"""
        SELECT
          (SELECT COALESCE(SUM(CASE WHEN lowest = highest THEN copies - 1 ELSE 0 END), 0)
           FROM {tables.duplicates} WHERE model_role = {p("champion")}),
          (SELECT COALESCE(SUM(CASE WHEN lowest <> highest THEN copies ELSE 0 END), 0)
           FROM {tables.duplicates} WHERE model_role = {p("champion")}),
          (SELECT COUNT(*) FROM (
             SELECT model_role, {key} FROM ({_first_copies(d, tables)}) AS r
             GROUP BY model_role, {key} HAVING COUNT(*) > 1) AS repeated)""",
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


def audit(d: Dialect, tables: StagedTables, run_id: str, score_date) -> Statement:
    """One query over the staged rows; the fields of `StagedCounts`, in order."""
    key, p = d.quote(INPUT.key.name), d.param
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


def compare(d: Dialect, predictions: str) -> Statement:
    """Champion vs challenger on the same records: how different would switching make tomorrow?"""
    key, p = d.quote(INPUT.key.name), d.param
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


# ---------------------------------------------------------------- tables and views


def create_table(d: Dialect, table: TableSchema) -> Statement:
    columns = ",\n  ".join(
        f"{d.quote(f.name)} {d.type_name(f.type)}{' NOT NULL' if f.required else ''}" for f in table.fields
    )
    return Statement(f"CREATE TABLE IF NOT EXISTS {d.table(table.name)} (\n  {columns}\n)")


# How rows written before a column existed get its value when a migration adds it.
_BACKFILLS = {
    (SCORING_ERRORS.name, "records"): f"CASE WHEN error_kind = '{RECORD_ERROR}' THEN 1 ELSE 0 END",
}


def backfill(d: Dialect, table: TableSchema, added: tuple[Field, ...]) -> list[Statement]:
    return [
        Statement(
            f"UPDATE {d.table(table.name)} SET {d.quote(f.name)} = {_BACKFILLS[table.name, f.name]} "
            f"WHERE {d.quote(f.name)} IS NULL"
        )
        for f in added
        if (table.name, f.name) in _BACKFILLS
    ]


@dataclass(frozen=True)
class View:
    name: str
    description: str
    sql: str


def views(d: Dialect) -> list[View]:
    """The analysts' views, over champion rows only. Their text is fixed, so no parameters."""
    predictions, key = d.table(PREDICTIONS.name), d.quote(INPUT.key.name)
    return [
        View(
            "latest_predictions",
            "Each trip's most recent champion score.",
            f"""
        SELECT * FROM {predictions}
        WHERE model_role = '{CHAMPION}'
        QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY score_date DESC, scored_at DESC) = 1""",
        ),
        View(
            "drift_by_night",
            "Drift per feature, baseline and night over the last 30 measured nights (a heat map as a table).",
            f"""
        SELECT score_date, feature, baseline,
               MAX(CASE WHEN metric = 'jensen_shannon' THEN value END) AS jensen_shannon,
               MAX(CASE WHEN metric = 'psi' THEN value END) AS psi,
               MAX(CASE WHEN metric = 'l_infinity' THEN value END) AS l_infinity,
               MAX(CASE WHEN metric = 'missing_rate_change' THEN value END) AS missing_rate_change,
               MAX(CASE WHEN metric = 'out_of_vocabulary_share' THEN value END) AS out_of_vocabulary_share,
               MAX(CASE WHEN flagged THEN 1 ELSE 0 END) = 1 AS flagged
        FROM (SELECT *, DENSE_RANK() OVER (ORDER BY score_date DESC) AS night
              FROM {d.table(FEATURE_DRIFT.name)}) AS ranked
        WHERE night <= 30
        GROUP BY score_date, feature, baseline""",
        ),
        View(
            "night_quality",
            f"Per published night, the last {QUALITY_NIGHTS}: volume, rejection rate, score mean, positive rate "
            "and score percentiles.",
            night_quality(d, QUALITY_NIGHTS),
        ),
        View(
            "daily_score_summary",
            "Per night and model version: volume, mean score, share labelled big tipper.",
            f"""
        SELECT score_date, model_name, model_version, COUNT(*) AS trips,
               ROUND(AVG(probability), 4) AS mean_probability,
               ROUND(AVG(CASE WHEN label THEN 1 ELSE 0 END), 4) AS big_tipper_share
        FROM {predictions}
        WHERE model_role = '{CHAMPION}'
        GROUP BY score_date, model_name, model_version""",
        ),
    ]
