"""The prefixed example plugin: the conformance suite through its entry point, plus tenant isolation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from registry_prefixed import PrefixedDriver
from registry_prefixed.plugin import SCHEMA

from registry.plugins import by_name, create_plugin_manager
from registry.storage.checked import CheckedDriver, checked
from registry.storage.driver import PathNotFoundError, StorageDriver
from registry.testing.conformance import DriverSuite

pytest.importorskip("registry_filesystem", reason="the examples nest the filesystem driver")


def build(params: dict[str, Any]) -> StorageDriver:
    """As the registry would: find ``prefixed`` by name and call its factory with its config mapping."""
    descriptor = by_name(create_plugin_manager(), "registry_storage_drivers")["prefixed"]
    jsonschema.validate(params, descriptor.schema)
    return descriptor.factory(params)


def tenant(root: Path, prefix: str) -> CheckedDriver:
    return checked(build({"driver": "filesystem", "prefix": prefix, "options": {"rootdirectory": str(root)}}))


class TestPrefixedConformance(DriverSuite):
    @pytest.fixture
    def driver(self, tmp_path: Path) -> StorageDriver:
        return build({"driver": "filesystem", "prefix": "/tenant-a", "options": {"rootdirectory": str(tmp_path)}})


def test_everything_lands_under_the_prefix(tmp_path: Path) -> None:
    storage = tenant(tmp_path, "/tenants/a")
    storage.put_content("/docker/registry/v2/x", b"x")
    assert (tmp_path / "tenants/a/docker/registry/v2/x").read_bytes() == b"x"
    assert storage.list("/") == ["/docker"]
    assert [info.path for info in storage.walk("/docker/registry")] == ["/docker/registry/v2", "/docker/registry/v2/x"]
    assert storage.stat("/docker").path == "/docker"


def test_tenants_sharing_a_root_do_not_see_each_other(tmp_path: Path) -> None:
    a, b = tenant(tmp_path, "/tenant-a"), tenant(tmp_path, "/tenant-b")
    a.put_content("/file", b"a")
    assert b.list("/") == []
    with pytest.raises(PathNotFoundError):
        b.get_content("/file")
    b.put_content("/file", b"b")
    assert a.get_content("/file") == b"a"


def test_empty_tenant_has_an_empty_root(tmp_path: Path) -> None:
    storage = tenant(tmp_path, "/nobody-yet")
    assert storage.list("/") == []
    assert storage.stat("/").is_dir
    assert list(storage.walk("/")) == []


def test_unknown_inner_driver_is_refused() -> None:
    with pytest.raises(ValueError, match="no storage driver named 'nope'"):
        build({"driver": "nope", "prefix": "/x"})


def test_inner_options_are_checked_against_the_inner_schema(tmp_path: Path) -> None:
    with pytest.raises(jsonschema.ValidationError):
        build({"driver": "filesystem", "prefix": "/x", "options": {"rootdirectory": str(tmp_path), "bogus": 1}})


@pytest.mark.parametrize("prefix", ["", "/", "relative", "/a/", "/a/../b", "/a b"])
def test_prefix_must_be_a_storage_path(prefix: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"driver": "inmemory", "prefix": prefix}, SCHEMA)


def test_prefix_is_validated_by_the_driver_too() -> None:
    from registry.storage.driver import InvalidPathError
    from registry.storage.inmemory import InMemoryDriver

    with pytest.raises(InvalidPathError):
        PrefixedDriver(InMemoryDriver(), "/a/..")
