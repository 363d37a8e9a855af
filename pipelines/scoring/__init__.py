"""Scoring's work, behind `python -m pipelines.score` (pipelines/score.py, the command):

    plan.py       options -> a frozen ScoringConfig (config.py), every check before data
    placement.py  where the workers run, and so where staged files and pages go
    graph.py      extract -> validate -> score -> monitor -> load
    job.py        run, dry run, signals, heartbeat, reaping, exit codes
    summary.py    each night's summary, a range's, printed and written

Importing this package loads Beam and the steps; the command imports it only once its options are
checked.
"""

from __future__ import annotations

from pipelines.scoring.config import ScoringConfig
from pipelines.scoring.graph import build_pipeline
from pipelines.scoring.job import Refused, RunFailed, SigtermGuard, main, run_job
from pipelines.scoring.placement import workers_here
from pipelines.scoring.plan import parse_date, plan, who_runs

__all__ = [
    "Refused",
    "RunFailed",
    "ScoringConfig",
    "SigtermGuard",
    "build_pipeline",
    "main",
    "parse_date",
    "plan",
    "run_job",
    "who_runs",
    "workers_here",
]
