"""Write a night's feature statistics as a file TFDV, Facets and protobuf's JSON readers load.

    python -m pipelines.export_statistics --date 2026-11-23 --out night.pb
        [--dataset night|night_scores|training|eval_scores|all] [--format binary|tfrecord|text|json]
        [--warehouse warehouse/scores.duckdb] [--run_id RUN]

Every scoring run keeps its night's statistics in the warehouse (`scoring_runs.statistics`, base64):
the night's valid input (`night`), its scores (`night_scores`) and the model version's training
baseline the night was compared with (`training`, `eval_scores`). This writes one data set of them
(default `night`) as a tensorflow-metadata `DatasetFeatureStatisticsList` holding that data set alone,
the shape TFDV's `validate_statistics` takes; `all` writes the four in one list, for Facets' side by
side view. The formats are those TFDV reads and writes: `binary`, the serialized message (TFX
StatisticsGen's `FeatureStats.pb`; `tfdv.load_stats_binary`); `tfrecord`, a file of one TFRecord
holding it (what `tfdv.generate_statistics_from_csv` writes; `tfdv.load_statistics`); `text`, protobuf's
text format (`tfdv.load_stats_text`, `tfdv.load_statistics`); `json`, protobuf's JSON mapping, field for
field what `MessageToJson` writes. It describes the date's latest finished run (or --run_id), whatever
its outcome: published, refused, or failed after measuring.

Exit codes: 0 written, 2 bad configuration, no finished run for the date, or a run without statistics.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from pipelines.monitoring.datasets import DATASETS, NIGHT
from pipelines.warehouse_cli import existing_warehouse, exit_code, night_parser

ALL = "all"
FORMATS = ("binary", "tfrecord", "text", "json")


def parser() -> argparse.ArgumentParser:
    built = night_parser("pipelines.export_statistics", "--date YYYY-MM-DD --out PATH [options]", __doc__, "Export")
    built.add_argument("--out", required=True, help="The file to write: a local path or gs://...")
    built.add_argument("--dataset", default=NIGHT, choices=(*DATASETS, ALL), help="Which data set.")
    built.add_argument("--format", default=FORMATS[0], choices=FORMATS, help="How the message is written (see above).")
    return built


def run(argv: list[str] | None = None) -> str:
    """Writes the file; returns what was written, in words. The arguments are checked before Beam or a
    warehouse client is imported."""
    args, rest = parser().parse_known_args(argv)
    night_date = date.fromisoformat(args.date)  # checked as parsed (iso_date)
    import base64

    from apache_beam.io.filesystem import BeamIOError
    from apache_beam.io.filesystems import FileSystems
    from tensorflow_metadata.proto.v0 import statistics_pb2

    warehouse = existing_warehouse(args.warehouse, args.use_case, rest)
    night = warehouse.night_run(night_date, args.run_id)
    if not night.get("statistics"):
        raise LookupError(
            f"run {night['run_id']} ({night['status']}) kept no statistics (--monitoring off, or it failed "
            "before measuring): --run_id names another run of the date"
        )
    kept = statistics_pb2.DatasetFeatureStatisticsList.FromString(base64.b64decode(night["statistics"]))
    chosen = [d for d in kept.datasets if args.dataset in (ALL, d.name)]
    if not chosen:
        found = ", ".join(d.name for d in kept.datasets)
        raise LookupError(f"run {night['run_id']} kept no {args.dataset} statistics (it kept: {found})")
    content = encoded(statistics_pb2.DatasetFeatureStatisticsList(datasets=chosen), args.format)
    try:
        with FileSystems.create(args.out, compression_type="uncompressed") as f:
            f.write(content)
    except (OSError, BeamIOError) as e:  # a folder, no permission, a bucket that refuses
        raise ValueError(f"--out {args.out}: cannot be written: {e}") from None
    names = ", ".join(d.name for d in chosen)
    return f"{args.out}: {names} statistics of run {night['run_id']} ({night['status']}, {night_date})"


def encoded(message, kind: str) -> bytes:
    """The message as a file of that format (`kind`) holds it."""
    from google.protobuf import json_format, text_format

    if kind == "json":
        return json_format.MessageToJson(message).encode("utf-8")
    if kind == "text":
        return text_format.MessageToString(message).encode("utf-8")
    data = message.SerializeToString()
    return tfrecord(data) if kind == "tfrecord" else data


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: the length, its masked CRC-32C, the data, its masked CRC-32C (TensorFlow's
    record format, written without importing TensorFlow)."""
    import struct

    import google_crc32c

    def masked(chunk: bytes) -> bytes:
        crc = google_crc32c.value(chunk)
        return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)

    length = struct.pack("<Q", len(data))
    return length + masked(length) + data + masked(data)


def main(argv: list[str]) -> int:
    return exit_code(run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
