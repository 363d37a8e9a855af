"""The way to Dataflow, offline: the README's walkthrough command by command, images pinned as
setup.py pins, the template spec and the scheduler command as documented, the DAG in a real Airflow;
two use cases deployed side by side under names of their own.

`gcloud` commands are parsed by the real gcloud CLI where it is installed: with no account, a
command whose flags parse stops at authentication (exit 1), a bad flag exits 2.
"""

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from pipelines import score
from scripts import deploy, flex_template, setup_bigquery
from tests.conftest import BQ_PROJECT, REPO, write_partition

DAY = "2026-11-23"
GCLOUD = shutil.which("gcloud")
AIRFLOW_PYTHON = os.path.join(REPO, ".venv-airflow", "bin", "python")
EXAMPLE = ["--project", "my-project", "--region", "us-central1", "--accelerator", "gpu"]
OTHER = "tests.fixture_use_case"  # a use case named by a dotted module path, as one outside this repository is


def readme_section() -> str:
    text = open(os.path.join(REPO, "README.md")).read()
    return text.split("\n## Run on Dataflow\n", 1)[1].split("\n## ", 1)[0]


def block_commands(language: str) -> list[list[str]]:
    commands = []
    for block in re.findall(rf"```{language}\n(.*?)```", readme_section(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(shlex.split(line))
    return commands


def dry_run(args: list[str]) -> list[list[str]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        deploy.main(args + ["--dry-run"])
    return [shlex.split(line) for line in out.getvalue().splitlines()]


def assert_gcloud_parses(command: list[str], config_dir) -> None:
    env = {**os.environ, "CLOUDSDK_CONFIG": str(config_dir), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 2 and "unrecognized arguments" not in out.stderr, (shlex.join(command), out.stderr)


def pin(package: str) -> str:
    return re.search(rf'"{re.escape(package)}==([^"]+)"', open(os.path.join(REPO, "setup.py")).read()).group(1)


def test_readme_walkthrough_runs_offline(trained, gcs, bigquery, tmp_path, monkeypatch):
    """Every command in the README's Dataflow section, with the emulators' project for my-project."""
    bucket = f"{BQ_PROJECT}-scoring"
    gcs.client.create_bucket(bucket)
    [part] = write_partition(tmp_path / "night", DAY, 50)
    gcs.client.bucket(bucket).blob(f"trips/dt={DAY}/part-00000.csv").upload_from_filename(part)
    monkeypatch.chdir(tmp_path)  # the steps write build/, templates/ and the DAG config here
    exercised = []
    for command in block_commands("bash"):
        command = [c.replace("my-project", BQ_PROJECT) for c in command]
        if command[:2] == ["python", "scripts/deploy.py"]:
            step = command[2]
            if step == "model":  # runs for real: the model the dry run below resolves comes from here
                args = [trained.version.path if a == "artifacts/models/taxi_tipper/1" else a for a in command[2:]]
                deploy.main(args)
                with pytest.raises(SystemExit, match="already exists"):
                    deploy.main(args)
            else:
                printed = dry_run(command[2:])
                assert printed, command
                for line in printed:
                    if line[0] == "gcloud" and GCLOUD:
                        assert_gcloud_parses(line, tmp_path / "gcloud")
            exercised.append(step)
        elif command[:2] == ["python", "scripts/setup_bigquery.py"]:
            setup_bigquery.main(command[2:])
            exercised.append("setup_bigquery")
        elif command[:3] == ["python", "-m", "pipelines.score"]:
            summary = score.run(command[3:] + ["--no_auth"])
            assert summary["dry_run"] and summary["model_version"] == trained.version.version
            assert summary["model_name"] == "taxi_tipper" and summary["input"].startswith(f"gs://{bucket}/")
            environment = json.dumps(summary["job"]["environment"])
            image = deploy.deployment(
                deploy.parser().parse_args(["images", "--project", BQ_PROJECT, "--region", "us-central1"])
            ).gpu_image
            assert image in environment and "worker_accelerator=type:nvidia-l4" in environment
            exercised.append("dry_run")
        else:
            pytest.fail(f"README command that no test exercises: {shlex.join(command)}")
    taxi = ["setup", "setup_bigquery", "model", "images", "dry_run", "template", "run", "schedule", "dag"]
    assert exercised == taxi + ["setup_bigquery", "setup", "template", "schedule", "dag"]  # then flights, beside it
    assert sorted(os.listdir(tmp_path / "scripts" / "airflow")) == [
        "score_nightly_flights.json",
        "score_nightly_taxi.json",
    ]
    assert sorted(os.listdir(tmp_path / "build")) == [
        "score-flights-nightly-launch.json",
        "score-taxi-nightly-launch.json",
    ]
    # The dry run wrote nothing: the warehouse holds only what setup_bigquery made, no run.
    assert list(bigquery.query(f"SELECT COUNT(*) FROM `{BQ_PROJECT}.scoring.scoring_runs`").result())[0][0] == 0


def test_the_schedule_is_what_the_readme_documents(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [documented] = block_commands("text")
    [schedule] = [
        c
        for c in block_commands("bash")
        if c[:3] == ["python", "scripts/deploy.py", "schedule"] and "--use_case" not in c  # taxi's, the default
    ]
    assert dry_run(schedule[2:]) == [documented]
    if GCLOUD:
        assert_gcloud_parses(documented, tmp_path / "gcloud")
    # The request it posts launches the template with parameters the template declares, valid by its regexes.
    launch = json.load(open(tmp_path / "build" / "score-taxi-nightly-launch.json"))["launchParameter"]
    d = deploy.deployment(deploy.parser().parse_args(schedule[2:]))
    assert launch["containerSpecGcsPath"] == d.template == "gs://my-project-scoring/templates/taxi/score-0.1.0.json"
    assert launch["jobName"] == d.scheduler_job == documented[5] == "score-taxi-nightly"
    # taxi's input is where it always was; the launch names the use case, and so do the job's labels.
    assert launch["parameters"]["input"] == "gs://my-project-scoring/trips/dt={date}/*.csv"
    assert launch["parameters"]["use_case"] == "taxi"
    assert launch["environment"]["additionalUserLabels"] == {
        "app": "nightly-scoring",
        "use_case": "taxi",
        "version": "0_1_0",
    }
    declared = {p["name"]: p for p in flex_template.metadata()["parameters"]}
    for name, value in launch["parameters"].items():
        assert re.match(declared[name]["regexes"][0], value), (name, value)
    assert "date" not in launch["parameters"]  # each night scores its own yesterday
    environment = launch["environment"]
    assert environment["serviceAccountEmail"] == "scoring-worker@my-project.iam.gserviceaccount.com"
    assert environment["sdkContainerImage"] == "us-central1-docker.pkg.dev/my-project/scoring/worker-gpu:0.1.0"
    assert environment["additionalExperiments"] == [
        "use_runner_v2",
        "no_use_multiple_sdk_containers",
        "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
    ]


@pytest.fixture
def other_use_case() -> str:
    """A second use case beside taxi, named by its module's dotted path: the platform's fixture use case."""
    return OTHER


def names(d: deploy.Deployment) -> tuple:
    return d.job_name, d.scheduler_job, d.template, d.dag_ids, d.dag_config


def test_two_use_cases_deploy_side_by_side_under_names_of_their_own(other_use_case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    taxi = deploy.Deployment(project="my-project", region="us-central1")
    other = deploy.Deployment(project="my-project", region="us-central1", use_case=other_use_case)
    assert taxi.use_case == "taxi" and taxi.input == "gs://my-project-scoring/trips/dt={date}/*.csv"  # as before
    assert names(taxi) == (
        "score-taxi-nightly",
        "score-taxi-nightly",
        "gs://my-project-scoring/templates/taxi/score-0.1.0.json",
        {"nightly": "score_nightly_taxi", "backfill": "score_backfill_taxi"},
        "score_nightly_taxi.json",
    )
    assert names(other) == (
        "score-tests-fixture-use-case-nightly",
        "score-tests-fixture-use-case-nightly",
        "gs://my-project-scoring/templates/tests-fixture-use-case/score-0.1.0.json",
        {"nightly": "score_nightly_tests_fixture_use_case", "backfill": "score_backfill_tests_fixture_use_case"},
        "score_nightly_tests_fixture_use_case.json",
    )
    # It declares no scoring input: its own folder on the bucket.
    assert other.input == "gs://my-project-scoring/tests-fixture-use-case/dt={date}/*.csv"
    # The job's label is its slug, as its name carries it; its warehouse and time zone are its own.
    assert other.labels == {"app": "nightly-scoring", "use_case": "tests-fixture-use-case", "version": "0_1_0"}
    assert (taxi.dataset, taxi.timezone) == ("scoring", "America/Chicago")
    assert (other.dataset, other.timezone) == ("scoring_tests_fixture_use_case", "UTC")
    for d in (taxi, other):
        assert re.fullmatch(deploy.JOB_NAME, d.job_name)
        assert all(re.fullmatch(r"[a-z0-9_-]{1,63}", v) for v in d.labels.values()), d.labels
        args = ["--project", "my-project", "--region", "us-central1", "--use_case", d.use_case]
        [build] = dry_run(["template", *args])
        [run] = dry_run(["run", *args, "--date", DAY])
        [schedule] = dry_run(["schedule", *args])
        dry_run(["dag", *args, "--dags_dir", "dags"])
        assert build[4] == d.template and run[4] == f"{d.job_name}-{DAY}" and schedule[5] == d.scheduler_job
        assert f"--template-file-gcs-location={d.template}" in run and f"^~^use_case={d.use_case}~" in run[8]
        for launch in (
            json.load(open(f"build/{d.scheduler_job}-launch.json")),
            json.load(open(os.path.join("dags", d.dag_config)))["launch"],
        ):
            assert launch == d.launch_body() and launch["launchParameter"]["parameters"]["use_case"] == d.use_case
        assert json.load(open(os.path.join("dags", d.dag_config)))["dag_ids"] == d.dag_ids
    # --job_name still names both jobs.
    renamed = deploy.Deployment(project="my-project", region="us-central1", use_case=OTHER, job_name="loans-nightly")
    assert (renamed.job_name, renamed.scheduler_job) == ("loans-nightly", "loans-nightly")
    with pytest.raises(SystemExit, match="--job_name must match"):
        deploy.Deployment(project="my-project", region="us-central1", job_name="Score_Nightly")


def test_the_dag_step_uploads_the_configuration_before_the_dag_file(tmp_path, monkeypatch):
    """Composer parses a DAG file as it arrives: a new one with no configuration of its own beside it would be
    an import error, every use case's DAGs gone until the configuration came."""
    monkeypatch.chdir(tmp_path)
    config, dag_file = dry_run(["dag", *EXAMPLE, "--dags_dir", "dags"])
    assert config[:6] == dag_file[:6] == ["gcloud", "composer", "environments", "storage", "dags", "import"]
    assert config[-1] == "--source=" + os.path.join("dags", "score_nightly_taxi.json")
    assert dag_file[-1] == "--source=" + os.path.join("dags", "score_nightly_dag.py")


@pytest.fixture
def same_slug(tmp_path, monkeypatch):
    """A use case named otherwise than OTHER, with OTHER's slug: tests_fixture.use_case, a module of its own."""
    package = tmp_path / "modules" / "tests_fixture"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "use_case.py").write_text("from tests.fixture_use_case import USE_CASE  # noqa: F401\n")
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    yield "tests_fixture.use_case"
    for name in ("tests_fixture.use_case", "tests_fixture"):
        sys.modules.pop(name, None)


def test_the_dag_step_refuses_to_overwrite_another_use_cases_configuration(other_use_case, same_slug, tmp_path):
    """`a_b` and `a.b` share a slug, and so a DAG configuration file: the second is refused in one line, as
    the script refuses a bad option, before any command, and the first's configuration stays as it was."""
    first, second = (deploy.Deployment(project="p", region="r", use_case=u) for u in (other_use_case, same_slug))
    assert first.slug == second.slug and first.dag_config == second.dag_config
    dags = tmp_path / "dags"
    args = ["dag", "--project", "my-project", "--region", "us-central1", "--dags_dir", str(dags), "--use_case"]
    dry_run(args + [other_use_case])
    dry_run(args + [other_use_case])  # its own configuration: written again
    config = dags / first.dag_config
    written = config.read_text()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as refused:
        deploy.main(args + [same_slug, "--dry-run"])
    assert refused.value.code == (
        f"dag: {config} is the DAG configuration of --use_case tests.fixture_use_case, not tests_fixture.use_case: "
        "the two names have the same slug, tests-fixture-use-case, and so the same DAGs, jobs and template; "
        "rename one of them"
    )
    assert out.getvalue() == "" and config.read_text() == written
    config.write_text('{"use_case": ')  # one no DAG can read is no one's: written over
    dry_run(args + [same_slug])
    assert json.load(open(config))["use_case"] == same_slug


def test_the_readme_deletes_the_old_dag_configuration_and_nothing_else(tmp_path, monkeypatch):
    """The upgrade note's command names the one file it deletes from the DAG folder (without one, gcloud
    deletes the whole folder), in the environment the README's dag step uploads to; gcloud parses it."""
    monkeypatch.chdir(tmp_path)
    prose = " ".join(readme_section().split())  # a command in the text may break across lines
    [command] = re.findall(r"`(gcloud composer environments storage dags delete [^`]+)`", prose)
    command = shlex.split(command)
    [dag] = [
        c for c in block_commands("bash") if c[:3] == ["python", "scripts/deploy.py", "dag"] and "--use_case" not in c
    ]
    uploads = dry_run(dag[2:])[0]
    assert command[6] == "score_nightly.json" and command[7:] == uploads[6:9] + ["--quiet"]
    if GCLOUD:
        assert_gcloud_parses(command, tmp_path / "gcloud")


def test_the_default_input_is_the_use_cases_own_on_the_bucket():
    bucket = "gs://my-project-scoring"
    assert deploy.default_input("taxi", "data/trips/dt={date}/*.csv", bucket) == f"{bucket}/trips/dt={{date}}/*.csv"
    assert deploy.default_input("my_team.loans", None, bucket) == f"{bucket}/my-team-loans/dt={{date}}/*.csv"
    assert deploy.default_input("x", "bq://p.d.t", bucket) == "bq://p.d.t"  # already remote: as declared
    with pytest.raises(SystemExit, match="local path; give --input"):
        deploy.default_input("x", "/mnt/loans/dt={date}/*.csv", bucket)


def test_the_dataset_and_the_time_zone_default_to_the_use_cases_own(tmp_path, monkeypatch):
    """A warehouse belongs to one use case, and its nights are dated in its own time zone: flights, deployed
    without --dataset or --timezone, is scheduled on scoring_flights at 03:00 in New York, not on taxi's."""
    monkeypatch.chdir(tmp_path)
    assert deploy.default_dataset(deploy.DEFAULT_USE_CASE) == deploy.default_dataset("taxi") == "scoring"
    assert deploy.default_dataset("flights") == "scoring_flights"
    assert deploy.default_dataset("my_team.loans") == "scoring_my_team_loans"
    assert deploy.default_dataset("tests.fixture_use_case") == "scoring_tests_fixture_use_case"
    args = ["--project", "my-project", "--region", "us-central1", "--use_case", "flights"]
    [schedule] = dry_run(["schedule", *args])
    assert "--time-zone=America/New_York" in schedule and "--schedule=0 3 * * *" in schedule
    launch = json.load(open("build/score-flights-nightly-launch.json"))["launchParameter"]
    assert launch["parameters"]["warehouse"] == "bq://my-project.scoring_flights"
    assert launch["parameters"]["timezone"] == "America/New_York"
    assert launch["environment"]["additionalUserLabels"]["use_case"] == "flights"
    granted = [c for c in dry_run(["setup", *args]) if "-d" in c]
    assert [c[c.index("-d") + 1] for c in granted] == ["my-project:scoring_flights"]
    # Given, they win; taxi's defaults are what they were.
    given = deploy.deployment(deploy.parser().parse_args(["run", *args, "--dataset", "f", "--timezone", "UTC"]))
    assert (given.dataset, given.timezone, given.parameters["warehouse"]) == ("f", "UTC", "bq://my-project.f")
    taxi = deploy.deployment(deploy.parser().parse_args(["run", *args[:4]]))
    assert (taxi.dataset, taxi.timezone) == ("scoring", "America/Chicago")
    assert all(re.fullmatch(r"[A-Za-z0-9_]{1,1024}", deploy.default_dataset(n)) for n in ("flights", "a.b_c"))


def test_each_readme_warehouse_is_the_dataset_its_deployment_uses():
    """The README's setup_bigquery.py commands create the dataset that the deploy.py commands of the same
    use case point at (each use case's own)."""
    created = {}
    for command in block_commands("bash"):
        if command[:2] == ["python", "scripts/setup_bigquery.py"]:
            use_case, dataset = setup_bigquery_options(command[2:])
            created[use_case] = dataset
    assert created == {"taxi": "scoring", "flights": "scoring_flights"}
    deployed = set()
    for command in block_commands("bash"):
        if command[:2] == ["python", "scripts/deploy.py"]:
            d = deploy.deployment(deploy.parser().parse_args(command[2:]))
            assert d.dataset == created[d.use_case], shlex.join(command)
            deployed.add(d.use_case)
    assert deployed == set(created)


class _Parsed(Exception):
    pass


def setup_bigquery_options(argv: list[str]) -> tuple[str, str]:
    """(use case, dataset) of a setup_bigquery.py command as its own parser reads them; nothing is set up."""

    def parsed(project, dataset, location, partition_expiration_days, use_case):
        raise _Parsed(use_case, dataset)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(setup_bigquery, "setup", parsed)
        with pytest.raises(_Parsed) as stopped:
            setup_bigquery.main(argv)
    return stopped.value.args


def test_an_unknown_use_case_is_refused_in_one_line_before_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "deploy.py"), "schedule", *EXAMPLE, "--use_case", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # As the script refuses a bad option: one line on stderr, exit code 1, nothing printed or written.
    [line] = out.stderr.splitlines()
    assert out.returncode == 1 and out.stdout == "" and os.listdir(tmp_path) == []
    assert re.fullmatch(r"--use_case nope: no such use case \(bundled: .*taxi.*; or a module on the path\)", line)
    with pytest.raises(SystemExit) as hour:
        deploy.main(["schedule", *EXAMPLE, "--hour", "24"])
    assert hour.value.code == "--hour must be 0..23"  # the same kind of refusal, the same exit code
    for step in ("setup", "model", "template", "run", "dag"):  # every step, before its own checks
        with pytest.raises(SystemExit) as refused:
            deploy.main([step, *EXAMPLE, "--use_case", "no_such_team.loans", "--hour", "24"])
        assert str(refused.value.code).startswith("--use_case no_such_team.loans: no such use case")
    assert os.listdir(tmp_path) == []


def test_readme_lists_every_role_the_setup_grants():
    table = readme_section()
    for account, roles in (("scoring-worker", deploy.WORKER_ROLES), ("scoring-launcher", deploy.LAUNCHER_ROLES)):
        for _, role, _ in roles:
            assert re.search(rf"\| `{account}` \| `{re.escape(role)}` \|", table), (account, role)
    granted = [c for c in dry_run(["setup", *EXAMPLE]) if "add-iam-policy-binding" in c]
    assert len(granted) == len(deploy.WORKER_ROLES) + len(deploy.LAUNCHER_ROLES)
    assert not any(r in " ".join(map(shlex.join, granted)) for r in ("roles/editor", "roles/owner", "roles/viewer"))


@pytest.mark.skipif(GCLOUD is None, reason="the gcloud CLI is not installed, so the template spec cannot be built")
def test_the_template_spec_gcloud_builds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [build] = dry_run(["template", *EXAMPLE])
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    out = subprocess.run(build + ["--print-only"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    spec = json.loads(out.stdout.split("\n", 1)[1])  # after gcloud's "|-" line
    assert spec["image"] == "us-central1-docker.pkg.dev/my-project/scoring/worker:0.1.0"
    assert spec["sdkInfo"]["language"] == "PYTHON"
    assert spec["metadata"] == flex_template.metadata()
    assert spec["defaultEnvironment"]["serviceAccountEmail"] == "scoring-worker@my-project.iam.gserviceaccount.com"
    assert (
        "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
        in spec["defaultEnvironment"]["additionalExperiments"]
    )


def dockerfile(name: str) -> list[tuple[str, str]]:
    text = open(os.path.join(REPO, name)).read().replace("\\\n", " ")
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_images_pin_what_setup_py_and_tensorflow_pin():
    import tensorflow as tf

    beam = pin("apache-beam[gcp]")
    ignored = open(os.path.join(REPO, ".dockerignore")).read().split()
    for name in ("Dockerfile", "Dockerfile.gpu"):
        instructions = dockerfile(name)
        bases = [arg.split()[0] for op, arg in instructions if op == "FROM"]
        assert f"apache/beam_python3.11_sdk:{beam}" in bases, name
        assert all(":" in b and not b.endswith(":latest") for b in bases), bases  # every base pinned
        for op, arg in instructions:
            if op == "COPY" and not arg.startswith("--from"):
                for source in arg.split()[:-1]:
                    assert os.path.exists(os.path.join(REPO, source)), (name, source)
                    assert f"!{source.rstrip('/')}/" in ignored or f"!{source}" in ignored, (name, source)
        assert ("ENTRYPOINT", '["/opt/apache/beam/boot"]') in instructions
    cpu = dict((op, arg) for op, arg in dockerfile("Dockerfile") if op in ("WORKDIR",))
    [launched] = [arg for op, arg in dockerfile("Dockerfile") if arg.startswith("FLEX_TEMPLATE_PYTHON_PY_FILE=")]
    script = launched.split("=", 1)[1]
    assert script.startswith(cpu["WORKDIR"] + "/") and os.path.exists(
        os.path.join(REPO, os.path.relpath(script, cpu["WORKDIR"]))
    )
    # The GPU base carries the CUDA TensorFlow was built against, with cuDNN.
    [cuda] = [arg for op, arg in dockerfile("Dockerfile.gpu") if op == "FROM" and arg.startswith("nvidia/cuda:")]
    build = tf.sysconfig.get_build_info()
    assert cuda.split(":")[1].startswith(build["cuda_version"] + "-cudnn"), (cuda, build["cuda_version"])
    assert str(build["cudnn_version"]).split(".")[0] == "9" and tf.__version__ == pin("tensorflow")
    assert "python3.11" in open(os.path.join(REPO, "Dockerfile.gpu")).read()


def dag_check(dags_dir, logical_date: str, date_param: str | None = None) -> dict:
    out = subprocess.run(
        [
            AIRFLOW_PYTHON,
            os.path.join(REPO, "tests", "airflow_dag_check.py"),
            str(dags_dir),
            logical_date,
            *([date_param] if date_param else []),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=dags_dir,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def assert_fails_loudly(nightly: dict, backfill: dict, d: deploy.Deployment) -> None:
    """One use case's pair of DAGs: the nightly one launches its template for the night and fails loudly
    (waits for the job, no retries, a failure callback; one night at a time); the backfill takes a range."""
    assert nightly["operator"] == "DataflowStartFlexTemplateOperator" and d.use_case in nightly["tags"]
    assert (nightly["project_id"], nightly["location"]) == ("my-project", "us-central1")
    launch = nightly["body"]["launchParameter"]
    assert launch["containerSpecGcsPath"] == d.template
    assert launch["jobName"].startswith(d.job_name + "-")  # as launched: the attempt's suffix appended
    assert launch["parameters"] == {**d.parameters, "date": launch["parameters"]["date"]}
    assert launch["parameters"]["use_case"] == d.use_case
    assert launch["environment"] == d.launch_body()["launchParameter"]["environment"]
    assert nightly["wait_until_finished"] is True and nightly["retries"] == 0
    assert nightly["on_failure_callback"] == ["report_failure"] and nightly["max_active_runs"] == 1
    assert (nightly["schedule"], nightly["timezone"], nightly["catchup"]) == (f"0 {d.hour} * * *", d.timezone, False)
    # A night refused by a quality gate (exit code 3 on a local run) fails its Dataflow job
    # (tests/test_run_safety.py), and a failed job fails the task: the task run against a Dataflow API
    # whose job ends JOB_STATE_FAILED raises, which is how Airflow marks it failed and alerts.
    failed = nightly["failed_job"]
    assert failed["launched"] and failed["raised"] == "AirflowException" and "JOB_STATE_FAILED" in failed["message"]
    # Backfills: manual runs only, a range of nights in one job, the same launch otherwise.
    assert backfill["params"] == ["end_date", "start_date"] and backfill["max_active_runs"] == 1
    assert backfill["schedule"] in (None, "None") and backfill["retries"] == 0 and backfill["wait_until_finished"]
    ranged = backfill["body"]["launchParameter"]
    assert ranged["parameters"] == {**d.parameters, "start_date": "2026-01-01", "end_date": "2026-12-31"}
    assert ranged["containerSpecGcsPath"] == d.template and "date" not in ranged["parameters"]


def nights(loaded: dict, *deployments: deploy.Deployment) -> list[str]:
    return [
        loaded["nightly"][d.dag_ids["nightly"]]["body"]["launchParameter"]["parameters"]["date"] for d in deployments
    ]


def write_unreadable_configs(dags, readable) -> None:
    """Two configurations the DAG file cannot read, a torn one and one in no time zone: each is to be
    skipped and logged with its file's name, and to take no other use case's DAGs down."""
    (dags / "score_nightly_torn.json").write_text('{"use_case": "torn", ')
    nowhere = json.load(open(readable))
    nowhere.update(use_case="nowhere", timezone="Nowhere/Atlantis")
    nowhere["dag_ids"] = {"nightly": "score_nightly_nowhere", "backfill": "score_backfill_nowhere"}
    (dags / "score_nightly_nowhere.json").write_text(json.dumps(nowhere))


@pytest.mark.skipif(
    not os.path.exists(AIRFLOW_PYTHON),
    reason="Airflow could not be installed into .venv-airflow (scripts/run_tests.sh says why)",
)
def test_the_dag_imports_and_launches_the_template_of_each_use_case(other_use_case, tmp_path):
    """taxi's configuration as the README writes it, and another use case's on its own schedule in
    another time zone: one DAG file defines both pairs of DAGs, each launching its own template."""
    dags = tmp_path / "dags"
    taxi_args = ["dag", *EXAMPLE, "--dags_dir", str(dags), "--alert_email", "oncall@example.com"]
    other_args = ["dag", "--project", "my-project", "--region", "us-central1", "--dags_dir", str(dags)]
    other_args += ["--use_case", other_use_case, "--dataset", "loans", "--hour", "5", "--timezone", "Europe/Berlin"]
    dry_run(taxi_args)
    dry_run(other_args)
    shutil.copy(os.path.join(REPO, "scripts", "airflow", "score_nightly_dag.py"), dags)
    taxi, other = (deploy.deployment(deploy.parser().parse_args(a)) for a in (taxi_args, other_args))
    assert sorted(os.listdir(dags)) == sorted(["score_nightly_dag.py", taxi.dag_config, other.dag_config])
    write_unreadable_configs(dags, dags / other.dag_config)

    # 03:00 in Chicago on the 24th: the night of the 23rd there, and in Berlin (10:00 on the 24th).
    loaded = dag_check(dags, "2026-11-24T03:00:00-06:00")
    assert loaded["import_errors"] == {}
    [nowhere_skipped, torn_skipped] = loaded["logged"]
    assert f"skipped the launch configuration {dags / 'score_nightly_nowhere.json'}" in nowhere_skipped
    assert "Nowhere/Atlantis" in nowhere_skipped
    assert f"skipped the launch configuration {dags / 'score_nightly_torn.json'}" in torn_skipped
    assert "JSONDecodeError" in torn_skipped
    assert loaded["dags"] == sorted([*taxi.dag_ids.values(), *other.dag_ids.values()])
    assert loaded["dags"] == ["score_backfill_taxi", "score_backfill_tests_fixture_use_case"] + [
        "score_nightly_taxi",
        "score_nightly_tests_fixture_use_case",
    ]
    for d in (taxi, other):
        assert_fails_loudly(loaded["nightly"][d.dag_ids["nightly"]], loaded["backfill"][d.dag_ids["backfill"]], d)
    assert taxi.template == "gs://my-project-scoring/templates/taxi/score-0.1.0.json"
    assert nights(loaded, taxi, other) == ["2026-11-23", "2026-11-23"]

    # The date is yesterday in each use case's time zone, not in UTC; a manual run's date param wins.
    evening = dag_check(dags, "2026-11-24T00:30:00+00:00")  # 18:30 on the 23rd in Chicago, 01:30 on the 24th in Berlin
    assert nights(evening, taxi, other) == ["2026-11-22", "2026-11-23"]
    manual = dag_check(dags, "2026-11-24T03:00:00-06:00", "2026-10-01")
    assert nights(manual, taxi, other) == ["2026-10-01", "2026-10-01"]

    # Two configurations naming the same DAG, none readable, or none at all, and the DAGs do not load: an
    # import error, not a silent no-op.
    shutil.copy(dags / taxi.dag_config, dags / "score_nightly_taxi_again.json")
    twice = dag_check(dags, "2026-11-24T03:00:00-06:00")
    assert twice["dags"] == [] and "both define the DAG score_nightly_taxi" in next(
        iter(twice["import_errors"].values())
    )
    for config in (taxi.dag_config, other.dag_config, "score_nightly_taxi_again.json"):
        os.remove(dags / config)
    unreadable = dag_check(dags, "2026-11-24T03:00:00-06:00")
    [error] = unreadable["import_errors"].values()
    assert unreadable["dags"] == [] and "no readable launch configuration score_nightly_*.json" in error
    assert "score_nightly_nowhere.json" in error and "score_nightly_torn.json" in error
    for config in ("score_nightly_nowhere.json", "score_nightly_torn.json"):
        os.remove(dags / config)
    broken = dag_check(dags, "2026-11-24T03:00:00-06:00")
    [error] = broken["import_errors"].values()
    assert broken["dags"] == [] and "no launch configuration score_nightly_*.json" in error
