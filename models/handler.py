"""Beam RunInference model handler for an exported version: Arrow batches in, Arrow batches out.

Each RunInference element is a whole typed record batch, so batching counts rows, not elements
(`element_size_fn`), and a model call sees `batch_size` records at most however the input was
cut. The model is loaded once per process and shared by its threads through RunInference's
shared-model machinery.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.ml.inference.base import ModelHandler

from models import signature
from models.registry import ModelVersion
from schemas import PREDICTIONS, InputSchema

CHAMPION = "champion"
CHALLENGER = "challenger"

# What the handler produces: the predictions table less the run-level columns the load stage adds.
RUN_LEVEL_PREDICTION_FIELDS = ("score_date", "run_id", "scored_at")
SCORED_SCHEMA = pa.schema([f for f in PREDICTIONS.arrow_schema if f.name not in RUN_LEVEL_PREDICTION_FIELDS])


def batch_rows(batch: pa.RecordBatch) -> int:
    return batch.num_rows


class ExportedModelHandler(ModelHandler[pa.RecordBatch, pa.RecordBatch, Any]):
    def __init__(self, model: ModelVersion, schema: InputSchema, batch_size: int = 65536,
                 role: str = CHAMPION):
        # BatchElements sums element sizes, so these bounds are in records, not elements.
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size, element_size_fn=batch_rows)
        self._batch_size = batch_size
        self._model = model
        self._schema = schema
        self._role = role

    def load_model(self):
        import tensorflow as tf

        return tf.saved_model.load(self._model.path)

    def run_inference(self, batch: Sequence[pa.RecordBatch], model: Any,
                      inference_args: dict | None = None) -> Iterable[pa.RecordBatch]:
        table = pa.Table.from_batches(batch) if len(batch) > 1 else batch[0]
        score = model.signatures[signature.RAW_SIGNATURE]
        # One element can exceed the batch size (a large parse block): call the model in slices.
        probabilities = np.concatenate([
            score(**signature.batch_to_inputs(table.slice(start, self._batch_size), self._schema))
            [signature.PROBABILITY].numpy()
            for start in range(0, table.num_rows, self._batch_size)
        ]) if table.num_rows else np.zeros(0, np.float32)
        scored = self._scored(table, probabilities)
        # RunInference wants one result per input element: slice the columns back apart.
        offset, results = 0, []
        for element in batch:
            results.append(scored.slice(offset, element.num_rows))
            offset += element.num_rows
        return results

    def _scored(self, table, probabilities: np.ndarray) -> pa.RecordBatch:
        n = len(probabilities)
        probs = pa.array(probabilities.astype(np.float64))
        key = table.column(self._schema.key.name)
        if isinstance(key, pa.ChunkedArray):
            key = key.combine_chunks()
        threshold = self._model.threshold
        return pa.RecordBatch.from_arrays(
            [
                key,
                probs,
                pc.greater_equal(probs, threshold),
                pa.repeat(threshold, n),  # constant columns: one value, n references
                pa.repeat(self._model.name, n),
                pa.repeat(self._model.version, n),
                pa.repeat(self._role, n),
            ],
            schema=SCORED_SCHEMA,
        )

    def get_num_bytes(self, batch: Sequence[pa.RecordBatch]) -> int:
        return sum(b.nbytes for b in batch)  # the default pickles the whole batch to measure it

    def get_metrics_namespace(self) -> str:
        return f"RunInference-{self._role}"
