"""The exported model: no training/serving skew, consistent signatures, versions and metadata; and what
training records with it: the threshold its use case's rule picks, the event-time range of its data."""

import dataclasses
import json
import os
import shutil
from datetime import date, datetime, timezone

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam

from models import model as model_lib
from models import registry, signature
from models.registry import ModelVersionError, OtherUseCaseError
from pipelines.batches import RawBatch
from pipelines.training import (
    EVAL,
    TRAIN,
    AssignSplits,
    choose_threshold,
    event_time_range,
    tensor_adapter_config,
    threshold_rule_words,
    to_tfxio_batch,
    training_data_range,
)
from pipelines.validate import SchemaValidator
from schemas import Column, ColumnType, InputSchema, Role, ThresholdRule, TrainingSettings
from schemas.taxi import USE_CASE
from tests.conftest import SAMPLE
from tests.float32 import assert_close_probabilities

TRIPS = USE_CASE.input
SCHEMA = TRIPS.for_training()


@pytest.fixture(scope="module")
def sample_rows() -> pa.RecordBatch:
    """400 real trips, with their empty fields (company, dropoff coordinates, census tracts)."""
    names = [n for n in SCHEMA.names if n != SCHEMA.key.name]
    table = pacsv.read_csv(
        SAMPLE,
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            include_columns=SCHEMA.names,
            include_missing_columns=True,
            strings_can_be_null=True,
            null_values=[""],
        ),
    )
    raw = table.slice(0, 400).combine_chunks().to_batches()[0]
    valid, rejected = SchemaValidator(SCHEMA).validate(RawBatch("sample", raw))
    assert rejected is None and valid.num_rows == 400
    for name in ("company", "dropoff_latitude", "pickup_census_tract"):
        assert valid.column(name).null_count > 0, name
    return valid


class _Analysed:
    """What categorical_sizes reads of tf.Transform's output: the vocabularies' sizes, by feature."""

    def vocabulary_size_by_name(self, name: str) -> int:
        return {"payment_type": 9, "company": 80, "pickup_census_tract": 700, "dropoff_census_tract": 1000}[name]


def test_the_model_takes_the_declared_features_in_their_order():
    """Inputs and their sizes as before use cases were plug-ins, so the same seed trains the same model."""
    sizes = model_lib.categorical_sizes(_Analysed(), USE_CASE)
    assert sizes == {
        "payment_type_xf": 10,
        "company_xf": 81,
        "pickup_census_tract_xf": 701,
        "dropoff_census_tract_xf": 1001,
        **{f"{c}_xf": 11 for c in ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")},
        "trip_start_hour_xf": 24,
        "trip_start_day_xf": 8,
        "trip_start_month_xf": 13,
        "pickup_community_area_xf": 78,
        "dropoff_community_area_xf": 78,
    }
    assert USE_CASE.build_model() is model_lib.build_model
    model = USE_CASE.build_model()(USE_CASE, sizes)
    assert model.input_names == ["trip_miles_xf", "fare_xf", "trip_seconds_xf", *sorted(sizes)]


def test_class_weights_scale_each_record_loss():
    """The model gives one probability per record, so Keras's own loss is already the batch's mean: with
    class weights the loss must stay per record for the weights to reach it."""
    weighted = dataclasses.replace(USE_CASE, training=TrainingSettings(class_weights=(1.0, 4.0)))
    sizes = model_lib.categorical_sizes(_Analysed(), USE_CASE)
    rng = np.random.default_rng(0)
    x = {name: rng.integers(0, size, 64) for name, size in sizes.items()}
    x |= {f.transformed: rng.normal(size=64).astype(np.float32) for f in USE_CASE.features if f.transformed not in x}
    y = (rng.random(64) < 0.3).astype(np.float32)
    for use_case, weights in ((USE_CASE, np.ones(64)), (weighted, np.where(y == 1, 4.0, 1.0))):
        model = model_lib.build_model(use_case, sizes)
        p = model.predict(x, verbose=0).astype(np.float64)
        expected = np.mean(weights * -(y * np.log(p) + (1 - y) * np.log(1 - p)))
        sample_weight = weights if use_case is weighted else None
        got = model.evaluate(x, y, sample_weight=sample_weight, batch_size=64, verbose=0, return_dict=True)["loss"]
        assert got == pytest.approx(expected, rel=1e-5), use_case.name
    model.fit(x, y, batch_size=16, epochs=1, class_weight={0: 1.0, 1: 4.0}, verbose=0)  # as training calls it


def test_transform_signature_equals_tf_transform(trained, sample_rows, tmp_path):
    """What the exported model computes from raw columns is exactly what TransformDataset computes."""
    config = tensor_adapter_config(SCHEMA)
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
        transform_fn = p | tft_beam.ReadTransformFn(trained.transform_dir)
        data = p | "Rows" >> beam.Create([to_tfxio_batch(sample_rows, SCHEMA)])
        (out, _) = ((data, config), transform_fn) | tft_beam.TransformDataset()
        _ = (
            out
            | beam.Map(lambda r: json.dumps({k: np.asarray(v).item() for k, v in r.items()}))
            | beam.io.WriteToText(str(tmp_path / "tft"), shard_name_template="")
        )
    expected = [json.loads(line) for line in (tmp_path / "tft").read_text().splitlines()]

    model = tf.saved_model.load(trained.version.path)
    got = model.signatures[signature.TRANSFORM_SIGNATURE](**signature.batch_to_inputs(sample_rows, TRIPS))
    assert set(got) == set(expected[0]) - {USE_CASE.label}
    # One input batch is one bundle, so TransformDataset's rows come back in input order.
    assert len(expected) == sample_rows.num_rows
    for name in got:
        want = np.array([r[name] for r in expected])
        have = got[name].numpy()
        if want.dtype.kind == "f":
            np.testing.assert_allclose(have, want, rtol=0, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(have, want, err_msg=name)


def _examples(batch: pa.RecordBatch) -> list[bytes]:
    out = []
    for row in batch.to_pylist():
        example = tf.train.Example()
        for column in TRIPS.features:
            value = row[column.name]
            if value is None:
                continue
            feature = example.features.feature[column.name]
            if isinstance(value, str):
                feature.bytes_list.value.append(value.encode())
            elif isinstance(value, float):
                feature.float_list.value.append(value)
            else:
                feature.int64_list.value.append(value)
        out.append(example.SerializeToString())
    return out


def test_examples_signature_scores_like_the_raw_signature(trained, sample_rows):
    model = tf.saved_model.load(trained.version.path)
    raw = model.signatures[signature.RAW_SIGNATURE](**signature.batch_to_inputs(sample_rows, TRIPS))
    served = model.signatures[signature.EXAMPLES_SIGNATURE](examples=tf.constant(_examples(sample_rows)))
    assert_close_probabilities(served[signature.PROBABILITY].numpy(), raw[signature.PROBABILITY].numpy(), "signatures")
    probs = raw[signature.PROBABILITY].numpy()
    assert probs.shape == (400,) and np.all((probs >= 0) & (probs <= 1))


def test_metadata_travels_with_the_version(trained):
    meta = registry.read_metadata(trained.version.path)
    assert meta["schema_fingerprint"] == TRIPS.fingerprint()
    assert meta["use_case"] == "taxi" and trained.version.use_case == "taxi"
    assert meta["threshold_rule"] == "maximises F1 on the evaluation split"
    # conftest.py trains with --epochs=2, over the use case's 8; the rest of the settings are the use case's.
    assert meta["epochs"] == 2 and meta["batch_size"] == USE_CASE.training.batch_size
    assert set(meta["metrics"]) >= {"auc", "accuracy", "log_loss"}
    assert 0.5 < meta["metrics"]["auc"] <= 1 and 0 < meta["threshold"] < 1
    assert meta["training_data_range"] == {"start": "2013-01-01T00:30:00+00:00", "end": "2016-12-30T16:45:00+00:00"}
    assert meta["training_records"] + meta["eval_records"] == 15002
    assert os.path.exists(os.path.join(trained.version.path, "saved_model.pb"))


def _copy_version(trained, root, version, fingerprint=None, complete=True, use_case="taxi"):
    """A copy of the trained version; `use_case` None: as exported before versions named their use case."""
    target = os.path.join(root, "taxi_tipper", str(version))
    shutil.copytree(trained.version.path, target)
    meta = registry.read_metadata(target)
    meta["version"] = version
    if fingerprint:
        meta["schema_fingerprint"] = fingerprint
    meta.pop(registry.USE_CASE_KEY)
    if use_case is not None:
        meta[registry.USE_CASE_KEY] = use_case
    os.remove(os.path.join(target, registry.METADATA_FILE))
    if complete:
        registry.write_metadata(target, meta)
    return target


def test_version_resolution(trained, tmp_path):
    root = str(tmp_path)
    with pytest.raises(ModelVersionError, match="no exported versions"):
        registry.resolve(root, "taxi_tipper", "latest", USE_CASE)
    _copy_version(trained, root, 1)
    _copy_version(trained, root, 3)
    _copy_version(trained, root, 7, complete=False)  # an export still being written
    assert registry.list_versions(root, "taxi_tipper") == [1, 3]
    assert registry.resolve(root, "taxi_tipper", "latest", USE_CASE).version == 3
    assert registry.resolve(root, "taxi_tipper", "1", USE_CASE).version == 1
    assert registry.next_version(root, "taxi_tipper") == 4
    with pytest.raises(ModelVersionError, match="no complete version 7"):
        registry.resolve(root, "taxi_tipper", 7, USE_CASE)
    with pytest.raises(ModelVersionError, match="'latest' or an integer"):
        registry.resolve(root, "taxi_tipper", "newest", USE_CASE)


def test_version_for_another_schema_is_refused(trained, tmp_path):
    _copy_version(trained, str(tmp_path), 2, fingerprint="0" * 64)
    with pytest.raises(ModelVersionError, match="trained on another input schema"):
        registry.resolve(str(tmp_path), "taxi_tipper", "latest", USE_CASE)


def test_a_version_for_another_use_case_is_refused_naming_both(trained, tmp_path):
    _copy_version(trained, str(tmp_path), 3, use_case="loans")
    for version in ("latest", 3):
        with pytest.raises(OtherUseCaseError) as refused:
            registry.resolve(str(tmp_path), "taxi_tipper", version, USE_CASE)
        assert str(refused.value) == (
            "model 'taxi_tipper' version 3 was trained for use case loans, not taxi: "
            "--use_case loans, or another --model_name"
        )
        assert isinstance(refused.value, ModelVersionError)  # a configuration error: exit code 2
    # On the same input schema too: a model of one use case never scores another's records.
    same_input = dataclasses.replace(USE_CASE, name="loans")
    _copy_version(trained, str(tmp_path / "other"), 1)
    with pytest.raises(OtherUseCaseError, match="version 1 was trained for use case taxi, not loans"):
        registry.resolve(str(tmp_path / "other"), "taxi_tipper", "latest", same_input)


def test_a_version_from_before_use_cases_is_judged_by_its_schema(trained, tmp_path):
    _copy_version(trained, str(tmp_path), 1, use_case=None)
    model = registry.resolve(str(tmp_path), "taxi_tipper", "latest", USE_CASE)
    assert model.version == 1 and model.use_case is None
    _copy_version(trained, str(tmp_path), 2, fingerprint="0" * 64, use_case=None)
    with pytest.raises(ModelVersionError, match="version 2 was trained on another input schema"):
        registry.resolve(str(tmp_path), "taxi_tipper", "latest", USE_CASE)


# Eight evaluation records, one threshold candidate each. Predicted positive at t (probability >= t):
#   t          0.1   0.2   0.3   0.4   0.6   0.7   0.8   0.9
#   precision  4/8   4/7   4/6   3/5   3/4   2/3   1/2   1/1
#   recall     4/4   4/4   4/4   3/4   3/4   2/4   1/4   1/4
#   F1         .667  .727  .800  .667  .750  .571  .333  .400
#   FP         4     3     2     2     1     1     1     0
#   FN         0     0     0     1     1     2     3     3
LABELS = np.array([0, 0, 1, 0, 1, 1, 0, 1], np.float32)
PROBS = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9], np.float32)


def f32(value: float) -> float:
    """A threshold as training stores it: the float32 candidate, widened."""
    return float(np.float32(value))


@pytest.mark.parametrize(
    "rule, target, expected",
    [
        (ThresholdRule.MAX_F1, None, 0.3),
        (ThresholdRule.PRECISION, 0.6, 0.3),  # the lowest: 0.4's 3/5 reaches it too
        (ThresholdRule.PRECISION, 0.7, 0.6),  # not monotone: 0.7's 2/3 falls short again
        (ThresholdRule.PRECISION, 1.0, 0.9),
        (ThresholdRule.RECALL, 1.0, 0.3),  # the highest with every positive
        (ThresholdRule.RECALL, 0.75, 0.6),
        (ThresholdRule.RECALL, 0.25, 0.9),
        (ThresholdRule.COST, 1, 0.3),  # FP + FN: 2 at 0.3 and at 0.6, the lowest taken
        (ThresholdRule.COST, 2, 0.6),  # 2 FP + FN: 3 at 0.6 and at 0.9
        (ThresholdRule.COST, 3, 0.9),  # 3 FP + FN: 3 at 0.9 alone
        (ThresholdRule.COST, 0.5, 0.3),
    ],
)
def test_threshold_rules_on_known_probabilities(rule, target, expected):
    assert choose_threshold(LABELS, PROBS, rule, target) == f32(expected)


def _max_f1_before_rules(labels, probs):
    """choose_threshold as it was before threshold rules, a pass per candidate: MAX_F1 must still agree."""
    best, best_f1 = 0.5, -1.0
    for t in np.unique(np.round(probs, 3)):
        predicted = probs >= t
        tp = float(np.sum(predicted & (labels == 1)))
        precision = tp / max(predicted.sum(), 1)
        recall = tp / max((labels == 1).sum(), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_max_f1_chooses_as_before(seed):
    rng = np.random.default_rng(seed)
    probs = rng.random(5000).astype(np.float32)
    labels = (rng.random(5000) < probs**2).astype(np.float32)
    assert choose_threshold(labels, probs) == _max_f1_before_rules(labels, probs)
    assert choose_threshold(labels[:0], probs[:0]) == 0.5 == _max_f1_before_rules(labels[:0], probs[:0])


def test_an_unreachable_target_exports_nothing():
    with pytest.raises(ValueError, match=r"no threshold reaches precision 1.01 on the evaluation split \(at most 1"):
        choose_threshold(LABELS, PROBS, ThresholdRule.PRECISION, 1.01)
    with pytest.raises(ValueError, match=r"no threshold reaches recall 0.5 .*\(at most 0.0000\)"):
        choose_threshold(np.zeros(8, np.float32), PROBS, ThresholdRule.RECALL, 0.5)  # no positives


def _with_rule(rule: ThresholdRule, target: float | None):
    return dataclasses.replace(USE_CASE, training=TrainingSettings(threshold_rule=rule, threshold_target=target))


def test_the_rule_is_recorded_in_words_and_checked_when_declared():
    words = {
        (ThresholdRule.MAX_F1, None): "maximises F1 on the evaluation split",
        (ThresholdRule.PRECISION, 0.9): "the lowest threshold whose precision on the evaluation split reaches 0.9",
        (ThresholdRule.RECALL, 0.8): "the highest threshold whose recall on the evaluation split reaches 0.8",
        (ThresholdRule.COST, 5): "minimises 5 x false positives + false negatives on the evaluation split",
    }
    for (rule, target), said in words.items():
        assert threshold_rule_words(_with_rule(rule, target)) == said
    refused = {
        (ThresholdRule.PRECISION, None): "threshold rule precision needs a target share in \\(0, 1\\], not None",
        (ThresholdRule.RECALL, 1.5): "threshold rule recall needs a target share in \\(0, 1\\], not 1.5",
        (ThresholdRule.COST, 0): "threshold rule cost needs a positive cost ratio as its target, not 0",
        (ThresholdRule.MAX_F1, 0.5): "threshold rule max_f1 takes no target \\(given 0.5\\)",
    }
    for (rule, target), said in refused.items():
        with pytest.raises(ValueError, match=said):
            TrainingSettings(threshold_rule=rule, threshold_target=target)
    with pytest.raises(ValueError, match="class_weights are two positive weights"):
        TrainingSettings(class_weights=(1.0, 0.0))


UTC = timezone.utc


@pytest.mark.parametrize(
    "column, expected",
    [
        (pa.array([1795446000, None, 1356998400], pa.int64()), (1356998400, 1795446000)),
        (pa.array([date(2026, 11, 23), None, date(2013, 1, 1)], pa.date32()), (1356998400, 1795392000)),
        (pa.array([date(1969, 12, 31), date(1970, 1, 1)], pa.date32()), (-86400, 0)),
        (
            pa.array(
                [datetime(2026, 11, 23, 22, 15, 30, 999999, UTC), datetime(1969, 12, 31, 23, 59, 59, 500000, UTC)],
                pa.timestamp("us", tz="UTC"),
            ),
            (-1, 1795472130),  # floored, before 1970 too
        ),
        (pa.array([1795472130_123456789], pa.timestamp("ns", tz="UTC")), (1795472130, 1795472130)),
        (pa.array([1795472130_500], pa.timestamp("ms")), (1795472130, 1795472130)),
        (pa.nulls(3, pa.date32()), None),
        (pa.array([], pa.timestamp("us", tz="UTC")), None),
    ],
    ids=["int64", "date", "date-before-1970", "timestamp-us", "timestamp-ns", "timestamp-ms-naive", "null", "empty"],
)
def test_event_times_become_whole_unix_seconds(column, expected):
    got = event_time_range(column)
    assert got == expected
    assert got is None or all(type(v) is int for v in got)  # what a Beam distribution takes


def test_the_data_range_of_date_and_timestamp_event_times():
    """Two event-time columns of other types than taxi's INT64, measured as training measures them."""
    schema = InputSchema(
        "events",
        (
            Column("event_id", ColumnType.STRING, False, Role.KEY, "Key."),
            Column("day", ColumnType.DATE, True, Role.EVENT_TIME, "The day it happened."),
            Column("at", ColumnType.TIMESTAMP, False, Role.EVENT_TIME, "When it happened."),
            Column("amount", ColumnType.FLOAT64, True, Role.FEATURE, "A feature."),
            Column("outcome", ColumnType.INT64, True, Role.LABEL, "The label."),
        ),
    )
    batch = pa.RecordBatch.from_pydict(
        {
            "event_id": ["a", "b", "c"],
            "day": [date(2013, 1, 1), date(2026, 11, 23), date(2020, 2, 29)],
            "at": [datetime(2014, 5, 1, tzinfo=UTC), datetime(2026, 11, 23, 22, 15, 30, 250000, UTC), None],
            "amount": [1.0, 2.0, 3.0],
            "outcome": [0, 1, 0],
        },
        schema=pa.schema([pa.field(c.name, c.type.arrow) for c in schema.columns]),
    )
    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create([batch]) | beam.ParDo(AssignSplits(schema, 50)).with_outputs(TRAIN, EVAL)
    result = pipeline.run()
    result.wait_until_finish()
    assert training_data_range(result) == {"start": "2013-01-01T00:00:00+00:00", "end": "2026-11-23T22:15:30+00:00"}
