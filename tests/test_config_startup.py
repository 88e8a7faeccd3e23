"""What the registry does with its configuration at start-up: the one warning naming what is accepted
but not acted on, the typed settings built once, and ``catalog.maxentries`` honoured over HTTP."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest

from registry import hookimpl
from registry.config import (
    CORE_ACTS_ON,
    Settings,
    config_schema,
    load_config,
    settings_of,
)
from registry.config.schema import plugin_sections
from registry.plugins import create_plugin_manager
from tests import pushing
from tests.test_cli import Serving, run
from tests.test_cli import env as env  # noqa: F401 - the fixture: no REGISTRY_* from the machine
from tests.test_config import DISTRIBUTION_SAMPLE, MINIMAL

needs_filesystem = pytest.mark.skipif(
    importlib.util.find_spec("registry_filesystem") is None, reason="registry-filesystem is not installed"
)

#: What the core does not act on in tests/test_config.py's Distribution sample, by the table in
#: registry.config.settings (a feature that starts acting on one of these removes it here), and
#: ``notifications`` unless the registry-webhooks plugin, which declares it, is installed.
SAMPLE_NOT_ACTED_ON = [
    "http.debug.prometheus",
    "http.http2",
    "http.secret",
    *([] if importlib.util.find_spec("registry_webhooks") else ["notifications"]),
    "redis",
    "storage.cache",
    "validation",
]


def not_acted_on_here() -> list[str]:
    """:data:`SAMPLE_NOT_ACTED_ON` less the sections the installed plugins declare: they act on them
    (``registry-prometheus`` on ``http.debug.prometheus``...)."""
    declared = {dotted for dotted, _ in plugin_sections(create_plugin_manager())}
    return [k for k in SAMPLE_NOT_ACTED_ON if k not in declared]


def warned(stderr: str) -> list[list[str]]:
    """The keys of each "accepted, not acted on" line."""
    marker = "accepted, not acted on: "
    return [line.split(marker, 1)[1].split(", ") for line in stderr.splitlines() if marker in line]


@needs_filesystem
def test_config_check_warns_once_naming_exactly_what_is_not_acted_on(tmp_path, env):
    path = tmp_path / "config.yml"
    path.write_text(DISTRIBUTION_SAMPLE.format(root=tmp_path / "data"))
    r = run("config", "check", str(path), env=env)
    assert (r.returncode, r.stdout) == (0, "OK\n"), r.stderr
    assert warned(r.stderr) == [not_acted_on_here()]


def test_the_default_configuration_warns_about_nothing(env):
    r = run("config", "check", env=env)
    assert (r.returncode, r.stdout) == (0, "OK\n"), r.stderr
    assert warned(r.stderr) == []


class DeclaresSections:
    """A plugin acting on sections of Distribution's that the core does not: it declares them."""

    @hookimpl
    def registry_config_schemas(self):
        return {"notifications": {"type": "object"}, "health.storagedriver": {"type": "object"}}


def test_a_section_a_plugin_declares_is_acted_on(tmp_path):
    pytest.importorskip("registry_filesystem")
    path = tmp_path / "config.yml"
    path.write_text(DISTRIBUTION_SAMPLE.format(root=tmp_path / "data"))
    pm = create_plugin_manager(plugins=[DeclaresSections()])
    config = load_config(path, {}, pm)
    assert config.not_acted_on == [k for k in not_acted_on_here() if k not in ("notifications", "health")]


def test_the_warning_goes_as_deep_as_needed(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(MINIMAL + "http:\n  addr: 127.0.0.1:0\n  http2:\n    disabled: true\nlog:\n  reportcaller: true\n"
                    "  level: debug\ntags:\n  maxtags: 5\n")
    pm = create_plugin_manager()
    assert load_config(path, {}, pm).not_acted_on == ["http.http2", "log.reportcaller", "tags"]


def test_every_key_in_the_table_is_one_the_schema_accepts():
    schema = config_schema(create_plugin_manager())
    for key in CORE_ACTS_ON:
        node = schema
        for part in key.split("."):
            # A section a plugin also declares is the allOf of the core's and the plugin's.
            node = next((n for n in node.get("allOf", ()) if "properties" in n), node)
            node = node["properties"][part] if "properties" in node else None
            assert isinstance(node, dict), f"{key}: not in the schema"


def test_settings_are_built_once_typed_and_frozen(tmp_path):
    pytest.importorskip("registry_filesystem")
    path = tmp_path / "config.yml"
    path.write_text(DISTRIBUTION_SAMPLE.format(root=tmp_path / "data"))
    config = load_config(path, {}, create_plugin_manager())
    settings = config.settings
    assert settings is config.settings is settings_of(config)
    assert settings.storage.driver == "filesystem"
    assert dict(settings.storage.params) == {"rootdirectory": str(tmp_path / "data")}
    assert settings.storage.delete_enabled is True and settings.storage.readonly is False
    assert settings.storage.redirect is True
    assert settings.storage.upload_purging["age"] == "168h"
    assert settings.http.addr == ("127.0.0.1", 5000) and settings.http.net == "tcp"
    assert settings.http.secret == "asecretforlocaldevelopment"
    assert settings.http.drain_timeout == 60.0
    assert dict(settings.http.headers) == {"X-Content-Type-Options": ("nosniff",)}
    assert (settings.log.level, settings.log.formatter) == ("debug", "text")
    assert dict(settings.log.fields) == {"service": "registry", "environment": "staging"}
    assert settings.catalog_max_entries == 500 and settings.tags_max_tags == 1000
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.storage.driver = "s3"  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.storage.params["rootdirectory"] = "/elsewhere"  # type: ignore[index]


def test_settings_of_a_plain_mapping_has_distributions_defaults():
    settings = settings_of({"version": "0.1", "storage": {"inmemory": None, "delete": {"enabled": False}},
                            "http": {"net": "unix", "addr": "/run/registry.sock"}})
    assert isinstance(settings, Settings)
    assert (settings.http.addr, settings.http.socket) == (None, "/run/registry.sock")
    assert settings.http.prefix == "/" and settings.http.drain_timeout == 10.0
    assert settings.auth.backend is None and settings.catalog_max_entries == 1000


def test_catalog_maxentries_sets_the_page_over_http(tmp_path, env):
    path = tmp_path / "config.yml"
    path.write_text(MINIMAL + "http:\n  addr: 127.0.0.1:0\ncatalog:\n  maxentries: 2\nproxy:\n  ttl: 1h\n")
    server = Serving(str(path), env)
    try:
        server.wait_for(r"accepted, not acted on: proxy$")
        port = int(server.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        base, s = f"http://127.0.0.1:{port}", pushing.session()
        config = pushing.config_blob("catalog")
        for repo in ("a", "b", "c"):
            pushing.push_blob(s, base, repo, config)
            pushing.put_manifest(s, base, repo, "latest", pushing.manifest(config, []))
        first = s.get(f"{base}/v2/_catalog", timeout=10)
        assert first.status_code == 200 and first.json() == {"repositories": ["a", "b"]}
        assert first.links["next"]["url"] == "/v2/_catalog?last=b&n=2"
        # A client may ask for less, and gets no more than maxentries when it asks for more.
        assert s.get(f"{base}/v2/_catalog?n=1", timeout=10).json() == {"repositories": ["a"]}
        more = s.get(f"{base}/v2/_catalog?n=50", timeout=10)
        assert more.json() == {"repositories": ["a", "b"]} and "next" in more.links
        last = s.get(f"{base}/v2/_catalog?last=b&n=2", timeout=10)
        assert last.json() == {"repositories": ["c"]} and "Link" not in last.headers
    finally:
        server.stop()
