"""Monitoring's work in a scoring job: describe each night, measure its drift, draw its page.

`MeasureNight` is the graph's monitoring step: statistics of each night's valid input and of its
champion scores, merged across workers. `NightMonitor` is handed to the load step, which publishes the
nights in date order: just before a night is published it measures the night's drift against the
model version's training statistics and the last published night (so a range's second night is held to
its first), and once the night is settled it writes the night's page. README: Monitoring.
"""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipelines import metrics
from pipelines.defaults import REPORT_DAYS
from pipelines.monitoring import drift, page, statistics
from pipelines.monitoring.datasets import NIGHT, NIGHT_SCORES
from pipelines.nights import Nights
from pipelines.warehouses import RunRecord, Warehouse
from pipelines.warehouses.deadline import Deadline
from schemas import DriftSettings, UseCase

PAGE_WAIT_SECONDS = 120.0  # a settled night waits this long at most for the warehouse to draw its page


class MeasureNight(beam.PTransform):
    """(valid input batches, champion score batches) -> (night, DatasetFeatureStatistics) for each night:
    its input's and its scores'. Each is combined where its batches are made (a Flatten of the two
    first would carry the batches themselves to a new step), keyed by night so that each night of a
    range is described by its own records."""

    def __init__(self, nights: Nights, model_path: str, use_case: UseCase):
        super().__init__()
        self._nights = nights
        self._model_path = model_path
        self._use_case = use_case

    def expand(self, inputs):
        valid, scored = inputs
        kinds = statistics.feature_kinds(self._use_case)
        vocabularies = statistics.vocabularies(self._model_path, self._use_case)
        night_input = (
            valid
            | "InputByNight" >> beam.Map(self._nights.keyed)
            | "InputStatistics" >> beam.CombinePerKey(statistics.ComputeStatistics(NIGHT, kinds, vocabularies))
        )
        night_scores = (
            scored
            | "ScoresByNight" >> beam.Map(self._nights.keyed)
            | "ScoreStatistics"
            >> beam.CombinePerKey(
                statistics.ComputeStatistics(
                    NIGHT_SCORES,
                    {statistics.SCORE: statistics.NUMERIC},
                    columns={statistics.SCORE: "probability"},
                )
            )
        )
        return (night_input, night_scores) | "NightStatistics" >> beam.Flatten()


@dataclass(frozen=True)
class NightMonitor:
    """What a night's drift is measured against and where its page goes: the model version's training
    statistics (serialized; None for a version exported before baselines), the use case's drift settings
    (thresholds per feature, features never flagged, the fewest values to flag), the page's folder
    (None: no page)."""

    training: bytes | None
    drift: DriftSettings
    page_dir: str | None = None

    def measure(self, warehouse: Warehouse, run: RunRecord, datasets: list, staging: str) -> dict[str, Any]:
        """The night's drift against training and the last published night, staged as a Parquet file;
        what the night's `StagedResults` carry of it. Called within the night's publishing deadline."""
        night = statistics_pb2.DatasetFeatureStatisticsList(datasets=datasets)
        baseline = statistics_pb2.DatasetFeatureStatisticsList.FromString(self.training) if self.training else None
        previous = warehouse.previous_statistics(run.score_date)
        measured = drift.night_drift(
            night,
            baseline,
            statistics_pb2.DatasetFeatureStatisticsList.FromString(base64.b64decode(previous)) if previous else None,
            self.drift,
        )
        path = FileSystems.join(staging, "drift", f"drift-{uuid.uuid4().hex}.parquet")
        with FileSystems.create(path) as f:
            pq.write_table(drift.rows(measured, run.score_date, run.run_id), f)
        # Kept with the run: the night's statistics (the next night's previous_night baseline) and the
        # training baseline's, so that the night's page is drawn from the warehouse alone.
        kept = statistics_pb2.DatasetFeatureStatisticsList(
            datasets=[*night.datasets, *(baseline.datasets if baseline else [])]
        )
        return {
            "drift_files": [(path, len(measured))],
            "drift_flagged": drift.flagged_features(measured),
            "statistics": base64.b64encode(kept.SerializeToString()).decode("ascii"),
        }

    def write_page(self, warehouse: Warehouse, run: RunRecord, publish_timeout: float) -> None:
        """The night's page, published or refused. The night's outcome is settled by now: a page that
        cannot be written is a warning, never a failed run."""
        if not self.page_dir:
            return
        try:
            # The night is settled: a silent warehouse holds it up a minute or two for its page, no more.
            with warehouse.within(Deadline(min(publish_timeout, PAGE_WAIT_SECONDS))):
                night = warehouse.night_report(run.score_date, REPORT_DAYS, run.run_id)
            path = page.write_page(night, self.page_dir, warehouse.name, self.drift.not_flagged.keys())
        except Exception as e:
            logging.warning("run %s: its report was not written: %s: %s", run.run_id, type(e).__name__, e)
            return
        metrics.REPORTS_WRITTEN.counter().inc()
        logging.info("run %s: report written to %s", run.run_id, path)
