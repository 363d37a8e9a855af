"""Write a night's HTML report again, from the warehouse alone.

    python -m pipelines.report --date 2026-11-23 [--warehouse warehouse/scores.duckdb]
                               [--report_dir warehouse/reports] [--run_id RUN]

The scoring job writes the same report after every run (README: Monitoring); this rewrites it, for
a date whose report was lost, for an older night, or after the history it plots has grown. It
describes the date's latest finished run (or --run_id), published, refused or failed.

Exit codes: 0 written, 2 bad configuration or no finished run for the date.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from pipelines.arguments import CommandParser, ShowDefaults, iso_date
from pipelines.defaults import DEFAULT_WAREHOUSE, REPORT_DAYS


def parser() -> argparse.ArgumentParser:
    built = CommandParser(
        prog="python -m pipelines.report",
        usage="python -m pipelines.report --date YYYY-MM-DD [options]",
        description=__doc__,
        formatter_class=ShowDefaults,
        epilog="Other options (gs:// settings such as --project) go to Beam's file systems.",
    )
    built.add_argument("--date", required=True, type=iso_date, help="The night, YYYY-MM-DD.")
    built.add_argument("--warehouse", default=DEFAULT_WAREHOUSE, help="A DuckDB file or bq://project.dataset.")
    built.add_argument(
        "--report_dir",
        default=None,
        help="A local folder or gs://... (default: reports/ beside a DuckDB warehouse, else warehouse/reports/).",
    )
    built.add_argument(
        "--run_id", default=None, help="Describe this run of the date, not its latest (default: the latest)."
    )
    built.add_argument("--days", type=int, default=REPORT_DAYS, help="Days of history plotted.")
    return built


def run(argv: list[str] | None = None) -> str:
    """Writes the report; returns its path. The arguments are checked before Beam, matplotlib or a
    warehouse client is imported."""
    args, rest = parser().parse_known_args(argv)
    night_date = date.fromisoformat(args.date)  # checked as parsed (iso_date)
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.monitoring import page
    from pipelines.warehouses import WarehouseConfigError, open_warehouse

    if args.days < 1:
        raise ValueError("--days must be at least 1")
    FileSystems.set_options(PipelineOptions(rest))  # gs:// settings, as the scoring job takes them
    warehouse = open_warehouse(args.warehouse)
    if not warehouse.exists():
        raise WarehouseConfigError(f"{args.warehouse}: no such warehouse")
    warehouse.prepare(create=False)  # its tables as schemas/ defines them, or a clear error
    night = warehouse.night_report(night_date, args.days, args.run_id)
    if night.run["score_date"] != night_date:
        raise ValueError(f"run {args.run_id} scored {night.run['score_date']}, not {night_date}")
    return page.write_page(night, args.report_dir or warehouse.default_report_dir())


def main(argv: list[str]) -> int:
    try:
        path = run(argv)
    except SystemExit as answered:  # --help (0) or a bad argument (2), said already
        return answered.code
    except (ValueError, LookupError) as e:  # WarehouseConfigError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
