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


def late(arr_delay: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """1 for an arrival LATE_MINUTES late or later, or none at all; 0 otherwise; int64 [batch]."""
    never = tf.equal(present(arr_delay), 0)
    return tf.cast(tf.logical_or(never, tf.greater_equal(fill_in_missing(arr_delay), LATE_MINUTES)), tf.int64)


def preprocessing_fn(inputs: dict) -> dict:
    outputs = transform_features(inputs, USE_CASE)
    outputs[DEPARTED.transformed] = present(inputs["dep_delay"])
    if "arr_delay" in inputs:  # training; tonight's flights have not all landed
        outputs[USE_CASE.label] = late(inputs["arr_delay"])
    return outputs
