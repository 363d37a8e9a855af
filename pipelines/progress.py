"""A local run's progress bar on a terminal: bytes read of the night's input bytes, records/s and an ETA.

The bar is drawn by the process that waits for the pipeline, but the bytes are read by the pipeline's
workers, which on `--direct_running_mode multi_processing` are other processes. So each worker process
adds what it reads and scores to a small file of its own in a folder the run made, and the bar sums
those files twice a second. Beam metrics would be the natural channel, but DirectRunner reports them
only when the pipeline is done. Logs, pipes and Dataflow get no bar: plain lines (observe.ReportProgress).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

WRITE_EVERY = 0.25  # seconds between a worker process's updates of its file
DRAW_EVERY = 0.5  # seconds between redraws of the bar


class Tally:
    """What this worker process has read (bytes) and scored (records) for one run, written to its file."""

    _open: dict[str, Tally] = {}
    _lock = threading.Lock()

    def __init__(self, folder: str):
        self._path = os.path.join(folder, f"{os.getpid()}.json")
        self._counts = {"bytes": 0, "records": 0}
        self._written = 0.0

    @classmethod
    def of(cls, folder: str) -> Tally:
        """The process's one tally for the run: DoFn instances and threads share it."""
        with cls._lock:
            key = f"{os.getpid()}:{folder}"
            if key not in cls._open:
                cls._open[key] = cls(folder)
            return cls._open[key]

    def add(self, what: str, n: int, flush: bool = False) -> None:
        """Counts `n` more; the file is rewritten at most every WRITE_EVERY seconds, or now (`flush`:
        a range or a bundle is done, so the bar's last figures are right)."""
        with self._lock:
            self._counts[what] += n
            now = time.monotonic()
            if now - self._written < WRITE_EVERY and not flush:
                return
            self._written = now
            counts = dict(self._counts)
        try:
            temporary = f"{self._path}.{threading.get_ident()}"
            with open(temporary, "w") as f:
                json.dump(counts, f)
            os.replace(temporary, self._path)  # the bar never reads half a file
        except OSError:  # the run ended and its folder is gone: nothing left to show
            pass


def _read(folder: str) -> tuple[int, int]:
    done = {"bytes": 0, "records": 0}
    for name in os.listdir(folder):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name)) as f:
                counts = json.load(f)
        except (OSError, ValueError):  # replaced while read: next time
            continue
        for key in done:
            done[key] += counts.get(key, 0)
    return done["bytes"], done["records"]


def wanted(stream=None) -> bool:
    """A bar only where a person watches: a terminal, not a log file or a pipe."""
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


@contextmanager
def bar(total_bytes: int, stream=None) -> Iterator[str | None]:
    """Draws the bar while the block runs; yields the folder the workers report to (None: no bar)."""
    stream = stream or sys.stderr
    folder = tempfile.mkdtemp(prefix="scoring-progress-")
    shown = tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="reading",
        file=stream,
        dynamic_ncols=True,
        bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}{postfix}]",
    )
    started, stop = time.monotonic(), threading.Event()

    def draw() -> None:
        read, records = _read(folder)
        shown.update(min(read, total_bytes) - shown.n)
        rate = records / max(time.monotonic() - started, 1e-3)
        shown.set_postfix_str(f"{records:,} records scored, {rate:,.0f} records/s", refresh=True)

    def keep_drawing() -> None:
        while not stop.wait(DRAW_EVERY):
            draw()

    drawer = threading.Thread(target=keep_drawing, name="progress-bar", daemon=True)
    drawer.start()
    try:
        yield folder
        draw()
    finally:
        stop.set()
        drawer.join()
        shown.close()
        shutil.rmtree(folder, ignore_errors=True)
