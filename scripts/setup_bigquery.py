"""Create (or update) the BigQuery warehouse: dataset, partitioned tables, analyst views.

    python scripts/setup_bigquery.py --project my-project --dataset scoring [--location EU] \
        [--partition_expiration_days 400] [--use_case NAME]

Tables come from `schemas/` (columns, descriptions, partitioning by date, clustering), the predictions
table from the use case's key (`--use_case`, as the scorer takes it); existing tables are left as they
are (the scorer refuses one that no longer matches). Views, the same as the scorer makes in any warehouse
(`pipelines/warehouses/sql.py`): `latest_predictions` (each record's most recent champion score) and
`daily_score_summary`.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipelines import bigquery as bq  # noqa: E402
from pipelines.arguments import USE_CASE_HELP  # noqa: E402
from pipelines.defaults import DEFAULT_USE_CASE  # noqa: E402
from pipelines.warehouses import BigQueryWarehouse  # noqa: E402
from schemas import UseCaseError, load_use_case  # noqa: E402


def setup(
    project: str,
    dataset: str,
    location: str | None = None,
    partition_expiration_days: int | None = None,
    use_case: str = DEFAULT_USE_CASE,
) -> BigQueryWarehouse:
    """`use_case` by name, as --use_case names it: loaded here, so that a caller needs no import of it."""
    ref = bq.DatasetRef.parse(f"{project}.{dataset}")
    if ref is None:
        raise SystemExit(f"not a valid project/dataset: {project!r}.{dataset!r}")
    warehouse = BigQueryWarehouse(
        f"{bq.SCHEME}{ref}",
        load_use_case(use_case),
        dataset_location=location,
        partition_expiration_days=partition_expiration_days,
    )
    warehouse.set_up()
    return warehouse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--location", default=None, help="Dataset location, e.g. US or EU.")
    parser.add_argument("--use_case", default=DEFAULT_USE_CASE, help=USE_CASE_HELP)
    parser.add_argument(
        "--partition_expiration_days",
        type=int,
        default=None,
        help="Drop partitions (nights) older than this; default: keep forever.",
    )
    args = parser.parse_args(argv)
    try:
        warehouse = setup(args.project, args.dataset, args.location, args.partition_expiration_days, args.use_case)
    except UseCaseError as e:
        parser.error(str(e))
    print(
        f"{warehouse.ref}: tables {', '.join(t.name for t in warehouse.tables)}; "
        f"views {', '.join(v.name for v in warehouse.views())}"
    )


if __name__ == "__main__":
    main()
