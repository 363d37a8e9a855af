"""The README is the contract: its analyst queries run and say what the warehouse holds."""

import os
import re
import subprocess
import sys

import duckdb
import pytest

from pipelines import score
from tests.conftest import REPO, write_partition

DAY = "2026-11-23"


def readme_queries() -> list[str]:
    text = open(os.path.join(REPO, "README.md")).read()
    analysts = text.split("## For analysts", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", analysts, re.S)


@pytest.fixture(scope="module")
def warehouse(trained, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("readme")
    root = os.path.dirname(os.path.dirname(trained.version.path))
    [path] = write_partition(tmp / "trips" / f"dt={DAY}", DAY, 400)
    with open(path, "a") as f:
        f.write("broken,line\n")
    write_partition(tmp / "trips" / "dt=2026-11-22", "2026-11-22", 100)
    for day in ("2026-11-22", DAY):
        score.run(
            [
                f"--date={day}",
                f"--input={tmp}/trips/dt={{date}}/*.csv",
                f"--model_root={root}",
                f"--warehouse={tmp}/scores.duckdb",
            ]
        )
    return str(tmp / "scores.duckdb")


def test_readme_has_the_analyst_queries():
    assert len(readme_queries()) == 4


def test_analyst_queries_return_the_expected_numbers(warehouse):
    top, daily, reconciled, rejections = readme_queries()
    with duckdb.connect(warehouse, read_only=True) as con:
        rows = con.execute(top).fetchall()
        assert 0 < len(rows) <= 20 and [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True)
        labelled = con.execute(
            "SELECT count(*) FROM predictions WHERE score_date = DATE '2026-11-23' AND label"
        ).fetchone()[0]
        assert len(rows) == min(20, labelled)

        summary = con.execute(daily).fetchall()
        assert [(str(r[0]), r[3]) for r in summary] == [("2026-11-22", 100), (DAY, 400)]
        assert all(0 <= r[4] <= 1 and 0 <= r[5] <= 1 for r in summary)

        runs = con.execute(reconciled).fetchall()
        assert [(str(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in runs] == [
            ("2026-11-22", "succeeded", 100, 100, 0, True),
            (DAY, "succeeded", 401, 400, 1, True),
        ]

        assert con.execute(rejections).fetchall() == [("malformed line: expected 19 fields, found 2", "record", 1)]


def test_help_lists_the_pipeline_options():
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.score", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO},
        timeout=120,
    )
    assert out.returncode == 0
    for option in ("--date", "--input", "--warehouse", "--model_root", "--model_version", "--summary_json"):
        assert option in out.stdout
