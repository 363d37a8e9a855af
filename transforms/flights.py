"""The flights use case's preprocessing_fn (schemas/flights.py declares the use case): its features by
their declared kinds, `departed` derived from whether a departure delay is there, and its label, a late
arrival, derived from the arrival delay (missing: the flight never arrived, which counts as late)."""

import tensorflow as tf

from schemas.flights import LATE_MINUTES, USE_CASE
from transforms.preprocessing import fill_in_missing, transform_features

DEPARTED = next(f for f in USE_CASE.features if f.name == "departed")


def present(x: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """1 where a [batch, 1] nullable column has a value, 0 where it is missing, as int64 [batch]."""
    if not isinstance(x, tf.SparseTensor):
        return tf.ones_like(x, dtype=tf.int64)
    ones = tf.SparseTensor(x.indices, tf.ones_like(x.values, dtype=tf.int64), x.dense_shape)
    return fill_in_missing(ones)


def preprocessing_fn(inputs: dict) -> dict:
    outputs = transform_features(inputs, USE_CASE)
    outputs[DEPARTED.transformed] = present(inputs["dep_delay"])
    if "arr_delay" in inputs:  # training; tonight's flights have not all landed
        arrived = present(inputs["arr_delay"])
        delay = fill_in_missing(inputs["arr_delay"])
        late = tf.logical_or(tf.equal(arrived, 0), tf.greater_equal(delay, LATE_MINUTES))
        outputs[USE_CASE.label] = tf.cast(late, tf.int64)
    return outputs
