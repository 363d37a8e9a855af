"""Write a day's input partition by resampling the real Chicago taxi sample.

    python scripts/make_trips.py --date 2026-11-23 --rows 100000 [--out DIR] [--rows_per_file N]

Rows are drawn with replacement from the real sample, keeping their values exactly as written
(empty fields, truncated names, numbers in their original form); only the start timestamp moves
onto `--date` (same time of day) and month and weekday follow it. Each record gets a stable key,
`<yyyymmdd>-<n>`: the same arguments always write the same files.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import sys
from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from schemas.taxi import TRIPS  # noqa: E402

DEFAULT_SOURCE = "data/chicago_taxi/trips.csv"
SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), DEFAULT_SOURCE)
NIGHT_RECORDS = 100_000  # a night of scripts/run_sample.sh when no number is asked for
CHUNK_ROWS = 500_000  # generated and written a chunk at a time, so 10 million rows fit in memory easily


def read_source(path: str) -> pa.Table:
    names = [n for n in TRIPS.names if n != TRIPS.key.name]
    return pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            include_columns=names,
            strings_can_be_null=True,
            null_values=[""],
        ),
    )


def make_chunk(source: pa.Table, day: date, start: int, rows: int, rng: np.random.Generator) -> pa.Table:
    sample = source.take(pa.array(rng.integers(0, source.num_rows, rows)))
    midnight = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())
    original = pc.cast(sample["trip_start_timestamp"], pa.int64())
    moved = pa.array(original.to_numpy() % 86400 + midnight)
    columns = {
        "trip_id": pc.binary_join_element_wise(
            day.strftime("%Y%m%d-"),
            pc.utf8_lpad(pc.cast(pa.array(np.arange(start, start + rows)), pa.string()), 10, "0"),
            "",
        ),
    }
    for name in sample.column_names:
        columns[name] = sample[name]
    columns["trip_start_timestamp"] = pc.cast(moved, pa.string())
    columns["trip_start_month"] = pa.repeat(str(day.month), rows)
    columns["trip_start_day"] = pa.repeat(str(day.isoweekday() % 7 + 1), rows)  # 1 = Sunday
    return pa.table(columns)


def write_partition(day: date, rows: int, out: str, rows_per_file: int, source_path: str) -> list[str]:
    os.makedirs(out, exist_ok=True)
    for stale in glob.glob(os.path.join(out, "*.csv")):
        os.remove(stale)
    source = read_source(source_path)
    seed = int(hashlib.sha256(day.isoformat().encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    # Write values as the source wrote them (unquoted) unless some value needs quotes.
    needs_quotes = any(pc.any(pc.match_substring_regex(source[n], r'[,"\r\n]')).as_py() for n in source.column_names)
    options = pacsv.WriteOptions(quoting_style="needed" if needs_quotes else "none", include_header=False)
    layout = make_chunk(source, day, 0, 0, rng).schema
    paths, written = [], 0
    for file_index in range(max(1, -(-rows // rows_per_file))):
        path = os.path.join(out, f"part-{file_index:05d}.csv")
        file_rows = min(rows_per_file, rows - written)
        with open(path, "wb") as f, pacsv.CSVWriter(f, layout, write_options=options) as writer:
            f.write((",".join(layout.names) + "\n").encode())  # a plain header, as the source has
            for offset in range(0, file_rows, CHUNK_ROWS):
                n = min(CHUNK_ROWS, file_rows - offset)
                writer.write_table(make_chunk(source, day, written + offset, n, rng))
        paths.append(path)
        written += file_rows
    return paths


def write_training(path: str, records: int | None = None) -> int:
    """The taxi use case's sample maker (schemas/taxi.py): the real sample as training data, all of it or
    `records` trips drawn from it without replacement (seeded: the same file every time)."""
    source = read_source(SAMPLE)
    if records is not None and records < source.num_rows:
        rng = np.random.default_rng(records)
        source = source.take(pa.array(np.sort(rng.choice(source.num_rows, records, replace=False))))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    pacsv.write_csv(source, path, pacsv.WriteOptions(quoting_style="needed"))
    return source.num_rows


def write_night(day: date, folder: str, records: int | None = None, rows_per_file: int = 1_000_000) -> list[str]:
    """The taxi use case's sample maker: one night's trips, resampled from the real sample."""
    return write_partition(day, NIGHT_RECORDS if records is None else records, folder, rows_per_file, SAMPLE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--date", required=True, type=date.fromisoformat)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", default=None, help="Default: data/trips/dt=<date>/")
    parser.add_argument("--rows_per_file", type=int, default=1_000_000)
    parser.add_argument("--source", default=DEFAULT_SOURCE)
    args = parser.parse_args(argv)
    if args.rows < 0 or args.rows_per_file < 1:
        parser.error("--rows must be >= 0 and --rows_per_file >= 1")
    out = args.out or os.path.join("data", "trips", f"dt={args.date.isoformat()}")
    paths = write_partition(args.date, args.rows, out, args.rows_per_file, args.source)
    print(f"wrote {args.rows} trips for {args.date} in {len(paths)} file(s) under {out}")


if __name__ == "__main__":
    main()
