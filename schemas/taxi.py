"""The Chicago taxi "big tipper" use case: its raw trip records and its warehouse tables.

Column layout follows the City of Chicago Taxi Trips data set as TFX's taxi example ships it, plus
`trip_id`, the stable record key that every nightly partition carries.
"""

from schemas.core import Column, Field, InputSchema, Role, TableSchema
from schemas.core import ColumnType as T

TRIPS = InputSchema(
    name="chicago_taxi_trips",
    columns=(
        Column("trip_id", T.STRING, True, Role.KEY, "Stable unique id of the trip."),
        Column("pickup_community_area", T.INT64, False, Role.FEATURE, "Community area of pickup (1-77)."),
        Column("fare", T.FLOAT64, True, Role.FEATURE, "Fare in USD."),
        Column("trip_start_month", T.INT64, True, Role.FEATURE, "Month the trip started (1-12)."),
        Column("trip_start_hour", T.INT64, True, Role.FEATURE, "Hour the trip started (0-23)."),
        Column("trip_start_day", T.INT64, True, Role.FEATURE, "Day of week the trip started (1=Sunday)."),
        Column("trip_start_timestamp", T.INT64, True, Role.EVENT_TIME, "Trip start, unix seconds (UTC)."),
        Column("pickup_latitude", T.FLOAT64, False, Role.FEATURE, "Pickup latitude."),
        Column("pickup_longitude", T.FLOAT64, False, Role.FEATURE, "Pickup longitude."),
        Column("dropoff_latitude", T.FLOAT64, False, Role.FEATURE, "Dropoff latitude."),
        Column("dropoff_longitude", T.FLOAT64, False, Role.FEATURE, "Dropoff longitude."),
        Column("trip_miles", T.FLOAT64, True, Role.FEATURE, "Trip distance in miles."),
        Column("pickup_census_tract", T.INT64, False, Role.FEATURE, "Census tract of pickup."),
        Column("dropoff_census_tract", T.INT64, False, Role.FEATURE, "Census tract of dropoff."),
        Column("payment_type", T.STRING, True, Role.FEATURE, "How the trip was paid."),
        Column("company", T.STRING, False, Role.FEATURE, "Taxi company."),
        Column("trip_seconds", T.INT64, False, Role.FEATURE, "Trip duration in seconds."),
        Column("dropoff_community_area", T.INT64, False, Role.FEATURE, "Community area of dropoff (1-77)."),
        Column("tips", T.FLOAT64, False, Role.LABEL, "Tip in USD; the label is tips > 20% of fare."),
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
        Field("line_number", T.INT64, False, "Line in the source file, where the reader knows it."),
        Field("raw_record", T.STRING, False, "The record as read (re-joined CSV for typed rows)."),
        Field("reason", T.STRING, True, "Why the record was rejected."),
        Field("error_kind", T.STRING, True, "record: one input record rejected; file: a whole file unusable."),
        Field("recorded_at", T.TIMESTAMP, True, "When the run started (UTC)."),
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
        Field("status", T.STRING, True, "running, succeeded or failed."),
        Field("model_name", T.STRING, True, "Champion model name."),
        Field("model_version", T.INT64, True, "Champion model version."),
        Field("challenger_version", T.INT64, False, "Challenger version, when one scored beside the champion."),
        Field("input", T.STRING, True, "Input location, date substituted."),
        Field("input_records", T.INT64, False, "Records read (= scored_records + rejected_records)."),
        Field("scored_records", T.INT64, False, "Records the champion scored."),
        Field("rejected_records", T.INT64, False, "Records rejected by validation."),
        Field("rejected_files", T.INT64, False, "Files rejected whole (empty or unreadable)."),
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
    ),
)
