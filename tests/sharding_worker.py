"""Run in a fresh process by test_sharding.py: TensorFlow's logical devices must be configured
before TensorFlow initialises, which the test process itself has long done.

    python -m tests.sharding_worker MODEL_PATH LOGICAL_DEVICES MODE [ARGS...]
"""

import json
import os
import sys
import time

import tensorflow as tf


def configure(devices: int) -> None:
    [cpu] = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)


def main() -> None:
    model_path, devices, mode, *args = sys.argv[1:]
    configure(int(devices))
    import apache_beam as beam
    import pyarrow.parquet as pq
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.ml.inference.base import RunInference

    from models.devices import ShardedModel
    from models.handler import ExportedModelHandler
    from models.registry import ModelVersion, read_metadata
    from schemas.taxi import TRIPS
    from schemas.taxi import USE_CASE as TAXI

    version = ModelVersion("taxi_tipper", 1, model_path, read_metadata(model_path))
    if mode == "claim":  # one copy, held until the test says every process has claimed
        model = ShardedModel(model_path, TRIPS.for_scoring(), "cpu", 1)
        print(json.dumps({"devices": model.devices}), flush=True)
        release = args[0]
        while not os.path.exists(release):
            time.sleep(0.05)
        return
    if mode == "copies":  # ask for more copies than devices
        model = ShardedModel(model_path, TRIPS.for_scoring(), "cpu", int(args[0]))
        print(json.dumps({"devices": model.devices}), flush=True)
        return
    if mode == "pipeline":  # score a batch file with N copies in this process
        copies, batch_size, batches_path, out_path = int(args[0]), int(args[1]), args[2], args[3]
        table = pq.read_table(batches_path)
        handler = ExportedModelHandler(
            version, TAXI, batch_size=batch_size, accelerator="cpu", models_per_process=copies
        )
        with beam.Pipeline() as p:
            scored = (
                p
                | beam.Create(table.to_batches(max_chunksize=1000))
                | RunInference(handler)
                | beam.FlatMap(
                    lambda b: zip(b.column("trip_id").to_pylist(), b.column("probability").to_pylist(), strict=True)
                )
            )
            _ = scored | beam.Map(json.dumps) | beam.io.WriteToText(out_path, shard_name_template="")
        result = p.result
        counters = {
            m.key.metric.name: m.committed
            for m in result.metrics().query(MetricsFilter().with_namespace("scoring_devices"))["counters"]
        }
        print(json.dumps({"rows_by_device": counters}), flush=True)


if __name__ == "__main__":
    main()
