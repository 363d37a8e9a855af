"""The Keras model over transformed features: a small wide-and-deep tipper classifier.

Only the model lives here; training drives it from `pipelines.train` and export wraps it with the
transform graph in `models.export`. tf_keras (Keras 2) is used because tf.Transform's transform
layer is a tf_keras layer and both must be saved in one SavedModel.
"""

from __future__ import annotations

import tf_keras as keras

from transforms import features as F

EMBEDDING_DIM = 4
HIDDEN_UNITS = (32, 16)


def categorical_sizes(tft_output) -> dict[str, int]:
    """Number of ids of each categorical transformed feature, read from the analysis results."""
    sizes = {}
    for name in F.VOCAB_FEATURES:
        sizes[F.transformed_name(name)] = tft_output.vocabulary_size_by_name(name) + F.OOV_BUCKETS
    for name in F.BUCKET_FEATURES:
        sizes[F.transformed_name(name)] = F.BUCKET_COUNT + 1
    for name, size in F.CATEGORICAL_FEATURES:
        sizes[F.transformed_name(name)] = size
    return sizes


def build_model(categorical: dict[str, int], learning_rate: float = 0.003) -> keras.Model:
    dense_inputs = [keras.Input(shape=(), name=F.transformed_name(n), dtype="float32") for n in F.DENSE_FLOAT_FEATURES]
    cat_inputs, embedded = [], []
    for name, size in sorted(categorical.items()):
        inp = keras.Input(shape=(), name=name, dtype="int64")
        cat_inputs.append(inp)
        embedded.append(keras.layers.Embedding(size, EMBEDDING_DIM, name=f"{name}_emb")(inp))
    columns = [keras.layers.Reshape((1,))(inp) for inp in dense_inputs]
    x = keras.layers.Concatenate()(columns + embedded)
    for units in HIDDEN_UNITS:
        x = keras.layers.Dense(units, activation="relu")(x)
    output = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    output = keras.layers.Reshape((), name="squeeze")(output)
    model = keras.Model(inputs=dense_inputs + cat_inputs, outputs=output)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    return model
