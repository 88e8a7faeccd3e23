"""``proxy:`` in the configuration: both forms, every refusal with its message, what is acted on, and
how repository names map to upstreams."""

from __future__ import annotations

import pytest

from registry.app import create_app
from registry.config import ConfigError, load_config
from registry.plugins import create_plugin_manager
from registry.proxy import DEFAULT_TTL, proxy_settings

BASE = "version: 0.1\nstorage:\n  inmemory:\nhttp:\n  addr: 127.0.0.1:0\n"


def load(tmp_path, proxy_yaml: str, environ: dict[str, str] | None = None):
    path = tmp_path / "config.yml"
    path.write_text(BASE + "proxy:\n" + proxy_yaml)
    return load_config(path, environ=environ or {})


def problems(tmp_path, proxy_yaml: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, proxy_yaml)
    return "\n".join(info.value.errors)


def test_distribution_form_serves_every_repository_with_the_default_ttl(tmp_path):
    config = load(tmp_path, "  remoteurl: https://registry-1.docker.io/\n  username: u\n  password: Pw-9x\n")
    settings = proxy_settings(config)
    assert settings is not None and len(settings.remotes) == 1
    remote = settings.match("library/alpine")
    assert remote is not None and remote.url == "https://registry-1.docker.io" and remote.prefix == ""
    assert remote.ttl == DEFAULT_TTL == 168 * 3600
    assert remote.upstream_name("library/alpine") == "library/alpine"
    assert remote.password == "Pw-9x" and "Pw-9x" not in repr(settings)
    assert not [k for k in config.not_acted_on if k.startswith("proxy")]


def test_remotes_by_prefix_longest_wins_and_the_rest_is_local(tmp_path):
    config = load(tmp_path, (
        "  remotes:\n"
        "    - {prefix: hub/, remoteurl: 'http://127.0.0.1:1', ttl: 5m}\n"
        "    - {prefix: hub/quay/, remoteurl: 'http://127.0.0.1:2'}\n"
    ))
    settings = proxy_settings(config)
    assert settings is not None
    assert settings.match("hub/library/alpine").url == "http://127.0.0.1:1"
    assert settings.match("hub/library/alpine").ttl == 300
    assert settings.match("hub/quay/coreos/etcd").upstream_name("hub/quay/coreos/etcd") == "coreos/etcd"
    assert settings.match("hubx/app") is None  # prefixes match whole name components only
    assert settings.match("mine/app") is None
    assert settings.match("hub/") is None


def test_both_forms_together(tmp_path):
    settings = proxy_settings(load(tmp_path, (
        "  remoteurl: http://127.0.0.1:1\n  ttl: 0\n"
        "  remotes:\n    - {prefix: other/, remoteurl: 'http://127.0.0.1:2'}\n")))
    assert settings.match("other/x").url == "http://127.0.0.1:2"
    assert settings.match("x").url == "http://127.0.0.1:1" and settings.match("x").ttl == 0


@pytest.mark.parametrize(("yaml", "message"), [
    ("  remoteurl: ftp://example.com\n", "must be an http:// or https:// URL"),
    ("  remoteurl: https://example.com/v2/\n", "must be the upstream's root"),
    ("  remoteurl: https://user:pw@example.com\n", "use username and password"),
    ("  remoteurl: https://example.com:99999\n", "invalid port"),
    ("  remoteurl: https://example.com\n  username: u\n", "username and password go together"),
    ("  remoteurl: https://example.com\n  ttl: 10 minutes\n", "ttl"),
    ("  remoteurl: https://example.com\n  ttl: -1h\n", "must not be negative"),
    ("  remotes:\n    - {prefix: Hub/, remoteurl: 'https://x.io'}\n", "remotes[0].prefix: 'Hub/' must be"),
    ("  remotes:\n    - {prefix: hub, remoteurl: 'https://x.io'}\n", "each ending in '/'"),
    ("  remotes:\n    - {prefix: hub/}\n", "'remoteurl' is a required property"),
    ("  remotes:\n    - {prefix: hub/, remoteurl: 'https://x.io', passwd: x}\n", "passwd"),
    ("  remotes:\n    - {prefix: a/, remoteurl: 'https://x.io'}\n    - {prefix: a/, remoteurl: 'https://y.io'}\n",
     "two upstreams for the prefix 'a/'"),
    ("  remotes: {prefix: a/}\n", "proxy.remotes"),
])
def test_bad_proxy_config_is_a_clear_error(tmp_path, yaml, message):
    found = problems(tmp_path, yaml)
    assert message in found, found
    assert found.startswith("proxy"), found


def test_password_never_in_the_error(tmp_path):
    found = problems(tmp_path, "  remoteurl: https://example.com/path\n  username: u\n  password: s3cret-Pass\n")
    assert "s3cret-Pass" not in found


def test_environment_sets_the_upstream(tmp_path):
    config = load(tmp_path, "  ttl: 1h\n", {"REGISTRY_PROXY_REMOTEURL": "http://127.0.0.1:5999"})
    assert proxy_settings(config).match("a").url == "http://127.0.0.1:5999"


def test_a_proxy_section_without_an_upstream_is_named_not_acted_on(tmp_path, caplog):
    config = load(tmp_path, "  ttl: 1h\n")
    assert proxy_settings(config) is None
    assert "proxy" in config.not_acted_on
    # exec (Distribution 3's credential helper) is not implemented: named, while the rest acts.
    config = load(tmp_path, "  remoteurl: http://127.0.0.1:1\n  exec:\n    command: helper\n")
    assert [k for k in config.not_acted_on if k.startswith("proxy")] == ["proxy.exec"]


def test_create_app_refuses_a_bad_proxy_given_as_a_plain_mapping():
    config = {"version": 0.1, "storage": {"inmemory": {}}, "proxy": {"remoteurl": "nope"}}
    with pytest.raises(ConfigError, match="proxy.remoteurl"):
        create_app(config, create_plugin_manager())
