"""The filesystem driver: the conformance suite, plus what only a filesystem has (the on-disk layout
Distribution shares, temporary files, permissions, the plugin's declaration and schema)."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from registry_filesystem import DEFAULT_ROOT, TEMP_DIR, FilesystemDriver
from registry_filesystem.plugin import SCHEMA

from registry.plugins import by_name, create_plugin_manager
from registry.storage.checked import CheckedDriver, checked
from registry.storage.driver import PathNotFoundError, StorageError
from registry.testing.conformance import DriverSuite


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def fs(root: Path) -> CheckedDriver:
    return checked(FilesystemDriver(str(root)))


class TestFilesystemConformance(DriverSuite):
    @pytest.fixture
    def driver(self, root: Path) -> Iterator[FilesystemDriver]:
        yield FilesystemDriver(str(root))
        # Every writer of the test has committed, cancelled or closed: none may leave a temp file.
        temp = root / TEMP_DIR
        leftovers = sorted(p.name for p in temp.iterdir()) if temp.exists() else []
        assert leftovers == [], f"temporary files left behind: {leftovers}"


# -- layout: Distribution's data directories must read the same ------------------------------------


def test_storage_paths_map_to_files_under_the_root(fs: CheckedDriver, root: Path) -> None:
    fs.put_content("/docker/registry/v2/repositories/library/alpine/_layers/link", b"sha256:abc")
    on_disk = root / "docker/registry/v2/repositories/library/alpine/_layers/link"
    assert on_disk.read_bytes() == b"sha256:abc"
    assert sorted(p.name for p in root.iterdir()) == [TEMP_DIR, "docker"]


def test_reads_a_tree_written_by_distribution(fs: CheckedDriver, root: Path) -> None:
    blob = root / "docker/registry/v2/blobs/sha256/ab/abcd/data"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"layer")
    assert fs.get_content("/docker/registry/v2/blobs/sha256/ab/abcd/data") == b"layer"
    assert fs.list("/docker/registry/v2/blobs/sha256") == ["/docker/registry/v2/blobs/sha256/ab"]
    assert fs.list("/") == ["/docker"]  # no temp directory yet, and none invented


def test_root_may_be_missing(tmp_path: Path) -> None:
    fs = checked(FilesystemDriver(str(tmp_path / "not" / "yet")))
    assert fs.list("/") == []
    assert fs.stat("/").is_dir
    assert list(fs.walk("/")) == []
    with pytest.raises(PathNotFoundError):
        fs.get_content("/x")
    fs.put_content("/x", b"created on first write")
    assert (tmp_path / "not/yet/x").read_bytes() == b"created on first write"


def test_relative_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    driver = FilesystemDriver("data")
    assert driver.rootdirectory == str(tmp_path / "data")


# -- temporary files ------------------------------------------------------------------------------


def test_temp_dir_is_hidden_from_list_and_walk(fs: CheckedDriver, root: Path) -> None:
    writer = fs.writer("/a/b")
    writer.write(b"in flight")
    assert len(list((root / TEMP_DIR).iterdir())) == 1
    fs.put_content("/c", b"x")
    assert fs.list("/") == ["/c"]
    assert [info.path for info in fs.walk("/")] == ["/c"]
    writer.commit()
    assert sorted(fs.list("/")) == ["/a", "/c"]
    assert list((root / TEMP_DIR).iterdir()) == []


def test_fresh_writer_never_shows_a_partial_file_at_the_path(fs: CheckedDriver, root: Path) -> None:
    writer = fs.writer("/dir/file")
    writer.write(b"x" * 1_000_000)
    assert not (root / "dir").exists()
    writer.commit()
    assert (root / "dir/file").stat().st_size == 1_000_000


def test_failed_commit_leaves_no_temp_file(fs: CheckedDriver, root: Path) -> None:
    fs.put_content("/dir/file", b"x")
    writer = fs.writer("/dir")  # a directory is in the way
    writer.write(b"y")
    with pytest.raises(StorageError):
        writer.commit()
    writer.cancel()
    with pytest.raises(StorageError):
        fs.put_content("/dir", b"y")
    assert list((root / TEMP_DIR).iterdir()) == []
    assert fs.get_content("/dir/file") == b"x"


def test_stale_temp_files_are_removed_at_start(root: Path) -> None:
    temp = root / TEMP_DIR
    temp.mkdir(parents=True)
    stale, fresh = temp / "stale", temp / "fresh"
    stale.write_bytes(b"crashed writer")
    fresh.write_bytes(b"live writer of another process")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    FilesystemDriver(str(root))
    assert sorted(p.name for p in temp.iterdir()) == ["fresh"]


# -- writers in place -----------------------------------------------------------------------------


def test_appending_writer_grows_the_file_in_place(fs: CheckedDriver, root: Path) -> None:
    fs.put_content("/upload/data", b"abc")
    inode = (root / "upload/data").stat().st_ino
    writer = fs.writer("/upload/data", append=True)
    writer.write(b"def")
    writer.close()  # no commit: the bytes stay, as Distribution's resumable uploads expect
    assert (root / "upload/data").stat().st_ino == inode
    assert fs.writer("/upload/data", append=True).size == 6
    assert fs.get_content("/upload/data") == b"abcdef"


def test_reader_is_a_real_file(fs: CheckedDriver) -> None:
    fs.put_content("/f", b"0123456789")
    with fs.reader("/f", 4) as f:
        assert os.fstat(f.fileno()).st_size == 10
        assert f.tell() == 4
        assert f.read() == b"456789"


def test_files_and_directories_honour_the_umask(fs: CheckedDriver, root: Path) -> None:
    old = os.umask(0o027)
    try:
        fs.put_content("/d/put", b"x")
        with fs.writer("/d/written") as writer:
            writer.write(b"x")
            writer.commit()
    finally:
        os.umask(old)
    assert stat.S_IMODE((root / "d/put").stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "d/written").stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "d").stat().st_mode) == 0o750


def test_delete_does_not_remove_empty_parents(fs: CheckedDriver, root: Path) -> None:
    """Distribution leaves empty directories behind; so do we (its tools expect them to be cheap)."""
    fs.put_content("/a/b/file", b"x")
    fs.delete("/a/b/file")
    assert fs.list("/a/b") == []
    assert (root / "a/b").is_dir()


def test_move_replaces_atomically_and_keeps_open_readers(fs: CheckedDriver) -> None:
    fs.put_content("/blob", b"old")
    fs.put_content("/upload", b"new")
    with fs.reader("/blob") as before:
        fs.move("/upload", "/blob")
        assert before.read() == b"old"
    assert fs.get_content("/blob") == b"new"


# -- the plugin: declaration, schema, parameters --------------------------------------------------


def test_declared_through_the_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    descriptor = by_name(create_plugin_manager(), "registry_storage_drivers")["filesystem"]
    assert descriptor.schema == SCHEMA
    # The plugin owns its defaults: without a rootdirectory, the registry's data directory (which the
    # user can write), not the driver class's DEFAULT_ROOT (Distribution's /var/lib/registry).
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "data"))
    driver = descriptor.factory({})
    assert isinstance(driver, FilesystemDriver)
    assert driver.rootdirectory == str(tmp_path / "data") != DEFAULT_ROOT
    assert driver.max_threads == 100
    assert descriptor.describe({}) == f"filesystem in {tmp_path / 'data'}"


@pytest.mark.parametrize(
    "params",
    [None, {}, {"rootdirectory": "/srv/registry"}, {"maxthreads": 25}, {"maxthreads": 10}, {"maxthreads": "200"}],
)
def test_schema_accepts_what_distribution_accepts(params: dict | None) -> None:
    jsonschema.validate(params, SCHEMA)


@pytest.mark.parametrize(
    "params", [{"rootdirectory": ""}, {"rootdirectory": 5}, {"maxthreads": "many"}, {"unknown": 1}]
)
def test_schema_refuses_nonsense(params: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(params, SCHEMA)


@pytest.mark.parametrize(("given", "used"), [(None, 100), (25, 25), (10, 25), (-3, 25), ("200", 200), (500, 500)])
def test_maxthreads_is_clamped_like_distribution(tmp_path: Path, given: object, used: int) -> None:
    driver = FilesystemDriver.from_parameters({"rootdirectory": str(tmp_path), "maxthreads": given})
    assert driver.max_threads == used


def test_a_directory_deleted_by_someone_else_meanwhile_is_not_found(
    fs: CheckedDriver, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two DELETEs of one tag race: the second finds the directory gone between its unlink (EISDIR)
    and its look at what the path is. That is "not found" (404), not a driver error (500)."""
    import shutil

    import registry_filesystem.driver as module

    fs.put_content("/repo/_manifests/tags/t/current/link", b"x")
    real_unlink = os.unlink

    def unlink_while_another_delete_wins(path, *args, **kwargs):
        if str(path).endswith("/tags/t"):
            shutil.rmtree(path)  # the other delete, at just this moment
            raise IsADirectoryError(21, "Is a directory", path)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(module.os, "unlink", unlink_while_another_delete_wins)
    with pytest.raises(PathNotFoundError):
        fs.delete("/repo/_manifests/tags/t")
