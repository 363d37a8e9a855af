"""What a run tells the people watching it (`pipelines/observe.py`), tested directly.

The run summary's `stage_seconds` and its rejections by reason and by source are read back from Beam
metrics that these helpers write; a wrong step time misleads whoever tunes the job, and a wrong
rejection count contradicts the reconciliation printed beside it. So: `step_seconds` reads only its
own namespace, in the summary's order; `timed` charges a step only for making its items, never for
the fused steps that run while it yields; `CountRejections` counts records (a rejected file counts the
records it stood for), per reason and per source, as a pipeline's metrics report them; and
`distribution_summary` turns Beam distributions into the summary's entries.

The one timing test bounds what `timed` counts by what the test itself measured on the same clock,
so it holds however slow or busy the machine is.
"""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.cells import DistributionData, DistributionResult
from apache_beam.metrics.execution import MetricKey, MetricResult
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.metrics.metricbase import MetricName
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, is_empty

from pipelines import metrics
from pipelines.batches import file_error, rejected_batch
from pipelines.observe import STEPS, CountRejections, add_seconds, distribution_summary, step_seconds, timed


class Tally:
    """A stand-in for a Beam counter: what was added to it, and how often."""

    def __init__(self) -> None:
        self.value = 0
        self.calls = 0

    def inc(self, n: int = 1) -> None:
        self.value += n
        self.calls += 1


# ---------------------------------------------------------------- step times


def test_step_seconds_reads_its_namespace_in_the_summarys_order_rounded():
    ns = metrics.STEP_MICROSECONDS
    counters = {
        f"{ns}/publish": 250,  # 0.00025 s: rounds to 0.0, and is still listed
        f"{ns}/model": 1_234_567,
        f"{ns}/extract": 2_000_499,
        f"{ns}/stage": 999_600,
        f"{ns}/not_a_step": 7_000_000,  # not in STEPS: left out
        "extract/records_read": 600,  # other namespaces, even with a step's name, are not step times
        "other/model": 5_000_000,
        f"{ns}_old/validate": 3_000_000,
    }
    got = step_seconds(counters)
    assert got == {"extract": 2.0, "model": 1.235, "stage": 1.0, "publish": 0.0}
    assert list(got) == [step for step in STEPS if step in got] == ["extract", "model", "stage", "publish"]
    assert step_seconds({}) == {}
    assert STEPS == ("extract", "validate", "to_tensors", "model", "stage", "publish")


def test_add_seconds_adds_whole_microseconds():
    tally = Tally()
    add_seconds(tally, 1.5)
    add_seconds(tally, 0.0000015)
    assert tally.value == 1_500_001


def test_timed_counts_making_the_items_not_the_time_between_them():
    """A DoFn's `process` returns `timed(counter, items)`: in a fused stage each yield runs the steps
    after it before the next item is asked for. Here the producer sleeps before each item and before it
    ends; the consumer sleeps longer between items. Every span is measured on perf_counter, the clock
    `timed` uses: what it counts must hold all of the producer's sleeps and none of the consumer's."""
    produce, consume, items = 0.05, 0.1, 4
    produced, consumed = [], []

    def producer():
        for i in range(items):
            t = time.perf_counter()
            time.sleep(produce)
            produced.append(time.perf_counter() - t)
            yield i
        t = time.perf_counter()
        time.sleep(produce)  # work after the last item, before the producer ends, is its own too
        produced.append(time.perf_counter() - t)

    tally = Tally()
    started = time.perf_counter()
    got = []
    for item in timed(tally, producer()):
        got.append(item)
        t = time.perf_counter()
        time.sleep(consume)
        consumed.append(time.perf_counter() - t)
    wall = time.perf_counter() - started

    assert got == list(range(items)) and len(produced) == items + 1 and len(consumed) == items
    counted = tally.value / 1e6
    # At least the producer's time (less the microsecond the counter truncates)...
    assert counted >= sum(produced) - 1e-6
    # ...and none of the consumer's: its spans lie outside the ones `timed` adds up.
    assert counted <= wall - sum(consumed)


def test_timed_adds_once_when_the_items_are_exhausted():
    """One counter update per `process` call, not one per item."""
    tally = Tally()
    items = timed(tally, iter([1, 2, 3]))
    assert next(items) == 1 and tally.calls == 0
    assert list(items) == [2, 3]
    assert tally.calls == 1


# ---------------------------------------------------------------- rejections, through a pipeline


def counters_of(result, namespace: str) -> dict[str, int]:
    found = result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    summed: dict[str, int] = {}
    for m in found:
        summed[m.key.metric.name] = summed.get(m.key.metric.name, 0) + m.committed
    return summed


def test_count_rejections_counts_records_per_reason_and_per_source():
    batches = [
        rejected_batch("a.csv", ["x", "y", "z"], ["wrong_type", "malformed_line", "wrong_type"], [2, 5, 9]),
        rejected_batch("b.json", ["{}"], ["missing_required"], [1]),
        # A file rejected whole counts the records it held: 40, not one row.
        file_error("c.csv", "missing_column", 40, "the header lacks fare", "fare"),
        rejected_batch("a.csv", ["w"], ["wrong_type"], [12]),  # another batch of the same source adds up
        file_error("d.csv", "incomplete_file", 0, "after 10 records: truncated"),  # stands for no record
    ]
    pipeline = BeamTestPipeline()
    emitted = pipeline | "Rejected" >> beam.Create(batches, reshuffle=False) | "Count" >> beam.ParDo(CountRejections())
    assert_that(emitted, is_empty())
    result = pipeline.run()
    result.wait_until_finish()
    by_reason = counters_of(result, metrics.REJECTED_BY_REASON)
    by_source = counters_of(result, metrics.REJECTED_BY_SOURCE)
    # A file error that stands for no record is still counted, at 0: its reason shows in the summary.
    assert by_reason == {
        "wrong_type": 3,
        "malformed_line": 1,
        "missing_required": 1,
        "missing_column": 40,
        "incomplete_file": 0,
    }
    assert by_source == {"a.csv": 4, "b.json": 1, "c.csv": 40, "d.csv": 0}
    assert sum(by_reason.values()) == sum(by_source.values()) == 45


# ---------------------------------------------------------------- distributions


def test_distribution_summary_from_a_pipelines_distributions():
    def measure(values):
        for value in values:
            Metrics.distribution("batch", "rows").update(value)
            Metrics.distribution("latency", "ms").update(value * 10)
        return []

    pipeline = BeamTestPipeline()
    _ = pipeline | beam.Create([[3, 5], [10], [1]], reshuffle=False) | beam.FlatMap(measure)
    result = pipeline.run()
    result.wait_until_finish()
    summary = distribution_summary(result.metrics().query(MetricsFilter())["distributions"])
    assert summary == {
        "batch/rows.count": 4,
        "batch/rows.sum": 19,
        "batch/rows.min": 1,
        "batch/rows.max": 10,
        "batch/rows.mean": 4.75,
        "latency/ms.count": 4,
        "latency/ms.sum": 190,
        "latency/ms.min": 10,
        "latency/ms.max": 100,
        "latency/ms.mean": 47.5,
    }


def test_distribution_summary_rounds_means_and_skips_empty_distributions():
    def result(namespace, name, data):
        key = MetricKey("step", MetricName(namespace, name))
        committed = None if data is None else DistributionResult(data)
        return MetricResult(key, committed, committed)

    summary = distribution_summary(
        [
            result("batch", "rows", DistributionData(5, 3, 1, 2)),  # sum 5 over 3: mean 1.667
            result("never", "updated", None),
            result("empty", "one", DistributionData(0, 0, 0, 0)),
        ]
    )
    assert summary == {
        "batch/rows.count": 3,
        "batch/rows.sum": 5,
        "batch/rows.min": 1,
        "batch/rows.max": 2,
        "batch/rows.mean": 1.667,
    }
    assert distribution_summary([]) == {}
