"""Model versions in TF Serving's layout: `<model_root>/<name>/<version>/`, integer versions.

A version counts only once its `metadata.json` exists; export writes it last, so a half-written
export is never picked as `latest`. Resolution refuses a version trained on another schema before
any data is read.
"""
from __future__ import annotations

import json
import posixpath
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


def join(*parts: str) -> str:
    return FileSystems.join(*parts) if "://" in parts[0] else posixpath.join(*parts)


def list_versions(model_root: str, name: str) -> list[int]:
    """Complete versions of `name`, ascending."""
    pattern = join(model_root, name, "*", METADATA_FILE)
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
    with FileSystems.open(join(path, METADATA_FILE)) as f:
        return json.loads(f.read().decode())


def write_metadata(path: str, metadata: dict[str, Any]) -> None:
    with FileSystems.create(join(path, METADATA_FILE)) as f:
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
            raise ModelVersionError(f"model version must be '{LATEST}' or an integer, got '{version}'")
        if chosen not in versions:
            raise ModelVersionError(
                f"model '{name}' has no complete version {chosen} under {model_root}; have {versions}")
    path = join(model_root, name, str(chosen))
    model = ModelVersion(name, chosen, path, read_metadata(path))
    expected = schema.fingerprint()
    if model.schema_fingerprint != expected:
        raise ModelVersionError(
            f"model '{name}' version {chosen} was trained on another input schema "
            f"(fingerprint {model.schema_fingerprint[:12]}, schemas/ has {expected[:12]}); "
            "retrain it or pin a version trained on the current schema")
    return model
