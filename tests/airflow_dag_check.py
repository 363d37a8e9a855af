"""Run by tests/test_deploy.py with the Airflow virtual environment's Python (Airflow cannot share
the project's environment): loads the DAG folder as Airflow does and prints what the test checks.

It also runs the DAG's task against a Dataflow API whose job ends failed, as a refused night's job
does (the scorer fails the job after recording the refusal), and reports how the task ended."""

import json
import logging
import os
import sys
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp())
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", "google-cloud-platform://")  # no credentials used

import pendulum  # noqa: E402
from airflow.models.dagbag import DagBag  # noqa: E402


class FailedJobDataflow:
    """The Dataflow REST API as the provider's hook calls it: the launch answers with a job, and every
    read of that job says JOB_STATE_FAILED."""

    JOB = {"id": "job-1", "name": "score-taxi-nightly", "type": "JOB_TYPE_BATCH", "currentState": "JOB_STATE_FAILED"}

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append(name)
            return self

        return call

    def execute(self, num_retries=0):
        last = self.calls[-1]
        return {"job": self.JOB} if last == "launch" else {"jobs": [self.JOB]} if last == "list" else self.JOB


def run_against_a_failed_job(task, context) -> dict:
    from unittest import mock

    from airflow.providers.google.cloud.hooks.dataflow import DataflowHook

    task.poll_sleep = 0
    api = FailedJobDataflow()
    with mock.patch.object(DataflowHook, "get_conn", return_value=api):
        try:
            task.execute(context)
        except Exception as e:  # what Airflow marks the task failed on
            return {"raised": type(e).__name__, "message": str(e), "launched": "launch" in api.calls}
    return {"raised": None, "launched": "launch" in api.calls}


class _NoXCom:
    """A task instance for a task run outside a DAG run: links and XComs go nowhere."""

    def xcom_push(self, *args, **kwargs) -> None:
        pass


def nightly(dag, logical_date: str, date_param: str | None) -> dict:
    [task] = dag.tasks
    context = {"params": {"date": date_param}, "logical_date": pendulum.parse(logical_date), "dag_run": None}
    out = {
        "schedule": getattr(dag.timetable, "_expression", None) or str(dag.timetable.summary),
        "timezone": str(dag.timetable._timezone.name),
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "tags": sorted(dag.tags),
        "operator": type(task).__name__,
        "wait_until_finished": task.wait_until_finished,
        "retries": task.retries,
        "on_failure_callback": [
            getattr(f, "__name__", str(f))
            for f in (
                task.on_failure_callback if isinstance(task.on_failure_callback, list) else [task.on_failure_callback]
            )
        ],
        "project_id": task.project_id,
        "location": task.location,
        "body": task.render_template(task.body, context, dag.get_template_env()),
    }
    task.body = out["body"]
    out["failed_job"] = run_against_a_failed_job(task, {**context, "ti": _NoXCom(), "task_instance": _NoXCom()})
    return out


def backfill(dag, logical_date: str) -> dict:
    [task] = dag.tasks
    params = {"start_date": "2026-01-01", "end_date": "2026-12-31"}
    context = {"params": params, "logical_date": pendulum.parse(logical_date), "dag_run": None}
    return {
        "schedule": getattr(dag.timetable, "summary", None),
        "params": sorted(dag.params.keys()),
        "max_active_runs": dag.max_active_runs,
        "retries": task.retries,
        "wait_until_finished": task.wait_until_finished,
        "body": task.render_template(task.body, context, dag.get_template_env()),
    }


class DagFileLog(logging.Handler):
    """What the DAG file logs while Airflow parses it (its logger is named after the file)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.endswith("score_nightly_dag"):
            self.messages.append(record.getMessage())


def main(dags_dir: str, logical_date: str, date_param: str | None) -> None:
    """Every DAG the folder defines: the nightly ones (score_nightly_*) run as above, the backfills rendered."""
    logged = DagFileLog()
    logging.getLogger().addHandler(logged)
    bag = DagBag(dag_folder=dags_dir)
    out = {
        "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
        "logged": logged.messages,
        "dags": sorted(bag.dag_ids),
        "nightly": {},
        "backfill": {},
    }
    for dag_id, dag in sorted(bag.dags.items()):
        if dag_id.startswith("score_nightly_"):
            out["nightly"][dag_id] = nightly(dag, logical_date, date_param)
        elif dag_id.startswith("score_backfill_"):
            out["backfill"][dag_id] = backfill(dag, logical_date)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
