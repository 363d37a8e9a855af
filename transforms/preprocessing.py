"""The `preprocessing_fn`: analysed once over the training data, then shipped inside the model.

Only preprocessing lives here. Missing values arrive as sparse (absent) values, because the raw
feature spec in `schemas` declares nullable columns `VarLenFeature`, and are filled here, so filling
is part of the exported graph and cannot drift between training and scoring.
"""

import tensorflow as tf
import tensorflow_transform as tft

from transforms import features as F


def fill_in_missing(x: tf.Tensor | tf.SparseTensor, default=None) -> tf.Tensor:
    """Densify a [batch, 1] sparse column to [batch], missing values taking `default`."""
    if not isinstance(x, tf.SparseTensor):
        return x
    if default is None:
        default = "" if x.dtype == tf.string else tf.zeros([], x.dtype)
    dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default)
    return tf.squeeze(dense, axis=1)


def preprocessing_fn(inputs: dict) -> dict:
    outputs = {}
    for name in F.DENSE_FLOAT_FEATURES:
        value = tf.cast(fill_in_missing(inputs[name]), tf.float32)
        outputs[F.transformed_name(name)] = tft.scale_to_z_score(value)

    for name in F.BUCKET_FEATURES:
        value = tf.cast(fill_in_missing(inputs[name]), tf.float32)
        outputs[F.transformed_name(name)] = tft.bucketize(value, F.BUCKET_COUNT)

    for name in F.VOCAB_FEATURES:
        value = fill_in_missing(inputs[name])
        if value.dtype != tf.string:
            # Ids such as census tracts: a missing one (filled with 0) must not look like a real id.
            value = tf.where(tf.equal(value, 0), tf.constant(""), tf.strings.as_string(value))
        outputs[F.transformed_name(name)] = tft.compute_and_apply_vocabulary(
            value, top_k=F.VOCAB_SIZE, num_oov_buckets=F.OOV_BUCKETS, vocab_filename=name
        )

    for name, size in F.CATEGORICAL_FEATURES:
        value = fill_in_missing(inputs[name])
        in_range = tf.logical_and(value >= 0, value < size)
        outputs[F.transformed_name(name)] = tf.where(in_range, value, tf.zeros_like(value))

    if F.LABEL_SOURCE in inputs:
        tips = tf.cast(fill_in_missing(inputs[F.LABEL_SOURCE]), tf.float32)
        fare = tf.cast(fill_in_missing(inputs["fare"]), tf.float32)
        outputs[F.LABEL_KEY] = tf.cast(tf.greater(tips, F.TIP_SHARE * fare), tf.int64)
    return outputs
