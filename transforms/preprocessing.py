"""The platform's preprocessing: each model input made from its raw column by its declared kind, inside
the tf.Transform graph (analysed once over the training data, then shipped inside the model).

A use case's `preprocessing_fn` (its `preprocessing`, e.g. `transforms/taxi.py`) calls
`transform_features` for its declared features and adds its label (and any feature of its own). Missing
values arrive as sparse (absent) values, because the raw feature spec declares nullable columns
`VarLenFeature`, and are filled here, so filling is part of the exported graph and cannot drift
between training and scoring.
"""

import tensorflow as tf
import tensorflow_transform as tft

from schemas.use_case import FeatureKind, UseCase


def fill_in_missing(x: tf.Tensor | tf.SparseTensor, default=None) -> tf.Tensor:
    """Densify a [batch, 1] sparse column to [batch], missing values taking `default`."""
    if not isinstance(x, tf.SparseTensor):
        return x
    if default is None:
        default = "" if x.dtype == tf.string else tf.zeros([], x.dtype)
    dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default)
    return tf.squeeze(dense, axis=1)


def _as_text(x: tf.Tensor | tf.SparseTensor) -> tf.Tensor | tf.SparseTensor:
    """Ids (census tracts, say) as the strings a vocabulary holds, before missing ones are filled in."""
    if x.dtype == tf.string:
        return x
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
    return tf.strings.as_string(x)


def transform_features(inputs: dict, use_case: UseCase) -> dict:
    """Every declared feature of one column (not a derived one: its use case makes those), by kind."""
    outputs = {}
    for feature in use_case.features:
        if feature.sources:
            continue
        value = fill_in_missing(inputs[feature.name])
        if feature.kind is FeatureKind.NUMERIC:
            outputs[feature.transformed] = tft.scale_to_z_score(tf.cast(value, tf.float32))
        elif feature.kind is FeatureKind.BUCKETIZED:
            outputs[feature.transformed] = tft.bucketize(tf.cast(value, tf.float32), feature.buckets)
        elif feature.kind is FeatureKind.VOCABULARY:
            value = fill_in_missing(_as_text(inputs[feature.name]))  # an id missing is "", a real 0 is "0"
            outputs[feature.transformed] = tft.compute_and_apply_vocabulary(
                value, top_k=feature.vocabulary_size, num_oov_buckets=feature.oov_buckets, vocab_filename=feature.name
            )
        else:  # INTEGER_CATEGORY: out-of-range ids map to 0
            in_range = tf.logical_and(value >= 0, value < feature.ids)
            outputs[feature.transformed] = tf.where(in_range, value, tf.zeros_like(value))
    return outputs
