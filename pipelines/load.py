"""Load: stage scored and rejected records as files, then publish the nights in date order, each in one step.

Publishing runs inside the pipeline, after every staged file exists (its inputs are side inputs,
which a runner materialises first), so the same graph publishes on DirectRunner and on Dataflow. Each
night is staged under its own run's folder and published as its own run, through its own gates.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipelines import metrics
from pipelines.batches import staged_per_record, staged_predictions_layout
from pipelines.nights import Nights
from pipelines.observe import add_seconds
from pipelines.staged import WriteParquetFiles, delete_tree, run_folder
from pipelines.warehouses import UNGUARDED, GateRefused, PublishGuard, RunRecord, StagedResults, Warehouse
from pipelines.warehouses.deadline import Deadline
from schemas import SCORING_ERRORS

if TYPE_CHECKING:
    from pipelines.monitoring.measure import NightMonitor


class NightResults(NamedTuple):
    """What the load step takes: everything the job made of its nights."""

    scored: beam.PCollection  # scored batches (champion, and challenger where one scores too)
    rejected: beam.PCollection  # rejected records, from reading and from validation
    input_counts: beam.PCollection  # (source, records counted): the independent count
    valid_counts: beam.PCollection  # (source, records valid)
    statistics: beam.PCollection  # (night, DatasetFeatureStatistics); none with --monitoring off


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
class PublishSettings:
    """Where and how the nights are published."""

    warehouse: Warehouse
    staging_dir: str  # each run's files under its own folder here
    timeout: float  # seconds each night's publishing may wait for the warehouse (--publish_timeout)
    fail_job_on_refusal: bool  # a remote job: its state is what Airflow and alerting see
    guard: PublishGuard = UNGUARDED  # held around each publishing transaction (the job's SIGTERM guard)


class PublishNights(beam.DoFn):
    """Publishes each night of the job in date order, each through its own gates: a refused night is
    refused alone, and the next night's gates and previous-night drift see the nights before it as a
    run of their own would have. Emits each published night's counts."""

    def __init__(self, publishing: PublishSettings, nights: Nights, monitor: NightMonitor):
        self._publishing = publishing
        self._warehouse = publishing.warehouse
        self._nights = nights
        self._monitor = monitor
        self._published = metrics.ROWS_PUBLISHED.counter()
        self._time = metrics.step_timer("publish")

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
        if refused and self._publishing.fail_job_on_refusal:
            others = " (the job's other nights are published)" if len(self._nights.runs) > 1 else ""
            raise GateRefused("; ".join(refused) + others)

    def _publish(self, run: RunRecord, staged: StagedResults, datasets: list) -> dict | GateRefused:
        """One night, as a run of its own would publish it: its counts, or the refusal. Every warehouse
        call, from reading the previous night's statistics to the commit, is within the night's
        --publish_timeout."""
        staging = run_folder(self._publishing.staging_dir, run.run_id)
        t0 = time.perf_counter()
        try:
            with self._warehouse.within(Deadline(self._publishing.timeout)):
                if datasets:
                    staged = dataclasses.replace(
                        staged, **self._monitor.measure(self._warehouse, run, datasets, staging)
                    )
                counts = self._warehouse.publish_night(run, staged, self._publishing.guard)
        except GateRefused as refusal:
            add_seconds(self._time, time.perf_counter() - t0)
            delete_tree(staging)  # its rows are in the refused tables now
            self._monitor.write_page(self._warehouse, run, self._publishing.timeout)
            return refusal
        self._published.inc(counts["prediction_rows"])
        add_seconds(self._time, time.perf_counter() - t0)
        # Published rows are copies. The night is published: failing now would only make a retry or an
        # alert say otherwise. (Killed before this, the files go with the next run's sweep.)
        try:
            delete_tree(staging)
        except Exception as e:
            logging.warning("run %s published; its staged files under %s stay: %s", run.run_id, staging, e)
        self._monitor.write_page(self._warehouse, run, self._publishing.timeout)
        return counts


class LoadToWarehouse(beam.PTransform):
    """`NightResults` -> the published nights' counts. Each night is staged under its own run's folder
    and published as its own run."""

    def __init__(self, publishing: PublishSettings, nights: Nights, monitor: NightMonitor):
        """Whose predictions are staged (their key) is the warehouse's use case: the one it was opened for."""
        super().__init__()
        self._use_case = publishing.warehouse.use_case
        self._publishing = publishing
        self._nights = nights
        self._monitor = monitor

    def _stage(
        self, layout: pa.Schema, folder: str, time_field: str, per_record: tuple[str, ...] | None = None
    ) -> beam.ParDo:
        """(night, batch) -> Parquet files laid out as `layout`, under the night's run's staging folder.
        `per_record`: the columns holding a value per record, which a dictionary would not shrink."""
        runs = {run.score_date.isoformat(): run for run in self._nights.runs}
        return beam.ParDo(
            WriteParquetFiles(
                {
                    night: FileSystems.join(run_folder(self._publishing.staging_dir, run.run_id), folder)
                    for night, run in runs.items()
                },
                folder,
                layout,
                {night: AddRunColumns(layout, run, time_field) for night, run in runs.items()},
                dictionary=None if per_record is None else [n for n in layout.names if n not in per_record],
            )
        )

    def expand(self, results: NightResults):
        predictions = (
            results.scored
            | "PredictionsByNight" >> beam.Map(self._nights.keyed)
            | "StagePredictions"
            >> self._stage(
                staged_predictions_layout(self._use_case), "predictions", "scored_at", staged_per_record(self._use_case)
            )
        )
        errors = (
            results.rejected
            | "ErrorsByNight" >> beam.Map(self._nights.keyed)
            | "StageErrors" >> self._stage(SCORING_ERRORS.arrow_schema, "errors", "recorded_at")
        )
        input_counts = results.input_counts | "CountInput" >> beam.CombinePerKey(sum)
        valid_counts = results.valid_counts | "CountValid" >> beam.CombinePerKey(sum)
        return (
            results.scored.pipeline
            | "PublishTrigger" >> beam.Create([None])
            | "Publish"
            >> beam.ParDo(
                PublishNights(self._publishing, self._nights, self._monitor),
                beam.pvalue.AsList(predictions),
                beam.pvalue.AsList(errors),
                beam.pvalue.AsDict(input_counts),
                beam.pvalue.AsDict(valid_counts),
                beam.pvalue.AsList(results.statistics),
            )
        )
