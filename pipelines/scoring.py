"""Scoring's work, behind `python -m pipelines.score` (pipelines/score.py, the command, whose docstring
is the command's help): plan the job (every check that needs no data), build the graph (extract ->
validate -> score -> load), run it with heartbeat, reaping and signals, and summarise each night.

Everything that can be checked without reading data (the date, the model version and its files,
the input files, the warehouse tables) is checked first, so bad configuration fails fast and
writes nothing. Runs that were killed are reaped first. The night is published only if it passes
its quality gates.
"""

from __future__ import annotations

import dataclasses
import getpass
import itertools
import json
import os
import signal
import socket
import sys
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, PipelineOptions, TestOptions

import schemas
from models import devices, quiet, registry
from models.devices import AcceleratorError
from models.handler import DEVICE_METRICS_NAMESPACE, ExportedModelHandler
from models.registry import ModelVersion, ModelVersionError
from pipelines import bigquery_source, extract, load, progress, warehouses
from pipelines import score as command
from pipelines.arguments import DEFAULT_SCORING_INPUT, DEFAULT_WAREHOUSE, duration
from pipelines.batches import COUNTS, REJECTED, merged_reads
from pipelines.bigquery_source import BigQueryInputError, ReadBigQuery, ReadPlan
from pipelines.extract import INPUT_RANGES, LOOKS_LIKE, InputNotFoundError, ReadInputFiles
from pipelines.load import REPORTS_WRITTEN, LoadToWarehouse, Monitoring
from pipelines.monitoring import report, statistics
from pipelines.observe import (
    REJECTED_BY_REASON,
    CountRejections,
    ReportProgress,
    distribution_summary,
    stage_seconds,
)
from pipelines.options import CommandOptions, DataOptions, ScoringOptions, parse
from pipelines.ranges import MIN_SPLIT_BYTES, total_bytes
from pipelines.stage import delete_tree, run_folder
from pipelines.validate import VALID_COUNTS, ValidateRecords
from pipelines.warehouses import (
    REFUSED,
    RUNNING,
    SUCCEEDED,
    GateLimits,
    RunRecord,
    Warehouse,
    WarehouseConfigError,
    heartbeat,
    open_warehouse,
)
from pipelines.warehouses.deadline import Deadline
from schemas import CHALLENGER, CHAMPION, InputSchema

CONFIG_ERRORS = (
    InputNotFoundError,
    ModelVersionError,
    WarehouseConfigError,
    AcceleratorError,
    BigQueryInputError,
    ValueError,
)
LOCAL_RUNNERS = (None, "DirectRunner", "direct", "BundleBasedDirectRunner", "SwitchingDirectRunner")


class RunFailed(RuntimeError):
    """The pipeline failed after it started; the run is marked failed, the date left as it was."""


class Refused(RuntimeError):
    """A night failed a quality gate: the date untouched, the run and its rows kept as refused (the
    other nights of a range published). Carries the job's summary."""

    def __init__(self, message: str, summary: dict[str, Any] | None = None):
        super().__init__(message)
        self.summary = summary


class Terminated(BaseException):
    """SIGTERM (a scheduler or an operator stopping the job): the run is marked failed on the way out."""


def _terminate(signum, frame):
    warehouses.stopping()  # worker threads of this process publish nothing from now on
    raise Terminated(f"terminated by signal {signum}")


MAX_NIGHTS = 366  # a year, leap day included, in one job
TERMINATED = command.TERMINATED
LOCAL_THREADS = 2  # bundles a local run works on at once, unless told otherwise (overlap_locally)


@dataclass(frozen=True)
class Night:
    """One night of a job: its run, and what to read for it."""

    run: RunRecord
    source: list[str] | ReadPlan  # the files to read, or an open BigQuery read session


@dataclass(frozen=True, kw_only=True)
class ScoringConfig:
    """A fully checked job of one night or several: what build_pipeline needs, nothing it has to look up."""

    nights: tuple[Night, ...]  # in date order
    input_format: str
    unknown_columns: str
    missing_nullable_columns: str
    max_record_bytes: int
    split_bytes: int  # 0: every file read whole
    schema: InputSchema
    model: ModelVersion
    challenger: ModelVersion | None
    warehouse: Warehouse
    staging_dir: str
    block_bytes: int
    batch_size: int | None
    accelerator: str
    models_per_process: int
    large_model: bool
    progress_seconds: float  # 0: no live progress (remote runners have no terminal to print to)
    stale_after: timedelta
    publish_timeout: float  # seconds each night's publishing may wait for the warehouse (--publish_timeout)
    local: bool  # this process runs the pipeline (and so can heartbeat for it) and waits for it
    training_statistics: bytes | None  # the model version's drift baseline; None for older versions
    report_dir: str | None  # where the night's report goes; None: none
    monitoring: bool  # the night's statistics and drift (--monitoring)
    verbose: bool  # everything TensorFlow and Beam log, on the workers too (--verbose)

    @property
    def runs(self) -> tuple[RunRecord, ...]:
        return tuple(night.run for night in self.nights)

    @property
    def run(self) -> RunRecord:
        """The job's run, when it scores one night."""
        if len(self.nights) != 1:
            raise ValueError(f"a job of {len(self.nights)} nights has a run per night")
        return self.nights[0].run

    @property
    def files(self) -> list[str] | None:
        """Every night's files, when the input is files."""
        if isinstance(self.nights[0].source, ReadPlan):
            return None
        return [path for night in self.nights for path in night.source]

    def by_night(self) -> load.Nights:
        """The runs, and each input source's night, for the stages that stage and publish per night."""
        sources = {}
        for night in self.nights:
            key = night.run.score_date.isoformat()
            for source in [night.source.source] if isinstance(night.source, ReadPlan) else night.source:
                sources[source] = key
        return load.Nights(self.runs, sources)

    def handler(self, model: ModelVersion, role: str) -> ExportedModelHandler:
        return ExportedModelHandler(
            model,
            self.schema,
            batch_size=self.batch_size,
            accelerator=self.accelerator,
            models_per_process=self.models_per_process,
            large_model=self.large_model,
            role=role,
            verbose=self.verbose,
        )


def parse_date(value: str | None, timezone_name: str = "UTC", now: datetime | None = None) -> date:
    """--date, or yesterday in `timezone_name` when no date is given (what a nightly schedule wants)."""
    if not value:
        try:
            zone = ZoneInfo(timezone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"--timezone {timezone_name!r} is not an IANA time zone") from None
        return (now or datetime.now(timezone.utc)).astimezone(zone).date() - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a real date in YYYY-MM-DD form") from None


def plan(options: PipelineOptions) -> ScoringConfig:
    """Check the configuration and resolve the model and the input, before any data is read."""
    data = options.view_as(DataOptions)
    opts = options.view_as(ScoringOptions)
    runner = options.get_all_options().get("runner")
    input_pattern = data.input or DEFAULT_SCORING_INPUT
    dates = score_dates(opts, data, input_pattern)
    check_options(data, opts)
    limits = gate_limits(opts, options)
    model, challenger = resolve_models(data, opts)
    sources = plan_sources(input_pattern, dates, data)
    warehouse = open_warehouse(
        opts.warehouse,
        create_dataset=opts.create_dataset or opts.warehouse == DEFAULT_WAREHOUSE,
        dataset_location=opts.dataset_location,
        lock_timeout=opts.lock_timeout,
    )
    if runner in LOCAL_RUNNERS:  # this machine is the worker: check its accelerator now, not mid-run (last of
        devices.visible_devices(devices.resolve_kind(opts.accelerator))  # the checks: it loads TensorFlow)
    here = workers_here(options)
    staging_dir = staging_folder(opts.staging_dir, warehouse, options, here)
    return ScoringConfig(
        nights=tuple(
            Night(new_run(day, model, challenger, input_pattern, src, data, opts, runner, staging_dir, limits), src)
            for day, src in zip(dates, sources, strict=True)
        ),
        input_format=data.input_format,
        unknown_columns=data.unknown_columns,
        missing_nullable_columns=data.missing_nullable_columns,
        max_record_bytes=data.max_record_bytes,
        split_bytes=data.split_bytes,
        schema=schemas.INPUT.for_scoring(),
        model=model,
        challenger=challenger,
        warehouse=warehouse,
        staging_dir=staging_dir,
        block_bytes=opts.block_bytes,
        batch_size=opts.batch_size,
        accelerator=opts.accelerator,
        models_per_process=opts.models_per_process,
        large_model=opts.large_model,
        progress_seconds=opts.progress_seconds if runner in LOCAL_RUNNERS else 0,
        stale_after=duration(opts.stale_after),
        publish_timeout=duration(opts.publish_timeout).total_seconds(),
        local=runner in LOCAL_RUNNERS,
        training_statistics=statistics.read_baseline(model.path),
        report_dir=report_dir(opts.report_dir, warehouse, staging_dir, here),
        monitoring=opts.monitoring == "on",
        verbose=options.view_as(CommandOptions).verbose,
    )


def score_dates(opts: ScoringOptions, data: DataOptions, input_pattern: str) -> list[date]:
    """The nights to score: --date (default yesterday), or every date from --start_date to --end_date."""
    if not (data.start_date or data.end_date):
        return [parse_date(opts.date, opts.timezone)]
    if opts.date:
        raise ValueError("give --date or --start_date/--end_date, not both")
    if not (data.start_date and data.end_date):
        raise ValueError("a range of nights needs both --start_date and --end_date")
    if "{date}" not in input_pattern and not bigquery_source.is_bigquery_input(input_pattern):
        raise ValueError("a range of nights needs a {date} in --input (or a BigQuery input): each night its own input")
    first, last = (parse_date(value) for value in (data.start_date, data.end_date))
    if last < first:
        raise ValueError(f"--end_date {last} is before --start_date {first}")
    if (last - first).days + 1 > MAX_NIGHTS:
        raise ValueError(f"{(last - first).days + 1} nights from {first} to {last}: at most {MAX_NIGHTS} in one job")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def plan_sources(input_pattern: str, dates: list[date], data: DataOptions) -> list[list[str] | ReadPlan]:
    """Each night's files or BigQuery read session. Every night must have input, as a single night must:
    a range with gaps fails before anything is written, naming them all."""
    sources, missing = [], []
    for day in dates:
        try:
            sources.append(plan_source(input_pattern, day, data))
        except InputNotFoundError:
            if len(dates) == 1:
                raise
            missing.append(day.isoformat())
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise InputNotFoundError(f"no input for {len(missing)} of the {len(dates)} nights: {shown}")
    if len(dates) > 1 and isinstance(sources[0], ReadPlan):
        # One table, many nights: each night's read is named for its night, so that its records,
        # rejections and counts stay its own.
        sources = [
            dataclasses.replace(plan, source=f"{plan.source}@{day.isoformat()}")
            for day, plan in zip(dates, sources, strict=True)
        ]
    elif len(dates) > 1:
        seen: dict[str, date] = {}
        for day, files in zip(dates, sources, strict=True):
            for path in files:
                if path in seen:
                    raise ValueError(f"{path} matches the input of both {seen[path]} and {day}: a file is one night's")
                seen[path] = day
    return sources


def gate_limits(opts: ScoringOptions, options: PipelineOptions) -> GateLimits:
    return GateLimits(
        max_rejected_fraction=opts.max_rejected_fraction,
        max_rejected_records=opts.max_rejected_records,
        min_records=opts.min_records,
        max_volume_ratio=opts.max_volume_ratio,
        max_volume_z=opts.max_volume_z,
        shrink_limit=opts.shrink_limit,
        allow_shrink=opts.allow_shrink,
        drift_gate=opts.drift_gate,
        accept_failures=opts.accept_gate_failures,
        accepted_by=who_runs(options) if opts.accept_gate_failures is not None else None,
    )


def who_runs(options: PipelineOptions) -> str:
    """Who answers for an override: the person at this machine, or the identity a Dataflow job runs as."""
    if options.get_all_options().get("runner") == "DataflowRunner":
        cloud = options.view_as(GoogleCloudOptions)
        if cloud.service_account_email:
            return f"service account {cloud.service_account_email}"
        return f"the default Compute Engine service account of project {cloud.project}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no name
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def check_options(data: DataOptions, opts: ScoringOptions) -> None:
    if (
        (opts.batch_size is not None and opts.batch_size < 1)
        or opts.block_bytes < 1024
        or data.max_record_bytes < opts.block_bytes
        or (data.split_bytes and data.split_bytes < MIN_SPLIT_BYTES)
        or opts.models_per_process < 1
        or opts.progress_seconds < 0
        or opts.lock_timeout < 0
    ):
        raise ValueError(
            "--batch_size and --models_per_process must be positive, --block_bytes at least 1024 and at "
            f"most --max_record_bytes, --split_bytes 0 or at least {MIN_SPLIT_BYTES}, --progress_seconds and "
            "--lock_timeout not negative"
        )
    if opts.monitoring == "off" and opts.drift_gate == "refuse":
        raise ValueError("--drift_gate refuse judges the night's drift, which --monitoring off does not measure")
    if duration(opts.publish_timeout).total_seconds() <= 0:
        raise ValueError("--publish_timeout must be more than 0s")
    if duration(opts.stale_after) < heartbeat.MIN_STALE_AFTER:
        raise ValueError(f"--stale_after must be at least {heartbeat.MIN_STALE_AFTER.total_seconds():g}s")


LOCAL_ENVIRONMENTS = ("LOOPBACK", "PROCESS")  # a portable runner's workers on this machine
LOOPBACK_HOSTS = ("localhost", "::1", "[::1]")
STAGING_UNDER_TEMP = "batch-scoring-staging"  # a remote runner's default staging, under --temp_location


def _loopback(address: str | None) -> bool:
    host = (address or "").rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def workers_here(options: PipelineOptions) -> bool:
    """Whether the job's workers run on this machine, and so share its local folders: the DirectRunner;
    a portable runner whose job runs here (an embedded or loopback job server) with SDK workers that are
    this process (LOOPBACK), its children (PROCESS) or a pool at a loopback address (EXTERNAL). Anything
    else (Dataflow, DOCKER containers, a remote Flink or Spark cluster, whose task managers start the
    PROCESS workers and host a sidecar pool at their own localhost) writes elsewhere."""
    every = options.get_all_options()
    if every.get("runner") in LOCAL_RUNNERS:
        return True
    job_server = every.get("job_endpoint")
    if job_server not in (None, "embed") and not _loopback(job_server):
        return False
    if every.get("flink_master") not in (None, "[local]", "[auto]") and not _loopback(every.get("flink_master")):
        return False
    environment = (every.get("environment_type") or "").upper()
    if environment in LOCAL_ENVIRONMENTS:
        return True
    return environment == "EXTERNAL" and _loopback(every.get("environment_config"))


def is_local_path(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def staging_folder(given: str | None, warehouse: Warehouse, options: PipelineOptions, here: bool) -> str:
    """Where the job stages its files: --staging_dir; else beside the warehouse where workers run here,
    or under --temp_location (as Beam's own BigQuery file loads do) where they run elsewhere. A local
    folder that other machines' workers would write to is refused, naming the option."""
    if here:
        return given or warehouse.default_staging_dir()
    if given:
        if is_local_path(given):
            raise ValueError(
                f"--staging_dir {given} is a local folder, which workers on other machines cannot share: give a "
                "gs://... folder"
            )
        return given
    temp = options.view_as(GoogleCloudOptions).temp_location
    if not temp or is_local_path(temp):
        raise ValueError(
            "--staging_dir is needed: workers on other machines stage the night's files where this launcher "
            "can read them; give --staging_dir gs://... (or --temp_location gs://..., staged under it)"
            + (f"; --temp_location {temp} is a local folder" if temp else "")
        )
    return FileSystems.join(temp, STAGING_UNDER_TEMP)


def report_dir(given: str | None, warehouse: Warehouse, staging_dir: str, here: bool) -> str | None:
    """Where reports go: beside the warehouse where workers run here, else beside the staged files. The
    workers write it, so where they run elsewhere it must be a shared file system: a folder on a
    worker's disk is gone with the worker."""
    if given is not None and given.lower() == "none":
        return None
    chosen = given or (warehouse.default_report_dir() if here else FileSystems.join(staging_dir, "reports"))
    if not here and is_local_path(chosen):
        raise ValueError(
            f"--report_dir {chosen} is a local folder, which workers on other machines cannot share: "
            "give a gs://... folder, or 'none'"
        )
    return chosen


def resolve_models(data: DataOptions, opts: ScoringOptions) -> tuple[ModelVersion, ModelVersion | None]:
    """The champion, and the challenger when one is asked for: usable versions on this schema."""
    model = registry.resolve(data.model_root, data.model_name, opts.model_version, schemas.INPUT)
    if opts.challenger_version is None:
        return model, None
    challenger = registry.resolve(data.model_root, data.model_name, opts.challenger_version, schemas.INPUT)
    if challenger.version == model.version:
        raise ValueError(f"--challenger_version {challenger.version} is the champion version itself")
    return model, challenger


def plan_source(input_pattern: str, score_date: date, data: DataOptions) -> list[str] | ReadPlan:
    """The date's files, or an open BigQuery read session for its rows; an error if there are none."""
    if bigquery_source.is_bigquery_input(input_pattern):
        return bigquery_source.plan_read(
            input_pattern,
            score_date,
            schemas.INPUT,
            data.date_column,
            data.bq_project,
            data.bq_max_streams,
            data.bq_temp_dataset,
            data.missing_nullable_columns,
        )
    return extract.match_input(input_pattern, score_date.isoformat(), data.input_format)


def new_run(
    score_date: date,
    model: ModelVersion,
    challenger: ModelVersion | None,
    input_pattern: str,
    source: list[str] | ReadPlan,
    data: DataOptions,
    opts: ScoringOptions,
    runner: str | None,
    staging_dir: str,
    limits: GateLimits,
) -> RunRecord:
    """The run's identity and the options that matter, as `scoring_runs` records them."""
    started = datetime.now(timezone.utc)
    run_id = f"{score_date.isoformat()}-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    return RunRecord(
        run_id=run_id,
        score_date=score_date,
        model_name=model.name,
        model_version=model.version,
        challenger_version=challenger.version if challenger else None,
        input=input_pattern.format(date=score_date.isoformat()),
        started_at=started,
        options={
            "model_root": data.model_root,
            "model_version": str(opts.model_version),
            "challenger_version": opts.challenger_version,
            "accelerator": opts.accelerator,
            "batch_size": opts.batch_size,
            "models_per_process": opts.models_per_process,
            "large_model": opts.large_model,
            "block_bytes": opts.block_bytes,
            "max_record_bytes": data.max_record_bytes,
            "split_bytes": data.split_bytes,
            "missing_nullable_columns": data.missing_nullable_columns,
            "unknown_columns": data.unknown_columns,
            "runner": runner or "DirectRunner",
            "staging": run_folder(staging_dir, run_id),  # where a reaper finds the run's files
            "stale_after_seconds": duration(opts.stale_after).total_seconds(),  # how often it beats
            "skipped_model_versions": list(model.skipped),
            **({"files": len(source)} if isinstance(source, list) else {"streams": len(source.streams)}),
        },
        limits=limits,
    )


def build_pipeline(pipeline: beam.Pipeline, config: ScoringConfig, bar_dir: str | None = None):
    """Extract -> validate -> score -> load; returns the published counts. `bar_dir`: where the workers
    report bytes read and records scored for a progress bar (None: plain progress lines, if any)."""
    nights = config.by_night()
    if config.files is None:
        read = read_bigquery(pipeline, config)
    else:  # one read over every night's files
        read = pipeline | "ReadTrips" >> ReadInputFiles(
            config.files,
            config.schema,
            config.block_bytes,
            config.input_format,
            config.max_record_bytes,
            config.missing_nullable_columns,
            config.split_bytes,
            bar_dir,
        )
    checked = read["batches"] | "Validate" >> ValidateRecords(config.schema, config.unknown_columns, provenance=True)
    scored = checked.valid | "RunInference" >> RunInference(config.handler(config.model, CHAMPION))
    if config.monitoring:
        # Statistics of the night's valid input and of its champion scores, merged across workers: what
        # its drift is measured with (README: Monitoring). Each is combined where its batches are made
        # (a Flatten of the two first would carry the batches themselves to a new stage).
        kinds, vocabularies = statistics.feature_kinds(), statistics.vocabularies(config.model.path)
        # Keyed by night, so that each night of a range is described by its own records.
        night_statistics = (
            checked.valid
            | "InputByNight" >> beam.Map(nights.keyed)
            | "InputStatistics"
            >> beam.CombinePerKey(statistics.ComputeStatistics(statistics.NIGHT, kinds, vocabularies))
        )
        score_statistics = (
            scored
            | "ScoresByNight" >> beam.Map(nights.keyed)
            | "ScoreStatistics"
            >> beam.CombinePerKey(
                statistics.ComputeStatistics(
                    statistics.NIGHT_SCORES,
                    {statistics.SCORE: statistics.NUMERIC},
                    columns={statistics.SCORE: "probability"},
                )
            )
        )
        monitored = (night_statistics, score_statistics) | "NightStatistics" >> beam.Flatten()
    else:
        monitored = pipeline | "NoStatistics" >> beam.Create([])
    if config.progress_seconds:
        _ = scored | "ReportProgress" >> beam.ParDo(
            ReportProgress(config.runs[0].run_id, config.progress_seconds, bar_dir)
        )
    if not config.local:  # no process waits for a remote job, so its workers keep the run's row alive
        beats = heartbeat.BeatFromWorkers(
            config.warehouse, [run.run_id for run in config.runs], heartbeat.interval(config.stale_after)
        )
        _ = scored | "Heartbeat" >> beam.ParDo(beats)
    if config.challenger is not None:
        challenged = checked.valid | "RunChallenger" >> RunInference(config.handler(config.challenger, CHALLENGER))
        scored = (scored, challenged) | "BothModels" >> beam.Flatten()
    rejected = (read[REJECTED], checked[REJECTED]) | "AllRejected" >> beam.Flatten()
    _ = rejected | "CountRejections" >> beam.ParDo(CountRejections())
    monitoring = Monitoring(
        config.training_statistics, schemas.DRIFT_THRESHOLDS, schemas.DRIFT_NOT_FLAGGED, config.report_dir
    )
    return (scored, rejected, read[COUNTS], checked[VALID_COUNTS], monitored) | "WriteScores" >> LoadToWarehouse(
        config.warehouse,
        nights,
        config.staging_dir,
        monitoring,
        config.publish_timeout,
        fail_job_on_refusal=not config.local,
    )


def read_bigquery(pipeline: beam.Pipeline, config: ScoringConfig) -> dict:
    """Each night's read session, as one set of outputs (a night's read is named for its night)."""
    if len(config.nights) == 1:
        return pipeline | "ReadTrips" >> ReadBigQuery(config.nights[0].source)
    reads = [
        pipeline | f"ReadTrips{night.run.score_date:%Y%m%d}" >> ReadBigQuery(night.source) for night in config.nights
    ]
    return merged_reads(reads, "AllNights")


def _namespace(counters: dict[str, int], namespace: str) -> dict[str, int]:
    return {k.split("/", 1)[1]: v for k, v in counters.items() if k.startswith(namespace + "/")}


def job_metrics(result) -> tuple[dict[str, int], dict[str, Any]]:
    """(counters, counters and distributions) of a pipeline that finished (`result`; None: none)."""
    if result is None:
        return {}, {}
    queried = result.metrics().query(MetricsFilter())
    counters: dict[str, int] = {}
    for m in queried["counters"]:  # one counter may be updated in several steps (staging, both models): summed
        name = f"{m.key.metric.namespace}/{m.key.metric.name}"
        counters[name] = counters.get(name, 0) + (m.committed or 0)
    return counters, {**counters, **distribution_summary(queried["distributions"])}


def summarize(
    config: ScoringConfig,
    run: RunRecord,
    job: tuple[dict[str, int], dict[str, Any]],
    seconds: float,
    reaped: list[dict[str, Any]],
) -> dict[str, Any]:
    """A night's run as its row records it, with the job's Beam metrics (a range's nights share one job,
    so its metrics, stage times and timings are the job's, recorded in each night's row)."""
    counters, metrics = job
    if metrics:
        config.warehouse.record_metrics(run.run_id, metrics)
    row = config.warehouse.run_row(run.run_id)
    scored = row["scored_records"] or 0
    dropped = row["duplicates_dropped"] or 0
    return {
        "run_id": row["run_id"],
        "date": row["score_date"].isoformat(),
        "status": row["status"],
        "error": row["error"],
        "gates": json.loads(row["gates"]) if row["gates"] else [],
        "accepted_failures": row["accepted_failures"],
        "accepted_by": row["accepted_by"],
        "reaped_runs": [r["run_id"] for r in reaped],
        "skipped_model_versions": list(config.model.skipped),
        "model_name": row["model_name"],
        "model_version": row["model_version"],
        "challenger_version": row["challenger_version"],
        "comparison": json.loads(row["comparison"]) if row["comparison"] else None,
        "devices": _namespace(counters, DEVICE_METRICS_NAMESPACE),
        "input": row["input"],
        "input_records": row["input_records"],
        "scored_records": scored,
        "rejected_records": row["rejected_records"],
        "rejected_files": row["rejected_files"],
        "duplicates_dropped": dropped,
        "reconciled": row["input_records"] == scored + (row["rejected_records"] or 0) + dropped,
        "input_files": json.loads(row["input_files"]) if row["input_files"] else {},
        "input_ranges": counters.get(INPUT_RANGES, 0),  # files read whole plus ranges of split files
        "missing_columns": _namespace(counters, "missing_columns"),
        "timings": {
            "started_at": row["started_at"].isoformat(),
            "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
            "seconds": round(seconds, 3),
            "records_per_second": round(row["input_records"] / seconds, 1)
            if seconds and row["input_records"]
            else None,
        },
        "unknown_columns": _namespace(counters, "unknown_columns"),
        # From the warehouse once the night was judged: duplicate keys are resolved there, in SQL.
        "rejected_by_reason": config.warehouse.rejections(run.run_id)
        if row["status"] in (SUCCEEDED, REFUSED)
        else _namespace(counters, REJECTED_BY_REASON),
        "input_looks_like": _namespace(counters, LOOKS_LIKE),  # files by the format they hold instead
        "metrics": metrics,
        "stage_seconds": stage_seconds(counters),
        "warehouse": config.warehouse.location,
        "report_dir": config.report_dir,
        "report": (
            FileSystems.join(config.report_dir, report.report_name(row["score_date"]))
            if counters.get(REPORTS_WRITTEN, 0) >= len(config.nights)  # every night's written
            else None
        ),
    }


def causes(summary: dict[str, Any], top: int = 3) -> str:
    """Why records were rejected, for a refusal's one line: the commonest reasons with their counts, and
    files whose content is another format than their name says. The rest is in the report and
    `refused_errors`. (A range's nights share one job's counters, so each names the job's reasons.)"""
    reasons = sorted(((r, n) for r, n in summary["rejected_by_reason"].items() if n), key=lambda i: (-i[1], i[0]))
    parts = []
    if reasons:
        more = f" and {len(reasons) - top} more reasons" if len(reasons) > top else ""
        parts.append("rejected: " + ", ".join(f"{reason} {records}" for reason, records in reasons[:top]) + more)
    for held, files in sorted(summary["input_looks_like"].items()):
        which = "1 file named as another format holds" if files == 1 else f"{files} files named as another format hold"
        parts.append(f"{which} {held.upper()}: pass --input_format {held} or rename {'it' if files == 1 else 'them'}")
    return "".join(f"; {part}" for part in parts)


def range_summary(config: ScoringConfig, nights: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """A range's job: every night's summary, which were published and which refused, and the totals."""
    refused = [night["date"] for night in nights if night["status"] == REFUSED]
    totals = ("input_records", "scored_records", "rejected_records", "duplicates_dropped")
    return {
        "start_date": nights[0]["date"],
        "end_date": nights[-1]["date"],
        "status": REFUSED if refused else nights[0]["status"] if len({n["status"] for n in nights}) == 1 else "mixed",
        "published": [night["date"] for night in nights if night["status"] == SUCCEEDED],
        "refused": refused,
        "reconciled": all(night["reconciled"] for night in nights),
        **{total: sum(night[total] or 0 for night in nights) for total in totals},
        "seconds": round(seconds, 3),
        "stage_seconds": nights[0]["stage_seconds"],
        "warehouse": config.warehouse.location,
        "nights": nights,
    }


def reap(config: ScoringConfig) -> list[dict[str, Any]]:
    """Runs killed without a word (SIGKILL, a lost machine): marked abandoned, their staged files deleted;
    then the files of runs killed after they finished but before they deleted them."""
    reaped = config.warehouse.reap(config.stale_after, datetime.now(timezone.utc), by=config.runs[0].run_id)
    report_reaped(reaped)
    sweep(config)
    return reaped


def sweep(config: ScoringConfig) -> None:
    """A run deletes its staged files after its commit; one killed in between leaves them, with its row
    finished. Any folder under the staging folder whose run this warehouse knows as finished goes now
    (with what the warehouse staged for it); a running run's, or another warehouse's, stays."""
    try:
        found = FileSystems.match([FileSystems.join(config.staging_dir, "*", "*", "*")])[0].metadata_list
    except Exception:  # nothing staged, or the folder unreadable: tonight's run matters more
        return
    prefix = config.staging_dir.rstrip("/") + "/"
    for run_id in sorted({m.path.removeprefix(prefix).split("/", 1)[0] for m in found}):
        try:
            if config.warehouse.run_row(run_id)["status"] == RUNNING:
                continue
            config.warehouse.drop_staging(run_id)
            delete_tree(run_folder(config.staging_dir, run_id))
        except KeyError:
            continue  # not this warehouse's run
        except Exception as e:
            print(f"warning: staged files of finished run {run_id} stay: {type(e).__name__}: {e}", file=sys.stderr)


def report_reaped(reaped: list[dict[str, Any]]) -> None:
    """Each reaped run said, and its staged files deleted."""
    for row in reaped:
        print(
            f"reaped run {row['run_id']} ({row['score_date']}): no heartbeat since {row['last_seen']}", file=sys.stderr
        )
        staging = row["options"].get("staging")
        try:
            if staging:
                delete_tree(staging)
        except Exception as e:  # tonight's run matters more than last night's leftovers
            print(f"warning: staged files of reaped run {row['run_id']} under {staging} stay: {e}", file=sys.stderr)


def run(argv: list[str] | None = None, pipeline: beam.Pipeline | None = None) -> dict[str, Any]:
    """Score one date, or a range of dates in one job. Raises on bad configuration (nothing written), a
    failed job (its runs marked failed) or a refused night (Refused: marked refused, any other nights of
    the range published; the summary is written first)."""
    options = parse(argv, command.__doc__, DataOptions, ScoringOptions, prog=command.PROG, what=command.WHAT)
    quiet.configure(options.view_as(CommandOptions).verbose)
    FileSystems.set_options(options)  # gs:// and other filesystems take their settings from the options
    overlap_locally(options, sys.argv[1:] if argv is None else argv)
    config = plan(options)
    if options.view_as(TestOptions).dry_run:
        return dry_run(options, config, pipeline)
    if config.warehouse.prepare():
        print(f"new warehouse: {config.warehouse.location}, its tables and views created")
    reaped = reap(config)
    for night_run in config.runs:
        config.warehouse.record_run(night_run)
    run_ids = [night_run.run_id for night_run in config.runs]
    t0 = time.perf_counter()
    result, failure = None, None
    try:
        with (
            heartbeat.Heartbeat(config.warehouse, run_ids, heartbeat.interval(config.stale_after)),
            progress_bar(config) as bar_dir,
            quiet.without_tracebacks(),
        ):
            p = pipeline or beam.Pipeline(options=options)
            build_pipeline(p, config, bar_dir)
            result = p.run()
            result.wait_until_finish()
    except BaseException as e:
        failure = e
    # Data was read: from here every warehouse call waits as publishing does, and nothing is exit code 2.
    with config.warehouse.within(Deadline(config.publish_timeout)):
        if failure is not None:
            discard_failed(config, failure)
            if not isinstance(failure, Exception):
                raise failure
        seconds = time.perf_counter() - t0
        try:
            job = job_metrics(result)
            nights = [summarize(config, night_run, job, seconds, reaped) for night_run in config.runs]
        except Exception as e:
            if failure is None:
                raise RunFailed(
                    f"the job ended but its outcome could not be read from {config.warehouse.location}: "
                    f"{type(e).__name__}: {e}; scoring_runs says whether each night was published"
                ) from e
            nights = None  # the warehouse fails too: the run's own failure is the one to report
    if nights is not None:
        summary = nights[0] if len(nights) == 1 else range_summary(config, nights, seconds)
        write_summary(options.view_as(ScoringOptions).summary_json, summary)
        refused = [night for night in nights if night["status"] == REFUSED]
        if len(nights) == 1 and refused:
            seen = f" (report: {summary['report']})" if summary["report"] else ""
            raise Refused(
                f"{summary['date']} not published, previous results left as they were: {summary['error']}"
                f"{causes(summary)}{seen}",
                summary,
            )
        if refused:
            raise Refused(
                f"{len(refused)} of {len(nights)} nights refused (the others published; the refused nights' "
                "previous results left as they were): "
                + "; ".join(f"{n['date']}: {n['error']}{causes(n)}" for n in refused),
                summary,
            )
    if failure is not None:
        reason = failure_reason(failure)
        which = f"run {run_ids[0]}" if len(run_ids) == 1 else f"the job of {len(run_ids)} nights"
        published = [night["date"] for night in nights or [] if night["status"] == SUCCEEDED]
        if published:  # its commit landed before the failure (a commit whose answer was lost, for one)
            raise RunFailed(
                f"{which} failed after publishing {', '.join(published)} (the other nights' previous results "
                f"left as they were): {reason}"
            ) from failure
        raise RunFailed(f"{which} failed, previous results left as they were: {reason}") from failure
    return summary


TRACEBACK = "Traceback (most recent call last):"


def failure_reason(failure: BaseException) -> str:
    """A failure in one line. A job's failure arrives wrapped by Beam with the worker's traceback in its
    message; after the last traceback's frames (indented lines) comes the exception raised where it
    happened, its message perhaps on several lines (Google's API errors end with the job's location
    and id): that, joined, says what went wrong."""
    text = str(failure)
    if TRACEBACK not in text:
        return f"{type(failure).__name__}: {text}"
    lines = text.rsplit(TRACEBACK, 1)[1].splitlines()
    after = itertools.dropwhile(lambda line: not line or line[0].isspace(), lines)
    raised = " ".join(line.strip() for line in after if line.strip())
    name, _, message = raised.partition(": ")
    return f"{name.rsplit('.', 1)[-1]}: {message}" if message else raised or text.strip().splitlines()[-1]


def discard_failed(config: ScoringConfig, failure: BaseException) -> None:
    """A failed job's runs marked failed (the nights it published keep their status) and what they staged
    deleted. Where the warehouse does not answer, the run's row stays running with its heartbeat stopped:
    the next run marks it abandoned after --stale_after and deletes its files then (README: Faults)."""
    reason = failure_reason(failure)
    run_ids = [night_run.run_id for night_run in config.runs]
    try:
        # Stopped by a signal: a worker thread may be publishing still; its transaction ends first.
        with warehouses.stop_publishing() if isinstance(failure, Terminated) else nullcontext():
            for run_id in run_ids:
                config.warehouse.mark_failed(run_id, reason, datetime.now(timezone.utc))
    except Exception as e:
        print(
            f"warning: {', '.join(run_ids)} could not be marked failed ({type(e).__name__}: {e}); its heartbeat has "
            "stopped, so the next run marks it abandoned after --stale_after",
            file=sys.stderr,
        )
        return  # the reaper deletes its files then, with the warehouse's own staging
    for run_id in run_ids:
        try:
            if config.warehouse.run_row(run_id)["status"] == SUCCEEDED:
                continue  # published before the failure: its files were deleted then
            config.warehouse.drop_staging(run_id)
            delete_tree(run_folder(config.staging_dir, run_id))
        except Exception as e:
            print(f"warning: staged files of failed run {run_id} stay: {type(e).__name__}: {e}", file=sys.stderr)


def overlap_locally(options: PipelineOptions, argv: list[str]) -> None:
    """A local run's default: LOCAL_THREADS bundles at a time, so that one file is parsed while another
    is scored (pyarrow, numpy and TensorFlow release the GIL while they work). Measured on 2 cores at
    10M records: 31.6 s against 33.7 s one bundle at a time (README: Benchmark). Any --direct_* option
    given on the command line is left to decide."""
    if options.get_all_options().get("runner") not in LOCAL_RUNNERS:
        return
    if any(arg.split("=", 1)[0] in ("--direct_running_mode", "--direct_num_workers") for arg in argv):
        return
    direct = options.view_as(DirectOptions)
    direct.direct_running_mode = "multi_threading"
    direct.direct_num_workers = LOCAL_THREADS


def progress_bar(config: ScoringConfig) -> AbstractContextManager[str | None]:
    """A bar by bytes read while the pipeline runs, where a person watches a local run read files; else
    nothing (plain progress lines, if --progress_seconds asks for them)."""
    if not (config.progress_seconds and config.files and progress.wanted()):
        return nullcontext()
    return progress.bar(total_bytes(config.files))


def write_summary(path: str | None, summary: dict[str, Any]) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)


def dry_run(options: PipelineOptions, config: ScoringConfig, pipeline: beam.Pipeline | None) -> dict[str, Any]:
    """Check everything and build the runner's job (DataflowRunner: the job it would submit) without
    running it or writing anything: no run is recorded, no data is read."""
    config.warehouse.prepare(create=False)
    p = pipeline or beam.Pipeline(options=options)
    build_pipeline(p, config)
    # Only DataflowRunner honours dry_run; any other runner would run (and publish) for real.
    result = p.run() if options.get_all_options().get("runner") == "DataflowRunner" else None
    return {
        "dry_run": True,
        "date": config.runs[0].score_date.isoformat(),
        **({"end_date": config.runs[-1].score_date.isoformat()} if len(config.runs) > 1 else {}),
        "run_id": config.runs[0].run_id if len(config.runs) == 1 else [r.run_id for r in config.runs],
        "model_name": config.model.name,
        "model_version": config.model.version,
        "input": config.runs[0].input if len(config.runs) == 1 else [r.input for r in config.runs],
        "warehouse": config.warehouse.location,
        "job": _dataflow_job(result, options),
    }


def _dataflow_job(result, options: PipelineOptions) -> dict[str, Any] | None:
    """The job DataflowRunner would submit, environment included (workers, images, service options).

    Beam fills the environment in only while staging files for a real submission; a dry run builds
    it here from the same options and pipeline, staging nothing."""
    job = getattr(result, "job", None)
    if job is None:  # not a Dataflow dry run
        return None
    from apache_beam.runners.dataflow.internal import apiclient

    environment = apiclient.Environment(
        packages=[],
        options=options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url="(dry run: not staged)",
        proto_pipeline=job.proto_pipeline,
    ).proto
    described = json.loads(job.json())
    described["environment"] = json.loads(type(environment).to_json(environment))
    described["transforms"] = sorted(t.unique_name for t in job.proto_pipeline.components.transforms.values())
    return described


def print_night(summary: dict[str, Any], indent: str = "") -> None:
    """A night's outcome, as the terminal or the scheduler's log shows it."""
    outcome = {SUCCEEDED: "", REFUSED: " REFUSED;"}.get(summary["status"], f" {summary['status']};")
    print(
        f"{indent}{summary['date']}:{outcome} input {summary['input_records']} = scored {summary['scored_records']} "
        f"+ rejected {summary['rejected_records']} + duplicates dropped {summary['duplicates_dropped']} "
        f"({'reconciled' if summary['reconciled'] else 'NOT RECONCILED'}, per file too); "
        f"{summary['rejected_files']} files rejected; model {summary['model_name']} v{summary['model_version']}; "
        f"run {summary['run_id']} in {summary['timings']['seconds']} s -> {summary['warehouse']}"
    )
    indent += "  "
    for device, rows in sorted(summary["devices"].items()):
        print(f"{indent}{device}: {rows} records scored")
    if summary["accepted_failures"]:
        accepted = f"accepted by {summary['accepted_by']}: {summary['accepted_failures']}"
        print(f"{indent}published despite failed gates, {accepted}")
    for reason, rows in sorted(summary["rejected_by_reason"].items()):
        print(f"{indent}rejected, {reason}: {rows}")
    for column, rows in sorted(summary["missing_columns"].items()):
        print(f"{indent}records lacking column {column}: {rows}")
    if summary["comparison"]:
        print(f"{indent}champion vs challenger: " + json.dumps(summary["comparison"], sort_keys=True))
    if summary["report"]:
        print(f"{indent}report: {summary['report']}")
    elif summary["report_dir"]:
        print(f"{indent}warning: the night's report was not written (see the log); the night's outcome stands")


def print_summary(summary: dict[str, Any]) -> None:
    if "nights" not in summary:
        print_night(summary)
        return
    print(
        f"{summary['start_date']} to {summary['end_date']}: {len(summary['nights'])} nights in one job, "
        f"{len(summary['published'])} published, {len(summary['refused'])} refused; input {summary['input_records']} "
        f"= scored {summary['scored_records']} + rejected {summary['rejected_records']} + duplicates dropped "
        f"{summary['duplicates_dropped']} ({'reconciled' if summary['reconciled'] else 'NOT RECONCILED'}); "
        f"{summary['seconds']} s -> {summary['warehouse']}"
    )
    for night in summary["nights"]:
        print_night(night, indent="  ")


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        summary = run(argv)
    except Terminated as e:
        print(f"error: {e}; the run is marked failed and the date left as it was", file=sys.stderr)
        return TERMINATED
    except CONFIG_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Refused as e:
        if e.summary is not None and "nights" in e.summary:
            print_summary(e.summary)  # what was published matters as much as what was not
        print(f"refused: {e}", file=sys.stderr)
        return 3
    if summary.get("dry_run"):
        dates = summary["date"] + (f" to {summary['end_date']}" if "end_date" in summary else "")
        print(
            f"dry run: {dates} with model {summary['model_name']} v{summary['model_version']} from "
            f"{summary['input']} to {summary['warehouse']}: configuration checked, job built, nothing run"
        )
        return 0
    print_summary(summary)
    return 0 if summary["reconciled"] else 1
