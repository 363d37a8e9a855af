"""Broken model versions are refused before any data is read: the manifest in metadata.json, checked
at resolution. Every test damages copies of the session's exported version, never the version itself."""

import hashlib
import json
import logging
import os
import shutil
import uuid

import numpy as np
import pytest
import tensorflow as tf

from models import registry, signature
from models.registry import ModelVersionError
from pipelines import score
from schemas.taxi import USE_CASE
from tests.conftest import GCS_BUCKET, write_partition
from tests.float32 import assert_close_probabilities

NAME = "taxi_tipper"
DATA_FILE = "variables/variables.data-00000-of-00001"
DAY = "2026-11-23"


def copy_version(trained, root, version: int, manifest: bool = True, **changes) -> str:
    """The trained version copied as `version` under `root`, its metadata.json rewritten (last, as export does)."""
    target = os.path.join(root, NAME, str(version))
    shutil.copytree(trained.version.path, target)
    meta = {**registry.read_metadata(target), "version": version, **changes}
    if not manifest:
        del meta[registry.MANIFEST_KEY]
    os.remove(os.path.join(target, registry.METADATA_FILE))
    registry.write_metadata(target, meta)
    return target


def truncate(path: str) -> None:
    open(path, "wb").close()


def flip_a_byte(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def resolve(root, version="latest") -> registry.ModelVersion:
    return registry.resolve(str(root), NAME, version, USE_CASE)


def manifest_size(trained, relative: str) -> int:
    [size] = [e["size"] for e in trained.version.metadata[registry.MANIFEST_KEY] if e["path"] == relative]
    return size


def test_the_manifest_lists_every_file_with_its_size_and_checksum(trained):
    path = trained.version.path
    expected = []
    for directory, _, files in os.walk(path):
        for filename in files:
            full = os.path.join(directory, filename)
            relative = os.path.relpath(full, path).replace(os.sep, "/")
            if relative != registry.METADATA_FILE:
                with open(full, "rb") as f:
                    content = f.read()
                expected.append({"path": relative, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()})
    manifest = registry.read_metadata(path)[registry.MANIFEST_KEY]
    assert manifest == sorted(expected, key=lambda e: e["path"])
    assert {registry.SAVED_MODEL_FILE, DATA_FILE, "variables/variables.index"} <= {e["path"] for e in manifest}
    assert any(e["path"].startswith("assets/") for e in manifest)
    assert trained.version.metadata[registry.MANIFEST_KEY] == manifest
    assert resolve(os.path.dirname(os.path.dirname(path))).skipped == ()


def test_latest_skips_a_truncated_newest_version_and_says_so(trained, tmp_path, caplog):
    copy_version(trained, tmp_path, 1)
    truncate(os.path.join(copy_version(trained, tmp_path, 2), DATA_FILE))
    with caplog.at_level(logging.WARNING):
        model = resolve(tmp_path)
    assert model.version == 1 and model.path == os.path.join(str(tmp_path), NAME, "1")
    line = f"version 2: {DATA_FILE} is 0 bytes, the manifest says {manifest_size(trained, DATA_FILE)}"
    assert model.skipped == (line,)
    assert line in caplog.text


def test_latest_skips_a_newest_version_without_its_saved_model(trained, tmp_path):
    copy_version(trained, tmp_path, 1)
    os.remove(os.path.join(copy_version(trained, tmp_path, 2), "saved_model.pb"))
    model = resolve(tmp_path)
    assert model.version == 1 and model.skipped == ("version 2: saved_model.pb is missing",)


def test_same_size_corruption_is_caught_by_the_checksum(trained, tmp_path):
    copy_version(trained, tmp_path, 1)
    damaged = os.path.join(copy_version(trained, tmp_path, 2), DATA_FILE)
    flip_a_byte(damaged)
    assert os.path.getsize(damaged) == manifest_size(trained, DATA_FILE)
    model = resolve(tmp_path)
    assert model.version == 1 and model.skipped == (f"version 2: {DATA_FILE} fails its checksum",)
    with pytest.raises(ModelVersionError, match=f"version 2 under .* is broken: {DATA_FILE} fails its checksum"):
        resolve(tmp_path, 2)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda v: truncate(os.path.join(v, "variables/variables.index")), "variables/variables.index is 0 bytes"),
        (lambda v: os.remove(os.path.join(v, "assets/company")), "assets/company is missing"),
        (lambda v: shutil.rmtree(os.path.join(v, "variables")), "variables/variables.data-00000-of-00001 is missing"),
    ],
    ids=["truncated", "asset-deleted", "variables-deleted"],
)
def test_a_pinned_broken_version_is_refused_naming_the_file(trained, tmp_path, damage, reason):
    damage(copy_version(trained, tmp_path, 1))
    copy_version(trained, tmp_path, 2)
    with pytest.raises(ModelVersionError, match=f"model '{NAME}' version 1 under .* is broken: {reason}"):
        resolve(tmp_path, 1)
    assert resolve(tmp_path, 2).version == 2


@pytest.mark.parametrize(
    "metadata, reason",
    [
        (b'{"schema_fingerprint": ', "metadata.json is not valid JSON"),
        (b"[1, 2]", "metadata.json is not a JSON object"),
        (json.dumps({"schema_fingerprint": USE_CASE.input.fingerprint()}).encode(), "metadata.json lacks threshold"),
        (
            json.dumps({"threshold": 0.5, "schema_fingerprint": "x", "manifest": [{"path": "a"}]}).encode(),
            "metadata.json has a malformed manifest",
        ),
    ],
    ids=["not-json", "not-an-object", "no-threshold", "malformed-manifest"],
)
def test_unusable_metadata_makes_a_version_broken(trained, tmp_path, metadata, reason):
    copy_version(trained, tmp_path, 1)
    with open(os.path.join(copy_version(trained, tmp_path, 2), registry.METADATA_FILE), "wb") as f:
        f.write(metadata)
    model = resolve(tmp_path)
    assert model.version == 1 and len(model.skipped) == 1 and model.skipped[0].startswith(f"version 2: {reason}")
    with pytest.raises(ModelVersionError, match=f"version 2 under .* is broken: {reason}"):
        resolve(tmp_path, 2)


def test_a_version_from_before_the_manifest_still_resolves_and_scores(trained, typed_trips, tmp_path):
    copy_version(trained, tmp_path, 1, manifest=False)
    model = resolve(tmp_path)
    assert model.version == 1 and model.skipped == () and registry.MANIFEST_KEY not in model.metadata
    assert resolve(tmp_path, 1).version == 1
    rows = typed_trips.slice(0, 200)
    old = tf.saved_model.load(model.path).signatures[signature.RAW_SIGNATURE]
    new = tf.saved_model.load(trained.version.path).signatures[signature.RAW_SIGNATURE]
    got = old(**signature.batch_to_inputs(rows, USE_CASE.input))[signature.PROBABILITY].numpy()
    want = new(**signature.batch_to_inputs(rows, USE_CASE.input))[signature.PROBABILITY].numpy()
    assert got.shape == (200,) and np.all((got >= 0) & (got <= 1))
    assert_close_probabilities(got, want, "a version without a manifest")


def test_a_version_from_before_the_manifest_without_its_saved_model_is_skipped(trained, tmp_path):
    copy_version(trained, tmp_path, 1)
    os.remove(os.path.join(copy_version(trained, tmp_path, 2, manifest=False), "saved_model.pb"))
    model = resolve(tmp_path)
    assert model.version == 1
    assert model.skipped == ("version 2: saved_model.pb is missing (a version exported without a manifest)",)


def test_every_version_broken_is_an_error_listing_them(trained, tmp_path):
    truncate(os.path.join(copy_version(trained, tmp_path, 1), DATA_FILE))
    os.remove(os.path.join(copy_version(trained, tmp_path, 2), "saved_model.pb"))
    with pytest.raises(ModelVersionError) as e:
        resolve(tmp_path)
    assert str(e.value) == (
        f"every version of model '{NAME}' under {tmp_path} is broken: version 2: saved_model.pb is missing; "
        f"version 1: {DATA_FILE} is 0 bytes, the manifest says {manifest_size(trained, DATA_FILE)}"
    )


def test_a_newest_version_on_another_schema_is_refused_not_skipped(trained, tmp_path):
    copy_version(trained, tmp_path, 1)
    copy_version(trained, tmp_path, 2, schema_fingerprint="0" * 64)
    with pytest.raises(ModelVersionError, match="version 2 was trained on another input schema"):
        resolve(tmp_path)


def test_a_published_copy_resolves(trained, tmp_path):
    target = registry.publish_version(trained.version.path, str(tmp_path / "published"))
    model = resolve(tmp_path / "published")
    assert model.path == target and model.version == trained.version.version and model.skipped == ()
    assert model.metadata == registry.read_metadata(trained.version.path)
    assert resolve(tmp_path / "published", trained.version.version).path == target


def test_a_version_published_to_gcs_is_checked_there(trained, gcs, tmp_path):
    number = trained.version.version
    prefix = f"manifest-{uuid.uuid4().hex[:8]}/models"
    root, version = f"gs://{GCS_BUCKET}/{prefix}", f"{prefix}/{NAME}/{number}"
    assert registry.publish_version(trained.version.path, root) == f"{root}/{NAME}/{number}"
    # A folder placeholder, as some tools leave in buckets: not a file of the version, in a manifest or a copy.
    gcs.blob(f"{version}/variables/").upload_from_string(b"")
    model = resolve(root)
    assert model.skipped == () and model.metadata == registry.read_metadata(trained.version.path)
    assert resolve(root, number).path == model.path == f"{root}/{NAME}/{number}"
    assert registry.build_manifest(model.path) == model.metadata[registry.MANIFEST_KEY]
    registry.publish_version(model.path, str(tmp_path))
    assert resolve(tmp_path).metadata == model.metadata
    data = gcs.blob(f"{version}/{DATA_FILE}")
    content = bytearray(data.download_as_bytes())
    content[len(content) // 2] ^= 0xFF
    data.upload_from_string(bytes(content))
    with pytest.raises(ModelVersionError, match=f"under {root} is broken: {DATA_FILE} fails its checksum"):
        resolve(root, number)
    gcs.blob(f"{version}/assets/company").delete()
    with pytest.raises(ModelVersionError, match=f"every version .*: version {number}: assets/company is missing"):
        resolve(root)


def test_the_scorer_refuses_a_pinned_broken_version_before_writing_anything(trained, tmp_path, capsys):
    truncate(os.path.join(copy_version(trained, tmp_path / "models", 1), DATA_FILE))
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 10)
    argv = [
        f"--date={DAY}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={tmp_path / 'models'}",
        f"--warehouse={tmp_path}/wh/scores.duckdb",
        "--create_dataset",
        "--model_version=1",
    ]
    assert score.main(argv) == 2
    assert f"version 1 under {tmp_path / 'models'} is broken: {DATA_FILE} is 0 bytes" in capsys.readouterr().err
    assert not (tmp_path / "wh").exists()
