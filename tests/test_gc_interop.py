"""A filesystem tree written by Distribution (Debian's ``docker-registry``, 2.8) and collected by our
``registry garbage-collect --delete-untagged`` while Distribution serves it: Distribution still serves
every tagged image (a multi-arch index with all its platforms included) and no longer the garbage,
and its own ``garbage-collect --dry-run`` finds nothing left to delete."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import pushing
from tests.clients.client_harness import DISTRIBUTION, find_tool, requirement_marks, running_registry

pytestmark = [pytest.mark.interop, *requirement_marks("docker-registry")]

SCRIPT = Path(sys.executable).with_name("registry")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def test_distribution_serves_a_tree_we_collected(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with running_registry(DISTRIBUTION, root, tmp_path / "run") as server, pushing.session() as s:
        url = server.url

        def image(repo: str, ref: str | None, layer: bytes, label: str) -> tuple[str, bytes, list[bytes]]:
            config = pushing.config_blob(label)
            for data in (layer, config):
                pushing.push_blob(s, url, repo, data, "post_put")
            raw = pushing.manifest(config, [layer])
            d = pushing.put_manifest(s, url, repo, ref or pushing.digest(raw), raw)
            return d, raw, [layer, config]

        kept = image("interop/gc", "v1", b"kept layer", "kept")
        amd = image("interop/gc", None, b"amd64 layer", "amd64")
        arm = image("interop/gc", None, b"arm64 layer", "arm64")
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": pushing.OCI_MANIFEST, "digest": d, "size": len(raw),
             "platform": {"architecture": arch, "os": "linux"}} for (d, raw, _), arch in ((amd, "amd64"), (arm, "arm64"))
        ]}).encode()
        r = s.put(f"{url}/v2/interop/gc/manifests/multi", data=index, headers={"Content-Type": OCI_INDEX}, timeout=10)
        assert r.status_code == 201, r.text
        deleted = image("interop/gc", "v2", b"deleted layer", "deleted")
        assert s.delete(f"{url}/v2/interop/gc/manifests/{deleted[0]}", timeout=10).status_code == 202
        untagged = image("interop/gc", None, b"untagged layer", "untagged")
        time.sleep(1.2)  # older than the collector's slack for coarse clocks

        r = subprocess.run([str(SCRIPT), "garbage-collect", "--grace", "0", "--settle", "0", "--delete-untagged",
                            "--json", str(server.config)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        assert (result["revisions_deleted"], result["blobs_deleted"], result["errors"]) == (1, 6, []), r.stdout + r.stderr

        for d, raw, blobs in (kept, amd, arm):
            got = pushing.get_manifest(s, url, "interop/gc", d)
            assert got.status_code == 200 and got.content == raw
            for data in blobs:
                assert pushing.get_blob(s, url, "interop/gc", pushing.digest(data)).content == data
        got = s.get(f"{url}/v2/interop/gc/manifests/multi", headers={"Accept": OCI_INDEX}, timeout=10)
        assert got.status_code == 200 and got.content == index
        for d, _, blobs in (deleted, untagged):
            assert pushing.get_manifest(s, url, "interop/gc", d).status_code == 404
            for data in blobs[:1]:  # the layers; the configs are alike enough to share nothing either
                assert pushing.get_blob(s, url, "interop/gc", pushing.digest(data)).status_code == 404

    # Distribution's own collector agrees: nothing is left to collect.
    out = subprocess.run([find_tool("docker-registry"), "garbage-collect", "--dry-run", str(server.config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    match = re.search(r"(\d+) blobs marked, (\d+) blobs(?: and \d+ manifests)? eligible for deletion", text)
    assert match, text[-2000:]
    assert int(match.group(2)) == 0, text[-2000:]
    assert int(match.group(1)) == 10  # three image manifests with a config and a layer each, and the index
