"""The warehouse SQL, written once from `schemas/` and rendered in each warehouse's dialect: one name
(`sql.audit(...)`, `sql.views(...)`) for the backends, the scripts and the tests to call it by.

The statements are written in modules by what they are for, so that each can be read on its own:
`dialect` (what a statement is, what an engine calls things), `bookkeeping` (a run's row in
`scoring_runs`), `history` (the published nights read back: gates, report, monitoring),
`publishing` (audit, duplicate keys, comparison, the publishing transaction) and `tables` (tables,
migrations and the analysts' views). Every value reaches SQL as a parameter of the statement that uses it.
"""

from __future__ import annotations

from pipelines.warehouses.bookkeeping import (
    COMMIT_TIME,
    RUNNING,
    SUCCEEDED,
    abandon_run,
    insert_run,
    latest_finished_run,
    run_params,
    select_run,
    stale_runs,
    update_run,
)
from pipelines.warehouses.dialect import Dialect, Param, StagedTables, Statement, column_list
from pipelines.warehouses.history import (
    QUALITY_NIGHTS,
    SCORE_PERCENTILES,
    drift_between,
    night_quality,
    previous_statistics,
    published_records,
    quality_between,
    rejections_of_run,
    trailing_inputs,
)
from pipelines.warehouses.publishing import (
    PUBLISHED_MEANWHILE,
    audit,
    compare,
    conflicting_duplicates,
    duplicate_groups,
    duplicates,
    incomplete_sources,
    publish_night,
    rejected_by_source,
    replace_night,
    resolved_predictions,
    still_as_seen,
    still_running,
)
from pipelines.warehouses.tables import View, backfill, create_table, label, label_of, views

__all__ = [
    "COMMIT_TIME",
    "PUBLISHED_MEANWHILE",
    "QUALITY_NIGHTS",
    "RUNNING",
    "SCORE_PERCENTILES",
    "SUCCEEDED",
    "Dialect",
    "Param",
    "StagedTables",
    "Statement",
    "View",
    "abandon_run",
    "audit",
    "backfill",
    "column_list",
    "compare",
    "conflicting_duplicates",
    "create_table",
    "drift_between",
    "duplicate_groups",
    "duplicates",
    "incomplete_sources",
    "insert_run",
    "latest_finished_run",
    "night_quality",
    "previous_statistics",
    "publish_night",
    "published_records",
    "quality_between",
    "rejected_by_source",
    "rejections_of_run",
    "replace_night",
    "resolved_predictions",
    "run_params",
    "select_run",
    "stale_runs",
    "still_as_seen",
    "still_running",
    "trailing_inputs",
    "update_run",
    "views",
    "label",
    "label_of",
]
