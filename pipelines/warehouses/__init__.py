"""Where nights are published: one contract (`contract.Warehouse`, exchanging `records`), one SQL (`sql`),
two engines.

    warehouse = open_warehouse("warehouse/scores.duckdb", use_case)   # or "bq://project.dataset"
    warehouse.prepare(); warehouse.reap(stale_after, now, by=run.run_id); warehouse.record_run(run)
    ... the pipeline stages files; the run heartbeats its row ...
    with warehouse.within(Deadline(publish_timeout)):   # after the data was read: waits, saying so
        warehouse.publish_night(run, staged, guard)      # or GateRefused: kept apart, not published

`open_warehouse` is the one way in; a third engine is a `Warehouse` subclass with a `Dialect`, added
there (README: "Adding a warehouse").
"""

from __future__ import annotations

from pipelines.warehouses.bigquery_warehouse import BigQueryWarehouse, is_bigquery_warehouse
from pipelines.warehouses.contract import (
    ABANDONED,
    FAILED,
    REFUSED,
    RUNNING,
    SUCCEEDED,
    UNGUARDED,
    PublishGuard,
    Warehouse,
)
from pipelines.warehouses.duckdb_warehouse import DuckDBWarehouse
from pipelines.warehouses.gates import GateLimits
from pipelines.warehouses.records import (
    AuditError,
    GateRefused,
    PublishingStopped,
    RunRecord,
    StagedResults,
    WarehouseConfigError,
)
from schemas import UseCase


def open_warehouse(
    location: str,
    use_case: UseCase,
    *,
    create_dataset: bool = False,
    dataset_location: str | None = None,
    lock_timeout: float = DuckDBWarehouse.DEFAULT_LOCK_TIMEOUT,
) -> Warehouse:
    """The warehouse `--warehouse` names, holding `use_case`'s nights: BigQuery for bq://project.dataset,
    else a DuckDB file. `create_dataset`: a missing BigQuery dataset, or a DuckDB file's missing folder, is made."""
    if is_bigquery_warehouse(location):
        return BigQueryWarehouse(
            location,
            use_case,
            create_dataset=create_dataset,
            dataset_location=dataset_location,
            lock_timeout=lock_timeout,
        )
    return DuckDBWarehouse(location, use_case, lock_timeout=lock_timeout, create_folder=create_dataset)


__all__ = [
    "ABANDONED",
    "FAILED",
    "REFUSED",
    "RUNNING",
    "SUCCEEDED",
    "AuditError",
    "GateLimits",
    "GateRefused",
    "BigQueryWarehouse",
    "DuckDBWarehouse",
    "PublishGuard",
    "PublishingStopped",
    "RunRecord",
    "StagedResults",
    "UNGUARDED",
    "Warehouse",
    "WarehouseConfigError",
    "is_bigquery_warehouse",
    "open_warehouse",
]
