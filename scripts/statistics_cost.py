"""What the night's statistics cost per million records, in this checkout and, interleaved, in another.

    python scripts/statistics_cost.py [--use_case NAME] [--rows 1000000] [--rounds 5] [--against CHECKOUT]

The records are the use case's training input resampled with replacement, validated and typed once, as
the scoring job's MeasureNight receives them, and kept as Parquet. Each round then runs, in a fresh process
per checkout and in alternating order, the statistics' whole work on them: the input's sketches and the
scores' (with vocabularies for the vocabulary features) in two pieces, pickled and merged as two Beam
workers would, and the `DatasetFeatureStatistics` messages made from them. Only that work is timed,
inside each process, so imports and reading the Parquet file are not counted. Prints each round's
seconds per million records and the medians, and with --against the ratio of this checkout's median to
the other's (README: Monitoring, "What it costs").
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH_ROWS = 65_536  # a scored batch


def prepare(use_case_name: str, rows: int, folder: str) -> str:
    """The resampled, validated, typed records as one Parquet file (with a probability column)."""
    sys.path.insert(0, REPO)
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from pipelines.batches import RawBatch
    from pipelines.validate import SchemaValidator
    from schemas import load_use_case

    use_case = load_use_case(use_case_name)
    if not use_case.training_input:
        raise SystemExit(f"error: use case {use_case.name} declares no training input to resample")
    schema = use_case.input.for_scoring()
    as_text = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in schema.names}, strings_can_be_null=True, null_values=[""]
    )
    source = pacsv.read_csv(os.path.join(REPO, use_case.training_input), convert_options=as_text)
    rng = np.random.default_rng(0)
    resampled = source.take(pa.array(rng.integers(0, source.num_rows, rows)))
    validator = SchemaValidator(schema)
    tables = []
    for batch in resampled.to_batches(max_chunksize=BATCH_ROWS):
        valid, _ = validator.validate(RawBatch("resampled", batch))
        tables.append(pa.Table.from_batches([valid]))
    table = pa.concat_tables(tables)
    scores = rng.beta(2, 5, table.num_rows)
    table = table.append_column("probability", pa.array(scores, pa.float32()))
    out = os.path.join(folder, "typed.parquet")
    pq.write_table(table, out)
    return out


def measure(parquet: str, use_case_name: str) -> float:
    """Seconds of the statistics' work on the file, in this process (the checkout on sys.path)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from tfx_bsl import sketches  # noqa: F401 (loaded before the clock starts: its import is not the work)

    from pipelines.monitoring.statistics import NUMERIC, SCORE, DatasetSketch, feature_kinds
    from schemas import FeatureKind, load_use_case

    use_case = load_use_case(use_case_name)
    table = pq.read_table(parquet)
    batches = table.to_batches(max_chunksize=BATCH_ROWS)
    kinds = feature_kinds(use_case)
    vocabularies = {
        f.name: pc.unique(pc.drop_null(table.column(f.name).combine_chunks())).cast(pa.string())
        for f in use_case.of_kind(FeatureKind.VOCABULARY)
        if not f.sources and pa.types.is_string(table.schema.field(f.name).type)
    }
    half = len(batches) // 2
    start = time.perf_counter()
    merged = []
    for piece in (batches[:half], batches[half:]):  # two workers' accumulators
        night = DatasetSketch(kinds, vocabularies)
        scores = DatasetSketch({SCORE: NUMERIC}, columns={SCORE: "probability"})
        for batch in piece:
            night.add(batch)
            scores.add(batch)
        merged.append(pickle.loads(pickle.dumps((night, scores))))
    (night, scores), (other_night, other_scores) = merged
    night.merge(other_night).to_proto("night")
    scores.merge(other_scores).to_proto("night_scores")
    return time.perf_counter() - start


def run_in(checkout: str, parquet: str, use_case: str) -> float:
    """`measure` in a fresh process that imports the pipeline's code from `checkout` (one that declares
    use cases: this script measures them from then on)."""
    env = {**os.environ, "PYTHONPATH": checkout}
    command = [sys.executable, os.path.abspath(__file__), "--measure", parquet, f"--use_case={use_case}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=checkout)
    if done.returncode:
        raise SystemExit(f"error: the measurement in {checkout} failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--use_case", default=None, help="Whose records and features (default: the bundled example).")
    parser.add_argument("--rows", type=int, default=1_000_000, help="Records (default: %(default)s).")
    parser.add_argument("--rounds", type=int, default=5, help="Timed rounds per checkout (default: %(default)s).")
    parser.add_argument("--against", default=None, help="Another checkout, measured in turns with this one.")
    parser.add_argument("--json", default=None, help="Also write the figures here.")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # one process's measurement
    args = parser.parse_args(argv)
    if args.measure:
        print(measure(args.measure, args.use_case))
        return 0
    sys.path.insert(0, REPO)
    from pipelines.defaults import DEFAULT_USE_CASE

    args.use_case = args.use_case or DEFAULT_USE_CASE
    import pyarrow.parquet as pq

    checkouts = {"this": REPO, **({"against": os.path.abspath(args.against)} if args.against else {})}
    with tempfile.TemporaryDirectory() as folder:
        parquet = prepare(args.use_case, args.rows, folder)
        records = pq.read_metadata(parquet).num_rows
        seconds: dict[str, list[float]] = {name: [] for name in checkouts}
        for round_ in range(args.rounds):
            order = list(checkouts) if round_ % 2 == 0 else list(reversed(checkouts))
            for name in order:
                seconds[name].append(run_in(checkouts[name], parquet, args.use_case) * 1e6 / records)
            print(f"round {round_ + 1}: " + ", ".join(f"{n} {seconds[n][-1]:.3f} s/M" for n in checkouts), flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, value in medians.items():
        print(f"{name} ({checkouts[name]}): median {value:.3f} s per million records")
    result = {"records": records, "seconds_per_million": seconds, "medians": medians}
    if args.against:
        result["ratio"] = medians["this"] / medians["against"]
        print(f"this / against: {result['ratio']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
