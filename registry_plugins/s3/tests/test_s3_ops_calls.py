"""What garbage collection, scrub and ``du`` cost on S3, counted at the boto3 client on moto's
server: with the driver's flat walk (:attr:`Capability.FLAT_WALK`) the blob store costs a listing
call per 1,000 blobs and no HEAD per blob; the same driver without the flag (listing directory by
directory, as before) is the baseline, and both must give the same results."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
from typing import Any

import pytest
from registry_s3.driver import S3Driver
from registry_s3.plugin import build_driver
from s3_servers import S3Server

from registry.digests import parse_digest
from registry.ops.gc import collect_garbage
from registry.ops.scrub import scrub
from registry.ops.usage import disk_usage
from registry.storage import paths
from registry.storage.checked import checked
from registry.storage.driver import Capability
from registry.storage.store import Store

pytestmark = pytest.mark.slow

BLOBS = 500
REPOSITORIES = ("lib/app", "lib/app-x", "solo")
LATER = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)


class Calls:
    """S3 operations made through one driver's client, by name."""

    def __init__(self, driver: S3Driver) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        driver.client.meta.events.register("after-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1

    def take(self) -> dict[str, int]:
        taken = dict(self.counts)
        self.counts.clear()
        return taken


def _populate(store: Store) -> int:
    """``BLOBS`` blobs, written straight into the blob store (cheap), of which each repository's
    tagged image links 20 layers and a config; the rest is garbage. Returns the garbage count."""
    contents = [f"blob {i}".encode() for i in range(BLOBS)]
    digests = [parse_digest("sha256:" + hashlib.sha256(c).hexdigest()) for c in contents]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.driver.put_content(paths.blob_data(digests[i]), contents[i]),
                      range(BLOBS), timeout=300))
    used = 0
    for n, name in enumerate(REPOSITORIES):
        config, layers = digests[used], digests[used + 1:used + 21]
        used += 21
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(config), "size": 1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": str(d), "size": 1}
                       for d in layers],
        }).encode()
        md = parse_digest("sha256:" + hashlib.sha256(manifest).hexdigest())
        for d in (config, *layers):
            store.link_layer(name, d)
        store.put_manifest(name, md, manifest)
        store.tag(name, f"v1.{n}", md)
    return BLOBS - used


def _run(driver: S3Driver) -> dict[str, Any]:
    calls = Calls(driver)
    store = Store(checked(driver))
    out: dict[str, Any] = {}
    gc = collect_garbage(store, LATER, dry_run=True)
    out["gc"], out["gc calls"] = dataclasses.replace(gc, seconds=0.0), calls.take()
    sc = scrub(store)
    out["scrub"], out["scrub calls"] = dataclasses.replace(sc, seconds=0.0), calls.take()
    out["du"], out["du calls"] = disk_usage(store), calls.take()
    return out


def test_gc_scrub_du_list_per_thousand_blobs(moto_server: S3Server) -> None:
    bucket = moto_server.new_bucket()
    walking = build_driver(moto_server.options(bucket, rootdirectory="/r"))
    listing = build_driver(moto_server.options(bucket, rootdirectory="/r"))
    listing.capabilities = walking.capabilities & ~Capability.FLAT_WALK  # as before: a listing per directory
    assert Capability.FLAT_WALK in walking.capabilities
    garbage = _populate(Store(checked(walking)))

    before, after = _run(listing), _run(walking)
    for what in ("gc", "scrub", "du"):
        print(f"{what}: {BLOBS} blobs, {len(REPOSITORIES)} repositories: listing per directory "
              f"{before[what + ' calls']}, flat walk {after[what + ' calls']}")
    # The same answers either way.
    assert after["gc"] == before["gc"]
    assert after["gc"].blobs_deleted == garbage and after["gc"].blobs_scanned == BLOBS + len(REPOSITORIES)
    assert after["scrub"] == before["scrub"] and after["scrub"].blobs == BLOBS + len(REPOSITORIES)
    assert after["du"] == before["du"] and after["du"].total_blobs == BLOBS - garbage + len(REPOSITORIES)

    lists = {what: (before[what + " calls"].get("ListObjectsV2", 0), after[what + " calls"].get("ListObjectsV2", 0))
             for what in ("gc", "scrub", "du")}
    heads = {what: (before[what + " calls"].get("HeadObject", 0), after[what + " calls"].get("HeadObject", 0))
             for what in ("gc", "du")}
    # Per directory: one listing per two-character prefix directory in use (about 220 of the 256
    # for 503 blobs) and per repository directory.
    assert lists["gc"][0] > 200 and lists["scrub"][0] > 200
    # Flat: one page for the 503 blobs, and per repository what its own links cost.
    per_repository = 6
    for what in ("gc", "scrub", "du"):
        assert lists[what][1] <= 1 + per_repository * len(REPOSITORIES), (what, lists[what])
    # GC dates its ~440 unreferenced blobs from the listing, not with a HEAD each; du sizes its
    # 66 blobs from the walk.
    assert heads["gc"][0] >= garbage and heads["gc"][1] <= 10 * len(REPOSITORIES), heads
    assert heads["du"][0] >= BLOBS - garbage and heads["du"][1] <= 2 * len(REPOSITORIES), heads
