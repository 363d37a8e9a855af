"""A running run's sign of life, so that a killed one can be told from a slow one.

A run stamps `heartbeat_at` in its row several times per --stale_after; the next run marks a running
run whose stamp is older abandoned and deletes what it staged. The process that waits for the
pipeline stamps it from a thread (local runners); on a remote runner the launcher does not wait, so
the workers stamp it as they score, each at most once per interval.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import apache_beam as beam

from pipelines.warehouses.contract import Warehouse

BEATS_PER_PERIOD = 6  # a run misses five beats in a row before it can be taken for dead
MIN_INTERVAL, MAX_INTERVAL = 0.25, 300.0
MIN_STALE_AFTER = timedelta(seconds=BEATS_PER_PERIOD * MIN_INTERVAL)

log = logging.getLogger(__name__)


def interval(stale_after: timedelta) -> float:
    """Seconds between beats for a --stale_after."""
    return min(max(stale_after.total_seconds() / BEATS_PER_PERIOD, MIN_INTERVAL), MAX_INTERVAL)


def beat(warehouse: Warehouse, run_id: str | Sequence[str], unless_within: timedelta | None = None) -> None:
    """One stamp (of one run, or of a job's runs in one statement); a missed one is logged, never fatal:
    the run itself is what matters."""
    try:
        warehouse.heartbeat(run_id, datetime.now(timezone.utc), unless_within)
    except Exception as e:  # the warehouse busy or unreachable for a moment
        log.warning("heartbeat of run %s failed: %s", run_id, e)


class Heartbeat:
    """Stamps the rows of the job's runs (one per night) every `seconds` from a thread while the caller
    waits for the pipeline. A run that has finished is left as it is (the stamp needs `running`)."""

    def __init__(self, warehouse: Warehouse, run_ids: str | Sequence[str], seconds: float):
        self._warehouse, self._seconds = warehouse, seconds
        self._run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self._run_ids[0]}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._seconds):
            beat(self._warehouse, self._run_ids)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class BeatFromWorkers(beam.DoFn):
    """Stamps the rows of the job's runs as batches pass, at most once per `seconds` per DoFn instance
    (one per worker thread), and only when no other worker stamped them lately."""

    def __init__(self, warehouse: Warehouse, run_ids: Sequence[str], seconds: float):
        self._warehouse, self._run_ids, self._seconds = warehouse, list(run_ids), seconds

    def setup(self) -> None:
        self._last = -math.inf  # the first batch beats

    def process(self, _):
        if time.monotonic() - self._last >= self._seconds:
            self._last = time.monotonic()
            # Another worker's recent stamp will do: one row, many workers, few writes.
            beat(self._warehouse, self._run_ids, unless_within=timedelta(seconds=self._seconds / 2))
        return iter(())
