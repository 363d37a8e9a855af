"""The Chicago taxi "big tipper" use case: its raw trip records and its warehouse tables.

Column layout follows the City of Chicago Taxi Trips data set as TFX's taxi example ships it, plus
`trip_id`, the stable record key that every nightly partition carries.
"""

from schemas.core import Column, Field, InputSchema, Role, TableSchema
from schemas.core import ColumnType as T

# Declared ranges, from the data set's documentation (Chicago's 77 community areas, Cook County's census
# tracts 17031xxxxxx, the city's extent) with a margin; the bundled sample (data/chicago_taxi/) lies inside
# them. payment_type and company get no allowed set on purpose: new values do appear (Mobile, Prepaid,
# new companies), and the model's vocabulary already maps an unseen value to its out-of-vocabulary bucket,
# so rejecting them would lose real trips for nothing.
AREA = (1, 77)
TRACT = (17031010100, 17031980100)
LATITUDE = (41.6, 42.1)
LONGITUDE = (-88.0, -87.5)
DATA_SET_START = 1356998400  # 2013-01-01T00:00:00Z

TRIPS = InputSchema(
    name="chicago_taxi_trips",
    columns=(
        Column("trip_id", T.STRING, True, Role.KEY, "Stable unique id of the trip."),
        Column("pickup_community_area", T.INT64, False, Role.FEATURE, "Community area of pickup (1-77).", *AREA),
        Column("fare", T.FLOAT64, True, Role.FEATURE, "Fare in USD.", minimum=0),
        Column("trip_start_month", T.INT64, True, Role.FEATURE, "Month the trip started (1-12).", 1, 12),
        Column("trip_start_hour", T.INT64, True, Role.FEATURE, "Hour the trip started (0-23).", 0, 23),
        Column("trip_start_day", T.INT64, True, Role.FEATURE, "Day of week the trip started (1=Sunday).", 1, 7),
        Column(
            "trip_start_timestamp",
            T.INT64,
            True,
            Role.EVENT_TIME,
            "Trip start, unix seconds (UTC); the data set begins on 2013-01-01.",
            minimum=DATA_SET_START,
        ),
        Column("pickup_latitude", T.FLOAT64, False, Role.FEATURE, "Pickup latitude.", *LATITUDE),
        Column("pickup_longitude", T.FLOAT64, False, Role.FEATURE, "Pickup longitude.", *LONGITUDE),
        Column("dropoff_latitude", T.FLOAT64, False, Role.FEATURE, "Dropoff latitude.", *LATITUDE),
        Column("dropoff_longitude", T.FLOAT64, False, Role.FEATURE, "Dropoff longitude.", *LONGITUDE),
        Column("trip_miles", T.FLOAT64, True, Role.FEATURE, "Trip distance in miles.", minimum=0),
        Column("pickup_census_tract", T.INT64, False, Role.FEATURE, "Census tract of pickup.", *TRACT),
        Column("dropoff_census_tract", T.INT64, False, Role.FEATURE, "Census tract of dropoff.", *TRACT),
        Column("payment_type", T.STRING, True, Role.FEATURE, "How the trip was paid."),
        Column("company", T.STRING, False, Role.FEATURE, "Taxi company."),
        Column("trip_seconds", T.INT64, False, Role.FEATURE, "Trip duration in seconds.", minimum=0),
        Column("dropoff_community_area", T.INT64, False, Role.FEATURE, "Community area of dropoff (1-77).", *AREA),
        Column("tips", T.FLOAT64, False, Role.LABEL, "Tip in USD; the label is tips > 20% of fare.", minimum=0),
    ),
)

PREDICTIONS = TableSchema(
    name="predictions",
    description="One row per scored trip, scoring date and model role. A date is replaced whole by each run.",
    partition_field="score_date",
    cluster_fields=("model_role", "trip_id"),
    fields=(
        Field("score_date", T.DATE, True, "The nightly partition the trip was scored for (--date)."),
        Field("trip_id", T.STRING, True, "Key of the scored trip."),
        Field("probability", T.FLOAT64, True, "Model's probability that the trip is a big tipper, in [0, 1]."),
        Field("label", T.BOOL, True, "Decided label: probability >= the model version's threshold."),
        Field("threshold", T.FLOAT64, True, "Decision threshold stored with the model version."),
        Field("model_name", T.STRING, True, "Name of the scoring model."),
        Field("model_version", T.INT64, True, "Version of the scoring model (TF Serving layout)."),
        Field("model_role", T.STRING, True, "champion, or challenger when a second version scored beside it."),
        Field("run_id", T.STRING, True, "The scoring run that wrote this row (see scoring_runs)."),
        Field("scored_at", T.TIMESTAMP, True, "When the run started scoring (UTC)."),
    ),
)

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
            "value > threshold, with at least 1,000 values on both sides (is_anomaly in ML.VALIDATE_DATA_DRIFT).",
        ),
        Field("detail", T.STRING, False, "What moved: the value that moved most, bin shares, counts."),
    ),
)

# A refused night's rows, kept apart so that analysts never mistake them for a published night: the
# latest refused run of each date, replaced by the next refusal of that date.
REFUSED_PREDICTIONS = PREDICTIONS.renamed(
    "refused_predictions", "Predictions of the latest refused run of each date: what it would have published."
)
REFUSED_ERRORS = SCORING_ERRORS.renamed(
    "refused_errors", "Records the latest refused run of each date rejected, with reasons (as scoring_errors)."
)
REFUSED_FEATURE_DRIFT = FEATURE_DRIFT.renamed(
    "refused_feature_drift", "Drift of the latest refused run of each date (as feature_drift)."
)

# Drift thresholds per feature and metric, where the defaults (0.1, PSI 0.25) do not suit a feature:
# {"fare": {"psi": 0.4}}. README: Monitoring.
DRIFT_THRESHOLDS: dict[str, dict[str, float]] = {}
# Features whose drift is measured and stored but never flagged, with why: these follow the night's own
# date, so one night always holds one weekday and one month against training's spread over all of them.
DRIFT_NOT_FLAGGED: dict[str, str] = {
    "trip_start_day": "one weekday per night by construction",
    "trip_start_month": "one month per night by construction",
}

# What a run stages for publishing: the predictions plus where each record came from and a hash of its
# content, so that duplicate keys are resolved in the warehouse, in SQL, without shipping whole records.
PROVENANCE = (
    Field("source", T.STRING, True, "File (or table) the record came from."),
    Field("line_number", T.INT64, False, "Line of the record in its file."),
    Field("content_hash", T.INT64, True, "64-bit hash of the record's typed values, key excluded."),
)
STAGED_PREDICTIONS = PREDICTIONS.extended("staged_predictions", *PROVENANCE)
