"""What a warehouse makes of `schemas/`: its tables (DDL), the values a migration fills into columns it
adds to rows written before they existed, and the analysts' views. Apart from what runs issue, because
these are made once per warehouse (`Warehouse.prepare`) and are what analysts query; the views' text is
fixed, so they take no parameters. The views over predictions read the use case's table and key, which
the warehouse passes in.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.batches import RECORD_ERROR
from pipelines.warehouses.dialect import Dialect, Statement
from pipelines.warehouses.history import QUALITY_NIGHTS, night_quality
from schemas import CHAMPION, FEATURE_DRIFT, SCORING_ERRORS, ColumnType, Field, TableSchema, Words
from schemas.platform import USE_CASE_LABEL, WAREHOUSE_INFO


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


def label_of(d: Dialect) -> Statement:
    """The use case a warehouse belongs to, if it has been labelled."""
    return Statement(
        f"SELECT value FROM {d.table(WAREHOUSE_INFO.name)} WHERE name = {d.param('name')}",
        {"name": (ColumnType.STRING, USE_CASE_LABEL)},
    )


def label(d: Dialect, use_case: str) -> Statement:
    return Statement(
        f"INSERT INTO {d.table(WAREHOUSE_INFO.name)} (name, value) VALUES ({d.param('name')}, {d.param('value')})",
        {"name": (ColumnType.STRING, USE_CASE_LABEL), "value": (ColumnType.STRING, use_case)},
    )


@dataclass(frozen=True)
class View:
    name: str
    description: str
    sql: str


def views(d: Dialect, predictions: TableSchema, key: str, words: Words) -> list[View]:
    """The analysts' views over `predictions` (keyed by `key`), champion rows only, their columns named
    for any use case, with the use case's old names beside them (`words.view_aliases`). Their text is
    fixed once the use case is, so no parameters."""
    scores, quoted = d.table(predictions.name), d.quote(key)
    summary = {
        "records": "COUNT(*)",
        "mean_probability": "ROUND(AVG(probability), 4)",
        "positive_share": "ROUND(AVG(CASE WHEN label THEN 1 ELSE 0 END), 4)",
    }
    summary.update({alias: summary[name] for name, alias in words.view_aliases.items() if name in summary})
    columns = ",\n               ".join(f"{expression} AS {d.quote(name)}" for name, expression in summary.items())
    return [
        View(
            "latest_predictions",
            f"Each {words.record}'s most recent champion score.",
            f"""
        SELECT * FROM {scores}
        WHERE model_role = '{CHAMPION}'
        QUALIFY ROW_NUMBER() OVER (PARTITION BY {quoted} ORDER BY score_date DESC, scored_at DESC) = 1""",
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
            night_quality(d, predictions, QUALITY_NIGHTS),
        ),
        View(
            "daily_score_summary",
            f"Per night and model version: {words.records}, mean score, share labelled {words.positive}.",
            f"""
        SELECT score_date, model_name, model_version,
               {columns}
        FROM {scores}
        WHERE model_role = '{CHAMPION}'
        GROUP BY score_date, model_name, model_version""",
        ),
    ]
