"""The one source of truth for input records and warehouse tables.

`core` has the building blocks, `platform` the platform's own tables (and the predictions table, derived
from a use case's key), `use_case` what a use case declares and how one is chosen by name; each use case
declares its input in a module of its own (`taxi` and `flights`, the bundled examples).
"""

from schemas.core import CHALLENGER, CHAMPION, Column, ColumnType, Field, InputSchema, Role, TableSchema
from schemas.platform import (
    FEATURE_DRIFT,
    PROVENANCE,
    REFUSED_ERRORS,
    REFUSED_FEATURE_DRIFT,
    SCORING_ERRORS,
    SCORING_RUNS,
    predictions,
    refused_predictions,
    staged_predictions,
    warehouse_tables,
)
from schemas.use_case import (
    DriftSettings,
    Feature,
    FeatureKind,
    Sample,
    ThresholdRule,
    TrainingSettings,
    UseCase,
    UseCaseError,
    Words,
    load_use_case,
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
    "FEATURE_DRIFT",
    "PROVENANCE",
    "REFUSED_ERRORS",
    "REFUSED_FEATURE_DRIFT",
    "SCORING_ERRORS",
    "SCORING_RUNS",
    "predictions",
    "refused_predictions",
    "staged_predictions",
    "warehouse_tables",
    "DriftSettings",
    "Feature",
    "FeatureKind",
    "Sample",
    "ThresholdRule",
    "TrainingSettings",
    "UseCase",
    "UseCaseError",
    "Words",
    "load_use_case",
]
