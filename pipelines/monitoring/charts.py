"""The charts of the night's report page (`page`): matplotlib figures inlined as SVG, each drawn from
aggregates the page already holds: the published nights' history, rejections per reason, a flagged
feature's distributions against its baselines, the scores.

Inline SVG, not a plotting library's JavaScript: no script and no style from the network, so the page
opens offline, in a mail attachment or a bucket's browser. (Plotly or Vega would need a few MB of
JavaScript embedded in every page or fetched from a CDN, which a page for every night cannot afford.)
Apart from the page's HTML because figures, axes and rc settings are matplotlib's world, imported only
where a page is drawn.
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipelines.monitoring import drift, quantiles
from pipelines.warehouses.sql import SCORE_PERCENTILES

if TYPE_CHECKING:  # matplotlib is imported where a page is drawn: a command's --help does not wait for it
    from matplotlib.figure import Figure

TOP_CATEGORIES = 12  # values drawn for a flagged category
HISTOGRAM_BINS = 30
PALETTE = {"baseline": "#6b7280", "previous_night": "#9bb0d6", "tonight": "#d9480f"}
_SVG_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "night-report", "font.size": 9}


def svg(figure: Figure | None) -> str:
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


def history(quality: list[dict[str, Any]], score_date: date) -> Figure | None:
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


def rejections(labels: list[str], counts: list[int]) -> Figure:
    """Records rejected per reason, the largest on top, each bar with its count."""
    figure, axes = _figure(8, 0.35 * len(labels) + 0.8, left=_label_inches(labels), right=0.6)
    ax = axes[0, 0]
    ax.barh(labels[::-1], counts[::-1], color="#b3261e")
    ax.set_xlabel("records rejected")
    for y, count in enumerate(counts[::-1]):
        ax.annotate(f"{count:,}", (count, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    return figure


def overlay(name: str, distributions: dict[str, statistics_pb2.FeatureNameStatistics]) -> Figure:
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
    """Each distribution's share per equal-width bin, from its quantiles (quantiles.share_below)."""
    # The 1st to 99th percentiles of every side: one extreme value must not squash the rest.
    low = np.min([np.quantile(e, 0.01) for e in edges.values()]) if low is None else low
    high = np.max([np.quantile(e, 0.99) for e in edges.values()]) if high is None else high
    if not high > low:
        everything = np.concatenate(list(edges.values()))  # one value throughout: a bin around it
        low, high = float(everything.min()) - 0.5, float(everything.max()) + 0.5
    cuts = np.linspace(low, high, bins + 1)
    for label, e in edges.items():
        shares = np.diff(quantiles.share_below(e, cuts))
        ax.stairs(
            shares,
            cuts,
            label=label.replace("_", " "),
            color=PALETTE[label],
            linewidth=1.6,
            fill=label == "baseline",
            alpha=0.45 if label == "baseline" else 1.0,
        )


def score_histogram(edges: dict[str, np.ndarray]) -> Figure:
    """Tonight's scores against the training run's eval split, by their quantile edges."""
    figure, axes = _figure(8, 2.8)
    ax = axes[0, 0]
    _histograms(ax, edges, 20, 0.0, 1.0)
    ax.set_xlabel("score (baseline: the training run's eval split)")
    ax.set_ylabel("share of records")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def score_percentiles(quality: list[dict[str, Any]], score_date: date) -> Figure:
    """The champion's score percentiles per published night: two bands and the median."""
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
    return figure
