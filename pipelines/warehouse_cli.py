"""What the commands that only read a warehouse share (`pipelines.report`, `pipelines.export_statistics`):
the warehouse opened as it is, never created, and one line and exit code 2 for anything it lacks."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipelines.arguments import USE_CASE_HELP, WAREHOUSE_DEFAULT_HELP
from pipelines.defaults import DEFAULT_USE_CASE, default_warehouse
from pipelines.parsing import CommandParser, ShowDefaults, iso_date

if TYPE_CHECKING:
    from pipelines.warehouses import Warehouse


def night_parser(module: str, usage: str, description: str, what: str) -> argparse.ArgumentParser:
    """A command's parser with the options every such command takes: the night, the warehouse, the run
    (`what` says what the command does with it); the command adds its own."""
    built = CommandParser(
        prog=f"python -m {module}",
        usage=f"python -m {module} {usage}",
        description=description,
        formatter_class=ShowDefaults,
        epilog="Other options (gs:// settings such as --project) go to Beam's file systems.",
    )
    built.add_argument("--date", required=True, type=iso_date, help="The night, YYYY-MM-DD.")
    built.add_argument("--use_case", default=DEFAULT_USE_CASE, help=USE_CASE_HELP)
    built.add_argument(
        "--warehouse", default=None, help=f"A DuckDB file or bq://project.dataset ({WAREHOUSE_DEFAULT_HELP})."
    )
    latest = f"{what} this run of the date, not its latest (default: the latest)."
    built.add_argument("--run_id", default=None, help=latest)
    return built


def existing_warehouse(location: str | None, use_case: str, beam_args: list[str]) -> Warehouse:
    """The use case's warehouse at `location` (None: its default), its tables as schemas/ defines them,
    or a clear error; the other arguments (gs:// settings such as --project) go to Beam's file systems,
    as the scoring job takes them."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.warehouses import WarehouseConfigError, open_warehouse
    from schemas import load_use_case

    options = PipelineOptions(beam_args)
    beam_logger = logging.getLogger("apache_beam.options.pipeline_options")
    level, beam_logger.level = beam_logger.level, logging.ERROR  # its "Discarding unparseable args": said below
    try:
        known = set(options.get_all_options())
    finally:
        beam_logger.setLevel(level)
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - known)
    if unknown:  # a misspelt option of the command's own would otherwise be dropped without a word
        raise ValueError(f"unknown option --{unknown[0]} (--help lists the options)")
    FileSystems.set_options(options)
    location = default_warehouse(use_case) if location is None else location
    warehouse = open_warehouse(location, load_use_case(use_case))
    if not warehouse.exists():
        raise WarehouseConfigError(f"{location}: no such warehouse")
    warehouse.prepare(create=False)
    return warehouse


def exit_code(run: Callable[[list[str]], str], argv: list[str]) -> int:
    """Runs a command: what it wrote on stdout and 0, or one line on stderr and 2 for a bad configuration
    or what the warehouse does not hold."""
    try:
        written = run(argv)
    except SystemExit as answered:  # --help (0) or a bad argument (2), said already
        return answered.code
    except (ValueError, LookupError) as e:  # WarehouseConfigError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(written)
    return 0
