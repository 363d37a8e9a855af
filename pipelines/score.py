"""Nightly batch scoring: a date's trips -> validated -> scored by RunInference -> the warehouse.

    python -m pipelines.score --date 2026-11-23 [--input ...] [--warehouse ...] [--model_version N]

Everything that can be checked without reading data (the date, the model version and its files,
the input files, the warehouse tables) is checked first, so bad configuration fails fast and
writes nothing. Runs that were killed are reaped first. The pipeline then flows one way: extract
-> validate -> score -> load, and the night is published only if it passes its quality gates.

Exit codes: 0 published; 1 failed (the date untouched); 2 bad configuration (nothing written);
3 refused by a quality gate (the date untouched, the run and its rows recorded as refused).
"""

from __future__ import annotations

import getpass
import json
import logging
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
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, TestOptions

import schemas
from models import devices, registry
from models.devices import AcceleratorError
from models.handler import DEVICE_METRICS_NAMESPACE, ExportedModelHandler
from models.registry import ModelVersion, ModelVersionError
from pipelines import bigquery_source, extract, progress
from pipelines.batches import COUNTS, REJECTED
from pipelines.bigquery_source import BigQueryInputError, ReadBigQuery, ReadPlan
from pipelines.extract import INPUT_RANGES, InputNotFoundError, ReadInputFiles
from pipelines.load import REPORTS_WRITTEN, LoadToWarehouse, Monitoring
from pipelines.monitoring import report, statistics
from pipelines.observe import (
    REJECTED_BY_REASON,
    CountRejections,
    ReportProgress,
    distribution_summary,
    stage_seconds,
)
from pipelines.options import DEFAULT_SCORING_INPUT, DataOptions, ScoringOptions, duration, parse
from pipelines.ranges import MIN_SPLIT_BYTES, total_bytes
from pipelines.stage import delete_tree, run_folder
from pipelines.validate import VALID_COUNTS, ValidateRecords
from pipelines.warehouses import (
    REFUSED,
    GateLimits,
    RunRecord,
    Warehouse,
    WarehouseConfigError,
    heartbeat,
    open_warehouse,
)
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
    """The night failed a quality gate: the date untouched, the run and its rows kept as refused."""


class Terminated(BaseException):
    """SIGTERM (a scheduler or an operator stopping the job): the run is marked failed on the way out."""


def _terminate(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


@dataclass(frozen=True, kw_only=True)
class ScoringConfig:
    """A fully checked run: what build_pipeline needs, nothing it has to look up."""

    run: RunRecord
    source: list[str] | ReadPlan  # the files to read, or an open BigQuery read session
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
    local: bool  # this process runs the pipeline (and so can heartbeat for it) and waits for it
    training_statistics: bytes | None  # the model version's drift baseline; None for older versions
    report_dir: str | None  # where the night's report goes; None: none
    monitoring: bool  # the night's statistics and drift (--monitoring)

    def handler(self, model: ModelVersion, role: str) -> ExportedModelHandler:
        return ExportedModelHandler(
            model,
            self.schema,
            batch_size=self.batch_size,
            accelerator=self.accelerator,
            models_per_process=self.models_per_process,
            large_model=self.large_model,
            role=role,
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
        raise ValueError(f"--date {value!r} is not a real date in YYYY-MM-DD form") from None


def plan(options: PipelineOptions) -> ScoringConfig:
    """Check the configuration and resolve the model and the input, before any data is read."""
    data = options.view_as(DataOptions)
    opts = options.view_as(ScoringOptions)
    runner = options.get_all_options().get("runner")
    score_date = parse_date(opts.date, opts.timezone)
    check_options(data, opts)
    model, challenger = resolve_models(data, opts)
    if runner in LOCAL_RUNNERS:  # this machine is the worker: check its accelerator now, not mid-run
        devices.visible_devices(devices.resolve_kind(opts.accelerator))
    input_pattern = data.input or DEFAULT_SCORING_INPUT
    source = plan_source(input_pattern, score_date, data)
    warehouse = open_warehouse(
        opts.warehouse,
        create_dataset=opts.create_dataset,
        dataset_location=opts.dataset_location,
        lock_timeout=opts.lock_timeout,
    )
    staging_dir = opts.staging_dir or warehouse.default_staging_dir()
    limits = gate_limits(opts, options)
    return ScoringConfig(
        run=new_run(score_date, model, challenger, input_pattern, source, data, opts, runner, staging_dir, limits),
        source=source,
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
        local=runner in LOCAL_RUNNERS,
        training_statistics=statistics.read_baseline(model.path),
        report_dir=report_dir(opts.report_dir, warehouse, staging_dir, runner in LOCAL_RUNNERS),
        monitoring=opts.monitoring == "on",
    )


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
    if duration(opts.stale_after) < heartbeat.MIN_STALE_AFTER:
        raise ValueError(f"--stale_after must be at least {heartbeat.MIN_STALE_AFTER.total_seconds():g}s")


def report_dir(given: str | None, warehouse: Warehouse, staging_dir: str, local: bool) -> str | None:
    """Where reports go. A remote runner's workers write it, so it must be a shared file system: a
    folder on a worker's disk is gone with the worker."""
    if given is not None and given.lower() == "none":
        return None
    chosen = given or (warehouse.default_report_dir() if local else FileSystems.join(staging_dir, "reports"))
    if not local and FileSystems.get_scheme(chosen) in (None, "file"):
        raise ValueError(
            f"--report_dir {chosen} is a local folder, which a remote runner's workers cannot share: "
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
    if isinstance(config.source, ReadPlan):
        read = pipeline | "ReadTrips" >> ReadBigQuery(config.source)
    else:
        read = pipeline | "ReadTrips" >> ReadInputFiles(
            config.source,
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
        night_statistics = (
            checked.valid
            | "InputStatistics"
            >> beam.CombineGlobally(
                statistics.ComputeStatistics(statistics.NIGHT, kinds, vocabularies)
            ).without_defaults()
        )
        score_statistics = (
            scored
            | "ScoreStatistics"
            >> beam.CombineGlobally(
                statistics.ComputeStatistics(
                    statistics.NIGHT_SCORES,
                    {statistics.SCORE: statistics.NUMERIC},
                    columns={statistics.SCORE: "probability"},
                )
            ).without_defaults()
        )
        monitored = (night_statistics, score_statistics) | "NightStatistics" >> beam.Flatten()
    else:
        monitored = pipeline | "NoStatistics" >> beam.Create([])
    if config.progress_seconds:
        _ = scored | "ReportProgress" >> beam.ParDo(ReportProgress(config.run.run_id, config.progress_seconds, bar_dir))
    if not config.local:  # no process waits for a remote job, so its workers keep the run's row alive
        beats = heartbeat.BeatFromWorkers(config.warehouse, config.run.run_id, heartbeat.interval(config.stale_after))
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
        config.warehouse, config.run, config.staging_dir, monitoring, fail_job_on_refusal=not config.local
    )


def _namespace(counters: dict[str, int], namespace: str) -> dict[str, int]:
    return {k.split("/", 1)[1]: v for k, v in counters.items() if k.startswith(namespace + "/")}


def summarize(config: ScoringConfig, result, seconds: float, reaped: list[dict[str, Any]]) -> dict[str, Any]:
    """The run as its row records it, with the Beam metrics of a pipeline that finished (`result`)."""
    counters, metrics = {}, {}
    if result is not None:
        queried = result.metrics().query(MetricsFilter())
        counters = {f"{m.key.metric.namespace}/{m.key.metric.name}": m.committed for m in queried["counters"]}
        metrics = {**counters, **distribution_summary(queried["distributions"])}
        config.warehouse.record_metrics(config.run.run_id, metrics)
    row = config.warehouse.run_row(config.run.run_id)
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
        "rejected_by_reason": _namespace(counters, REJECTED_BY_REASON),
        "metrics": metrics,
        "stage_seconds": stage_seconds(counters),
        "warehouse": config.warehouse.location,
        "report_dir": config.report_dir,
        "report": (
            FileSystems.join(config.report_dir, report.report_name(row["score_date"]))
            if counters.get(REPORTS_WRITTEN)
            else None
        ),
    }


def reap(config: ScoringConfig) -> list[dict[str, Any]]:
    """Runs killed without a word (SIGKILL, a lost machine): marked abandoned, their staged files deleted."""
    reaped = config.warehouse.reap(config.stale_after, datetime.now(timezone.utc), by=config.run.run_id)
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
    return reaped


def run(argv: list[str] | None = None, pipeline: beam.Pipeline | None = None) -> dict[str, Any]:
    """Score one date. Raises on bad configuration (nothing written), a failed run (marked failed) or a
    refused night (Refused: marked refused; the summary is written first)."""
    options = parse(argv, __doc__, DataOptions, ScoringOptions)
    FileSystems.set_options(options)  # gs:// and other filesystems take their settings from the options
    config = plan(options)
    if options.view_as(TestOptions).dry_run:
        return dry_run(options, config, pipeline)
    config.warehouse.prepare()
    reaped = reap(config)
    config.warehouse.record_run(config.run)
    t0 = time.perf_counter()
    result, failure = None, None
    try:
        with (
            heartbeat.Heartbeat(config.warehouse, config.run.run_id, heartbeat.interval(config.stale_after)),
            progress_bar(config) as bar_dir,
        ):
            p = pipeline or beam.Pipeline(options=options)
            build_pipeline(p, config, bar_dir)
            result = p.run()
            result.wait_until_finish()
    except BaseException as e:
        failure = e
        reason = f"{type(e).__name__}: {e}"
        config.warehouse.mark_failed(config.run.run_id, reason, datetime.now(timezone.utc))
        if not isinstance(e, Exception):
            raise
    try:
        summary = summarize(config, result, time.perf_counter() - t0, reaped)
    except Exception:
        if failure is None:
            raise
        summary = None  # the warehouse fails too: the run's own failure is the one to report
    if summary is not None:
        write_summary(options.view_as(ScoringOptions).summary_json, summary)
        if summary["status"] == REFUSED:
            seen = f" (report: {summary['report']})" if summary["report"] else ""
            raise Refused(
                f"{summary['date']} not published, previous results left as they were: {summary['error']}{seen}"
            )
    if failure is not None:
        reason = f"{type(failure).__name__}: {failure}"
        raise RunFailed(f"run {config.run.run_id} failed, previous results left as they were: {reason}") from failure
    return summary


def progress_bar(config: ScoringConfig) -> AbstractContextManager[str | None]:
    """A bar by bytes read while the pipeline runs, where a person watches a local run read files; else
    nothing (plain progress lines, if --progress_seconds asks for them)."""
    if not (config.progress_seconds and isinstance(config.source, list) and progress.wanted()):
        return nullcontext()
    return progress.bar(total_bytes(config.source))


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
        "date": config.run.score_date.isoformat(),
        "run_id": config.run.run_id,
        "model_name": config.model.name,
        "model_version": config.model.version,
        "input": config.run.input,
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


def main(argv: list[str]) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        summary = run(argv)
    except Terminated as e:
        print(f"error: {e}; the run is marked failed and the date left as it was", file=sys.stderr)
        return 143
    except CONFIG_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Refused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 3
    if summary.get("dry_run"):
        print(
            f"dry run: {summary['date']} with model {summary['model_name']} v{summary['model_version']} from "
            f"{summary['input']} to {summary['warehouse']}: configuration checked, job built, nothing run"
        )
        return 0
    print(
        f"{summary['date']}: input {summary['input_records']} = scored {summary['scored_records']} "
        f"+ rejected {summary['rejected_records']} + duplicates dropped {summary['duplicates_dropped']} "
        f"({'reconciled' if summary['reconciled'] else 'NOT RECONCILED'}, per file too); "
        f"{summary['rejected_files']} files rejected; model {summary['model_name']} v{summary['model_version']}; "
        f"run {summary['run_id']} in {summary['timings']['seconds']} s -> {summary['warehouse']}"
    )
    for device, rows in sorted(summary["devices"].items()):
        print(f"  {device}: {rows} records scored")
    if summary["accepted_failures"]:
        print(f"  published despite failed gates, accepted by {summary['accepted_by']}: {summary['accepted_failures']}")
    for reason, rows in sorted(summary["rejected_by_reason"].items()):
        print(f"  rejected, {reason}: {rows}")
    for column, rows in sorted(summary["missing_columns"].items()):
        print(f"  records lacking column {column}: {rows}")
    if summary["comparison"]:
        print("  champion vs challenger: " + json.dumps(summary["comparison"], sort_keys=True))
    if summary["report"]:
        print(f"  report: {summary['report']}")
    elif summary["report_dir"]:
        print("  warning: the night's report was not written (see the log); the night itself is published")
    return 0 if summary["reconciled"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
