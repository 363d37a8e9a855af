"""Quality gates: a bad night never replaces a good one (README: Quality gates).

The gate arithmetic is checked on its own; every refusal and every way past one runs end to end
through `python -m pipelines.score`, on DuckDB and on BigQuery (the emulator).
"""

import getpass
import gzip
import json
import socket
from datetime import date, datetime, timedelta, timezone

import pytest

from pipelines import score
from pipelines.warehouses import GateLimits, open_warehouse, sql
from pipelines.warehouses.gates import VOLUME_MIN_HISTORY, decide
from schemas.taxi import USE_CASE as TAXI
from tests.conftest import write_partition

DAY = "2026-11-23"


def counts(inputs, scored, rejected):
    return {"input_records": inputs, "scored_records": scored, "rejected_records": rejected}


def failed(decision):
    return {g.name for g in decision.gates if not g.passed}


# ---------------------------------------------------------------- the arithmetic


def test_rejections_are_refused_past_the_fraction_and_the_count():
    assert failed(decide(counts(1000, 990, 10), [], 0, GateLimits())) == set()
    assert failed(decide(counts(1000, 989, 11), [], 0, GateLimits())) == {"rejected_fraction"}
    capped = GateLimits(max_rejected_fraction=1, max_rejected_records=5)
    assert failed(decide(counts(1000, 994, 6), [], 0, capped)) == {"rejected_records"}
    gate = next(g for g in decide(counts(1000, 989, 11), [], 0, GateLimits()).gates if g.name == "rejected_fraction")
    assert (gate.value, gate.limit, gate.passed) == (0.011, 0.01, False)


def test_volume_is_checked_only_against_a_history_of_seven_nights():
    six = [1000] * (VOLUME_MIN_HISTORY - 1)
    assert failed(decide(counts(10, 10, 0), six, 0, GateLimits())) == set()
    seven = [1000, 1100, 900, 1050, 950, 1000, 980]
    assert failed(decide(counts(10, 10, 0), seven, 0, GateLimits())) == {"volume_ratio", "volume_z"}
    assert failed(decide(counts(1020, 1020, 0), seven, 0, GateLimits())) == set()
    assert failed(decide(counts(2100, 2100, 0), seven, 0, GateLimits())) >= {"volume_ratio"}
    # Inside the band but far outside what the history's spread allows.
    steady = [10000 + d for d in (0, 3, -2, 4, -3, 1, -1)]
    assert failed(decide(counts(8000, 8000, 0), steady, 0, GateLimits())) == {"volume_z"}
    # Identical nights (MAD 0): a count still varies like a count, so one record more is no anomaly.
    assert failed(decide(counts(1001, 1001, 0), [1000] * 14, 0, GateLimits())) == set()


def test_shrinking_a_published_night_needs_a_flag_and_an_empty_night_is_never_published():
    assert failed(decide(counts(40, 40, 0), [], 100, GateLimits())) == {"shrink"}
    assert decide(counts(40, 40, 0), [], 100, GateLimits(allow_shrink=True)).publish
    assert decide(counts(50, 50, 0), [], 100, GateLimits()).publish
    empty = decide(counts(0, 0, 0), [], 0, GateLimits(accept_failures="holiday"))
    assert failed(empty) == {"scorable_records", "min_records"} and not empty.publish
    bad = decide(counts(100, 1, 99), [], 0, GateLimits(accept_failures="known upstream bug"))
    assert failed(bad) == {"rejected_fraction"} and bad.publish


# ---------------------------------------------------------------- end to end, both warehouses


def args(tmp_path, model_root, warehouse, day=DAY, *extra):
    return [
        f"--date={day}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        f"--summary_json={tmp_path}/summary-{day}.json",
        *warehouse.args,
        *extra,
    ]


def write_night(tmp_path, rows: int, bad: int = 0, day=DAY) -> str:
    """`rows` good trips, then `bad` records with a fare that is not a number."""
    partition = tmp_path / "trips" / f"dt={day}"
    for old in partition.glob("*.csv") if partition.exists() else []:
        old.unlink()
    [path] = write_partition(partition, day, rows + bad)
    if bad:
        lines = open(path).read().splitlines()
        damaged = [
            ",".join([f"bad-{i}", *line.split(",")[1:2], "n/a", *line.split(",")[3:]])
            for i, line in enumerate(lines[1 : bad + 1])
        ]
        open(path, "w").write("\n".join([lines[0], *damaged, *lines[bad + 1 :]]) + "\n")
    return path


def summary(tmp_path, day=DAY) -> dict:
    return json.load(open(f"{tmp_path}/summary-{day}.json"))


def published(warehouse, day=DAY):
    return warehouse.rows(
        "SELECT COUNT(*), MIN(run_id) FROM predictions WHERE score_date = ? AND model_role = 'champion'",
        date.fromisoformat(day),
    )[0]


def test_a_bad_night_is_refused_kept_apart_and_explained(model_root, tmp_path, warehouse, capsys):
    write_night(tmp_path, 400)
    assert score.main(args(tmp_path, model_root, warehouse)) == 0
    good = published(warehouse)
    assert good[0] == 400

    write_night(tmp_path, 4, bad=396)  # 99% bad
    assert score.main(args(tmp_path, model_root, warehouse)) == 3
    assert "refused: 2026-11-23 not published" in capsys.readouterr().err
    refused = summary(tmp_path)
    assert refused["status"] == "refused" and refused["reconciled"]
    assert [g["name"] for g in refused["gates"] if not g["passed"]] == ["rejected_fraction", "shrink"]
    assert published(warehouse) == good  # the good night, whole
    # The refused night's rows are queryable, apart from the published ones; the views show the good night.
    run_id = refused["run_id"]
    assert warehouse.rows("SELECT COUNT(*) FROM refused_predictions WHERE run_id = ?", run_id) == [(4,)]
    assert warehouse.rows(
        "SELECT reason, column_name, SUM(records) FROM refused_errors WHERE run_id = ? GROUP BY reason, column_name",
        run_id,
    ) == [("wrong_type", "fare", 396)]
    assert warehouse.rows("SELECT trips FROM daily_score_summary") == [(400,)]
    assert warehouse.rows("SELECT COUNT(*) FROM latest_predictions") == [(400,)]
    # The README's (and analyst_queries.sql's) answer to "why was last night refused?".
    why = warehouse.rows(warehouse.example_queries()["why_refused"])
    assert why == [(date(2026, 11, 23), run_id, refused["error"], "wrong_type", "fare", 396)]
    assert "rejected_fraction: 396 of 400 records rejected" in refused["error"]

    # Published anyway, on the record.
    reason = "upstream fare feed broken; ops ticket 1234"
    assert score.main(args(tmp_path, model_root, warehouse, DAY, f"--accept_gate_failures={reason}")) == 0
    accepted = summary(tmp_path)
    assert accepted["status"] == "succeeded" and accepted["accepted_failures"] == reason
    assert accepted["accepted_by"] == f"{getpass.getuser()}@{socket.gethostname()}"
    [(stored_reason, by, gates)] = warehouse.rows(
        "SELECT accepted_failures, accepted_by, gates FROM scoring_runs WHERE run_id = ?", accepted["run_id"]
    )
    assert (stored_reason, by) == (reason, accepted["accepted_by"])
    assert {g["name"]: g["passed"] for g in json.loads(gates)}["rejected_fraction"] is False
    assert published(warehouse) == (4, accepted["run_id"])
    # The refused run's rows stay where they were, for the record.
    assert warehouse.rows("SELECT COUNT(*) FROM refused_predictions") == [(4,)]


def test_an_incomplete_night_is_refused_naming_its_file(model_root, tmp_path, warehouse, capsys):
    write_night(tmp_path, 2000)
    assert score.main(args(tmp_path, model_root, warehouse)) == 0
    good = published(warehouse)
    # Re-delivered compressed and cut at 70%: what was read reconciles and nothing read was rejected, but
    # how many records the rest held cannot be known.
    [path] = (tmp_path / "trips" / f"dt={DAY}").glob("*.csv")
    packed = gzip.compress(path.read_bytes())
    path.unlink()
    cut = path.with_name(path.name + ".gz")
    cut.write_bytes(packed[: len(packed) * 7 // 10])
    redelivered = f"--input={tmp_path}/trips/dt={{date}}/*.csv.gz"
    assert score.main(args(tmp_path, model_root, warehouse, DAY, redelivered, "--progress_seconds=0")) == 3
    [line] = capsys.readouterr().err.splitlines()  # progress lines off: a slow machine prints some
    refused = summary(tmp_path)
    assert refused["status"] == "refused" and refused["reconciled"] and 0 < refused["scored_records"] < 2000
    assert [g["name"] for g in refused["gates"] if not g["passed"]] == ["complete_input"]
    gate = next(g for g in refused["gates"] if g["name"] == "complete_input")
    assert gate["value"] == 1 and f"{cut} (after {refused['scored_records']} records:" in gate["detail"]
    assert "complete_input: reading stopped part-way in 1 file" in line and str(cut) in line
    assert published(warehouse) == good  # the good night, whole
    # Published only on the record.
    override = "--accept_gate_failures=the sender lost the rest; ops ticket 99"
    assert score.main(args(tmp_path, model_root, warehouse, DAY, redelivered, override)) == 0
    assert published(warehouse)[0] == refused["scored_records"]


def test_an_empty_night_is_never_published(model_root, tmp_path, warehouse):
    write_night(tmp_path, 300)
    assert score.main(args(tmp_path, model_root, warehouse)) == 0
    partition = tmp_path / "trips" / f"dt={DAY}"
    [path] = partition.glob("*.csv")
    path.write_text(path.read_text().splitlines()[0] + "\n")  # the header only
    override = "--accept_gate_failures=try anyway"
    assert score.main(args(tmp_path, model_root, warehouse, DAY, override)) == 3
    refused = summary(tmp_path)
    assert {g["name"] for g in refused["gates"] if not g["passed"]} == {"scorable_records", "min_records", "shrink"}
    assert published(warehouse)[0] == 300


def seed_history(warehouse, nights: int, records: int) -> None:
    """Published nights before DAY, as their runs' rows say (the volume gate reads nothing else)."""
    contract = open_warehouse(warehouse.location, TAXI)
    contract.prepare()
    for back in range(1, nights + 1):
        day = date.fromisoformat(DAY) - timedelta(days=back)
        at = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(days=30 - back)
        values = {
            "run_id": f"history-{back}",
            "score_date": day,
            "status": "succeeded",
            "model_name": "taxi_tipper",
            "model_version": 1,
            "input": "x",
            "input_records": records + back % 3,
            "scored_records": records,
            "started_at": at,
            "finished_at": at,
            "options": "{}",
        }
        contract._query(sql.insert_run(contract.dialect, values))


def test_volume_collapse_after_seven_nights_is_refused_and_a_normal_night_published(model_root, tmp_path, warehouse):
    seed_history(warehouse, VOLUME_MIN_HISTORY, 400)
    write_night(tmp_path, 40)
    assert score.main(args(tmp_path, model_root, warehouse)) == 3
    refused = summary(tmp_path)
    assert {g["name"] for g in refused["gates"] if not g["passed"]} == {"volume_ratio", "volume_z"}
    assert "0.10x the median of the last 7 published nights" in refused["error"]
    write_night(tmp_path, 410)
    assert score.main(args(tmp_path, model_root, warehouse)) == 0
    assert summary(tmp_path)["status"] == "succeeded" and published(warehouse)[0] == 410


def test_shrinking_a_published_night_is_refused_unless_allowed(model_root, tmp_path, warehouse):
    write_night(tmp_path, 400)
    assert score.main(args(tmp_path, model_root, warehouse)) == 0
    write_night(tmp_path, 150)
    assert score.main(args(tmp_path, model_root, warehouse)) == 3
    shrink = next(g for g in summary(tmp_path)["gates"] if g["name"] == "shrink")
    assert (shrink["value"], shrink["limit"], shrink["passed"]) == (0.375, 0.5, False)
    assert published(warehouse)[0] == 400
    assert score.main(args(tmp_path, model_root, warehouse, DAY, "--allow_shrink")) == 0
    assert published(warehouse)[0] == 150 and summary(tmp_path)["accepted_failures"] is None


@pytest.mark.parametrize(
    "option", ["--max_rejected_fraction=1.5", "--min_records=-1", "--max_volume_ratio=0.5", "--accept_gate_failures= "]
)
def test_gate_limits_are_checked_before_anything_runs(model_root, tmp_path, option, capsys):
    write_night(tmp_path, 10)
    warehouse = tmp_path / "wh" / "scores.duckdb"
    assert (
        score.main(
            [
                "--date",
                DAY,
                f"--input={tmp_path}/trips/dt={{date}}/*.csv",
                f"--model_root={model_root}",
                f"--warehouse={warehouse}",
                option,
            ]
        )
        == 2
    )
    assert not warehouse.exists() and capsys.readouterr().err.startswith("error: --")
