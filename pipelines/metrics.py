"""Every Beam metric the pipelines count, named once: the steps that count and the summary that reads.

A counter is a namespace and a name. Where the name is fixed it is a `Counter` here; where it varies
(per reason, per column, per device) only its namespace is, and the summary reads the namespace whole.
These names reach users (the run summary, `scoring_runs.metrics`, Dataflow's job page), so they stay
as they are when code moves.
"""

from __future__ import annotations

from typing import NamedTuple

from apache_beam.metrics import Metrics


class Counter(NamedTuple):
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

RECORDS_READ = Counter("extract", "records_read")
MALFORMED_RECORDS = Counter("extract", "malformed_records")
FILES_REJECTED = Counter("extract", "files_rejected")
INPUT_SHARDS = Counter("extract", "input_ranges")  # files read whole, plus shards of split files
RECORDS_VALID = Counter("validate", "records_valid")
RECORDS_REJECTED = Counter("validate", "records_rejected")
ROWS_PUBLISHED = Counter("load", "rows_published")
REPORTS_WRITTEN = Counter("monitoring", "reports_written")
TRAINING_REJECTED = Counter("train", "records_rejected")
EVENT_TIME = Counter("train", "event_time")  # a distribution: the training data's event times


def step_timer(step: str):
    """The counter a step adds its own working time to (microseconds)."""
    return Metrics.counter(STEP_MICROSECONDS, step)
