"""What TensorFlow and Beam say by default: warnings and errors, not their start-up notices.

Set once per process before TensorFlow is imported: by each command's `main`, and by the model
handler on every worker (a Dataflow worker never runs `main`). `--verbose` leaves everything on.

What stays hidden and why: TensorFlow's C++ info and warning lines (log level 2), unless the user set
TF_CPP_MIN_LOG_LEVEL; Beam's per-bundle "Resource module is not available" warning from RunInference
(it breaks a terminal's progress line and says nothing about the run); and lines TensorFlow prints
whatever the level, which say nothing to act on:
- on a machine with no NVIDIA device at all, CUDA's loader's three ("All log messages before
  absl::InitializeLog", "Could not find cuda drivers", "failed call to cuInit"), while TensorFlow is
  imported and its devices listed. On a machine that has a GPU they are real news and pass.
- "NodeDef mentions attribute use_unbounded_threadpool" (an error-level line: TensorFlow's Python
  writes a tf.data attribute its own C++ does not know and ignores), while Keras trains.
- "oneDNN custom operations are on" (an info line TensorFlow 2.21 writes through absl's logging, which
  TF_CPP_MIN_LOG_LEVEL does not reach), on CPUs where oneDNN is used (AVX-512 VNNI and newer, say),
  while TensorFlow is imported.
C++ writes these straight to file descriptor 2, so that is caught in a file for those steps and every
other line passed on afterwards: a real error is still seen, a few seconds late. What remains at the
default level: TensorFlow's error lines, and Beam's and the project's warnings; not the traceback Beam
logs for a failing bundle, since the job fails with that exception and the command says it in one line.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from types import ModuleType

VERBOSE_ENV = "SCORING_VERBOSE"  # set by --verbose, so that every later import in the process sees it
TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
QUIET_TF_LOG_LEVEL = "2"  # warnings and info hidden, errors shown
_NO_GPU_NOISE = (
    r"All log messages before absl::InitializeLog\(\) is called|Could not find cuda drivers|failed call to cuInit"
)
_TF_DATA_NOISE = r"NodeDef mentions attribute use_unbounded_threadpool"
_ONEDNN_NOTICE = r"port\.cc:\d+\] oneDNN custom operations are on"
_BEAM_NOISE = ("Resource module is not available",)
# Where Beam logs a failing bundle's traceback before the job fails with the same exception, which the
# command then reports in one line (README: exit codes).
_BEAM_FAILURE_LOGGERS = ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker")
# File descriptor 2 is the process's: one catch at a time, or a second could restore it to the first's
# file. Worker threads that load the model at once wait here, then find TensorFlow imported.
_CATCHING = threading.RLock()


class _DropNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(_BEAM_NOISE))


_DROP_NOTICES = _DropNotices()


class _DropFailureTracebacks(logging.Filter):
    """A failing bundle's error with its traceback; other errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        return not (record.exc_info or "Traceback (most recent call last)" in record.getMessage())


_DROP_FAILURE_TRACEBACKS = _DropFailureTracebacks()


def configure(verbose: bool) -> None:
    """This process's defaults, before TensorFlow is imported (a later call can only make it louder)."""
    root = logging.getLogger()
    if verbose or os.environ.get(VERBOSE_ENV) == "1":
        os.environ[VERBOSE_ENV] = "1"
        root.removeFilter(_DROP_NOTICES)
        for name in _BEAM_FAILURE_LOGGERS:
            logging.getLogger(name).removeFilter(_DROP_FAILURE_TRACEBACKS)
        root.setLevel(logging.INFO)
        return
    os.environ.setdefault(TF_LOG_LEVEL_ENV, QUIET_TF_LOG_LEVEL)
    root.setLevel(logging.WARNING)
    if _DROP_NOTICES not in root.filters:
        root.addFilter(_DROP_NOTICES)
    for name in _BEAM_FAILURE_LOGGERS:
        if _DROP_FAILURE_TRACEBACKS not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_DROP_FAILURE_TRACEBACKS)


class _WithoutTracebacks:
    """A text stream, less the tracebacks written to it whole (as Beam's SDK worker prints a failing
    bundle's with `print(traceback_string, file=sys.stderr)`)."""

    def __init__(self, stream):
        self._stream = stream
        self._dropped = threading.local()  # per thread: a print's text and its line end are two writes

    def write(self, text: str) -> int:
        if text.startswith("Traceback (most recent call last):") and "\n  File " in text:
            self._dropped.last = True
            return len(text)
        if getattr(self._dropped, "last", False) and text == "\n":  # the print's own line end
            self._dropped.last = False
            return len(text)
        self._dropped.last = False
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def without_tracebacks() -> Iterator[None]:
    """While a job runs: a failing bundle's traceback is not printed (unless verbose); the job fails
    with that exception, which the command says in one line."""
    if os.environ.get(VERBOSE_ENV) == "1":
        yield
        return
    saved = sys.stderr
    sys.stderr = _WithoutTracebacks(saved)
    try:
        yield
    finally:
        sys.stderr = saved


def has_nvidia_device() -> bool:
    """An NVIDIA GPU shows as /dev/nvidia0, /dev/nvidia1, ... on Linux, in containers too."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def tensorflow() -> ModuleType:
    """TensorFlow, imported and its devices listed, with the start-up notices of a machine without a
    GPU filtered out (unless verbose). Importing it again anywhere costs nothing after this."""
    with _CATCHING:
        if "tensorflow" in sys.modules:
            import tensorflow as tf

            return tf
        with muffled():
            import tensorflow as tf

            tf.config.list_physical_devices()  # CUDA's platform is initialised here, so its lines come now
        return tf


@contextlib.contextmanager
def muffled() -> Iterator[None]:
    """While the block runs, TensorFlow's lines that say nothing to act on are dropped (see above)."""
    if os.environ.get(VERBOSE_ENV) == "1":
        yield
        return
    noise = f"{_TF_DATA_NOISE}|{_ONEDNN_NOTICE}"
    if not has_nvidia_device():
        noise = f"{_NO_GPU_NOISE}|{noise}"
    with _filtered_stderr(re.compile(noise)):
        yield


@contextlib.contextmanager
def _filtered_stderr(drop: re.Pattern) -> Iterator[None]:
    """File descriptor 2 caught in a file while the block runs; then every line not matching `drop`
    written to stderr. A file, not a pipe: nothing can block on a full buffer."""
    with _CATCHING, tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines(True) if not drop.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
