"""Runs killed at random moments leave a date whole, and the next run cleans up after them.

A SIGKILL (the OOM killer, a preempted machine, an operator's `kill -9`) gives a run no chance to mark
itself failed or delete what it staged, and it can land at any moment: while the run plans, records
itself, scores, stages, publishes, or after its commit while it tidies up. The README promises that
the date then holds the previous night or the killed run's night, never a mix, and that the next run
reaps the killed one (`abandoned`, its staged files and BigQuery staging tables deleted) once its
heartbeat is older than `--stale_after`.

So, on DuckDB and on the BigQuery emulator: two nights of one date with disjoint keys and different
malformed lines ("old" and "new"), runs of one of them started as the command runs and killed after a
delay drawn between 0 and a little past an unkilled run's wall time (stratified, so that even two
kills fall one in each half of the run). After each kill the date must hold exactly one of the two
nights, written by one succeeded run; after the next run (exit 0) exactly that run's night, its counts
equal to the test's own count of the file it wrote, no run left `running` and nothing staged left.
Each iteration targets the other night, so every kill has two states to tell apart.

`.ci/run` makes FAULT_KILLS=2 kills per warehouse; FAULT_KILLS=50 makes many. The seed is printed and
named in every failure; FAULT_SEED=<seed> draws the same delays again (as fractions of the run's
measured wall time, measured again whenever a run ends before its kill). A killed run's phase (no row
yet, running with or without staged files or staging tables, succeeded) is printed for each kill.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipelines import score
from tests.conftest import REPO, write_partition

DAY = "2026-11-23"
STALE_AFTER = 1.5  # seconds: the least --stale_after allows, so that a killed run can be reaped soon
PAST_THE_END = 1.05  # delays reach a little past an unkilled run's wall time: after its commit too
KILLS = int(os.environ.get("FAULT_KILLS", "2"))
SEED = int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(2**32))
RECORDS = {"old": 6000, "new": 4800}  # different sizes, within the shrink gate of each other
BROKEN = {"old": 3, "new": 5}  # malformed lines appended: within the 1% rejection gate


@dataclass(frozen=True)
class Night:
    """One night of DAY as the test wrote it: what publishing it must leave, by the test's own count."""

    name: str
    pattern: str  # --input
    keys: frozenset[str]  # trip ids of its well-formed records
    broken: frozenset[str]  # its malformed lines as written: scoring_errors.raw_record
    records: int  # records in its file (lines after the header)


@dataclass(frozen=True)
class DateRows:
    """What the warehouse holds for DAY, as an analyst reads it."""

    keys: list[str]
    broken: list[str]
    rejected: int  # SUM(scoring_errors.records)
    run_ids: set[str]  # of its predictions, errors and drift rows

    def matches(self, night: Night) -> bool:
        return set(self.keys) == night.keys and set(self.broken) == night.broken

    def describe(self, nights: tuple[Night, ...]) -> str:
        """Where the rows came from, night by night: what a mix looks like."""
        parts = []
        for what, found, of in (("keys", self.keys, "keys"), ("malformed lines", self.broken, "broken")):
            counts = Counter(next((n.name for n in nights if v in getattr(n, of)), "neither") for v in found)
            parts.append(f"{len(found)} {what} ({', '.join(f'{k}: {c}' for k, c in sorted(counts.items()))})")
        return f"{'; '.join(parts)}; run ids {sorted(self.run_ids)}"


def write_nights(tmp_path: Path) -> tuple[Night, Night]:
    """Two nights of DAY: one generated partition cut in two, so their keys are disjoint, each with its
    own malformed lines appended."""
    paths = write_partition(tmp_path / "made", DAY, RECORDS["old"] + RECORDS["new"], rows_per_file=RECORDS["old"])
    nights = []
    for name, path in zip(("old", "new"), paths, strict=True):
        folder = tmp_path / name / f"dt={DAY}"
        folder.mkdir(parents=True)
        file = folder / "trips.csv"
        os.rename(path, file)
        broken = [f"broken,{name},{n}" for n in range(BROKEN[name])]
        with open(file, "a") as f:
            f.writelines(f"{line}\n" for line in broken)
        with open(file, newline="") as f:
            records = list(csv.reader(f))[1:]
        keys = frozenset(r[0] for r in records if len(r) > 3)
        assert len(keys) == RECORDS[name] and len(records) == RECORDS[name] + len(broken)
        nights.append(Night(name, f"{tmp_path / name}/dt={{date}}/*.csv", keys, frozenset(broken), len(records)))
    return nights[0], nights[1]


def score_args(night: Night, model_root: str, warehouse, summary: Path) -> list[str]:
    return [
        f"--date={DAY}",
        f"--input={night.pattern}",
        f"--model_root={model_root}",
        f"--stale_after={STALE_AFTER}s",
        f"--summary_json={summary}",
        *warehouse.args,
    ]


def start(night: Night, model_root: str, warehouse, tmp_path: Path, log: Path) -> subprocess.Popen:
    """The scorer as a command, its output in `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines.score", *score_args(night, model_root, warehouse, tmp_path / "cmd.json")],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def date_rows(warehouse) -> DateRows:
    day = date.fromisoformat(DAY)
    predictions = warehouse.rows("SELECT trip_id, run_id FROM predictions WHERE score_date = ?", day)
    errors = warehouse.rows("SELECT raw_record, records, run_id FROM scoring_errors WHERE score_date = ?", day)
    drift = warehouse.rows("SELECT DISTINCT run_id FROM feature_drift WHERE score_date = ?", day)
    return DateRows(
        keys=[k for k, _ in predictions],
        broken=[r for r, _, _ in errors],
        rejected=sum(n for _, n, _ in errors),
        run_ids={r for *_, r in predictions} | {r for *_, r in errors} | {r for (r,) in drift},
    )


def whole_night(warehouse, nights: tuple[Night, ...]) -> tuple[Night, str]:
    """The one night the date holds, all of it, once, written by one run that is marked succeeded; and
    that run. AssertionError, saying what the date holds, if it holds anything else."""
    rows = date_rows(warehouse)
    held = [night for night in nights if rows.matches(night)]
    assert held, f"the date holds none of {[n.name for n in nights]} whole: {rows.describe(nights)}"
    assert len(rows.keys) == len(set(rows.keys)), f"a key published twice: {rows.describe(nights)}"
    assert len(rows.run_ids) == 1, f"the date's rows come from several runs: {rows.describe(nights)}"
    [run_id] = rows.run_ids
    # Read after the rows: a commit landing in between (a killed client's BigQuery job) shows succeeded here.
    assert runs(warehouse).get(run_id) == "succeeded", f"the date's rows are of run {run_id}, not succeeded"
    return held[0], run_id


def runs(warehouse) -> dict[str, str]:
    return dict(warehouse.rows("SELECT run_id, status FROM scoring_runs"))


def staged_files(warehouse, run_id: str = "") -> list[str]:
    return [p for p in glob.glob(f"{warehouse.staging}/{run_id}/**", recursive=True) if os.path.isfile(p)]


def staging_tables(warehouse) -> list[str]:
    """BigQuery's staging tables in the dataset (DuckDB stages none that outlive a process)."""
    if warehouse.kind != "bigquery":
        return []
    tables = warehouse.client.list_tables(warehouse.location.removeprefix("bq://"))
    return sorted(t.table_id for t in tables if t.table_id.startswith("_staging_"))


def of_run(tables: list[str], run_id: str) -> list[str]:
    return [t for t in tables if t.startswith(f"_staging_{run_id.replace('-', '_')}_")]


def phase(ended: int | None, status: str | None, files: list[str], tables: list[str]) -> str:
    """Where the kill landed, as what it left tells: no row yet, running (nothing staged, files staged,
    staging tables loaded: publishing), or succeeded (after the commit)."""
    if ended is not None:
        return f"ended by itself (exit {ended}) before the kill"
    if status is None:
        return "planning: no run row yet"
    if status == "running":
        if tables:
            return "publishing: staging tables loaded"
        return "running: files staged" if files else "running: nothing staged"
    return f"{status}: after the commit" + (", staged files left" if files or tables else ", cleaned up")


@contextlib.contextmanager
def told(what: str) -> Iterator[None]:
    """Failures inside name the draw that made them, so that FAULT_SEED repeats it."""
    try:
        yield
    except AssertionError as e:
        e.add_note(what)
        raise


@dataclass(frozen=True)
class Kill:
    """A run of a night started as the command and SIGKILLed after a delay, and what it left."""

    ended: int | None  # its exit code if it ended by itself first
    seconds: float  # how long it ran
    killed_at: float  # time.monotonic()
    run_id: str | None  # its row, if it got as far as recording one
    status: str | None
    where: str
    log: Path


def kill_after(delay: float, night: Night, model_root: str, warehouse, tmp_path: Path, log: Path) -> Kill:
    before = runs(warehouse)
    started = time.monotonic()
    proc = start(night, model_root, warehouse, tmp_path, log)
    try:
        ended = proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        ended = None
    killed_at = time.monotonic()
    [run_id] = [r for r in runs(warehouse) if r not in before] or [None]
    files = staged_files(warehouse, run_id) if run_id else []
    tables = of_run(staging_tables(warehouse), run_id) if run_id else []
    status = runs(warehouse).get(run_id)
    where = phase(ended, status, files, tables)
    return Kill(ended, killed_at - started, killed_at, run_id, status, where, log)


def check_right_after(warehouse, kill: Kill, held: Night, target: Night) -> Night:
    """The date holds the night it held or the killed run's, whole: the killed run's if and only if
    that run committed. Returns the night it holds."""
    assert kill.ended in (None, 0), f"the run exited {kill.ended} by itself"
    committed = runs(warehouse).get(kill.run_id) == "succeeded"  # read first: a commit is seen below
    now_held, writer = whole_night(warehouse, (held, target))
    assert (now_held is target) == (writer == kill.run_id), f"{now_held.name} night by run {writer}"
    assert now_held is target or not committed, f"run {kill.run_id} succeeded, its night is not there"
    return now_held


def check_after_next_run(warehouse, kill: Kill, target: Night, nights: tuple[Night, ...], done: dict) -> str:
    """The next run published its night whole, its counts reconcile, the killed run is no longer
    running (reaped if it was), and nothing either staged is left. Returns the killed run's status."""
    now_held, run_id = whole_night(warehouse, nights)
    assert now_held is target, f"the date holds the {now_held.name} night, not the {target.name} one"
    assert run_id == done["run_id"], f"the date's rows are of run {run_id}, not of the next run {done['run_id']}"
    check_counts(warehouse, run_id, target)
    after = runs(warehouse)
    assert [r for r, s in after.items() if s == "running"] == [], f"runs left running: {after}"
    if kill.status == "running":  # killed before its commit: reaped (or its BigQuery job committed after all)
        assert after[kill.run_id] in ("abandoned", "succeeded"), after[kill.run_id]
        assert (after[kill.run_id] == "abandoned") == (kill.run_id in done["reaped_runs"]), done["reaped_runs"]
    elif kill.run_id is not None:
        assert after[kill.run_id] == kill.status, f"run {kill.run_id} was {kill.status}, now {after[kill.run_id]}"
    assert staged_files(warehouse) == [], f"staged files left: {staged_files(warehouse)}"
    left = staging_tables(warehouse)
    for run, state in after.items():
        if state != "succeeded" or run == run_id:  # a published run's tables expire on their own
            assert of_run(left, run) == [], f"staging tables of {state} run {run} left: {left}"
    return after.get(kill.run_id, "-") if kill.run_id else "-"


def check_counts(warehouse, run_id: str, night: Night) -> None:
    """The run's recorded counts against the test's own count of the file it wrote, and against the rows
    the date holds: input = scored + rejected + duplicates dropped."""
    [(inputs, scored, rejected, duplicates)] = warehouse.rows(
        "SELECT input_records, scored_records, rejected_records, duplicates_dropped FROM scoring_runs WHERE run_id = ?",
        run_id,
    )
    rows = date_rows(warehouse)
    assert (inputs, scored, rejected, duplicates) == (night.records, len(night.keys), len(night.broken), 0)
    assert inputs == scored + rejected + duplicates == len(rows.keys) + rows.rejected


def test_runs_killed_at_random_moments_leave_one_whole_night(model_root, tmp_path, warehouse):
    nights = write_nights(tmp_path)
    summary = tmp_path / "summary.json"

    # One unkilled run as a command: the night to replace, and the wall time the kills are drawn over.
    log = tmp_path / "measured.log"
    t0 = time.monotonic()
    proc = start(nights[1], model_root, warehouse, tmp_path, log)
    assert proc.wait(timeout=600) == 0, tail(log)
    wall = time.monotonic() - t0
    held, _ = whole_night(warehouse, nights)
    assert held is nights[1] and staged_files(warehouse) == [] and staging_tables(warehouse) == []

    rng = random.Random(SEED)
    fractions = [(i + rng.random()) / KILLS for i in range(KILLS)]  # one in each slice of the run
    rng.shuffle(fractions)
    seen = []
    for i, fraction in enumerate(fractions):
        target = nights[0] if held is nights[1] else nights[1]
        delay = fraction * PAST_THE_END * wall
        draw = (
            f"{warehouse.kind}, FAULT_SEED={SEED}, kill {i + 1} of {KILLS}: after {delay:.2f} s "
            f"({fraction * PAST_THE_END:.3f} of an unkilled run's {wall:.2f} s), {held.name} -> {target.name}"
        )
        with told(draw):
            kill = kill_after(delay, target, model_root, warehouse, tmp_path, tmp_path / f"kill-{i}.log")
        if kill.ended == 0:  # a fresh measure of an unkilled run, under the machine's load now
            wall = kill.seconds
        draw += f"; landed {kill.where}; the killed run's output:\n{tail(kill.log)}"
        with told(f"{draw}\nfailed right after the kill"):
            check_right_after(warehouse, kill, held, target)
        time.sleep(max(0.0, kill.killed_at + STALE_AFTER + 0.3 - time.monotonic()))  # past its window
        with told(f"{draw}\nfailed after the next run"):
            code = score.main(score_args(target, model_root, warehouse, summary))
            assert code == 0, f"the next run exited {code}"
            then = check_after_next_run(warehouse, kill, target, nights, json.loads(summary.read_text()))
        seen.append((round(delay, 2), kill.where, then))
        held = target

    print(f"\n{warehouse.kind}: FAULT_SEED={SEED}, unkilled run {wall:.2f} s; kills (delay s, where, then):")
    for delay, where, then in sorted(seen):
        print(f"  {delay:7.2f}  {where}  -> {then}")
    for where, n in Counter(where for _, where, _ in seen).most_common():
        print(f"  {n:3d} x {where}")
