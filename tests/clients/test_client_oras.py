"""oras-py 0.2: files pushed and pulled back, chunked upload, tags, and OCI 1.1 artifacts with a subject.

oras-py's `push()` cannot set `artifactType`, so the artifacts are built by hand and sent with its
`upload_blob` + `upload_manifest`. The subject descriptor comes from a HEAD of the image, not from
`Subject.from_manifest`, which hashes re-serialized JSON (shared/notes/clients.md).
"""

import functools
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("oras", reason="oras-py comes with pyproject's [test] extra (make install)")

import oras.client  # noqa: E402
import oras.provider  # noqa: E402
from client_harness import (  # noqa: E402
    EMPTY_JSON,
    HTTP_TIMEOUT,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    expect,
    require_referrers,
    requirement_marks,
    sha256_digest,
)

pytestmark = [pytest.mark.clients, *requirement_marks("buildah", "busybox")]  # the subject image

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"


class Oras(oras.client.OrasClient):
    """oras-py without its retry decorator, which sleeps 3+5+11+29+83 s on errors: a failure should
    fail the test at once. The requests are unchanged."""

    do_request = oras.provider.Registry.do_request.__wrapped__


def make_client(server) -> Oras:
    c = Oras(hostname=server.host, insecure=True)
    c.session.trust_env = False  # loopback only
    # oras-py passes no timeout; its auth backend shares this session, so bound every request here.
    c.session.request = functools.partial(c.session.request, timeout=HTTP_TIMEOUT)
    return c


@pytest.fixture
def client(registry_server) -> Oras:
    return make_client(registry_server)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """oras-py only pushes files below the current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_push_and_pull_files(client, registry_server, registry_http, workdir):
    files = {"hello.txt": b"hello from oras\n", "data.bin": os.urandom(100_000)}
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    (workdir / "config.json").write_bytes(b'{"purpose": "client test"}')
    target = f"{registry_server.host}/clients/oras/files:v1"
    r = client.push(
        target=target,
        files=["hello.txt:text/plain", "data.bin:application/octet-stream"],
        manifest_config="config.json:application/vnd.example.config.v1+json",
        manifest_annotations={"org.example.purpose": "client test"},
        quiet=True,
    )
    expect(r, 201)

    manifest = expect(registry_http.get_manifest("clients/oras/files", "v1"), 200).json()
    assert manifest["annotations"]["org.example.purpose"] == "client test"
    assert manifest["config"]["digest"] == sha256_digest(b'{"purpose": "client test"}')
    layers = {layer["annotations"]["org.opencontainers.image.title"]: layer for layer in manifest["layers"]}
    assert {name: layer["digest"] for name, layer in layers.items()} == {
        name: sha256_digest(data) for name, data in files.items()
    }

    pulled = client.pull(target=target, outdir=str(workdir / "out"))
    assert sorted(os.path.basename(p) for p in pulled) == sorted(files)
    for path in pulled:
        assert Path(path).read_bytes() == files[os.path.basename(path)]


def test_chunked_push_and_pull(client, registry_server, workdir):
    data = os.urandom(3 * 1024 * 1024 + 123)  # three full 1 MiB chunks and a short one
    (workdir / "big.bin").write_bytes(data)
    target = f"{registry_server.host}/clients/oras/chunked:v1"
    expect(client.push(target=target, files=["big.bin"], do_chunked=True, chunk_size=1024 * 1024, quiet=True), 201)
    (pulled,) = client.pull(target=target, outdir=str(workdir / "out"))
    assert sha256_digest(Path(pulled).read_bytes()) == sha256_digest(data)


def test_tags_and_delete_tag(client, registry_server, registry_http, workdir):
    repo = f"{registry_server.host}/clients/oras/tags"
    for tag in ("v1", "v2", "v3"):  # different content, so each tag has its own manifest
        (workdir / "f.txt").write_text(f"content of {tag}\n")
        expect(client.push(target=f"{repo}:{tag}", files=["f.txt"], quiet=True), 201)
    assert sorted(client.get_tags(repo)) == ["v1", "v2", "v3"]
    assert client.delete_tag(repo, "v2") is True  # HEAD for the digest, then DELETE by digest
    assert sorted(client.get_tags(repo)) == ["v1", "v3"]
    expect(registry_http.get_manifest("clients/oras/tags", "v2"), 404)
    expect(registry_http.get_manifest("clients/oras/tags", "v1"), 200)


# OCI 1.1 artifacts: artifactType, empty config, subject ------------------------------------------

REFERRERS_REPO = "clients/oras/referrers"


def push_artifact(
    client, host: str, repo: str, tag: str, *, subject: dict, artifact_type: str, payload: bytes, workdir
) -> tuple:
    """Upload the payload and the empty config, then the manifest; returns (PUT response, descriptor)."""
    container = client.get_container(f"{host}/{repo}:{tag}")
    payload_file, empty_file = workdir / f"{tag}.payload", workdir / "empty.json"
    payload_file.write_bytes(payload)
    empty_file.write_bytes(EMPTY_JSON)
    layer = {
        "mediaType": artifact_type + "+json",
        "digest": sha256_digest(payload),
        "size": len(payload),
        "annotations": {"org.opencontainers.image.title": f"{tag}.json"},
    }
    config = {"mediaType": OCI_EMPTY, "digest": sha256_digest(EMPTY_JSON), "size": len(EMPTY_JSON)}
    expect(client.upload_blob(str(payload_file), container, layer), 200, 201)
    expect(client.upload_blob(str(empty_file), container, config), 200, 201)
    annotations = {"org.opencontainers.image.created": "2026-01-01T00:00:00Z", "org.example.tag": tag}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config,
        "layers": [layer],
        "subject": subject,
        "annotations": annotations,
    }
    r = expect(client.upload_manifest(manifest, container), 201)
    body = r.request.body
    digest = sha256_digest(body)
    assert r.headers["Docker-Content-Digest"] == digest
    descriptor = {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": len(body),
        "artifactType": artifact_type,
        "annotations": annotations,
    }
    return r, descriptor


@pytest.fixture(scope="module")
def subject(registry_http, test_images) -> dict:
    """The busybox image, pushed before its referrers; its descriptor from a HEAD."""
    registry_http.push_layout_entry(REFERRERS_REPO, test_images.manifest(), tag="image")
    desc = registry_http.descriptor(REFERRERS_REPO, "image")
    assert desc["digest"] == test_images.manifest().digest
    return desc


@pytest.fixture(scope="module")
def artifacts(registry_server, subject, tmp_path_factory) -> dict:
    """An SBOM and a signature referring to `subject`: artifactType -> (PUT response, descriptor)."""
    client = make_client(registry_server)
    workdir = tmp_path_factory.mktemp("oras-artifacts")
    return {
        artifact_type: push_artifact(
            client,
            registry_server.host,
            REFERRERS_REPO,
            tag,
            subject=subject,
            artifact_type=artifact_type,
            payload=json.dumps({"kind": tag}).encode(),
            workdir=workdir,
        )
        for tag, artifact_type in (("sbom", SBOM), ("signature", SIGNATURE))
    }


def test_artifact_manifest_is_stored_as_pushed(artifacts, subject, registry_http):
    for artifact_type, (response, desc) in artifacts.items():
        r = expect(registry_http.get_manifest(REFERRERS_REPO, desc["digest"]), 200)
        assert r.content == response.request.body
        assert r.headers["Content-Type"].split(";")[0] == OCI_MANIFEST
        manifest = r.json()
        assert manifest["artifactType"] == artifact_type
        assert manifest["config"]["mediaType"] == OCI_EMPTY
        assert manifest["subject"] == subject


def test_manifest_put_answers_oci_subject(artifacts, subject, registry_server):
    require_referrers(registry_server)
    for response, _ in artifacts.values():
        assert response.headers.get("OCI-Subject") == subject["digest"]


def test_referrers_lists_the_artifacts(artifacts, subject, registry_server, registry_http):
    require_referrers(registry_server)
    r = expect(registry_http.referrers(REFERRERS_REPO, subject["digest"]), 200)
    assert r.headers["Content-Type"].split(";")[0] == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    listed = {d["digest"]: d for d in index["manifests"]}
    for _, desc in artifacts.values():
        assert listed.get(desc["digest"]) == desc


def test_referrers_filtered_by_artifact_type(artifacts, subject, registry_server, registry_http):
    require_referrers(registry_server)
    r = expect(registry_http.referrers(REFERRERS_REPO, subject["digest"], artifact_type=SBOM), 200)
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == [artifacts[SBOM][1]["digest"]]
    r = expect(registry_http.referrers(REFERRERS_REPO, subject["digest"], artifact_type="application/x-none"), 200)
    assert r.json()["manifests"] == []


def test_referrers_of_a_manifest_without_any_is_empty(artifacts, registry_server, registry_http):
    require_referrers(registry_server)
    lonely = sha256_digest(b"no manifest refers to this")
    r = expect(registry_http.referrers(REFERRERS_REPO, lonely), 200)
    assert r.headers["Content-Type"].split(";")[0] == OCI_INDEX
    assert r.json()["manifests"] == []


def test_subject_may_be_pushed_after_its_referrer(client, registry_server, registry_http, workdir):
    """The spec: a registry MUST accept a manifest whose subject does not exist (yet)."""
    missing = {"mediaType": OCI_MANIFEST, "digest": sha256_digest(b"not pushed yet"), "size": 14}
    response, desc = push_artifact(
        client,
        registry_server.host,
        REFERRERS_REPO,
        "early",
        subject=missing,
        artifact_type=SBOM,
        payload=b'{"early": true}',
        workdir=workdir,
    )
    expect(registry_http.get_manifest(REFERRERS_REPO, desc["digest"]), 200)
    if registry_server.supports_referrers:
        assert response.headers.get("OCI-Subject") == missing["digest"]
        listed = expect(registry_http.referrers(REFERRERS_REPO, missing["digest"]), 200).json()["manifests"]
        assert [d["digest"] for d in listed] == [desc["digest"]]
