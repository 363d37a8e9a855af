"""Feature statistics of a set of records, from Arrow batches, in the format TFDV and Facets read.

The statistics are what drift is measured with, at training (the baseline stored with the model
version) and every night. They are sketches, so that they merge across Beam workers and cost one
pass over the batches with no Python per record: tfx-bsl's `QuantilesSketch` for numbers (rank
error `QUANTILES_EPS`), `MisraGriesSketch` for the most frequent values of a category (tfx-bsl
reports each count over-estimated by at most n / `TOP_BUCKETS`) and `KmvSketch` for its number of distinct values.
Counts, missing values, zeros, sums, minimum, maximum and string lengths are exact. The result is a
tensorflow-metadata `DatasetFeatureStatistics` (one per data set, in a `DatasetFeatureStatisticsList`)
carrying what TFDV's own generator writes and its comparators read (README: Monitoring): for a
category, `top_values` and the `rank_histogram` TFDV's L-infinity distance reads; for a number, the
QUANTILES histogram drift reads and the STANDARD one TFDV's Jensen-Shannon divergence reads; for
both, the common statistics' value counts (`tot_num_values`, `avg_num_values`,
`num_values_histogram`: every feature here holds one value where present).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from tensorflow_metadata.proto.v0 import statistics_pb2

from models import registry
from pipelines.monitoring import quantiles
from schemas import ColumnType, FeatureKind, UseCase

if TYPE_CHECKING:
    from tfx_bsl import sketches

NUMERIC, CATEGORICAL = "numeric", "categorical"
QUANTILES_EPS = 0.001  # the quantiles' rank error, as a fraction of the count
NUM_QUANTILES = 100  # equal-mass buckets kept: drift is measured on (merged) buckets of these
TOP_BUCKETS = 1000  # Misra-Gries counters: a reported count is high by at most count / TOP_BUCKETS
TOP_VALUES = 50  # top values kept in the statistics
RANK_BUCKETS = TOP_BUCKETS  # rank histogram: every value the sketch holds, as TFDV's 1,000 by default
STANDARD_BUCKETS = 10  # equal-width buckets between minimum and maximum, as TFDV's default
STANDARD_RESOLUTION = 1000  # quantiles the STANDARD histogram is read from: the sketch's rank error
NUM_VALUES_BUCKETS = 10  # num_values_histogram's buckets, as TFDV's default
DISTINCT_BUCKETS = 4096  # KMV: relative error about 1 / sqrt(4096), under 2%
REPEATED_SHARE = 0.5  # numbers with fewer distinct values than this share go to the sketch weighted


def feature_kinds(use_case: UseCase) -> dict[str, str]:
    """The raw columns the model's inputs come from, by how their distribution is described: numbers or
    categories. A feature of one column is described as the model takes it (a vocabulary or an integer
    category as categories); a derived feature's source columns by their type."""
    kinds: dict[str, str] = {}
    for feature in use_case.features:
        if not feature.sources:
            categorical = feature.kind in (FeatureKind.VOCABULARY, FeatureKind.INTEGER_CATEGORY)
            kinds.setdefault(feature.name, CATEGORICAL if categorical else NUMERIC)
            continue
        for name in feature.sources:
            numbers = use_case.input.column(name).type in (ColumnType.INT64, ColumnType.FLOAT64)
            kinds.setdefault(name, NUMERIC if numbers else CATEGORICAL)
    return kinds


@dataclass
class FeatureSketch:
    """One feature's running statistics; merges with another of the same feature."""

    kind: str
    count: int = 0  # values present
    missing: int = 0
    total: float = 0.0
    total_squares: float = 0.0
    zeros: int = 0
    total_length: int = 0  # a category's values' lengths in bytes (UTF-8), for avg_length
    low: float = math.inf
    high: float = -math.inf
    quantiles: sketches.QuantilesSketch | None = None
    top: sketches.MisraGriesSketch | None = None
    distinct: sketches.KmvSketch | None = None
    out_of_vocabulary: int = 0
    vocabulary: pa.Array | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from tfx_bsl import sketches  # on the workers: a command's --help does not wait for tfx-bsl

        if self.kind == NUMERIC:
            self.quantiles = sketches.QuantilesSketch(QUANTILES_EPS, 1 << 32, 1)
        else:
            self.top = sketches.MisraGriesSketch(TOP_BUCKETS)
            self.distinct = sketches.KmvSketch(DISTINCT_BUCKETS)

    def add(self, column: pa.Array) -> None:
        records = len(column)
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            column = pc.list_flatten(column)  # tf.Transform's layout: [value], or [] for a missing one
        if column.null_count == len(column):
            self.missing += records
            return
        if self.kind == NUMERIC:
            self._add_numbers(records, column)
        else:
            self._add_categories(records, column)

    def _add_numbers(self, records: int, column: pa.Array) -> None:
        # As the model sees them (float32), so that training's converted batches and a night's typed
        # ones describe the same values the same way; nulls and NaN are missing.
        array = column.to_numpy(zero_copy_only=False).astype(np.float32).astype(np.float64)
        array = array[~np.isnan(array)]
        self.missing += records - len(array)
        self.count += len(array)
        if not len(array):
            return
        self.total += float(array.sum())
        # Not np.dot: that is BLAS, whose own threads, beside TensorFlow's and the other bundle's, waited
        # milliseconds for a core on every call (a quarter of a 10M-record run's work, profiled).
        self.total_squares += float(np.einsum("i,i->", array, array))
        self.zeros += len(array) - int(np.count_nonzero(array))
        self.low, self.high = min(self.low, float(array.min())), max(self.high, float(array.max()))
        values, counts = _repeated(pa.array(array))
        if counts is None:
            self.quantiles.AddValues(values)
        else:
            self.quantiles.AddValues(values, pc.cast(counts, pa.float64()))

    def _add_categories(self, records: int, column: pa.Array) -> None:
        present = len(column) - column.null_count  # a flattened list column has no entry for a missing value
        self.missing += records - present
        self.count += present
        # Each distinct value once, with its count: the sketches take weights, and a category has few
        # distinct values in a batch, so they work per value, not per record.
        found = pc.value_counts(pc.drop_null(column))
        values, counts = found.field("values"), found.field("counts")
        if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
            values = pc.cast(values, pa.large_string())
        elif not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = pc.cast(values, pa.string())
        self.top.AddValues(values, pc.cast(counts, pa.float32()))
        self.total_length += pc.sum(pc.multiply(pc.binary_length(values), counts)).as_py() or 0
        self.distinct.AddValues(values)
        if self.vocabulary is not None:
            known = pc.sum(pc.if_else(pc.is_in(values, self.vocabulary), counts, 0)).as_py() or 0
            self.out_of_vocabulary += present - known

    def merge(self, other: FeatureSketch) -> None:
        self.count += other.count
        self.missing += other.missing
        self.out_of_vocabulary += other.out_of_vocabulary
        if self.kind == NUMERIC:
            self.total += other.total
            self.total_squares += other.total_squares
            self.zeros += other.zeros
            self.low, self.high = min(self.low, other.low), max(self.high, other.high)
            self.quantiles.Merge(other.quantiles)
        else:
            self.total_length += other.total_length
            self.top.Merge(other.top)
            self.distinct.Merge(other.distinct)

    def to_proto(self, name: str) -> statistics_pb2.FeatureNameStatistics:
        out = statistics_pb2.FeatureNameStatistics()
        out.path.step.append(name)
        if self.kind == NUMERIC:
            out.type = statistics_pb2.FeatureNameStatistics.FLOAT
            stats = out.num_stats
            stats.common_stats.CopyFrom(self._common_proto())
            if self.count:
                mean = self.total / self.count
                stats.mean = mean
                stats.std_dev = math.sqrt(max(self.total_squares / self.count - mean * mean, 0.0))
                stats.min, stats.max = self.low, self.high
                stats.num_zeros = self.zeros
                self._add_histograms(stats)
            return out
        out.type = statistics_pb2.FeatureNameStatistics.STRING
        stats = out.string_stats
        stats.common_stats.CopyFrom(self._common_proto())
        stats.unique = int(round(self.distinct.Estimate())) if self.count else 0
        if self.count:
            stats.avg_length = self.total_length / self.count
        estimate = self.top.Estimate()
        values, counts = estimate.field(0).to_pylist(), estimate.field(1).to_numpy()
        ranked = sorted(zip(values, counts, strict=True), key=lambda vc: (-vc[1], vc[0]))[:RANK_BUCKETS]
        for rank, (value, count) in enumerate(ranked):
            label = value.decode() if isinstance(value, bytes) else value
            if rank < TOP_VALUES:
                stats.top_values.add(value=label, frequency=float(count))
            stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=float(count))
        if self.vocabulary is not None:
            out.custom_stats.add(name="out_of_vocabulary", num=self.out_of_vocabulary)
        return out

    def _common_proto(self) -> statistics_pb2.CommonStatistics:
        """Presence and value counts. A feature here holds exactly one value where present (a scalar
        column, or tf.Transform's [value]), so the number of values per record is 1 throughout."""
        common = statistics_pb2.CommonStatistics(num_non_missing=self.count, num_missing=self.missing)
        if self.count:
            common.min_num_values = common.max_num_values = 1
            common.tot_num_values = self.count
            common.avg_num_values = 1.0
            common.num_values_histogram.type = statistics_pb2.Histogram.QUANTILES
            for _ in range(NUM_VALUES_BUCKETS):
                common.num_values_histogram.buckets.add(
                    low_value=1.0, high_value=1.0, sample_count=self.count / NUM_VALUES_BUCKETS
                )
        return common

    def _add_histograms(self, stats: statistics_pb2.NumericStatistics) -> None:
        """The STANDARD histogram, then the QUANTILES one (TFDV's order), and the median, all from a
        compacted copy of the sketch: compacting is final, and the accumulator must stay mergeable."""
        from tfx_bsl import sketches

        copy = sketches.QuantilesSketch(QUANTILES_EPS, 1 << 32, 1)
        copy.Merge(self.quantiles)
        copy.Compact()
        fine = copy.GetQuantiles(STANDARD_RESOLUTION).flatten().to_numpy()
        stats.median = float(fine[STANDARD_RESOLUTION // 2])
        # Validation admits finite numbers only (README: Every record is accounted for), so there are
        # no infinities to set apart in buckets of their own, as TFDV's generator would.
        stats.histograms.append(self._standard_histogram(fine))
        edges = copy.GetQuantiles(NUM_QUANTILES).flatten().to_numpy()
        histogram = stats.histograms.add(type=statistics_pb2.Histogram.QUANTILES)
        share = self.count / NUM_QUANTILES
        for low, high in zip(edges[:-1], edges[1:], strict=True):
            histogram.buckets.add(low_value=float(low), high_value=float(high), sample_count=share)

    def _standard_histogram(self, fine: np.ndarray) -> statistics_pb2.Histogram:
        """STANDARD_BUCKETS equal-width buckets from the minimum to the maximum, as TFDV builds its own:
        each bucket's count is the count times the share of values in it, read from the sketch's
        STANDARD_RESOLUTION quantiles (linear between quantiles, a step at a value many records hold),
        within the sketch's rank error. A bucket holds the values above its low edge up to its high
        edge, the first also those at the minimum; one value throughout is one bucket."""
        histogram = statistics_pb2.Histogram(type=statistics_pb2.Histogram.STANDARD)
        if self.low == self.high:
            histogram.buckets.add(low_value=self.low, high_value=self.high, sample_count=self.count)
            return histogram
        cuts = np.linspace(self.low, self.high, STANDARD_BUCKETS + 1)
        below = quantiles.share_below(fine, cuts[1:-1])
        shares = np.diff(np.concatenate([[0.0], below, [1.0]]))
        for low, high, share in zip(cuts[:-1], cuts[1:], shares, strict=True):
            histogram.buckets.add(low_value=float(low), high_value=float(high), sample_count=self.count * float(share))
        return histogram


def _repeated(values: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    """Numbers as (distinct values, counts) when they repeat enough for the quantile sketch to work per
    distinct value (most features: money in cents, whole seconds, area centroids); else as they are."""
    found = pc.value_counts(values)
    if len(found) > REPEATED_SHARE * len(values):
        return values, None
    return found.field("values"), found.field("counts")


class DatasetSketch:
    """Every feature's sketch for one data set (a training split, a night's input, its scores).
    `columns` names the column a feature is read from where the two differ (the score: probability)."""

    def __init__(
        self,
        kinds: dict[str, str],
        vocabularies: dict[str, pa.Array] | None = None,
        columns: dict[str, str] | None = None,
    ):
        vocabularies = vocabularies or {}
        self.records = 0
        self.columns = columns or {}
        self.features = {
            name: FeatureSketch(kind, vocabulary=vocabularies.get(name)) for name, kind in sorted(kinds.items())
        }

    def add(self, batch: pa.RecordBatch) -> None:
        self.records += batch.num_rows
        for name, sketch in self.features.items():
            index = batch.schema.get_field_index(self.columns.get(name, name))
            sketch.add(batch.column(index) if index >= 0 else pa.nulls(batch.num_rows, pa.string()))

    def merge(self, other: DatasetSketch) -> DatasetSketch:
        self.records += other.records
        for name, sketch in self.features.items():
            sketch.merge(other.features[name])
        return self

    def to_proto(self, name: str) -> statistics_pb2.DatasetFeatureStatistics:
        out = statistics_pb2.DatasetFeatureStatistics(name=name, num_examples=self.records)
        out.features.extend(sketch.to_proto(feature) for feature, sketch in self.features.items())
        return out


class ComputeStatistics(beam.CombineFn):
    """Record batches -> one data set's `DatasetFeatureStatistics`, merged across workers."""

    def __init__(
        self,
        name: str,
        kinds: dict[str, str],
        vocabularies: dict[str, list[str]] | None = None,
        columns: dict[str, str] | None = None,
    ):
        self._name = name
        self._kinds = kinds
        self._vocabularies = vocabularies or {}
        self._columns = columns

    def create_accumulator(self) -> DatasetSketch:
        vocabularies = {k: pa.array(v, pa.string()) for k, v in self._vocabularies.items()}
        return DatasetSketch(self._kinds, vocabularies, self._columns)

    def add_input(self, accumulator: DatasetSketch, batch) -> DatasetSketch:
        if isinstance(batch, tuple):  # tf.Transform's (record batch, passthrough features)
            batch = batch[0]
        accumulator.add(batch)
        return accumulator

    def merge_accumulators(self, accumulators) -> DatasetSketch:
        first, *rest = accumulators
        for other in rest:
            first.merge(other)
        return first

    def extract_output(self, accumulator: DatasetSketch) -> statistics_pb2.DatasetFeatureStatistics:
        return accumulator.to_proto(self._name)


def statistics_list(*datasets: statistics_pb2.DatasetFeatureStatistics) -> statistics_pb2.DatasetFeatureStatisticsList:
    return statistics_pb2.DatasetFeatureStatisticsList(datasets=list(datasets))


def feature(dataset: statistics_pb2.DatasetFeatureStatistics, name: str) -> statistics_pb2.FeatureNameStatistics:
    for f in dataset.features:
        if list(f.path.step) == [name]:
            return f
    raise KeyError(f"data set {dataset.name} has no statistics for {name}")


BASELINE_FILE = registry.BASELINE_STATISTICS_FILE
SCORE = "score"


def score_statistics(name: str, probabilities: np.ndarray, threshold: float) -> statistics_pb2.DatasetFeatureStatistics:
    """A model's scores as one numeric feature, with the share labelled positive at its threshold."""
    sketch = DatasetSketch({SCORE: NUMERIC})
    sketch.add(pa.record_batch([pa.array(np.asarray(probabilities, dtype=np.float64).ravel())], names=[SCORE]))
    out = sketch.to_proto(name)
    positive = float(np.mean(np.asarray(probabilities).ravel() >= threshold)) if len(probabilities) else 0.0
    out.features[0].custom_stats.add(name="positive_rate", num=positive)
    return out


def write_statistics(path: str, statistics: statistics_pb2.DatasetFeatureStatisticsList) -> None:
    with FileSystems.create(path) as f:
        f.write(statistics.SerializeToString())


def read_statistics(path: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())


def vocabularies(version_path: str, use_case: UseCase) -> dict[str, list[str]]:
    """The model's vocabularies (tf.Transform's, saved as the SavedModel's assets), by feature; a value
    outside its feature's vocabulary is scored as out-of-vocabulary."""
    found = {}
    for name in (f.name for f in use_case.of_kind(FeatureKind.VOCABULARY) if not f.sources):
        path = FileSystems.join(version_path, "assets", name)
        if FileSystems.exists(path):
            with FileSystems.open(path, compression_type="uncompressed") as f:
                found[name] = [line for line in f.read().decode("utf-8").split("\n") if line]
    return found


def dataset(statistics: statistics_pb2.DatasetFeatureStatisticsList, name: str):
    """The data set of that name in a list, or None."""
    return next((d for d in statistics.datasets if d.name == name), None)


def read_baseline(version_path: str) -> bytes | None:
    """A model version's training statistics, serialized; None for a version exported before them."""
    path = FileSystems.join(version_path, BASELINE_FILE)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()
