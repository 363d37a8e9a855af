"""Every option of the commands, declared once, for people and for Beam, importing nothing heavy.

A command builds its parser here and answers --help and a bad value (a date that is not real, a
choice that does not exist, a number that is not one) before Beam, TensorFlow or any step is
imported; `pipelines.options` declares the same arguments as Beam `PipelineOptions`, so that they
travel to remote workers. The defaults that steps use too (block sizes, the lock wait, the quality
gates' limits) are stated once, in `pipelines.defaults`.

`parser` builds a command's --help: options in sections in the order a user needs them, each with
its default.
"""

from __future__ import annotations

import argparse

from pipelines import defaults
from pipelines.choices import Accelerator, DriftGate, InputFormat, MissingColumns, Switch, UnknownColumns, values
from pipelines.parsing import CommandParser, ShowDefaults, iso_date

TERMINATED = 143  # the exit code of a command stopped by SIGTERM (128 + 15)
# The sections of --help, in the order a user needs them (`parser` titles WHAT by command).
WHAT, MODEL, WAREHOUSE, GATES, MONITORING, SOURCES, RUNNING = (
    "what",
    "model",
    "warehouse",
    "gates",
    "monitoring",
    "sources",
    "running",
)
SECTIONS = {
    WHAT: "what to read",
    MODEL: "model",
    WAREHOUSE: "warehouse",
    GATES: "quality gates (README: Quality gates; a night failing one is refused, exit code 3)",
    MONITORING: "monitoring (README: Monitoring)",
    SOURCES: "sources' details",
    RUNNING: "running",
}
# Listed first in their sections, in this order.
FIRST = ("use_case", "date", "start_date", "end_date", "input", "model_root", "model_name", "model_version")
USE_CASE_HELP = (
    "Whose data and model: a bundled use case by name, or an importable module defining USE_CASE "
    "(README: Bringing your own data and model)."
)
WAREHOUSE_DEFAULT_HELP = (
    f"default: {defaults.DEFAULT_WAREHOUSE} for {defaults.DEFAULT_USE_CASE}, warehouse/<use case>.duckdb for another"
)
RUNNER_HELP = """\
Every other option goes to Beam, for example:
  --runner DataflowRunner --project P --region R --temp_location gs://...   run on Dataflow
  --dry_run                                     check everything and build the job, run nothing
  --direct_num_workers N --direct_running_mode multi_processing   local parallelism
(default: DirectRunner on this machine). README: Run on Dataflow."""


def data_arguments(parser) -> None:
    """What both pipelines take: what to read, the model's name and root, the sources' details."""
    what, sources = _group(parser, WHAT), _group(parser, SOURCES)
    what.add_argument("--use_case", default=defaults.DEFAULT_USE_CASE, help=USE_CASE_HELP)
    what.add_argument(
        "--input",
        default=None,
        help="Where the records are: files (local or gs://, {date} substituted, "
        "compressed files read by extension), a BigQuery table "
        "bq://project.dataset.table (rows of the date), or a BigQuery query file "
        "*.sql using the @date parameter (default: the use case's input for scoring or for training).",
    )
    sources.add_argument(
        "--date_column",
        default=None,
        help="BigQuery input: the DATE, TIMESTAMP or INT64 (unix seconds) column that "
        "selects a date's rows (default: the schema's event-time column).",
    )
    sources.add_argument(
        "--bq_project", default=None, help="BigQuery input: the project that runs the read (default: the table's)."
    )
    sources.add_argument(
        "--bq_temp_dataset",
        default=defaults.DEFAULT_TEMP_DATASET,
        help="BigQuery query-file input: the dataset (in --bq_project) holding the "
        "query's result, created if missing; its tables expire after a day.",
    )
    sources.add_argument(
        "--bq_max_streams",
        type=int,
        default=0,
        help="BigQuery input: most parallel read streams (0: BigQuery decides).",
    )
    _reading_arguments(parser)


def _reading_arguments(parser) -> None:
    """How files are read, the range of dates, and which model."""
    what, model, sources = _group(parser, WHAT), _group(parser, MODEL), _group(parser, SOURCES)
    what.add_argument(
        "--input_format",
        default=InputFormat.AUTO.value,
        choices=values(InputFormat),
        help="Format of the input files; auto: from the name (.csv, .json, .jsonl, "
        ".ndjson, each optionally .gz/.bz2/.zst/.deflate/.xz).",
    )
    sources.add_argument(
        "--unknown_columns",
        default=UnknownColumns.KEEP.value,
        choices=values(UnknownColumns),
        help="Records with columns the schema does not know: keep them (the extra "
        "columns are dropped) or reject them. Counted in the run summary either way.",
    )
    sources.add_argument(
        "--missing_nullable_columns",
        default=MissingColumns.REFUSE.value,
        choices=values(MissingColumns),
        help="A file (or table) lacking a nullable feature column: refuse it (one missing_column "
        "file error counting all its records) or score its records with that column null. A "
        "missing required column is always refused; a nullable column the run does not use (the "
        "label when scoring) may be absent. Records lacking a column are counted per column.",
    )
    sources.add_argument(
        "--max_record_bytes",
        type=int,
        default=defaults.DEFAULT_MAX_RECORD_BYTES,
        help="Longest record a file may hold: a record longer than a block grows the block up to "
        "this; a longer one is rejected (record_too_large) and reading resumes at the next.",
    )
    what.add_argument(
        "--start_date",
        default=None,
        type=iso_date,
        help="With a {date} in --input (or a BigQuery input): the first date of a range, YYYY-MM-DD. "
        "Training reads every date of it; scoring scores every night of it in one job, each night "
        "published as its own run through its own gates (a backfill, at most 366 nights; default: none).",
    )
    what.add_argument(
        "--end_date", default=None, type=iso_date, help="The range's last date, inclusive (default: none)."
    )
    sources.add_argument(
        "--split_bytes",
        type=int,
        default=defaults.DEFAULT_SPLIT_BYTES,
        help="An uncompressed file larger than this is read as byte ranges of about this size by "
        "different workers, each starting at the first record boundary after its offset (0: every "
        "file read whole by one worker). Compressed files are always read whole.",
    )
    model.add_argument(
        "--model_root",
        default=defaults.DEFAULT_MODEL_ROOT,
        help="Root of exported models, local or gs:// (TF Serving layout).",
    )
    model.add_argument("--model_name", default=None, help="Model name under --model_root (default: the use case's).")


def scoring_arguments(parser) -> None:
    """What only scoring takes."""
    what, warehouse, monitoring = _group(parser, WHAT), _group(parser, WAREHOUSE), _group(parser, MONITORING)
    what.add_argument(
        "--date",
        default=None,
        type=iso_date,
        help="Partition to score, YYYY-MM-DD (default: yesterday in --timezone, so a "
        "nightly schedule needs no date arithmetic).",
    )
    what.add_argument(
        "--timezone",
        default="UTC",
        help="IANA time zone that decides what 'yesterday' is when --date is not given.",
    )
    warehouse.add_argument(
        "--warehouse",
        default=None,
        help=f"Warehouse: a local DuckDB file, or BigQuery as bq://project.dataset ({WAREHOUSE_DEFAULT_HELP}).",
    )
    warehouse.add_argument(
        "--create_dataset",
        action="store_true",
        default=False,
        help="Start a new warehouse where none is: create a missing BigQuery dataset, or a DuckDB "
        "file's missing folder (otherwise either is an error, so that a typo starts nothing; the default "
        "default warehouse is created without it; scripts/setup_bigquery.py creates a dataset "
        "properly).",
    )
    warehouse.add_argument(
        "--dataset_location",
        default=None,
        help="BigQuery warehouse: location of a dataset --create_dataset creates (default: BigQuery's).",
    )
    warehouse.add_argument(
        "--staging_dir",
        default=None,
        help="Where files are staged before publishing (default: _staging/ beside a "
        "DuckDB warehouse, a local temporary directory for BigQuery; on Dataflow "
        "use gs://...).",
    )
    monitoring.add_argument(
        "--report_dir",
        default=None,
        help="Where each run writes its night's HTML report, report-<warehouse>-<date>.html (default: reports/ "
        "beside a DuckDB warehouse, else warehouse/reports/; on a remote runner reports/ under "
        "--staging_dir, which must then be a gs://... folder; 'none': no report).",
    )
    _model_arguments(parser)


def _model_arguments(parser) -> None:
    """Which versions score, on what, in batches of what size; the run's own output."""
    model, sources, running = _group(parser, MODEL), _group(parser, SOURCES), _group(parser, RUNNING)
    model.add_argument("--model_version", default="latest", help="'latest' or an integer version.")
    model.add_argument(
        "--challenger_version",
        default=None,
        help="Also score every record with this version (rows marked challenger) "
        "and compare it with the champion in the run summary (default: none).",
    )
    model.add_argument(
        "--accelerator",
        default=Accelerator.AUTO.value,
        choices=values(Accelerator),
        help="Where the model runs: auto uses GPUs when present, else CPUs.",
    )
    model.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="Records per model call (default by device: "
        + ", ".join(f"{k} {v}" for k, v in defaults.DEFAULT_BATCH_SIZE.items())
        + ").",
    )
    model.add_argument(
        "--models_per_process",
        type=int,
        default=1,
        help="Model copies each worker process loads, each on its own device; set it "
        "to the GPU count when a worker runs one SDK process for several GPUs.",
    )
    model.add_argument(
        "--large_model",
        action="store_true",
        default=False,
        help="Load one model copy per machine, shared by all its worker processes.",
    )
    sources.add_argument(
        "--block_bytes",
        type=int,
        default=defaults.DEFAULT_BLOCK_BYTES,
        help="Bytes of input parsed per batch (bounds memory per worker).",
    )
    running.add_argument(
        "--progress_seconds",
        type=float,
        default=5.0,
        help="Local runs: print records scored and the rate this often on the terminal "
        "(0: never). Remote runners show progress on their own pages.",
    )
    running.add_argument(
        "--summary_json",
        default=None,
        help="Write the run summary (counts, model, timings) here as JSON (default: not written).",
    )
    _publishing_arguments(parser)
    gate_arguments(parser)


def _publishing_arguments(parser) -> None:
    """How long the warehouse is waited for, and when a silent run counts as killed."""
    warehouse = _group(parser, WAREHOUSE)
    warehouse.add_argument(
        "--lock_timeout",
        type=float,
        default=defaults.DEFAULT_LOCK_TIMEOUT,
        help="Before any data is read: seconds to wait for a DuckDB file another process holds (another run "
        "publishing, an analyst's session), or for a BigQuery API that does not answer, before giving up "
        "with exit code 2.",
    )
    warehouse.add_argument(
        "--publish_timeout",
        default=defaults.DEFAULT_PUBLISH_TIMEOUT,
        help="Each night's publishing, after it was scored (90s, 30m, 2h): how long it waits for a busy or "
        "silent warehouse, saying so, before the run fails with exit code 1 and the date is left as it was. "
        "A commit already sent is waited for as long again.",
    )
    warehouse.add_argument(
        "--stale_after",
        default=defaults.DEFAULT_STALE_AFTER,
        help="A running run whose heartbeat is older than this (90s, 30m, 2h) was killed: every run first marks "
        "such runs abandoned and deletes their staged files. Runs heartbeat 6 times per this period.",
    )


def gate_arguments(parser) -> None:
    """The quality gates' limits (README: Quality gates); a night failing any is refused, exit code 3."""
    gates = _group(parser, GATES)
    gates.add_argument(
        "--max_rejected_fraction",
        type=float,
        default=defaults.MAX_REJECTED_FRACTION,
        help="Refuse the night when more than this share of its input records is rejected (file errors count "
        "their records).",
    )
    gates.add_argument(
        "--max_rejected_records",
        type=int,
        default=None,
        help="Refuse the night when more than this many records are rejected (default: no limit).",
    )
    gates.add_argument(
        "--min_records",
        type=int,
        default=defaults.MIN_RECORDS,
        help="Refuse a night with fewer input records. A night with no scorable record is never published.",
    )
    gates.add_argument(
        "--max_volume_ratio",
        type=float,
        default=defaults.MAX_VOLUME_RATIO,
        help="Once 7 nights are published, refuse a night whose input is outside [median / r, median * r] of "
        "the last 14 published nights.",
    )
    gates.add_argument(
        "--max_volume_z",
        type=float,
        default=defaults.MAX_VOLUME_Z,
        help="Once 7 nights are published, refuse a night whose input count's robust z-score (median and MAD of "
        "the last 14 published nights) is above this.",
    )
    gates.add_argument(
        "--shrink_limit",
        type=float,
        default=defaults.SHRINK_LIMIT,
        help="Refuse re-scoring a published night so that it would hold less than this share of its records.",
    )
    _drift_arguments(parser)


def _drift_arguments(parser) -> None:
    """Drift as a gate, monitoring itself, and publishing a night the gates refused."""
    gates, monitoring = _group(parser, GATES), _group(parser, MONITORING)
    gates.add_argument(
        "--allow_shrink",
        action="store_true",
        default=False,
        help="Let a re-run shrink a published night past --shrink_limit (a correction, say).",
    )
    gates.add_argument(
        "--drift_gate",
        default=defaults.DRIFT_GATE.value,
        choices=values(DriftGate),
        help="A feature (or the score) flagged as drifted against training or the previous night: off (not a "
        "gate), warn (reported and stored), or refuse the night (README: Monitoring).",
    )
    monitoring.add_argument(
        "--monitoring",
        default=Switch.ON.value,
        choices=values(Switch),
        help="off: no feature statistics and no drift for the night (they cost about 8%% of the pipeline's "
        "throughput at 1M records, README: Monitoring); --drift_gate refuse needs it on.",
    )
    gates.add_argument(
        "--accept_gate_failures",
        default=None,
        help="Publish a night that failed its gates anyway; the reason given here and who ran it are stored in "
        "the run's row. A night with no scorable record is never published (default: the gates are enforced).",
    )


def training_arguments(parser) -> None:
    """What only training takes."""
    model, running = _group(parser, MODEL), _group(parser, RUNNING)
    model.add_argument(
        "--epochs", type=int, default=None, help="Passes over the training split (default: the use case's)."
    )
    model.add_argument(
        "--eval_percent",
        type=int,
        default=20,
        help="Share of records held out for evaluation (chosen by record hash).",
    )
    model.add_argument("--seed", type=int, default=42, help="Seed of the model's initial weights and shuffling.")
    running.add_argument(
        "--work_dir", default="artifacts/train", help="Where the transform graph and transformed data are written."
    )


def command_arguments(parser) -> None:
    """What every command takes about its own output."""
    _group(parser, RUNNING).add_argument(
        "--verbose",
        action="store_true",
        default=False,
        help="Everything TensorFlow and Beam log (default: warnings and errors only, TensorFlow's start-up "
        "notices about CUDA on a machine without a GPU left out; README: Output).",
    )


def _group(parser: argparse.ArgumentParser, key: str):
    """Where an option is declared: its section of --help when `parse` builds the parser, else (Beam's own
    parser, the Flex Template's) the parser itself."""
    return getattr(parser, "sections", {}).get(key, parser)


def parser(description: str, *declare, prog: str | None = None, what: str = SECTIONS[WHAT]) -> argparse.ArgumentParser:
    """A command's parser: its options in sections, each with its default. `prog`: the command as a user
    types it; `what`: the first section's title."""
    built = CommandParser(
        prog=prog,
        usage=f"{prog} [options]" if prog else None,
        description=description,
        formatter_class=ShowDefaults,
        epilog=RUNNER_HELP,
    )
    titles = {**SECTIONS, WHAT: what}
    built.sections = {key: built.add_argument_group(title) for key, title in titles.items()}
    for add in (*declare, command_arguments):
        add(built)
    for section in built.sections.values():
        section._group_actions.sort(key=lambda action: FIRST.index(action.dest) if action.dest in FIRST else len(FIRST))
        if not section._group_actions:  # a command without options in a section shows no title
            built._action_groups.remove(section)
    return built
