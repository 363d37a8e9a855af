"""Every registered use case, the platform's contract end to end (README: Bringing your own data and
model): the bundled ones (taxi, flights) and the platform's fixture use case each train on a few
thousand records of their own sample, score a night, reconcile it against an independent count, answer
the views and the example queries, get a report a real browser draws, and have their warehouse refused
to another use case. A team's own use case can be held to the same test by adding its name here."""

import csv
import glob
import importlib
import json
from datetime import date

import pytest

from pipelines import report, score, train
from pipelines.defaults import DEFAULT_WAREHOUSE, default_warehouse
from schemas import load_use_case
from schemas.use_case import BUNDLED
from tests.browser import assert_self_contained, probe
from tests.conftest import query, readme_example_queries

FIXTURE = "tests.fixture_use_case"
USE_CASES = [*sorted(BUNDLED), FIXTURE]
TRAINING_RECORDS = 3000
NIGHT_RECORDS = 1200


def counted(paths: list[str], key: str) -> list[str]:
    """The keys of CSV files, read with Python's csv module: a count the pipeline's reader has no part in."""
    keys = []
    for path in paths:
        with open(path, newline="") as f:
            keys += [row[key] for row in csv.DictReader(f)]
    return keys


@pytest.mark.parametrize("name", USE_CASES)
def test_a_registered_use_case_trains_scores_reconciles_and_reports(name, tmp_path, request, capsys, monkeypatch):
    use_case = load_use_case(name)
    maker = importlib.import_module(use_case.sample.module)
    training = tmp_path / "training.csv"
    assert maker.write_training(str(training), TRAINING_RECORDS) == TRAINING_RECORDS
    models = tmp_path / "models"
    common = [f"--use_case={name}", f"--model_root={models}"]
    result = train.run([*common, f"--input={training}", f"--work_dir={tmp_path / 'work'}", "--epochs=2"])
    metadata = result.version.metadata
    assert (result.version.name, metadata["use_case"]) == (use_case.model_name, name)
    assert metadata["rejected_records"] == 0  # the sample is clean: every record learnt from
    assert metadata["training_records"] + metadata["eval_records"] == TRAINING_RECORDS
    assert 0 < metadata["threshold"] < 1 and metadata["metrics"]["auc"] > 0.6  # it learnt something

    night = use_case.sample.night
    files = maker.write_night(date.fromisoformat(night), str(tmp_path / "night" / f"dt={night}"), NIGHT_RECORDS)
    keys = counted(files, use_case.input.key.name)
    # No --warehouse: each use case's own local default, its folder made on the first night.
    monkeypatch.chdir(tmp_path)
    warehouse = tmp_path / default_warehouse(name)
    summary_file = tmp_path / "summary.json"
    args = [f"--date={night}", f"--input={tmp_path}/night/dt={{date}}/*.csv"]
    args += [f"--report_dir={tmp_path / 'reports'}", f"--summary_json={summary_file}", "--progress_seconds=0"]
    assert score.main([*common, *args]) == 0, capsys.readouterr().err
    said = json.loads(summary_file.read_text())
    assert warehouse.exists() and (name == "taxi") == (default_warehouse(name) == DEFAULT_WAREHOUSE)
    assert said["reconciled"] and said["input_records"] == len(keys) == NIGHT_RECORDS
    assert said["scored_records"] + said["rejected_records"] + said["duplicates_dropped"] == len(keys)
    key = use_case.input.key.name
    scored = query(warehouse, f'SELECT "{key}" FROM predictions WHERE score_date = ?', [date.fromisoformat(night)])
    assert len(scored) == said["scored_records"] > 0.95 * len(keys)
    assert {k for (k,) in scored} <= set(keys) and len({k for (k,) in scored}) == len(scored)

    assert_views_and_queries(warehouse, use_case, night, said["scored_records"])
    [page] = glob.glob(str(tmp_path / "reports" / f"report-{warehouse.stem}-{night}.html"))
    assert_self_contained(page)
    chromium = request.getfixturevalue("chromium")  # last: where it cannot be had, only this step skips
    found, console = probe(chromium, page, tmp_path)
    assert found["problems"] == [] and console == []
    assert found["charts"] and all(w > 0 and h > 0 for w, h in found["charts"])

    # The report finds the same default warehouse; another use case is refused by it.
    assert report.main([f"--use_case={name}", f"--date={night}", "--report_dir=none"]) == 0
    other = next(u for u in USE_CASES if u != name)
    capsys.readouterr()
    assert report.main([f"--use_case={other}", f"--date={night}", f"--warehouse={warehouse}", "--report_dir=none"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"holds use case {name}'s nights, not {other}'s: --use_case {name}, or another --warehouse" in line


def assert_views_and_queries(warehouse, use_case, night: str, scored: int) -> None:
    [row] = query(warehouse, "SELECT * FROM daily_score_summary")
    view = dict(
        zip(
            [c for (c,) in query(warehouse, "SELECT column_name FROM (DESCRIBE daily_score_summary)")], row, strict=True
        )
    )
    assert str(view["score_date"]) == night and view["records"] == scored
    assert 0 <= view["positive_share"] <= 1 and 0 < view["mean_probability"] < 1
    for generic, alias in use_case.words.view_aliases.items():
        assert view[alias] == view[generic]
    queries = readme_example_queries()
    for sql in queries.values():
        query(warehouse, sql, {"date": date.fromisoformat(night)} if "$date" in sql else None)
    [(records, positives)] = query(warehouse, queries["latest_scores"])
    assert records == scored and 0 <= positives <= records
