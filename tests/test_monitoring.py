"""Feature statistics and drift (README: Monitoring): sketches checked against exact computations on
the same rows, and drift metrics against nights that did and did not change."""

import collections
import json
import pickle
from datetime import date

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from apache_beam.testing.util import assert_that

from pipelines import export_statistics, score
from pipelines.batches import RawBatch
from pipelines.monitoring import drift
from pipelines.monitoring.datasets import EVAL_SCORES, TRAINING
from pipelines.monitoring.statistics import (
    BASELINE_FILE,
    NUM_QUANTILES,
    QUANTILES_EPS,
    STANDARD_BUCKETS,
    STANDARD_RESOLUTION,
    TOP_BUCKETS,
    TOP_VALUES,
    ComputeStatistics,
    DatasetSketch,
    feature,
    feature_kinds,
    read_statistics,
)
from pipelines.validate import SchemaValidator
from schemas.taxi import TRIPS
from schemas.taxi import USE_CASE as TAXI
from tests.conftest import query, read_as_text, write_partition

NIGHT = 100_000


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> pa.Table:
    """The real sample's 15,000 trips, typed as validation types them."""
    [path] = write_partition(tmp_path_factory.mktemp("sample"), "2026-11-23", 15_000)
    batch = read_as_text(path).combine_chunks().to_batches()[0]
    valid, rejected = SchemaValidator(TRIPS.for_scoring()).validate(RawBatch(path, batch))
    assert rejected is None
    return pa.Table.from_batches([valid])


def statistics(table: pa.Table, vocabularies=None, pieces: int = 4):
    """Statistics of `table` computed in `pieces` sketches, pickled and merged as Beam would."""
    kinds = feature_kinds(TAXI)
    sketches = []
    for chunk in np.array_split(np.arange(table.num_rows), pieces):
        sketch = DatasetSketch(kinds, vocabularies)
        for batch in table.take(pa.array(chunk)).to_batches(max_chunksize=4096):
            sketch.add(batch)
        sketches.append(pickle.loads(pickle.dumps(sketch)))
    first, *rest = sketches
    for other in rest:
        first.merge(other)
    return first.to_proto("night")


def resample(table: pa.Table, rows: int, seed: int) -> pa.Table:
    return table.take(pa.array(np.random.default_rng(seed).integers(0, table.num_rows, rows)))


def test_statistics_agree_with_an_exact_computation(sample):
    stats = statistics(sample)
    n = sample.num_rows
    assert stats.num_examples == n
    for name, kind in feature_kinds(TAXI).items():
        column = sample.column(name)
        got = feature(stats, name)
        if kind == "numeric":
            values = pc.drop_null(column).to_numpy().astype(np.float32).astype(np.float64)  # as the model sees them
            common = got.num_stats.common_stats
            assert (common.num_non_missing, common.num_missing) == (len(values), column.null_count), name
            assert got.num_stats.mean == pytest.approx(values.mean(), rel=1e-9), name
            assert got.num_stats.std_dev == pytest.approx(values.std(), rel=1e-6), name
            assert (got.num_stats.min, got.num_stats.max) == (values.min(), values.max()), name
            edges = drift.quantile_edges(got)
            assert len(edges) == NUM_QUANTILES + 1
            ordered = np.sort(values)
            for k, edge in enumerate(edges):
                # The k-th quantile's rank is k/NUM_QUANTILES of the values, within the sketch's error.
                below, at_or_below = np.searchsorted(ordered, edge, "left"), np.searchsorted(ordered, edge, "right")
                wanted = k / NUM_QUANTILES * len(values)
                slack = QUANTILES_EPS * len(values) + 1
                assert below - slack <= wanted <= at_or_below + slack, (name, k, edge)
        else:
            values = pc.drop_null(column).cast(pa.string()).to_pylist()
            exact = collections.Counter(values)
            common = got.string_stats.common_stats
            assert (common.num_non_missing, common.num_missing) == (len(values), column.null_count), name
            for top in got.string_stats.top_values:
                # tfx-bsl's Misra-Gries reports a count plus its error bound: high by at most n / buckets.
                assert exact[top.value] <= top.frequency <= exact[top.value] + len(values) / TOP_BUCKETS, name
            assert got.string_stats.unique == pytest.approx(len(exact), rel=0.05), name


def test_what_tfdv_reads_agrees_with_an_exact_computation(sample):
    """The fields TFDV's comparators and viewers read (README: Monitoring, "Statistics for TFDV"): every
    category's rank histogram, every number's STANDARD histogram, median and zeros, and the value counts."""
    stats = statistics(sample)
    for name, kind in feature_kinds(TAXI).items():
        column = sample.column(name)
        got = feature(stats, name)
        if kind == "numeric":
            values = pc.drop_null(column).to_numpy().astype(np.float32).astype(np.float64)
            num = got.num_stats
            common = num.common_stats
            assert num.num_zeros == np.count_nonzero(values == 0), name
            ordered = np.sort(values)
            rank = np.searchsorted(ordered, num.median, "right") / len(values)
            assert abs(rank - 0.5) <= 2 * QUANTILES_EPS + np.mean(ordered == num.median), name
            [standard] = [h for h in num.histograms if h.type == h.STANDARD]
            assert [h.type for h in num.histograms] == [standard.STANDARD, standard.QUANTILES]  # TFDV's order
            assert len(standard.buckets) == STANDARD_BUCKETS, name
            cuts = np.linspace(values.min(), values.max(), STANDARD_BUCKETS + 1)
            assert [b.low_value for b in standard.buckets] == pytest.approx(cuts[:-1]), name
            assert [b.high_value for b in standard.buckets] == pytest.approx(cuts[1:]), name
            # TFDV's buckets: above the low edge up to the high edge, the first from the minimum.
            exact = np.diff(np.concatenate([[0], np.searchsorted(ordered, cuts[1:], "right")]))
            got_counts = np.array([b.sample_count for b in standard.buckets])
            assert got_counts.sum() == pytest.approx(len(values)), name
            # Each edge's rank within the sketch's error and one of STANDARD_RESOLUTION's quantiles.
            slack = (2 * QUANTILES_EPS + 2 / STANDARD_RESOLUTION) * len(values) + 1
            assert np.abs(got_counts - exact).max() <= slack, (name, got_counts, exact)
        else:
            values = pc.drop_null(column).cast(pa.string()).to_pylist()
            exact = collections.Counter(values)
            string = got.string_stats
            common = string.common_stats
            ranked = [(b.label, b.sample_count) for b in string.rank_histogram.buckets]
            assert [b.low_rank for b in string.rank_histogram.buckets] == list(range(len(exact))), name
            assert dict(ranked) == pytest.approx(dict(exact)), name  # fewer values than the sketch's counters
            assert [c for _, c in ranked] == sorted((c for _, c in ranked), reverse=True), name
            assert [(t.value, t.frequency) for t in string.top_values] == ranked[:TOP_VALUES], name
            assert string.avg_length == pytest.approx(np.mean([len(v.encode()) for v in values] or [0])), name
        if not len(values):  # a feature missing throughout (as TFDV writes it): no values to count
            assert (common.tot_num_values, common.max_num_values, len(common.num_values_histogram.buckets)) == (0, 0, 0)
            continue
        assert (common.tot_num_values, common.avg_num_values) == (len(values), 1.0), name
        assert (common.min_num_values, common.max_num_values) == (1, 1), name
        histogram = common.num_values_histogram
        assert histogram.type == histogram.QUANTILES and len(histogram.buckets) == 10, name
        assert {(b.low_value, b.high_value) for b in histogram.buckets} == {(1.0, 1.0)}, name
        assert sum(b.sample_count for b in histogram.buckets) == pytest.approx(len(values)), name


def test_what_tfdv_reads_at_the_edges_one_value_none_and_bytes_merged_from_pieces():
    """A number holding one value throughout (one STANDARD bucket), a number missing throughout (counts
    only), a category read as bytes (labels as text), each merged from two pickled pieces as Beam would."""
    kinds = {"constant": "numeric", "absent": "numeric", "raw": "categorical"}
    pieces = [
        pa.record_batch(
            {
                "constant": pa.array([2.5] * n, pa.float64()),
                "absent": pa.nulls(n, pa.float64()),
                "raw": pa.array([b"b", b"a", b"b"][:n] * (n // 3 or 1), pa.binary())[:n],
            }
        )
        for n in (3, 300)
    ]
    sketches = []
    for batch in pieces:
        sketch = DatasetSketch(kinds)
        sketch.add(batch)
        sketches.append(pickle.loads(pickle.dumps(sketch)))
    stats = sketches[0].merge(sketches[1]).to_proto("night")
    constant = feature(stats, "constant").num_stats
    [standard] = [h for h in constant.histograms if h.type == h.STANDARD]
    assert [(b.low_value, b.high_value, b.sample_count) for b in standard.buckets] == [(2.5, 2.5, 303)]
    assert (constant.median, constant.num_zeros, constant.common_stats.tot_num_values) == (2.5, 0, 303)
    absent = feature(stats, "absent").num_stats
    assert (absent.common_stats.num_missing, absent.common_stats.num_non_missing) == (303, 0)
    assert not absent.histograms and not absent.common_stats.num_values_histogram.buckets
    raw = feature(stats, "raw").string_stats
    assert [(b.label, b.sample_count) for b in raw.rank_histogram.buckets] == [("b", 202), ("a", 101)]
    assert raw.avg_length == 1.0 and raw.common_stats.tot_num_values == 303


def test_training_list_columns_are_described_as_the_typed_columns_of_a_night(sample):
    """Training's converted batches hold [value] or [] per record (tf.Transform's layout), a night's
    typed batches a value or a null: the same records must give the same statistics, missing included."""

    def as_lists(column: pa.Array) -> pa.Array:
        present = pc.is_valid(column).to_numpy(zero_copy_only=False)
        offsets = np.concatenate([[0], np.cumsum(present)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pc.drop_null(column))

    kinds = feature_kinds(TAXI)
    typed = statistics(sample.select(list(kinds)), pieces=1)
    listed = statistics(pa.table({n: as_lists(sample.column(n).combine_chunks()) for n in kinds}), pieces=1)
    assert listed == typed
    company = feature(typed, "company").string_stats.common_stats
    assert company.num_missing == sample.column("company").null_count > 0


def test_statistics_combine_across_bundles_in_a_pipeline(sample):
    # Copies, not slices: a pickled slice carries its parent's whole buffers between Beam's stages.
    batches = [
        b for i in range(0, sample.num_rows, 1000) for b in sample.take(pa.array(range(i, i + 1000))).to_batches()
    ]
    with beam.Pipeline() as p:
        stats = p | beam.Create(batches) | beam.CombineGlobally(ComputeStatistics("night", feature_kinds(TAXI)))

        def check(outputs):
            [out] = outputs
            assert out.num_examples == sample.num_rows
            assert feature(out, "fare").num_stats.mean == pytest.approx(pc.mean(sample.column("fare")).as_py())

        assert_that(stats, check)


def flagged(metrics) -> set[str]:
    return {m.feature for m in metrics if m.flagged}


def drift_of(baseline, tonight) -> list[drift.Metric]:
    pairs = [(name, feature(baseline, name), feature(tonight, name)) for name in feature_kinds(TAXI)]
    return [m for name, before, after in pairs for m in drift.compare(name, before, after)]


def test_nights_resampled_from_the_baseline_flag_nothing(sample):
    """20 nights of 100,000 records drawn from the training distribution: the false-alarm rate."""
    baseline = statistics(sample)
    alarms = collections.Counter()
    for seed in range(20):
        alarms.update(flagged(drift_of(baseline, statistics(resample(sample, NIGHT, seed), pieces=2))))
    assert all(count <= 1 for count in alarms.values()), alarms
    assert sum(alarms.values()) == 0, alarms  # what the README reports: no false alarm in 20 nights


def test_tripled_fares_flag_fare_and_nothing_else(sample):
    baseline = statistics(sample)
    night = resample(sample, NIGHT, 99)
    tripled = night.set_column(night.schema.get_field_index("fare"), "fare", pc.multiply(night.column("fare"), 3.0))
    metrics = drift_of(baseline, statistics(tripled, pieces=2))
    assert flagged(metrics) == {"fare"}
    fare = {m.metric: m for m in metrics if m.feature == "fare"}
    assert fare["jensen_shannon"].flagged and fare["psi"].flagged and fare["jensen_shannon"].value > 0.3


def test_a_renamed_company_moves_its_l_infinity_and_out_of_vocabulary_share(sample):
    vocabulary = {"company": sorted(set(pc.drop_null(sample.column("company")).to_pylist()))}
    baseline = statistics(sample, {"company": pa.array(vocabulary["company"])})
    night = resample(sample, NIGHT, 7)
    top = collections.Counter(pc.drop_null(sample.column("company")).to_pylist()).most_common(1)[0][0]
    renamed = pc.if_else(pc.equal(night.column("company"), top), "Renamed Cab Co", night.column("company"))
    night = night.set_column(night.schema.get_field_index("company"), "company", renamed)
    metrics = drift_of(baseline, statistics(night, {"company": pa.array(vocabulary["company"])}, pieces=2))
    company = {m.metric: m for m in metrics if m.feature == "company"}
    assert company["out_of_vocabulary_share"].flagged and company["out_of_vocabulary_share"].value > 0.1
    detail = company["l_infinity"].detail
    assert company["l_infinity"].flagged and ("Renamed Cab Co" in detail or top in detail)
    assert flagged(metrics) == {"company"}


def numeric_statistics(values, name: str = "x"):
    """One numeric feature's statistics, from values (None: missing)."""
    sketch = DatasetSketch({name: "numeric"})
    sketch.add(pa.record_batch([pa.array(values, pa.float64())], names=[name]))
    return feature(sketch.to_proto("d"), name)


def test_a_shifted_score_distribution_is_flagged():
    rng = np.random.default_rng(1)

    def scores(values):
        return numeric_statistics(values, "score")

    training = scores(rng.beta(2, 5, 50_000))
    same = drift.compare("score", training, scores(rng.beta(2, 5, 50_000)))
    shifted = drift.compare("score", training, scores(rng.beta(3, 4, 50_000)))
    assert not any(m.flagged for m in same)
    assert {m.metric for m in shifted if m.flagged} >= {"jensen_shannon", "psi"}


def test_small_samples_are_measured_but_not_flagged():
    metrics = drift.compare("x", numeric_statistics(np.arange(500.0)), numeric_statistics(np.arange(500.0) + 1000))
    js = next(m for m in metrics if m.metric == "jensen_shannon")
    assert js.value > 0.5 and not js.flagged and "not flagged" in js.detail


def test_divergences_on_known_distributions():
    assert drift.jensen_shannon(np.array([1.0, 0]), np.array([0, 1.0])) == pytest.approx(1.0)
    assert drift.jensen_shannon(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0
    # PSI of (0.5, 0.5) -> (0.9, 0.1): 0.4 ln 1.8 - 0.4 ln 0.2 = 0.4 ln 9
    assert drift.population_stability(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(0.4 * np.log(9))


def test_training_stores_the_baseline_with_the_version(trained):
    """The train split's feature statistics and the eval split's scores, in the version's manifest."""
    path = trained.version.path
    baseline = read_statistics(f"{path}/{BASELINE_FILE}")
    assert [d.name for d in baseline.datasets] == [TRAINING, EVAL_SCORES]
    training, scores = baseline.datasets
    assert training.num_examples == trained.version.metadata["training_records"]
    assert {tuple(f.path.step)[0] for f in training.features} == set(feature_kinds(TAXI))
    assert scores.num_examples == trained.version.metadata["eval_records"]
    [score] = scores.features
    positive = {c.name: c.num for c in score.custom_stats}["positive_rate"]
    assert 0 < positive < 1 and 0 <= score.num_stats.min <= score.num_stats.max <= 1
    assert BASELINE_FILE in {entry["path"] for entry in trained.version.metadata["manifest"]}


# ---------------------------------------------------------------- inside the scoring job, both warehouses


def score_night(tmp_path, model_root, warehouse, day, *extra) -> int:
    return score.main(
        [
            f"--date={day}",
            f"--input={tmp_path}/trips/dt={{date}}/*.csv",
            f"--model_root={model_root}",
            f"--summary_json={tmp_path}/summary-{day}.json",
            *warehouse.args,
            *extra,
        ]
    )


def test_every_metric_is_stored_every_night_and_a_normal_night_flags_nothing(model_root, tmp_path, warehouse):
    for day in ("2026-11-22", "2026-11-23"):
        write_partition(tmp_path / "trips" / f"dt={day}", day, 3000)
        assert score_night(tmp_path, model_root, warehouse, day) == 0
    rows = warehouse.rows(
        "SELECT baseline, feature, metric, flagged FROM feature_drift WHERE score_date = ?", date(2026, 11, 23)
    )
    assert {b for b, *_ in rows} == {"training", "previous_night"}
    assert {f for _, f, *_ in rows} == {*feature_kinds(TAXI), "score"}
    assert {m for *_, m, _ in rows} == {
        "jensen_shannon",
        "psi",
        "l_infinity",
        "missing_rate_change",
        "out_of_vocabulary_share",
    }
    assert sorted(r for r in rows if r[3]) == []  # resampled from the training data: nothing drifted
    # The view and the analysts' heat map query: one row per night and feature against training.
    heat = warehouse.rows(warehouse.example_queries()["drift_heat_map"])
    assert len(heat) == 2 * len({*feature_kinds(TAXI), "score"}) and not any(r[-1] for r in heat)
    assert {str(r[0]) for r in heat} == {"2026-11-22", "2026-11-23"}
    first = warehouse.rows("SELECT DISTINCT baseline FROM feature_drift WHERE score_date = ?", date(2026, 11, 22))
    assert first == [("training",)]  # the first night has no previous night
    summary = json.load(open(tmp_path / "summary-2026-11-23.json"))
    assert {g["name"]: g["passed"] for g in summary["gates"]}["drift"] is True


def test_monitoring_off_publishes_the_same_night_without_statistics(model_root, tmp_path, capsys):
    class Local:
        args = [f"--warehouse={tmp_path / 'wh' / 'scores.duckdb'}", "--create_dataset"]

    day = "2026-11-23"
    write_partition(tmp_path / "trips" / f"dt={day}", day, 500)
    assert score_night(tmp_path, model_root, Local(), day, "--monitoring=off", "--drift_gate=refuse") == 2
    assert "--monitoring off does not measure" in capsys.readouterr().err
    assert score_night(tmp_path, model_root, Local(), day, "--monitoring=off") == 0
    db = tmp_path / "wh" / "scores.duckdb"
    assert query(db, "SELECT COUNT(*) FROM predictions") == [(500,)]
    assert query(db, "SELECT COUNT(*) FROM feature_drift") == [(0,)]
    assert query(db, "SELECT statistics FROM scoring_runs") == [(None,)]
    summary = json.load(open(tmp_path / f"summary-{day}.json"))
    assert {g["name"]: g["value"] for g in summary["gates"]}["drift"] == 0
    assert "No drift measured yet" in open(summary["report"]).read()
    # Nothing to export: said in one line, naming the way out.
    out = [f"--date={day}", f"--warehouse={db}", f"--out={tmp_path / 'night.pb'}"]
    assert export_statistics.main(out) == 2
    assert "kept no statistics (--monitoring off" in capsys.readouterr().err
    assert not (tmp_path / "night.pb").exists()


def test_tripled_fares_are_flagged_and_refused_when_asked(model_root, tmp_path):
    class Local:
        args = [f"--warehouse={tmp_path / 'wh' / 'scores.duckdb'}", "--create_dataset"]

        def rows(self, sql, *params):
            return query(tmp_path / "wh" / "scores.duckdb", sql, list(params))

    warehouse, day = Local(), "2026-11-23"
    [path] = write_partition(tmp_path / "trips" / f"dt={day}", day, 3000)
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"fare": pa.float64()}))
    table = table.set_column(table.schema.get_field_index("fare"), "fare", pc.multiply(table.column("fare"), 3.0))
    pacsv.write_csv(table, path)
    assert score_night(tmp_path, model_root, warehouse, day) == 0  # --drift_gate warn: published, reported
    warned = json.load(open(tmp_path / f"summary-{day}.json"))
    drift_gate = next(g for g in warned["gates"] if g["name"] == "drift")
    assert drift_gate["passed"] and "fare" in drift_gate["detail"] and "warn" in drift_gate["detail"]
    flagged = warehouse.rows(
        "SELECT DISTINCT feature FROM feature_drift WHERE flagged AND baseline = 'training' ORDER BY feature"
    )
    assert flagged == [("fare",), ("score",)]  # fare is a model input: the scores move with it, nothing else
    assert score_night(tmp_path, model_root, warehouse, day, "--drift_gate=refuse", "--allow_shrink") == 3
    refused = json.load(open(tmp_path / f"summary-{day}.json"))
    assert [g["name"] for g in refused["gates"] if not g["passed"]] == ["drift"]
    assert warehouse.rows("SELECT COUNT(*) FROM refused_feature_drift WHERE feature = 'fare' AND flagged")[0][0] >= 1


def test_top_values_keep_their_error_bound_past_the_sketch_capacity():
    """More distinct values than Misra-Gries counters: a reported count stays within n / buckets above."""
    rng = np.random.default_rng(3)
    values = np.concatenate([np.repeat(["a", "b"], [20_000, 10_000]), rng.integers(0, 50_000, 30_000).astype(str)])
    sketch = DatasetSketch({"v": "categorical"})
    sketch.add(pa.record_batch([pa.array(rng.permutation(values))], names=["v"]))
    exact = collections.Counter(values.tolist())
    top = {t.value: t.frequency for t in feature(sketch.to_proto("d"), "v").string_stats.top_values}
    assert len(exact) > TOP_BUCKETS and list(top)[:2] == ["a", "b"]
    for value, frequency in top.items():
        assert exact[value] <= frequency <= exact[value] + len(values) / TOP_BUCKETS, value


def test_a_step_in_the_distribution_is_measured_as_a_step():
    """Whole numbers against a uniform baseline: the mass of each repeated value sits at it."""
    rng = np.random.default_rng(4)
    baseline, tonight = rng.uniform(0, 10, 50_000), rng.integers(0, 11, 50_000).astype(float)
    base_stats, night_stats = numeric_statistics(baseline), numeric_statistics(tonight)
    psi = next(m for m in drift.compare("x", base_stats, night_stats) if m.metric == "psi")
    # The exact shares over the same cuts the metric uses (the baseline's pooled quantiles).
    edges = drift.quantile_edges(base_stats)
    cuts = np.unique(np.quantile(edges, np.linspace(0, 1, drift.DRIFT_BINS + 1))[1:-1])
    p = np.diff(np.concatenate([[0], [np.mean(baseline <= c) for c in cuts], [1]]))
    q = np.diff(np.concatenate([[0], [np.mean(tonight <= c) for c in cuts], [1]]))
    measured_p, measured_q = drift.numeric_bins(base_stats, night_stats)
    # Each bin's share within the quantiles' resolution (1/100 of the values), and the shift flagged.
    assert np.allclose(measured_p, p, atol=0.02) and np.allclose(measured_q, q, atol=0.02), (measured_q, q)
    assert psi.flagged and psi.value > drift.PSI_THRESHOLD


def test_a_feature_gone_missing_is_flagged():
    metrics = drift.compare("x", numeric_statistics(np.arange(5000.0)), numeric_statistics([None] * 5000))
    assert [m.metric for m in metrics if m.flagged] == ["missing_rate_change"]
