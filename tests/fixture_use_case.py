"""The platform's own test use case: small, synthetic, and not taxi, so that the platform is tested on
something no bundled example shapes. Chosen as `--use_case tests.fixture_use_case`, like any use case
outside the platform. It takes what the bundled ones do not: an INT64 label column used as it is, an
event time in unix seconds, ids (store_id) in a vocabulary, a bucketized feature, and view aliases.

Declaring it imports neither TensorFlow nor tf.Transform: its preprocessing imports them when it runs.
It is its own sample maker (write_training, write_night): orders whose return depends on amount,
channel and region, so a model has something to learn.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from schemas import (
    Column,
    ColumnType,
    DriftSettings,
    Feature,
    FeatureKind,
    InputSchema,
    Role,
    Sample,
    TrainingSettings,
    UseCase,
    Words,
)

ORDERS = InputSchema(
    name="orders",
    columns=(
        Column("order_id", ColumnType.STRING, True, Role.KEY, "Order id."),
        Column("placed_at", ColumnType.INT64, True, Role.EVENT_TIME, "When it was placed, unix seconds."),
        Column("amount", ColumnType.FLOAT64, False, Role.FEATURE, "Order value; 5% missing.", minimum=0),
        Column("weight_kg", ColumnType.FLOAT64, True, Role.FEATURE, "Parcel weight.", minimum=0),
        Column("region", ColumnType.STRING, False, Role.FEATURE, "Delivery region."),
        Column("store_id", ColumnType.INT64, True, Role.FEATURE, "Store the order came from (an id)."),
        Column("channel", ColumnType.INT64, True, Role.FEATURE, "0 web, 1 app, 2 phone.", 0, 2),
        Column("returned", ColumnType.INT64, True, Role.LABEL, "1: the order was returned.", 0, 1),
    ),
)

USE_CASE = UseCase(
    name="fixture",
    input=ORDERS,
    features=(
        Feature("amount", FeatureKind.NUMERIC),
        Feature("weight_kg", FeatureKind.BUCKETIZED, buckets=4),
        Feature("region", FeatureKind.VOCABULARY, vocabulary_size=10),
        Feature("store_id", FeatureKind.VOCABULARY, vocabulary_size=20),
        Feature("channel", FeatureKind.INTEGER_CATEGORY, ids=3),
    ),
    label="returned",
    preprocessing="tests.fixture_use_case:preprocessing_fn",
    model_name="order_returns",
    training=TrainingSettings(epochs=2, batch_size=128),
    drift=DriftSettings(min_values=100),
    words=Words(record="order", records="orders", positive="return", view_aliases={"records": "orders"}),
    sample=Sample(module="tests.fixture_use_case", night="2026-11-23"),
)

REGIONS = ["north", "south", "east", "west", ""]  # "": not known (missing)


def preprocessing_fn(inputs: dict) -> dict:
    import tensorflow as tf

    from transforms.preprocessing import fill_in_missing, transform_features

    outputs = transform_features(inputs, USE_CASE)
    if "returned" in inputs:
        outputs[USE_CASE.label] = tf.cast(fill_in_missing(inputs["returned"]), tf.int64)
    return outputs


def orders(records: int, first: date, days: int, seed: int, labelled: bool) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3.5, 0.8, records), 2)
    channel = rng.integers(0, 3, records)
    region = rng.choice(REGIONS, records, p=[0.3, 0.3, 0.2, 0.15, 0.05])
    risk = 1 / (1 + np.exp(-(amount / 60 - 1.5 + (channel == 2) * 1.2 + (region == "west") * 0.8)))
    start = int(datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp())
    columns = {
        "order_id": [f"{first:%Y%m%d}-{seed}-{i:06d}" for i in range(records)],
        "placed_at": start + rng.integers(0, days * 86400, records),
        "amount": np.where(rng.random(records) < 0.05, "", amount.astype(str)),
        "weight_kg": np.round(rng.gamma(2.0, 1.5, records), 3),
        "region": region,
        "store_id": rng.integers(100, 130, records),
        "channel": channel,
    }
    if labelled:
        columns["returned"] = (rng.random(records) < risk).astype(np.int64)
    return pa.table(columns)


def write_training(path: str, records: int | None = None) -> int:
    table = orders(3000 if records is None else records, date(2026, 9, 1), 60, seed=1, labelled=True)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    pacsv.write_csv(table, path)
    return table.num_rows


def write_night(day: date, folder: str, records: int | None = None, rows_per_file: int = 1_000_000) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    table = orders(800 if records is None else records, day, 1, seed=day.toordinal(), labelled=False)
    paths = []
    for index, offset in enumerate(range(0, max(table.num_rows, 1), rows_per_file)):
        paths.append(os.path.join(folder, f"part-{index:05d}.csv"))
        pacsv.write_csv(table.slice(offset, rows_per_file), paths[-1])
    return paths
