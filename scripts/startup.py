"""How long the commands take to answer what needs no data: --help, a bad date, a bad option value, a
missing input. Measured as whole processes, in turns with the floor (Beam's import) and the ceiling it
must stay well under (TensorFlow's import), so that a busy machine slows all of them alike.

    python scripts/startup.py [--runs 7] [--model_root artifacts/models] [--json out.json]

Prints each command's median wall seconds and its ratio to `python -c "import tensorflow"` in the
same run (README: Output; the target is at most 0.4).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REFERENCES = {
    "import tensorflow": ["-c", "import tensorflow"],
    "import apache_beam": ["-c", "import apache_beam"],
}


def commands(model_root: str, scratch: str) -> dict[str, list[str]]:
    missing = os.path.join(scratch, "none", "dt={date}", "*.csv")
    return {
        "score --help": ["-m", "pipelines.score", "--help"],
        "score --date 2026-13-01": ["-m", "pipelines.score", "--date", "2026-13-01"],
        "score --accelerator xpu": ["-m", "pipelines.score", "--accelerator", "xpu"],
        "score, missing input": [
            "-m",
            "pipelines.score",
            "--date",
            "2026-11-23",
            f"--model_root={model_root}",
            f"--input={missing}",
            f"--warehouse={os.path.join(scratch, 'w.duckdb')}",
        ],
        "train --help": ["-m", "pipelines.train", "--help"],
        "report --help": ["-m", "pipelines.report", "--help"],
    }


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="Timed rounds, after one untimed (default: 7).")
    parser.add_argument(
        "--model_root", default="artifacts/models", help="Where a model version is (default: %(default)s)."
    )
    parser.add_argument("--json", default=None, help="Also write the figures here.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        timed = {**REFERENCES, **commands(args.model_root, scratch)}
        seconds: dict[str, list[float]] = {name: [] for name in timed}
        for round_ in range(args.runs + 1):  # in turns: each round runs every command once
            for name, command in timed.items():
                took = wall(command)
                if round_:
                    seconds[name].append(took)
    tensorflow = statistics.median(seconds["import tensorflow"])
    rows = {
        name: {
            "median_s": round(statistics.median(s), 3),
            "ratio_to_tensorflow": round(statistics.median(s) / tensorflow, 3),
        }
        for name, s in seconds.items()
    }
    print(f"{'command':32} {'median s':>9} {'/ import tensorflow':>20}")
    for name, row in rows.items():
        print(f"{name:32} {row['median_s']:9.3f} {row['ratio_to_tensorflow']:20.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": args.runs, "commands": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
