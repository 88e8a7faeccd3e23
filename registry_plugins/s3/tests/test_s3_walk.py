"""The s3 driver's flat ``walk`` on real S3 servers: the contract's order (the base class's walk,
one listing per directory, is the reference) on names that S3's key order puts out of place, the
sizes and times from the listing, and what it costs, counted at the boto3 client."""

from __future__ import annotations

import collections
from typing import Any

import pytest
from registry_s3.driver import S3Driver
from registry_s3.plugin import build_driver
from s3_servers import S3Server

from registry.storage.checked import checked
from registry.storage.driver import PathNotFoundError

#: Names around the ``/`` < ``-`` < ``.`` quirk: ``a`` is a directory listed after ``a-b`` and
#: ``a.b``; ``v1`` after ``v1.0``; ``x`` twice out of place, one inside the other.
TREE = [
    "a/1", "a/b/2", "a-c", "a-b/c", "a.b/d", "a0/e", "a_b", "ab/f",
    "t/v1/current/link", "t/v1.0/current/link", "t/v1.0.1/index/link", "t/v1-rc/x",
    "x/y/z", "x-y/q", "x/y-z/w", "x/y/z-1", "x/y.z", "x--/k", "x-", "x-./m",
    "u/_uploads/0a1b-2c/data", "u/_uploads/0a1b-2c/startedat", "u/_uploads/0a1b/hash",
    "deep/" + "/".join(f"d{i}" for i in range(12)) + "/leaf",
]


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


def _driver(server: S3Server, **extra: Any) -> S3Driver:
    return build_driver(server.options(server.new_bucket(), rootdirectory="/root", **extra))


def _reference(driver: S3Driver, path: str) -> list[tuple[str, int, bool]]:
    """The base class's walk (a listing per directory, a stat per entry), all the way down."""

    def nested(at: str) -> Any:
        for child in sorted(driver.list(at)):
            info = driver.stat(child)
            yield info.path, info.size, info.is_dir
            if info.is_dir:
                yield from nested(child)

    return list(nested(path))


def test_walk_is_the_contracts_order_on_out_of_place_names(s3_server: S3Server) -> None:
    driver = _driver(s3_server)
    for n, rel in enumerate(TREE):
        driver.put_content(f"/top/{rel}", b"x" * n)
    # A driver's own key (an appending writer's tail) is no file, but its directory exists.
    w = driver.writer("/top/u/_uploads/0a1b/data", append=False)
    w.write(b"tail")
    w.commit()
    a = driver.writer("/top/u/_uploads/0a1b/data", append=True)
    a.write(b"more")
    a.close()
    calls = Calls(driver)
    for path in ("/top", "/top/x", "/top/t", "/top/a", "/"):
        walked = [(i.path, i.size, i.is_dir) for i in checked(driver).walk(path)]
        assert walked == _reference(driver, path), path
    calls.take()
    infos = list(driver.walk("/top"))
    # Sizes and dates from the listing, without a HEAD per object.
    assert calls.take().get("HeadObject", 0) == 0
    files = {i.path: i for i in infos if not i.is_dir}
    assert files["/top/a-c"].size == TREE.index("a-c")
    assert all(i.mod_time is not None for i in files.values())
    # The listing's time is the HEAD's (which has whole seconds only).
    assert abs((files["/top/a/1"].mod_time - driver.stat("/top/a/1").mod_time).total_seconds()) < 1
    assert not any("~" in i.path for i in infos)
    with pytest.raises(PathNotFoundError):
        list(checked(driver).walk("/top/missing"))
    with pytest.raises(PathNotFoundError):
        list(driver.walk("/top/a-c"))  # a file is no directory to walk
    driver.delete("/top")


@pytest.mark.slow
def test_walk_costs_a_call_per_thousand_objects(moto_server: S3Server) -> None:
    """1,050 objects in 210 blob-like directories below 128 prefixes: 2 listing pages, where the
    base class's walk pays a listing per directory and a stat per entry."""
    import concurrent.futures

    driver = _driver(moto_server)
    keys = [f"/many/{i % 128:02x}/{i:064x}/{name}" for i in range(210) for name in ("data", "a", "b", "c", "d")]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: driver.put_content(k, b"1"), keys, timeout=300))
    calls = Calls(driver)
    walked = list(driver.walk("/many"))
    flat = calls.take()
    assert sum(not i.is_dir for i in walked) == len(keys)
    assert flat == {"ListObjectsV2": 2}, flat
    reference = _reference(driver, "/many")
    nested = calls.take()
    assert [(i.path, i.size, i.is_dir) for i in walked] == reference
    print(f"walk of 1,050 objects in 339 directories: flat {flat}, base class {nested}")
    assert nested["ListObjectsV2"] >= 2 * 339 - 1 and nested["HeadObject"] > len(keys)
    driver.delete("/many")
