"""The taxi use case's preprocessing_fn (the platform's treatments by declared kind, and its label) on known
rows, with exact expected outputs (as tf.Transform's tft_unit does)."""

import dataclasses
import json
import math

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow_transform.beam as tft_beam

from pipelines.batches import RawBatch
from pipelines.training import tensor_adapter_config, to_tfxio_batch
from pipelines.validate import SchemaValidator
from schemas import InputSchema
from schemas.taxi import USE_CASE

TRIPS = USE_CASE.input

# Without the declared ranges, which would reject the out-of-range rows below before the transform saw
# them: the transform must still clip and bucket them for a schema that declares none.
SCHEMA = InputSchema(
    TRIPS.name,
    tuple(dataclasses.replace(c, minimum=None, maximum=None) for c in TRIPS.for_training().columns),
)

# Six trips chosen so every treatment has a hand-computable answer (no ties in vocabulary counts).
ROWS = {
    "trip_id": ["a", "b", "c", "d", "e", "f"],
    "pickup_community_area": ["8", "8", None, "77", "78", "32"],
    "fare": ["10", "20", "30", "40", "50", "60"],
    "trip_start_month": ["1", "2", "3", "12", "13", "11"],
    "trip_start_hour": ["0", "5", "23", "24", "7", "7"],
    "trip_start_day": ["1", "2", "3", "4", "5", "9"],
    "trip_start_timestamp": ["1795446000"] * 6,
    "pickup_latitude": ["41.1", "41.2", "41.3", "41.4", "41.5", "41.6"],
    "pickup_longitude": ["-87.1", "-87.2", "-87.3", "-87.4", "-87.5", "-87.6"],
    "dropoff_latitude": [None, "41.9", "41.9", "41.9", "41.9", "41.9"],
    "dropoff_longitude": [None, "-87.9", "-87.9", "-87.9", "-87.9", "-87.9"],
    "trip_miles": ["1", "1", "1", "1", "1", "7"],
    "pickup_census_tract": [None, None, None, "17031081401", "17031081401", None],
    "dropoff_census_tract": ["17031839100", "17031839100", "17031839100", "17031320100", "17031320100", None],
    "payment_type": ["Cash", "Cash", "Cash", "Credit Card", "Credit Card", "Mobile"],
    "company": ["Flash Cab", "Flash Cab", "Flash Cab", None, None, "Blue Ribbon"],
    "trip_seconds": ["60", None, "180", "300", "420", "540"],
    "dropoff_community_area": ["32", "32", None, "0", "-3", "77"],
    "tips": ["2.5", "0", "7", "8", "10.01", "0"],
}


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    valid, rejected = SchemaValidator(SCHEMA).validate(
        RawBatch("rows", pa.RecordBatch.from_pydict({k: pa.array(v, pa.string()) for k, v in ROWS.items()}))
    )
    assert rejected is None
    config = tensor_adapter_config(SCHEMA)
    work = tmp_path_factory.mktemp("tft")
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(work / "tmp")):
        data = p | beam.Create([to_tfxio_batch(valid, SCHEMA)])
        (out, _), _ = (data, config) | tft_beam.AnalyzeAndTransformDataset(USE_CASE.preprocessing_fn())
        _ = (
            out
            | beam.Map(lambda row: json.dumps({k: np.asarray(v).item() for k, v in row.items()}))
            | beam.io.WriteToText(str(work / "out"), shard_name_template="")
        )
    rows = [json.loads(line) for line in (work / "out").read_text().splitlines()]
    rows.sort(key=lambda r: r["fare_xf"])  # fares are distinct and ascending in ROWS order
    return {k: [row[k] for row in rows] for k in rows[0]}


def z_scores(values):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / std for v in values]


def test_dense_floats_are_filled_then_z_scored(transformed):
    np.testing.assert_allclose(transformed["fare_xf"], z_scores([10, 20, 30, 40, 50, 60]), rtol=1e-5)
    np.testing.assert_allclose(transformed["trip_miles_xf"], z_scores([1, 1, 1, 1, 1, 7]), rtol=1e-5)
    # The missing trip_seconds is filled with 0 before analysis, inside the graph.
    np.testing.assert_allclose(transformed["trip_seconds_xf"], z_scores([60, 0, 180, 300, 420, 540]), rtol=1e-5)


def test_strings_map_to_vocabulary_ids_by_frequency(transformed):
    assert transformed["payment_type_xf"] == [0, 0, 0, 1, 1, 2]  # Cash x3, Credit Card x2, Mobile x1
    # Missing values become '', which tf.Transform keeps out of vocabularies: they take the OOV id
    # (vocabulary size), however frequent they are.
    assert transformed["company_xf"] == [0, 0, 0, 2, 2, 1]  # Flash Cab x3, Blue Ribbon, OOV = 2
    # Integer ids use a vocabulary too; a missing tract is OOV, never mistaken for a tract "0".
    assert transformed["dropoff_census_tract_xf"] == [0, 0, 0, 1, 1, 2]
    assert transformed["pickup_census_tract_xf"] == [1, 1, 1, 0, 0, 1]


def test_categorical_ints_keep_their_range(transformed):
    assert transformed["trip_start_hour_xf"] == [0, 5, 23, 0, 7, 7]  # 24 is out of range -> 0
    assert transformed["trip_start_day_xf"] == [1, 2, 3, 4, 5, 0]  # 9 -> 0
    assert transformed["trip_start_month_xf"] == [1, 2, 3, 12, 0, 11]  # 13 -> 0
    assert transformed["pickup_community_area_xf"] == [8, 8, 0, 77, 0, 32]  # missing, 78 -> 0
    assert transformed["dropoff_community_area_xf"] == [32, 32, 0, 0, 0, 77]  # missing, 0, -3 -> 0


def test_coordinates_are_bucketized_in_order(transformed):
    buckets = transformed["pickup_latitude_xf"]
    assert buckets == sorted(buckets) and len(set(buckets)) == 6  # six distinct values, six buckets
    assert transformed["pickup_longitude_xf"] == sorted(transformed["pickup_longitude_xf"], reverse=True)
    [feature] = [f for f in USE_CASE.features if f.name == "pickup_latitude"]
    assert all(0 <= b <= feature.buckets for b in buckets)
    # Missing dropoff coordinates are filled with 0, below every real latitude.
    assert transformed["dropoff_latitude_xf"][0] < transformed["dropoff_latitude_xf"][1]


def test_label_is_big_tipper(transformed):
    # tips > 20% of fare: 2.5 > 2; 0 > 4 no; 7 > 6; 8 > 8 no; 10.01 > 10; 0 no.
    assert transformed[USE_CASE.label] == [1, 0, 1, 0, 1, 0]


def test_every_declared_feature_is_made_and_nothing_else(transformed):
    assert set(transformed) == {f.transformed for f in USE_CASE.features} | {USE_CASE.label}
