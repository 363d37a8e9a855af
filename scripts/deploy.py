"""Take the nightly job to Google Cloud: project set-up, images, Flex Template, one run, the schedule.

    python scripts/deploy.py STEP --project my-project --region us-central1 [options] [--dry-run]

Steps, in order (README "Run on Dataflow" walks through them):
  setup     enable the APIs; create the bucket, the image repository and two service accounts with
            least-privilege roles (the worker runs the job, the launcher may only start it)
  model     copy an exported model version to gs://BUCKET/models (metadata.json last, as the registry expects)
  images    build and push the CPU worker image (also the template launcher) and, with --accelerator gpu,
            the GPU worker image
  template  write the template metadata and build the Flex Template spec at gs://BUCKET/templates/SLUG/
  run       launch the template once, for --date or (without it) yesterday in --timezone
  schedule  create or update the Cloud Scheduler job that launches the template every night
  dag       write the Airflow DAG's launch configuration beside the DAG, for Cloud Composer

Every step takes --use_case (default: taxi), and the names carry it, so use cases run side by side: the
Dataflow and Scheduler job score-SLUG-nightly, the template gs://BUCKET/templates/SLUG/score-VERSION.json,
the DAGs score_nightly_SLUG and score_backfill_SLUG (SLUG: the use case's name in lower case, with "." and
"_" as "-"; "_" in DAG ids), the job's use_case label SLUG. The warehouse is the use case's own too: the
dataset scoring_SLUG ("_" for "-"), except taxi's, which stays scoring. Its nights are dated in the use
case's own time zone (UseCase.timezone). An unknown use case is refused before anything runs.

Each step prints the commands it runs before running them; --dry-run prints them and runs nothing.
Steps that create something skip it when it exists, so every step can be re-run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field, fields

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pipelines.arguments import USE_CASE_HELP  # noqa: E402
from pipelines.defaults import DEFAULT_USE_CASE  # noqa: E402
from schemas.use_case import UseCaseError, load_use_case  # noqa: E402
from scripts import flex_template  # noqa: E402

APIS = ["dataflow", "compute", "storage", "bigquery", "bigquerystorage", "artifactregistry", "cloudscheduler", "iam"]
GPU_EXPERIMENTS = ["no_use_multiple_sdk_containers"]
JOB_NAME = "[a-z]([-a-z0-9]*[a-z0-9])?"  # what Dataflow takes as a job name
LAUNCH_URI = "https://dataflow.googleapis.com/v1b3/projects/{project}/locations/{region}/flexTemplates:launch"
DAG_CONFIG = "score_nightly_{slug}.json"  # one per use case, beside the DAG file, which defines DAGs for each

# Least privilege: each role, where it is granted, and why the job cannot do without it.
WORKER_ROLES = [
    ("project", "roles/dataflow.worker", "run Dataflow work items and report progress (launcher VM and workers)"),
    ("project", "roles/bigquery.jobUser", "run the load jobs and the publish transaction of the warehouse"),
    ("project", "roles/bigquery.readSessionUser", "read BigQuery input through the Storage Read API"),
    ("dataset", "roles/bigquery.dataEditor", "create staging tables and replace a night's rows, in this dataset only"),
    (
        "bucket",
        "roles/storage.objectAdmin",
        "read input and models, write and delete staged files, in this bucket only",
    ),
    ("repository", "roles/artifactregistry.reader", "pull the worker and launcher images, from this repository only"),
]
LAUNCHER_ROLES = [
    ("project", "roles/dataflow.developer", "launch the Flex Template (create the job), and nothing else in Dataflow"),
    ("worker", "roles/iam.serviceAccountUser", "start the job as the worker account, that account only"),
    ("bucket", "roles/storage.objectViewer", "read the template spec from the bucket"),
]


def use_case_slug(use_case: str) -> str:
    """A use case's name as Dataflow, Cloud Scheduler and GCS paths take it: `my_team.loans` is `my-team-loans`."""
    return use_case.lower().replace(".", "-").replace("_", "-")


def default_dataset(use_case: str) -> str:
    """The use case's own warehouse dataset: `scoring` for the default use case (taxi; its history is
    there), `scoring_SLUG` for any other (`my_team.loans`: `scoring_my_team_loans`), as BigQuery takes it."""
    if use_case == DEFAULT_USE_CASE:
        return "scoring"
    return "scoring_" + re.sub(r"[^a-z0-9_]", "_", use_case_slug(use_case).replace("-", "_"))


def default_input(use_case: str, declared: str | None, bucket: str) -> str:
    """The use case's own scoring input (`declared`), its `data/` on the bucket, or gs://BUCKET/SLUG/dt={date}/*.csv."""
    if not declared:
        return f"{bucket}/{use_case_slug(use_case)}/dt={{date}}/*.csv"
    if "://" in declared:
        return declared
    if os.path.isabs(declared):
        raise SystemExit(f"--use_case {use_case}: its scoring input {declared} is a local path; give --input")
    return f"{bucket}/{declared.removeprefix('data/')}"


def _version() -> str:
    return re.search(r'version="([^"]+)"', open(os.path.join(REPO, "setup.py")).read()).group(1)


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """Where the job lives. Each default is stated here once; `parser()` offers them as options, and
    the bucket, the dataset, the machine type, the time zone, the job name and the input derive from the
    others unless given. The names carry the use case, so that use cases deploy side by side."""

    project: str
    region: str
    use_case: str = DEFAULT_USE_CASE
    bucket: str = ""
    dataset: str = ""
    repository: str = "scoring"
    version: str = field(default_factory=_version)
    accelerator: str = "cpu"
    gpu: str = "nvidia-l4"
    machine_type: str = ""
    max_workers: int = 10
    timezone: str = ""
    hour: int = 3
    job_name: str = ""
    input: str = ""

    def __post_init__(self) -> None:
        try:  # first: a use case that does not load is refused before anything else is said or done
            use_case = load_use_case(self.use_case)
        except UseCaseError as e:
            raise SystemExit(str(e)) from None
        bucket = (self.bucket or f"gs://{self.project}-scoring").rstrip("/")
        if not bucket.startswith("gs://"):
            raise SystemExit(f"--bucket must be gs://..., not {bucket!r}")
        if not 0 <= self.hour <= 23:
            raise SystemExit("--hour must be 0..23")
        object.__setattr__(self, "bucket", bucket)
        object.__setattr__(self, "dataset", self.dataset or default_dataset(self.use_case))
        object.__setattr__(self, "timezone", self.timezone or use_case.timezone)
        if not self.machine_type:
            object.__setattr__(self, "machine_type", "g2-standard-8" if self.accelerator == "gpu" else "n2-standard-4")
        if not self.job_name:
            object.__setattr__(self, "job_name", f"score-{self.slug}-nightly")
        if not re.fullmatch(JOB_NAME, self.job_name):
            raise SystemExit(f"--job_name must match {JOB_NAME} (Dataflow's job names), not {self.job_name!r}")
        if not self.input:
            object.__setattr__(self, "input", default_input(self.use_case, use_case.scoring_input, bucket))

    @property
    def slug(self) -> str:
        return use_case_slug(self.use_case)

    @property
    def scheduler_job(self) -> str:
        """The Cloud Scheduler job, named as the Dataflow job it launches."""
        return self.job_name

    @property
    def dag_ids(self) -> dict[str, str]:
        """The Airflow DAGs of this use case (DAG ids take "_" where job names take "-")."""
        dag_slug = self.slug.replace("-", "_")
        return {"nightly": f"score_nightly_{dag_slug}", "backfill": f"score_backfill_{dag_slug}"}

    @property
    def dag_config(self) -> str:
        """The DAG's launch configuration for this use case, a file beside the DAG file."""
        return DAG_CONFIG.format(slug=self.slug.replace("-", "_"))

    @property
    def labels(self) -> dict[str, str]:
        """The job's labels; values take lower case letters, digits, "-" and "_", at most 63. The use case
        is its slug, as the job's name carries it."""
        return {
            "app": "nightly-scoring",
            "use_case": re.sub(r"[^a-z0-9_-]", "-", self.slug)[:63],
            "version": self.version.replace(".", "_"),
        }

    @property
    def registry(self) -> str:
        return f"{self.region}-docker.pkg.dev/{self.project}/{self.repository}"

    @property
    def worker_image(self) -> str:
        return f"{self.registry}/worker:{self.version}"

    @property
    def gpu_image(self) -> str:
        return f"{self.registry}/worker-gpu:{self.version}"

    @property
    def template(self) -> str:
        return f"{self.bucket}/templates/{self.slug}/score-{self.version}.json"

    @property
    def worker_account(self) -> str:
        return f"scoring-worker@{self.project}.iam.gserviceaccount.com"

    @property
    def launcher_account(self) -> str:
        return f"scoring-launcher@{self.project}.iam.gserviceaccount.com"

    @property
    def parameters(self) -> dict[str, str]:
        """The template parameters of a nightly run: no date, so each night scores its yesterday."""
        return {
            "use_case": self.use_case,
            "input": self.input,
            "model_root": f"{self.bucket}/models",
            "warehouse": f"bq://{self.project}.{self.dataset}",
            "staging_dir": f"{self.bucket}/staging",
            "report_dir": f"{self.bucket}/reports",
            "timezone": self.timezone,
            "accelerator": self.accelerator,
        }

    @property
    def experiments(self) -> list[str]:
        experiments = ["use_runner_v2"]
        if self.accelerator == "gpu":
            # One SDK process per VM: it holds the GPU alone instead of one process per vCPU each
            # loading a model copy into the same GPU memory.
            experiments += GPU_EXPERIMENTS + [f"worker_accelerator=type:{self.gpu};count:1;install-nvidia-driver"]
        return experiments

    def launch_body(self, date: str | None = None) -> dict:
        """The Dataflow flexTemplates.launch request: what the schedule, the DAG and `run` send."""
        parameters = dict(self.parameters, **({"date": date} if date else {}))
        return {
            "launchParameter": {
                "jobName": self.job_name,
                "containerSpecGcsPath": self.template,
                "parameters": parameters,
                "environment": {
                    "serviceAccountEmail": self.worker_account,
                    "tempLocation": f"{self.bucket}/tmp",
                    "stagingLocation": f"{self.bucket}/dataflow-staging",
                    "machineType": self.machine_type,
                    "maxWorkers": self.max_workers,
                    "sdkContainerImage": self.gpu_image if self.accelerator == "gpu" else self.worker_image,
                    "additionalExperiments": self.experiments,
                    "additionalUserLabels": self.labels,
                },
            }
        }


@dataclass(frozen=True)
class Step:
    """One command; `exists` is a probe that, when it succeeds, skips it (or runs `instead`)."""

    command: list[str]
    exists: list[str] | None = None
    instead: list[str] | None = None
    files: dict[str, str] = field(default_factory=dict)  # written before the command runs


def _member(account: str) -> str:
    return f"serviceAccount:{account}"


def _grant(d: Deployment, account: str, where: str, role: str) -> list[str]:
    member = f"--member={_member(account)}"
    if where == "project":
        return [
            "gcloud",
            "projects",
            "add-iam-policy-binding",
            d.project,
            member,
            f"--role={role}",
            "--condition=None",
            "--quiet",
        ]
    if where == "bucket":
        return ["gcloud", "storage", "buckets", "add-iam-policy-binding", d.bucket, member, f"--role={role}"]
    if where == "dataset":
        return ["bq", "add-iam-policy-binding", member, f"--role={role}", "-d", f"{d.project}:{d.dataset}"]
    if where == "repository":
        return [
            "gcloud",
            "artifacts",
            "repositories",
            "add-iam-policy-binding",
            d.repository,
            f"--location={d.region}",
            f"--project={d.project}",
            member,
            f"--role={role}",
        ]
    if where == "worker":
        return [
            "gcloud",
            "iam",
            "service-accounts",
            "add-iam-policy-binding",
            d.worker_account,
            f"--project={d.project}",
            member,
            f"--role={role}",
        ]
    raise ValueError(where)


def setup_steps(d: Deployment) -> list[Step]:
    steps = [
        Step(["gcloud", "services", "enable", *(f"{api}.googleapis.com" for api in APIS), f"--project={d.project}"]),
        Step(
            [
                "gcloud",
                "storage",
                "buckets",
                "create",
                d.bucket,
                f"--project={d.project}",
                f"--location={d.region}",
                "--uniform-bucket-level-access",
            ],
            exists=["gcloud", "storage", "buckets", "describe", d.bucket, f"--project={d.project}"],
        ),
        Step(
            [
                "gcloud",
                "artifacts",
                "repositories",
                "create",
                d.repository,
                "--repository-format=docker",
                f"--location={d.region}",
                f"--project={d.project}",
            ],
            exists=[
                "gcloud",
                "artifacts",
                "repositories",
                "describe",
                d.repository,
                f"--location={d.region}",
                f"--project={d.project}",
            ],
        ),
    ]
    for account, title in (
        (d.worker_account, "Nightly scoring: Dataflow workers"),
        (d.launcher_account, "Nightly scoring: launches the Flex Template"),
    ):
        steps.append(
            Step(
                [
                    "gcloud",
                    "iam",
                    "service-accounts",
                    "create",
                    account.split("@")[0],
                    f"--display-name={title}",
                    f"--project={d.project}",
                ],
                exists=["gcloud", "iam", "service-accounts", "describe", account, f"--project={d.project}"],
            )
        )
    steps += [Step(_grant(d, d.worker_account, where, role)) for where, role, _ in WORKER_ROLES]
    steps += [Step(_grant(d, d.launcher_account, where, role)) for where, role, _ in LAUNCHER_ROLES]
    return steps


def image_steps(d: Deployment) -> list[Step]:
    builds = [("Dockerfile", d.worker_image)] + ([("Dockerfile.gpu", d.gpu_image)] if d.accelerator == "gpu" else [])
    steps = [Step(["gcloud", "auth", "configure-docker", f"{d.region}-docker.pkg.dev", "--quiet"])]
    for dockerfile, image in builds:
        steps += [Step(["docker", "build", "-f", dockerfile, "-t", image, "."]), Step(["docker", "push", image])]
    return steps


def template_steps(d: Deployment, metadata_file: str = flex_template.DEFAULT_OUT) -> list[Step]:
    # The launcher image is the CPU worker image: it only builds the job graph and submits it.
    return [
        Step(
            [
                "gcloud",
                "dataflow",
                "flex-template",
                "build",
                d.template,
                f"--image={d.worker_image}",
                "--sdk-language=PYTHON",
                f"--metadata-file={metadata_file}",
                f"--project={d.project}",
                f"--service-account-email={d.worker_account}",
                f"--temp-location={d.bucket}/tmp",
                f"--staging-location={d.bucket}/dataflow-staging",
                f"--worker-machine-type={d.machine_type}",
                f"--max-workers={d.max_workers}",
                f"--additional-experiments={','.join(d.experiments)}",
            ],
            files={metadata_file: flex_template.render()},
        )
    ]


def run_steps(d: Deployment, date: str | None) -> list[Step]:
    launch = d.launch_body(date)["launchParameter"]
    env, parameters = launch["environment"], launch["parameters"]
    # ^~^ makes ~ the list separator, so values may hold commas.
    return [
        Step(
            [
                "gcloud",
                "dataflow",
                "flex-template",
                "run",
                f"{d.job_name}-{date or 'now'}",
                f"--template-file-gcs-location={d.template}",
                f"--region={d.region}",
                f"--project={d.project}",
                "--parameters=^~^" + "~".join(f"{k}={v}" for k, v in parameters.items()),
                f"--service-account-email={env['serviceAccountEmail']}",
                f"--temp-location={env['tempLocation']}",
                f"--staging-location={env['stagingLocation']}",
                f"--worker-machine-type={env['machineType']}",
                f"--max-workers={env['maxWorkers']}",
                "--additional-experiments=^~^" + "~".join(env["additionalExperiments"]),
                f"--additional-pipeline-options=sdk_container_image={env['sdkContainerImage']}",
            ]
        )
    ]


def schedule_steps(d: Deployment, body_file: str | None = None) -> list[Step]:
    body_file = body_file or f"build/{d.scheduler_job}-launch.json"
    flags = [
        f"--location={d.region}",
        f"--project={d.project}",
        f"--schedule=0 {d.hour} * * *",
        f"--time-zone={d.timezone}",
        "--uri=" + LAUNCH_URI.format(project=d.project, region=d.region),
        "--http-method=POST",
        f"--oauth-service-account-email={d.launcher_account}",
        f"--message-body-from-file={body_file}",
        "--attempt-deadline=320s",
        "--max-retry-attempts=3",
        "--min-backoff=300s",
        f"--description=Nightly batch scoring, template {d.template}",
    ]
    # A retry after a launch that did create the job fails on the duplicate job name: no double runs.
    return [
        Step(
            ["gcloud", "scheduler", "jobs", "create", "http", d.scheduler_job, *flags],
            exists=[
                "gcloud",
                "scheduler",
                "jobs",
                "describe",
                d.scheduler_job,
                f"--location={d.region}",
                f"--project={d.project}",
            ],
            instead=[
                "gcloud",
                "scheduler",
                "jobs",
                "update",
                "http",
                d.scheduler_job,
                *(f for f in flags if not f.startswith("--http-method")),
            ],
            files={body_file: json.dumps(d.launch_body(), indent=2) + "\n"},
        )
    ]


def refuse_another_use_cases_config(d: Deployment, config_file: str) -> None:
    """Two use cases whose names share a slug (`a_b`, `a.b`) would share a DAG configuration file: the
    second `dag` would silently replace the first's. Refused when the file there names another use case."""
    try:
        with open(config_file) as f:
            written_for = json.load(f).get("use_case")
    except (OSError, ValueError, AttributeError):
        return  # none there, or one no DAG can read: this step writes it
    if written_for is not None and written_for != d.use_case:
        raise SystemExit(
            f"dag: {config_file} is the DAG configuration of --use_case {written_for}, not {d.use_case}: the two "
            f"names have the same slug, {d.slug}, and so the same DAGs, jobs and template; rename one of them"
        )


def dag_steps(d: Deployment, dags_dir: str, environment: str, alert_emails: list[str]) -> list[Step]:
    config = {
        "use_case": d.use_case,
        "dag_ids": d.dag_ids,
        "project": d.project,
        "region": d.region,
        "timezone": d.timezone,
        "schedule": f"0 {d.hour} * * *",
        "alert_emails": alert_emails,
        "launch": d.launch_body(),
    }
    config_file = os.path.join(dags_dir, d.dag_config)
    refuse_another_use_cases_config(d, config_file)
    # The configuration first: Composer parses the DAG file as soon as it arrives, and a new DAG file
    # with no configuration of its kind beside it would be an import error (every use case's DAGs gone).
    return [
        Step(
            [
                "gcloud",
                "composer",
                "environments",
                "storage",
                "dags",
                "import",
                f"--environment={environment}",
                f"--location={d.region}",
                f"--project={d.project}",
                f"--source={source}",
            ],
            files={config_file: json.dumps(config, indent=2) + "\n"} if source == config_file else {},
        )
        for source in (config_file, os.path.join(dags_dir, "score_nightly_dag.py"))
    ]


def format_command(command: list[str]) -> str:
    return shlex.join(command)


def execute(steps: list[Step], dry_run: bool) -> None:
    for step in steps:
        for path, content in step.files.items():
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.write(content)
        print(format_command(step.command), flush=True)
        if dry_run:
            continue
        command = step.command
        if step.exists and subprocess.run(step.exists, capture_output=True).returncode == 0:
            if not step.instead:
                print("  exists, skipped", flush=True)
                continue
            command = step.instead
            print(f"  exists, instead: {format_command(command)}", flush=True)
        if subprocess.run(command).returncode != 0:
            raise SystemExit(f"failed: {format_command(command)}")


def parser() -> argparse.ArgumentParser:
    d = {f.name: f.default for f in fields(Deployment)}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["setup", "model", "images", "template", "run", "schedule", "dag"])
    p.add_argument("--project", required=True)
    p.add_argument("--use_case", default=d["use_case"], help=USE_CASE_HELP + " The deployment's names carry it.")
    p.add_argument("--region", required=True, help="Dataflow region; also the bucket's and the images'.")
    p.add_argument(
        "--bucket",
        default=d["bucket"],
        help="gs://... for input, models, staging, templates (default: gs://PROJECT-scoring).",
    )
    p.add_argument(
        "--dataset",
        default=d["dataset"],
        help="BigQuery warehouse dataset (scripts/setup_bigquery.py); a warehouse belongs to one use case (default: "
        "scoring for taxi, scoring_SLUG with '_' for '-' for any other, e.g. scoring_flights).",
    )
    p.add_argument(
        "--input",
        default=d["input"],
        help="The pipeline's --input (default: the use case's scoring input with data/ on the bucket, for taxi "
        "gs://BUCKET/trips/dt={date}/*.csv; gs://BUCKET/SLUG/dt={date}/*.csv where it declares none).",
    )
    p.add_argument("--repository", default=d["repository"], help="Artifact Registry repository of the images.")
    p.add_argument("--version", default=None, help="Image tag and template version (default: setup.py's).")
    p.add_argument("--accelerator", default=d["accelerator"], choices=["cpu", "gpu"])
    p.add_argument("--gpu", default=d["gpu"], help="GPU type with --accelerator gpu.")
    p.add_argument(
        "--machine_type",
        default=d["machine_type"],
        help="Worker machine type (default: n2-standard-4; g2-standard-8 with --accelerator gpu).",
    )
    p.add_argument("--max_workers", type=int, default=d["max_workers"])
    p.add_argument(
        "--timezone",
        default=d["timezone"],
        help="The schedule's time zone, and the one that decides which date is 'yesterday' (default: the use "
        "case's own, UseCase.timezone: America/Chicago for taxi, America/New_York for flights).",
    )
    p.add_argument("--hour", type=int, default=d["hour"], help="Hour of the night the job starts, in --timezone.")
    p.add_argument(
        "--job_name", default=d["job_name"], help="Dataflow and Scheduler job name (default: score-SLUG-nightly)."
    )
    p.add_argument("--date", default=None, help="run: the date to score (default: yesterday in --timezone).")
    p.add_argument(
        "--model_dir", default=None, help="model: the exported version, e.g. artifacts/models/taxi_tipper/1."
    )
    p.add_argument(
        "--body_file",
        default=None,
        help="schedule: where the launch request body is written (default: build/JOB_NAME-launch.json).",
    )
    p.add_argument("--dags_dir", default="scripts/airflow", help="dag: the folder of the DAG file.")
    p.add_argument("--composer_environment", default="scoring", help="dag: the Cloud Composer environment.")
    p.add_argument("--alert_email", action="append", default=[], help="dag: e-mail when a night fails (repeatable).")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="Print the commands, run nothing.")
    return p


def deployment(args: argparse.Namespace) -> Deployment:
    given = {f.name: getattr(args, f.name) for f in fields(Deployment) if getattr(args, f.name) is not None}
    return Deployment(**given)


def steps_for(args: argparse.Namespace, d: Deployment) -> list[Step]:
    if args.step == "setup":
        return setup_steps(d)
    if args.step == "images":
        return image_steps(d)
    if args.step == "template":
        return template_steps(d)
    if args.step == "run":
        return run_steps(d, args.date)
    if args.step == "schedule":
        return schedule_steps(d, args.body_file)
    return dag_steps(d, args.dags_dir, args.composer_environment, args.alert_email)


def publish_model(args: argparse.Namespace, d: Deployment) -> None:
    from models import registry

    if not args.model_dir:
        raise SystemExit("model: give --model_dir, an exported version such as artifacts/models/taxi_tipper/1")
    model_root = f"{d.bucket}/models"
    print(f"publish {args.model_dir} -> {model_root} (files first, metadata.json last)", flush=True)
    if not args.dry_run:
        try:
            print(f"published {registry.publish_version(args.model_dir, model_root)}")
        except registry.ModelVersionError as e:
            raise SystemExit(f"model: {e}") from e


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    d = deployment(args)  # refuses an unknown use case, or a bad option, before any step
    if args.step == "model":
        publish_model(args, d)
    else:
        execute(steps_for(args, d), args.dry_run)


if __name__ == "__main__":
    main()
