"""Model versions in TF Serving's layout: `<model_root>/<name>/<version>/`, integer versions.

A version counts only once its `metadata.json` exists; export writes it last, so a half-written
export is never picked as `latest`. Resolution refuses a version trained on another schema, or for
another use case, before any data is read: two use cases may share an input schema (or a model name),
and a model of one scoring the other's records would publish plausible numbers that mean nothing.

A complete version can still be broken afterwards: a truncated upload, a deleted file, a flipped bit
on disk. Such a version would otherwise fail only once the workers load it, after the run has been
recorded and data read. So metadata.json also carries a manifest (each file's relative path, size
and sha256), and resolution checks it first: sizes from one listing (no reads), then checksums, for
each candidate newest first until one passes. `latest` skips a broken version, and says so, rather than fail
the night's run; a pinned version that is broken is refused. Versions exported before the manifest
existed stay usable, as long as their saved_model.pb is there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import shutil
from dataclasses import dataclass
from typing import Any

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from schemas import UseCase

METADATA_FILE = "metadata.json"
BASELINE_STATISTICS_FILE = "statistics.pb"  # the training data's feature statistics (pipelines.monitoring)
MANIFEST_KEY = "manifest"
USE_CASE_KEY = "use_case"  # absent from versions exported before use cases were plug-ins
MANIFEST_FIELDS = {"path", "size", "sha256"}
SAVED_MODEL_FILE = "saved_model.pb"
REQUIRED_METADATA = ("schema_fingerprint", "threshold")
LATEST = "latest"
CHUNK_BYTES = 8 << 20


class ModelVersionError(ValueError):
    """The requested model version cannot be used: missing, incomplete, broken, or for another schema or use
    case."""


class BrokenVersionError(ModelVersionError):
    """A version's metadata is unreadable or its files do not match its manifest; the message says which."""


class OtherUseCaseError(ModelVersionError):
    """A version trained for another use case: refused, not skipped, since no newer version is at fault."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: str
    metadata: dict[str, Any]
    # `latest` only: the newer versions passed over as broken, one line each saying which and why.
    skipped: tuple[str, ...] = ()

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    @property
    def schema_fingerprint(self) -> str:
        return self.metadata["schema_fingerprint"]

    @property
    def use_case(self) -> str | None:
        """The use case it was trained for; None for a version exported before use cases were named."""
        return self.metadata.get(USE_CASE_KEY)


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


def version_files(path: str) -> dict[str, int]:
    """Size of each file of the version at `path` but its metadata.json, by relative (posix) path."""
    files = {}
    for m in FileSystems.match([FileSystems.join(path, "**")])[0].metadata_list:
        relative = posixpath.relpath(m.path, path)
        # Object stores may hold zero-byte "directory/" placeholders: not files of the version.
        if relative != METADATA_FILE and not m.path.endswith("/"):
            files[relative] = m.size_in_bytes
    return files


def file_sha256(path: str) -> str:
    """Hex sha256 of one file, read in chunks: model files can be larger than memory allows."""
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type="uncompressed") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(path: str) -> list[dict[str, Any]]:
    """Every file of the version at `path` (metadata.json aside) with its size and sha256, sorted by path."""
    return [
        {"path": relative, "size": size, "sha256": file_sha256(FileSystems.join(path, relative))}
        for relative, size in sorted(version_files(path).items())
    ]


def check_version(path: str) -> dict[str, Any]:
    """The metadata of the version at `path` once it checks out, or BrokenVersionError saying why not.

    Sizes and missing files first, from one listing; then every file's checksum. A version without a
    manifest (exported before there was one) has nothing to check but that its SavedModel is there."""
    try:
        metadata = read_metadata(path)
    except ValueError as e:  # not JSON, or not UTF-8
        raise BrokenVersionError(f"{METADATA_FILE} is not valid JSON ({e})") from None
    if not isinstance(metadata, dict):
        raise BrokenVersionError(f"{METADATA_FILE} is not a JSON object")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise BrokenVersionError(f"{METADATA_FILE} lacks {', '.join(missing)}")
    try:
        return _check_files(path, metadata)
    except (OSError, BeamIOError) as e:  # a file gone between listing and reading, or not readable
        raise BrokenVersionError(f"its files cannot be read: {e}") from None


def _check_files(path: str, metadata: dict[str, Any]) -> dict[str, Any]:
    files = version_files(path)
    if MANIFEST_KEY not in metadata:
        if SAVED_MODEL_FILE not in files:
            raise BrokenVersionError(f"{SAVED_MODEL_FILE} is missing (a version exported without a manifest)")
        return metadata
    manifest = metadata[MANIFEST_KEY]
    if not isinstance(manifest, list) or not all(isinstance(e, dict) and MANIFEST_FIELDS <= e.keys() for e in manifest):
        raise BrokenVersionError(f"{METADATA_FILE} has a malformed {MANIFEST_KEY}")
    for entry in manifest:
        size = files.get(entry["path"])
        if size is None:
            raise BrokenVersionError(f"{entry['path']} is missing")
        if size != entry["size"]:
            raise BrokenVersionError(f"{entry['path']} is {size} bytes, the manifest says {entry['size']}")
    for entry in manifest:
        if file_sha256(FileSystems.join(path, entry["path"])) != entry["sha256"]:
            raise BrokenVersionError(f"{entry['path']} fails its checksum")
    return metadata


def resolve(model_root: str, name: str, version: str | int, use_case: UseCase) -> ModelVersion:
    """`latest` or a pinned version -> a usable ModelVersion, or ModelVersionError saying why not.

    `latest` is the newest version that checks out (see check_version), the broken ones newer than it
    listed in `skipped`; a pinned version must check out itself. Either must be for `use_case` (or name
    none) and on its input schema."""
    versions = list_versions(model_root, name)
    if not versions:
        raise ModelVersionError(f"no exported versions of model '{name}' under {model_root}")
    if str(version) == LATEST:
        model = newest_intact(model_root, name, versions)
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
        try:
            model = ModelVersion(name, chosen, path, check_version(path))
        except BrokenVersionError as e:
            raise BrokenVersionError(f"model '{name}' version {chosen} under {model_root} is broken: {e}") from None
    check_fits(model, use_case)
    return model


def check_fits(model: ModelVersion, use_case: UseCase) -> None:
    """The use case first: where it differs the schema usually does too, and the use case is what to change.
    A version that names no use case (exported before they were named) is judged by its schema alone."""
    if model.use_case is not None and model.use_case != use_case.name:
        raise OtherUseCaseError(
            f"model '{model.name}' version {model.version} was trained for use case {model.use_case}, "
            f"not {use_case.name}: --use_case {model.use_case}, or another --model_name"
        )
    expected = use_case.input.fingerprint()
    if model.schema_fingerprint != expected:
        raise ModelVersionError(
            f"model '{model.name}' version {model.version} was trained on another input schema "
            f"(fingerprint {model.schema_fingerprint[:12]}, use case {use_case.name}'s input has {expected[:12]}); "
            "retrain it or pin a version trained on the current schema"
        )


def newest_intact(model_root: str, name: str, versions: list[int]) -> ModelVersion:
    """The newest of `versions` that checks out, with the broken ones passed over (each logged)."""
    skipped: list[str] = []
    for number in reversed(versions):
        path = FileSystems.join(model_root, name, str(number))
        try:
            metadata = check_version(path)
        except BrokenVersionError as e:
            skipped.append(f"version {number}: {e}")
            logging.warning("model '%s' under %s: skipping broken %s", name, model_root, skipped[-1])
            continue
        return ModelVersion(name, number, path, metadata, tuple(skipped))
    raise ModelVersionError(f"every version of model '{name}' under {model_root} is broken: {'; '.join(skipped)}")


def publish_version(version_path: str, model_root: str) -> str:
    """Copy a complete exported version to another root (e.g. gs://) under the same name and number.

    Files go first and metadata.json last, so scorers reading the target root never see a
    half-copied version; an existing complete version there is never overwritten. The manifest in
    metadata.json names files relative to the version, so it holds for the copy as it did for the source."""
    version_path = version_path.rstrip("/")
    name, number = posixpath.basename(posixpath.dirname(version_path)), posixpath.basename(version_path)
    if not number.isdigit() or not FileSystems.exists(FileSystems.join(version_path, METADATA_FILE)):
        raise ModelVersionError(f"{version_path} is not a complete exported version (<root>/<name>/<number>/)")
    if int(number) in list_versions(model_root, name):
        raise ModelVersionError(f"model '{name}' version {number} already exists under {model_root}")
    target = FileSystems.join(model_root, name, number)
    for relative in sorted(version_files(version_path)) + [METADATA_FILE]:
        # Streamed, not FileSystems.copy: source and target may be on different filesystems.
        with (
            FileSystems.open(FileSystems.join(version_path, relative), compression_type="uncompressed") as src,
            FileSystems.create(FileSystems.join(target, relative), compression_type="uncompressed") as dst,
        ):
            shutil.copyfileobj(src, dst, CHUNK_BYTES)
    return target
