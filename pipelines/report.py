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

from pipelines.defaults import REPORT_DAYS
from pipelines.warehouse_cli import existing_warehouse, exit_code, night_parser


def parser() -> argparse.ArgumentParser:
    built = night_parser("pipelines.report", "--date YYYY-MM-DD [options]", __doc__, "Describe")
    built.add_argument(
        "--report_dir",
        default=None,
        help="A local folder or gs://... (default: reports/ beside a DuckDB warehouse, else warehouse/reports/).",
    )
    built.add_argument("--days", type=int, default=REPORT_DAYS, help="Days of history plotted.")
    return built


def run(argv: list[str] | None = None) -> str:
    """Writes the report; returns its path. The arguments are checked before Beam, matplotlib or a
    warehouse client is imported."""
    args, rest = parser().parse_known_args(argv)
    night_date = date.fromisoformat(args.date)  # checked as parsed (iso_date)
    from pipelines.monitoring import page

    if args.days < 1:
        raise ValueError("--days must be at least 1")
    warehouse = existing_warehouse(args.warehouse, args.use_case, rest)
    night = warehouse.night_report(night_date, args.days, args.run_id)
    not_flagged = warehouse.use_case.drift.not_flagged.keys()
    return page.write_page(night, args.report_dir or warehouse.default_report_dir(), warehouse.name, not_flagged)


def main(argv: list[str]) -> int:
    return exit_code(run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
