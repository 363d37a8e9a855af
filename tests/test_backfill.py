"""A range of nights in one job (`--start_date/--end_date`): each night published or refused as a run of
its own would be, with the same predictions and counts as one command per night."""

from __future__ import annotations

import json

import pytest

from pipelines import score
from tests.conftest import query, write_partition
from tests.float32 import assert_same_drift, assert_same_predictions

NIGHTS = ("2026-11-21", "2026-11-22", "2026-11-23")
REFUSED_NIGHT = "2026-11-22"


@pytest.fixture()
def three_nights(tmp_path):
    """Three nights of input; the middle one with 5% malformed lines, over the 1% rejection gate."""
    for i, day in enumerate(NIGHTS):
        [path] = write_partition(tmp_path / "trips" / f"dt={day}", day, 400 + 10 * i)
        if day == REFUSED_NIGHT:
            with open(path, "a") as f:
                f.writelines(f"broken,{n}\n" for n in range(21))
    return tmp_path


def _args(tmp_path, model_root, warehouse: str, *dates: str) -> list[str]:
    return [
        *dates,
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        f"--warehouse={tmp_path}/{warehouse}/scores.duckdb",
        "--create_dataset",
        "--min_records=1",
        "--report_dir=none",
        f"--summary_json={tmp_path}/{warehouse}/summary.json",
    ]


def _tables(tmp_path, warehouse: str) -> dict[str, list]:
    db = tmp_path / warehouse / "scores.duckdb"
    return {
        "predictions": query(
            db, "SELECT score_date, trip_id, probability, label FROM predictions ORDER BY score_date, trip_id"
        ),
        "refused_predictions": query(
            db, "SELECT score_date, trip_id, probability FROM refused_predictions ORDER BY score_date, trip_id"
        ),
        "errors": query(
            db,
            "SELECT score_date, source, line_number, reason FROM scoring_errors ORDER BY score_date, line_number",
        ),
        "refused_errors": query(
            db, "SELECT score_date, line_number, reason FROM refused_errors ORDER BY score_date, line_number"
        ),
        "runs": query(
            db,
            "SELECT score_date, status, input_records, scored_records, rejected_records, input_files "
            "FROM scoring_runs ORDER BY score_date",
        ),
        "drift": query(db, "SELECT score_date, feature, baseline, metric, value FROM feature_drift ORDER BY ALL"),
    }


def test_three_nights_in_one_job_equal_three_single_nights(trained, model_root, three_nights, capsys):
    tmp_path = three_nights
    for day in NIGHTS:  # one command per night, in date order, as a nightly schedule would have run them
        code = score.main(_args(tmp_path, model_root, "single", f"--date={day}"))
        assert code == (3 if day == REFUSED_NIGHT else 0)
    capsys.readouterr()

    code = score.main(_args(tmp_path, model_root, "range", f"--start_date={NIGHTS[0]}", f"--end_date={NIGHTS[-1]}"))
    out, err = capsys.readouterr()
    assert code == 3, err  # one night refused: the command says so
    assert "1 of 3 nights refused" in err and f"{REFUSED_NIGHT}: refused by quality gates: rejected_fraction" in err
    assert "3 nights in one job, 2 published, 1 refused" in out

    single, ranged = _tables(tmp_path, "single"), _tables(tmp_path, "range")
    assert [(str(d), status) for d, status, *_ in ranged["runs"]] == [
        (NIGHTS[0], "succeeded"),
        (REFUSED_NIGHT, "refused"),
        (NIGHTS[2], "succeeded"),
    ]
    for table in ("errors", "refused_errors", "runs"):
        assert ranged[table] == single[table], table
    # Scored in other bundles: the same rows, probabilities within float32 rounding (tests/float32.py).
    threshold = trained.version.threshold
    assert_same_predictions(ranged["predictions"], single["predictions"], threshold, probability=2, label=3)
    assert_same_predictions(ranged["refused_predictions"], single["refused_predictions"], threshold, probability=2)
    assert_same_drift(ranged["drift"], single["drift"])
    assert len(ranged["predictions"]) == 400 + 420 and len(ranged["refused_predictions"]) == 410
    assert {str(d) for d, *_ in ranged["predictions"]} == {NIGHTS[0], NIGHTS[2]}
    assert len(ranged["refused_errors"]) == 21

    summary = json.loads((tmp_path / "range" / "summary.json").read_text())
    assert summary["published"] == [NIGHTS[0], NIGHTS[2]] and summary["refused"] == [REFUSED_NIGHT]
    assert [n["date"] for n in summary["nights"]] == list(NIGHTS) and summary["reconciled"]
    assert summary["input_records"] == 400 + 410 + 21 + 420
    run_ids = {n["run_id"] for n in summary["nights"]}
    assert len(run_ids) == 3  # a run per night, each its own row and partition


@pytest.mark.parametrize(
    "dates, message",
    [
        (["--start_date=2026-11-21"], "needs both --start_date and --end_date"),
        (["--start_date=2026-11-23", "--end_date=2026-11-21"], "is before --start_date"),
        (["--start_date=2025-01-01", "--end_date=2026-01-02"], "at most 366 in one job"),
        (["--date=2026-11-21", "--start_date=2026-11-21", "--end_date=2026-11-22"], "not both"),
        (
            ["--start_date=2026-11-20", "--end_date=2026-11-24"],
            "no input for 2 of the 5 nights: 2026-11-20, 2026-11-24",
        ),
    ],
)
def test_a_bad_range_is_refused_before_anything_is_written(model_root, three_nights, capsys, dates, message):
    tmp_path = three_nights
    assert score.main(_args(tmp_path, model_root, "bad", *dates)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad" / "scores.duckdb").exists()


def test_a_range_needs_a_dated_input(model_root, three_nights, capsys):
    tmp_path = three_nights
    args = _args(tmp_path, model_root, "bad", "--start_date=2026-11-21", "--end_date=2026-11-22")
    args[2] = f"--input={tmp_path}/trips/dt=2026-11-21/*.csv"
    assert score.main(args) == 2
    assert "needs a {date} in --input" in capsys.readouterr().err
