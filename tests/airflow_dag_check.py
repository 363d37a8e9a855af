"""Run by tests/test_deploy.py with the Airflow virtual environment's Python (Airflow cannot share
the project's environment): loads the DAG folder as Airflow does and prints what the test checks."""

import json
import os
import sys
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp())
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

import pendulum  # noqa: E402
from airflow.models.dagbag import DagBag  # noqa: E402


def main(dags_dir: str, logical_date: str, date_param: str | None) -> None:
    bag = DagBag(dag_folder=dags_dir)
    out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dag_ids)}
    dag = bag.dags.get("score_nightly")
    if dag is not None:
        [task] = dag.tasks
        context = {"params": {"date": date_param}, "logical_date": pendulum.parse(logical_date), "dag_run": None}
        out.update(
            {
                "schedule": getattr(dag.timetable, "_expression", None) or str(dag.timetable.summary),
                "timezone": str(dag.timetable._timezone.name),
                "max_active_runs": dag.max_active_runs,
                "catchup": dag.catchup,
                "operator": type(task).__name__,
                "wait_until_finished": task.wait_until_finished,
                "retries": task.retries,
                "on_failure_callback": [
                    getattr(f, "__name__", str(f))
                    for f in (
                        task.on_failure_callback
                        if isinstance(task.on_failure_callback, list)
                        else [task.on_failure_callback]
                    )
                ],
                "project_id": task.project_id,
                "location": task.location,
                "body": task.render_template(task.body, context, dag.get_template_env()),
            }
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
