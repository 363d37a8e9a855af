"""The values the commands' options choose between, named once.

Options arrive from argparse (and from Beam's pickled options on a worker) as plain strings; these are
`StrEnum`s, so a value compares equal to the string a user typed and the code names the choice instead
of repeating its spelling. `--help` lists each enum's values, in the order given here.
"""

from __future__ import annotations

from enum import StrEnum


class Accelerator(StrEnum):
    """--accelerator: where the model runs (auto: GPUs when present, else CPUs)."""

    AUTO, CPU, GPU, TPU = "auto", "cpu", "gpu", "tpu"


class InputFormat(StrEnum):
    """--input_format: what the input files hold (auto: told by their names)."""

    AUTO, CSV, JSON = "auto", "csv", "json"


class UnknownColumns(StrEnum):
    """--unknown_columns: records carrying columns the schema does not know."""

    KEEP, REJECT = "keep", "reject"


class MissingColumns(StrEnum):
    """--missing_nullable_columns: a file or table lacking a nullable feature column."""

    REFUSE, NULL = "refuse", "null"


class Switch(StrEnum):
    """An option that turns a part of the job on or off (--monitoring)."""

    ON, OFF = "on", "off"


class DriftGate(StrEnum):
    """--drift_gate: off, not a gate; warn, reported and stored; refuse, a flagged feature refuses."""

    OFF, WARN, REFUSE = "off", "warn", "refuse"


def values(choice: type[StrEnum]) -> list[str]:
    """The choices as argparse lists them."""
    return [member.value for member in choice]
