"""Beam RunInference model handler for an exported version: Arrow batches in, Arrow batches out.

Each RunInference element is a whole typed record batch, so batching counts records, not elements
(`element_size_fn`), and a model call sees `batch_size` records at most however the input was cut.
RunInference loads the model once per process and shares it between the process's threads; with
`large_model` one copy serves every process on the machine. The loaded model is a `ShardedModel`:
one copy per claimed device, calls spread round robin, rows counted per device.

What it emits is the use case's predictions table less the run-level columns (`scored_schema`), built
by column name: the key column is the use case's, so no position in it can be assumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from models import quiet
from models.devices import ShardedModel
from models.registry import ModelVersion
from pipelines import metrics
from pipelines.defaults import DEFAULT_BATCH_SIZE
from schemas import CHAMPION, PROVENANCE, UseCase, predictions

# The predictions table's columns the load step adds: one value per run, known only where the run is.
RUN_LEVEL_PREDICTION_FIELDS = ("score_date", "run_id", "scored_at")
# Where each record came from and its content hash: carried through as validation made them, when it
# did, for publishing to resolve duplicate keys with.
PROVENANCE_NAMES = [f.name for f in PROVENANCE]


def scored_schema(use_case: UseCase) -> pa.Schema:
    """What the handler produces: the use case's predictions table less the run-level columns."""
    return pa.schema([f for f in predictions(use_case).arrow_schema if f.name not in RUN_LEVEL_PREDICTION_FIELDS])


def batch_rows(batch: pa.RecordBatch) -> int:
    return batch.num_rows


class ExportedModelHandler(ModelHandler[pa.RecordBatch, pa.RecordBatch, ShardedModel]):
    def __init__(
        self,
        model: ModelVersion,
        use_case: UseCase,
        *,
        batch_size: int | None = None,
        accelerator: str = "auto",
        models_per_process: int = 1,
        large_model: bool = False,
        role: str = CHAMPION,
        verbose: bool = False,
    ):
        """`use_case`: what the records are (its input, for scoring) and what a scored row holds (its key).
        `batch_size` None picks the device's default once the device kind is known (on the worker).
        `verbose`: the worker's TensorFlow and Beam log everything (models/quiet.py)."""
        self._verbose = verbose
        self._batch_size = batch_size
        self._accelerator = accelerator
        self._copies = models_per_process
        self._model = model
        self._schema = use_case.input.for_scoring()
        self._scored_schema = scored_schema(use_case)
        self._role = role
        # BatchElements sums element sizes, so these bounds are in records, not elements. Batches
        # are formed before the model (and so the device) is known: use the requested size, or the
        # CPU default, and slice further in run_inference if the device wants smaller calls.
        rows = batch_size or DEFAULT_BATCH_SIZE["cpu"]
        super().__init__(min_batch_size=rows, max_batch_size=rows, element_size_fn=batch_rows, large_model=large_model)

    def load_model(self) -> ShardedModel:
        quiet.configure(self._verbose)  # a remote worker never ran the command's main
        return ShardedModel(self._model.path, self._schema, self._accelerator, self._copies)

    def run_inference(
        self, batch: Sequence[pa.RecordBatch], model: ShardedModel, inference_args: dict | None = None
    ) -> Iterable[pa.RecordBatch]:
        if not batch:  # BatchElements flushes an empty batch when one element outweighs the batch size
            return []
        table = pa.Table.from_batches(batch) if len(batch) > 1 else batch[0]
        size = self._batch_size or DEFAULT_BATCH_SIZE[model.kind]  # the loaded model knows its device
        parts = []
        for start in range(0, table.num_rows, size):
            chunk = table.slice(start, size)
            probabilities, device, (to_tensors, in_model) = model.predict_timed(chunk)
            Metrics.counter(metrics.DEVICES, f"{self._role}@{device}").inc(chunk.num_rows)
            # Each step's own working time; pipelines/observe.py reads them back for the run summary.
            metrics.step_timer("to_tensors").inc(int(to_tensors * 1e6))
            metrics.step_timer("model").inc(int(in_model * 1e6))
            parts.append(probabilities)
        scored = self._scored(table, np.concatenate(parts) if parts else np.zeros(0, np.float32))
        # RunInference wants one result per input element: slice the columns back apart.
        offset, results = 0, []
        for element in batch:
            results.append(scored.slice(offset, element.num_rows))
            offset += element.num_rows
        return results

    def _scored(self, table, probabilities: np.ndarray) -> pa.RecordBatch:
        n = len(probabilities)
        probs = pa.array(probabilities.astype(np.float64))
        threshold = self._model.threshold
        by_name = {
            self._schema.key.name: _whole(table.column(self._schema.key.name)),
            "probability": probs,
            "label": pc.greater_equal(probs, threshold),
            "threshold": pa.repeat(threshold, n),
            "model_name": pa.repeat(self._model.name, n),
            "model_version": pa.repeat(self._model.version, n),
            "model_role": pa.repeat(self._role, n),
        }
        schema = self._scored_schema
        if PROVENANCE_NAMES[0] in table.column_names:
            by_name |= {name: _whole(table.column(name)) for name in PROVENANCE_NAMES}
            schema = pa.schema([*schema, *(table.schema.field(name) for name in PROVENANCE_NAMES)])
        return pa.RecordBatch.from_arrays([by_name[f.name] for f in schema], schema=schema)

    def get_num_bytes(self, batch: Sequence[pa.RecordBatch]) -> int:
        return sum(b.nbytes for b in batch)  # the default pickles the whole batch to measure it

    def get_metrics_namespace(self) -> str:
        return f"RunInference-{self._role}"


def _whole(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array: a record batch's columns cannot be chunked."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
