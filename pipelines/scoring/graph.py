"""The scoring graph: extract -> validate -> score -> monitor -> load, one way.

Each step is a composite transform of its own package or module, taking its part of the configuration
whole; this module only wires them. The graph is the same on every runner: the DirectRunner here, a
portable runner, Dataflow (where the workers, not this process, keep the runs' heartbeats).
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from pipelines.load import LoadToWarehouse, NightResults
from pipelines.monitoring.measure import MeasureNight
from pipelines.observe import CountRejections, ReportProgress
from pipelines.scoring.config import ScoringConfig
from pipelines.validate import ValidateRecords
from pipelines.warehouses import heartbeat
from schemas import CHALLENGER, CHAMPION


def build_pipeline(pipeline: beam.Pipeline, config: ScoringConfig, bar_dir: str | None = None):
    """Adds the job to `pipeline` (a test's or the command's); returns the published nights' counts.
    `bar_dir`: where the workers report bytes read and records scored for a progress bar (None: plain
    progress lines, if any)."""
    nights = config.by_night()
    read = pipeline | "ReadRecords" >> config.source.read([night.input for night in config.nights], bar_dir)
    checked = read.batches | "Validate" >> ValidateRecords(config.schema, config.unknown_columns, provenance=True)
    inference = config.inference
    champion = inference.handler(inference.model, config.use_case, CHAMPION)
    scored = checked.valid | "RunInference" >> RunInference(champion)
    if config.monitoring.measured:
        measure = MeasureNight(nights, inference.model.path, config.use_case)
        described = (checked.valid, scored) | "MeasureNight" >> measure
    else:
        described = pipeline | "NoStatistics" >> beam.Create([])
    watch(scored, config, bar_dir)
    if inference.challenger is not None:
        challenged = checked.valid | "RunChallenger" >> RunInference(
            inference.handler(inference.challenger, config.use_case, CHALLENGER)
        )
        scored = (scored, challenged) | "BothModels" >> beam.Flatten()
    rejected = (read.rejected, checked.rejected) | "AllRejected" >> beam.Flatten()
    _ = rejected | "CountRejections" >> beam.ParDo(CountRejections())
    results = NightResults(scored, rejected, read.counts, checked.valid_counts, described)
    return results | "WriteScores" >> LoadToWarehouse(config.publishing, nights, config.monitoring.monitor)


def watch(scored: beam.PCollection, config: ScoringConfig, bar_dir: str | None) -> None:
    """What watches the job as it scores: live progress on a local terminal; the runs' heartbeat from
    the workers where no process waits for a remote job."""
    if config.progress_seconds:
        _ = scored | "ReportProgress" >> beam.ParDo(
            ReportProgress(config.runs[0].run_id, config.progress_seconds, bar_dir)
        )
    if not config.local:
        beats = heartbeat.BeatFromWorkers(
            config.warehouse, [run.run_id for run in config.runs], heartbeat.interval(config.stale_after)
        )
        _ = scored | "Heartbeat" >> beam.ParDo(beats)
