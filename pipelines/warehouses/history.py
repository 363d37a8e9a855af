"""What the published nights hold, read back: by the quality gates (the trailing nights' volume, the
records a re-run would replace), by a night's report (quality, drift and rejections over the nights up
to the date), by monitoring (the previous night's statistics) and by the `night_quality` view.

Bounded by dates where BigQuery would otherwise read every partition. The predictions table is the
use case's (`schemas.predictions`), so the statements reading it take it from the warehouse.
"""

from __future__ import annotations

from pipelines.warehouses.bookkeeping import SUCCEEDED
from pipelines.warehouses.dialect import Dialect, Statement, column_list
from pipelines.warehouses.gates import VOLUME_HISTORY
from schemas import (
    CHAMPION,
    FEATURE_DRIFT,
    REFUSED_ERRORS,
    REFUSED_FEATURE_DRIFT,
    SCORING_ERRORS,
    SCORING_RUNS,
    ColumnType,
    TableSchema,
)

# ---------------------------------------------------------------- what a night's report and monitoring read


def quality_between(d: Dialect, predictions: TableSchema, since, through) -> Statement:
    """`night_quality` of the published nights after `since` up to `through`, oldest first. Bounded by
    dates, not by a count of nights, so that BigQuery reads only those partitions."""
    p = d.param
    window = f"AND score_date > {p('since')} AND score_date <= {p('through')}"
    return Statement(
        f"SELECT * FROM ({night_quality(d, predictions, (through - since).days, window)}) AS q ORDER BY score_date",
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
    p, columns = d.param, column_list(d, FEATURE_DRIFT)
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


def previous_statistics(d: Dialect, score_date) -> Statement:
    """The statistics of the last published night before `score_date`: the previous_night baseline."""
    p = d.param
    return Statement(
        f"SELECT statistics FROM {d.table(SCORING_RUNS.name)} WHERE status = {p('succeeded')} "
        f"AND score_date < {p('score_date')} AND statistics IS NOT NULL "
        "ORDER BY score_date DESC, finished_at DESC LIMIT 1",
        {"succeeded": (ColumnType.STRING, SUCCEEDED), "score_date": (ColumnType.DATE, score_date)},
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
QUALITY_NIGHTS = 30  # the analysts' view; the report looks back further (pipelines/monitoring/page.py)


def night_quality(d: Dialect, predictions: TableSchema, nights: int, window: str = "") -> str:
    """Per published night (its latest succeeded run): volume, rejection rate and the champion's score
    distribution, over the last `nights` nights; `window` ("AND ..." on score_date) limits what is read."""
    runs, scores = d.table(SCORING_RUNS.name), d.table(predictions.name)
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
              FROM {scores} WHERE model_role = '{CHAMPION}' {window}
              GROUP BY score_date) AS s ON s.score_date = r.score_date
        WHERE r.newest = 1
        QUALIFY ROW_NUMBER() OVER (ORDER BY r.score_date DESC) <= {int(nights)}"""


def published_records(d: Dialect, predictions: TableSchema, score_date) -> Statement:
    """Champion records the date holds now: what a re-run would replace."""
    params = {"score_date": (ColumnType.DATE, score_date), "champion": (ColumnType.STRING, CHAMPION)}
    where = f"score_date = {d.param('score_date')} AND model_role = {d.param('champion')}"
    return Statement(f"SELECT COUNT(*) FROM {d.table(predictions.name)} WHERE {where}", params)
