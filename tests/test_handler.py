"""The RunInference handler on columnar batches, thresholds from the version, champion and challenger."""

import dataclasses
import os
import shutil

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that

import schemas
from models import registry, signature
from models.handler import ExportedModelHandler, scored_schema
from pipelines import score
from schemas import CHALLENGER, CHAMPION, ColumnType, Role
from schemas.taxi import USE_CASE as TAXI
from tests.conftest import query, write_partition
from tests.float32 import PROBABILITY_ATOL, assert_close_probabilities

DAY = "2026-11-23"


def test_handler_scores_columnar_batches(trained, typed_trips):
    batches = typed_trips.to_batches(max_chunksize=700)  # 4000 rows: 6 batches, the last one short
    handler = ExportedModelHandler(trained.version, TAXI, batch_size=1500)
    model = tf.saved_model.load(trained.version.path)
    direct = model.signatures[signature.RAW_SIGNATURE](**signature.batch_to_inputs(typed_trips, TAXI.input))
    expected = dict(
        zip(typed_trips.column("trip_id").to_pylist(), direct[signature.PROBABILITY].numpy().tolist(), strict=True)
    )
    threshold = trained.version.threshold

    def check(outputs):
        assert sorted(b.num_rows for b in outputs) == sorted(b.num_rows for b in batches)
        for out in outputs:
            assert out.schema == scored_schema(TAXI)
            got = dict(zip(out.column("trip_id").to_pylist(), out.column("probability").to_pylist(), strict=True))
            assert_close_probabilities(list(got.values()), [expected[k] for k in got], "through the handler")
            assert out.column("label").to_pylist() == [p >= threshold for p in got.values()]
            assert set(out.column("model_version").to_pylist()) == {trained.version.version}

    with BeamTestPipeline() as p:
        outputs = p | beam.Create(batches) | RunInference(handler)
        assert_that(outputs, check)


def test_batches_never_exceed_the_batch_size(trained, typed_trips):
    handler = ExportedModelHandler(trained.version, TAXI, batch_size=512)
    model = handler.load_model()
    calls = []
    original = model.predict_timed
    model.predict_timed = lambda chunk: (calls.append(chunk.num_rows), original(chunk))[1]
    [out] = handler.run_inference([typed_trips.to_batches()[0].slice(0, 1300)], model)
    assert calls == [512, 512, 276] and out.num_rows == 1300


def test_label_uses_the_threshold_stored_with_the_version(trained, typed_trips):
    batch = typed_trips.to_batches()[0].slice(0, 500)
    for threshold in (0.0, 0.5, 1.01):
        version = dataclasses.replace(trained.version, metadata={**trained.version.metadata, "threshold": threshold})
        handler = ExportedModelHandler(version, TAXI)
        [out] = handler.run_inference([batch], handler.load_model())
        probs = np.array(out.column("probability").to_pylist())
        assert out.column("label").to_pylist() == list(probs >= threshold)
        assert set(out.column("threshold").to_pylist()) == {threshold}


def test_scored_rows_follow_the_use_cases_key_by_name():
    """Another use case's key, of another type: the handler's rows are its predictions table's columns,
    by name, with validation's provenance after them when there is any."""
    key = schemas.Column("loan_id", ColumnType.INT64, True, Role.KEY, "Another use case's key.")
    columns = tuple(key if c.role is Role.KEY else c for c in TAXI.input.columns)
    loans = dataclasses.replace(TAXI, name="loans", input=dataclasses.replace(TAXI.input, columns=columns))
    handler = ExportedModelHandler(registry.ModelVersion("loan_model", 3, "unused", {"threshold": 0.5}), loans)
    table = pa.table({"fare": [1.0, 2.0], "loan_id": pa.array([7, 8], pa.int64())})
    out = handler._scored(table, np.array([0.25, 0.75], np.float32))
    assert out.schema == scored_schema(loans) and out.schema.field("loan_id").type == pa.int64()
    common = {"threshold": 0.5, "model_name": "loan_model", "model_version": 3, "model_role": CHAMPION}
    assert out.to_pylist() == [
        {"loan_id": 7, "probability": 0.25, "label": False, **common},
        {"loan_id": 8, "probability": 0.75, "label": True, **common},
    ]
    provenance = {"source": ["f.csv", "f.csv"], "line_number": [2, 3], "content_hash": [11, 12]}
    out = handler._scored(pa.table({**provenance, "loan_id": [7, 8]}), np.array([0.25, 0.75], np.float32))
    assert out.schema.names == [*scored_schema(loans).names, *provenance]
    assert out.column("line_number").to_pylist() == [2, 3] and out.column("loan_id").to_pylist() == [7, 8]


def test_champion_and_challenger_score_the_same_records(trained, tmp_path):
    root = tmp_path / "models" / "taxi_tipper"
    shutil.copytree(trained.version.path, root / "1")
    shutil.copytree(trained.version.path, root / "2")
    meta = registry.read_metadata(str(root / "2"))
    os.remove(root / "2" / registry.METADATA_FILE)
    registry.write_metadata(str(root / "2"), {**meta, "version": 2, "threshold": 0.5})
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 2000)
    summary = score.run(
        [
            f"--date={DAY}",
            f"--input={tmp_path}/trips/dt={{date}}/*.csv",
            f"--model_root={tmp_path / 'models'}",
            f"--warehouse={tmp_path}/w.duckdb",
            "--model_version=1",
            "--challenger_version=2",
        ]
    )
    assert (
        summary["input_records"],
        summary["scored_records"],
        summary["model_version"],
        summary["challenger_version"],
    ) == (2000, 2000, 1, 2)
    rows = query(
        tmp_path / "w.duckdb",
        "SELECT model_role, model_version, count(*), count(DISTINCT trip_id) FROM predictions GROUP BY ALL ORDER BY 1",
    )
    assert rows == [("challenger", 2, 2000, 2000), ("champion", 1, 2000, 2000)]
    # Same weights, other threshold: equal scores, perfectly ranked alike, labels differ exactly
    # for the records scored between the two thresholds.
    [(between,)] = query(
        tmp_path / "w.duckdb",
        "SELECT avg(CASE WHEN probability >= ? AND probability < 0.5 "
        "THEN 1.0 ELSE 0.0 END) FROM predictions WHERE model_role = 'champion'",
        [trained.version.threshold],
    )
    # The challenger's copy scores in its own calls: a label within float32 rounding of a threshold may flip.
    [(near,)] = query(
        tmp_path / "w.duckdb",
        "SELECT count(*) FROM predictions WHERE model_role = 'champion' AND (abs(probability - ?) <= ? "
        "OR abs(probability - 0.5) <= ?)",
        [trained.version.threshold, PROBABILITY_ATOL, PROBABILITY_ATOL],
    )
    comparison = summary["comparison"]
    assert comparison["records"] == 2000
    assert comparison["champion_mean_probability"] == pytest.approx(comparison["challenger_mean_probability"])
    assert abs(comparison["label_disagreement"] - between) <= near / 2000 and between > 0
    assert comparison["rank_correlation"] == pytest.approx(1.0)
    assert summary["devices"] and all(k.split("@")[0] in (CHAMPION, CHALLENGER) for k in summary["devices"])


def test_challenger_must_be_another_usable_version(model_root, tmp_path, capsys):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 10)
    base = [
        f"--date={DAY}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        f"--warehouse={tmp_path}/w.duckdb",
    ]
    assert score.main(base + ["--challenger_version=1"]) == 2
    assert "is the champion version itself" in capsys.readouterr().err
    assert score.main(base + ["--challenger_version=5"]) == 2
    assert "no complete version 5" in capsys.readouterr().err
    assert not (tmp_path / "w.duckdb").exists()
