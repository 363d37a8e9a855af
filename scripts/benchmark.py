"""Scoring throughput against the bare model, on the same generated input, in one run.

    python scripts/benchmark.py --rows 1000000 --json out.json [--accelerator auto] [--only a,b,c] [--repeat N]

(a) ceiling:  the exported model's raw-feature signature on prepared in-memory tensors, no I/O;
(b) baseline: a plain Beam pipeline as Beam's examples write it: ReadFromText, one dict per line,
              RunInference with a handler that stacks dicts into tensors, WriteToText;
(c) pipeline: `pipelines.score` end to end, CSV to the local DuckDB warehouse, on DirectRunner;
(m) the same with --monitoring off: no night statistics, no drift (c against m is monitoring's cost);
(f) fused: the best single-process program for the same work without Beam (issue 24's reference,
              frozen): pyarrow reads the CSV typed in 16 MiB blocks, full batches become the signature's
              tensors in one thread while another scores and a third writes the predictions as Parquet
              and inserts them into a new DuckDB table (no validation, no accounting: clean input only);
(s) (f)'s parts alone on the same files: parse, to tensors, write, insert (the model alone is (a));
and extraction alone: CSV (x) and JSON (j) read, typed and validated into Arrow batches on Beam,
beside pyarrow's own read_csv (y) and read_json (k) on the same files; and publishing alone: --rows
staged predictions (1% of keys with an identical copy, 0.1% with a conflicting one) published into a
new DuckDB warehouse, duplicate keys resolved (p), beside the same rows audited and inserted as they
are, as publishing did before keys were resolved (q).

Each measurement runs in its own process and reports that process's peak memory (max RSS). Rates are
records per second of the measured section: model calls for (a), the whole pipeline run for (b)
and (c) (graph construction, model loading and, for (c), publishing included).
"""

from __future__ import annotations

import argparse
import csv
import glob
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MEASUREMENTS = {
    "a": "ceiling",
    "b": "baseline",
    "c": "pipeline",
    "m": "pipeline_unmonitored",
    "f": "fused",
    "s": "parts",
    "x": "extract_csv",
    "y": "pyarrow_csv",
    "j": "extract_json",
    "k": "pyarrow_json",
    "p": "publish",
    "q": "publish_plain",
}


def latest_model(args):
    """The use case's newest usable version: what every measurement scores with."""
    from models import registry

    return registry.resolve(args.model_root, args.case.model_name, "latest", args.case)


# ---------------------------------------------------------------- (a) the ceiling


def measure_ceiling(args) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import tensorflow as tf

    from models import devices, signature
    from pipelines.batches import RawBatch
    from pipelines.defaults import DEFAULT_BATCH_SIZE
    from pipelines.validate import SchemaValidator

    model, schema = latest_model(args), args.case.input
    kind = devices.resolve_kind(args.accelerator)
    device = devices.visible_devices(kind)[0]
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE[kind]
    validator = SchemaValidator(schema.for_scoring())
    prepared = []
    with tf.device(device):
        loaded = tf.saved_model.load(model.path)
        score = loaded.signatures[signature.RAW_SIGNATURE]
        for path in args.files:  # untimed: parse, type and convert everything up front
            raw = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in schema.names},
                    strings_can_be_null=True,
                    null_values=[""],
                ),
            )
            valid, _ = validator.validate(RawBatch(path, raw.combine_chunks().to_batches()[0]))
            for start in range(0, valid.num_rows, batch_size):
                prepared.append(signature.batch_to_inputs(valid.slice(start, batch_size), schema))
        score(**prepared[0])[signature.PROBABILITY].numpy()  # warm-up: trace and allocate once
        rows = 0
        t0 = time.perf_counter()
        for inputs in prepared:
            rows += int(score(**inputs)[signature.PROBABILITY].numpy().shape[0])
        seconds = time.perf_counter() - t0
    return {"rows": rows, "seconds": seconds, "device": device, "batch_size": batch_size}


# ---------------------------------------------------------------- (f) the fused program


FUSED_BLOCK_BYTES = 16 << 20  # pyarrow's CSV blocks in (f): large enough that a block holds a full batch
QUEUE_DEPTH = 2  # batches waiting between (f)'s threads: enough to keep each busy, little memory


def full_batches(path: str, convert, batch_size: int):
    """A CSV file's records, typed by pyarrow in large blocks, re-cut into batches of exactly
    `batch_size` records (the last one shorter): a model call never sees a block's leftover alone."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    pending, held = [], 0
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=FUSED_BLOCK_BYTES), convert_options=convert)
    for block in reader:
        pending.append(block)
        held += block.num_rows
        while held >= batch_size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, batch_size).combine_chunks().to_batches()[0]
            rest = table.slice(batch_size)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def predictions_sql(args, model) -> str:
    """The warehouse's predictions columns, as the pipeline publishes them, from a staged batch."""
    return (
        f"SELECT DATE '{args.day}' AS score_date, key, probability, label, {model.threshold} AS threshold, "
        f"'{model.name}' AS model_name, {model.version} AS model_version, 'champion' AS model_role, "
        "'fused' AS run_id, now() AS scored_at FROM staged"
    )


def measure_fused(args) -> dict:
    """The best single-process program I can write for the pipeline's core work, loading the warehouse
    included (no validation, no accounting, no monitoring: clean input only). Three threads, each
    handing the next full batches through a short queue: one reads the CSV typed in 16 MiB blocks and
    builds the signature's tensors for full --batch_size batches; one calls the model; one writes each
    batch's predictions to Parquet and inserts them into a new DuckDB table with a plain INSERT (the
    warehouse's predictions columns). Parsing, converting, scoring and loading overlap, so both cores
    work the whole run. Model loading is timed, as it is in (c). Frozen as the reference of issue 24:
    change it only to make it faster without dropping work, and say so."""
    import queue
    import threading

    import duckdb
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    import tensorflow as tf

    from models import devices, signature
    from pipelines.defaults import DEFAULT_BATCH_SIZE

    kind = devices.resolve_kind(args.accelerator)
    device = devices.visible_devices(kind)[0]
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE[kind]
    schema = args.case.input.for_scoring()
    convert = pacsv.ConvertOptions(
        column_types={c.name: c.type.arrow for c in schema.columns}, strings_can_be_null=True, null_values=[""]
    )
    out_schema = pa.schema([("key", schema.key.type.arrow), ("probability", pa.float32()), ("label", pa.bool_())])
    out = os.path.join(args.work_dir, "fused")
    os.makedirs(out, exist_ok=True)
    database = os.path.join(out, "warehouse.duckdb")
    for stale in glob.glob(database + "*"):
        os.remove(stale)
    tensors, scored = queue.Queue(QUEUE_DEPTH), queue.Queue(QUEUE_DEPTH)
    done = object()
    failures: list[BaseException] = []

    def guarded(work):
        def run():
            try:
                work()
            except BaseException as e:  # said by the main thread, which then fails the measurement
                failures.append(e)
                for q in (tensors, scored):
                    q.put(done)

        return threading.Thread(target=run, daemon=True)

    def read() -> None:
        with tf.device(device):
            for path in args.files:
                for batch in full_batches(path, convert, batch_size):
                    tensors.put((batch.column(schema.key.name), signature.batch_to_inputs(batch, schema)))
        tensors.put(done)

    def load() -> None:
        rows = 0
        with (
            duckdb.connect(database) as con,
            pq.ParquetWriter(os.path.join(out, "predictions.parquet"), out_schema) as writer,
        ):
            created = False
            while (item := scored.get()) is not done:
                staged = pa.record_batch([item[0], pa.array(item[1]), pa.array(item[1] >= model.threshold)], out_schema)
                writer.write_batch(staged)
                con.register("staged", staged)
                con.execute(
                    ("INSERT INTO predictions " if created else "CREATE TABLE predictions AS ")
                    + predictions_sql(args, model)
                )
                con.unregister("staged")
                created, rows = True, rows + staged.num_rows
            if rows:
                [(inserted,)] = con.execute("SELECT COUNT(*) FROM predictions").fetchall()
                assert inserted == rows, (inserted, rows)

    t0 = time.perf_counter()
    model = latest_model(args)
    with tf.device(device):
        score = tf.saved_model.load(model.path).signatures[signature.RAW_SIGNATURE]
        reader, loader = guarded(read), guarded(load)
        reader.start()
        loader.start()
        rows = 0
        while (item := tensors.get()) is not done:
            keys, inputs = item
            scored.put((keys, score(**inputs)[signature.PROBABILITY].numpy().ravel()))
            rows += len(keys)
        scored.put(done)
        reader.join()
        loader.join()
    if failures:
        raise failures[0]
    return {"rows": rows, "seconds": time.perf_counter() - t0, "device": device, "batch_size": batch_size}


def measure_parts(args) -> dict:
    """(f)'s parts alone, one after another on the same files, each timed by itself: parse (pyarrow's
    typed read in 16 MiB blocks, re-cut into full batches), to tensors (the signature's inputs from
    those batches), write (the predictions as Parquet) and insert (the same into a new DuckDB table,
    the warehouse's columns). With (a), the model alone, these are the floor of each stage."""
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from models import signature
    from pipelines.defaults import DEFAULT_BATCH_SIZE

    batch_size = args.batch_size or DEFAULT_BATCH_SIZE["cpu"]
    schema = args.case.input.for_scoring()
    convert = pacsv.ConvertOptions(
        column_types={c.name: c.type.arrow for c in schema.columns}, strings_can_be_null=True, null_values=[""]
    )
    parts, t0 = {}, time.perf_counter()
    batches = [b for path in args.files for b in full_batches(path, convert, batch_size)]
    parts["parse"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for batch in batches:
        signature.batch_to_inputs(batch, schema)
    parts["to_tensors"] = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    out_schema = pa.schema([("key", schema.key.type.arrow), ("probability", pa.float32()), ("label", pa.bool_())])
    staged = [
        pa.record_batch([b.column(schema.key.name), pa.array(p), pa.array(p >= 0.5)], out_schema)
        for b in batches
        for p in [rng.random(b.num_rows, dtype=np.float32)]
    ]
    out = os.path.join(args.work_dir, "parts")
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    with pq.ParquetWriter(os.path.join(out, "predictions.parquet"), out_schema) as writer:
        for batch in staged:
            writer.write_batch(batch)
    parts["write"] = time.perf_counter() - t0
    database = os.path.join(out, "warehouse.duckdb")
    for stale in glob.glob(database + "*"):
        os.remove(stale)
    model = latest_model(args)
    t0 = time.perf_counter()
    with duckdb.connect(database) as con:
        for i, batch in enumerate(staged):
            con.register("staged", batch)
            con.execute(
                ("INSERT INTO predictions " if i else "CREATE TABLE predictions AS ") + predictions_sql(args, model)
            )
            con.unregister("staged")
    parts["insert"] = time.perf_counter() - t0
    rows = sum(b.num_rows for b in batches)
    return {"rows": rows, "seconds": sum(parts.values()), "parts": {k: rows / v for k, v in parts.items()}}


# ---------------------------------------------------------------- (b) the per-row baseline


def measure_baseline(args) -> dict:
    import apache_beam as beam
    import numpy as np
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

    from models import signature

    model, key = latest_model(args), args.case.input.key.name
    header = next(csv.reader(open(args.files[0])))
    features = args.case.input.features
    dtypes = {"STRING": object, "INT64": np.int64, "FLOAT64": np.float32}

    def parse(line: str) -> dict:
        return dict(zip(header, next(csv.reader([line])), strict=True))

    class DictHandler(ModelHandler):
        """Stacks a batch of dicts into the signature's tensors, as Beam's TensorFlow examples do."""

        def load_model(self):
            import tensorflow as tf

            return tf.saved_model.load(model.path).signatures[signature.RAW_SIGNATURE]

        def run_inference(self, batch, fn, inference_args=None):
            import tensorflow as tf

            inputs = {}
            for c in features:
                values = [row.get(c.name) or None for row in batch]
                if not c.required:
                    inputs[c.name + signature.PRESENT_SUFFIX] = tf.constant([v is not None for v in values])
                fill = "" if c.type.value == "STRING" else "0"
                inputs[c.name] = tf.constant(
                    np.array([v if v is not None else fill for v in values]).astype(dtypes[c.type.value])
                    if c.type.value != "STRING"
                    else [v or "" for v in values]
                )
            probs = fn(**inputs)[signature.PROBABILITY].numpy()
            return [PredictionResult(row, float(p)) for row, p in zip(batch, probs, strict=True)]

    out = os.path.join(args.work_dir, "baseline", "scores")
    t0 = time.perf_counter()
    with beam.Pipeline(argv=["--runner=DirectRunner"]) as p:
        _ = (
            p
            | "ReadRecords" >> beam.io.ReadFromText(args.input_glob, skip_header_lines=1)
            | "Parse" >> beam.Map(parse)
            | "RunInference" >> RunInference(DictHandler())
            | "Format" >> beam.Map(lambda r: f"{r.example[key]},{r.inference:.6f}")
            | "WriteScores" >> beam.io.WriteToText(out)
        )
    seconds = time.perf_counter() - t0
    rows = sum(sum(1 for _ in open(f)) for f in glob.glob(out + "*"))
    return {"rows": rows, "seconds": seconds}


# ---------------------------------------------------------------- (c) the pipeline


def measure_pipeline(args, *extra: str) -> dict:
    import tensorflow  # noqa: F401  (process start-up, not the run: loaded before timing, whoever imports it)

    from pipelines import score

    argv = [
        f"--use_case={args.use_case}",
        f"--date={args.day}",
        f"--input={args.input_glob}",
        f"--model_root={args.model_root}",
        f"--warehouse={os.path.join(args.work_dir, 'warehouse', 'scores.duckdb')}",
        "--create_dataset",
        f"--accelerator={args.accelerator}",
        "--allow_shrink",  # a smaller --rows than the last measurement re-scores the date with fewer records
        *args.pipeline_args,
        *extra,
    ]
    if args.batch_size:
        argv.append(f"--batch_size={args.batch_size}")
    t0 = time.perf_counter()
    summary = score.run(argv)
    seconds = time.perf_counter() - t0
    assert summary["reconciled"] and summary["scored_records"] == summary["input_records"], summary
    return {
        "rows": summary["scored_records"],
        "seconds": seconds,
        "devices": summary["devices"],
        "stage_seconds": summary["stage_seconds"],
    }


# ---------------------------------------------------------------- extraction (the extract step alone)


def json_files(args) -> list[str]:
    """The CSV input as newline-delimited JSON (typed values, missing ones left out), made once."""
    import duckdb
    import pyarrow.csv as pacsv

    paths = []
    for path in args.files:
        target = os.path.join(args.work_dir, "json", os.path.basename(path).replace(".csv", ".jsonl"))
        if not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            records = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={c.name: c.type.arrow for c in args.case.input.columns}
                ),
            )
            with duckdb.connect() as con:
                con.register("records", records)
                con.execute(f"COPY records TO '{target}' (FORMAT json)")
        paths.append(target)
    return paths


def measure_extract(args, fmt: str) -> dict:
    """Extraction as the pipeline does it: read, type and validate into Arrow batches, on Beam."""
    import apache_beam as beam

    from pipelines.sources.file_source import ReadInputFiles
    from pipelines.validate import ValidateRecords

    files = args.files if fmt == "csv" else json_files(args)
    schema = args.case.input.for_scoring()
    out = os.path.join(args.work_dir, f"extract_{fmt}", "count")
    t0 = time.perf_counter()
    with beam.Pipeline(argv=["--runner=DirectRunner"]) as p:
        read = p | "Read" >> ReadInputFiles(files, schema)
        checked = read.batches | "Validate" >> ValidateRecords(schema)
        _ = (
            checked.valid
            | beam.Map(lambda b: b.num_rows)
            | beam.CombineGlobally(sum)
            | beam.io.WriteToText(out, shard_name_template="")
        )
    seconds = time.perf_counter() - t0
    return {"rows": int(open(out).read()), "seconds": seconds}


def measure_pyarrow(args, fmt: str) -> dict:
    """pyarrow's own whole-file readers on the same files: read_csv / read_json, default options."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson

    files = args.files if fmt == "csv" else json_files(args)
    t0 = time.perf_counter()
    rows = sum((pacsv.read_csv(f) if fmt == "csv" else pajson.read_json(f)).num_rows for f in files)
    return {"rows": rows, "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------- publishing (duplicate keys)


def staged_predictions(args) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """Parquet files laid out as a run stages predictions, made once: (files with rows, rows per source)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    import schemas

    key = args.case.input.key
    folder = os.path.join(args.work_dir, f"staged_{args.rows}")
    rng = np.random.default_rng(0)
    keys = np.arange(args.rows)
    content = rng.integers(-(2**62), 2**62, args.rows)
    parts = {"part": (keys, content)}
    copies = rng.choice(args.rows, args.rows // 100, replace=False)
    conflicts = rng.choice(args.rows, args.rows // 1000, replace=False)
    parts["copies"] = (copies, content[copies])
    parts["conflicts"] = (conflicts, content[conflicts] + 1)
    files, counts = [], {}
    os.makedirs(folder, exist_ok=True)
    for name, (k, h) in parts.items():
        path = os.path.join(folder, f"{name}.parquet")
        n = len(k)
        if not os.path.exists(path):
            columns = {
                "score_date": pa.repeat(pa.scalar(date.fromisoformat(args.day), pa.date32()), n),
                key.name: pc.binary_join_element_wise("record-", pc.cast(pa.array(k), pa.string()), "")
                if key.type.arrow == pa.string()
                else pa.array(k),
                "probability": pa.array(rng.random(n)),
                "label": pa.array(rng.random(n) > 0.5),
                "threshold": pa.repeat(0.5, n),
                "model_name": pa.repeat(args.case.model_name, n),
                "model_version": pa.repeat(1, n),
                "model_role": pa.repeat("champion", n),
                "run_id": pa.repeat("benchmark", n),
                "scored_at": pa.repeat(pa.scalar(0, pa.timestamp("us", tz="UTC")), n),
                "source": pa.repeat(name, n),
                "line_number": pa.array(np.arange(n) + 2),
                "content_hash": pa.array(h),
            }
            pq.write_table(pa.table(columns, schema=schemas.staged_predictions(args.case).arrow_schema), path)
        files.append((path, n))
        counts[name] = n
    return files, counts


def measure_publish(args, resolve: bool) -> dict:
    """One night published into a new DuckDB warehouse: audit, duplicate keys resolved, one transaction;
    or (resolve False) audited and inserted as staged."""
    from datetime import datetime, timezone

    from pipelines.warehouses import RunRecord, StagedResults, open_warehouse, sql
    from schemas import predictions

    files, counts = staged_predictions(args)
    path = os.path.join(args.work_dir, f"publish_{'resolved' if resolve else 'plain'}.duckdb")
    if os.path.exists(path):
        os.remove(path)
    warehouse = open_warehouse(path, args.case)
    warehouse.prepare()
    run = RunRecord(
        run_id="benchmark",
        score_date=date.fromisoformat(args.day),
        model_name=args.case.model_name,
        model_version=1,
        input="benchmark",
        started_at=datetime.fromtimestamp(0, timezone.utc),
    )
    warehouse.record_run(run)
    staged = StagedResults(files, [], counts, counts)
    t0 = time.perf_counter()
    if resolve:
        warehouse.publish_night(run, staged)
    else:
        with warehouse._staged(run, staged) as tables:
            warehouse._query(sql.audit(warehouse.dialect, tables, warehouse.key, run.run_id, run.score_date))
            columns = ", ".join(predictions(args.case).names)
            warehouse._transaction(
                run, [sql.Statement(f"INSERT INTO predictions ({columns}) SELECT {columns} FROM {tables.predictions}")]
            )
    return {"rows": sum(counts.values()), "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------- driver


def run_measurement(name: str, args) -> dict:
    """Run one measurement in a child process; its max RSS is the measurement's peak memory."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        f"--measure={name}",
        f"--use_case={args.use_case}",
        f"--rows={args.rows}",
        f"--work_dir={args.root_dir}",
        f"--model_root={args.model_root}",
        f"--accelerator={args.accelerator}",
    ]
    if args.batch_size:
        cmd.append(f"--batch_size={args.batch_size}")
    cmd += args.pipeline_args
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if name.startswith("pipeline"):
        # As `python -m pipelines.score` starts (pipelines/score.py): here TensorFlow, loaded before the
        # timed run, loads pyarrow first, so the command's own default would come too late.
        env.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"measurement {name} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rows_per_s"] = result["rows"] / result["seconds"]
    # As /usr/bin/time sees the child: user + system CPU over wall time, start-up included.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["cores_busy"] = cpu / wall
    return result


def ensure_inputs(args) -> None:
    """The use case's model (trained on its sample maker's training file, when it has no version yet) and
    --rows records of its night, written by its sample maker once per size."""
    from models import registry

    maker = importlib.import_module(args.case.sample.module)  # the use case's sample maker
    if not registry.list_versions(args.model_root, args.case.model_name):
        training = os.path.join(args.work_dir, "training.csv")
        if not os.path.exists(training):
            maker.write_training(training)
        subprocess.run(
            [sys.executable, "-m", "pipelines.train", f"--use_case={args.use_case}", f"--input={training}"]
            + [f"--model_root={args.model_root}", f"--work_dir={os.path.join(args.work_dir, 'train')}"],
            cwd=REPO,
            check=True,
            env={**os.environ, "PYTHONPATH": REPO},
        )
    partition = os.path.dirname(args.input_glob)
    marker = os.path.join(partition, f"_rows_{args.rows}_{args.rows_per_file}")
    if not os.path.exists(marker):
        for stale in glob.glob(os.path.join(partition, "*")):  # another size's files and marker
            os.remove(stale)
        maker.write_night(date.fromisoformat(args.day), partition, args.rows, args.rows_per_file)
        open(marker, "w").close()


def main(argv: list[str] | None = None) -> None:
    from pipelines.defaults import DEFAULT_USE_CASE
    from schemas import load_use_case

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--use_case", default=DEFAULT_USE_CASE, help="Whose data and model (as the scorer's).")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", default=None, help="Write the results here.")
    parser.add_argument(
        "--only",
        default="a,b,c,x,y,j,k",
        help="Which measurements: a (ceiling), b (baseline), c (pipeline), m (pipeline, --monitoring off), f (fused), "
        "s (f's parts alone), "
        "x / y (CSV extraction through the pipeline / pyarrow.csv.read_csv), j / k (JSON: pipeline / "
        "pyarrow.json.read_json), p / q (publishing staged predictions into DuckDB, duplicate keys "
        "resolved / inserted as staged).",
    )
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "tpu"])
    parser.add_argument("--batch_size", type=int, default=None, help="Default: the device's default.")
    parser.add_argument("--rows_per_file", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="Rounds of the measurements; each keeps its fastest.")
    parser.add_argument("--work_dir", default=os.path.join(REPO, "build", "benchmark"))
    parser.add_argument("--model_root", default=os.path.join(REPO, "artifacts", "models"))
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args, args.pipeline_args = parser.parse_known_args(argv)
    args.case = load_use_case(args.use_case)
    if args.case.sample is None:
        parser.error(f"--use_case {args.use_case} declares no sample maker (schemas.Sample): nothing to measure on")
    args.day = args.case.sample.night
    # Each use case's inputs and warehouses in a folder of its own; a child process is handed the root.
    args.root_dir, args.work_dir = args.work_dir, os.path.join(args.work_dir, args.case.name)
    args.input_glob = os.path.join(args.work_dir, "input", f"dt={args.day}", "*.csv")
    args.files = sorted(glob.glob(args.input_glob))

    if args.measure:  # child process: one measurement, its result as the last line of stdout
        result = {
            "ceiling": measure_ceiling,
            "baseline": measure_baseline,
            "pipeline": measure_pipeline,
            "pipeline_unmonitored": lambda a: measure_pipeline(a, "--monitoring=off"),
            "fused": measure_fused,
            "parts": measure_parts,
            "extract_csv": lambda a: measure_extract(a, "csv"),
            "pyarrow_csv": lambda a: measure_pyarrow(a, "csv"),
            "extract_json": lambda a: measure_extract(a, "json"),
            "pyarrow_json": lambda a: measure_pyarrow(a, "json"),
            "publish": lambda a: measure_publish(a, resolve=True),
            "publish_plain": lambda a: measure_publish(a, resolve=False),
        }[args.measure](args)
        result["peak_memory_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        print(json.dumps(result))
        return

    ensure_inputs(args)
    chosen = [MEASUREMENTS[k.strip()] for k in args.only.split(",")]
    results = {}
    # Rounds interleave the measurements, so that a slow spell of the machine does not land on one of
    # them alone; each keeps its fastest round.
    for _ in range(args.repeat):
        for name in chosen:
            result = run_measurement(name, args)
            print(
                f"{name:9s} {result['rows']:>10,d} rows  {result['rows_per_s']:>12,.0f} rows/s  "
                f"peak {result['peak_memory_bytes'] / 2**20:>8,.0f} MiB  cores busy {result['cores_busy']:.2f}",
                flush=True,
            )
            if name not in results or result["rows_per_s"] > results[name]["rows_per_s"]:
                results[name] = result

    report = {
        "rows": args.rows,
        "accelerator": args.accelerator,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    for name, result in results.items():
        report[f"{name}_rows_per_s"] = round(result["rows_per_s"], 1)
        report[f"{name}_seconds"] = round(result["seconds"], 3)
        report[f"{name}_peak_memory_bytes"] = result["peak_memory_bytes"]
        report[f"{name}_cores_busy"] = round(result["cores_busy"], 2)
    if "ceiling" in results:
        report["ceiling_device"] = results["ceiling"]["device"]
        report["batch_size"] = results["ceiling"]["batch_size"]
    if "pipeline" in results:
        report["pipeline_devices"] = results["pipeline"]["devices"]
        report["pipeline_stage_seconds"] = results["pipeline"]["stage_seconds"]
        if "ceiling" in results:
            report["ratio_vs_ceiling"] = round(report["pipeline_rows_per_s"] / report["ceiling_rows_per_s"], 3)
        if "fused" in results:
            report["ratio_vs_fused"] = round(report["pipeline_rows_per_s"] / report["fused_rows_per_s"], 3)
        if "baseline" in results:
            report["ratio_vs_baseline"] = round(report["pipeline_rows_per_s"] / report["baseline_rows_per_s"], 3)
    if "pipeline" in results and "pipeline_unmonitored" in results:
        # The share of throughput monitoring costs: 1 - (with / without).
        report["monitoring_cost"] = round(
            1 - report["pipeline_rows_per_s"] / report["pipeline_unmonitored_rows_per_s"], 3
        )
    for fmt in ("csv", "json"):
        if f"extract_{fmt}" in results and f"pyarrow_{fmt}" in results:
            report[f"extract_{fmt}_ratio_vs_pyarrow"] = round(
                report[f"extract_{fmt}_rows_per_s"] / report[f"pyarrow_{fmt}_rows_per_s"], 3
            )
    if "publish" in results and "publish_plain" in results:
        report["publish_ratio_vs_plain"] = round(report["publish_rows_per_s"] / report["publish_plain_rows_per_s"], 3)
    print("\n| measurement | rows/s | seconds | peak memory (MiB) | cores busy |\n|---|---:|---:|---:|---:|")
    for name in results:
        print(
            f"| {name} | {report[f'{name}_rows_per_s']:,.0f} | {report[f'{name}_seconds']:.2f} | "
            f"{report[f'{name}_peak_memory_bytes'] / 2**20:,.0f} | {report[f'{name}_cores_busy']:.2f} |"
        )
    if "parts" in results:
        report["parts_rows_per_s"] = {k: round(v, 1) for k, v in results["parts"]["parts"].items()}
        print("\n| (f)'s part alone | rows/s |\n|---|---:|")
        for part, rate in results["parts"]["parts"].items():
            print(f"| {part} | {rate:,.0f} |")
    if "pipeline" in results:
        # Each step's own work, summed over threads and workers: more than the wall time when they overlap.
        print("\n| step | seconds of work |\n|---|---:|")
        for step, spent in results["pipeline"]["stage_seconds"].items():
            print(f"| {step} | {spent:.2f} |")
    for ratio in (
        "ratio_vs_ceiling",
        "ratio_vs_baseline",
        "ratio_vs_fused",
        "extract_csv_ratio_vs_pyarrow",
        "extract_json_ratio_vs_pyarrow",
        "publish_ratio_vs_plain",
        "monitoring_cost",
    ):
        if ratio in report:
            print(f"{ratio}: {report[ratio]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
