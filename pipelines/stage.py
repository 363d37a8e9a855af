"""Stage record batches as Parquet files, one file per bundle, and emit what was written.

Downstream steps consume exactly the files emitted here (never a directory listing), so files left
by a retried bundle or a killed run are never published.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from pipelines.observe import add_seconds, stage_timer


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


class WriteParquetFiles(beam.DoFn):
    """Batches in, `(path, rows)` out once per bundle.

    `prepare` (optional) turns each incoming batch into the batch to write, e.g. adding run-level
    columns; `schema` fixes the file layout (a batch of another layout is an error), or the first
    batch's layout is used. `dictionary` names the columns worth a Parquet dictionary (values that
    repeat); by default every column gets one, which for a value per record (a key, a score) is work
    thrown away: the writer builds the dictionary, finds it too large and falls back to plain.
    """

    def __init__(
        self,
        directory: str,
        prefix: str,
        schema: pa.Schema | None = None,
        prepare: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None,
        dictionary: list[str] | None = None,
    ):
        self._directory = directory
        self._prefix = prefix
        self._schema = schema
        self._prepare = prepare
        self._dictionary = True if dictionary is None else dictionary
        self._time = stage_timer("stage")

    def start_bundle(self) -> None:
        self._writer = None
        self._stream = None
        self._path = None
        self._rows = 0

    def process(self, batch) -> Iterator:
        t0 = time.perf_counter()
        if isinstance(batch, tuple):  # tf.Transform emits (record batch, passthrough features)
            batch = batch[0]
        if self._prepare is not None:
            batch = self._prepare(batch)
        if self._writer is None:
            self._path = FileSystems.join(self._directory, f"{self._prefix}-{uuid.uuid4().hex}.parquet")
            self._stream = FileSystems.create(self._path)
            self._writer = pq.ParquetWriter(self._stream, self._schema or batch.schema, use_dictionary=self._dictionary)
        self._writer.write_batch(batch)
        self._rows += batch.num_rows
        add_seconds(self._time, time.perf_counter() - t0)
        return iter(())

    def teardown(self) -> None:
        """A bundle that failed midway leaves its writer open: close it (the file is never published)."""
        if getattr(self, "_writer", None) is not None:
            try:
                self._writer.close()
                self._stream.close()
            except Exception:  # the bundle already failed; its file is abandoned either way
                pass
            self._writer = None

    def finish_bundle(self) -> Iterator:
        if self._writer is None:
            return
        t0 = time.perf_counter()
        self._writer.close()
        self._stream.close()
        add_seconds(self._time, time.perf_counter() - t0)
        self._writer = None
        yield GlobalWindows.windowed_value((self._path, self._rows))
