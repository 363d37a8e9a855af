"""What a statement is and what one SQL engine calls things: the vocabulary every warehouse SQL module
is written in, so that each is written once and rendered in DuckDB's or BigQuery's dialect.

A `Dialect` says only what differs between SQL engines: how identifiers are quoted, how a parameter is
written, how a table is referenced and what each column type is called. Every value reaches SQL as a
parameter of the statement that uses it (`Statement.params`), typed, so that a None is still typed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas import ColumnType, TableSchema

Param = tuple[ColumnType, Any]  # a value with its type, so that a None is still typed
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the parameters it names, no more and no fewer."""

    sql: str
    params: dict[str, Param] = field(default_factory=dict)

    def values(self) -> dict[str, Any]:
        return {name: value for name, (_, value) in self.params.items()}


@dataclass(frozen=True)
class Dialect:
    """What one SQL engine calls things."""

    quote_char: str
    param_prefix: str
    type_names: Mapping[ColumnType, str]
    reported_type_names: Mapping[str, str] = field(default_factory=dict)  # as its catalog reports a type
    table_prefix: str = ""  # BigQuery: "project.dataset."
    # An aggregate's percentile, {column} and {percent} (an integer) filled in: each engine has its own.
    percentile_template: str = "quantile_disc({column}, {percent} / 100)"
    # A 64-bit hash of the columns filled in for {columns}, where grouping on it is cheaper than on the
    # columns themselves (DuckDB); None: group on the columns alone.
    hash_template: str | None = "hash({columns})"

    def quote(self, name: str) -> str:
        if not _IDENTIFIER.match(name):
            raise ValueError(f"{name!r} is not an identifier this project generates")
        return f"{self.quote_char}{name}{self.quote_char}"

    def table(self, name: str) -> str:
        self.quote(name)  # checks the name
        return f"{self.quote_char}{self.table_prefix}{name}{self.quote_char}"

    def param(self, name: str) -> str:
        return f"{self.param_prefix}{name}"

    def type_name(self, type_: ColumnType) -> str:
        return self.type_names[type_]

    def percentile(self, column: str, percent: int) -> str:
        return self.percentile_template.format(column=column, percent=int(percent))

    def reported_type(self, reported: str) -> str:
        """A type as the catalog reports it, in the names `type_name` uses."""
        return self.reported_type_names.get(reported, reported)


@dataclass(frozen=True)
class StagedTables:
    """How a warehouse's SQL refers to a run's staged predictions, rejected records and drift metrics,
    and to the keys with more than one staged row (`duplicate_groups`, kept as a table while publishing)."""

    predictions: str
    errors: str
    duplicates: str
    drift: str


def column_list(d: Dialect, table: TableSchema) -> str:
    """The table's columns, quoted, in order: a SELECT's or an INSERT's column list."""
    return ", ".join(d.quote(name) for name in table.names)
