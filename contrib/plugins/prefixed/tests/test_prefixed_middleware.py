"""The prefixed example plugin: found through its entry point as storage middleware, the conformance
suite through it, tenant isolation, and a real server configured with it."""

from __future__ import annotations

import http.client
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from registry_prefixed import PrefixedDriver
from registry_prefixed.plugin import SCHEMA

from registry.config import ConfigError, build_storage, validate
from registry.plugins import by_name, create_plugin_manager
from registry.storage.checked import CheckedDriver
from registry.storage.driver import InvalidPathError, PathNotFoundError, StorageDriver
from registry.storage.inmemory import InMemoryDriver
from registry.storage.middleware import descriptors, wrap
from registry.testing.conformance import DriverSuite

pytest.importorskip("registry_filesystem", reason="the examples wrap the filesystem driver")

PM = create_plugin_manager()


def config(root: Path, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(root)}},
            "middleware": {"storage": list(entries)}}


def tenant(root: Path, prefix: str) -> CheckedDriver:
    """As the registry builds its storage: the configured driver, wrapped by the middleware config names."""
    cfg = config(root, {"name": "prefixed", "options": {"prefix": prefix}})
    assert validate(cfg, PM) == []
    return build_storage(cfg, PM)


class TestPrefixedConformance(DriverSuite):
    @pytest.fixture
    def driver(self, tmp_path: Path) -> StorageDriver:
        inner = by_name(PM, "registry_storage_drivers")["filesystem"].factory({"rootdirectory": str(tmp_path)})
        return wrap(inner, [{"name": "prefixed", "options": {"prefix": "/tenant-a"}}], PM)


def test_declared_as_middleware_not_as_a_driver() -> None:
    assert "prefixed" in descriptors(PM)
    assert "prefixed" not in by_name(PM, "registry_storage_drivers")


def test_everything_lands_under_the_prefix(tmp_path: Path) -> None:
    storage = tenant(tmp_path, "/tenants/a")
    assert isinstance(storage.inner, PrefixedDriver)
    storage.put_content("/docker/registry/v2/x", b"x")
    assert (tmp_path / "tenants/a/docker/registry/v2/x").read_bytes() == b"x"
    assert storage.list("/") == ["/docker"]
    assert [info.path for info in storage.walk("/docker/registry")] == ["/docker/registry/v2", "/docker/registry/v2/x"]
    assert storage.stat("/docker").path == "/docker"
    storage.move("/docker/registry/v2/x", "/docker/registry/v2/y")
    assert (tmp_path / "tenants/a/docker/registry/v2/y").read_bytes() == b"x"


def test_tenants_sharing_a_root_do_not_see_each_other(tmp_path: Path) -> None:
    a, b = tenant(tmp_path, "/tenant-a"), tenant(tmp_path, "/tenant-b")
    a.put_content("/file", b"a")
    assert b.list("/") == []
    with pytest.raises(PathNotFoundError):
        b.get_content("/file")
    b.put_content("/file", b"b")
    assert a.get_content("/file") == b"a"


def test_two_prefixes_compose_in_order(tmp_path: Path) -> None:
    """The first entry wraps the driver, the second wraps the first: /outer/inner/... on disk."""
    cfg = config(tmp_path, {"name": "prefixed", "options": {"prefix": "/inner"}},
                 {"name": "prefixed", "options": {"prefix": "/outer"}},
                 {"name": "prefixed", "disabled": True, "options": {"prefix": "/skipped"}})
    assert validate(cfg, PM) == []
    build_storage(cfg, PM).put_content("/f", b"1")
    assert (tmp_path / "inner/outer/f").read_bytes() == b"1"


def test_empty_tenant_has_an_empty_root(tmp_path: Path) -> None:
    storage = tenant(tmp_path, "/nobody-yet")
    assert storage.list("/") == []
    assert storage.stat("/").is_dir
    assert list(storage.walk("/")) == []


def test_unknown_middleware_is_a_config_error_listing_the_installed_ones(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"name": "prefixd", "options": {"prefix": "/x"}})
    assert any("middleware.storage[0].name" in line and "'prefixed'" in line for line in validate(cfg, PM))
    with pytest.raises(ConfigError, match=r"unknown storage middleware 'prefixd' \(installed: .*prefixed"):
        build_storage(cfg, PM)


def test_options_are_checked_against_the_middleware_schema(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"name": "prefixed", "options": {"prefix": "/x", "bogus": 1}})
    assert any(line.startswith("middleware.storage[0].options") for line in validate(cfg, PM)), validate(cfg, PM)
    with pytest.raises(ConfigError, match=r"middleware.storage\[0\].options"):
        build_storage(cfg, PM)


@pytest.mark.parametrize("prefix", ["", "/", "relative", "/a/", "/a/../b", "/a b"])
def test_prefix_must_be_a_storage_path(prefix: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"prefix": prefix}, SCHEMA)


def test_prefix_is_validated_by_the_middleware_too() -> None:
    with pytest.raises(InvalidPathError):
        PrefixedDriver(InMemoryDriver(), "/a/..")


def test_a_real_server_configured_with_it(tmp_path: Path) -> None:
    """`middleware: storage: [{name: prefixed}]` in a served config: a pushed blob lands under the prefix."""
    from registry.app import create_app
    from registry.digests import digest_of
    from registry.serve import Server
    from registry.storage import paths

    cfg = {**config(tmp_path, {"name": "prefixed", "options": {"prefix": "/tenant-a"}}),
           "http": {"addr": "127.0.0.1:0"}, "log": {"level": "error"}}
    server = Server(create_app(cfg, PM), cfg)
    port = int(server.addresses[0].rsplit(":", 1)[1])
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        data = b"tenant a's layer"
        digest = digest_of(data)
        conn.request("POST", f"/v2/lib/app/blobs/uploads/?digest={digest}", body=data)
        response = conn.getresponse()
        assert response.status == 201, response.read()
        response.read()
        assert (tmp_path / "tenant-a" / paths.blob_data(digest).lstrip("/")).read_bytes() == data
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["tenant-a"]
        conn.close()
    finally:
        server.stop()
        thread.join(10)
