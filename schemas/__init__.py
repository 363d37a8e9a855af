"""The one source of truth for input records and warehouse tables.

The pipelines read the active use case's schemas from here; a team with its own data points these
names at its own module.
"""

from schemas.core import CHALLENGER, CHAMPION, Column, ColumnType, Field, InputSchema, Role, TableSchema
from schemas.taxi import (
    DRIFT_NOT_FLAGGED,
    DRIFT_THRESHOLDS,
    FEATURE_DRIFT,
    PREDICTIONS,
    PROVENANCE,
    REFUSED_ERRORS,
    REFUSED_FEATURE_DRIFT,
    REFUSED_PREDICTIONS,
    SCORING_ERRORS,
    SCORING_RUNS,
    STAGED_PREDICTIONS,
    TRIPS,
)

INPUT = TRIPS
WAREHOUSE_TABLES = (
    PREDICTIONS,
    SCORING_ERRORS,
    SCORING_RUNS,
    REFUSED_PREDICTIONS,
    REFUSED_ERRORS,
    FEATURE_DRIFT,
    REFUSED_FEATURE_DRIFT,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "Column",
    "ColumnType",
    "Field",
    "InputSchema",
    "Role",
    "TableSchema",
    "INPUT",
    "DRIFT_NOT_FLAGGED",
    "DRIFT_THRESHOLDS",
    "FEATURE_DRIFT",
    "PREDICTIONS",
    "PROVENANCE",
    "REFUSED_ERRORS",
    "REFUSED_FEATURE_DRIFT",
    "REFUSED_PREDICTIONS",
    "SCORING_ERRORS",
    "SCORING_RUNS",
    "STAGED_PREDICTIONS",
    "WAREHOUSE_TABLES",
]
