"""The raw-feature signature's contract, used on both sides: at export and when scoring.

A SavedModel signature takes only dense tensors, but nullable columns must reach the
`preprocessing_fn` as sparse values so that the transform graph does the filling. So each nullable
column `c` travels as two dense tensors, `c` (any value where missing) and `c__present` (bool), the
same shape Arrow gives a column (values plus a validity bitmap), and the signature rebuilds the
sparse tensor inside the graph.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from schemas import ColumnType, InputSchema

RAW_SIGNATURE = "score_raw"
TRANSFORM_SIGNATURE = "transform_raw"
EXAMPLES_SIGNATURE = "serving_default"
PROBABILITY = "probability"
PRESENT_SUFFIX = "__present"

# A BOOL feature travels as 0/1 int64, as training hands it to tf.Transform: tf.Example has no booleans.
_TF_TYPES = {
    ColumnType.STRING: tf.string,
    ColumnType.INT64: tf.int64,
    ColumnType.FLOAT64: tf.float32,
    ColumnType.BOOL: tf.int64,
}
_ARROW_INPUT_TYPES = {ColumnType.INT64: pa.int64(), ColumnType.FLOAT64: pa.float32(), ColumnType.BOOL: pa.int64()}


def input_spec(schema: InputSchema) -> dict[str, tf.TensorSpec]:
    spec = {}
    for c in schema.features:
        spec[c.name] = tf.TensorSpec([None], _TF_TYPES[c.type], name=c.name)
        if not c.required:
            spec[c.name + PRESENT_SUFFIX] = tf.TensorSpec([None], tf.bool, name=c.name + PRESENT_SUFFIX)
    return spec


def to_raw_features(inputs: dict[str, tf.Tensor], schema: InputSchema) -> dict:
    """Signature inputs -> the raw features the transform graph expects (inside the graph)."""
    features = {}
    for c in schema.features:
        values = inputs[c.name]
        if c.required:
            features[c.name] = values
            continue
        present = inputs[c.name + PRESENT_SUFFIX]
        rows = tf.where(present)  # [n, 1] int64 row indices of present values
        features[c.name] = tf.SparseTensor(
            indices=tf.concat([rows, tf.zeros_like(rows)], axis=1),
            values=tf.boolean_mask(values, present),
            dense_shape=tf.stack([tf.shape(values, out_type=tf.int64)[0], tf.constant(1, tf.int64)]),
        )
    return features


def batch_to_inputs(batch: pa.RecordBatch | pa.Table, schema: InputSchema) -> dict[str, tf.Tensor]:
    """A typed Arrow batch -> the signature's input tensors, column by column.

    Strings are dictionary-encoded first and expanded with one gather in TensorFlow, so no Python
    string object is made per record; numbers are handed over as NumPy buffers.
    """
    inputs = {}
    for c in schema.features:
        column = batch.column(c.name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if not c.required:
            inputs[c.name + PRESENT_SUFFIX] = tf.constant(column.is_valid().to_numpy(zero_copy_only=False))
        if c.type is ColumnType.STRING:
            encoded = pc.dictionary_encode(column.fill_null("") if column.null_count else column)
            words = tf.constant(np.asarray(encoded.dictionary.to_pylist(), dtype=object), tf.string)
            inputs[c.name] = tf.gather(words, encoded.indices.to_numpy(zero_copy_only=False))
        else:
            values = pc.cast(column, _ARROW_INPUT_TYPES[c.type])
            if values.null_count:
                values = values.fill_null(0)
            inputs[c.name] = tf.constant(values.to_numpy(zero_copy_only=False))
    return inputs
