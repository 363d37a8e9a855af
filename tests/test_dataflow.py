"""The nightly job as Dataflow would receive it: translated with --dry_run, nothing submitted.

Input and model root are on gs:// (the GCS emulator) and the warehouse in BigQuery (the emulator),
so the configuration checks that run before a real submission run here too.
"""

import json
import os
from datetime import date, datetime, timezone

import pytest

from pipelines import score, train
from schemas import load_use_case
from scripts import make_flights
from tests.conftest import BQ_PROJECT, GCS_BUCKET, write_partition

DAY = "2026-11-23"
GPU = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
IMAGE = "us-docker.pkg.dev/my-project/scoring/worker-gpu:0.1.0"


def upload_version(gcs, version, models: str) -> None:
    """A model version's folder, under `models`/<name>/<version>/ in the emulated bucket."""
    root = os.path.dirname(os.path.dirname(version.path))
    for folder, _, files in os.walk(version.path):
        for name in files:
            path = os.path.join(folder, name)
            gcs.blob(f"{models}/{os.path.relpath(path, root)}").upload_from_filename(path)


@pytest.fixture(scope="module")
def on_gcs(trained, gcs, tmp_path_factory):
    """The trained model and a night's trips, uploaded to the emulated bucket."""
    upload_version(gcs, trained.version, "models")
    [part] = write_partition(tmp_path_factory.mktemp("night"), DAY, 50)
    gcs.blob(f"trips/dt={DAY}/part-00000.csv").upload_from_filename(part)
    return f"gs://{GCS_BUCKET}"


def test_the_job_translates_for_dataflow_with_gpus(on_gcs, bigquery, tmp_path):
    bigquery.create_dataset("nightly", exists_ok=True)
    summary = score.run(
        [
            f"--date={DAY}",
            f"--input={on_gcs}/trips/dt={{date}}/*.csv",
            f"--model_root={on_gcs}/models",
            f"--warehouse=bq://{BQ_PROJECT}.nightly",
            f"--staging_dir={on_gcs}/staging",
            "--accelerator=gpu",
            "--runner=DataflowRunner",
            "--dry_run=True",
            "--project=my-project",
            "--region=us-central1",
            f"--temp_location={on_gcs}/tmp",
            f"--dataflow_service_options={GPU}",
            f"--sdk_container_image={IMAGE}",
            "--experiments=use_runner_v2",
            "--experiments=no_use_multiple_sdk_containers",
            "--machine_type=g2-standard-8",
            "--max_num_workers=20",
            "--no_auth",
        ]
    )
    assert summary["dry_run"] and summary["model_version"] == 1 and summary["input"].startswith("gs://")
    job = summary["job"]
    text = json.dumps(job)
    for expected in (
        GPU,
        IMAGE,
        "use_runner_v2",
        "no_use_multiple_sdk_containers",
        "g2-standard-8",
        '"accelerator": "gpu"',
        f"bq://{BQ_PROJECT}.nightly",
        "ReadRecords",
        "RunInference",
        "WriteScores",
    ):
        assert expected in text, expected
    # Nothing ran and nothing was written.
    assert [t.table_id for t in bigquery.list_tables(f"{BQ_PROJECT}.nightly")] == []


def test_the_second_use_case_translates_for_dataflow(gcs, bigquery, tmp_path):
    """The flights use case (README: the flights walk-through) as a CPU job on Dataflow, chosen by name."""
    use_case = load_use_case("flights")
    make_flights.write_training(str(tmp_path / "training.csv"), 2000)
    trained = train.run(
        [
            "--use_case=flights",
            f"--input={tmp_path / 'training.csv'}",
            f"--model_root={tmp_path / 'models'}",
            f"--work_dir={tmp_path / 'work'}",
            "--epochs=1",
        ]
    )
    upload_version(gcs, trained.version, "flights-models")
    night = use_case.sample.night
    [part] = make_flights.write_night(date.fromisoformat(night), str(tmp_path / "night"))
    gcs.blob(f"flights/dt={night}/part-00000.csv").upload_from_filename(part)
    bigquery.create_dataset("flights_nightly", exists_ok=True)
    bucket = f"gs://{GCS_BUCKET}"
    summary = score.run(
        [
            "--use_case=flights",
            f"--date={night}",
            f"--input={bucket}/flights/dt={{date}}/*.csv",
            f"--model_root={bucket}/flights-models",
            f"--warehouse=bq://{BQ_PROJECT}.flights_nightly",
            f"--staging_dir={bucket}/flights-staging",
            "--runner=DataflowRunner",
            "--dry_run=True",
            "--project=my-project",
            "--region=us-central1",
            f"--temp_location={bucket}/tmp",
            "--no_auth",
        ]
    )
    assert summary["dry_run"] and (summary["model_name"], summary["model_version"]) == ("late_arrival", 1)
    text = json.dumps(summary["job"])
    for expected in ("ReadRecords", "RunInference", "WriteScores", '"use_case": "flights"'):
        assert expected in text, expected
    assert [t.table_id for t in bigquery.list_tables(f"{BQ_PROJECT}.flights_nightly")] == []


def test_default_date_is_yesterday_in_the_configured_time_zone():
    just_after_midnight_utc = datetime(2026, 11, 24, 0, 30, tzinfo=timezone.utc)
    assert score.parse_date(None, "UTC", just_after_midnight_utc).isoformat() == "2026-11-23"
    # Still the 23rd in Chicago (18:30 on the 23rd), so its "yesterday" is the 22nd.
    assert score.parse_date(None, "America/Chicago", just_after_midnight_utc).isoformat() == "2026-11-22"
    with pytest.raises(ValueError, match="not an IANA time zone"):
        score.parse_date(None, "Mars/Olympus", just_after_midnight_utc)


def test_flex_template_parameters_are_exactly_the_pipeline_options():
    import re

    from scripts import flex_template

    committed = json.load(open(os.path.join(os.path.dirname(__file__), "..", flex_template.DEFAULT_OUT)))
    assert committed == flex_template.metadata(), "run python scripts/flex_template.py and commit the result"
    names = [p["name"] for p in committed["parameters"]]
    options = [a.dest for a in flex_template.pipeline_options()]
    assert names == options and len(set(names)) == len(names)
    assert {"date", "input", "warehouse", "model_root", "model_version", "accelerator"} <= set(names)
    accepted = {
        "date": "2026-11-23",
        "input": "gs://b/trips/dt={date}/*.csv",
        "warehouse": "bq://my-project.scoring",
        "model_root": "gs://b/models",
        "model_version": "latest",
        "accelerator": "gpu",
        "batch_size": "262144",
        "large_model": "true",
        "timezone": "America/Chicago",
        "bq_project": "my-project",
    }
    refused = {
        "date": "2026-13-01",
        "warehouse": "bq://p",
        "model_version": "newest",
        "accelerator": "fpga",
        "batch_size": "-1",
        "input": "trips.csv",
    }
    by_name = {p["name"]: p for p in committed["parameters"]}
    for name, value in accepted.items():
        assert re.match(by_name[name]["regexes"][0], value), (name, value)
    for name, value in refused.items():
        assert not re.match(by_name[name]["regexes"][0], value), (name, value)
    assert all(p["helpText"] for p in committed["parameters"])
