"""What a warehouse and its callers exchange: the run as it starts (`RunRecord`), what it staged
(`StagedResults`) and what the audit found there (`StagedCounts`, judged by `check_staged`), the
champion/challenger comparison (`comparison_result`), a night's report as read back (`NightReport`),
and the errors publishing can end in.

Kept out of `contract` (the `Warehouse` life cycle that makes and consumes them) because they are plain
values and pure functions: the pipeline's steps, the report and the tests hold and check them without
a warehouse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pipelines.warehouses.gates import GateLimits

# ---------------------------------------------------------------- how publishing ends, when not published


class WarehouseConfigError(ValueError):
    """The warehouse cannot be used as configured; raised before any data is read."""


class AuditError(RuntimeError):
    """Staged results failed their audit; nothing was published."""


class PublishedMeanwhile(AuditError):
    """Another run published the date between this run's gates and its transaction: judge again."""


class PublishingStopped(AuditError):
    """This process is stopping (SIGTERM): no night of it publishes any more. Raised by the
    `PublishGuard` a caller passes to `Warehouse.publish_night`, before the transaction starts."""


class GateRefused(RuntimeError):
    """The night failed a quality gate: not published, its rows kept in the refused tables."""


class AlreadyPublished(Exception):
    """The run's night is published already: what it published, for a retried publishing step."""

    def __init__(self, counts: dict[str, Any]):
        super().__init__("already published")
        self.counts = counts


# ---------------------------------------------------------------- what a run is, stages and is found to hold


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """What the warehouse needs to know about a run, fixed when it starts."""

    run_id: str
    score_date: date
    model_name: str
    model_version: int
    input: str
    started_at: datetime
    options: dict[str, Any] = field(default_factory=dict)
    challenger_version: int | None = None
    limits: GateLimits = GateLimits()


@dataclass(frozen=True)
class StagedResults:
    """Files the pipeline staged, with the row counts their writers reported, and per input source
    (file or table) its records by the independent count and the records validation passed."""

    prediction_files: list[tuple[str, int]]
    error_files: list[tuple[str, int]]
    input_counts: dict[str, int]
    valid_counts: dict[str, int]
    # What monitoring measured (README: Monitoring): drift metrics staged as files, the features flagged,
    # and the night's statistics (base64), kept with the run for the next night to compare with.
    drift_files: list[tuple[str, int]] = field(default_factory=list)
    drift_flagged: tuple[str, ...] = ()
    statistics: str | None = None

    @property
    def input_records(self) -> int:
        return sum(self.input_counts.values())

    @property
    def prediction_paths(self) -> list[str]:
        return [path for path, _ in self.prediction_files]

    @property
    def error_paths(self) -> list[str]:
        return [path for path, _ in self.error_files]

    @property
    def drift_paths(self) -> list[str]:
        return [path for path, _ in self.drift_files]


@dataclass(frozen=True)
class StagedCounts:
    """What the audit query found in the staged rows."""

    prediction_rows: int = 0
    null_fields: int = 0
    out_of_range: int = 0
    other_runs: int = 0
    champion: int = 0
    challenger: int = 0
    rejected_records: int = 0
    rejected_files: int = 0
    duplicates_dropped: int = 0  # champion records that were identical copies of another
    conflicting: int = 0  # champion records whose key has copies of different content
    repeated_keys: int = 0  # (role, key) pairs the published night would still hold twice


def check_staged(
    run: RunRecord, staged: StagedResults, found: StagedCounts, rejected_by_source: dict[str, int]
) -> dict[str, Any]:
    """What is staged must be whole and sane before anyone can see it; AuditError says why not.

    Every source must reconcile on its own: records by the independent count = records valid +
    records rejected. Then the valid records must all have been scored, and the night as a whole:
    input = scored + rejected + duplicates dropped.
    """
    problems = []
    files = {}
    for source in sorted(staged.input_counts.keys() | staged.valid_counts.keys() | rejected_by_source.keys()):
        counted = staged.input_counts.get(source)
        valid, rejected = staged.valid_counts.get(source, 0), rejected_by_source.get(source, 0)
        files[source] = {"records": counted, "valid": valid, "rejected": rejected}
        if counted != valid + rejected:
            problems.append(
                f"{source} does not reconcile: {counted} records by the independent count, "
                f"{valid} valid + {rejected} rejected"
            )
    if sum(staged.valid_counts.values()) != found.champion:
        problems.append(
            f"validation passed {sum(staged.valid_counts.values())} records but the champion scored {found.champion}"
        )
    written = sum(n for _, n in staged.prediction_files)
    if found.prediction_rows != written:
        problems.append(f"staged predictions hold {found.prediction_rows} rows but {written} were written")
    if found.null_fields:
        problems.append(f"{found.null_fields} staged predictions have a null key or probability")
    if found.out_of_range:
        problems.append(f"{found.out_of_range} staged probabilities are outside [0, 1]")
    if found.other_runs:
        problems.append(f"{found.other_runs} staged rows belong to another run or date")
    if run.challenger_version is not None and found.challenger != found.champion:
        problems.append(f"the challenger scored {found.challenger} records but the champion {found.champion}")
    if run.challenger_version is None and found.challenger:
        problems.append(f"{found.challenger} challenger rows staged but no challenger was asked for")
    if found.repeated_keys:
        problems.append(f"{found.repeated_keys} (model role, key) pairs would be published more than once")
    scored = found.champion - found.duplicates_dropped - found.conflicting
    rejected = found.rejected_records + found.conflicting
    if staged.input_records != scored + rejected + found.duplicates_dropped:
        problems.append(
            f"counts do not reconcile: input {staged.input_records} != scored {scored} + rejected {rejected} "
            f"+ duplicates dropped {found.duplicates_dropped}"
        )
    if problems:
        raise AuditError("audit failed, nothing published: " + "; ".join(problems))
    return {
        "input_records": staged.input_records,
        "scored_records": scored,
        "rejected_records": rejected,
        "rejected_files": found.rejected_files,
        "duplicates_dropped": found.duplicates_dropped,
        "input_files": json.dumps(files, sort_keys=True),
        "prediction_rows": scored * (2 if run.challenger_version is not None else 1),
    }


def comparison_result(row: tuple) -> dict[str, float | int | None]:
    records, champion_mean, challenger_mean, differ, spearman = row
    return {
        "records": records,
        "champion_mean_probability": champion_mean,
        "challenger_mean_probability": challenger_mean,
        "label_disagreement": differ,
        "rank_correlation": spearman,
    }


def published_counts(run: RunRecord, row: dict[str, Any]) -> dict[str, Any]:
    """The counts `publish_night` returned, from the run's row."""
    names = ("input_records", "scored_records", "rejected_records", "rejected_files", "duplicates_dropped")
    counts = {name: row[name] for name in names} | {"input_files": row["input_files"]}
    return counts | {"prediction_rows": row["scored_records"] * (2 if run.challenger_version is not None else 1)}


@dataclass(frozen=True)
class NightReport:
    """A night's report, as read from the warehouse: the run's row, per published night its quality
    (`night_quality`'s columns), the run's rejections per reason, drift rows (`feature_drift`'s
    columns; the run's own when it was refused), and the previous published night's statistics."""

    run: dict[str, Any]
    quality: list[dict[str, Any]]
    rejections: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    previous_statistics: str | None
