"""Load: stage scored and rejected records as files, then publish the date in one step.

Publishing runs inside the pipeline, after every staged file exists (its inputs are side inputs,
which a runner materialises first), so the same graph publishes on DirectRunner and on Dataflow.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipelines.batches import STAGED_PER_RECORD, STAGED_PREDICTIONS_LAYOUT
from pipelines.monitoring import drift, report
from pipelines.observe import add_seconds, stage_timer
from pipelines.stage import WriteParquetFiles, delete_tree, run_folder
from pipelines.warehouses import GateRefused, RunRecord, StagedResults, Warehouse
from schemas import SCORING_ERRORS

REPORTS_WRITTEN = "monitoring/reports_written"  # the counter, as the run summary reads it


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


class PublishDate(beam.DoFn):
    def __init__(
        self, warehouse: Warehouse, run: RunRecord, staging: str, fail_job_on_refusal: bool, monitoring: Monitoring
    ):
        self._warehouse = warehouse
        self._run = run
        self._staging = staging
        self._fail_job_on_refusal = fail_job_on_refusal
        self._monitoring = monitoring
        self._published = Metrics.counter("load", "rows_published")
        self._reports = Metrics.counter(*REPORTS_WRITTEN.split("/"))

    def measure(self, night: statistics_pb2.DatasetFeatureStatisticsList) -> dict:
        """The night's drift against training and the last published night, staged as a Parquet file."""
        training = self._monitoring.training
        baseline = statistics_pb2.DatasetFeatureStatisticsList.FromString(training) if training else None
        previous = self._warehouse.previous_statistics(self._run.score_date)
        metrics = drift.night_drift(
            night,
            baseline,
            statistics_pb2.DatasetFeatureStatisticsList.FromString(base64.b64decode(previous)) if previous else None,
            self._monitoring.thresholds,
            self._monitoring.not_flagged,
        )
        path = FileSystems.join(self._staging, "drift", f"drift-{uuid.uuid4().hex}.parquet")
        with FileSystems.create(path) as f:
            pq.write_table(drift.rows(metrics, self._run.score_date, self._run.run_id), f)
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

    def write_report(self) -> None:
        """The night's report, published or refused. The night's outcome is settled by now: a report that
        cannot be written is a warning, never a failed run."""
        if not self._monitoring.report_dir:
            return
        try:
            night = self._warehouse.night_report(self._run.score_date, report.REPORT_DAYS, self._run.run_id)
            path = report.write_report(night, self._monitoring.report_dir)
        except Exception as e:
            logging.warning("run %s: its report was not written: %s: %s", self._run.run_id, type(e).__name__, e)
            return
        self._reports.inc()
        logging.info("run %s: report written to %s", self._run.run_id, path)

    def process(self, _, prediction_files, error_files, input_counts, valid_counts, night_statistics):
        # No statistics with --monitoring off: no drift measured and none kept.
        datasets = statistics_pb2.DatasetFeatureStatisticsList(datasets=night_statistics)
        monitored = self.measure(datasets) if night_statistics else {}
        staged = StagedResults(
            sorted(prediction_files), sorted(error_files), dict(input_counts), dict(valid_counts), **monitored
        )
        t0 = time.perf_counter()
        try:
            counts = self._warehouse.publish_night(self._run, staged, datetime.now(timezone.utc))
        except GateRefused:
            add_seconds(stage_timer("publish"), time.perf_counter() - t0)
            delete_tree(self._staging)  # its rows are in the refused tables now
            self.write_report()
            if self._fail_job_on_refusal:  # a remote job: its state is what Airflow and alerting see
                raise
            return []  # a local run: the caller reads the run's status from its row
        self._published.inc(counts["prediction_rows"])
        add_seconds(stage_timer("publish"), time.perf_counter() - t0)
        self.write_report()
        # Published rows are copies; a failed run keeps its staged files for inspection instead. The night
        # is published: failing now would only make a retry or an alert say otherwise.
        try:
            delete_tree(self._staging)
        except Exception as e:
            logging.warning("run %s published; its staged files under %s stay: %s", self._run.run_id, self._staging, e)
        return [counts]


class LoadToWarehouse(beam.PTransform):
    """(scored batches, rejected batches, (source, records counted), (source, records valid), the night's
    statistics (one DatasetFeatureStatistics per data set; none with --monitoring off)) -> the published date's
    counts."""

    def __init__(
        self,
        warehouse: Warehouse,
        run: RunRecord,
        staging_dir: str,
        monitoring: Monitoring,
        fail_job_on_refusal: bool = True,
    ):
        super().__init__()
        self._warehouse = warehouse
        self._run = run
        self._monitoring = monitoring
        self._fail_job_on_refusal = fail_job_on_refusal
        self._staging = run_folder(staging_dir, run.run_id)

    def _stage(
        self, layout: pa.Schema, folder: str, time_field: str, per_record: tuple[str, ...] | None = None
    ) -> beam.ParDo:
        """Batches -> Parquet files laid out as `layout`, under the run's staging folder. `per_record`:
        the columns holding a value per record, which a dictionary would not shrink."""
        return beam.ParDo(
            WriteParquetFiles(
                FileSystems.join(self._staging, folder),
                folder,
                layout,
                AddRunColumns(layout, self._run, time_field),
                dictionary=None if per_record is None else [n for n in layout.names if n not in per_record],
            )
        )

    def expand(self, inputs):
        scored, rejected, counts, valid, night_statistics = inputs
        pipeline = scored.pipeline
        predictions = scored | "StagePredictions" >> self._stage(
            STAGED_PREDICTIONS_LAYOUT, "predictions", "scored_at", STAGED_PER_RECORD
        )
        errors = rejected | "StageErrors" >> self._stage(SCORING_ERRORS.arrow_schema, "errors", "recorded_at")
        input_counts = counts | "CountInput" >> beam.CombinePerKey(sum)
        valid_counts = valid | "CountValid" >> beam.CombinePerKey(sum)
        return (
            pipeline
            | "PublishTrigger" >> beam.Create([None])
            | "Publish"
            >> beam.ParDo(
                PublishDate(self._warehouse, self._run, self._staging, self._fail_job_on_refusal, self._monitoring),
                beam.pvalue.AsList(predictions),
                beam.pvalue.AsList(errors),
                beam.pvalue.AsDict(input_counts),
                beam.pvalue.AsDict(valid_counts),
                beam.pvalue.AsList(night_statistics),
            )
        )
