"""Large files read as byte ranges (pipelines/sources/shards.py): the same records, lines and counts as a whole read,
wherever the cuts fall, and the same predictions from a split night on two worker processes."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import score
from pipelines.batches import COUNTS, REJECTED, RawBatch
from pipelines.sources import ReadSettings
from pipelines.sources.file_source import ReadFiles
from pipelines.sources.shards import CountShard, cuts, plan_shards
from schemas.taxi import TRIPS
from tests.conftest import query, write_partition
from tests.float32 import assert_same_predictions

SCHEMA = TRIPS.for_scoring()
DAY = "2026-11-23"


def read(path: str, split_bytes: int, block_bytes: int = 2048) -> dict:
    """What ReadInputFiles does, in this process: the first pass over split ranges, then every range."""
    ranges = plan_shards([path], split_bytes)
    counted: dict[str, list] = {}
    for part in ranges:
        if not part.whole:
            for file, found in CountShard().process(part):
                counted.setdefault(file, []).append(found)
    found_cuts = {file: cuts(found) for file, found in counted.items()}
    reader = ReadFiles(SCHEMA, ReadSettings(block_bytes=block_bytes))
    out = {"ranges": len(ranges), "keys": [], "lines": [], "rejected": [], "counted": 0}
    for part in ranges:
        for item in reader.process(part, found_cuts):
            if isinstance(item, RawBatch):
                out["keys"] += item.records.column("trip_id").to_pylist()
                out["lines"] += item.lines().to_pylist()
            elif item.tag == COUNTS:
                out["counted"] += item.value[1]
            elif item.tag == REJECTED:
                rejected = item.value.to_pydict()
                out["rejected"] += list(zip(rejected["line_number"], rejected["records"], strict=True))
    return out


@pytest.fixture(scope="module")
def quoted_trips(tmp_path_factory) -> pa.Table:
    """Sample trips, with a third of the company names holding quotes, commas and newlines."""
    [path] = write_partition(tmp_path_factory.mktemp("quoted"), DAY, 600)
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    names = [
        f'{name}\n"co", op\r\nline {i}' if name and i % 3 == 0 else name
        for i, name in enumerate(table.column("company").to_pylist())
    ]
    return table.set_column(table.schema.get_field_index("company"), "company", pa.array(names, pa.string()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(split=st.integers(1024, 60_000), block=st.sampled_from([1024, 4096, 1 << 20]), as_json=st.booleans())
def test_shards_read_what_a_whole_read_reads(quoted_trips, tmp_path, split, block, as_json):
    path = str(tmp_path / ("trips.json" if as_json else "trips.csv"))
    if as_json:
        with open(path, "w") as f:
            for row in quoted_trips.to_pylist():
                f.write(json.dumps(row) + "\n")
    else:
        pacsv.write_csv(quoted_trips, path)
    whole, split_read = read(path, 0, block), read(path, split, block)
    assert whole["ranges"] == 1 and split_read["ranges"] == -(-os.path.getsize(path) // split)
    assert split_read["keys"] == whole["keys"] and len(whole["keys"]) == quoted_trips.num_rows
    assert split_read["lines"] == whole["lines"]  # the file's own line numbers, from every range
    assert split_read["counted"] == whole["counted"] == quoted_trips.num_rows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_files_split_anywhere_lose_and_repeat_nothing(quoted_trips, tmp_path, data):
    """Stray quotes and cut-off lines: a split read may judge a record differently from a whole read,
    but each range's count is what its records add up to, and no record is read twice."""
    pacsv.write_csv(quoted_trips, tmp_path / "clean.csv")
    raw = bytearray((tmp_path / "clean.csv").read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at:at] = data.draw(st.sampled_from([b'"', b"\n", b'",\n"', b"\r"]))
    path = tmp_path / "damaged.csv"
    path.write_bytes(bytes(raw))
    split = data.draw(st.integers(1024, 40_000))
    got = read(str(path), split)
    assert got["counted"] == len(got["keys"]) + sum(records for _, records in got["rejected"])
    assert len(got["keys"]) == len(set(got["keys"]))
    seen = got["lines"] + [line for line, _ in got["rejected"] if line is not None]
    assert len(seen) == len(set(seen)), "a line read twice"


def _score(tmp_path, model_root, name: str, split_bytes: int) -> dict:
    return score.run(
        [
            f"--date={DAY}",
            f"--input={tmp_path}/trips/dt={{date}}/*.csv",
            f"--model_root={model_root}",
            f"--warehouse={tmp_path}/{name}/scores.duckdb",
            "--create_dataset",
            f"--split_bytes={split_bytes}",
            "--block_bytes=16384",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
            "--report_dir=none",
        ]
    )


def test_a_night_read_as_ranges_on_two_workers_scores_as_read_whole(trained, model_root, tmp_path, quoted_trips):
    folder = tmp_path / "trips" / f"dt={DAY}"
    folder.mkdir(parents=True)
    pacsv.write_csv(quoted_trips, folder / "part-00000.csv")
    # A damaged record too: its rejection must come out the same from either read.
    with open(folder / "part-00000.csv", "ab") as f:
        f.write(b"not,a,trip\n")
    size = os.path.getsize(folder / "part-00000.csv")

    whole = _score(tmp_path, model_root, "whole", 0)
    split = _score(tmp_path, model_root, "split", 16 << 10)
    assert whole["input_ranges"] == 1 and split["input_ranges"] == -(-size // (16 << 10)) > 4
    for key in ("input_records", "scored_records", "rejected_records", "rejected_files", "input_files"):
        assert split[key] == whole[key], key
    assert whole["input_records"] == quoted_trips.num_rows + 1 and whole["rejected_records"] == 1

    def rows(name):
        return query(
            tmp_path / name / "scores.duckdb",
            "SELECT trip_id, probability, label FROM predictions ORDER BY trip_id",
        )

    def errors(name):
        return query(
            tmp_path / name / "scores.duckdb",
            "SELECT source, line_number, reason, raw_record FROM scoring_errors ORDER BY line_number",
        )

    assert len(rows("whole")) == quoted_trips.num_rows
    assert_same_predictions(rows("split"), rows("whole"), trained.version.threshold, probability=1, label=2)
    assert errors("split") == errors("whole")
