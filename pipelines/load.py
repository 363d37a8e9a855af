"""Load: stage scored and rejected records as files, then publish the date in one step.

Publishing runs inside the pipeline, after every staged file exists (its inputs are side inputs,
which a runner materialises first), so the same graph publishes on DirectRunner and on Dataflow.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipelines.arguments import REPORT_DAYS
from pipelines.batches import STAGED_PER_RECORD, STAGED_PREDICTIONS_LAYOUT
from pipelines.monitoring import drift, report
from pipelines.observe import add_seconds, stage_timer
from pipelines.stage import WriteNightFiles, delete_tree, run_folder
from pipelines.warehouses import GateRefused, RunRecord, StagedResults, Warehouse
from pipelines.warehouses.deadline import Deadline
from schemas import SCORING_ERRORS

REPORTS_WRITTEN = "monitoring/reports_written"  # the counter, as the run summary reads it
REPORT_WAIT_SECONDS = 120.0


class AddRunColumns:
    """Adds the run-level columns (date, run id, time) to a batch, in the table's column order."""

    def __init__(self, table_schema: pa.Schema, run: RunRecord, time_field: str):
        self._schema = table_schema
        self._constants = {"score_date": run.score_date, "run_id": run.run_id, time_field: run.started_at}

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = batch.num_rows
        columns = []
        for f in self._schema:
            if f.name in self._constants:
                columns.append(pa.repeat(pa.scalar(self._constants[f.name], f.type), n))
            else:
                columns.append(batch.column(f.name))
        return pa.RecordBatch.from_arrays(columns, schema=self._schema)


@dataclass(frozen=True)
class Monitoring:
    """What drift is measured against: the model version's training statistics (serialized; None for
    a version exported before baselines) and per-feature thresholds (schemas/); where the night's
    report goes (None: no report)."""

    training: bytes | None
    thresholds: dict[str, dict[str, float]]
    not_flagged: dict[str, str]
    report_dir: str | None = None


@dataclass(frozen=True)
class Nights:
    """The nights one job scores, each its own run (in date order), and the night each input source
    belongs to. Batches never mix sources, so a batch's night is its first record's source's night.
    Nights are keyed by their ISO date: a string keeps Beam's grouping deterministic."""

    runs: tuple[RunRecord, ...]
    sources: Mapping[str, str] = field(default_factory=dict)  # source -> ISO date; unused for one night

    def __post_init__(self) -> None:
        dates = [run.score_date for run in self.runs]
        if not dates or dates != sorted(set(dates)):
            raise ValueError(f"a job's nights must be distinct and in date order: {dates}")

    @property
    def keys(self) -> list[str]:
        return [run.score_date.isoformat() for run in self.runs]

    def of(self, source: str) -> str:
        if len(self.runs) == 1:
            return self.keys[0]
        return self.sources[source]

    def keyed(self, batch: pa.RecordBatch) -> tuple[str, pa.RecordBatch]:
        """(night, batch), from the batch's `source` column."""
        if len(self.runs) == 1 or not batch.num_rows:
            return self.keys[0], batch
        return self.of(batch.column("source")[0].as_py()), batch


class PublishNights(beam.DoFn):
    """Publishes each night of the job in date order, each through its own gates: a refused night is
    refused alone, and the next night's gates and previous-night drift see the nights before it as a
    run of their own would have. Emits each published night's counts."""

    def __init__(
        self,
        warehouse: Warehouse,
        nights: Nights,
        staging_dir: str,
        fail_job_on_refusal: bool,
        monitoring: Monitoring,
        publish_timeout: float,
    ):
        self._warehouse = warehouse
        self._nights = nights
        self._staging_dir = staging_dir
        self._fail_job_on_refusal = fail_job_on_refusal
        self._monitoring = monitoring
        self._publish_timeout = publish_timeout
        self._published = Metrics.counter("load", "rows_published")
        self._reports = Metrics.counter(*REPORTS_WRITTEN.split("/"))

    def measure(self, run: RunRecord, night: statistics_pb2.DatasetFeatureStatisticsList, staging: str) -> dict:
        """The night's drift against training and the last published night, staged as a Parquet file."""
        training = self._monitoring.training
        baseline = statistics_pb2.DatasetFeatureStatisticsList.FromString(training) if training else None
        previous = self._warehouse.previous_statistics(run.score_date)
        metrics = drift.night_drift(
            night,
            baseline,
            statistics_pb2.DatasetFeatureStatisticsList.FromString(base64.b64decode(previous)) if previous else None,
            self._monitoring.thresholds,
            self._monitoring.not_flagged,
        )
        path = FileSystems.join(staging, "drift", f"drift-{uuid.uuid4().hex}.parquet")
        with FileSystems.create(path) as f:
            pq.write_table(drift.rows(metrics, run.score_date, run.run_id), f)
        # Kept with the run: the night's statistics (the next night's previous_night baseline) and the
        # training baseline's, so that the night's report is drawn from the warehouse alone.
        kept = statistics_pb2.DatasetFeatureStatisticsList(
            datasets=[*night.datasets, *(baseline.datasets if baseline else [])]
        )
        return {
            "drift_files": [(path, len(metrics))],
            "drift_flagged": drift.flagged_features(metrics),
            "statistics": base64.b64encode(kept.SerializeToString()).decode("ascii"),
        }

    def write_report(self, run: RunRecord) -> None:
        """The night's report, published or refused. The night's outcome is settled by now: a report that
        cannot be written is a warning, never a failed run."""
        if not self._monitoring.report_dir:
            return
        try:
            # The night is settled: a silent warehouse holds it up a minute or two for its report, no more.
            with self._warehouse.within(Deadline(min(self._publish_timeout, REPORT_WAIT_SECONDS))):
                night = self._warehouse.night_report(run.score_date, REPORT_DAYS, run.run_id)
            path = report.write_report(night, self._monitoring.report_dir)
        except Exception as e:
            logging.warning("run %s: its report was not written: %s: %s", run.run_id, type(e).__name__, e)
            return
        self._reports.inc()
        logging.info("run %s: report written to %s", run.run_id, path)

    def process(self, _, prediction_files, error_files, input_counts, valid_counts, night_statistics):
        refused = []
        for run in self._nights.runs:
            night = run.score_date.isoformat()
            staged = StagedResults(
                sorted((path, rows) for key, path, rows in prediction_files if key == night),
                sorted((path, rows) for key, path, rows in error_files if key == night),
                {source: n for source, n in input_counts.items() if self._nights.of(source) == night},
                {source: n for source, n in valid_counts.items() if self._nights.of(source) == night},
            )
            # No statistics with --monitoring off: no drift measured and none kept.
            datasets = [dataset for key, dataset in night_statistics if key == night]
            outcome = self._publish(run, staged, datasets)
            if isinstance(outcome, GateRefused):
                refused.append(f"{night}: {outcome}")
            else:
                yield outcome
        if refused and self._fail_job_on_refusal:  # a remote job: its state is what Airflow and alerting see
            others = " (the job's other nights are published)" if len(self._nights.runs) > 1 else ""
            raise GateRefused("; ".join(refused) + others)

    def _publish(self, run: RunRecord, staged: StagedResults, datasets: list) -> dict | GateRefused:
        """One night, as a run of its own would publish it: its counts, or the refusal. Every warehouse
        call, from reading the previous night's statistics to the commit, is within the night's
        --publish_timeout."""
        staging = run_folder(self._staging_dir, run.run_id)
        t0 = time.perf_counter()
        try:
            with self._warehouse.within(Deadline(self._publish_timeout)):
                if datasets:
                    night = statistics_pb2.DatasetFeatureStatisticsList(datasets=datasets)
                    staged = dataclasses.replace(staged, **self.measure(run, night, staging))
                counts = self._warehouse.publish_night(run, staged)
        except GateRefused as refusal:
            add_seconds(stage_timer("publish"), time.perf_counter() - t0)
            delete_tree(staging)  # its rows are in the refused tables now
            self.write_report(run)
            return refusal
        self._published.inc(counts["prediction_rows"])
        add_seconds(stage_timer("publish"), time.perf_counter() - t0)
        # Published rows are copies. The night is published: failing now would only make a retry or an
        # alert say otherwise. (Killed before this, the files go with the next run's sweep.)
        try:
            delete_tree(staging)
        except Exception as e:
            logging.warning("run %s published; its staged files under %s stay: %s", run.run_id, staging, e)
        self.write_report(run)
        return counts


class LoadToWarehouse(beam.PTransform):
    """(scored batches, rejected batches, (source, records counted), (source, records valid), each night's
    statistics ((night, DatasetFeatureStatistics); none with --monitoring off)) -> the published nights'
    counts. Each night is staged under its own run's folder and published as its own run."""

    def __init__(
        self,
        warehouse: Warehouse,
        nights: Nights,
        staging_dir: str,
        monitoring: Monitoring,
        publish_timeout: float,
        fail_job_on_refusal: bool = True,
    ):
        super().__init__()
        self._publish_timeout = publish_timeout
        self._warehouse = warehouse
        self._nights = nights
        self._staging_dir = staging_dir
        self._monitoring = monitoring
        self._fail_job_on_refusal = fail_job_on_refusal

    def _stage(
        self, layout: pa.Schema, folder: str, time_field: str, per_record: tuple[str, ...] | None = None
    ) -> beam.ParDo:
        """(night, batch) -> Parquet files laid out as `layout`, under the night's run's staging folder.
        `per_record`: the columns holding a value per record, which a dictionary would not shrink."""
        runs = {run.score_date.isoformat(): run for run in self._nights.runs}
        return beam.ParDo(
            WriteNightFiles(
                {
                    night: FileSystems.join(run_folder(self._staging_dir, run.run_id), folder)
                    for night, run in runs.items()
                },
                folder,
                layout,
                {night: AddRunColumns(layout, run, time_field) for night, run in runs.items()},
                dictionary=None if per_record is None else [n for n in layout.names if n not in per_record],
            )
        )

    def expand(self, inputs):
        scored, rejected, counts, valid, night_statistics = inputs
        pipeline = scored.pipeline
        predictions = (
            scored
            | "PredictionsByNight" >> beam.Map(self._nights.keyed)
            | "StagePredictions"
            >> self._stage(STAGED_PREDICTIONS_LAYOUT, "predictions", "scored_at", STAGED_PER_RECORD)
        )
        errors = (
            rejected
            | "ErrorsByNight" >> beam.Map(self._nights.keyed)
            | "StageErrors" >> self._stage(SCORING_ERRORS.arrow_schema, "errors", "recorded_at")
        )
        input_counts = counts | "CountInput" >> beam.CombinePerKey(sum)
        valid_counts = valid | "CountValid" >> beam.CombinePerKey(sum)
        return (
            pipeline
            | "PublishTrigger" >> beam.Create([None])
            | "Publish"
            >> beam.ParDo(
                PublishNights(
                    self._warehouse,
                    self._nights,
                    self._staging_dir,
                    self._fail_job_on_refusal,
                    self._monitoring,
                    self._publish_timeout,
                ),
                beam.pvalue.AsList(predictions),
                beam.pvalue.AsList(errors),
                beam.pvalue.AsDict(input_counts),
                beam.pvalue.AsDict(valid_counts),
                beam.pvalue.AsList(night_statistics),
            )
        )
