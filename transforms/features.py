"""Which raw columns get which treatment, in one place (as in TFX's taxi template).

Every name here must be a feature or the label of `schemas.INPUT`; `tests/test_schema.py` checks it.
"""

DENSE_FLOAT_FEATURES = ("trip_miles", "fare", "trip_seconds")  # z-scored

BUCKET_FEATURES = ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")
BUCKET_COUNT = 10  # quantile buckets per coordinate

VOCAB_FEATURES = ("payment_type", "company", "pickup_census_tract", "dropoff_census_tract")
VOCAB_SIZE = 1000  # most frequent values kept
OOV_BUCKETS = 1  # unseen values (and missing ones) share one id

# Integer categories with a known range: (name, number of ids). Out-of-range values map to 0.
CATEGORICAL_FEATURES = (
    ("trip_start_hour", 24),
    ("trip_start_day", 8),
    ("trip_start_month", 13),
    ("pickup_community_area", 78),
    ("dropoff_community_area", 78),
)

LABEL_SOURCE = "tips"
LABEL_KEY = "big_tipper"  # tips > TIP_SHARE * fare
TIP_SHARE = 0.2


def transformed_name(name: str) -> str:
    return f"{name}_xf"
