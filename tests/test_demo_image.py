"""`registry demo-image` writes a valid OCI image layout offline: every blob matches its digest, the
manifest and index match the image spec's schemas, the config's diff_id is the uncompressed layer's,
and skopeo (a real client) reads and copies it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import jsonschema
import pytest

from registry.cli import main
from registry.demo import MANIFEST_MEDIA, REF_NAME, write_demo_image

SCHEMAS = Path(__file__).resolve().parents[1] / "registry" / "schemas"


def _blob(root: Path, digest: str) -> bytes:
    algorithm, hexdigest = digest.split(":")
    data = (root / "blobs" / algorithm / hexdigest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexdigest, digest
    return data


def _schema_validator(name: str) -> jsonschema.Draft202012Validator:
    from referencing import Registry, Resource

    registry = Registry()
    for path in SCHEMAS.glob("*.json"):
        resource = Resource.from_contents(json.loads(path.read_text()))
        registry = registry.with_resource(resource.id() or path.name, resource).with_resource(path.name, resource)
    schema = json.loads((SCHEMAS / name).read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_layout_is_valid(tmp_path):
    image = write_demo_image(tmp_path / "layout", arch="amd64")
    root = image.directory
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    _schema_validator("image-index.json").validate(index)
    [entry] = index["manifests"]
    assert entry["annotations"][REF_NAME] == "demo" and entry["mediaType"] == MANIFEST_MEDIA
    manifest_bytes = _blob(root, entry["digest"])
    assert len(manifest_bytes) == entry["size"] == image.manifest_size
    manifest = json.loads(manifest_bytes)
    _schema_validator("image-manifest.json").validate(manifest)
    config = json.loads(_blob(root, manifest["config"]["digest"]))
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    [layer] = manifest["layers"]
    packed = _blob(root, layer["digest"])
    assert len(packed) == layer["size"]
    raw = gzip.decompress(packed)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert tar.getnames() == ["hello.txt"]
        assert b"registry demo-image" in tar.extractfile("hello.txt").read()
    # Nothing else in the layout but the three blobs.
    assert len(list((root / "blobs" / "sha256").iterdir())) == 3


def test_same_arguments_same_digests(tmp_path):
    a = write_demo_image(tmp_path / "a", arch="arm64")
    b = write_demo_image(tmp_path / "b", arch="arm64")
    assert a.manifest_digest == b.manifest_digest
    assert write_demo_image(tmp_path / "c", arch="amd64").manifest_digest != a.manifest_digest


def test_adds_to_an_existing_layout_and_replaces_its_tag(tmp_path):
    root = tmp_path / "layout"
    first = write_demo_image(root, tag="one")
    write_demo_image(root, tag="two")
    again = write_demo_image(root, tag="one")
    refs = [m["annotations"][REF_NAME] for m in json.loads((root / "index.json").read_text())["manifests"]]
    assert sorted(refs) == ["one", "two"]
    assert again.manifest_digest == first.manifest_digest  # deterministic: the same image again, once
    assert len(list((root / "blobs" / "sha256").iterdir())) == 6


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a/b", "x" * 129, "a b"])
def test_refuses_a_bad_tag(tmp_path, tag):
    with pytest.raises(ValueError, match="invalid tag"):
        write_demo_image(tmp_path / "layout", tag=tag)
    assert not (tmp_path / "layout").exists()


def test_refuses_a_directory_that_is_not_a_layout(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["demo-image", str(tmp_path / "mine")]) == 1
    assert "not an OCI image layout" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("")
    assert main(["demo-image", str(tmp_path / "file")]) == 1


def test_cli_prints_the_reference(tmp_path, capsys):
    assert main(["demo-image", str(tmp_path / "l"), "--tag", "v1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote oci:{tmp_path / 'l'}:v1 (sha256:")


@pytest.mark.clients
def test_skopeo_reads_and_copies_it(tmp_path):
    if shutil.which("skopeo") is None:
        if os.environ.get("CI"):
            pytest.fail("skopeo is not installed (contrib/dev/install-test-deps.sh installs it under CI)")
        pytest.skip("skopeo is not installed")
    image = write_demo_image(tmp_path / "layout")
    r = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{image.directory}:demo"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout.encode()).hexdigest() == image.manifest_digest.split(":")[1]
    out = tmp_path / "copy"
    r = subprocess.run(["skopeo", "copy", f"oci:{image.directory}:demo", f"dir:{out}"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (out / "manifest.json").is_file()
    r = subprocess.run([sys.executable, "-m", "registry.cli", "demo-image", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--tag" in r.stdout and "DIRECTORY" in r.stdout
