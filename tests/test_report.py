"""The night's report (README: Monitoring): written by every run, written again from the warehouse
alone, aggregates only, and drawn by a real browser with the network cut off."""

import base64
import json
import os
import re
import uuid
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from PIL import Image

from pipelines import report as report_cli
from pipelines import score
from pipelines.defaults import REPORT_DAYS
from pipelines.monitoring import drift
from pipelines.monitoring.datasets import EVAL_SCORES, NIGHT, NIGHT_SCORES, TRAINING
from pipelines.monitoring.page import page_name, render
from pipelines.monitoring.statistics import (
    DatasetSketch,
    feature_kinds,
    score_statistics,
    statistics_list,
)
from pipelines.warehouses import open_warehouse
from pipelines.warehouses.records import NightReport
from schemas.taxi import USE_CASE as TAXI
from tests.browser import MAX_BYTES, assert_self_contained, browse, probe
from tests.conftest import GCS_BUCKET, write_partition

DAY = "2026-11-23"
# Sections every report has.
SECTIONS = [
    "Quality gates",
    "Volume, rejections and mean score",
    "Rejected records by reason",
    "Drift against training",
]


def score_args(tmp_path, model_root, day, *extra):
    return [
        f"--date={day}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        f"--warehouse={tmp_path / 'wh' / 'scores.duckdb'}",
        "--create_dataset",
        f"--summary_json={tmp_path / f'summary-{day}.json'}",
        *extra,
    ]


def test_every_run_writes_its_report_and_a_browser_draws_it_offline(model_root, tmp_path, chromium):
    write_partition(tmp_path / "trips" / "dt=2026-11-22", "2026-11-22", 1500)
    [path] = write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 1500)
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"fare": pa.float64()}))
    table = table.set_column(table.schema.get_field_index("fare"), "fare", pc.multiply(table.column("fare"), 3.0))
    pacsv.write_csv(table, path)
    with open(path, "a") as f:
        f.write("broken,line\n")
    a_trip = table.column("trip_id")[0].as_py()
    assert score.main(score_args(tmp_path, model_root, "2026-11-22")) == 0
    assert score.main(score_args(tmp_path, model_root, DAY)) == 0
    summary = json.load(open(tmp_path / f"summary-{DAY}.json"))
    page = str(tmp_path / "wh" / "reports" / f"report-scores-{DAY}.html")  # the default: beside the warehouse
    assert summary["report"] == page and os.path.exists(tmp_path / "wh" / "reports" / "report-scores-2026-11-22.html")

    # Night one's page (no history yet): every chart drawn with one night, no axis below zero, the drift
    # gate in words, and the heat map's values in its cells (a mail client cannot hover).
    first = open(tmp_path / "wh" / "reports" / "report-scores-2026-11-22.html").read()
    spread = first.split("<h3>Score percentiles per published night</h3>", 1)[1].split("</svg>", 1)[0]
    assert spread.count('<g id="LineCollection_') == 2  # the p10-p90 and p25-p75 bars of the one night
    assert "\u2212" not in first  # matplotlib's minus sign: no negative tick on any axis
    assert '<td>drift</td><td class="pass">yes</td><td>0 features flagged</td><td>gate: warn</td>' in first
    assert "hover" not in first and re.search(r'<td style="background:#[0-9a-f]{6}" title="[^"]+">\d+\.\d</td>', first)

    assert_self_contained(page)
    text = open(page).read()
    assert a_trip not in text  # aggregates only: not one record's key
    dom = browse(chromium, page, "--dump-dom").stdout
    assert f"Scoring report {DAY}: succeeded" in dom
    assert all(f"<h2>{section}" in dom for section in SECTIONS)
    flagged_features = re.findall(r"<h3>(fare|score)</h3>", dom)
    assert flagged_features == ["fare", "score"]
    assert dom.count("<svg") == 6  # history, rejections, two overlays, scores against training, score band
    heat = dom.split('<table class="heat">', 1)[1].split("</table>", 1)[0]
    assert heat.count("×") == 2 and heat.count("<tr>") == 1 + len(feature_kinds(TAXI)) + 1  # fare and score tonight
    assert "malformed_line" in dom  # the rejection reason, in its table

    found, console = probe(chromium, page, tmp_path)
    assert found["problems"] == [] and console == []
    assert len(found["charts"]) == 6
    for width, height in found["charts"]:  # drawn at a readable size within the page's 1,100 px column
        assert 500 <= width <= 1100 and 100 <= height <= 900, found["charts"]
    # The probe itself sees what it should: a missing image and a console error.
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<html><head></head><body><img src="http://example.invalid/a.png"><svg width="9" height="9">'
        '</svg><script>console.error("oops")</script></body></html>'
    )
    found, console = probe(chromium, str(broken), tmp_path)
    assert len(found["problems"]) == 1 and found["charts"] == [[9, 9]] and len(console) == 1

    shot = tmp_path / "shot.png"  # kept with the test's files
    browse(chromium, page, "--hide-scrollbars", "--window-size=1200,3000", f"--screenshot={shot}")
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 3000)
    banner_green = (27, 127, 59)  # the succeeded banner's colour: the page's own style applied
    pixels = np.asarray(image).reshape(-1, 3)
    assert (np.abs(pixels - banner_green).sum(axis=1) < 10).sum() > 10_000
    assert len(np.unique(pixels, axis=0)) > 200  # plots drawn, not a blank page


def test_a_report_is_written_again_from_the_warehouse_alone(model_root, warehouse, tmp_path, capsys, gcs):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 300)
    reports = tmp_path / "reports"
    args = [
        f"--date={DAY}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        *warehouse.args,
        f"--report_dir={reports}",
    ]
    assert score.main(args) == 0
    name = page_name(date.fromisoformat(DAY), open_warehouse(warehouse.location, TAXI).name)  # the warehouse's
    written = (reports / name).read_bytes()
    again = [f"--date={DAY}", f"--warehouse={warehouse.location}", f"--report_dir={tmp_path / 'again'}"]
    assert report_cli.main(again) == 0
    assert (tmp_path / "again" / name).read_bytes() == written  # nothing but the warehouse
    folder = f"reports-{uuid.uuid4().hex[:8]}"  # and to a bucket, as on Dataflow
    assert report_cli.main([*again[:2], f"--report_dir=gs://{GCS_BUCKET}/{folder}"]) == 0
    assert gcs.blob(f"{folder}/{name}").download_as_bytes() == written
    assert [b.name for b in gcs.list_blobs(prefix=folder)] == [f"{folder}/{name}"]  # no partial left

    # A refused night's report says so, and what it would have published; the published night is kept.
    capsys.readouterr()
    assert score.main([*args, "--min_records=1000"]) == 3
    assert f"(report: {reports / name})" in capsys.readouterr().err
    refused = (reports / name).read_text()
    assert f"Scoring report {DAY}: refused" in refused and "min_records" in refused
    assert report_cli.main(again) == 0
    assert (tmp_path / "again" / name).read_text() == refused

    capsys.readouterr()
    assert report_cli.main([f"--date={date.fromisoformat(DAY) + timedelta(days=1)}", *again[1:]]) == 2
    assert "no finished scoring run for 2026-11-24" in capsys.readouterr().err


def test_the_report_stays_small_with_every_feature_flagged_over_sixty_nights(typed_trips):
    """The worst case the page can hold: its size depends on features and nights, never on records."""
    kinds = feature_kinds(TAXI)
    rng = np.random.default_rng(5)

    def described(name: str, table: pa.Table):
        sketch = DatasetSketch(kinds)
        for batch in table.to_batches(max_chunksize=4096):
            sketch.add(batch)
        return sketch.to_proto(name)

    night = typed_trips
    stored = statistics_list(
        described(NIGHT, night),
        score_statistics(NIGHT_SCORES, rng.beta(2, 5, 5000), 0.5),
        described(TRAINING, night.slice(0, night.num_rows // 2)),
        score_statistics(EVAL_SCORES, rng.beta(2, 4, 5000), 0.5),
    )
    nights = [date.fromisoformat(DAY) - timedelta(days=n) for n in range(REPORT_DAYS)][::-1]
    drift_rows = [
        {
            "score_date": d,
            "run_id": f"run-{d}",
            "feature": name,
            "baseline": baseline,
            "metric": metric,
            "value": float(rng.uniform(0, 1)),
            "threshold": 0.1,
            "flagged": True,
            "detail": "x" * 200,
        }
        for d in nights
        for name in [*kinds, "score"]
        for baseline in (drift.TRAINING_BASELINE, drift.PREVIOUS_NIGHT)
        for metric in ("jensen_shannon", "psi", "l_infinity", "missing_rate_change", "out_of_vocabulary_share")
    ]
    quality = [
        {
            "score_date": d,
            "input_records": 10**9,
            "rejection_rate": 0.01,
            "score_mean": 0.3,
            "positive_rate": 0.2,
            **{f"score_p{q}": q / 100 for q in (10, 25, 50, 75, 90)},
        }
        for d in nights
    ]
    run = {
        "run_id": f"run-{DAY}",
        "score_date": date.fromisoformat(DAY),
        "status": "refused",
        "model_name": "taxi_tipper",
        "model_version": 1,
        "input_records": 10**9,
        "scored_records": 10**9 - 10**7,
        "rejected_records": 10**7,
        "rejected_files": 3,
        "error": "refused by quality gates: " + "y" * 3000,
        "gates": json.dumps(
            [{"name": f"g{i}", "value": 1.0, "limit": 0.5, "passed": False, "detail": "z"} for i in range(9)]
        ),
        "statistics": base64.b64encode(stored.SerializeToString()).decode(),
    }
    rejections = [{"reason": f"reason_{i}", "error_kind": "record", "records": 10**6 - i} for i in range(300)]
    page = render(NightReport(run, quality, rejections, drift_rows, run["statistics"]))
    assert len(page.encode("utf-8")) < MAX_BYTES
    assert len(re.findall(r"<h3>", page)) == len(kinds) + 1 + 2  # every feature and the score, and the Scores plots
