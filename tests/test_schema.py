"""schemas/ drives the feature spec, the validation and the staged files (the tables: test_warehouses)."""

import dataclasses

import tensorflow as tf

import schemas
from models.handler import SCORED_SCHEMA
from models.signature import PRESENT_SUFFIX, input_spec
from pipelines.batches import REJECTED_SCHEMA
from schemas import PREDICTIONS, SCORING_ERRORS, ColumnType, Role
from transforms import features as F


def test_feature_spec_is_derived_from_the_schema():
    spec = schemas.INPUT.raw_feature_spec()
    expected = {c.name for c in schemas.INPUT.columns if c.role in (Role.FEATURE, Role.LABEL)}
    assert set(spec) == expected
    dtypes = {ColumnType.STRING: tf.string, ColumnType.INT64: tf.int64, ColumnType.FLOAT64: tf.float32}
    for column in schemas.INPUT.model_columns:
        feature = spec[column.name]
        kind = tf.io.FixedLenFeature if column.required else tf.io.VarLenFeature
        assert isinstance(feature, kind), column.name
        assert feature.dtype == dtypes[column.type], column.name


def test_raw_signature_inputs_are_derived_from_the_schema():
    spec = input_spec(schemas.INPUT)
    for column in schemas.INPUT.features:
        assert column.name in spec
        assert (column.name + PRESENT_SUFFIX in spec) == (not column.required)
    assert schemas.INPUT.key.name not in spec and "tips" not in spec


def test_feature_lists_name_schema_columns():
    names = {c.name for c in schemas.INPUT.model_columns}
    used = set(F.DENSE_FLOAT_FEATURES) | set(F.BUCKET_FEATURES) | set(F.VOCAB_FEATURES)
    used |= {n for n, _ in F.CATEGORICAL_FEATURES} | {F.LABEL_SOURCE}
    assert used <= names
    assert schemas.INPUT.label.name == F.LABEL_SOURCE


def test_staged_layouts_are_the_tables_less_run_level_columns():
    assert [f.name for f in SCORED_SCHEMA] == [
        n for n in PREDICTIONS.names if n not in ("score_date", "run_id", "scored_at")
    ]
    assert [f.name for f in REJECTED_SCHEMA] == [
        n for n in SCORING_ERRORS.names if n not in ("score_date", "run_id", "recorded_at")
    ]


def test_fingerprint_tracks_what_the_model_depends_on():
    base = schemas.INPUT
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
