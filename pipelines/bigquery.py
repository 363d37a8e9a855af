"""BigQuery naming, clients and types, shared by the BigQuery source and the BigQuery warehouse.

Both talk to Google's endpoints or, where `BIGQUERY_EMULATOR_HOST` (REST) and
`BIGQUERY_STORAGE_EMULATOR_HOST` (gRPC, host:port) are set, to an emulator: only the endpoints and
the credentials differ. Names are checked here once, so nothing user-supplied reaches SQL unchecked.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from schemas import ColumnType, TableSchema

SCHEME = "bq://"
PROJECT = r"[a-z][a-z0-9-]{0,61}[a-z0-9]"
DATASET = r"[A-Za-z0-9_]{1,1024}"
TABLE = r"[\w$-]{1,1024}"
_DATASET_ID = re.compile(rf"^(?P<project>{PROJECT})\.(?P<dataset>{DATASET})$")
_TABLE_ID = re.compile(rf"^(?P<project>{PROJECT})\.(?P<dataset>{DATASET})\.(?P<table>{TABLE})$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")

# BigQuery reports a table's column types by their legacy names; schemas/ uses the standard ones.
STANDARD_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}


def standard_type(bq_type: str) -> str:
    return STANDARD_TYPES.get(bq_type, bq_type)


@dataclass(frozen=True)
class DatasetRef:
    project: str
    dataset: str

    @classmethod
    def parse(cls, text: str) -> DatasetRef | None:
        """`project.dataset` (with or without bq://), or None when it is not one."""
        match = _DATASET_ID.match(text.removeprefix(SCHEME))
        return cls(**match.groupdict()) if match else None

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}"


@dataclass(frozen=True)
class TableRef:
    project: str
    dataset: str
    table: str

    @classmethod
    def parse(cls, text: str) -> TableRef | None:
        """`project.dataset.table` (with or without bq://), or None when it is not one."""
        match = _TABLE_ID.match(text.removeprefix(SCHEME))
        return cls(**match.groupdict()) if match else None

    @property
    def path(self) -> str:  # the Storage API's resource name
        return f"projects/{self.project}/datasets/{self.dataset}/tables/{self.table}"

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"


def client(project: str):
    """A BigQuery REST client of `project` (the emulator's where one is configured)."""
    from google.cloud import bigquery

    endpoint = os.environ.get("BIGQUERY_EMULATOR_HOST")
    if not endpoint:
        return bigquery.Client(project=project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return bigquery.Client(
        project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint)
    )


def read_client():
    """A Storage Read API client (the emulator's where one is configured)."""
    from google.cloud.bigquery_storage_v1 import BigQueryReadClient

    endpoint = os.environ.get("BIGQUERY_STORAGE_EMULATOR_HOST")
    if not endpoint:
        return BigQueryReadClient()
    import grpc
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    return BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=grpc.insecure_channel(endpoint)))


def schema_fields(table: TableSchema) -> list:
    from google.cloud import bigquery

    return [
        bigquery.SchemaField(
            f.name, f.type.value, mode="REQUIRED" if f.required else "NULLABLE", description=f.description
        )
        for f in table.fields
    ]


def table_definition(ref: DatasetRef, table: TableSchema, partition_expiration_days: int | None = None):
    """A warehouse table as BigQuery should hold it: partitioned by date, clustered, described."""
    from google.cloud import bigquery

    definition = bigquery.Table(f"{ref}.{table.name}", schema=schema_fields(table))
    definition.description = table.description
    if table.partition_field:
        definition.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY,
            field=table.partition_field,
            expiration_ms=partition_expiration_days * 86_400_000 if partition_expiration_days else None,
        )
    if table.cluster_fields:
        definition.clustering_fields = list(table.cluster_fields)
    return definition


def query_parameter(name: str, type_: ColumnType, value):
    """A typed query parameter: typed by the schema, so a None still has its column's type."""
    from google.cloud import bigquery

    return bigquery.ScalarQueryParameter(name, type_.value, value)
