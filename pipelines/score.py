"""Nightly batch scoring: a date's records -> validated -> scored by RunInference -> the warehouse.

    python -m pipelines.score --date 2026-11-23 [--input ...] [--warehouse ...] [--model_version N]
    python -m pipelines.score --start_date 2026-01-01 --end_date 2026-12-31 ...   (a backfill: one job)

Everything that can be checked without reading data (the date, the model version and its files,
the input files, the warehouse tables) is checked first, so bad configuration fails fast and
writes nothing. Runs that were killed are reaped first. The pipeline then flows one way: extract
-> validate -> score -> monitor -> load, and the night is published only if it passes its quality gates.

Exit codes: 0 published; 1 failed (the date untouched); 2 bad configuration (nothing written);
3 refused by a quality gate (the date untouched, the run and its rows recorded as refused). A range
of nights is one job, each night its own run: exit 3 if any night was refused (the others published).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from pipelines import arguments

if TYPE_CHECKING:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

PROG = "python -m pipelines.score"
WHAT = "what to score"


def options(argv: list[str] | None) -> PipelineOptions:
    """The command's options: --help and a bad value are answered (SystemExit) before Beam, TensorFlow or
    any step is imported; the rest go to Beam."""
    declare = (arguments.data_arguments, arguments.scoring_arguments)
    arguments.parser(__doc__, *declare, prog=PROG, what=WHAT).parse_known_args(argv)
    # Before pyarrow is loaded: its memory pool from the start is one that returns freed memory
    # (pipelines.batches.returning_memory_pool, which workers elsewhere call when they set up).
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    from apache_beam.options.pipeline_options import PipelineOptions

    import pipelines.options  # noqa: F401  its import registers the commands' options with Beam

    return PipelineOptions(argv)


def run(argv: list[str] | None = None, pipeline: beam.Pipeline | None = None) -> dict[str, Any]:
    """Score as the command would (`pipeline`: a test's, else the runner's); returns the summary, raises
    where the command would exit other than 0 (pipelines/scoring/job.py)."""
    parsed = options(argv)
    from pipelines.scoring import job

    return job.run_job(parsed, sys.argv[1:] if argv is None else argv, pipeline)


def main(argv: list[str]) -> int:
    """The command; returns the exit code."""
    try:
        parsed = options(argv)
    except SystemExit as answered:  # --help (0) or a bad value (2), said already: the exit code
        return answered.code
    from pipelines.scoring import job

    return job.main(parsed, argv)


def __getattr__(name: str) -> Any:
    """The job's parts (`plan`, `build_pipeline`, ...), for scripts and tests that drive them: imported
    when first asked for, so that the command itself starts light."""
    import pipelines.scoring

    return getattr(pipelines.scoring, name)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    if code == arguments.TERMINATED:
        # A stopped run's pipeline threads may still be in native code (TensorFlow, pyarrow, DuckDB), and
        # finalising the interpreter under them can crash it: leave at once, the runs marked failed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
