"""Nightly batch scoring on Cloud Composer (Airflow 2.x or 3.x with the Google provider).

Launches the same Flex Template as the Cloud Scheduler job, with the same launch request, which
`python scripts/deploy.py dag ...` writes beside this file as score_nightly.json. The task waits
for the Dataflow job and fails when the job fails or is cancelled (no retries: a re-run is a
decision, made by clearing the task), so the failure shows in Airflow, its alerts and its e-mails.

The date is explicit here, unlike on Cloud Scheduler: the night before the run's logical date in
the configured time zone, or the `date` param of a manual run, so clearing an old run re-scores
that night and a manual run can score any night.

A second DAG, `score_backfill`, has no schedule: triggered with `start_date` and `end_date`, it scores
that range of nights in one Dataflow job (each night published or refused as its own run; the job
fails, and so the task, if any night is refused). After a new model, it rescores history.
"""

from __future__ import annotations

import copy
import json
import logging
import os

import pendulum
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from airflow.timetables.trigger import CronTriggerTimetable

try:  # Airflow 3
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.models.param import Param

CONFIG = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "score_nightly.json")))
TIMEZONE = CONFIG["timezone"]
# Manual runs in Airflow 3 may have no logical date; they run "now", like the schedule would.
DATE = (
    "{{ params.date or (logical_date or dag_run.run_after).in_timezone('" + TIMEZONE + "')"
    ".subtract(days=1).to_date_string() }}"
)

log = logging.getLogger(__name__)


def report_failure(context) -> None:
    """Say which night failed and where to look, in the task log and to Airflow's alerting."""
    date = context["task"].body["launchParameter"]["parameters"].get("date")
    log.error(
        "nightly scoring FAILED for %s (DAG run %s): %s. The date's previous results are intact; see the "
        "Dataflow job in %s and the run's row in the warehouse's scoring_runs table.",
        date,
        context["run_id"],
        context.get("exception"),
        CONFIG["region"],
    )


def launch_body(**dates: str) -> dict:
    body = copy.deepcopy(CONFIG["launch"])
    body["launchParameter"]["parameters"].update(dates)
    return body


def report_backfill_failure(context) -> None:
    parameters = context["task"].body["launchParameter"]["parameters"]
    log.error(
        "backfill FAILED or partly refused for %s to %s (DAG run %s): %s. Each night's outcome is in the "
        "warehouse's scoring_runs table; refused and failed nights keep their previous results.",
        parameters.get("start_date"),
        parameters.get("end_date"),
        context["run_id"],
        context.get("exception"),
    )


with DAG(
    dag_id="score_nightly",
    description="Nightly batch scoring: Flex Template " + CONFIG["launch"]["launchParameter"]["containerSpecGcsPath"],
    schedule=CronTriggerTimetable(CONFIG["schedule"], timezone=TIMEZONE),
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,  # two nights never publish at once
    params={
        "date": Param(
            None, type=["null", "string"], description="Night to score (YYYY-MM-DD); default: the night before the run"
        )
    },
    default_args={
        "retries": 0,
        "on_failure_callback": report_failure,
        **({"email": CONFIG["alert_emails"], "email_on_failure": True} if CONFIG.get("alert_emails") else {}),
    },
    tags=["scoring", "dataflow"],
) as dag:
    DataflowStartFlexTemplateOperator(
        task_id="score",
        project_id=CONFIG["project"],
        location=CONFIG["region"],
        body=launch_body(date=DATE),
        wait_until_finished=True,  # the task's state is the job's: failed or cancelled fails it
        append_job_name=True,  # a unique job name per attempt
    )


with DAG(
    dag_id="score_backfill",
    description="Rescore a range of nights in one Dataflow job (manual runs only)",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    params={
        "start_date": Param(type="string", format="date", description="First night to score (YYYY-MM-DD)"),
        "end_date": Param(type="string", format="date", description="Last night, inclusive (at most 366 nights)"),
    },
    default_args={
        "retries": 0,
        "on_failure_callback": report_backfill_failure,
        **({"email": CONFIG["alert_emails"], "email_on_failure": True} if CONFIG.get("alert_emails") else {}),
    },
    tags=["scoring", "dataflow", "backfill"],
) as backfill:
    DataflowStartFlexTemplateOperator(
        task_id="score_range",
        project_id=CONFIG["project"],
        location=CONFIG["region"],
        body=launch_body(start_date="{{ params.start_date }}", end_date="{{ params.end_date }}"),
        wait_until_finished=True,
        append_job_name=True,
    )
