"""Device sharding, proven on CPU with TensorFlow's logical devices standing in for GPUs."""

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from models import devices, signature
from models.devices import CLAIMS_DIR_ENV, AcceleratorError
from pipelines import score
from schemas.taxi import TRIPS
from tests.conftest import REPO, write_partition
from tests.float32 import assert_same_scores

DEVICES = 4


def worker(tmp_path, model_path, mode, *args, wait=True):
    env = {**os.environ, "PYTHONPATH": REPO, CLAIMS_DIR_ENV: str(tmp_path / "claims"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "tests.sharding_worker", model_path, str(DEVICES), mode, *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_device_gets_work_and_predictions_match_one_device(trained, typed_trips, tmp_path):
    batches = tmp_path / "batches.parquet"
    pq.write_table(typed_trips, batches)
    result = worker(tmp_path, trained.version.path, "pipeline", DEVICES, 256, batches, tmp_path / "out")
    rows_by_device = {k.split("@", 1)[1]: v for k, v in result["rows_by_device"].items()}
    assert sorted(d.rsplit("/", 1)[-1] for d in rows_by_device) == [f"device:CPU:{i}" for i in range(DEVICES)]
    assert all(rows > 0 for rows in rows_by_device.values()) and sum(rows_by_device.values()) == 4000
    # Had the process loaded the model twice, the second load would have overflowed the device claims.
    assert not (tmp_path / "claims" / "cpu-overflow.count").exists()

    sharded = dict(json.loads(line) for line in (tmp_path / "out").read_text().splitlines())
    model = tf.saved_model.load(trained.version.path)
    single = model.signatures[signature.RAW_SIGNATURE](**signature.batch_to_inputs(typed_trips, TRIPS))
    expected = dict(
        zip(typed_trips.column("trip_id").to_pylist(), single[signature.PROBABILITY].numpy().tolist(), strict=True)
    )
    assert_same_scores(sharded, expected, "sharded over devices")


def test_one_process_never_holds_two_copies_on_a_device(trained, tmp_path):
    result = worker(tmp_path, trained.version.path, "copies", DEVICES + 2)
    assert sorted(d.rsplit(":", 1)[-1] for d in result["devices"]) == [str(i) for i in range(DEVICES)]


def test_processes_on_one_machine_take_distinct_devices_round_robin(trained, tmp_path):
    release = tmp_path / "release"
    procs = [worker(tmp_path, trained.version.path, "claim", release, wait=False) for _ in range(DEVICES + 1)]
    try:
        claimed = [json.loads(p.stdout.readline())["devices"][0] for p in procs]
    finally:
        release.touch()
        for p in procs:
            p.wait(timeout=120)
    # The first four processes hold one device each; the fifth shares, in turn, rather than failing.
    assert len(set(claimed)) == DEVICES
    assert (tmp_path / "claims" / "cpu-overflow.count").read_text() == "1"


@pytest.mark.parametrize(
    "accelerator, missing",
    [
        ("tpu", "no TPU found on this worker"),
        pytest.param(
            "gpu",
            "TensorFlow sees no GPU on this worker",
            marks=pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="this machine has a GPU"),
        ),
    ],
)
def test_missing_accelerator_fails_before_reading_data(model_root, tmp_path, capsys, accelerator, missing):
    write_partition(tmp_path / "trips" / "dt=2026-11-23", "2026-11-23", 10)
    code = score.main(
        [
            "--date=2026-11-23",
            f"--input={tmp_path}/trips/dt={{date}}/*.csv",
            f"--model_root={model_root}",
            f"--warehouse={tmp_path}/wh/w.duckdb",
            "--create_dataset",
            f"--accelerator={accelerator}",
        ]
    )
    assert code == 2 and missing in capsys.readouterr().err
    assert not (tmp_path / "wh").exists()


def test_auto_uses_the_cpu_when_there_is_no_gpu():
    expected = devices.GPU if tf.config.list_physical_devices("GPU") else devices.CPU
    assert devices.resolve_kind("auto") == expected
    with pytest.raises(AcceleratorError, match="must be one of"):
        devices.resolve_kind("fpga")
