"""Garbage collection in-process, on every core driver and the object-store-like one: what is freed,
what is kept (multi-arch children, referrers, recent uploads), dry runs, and the repair of links a
racing push needs."""

from __future__ import annotations

import datetime
import json

import pytest

from registry.digests import parse_digest
from registry.ops.gc import GarbageCollector, collect_garbage
from registry.storage import paths
from registry.storage.checked import checked
from registry.storage.driver import PathNotFoundError
from registry.storage.store import Store
from tests.conftest import Pusher, sha256

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: A clock an hour ahead: with grace 0 everything stored so far is old enough to collect.
LATER = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)


def store_of(driver) -> Store:
    return Store(checked(driver))


def has_blob(driver, d: str) -> bool:
    return store_of(driver).blob_size(parse_digest(d)) is not None


def gc(driver, now=LATER, **options):
    options.setdefault("grace", 0)
    options.setdefault("settle", 0)
    return collect_garbage(store_of(driver), now=now, **options)


def pull_ok(client, name: str, ref: str) -> None:
    """Pull ``ref`` and everything it refers to, verifying every digest."""
    r = client.simulate_get(f"/v2/{name}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    assert r.status_code == 200, (name, ref, r.text)
    doc = json.loads(r.content)
    for child in doc.get("manifests", []):
        pull_ok(client, name, child["digest"])
    for desc in [doc.get("config"), *doc.get("layers", [])]:
        if desc:
            b = client.simulate_get(f"/v2/{name}/blobs/{desc['digest']}")
            assert b.status_code == 200, (name, desc, b.text)
            assert sha256(b.content) == desc["digest"]


def index_of(client, name: str, tag: str, children: list[tuple[str, bytes]]) -> str:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
           "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": len(raw),
                          "platform": {"architecture": arch, "os": "linux"}}
                         for (d, raw), arch in zip(children, ("amd64", "arm64", "s390x"), strict=False)]}
    raw = json.dumps(doc).encode()
    r = client.simulate_put(f"/v2/{name}/manifests/{tag}", body=raw, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201, r.text
    return sha256(raw)


def referrer(pusher: Pusher, name: str, subject: tuple[str, bytes], payload: bytes) -> tuple[str, bytes]:
    d, raw = subject
    return pusher.image(name, None, layers=(payload,), extra={
        "artifactType": "application/vnd.example.signature",
        "subject": {"mediaType": OCI_MANIFEST, "digest": d, "size": len(raw)}})


def test_frees_what_a_deleted_manifest_alone_used(client, pusher, driver):
    """Distribution's example: A uses a, b; B uses a, c; B is deleted: c and B go, A stays whole."""
    a, _ = pusher.image("lib/x", "a", layers=(b"layer a", b"layer b"))
    b, b_raw = pusher.image("lib/x", "b", layers=(b"layer a", b"layer c"))
    assert client.simulate_delete(f"/v2/lib/x/manifests/{b}").status_code == 202
    result = gc(driver)
    assert not has_blob(driver, sha256(b"layer c")) and not has_blob(driver, b)
    for kept in (a, sha256(b"layer a"), sha256(b"layer b")):
        assert has_blob(driver, kept)
    assert result.blobs_deleted == 2
    assert result.bytes_freed == len(b"layer c") + len(b_raw)
    pull_ok(client, "lib/x", "a")
    assert not result.errors


def test_dry_run_deletes_nothing_and_reports_the_same(client, pusher, driver, storage_snapshot):
    pusher.image("lib/x", "a", layers=(b"kept",))
    b, _ = pusher.image("lib/x", "b", layers=(b"garbage",))
    pusher.image("lib/x", None, layers=(b"untagged",))
    assert client.simulate_delete(f"/v2/lib/x/manifests/{b}").status_code == 202
    before = storage_snapshot()
    dry = gc(driver, dry_run=True, delete_untagged=True)
    after = storage_snapshot()
    assert after == before
    assert dry.dry_run and dry.blobs_deleted >= 3 and dry.revisions_deleted == 1
    real = gc(driver, delete_untagged=True)
    assert (real.blobs_deleted, real.bytes_freed, real.revisions_deleted) == (
        dry.blobs_deleted, dry.bytes_freed, dry.revisions_deleted)
    assert sorted(real.deleted_blobs) == sorted(dry.deleted_blobs)
    assert "would free" in dry.summary() and "freed" in real.summary()


def test_without_delete_untagged_untagged_manifests_stay(client, pusher, driver):
    d, _ = pusher.image("lib/x", None, layers=(b"untagged layer",))
    result = gc(driver)
    assert result.blobs_deleted == 0 and result.revisions_deleted == 0
    pull_ok(client, "lib/x", d)


def test_delete_untagged_keeps_multi_arch_children_and_referrers(client, pusher, driver):
    amd = pusher.image("multi/app", None, layers=(b"amd64 layer",))
    arm = pusher.image("multi/app", None, layers=(b"arm64 layer",))
    index = index_of(client, "multi/app", "v1", [amd, arm])
    # A signature of the tagged index, and an SBOM of one child: both untagged, both kept.
    sig, _ = referrer(pusher, "multi/app", (index, client.simulate_get(f"/v2/multi/app/manifests/{index}").content),
                      b"signature payload")
    sbom, _ = referrer(pusher, "multi/app", arm, b"sbom payload")
    # A referrer of the referrer (a signature of the SBOM) is kept too.
    sbom_raw = client.simulate_get(f"/v2/multi/app/manifests/{sbom}").content
    sbom_sig, _ = referrer(pusher, "multi/app", (sbom, sbom_raw), b"sbom signature")
    # Untagged garbage: an image and its own signature.
    orphan = pusher.image("multi/app", None, layers=(b"orphan layer",))
    orphan_sig, _ = referrer(pusher, "multi/app", orphan, b"orphan signature")

    result = gc(driver, delete_untagged=True)

    pull_ok(client, "multi/app", "v1")
    for d in (amd[0], arm[0], sig, sbom, sbom_sig):
        pull_ok(client, "multi/app", d)
    for d in (orphan[0], orphan_sig):
        assert client.simulate_get(f"/v2/multi/app/manifests/{d}").status_code == 404
        assert not has_blob(driver, d)
    assert not has_blob(driver, sha256(b"orphan layer")) and not has_blob(driver, sha256(b"orphan signature"))
    refs = client.simulate_get(f"/v2/multi/app/referrers/{arm[0]}").json
    assert [m["digest"] for m in refs["manifests"]] == [sbom]
    assert result.revisions_deleted == 2
    # The orphan's layer links went with it; the kept manifests' links did not.
    store = store_of(driver)
    assert not store.has_layer_link("multi/app", parse_digest(sha256(b"orphan layer")))
    assert store.has_layer_link("multi/app", parse_digest(sha256(b"sbom payload")))


def test_blobs_shared_with_another_repository_stay(client, pusher, driver):
    pusher.image("one", "v1", layers=(b"shared",))
    d, _ = pusher.image("two", "v1", layers=(b"shared", b"own"))
    assert client.simulate_delete(f"/v2/two/manifests/{d}").status_code == 202
    gc(driver, delete_untagged=True)
    assert has_blob(driver, sha256(b"shared")) and not has_blob(driver, sha256(b"own"))
    pull_ok(client, "one", "v1")


def test_grace_keeps_recent_uploads(client, pusher, driver):
    """An uploaded blob no manifest uses yet (a push in flight) is kept while it is within the grace
    period, with the real clock; an hour later it is garbage."""
    garbage = pusher.blob("lib/x", b"in flight")
    result = gc(driver, now=None, grace=3600, delete_untagged=True)
    assert has_blob(driver, garbage) and result.blobs_deleted == 0
    assert result.blobs_marked == 1  # marked by its young layer link
    result = gc(driver, now=None, grace=0, delete_untagged=True)  # written within the clock slack: still kept
    assert has_blob(driver, garbage)
    result = gc(driver, delete_untagged=True)
    assert not has_blob(driver, garbage) and result.layer_links_deleted == 1


def test_a_blob_reused_during_the_run_is_kept_and_relinked(client, pusher, driver):
    """The race the second mark exists for: between the sweep and the blob deletes, a client pushes
    a manifest that reuses a garbage blob (whose layer link the sweep just removed). The check
    phase keeps the blob and restores the link, so the new image pulls whole."""
    d, _ = pusher.image("lib/x", "old", layers=(b"reused",))
    assert client.simulate_delete(f"/v2/lib/x/manifests/{d}").status_code == 202
    collector = GarbageCollector(store_of(driver), grace=0, settle=1, delete_untagged=True)
    pushed = {}

    def push_during_settle(seconds: float) -> None:
        # The layer link is gone now; the blob is still stored, so the registry accepts a re-push of
        # the blob (a monolithic upload relinks it) and then the manifest.
        pushed["new"] = pusher.image("lib/x", "new", layers=(b"reused",))

    collector.sleep = push_during_settle
    result = collector.run(now=LATER)
    assert "new" in pushed
    assert has_blob(driver, sha256(b"reused"))
    assert result.rescued >= 1
    pull_ok(client, "lib/x", "new")


def test_repair_relinks_a_child_revision_the_sweep_removed(client, pusher, driver):
    """An index tagged while the sweep removed its (then untagged) child: the check phase relinks
    the child, whose blob is still stored, so the multi-arch image is whole again."""
    child = pusher.image("multi/app", None, layers=(b"child layer",))
    # The real clock, without the slack for coarse clocks: the child is older than the run, what
    # the client writes during the settle pause is newer.
    collector = GarbageCollector(store_of(driver), grace=0, settle=1, delete_untagged=True, clock_slack=0)

    def tag_index_during_settle(seconds: float) -> None:
        # The sweep unlinked the child; a client that checked it before then writes the index.
        store = store_of(driver)
        assert not store.has_manifest("multi/app", parse_digest(child[0]))
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": child[0], "size": len(child[1])}]}).encode()
        store.put_manifest("multi/app", parse_digest(sha256(raw)), raw)
        store.tag("multi/app", "v1", parse_digest(sha256(raw)))

    collector.sleep = tag_index_during_settle
    result = collector.run()
    assert result.repaired >= 1
    pull_ok(client, "multi/app", "v1")


def test_a_tag_written_while_the_sweep_deletes_its_manifest_is_repaired(client, pusher, driver):
    """The race of a client tagging an untagged manifest (its PUT rewrote the revision just before
    the sweep removed it, then wrote the tag): the check phase relinks the revision and its layers,
    and keeps the blobs, so the tag pulls whole. Tags are never deleted by the sweep."""
    d, _ = pusher.image("lib/x", None, layers=(b"untagged, then tagged",))
    collector = GarbageCollector(store_of(driver), grace=0, settle=1, delete_untagged=True, clock_slack=0)

    def tag_during_settle(seconds: float) -> None:
        store = store_of(driver)
        assert not store.has_manifest("lib/x", parse_digest(d))  # the sweep removed it
        store.tag("lib/x", "v1", parse_digest(d))

    collector.sleep = tag_during_settle
    result = collector.run()
    assert result.repaired >= 2 and result.rescued >= 2  # the revision and its layers; manifest, layer, config
    pull_ok(client, "lib/x", "v1")
    from tests.integrity import check_storage

    assert check_storage(checked(driver)).problems == []


def test_a_moved_tag_forgets_the_collected_manifest(client, pusher, driver):
    old, _ = pusher.image("lib/x", "v1", layers=(b"first",))
    pusher.image("lib/x", "v1", layers=(b"second",))  # moves v1: the first is untagged now
    store = store_of(driver)
    history = paths.tag_index_link("lib/x", "v1", parse_digest(old))
    assert checked(driver).stat(history)
    gc(driver, delete_untagged=True)
    assert not store.has_manifest("lib/x", parse_digest(old)) and not has_blob(driver, sha256(b"first"))
    with pytest.raises(PathNotFoundError):
        checked(driver).stat(history)
    from tests.integrity import check_storage

    assert check_storage(checked(driver)).problems == []
    pull_ok(client, "lib/x", "v1")


def test_tags_are_never_deleted(client, pusher, driver):
    pusher.image("lib/x", "v1", layers=(b"l1",))
    pusher.image("lib/x", "v2", layers=(b"l2",))
    gc(driver, delete_untagged=True)
    assert client.simulate_get("/v2/lib/x/tags/list").json["tags"] == ["v1", "v2"]


def test_junk_in_the_tree_is_left_alone(client, pusher, driver):
    pusher.image("lib/x", "v1", layers=(b"l1",))
    junk = f"{paths.BLOBS}/sha256/zz/not-a-digest/data"
    checked(driver).put_content(junk, b"junk")
    result = gc(driver, delete_untagged=True)
    assert checked(driver).get_content(junk) == b"junk"
    assert not result.errors
    pull_ok(client, "lib/x", "v1")


@pytest.mark.parametrize("delete_untagged", [False, True])
def test_an_empty_registry(driver, delete_untagged):
    result = gc(driver, delete_untagged=delete_untagged)
    assert (result.repositories, result.blobs_deleted, result.errors) == (0, 0, [])


def test_progress_draws_on_a_terminal_only():
    import io

    from registry.ops.progress import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, plain = Tty(), io.StringIO()
    for stream in (tty, plain):
        p = Progress(stream)
        p.update("delete blobs", 3, 3)
        p.done()
    assert "\rdelete blobs: [" in tty.getvalue() and "3/3" in tty.getvalue()
    assert plain.getvalue() == ""


def test_the_command(tmp_path):
    """``registry garbage-collect`` as a user runs it: Distribution's dry-run lines, the summary, exit
    statuses."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import falcon.testing

    from registry.app import create_app
    from registry.plugins import by_name, create_plugin_manager

    pytest.importorskip("registry_filesystem")
    root = tmp_path / "root"
    pm = create_plugin_manager()
    driver = by_name(pm, "registry_storage_drivers")["filesystem"].factory({"rootdirectory": str(root)})
    client = falcon.testing.TestClient(create_app({"storage": {"filesystem": {}, "delete": {"enabled": True}}}, pm,
                                                  driver=driver))
    pusher = Pusher(client)
    pusher.image("lib/x", "v1", layers=(b"kept",))
    d, _ = pusher.image("lib/x", "v2", layers=(b"garbage layer",))
    assert client.simulate_delete(f"/v2/lib/x/manifests/{d}").status_code == 202
    config = tmp_path / "config.yml"
    config.write_text(json.dumps({"version": 0.1, "log": {"level": "warn"},
                                  "storage": {"filesystem": {"rootdirectory": str(root)}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    script = str(Path(sys.executable).with_name("registry"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([script, "garbage-collect", *args, str(config)], capture_output=True, text=True,
                              timeout=60, env=env)

    time.sleep(1.1)  # older than the slack for coarse clocks
    r = run("--dry-run", "--grace", "0")
    assert r.returncode == 0, r.stderr
    assert f"blob eligible for deletion: {sha256(b'garbage layer')}" in r.stdout
    assert f"blob eligible for deletion: {d}" in r.stdout
    assert "dry run: " in r.stdout and "would free" in r.stdout
    assert has_blob(driver, sha256(b"garbage layer"))
    r = run()  # the default grace, an hour: everything here is too young
    assert r.returncode == 0 and "deleted 0 manifests, 0 layer links and 0 blobs" in r.stdout
    r = run("--grace", "0", "--settle", "0", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["blobs_deleted"] == 2 and not has_blob(driver, sha256(b"garbage layer"))
    r = run("--grace", "soon")
    assert r.returncode == 2 and "--grace" in r.stderr


@pytest.mark.parametrize("command", ["garbage-collect", "scrub", "delete-repository"])
def test_help(command):
    import subprocess
    import sys
    from pathlib import Path

    r = subprocess.run([str(Path(sys.executable).with_name("registry")), command, "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and f"registry {command}" in r.stdout
    top = subprocess.run([str(Path(sys.executable).with_name("registry")), "--help"], capture_output=True, text=True,
                         timeout=60)
    assert command in top.stdout
