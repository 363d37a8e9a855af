"""The taxi use case's preprocessing_fn (schemas/taxi.py declares the use case): its features by their
declared kinds, and its label, a tip above `TIP_SHARE` of the fare, derived from two raw columns."""

import tensorflow as tf

from schemas.taxi import TIP_SHARE, USE_CASE
from transforms.preprocessing import fill_in_missing, transform_features


def preprocessing_fn(inputs: dict) -> dict:
    outputs = transform_features(inputs, USE_CASE)
    if "tips" in inputs:  # training; tonight's trips have no tips yet
        tips = tf.cast(fill_in_missing(inputs["tips"]), tf.float32)
        fare = tf.cast(fill_in_missing(inputs["fare"]), tf.float32)
        outputs[USE_CASE.label] = tf.cast(tf.greater(tips, TIP_SHARE * fare), tf.int64)
    return outputs
