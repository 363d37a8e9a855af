"""Create (or update) the BigQuery warehouse: dataset, partitioned tables, analyst views.

    python scripts/setup_bigquery.py --project my-project --dataset scoring [--location EU] \
        [--partition_expiration_days 400]

Tables come from `schemas/` (columns, descriptions, partitioning by date, clustering); existing
tables are left as they are (the scorer refuses one that no longer matches). Views:
`latest_predictions` (each trip's most recent champion score) and `daily_score_summary`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipelines.bigquery_source import bigquery_client  # noqa: E402
from pipelines.warehouse_bigquery import table_definition  # noqa: E402
from schemas import CHAMPION, INPUT, WAREHOUSE_TABLES  # noqa: E402

VIEWS = {
    "latest_predictions": (
        "Each trip's most recent champion score.",
        """
        SELECT * FROM `{dataset}.predictions`
        WHERE model_role = '{champion}'
        QUALIFY ROW_NUMBER() OVER (PARTITION BY `{key}` ORDER BY score_date DESC, scored_at DESC) = 1""",
    ),
    "daily_score_summary": (
        "Per night and model version: volume, mean score, share labelled big tipper.",
        """
        SELECT score_date, model_name, model_version, COUNT(*) AS trips,
               ROUND(AVG(probability), 4) AS mean_probability,
               ROUND(AVG(CASE WHEN label THEN 1 ELSE 0 END), 4) AS big_tipper_share
        FROM `{dataset}.predictions`
        WHERE model_role = '{champion}'
        GROUP BY score_date, model_name, model_version""",
    ),
}
_NAME = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$")


def setup(project: str, dataset: str, location: str | None = None, partition_expiration_days: int | None = None):
    from google.cloud import bigquery

    if not _PROJECT.match(project) or not _NAME.match(dataset):
        raise SystemExit(f"not a valid project/dataset: {project!r}.{dataset!r}")
    client = bigquery_client(project)
    ds = bigquery.Dataset(f"{project}.{dataset}")
    if location:
        ds.location = location
    ds.description = "Nightly batch scores (see the project's README)."
    client.create_dataset(ds, exists_ok=True)
    for table in WAREHOUSE_TABLES:
        client.create_table(table_definition(project, dataset, table, partition_expiration_days), exists_ok=True)
    for name, (description, sql) in VIEWS.items():
        view = bigquery.Table(f"{project}.{dataset}.{name}")
        view.view_query = sql.format(dataset=f"{project}.{dataset}", champion=CHAMPION, key=INPUT.key.name)
        view.description = description
        client.delete_table(view.reference, not_found_ok=True)
        client.create_table(view)
    return client


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--location", default=None, help="Dataset location, e.g. US or EU.")
    parser.add_argument(
        "--partition_expiration_days",
        type=int,
        default=None,
        help="Drop partitions (nights) older than this; default: keep forever.",
    )
    args = parser.parse_args(argv)
    setup(args.project, args.dataset, args.location, args.partition_expiration_days)
    print(
        f"{args.project}.{args.dataset}: tables {', '.join(t.name for t in WAREHOUSE_TABLES)}; views {', '.join(VIEWS)}"
    )


if __name__ == "__main__":
    main()
