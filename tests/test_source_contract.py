"""The source contract (`pipelines/sources/contract.py`), held against every kind of source by one suite.

Scoring and training never ask which source they hold: they open it (`open_source`), plan its nights
(`plan_night`, `plan_nights`), describe them (`names`, `recorded`) and read them (`reader` -> `Read`).
So every test here runs once per kind of source, on the same records: two nights' worth of real taxi
trips (`write_partition`), one night of NIGHT_RECORDS in two files and another of OTHER_RECORDS, and a
day with none. What differs between kinds (where the records live, the names they carry, what a run
records of them) is stated once, in the `source` fixture, as facts known independently of the code
under test: how many records were written, into which files or table.

- files: local CSV files under a `dt={date}` pattern;
- bigquery: one table in the BigQuery emulator holding both nights, its event-time column INT64 unix
  seconds (as `tests/test_sources.py` loads it), each night's rows selected inside BigQuery.

A third source (Kafka, PostgreSQL) joins the suite by adding one parameter to the `source` fixture
with its facts; no test changes. The end-to-end runs of every form of input (gzip, JSON, gs://, query
files) through scoring are in `tests/test_sources.py`.
"""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to, is_empty

from pipelines.sources import (
    SOURCES,
    BigQuerySource,
    FileSource,
    InputNotFoundError,
    NightInput,
    Read,
    ReadSettings,
    Source,
    SourceConfigError,
    open_source,
)
from schemas.taxi import TRIPS
from tests.conftest import BQ_PROJECT, write_partition
from tests.test_sources import bq_schema, load_table, to_json_lines

NIGHT, OTHER, EMPTY = date(2026, 11, 23), date(2026, 11, 22), date(2026, 11, 1)
NIGHT_RECORDS, OTHER_RECORDS = 300, 120
RECORDS_PER_FILE = 200  # the night is two files: 200 + 100 records
SCHEMA = TRIPS.for_scoring()
# Blocks of 8 KiB: a file of these records is read in several blocks, each cut where a record ends.
SETTINGS = ReadSettings(block_bytes=8 << 10)


@dataclass(frozen=True)
class Facts:
    """A source as the suite knows it, independently of the code under test."""

    kind: str
    location: str  # --input
    source_class: type[Source]
    records: dict[date, dict[str, int]]  # per night with input: each name its records carry, and how many
    recorded: dict[date, dict[str, int]]  # per night: how the run's options describe its input
    in_range: Callable[[str, date], str]  # the name a night's records carry when it is read with other nights
    state: Callable[[], object]  # what exists where the source lives: planning must leave it as it was

    def total(self, day: date) -> int:
        return sum(self.records[day].values())


def _tree(root: str) -> list[tuple[str, int]]:
    return sorted(
        (os.path.join(folder, name), os.path.getsize(os.path.join(folder, name)))
        for folder, _, names in os.walk(root)
        for name in names
    )


def _csv_records(path: str) -> int:
    with open(path, newline="") as f:
        return len(list(csv.reader(f))) - 1  # the header is no record


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[date, list[str]]:
    """The two nights' records as CSV files, one folder per night: the truth every source is held to."""
    root = tmp_path_factory.mktemp("contract")
    written = {
        NIGHT: write_partition(root / f"dt={NIGHT}", NIGHT.isoformat(), NIGHT_RECORDS, RECORDS_PER_FILE),
        OTHER: write_partition(root / f"dt={OTHER}", OTHER.isoformat(), OTHER_RECORDS, RECORDS_PER_FILE),
    }
    # What was written, as Python's csv module reads it back (header left out): the suite's counts.
    records = {day: [_csv_records(path) for path in paths] for day, paths in written.items()}
    assert records == {NIGHT: [RECORDS_PER_FILE, NIGHT_RECORDS - RECORDS_PER_FILE], OTHER: [OTHER_RECORDS]}
    return written


@pytest.fixture(scope="module", params=["files", "bigquery"])
def source(request, written) -> Facts:
    """Each kind of source, holding the same two nights. A new kind is one more parameter here."""
    if request.param == "files":
        root = os.path.dirname(os.path.dirname(written[NIGHT][0]))
        return Facts(
            kind="files",
            location=os.path.join(root, "dt={date}", "*.csv"),
            source_class=FileSource,
            records={
                NIGHT: {written[NIGHT][0]: RECORDS_PER_FILE, written[NIGHT][1]: NIGHT_RECORDS - RECORDS_PER_FILE},
                OTHER: {written[OTHER][0]: OTHER_RECORDS},
            },
            recorded={NIGHT: {"files": 2}, OTHER: {"files": 1}},
            in_range=lambda name, day: name,  # a file is one night's already
            state=lambda: _tree(root),
        )
    if request.param == "bigquery":
        client = request.getfixturevalue("bigquery")
        table = f"contract_{uuid.uuid4().hex[:8]}"
        lines = b"".join(to_json_lines(path) for day in (NIGHT, OTHER) for path in written[day])
        load_table(client, table, lines, bq_schema())
        location = f"bq://{BQ_PROJECT}.raw.{table}"
        return Facts(
            kind="bigquery",
            location=location,
            source_class=BigQuerySource,
            records={NIGHT: {location: NIGHT_RECORDS}, OTHER: {location: OTHER_RECORDS}},
            recorded={NIGHT: {"streams": 1}, OTHER: {"streams": 1}},  # a table this small is one stream
            in_range=lambda name, day: f"{name}@{day.isoformat()}",  # one table, named per night
            state=lambda: sorted(
                (t.table_id, client.get_table(t).num_rows) for t in client.list_tables(f"{BQ_PROJECT}.raw")
            ),
        )
    raise AssertionError(f"no facts for source kind {request.param}")


def opened(facts: Facts) -> Source:
    return open_source(facts.location, SCHEMA, SETTINGS)


def test_open_source_picks_the_kind_that_claims_the_input(source):
    opened_source = opened(source)
    assert type(opened_source) is source.source_class
    assert (opened_source.location, opened_source.schema, opened_source.settings) == (source.location, SCHEMA, SETTINGS)
    # The first in SOURCES that claims it, and no kind before it does.
    claiming = [kind for kind in SOURCES if kind.claims(source.location)]
    assert claiming[0] is source.source_class


def test_the_source_selects_a_night_by_its_date(source):
    assert opened(source).dated is True


@pytest.mark.parametrize("day", [NIGHT, OTHER], ids=["night", "other"])
def test_plan_night_finds_the_night_and_says_what_it_holds(source, day):
    night = opened(source).plan_night(day)
    assert isinstance(night, NightInput)
    assert night.day == day
    assert night.names() == sorted(source.records[day])
    assert night.recorded() == source.recorded[day]


def test_a_day_without_records_is_input_not_found_and_writes_nothing(source):
    before = source.state()
    with pytest.raises(InputNotFoundError, match=EMPTY.isoformat()):
        opened(source).plan_night(EMPTY)
    with pytest.raises(InputNotFoundError, match=f"no input for 1 of the 3 nights: {EMPTY.isoformat()}"):
        opened(source).plan_nights([OTHER, NIGHT, EMPTY])
    assert source.state() == before


def test_plan_nights_makes_each_nights_names_its_own(source):
    nights = opened(source).plan_nights([OTHER, NIGHT])
    assert [night.day for night in nights] == [OTHER, NIGHT]
    for night in nights:
        assert night.names() == sorted(source.in_range(name, night.day) for name in source.records[night.day])
    names = [name for night in nights for name in night.names()]
    assert len(names) == len(set(names))
    # A single night keeps its plain names.
    [alone] = opened(source).plan_nights([NIGHT])
    assert alone.names() == sorted(source.records[NIGHT])


def test_files_matching_two_nights_are_refused(written):
    """A pattern without {date} matches the same files for every night: a record read for two nights
    would be counted twice, so planning refuses before anything is read. (BigQuery names one table per
    night instead: `test_plan_nights_makes_each_nights_names_its_own`.)"""
    root = os.path.dirname(os.path.dirname(written[NIGHT][0]))
    undated = open_source(os.path.join(root, "dt=*", "*.csv"), SCHEMA, SETTINGS)
    assert type(undated) is FileSource and undated.dated is False
    with pytest.raises(SourceConfigError, match="matches the input of both 2026-11-22 and 2026-11-23"):
        undated.plan_nights([OTHER, NIGHT])


def _by_name(read: Read, label: str) -> tuple[beam.PCollection, beam.PCollection]:
    """(name, records) per name: what the reader parsed (raw batches' rows plus rejected records) and
    what it counted independently."""
    parsed = (
        (
            read.batches | f"{label}BatchRows" >> beam.Map(lambda batch: (batch.source, batch.records.num_rows)),
            read.rejected
            | f"{label}RejectedRecords"
            >> beam.FlatMap(
                lambda rejected: zip(
                    rejected.column("source").to_pylist(), rejected.column("records").to_pylist(), strict=True
                )
            ),
        )
        | f"{label}Parsed" >> beam.Flatten()
        | f"{label}SumParsed" >> beam.CombinePerKey(sum)
    )
    counted = read.counts | f"{label}SumCounted" >> beam.CombinePerKey(sum)
    return parsed, counted


def test_reading_accounts_for_every_record_exactly(source):
    """One night read alone, and two nights read together (each under its own names), in one pipeline:
    per name, the raw batches' rows plus the rejected records equal the independent count, and both
    equal the records written."""
    opened_source = opened(source)
    reads = {
        "OneNight": (opened_source.plan_nights([NIGHT]), dict(source.records[NIGHT])),
        "TwoNights": (
            opened_source.plan_nights([OTHER, NIGHT]),
            {source.in_range(name, day): n for day in (OTHER, NIGHT) for name, n in source.records[day].items()},
        ),
    }
    assert sum(reads["TwoNights"][1].values()) == NIGHT_RECORDS + OTHER_RECORDS  # no two nights share a name
    with BeamTestPipeline() as pipeline:
        for label, (nights, truth) in reads.items():
            read = pipeline | f"Read{label}" >> opened_source.read(nights)
            assert isinstance(read, Read)
            parsed, counted = _by_name(read, label)
            assert_that(parsed, equal_to(list(truth.items())), label=f"{label}ParsedPerName")
            assert_that(counted, equal_to(list(truth.items())), label=f"{label}CountedPerName")
            # Real trips, undamaged: nothing is rejected while reading.
            assert_that(read.rejected, is_empty(), label=f"{label}NothingRejected")
