"""Nightly batch scoring on Cloud Composer (Airflow 2.x or 3.x with the Google provider).

Launches the same Flex Template as the Cloud Scheduler job, with the same launch request, which
`python scripts/deploy.py dag ...` writes beside this file as score_nightly.json. The task waits
for the Dataflow job and fails when the job fails or is cancelled (no retries: a re-run is a
decision, made by clearing the task), so the failure shows in Airflow, its alerts and its e-mails.

The date is explicit here, unlike on Cloud Scheduler: the night before the run's logical date in
the configured time zone, or the `date` param of a manual run, so clearing an old run re-scores
that night and a manual run can score any night.
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


def launch_body() -> dict:
    body = copy.deepcopy(CONFIG["launch"])
    body["launchParameter"]["parameters"]["date"] = DATE
    return body


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
        body=launch_body(),
        wait_until_finished=True,  # the task's state is the job's: failed or cancelled fails it
        append_job_name=True,  # a unique job name per attempt
    )
