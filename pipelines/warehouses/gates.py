"""Quality gates: whether a night that reconciled is fit to replace what analysts see.

A night can account for every record and still be wrong to publish: 99% of it rejected, a tenth of
the usual volume, or a re-run that would shrink a good night to a handful of rows. The gates decide
that from numbers publishing already has (the audited counts, the trailing published nights and the
date's published rows), in one place that every warehouse uses, before its publishing transaction.

Each gate is a (name, value, limit, passed, detail) stored as JSON in the run's row, passed or not,
so that a refusal explains itself and a passing night shows its margins. Failed gates refuse the
night unless the run says why it publishes anyway (`--accept_gate_failures`), which is stored too.
A night with nothing to score is never published: it could only delete the date's rows.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from pipelines import defaults
from pipelines.choices import DriftGate

# The volume gate compares a night with up to VOLUME_HISTORY trailing published nights, and only
# once VOLUME_MIN_HISTORY exist: with fewer, a median and a MAD say little about what is normal.
VOLUME_HISTORY = 14
VOLUME_MIN_HISTORY = 7
MAD_TO_SIGMA = 1.4826  # the MAD of normally distributed values is this many times smaller than sigma
EMPTY_NIGHT = "scorable_records"  # the one gate no override passes
MAX_NAMED_FILES = 5  # incomplete files named in the complete_input gate's detail


@dataclass(frozen=True, kw_only=True)
class GateLimits:
    """The limits a night is held to (each one a `pipelines.score` option; README: Quality gates)."""

    max_rejected_fraction: float = defaults.MAX_REJECTED_FRACTION
    max_rejected_records: int | None = None
    min_records: int = defaults.MIN_RECORDS
    max_volume_ratio: float = defaults.MAX_VOLUME_RATIO  # input within [median / r, median * r] of the trailing
    max_volume_z: float = defaults.MAX_VOLUME_Z
    shrink_limit: float = defaults.SHRINK_LIMIT  # a re-run keeps at least this share of the date's records
    allow_shrink: bool = False
    accept_failures: str | None = None  # why a night that fails its gates is published anyway
    accepted_by: str | None = None
    drift_gate: str = defaults.DRIFT_GATE.value  # off: not a gate; warn: reported; refuse: a flagged feature refuses

    def __post_init__(self) -> None:
        if not 0 <= self.max_rejected_fraction <= 1:
            raise ValueError("--max_rejected_fraction must be between 0 and 1")
        if self.max_rejected_records is not None and self.max_rejected_records < 0:
            raise ValueError("--max_rejected_records must not be negative")
        if self.min_records < 0:
            raise ValueError("--min_records must not be negative")
        if self.max_volume_ratio < 1:
            raise ValueError("--max_volume_ratio must be at least 1: the band is [median / r, median * r]")
        if self.max_volume_z <= 0:
            raise ValueError("--max_volume_z must be positive")
        if not 0 <= self.shrink_limit <= 1:
            raise ValueError("--shrink_limit must be between 0 and 1")
        if self.drift_gate not in list(DriftGate):
            raise ValueError(f"--drift_gate must be one of {', '.join(DriftGate)}")
        if self.accept_failures is not None and not self.accept_failures.strip():
            raise ValueError("--accept_gate_failures needs a reason: it is stored with the night")


@dataclass(frozen=True)
class Gate:
    name: str
    value: float | int | None
    limit: float | int | list[float] | str | None  # the drift gate's: its mode, warn or refuse
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    gates: list[Gate]
    publish: bool

    @property
    def failed(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]

    def to_json(self) -> str:
        return json.dumps([asdict(g) for g in self.gates])

    def explain(self) -> str:
        """One line: the failed gates and their details."""
        return "; ".join(f"{g.name}: {g.detail}" for g in self.failed)


def decide(
    counts: dict[str, Any],
    trailing_inputs: list[int],
    published_records: int,
    limits: GateLimits,
    drift_flagged: list[str] | None = None,
    incomplete: list[tuple[str, str]] | None = None,
) -> Decision:
    """The gates for a night's audited `counts`, given the input counts of the trailing published
    nights (newest first), the champion records the date holds now (0 if never published), the
    features monitoring flagged as drifted (README: Monitoring) and the files whose reading stopped
    part-way, with their errors' details."""
    inputs, scored, rejected = counts["input_records"], counts["scored_records"], counts["rejected_records"]
    gates = [
        Gate(
            EMPTY_NIGHT,
            scored,
            1,
            scored > 0,
            f"{scored} records scored" + ("" if scored else ": a night with nothing to score is never published"),
        ),
        _complete_input(incomplete or []),
        Gate("min_records", inputs, limits.min_records, inputs >= limits.min_records, f"{inputs} input records"),
        _rejected_fraction(inputs, rejected, limits.max_rejected_fraction),
    ]
    if limits.max_rejected_records is not None:
        gates.append(
            Gate(
                "rejected_records",
                rejected,
                limits.max_rejected_records,
                rejected <= limits.max_rejected_records,
                f"{rejected} records rejected",
            )
        )
    gates.extend(_volume(inputs, trailing_inputs[:VOLUME_HISTORY], limits))
    gates.append(_shrink(scored, published_records, limits))
    if limits.drift_gate != DriftGate.OFF:
        flagged = sorted(set(drift_flagged or []))
        detail = f"drifted: {', '.join(flagged)}" if flagged else "no feature drifted"
        if flagged and limits.drift_gate == DriftGate.WARN:
            detail += " (--drift_gate warn: reported, not refused)"
        passed = not flagged or limits.drift_gate == DriftGate.WARN
        gates.append(Gate("drift", len(flagged), limits.drift_gate, passed, detail))
    failed = {g.name for g in gates if not g.passed}
    publish = not failed or (limits.accept_failures is not None and EMPTY_NIGHT not in failed)
    return Decision(gates, publish)


def _complete_input(incomplete: list[tuple[str, str]]) -> Gate:
    """A file whose reading stopped part-way (truncated, corrupt, an I/O error) makes the night a part
    of itself of unknown size: its counts reconcile, its rejected fraction may be 0, and it would
    replace a whole night with a partial one. Such a night is refused, whatever its other numbers."""
    if not incomplete:
        return Gate("complete_input", 0, 0, True, "every file read to its end")
    named = "; ".join(f"{source} ({detail})" for source, detail in incomplete[:MAX_NAMED_FILES])
    more = f" and {len(incomplete) - MAX_NAMED_FILES} more" if len(incomplete) > MAX_NAMED_FILES else ""
    files = "1 file" if len(incomplete) == 1 else f"{len(incomplete)} files"
    return Gate(
        "complete_input",
        len(incomplete),
        0,
        False,
        f"reading stopped part-way in {files}, so the night's records cannot all be known: {named}{more}",
    )


def _rejected_fraction(inputs: int, rejected: int, limit: float) -> Gate:
    fraction = rejected / inputs if inputs else 0.0
    return Gate(
        "rejected_fraction",
        round(fraction, 6),
        limit,
        fraction <= limit,
        f"{rejected} of {inputs} records rejected ({fraction:.2%}, limit {limit:.2%})",
    )


def _volume(inputs: int, trailing: list[int], limits: GateLimits) -> list[Gate]:
    """Ratio to the trailing median and robust z-score (median and MAD), once there is a history."""
    if len(trailing) < VOLUME_MIN_HISTORY:
        detail = f"{len(trailing)} published nights before this one, {VOLUME_MIN_HISTORY} needed: not checked"
        return [Gate("volume_ratio", None, None, True, detail), Gate("volume_z", None, None, True, detail)]
    median = statistics.median(trailing)
    mad = statistics.median(abs(n - median) for n in trailing)
    # A count varies at least like a Poisson count (sigma = sqrt(mean)): without that floor, a history of
    # identical nights (MAD 0) would refuse a night one record larger.
    sigma = max(MAD_TO_SIGMA * mad, math.sqrt(median), 1.0)
    z = abs(inputs - median) / sigma
    ratio = inputs / median if median else math.inf
    band = [round(1 / limits.max_volume_ratio, 6), limits.max_volume_ratio]
    history = f"median of the last {len(trailing)} published nights {median:g}"
    return [
        Gate(
            "volume_ratio",
            round(ratio, 6) if math.isfinite(ratio) else None,
            band,
            band[0] <= ratio <= band[1],
            f"{inputs} input records, {ratio:.2f}x the {history}",
        ),
        Gate(
            "volume_z",
            round(z, 3),
            limits.max_volume_z,
            z <= limits.max_volume_z,
            f"robust z-score {z:.1f} against the {history} (MAD {mad:g})",
        ),
    ]


def _shrink(scored: int, published: int, limits: GateLimits) -> Gate:
    if not published:
        return Gate("shrink", None, limits.shrink_limit, True, "the date has no published night")
    kept = scored / published
    passed = kept >= limits.shrink_limit or limits.allow_shrink
    detail = f"{scored} records would replace the {published} published ({kept:.2%})"
    if limits.allow_shrink:
        detail += ", --allow_shrink given"
    return Gate("shrink", round(kept, 6), limits.shrink_limit, passed, detail)
