"""The load step (`pipelines/load.py`) on its own: two nights of one job staged and published, no model.

Scoring end to end (`tests/test_score.py`, `tests/test_backfill.py`) reaches load only after a model
has scored; here the scored batches are made by hand, laid out exactly as the model handler makes them
(`scored_schema`) with the provenance columns validation adds (`PROVENANCE_LAYOUT`: the source
dictionary-encoded, its line, a content hash), so that what load itself promises is checked
directly and fast: each night's batches are found by their source (`Nights`), staged under the
night's own run, published under the night's own date and run id; each night's counts reconcile; its
staged files are gone once it is settled; and a night refused by its gates stays unpublished while the
job's other night is published.

DuckDB only: what a warehouse does with staged files is the warehouse suite's (`tests/test_warehouses.py`,
both engines); this is about what load hands it.
"""

from __future__ import annotations

import json
import os
import zlib
from datetime import date, datetime, timezone

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from models.handler import scored_schema
from pipelines.batches import PROVENANCE_LAYOUT, rejected_batch, staged_predictions_layout
from pipelines.load import AddRunColumns, LoadToWarehouse, NightResults, PublishSettings
from pipelines.monitoring.measure import NightMonitor
from pipelines.nights import Nights
from pipelines.staged import run_folder
from pipelines.warehouses import GateLimits, RunRecord, open_warehouse
from schemas import CHAMPION
from schemas.taxi import USE_CASE as TAXI
from tests.conftest import query

FIRST, SECOND = date(2026, 11, 22), date(2026, 11, 23)
SOURCE = {FIRST: "trips/dt=2026-11-22/part-00000.csv", SECOND: "trips/dt=2026-11-23/part-00000.csv"}
STARTED = datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc)
THRESHOLD = 0.5
LIMITS = GateLimits(max_rejected_fraction=0.5)  # the second night's one rejected record of 8 passes
# Each night's trips: (key, probability, line). The first night arrives in two batches.
TRIPS = {
    FIRST: [[("a1", 0.10, 2), ("a2", 0.90, 3), ("a3", 0.50, 4)], [("a4", 0.49, 5), ("a5", 0.75, 6)]],
    SECOND: [[("b1", 0.2, 2), ("b2", 0.3, 3), ("b3", 0.6, 4), ("b4", 0.7, 5), ("b5", 0.8, 6), ("b6", 0.0, 8)]],
}
SECOND_LATE = [("b7", 1.0, 9)]  # the second night's last trip, in a batch of its own
REJECTED_LINE = 7  # the second night's line 7 was rejected while reading


def scored_batch(source: str, trips: list[tuple[str, float, int]]) -> pa.RecordBatch:
    """Scored records as the handler emits them: `scored_schema`, then validation's provenance columns."""
    n = len(trips)
    keys, probabilities, lines = zip(*trips, strict=True)
    columns = {
        "trip_id": pa.array(keys, pa.string()),
        "probability": pa.array(probabilities, pa.float64()),
        "label": pa.array([p >= THRESHOLD for p in probabilities]),
        "threshold": pa.repeat(pa.scalar(THRESHOLD, pa.float64()), n),
        "model_name": pa.repeat(pa.scalar("taxi_tipper"), n),
        "model_version": pa.repeat(pa.scalar(1, pa.int64()), n),
        "model_role": pa.repeat(pa.scalar(CHAMPION), n),
        "source": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([source])),
        "line_number": pa.array(lines, pa.int64()),
        "content_hash": pa.array([zlib.crc32(k.encode()) for k in keys], pa.int64()),  # distinct contents
    }
    schema = pa.schema([*scored_schema(TAXI), *PROVENANCE_LAYOUT])
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)


def run_of(day: date, limits: GateLimits = LIMITS) -> RunRecord:
    return RunRecord(
        run_id=f"night-{day.isoformat()}",
        score_date=day,
        model_name="taxi_tipper",
        model_version=1,
        input=f"trips/dt={day.isoformat()}/*.csv",
        started_at=STARTED,
        limits=limits,
    )


def valid_trips(day: date) -> list[tuple[str, float, int]]:
    return [trip for batch in TRIPS[day] for trip in batch] + (SECOND_LATE if day == SECOND else [])


def load(tmp_path, runs: tuple[RunRecord, ...], published: list[dict]) -> tuple[str, str]:
    """Both nights through LoadToWarehouse in one pipeline, which must emit the `published` nights'
    counts: (the warehouse, the staging folder)."""
    (tmp_path / "wh").mkdir()
    location = str(tmp_path / "wh" / "scores.duckdb")
    staging = str(tmp_path / "staging")
    warehouse = open_warehouse(location, TAXI)
    warehouse.prepare()
    for run in runs:
        warehouse.record_run(run)
    nights = Nights(runs, {SOURCE[run.score_date]: run.score_date.isoformat() for run in runs})
    scored = [scored_batch(SOURCE[day], trips) for day in (FIRST, SECOND) for trips in TRIPS[day]]
    scored.append(scored_batch(SOURCE[SECOND], SECOND_LATE))
    rejected = [rejected_batch(SOURCE[SECOND], ["b?,oops"], ["malformed_line"], [REJECTED_LINE])]
    # The independent count per source, as a reader emits it (per file, or per shard: summed by load).
    input_counts = [(SOURCE[FIRST], 5), (SOURCE[SECOND], 6), (SOURCE[SECOND], 2)]
    valid_counts = [(SOURCE[FIRST], 3), (SOURCE[FIRST], 2), (SOURCE[SECOND], 6), (SOURCE[SECOND], 1)]
    with BeamTestPipeline() as pipeline:
        results = NightResults(
            scored=pipeline | "Scored" >> beam.Create(scored),
            rejected=pipeline | "Rejected" >> beam.Create(rejected),
            input_counts=pipeline | "InputCounts" >> beam.Create(input_counts),
            valid_counts=pipeline | "ValidCounts" >> beam.Create(valid_counts),
            statistics=pipeline | "NoStatistics" >> beam.Create([]),  # --monitoring off
        )
        counts = results | "Load" >> LoadToWarehouse(
            PublishSettings(warehouse, staging, timeout=60, fail_job_on_refusal=False),
            nights,
            NightMonitor(None, TAXI.drift, None),
        )
        assert_that(counts, equal_to(published), label="Published")
    return location, staging


def expected_counts(day: date) -> dict:
    valid = len(valid_trips(day))
    rejected = 1 if day == SECOND else 0
    files = {SOURCE[day]: {"records": valid + rejected, "valid": valid, "rejected": rejected}}
    return {
        "input_records": valid + rejected,
        "scored_records": valid,
        "rejected_records": rejected,
        "rejected_files": 0,
        "duplicates_dropped": 0,
        "input_files": json.dumps(files, sort_keys=True),
        "prediction_rows": valid,
    }


def published_rows(location: str, table: str = "predictions") -> list[tuple]:
    return query(
        location,
        f"SELECT score_date, run_id, trip_id, probability, label, threshold, model_role, scored_at FROM {table} "
        "ORDER BY trip_id",
    )


def expected_rows(day: date) -> list[tuple]:
    return [
        (day, f"night-{day.isoformat()}", key, p, p >= THRESHOLD, THRESHOLD, CHAMPION, STARTED)
        for key, p, _ in sorted(valid_trips(day))
    ]


COUNTED = ("input_records", "scored_records", "rejected_records", "duplicates_dropped", "input_files")


def staged_files(staging: str) -> list[str]:
    return sorted(os.path.join(folder, name) for folder, _, names in os.walk(staging) for name in names)


def test_each_night_is_published_under_its_own_date_and_run(tmp_path):
    runs = (run_of(FIRST), run_of(SECOND))
    published = [expected_counts(FIRST), expected_counts(SECOND)]
    location, staging = load(tmp_path, runs, published)

    assert published_rows(location) == expected_rows(FIRST) + expected_rows(SECOND)
    assert query(
        location, "SELECT score_date, run_id, source, line_number, reason, error_kind, records FROM scoring_errors"
    ) == [(SECOND, "night-2026-11-23", SOURCE[SECOND], REJECTED_LINE, "malformed_line", "record", 1)]
    assert query(
        location,
        "SELECT run_id, score_date, status, input_records, scored_records, rejected_records, duplicates_dropped, "
        "input_files FROM scoring_runs ORDER BY score_date",
    ) == [
        (run.run_id, run.score_date, "succeeded", *(expected_counts(run.score_date)[k] for k in COUNTED))
        for run in runs
    ]
    # Every record is accounted for, per night, as recorded: input = scored + rejected + duplicates dropped.
    assert query(
        location,
        "SELECT score_date FROM scoring_runs "
        "WHERE input_records = scored_records + rejected_records + duplicates_dropped ORDER BY score_date",
    ) == [(FIRST,), (SECOND,)]
    # Published rows are copies: each night's staged files are gone, its run's folder with them.
    assert staged_files(staging) == []
    assert not any(os.path.exists(run_folder(staging, run.run_id)) for run in runs)


def test_a_night_refused_by_its_gates_leaves_the_other_published(tmp_path):
    """The second night must hold 100 records (it has 8): it is refused alone, kept in the refused
    tables, and the first night of the same job is published as if it had run alone."""
    runs = (run_of(FIRST), run_of(SECOND, GateLimits(max_rejected_fraction=0.5, min_records=100)))
    location, staging = load(tmp_path, runs, [expected_counts(FIRST)])  # only what was published is emitted

    assert published_rows(location) == expected_rows(FIRST)
    assert query(location, "SELECT count(*) FROM scoring_errors") == [(0,)]
    statuses = query(location, "SELECT run_id, status, error FROM scoring_runs ORDER BY score_date")
    assert [(run_id, status) for run_id, status, _ in statuses] == [
        ("night-2026-11-22", "succeeded"),
        ("night-2026-11-23", "refused"),
    ]
    assert "min_records" in statuses[1][2] and statuses[0][2] is None
    # What the refused night would have published is kept apart, under its own date and run.
    assert published_rows(location, "refused_predictions") == expected_rows(SECOND)
    assert query(location, "SELECT score_date, run_id, line_number FROM refused_errors") == [
        (SECOND, "night-2026-11-23", REJECTED_LINE)
    ]
    # Settled either way: neither night's staged files stay.
    assert staged_files(staging) == []


def test_add_run_columns_lays_a_batch_out_as_the_table_with_the_runs_values():
    run = run_of(SECOND)
    batch = scored_batch(SOURCE[SECOND], SECOND_LATE + [("b8", 0.25, 10)])
    layout = staged_predictions_layout(TAXI)
    out = AddRunColumns(layout, run, "scored_at")(batch)
    assert out.schema == layout
    assert out.column("score_date").to_pylist() == [SECOND, SECOND]
    assert out.column("run_id").to_pylist() == [run.run_id] * 2
    assert out.column("scored_at").to_pylist() == [STARTED] * 2
    assert out.column("trip_id").to_pylist() == ["b7", "b8"]
    assert out.column("source").to_pylist() == [SOURCE[SECOND]] * 2
    assert out.column("line_number").to_pylist() == [9, 10]


def test_nights_find_each_batch_by_its_source():
    nights = Nights((run_of(FIRST), run_of(SECOND)), {SOURCE[FIRST]: "2026-11-22", SOURCE[SECOND]: "2026-11-23"})
    for day in (FIRST, SECOND):
        batch = scored_batch(SOURCE[day], TRIPS[day][0])
        assert nights.keyed(batch) == (day.isoformat(), batch)
    errors = rejected_batch(SOURCE[SECOND], ["x"], ["malformed_line"], [3])
    assert nights.keyed(errors)[0] == "2026-11-23"
    with pytest.raises(ValueError, match="distinct and in date order"):
        Nights((run_of(SECOND), run_of(FIRST)))
