"""Export a trained model as a new version: transform graph and model in one SavedModel.

Three signatures: `serving_default` takes serialized tf.Example records (what an online server
receives), `score_raw` takes raw feature columns (what batch scoring sends), and `transform_raw`
returns the transformed features, so tests can prove the exported graph matches tf.Transform's own.
The version's metadata names its use case, so that scoring with another use case's options refuses it.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
from apache_beam.io.filesystems import FileSystems

from models import registry, signature
from models.registry import ModelVersion
from schemas import UseCase


class ScoringModule(tf.Module):
    """Holds the transform layer and the Keras model so both are saved, assets included. The signatures
    take the use case's raw features only: scoring has no label, and the transformed label is dropped."""

    def __init__(self, model, tft_output: tft.TFTransformOutput, use_case: UseCase):
        super().__init__()
        self.model = model
        self.tft_layer = tft_output.transform_features_layer()
        self._label = use_case.label
        self._schema = use_case.input
        feature_names = {c.name for c in self._schema.features}
        self._example_spec = {k: v for k, v in self._schema.raw_feature_spec().items() if k in feature_names}

    def transform(self, raw_features: dict) -> dict:
        transformed = self.tft_layer(raw_features)
        return {k: v for k, v in transformed.items() if k != self._label}

    def probability(self, raw_features: dict) -> tf.Tensor:
        transformed = self.transform(raw_features)
        return self.model({name: transformed[name] for name in self.model.input_names})

    def signatures(self) -> dict:
        schema = self._schema

        @tf.function(input_signature=[signature.input_spec(schema)])
        def score_raw(inputs):
            return {signature.PROBABILITY: self.probability(signature.to_raw_features(inputs, schema))}

        @tf.function(input_signature=[signature.input_spec(schema)])
        def transform_raw(inputs):
            return self.transform(signature.to_raw_features(inputs, schema))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve_examples(examples):
            raw = tf.io.parse_example(examples, self._example_spec)
            return {signature.PROBABILITY: self.probability(raw)}

        self.score_raw, self.transform_raw, self.serve_examples = score_raw, transform_raw, serve_examples
        return {
            signature.RAW_SIGNATURE: score_raw.get_concrete_function(),
            signature.TRANSFORM_SIGNATURE: transform_raw.get_concrete_function(),
            signature.EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        }


def export_version(
    model,
    transform_dir: str,
    model_root: str,
    name: str,
    use_case: UseCase,
    metadata: dict,
    baseline_statistics: bytes | None = None,
) -> ModelVersion:
    """Save model + transform graph as the next version, with the training data's feature statistics
    (`baseline_statistics`, a serialized DatasetFeatureStatisticsList: what nights' drift is measured
    against) as `statistics.pb`; metadata, with the manifest of every file, is written last (see registry).
    The metadata records the use case's name beside its input's fingerprint: two use cases may share an
    input schema, and a model of one must not score for the other."""
    version = registry.next_version(model_root, name)
    path = FileSystems.join(model_root, name, str(version))
    schema = use_case.input
    module = ScoringModule(model, tft.TFTransformOutput(transform_dir), use_case)
    tf.saved_model.save(module, path, signatures=module.signatures())
    if baseline_statistics is not None:
        with FileSystems.create(FileSystems.join(path, registry.BASELINE_STATISTICS_FILE)) as f:
            f.write(baseline_statistics)
    metadata = {
        **metadata,
        "model_name": name,
        "version": version,
        registry.USE_CASE_KEY: use_case.name,
        "schema_fingerprint": schema.fingerprint(),
        "schema_name": schema.name,
        "signatures": {
            "raw": signature.RAW_SIGNATURE,
            "examples": signature.EXAMPLES_SIGNATURE,
            "transform": signature.TRANSFORM_SIGNATURE,
        },
        registry.MANIFEST_KEY: registry.build_manifest(path),
    }
    registry.write_metadata(path, metadata)
    return ModelVersion(name, version, path, metadata)
