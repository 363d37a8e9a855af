"""The statements on a run's row in `scoring_runs`: record it, update it (heartbeat, failure, metrics,
completion), read it, find the stale and abandon them. Every step of the life cycle writes its run's
row through these, and the publishing transaction completes the run with `update_run` too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.warehouses.dialect import Dialect, Param, Statement
from schemas import SCORING_RUNS, ColumnType

RUNNING, SUCCEEDED = "running", "succeeded"  # values of scoring_runs.status (all of them: contract)


# A value of update_run: the warehouse's clock when the statement runs. The publishing transaction
# stamps `finished_at` with it, so that the stamp is the commit's time however long publishing waited.
class _CommitTime:
    def __repr__(self) -> str:
        return "COMMIT_TIME"


COMMIT_TIME = _CommitTime()


def run_params(values: Mapping[str, Any]) -> dict[str, Param]:
    """Values of `scoring_runs` columns, typed by their columns."""
    return {name: (SCORING_RUNS.field(name).type, value) for name, value in values.items() if value is not COMMIT_TIME}


def insert_run(d: Dialect, values: Mapping[str, Any]) -> Statement:
    columns = ", ".join(d.quote(name) for name in values)
    params = ", ".join(d.param(name) for name in values)
    return Statement(f"INSERT INTO {d.table(SCORING_RUNS.name)} ({columns}) VALUES ({params})", run_params(values))


def update_run(
    d: Dialect, run_id: str | Sequence[str], values: Mapping[str, Any], while_status: str | None = None
) -> Statement:
    """Set `values` on the run's row (or on each of several runs' rows: a range's nights, in one
    statement); with `while_status`, only while a run still has that status."""
    assignments = ", ".join(
        f"{d.quote(name)} = {'CURRENT_TIMESTAMP' if value is COMMIT_TIME else d.param(name)}"
        for name, value in values.items()
    )
    if isinstance(run_id, str) or len(run_id) == 1:
        params = run_params({**values, "run_id": run_id if isinstance(run_id, str) else run_id[0]})
        where = f"{d.quote('run_id')} = {d.param('run_id')}"
    else:
        ids = {f"run_id_{i}": (ColumnType.STRING, one) for i, one in enumerate(run_id)}
        params = {**run_params(values), **ids}
        where = f"{d.quote('run_id')} IN ({', '.join(d.param(name) for name in ids)})"
    if while_status is not None:
        where += f" AND {d.quote('status')} = {d.param('while_status')}"
        params["while_status"] = (ColumnType.STRING, while_status)
    return Statement(f"UPDATE {d.table(SCORING_RUNS.name)} SET {assignments} WHERE {where}", params)


def select_run(d: Dialect, run_id: str) -> Statement:
    return Statement(
        f"SELECT * FROM {d.table(SCORING_RUNS.name)} WHERE {d.quote('run_id')} = {d.param('run_id')}",
        run_params({"run_id": run_id}),
    )


def latest_finished_run(d: Dialect, score_date) -> Statement:
    """The date's most recent run that has finished, whatever its outcome: the one a report describes."""
    p = d.param
    return Statement(
        f"SELECT * FROM {d.table(SCORING_RUNS.name)} WHERE score_date = {p('score_date')} "
        f"AND status != {p('running')} ORDER BY started_at DESC LIMIT 1",
        {"score_date": (ColumnType.DATE, score_date), "running": (ColumnType.STRING, RUNNING)},
    )


def abandon_run(d: Dialect, run_id: str, values: Mapping[str, Any], cutoff) -> Statement:
    """`values` on a run that is still running and still silent since `cutoff`, in one statement."""
    statement = update_run(d, run_id, values, while_status=RUNNING)
    return Statement(
        f"{statement.sql} AND COALESCE(heartbeat_at, started_at) < {d.param('cutoff')}",
        {**statement.params, "cutoff": (ColumnType.TIMESTAMP, cutoff)},
    )


def stale_runs(d: Dialect, cutoff) -> Statement:
    """Running runs with no sign of life since `cutoff`."""
    p = d.param
    last_seen = "COALESCE(heartbeat_at, started_at)"
    return Statement(
        f"SELECT run_id, score_date, options, {last_seen} AS last_seen FROM {d.table(SCORING_RUNS.name)} "
        f"WHERE status = {p('running')} AND {last_seen} < {p('cutoff')}",
        {"running": (ColumnType.STRING, RUNNING), "cutoff": (ColumnType.TIMESTAMP, cutoff)},
    )
