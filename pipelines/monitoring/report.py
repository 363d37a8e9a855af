"""A night's report: one self-contained HTML page of aggregates, written after every run.

Everything on the page comes from the warehouse (`Warehouse.night_report`): the run's row (its
gates, counts and statistics, the training baseline's included), the published nights' quality
and drift, the run's rejections per reason. It holds no record, so its size is bounded by the number
of features and nights (under 2 MB, tested), whatever the night's volume.

The plots are matplotlib figures inlined as SVG: no script and no style from the network, so the
page opens offline, in a mail attachment or a bucket's browser. (Plotly or Vega would need a
few MB of JavaScript embedded in every page or fetched from a CDN, which a page for every night
cannot afford.)
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from apache_beam.io.filesystems import FileSystems
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipelines.monitoring import drift
from pipelines.monitoring.statistics import EVAL_SCORES, NIGHT, NIGHT_SCORES, SCORE, TRAINING, dataset, feature
from pipelines.warehouses.contract import ABANDONED, FAILED, REFUSED, SUCCEEDED, NightReport
from pipelines.warehouses.sql import SCORE_PERCENTILES
from schemas import DRIFT_NOT_FLAGGED

if TYPE_CHECKING:  # matplotlib is imported where a page is drawn: a command's --help does not wait for it
    from matplotlib.figure import Figure

MAX_REJECTION_REASONS = 15
TOP_CATEGORIES = 12  # values drawn for a flagged category
HISTOGRAM_BINS = 30
# Heat map colour: a metric's value over its threshold (1 = at the threshold), capped here.
HEAT_CAP = 3.0
STATUS_COLOURS = {SUCCEEDED: "#1b7f3b", REFUSED: "#b3261e", FAILED: "#b3261e", ABANDONED: "#8a6d00"}
PALETTE = {"baseline": "#6b7280", "previous_night": "#9bb0d6", "tonight": "#d9480f"}
_SVG_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "night-report", "font.size": 9}


def report_name(score_date: date) -> str:
    return f"report-{score_date.isoformat()}.html"


def write_report(report: NightReport, report_dir: str) -> str:
    """Renders the report and writes it under `report_dir` (a local folder or gs://...), replacing
    the date's previous report only once the new one is whole."""
    path = FileSystems.join(report_dir, report_name(report.run["score_date"]))
    partial = f"{path}.partial"
    with FileSystems.create(partial, mime_type="text/html") as f:
        f.write(render(report).encode("utf-8"))
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([partial], [path])
    return path


# ---------------------------------------------------------------- the page


def render(report: NightReport) -> str:
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
        _section("Volume, rejections and mean score", _svg(_history(report.quality, run["score_date"]))),
        _section("Rejected records by reason", _rejections(report.rejections)),
        _section("Drift against training, per feature and night", _heat_map(report.drift, run)),
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


# ---------------------------------------------------------------- plots


def _svg(figure: Figure | None) -> str:
    """The figure as inline SVG (text kept as text, no external reference), or a note when empty."""
    if figure is None:
        return '<p class="note">Nothing to plot yet.</p>'
    from matplotlib import rc_context

    buffer = io.StringIO()
    with rc_context(_SVG_STYLE):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # no XML prolog or DOCTYPE inside HTML


def _figure(
    width: float, height: float, rows: int = 1, left: float = 0.8, bottom: float = 0.55, right: float = 0.2, **kwargs
) -> tuple[Figure, Any]:
    """A figure with fixed margins, in inches: a layout engine or a tight bounding box would lay the
    figure out by drawing it, which costs more than the drawing itself."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context(_SVG_STYLE):
        figure = Figure(figsize=(width, height))
        axes = figure.subplots(rows, 1, squeeze=False, **kwargs)
        figure.subplots_adjust(
            left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - 0.15 / height, hspace=0.12
        )
    return figure, axes


def _label_inches(labels: list[str]) -> float:
    """Room for the longest tick label, at the page's 9-point font."""
    return 0.3 + 0.065 * max((len(label) for label in labels), default=4)


def _nightly_axis(ax: Any, nights: list[date]) -> None:
    """Dates as days, about ten labels whatever the span (a single night too: half a day either side)."""
    from matplotlib import dates as mdates

    first, last = (datetime.combine(d, datetime.min.time()) for d in (nights[0], nights[-1]))
    ax.set_xlim(first - timedelta(hours=12), last + timedelta(hours=12))
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, len(nights) // 10)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax.tick_params(axis="x", labelrotation=45)


def _history(quality: list[dict[str, Any]], score_date: date) -> Figure | None:
    if not quality:
        return None
    nights = [q["score_date"] for q in quality]
    figure, axes = _figure(10, 5.4, 3, bottom=0.95, sharex=True)
    volume, rejection, mean = axes[:, 0]
    volume.bar(nights, [q["input_records"] or 0 for q in quality], color="#4c78a8", width=0.8)
    volume.set_ylabel("input records")
    rejection.plot(nights, [100 * (q["rejection_rate"] or 0.0) for q in quality], marker=".", color="#b3261e")
    rejection.set_ylabel("rejected %")
    mean.plot(nights, [q["score_mean"] for q in quality], marker=".", color="#1f2328", label="mean score")
    mean.plot(nights, [q["positive_rate"] for q in quality], marker=".", color="#d9480f", label="labelled positive")
    mean.set_ylabel("share")
    mean.legend(loc="upper left", fontsize=8)
    # Counts, percentages and shares: no axis goes below 0, however flat the history (a first night's
    # 0% rejected would otherwise centre the axis on 0, from -0.05 to 0.05).
    volume.set_ylim(bottom=0)
    rejection.set_ylim(0, max(1.0, 1.1 * max(100 * (q["rejection_rate"] or 0.0) for q in quality)))
    mean.set_ylim(0, 1)
    for ax in axes[:, 0]:
        ax.grid(alpha=0.3)
        if score_date in nights:
            ax.axvline(score_date, color="#d9480f", linestyle="--", linewidth=1)
    _nightly_axis(mean, nights)
    return figure


def _rejections(rejections: list[dict[str, Any]]) -> str:
    if not rejections:
        return '<p class="note">No record was rejected.</p>'
    shown = rejections[:MAX_REJECTION_REASONS]
    rest = sum(r["records"] for r in rejections[MAX_REJECTION_REASONS:])
    labels = [f"{r['reason']} ({r['error_kind']})" for r in shown] + (["other reasons"] if rest else [])
    counts = [r["records"] for r in shown] + ([rest] if rest else [])
    figure, axes = _figure(8, 0.35 * len(labels) + 0.8, left=_label_inches(labels), right=0.6)
    ax = axes[0, 0]
    ax.barh(labels[::-1], counts[::-1], color="#b3261e")
    ax.set_xlabel("records rejected")
    for y, count in enumerate(counts[::-1]):
        ax.annotate(f"{count:,}", (count, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    table = _table(["reason", "kind", "records"], [[r["reason"], r["error_kind"], r["records"]] for r in rejections])
    return _svg(figure) + table


def _heat_map(rows: list[dict[str, Any]], run: dict[str, Any]) -> str:
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
    # Features never judged (schemas.DRIFT_NOT_FLAGGED: constant within a night by construction) are
    # listed last and left blank: their large values would say nothing.
    measured = {f for cells in by_night.values() for f in cells}
    features = sorted(measured - DRIFT_NOT_FLAGGED.keys()) + sorted(measured & DRIFT_NOT_FLAGGED.keys())
    return _heat_table(features, nights, by_night)


def _heat_table(features: list[str], nights: list[date], cells: dict[date, dict[str, tuple[float, bool]]]) -> str:
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
        judged = name not in DRIFT_NOT_FLAGGED
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
        plot = _svg(_overlay(name, drawn)) if len(drawn) > 1 else '<p class="note">No baseline statistics stored.</p>'
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


def _overlay(name: str, distributions: dict[str, statistics_pb2.FeatureNameStatistics]) -> Figure:
    if all(d.HasField("num_stats") for d in distributions.values()):
        figure, axes = _figure(8, 2.8)
        ax = axes[0, 0]
        edges = {k: drift.quantile_edges(d) for k, d in distributions.items()}
        _histograms(ax, {k: e for k, e in edges.items() if len(e)}, HISTOGRAM_BINS)
        ax.set_xlabel(name)
        ax.set_ylabel("share of values")
    else:
        shares = {k: drift.category_frequencies(d) for k, d in distributions.items()}
        values = sorted(
            {v for s in shares.values() for v in s}, key=lambda v: -max(s.get(v, 0.0) for s in shares.values())
        )[:TOP_CATEGORIES]
        labels = [str(v)[:40] for v in values]
        figure, axes = _figure(8, 0.3 * len(values) + 1.0, left=_label_inches(labels))
        ax = axes[0, 0]
        width = 0.8 / len(shares)
        for n, (label, share) in enumerate(shares.items()):
            ax.barh(
                np.arange(len(values)) + n * width,
                [share.get(v, 0.0) for v in values],
                height=width,
                color=PALETTE[label],
                label=label.replace("_", " "),
            )
        ax.set_yticks(np.arange(len(values)) + 0.4 - width / 2, labels)
        ax.invert_yaxis()
        ax.set_xlabel("share of values")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def _histograms(
    ax: Any, edges: dict[str, np.ndarray], bins: int, low: float | None = None, high: float | None = None
) -> None:
    """Each distribution's share per equal-width bin, from its quantiles (drift.share_below)."""
    # The 1st to 99th percentiles of every side: one extreme value must not squash the rest.
    low = np.min([np.quantile(e, 0.01) for e in edges.values()]) if low is None else low
    high = np.max([np.quantile(e, 0.99) for e in edges.values()]) if high is None else high
    if not high > low:
        everything = np.concatenate(list(edges.values()))  # one value throughout: a bin around it
        low, high = float(everything.min()) - 0.5, float(everything.max()) + 0.5
    cuts = np.linspace(low, high, bins + 1)
    for label, e in edges.items():
        shares = np.diff(drift.share_below(e, cuts))
        ax.stairs(
            shares,
            cuts,
            label=label.replace("_", " "),
            color=PALETTE[label],
            linewidth=1.6,
            fill=label == "baseline",
            alpha=0.45 if label == "baseline" else 1.0,
        )


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
        figure, axes = _figure(8, 2.8)
        ax = axes[0, 0]
        _histograms(ax, edges, 20, 0.0, 1.0)
        ax.set_xlabel("score (baseline: the training run's eval split)")
        ax.set_ylabel("share of records")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        parts.append("<h3>Tonight's scores against training</h3>" + _svg(figure))
    if quality:
        nights = [q["score_date"] for q in quality]
        figure, axes = _figure(10, 3.2, bottom=0.95)
        ax = axes[0, 0]
        outer, inner = (SCORE_PERCENTILES[0], SCORE_PERCENTILES[-1]), (SCORE_PERCENTILES[1], SCORE_PERCENTILES[-2])
        for (low, high), colour, width in ((outer, "#9bb0d6", 4), (inner, "#4c78a8", 10)):
            lows, highs = [q[f"score_p{low}"] for q in quality], [q[f"score_p{high}"] for q in quality]
            if len(nights) > 1:
                ax.fill_between(nights, lows, highs, color=colour, alpha=0.5, label=f"p{low}-p{high}")
            else:  # a band needs two nights: one night's spread is drawn as a bar
                ax.vlines(nights, lows, highs, color=colour, linewidth=width, label=f"p{low}-p{high}")
        ax.plot(nights, [q["score_p50"] for q in quality], color="#1f2328", marker="o", markersize=3, label="median")
        ax.set_ylim(0, 1)
        if score_date in nights:
            ax.axvline(score_date, color="#d9480f", linestyle="--", linewidth=1)
        ax.set_ylabel("score")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
        _nightly_axis(ax, nights)
        parts.append("<h3>Score percentiles per published night</h3>" + _svg(figure))
    return "".join(parts) or '<p class="note">No scores yet.</p>'
