"""What a run tells the people watching it: rejections by reason and source, live progress locally.

Counters are Beam metrics, so they reach the run summary and `scoring_runs.metrics` on every runner
(and the Dataflow job page). Progress is for a terminal: it is added to local runs only, where the
pipeline runs in this process (or in worker processes that share its terminal).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipelines.metrics import REJECTED_BY_REASON, REJECTED_BY_SOURCE, STEP_MICROSECONDS
from pipelines.progress import Tally

STEPS = ("extract", "validate", "to_tensors", "model", "stage", "publish")  # as the summary lists them


def add_seconds(counter, seconds: float) -> None:
    counter.inc(int(seconds * 1e6))


def step_seconds(counters: dict[str, int]) -> dict[str, float]:
    """Seconds of work per step from the run's counters ('namespace/name': value), in STEPS order."""
    spent = {k.split("/", 1)[1]: v / 1e6 for k, v in counters.items() if k.startswith(STEP_MICROSECONDS + "/")}
    return {step: round(spent[step], 3) for step in STEPS if step in spent}


def timed(counter, items: Iterator) -> Iterator:
    """Yields what `items` yields, adding to `counter` only the time spent making each item: in a
    fused Beam step a yield runs the next steps before it returns, and that is their time."""
    total, t = 0.0, time.perf_counter()
    for item in items:
        total += time.perf_counter() - t
        yield item
        t = time.perf_counter()
    add_seconds(counter, total + time.perf_counter() - t)


class CountRejections(beam.DoFn):
    """Rejected input records per reason code and per source (a file error counts the records it stands
    for), one counter update per distinct value per batch."""

    def process(self, rejected: pa.RecordBatch) -> Iterator:
        table = pa.Table.from_batches([rejected])
        for column, namespace in (("reason", REJECTED_BY_REASON), ("source", REJECTED_BY_SOURCE)):
            sums = table.group_by(column).aggregate([("records", "sum")])
            for value, records in zip(
                sums.column(column).to_pylist(), sums.column("records_sum").to_pylist(), strict=True
            ):
                Metrics.counter(namespace, value or "unknown").inc(records or 0)
        return iter(())


class _Progress:
    """Rows scored in this process so far; shared by the DoFn's instances and threads."""

    def __init__(self, started: float) -> None:
        self.lock = threading.Lock()
        self.rows = 0
        self.last_report = started


_PROGRESS: dict[str, _Progress] = {}


class ReportProgress(beam.DoFn):
    """Prints 'N records scored, R records/s' at most every `seconds` while a local run scores; or, where
    a progress bar is drawn (`bar_dir`: on a terminal), adds the records to the bar's tally instead.

    The rate counts from when the pipeline was built, so it is the rate the user waits at: model
    loading and reading included."""

    def __init__(self, run_id: str, seconds: float, bar_dir: str | None = None):
        self._run_id = run_id
        self._seconds = seconds
        self._bar_dir = bar_dir
        self._started = time.time()  # wall clock: worker processes compare it with their own
        self._main_pid = os.getpid()

    def setup(self) -> None:
        self._progress = _PROGRESS.setdefault(self._run_id, _Progress(self._started))

    def finish_bundle(self) -> None:
        if self._bar_dir:
            Tally.of(self._bar_dir).add("records", 0, flush=True)

    def process(self, batch: pa.RecordBatch) -> Iterator:
        if self._bar_dir:
            Tally.of(self._bar_dir).add("records", batch.num_rows)
            return iter(())
        now = time.time()
        progress = self._progress
        with progress.lock:
            progress.rows += batch.num_rows
            if now - progress.last_report < self._seconds:
                return iter(())
            progress.last_report = now
            rows = progress.rows
        where = "" if os.getpid() == self._main_pid else f" (worker process {os.getpid()})"
        print(
            f"progress{where}: {rows:,} records scored, {rows / max(now - self._started, 1e-3):,.0f} records/s",
            file=sys.stderr,
            flush=True,
        )
        return iter(())


def distribution_summary(distributions) -> dict[str, float]:
    """Beam distributions (batch sizes, inference latency) as count/sum/min/max/mean entries."""
    summary = {}
    for m in distributions:
        d = m.committed
        if d is None or not d.count:
            continue
        name = f"{m.key.metric.namespace}/{m.key.metric.name}"
        summary.update(
            {
                f"{name}.count": d.count,
                f"{name}.sum": d.sum,
                f"{name}.min": d.min,
                f"{name}.max": d.max,
                f"{name}.mean": round(d.sum / d.count, 3),
            }
        )
    return summary
