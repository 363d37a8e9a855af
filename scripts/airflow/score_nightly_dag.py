"""Nightly batch scoring on Cloud Composer (Airflow 2.x or 3.x with the Google provider).

Launches the same Flex Template as the Cloud Scheduler job, with the same launch request, which
`python scripts/deploy.py dag --use_case NAME ...` writes beside this file as score_nightly_SLUG.json, one
per use case. This file defines two DAGs for each such configuration, named after its use case, so that
use cases run side by side, each on its own schedule and its own history: `score_nightly_SLUG` and
`score_backfill_SLUG` (taxi's are score_nightly_taxi and score_backfill_taxi). A configuration that cannot
be read is skipped, and logged with its file's name, so the other use cases' DAGs still load; two that name
the same DAG, or none readable, are an import error.

The nightly task waits for the Dataflow job and fails when the job fails or is cancelled (no retries: a
re-run is a decision, made by clearing the task), so the failure shows in Airflow, its alerts and its
e-mails. The date is explicit here, unlike on Cloud Scheduler: the night before the run's logical date in
the configured time zone, or the `date` param of a manual run, so clearing an old run re-scores that night
and a manual run can score any night.

The backfill DAG has no schedule: triggered with `start_date` and `end_date`, it scores that range of
nights in one Dataflow job (each night published or refused as its own run; the job fails, and so the
task, if any night is refused). After a new model, it rescores history.
"""

from __future__ import annotations

import copy
import glob
import json
import logging
import os
import re

import pendulum
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from airflow.timetables.trigger import CronTriggerTimetable

try:  # Airflow 3
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.models.param import Param

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = "score_nightly_*.json"  # what scripts/deploy.py dag writes, one per use case
DAG_ID = r"[A-Za-z0-9_.-]{1,250}"  # what Airflow takes as a DAG id

log = logging.getLogger(__name__)


def read_config(path: str) -> dict:
    """One use case's launch configuration, as `deploy.py dag` writes it. Raises ValueError, saying why,
    where its DAGs could not be built from it."""
    try:
        with open(path) as f:
            config = json.load(f)
        launch = config["launch"]["launchParameter"]
        names = [config["use_case"], config["project"], config["region"], launch["containerSpecGcsPath"]]
        dag_ids = [config["dag_ids"]["nightly"], config["dag_ids"]["backfill"]]
        if not isinstance(launch["parameters"], dict) or not isinstance(config.get("alert_emails", []), list):
            raise TypeError("launch parameters or alert_emails of the wrong type")
    except (OSError, ValueError, KeyError, TypeError) as e:  # ValueError: not JSON
        raise ValueError(f"not a launch configuration: {type(e).__name__}: {e}") from None
    if not all(isinstance(name, str) and name for name in names):
        raise ValueError("use_case, project, region and the template must be non-empty strings")
    if not all(isinstance(dag_id, str) and re.fullmatch(DAG_ID, dag_id) for dag_id in dag_ids):
        raise ValueError(f"DAG ids must match {DAG_ID}: {dag_ids}")
    try:
        CronTriggerTimetable(config["schedule"], timezone=config["timezone"]).validate()
    except Exception as e:  # a bad time zone is a ValueError, a bad cron expression Airflow's own
        raise ValueError(f"schedule {config.get('schedule')!r} in {config.get('timezone')!r}: {e}") from None
    return config


def load_configs() -> list[dict]:
    """Every use case's launch configuration beside this file. One that cannot be read is skipped, and
    logged with its file's name, so that it does not take the other use cases' DAGs down. None at all (or
    none readable) is an import error, not a silent no-op; nor are two configurations naming the same DAG."""
    paths = sorted(glob.glob(os.path.join(HERE, CONFIGS)))
    if not paths:
        raise FileNotFoundError(
            f"no launch configuration {CONFIGS} beside {__file__}: write one with python scripts/deploy.py dag"
        )
    configs, named, skipped = [], {}, []
    for path in paths:
        try:
            config = read_config(path)
        except ValueError as e:
            log.error("skipped the launch configuration %s, which defines no DAGs: %s", path, e)
            skipped.append(f"{os.path.basename(path)}: {e}")
            continue
        for dag_id in config["dag_ids"].values():
            if dag_id in named:
                raise ValueError(f"{path} and {named[dag_id]} both define the DAG {dag_id}")
            named[dag_id] = path
        configs.append(config)
    if not configs:
        raise ValueError(f"no readable launch configuration {CONFIGS} beside {__file__}: " + "; ".join(skipped))
    return configs


def night(timezone: str) -> str:
    """The night a run scores: the date param, or the day before the run in `timezone`. Manual runs in
    Airflow 3 may have no logical date; they run "now", like the schedule would."""
    return (
        "{{ params.date or (logical_date or dag_run.run_after).in_timezone('" + timezone + "')"
        ".subtract(days=1).to_date_string() }}"
    )


def report_failure(context) -> None:
    """Say which night failed and where to look, in the task log and to Airflow's alerting."""
    task = context["task"]
    parameters = task.body["launchParameter"]["parameters"]
    log.error(
        "nightly scoring of %s FAILED for %s (DAG run %s): %s. The date's previous results are intact; see "
        "the Dataflow job in %s and the run's row in the warehouse's scoring_runs table.",
        parameters.get("use_case"),
        parameters.get("date"),
        context["run_id"],
        context.get("exception"),
        task.location,
    )


def report_backfill_failure(context) -> None:
    parameters = context["task"].body["launchParameter"]["parameters"]
    log.error(
        "backfill of %s FAILED or partly refused for %s to %s (DAG run %s): %s. Each night's outcome is in "
        "the warehouse's scoring_runs table; refused and failed nights keep their previous results.",
        parameters.get("use_case"),
        parameters.get("start_date"),
        parameters.get("end_date"),
        context["run_id"],
        context.get("exception"),
    )


def launch_body(config: dict, **dates: str) -> dict:
    body = copy.deepcopy(config["launch"])
    body["launchParameter"]["parameters"].update(dates)
    return body


def alerts(config: dict) -> dict:
    return {"email": config["alert_emails"], "email_on_failure": True} if config.get("alert_emails") else {}


def nightly_dag(config: dict) -> DAG:
    timezone = config["timezone"]
    with DAG(
        dag_id=config["dag_ids"]["nightly"],
        description=f"Nightly batch scoring of {config['use_case']}: Flex Template "
        + config["launch"]["launchParameter"]["containerSpecGcsPath"],
        schedule=CronTriggerTimetable(config["schedule"], timezone=timezone),
        start_date=pendulum.datetime(2026, 1, 1, tz=timezone),
        catchup=False,
        max_active_runs=1,  # two nights never publish at once
        params={
            "date": Param(
                None,
                type=["null", "string"],
                description="Night to score (YYYY-MM-DD); default: the night before the run",
            )
        },
        default_args={"retries": 0, "on_failure_callback": report_failure, **alerts(config)},
        tags=["scoring", "dataflow", config["use_case"]],
    ) as dag:
        DataflowStartFlexTemplateOperator(
            task_id="score",
            project_id=config["project"],
            location=config["region"],
            body=launch_body(config, date=night(timezone)),
            wait_until_finished=True,  # the task's state is the job's: failed or cancelled fails it
            append_job_name=True,  # a unique job name per attempt
        )
    return dag


def backfill_dag(config: dict) -> DAG:
    with DAG(
        dag_id=config["dag_ids"]["backfill"],
        description=f"Rescore a range of nights of {config['use_case']} in one Dataflow job (manual runs only)",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz=config["timezone"]),
        catchup=False,
        max_active_runs=1,
        params={
            "start_date": Param(type="string", format="date", description="First night to score (YYYY-MM-DD)"),
            "end_date": Param(type="string", format="date", description="Last night, inclusive (at most 366 nights)"),
        },
        default_args={"retries": 0, "on_failure_callback": report_backfill_failure, **alerts(config)},
        tags=["scoring", "dataflow", "backfill", config["use_case"]],
    ) as dag:
        DataflowStartFlexTemplateOperator(
            task_id="score_range",
            project_id=config["project"],
            location=config["region"],
            body=launch_body(config, start_date="{{ params.start_date }}", end_date="{{ params.end_date }}"),
            wait_until_finished=True,
            append_job_name=True,
        )
    return dag


# Each DAG at module level, where Airflow looks for them.
for _config in load_configs():
    for _dag in (nightly_dag(_config), backfill_dag(_config)):
        globals()[_dag.dag_id] = _dag
