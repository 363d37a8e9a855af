"""`pipelines.score` end to end on DirectRunner, into a real DuckDB warehouse file."""

import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from datetime import date

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import tensorflow as tf
from tqdm import tqdm

from models import signature
from pipelines import score
from pipelines.batches import RawBatch
from pipelines.validate import SchemaValidator
from schemas.taxi import TRIPS
from tests.conftest import query, write_partition
from tests.float32 import assert_same_scores

DAY = "2026-11-23"


def score_args(tmp_path, model_root, day=DAY, *extra):
    return [
        f"--date={day}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        f"--warehouse={tmp_path}/wh/scores.duckdb",
        "--create_dataset",
        *extra,
    ]


def predictions(tmp_path, day=DAY):
    return query(
        tmp_path / "wh" / "scores.duckdb",
        "SELECT trip_id, probability, label, threshold, model_version, run_id FROM predictions "
        "WHERE score_date = ? ORDER BY trip_id",
        [date.fromisoformat(day)],
    )


def test_scores_a_date_end_to_end(trained, model_root, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 3000, rows_per_file=1000)
    summary = score.run(score_args(tmp_path, model_root, DAY, f"--summary_json={tmp_path}/summary.json"))

    rows = predictions(tmp_path)
    assert len(rows) == 3000 and len({r[0] for r in rows}) == 3000
    threshold = trained.version.threshold
    for _, probability, label, stored_threshold, version, run_id in rows:
        assert 0 <= probability <= 1 and label == (probability >= threshold)
        assert stored_threshold == pytest.approx(threshold) and version == trained.version.version
        assert run_id == summary["run_id"]
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert (written["input_records"], written["scored_records"], written["rejected_records"]) == (3000, 3000, 0)
    assert written["reconciled"] and written["status"] == "succeeded" and written["model_version"] == 1
    assert query(tmp_path / "wh" / "scores.duckdb", "SELECT status, input_records FROM scoring_runs") == [
        ("succeeded", 3000)
    ]
    assert not os.path.exists(tmp_path / "wh" / "_staging" / summary["run_id"])
    # Where the time went: every stage's own work, from Beam metrics, in the summary and the run's row.
    assert list(summary["stage_seconds"]) == ["extract", "validate", "to_tensors", "model", "stage", "publish"]
    assert all(0 < spent < summary["timings"]["seconds"] for spent in summary["stage_seconds"].values()), (
        json.dumps(summary["stage_seconds"]),
        summary["timings"],
    )
    [(stored,)] = query(tmp_path / "wh" / "scores.duckdb", "SELECT metrics FROM scoring_runs")
    assert round(json.loads(stored)["stage_microseconds/model"] / 1e6, 3) == summary["stage_seconds"]["model"]

    # The warehouse holds what the model itself says for the first file's rows.
    raw = pacsv.read_csv(
        tmp_path / "trips" / f"dt={DAY}" / "part-00000.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in TRIPS.names}, strings_can_be_null=True, null_values=[""]
        ),
    )
    valid, _ = SchemaValidator(TRIPS.for_scoring()).validate(RawBatch("x", raw.to_batches()[0]))
    model = tf.saved_model.load(trained.version.path)
    direct = model.signatures[signature.RAW_SIGNATURE](**signature.batch_to_inputs(valid, TRIPS))
    expected = dict(
        zip(valid.column("trip_id").to_pylist(), direct[signature.PROBABILITY].numpy().tolist(), strict=True)
    )
    stored = {r[0]: r[1] for r in rows if r[0] in expected}
    assert len(stored) == 1000
    assert_same_scores(stored, expected, "stored against the model called directly")


def test_bad_records_are_rejected_with_reasons_and_the_rest_scored(model_root, tmp_path):
    partition = tmp_path / "trips" / f"dt={DAY}"
    [path] = write_partition(partition, DAY, 50)
    lines = open(path).read().splitlines()
    header, good = lines[0], lines[1:]
    first = good[0].split(",")
    wrong_type = ",".join(["bad-type"] + first[1:2] + ["12x"] + first[3:])
    missing_fare = ",".join(["no-fare"] + first[1:2] + [""] + first[3:])
    with open(path, "w") as f:
        f.write("\n".join([header, *good, "truncated,line", wrong_type, missing_fare]) + "\n")
    (partition / "part-empty.csv").write_text("")

    summary = score.run(score_args(tmp_path, model_root, DAY, "--max_rejected_fraction=0.1"))
    assert (summary["input_records"], summary["scored_records"], summary["rejected_records"]) == (53, 50, 3)
    assert summary["rejected_files"] == 1 and summary["reconciled"]
    assert summary["input_files"] == {
        path: {"records": 53, "valid": 50, "rejected": 3},
        str(partition / "part-empty.csv"): {"records": 0, "valid": 0, "rejected": 0},
    }
    errors = query(
        tmp_path / "wh" / "scores.duckdb",
        "SELECT reason, raw_record, error_kind, line_number, source, column_name, detail, records "
        "FROM scoring_errors ORDER BY reason",
    )
    reasons = {r[0]: r for r in errors}
    assert set(reasons) == {"empty_file", "malformed_line", "missing_required", "wrong_type"}
    assert reasons["malformed_line"][1:] == (
        "truncated,line",
        "record",
        52,
        path,
        None,
        "expected 19 fields, found 2",
        1,
    )
    assert reasons["missing_required"][1].startswith("no-fare,")
    assert reasons["missing_required"][3:] == (54, path, "fare", "no value", 1)
    assert reasons["wrong_type"][1].startswith("bad-type,")
    assert reasons["wrong_type"][3:] == (53, path, "fare", "'12x' is not FLOAT64", 1)
    assert reasons["empty_file"][2:] == ("file", None, str(partition / "part-empty.csv"), None, "no records", 0)
    assert len(predictions(tmp_path)) == 50
    # The night's story in metrics: rejected records by reason code and by source, reads per source, latency.
    assert summary["rejected_by_reason"] == {
        "empty_file": 0,
        "malformed_line": 1,
        "missing_required": 1,
        "wrong_type": 1,
    }
    metrics = summary["metrics"]
    assert metrics[f"read_by_source/{path}"] == 53 and metrics[f"rejected_by_source/{path}"] == 3
    assert metrics["RunInference-champion/inference_batch_latency_micro_secs.count"] >= 1
    assert metrics["BatchElements/batch_size.sum"] == 50
    [(stored,)] = query(tmp_path / "wh" / "scores.duckdb", "SELECT metrics FROM scoring_runs")
    assert json.loads(stored) == metrics


def test_a_local_run_shows_live_progress(model_root, tmp_path, capsys):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 3000)
    # Small blocks make many batches; a tiny interval reports after each one.
    assert score.main(score_args(tmp_path, model_root) + ["--block_bytes=16384", "--progress_seconds=0.000001"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("progress: ")]
    counts = [int(line.split()[1].replace(",", "")) for line in lines]
    assert len(counts) >= 3 and counts == sorted(counts) and counts[-1] == 3000, lines
    assert all(line.endswith("records/s") for line in lines)


def test_on_a_terminal_a_local_run_draws_a_progress_bar_by_bytes(model_root, tmp_path):
    """What a person at a terminal sees: a bar over the input's bytes with records/s and an ETA, from
    worker processes too; the plain lines of the test above are for logs and pipes."""
    files = write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 4000, rows_per_file=1000)
    total = sum(os.path.getsize(f) for f in files)
    args = score_args(tmp_path, model_root) + [
        "--block_bytes=16384",
        "--split_bytes=65536",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
        "--report_dir=none",
    ]
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.score", *args], stdout=follower, stderr=follower, stdin=subprocess.DEVNULL
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=300) == 0, seen.decode(errors="replace")[-3000:]
    os.close(leader)
    screens = [s for s in seen.decode(errors="replace").replace("\r\n", "\n").split("\r") if "reading" in s]
    assert screens, seen.decode(errors="replace")[-3000:]
    last = screens[-1].split("\n")[0]
    size = tqdm.format_sizeof(total, divisor=1024)
    assert "100%|" in last and f"| {size}B/{size}B [" in last, last
    assert "4,000 records scored" in last and "records/s" in last
    assert any("<" in s and "%|" in s for s in screens)  # elapsed<remaining: the ETA
    assert "progress: " not in seen.decode(errors="replace")  # a bar, not the log lines


@pytest.mark.parametrize(
    "args, message",
    [
        (["--date=2026-02-30"], "not a real date"),
        (["--timezone=Mars/Olympus"], "not an IANA time zone"),
        (["--date=2026-11-21"], "no input files for date 2026-11-21"),
        (["--date=2026-11-23", "--model_version=9"], "no complete version 9"),
    ],
)
def test_bad_configuration_fails_before_writing_anything(model_root, tmp_path, args, message, capsys):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 10)
    base = [a for a in score_args(tmp_path, model_root) if not a.startswith("--date")]
    assert score.main(base + args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "wh").exists()


def test_failed_run_keeps_the_previous_rows_and_says_failed(trained, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(os.path.dirname(trained.version.path), root / "taxi_tipper")
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 300)
    good = score.run(score_args(tmp_path, root))
    # Version 2, exported before manifests existed (so nothing says what it should hold), lost its
    # variables: it resolves, and loading it fails mid-run.
    shutil.copytree(root / "taxi_tipper" / "1", root / "taxi_tipper" / "2")
    shutil.rmtree(root / "taxi_tipper" / "2" / "variables")
    meta = json.loads((root / "taxi_tipper" / "2" / "metadata.json").read_text())
    del meta["manifest"]
    (root / "taxi_tipper" / "2" / "metadata.json").write_text(json.dumps({**meta, "version": 2}))
    with pytest.raises(score.RunFailed, match="previous results left as they were"):
        score.run(score_args(tmp_path, root))
    rows = predictions(tmp_path)
    assert len(rows) == 300 and {r[5] for r in rows} == {good["run_id"]} and {r[4] for r in rows} == {1}
    runs = query(
        tmp_path / "wh" / "scores.duckdb", "SELECT model_version, status, error FROM scoring_runs ORDER BY started_at"
    )
    assert [r[:2] for r in runs] == [(1, "succeeded"), (2, "failed")] and runs[1][2]


def test_a_dry_run_on_a_local_runner_builds_and_writes_nothing(model_root, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 20)
    summary = score.run(score_args(tmp_path, model_root, DAY, "--dry_run=True"))
    assert summary["dry_run"] and summary["job"] is None and summary["model_version"] == 1
    assert not (tmp_path / "wh").exists()
