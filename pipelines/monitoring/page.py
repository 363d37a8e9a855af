"""The night's report page: one self-contained HTML page of aggregates, written after every run
(`write_page`, named by `page_name`) and written again from the warehouse by `python -m pipelines.report`.

Everything on the page comes from the warehouse (`Warehouse.night_report`): the run's row (its
gates, counts and statistics, the training baseline's included), the published nights' quality
and drift, the run's rejections per reason. It holds no record, so its size is bounded by the number
of features and nights (under 2 MB, tested), whatever the night's volume. Its plots are drawn by
`charts`, as inline SVG: the page opens offline.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Collection
from datetime import date
from typing import Any

import numpy as np
from apache_beam.io.filesystems import FileSystems
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipelines.monitoring import charts, drift
from pipelines.monitoring.datasets import EVAL_SCORES, NIGHT, NIGHT_SCORES, TRAINING
from pipelines.monitoring.statistics import SCORE, dataset, feature
from pipelines.warehouses.contract import ABANDONED, FAILED, REFUSED, SUCCEEDED
from pipelines.warehouses.records import NightReport

MAX_REJECTION_REASONS = 15
# Heat map colour: a metric's value over its threshold (1 = at the threshold), capped here.
HEAT_CAP = 3.0
STATUS_COLOURS = {SUCCEEDED: "#1b7f3b", REFUSED: "#b3261e", FAILED: "#b3261e", ABANDONED: "#8a6d00"}


def page_name(score_date: date, warehouse: str) -> str:
    """The page's file name: one per warehouse and date, replaced when the date is scored again. The
    warehouse's name is in it, so that warehouses whose pages share a folder never overwrite each other's."""
    return f"report-{warehouse}-{score_date.isoformat()}.html"


def write_page(report: NightReport, report_dir: str, warehouse: str, not_flagged: Collection[str] = ()) -> str:
    """Renders the page and writes it under `report_dir` (a local folder or gs://...), replacing
    the date's previous page only once the new one is whole. `warehouse`: its name, in the page's;
    `not_flagged`: the use case's features measured but never judged (listed last in the heat map, blank)."""
    path = FileSystems.join(report_dir, page_name(report.run["score_date"], warehouse))
    partial = f"{path}.partial"
    with FileSystems.create(partial, mime_type="text/html") as f:
        f.write(render(report, not_flagged).encode("utf-8"))
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([partial], [path])
    return path


# ---------------------------------------------------------------- the page


def render(report: NightReport, not_flagged: Collection[str] = ()) -> str:
    run = report.run
    stored = statistics_pb2.DatasetFeatureStatisticsList()
    if run.get("statistics"):
        stored.ParseFromString(base64.b64decode(run["statistics"]))
    previous = statistics_pb2.DatasetFeatureStatisticsList()
    if report.previous_statistics:
        previous.ParseFromString(base64.b64decode(report.previous_statistics))
    tonight = [r for r in report.drift if r["run_id"] == run["run_id"]]
    flagged = sorted({r["feature"] for r in tonight if r["flagged"]})
    sections = [
        _banner(run, tonight),
        _section("Volume, rejections and mean score", charts.svg(charts.history(report.quality, run["score_date"]))),
        _section("Rejected records by reason", _rejections(report.rejections)),
        _section("Drift against training, per feature and night", _heat_map(report.drift, run, set(not_flagged))),
        _section("Flagged features", _flagged(flagged, tonight, stored, previous)),
        _section("Scores", _scores(stored, report.quality, run["score_date"])),
    ]
    title = f"Scoring report {run['score_date']}: {run['status']}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style></head>
<body><main>
<h1>{_e(title)}</h1>
{"".join(sections)}
<footer>Run {_e(run["run_id"])}, model {_e(run["model_name"])} v{_e(run["model_version"])}.
Aggregates only: no record is on this page.</footer>
</main></body></html>
"""


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:16px 24px 40px;background:#fff}
h1{font-size:22px;margin:8px 0 16px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:14px;margin:16px 0 4px}
.banner{padding:12px 16px;border-radius:6px;color:#fff} .banner p{margin:4px 0}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left}
th{background:#f0f2f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.fail{color:#b3261e;font-weight:600} .pass{color:#1b7f3b} .note{color:#57606a}
.heat td{width:30px;min-width:30px;height:16px;padding:0 2px;text-align:center;font-size:10px;border:1px solid #fff}
.heat th{font-weight:normal;text-align:right;background:none;border:none;padding:0 6px 0 0;white-space:nowrap}
.heat th.night{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;font-size:11px;padding:4px 0}
.heat td.blank{background:#f0f2f5} .legend td{width:34px}
svg{max-width:100%;height:auto} footer{margin-top:32px;color:#57606a;font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_e(title)}</h2>\n{body}\n</section>\n"


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(header: list[str], rows: list[list[Any]], classes: list[list[str]] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row):
            css = (classes[i][j] if classes else "") or ("num" if isinstance(value, int | float) else "")
            text = _number(value) if isinstance(value, int | float) and not isinstance(value, bool) else _e(value)
            cells.append(f'<td class="{css}">{text}</td>' if css else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _banner(run: dict[str, Any], tonight: list[dict[str, Any]]) -> str:
    status = run["status"]
    colour = STATUS_COLOURS.get(status, "#57606a")
    said = {
        SUCCEEDED: "Published: the night's predictions replaced the date's.",
        REFUSED: "Refused by its quality gates: the date's published rows were left as they were.",
        FAILED: "Failed: the date's published rows were left as they were.",
        ABANDONED: "Abandoned (no sign of life): the date's published rows were left as they were.",
    }.get(status, status)
    counts = ", ".join(
        f"{label} {_number(run.get(name))}"
        for label, name in (
            ("input", "input_records"),
            ("scored", "scored_records"),
            ("rejected", "rejected_records"),
            ("files rejected", "rejected_files"),
        )
        if run.get(name) is not None
    )
    lines = [f"<p><strong>{_e(said)}</strong></p>", f"<p>{_e(counts)}</p>" if counts else ""]
    if run.get("error"):
        lines.append(f"<p>{_e(run['error'])}</p>")
    if run.get("accepted_failures"):
        lines.append(
            f"<p>Published despite failed gates, accepted by {_e(run.get('accepted_by'))}: "
            f"{_e(run['accepted_failures'])}</p>"
        )
    gates = json.loads(run["gates"]) if run.get("gates") else []
    table = (
        _table(
            ["gate", "passed", "value", "limit", "detail"],
            [[g["name"], "yes" if g["passed"] else "NO", *_gate_figures(g), g["detail"]] for g in gates],
            [["", "pass" if g["passed"] else "fail", "", "", ""] for g in gates],
        )
        if gates
        else '<p class="note">No gate results (the run ended before its gates).</p>'
    )
    flagged = sorted({(r["feature"], r["baseline"]) for r in tonight if r["flagged"]})
    drifted = (
        "<p>Drift flagged: " + _e(", ".join(f"{f} (against {b})" for f, b in flagged)) + "</p>"
        if flagged
        else '<p class="note">No feature flagged for drift.</p>'
    )
    return (
        f'<section><div class="banner" style="background:{colour}">{"".join(lines)}</div>'
        f"<h2>Quality gates</h2>{table}{drifted}</section>\n"
    )


def _gate_figures(gate: dict[str, Any]) -> list[Any]:
    """A gate's value and limit as the table shows them; the drift gate's in words (a count of features,
    and whether it refuses), which as bare numbers read "0, limit 0"."""
    if gate["name"] != "drift":
        return [gate["value"], gate["limit"]]
    flagged = gate["value"] or 0
    mode = gate["limit"] if isinstance(gate["limit"], str) else "refuse"  # runs before modes were stored: 0
    return [f"{flagged} feature{'' if flagged == 1 else 's'} flagged", f"gate: {mode}"]


def _rejections(rejections: list[dict[str, Any]]) -> str:
    if not rejections:
        return '<p class="note">No record was rejected.</p>'
    shown = rejections[:MAX_REJECTION_REASONS]
    rest = sum(r["records"] for r in rejections[MAX_REJECTION_REASONS:])
    labels = [f"{r['reason']} ({r['error_kind']})" for r in shown] + (["other reasons"] if rest else [])
    counts = [r["records"] for r in shown] + ([rest] if rest else [])
    table = _table(["reason", "kind", "records"], [[r["reason"], r["error_kind"], r["records"]] for r in rejections])
    return charts.svg(charts.rejections(labels, counts)) + table


def _heat_map(rows: list[dict[str, Any]], run: dict[str, Any], not_flagged: set[str]) -> str:
    """Per feature and night, the largest of its training metrics over their thresholds; a refused
    run's own metrics stand for its night."""
    by_night: dict[date, dict[str, tuple[float, bool]]] = {}
    refused_night = {r["score_date"] for r in rows if r["run_id"] == run["run_id"] and run["status"] != SUCCEEDED}
    for r in rows:
        if r["baseline"] != drift.TRAINING_BASELINE or not r["threshold"]:
            continue
        if r["score_date"] in refused_night and r["run_id"] != run["run_id"]:
            continue  # that night's published metrics; the report is about the refused run's
        cell = by_night.setdefault(r["score_date"], {})
        ratio, flagged = cell.get(r["feature"], (0.0, False))
        cell[r["feature"]] = (max(ratio, r["value"] / r["threshold"]), flagged or r["flagged"])
    if not by_night:
        return (
            '<p class="note">No drift measured yet (a model version without a training baseline, '
            "or --monitoring off).</p>"
        )
    nights = sorted(by_night)
    # Features never judged (the use case's: constant within a night by construction, say) are listed
    # last and left blank: their large values would say nothing.
    measured = {f for cells in by_night.values() for f in cells}
    features = sorted(measured - not_flagged) + sorted(measured & not_flagged)
    return _heat_table(features, nights, by_night, not_flagged)


def _heat_table(
    features: list[str], nights: list[date], cells: dict[date, dict[str, tuple[float, bool]]], not_flagged: set[str]
) -> str:
    """The heat map as an HTML table: a coloured cell per feature and night, its value in the cell's
    title (shown on hover, no script), x where flagged. Cheaper to make than a figure, and crisp."""
    from matplotlib import colormaps

    colours = colormaps["YlOrRd"]

    def colour(ratio: float) -> str:
        r, g, b, _ = colours(min(ratio, HEAT_CAP) / HEAT_CAP)
        return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"

    head = "".join(f'<th class="night">{_e(n.isoformat())}</th>' for n in nights)
    rows = []
    for name in features:
        judged = name not in not_flagged
        tds = []
        for night in nights:
            if not judged or name not in cells[night]:
                tds.append('<td class="blank"></td>')
                continue
            ratio, flagged = cells[night][name]
            tip = f"{name} {night}: largest metric {ratio:.2f} x its threshold" + (", flagged" if flagged else "")
            text = f"{ratio:.1f}" + ("&#215;" if flagged else "")
            tds.append(f'<td style="background:{colour(ratio)}" title="{_e(tip)}">{text}</td>')
        label = _e(name) + ("" if judged else ' <span class="note">(not judged)</span>')
        rows.append(f"<tr><th>{label}</th>{''.join(tds)}</tr>")
    legend = "".join(f'<td style="background:{colour(v)}">{v:g}</td>' for v in np.linspace(0, HEAT_CAP, 7))
    return (
        f'<table class="heat"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f'<p class="note">Each cell: the feature\'s largest drift metric against training over its threshold '
        f"(1.0 = at the threshold; the figure in each cell), &#215; where flagged.</p>"
        f'<table class="heat legend"><tr><th>scale</th>{legend}</tr></table>'
    )


def _flagged(
    flagged: list[str],
    tonight: list[dict[str, Any]],
    stored: statistics_pb2.DatasetFeatureStatisticsList,
    previous: statistics_pb2.DatasetFeatureStatisticsList,
) -> str:
    if not flagged:
        return '<p class="note">No feature flagged tonight.</p>'
    parts = []
    for name in flagged:
        metrics = [r for r in tonight if r["feature"] == name]
        baselines = {r["baseline"] for r in metrics if r["flagged"]}
        night_set, training_set = (NIGHT_SCORES, EVAL_SCORES) if name == SCORE else (NIGHT, TRAINING)
        distributions = {"tonight": _feature(stored, night_set, name)}
        if drift.TRAINING_BASELINE in baselines:
            distributions["baseline"] = _feature(stored, training_set, name)
        if drift.PREVIOUS_NIGHT in baselines:
            distributions["previous_night"] = _feature(previous, night_set, name)
        table = _table(
            ["baseline", "metric", "value", "threshold", "flagged", "detail"],
            [
                [r["baseline"], r["metric"], r["value"], r["threshold"], "yes" if r["flagged"] else "", r["detail"]]
                for r in metrics
            ],
            [["", "", "", "", "fail" if r["flagged"] else "", ""] for r in metrics],
        )
        drawn = {k: v for k, v in distributions.items() if v is not None}
        plot = (
            charts.svg(charts.overlay(name, drawn))
            if len(drawn) > 1
            else '<p class="note">No baseline statistics stored.</p>'
        )
        parts.append(f"<h3>{_e(name)}</h3>{plot}{table}")
    return "".join(parts)


def _feature(statistics: statistics_pb2.DatasetFeatureStatisticsList, name: str, feature_name: str):
    found = dataset(statistics, name)
    if found is None:
        return None
    try:
        return feature(found, feature_name)
    except KeyError:
        return None


def _scores(
    stored: statistics_pb2.DatasetFeatureStatisticsList, quality: list[dict[str, Any]], score_date: date
) -> str:
    parts = []
    edges = {
        label: drift.quantile_edges(found)
        for label, found in (
            ("baseline", _feature(stored, EVAL_SCORES, SCORE)),
            ("tonight", _feature(stored, NIGHT_SCORES, SCORE)),
        )
        if found is not None
    }
    edges = {k: e for k, e in edges.items() if len(e)}
    if edges:
        parts.append("<h3>Tonight's scores against training</h3>" + charts.svg(charts.score_histogram(edges)))
    if quality:
        figure = charts.score_percentiles(quality, score_date)
        parts.append("<h3>Score percentiles per published night</h3>" + charts.svg(figure))
    return "".join(parts) or '<p class="note">No scores yet.</p>'
