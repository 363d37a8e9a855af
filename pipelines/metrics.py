"""Every Beam metric the pipelines count, named once: the steps that count and the summary that reads.

A metric is a namespace and a name. Where the name is fixed it is a `Metric` here; where it varies
(per reason, per column, per device) only its namespace is, and the summary reads the namespace whole.
These names reach users (the run summary, `scoring_runs.metrics`, Dataflow's job page), so they stay
as they are when code moves.
"""

from __future__ import annotations

from typing import NamedTuple

from apache_beam.metrics import Metrics


class Metric(NamedTuple):
    """A counter (or a distribution) of a fixed name."""

    namespace: str
    name: str

    @property
    def key(self) -> str:
        """As the run's counters are keyed: 'namespace/name'."""
        return f"{self.namespace}/{self.name}"

    def counter(self):
        return Metrics.counter(self.namespace, self.name)


# Namespaces of counters named by what they count.
STEP_MICROSECONDS = "stage_microseconds"  # each step's own working time
DEVICES = "scoring_devices"  # records scored per role@device
READ_BY_SOURCE = "read_by_source"  # records read per file or table
REJECTED_BY_REASON = "rejected_by_reason"
REJECTED_BY_SOURCE = "rejected_by_source"
MISSING_COLUMNS = "missing_columns"  # records lacking a schema column, per column
UNKNOWN_COLUMNS = "unknown_columns"  # records carrying a column the schema lacks, per column
# Files whose content is another format than their name says, by the format it looks like: what a
# refusal names as the likely cause (README: Every record is accounted for).
LOOKS_LIKE = "input_looks_like"

RECORDS_READ = Metric("extract", "records_read")
MALFORMED_RECORDS = Metric("extract", "malformed_records")
FILES_REJECTED = Metric("extract", "files_rejected")
INPUT_SHARDS = Metric("extract", "input_ranges")  # files read whole, plus shards of split files
RECORDS_VALID = Metric("validate", "records_valid")
RECORDS_REJECTED = Metric("validate", "records_rejected")
ROWS_PUBLISHED = Metric("load", "rows_published")
REPORTS_WRITTEN = Metric("monitoring", "reports_written")
TRAINING_REJECTED = Metric("train", "records_rejected")
EVENT_TIME = Metric("train", "event_time")  # a distribution: the training data's event times


def step_timer(step: str):
    """The counter a step adds its own working time to (microseconds)."""
    return Metrics.counter(STEP_MICROSECONDS, step)
