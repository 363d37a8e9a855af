"""Schema building blocks: the input record schema and warehouse table schemas.

Everything downstream (the tf.Transform feature spec, CSV parsing, validation, the warehouse DDL and
the staged Parquet files) is derived from these objects, so a team swapping in its own data changes
one module in `schemas/` and nothing else has to restate a column.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa


class ColumnType(str, enum.Enum):
    """Logical types, named as BigQuery names them; each warehouse dialect names them in its own SQL."""

    STRING = "STRING"
    INT64 = "INT64"
    FLOAT64 = "FLOAT64"
    BOOL = "BOOL"
    DATE = "DATE"
    TIMESTAMP = "TIMESTAMP"

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW_TYPES[self]


_ARROW_TYPES = {
    ColumnType.STRING: pa.string(),
    ColumnType.INT64: pa.int64(),
    ColumnType.FLOAT64: pa.float64(),
    ColumnType.BOOL: pa.bool_(),
    ColumnType.DATE: pa.date32(),
    ColumnType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
}


# Values of the predictions table's model_role column.
CHAMPION = "champion"  # the version whose rows analysts use
CHALLENGER = "challenger"  # a candidate version scored beside it on the same records


class Role(str, enum.Enum):
    """What a raw column is for; decides whether the model, the key or the label uses it."""

    KEY = "key"  # unique record id, carried to the predictions table, never a model input
    FEATURE = "feature"  # model input
    LABEL = "label"  # ground truth the label is derived from; absent when scoring
    EVENT_TIME = "event_time"  # when the record happened; validated, not a model input


@dataclass(frozen=True)
class Column:
    """A raw input column. `minimum`/`maximum` (numbers, inclusive) and `allowed` (strings) declare
    the values a record may hold; validation rejects others as `out_of_range`."""

    name: str
    type: ColumnType
    required: bool
    role: Role
    description: str
    minimum: float | None = None
    maximum: float | None = None
    allowed: frozenset[str] | None = None

    def __post_init__(self) -> None:
        numeric = self.type in (ColumnType.INT64, ColumnType.FLOAT64)
        if (self.minimum is not None or self.maximum is not None) and not numeric:
            raise ValueError(f"column {self.name}: a range needs a numeric column, not {self.type.value}")
        if self.allowed is not None and self.type is not ColumnType.STRING:
            raise ValueError(f"column {self.name}: an allowed set needs a STRING column, not {self.type.value}")

    def with_required(self, required: bool) -> Column:
        return dataclasses.replace(self, required=required)


@dataclass(frozen=True)
class InputSchema:
    """The raw records a day's partition holds."""

    name: str
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column names in schema {self.name}: {names}")
        if len(self.with_role(Role.KEY)) != 1:
            raise ValueError(f"schema {self.name} needs exactly one key column")
        if len(self.with_role(Role.LABEL)) > 1:
            raise ValueError(f"schema {self.name} has more than one label column")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def with_role(self, *roles: Role) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.role in roles)

    @property
    def key(self) -> Column:
        return self.with_role(Role.KEY)[0]

    @property
    def label(self) -> Column | None:
        labels = self.with_role(Role.LABEL)
        return labels[0] if labels else None

    @property
    def features(self) -> tuple[Column, ...]:
        return self.with_role(Role.FEATURE)

    @property
    def model_columns(self) -> tuple[Column, ...]:
        """The columns a trained model depends on: its features and its label."""
        return self.with_role(Role.FEATURE, Role.LABEL)

    def for_training(self, missing_label_is_outcome: bool = False) -> InputSchema:
        """Training needs no record key, and the label on every row, unless a missing label is itself an
        outcome (UseCase.missing_label_is_outcome): then the label keeps its declared nullability."""
        cols = []
        for c in self.columns:
            if c.role is Role.LABEL and not missing_label_is_outcome:
                c = c.with_required(True)
            elif c.role is Role.KEY:
                c = c.with_required(False)
            cols.append(c)
        return InputSchema(self.name, tuple(cols))

    def for_scoring(self) -> InputSchema:
        """Scoring never needs the label: tonight's records have no outcome yet."""
        return InputSchema(
            self.name,
            tuple(c.with_required(False) if c.role is Role.LABEL else c for c in self.columns),
        )

    def fingerprint(self) -> str:
        """Stable hash of what a model depends on (names, types, nullability of features and label).

        Stored with every exported model version; the scorer refuses a version whose fingerprint
        differs, because a model trained on other columns would silently score garbage.
        """
        canonical = [
            {"name": c.name, "type": c.type.value, "required": c.required, "role": c.role.value}
            for c in sorted(self.model_columns, key=lambda c: c.name)
        ]
        # Label nullability differs between training and scoring views, so hash the base schema
        # with the label's nullability normalised.
        for entry in canonical:
            if entry["role"] == Role.LABEL.value:
                entry["required"] = False
        payload = json.dumps({"schema": self.name, "columns": canonical}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def raw_feature_spec(self) -> dict:
        """The tf.Transform feature spec: required columns dense, nullable ones sparse.

        Nullable columns are `VarLenFeature`s so that "missing" reaches the `preprocessing_fn`
        as an absent value, and the filling of missing values stays inside the transform graph
        (analysed once, exported with the model) rather than being restated by each reader.
        """
        import tensorflow as tf  # imported here so schema users without TF (operators) stay light

        # A BOOL label reaches the preprocessing as 0/1: tf.Example features hold no booleans.
        dtypes = {
            ColumnType.STRING: tf.string,
            ColumnType.INT64: tf.int64,
            ColumnType.FLOAT64: tf.float32,
            ColumnType.BOOL: tf.int64,
        }
        spec = {}
        for c in self.model_columns:
            if c.type not in dtypes:
                raise ValueError(
                    f"column {c.name}: a model column of type {c.type.value} is not supported (features and labels "
                    "are STRING, INT64, FLOAT64; a label may be BOOL): make it the event time, or convert it upstream"
                )
            dtype = dtypes[c.type]
            spec[c.name] = tf.io.FixedLenFeature([], dtype) if c.required else tf.io.VarLenFeature(dtype)
        return spec


@dataclass(frozen=True)
class Field:
    """A warehouse column."""

    name: str
    type: ColumnType
    required: bool
    description: str


@dataclass(frozen=True)
class TableSchema:
    """A warehouse table: its DDL, the staged Parquet files and BigQuery's schema come from here."""

    name: str
    fields: tuple[Field, ...]
    description: str
    partition_field: str | None = None
    cluster_fields: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(f.name, f.type.arrow, nullable=not f.required) for f in self.fields])

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no column {name}")

    def descriptions(self) -> Iterable[tuple[str, str]]:
        return ((f.name, f.description) for f in self.fields)

    def renamed(self, name: str, description: str) -> TableSchema:
        """Another table of the same columns, partitioning and clustering."""
        return dataclasses.replace(self, name=name, description=description)

    def extended(self, name: str, *fields: Field) -> TableSchema:
        """The same table with more columns: the layout a run stages, with what only publishing needs."""
        return dataclasses.replace(self, name=name, fields=self.fields + fields)
