"""The cache of large directory listings behind the catalog, over the real filesystem driver: a hit
saves the listing, and no change to the directory is ever served late (same second, same clock tick,
during the listing, from another driver instance sharing the root)."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import falcon.testing
import pytest

from registry.app import create_app
from registry.plugins import by_name, create_plugin_manager
from registry.storage import paths
from registry.storage.checked import CheckedDriver
from registry.storage.driver import FileInfo, PathNotFoundError
from registry.storage.listcache import MIN_ENTRIES, SAFETY_MARGIN, ListCache
from registry.storage.store import Store

OLD = 3600.0  # seconds: a directory nobody touched for an hour


class Counting(CheckedDriver):
    """The filesystem driver, counting ``list`` and ``stat`` calls per path; optionally without
    directory times (as object stores) or with an action run right after each listing."""

    def __init__(self, inner, *, dir_times: bool = True, after_list: Callable[[str], None] | None = None) -> None:
        super().__init__(inner)
        self.lists: dict[str, int] = {}
        self.stats: dict[str, int] = {}
        self.dir_times = dir_times
        self.after_list = after_list

    def list(self, path: str) -> list[str]:
        self.lists[path] = self.lists.get(path, 0) + 1
        children = super().list(path)
        if self.after_list:
            self.after_list(path)
        return children

    def stat(self, path: str) -> FileInfo:
        self.stats[path] = self.stats.get(path, 0) + 1
        info = super().stat(path)
        return info if self.dir_times or not info.is_dir else dataclasses.replace(info, mod_time=None)


def _filesystem(root: Path):
    descriptors = by_name(create_plugin_manager(), "registry_storage_drivers")
    if "filesystem" not in descriptors:
        pytest.skip("the filesystem driver is not installed")
    return descriptors["filesystem"].factory({"rootdirectory": str(root)})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def fs(root: Path) -> Counting:
    return Counting(_filesystem(root))


def repos_dir(root: Path) -> Path:
    return root / paths.REPOSITORIES.lstrip("/")


def make_repos(root: Path, names: list[str]) -> None:
    """Repositories as a push leaves them, as far as the catalog looks: a ``_layers`` directory."""
    for name in names:
        os.makedirs(repos_dir(root) / name / "_layers", exist_ok=True)


def set_age(directory: Path, seconds: float) -> float:
    """Give ``directory`` a modification time ``seconds`` ago; returns that time."""
    t = time.time() - seconds
    os.utime(directory, (t, t))
    return t


def numbered(count: int) -> list[str]:
    return [f"repo-{i:05d}" for i in range(count)]


# -- hits and revalidation ------------------------------------------------------------------------


def test_a_hit_costs_one_stat_and_no_listing(root, fs):
    make_repos(root, numbered(5))
    set_age(repos_dir(root), OLD)
    cache = ListCache(fs, min_entries=3)
    # The first listing finds the directory large, the second is kept (a stat before, one after).
    assert list(cache.names(paths.REPOSITORIES)) == numbered(5)
    assert paths.REPOSITORIES not in fs.stats
    kept = cache.names(paths.REPOSITORIES)
    assert list(kept) == numbered(5)
    assert (fs.lists[paths.REPOSITORIES], fs.stats[paths.REPOSITORIES]) == (2, 2)
    for _ in range(3):
        assert cache.names(paths.REPOSITORIES) is kept
    assert (fs.lists[paths.REPOSITORIES], fs.stats[paths.REPOSITORIES]) == (2, 5)


def test_the_catalog_lists_a_large_directory_twice_only(root, fs):
    names = numbered(MIN_ENTRIES + 5)
    make_repos(root, names)
    set_age(repos_dir(root), OLD)
    store = Store(fs)
    for _ in range(4):
        assert list(store.repositories(limit=101)) == names[:101]
    assert fs.lists[paths.REPOSITORIES] == 2
    # The repositories' own small directories are listed every time, and never stat'ed.
    assert fs.lists[paths.repository(names[0])] == 4
    assert paths.repository(names[0]) not in fs.stats


def test_small_directories_are_neither_cached_nor_stated(root, fs):
    make_repos(root, numbered(5))
    set_age(repos_dir(root), OLD)
    cache = ListCache(fs)
    for _ in range(3):
        cache.names(paths.REPOSITORIES)
    assert fs.lists[paths.REPOSITORIES] == 3
    assert fs.stats == {}


@pytest.mark.parametrize("via", ["driver", "disk"])
def test_a_created_repository_is_seen_at_once(root, fs, via):
    names = numbered(MIN_ENTRIES)
    make_repos(root, names)
    set_age(repos_dir(root), OLD)
    store = Store(fs)
    for _ in range(3):
        assert len(list(store.repositories())) == MIN_ENTRIES
    assert fs.lists[paths.REPOSITORIES] == 2  # the third from the cache
    # Within the same second as the cached listing: what counts is that the time moved from an hour ago.
    if via == "driver":  # as a push writes it
        fs.put_content(f"{paths.layers_dir('repo-new')}/sha256/{'0' * 64}/link", b"sha256:" + b"0" * 64)
    else:
        make_repos(root, ["repo-new"])
    assert list(store.repositories()) == [*names, "repo-new"]


def test_a_deleted_repository_is_gone_at_once(root, fs):
    names = numbered(MIN_ENTRIES + 1)
    make_repos(root, names)
    set_age(repos_dir(root), OLD)
    store = Store(fs)
    for _ in range(3):
        list(store.repositories())
    assert fs.lists[paths.REPOSITORIES] == 2
    fs.delete(paths.repository(names[0]))
    assert list(store.repositories(limit=2)) == names[1:3]
    # Not just skipped by the walk when it finds the directory gone: the cached names are dropped.
    assert store._listings.names(paths.REPOSITORIES)[0] == names[1]


def test_another_instance_sharing_the_root_sees_every_change(root, fs):
    """Each process has its own cache; the other's writes reach it through the directory's time."""
    names = numbered(MIN_ENTRIES)
    make_repos(root, names)
    set_age(repos_dir(root), OLD)
    ours, theirs = Store(fs), Store(Counting(_filesystem(root)))
    for _ in range(3):
        list(ours.repositories())
    assert fs.lists[paths.REPOSITORIES] == 2
    theirs.driver.put_content(f"{paths.layers_dir('zz')}/sha256/{'1' * 64}/link", b"sha256:" + b"1" * 64)
    assert list(ours.repositories())[-1] == "zz"
    theirs.driver.delete(paths.repository("zz"))
    assert list(ours.repositories())[-1] == names[-1]


def test_a_cached_directory_removed_and_made_again(root, fs):
    make_repos(root, [f"ns/{n}" for n in numbered(5)])
    ns = f"{paths.REPOSITORIES}/ns"
    t = set_age(repos_dir(root) / "ns", OLD)
    cache = ListCache(fs, min_entries=3)
    for _ in range(3):
        cache.names(ns)
    fs.delete(ns)
    with pytest.raises(PathNotFoundError):
        cache.names(ns)
    make_repos(root, [f"ns/{n}" for n in numbered(4)])
    os.utime(repos_dir(root) / "ns", (t, t))  # even with the very time the old directory had
    assert list(cache.names(ns)) == numbered(4)


# -- when a listing must not be kept ---------------------------------------------------------------


def test_a_recently_changed_directory_is_not_cached(root, fs):
    """Two changes within one clock tick leave the same time: a listing between them must not be kept.

    The directory was changed half a second ago; a second change in the same tick is simulated by
    putting the time back where the first change left it.
    """
    make_repos(root, numbered(5))
    t = set_age(repos_dir(root), SAFETY_MARGIN / 4)
    cache = ListCache(fs, min_entries=3)
    for _ in range(2):  # found large, then listed after a stat: the second would be kept if old enough
        assert list(cache.names(paths.REPOSITORIES)) == numbered(5)
    make_repos(root, ["repo-same-tick"])
    os.utime(repos_dir(root), (t, t))
    assert list(cache.names(paths.REPOSITORIES)) == [*numbered(5), "repo-same-tick"]
    assert fs.lists[paths.REPOSITORIES] == 3


@pytest.mark.parametrize(("age", "kept"), [(SAFETY_MARGIN - 0.01, False), (SAFETY_MARGIN + 0.01, True)])
def test_the_safety_margin_is_measured_from_the_start_of_the_listing(root, fs, age, kept):
    make_repos(root, numbered(5))
    t = set_age(repos_dir(root), OLD)
    # A clock standing still at `age` seconds after the directory's time, to the hundredth.
    cache = ListCache(fs, min_entries=3, clock=lambda: t + age)
    for _ in range(3):
        cache.names(paths.REPOSITORIES)
    assert fs.lists[paths.REPOSITORIES] == (2 if kept else 3)


def test_a_change_during_the_listing_is_not_cached(root):
    """A push landing between the listing and the stat after it: the listing lacks it, so it must not be
    kept, although the directory's time before the listing was an hour old."""
    make_repos(root, numbered(5))
    set_age(repos_dir(root), OLD)

    def push_during_second_listing(path: str) -> None:
        if fs.lists[path] == 2:
            make_repos(root, ["repo-during"])

    fs = Counting(_filesystem(root), after_list=push_during_second_listing)
    cache = ListCache(fs, min_entries=3)
    assert "repo-during" not in cache.names(paths.REPOSITORIES)
    assert "repo-during" not in cache.names(paths.REPOSITORIES)  # listed before the push landed
    assert "repo-during" in cache.names(paths.REPOSITORIES)


def test_drivers_without_directory_times_are_not_cached(root):
    make_repos(root, numbered(5))
    set_age(repos_dir(root), OLD)
    fs = Counting(_filesystem(root), dir_times=False)
    cache = ListCache(fs, min_entries=3)
    for _ in range(4):
        assert list(cache.names(paths.REPOSITORIES)) == numbered(5)
    assert fs.lists[paths.REPOSITORIES] == 4
    assert fs.stats[paths.REPOSITORIES] == 1  # found to have no time once, then not asked again


def test_only_the_most_recently_used_directories_are_kept(root, fs):
    dirs = ["a", "b", "c"]
    make_repos(root, [f"{d}/{n}" for d in dirs for n in numbered(3)])
    for d in dirs:
        set_age(repos_dir(root) / d, OLD)
    cache = ListCache(fs, min_entries=3, max_dirs=2)
    for d in ["a", "a", "b", "b", "c", "c", "b", "c", "a"]:
        cache.names(f"{paths.REPOSITORIES}/{d}")
    # Each kept at its second listing; b and c then hits; a was evicted by c, so listed again.
    assert [fs.lists[f"{paths.REPOSITORIES}/{d}"] for d in dirs] == [3, 2, 2]


def test_concurrent_readers_never_miss_a_repository_created_before_they_started(root, fs):
    make_repos(root, numbered(5))
    base = set_age(repos_dir(root), OLD)
    cache = ListCache(fs, min_entries=3)
    created = 0
    failures: list[str] = []
    done = threading.Event()

    def write() -> None:
        nonlocal created
        for i in range(150):
            make_repos(root, [f"new-{i:03d}"])
            created = i + 1
            # An old, distinct time after each change, so listings do get cached between changes.
            os.utime(repos_dir(root), (base + i + 1, base + i + 1))
        done.set()

    def read() -> None:
        while not done.is_set():
            before = created
            names = set(cache.names(paths.REPOSITORIES))
            missing = [f"new-{i:03d}" for i in range(before) if f"new-{i:03d}" not in names]
            if missing:
                failures.append(f"{missing[:3]} missing after {before} were created")

    threads = [threading.Thread(target=read) for _ in range(4)] + [threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    assert len(cache.names(paths.REPOSITORIES)) == 155


# -- pagination -----------------------------------------------------------------------------------


def _path_order(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: n.split("/"))


TRICKY = ["a", "a/b", "a-b", "a/b/c", "a/c", "b/0", "repo-00010/x", "repo-00010/x/y", "repo-00011-z"]


@pytest.mark.parametrize("cached", [True, False])
def test_pages_after_last_are_unchanged(root, fs, cached):
    names = numbered(MIN_ENTRIES + 50) + TRICKY
    make_repos(root, names)
    for d in (repos_dir(root), repos_dir(root) / "a", repos_dir(root) / "repo-00010"):
        set_age(d, OLD)
    store = Store(fs)
    if not cached:
        store._listings = ListCache(fs, min_entries=10**9)
    order = _path_order(names)
    # Every `last`, present or not (a name between two, one past all, a namespace, a prefix of a name).
    lasts = [*order[::37], "a/b/c", "a/bb", "repo-000105", "repo-00010", "repo-00010/w", "zzz", "0", "a/"]
    for _ in range(2):  # the second round from the cache, when there is one
        for last in lasts:
            after = tuple(last.split("/"))
            expected = [n for n in order if tuple(n.split("/")) > after][:25]
            assert list(store.repositories(last=last, limit=25)) == expected, last
    assert fs.lists[paths.REPOSITORIES] == (2 if cached else 2 * len(lasts))


def test_catalog_links_walk_every_repository_once(root, fs):
    names = numbered(MIN_ENTRIES) + TRICKY
    make_repos(root, names)
    set_age(repos_dir(root), OLD)
    config = {"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(root)}}}
    client = falcon.testing.TestClient(create_app(config, create_plugin_manager(), driver=fs))
    listed, link = [], "/v2/_catalog?n=300"
    while link:
        url = urllib.parse.urlsplit(link)
        r = client.simulate_get(url.path, query_string=url.query)
        assert r.status_code == 200, r.text
        listed += r.json["repositories"]
        link = r.headers.get("Link", "").partition("<")[2].partition(">")[0]
    assert listed == _path_order(names)
    assert fs.lists[paths.REPOSITORIES] == 2  # of 4 pages
