"""BigQuery as a source: a date's rows of a table, or of a query file with a `@date` parameter.

A query file's result is first written to an expiring table of a scratch dataset (as Beam's own
BigQuery reads do), then read like any table.

The read goes through the BigQuery Storage Read API in Arrow: the driver opens one read session
(the date filter pushed down to BigQuery, so only that day's rows leave it; every column is read,
so columns the schema does not know can be counted and handled by --unknown_columns),
and workers read its streams in parallel, a page of rows at a time, so memory per worker is bounded
by the page size. Clients and names come from `pipelines.bigquery`, shared with the BigQuery warehouse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import apache_beam as beam

from pipelines import bigquery as bq
from pipelines.batches import REJECTED, TABLE, RawBatch, count_read, returning_memory_pool
from pipelines.bigquery import IDENTIFIER, SCHEME, TableRef, standard_type
from pipelines.choices import MissingColumns
from pipelines.sources.contract import InputNotFoundError, NightInput, Read, ReadSettings, Source, SourceConfigError
from schemas import ColumnType, InputSchema, Role

TEMP_TABLE_HOURS = 24
# The BigQuery column types (standard names) each schema type reads from. A FLOAT64 column read as
# INT64 is coerced by validation's exact rule: a whole number within int64 is taken, any other value
# rejected (not_integer, out_of_range) with its record, never rounded.
_COMPATIBLE = {
    ColumnType.STRING: {"STRING"},
    ColumnType.INT64: {"INT64", "FLOAT64"},
    ColumnType.FLOAT64: {"FLOAT64", "INT64", "NUMERIC"},
    ColumnType.DATE: {"DATE"},
    ColumnType.TIMESTAMP: {"TIMESTAMP"},
}


class BigQueryInputError(SourceConfigError):
    """The BigQuery input cannot be read as configured; raised before any data is read."""


class BigQuerySource(Source):
    """A BigQuery table (bq://project.dataset.table), each night's rows by its date column; or a query
    file (*.sql) selecting a night's rows with @date."""

    @staticmethod
    def claims(location: str) -> bool:
        return location.startswith(SCHEME) or location.endswith(".sql")

    @property
    def dated(self) -> bool:
        return True

    def plan_night(self, day: date | None) -> TableNight:
        if day is None:
            raise BigQueryInputError(f"{self.location} is read a date at a time: give --start_date and --end_date")
        return plan_read(self.location, day, self.schema, self.settings)

    def distinct(self, nights: list[NightInput]) -> list[NightInput]:
        """One table, many nights: each night's read is named for its night, so that its records,
        rejections and counts stay its own."""
        if len(nights) == 1:
            return nights
        return [dataclasses.replace(night, source=f"{night.source}@{night.day.isoformat()}") for night in nights]

    def read(self, nights: Sequence[NightInput], progress_dir: str | None = None) -> beam.PTransform:
        return ReadBigQuery(nights[0]) if len(nights) == 1 else ReadNights(nights)


def parse_table(text: str) -> TableRef:
    ref = TableRef.parse(text)
    if ref is None:
        raise BigQueryInputError(f"{text!r} is not a BigQuery table: expected bq://project.dataset.table")
    return ref


def date_restriction(column: str, bq_type: str, day: date) -> str:
    """The Storage API row filter for one day (`bq_type` by its standard name). Only a checked identifier
    and a parsed date go in."""
    if not IDENTIFIER.match(column):
        raise BigQueryInputError(f"{column!r} is not a valid BigQuery column name")
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    end = start + timedelta(days=1)
    if bq_type == "DATE":
        return f'`{column}` = DATE "{day.isoformat()}"'
    if bq_type == "TIMESTAMP":
        return (
            f'`{column}` >= TIMESTAMP "{start:%Y-%m-%d %H:%M:%S}+00" AND '
            f'`{column}` < TIMESTAMP "{end:%Y-%m-%d %H:%M:%S}+00"'
        )
    if bq_type == "INT64":  # unix seconds
        return f"`{column}` >= {int(start.timestamp())} AND `{column}` < {int(end.timestamp())}"
    raise BigQueryInputError(f"date column {column} is {bq_type}; it must be DATE, TIMESTAMP or INT64 unix seconds")


@dataclass(frozen=True)
class TableNight(NightInput):
    """A night's open read session: what the workers need to read the night's rows."""

    day: date
    source: str  # the name its records carry
    session: bytes  # the serialized ReadSession (streams, Arrow schema)
    streams: list[str]
    expected_rows: int  # COUNT(*) of the same rows by a query: the independent count reads reconcile to

    def names(self) -> list[str]:
        return [self.source]

    def recorded(self) -> dict[str, int]:
        return {"streams": len(self.streams)}


def plan_read(location: str, day: date, schema: InputSchema, settings: ReadSettings) -> TableNight:
    """Check the table (or the query's result) against the schema and open a read session for the day."""
    from google.api_core import exceptions
    from google.cloud.bigquery_storage_v1 import types

    project, date_column = settings.bq_project, settings.date_column

    if location.endswith(".sql"):
        ref = _materialize_query(location, day, project, settings.bq_temp_dataset)
        client, restriction = bq.client(project), None
    else:
        ref = parse_table(location)
        client = bq.client(project or ref.project)
    try:
        table = client.get_table(str(ref))
    except exceptions.NotFound:
        raise BigQueryInputError(f"BigQuery table {ref} does not exist") from None
    bq_types = {f.name: standard_type(f.field_type) for f in table.schema}
    _check_types(schema, bq_types, str(ref), settings.missing_nullable_columns)
    if not location.endswith(".sql"):  # a query file selects its date itself, through @date
        column = date_column or _event_time_column(schema)
        if column not in bq_types:
            raise BigQueryInputError(f"BigQuery table {ref} has no date column {column}; name one with --date_column")
        restriction = date_restriction(column, bq_types[column], day)
    options = types.ReadSession.TableReadOptions(row_restriction=restriction or "")
    session = bq.read_client().create_read_session(
        parent=f"projects/{project or ref.project}",
        read_session=types.ReadSession(table=ref.path, data_format=types.DataFormat.ARROW, read_options=options),
        max_stream_count=settings.bq_max_streams,
    )
    streams = [s.name for s in session.streams]
    if not streams:
        raise InputNotFoundError(f"no input rows for date {day.isoformat()} in {location}")
    where = f" WHERE {restriction}" if restriction else ""
    [(expected,)] = client.query(f"SELECT COUNT(*) FROM `{ref}`{where}").result()
    return TableNight(day, f"{SCHEME}{ref}", types.ReadSession.serialize(session), streams, expected)


def _materialize_query(location: str, day: date, project: str | None, temp_dataset: str) -> TableRef:
    """Run the query file for `day` into an expiring table of `temp_dataset`, to be read like a table.

    The query's text is the operator's file; the date reaches it only as the @date parameter and the
    table name is generated, so nothing user-supplied is spliced into SQL.
    """
    import uuid

    from apache_beam.io.filesystems import FileSystems
    from google.cloud import bigquery

    if not project:
        raise BigQueryInputError("a query file needs --bq_project, the project that runs (and pays for) it")
    if not IDENTIFIER.match(temp_dataset):
        raise BigQueryInputError(f"--bq_temp_dataset {temp_dataset!r} is not a valid dataset name")
    with FileSystems.open(location) as f:
        sql = f.read().decode().strip().rstrip(";")
    if "@date" not in sql:
        raise BigQueryInputError(f"{location} must select its rows with the @date query parameter")
    client = bq.client(project)
    dataset = bigquery.Dataset(f"{project}.{temp_dataset}")
    dataset.default_table_expiration_ms = TEMP_TABLE_HOURS * 3600 * 1000
    client.create_dataset(dataset, exists_ok=True)
    ref = TableRef(project, temp_dataset, f"input_{day:%Y%m%d}_{uuid.uuid4().hex[:12]}")
    client.query(
        f"CREATE TABLE `{ref}` OPTIONS (expiration_timestamp = "
        f"TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {TEMP_TABLE_HOURS} HOUR)) AS\n{sql}",
        job_config=bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("date", "DATE", day)]),
    ).result()
    return ref


def _event_time_column(schema: InputSchema) -> str:
    columns = schema.with_role(Role.EVENT_TIME)
    if not columns:
        raise BigQueryInputError("the schema has no event-time column; name the date column with --date_column")
    return columns[0].name


def _check_types(schema: InputSchema, bq_types: dict[str, str], table: str, missing_nullable: str) -> None:
    problems = []
    for column in schema.columns:
        bq_type = bq_types.get(column.name)
        if bq_type is None:
            if column.required:
                problems.append(f"required column {column.name} is missing")
            elif column.role is Role.FEATURE and missing_nullable != MissingColumns.NULL:
                problems.append(
                    f"nullable column {column.name} is missing (--missing_nullable_columns null scores its rows "
                    "with it null)"
                )
        elif bq_type not in _COMPATIBLE[column.type]:
            problems.append(f"{column.name} is {bq_type} in BigQuery but {column.type.value} in schemas/")
    if problems:
        raise BigQueryInputError(f"BigQuery table {table} does not match schemas/: " + "; ".join(problems))


class ReadStream(beam.DoFn):
    """One Storage API stream in, Arrow record batches out (one per page of rows)."""

    def __init__(self, night: TableNight):
        self._source = night.source
        self._session = night.session

    def setup(self) -> None:
        from google.cloud.bigquery_storage_v1 import types

        returning_memory_pool()
        self._client = bq.read_client()
        self._read_session = types.ReadSession.deserialize(self._session)

    def process(self, stream: str) -> Iterator:
        records = 0
        for page in self._client.read_rows(stream).rows(self._read_session).pages:
            batch = page.to_arrow()
            if batch.num_rows:
                records += batch.num_rows
                yield RawBatch(self._source, batch, TABLE)
        count_read(self._source, records)


class ReadBigQuery(beam.PTransform):
    """A night's read streams -> a `Read`: raw batches; rejected records (always none: rows arrive typed);
    the table's rows by the planning query's COUNT(*), for the rows read to reconcile against."""

    def __init__(self, night: TableNight):
        super().__init__()
        self._night = night

    def expand(self, pbegin) -> Read:
        read = (
            pbegin
            | "ListStreams" >> beam.Create(self._night.streams)
            | "SpreadStreams" >> beam.Reshuffle()
            | "ReadStreams" >> beam.ParDo(ReadStream(self._night)).with_outputs(REJECTED, main="batches")
        )
        counted = pbegin | "CountRows" >> beam.Create([(self._night.source, self._night.expected_rows)])
        return Read(read.batches, read[REJECTED], counted)


class ReadNights(beam.PTransform):
    """Several nights' read sessions (a range of nights on one table), each read under its night's name."""

    def __init__(self, nights: Sequence[TableNight]):
        super().__init__()
        self._nights = list(nights)

    def expand(self, pbegin) -> Read:
        reads = [pbegin | f"Read{night.day:%Y%m%d}" >> ReadBigQuery(night) for night in self._nights]
        return Read.merged(reads, "AllNights")
