"""Where records come from: one contract (`contract.Source`), two sources, one way in.

    source = open_source(input, schema, ReadSettings.from_options(data))
    nights = source.plan_nights(days)            # checked before anything is written; or InputNotFoundError
    read = pipeline | "ReadRecords" >> source.read(nights)    # Read(batches, rejected, counts)

`open_source` picks the first source that claims `--input`, in the order of SOURCES; a third source
(Kafka, PostgreSQL) is a `Source` subclass in a module of its own and one entry there (README: "Adding
a source").
"""

from __future__ import annotations

from pipelines.sources.bigquery_source import BigQuerySource
from pipelines.sources.contract import InputNotFoundError, NightInput, Read, ReadSettings, Source, SourceConfigError
from pipelines.sources.file_source import FileSource
from schemas import InputSchema

SOURCES: tuple[type[Source], ...] = (BigQuerySource, FileSource)  # the first that claims --input reads it


def open_source(location: str, schema: InputSchema, settings: ReadSettings | None = None) -> Source:
    """The source `--input` names."""
    kind = next(source for source in SOURCES if source.claims(location))
    return kind(location, schema, settings or ReadSettings())


__all__ = [
    "SOURCES",
    "BigQuerySource",
    "FileSource",
    "InputNotFoundError",
    "NightInput",
    "Read",
    "ReadSettings",
    "Source",
    "SourceConfigError",
    "open_source",
]
