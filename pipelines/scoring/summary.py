"""What a scoring job says of itself: each night's summary (its row, with the job's Beam metrics), a
range's summary, and how both are printed and written.
"""

from __future__ import annotations

import json
import os
from typing import Any

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from pipelines import metrics
from pipelines.monitoring import page
from pipelines.observe import distribution_summary, step_seconds
from pipelines.scoring.config import ScoringConfig
from pipelines.warehouses import REFUSED, SUCCEEDED, RunRecord


def _namespace(counters: dict[str, int], namespace: str) -> dict[str, int]:
    return {k.split("/", 1)[1]: v for k, v in counters.items() if k.startswith(namespace + "/")}


def job_metrics(result) -> tuple[dict[str, int], dict[str, Any]]:
    """(counters, counters and distributions) of a pipeline that finished (`result`; None: none)."""
    if result is None:
        return {}, {}
    queried = result.metrics().query(MetricsFilter())
    counters: dict[str, int] = {}
    for m in queried["counters"]:  # one counter may be updated in several steps (staging, both models): summed
        name = f"{m.key.metric.namespace}/{m.key.metric.name}"
        counters[name] = counters.get(name, 0) + (m.committed or 0)
    return counters, {**counters, **distribution_summary(queried["distributions"])}


def summarize(
    config: ScoringConfig,
    run: RunRecord,
    job: tuple[dict[str, int], dict[str, Any]],
    seconds: float,
    reaped: list[dict[str, Any]],
) -> dict[str, Any]:
    """A night's run as its row records it, with the job's Beam metrics (a range's nights share one job,
    so its metrics, step times and timings are the job's, recorded in each night's row)."""
    counters, measured = job
    if measured:
        config.warehouse.record_metrics(run.run_id, measured)
    row = config.warehouse.run_row(run.run_id)
    page_dir = config.monitoring.monitor.page_dir
    return {
        "run_id": row["run_id"],
        "date": row["score_date"].isoformat(),
        "status": row["status"],
        "error": row["error"],
        "gates": json.loads(row["gates"]) if row["gates"] else [],
        "accepted_failures": row["accepted_failures"],
        "accepted_by": row["accepted_by"],
        "reaped_runs": [r["run_id"] for r in reaped],
        "skipped_model_versions": list(config.inference.model.skipped),
        "model_name": row["model_name"],
        "model_version": row["model_version"],
        "challenger_version": row["challenger_version"],
        "comparison": json.loads(row["comparison"]) if row["comparison"] else None,
        "input": row["input"],
        **_counts(row),
        "timings": _timings(row, seconds),
        **_counted(counters),
        # From the warehouse once the night was judged: duplicate keys are resolved there, in SQL.
        "rejected_by_reason": config.warehouse.rejections(run.run_id)
        if row["status"] in (SUCCEEDED, REFUSED)
        else _namespace(counters, metrics.REJECTED_BY_REASON),
        "metrics": measured,
        "warehouse": config.warehouse.location,
        "report_dir": page_dir,
        "report": (
            FileSystems.join(page_dir, page.page_name(row["score_date"], config.warehouse.name))
            if counters.get(metrics.REPORTS_WRITTEN.key, 0) >= len(config.nights)  # every night's written
            else None
        ),
    }


def _counts(row: dict[str, Any]) -> dict[str, Any]:
    """The night's records as the warehouse counted them, and whether they reconcile."""
    scored = row["scored_records"] or 0
    dropped = row["duplicates_dropped"] or 0
    return {
        "input_records": row["input_records"],
        "scored_records": scored,
        "rejected_records": row["rejected_records"],
        "rejected_files": row["rejected_files"],
        "duplicates_dropped": dropped,
        "reconciled": row["input_records"] == scored + (row["rejected_records"] or 0) + dropped,
        "input_files": json.loads(row["input_files"]) if row["input_files"] else {},
    }


def _timings(row: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {
        "started_at": row["started_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "seconds": round(seconds, 3),
        "records_per_second": round(row["input_records"] / seconds, 1) if seconds and row["input_records"] else None,
    }


def _counted(counters: dict[str, int]) -> dict[str, Any]:
    """What only the job's counters know: devices, shards, columns, formats, step times."""
    return {
        "devices": _namespace(counters, metrics.DEVICES),
        "input_ranges": counters.get(metrics.INPUT_SHARDS.key, 0),  # files read whole plus shards of split files
        "missing_columns": _namespace(counters, metrics.MISSING_COLUMNS),
        "unknown_columns": _namespace(counters, metrics.UNKNOWN_COLUMNS),
        "input_looks_like": _namespace(counters, metrics.LOOKS_LIKE),  # files by the format they hold instead
        "stage_seconds": step_seconds(counters),
    }


def causes(summary: dict[str, Any], top: int = 3) -> str:
    """Why records were rejected, for a refusal's one line: the commonest reasons with their counts, and
    files whose content is another format than their name says. The rest is in the report and
    `refused_errors`. (A range's nights share one job's counters, so each names the job's reasons.)"""
    reasons = sorted(((r, n) for r, n in summary["rejected_by_reason"].items() if n), key=lambda i: (-i[1], i[0]))
    parts = []
    if reasons:
        more = f" and {len(reasons) - top} more reasons" if len(reasons) > top else ""
        parts.append("rejected: " + ", ".join(f"{reason} {records}" for reason, records in reasons[:top]) + more)
    for held, files in sorted(summary["input_looks_like"].items()):
        which = "1 file named as another format holds" if files == 1 else f"{files} files named as another format hold"
        parts.append(f"{which} {held.upper()}: pass --input_format {held} or rename {'it' if files == 1 else 'them'}")
    return "".join(f"; {part}" for part in parts)


def range_summary(config: ScoringConfig, nights: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """A range's job: every night's summary, which were published and which refused, and the totals."""
    refused = [night["date"] for night in nights if night["status"] == REFUSED]
    totals = ("input_records", "scored_records", "rejected_records", "duplicates_dropped")
    return {
        "start_date": nights[0]["date"],
        "end_date": nights[-1]["date"],
        "status": REFUSED if refused else nights[0]["status"] if len({n["status"] for n in nights}) == 1 else "mixed",
        "published": [night["date"] for night in nights if night["status"] == SUCCEEDED],
        "refused": refused,
        "reconciled": all(night["reconciled"] for night in nights),
        **{total: sum(night[total] or 0 for night in nights) for total in totals},
        "seconds": round(seconds, 3),
        "stage_seconds": nights[0]["stage_seconds"],
        "warehouse": config.warehouse.location,
        "nights": nights,
    }


def write_summary(path: str | None, summary: dict[str, Any]) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)


def print_night(summary: dict[str, Any], indent: str = "") -> None:
    """A night's outcome, as the terminal or the scheduler's log shows it."""
    outcome = {SUCCEEDED: "", REFUSED: " REFUSED;"}.get(summary["status"], f" {summary['status']};")
    print(
        f"{indent}{summary['date']}:{outcome} input {summary['input_records']} = scored {summary['scored_records']} "
        f"+ rejected {summary['rejected_records']} + duplicates dropped {summary['duplicates_dropped']} "
        f"({'reconciled' if summary['reconciled'] else 'NOT RECONCILED'}, per file too); "
        f"{summary['rejected_files']} files rejected; model {summary['model_name']} v{summary['model_version']}; "
        f"run {summary['run_id']} in {summary['timings']['seconds']} s -> {summary['warehouse']}"
    )
    indent += "  "
    for device, rows in sorted(summary["devices"].items()):
        print(f"{indent}{device}: {rows} records scored")
    if summary["accepted_failures"]:
        accepted = f"accepted by {summary['accepted_by']}: {summary['accepted_failures']}"
        print(f"{indent}published despite failed gates, {accepted}")
    for reason, rows in sorted(summary["rejected_by_reason"].items()):
        print(f"{indent}rejected, {reason}: {rows}")
    for column, rows in sorted(summary["missing_columns"].items()):
        print(f"{indent}records lacking column {column}: {rows}")
    if summary["comparison"]:
        print(f"{indent}champion vs challenger: " + json.dumps(summary["comparison"], sort_keys=True))
    if summary["report"]:
        print(f"{indent}report: {summary['report']}")
    elif summary["report_dir"]:
        print(f"{indent}warning: the night's report was not written (see the log); the night's outcome stands")


def print_summary(summary: dict[str, Any]) -> None:
    if "nights" not in summary:
        print_night(summary)
        return
    print(
        f"{summary['start_date']} to {summary['end_date']}: {len(summary['nights'])} nights in one job, "
        f"{len(summary['published'])} published, {len(summary['refused'])} refused; input {summary['input_records']} "
        f"= scored {summary['scored_records']} + rejected {summary['rejected_records']} + duplicates dropped "
        f"{summary['duplicates_dropped']} ({'reconciled' if summary['reconciled'] else 'NOT RECONCILED'}); "
        f"{summary['seconds']} s -> {summary['warehouse']}"
    )
    for night in summary["nights"]:
        print_night(night, indent="  ")
