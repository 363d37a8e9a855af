"""Use cases chosen at run time (README: Bringing your own data and model): a team's use case declared
outside this repository, as a module on the path, trains and scores with --use_case and nothing else of
the platform changed; its TIMESTAMP or DATE event time, its BOOL label and its drift minimum below 1,000
work end to end; a model version of one use case is refused by another."""

import json
import sys
import textwrap
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from pipelines import report, score, train
from tests.conftest import query

NIGHT = "2026-11-23"
NIGHT_RECORDS = 600  # below the platform's default drift minimum (1,000), above this use case's (100)

DECLARATION = '''
"""A loan-default use case, as a team outside the platform would declare it."""
from schemas import Column, ColumnType, DriftSettings, Feature, FeatureKind, InputSchema, Role
from schemas import ThresholdRule, TrainingSettings, UseCase, Words

APPLICATIONS = InputSchema(
    name="loan_applications",
    columns=(
        Column("application_id", ColumnType.STRING, True, Role.KEY, "Application id."),
        Column("applied_at", ColumnType.{event_type}, True, Role.EVENT_TIME, "When it was filed."),
        Column("income", ColumnType.FLOAT64, False, Role.FEATURE, "Yearly income; 5% missing.", minimum=0),
        Column("amount", ColumnType.FLOAT64, True, Role.FEATURE, "Amount asked for.", minimum=0),
        Column("purpose", ColumnType.STRING, True, Role.FEATURE, "What the loan is for."),
        Column("state", ColumnType.STRING, False, Role.FEATURE, "Applicant's state."),
        Column("term_months", ColumnType.INT64, True, Role.FEATURE, "Term: 12, 24, 36 or 60.", 1, 60),
        Column("defaulted", ColumnType.BOOL, False, Role.LABEL, "Whether the loan defaulted."),
    ),
)
USE_CASE = UseCase(
    name="loans",
    input=APPLICATIONS,
    features=(
        Feature("income", FeatureKind.NUMERIC),
        Feature("amount", FeatureKind.NUMERIC),
        Feature("purpose", FeatureKind.VOCABULARY, vocabulary_size=20),
        Feature("state", FeatureKind.VOCABULARY, vocabulary_size=60),
        Feature("term_months", FeatureKind.INTEGER_CATEGORY, ids=61),
    ),
    label="defaulted",
    preprocessing="{module}_transform:preprocessing_fn",
    model_name="loan_default",
    training=TrainingSettings(epochs=2, batch_size=128, threshold_rule=ThresholdRule.RECALL, threshold_target=0.5),
    drift=DriftSettings(min_values=100),
    words=Words(record="application", records="applications", positive="default"),
)
'''

PREPROCESSING = """
import tensorflow as tf

from transforms.preprocessing import fill_in_missing, transform_features
from {module} import USE_CASE


def preprocessing_fn(inputs):
    outputs = transform_features(inputs, USE_CASE)
    if "defaulted" in inputs:
        outputs["defaulted"] = tf.cast(fill_in_missing(inputs["defaulted"]), tf.int64)
    return outputs
"""


def applications(rows: int, first: date, days: int, seed: int, amount_scale: float = 1.0) -> pa.Table:
    """Synthetic applications whose default depends on income, amount and term (so a model can learn)."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(11, 0.5, rows)
    amount = rng.lognormal(9.5, 0.7, rows) * amount_scale
    term = rng.choice([12, 24, 36, 60], rows)
    risk = 1 / (1 + np.exp(-(amount / income * 8 + term / 30 - 3.5)))
    start = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    offsets = zip(rng.integers(0, days, rows), rng.integers(0, 86400, rows), strict=True)
    at = [start + timedelta(days=int(d), seconds=int(s)) for d, s in offsets]
    income_text = np.where(rng.random(rows) < 0.05, "", np.round(income, 2).astype(str))
    return pa.table(
        {
            "application_id": [f"{first:%Y%m%d}-{seed}-{i}" for i in range(rows)],
            "applied_at": [a.isoformat() for a in at],
            "income": income_text,
            "amount": np.round(amount, 2),
            "purpose": rng.choice(["car", "home", "education", "medical", "business"], rows),
            "state": rng.choice(["IL", "CA", "NY", "TX", "WA", ""], rows),
            "term_months": term,
            "defaulted": np.where(rng.random(rows) < risk, "true", "false"),
        }
    )


def dated(table: pa.Table, event_type: str) -> pa.Table:
    """The event time as the use case declares it: a timestamp, or the date alone."""
    if event_type == "DATE":
        days = [v[:10] for v in table.column("applied_at").to_pylist()]
        return table.set_column(table.schema.get_field_index("applied_at"), "applied_at", pa.array(days))
    return table


def install(outside, event_type: str, monkeypatch) -> str:
    """The use case's modules in a folder of their own on the path (not in this repository)."""
    module = f"loans_{event_type.lower()}"
    outside.mkdir()
    (outside / f"{module}.py").write_text(textwrap.dedent(DECLARATION.format(event_type=event_type, module=module)))
    (outside / f"{module}_transform.py").write_text(textwrap.dedent(PREPROCESSING.format(module=module)))
    monkeypatch.syspath_prepend(str(outside))
    for name in (module, f"{module}_transform"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return module


@pytest.fixture(params=["TIMESTAMP", "DATE"])
def loans(request, tmp_path, monkeypatch):
    return install(tmp_path / "team_code", request.param, monkeypatch), request.param


def test_a_use_case_from_outside_trains_scores_and_flags_drift_on_a_small_night(loans, tmp_path, capsys):
    module, event_type = loans
    training_file = tmp_path / "applications.csv"
    pacsv.write_csv(dated(applications(3000, date(2026, 9, 1), 60, seed=1), event_type), training_file)
    root = tmp_path / "models"
    result = train.run(
        [f"--use_case={module}", f"--input={training_file}", f"--model_root={root}", f"--work_dir={tmp_path / 'work'}"]
    )
    metadata = result.version.metadata
    assert (result.version.name, metadata["use_case"]) == ("loan_default", module)  # known by --use_case
    assert metadata["training_data_range"]["start"].startswith("2026-09-0")  # the event time, read as a date
    assert "recall" in metadata["threshold_rule"]

    night = tmp_path / "applications" / f"dt={NIGHT}"
    night.mkdir(parents=True)
    scaled = applications(NIGHT_RECORDS, date.fromisoformat(NIGHT), 1, seed=2, amount_scale=3.0)  # amounts x3
    pacsv.write_csv(dated(scaled, event_type), night / "part-0.csv")
    warehouse = tmp_path / "wh" / "loans.duckdb"
    common = [f"--date={NIGHT}", f"--model_root={root}", f"--warehouse={warehouse}", "--progress_seconds=0"]
    summary = tmp_path / "summary.json"
    args = [f"--use_case={module}", f"--input={tmp_path}/applications/dt={{date}}/*.csv", f"--summary_json={summary}"]
    assert score.main([*common, *args, "--create_dataset"]) == 0
    said = json.load(open(summary))
    assert said["input_records"] == NIGHT_RECORDS == said["scored_records"] + said["rejected_records"]
    keys = query(warehouse, "SELECT COUNT(DISTINCT application_id), COUNT(*) FROM predictions")
    assert keys == [(NIGHT_RECORDS, NIGHT_RECORDS)]
    flagged = query(warehouse, "SELECT DISTINCT feature FROM feature_drift WHERE flagged AND baseline = 'training'")
    assert ("amount",) in flagged  # 600 values a side: judged under this use case's minimum of 100
    assert ("income",) not in flagged
    assert query(warehouse, "SELECT value FROM warehouse_info WHERE name = 'use_case'") == [(module,)]
    # The loans warehouse is not taxi's: the report command (default --use_case) refuses it, naming both.
    assert report.main([f"--date={NIGHT}", f"--warehouse={warehouse}", "--report_dir=none"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"holds use case {module}'s nights, not taxi's: --use_case {module}, or another --warehouse" in line


def test_a_version_of_another_use_case_is_refused_naming_both(tmp_path, trained, model_root, capsys, monkeypatch):
    module = install(tmp_path / "team_code", "TIMESTAMP", monkeypatch)
    night = tmp_path / "applications" / f"dt={NIGHT}"
    night.mkdir(parents=True)
    pacsv.write_csv(applications(50, date.fromisoformat(NIGHT), 1, seed=3), night / "part-0.csv")
    code = score.main(
        [
            f"--use_case={module}",
            f"--date={NIGHT}",
            f"--input={tmp_path}/applications/dt={{date}}/*.csv",
            f"--model_root={model_root}",
            f"--model_name={trained.version.name}",  # taxi's model
            f"--warehouse={tmp_path / 'w.duckdb'}",
        ]
    )
    assert code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    name = trained.version.name
    assert f"was trained for use case taxi, not {module}: --use_case taxi, or another --model_name" in line
    assert line.startswith(f"error: model '{name}' version ")
    assert not (tmp_path / "w.duckdb").exists()


def test_a_use_case_that_feeds_the_model_what_it_cannot_take_is_refused_when_declared():
    from schemas import Feature, FeatureKind, UseCase
    from schemas.taxi import USE_CASE as TAXI

    def declared(*features):
        return UseCase("broken", TAXI.input, features, "big_tipper", "transforms.taxi:preprocessing_fn", "m")

    with pytest.raises(ValueError, match="feature company is numeric, which takes INT64, FLOAT64, not STRING"):
        declared(Feature("company", FeatureKind.NUMERIC))
    with pytest.raises(ValueError, match="reads trip_id, a key column; model inputs read feature columns only"):
        declared(Feature("trip_id", FeatureKind.VOCABULARY))
    with pytest.raises(ValueError, match="reads unknown column tolls"):
        declared(Feature("tolls_share", FeatureKind.NUMERIC, sources=("fare", "tolls")))
    declared(Feature("fare_per_mile", FeatureKind.NUMERIC, sources=("fare", "trip_miles")))  # derived: fine
