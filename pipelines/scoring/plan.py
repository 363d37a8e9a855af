"""Planning a scoring job: the command's options to a frozen `ScoringConfig`, every check before data.

Everything that can be checked without reading data (the dates, the options, the gates' limits, the
model versions and their files, the input, the warehouse's tables) is checked here, so that bad
configuration fails fast and writes nothing. The accelerator check, which loads TensorFlow, comes last.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from models import devices, registry
from models.registry import ModelVersion
from pipelines.choices import DriftGate, Switch
from pipelines.defaults import default_warehouse
from pipelines.load import PublishSettings
from pipelines.monitoring import statistics
from pipelines.monitoring.measure import NightMonitor
from pipelines.options import CommandOptions, DataOptions, ScoringOptions
from pipelines.parsing import duration
from pipelines.scoring.config import InferenceSettings, MonitoringSettings, Night, ScoringConfig
from pipelines.scoring.placement import LOCAL_RUNNERS, report_dir, staging_folder, workers_here
from pipelines.sources import NightInput, ReadSettings, Source, open_source
from pipelines.sources.shards import MIN_SPLIT_BYTES
from pipelines.staged import run_folder
from pipelines.warehouses import (
    UNGUARDED,
    GateLimits,
    PublishGuard,
    RunRecord,
    Warehouse,
    heartbeat,
    open_warehouse,
)
from schemas import UseCase, load_use_case

MAX_NIGHTS = 366  # a year, leap day included, in one job


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


def plan(options: PipelineOptions, guard: PublishGuard | None = None) -> ScoringConfig:
    """Check the configuration and resolve the model and the input, before any data is read. `guard`:
    held around each publishing transaction (the job's SIGTERM guard; None: none)."""
    data = options.view_as(DataOptions)
    opts = options.view_as(ScoringOptions)
    runner = options.get_all_options().get("runner")
    local = runner in LOCAL_RUNNERS  # this process runs the pipeline: its machine is the worker
    use_case = load_use_case(data.use_case)
    settings = ReadSettings.from_options(data, opts.block_bytes)
    source = open_source(data.input_or(use_case.scoring_input, use_case.name), use_case.input.for_scoring(), settings)
    dates = score_dates(opts, data, source)
    check_options(data, opts)
    limits = gate_limits(opts, options)
    inference = resolve_models(data, opts, options.view_as(CommandOptions).verbose, use_case)
    inputs = source.plan_nights(dates)
    warehouse = warehouse_of(opts, use_case)
    if local:  # check the accelerator now, not mid-run (last of the checks: it loads TensorFlow)
        devices.visible_devices(devices.resolve_kind(opts.accelerator))
    here = workers_here(options)
    staging_dir = staging_folder(opts.staging_dir, warehouse, options, here)
    recorded = {
        **inference.recorded(data.model_root),
        **source.settings.recorded(),
        "unknown_columns": data.unknown_columns,
        "runner": runner or "DirectRunner",
        "stale_after_seconds": duration(opts.stale_after).total_seconds(),  # how often it beats
    }
    publishing = PublishSettings(
        warehouse,
        staging_dir,
        duration(opts.publish_timeout).total_seconds(),
        fail_job_on_refusal=not local,
        # A remote worker's process never sees this launcher's SIGTERM: the guard stays here.
        guard=guard if guard is not None and local else UNGUARDED,
    )
    monitor = NightMonitor(
        statistics.read_baseline(inference.model.path),
        use_case.drift,
        report_dir(opts.report_dir, warehouse, staging_dir, here),
    )
    return ScoringConfig(
        use_case=use_case,
        nights=tuple(
            Night(new_run(day, inference, source, night, recorded, staging_dir, limits), night)
            for day, night in zip(dates, inputs, strict=True)
        ),
        source=source,
        unknown_columns=data.unknown_columns,
        inference=inference,
        monitoring=MonitoringSettings(opts.monitoring == Switch.ON, monitor),
        publishing=publishing,
        stale_after=duration(opts.stale_after),
        progress_seconds=opts.progress_seconds if local else 0,
        local=local,
    )


def score_dates(opts: ScoringOptions, data: DataOptions, source: Source) -> list[date]:
    """The nights to score: --date (default yesterday), or every date from --start_date to --end_date."""
    if not (data.start_date or data.end_date):
        return [parse_date(opts.date, opts.timezone)]
    if opts.date:
        raise ValueError("give --date or --start_date/--end_date, not both")
    if not (data.start_date and data.end_date):
        raise ValueError("a range of nights needs both --start_date and --end_date")
    if not source.dated:
        raise ValueError("a range of nights needs a {date} in --input (or a BigQuery input): each night its own input")
    first, last = (parse_date(value) for value in (data.start_date, data.end_date))
    if last < first:
        raise ValueError(f"--end_date {last} is before --start_date {first}")
    if (last - first).days + 1 > MAX_NIGHTS:
        raise ValueError(f"{(last - first).days + 1} nights from {first} to {last}: at most {MAX_NIGHTS} in one job")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


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
    if opts.monitoring == Switch.OFF and opts.drift_gate == DriftGate.REFUSE:
        raise ValueError("--drift_gate refuse judges the night's drift, which --monitoring off does not measure")
    if duration(opts.publish_timeout).total_seconds() <= 0:
        raise ValueError("--publish_timeout must be more than 0s")
    if duration(opts.stale_after) < heartbeat.MIN_STALE_AFTER:
        raise ValueError(f"--stale_after must be at least {heartbeat.MIN_STALE_AFTER.total_seconds():g}s")


def warehouse_of(opts: ScoringOptions, use_case: UseCase) -> Warehouse:
    """The use case's warehouse: the default one, or a new BigQuery dataset when asked, is made."""
    # Not given is the default; given empty is refused by the warehouse, as any other bad location.
    default = default_warehouse(use_case.name)
    location = default if opts.warehouse is None else opts.warehouse
    return open_warehouse(
        location,
        use_case,
        create_dataset=opts.create_dataset or location == default,
        dataset_location=opts.dataset_location,
        lock_timeout=opts.lock_timeout,
    )


def resolve_models(data: DataOptions, opts: ScoringOptions, verbose: bool, use_case: UseCase) -> InferenceSettings:
    """The champion, and the challenger when one is asked for: versions of the use case, on its schema."""
    name = data.model_name_or(use_case.model_name)
    model = registry.resolve(data.model_root, name, opts.model_version, use_case)
    challenger: ModelVersion | None = None
    if opts.challenger_version is not None:
        challenger = registry.resolve(data.model_root, name, opts.challenger_version, use_case)
        if challenger.version == model.version:
            raise ValueError(f"--challenger_version {challenger.version} is the champion version itself")
    return InferenceSettings(
        model=model,
        challenger=challenger,
        requested_version=str(opts.model_version),
        requested_challenger=opts.challenger_version,
        batch_size=opts.batch_size,
        accelerator=opts.accelerator,
        models_per_process=opts.models_per_process,
        large_model=opts.large_model,
        verbose=verbose,
    )


def new_run(
    score_date: date,
    inference: InferenceSettings,
    source: Source,
    night: NightInput,
    recorded: dict,
    staging_dir: str,
    limits: GateLimits,
) -> RunRecord:
    """The night's run: its identity, and the job's recorded options with the night's own."""
    started = datetime.now(timezone.utc)
    run_id = f"{score_date.isoformat()}-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    return RunRecord(
        run_id=run_id,
        score_date=score_date,
        model_name=inference.model.name,
        model_version=inference.model.version,
        challenger_version=inference.challenger.version if inference.challenger else None,
        input=source.input_of(score_date),
        started_at=started,
        options={
            **recorded,
            "staging": run_folder(staging_dir, run_id),  # where a reaper finds the run's files
            **night.recorded(),
        },
        limits=limits,
    )
