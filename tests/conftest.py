"""Shared fixtures: one small model trained once per session, and helpers to write input."""
from __future__ import annotations

import os
from datetime import date

import duckdb
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipelines import train  # noqa: E402
from scripts import make_trips  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "data", "chicago_taxi", "trips.csv")


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> train.TrainingResult:
    """A real model trained on the bundled sample (2 epochs: the tests check plumbing, not skill)."""
    root = tmp_path_factory.mktemp("train")
    return train.run([f"--input={SAMPLE}", f"--model_root={root / 'models'}", f"--work_dir={root / 'work'}",
                      "--epochs=2"])


@pytest.fixture()
def model_root(trained) -> str:
    return os.path.dirname(os.path.dirname(trained.version.path))


def write_partition(directory, day: str, rows: int, rows_per_file: int = 1_000_000) -> list[str]:
    return make_trips.write_partition(date.fromisoformat(day), rows, str(directory), rows_per_file, SAMPLE)


def query(db_path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()
