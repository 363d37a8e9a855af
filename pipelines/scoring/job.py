"""Running a scoring job: reap what killed runs left, record the runs, run the graph with its
heartbeat, then mark, clean up and summarise; a dry run builds the job and runs nothing. SIGTERM (a
scheduler or an operator stopping the job) is caught here and handed to publishing as its guard.

Exit codes: 0 published; 1 failed (the date untouched); 2 bad configuration (nothing written); 3 refused
by a quality gate (the date untouched, the run and its rows recorded as refused); 143 stopped by SIGTERM.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timezone
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, TestOptions

from models import quiet
from models.devices import AcceleratorError
from models.registry import ModelVersionError
from pipelines import progress
from pipelines.arguments import TERMINATED
from pipelines.batches import returning_memory_pool
from pipelines.options import CommandOptions, ScoringOptions
from pipelines.scoring.config import ScoringConfig
from pipelines.scoring.graph import build_pipeline
from pipelines.scoring.placement import LOCAL_RUNNERS
from pipelines.scoring.plan import plan
from pipelines.scoring.summary import causes, job_metrics, print_summary, range_summary, summarize, write_summary
from pipelines.sources import InputNotFoundError, SourceConfigError
from pipelines.staged import delete_tree, run_folder
from pipelines.warehouses import REFUSED, RUNNING, SUCCEEDED, PublishingStopped, WarehouseConfigError, heartbeat
from pipelines.warehouses.deadline import Deadline

CONFIG_ERRORS = (
    InputNotFoundError,
    SourceConfigError,
    ModelVersionError,
    WarehouseConfigError,
    AcceleratorError,
    ValueError,
)
LOCAL_THREADS = 2  # bundles a local run works on at once, unless told otherwise (overlap_locally)
TRACEBACK = "Traceback (most recent call last):"


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


class SigtermGuard:
    """The job's publishing guard (`warehouses.PublishGuard`). A run stopped by SIGTERM must leave its
    night as it was. Where the pipeline runs on threads of this process, the signal reaches the main
    thread while a worker thread may be publishing: the worker checks the flag just before its
    transaction, and the main thread waits for a transaction in flight to end before it marks the run
    failed (`stopped`). The state is the process's (class attributes), so that the copy a local runner
    unpickles for its worker threads is the same guard; a remote worker's process is never stopped."""

    _stopping = threading.Event()
    _transaction = threading.Lock()

    @contextmanager
    def transaction(self, run_id: str) -> Iterator[None]:
        with self._transaction:
            if self._stopping.is_set():
                raise PublishingStopped(f"run {run_id} is stopping: its night is not published")
            yield

    @classmethod
    def stop(cls) -> None:
        """Called from the signal handler: from now on, this process starts no publishing transaction."""
        cls._stopping.set()

    @classmethod
    @contextmanager
    def stopped(cls) -> Iterator[None]:
        """No publishing transaction of this process runs or starts while the block runs."""
        cls._stopping.set()
        with cls._transaction:
            yield


def _terminate(signum, frame):
    SigtermGuard.stop()  # worker threads of this process publish nothing from now on
    raise Terminated(f"terminated by signal {signum}")


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
        found = FileSystems.match([FileSystems.join(config.publishing.staging_dir, "*", "*", "*")])[0].metadata_list
    except Exception:  # nothing staged, or the folder unreadable: tonight's run matters more
        return
    prefix = config.publishing.staging_dir.rstrip("/") + "/"
    for run_id in sorted({m.path.removeprefix(prefix).split("/", 1)[0] for m in found}):
        try:
            if config.warehouse.run_row(run_id)["status"] == RUNNING:
                continue
            config.warehouse.drop_staging(run_id)
            delete_tree(run_folder(config.publishing.staging_dir, run_id))
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


def run_job(options: PipelineOptions, argv: list[str], pipeline: beam.Pipeline | None = None) -> dict[str, Any]:
    """Score one date, or a range of dates in one job, from the command's parsed options (`argv`: as
    given, for the options Beam leaves to the command line). Raises on bad configuration (nothing
    written), a failed job (its runs marked failed) or a refused night (Refused: marked refused, any
    other nights of the range published; the summary is written first)."""
    quiet.configure(options.view_as(CommandOptions).verbose)
    returning_memory_pool()  # this process's steps, where workers run here; remote workers set theirs up
    FileSystems.set_options(options)  # gs:// and other filesystems take their settings from the options
    overlap_locally(options, argv)
    config = plan(options, SigtermGuard())
    if options.view_as(TestOptions).dry_run:
        return dry_run(options, config, pipeline)
    if config.warehouse.prepare():
        print(f"new warehouse: {config.warehouse.location}, its tables and views created")
    reaped = reap(config)
    for night_run in config.runs:
        config.warehouse.record_run(night_run)
    t0 = time.perf_counter()
    result, failure = run_graph(config, options, pipeline)
    # Data was read: from here every warehouse call waits as publishing does, and nothing is exit code 2.
    with config.warehouse.within(Deadline(config.publishing.timeout)):
        if failure is not None:
            discard_failed(config, failure)
            if not isinstance(failure, Exception):
                raise failure
        seconds = time.perf_counter() - t0
        nights = outcome(config, result, failure, seconds, reaped)
    summary = None
    if nights is not None:
        summary = nights[0] if len(nights) == 1 else range_summary(config, nights, seconds)
        write_summary(options.view_as(ScoringOptions).summary_json, summary)
        refuse(summary, nights)
    if failure is not None:
        raise failed(config, failure, nights)
    return summary


def run_graph(config: ScoringConfig, options: PipelineOptions, pipeline: beam.Pipeline | None) -> tuple:
    """(the finished pipeline's result, or None; what stopped it, or None), the runs heartbeating
    meanwhile."""
    run_ids = [night_run.run_id for night_run in config.runs]
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
        return None, e
    return result, None


def outcome(config: ScoringConfig, result, failure: BaseException | None, seconds: float, reaped: list) -> list | None:
    """Each night's summary, as the warehouse recorded it; None where the warehouse cannot say and the
    job failed anyway (its own failure is the one to report)."""
    try:
        job = job_metrics(result)
        return [summarize(config, night_run, job, seconds, reaped) for night_run in config.runs]
    except Exception as e:
        if failure is None:
            raise RunFailed(
                f"the job ended but its outcome could not be read from {config.warehouse.location}: "
                f"{type(e).__name__}: {e}; scoring_runs says whether each night was published"
            ) from e
        return None


def refuse(summary: dict[str, Any], nights: list[dict[str, Any]]) -> None:
    """Refused, where a night was: saying why, and for a range which nights were published."""
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


def failed(config: ScoringConfig, failure: BaseException, nights: list | None) -> RunFailed:
    """The job's failure in one line, naming the nights it published before it failed."""
    reason = failure_reason(failure)
    run_ids = [night_run.run_id for night_run in config.runs]
    which = f"run {run_ids[0]}" if len(run_ids) == 1 else f"the job of {len(run_ids)} nights"
    published = [night["date"] for night in nights or [] if night["status"] == SUCCEEDED]
    if published:  # its commit landed before the failure (a commit whose answer was lost, for one)
        error = RunFailed(
            f"{which} failed after publishing {', '.join(published)} (the other nights' previous results "
            f"left as they were): {reason}"
        )
    else:
        error = RunFailed(f"{which} failed, previous results left as they were: {reason}")
    error.__cause__ = failure
    return error


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
        with SigtermGuard.stopped() if isinstance(failure, Terminated) else nullcontext():
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
            delete_tree(run_folder(config.publishing.staging_dir, run_id))
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
    if not (config.progress_seconds and progress.wanted()):
        return nullcontext()
    total = config.source.total_bytes([night.input for night in config.nights])
    return nullcontext() if total is None else progress.bar(total)


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
        "model_name": config.inference.model.name,
        "model_version": config.inference.model.version,
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


def main(options: PipelineOptions, argv: list[str]) -> int:
    """The command, from its parsed options: runs the job and says how it ended. Returns the exit code."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        summary = run_job(options, argv)
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
