"""Staged files: record batches written as Parquet files, one file per bundle and key, and emitted; a
run's folder of them, and its deletion.

Downstream steps consume exactly the files emitted here (never a directory listing), so files left
by a retried bundle or a killed run are never published.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from pipelines import metrics
from pipelines.observe import add_seconds


def run_folder(staging_dir: str, run_id: str) -> str:
    """Where a run stages its files: its own folder, so that a reaped run's files are found by its id."""
    return FileSystems.join(staging_dir, run_id)


def delete_tree(folder: str) -> None:
    """Every file under a run's staging folder (listed: on gs:// a folder is only a prefix), then the
    folder itself where folders exist."""
    found = FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list  # none: already clean
    if found:
        FileSystems.delete([m.path for m in found])
    if "://" not in folder and FileSystems.exists(folder):
        FileSystems.delete([folder])


class ParquetFile:
    """One staged file as a bundle writes it: opened at its first batch, closed at the bundle's end.

    A runner may tear a DoFn down from another thread while a bundle still writes (a local run on
    threads, stopped by SIGTERM): closing a writer under a write crashes the process in native code, so
    writing and closing take turns, and a file once abandoned takes no more writes."""

    def __init__(self, directory: str, prefix: str, schema: pa.Schema | None, dictionary: bool | list[str]):
        self.path = FileSystems.join(directory, f"{prefix}-{uuid.uuid4().hex}.parquet")
        self.rows = 0
        self._schema = schema
        self._dictionary = dictionary
        self._stream = None
        self._writer = None
        self._lock = threading.Lock()
        self._abandoned = False

    def write(self, batch: pa.RecordBatch) -> None:
        with self._lock:
            if self._abandoned:
                raise RuntimeError(f"{self.path} was abandoned: its bundle is being torn down")
            if self._writer is None:
                self._stream = FileSystems.create(self.path)
                self._writer = pq.ParquetWriter(
                    self._stream, self._schema or batch.schema, use_dictionary=self._dictionary
                )
            self._writer.write_batch(batch)
            self.rows += batch.num_rows

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._stream.close()
            self._writer = None

    def abandon(self) -> None:
        """A bundle that failed midway, or is torn down: close what is open once no write is under way
        (the file is never published)."""
        with self._lock:
            self._abandoned = True
            try:
                self._close()
            except Exception:  # the bundle already failed; its file is abandoned either way
                self._writer = None


class WriteParquetFiles(beam.DoFn):
    """`(key, batch)` in, `(key, path, rows)` out once per bundle and key: each key's batches (a night's,
    a training split's) go to files of their own, under the key's folder.

    `prepare` (optional, per key) turns each incoming batch into the batch to write, e.g. adding a
    night's run columns; `schema` fixes the file layout (a batch of another layout is an error), or the
    first batch's layout is used. `dictionary` names the columns worth a Parquet dictionary (values that
    repeat); by default every column gets one, which for a value per record (a key, a score) is work
    thrown away: the writer builds the dictionary, finds it too large and falls back to plain.
    """

    def __init__(
        self,
        directories: Mapping[Any, str],
        prefix: str,
        schema: pa.Schema | None = None,
        prepare: Mapping[Any, Callable[[pa.RecordBatch], pa.RecordBatch]] | None = None,
        dictionary: list[str] | None = None,
    ):
        self._directories = dict(directories)
        self._prefix = prefix
        self._schema = schema
        self._prepare = dict(prepare or {})
        self._dictionary = True if dictionary is None else dictionary
        self._time = metrics.step_timer("stage")

    def start_bundle(self) -> None:
        self._files: dict[Any, ParquetFile] = {}

    def process(self, element: tuple[Any, pa.RecordBatch]) -> Iterator:
        t0 = time.perf_counter()
        key, batch = element
        if key not in self._files:
            self._files[key] = ParquetFile(self._directories[key], self._prefix, self._schema, self._dictionary)
        prepare = self._prepare.get(key)
        self._files[key].write(batch if prepare is None else prepare(batch))
        add_seconds(self._time, time.perf_counter() - t0)
        return iter(())

    def teardown(self) -> None:
        for file in list(getattr(self, "_files", {}).values()):
            file.abandon()
        self._files = {}

    def finish_bundle(self) -> Iterator:
        t0 = time.perf_counter()
        for file in self._files.values():
            file.close()
        add_seconds(self._time, time.perf_counter() - t0)
        for key, file in self._files.items():
            yield GlobalWindows.windowed_value((key, file.path, file.rows))
        self._files = {}
