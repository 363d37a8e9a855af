"""How far a night's feature distributions are from a baseline's, from their statistics alone.

The metrics are those Vertex AI model monitoring, BigQuery ML's ML.VALIDATE_DATA_DRIFT and TFDV use:
for numbers, Jensen-Shannon divergence (base 2, so in [0, 1]) and the population stability index on
the baseline's quantile bins; for categories, L-infinity distance between the value frequencies (with
the value that moved most) and Jensen-Shannon divergence; for every feature, the change of its
missing rate; for vocabulary features, the share of tonight's values outside the model's vocabulary.

Everything is computed from two `FeatureNameStatistics`, never from rows: tonight's share of each
baseline bin comes from tonight's quantiles (a piecewise-linear CDF), and a category's frequencies
from its top values, the rest pooled as one "other" value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipelines.monitoring.datasets import EVAL_SCORES, NIGHT, NIGHT_SCORES, TRAINING
from pipelines.monitoring.quantiles import share_below
from pipelines.monitoring.statistics import dataset
from schemas import FEATURE_DRIFT, DriftSettings

DRIFT_BINS = 10  # the baseline's quantiles, pooled into this many equal-mass bins
DEFAULT_THRESHOLD = 0.1  # Jensen-Shannon, L-infinity, missing rate and out-of-vocabulary share
PSI_THRESHOLD = 0.25  # the usual "significant shift" level of the population stability index
MIN_VALUES = DriftSettings().min_values  # the default: fewer values present on either side, never flagged
_FLOOR = 1e-6  # keeps PSI finite where a bin is empty on one side
OTHER = "__other__"


TRAINING_BASELINE, PREVIOUS_NIGHT = "training", "previous_night"


@dataclass(frozen=True)
class Metric:
    """One row of `feature_drift`, less the night's keys."""

    feature: str
    metric: str
    value: float
    threshold: float
    flagged: bool
    detail: str
    baseline: str = TRAINING_BASELINE


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Base-2 Jensen-Shannon divergence of two distributions over the same bins: 0 equal, 1 disjoint."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nonzero = a > 0
        return float(np.sum(a[nonzero] * np.log2(a[nonzero] / m[nonzero])))

    return max(0.0, (kl(p) + kl(q)) / 2)


def population_stability(p: np.ndarray, q: np.ndarray) -> float:
    """PSI = sum (q - p) ln(q / p), baseline p, tonight q, empty bins floored."""
    p, q = np.maximum(p / p.sum(), _FLOOR), np.maximum(q / q.sum(), _FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def quantile_edges(stats: statistics_pb2.FeatureNameStatistics) -> np.ndarray:
    """The quantiles of a numeric feature's QUANTILES histogram: min, ..., max."""
    for histogram in stats.num_stats.histograms:
        if histogram.type == statistics_pb2.Histogram.QUANTILES and histogram.buckets:
            lows = [b.low_value for b in histogram.buckets]
            return np.array([*lows, histogram.buckets[-1].high_value])
    return np.array([])


def numeric_bins(baseline: statistics_pb2.FeatureNameStatistics, tonight: statistics_pb2.FeatureNameStatistics):
    """Both distributions over the baseline's DRIFT_BINS equal-mass bins (fewer where quantiles repeat)."""
    base, now = quantile_edges(baseline), quantile_edges(tonight)
    cuts = np.unique(np.quantile(base, np.linspace(0, 1, DRIFT_BINS + 1))[1:-1])
    p = np.diff(np.concatenate([[0.0], share_below(base, cuts), [1.0]]))
    q = np.diff(np.concatenate([[0.0], share_below(now, cuts), [1.0]]))
    return p, q


def category_frequencies(stats: statistics_pb2.FeatureNameStatistics) -> dict[str, float]:
    """Top values as shares of the values present, the rest pooled as OTHER."""
    present = stats.string_stats.common_stats.num_non_missing
    if not present:
        return {}
    shares = {v.value: v.frequency / present for v in stats.string_stats.top_values}
    shares[OTHER] = max(0.0, 1.0 - sum(shares.values()))
    return shares


def _common(stats: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.CommonStatistics:
    return (stats.num_stats if stats.HasField("num_stats") else stats.string_stats).common_stats


def present(stats: statistics_pb2.FeatureNameStatistics) -> int:
    return _common(stats).num_non_missing


def records_of(stats: statistics_pb2.FeatureNameStatistics) -> int:
    return _common(stats).num_non_missing + _common(stats).num_missing


def missing_rate(stats: statistics_pb2.FeatureNameStatistics) -> float:
    total = records_of(stats)
    return _common(stats).num_missing / total if total else 0.0


def compare(
    name: str,
    baseline: statistics_pb2.FeatureNameStatistics,
    tonight: statistics_pb2.FeatureNameStatistics,
    thresholds: dict[str, float] | None = None,
    not_flagged: str | None = None,
    min_values: int = MIN_VALUES,
) -> list[Metric]:
    """Every drift metric of one feature; `thresholds` overrides the defaults per metric name,
    `not_flagged` (a reason) keeps the feature from ever being flagged, and with fewer than `min_values`
    values on a side it is measured but not flagged."""
    limits = {
        "jensen_shannon": DEFAULT_THRESHOLD,
        "psi": PSI_THRESHOLD,
        "l_infinity": DEFAULT_THRESHOLD,
        "missing_rate_change": DEFAULT_THRESHOLD,
        "out_of_vocabulary_share": DEFAULT_THRESHOLD,
        **(thresholds or {}),
    }
    enough = min(present(baseline), present(tonight)) >= min_values and not not_flagged
    # The missing rate is judged on all records, present or not: a feature gone all missing is the change to catch.
    whole = min(records_of(baseline), records_of(tonight)) >= min_values and not not_flagged
    why = (
        f" (never flagged: {not_flagged})"
        if not_flagged
        else f" (fewer than {min_values} values on a side: not flagged)"
    )

    def metric(kind: str, value: float, detail: str, judged: bool = enough) -> Metric:
        flagged = judged and value > limits[kind]
        return Metric(name, kind, value, limits[kind], flagged, detail + ("" if judged else why))

    metrics = []
    if baseline.HasField("num_stats"):
        if enough or (present(baseline) and present(tonight)):
            p, q = numeric_bins(baseline, tonight)
            shares = ", ".join(f"{a:.3f}->{b:.3f}" for a, b in zip(p, q, strict=True))
            metrics.append(metric("jensen_shannon", jensen_shannon(p, q), f"bin shares {shares}"))
            metrics.append(metric("psi", population_stability(p, q), f"{len(p)} baseline quantile bins"))
    else:
        p_shares, q_shares = category_frequencies(baseline), category_frequencies(tonight)
        if p_shares and q_shares:
            values = sorted(p_shares.keys() | q_shares.keys())
            p = np.array([p_shares.get(v, 0.0) for v in values])
            q = np.array([q_shares.get(v, 0.0) for v in values])
            moved = int(np.argmax(np.abs(p - q)))
            detail = f"{values[moved]!r}: {p[moved]:.3f} -> {q[moved]:.3f}"
            metrics.append(metric("l_infinity", float(np.abs(p - q).max()), detail))
            metrics.append(metric("jensen_shannon", jensen_shannon(p, q), f"{len(values)} values compared"))
    before, after = missing_rate(baseline), missing_rate(tonight)
    metrics.append(metric("missing_rate_change", abs(after - before), f"missing {before:.3f} -> {after:.3f}", whole))
    oov = {c.name: c.num for c in tonight.custom_stats}.get("out_of_vocabulary")
    if oov is not None and present(tonight):
        share = oov / present(tonight)
        metrics.append(metric("out_of_vocabulary_share", share, f"{int(oov)} of {present(tonight)} values"))
    return metrics


def night_drift(
    night: statistics_pb2.DatasetFeatureStatisticsList,
    training: statistics_pb2.DatasetFeatureStatisticsList | None,
    previous: statistics_pb2.DatasetFeatureStatisticsList | None,
    settings: DriftSettings | None = None,
) -> list[Metric]:
    """Every metric of every feature and of the score, against the training data (the version's
    baseline: its train split and its eval split's scores) and against the last published night, with
    the use case's `settings` (thresholds, features never flagged, the fewest values to flag).
    A baseline that is missing (a version exported before baselines, a first night) is skipped."""
    settings = settings or DriftSettings()
    thresholds, not_flagged = settings.thresholds, settings.not_flagged
    pairs = []
    if training is not None:
        pairs += [(TRAINING_BASELINE, dataset(training, TRAINING), dataset(night, NIGHT))]
        pairs += [(TRAINING_BASELINE, dataset(training, EVAL_SCORES), dataset(night, NIGHT_SCORES))]
    if previous is not None:
        pairs += [(PREVIOUS_NIGHT, dataset(previous, NIGHT), dataset(night, NIGHT))]
        pairs += [(PREVIOUS_NIGHT, dataset(previous, NIGHT_SCORES), dataset(night, NIGHT_SCORES))]
    metrics = []
    for baseline_name, before, after in pairs:
        if before is None or after is None:
            continue
        tonight = {tuple(f.path.step)[0]: f for f in after.features}
        for stats in before.features:
            name = tuple(stats.path.step)[0]
            if name in tonight:
                judged = compare(
                    name, stats, tonight[name], thresholds.get(name), not_flagged.get(name), settings.min_values
                )
                for m in judged:
                    metrics.append(Metric(**{**m.__dict__, "baseline": baseline_name}))
    return metrics


def flagged_features(metrics: list[Metric]) -> tuple[str, ...]:
    return tuple(sorted({m.feature for m in metrics if m.flagged}))


def rows(metrics: list[Metric], score_date, run_id: str) -> pa.Table:
    """The metrics as `feature_drift` rows."""
    return pa.Table.from_pylist(
        [
            {
                "score_date": score_date,
                "run_id": run_id,
                "feature": m.feature,
                "baseline": m.baseline,
                "metric": m.metric,
                "value": float(m.value),
                "threshold": float(m.threshold),
                "flagged": bool(m.flagged),
                "detail": m.detail,
            }
            for m in metrics
        ],
        schema=FEATURE_DRIFT.arrow_schema,
    )
