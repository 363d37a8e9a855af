"""A scoring job, fully checked: what the graph and the job need, nothing they have to look up.

The configuration is in parts that the steps take whole: the source and how it reads, the model and
how it runs, monitoring, publishing. The options a run records in `scoring_runs.options` come from
those parts (`ReadSettings.recorded`, `InferenceSettings.recorded`) and the job's own (the runner, the
heartbeat's period), assembled once in `plan.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from models.handler import ExportedModelHandler
from models.registry import ModelVersion
from pipelines.choices import UnknownColumns
from pipelines.load import PublishSettings
from pipelines.monitoring.measure import NightMonitor
from pipelines.nights import Nights
from pipelines.sources import NightInput, Source
from pipelines.warehouses import RunRecord
from schemas import InputSchema, UseCase


@dataclass(frozen=True)
class Night:
    """One night of a job: its run, and what to read for it."""

    run: RunRecord
    input: NightInput


@dataclass(frozen=True, kw_only=True)
class InferenceSettings:
    """The models and how they run (--model_version, --challenger_version, --accelerator, ...)."""

    model: ModelVersion
    challenger: ModelVersion | None
    requested_version: str  # as asked for: 'latest' or a number
    requested_challenger: str | None
    batch_size: int | None
    accelerator: str
    models_per_process: int
    large_model: bool
    verbose: bool  # everything TensorFlow and Beam log, on the workers too (--verbose)

    def handler(self, model: ModelVersion, use_case: UseCase, role: str) -> ExportedModelHandler:
        return ExportedModelHandler(
            model,
            use_case,
            batch_size=self.batch_size,
            accelerator=self.accelerator,
            models_per_process=self.models_per_process,
            large_model=self.large_model,
            role=role,
            verbose=self.verbose,
        )

    def recorded(self, model_root: str) -> dict[str, Any]:
        return {
            "model_root": model_root,
            "model_version": self.requested_version,
            "challenger_version": self.requested_challenger,
            "accelerator": self.accelerator,
            "batch_size": self.batch_size,
            "models_per_process": self.models_per_process,
            "large_model": self.large_model,
            "skipped_model_versions": list(self.model.skipped),
        }


@dataclass(frozen=True)
class MonitoringSettings:
    """--monitoring: whether each night is described and its drift measured; the monitor either way
    (its page is written whatever --monitoring says)."""

    measured: bool
    monitor: NightMonitor


@dataclass(frozen=True, kw_only=True)
class ScoringConfig:
    """A fully checked job of one night or several."""

    use_case: UseCase
    nights: tuple[Night, ...]  # in date order
    source: Source  # its schema is the scoring schema, its settings how it reads
    unknown_columns: UnknownColumns
    inference: InferenceSettings
    monitoring: MonitoringSettings
    publishing: PublishSettings
    stale_after: timedelta
    progress_seconds: float  # 0: no live progress (remote runners have no terminal to print to)
    local: bool  # this process runs the pipeline (and so can heartbeat for it) and waits for it

    @property
    def schema(self) -> InputSchema:
        return self.source.schema

    @property
    def warehouse(self):
        return self.publishing.warehouse

    @property
    def runs(self) -> tuple[RunRecord, ...]:
        return tuple(night.run for night in self.nights)

    @property
    def run(self) -> RunRecord:
        """The job's run, when it scores one night."""
        if len(self.nights) != 1:
            raise ValueError(f"a job of {len(self.nights)} nights has a run per night")
        return self.nights[0].run

    def by_night(self) -> Nights:
        """The runs, and each source's night, for the steps that describe, stage and publish per night."""
        sources = {name: night.run.score_date.isoformat() for night in self.nights for name in night.input.names()}
        return Nights(self.runs, sources)
