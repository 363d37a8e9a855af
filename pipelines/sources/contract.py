"""What every source implements, so that scoring and training never ask which one they hold.

A source is where `--input` points: files (local or gs://) or a BigQuery table or query file. Its life
in a job has three steps, each a method here:

1. Planning a night, before anything is written (`plan_night`): the night's input is found, or the job
   stops with `InputNotFoundError`; the independent count the night reconciles against is taken here
   where the source has one up front (BigQuery's COUNT(*)), or while reading where it has not (files,
   counted by `blocks.py` apart from the parser). Several nights are made distinct (`plan_nights`).
2. Saying what it planned (`NightInput`): the names its records carry in `scoring_errors.source` and
   `input_files`, and how it describes itself in the run's recorded options.
3. Reading (`read`): one `PTransform` from the pipeline's start to a `Read` of raw batches, rejected
   records and per-source counts, which every step downstream takes the same way.

A new source is one module with a `Source` subclass and one line in `pipelines/sources/__init__.py`
(README: "Adding a source").
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

import apache_beam as beam

from pipelines.choices import InputFormat, MissingColumns
from pipelines.defaults import DEFAULT_BLOCK_BYTES, DEFAULT_MAX_RECORD_BYTES, DEFAULT_SPLIT_BYTES, DEFAULT_TEMP_DATASET
from schemas import InputSchema

MAX_NIGHTS_SHOWN = 20  # of the nights a range lacks input for, named in the error


class InputNotFoundError(FileNotFoundError):
    """No input for the date: the run must stop before writing anything."""


class SourceConfigError(ValueError):
    """The source cannot be read as configured; raised before any data is read."""


@dataclass(frozen=True, kw_only=True)
class ReadSettings:
    """How records are read, whatever the source: the options a user sets, typed, taken whole by the
    readers (the files' formats and buffers, BigQuery's streams and scratch dataset)."""

    input_format: InputFormat = InputFormat.AUTO
    missing_nullable_columns: MissingColumns = MissingColumns.REFUSE
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    block_bytes: int = DEFAULT_BLOCK_BYTES
    split_bytes: int = DEFAULT_SPLIT_BYTES  # 0: every file read whole
    date_column: str | None = None
    bq_project: str | None = None
    bq_max_streams: int = 0
    bq_temp_dataset: str = DEFAULT_TEMP_DATASET

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_format", InputFormat(self.input_format))
        object.__setattr__(self, "missing_nullable_columns", MissingColumns(self.missing_nullable_columns))

    @classmethod
    def from_options(cls, data: Any, block_bytes: int = DEFAULT_BLOCK_BYTES) -> ReadSettings:
        """From the commands' `DataOptions` (and scoring's --block_bytes; training reads at the default)."""
        return cls(
            input_format=data.input_format,
            missing_nullable_columns=data.missing_nullable_columns,
            max_record_bytes=data.max_record_bytes,
            block_bytes=block_bytes,
            split_bytes=data.split_bytes,
            date_column=data.date_column,
            bq_project=data.bq_project,
            bq_max_streams=data.bq_max_streams,
            bq_temp_dataset=data.bq_temp_dataset,
        )

    @property
    def record_limit(self) -> int:
        """The longest record a reader keeps: a block always holds one."""
        return max(self.max_record_bytes, self.block_bytes)

    def recorded(self) -> dict[str, Any]:
        """As `scoring_runs.options` records them."""
        return {
            "block_bytes": self.block_bytes,
            "max_record_bytes": self.max_record_bytes,
            "split_bytes": self.split_bytes,
            "missing_nullable_columns": str(self.missing_nullable_columns),
        }


class Read(NamedTuple):
    """What a source's read gives the steps after it."""

    batches: beam.PCollection  # RawBatch: records before validation
    rejected: beam.PCollection  # record batches laid out as `batches.REJECTED_SCHEMA`
    counts: beam.PCollection  # (source name, records counted): the independent count, per source

    @classmethod
    def merged(cls, reads: Sequence[Read], label: str) -> Read:
        """Several reads (a range's nights read apart) as one, for the steps after them."""
        if len(reads) == 1:
            return reads[0]
        return cls(
            *(
                tuple(getattr(read, part) for read in reads) | f"{label}{part.title()}" >> beam.Flatten()
                for part in cls._fields
            )
        )


class NightInput(abc.ABC):
    """One night's input as planned: what the reader reads, and what the run says of it."""

    day: date | None  # None: a fixed input read whole (training without a date range)

    @abc.abstractmethod
    def names(self) -> list[str]:
        """The names its records carry in `scoring_errors.source`, `input_files` and the counts: the
        files, or the table (named for its night where one table serves several)."""

    @abc.abstractmethod
    def recorded(self) -> dict[str, int]:
        """How the run's recorded options describe it (how many files, or streams)."""


class Source(abc.ABC):
    """Where `--input` points. `location` may hold `{date}`, substituted per night. Making one does no
    I/O and no check (`open_source` makes it before the job's options are checked): planning does."""

    def __init__(self, location: str, schema: InputSchema, settings: ReadSettings):
        self.location = location
        self.schema = schema
        self.settings = settings

    @staticmethod
    @abc.abstractmethod
    def claims(location: str) -> bool:
        """Whether `--input` names this kind of source (`open_source` asks each in turn)."""

    @property
    @abc.abstractmethod
    def dated(self) -> bool:
        """Whether the location selects a date's records (a {date} in a file pattern; a table's date
        column), so that each night of a range reads its own."""

    @abc.abstractmethod
    def plan_night(self, day: date | None) -> NightInput:
        """The night's input, checked and found, or InputNotFoundError (SourceConfigError: unusable)."""

    @abc.abstractmethod
    def read(self, nights: Sequence[NightInput], progress_dir: str | None = None) -> beam.PTransform:
        """The pipeline's start -> a `Read` of every night's records. `progress_dir`: where the workers
        tally bytes read for a progress bar (None: no bar)."""

    def input_of(self, day: date) -> str:
        """The night's input as its run records it."""
        return self.location.format(date=day.isoformat())

    def total_bytes(self, nights: Sequence[NightInput]) -> int | None:
        """The bytes to read, for a progress bar; None where the source cannot say up front."""
        return None

    def plan_nights(self, days: Sequence[date]) -> list[NightInput]:
        """Every night's input. Every night must have input, as a single night must: a range with gaps
        fails before anything is written, naming them all."""
        nights, missing = [], []
        for day in days:
            try:
                nights.append(self.plan_night(day))
            except InputNotFoundError:
                if len(days) == 1:
                    raise
                missing.append(day.isoformat())
        if missing:
            shown = ", ".join(missing[:MAX_NIGHTS_SHOWN])
            more = f" and {len(missing) - MAX_NIGHTS_SHOWN} more" if len(missing) > MAX_NIGHTS_SHOWN else ""
            raise InputNotFoundError(f"no input for {len(missing)} of the {len(days)} nights: {shown}{more}")
        return self.distinct(nights)

    def distinct(self, nights: list[NightInput]) -> list[NightInput]:
        """Several nights' inputs, made each night's own: a record read for two nights would be counted
        twice. (A source whose nights cannot overlap returns them as they are.)"""
        return nights
