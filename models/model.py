"""The platform's Keras model over a use case's transformed features: a small wide-and-deep classifier.

The default builder of every use case (`UseCase.model_builder`, "models.model:build_model"): it reads
which inputs are numbers and which are ids from the use case's declared features, so a use case brings a
model of its own only when this one does not suit. Training drives it from `pipelines.training` and
export wraps it with the transform graph in `models.export`. tf_keras (Keras 2) is used because
tf.Transform's transform layer is a tf_keras layer and both must be saved in one SavedModel.
"""

from __future__ import annotations

import tf_keras as keras

from schemas import FeatureKind, UseCase

EMBEDDING_DIM = 4
HIDDEN_UNITS = (32, 16)


def categorical_sizes(tft_output, use_case: UseCase) -> dict[str, int]:
    """Number of ids of each categorical model input: a vocabulary's is only known once tf.Transform has
    analysed the training data, so every builder gets them from here rather than from the declaration."""
    sizes = {}
    for feature in use_case.features:
        if feature.kind is FeatureKind.VOCABULARY:
            sizes[feature.transformed] = tft_output.vocabulary_size_by_name(feature.name) + feature.oov_buckets
        elif feature.kind is FeatureKind.BUCKETIZED:
            sizes[feature.transformed] = feature.buckets + 1
        elif feature.kind is FeatureKind.INTEGER_CATEGORY:
            sizes[feature.transformed] = feature.ids
    return sizes


def per_record_crossentropy(y_true, y_pred):
    """Binary cross-entropy left per record, for class weights to scale: Keras's own averages over the last
    axis, which for this model's one probability per record is the whole batch."""
    return keras.backend.binary_crossentropy(y_true, y_pred)


def build_model(use_case: UseCase, categorical: dict[str, int], learning_rate: float = 0.003) -> keras.Model:
    """Numeric inputs in their declared order and ids in name order: the layer order decides how the
    seeded initial weights fall, so the same seed trains the same model. The loss is Keras's own unless
    the use case weighs its classes (the same mean, reduced elsewhere): so an unweighted model trains to
    the same bits as before class weights existed. A builder of a use case's own that weighs classes must
    likewise leave its loss per record."""
    dense_inputs = [
        keras.Input(shape=(), name=feature.transformed, dtype="float32")
        for feature in use_case.of_kind(FeatureKind.NUMERIC)
    ]
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
        loss=per_record_crossentropy if use_case.training.class_weights else "binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    return model
