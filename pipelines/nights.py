"""The nights one job scores, and which night each record belongs to.

A job scores one night or a range of them (a backfill); each night is its own run, published through
its own gates. The steps that describe, stage and publish per night (monitoring, load) key each batch
by its night. Batches never mix sources, so a batch's night is its first record's source's night.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import pyarrow as pa


class NightRun(Protocol):
    """What a night's run is to the steps that key by night (a `warehouses.RunRecord`)."""

    run_id: str
    score_date: date


@dataclass(frozen=True)
class Nights:
    """Each night's run (in date order), and the night each source belongs to (by the names its records
    carry). Nights are keyed by their ISO date: a string keeps Beam's grouping deterministic."""

    runs: tuple[NightRun, ...]
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
