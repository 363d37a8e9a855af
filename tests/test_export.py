"""The exported model: no training/serving skew, consistent signatures, versions and metadata."""

import json
import os
import shutil

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam

import schemas
from models import registry, signature
from models.registry import ModelVersionError
from pipelines.batches import RawBatch
from pipelines.training import tensor_adapter_config, to_tfxio_batch
from pipelines.validate import SchemaValidator
from tests.conftest import SAMPLE
from tests.float32 import assert_close_probabilities
from transforms import features as F

SCHEMA = schemas.INPUT.for_training()


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
    got = model.signatures[signature.TRANSFORM_SIGNATURE](**signature.batch_to_inputs(sample_rows, schemas.INPUT))
    assert set(got) == set(expected[0]) - {F.LABEL_KEY}
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
        for column in schemas.INPUT.features:
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
    raw = model.signatures[signature.RAW_SIGNATURE](**signature.batch_to_inputs(sample_rows, schemas.INPUT))
    served = model.signatures[signature.EXAMPLES_SIGNATURE](examples=tf.constant(_examples(sample_rows)))
    assert_close_probabilities(served[signature.PROBABILITY].numpy(), raw[signature.PROBABILITY].numpy(), "signatures")
    probs = raw[signature.PROBABILITY].numpy()
    assert probs.shape == (400,) and np.all((probs >= 0) & (probs <= 1))


def test_metadata_travels_with_the_version(trained):
    meta = registry.read_metadata(trained.version.path)
    assert meta["schema_fingerprint"] == schemas.INPUT.fingerprint()
    assert set(meta["metrics"]) >= {"auc", "accuracy", "log_loss"}
    assert 0.5 < meta["metrics"]["auc"] <= 1 and 0 < meta["threshold"] < 1
    assert meta["training_data_range"] == {"start": "2013-01-01T00:30:00+00:00", "end": "2016-12-30T16:45:00+00:00"}
    assert meta["training_records"] + meta["eval_records"] == 15002
    assert os.path.exists(os.path.join(trained.version.path, "saved_model.pb"))


def _copy_version(trained, root, version, fingerprint=None, complete=True):
    target = os.path.join(root, "taxi_tipper", str(version))
    shutil.copytree(trained.version.path, target)
    meta = registry.read_metadata(target)
    meta["version"] = version
    if fingerprint:
        meta["schema_fingerprint"] = fingerprint
    os.remove(os.path.join(target, registry.METADATA_FILE))
    if complete:
        registry.write_metadata(target, meta)
    return target


def test_version_resolution(trained, tmp_path):
    root = str(tmp_path)
    with pytest.raises(ModelVersionError, match="no exported versions"):
        registry.resolve(root, "taxi_tipper", "latest", schemas.INPUT)
    _copy_version(trained, root, 1)
    _copy_version(trained, root, 3)
    _copy_version(trained, root, 7, complete=False)  # an export still being written
    assert registry.list_versions(root, "taxi_tipper") == [1, 3]
    assert registry.resolve(root, "taxi_tipper", "latest", schemas.INPUT).version == 3
    assert registry.resolve(root, "taxi_tipper", "1", schemas.INPUT).version == 1
    assert registry.next_version(root, "taxi_tipper") == 4
    with pytest.raises(ModelVersionError, match="no complete version 7"):
        registry.resolve(root, "taxi_tipper", 7, schemas.INPUT)
    with pytest.raises(ModelVersionError, match="'latest' or an integer"):
        registry.resolve(root, "taxi_tipper", "newest", schemas.INPUT)


def test_version_for_another_schema_is_refused(trained, tmp_path):
    _copy_version(trained, str(tmp_path), 2, fingerprint="0" * 64)
    with pytest.raises(ModelVersionError, match="trained on another input schema"):
        registry.resolve(str(tmp_path), "taxi_tipper", "latest", schemas.INPUT)
