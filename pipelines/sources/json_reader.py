"""Newline-delimited JSON files: one record per line that is not blank.

pyarrow parses a block of whole lines in one go, typed by the schema. A column whose values come in
another JSON type (numbers written as strings, say) is left to pyarrow to infer and to validation to
type; a block pyarrow refuses, or reads into another number of records than it has lines, is read line
by line, so only the bad lines are lost.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.json as pajson
from apache_beam.metrics import Metrics

from pipelines import metrics
from pipelines.batches import CSV, JSON, RawBatch
from pipelines.sources.blocks import json_lines
from pipelines.sources.contract import ReadSettings
from pipelines.sources.reader import LOOKS_LIKE_HINT, BlockBuffer, FileReader, is_utf8
from schemas import InputSchema, Role


class JsonReader(FileReader):
    """Newline-delimited JSON: one record per line that is not blank.

    pyarrow parses a block of whole lines in one go, typed by the schema. A column whose values come
    in another JSON type (numbers written as strings, say) is left to pyarrow to infer and to
    validation to type; a block pyarrow refuses, or reads into another number of records than it has
    lines, is read line by line, so only the bad lines are lost. pyarrow replaces bytes that are not
    UTF-8 instead of refusing them, so that is checked first. An object or array where the schema has
    a column is `wrong_type`, never its JSON text.
    """

    def __init__(self, path: str, schema: InputSchema, settings: ReadSettings):
        super().__init__(path, schema, settings)
        self.types = {c.name: c.type.value for c in self.schema.columns}

    def read(self, blocks: BlockBuffer) -> Iterator:
        typed = {c.name: pa.field(c.name, c.type.arrow) for c in self.schema.columns}
        while not blocks.last:
            blocks.read()
            cut, lines = json_lines(blocks.data, blocks.size, blocks.last)
            if not cut:
                if blocks.size > self.max_record_bytes:
                    yield self.too_large(blocks)
                continue
            block = bytes(memoryview(blocks.data)[:cut])
            blocks.drop(cut)
            parsed = None if not (block.isascii() or is_utf8(block)) else self._arrow(block, typed)
            if parsed is not None and parsed.num_rows == lines:
                self.counted += lines
                yield RawBatch(self.path, parsed, JSON, first_line=self.line)
            else:
                yield from self._lines(block)
            self.line += lines

    def _arrow(self, block: bytes, typed: dict) -> pa.RecordBatch | None:
        explicit = dict(typed)
        while True:
            try:
                table = pajson.read_json(
                    io.BytesIO(block),
                    read_options=pajson.ReadOptions(use_threads=False, block_size=len(block) + 1),
                    parse_options=pajson.ParseOptions(
                        explicit_schema=pa.schema(list(explicit.values())), unexpected_field_behavior="infer"
                    ),
                )
            except pa.ArrowInvalid as e:
                changed = _CHANGED_TYPE.search(str(e))
                if changed and changed.group(1) in explicit:
                    del explicit[changed.group(1)]
                    continue
                return None
            if any(pa.types.is_nested(f.type) for f in table.schema if f.name in typed):
                return None  # an object or array where the schema has a scalar: rejected line by line
            batches = table.combine_chunks().to_batches()
            return batches[0] if batches else None

    def _lines(self, block: bytes) -> Iterator:
        """The slow path: each line on its own, values kept as text for validation to type."""
        rows, lines, bad = [], [], []
        for number, line in enumerate(block.split(b"\n"), start=self.line):
            if not line.strip():
                continue
            self.counted += 1
            text = self.decoded(line, number, bad)
            if text is None:
                continue
            try:
                record = json.loads(text)
            except ValueError as e:
                hint = ""
                if number == 1 and _csv_header_of(text, self.schema):
                    Metrics.counter(metrics.LOOKS_LIKE, CSV).inc()
                    hint = f"; {LOOKS_LIKE_HINT[CSV]}"
                bad.append((number, text, "malformed_json", None, f"{e}{hint}"))
                continue
            if not isinstance(record, dict):
                bad.append(
                    (number, text, "malformed_json", None, f"a record must be an object, not {type(record).__name__}")
                )
                continue
            nested = next((k for k, v in record.items() if k in self.types and isinstance(v, dict | list)), None)
            if nested is not None:  # never stored as its JSON text in a column of another type
                held = "an object" if isinstance(record[nested], dict) else "an array"
                bad.append((number, text, "wrong_type", nested, f"{nested} is {held}, not {self.types[nested]}"))
                continue
            rows.append({k: json_value_text(v) for k, v in record.items()})
            lines.append(number)
        if rows:
            # The key column is always there, so a block of empty objects still has its rows.
            names = list(dict.fromkeys([self.schema.key.name] + [k for row in rows for k in row]))
            yield RawBatch(
                self.path,
                pa.RecordBatch.from_pydict({n: pa.array([row.get(n) for row in rows], pa.string()) for n in names}),
                JSON,
                line_numbers=pa.array(lines, pa.int64()),
            )
        if bad:
            yield self.bad_records(bad)


_CHANGED_TYPE = re.compile(r"Column\(/([^)/]+)\) changed from")


def _csv_header_of(line: str, schema: InputSchema) -> bool:
    """Whether a line that is not JSON is a CSV header naming the schema's key and required columns."""
    try:
        [names] = list(csv.reader([line]))
    except (csv.Error, ValueError):
        return False
    return {c.name for c in schema.columns if c.required or c.role is Role.KEY} <= set(names)


def json_value_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)  # an object or array where a scalar belongs: validation rejects it
