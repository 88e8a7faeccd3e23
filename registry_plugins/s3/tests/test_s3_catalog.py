"""The catalog on a real S3 server pages through ``ListObjectsV2``: a page in the middle of 2,000
repositories costs a few listing calls that return a few dozen entries, counted at the boto3
client (botocore's events), not the whole level of the tree."""

from __future__ import annotations

import collections
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import falcon.testing
import pytest
from registry_s3.driver import S3Driver
from registry_s3.plugin import build_driver
from s3_servers import S3Server

from registry.app import create_app
from registry.plugins import create_plugin_manager
from registry.storage.driver import Capability

pytestmark = pytest.mark.slow

REPOSITORIES = 2000
NAMES = sorted(f"repo-{i:05d}" for i in range(REPOSITORIES))
ROOT = "r"


def _link_key(name: str) -> str:
    return f"{ROOT}/docker/registry/v2/repositories/{name}/_manifests/tags/latest/current/link"


@pytest.fixture
def bucket(s3_server: S3Server) -> Any:
    """A bucket holding 2,000 repositories: one tag link each, written directly (cheap), removed after."""
    bucket = s3_server.new_bucket()
    client = s3_server.client()
    body = b"sha256:" + b"0" * 64

    def put(name: str) -> None:
        client.put_object(Bucket=bucket, Key=_link_key(name), Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, NAMES, timeout=300))
    yield bucket
    for start in range(0, REPOSITORIES, 1000):
        keys = [{"Key": _link_key(name)} for name in NAMES[start:start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


class Counter:
    """ListObjectsV2 calls made through one driver's client, and the entries they returned."""

    def __init__(self, driver: S3Driver) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        driver.client.meta.events.register("after-call.s3.ListObjectsV2", self._count)

    def _count(self, parsed: dict, **_: Any) -> None:
        self.counts["calls"] += 1
        self.counts["entries"] += len(parsed.get("Contents", ())) + len(parsed.get("CommonPrefixes", ()))

    def take(self) -> dict[str, int]:
        taken = dict(self.counts)
        self.counts.clear()
        return taken


def _catalog(driver: S3Driver, query: str) -> tuple[list[str], str]:
    config = {"version": 0.1, "storage": {"s3": {}}}
    client = falcon.testing.TestClient(create_app(config, create_plugin_manager(), driver=driver))
    r = client.simulate_get("/v2/_catalog", query_string=query)
    assert r.status_code == 200, r.text
    return json.loads(r.text)["repositories"], r.headers.get("Link", "")


def test_a_catalog_page_costs_listing_calls_for_the_page_only(s3_server: S3Server, bucket: str) -> None:
    paged = build_driver(s3_server.options(bucket, rootdirectory=f"/{ROOT}"))
    whole = build_driver(s3_server.options(bucket, rootdirectory=f"/{ROOT}"))
    whole.capabilities = paged.capabilities & ~Capability.PAGED_LIST  # the same driver, listing whole levels
    assert Capability.PAGED_LIST in paged.capabilities
    counted = {"paged": Counter(paged), "whole": Counter(whole)}
    measured = {}
    for label, query, expected in [
        ("first", "n=10", NAMES[:10]),
        ("middle", f"n=10&last={NAMES[1000]}", NAMES[1001:1011]),
        ("end", f"n=10&last={NAMES[-6]}", NAMES[-5:]),
    ]:
        for kind, driver in (("paged", paged), ("whole", whole)):
            repos, link = _catalog(driver, query)
            assert repos == expected, (kind, label)
            assert bool(link) == (label != "end"), (kind, label, link)
            measured[kind, label] = counted[kind].take()
    print(f"\n{s3_server.kind}: ListObjectsV2 per catalog page of n=10 over {REPOSITORIES} repositories:")
    for (kind, label), counts in sorted(measured.items()):
        print(f"  {kind:5} {label:6} calls={counts['calls']:3} entries={counts['entries']:5}")
    for label in ("first", "middle", "end"):
        paged_counts, whole_counts = measured["paged", label], measured["whole", label]
        # The level from `last` on (1 call), whether `repo` is a directory sorting before
        # `repo-...` (1), `last`'s own directory (1), one call per repository shown (10, and the
        # 11th that tells whether a next page exists).
        assert paged_counts["calls"] <= 16, (label, paged_counts)
        assert paged_counts["entries"] <= 60, (label, paged_counts)
        # A whole level is 2,000 entries in pages of 1,000 (from the first when paging is not native).
        assert whole_counts["entries"] >= REPOSITORIES // 2, (label, whole_counts)
        assert paged_counts["entries"] * 10 < whole_counts["entries"], label
