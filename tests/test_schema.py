"""schemas/ drives the feature spec, the validation and the staged files (the tables: test_warehouses);
a use case's features name its input's columns."""

import dataclasses

import pytest
import tensorflow as tf

from models.handler import scored_schema
from models.signature import PRESENT_SUFFIX, input_spec
from pipelines.batches import REJECTED_SCHEMA
from schemas import SCORING_ERRORS, ColumnType, Feature, FeatureKind, Role, predictions
from schemas.taxi import USE_CASE

TRIPS = USE_CASE.input


def test_feature_spec_is_derived_from_the_schema():
    spec = TRIPS.raw_feature_spec()
    expected = {c.name for c in TRIPS.columns if c.role in (Role.FEATURE, Role.LABEL)}
    assert set(spec) == expected
    dtypes = {ColumnType.STRING: tf.string, ColumnType.INT64: tf.int64, ColumnType.FLOAT64: tf.float32}
    for column in TRIPS.model_columns:
        feature = spec[column.name]
        kind = tf.io.FixedLenFeature if column.required else tf.io.VarLenFeature
        assert isinstance(feature, kind), column.name
        assert feature.dtype == dtypes[column.type], column.name


def test_raw_signature_inputs_are_derived_from_the_schema():
    spec = input_spec(TRIPS)
    for column in TRIPS.features:
        assert column.name in spec
        assert (column.name + PRESENT_SUFFIX in spec) == (not column.required)
    assert TRIPS.key.name not in spec and "tips" not in spec


def test_features_name_schema_columns():
    names = {c.name for c in TRIPS.features}
    used = {column for feature in USE_CASE.features for column in feature.raw_columns}
    assert used <= names
    assert TRIPS.label.name == "tips"  # the label is derived from it (transforms/taxi.py)
    assert USE_CASE.label not in TRIPS.names and USE_CASE.label not in {f.transformed for f in USE_CASE.features}


def test_a_feature_of_an_unknown_column_is_refused():
    with pytest.raises(ValueError, match="feature tip_rate reads unknown column tip"):
        dataclasses.replace(USE_CASE, features=(Feature("tip_rate", FeatureKind.NUMERIC, sources=("fare", "tip")),))


def test_staged_layouts_are_the_tables_less_run_level_columns():
    assert [f.name for f in scored_schema(USE_CASE)] == [
        n for n in predictions(USE_CASE).names if n not in ("score_date", "run_id", "scored_at")
    ]
    assert [f.name for f in REJECTED_SCHEMA] == [
        n for n in SCORING_ERRORS.names if n not in ("score_date", "run_id", "recorded_at")
    ]


def test_fingerprint_tracks_what_the_model_depends_on():
    base = TRIPS
    reworded = dataclasses.replace(
        base, columns=tuple(dataclasses.replace(c, description="other words") for c in base.columns)
    )
    assert reworded.fingerprint() == base.fingerprint()
    assert base.for_training().fingerprint() == base.fingerprint()
    retyped = dataclasses.replace(
        base,
        columns=tuple(
            dataclasses.replace(c, type=ColumnType.FLOAT64) if c.name == "trip_seconds" else c for c in base.columns
        ),
    )
    assert retyped.fingerprint() != base.fingerprint()
