"""Model versions in TF Serving's layout: `<model_root>/<name>/<version>/`, integer versions.

A version counts only once its `metadata.json` exists; export writes it last, so a half-written
export is never picked as `latest`. Resolution refuses a version trained on another schema before
any data is read.
"""

from __future__ import annotations

import json
import posixpath
import shutil
from dataclasses import dataclass
from typing import Any

from apache_beam.io.filesystems import FileSystems

from schemas import InputSchema

METADATA_FILE = "metadata.json"
LATEST = "latest"


class ModelVersionError(ValueError):
    """The requested model version cannot be used: missing, incomplete or for another schema."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: str
    metadata: dict[str, Any]

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    @property
    def schema_fingerprint(self) -> str:
        return self.metadata["schema_fingerprint"]


def list_versions(model_root: str, name: str) -> list[int]:
    """Complete versions of `name`, ascending."""
    pattern = FileSystems.join(model_root, name, "*", METADATA_FILE)
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # a missing model directory matches nothing
        return []
    versions = []
    for m in matches:
        directory = posixpath.basename(posixpath.dirname(m.path))
        if directory.isdigit():
            versions.append(int(directory))
    return sorted(versions)


def next_version(model_root: str, name: str) -> int:
    versions = list_versions(model_root, name)
    return versions[-1] + 1 if versions else 1


def read_metadata(path: str) -> dict[str, Any]:
    with FileSystems.open(FileSystems.join(path, METADATA_FILE)) as f:
        return json.loads(f.read().decode())


def write_metadata(path: str, metadata: dict[str, Any]) -> None:
    with FileSystems.create(FileSystems.join(path, METADATA_FILE)) as f:
        f.write(json.dumps(metadata, indent=2, sort_keys=True).encode())


def resolve(model_root: str, name: str, version: str | int, schema: InputSchema) -> ModelVersion:
    """`latest` or a pinned version -> a usable ModelVersion, or ModelVersionError saying why not."""
    versions = list_versions(model_root, name)
    if not versions:
        raise ModelVersionError(f"no exported versions of model '{name}' under {model_root}")
    if str(version) == LATEST:
        chosen = versions[-1]
    else:
        try:
            chosen = int(version)
        except ValueError:
            raise ModelVersionError(f"model version must be '{LATEST}' or an integer, got '{version}'") from None
        if chosen not in versions:
            raise ModelVersionError(
                f"model '{name}' has no complete version {chosen} under {model_root}; have {versions}"
            )
    path = FileSystems.join(model_root, name, str(chosen))
    model = ModelVersion(name, chosen, path, read_metadata(path))
    expected = schema.fingerprint()
    if model.schema_fingerprint != expected:
        raise ModelVersionError(
            f"model '{name}' version {chosen} was trained on another input schema "
            f"(fingerprint {model.schema_fingerprint[:12]}, schemas/ has {expected[:12]}); "
            "retrain it or pin a version trained on the current schema"
        )
    return model


def publish_version(version_path: str, model_root: str) -> str:
    """Copy a complete exported version to another root (e.g. gs://) under the same name and number.

    Files go first and metadata.json last, so scorers reading the target root never see a
    half-copied version; an existing complete version there is never overwritten."""
    version_path = version_path.rstrip("/")
    name, number = posixpath.basename(posixpath.dirname(version_path)), posixpath.basename(version_path)
    if not number.isdigit() or not FileSystems.exists(FileSystems.join(version_path, METADATA_FILE)):
        raise ModelVersionError(f"{version_path} is not a complete exported version (<root>/<name>/<number>/)")
    if int(number) in list_versions(model_root, name):
        raise ModelVersionError(f"model '{name}' version {number} already exists under {model_root}")
    target = FileSystems.join(model_root, name, number)
    sources = [m.path for m in FileSystems.match([FileSystems.join(version_path, "**")])[0].metadata_list]
    files = sorted(p for p in sources if posixpath.basename(p) != METADATA_FILE)
    for path in files + [FileSystems.join(version_path, METADATA_FILE)]:
        # Streamed, not FileSystems.copy: source and target may be on different filesystems.
        with (
            FileSystems.open(path, compression_type="uncompressed") as src,
            FileSystems.create(
                FileSystems.join(target, posixpath.relpath(path, version_path)), compression_type="uncompressed"
            ) as dst,
        ):
            shutil.copyfileobj(src, dst, 8 << 20)
    return target
