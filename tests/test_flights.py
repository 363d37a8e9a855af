"""The flights use case's own parts (schemas/flights.py): its sample maker's keys, times and files, and
its label and derived feature on known values, missing ones included."""

import csv
import subprocess
import sys
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pyarrow.compute as pc
import pytest
import tensorflow as tf

from schemas.flights import FLIGHTS
from scripts import make_flights
from tests.conftest import REPO
from transforms.flights import late, present

NEW_YORK = ZoneInfo("America/New_York")


def test_every_flight_has_a_unique_key_and_its_scheduled_departure_in_utc():
    flights = make_flights.all_flights()
    assert flights.num_rows == 336_776  # the pinned data set, whole
    assert pc.count_distinct(flights["flight_id"]).as_py() == flights.num_rows
    # The event time is the local scheduled departure, in UTC: daylight saving included.
    sample = flights.take(list(range(0, flights.num_rows, 997)))
    for key, when, hour, day in zip(
        *(sample[c].to_pylist() for c in ("flight_id", "scheduled_departure", "scheduled_hour", "_date")), strict=True
    ):
        local = when.astimezone(NEW_YORK)
        assert (local.date(), local.hour) == (day, hour), key
        assert key.startswith(f"{day:%Y%m%d}-")


def test_a_night_is_one_local_date_without_arrival_and_draws_keep_keys_unique(tmp_path):
    [path] = make_flights.write_night(date(2013, 11, 5), str(tmp_path / "night"))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 967 and "arr_delay" not in rows[0]
    assert set(rows[0]) == {c.name for c in FLIGHTS.columns} - {"arr_delay"}
    assert all(r["flight_id"].startswith("20131105-") for r in rows)
    assert sum(1 for r in rows if r["dep_delay"] == "") == 6  # that day's flights that never left
    paths = make_flights.write_night(date(2013, 11, 5), str(tmp_path / "drawn"), 2500, rows_per_file=1000)
    keys = [r["flight_id"] for p in paths for r in csv.DictReader(open(p, newline=""))]
    assert len(paths) == 3 and len(keys) == len(set(keys)) == 2500


def test_training_is_september_and_october_with_cancelled_flights_kept(tmp_path):
    written = make_flights.write_training(str(tmp_path / "training.csv"))
    with open(tmp_path / "training.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert written == len(rows) == 56_463
    departures = {datetime.fromisoformat(r["scheduled_departure"]).astimezone(NEW_YORK).date() for r in rows}
    assert min(departures) == date(2013, 9, 1) and max(departures) == date(2013, 10, 31)
    assert sum(1 for r in rows if r["arr_delay"] == "") == 835  # the label counts these as late


def test_a_date_outside_the_data_is_refused_in_one_line():
    done = subprocess.run(
        [sys.executable, "scripts/make_flights.py", "--date", "2014-01-01"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "error: the flights data set holds 2013 only, not 2014-01-01: pick a date in 2013"


@pytest.mark.parametrize(
    "delays, expected_late, expected_present",
    [
        ([14, 15, -3, 120], [0, 1, 0, 1], [1, 1, 1, 1]),  # 15 minutes is late; early is not
        ([None, 3, None, 40], [1, 0, 1, 1], [0, 1, 0, 1]),  # no arrival: late, and not present
    ],
)
def test_the_label_and_departed_on_known_values(delays, expected_late, expected_present):
    """As tf.Transform hands nullable columns over: a [batch, 1] sparse tensor, missing values absent."""
    indices = [[i, 0] for i, d in enumerate(delays) if d is not None]
    values = tf.constant([d for d in delays if d is not None], tf.int64)
    sparse = tf.SparseTensor(
        tf.constant(indices, tf.int64) if indices else tf.zeros([0, 2], tf.int64), values, [len(delays), 1]
    )
    assert late(sparse).numpy().tolist() == expected_late
    assert present(sparse).numpy().tolist() == expected_present
