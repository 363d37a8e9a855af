"""Training's work, behind `python -m pipelines.train` (pipelines/train.py): tf.Transform analysis on
Beam, Keras training, export of a new version.

Records go through the same extract and validate steps as scoring (the label required, the key
not). tf.Transform analyses the training split once; the transform graph is exported inside the
model, so scoring applies exactly what training computed. TensorFlow, tf.Transform and tfx-bsl are
imported with this module, so the command imports it only once its options are checked.

Everything particular to a use case comes from the `UseCase` the command hands over: its input, its
preprocessing and model builder, its label, its training settings (epochs, batch size, class weights,
how the decision threshold is chosen), so the same code trains any use case.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_metadata.proto.v0 import statistics_pb2
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

from models import export, quiet
from models import model as model_lib
from models.registry import ModelVersion
from pipelines import metrics, validate
from pipelines.monitoring import statistics
from pipelines.monitoring.datasets import EVAL_SCORES, TRAINING
from pipelines.options import DataOptions, TrainingOptions
from pipelines.sources import InputNotFoundError, NightInput, ReadSettings, Source, open_source
from pipelines.staged import WriteParquetFiles
from schemas import ColumnType, InputSchema, Role, ThresholdRule, UseCase

# A BOOL column (a yes/no label) travels as 0/1: tf.Example and tf.Transform have no booleans.
_TFXIO_TYPES = {
    ColumnType.STRING: pa.large_binary(),
    ColumnType.INT64: pa.int64(),
    ColumnType.FLOAT64: pa.float32(),
    ColumnType.BOOL: pa.int64(),
}
TRAIN, EVAL = "train", "eval"
_TICKS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def tensor_adapter_config(schema: InputSchema) -> tensor_adapter.TensorAdapterConfig:
    """How tf.Transform reads our typed batches: each model column as a 0-or-1 element list."""
    schema_proto = schema_utils.schema_from_feature_spec(schema.raw_feature_spec())
    arrow_schema = pa.schema([pa.field(c.name, pa.large_list(_TFXIO_TYPES[c.type])) for c in schema.model_columns])
    return tensor_adapter.TensorAdapterConfig(
        arrow_schema, tensor_representation_util.InferTensorRepresentationsFromMixedSchema(schema_proto)
    )


def to_tfxio_batch(batch: pa.RecordBatch, schema: InputSchema) -> pa.RecordBatch:
    """Typed batch -> tf.Transform's list-column layout (null -> empty list), column at a time."""
    arrays = []
    for c in schema.model_columns:
        column = batch.column(c.name)
        present = column.is_valid()
        offsets = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(pc.cast(present, pa.int64()))])
        values = column.filter(present).cast(_TFXIO_TYPES[c.type])
        arrays.append(pa.LargeListArray.from_arrays(offsets, values))
    return pa.RecordBatch.from_arrays(arrays, schema=tensor_adapter_config(schema).arrow_schema)


def split_of(batch: pa.RecordBatch, eval_percent: int, columns: list[str]) -> np.ndarray:
    """Deterministic train/eval assignment from a hash of each record's values."""
    import pandas as pd

    hashes = pd.util.hash_pandas_object(batch.select(columns).to_pandas(), index=False).to_numpy()
    return (hashes % 100) < eval_percent


def unix_seconds(value: pa.Scalar) -> int:
    """An event time as whole unix seconds (floored): a Beam distribution takes integers, and `transform`
    reads them back as dates. INT64 event times are unix seconds already; DATE and TIMESTAMP are counted
    from their stored days and ticks, whatever the unit, without a Python datetime per value."""
    kind = value.type
    if pa.types.is_timestamp(kind):
        return value.value // _TICKS_PER_SECOND[kind.unit]
    if pa.types.is_date32(kind):
        return value.value * 86_400
    if pa.types.is_date64(kind):  # milliseconds
        return value.value // 1_000
    return math.floor(value.as_py())


def event_time_range(column: pa.Array) -> tuple[int, int] | None:
    """(earliest, latest) of one batch's event-time column in unix seconds; None when it holds none."""
    bounds = pc.min_max(column)
    if not bounds["min"].is_valid:
        return None
    return unix_seconds(bounds["min"]), unix_seconds(bounds["max"])


def data_range(earliest: int, latest: int) -> dict[str, str]:
    """The training data's event-time range in ISO 8601 (UTC), for people reading a version's metadata."""
    return {
        "start": datetime.fromtimestamp(earliest, timezone.utc).isoformat(),
        "end": datetime.fromtimestamp(latest, timezone.utc).isoformat(),
    }


class AssignSplits(beam.DoFn):
    """Typed batches -> each record to the train or the eval split, in tf.Transform's layout."""

    def __init__(self, schema: InputSchema, eval_percent: int):
        self._schema = schema
        self._eval_percent = eval_percent
        self._event_time = schema.with_role(Role.EVENT_TIME)
        self._time_range = Metrics.distribution(*metrics.EVENT_TIME)

    def process(self, batch: pa.RecordBatch):
        for column in self._event_time:
            bounds = event_time_range(batch.column(column.name))
            if bounds is not None:
                self._time_range.update(bounds[0])
                self._time_range.update(bounds[1])
        is_eval = split_of(batch, self._eval_percent, [c.name for c in self._schema.model_columns])
        converted = to_tfxio_batch(batch, self._schema)
        yield beam.pvalue.TaggedOutput(EVAL, converted.filter(pa.array(is_eval)))
        yield beam.pvalue.TaggedOutput(TRAIN, converted.filter(pa.array(~is_eval)))


def build_pipeline(
    pipeline: beam.Pipeline,
    source: Source,
    nights: list[NightInput],
    opts: TrainingOptions,
    use_case: UseCase,
    transform_dir: str,
    data_dir: str,
) -> None:
    """Extract -> validate -> split -> analyse (train split) -> transform both splits -> Parquet; the train
    split's feature statistics (the version's drift baseline) beside the data."""
    schema = source.schema
    config = tensor_adapter_config(schema)
    data = pipeline.options.view_as(DataOptions)
    read = pipeline | "ReadRecords" >> source.read(nights)
    checked = read.batches | "Validate" >> validate.ValidateRecords(schema, data.unknown_columns)
    rejected = metrics.TRAINING_REJECTED.counter()
    _ = (
        (checked.rejected, read.rejected)
        | "AllRejected" >> beam.Flatten()
        | "CountRejected" >> beam.Map(lambda batch: rejected.inc(pc.sum(batch.column("records")).as_py() or 0))
    )
    splits = checked.valid | "Split" >> beam.ParDo(AssignSplits(schema, opts.eval_percent)).with_outputs(TRAIN, EVAL)
    _ = (
        splits[TRAIN]
        | "TrainingStatistics"
        >> beam.CombineGlobally(statistics.ComputeStatistics(TRAINING, statistics.feature_kinds(use_case)))
        | "WriteTrainingStatistics" >> beam.Map(write_training_statistics, data_dir)
    )
    preprocessing_fn = use_case.preprocessing_fn()
    with tft_beam.Context(temp_dir=os.path.join(transform_dir, "tmp"), force_tf_compat_v1=False):
        transform_fn = (splits[TRAIN], config) | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_dir)
        for name in (TRAIN, EVAL):
            transformed, _ = (
                (splits[name], config),
                transform_fn,
            ) | f"Transform{name.title()}" >> tft_beam.TransformDataset(output_record_batches=True)
            _ = (
                transformed
                | f"Key{name.title()}" >> beam.Map(lambda batch, split: (split, batch[0]), name)  # less passthrough
                | f"Write{name.title()}" >> beam.ParDo(WriteParquetFiles({name: os.path.join(data_dir, name)}, name))
            )


def write_training_statistics(dataset, data_dir: str) -> None:
    statistics.write_statistics(
        FileSystems.join(data_dir, statistics.BASELINE_FILE), statistics.statistics_list(dataset)
    )


def training_nights(pattern: str, start: str | None, end: str | None, schema: InputSchema, data: DataOptions):
    """(the source, what to read of it): the whole input for a fixed path, or each date's in [start, end]
    for a pattern with {date} or a BigQuery input. Dates without data are skipped."""
    source = open_source(pattern, schema, ReadSettings.from_options(data))
    if not source.dated:
        if start or end:
            raise ValueError("--start_date/--end_date need a {date} in --input, or a BigQuery input")
        return source, [source.plan_night(None)]
    if not (start and end):
        raise ValueError("--input is per date: give --start_date and --end_date")
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    if last < first:
        raise ValueError(f"--end_date {end} is before --start_date {start}")
    nights = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        try:
            nights.append(source.plan_night(day))
        except InputNotFoundError:
            logging.warning("no training input for %s; skipping that date", day)
    if not nights:
        raise InputNotFoundError(f"no training input for any date from {start} to {end}: {pattern}")
    return source, source.distinct(nights)


def load_split(directory: str, label: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    table = pq.read_table(directory)
    arrays = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if (
            pa.types.is_list(column.type)
            or pa.types.is_large_list(column.type)
            or pa.types.is_fixed_size_list(column.type)
        ):
            column = column.flatten()
        arrays[name] = column.to_numpy(zero_copy_only=False)
    labels = arrays.pop(label).astype(np.float32)
    return arrays, labels


def _counts(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(candidate thresholds, true positives and predicted positives at each, positives): the candidates
    are the evaluation probabilities to 3 places; a record is predicted positive at `t` when its
    probability >= t. Counted from sorted probabilities rather than a pass over the split per candidate."""
    thresholds = np.unique(np.round(probs, 3))
    everything, positives = np.sort(probs), np.sort(probs[labels == 1])
    predicted = everything.size - np.searchsorted(everything, thresholds, side="left")
    true_positives = positives.size - np.searchsorted(positives, thresholds, side="left")
    return thresholds, true_positives, predicted, positives.size


def choose_threshold(
    labels: np.ndarray, probs: np.ndarray, rule: ThresholdRule = ThresholdRule.MAX_F1, target: float | None = None
) -> float:
    """The decision threshold by `rule` on the evaluation split (ThresholdRule says each); ties go to the
    lowest threshold. ValueError where no threshold reaches a PRECISION or RECALL target: a version that
    does not meet what its use case asks of it is not exported."""
    if rule is not ThresholdRule.MAX_F1 and target is None:
        raise ValueError(f"threshold rule {rule.value} needs a target")
    thresholds, tp, predicted, positives = _counts(labels, probs)
    precision = tp / np.maximum(predicted, 1)
    recall = tp / max(positives, 1)
    if rule is ThresholdRule.MAX_F1:
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return float(thresholds[np.argmax(f1)]) if thresholds.size else 0.5
    if not thresholds.size:
        raise ValueError(f"the evaluation split is empty: threshold rule {rule.value} has nothing to choose from")
    if rule is ThresholdRule.COST:
        return float(thresholds[np.argmin(target * (predicted - tp) + (positives - tp))])
    reached = (precision if rule is ThresholdRule.PRECISION else recall) >= target
    if not reached.any():
        best = float((precision if rule is ThresholdRule.PRECISION else recall).max(initial=0.0))
        raise ValueError(
            f"no threshold reaches {rule.value} {target:g} on the evaluation split (at most {best:.4f}): "
            "lower the use case's threshold_target, or train on more data"
        )
    chosen = thresholds[reached]
    return float(chosen[0] if rule is ThresholdRule.PRECISION else chosen[-1])


def threshold_rule_words(use_case: UseCase) -> str:
    """The use case's threshold rule in words, as the version's metadata records it (TrainingSettings
    refused a rule without a usable target when the use case was declared)."""
    rule, target = use_case.training.threshold_rule, use_case.training.threshold_target
    if rule is ThresholdRule.MAX_F1:
        return "maximises F1 on the evaluation split"
    if rule is ThresholdRule.COST:
        return f"minimises {target:g} x false positives + false negatives on the evaluation split"
    if rule is ThresholdRule.PRECISION:
        return f"the lowest threshold whose precision on the evaluation split reaches {target:g}"
    return f"the highest threshold whose recall on the evaluation split reaches {target:g}"


def evaluate(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    auc = tf.keras.metrics.AUC(num_thresholds=1000)
    auc.update_state(labels, probs)
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    log_loss = float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))
    return {
        "auc": round(float(auc.result().numpy()), 6),
        "accuracy": round(float(np.mean((probs >= threshold) == (labels == 1))), 6),
        "log_loss": round(log_loss, 6),
        "positive_rate": round(float(labels.mean()), 6),
    }


@dataclass
class TrainingResult:
    version: ModelVersion
    metrics: dict[str, float]
    transform_dir: str  # tf.Transform's analysis output, kept for inspection and skew checks


def train(pipeline_options: PipelineOptions, use_case: UseCase) -> TrainingResult:
    """Train and export a version of `use_case` from parsed options (`pipelines.train.run` parses them and
    loads the use case)."""
    data = pipeline_options.view_as(DataOptions)
    opts = pipeline_options.view_as(TrainingOptions)
    rule = threshold_rule_words(use_case)
    training_input = data.input_or(use_case.training_input, use_case.name)
    FileSystems.set_options(pipeline_options)
    schema = use_case.input.for_training(use_case.missing_label_is_outcome)
    source, nights = training_nights(training_input, data.start_date, data.end_date, schema, data)
    os.makedirs(opts.work_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="run-", dir=opts.work_dir)
    transform_dir, data_dir = os.path.join(work, "transform"), os.path.join(work, "data")
    rejected, time_range = transform(pipeline_options, source, nights, use_case, transform_dir, data_dir)
    model, fitted = fit(opts, use_case, transform_dir, data_dir)
    settings = use_case.training
    metadata = {
        "created_at": datetime.now(timezone.utc).isoformat(),
        "metrics": fitted.metrics,
        "threshold": fitted.threshold,
        "threshold_rule": rule,
        "training_input": training_input,
        "training_data_range": time_range,
        "training_records": fitted.training_records,
        "eval_records": fitted.eval_records,
        "rejected_records": rejected,
        "epochs": fitted.epochs,
        "batch_size": settings.batch_size,
        "class_weights": list(settings.class_weights) if settings.class_weights else None,
        "seed": opts.seed,
    }
    name = data.model_name_or(use_case.model_name)
    baseline = fitted.baseline.SerializeToString()
    version = export.export_version(model, transform_dir, data.model_root, name, use_case, metadata, baseline)
    said = {"model": version.name, "version": version.version, "path": version.path}
    print(json.dumps({**said, "threshold": fitted.threshold, "metrics": fitted.metrics}, indent=2))
    return TrainingResult(version, fitted.metrics, transform_dir)


def transform(
    options: PipelineOptions,
    source: Source,
    nights: list[NightInput],
    use_case: UseCase,
    transform_dir: str,
    data_dir: str,
) -> tuple[int, dict[str, str]]:
    """The Beam pipeline (`build_pipeline`), run to its end: (records rejected, the data's event-time range)."""
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, source, nights, options.view_as(TrainingOptions), use_case, transform_dir, data_dir)
    result = pipeline.run()
    result.wait_until_finish()
    queried = result.metrics().query(MetricsFilter())["counters"]
    counters = {f"{m.key.metric.namespace}/{m.key.metric.name}": m.committed for m in queried}
    return int(counters.get(metrics.TRAINING_REJECTED.key, 0)), training_data_range(result)


def training_data_range(result) -> dict[str, str]:
    """The event-time range AssignSplits measured, from a finished pipeline's metrics; {} where the records
    held no event time (none declared, or every one null), rather than a range nothing supports."""
    time_range = result.metrics().query(MetricsFilter().with_name(metrics.EVENT_TIME.name))["distributions"]
    if not time_range or time_range[0].committed is None or not time_range[0].committed.count:
        return {}
    dist = time_range[0].committed
    return data_range(dist.min, dist.max)


@dataclass
class Fitted:
    """What training learnt beside the model's weights."""

    threshold: float
    metrics: dict[str, float]
    baseline: statistics_pb2.DatasetFeatureStatisticsList  # the version's drift baseline
    training_records: int
    eval_records: int
    epochs: int


def fit(opts: TrainingOptions, use_case: UseCase, transform_dir: str, data_dir: str):
    """Keras training on the transformed train split, the threshold and metrics on the eval split. --epochs
    overrides the use case's epochs (a quick test run); the rest of its training settings are its own."""
    settings = use_case.training
    epochs = opts.epochs if opts.epochs is not None else settings.epochs
    weights = dict(enumerate(settings.class_weights)) if settings.class_weights else None
    tf.keras.utils.set_random_seed(opts.seed)
    tf.config.experimental.enable_op_determinism()
    train_x, train_y = load_split(os.path.join(data_dir, TRAIN), use_case.label)
    eval_x, eval_y = load_split(os.path.join(data_dir, EVAL), use_case.label)
    from tensorflow_transform import TFTransformOutput

    categorical = model_lib.categorical_sizes(TFTransformOutput(transform_dir), use_case)
    model = use_case.build_model()(use_case, categorical)
    with quiet.muffled():
        model.fit(
            train_x,
            train_y,
            batch_size=settings.batch_size,
            epochs=epochs,
            class_weight=weights,
            shuffle=True,
            verbose=0,
        )
    eval_probs = np.ravel(model.predict(eval_x, batch_size=4096, verbose=0))
    threshold = choose_threshold(eval_y, eval_probs, settings.threshold_rule, settings.threshold_target)
    # The drift baseline: the train split's features (from the pipeline) and the eval split's scores.
    baseline = statistics.read_statistics(FileSystems.join(data_dir, statistics.BASELINE_FILE))
    baseline.datasets.append(statistics.score_statistics(EVAL_SCORES, eval_probs, threshold))
    measured = evaluate(eval_y, eval_probs, threshold)
    return model, Fitted(threshold, measured, baseline, int(len(train_y)), int(len(eval_y)), epochs)
