"""The platform's own tables: what every use case's warehouse holds beside its predictions.

They name no use case's column. The predictions table is the one table derived from a use case: its
key column (name and type) and the words its descriptions use; every row is built by column name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.core import ColumnType as T
from schemas.core import Field, TableSchema

if TYPE_CHECKING:
    from schemas.use_case import UseCase

SCORING_ERRORS = TableSchema(
    name="scoring_errors",
    description="Every input record or file a run rejected, with the reason. A date is replaced whole by each run.",
    partition_field="score_date",
    cluster_fields=("reason",),
    fields=(
        Field("score_date", T.DATE, True, "The nightly partition being scored."),
        Field("run_id", T.STRING, True, "The scoring run that rejected the record."),
        Field("source", T.STRING, True, "File (or table) the record came from."),
        Field(
            "line_number",
            T.INT64,
            False,
            "Line of the record in its file (CSV: its first line; JSON: its line); null for tables and file errors.",
        ),
        Field(
            "raw_record",
            T.STRING,
            False,
            "The record as read (re-joined CSV for typed rows; bytes that are not UTF-8 as \\x escapes).",
        ),
        Field("reason", T.STRING, True, "Why, as a short stable code (README: Every record is accounted for)."),
        Field("error_kind", T.STRING, True, "record: one input record rejected; file: a whole file unusable."),
        Field("recorded_at", T.TIMESTAMP, True, "When the run started (UTC)."),
        # Added by the release that introduced reason codes; an older warehouse gets them on `prepare`.
        Field("column_name", T.STRING, False, "The column the reason is about, where there is one."),
        Field("detail", T.STRING, False, "What was found and what was expected (the offending value, the counts)."),
        Field(
            "records",
            T.INT64,
            False,
            "Input records this row rejects: 1 for a record; for a file, the records it held (0 when empty).",
        ),
    ),
)

SCORING_RUNS = TableSchema(
    name="scoring_runs",
    description="One row per scoring run: what it read, scored and rejected, and how it ended.",
    partition_field="score_date",
    cluster_fields=("status",),
    fields=(
        Field("run_id", T.STRING, True, "Unique id of the run."),
        Field("score_date", T.DATE, True, "The nightly partition scored."),
        Field(
            "status",
            T.STRING,
            True,
            "running; succeeded (published); failed (an error, the date untouched); refused (by a quality gate, the "
            "date untouched, its rows in refused_predictions and refused_errors); abandoned (no heartbeat: killed).",
        ),
        Field("model_name", T.STRING, True, "Champion model name."),
        Field("model_version", T.INT64, True, "Champion model version."),
        Field("challenger_version", T.INT64, False, "Challenger version, when one scored beside the champion."),
        Field("input", T.STRING, True, "Input location, date substituted."),
        Field(
            "input_records",
            T.INT64,
            False,
            "Records in the input by a count independent of the parser (= scored + rejected + duplicates_dropped).",
        ),
        Field("scored_records", T.INT64, False, "Records the champion scored (one per key)."),
        Field("rejected_records", T.INT64, False, "Records rejected, those of rejected files included."),
        Field("rejected_files", T.INT64, False, "Files rejected whole (empty, unreadable, missing a column)."),
        Field("started_at", T.TIMESTAMP, True, "Run start (UTC)."),
        Field("finished_at", T.TIMESTAMP, False, "Run end (UTC)."),
        Field("error", T.STRING, False, "Why the run failed."),
        Field(
            "comparison",
            T.STRING,
            False,
            "Champion vs challenger, as JSON: mean scores, share of labels that differ, rank correlation.",
        ),
        Field("metrics", T.STRING, False, "Beam metrics of the run (rows per stage and device), as JSON."),
        Field("options", T.STRING, True, "The pipeline options that matter, as JSON."),
        # Added by the release that introduced per-file reconciliation; an older warehouse gets them on `prepare`.
        Field("duplicates_dropped", T.INT64, False, "Records dropped as exact copies of another with the same key."),
        Field(
            "input_files",
            T.STRING,
            False,
            "Per file (or table), as JSON: records by the independent count, records valid, records rejected.",
        ),
        # Added by the release that introduced quality gates; an older warehouse gets them on `prepare`.
        Field(
            "gates",
            T.STRING,
            False,
            "Quality gates the night was held to, as a JSON list of {name, value, limit, passed, detail}.",
        ),
        Field("accepted_failures", T.STRING, False, "Why a night that failed its gates was published anyway."),
        Field("accepted_by", T.STRING, False, "Who published it anyway: user@host, or the Dataflow service account."),
        Field(
            "heartbeat_at", T.TIMESTAMP, False, "Last sign of life of a running run (UTC); stale ones are abandoned."
        ),
        # Added by the release that introduced monitoring; an older warehouse gets it on `prepare`.
        Field(
            "statistics",
            T.STRING,
            False,
            "The night's feature and score statistics (a DatasetFeatureStatisticsList, base64): the next night's "
            "previous_night baseline.",
        ),
    ),
)

FEATURE_DRIFT = TableSchema(
    name="feature_drift",
    description="Every drift metric of every feature and of the score, every night, flagged or not. A date is "
    "replaced whole by each run (README: Monitoring).",
    partition_field="score_date",
    cluster_fields=("feature", "baseline"),
    fields=(
        Field("score_date", T.DATE, True, "The nightly partition measured."),
        Field("run_id", T.STRING, True, "The scoring run that measured it."),
        Field("feature", T.STRING, True, "Feature name, or score for the model's output."),
        Field("baseline", T.STRING, True, "training (the model version's training data) or previous_night."),
        Field(
            "metric",
            T.STRING,
            True,
            "jensen_shannon, psi, l_infinity, missing_rate_change or out_of_vocabulary_share.",
        ),
        Field("value", T.FLOAT64, True, "The metric's value (drift_value in ML.VALIDATE_DATA_DRIFT's terms)."),
        Field("threshold", T.FLOAT64, True, "Above this the feature is flagged (schemas/ may set it per feature)."),
        Field(
            "flagged",
            T.BOOL,
            True,
            "value > threshold, with enough values on both sides (the use case's drift minimum; is_anomaly in "
            "ML.VALIDATE_DATA_DRIFT).",
        ),
        Field("detail", T.STRING, False, "What moved: the value that moved most, bin shares, counts."),
    ),
)

REFUSED_ERRORS = SCORING_ERRORS.renamed(
    "refused_errors", "Records the latest refused run of each date rejected, with reasons (as scoring_errors)."
)
REFUSED_FEATURE_DRIFT = FEATURE_DRIFT.renamed(
    "refused_feature_drift", "Drift of the latest refused run of each date (as feature_drift)."
)

# What a run stages for publishing: the predictions plus where each record came from and a hash of its
# content, so that duplicate keys are resolved in the warehouse, in SQL, without shipping whole records.
PROVENANCE = (
    Field("source", T.STRING, True, "File (or table) the record came from."),
    Field("line_number", T.INT64, False, "Line of the record in its file."),
    Field("content_hash", T.INT64, True, "64-bit hash of the record's typed values, key excluded."),
)


WAREHOUSE_INFO = TableSchema(
    name="warehouse_info",
    description="What the warehouse is: `use_case`, the use case whose nights it holds (set by the first run "
    "that prepares it; another use case is refused).",
    fields=(
        Field("name", T.STRING, True, "What is said: use_case."),
        Field("value", T.STRING, True, "Its value: the use case's name."),
    ),
)
USE_CASE_LABEL = "use_case"  # warehouse_info's row naming the warehouse's use case


def predictions(use_case: UseCase) -> TableSchema:
    """One row per scored record, date and model role: the use case's key, then the platform's columns."""
    key, words = use_case.input.key, use_case.words
    return TableSchema(
        name="predictions",
        description=f"One row per scored {words.record}, scoring date and model role. A date is replaced whole "
        "by each run.",
        partition_field="score_date",
        cluster_fields=("model_role", key.name),
        fields=(
            Field("score_date", T.DATE, True, f"The nightly partition the {words.record} was scored for (--date)."),
            Field(key.name, key.type, True, f"Key of the scored {words.record}."),
            Field(
                "probability",
                T.FLOAT64,
                True,
                f"Model's probability that the {words.record} is a {words.positive}, in [0, 1].",
            ),
            Field("label", T.BOOL, True, "Decided label: probability >= the model version's threshold."),
            Field("threshold", T.FLOAT64, True, "Decision threshold stored with the model version."),
            Field("model_name", T.STRING, True, "Name of the scoring model."),
            Field("model_version", T.INT64, True, "Version of the scoring model (TF Serving layout)."),
            Field("model_role", T.STRING, True, "champion, or challenger when a second version scored beside it."),
            Field("run_id", T.STRING, True, "The scoring run that wrote this row (see scoring_runs)."),
            Field("scored_at", T.TIMESTAMP, True, "When the run started scoring (UTC)."),
        ),
    )


def refused_predictions(use_case: UseCase) -> TableSchema:
    """A refused night's predictions, kept apart so that analysts never mistake them for a published
    night: the latest refused run of each date, replaced by the next refusal of that date."""
    return predictions(use_case).renamed(
        "refused_predictions", "Predictions of the latest refused run of each date: what it would have published."
    )


def staged_predictions(use_case: UseCase) -> TableSchema:
    return predictions(use_case).extended("staged_predictions", *PROVENANCE)


def warehouse_tables(use_case: UseCase) -> tuple[TableSchema, ...]:
    """Every table of a use case's warehouse, in the order they are created."""
    return (
        predictions(use_case),
        SCORING_ERRORS,
        SCORING_RUNS,
        refused_predictions(use_case),
        REFUSED_ERRORS,
        FEATURE_DRIFT,
        REFUSED_FEATURE_DRIFT,
        WAREHOUSE_INFO,
    )
