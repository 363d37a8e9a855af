"""Where the job's workers run, and so where its files go: staged files and each night's page.

Local folders serve only where the workers share this machine's disk; elsewhere they must be a shared
file system (gs://), and a local one is refused naming its option, before anything is written.
"""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from pipelines.warehouses import Warehouse

LOCAL_RUNNERS = (None, "DirectRunner", "direct", "BundleBasedDirectRunner", "SwitchingDirectRunner")
LOCAL_ENVIRONMENTS = ("LOOPBACK", "PROCESS")  # a portable runner's workers on this machine
LOOPBACK_HOSTS = ("localhost", "::1", "[::1]")
STAGING_UNDER_TEMP = "batch-scoring-staging"  # a remote runner's default staging, under --temp_location


def _loopback(address: str | None) -> bool:
    host = (address or "").rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def workers_here(options: PipelineOptions) -> bool:
    """Whether the job's workers run on this machine, and so share its local folders: the DirectRunner;
    a portable runner whose job runs here (an embedded or loopback job server) with SDK workers that are
    this process (LOOPBACK), its children (PROCESS) or a pool at a loopback address (EXTERNAL). Anything
    else (Dataflow, DOCKER containers, a remote Flink or Spark cluster, whose task managers start the
    PROCESS workers and host a sidecar pool at their own localhost) writes elsewhere."""
    every = options.get_all_options()
    if every.get("runner") in LOCAL_RUNNERS:
        return True
    job_server = every.get("job_endpoint")
    if job_server not in (None, "embed") and not _loopback(job_server):
        return False
    if every.get("flink_master") not in (None, "[local]", "[auto]") and not _loopback(every.get("flink_master")):
        return False
    environment = (every.get("environment_type") or "").upper()
    if environment in LOCAL_ENVIRONMENTS:
        return True
    return environment == "EXTERNAL" and _loopback(every.get("environment_config"))


def is_local_path(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def staging_folder(given: str | None, warehouse: Warehouse, options: PipelineOptions, here: bool) -> str:
    """Where the job stages its files: --staging_dir; else beside the warehouse where workers run here,
    or under --temp_location (as Beam's own BigQuery file loads do) where they run elsewhere. A local
    folder that other machines' workers would write to is refused, naming the option."""
    if here:
        return given or warehouse.default_staging_dir()
    if given:
        if is_local_path(given):
            raise ValueError(
                f"--staging_dir {given} is a local folder, which workers on other machines cannot share: give a "
                "gs://... folder"
            )
        return given
    temp = options.view_as(GoogleCloudOptions).temp_location
    if not temp or is_local_path(temp):
        raise ValueError(
            "--staging_dir is needed: workers on other machines stage the night's files where this launcher "
            "can read them; give --staging_dir gs://... (or --temp_location gs://..., staged under it)"
            + (f"; --temp_location {temp} is a local folder" if temp else "")
        )
    return FileSystems.join(temp, STAGING_UNDER_TEMP)


def report_dir(given: str | None, warehouse: Warehouse, staging_dir: str, here: bool) -> str | None:
    """Where reports go: beside the warehouse where workers run here, else beside the staged files. The
    workers write it, so where they run elsewhere it must be a shared file system: a folder on a
    worker's disk is gone with the worker."""
    if given is not None and given.lower() == "none":
        return None
    chosen = given or (warehouse.default_report_dir() if here else FileSystems.join(staging_dir, "reports"))
    if not here and is_local_path(chosen):
        raise ValueError(
            f"--report_dir {chosen} is a local folder, which workers on other machines cannot share: "
            "give a gs://... folder, or 'none'"
        )
    return chosen
