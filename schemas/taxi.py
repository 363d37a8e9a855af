"""The bundled use case, Chicago taxi "big tipper" (TFX's taxi example): its raw trip records, which
columns become which model inputs (as in TFX's taxi template, in one place), its label, settings and words.

Column layout follows the City of Chicago Taxi Trips data set as TFX's taxi example ships it, plus
`trip_id`, the stable record key that every nightly partition carries. Its preprocessing is
`transforms/taxi.py`; its model the platform's wide-and-deep builder (`models/model.py`).
"""

from schemas.core import Column, InputSchema, Role
from schemas.core import ColumnType as T
from schemas.use_case import DriftSettings, Feature, Sample, TrainingSettings, UseCase, Words
from schemas.use_case import FeatureKind as K

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


# The label: a tip above this share of the fare (the preprocessing derives it from `tips` and `fare`).
TIP_SHARE = 0.2

USE_CASE = UseCase(
    name="taxi",
    input=TRIPS,
    features=(
        Feature("trip_miles", K.NUMERIC),
        Feature("fare", K.NUMERIC),
        Feature("trip_seconds", K.NUMERIC),
        *(
            Feature(name, K.BUCKETIZED, buckets=10)
            for name in ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")
        ),
        *(
            Feature(name, K.VOCABULARY, vocabulary_size=1000, oov_buckets=1)
            for name in ("payment_type", "company", "pickup_census_tract", "dropoff_census_tract")
        ),
        Feature("trip_start_hour", K.INTEGER_CATEGORY, ids=24),
        Feature("trip_start_day", K.INTEGER_CATEGORY, ids=8),
        Feature("trip_start_month", K.INTEGER_CATEGORY, ids=13),
        Feature("pickup_community_area", K.INTEGER_CATEGORY, ids=78),
        Feature("dropoff_community_area", K.INTEGER_CATEGORY, ids=78),
    ),
    label="big_tipper",  # tips > TIP_SHARE * fare
    preprocessing="transforms.taxi:preprocessing_fn",
    model_name="taxi_tipper",
    training_input="data/chicago_taxi/trips.csv",
    scoring_input="data/trips/dt={date}/*.csv",
    training=TrainingSettings(epochs=8, batch_size=256),
    drift=DriftSettings(
        # These follow the night's own date, so one night always holds one weekday and one month against
        # training's spread over all of them: measured and stored, never flagged.
        not_flagged={
            "trip_start_day": "one weekday per night by construction",
            "trip_start_month": "one month per night by construction",
        },
    ),
    words=Words(
        record="trip",
        records="trips",
        positive="big tipper",
        # The views' column names before use cases (README: For analysts); kept until the next release.
        view_aliases={"records": "trips", "positive_share": "big_tipper_share"},
    ),
    sample=Sample(module="scripts.make_trips", night="2026-11-23"),
    timezone="America/Chicago",
)
