"""config.yml loading: Distribution's format, REGISTRY_* overrides, schema composition, every error."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jsonschema
import pytest

from registry import hookimpl
from registry.config import (
    Config,
    ConfigError,
    build_access_controller,
    build_storage,
    catalog_max_entries,
    config_schema,
    default_data_dir,
    delete_enabled,
    describe_storage,
    drain_timeout,
    http_addr,
    http_headers,
    http_prefix,
    load_config,
    log_level,
    parse_addr,
    parse_duration,
    storage_driver_name,
    storage_params,
)
from registry.plugins import by_name, create_plugin_manager
from registry.storage import inmemory as inmemory_plugin
from registry.storage.checked import CheckedDriver
from registry.storage.descriptor import DriverDescriptor
from registry.storage.inmemory import InMemoryDriver

ROOT = Path(__file__).resolve().parents[1]

DISTRIBUTION_SAMPLE = """\
# Written the way a Distribution user writes it, keys we do not implement included.
version: 0.1
log:
  level: debug
  formatter: text
  fields:
    service: registry
    environment: staging
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
    readonly:
      enabled: false
http:
  addr: 127.0.0.1:5000
  secret: asecretforlocaldevelopment
  draintimeout: 60s
  headers:
    X-Content-Type-Options: [nosniff]
  debug:
    addr: 127.0.0.1:5001
    prometheus:
      enabled: true
      path: /metrics
  http2:
    disabled: false
notifications:
  events:
    includereferences: true
  endpoints:
    - name: alistener
      disabled: false
      url: https://listener.example/event
      headers:
        Authorization: [Bearer secret]
      timeout: 500ms
      threshold: 5
      backoff: 1s
      ignoredmediatypes:
        - application/octet-stream
redis:
  addr: 127.0.0.1:6379
  password: asecret
  db: 0
  dialtimeout: 10ms
  readtimeout: 10ms
  writetimeout: 10ms
  pool:
    maxidle: 16
    maxactive: 64
    idletimeout: 300s
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
proxy:
  remoteurl: https://registry-1.docker.io
  ttl: 168h
validation:
  manifests:
    urls:
      allow:
        - ^https?://([^/]+\\.)*example\\.com/
catalog:
  maxentries: 500
"""


class StandInFilesystem:
    """Declares a ``filesystem`` driver with the real one's schema shape, for environments where the
    registry-filesystem plugin is not installed; it records the parameters the core passes."""

    def __init__(self) -> None:
        self.params: list[dict] = []

    @hookimpl
    def registry_storage_drivers(self):
        def factory(params):
            self.params.append(dict(params))
            return InMemoryDriver()

        schema = {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {"rootdirectory": {"type": "string"}, "maxthreads": {"type": ["integer", "string"]}},
        }
        return [DriverDescriptor(name="filesystem", factory=factory, schema=schema)]


@pytest.fixture
def pm():
    """The installed plugins, plus a stand-in ``filesystem`` driver if the real one is missing."""
    pm = create_plugin_manager()
    if "filesystem" not in by_name(pm, "registry_storage_drivers"):
        pm.register(StandInFilesystem())
    return pm


@pytest.fixture
def env(tmp_path):
    """A hermetic environment: no REGISTRY_* from the machine, home and data under tmp_path."""
    return {"HOME": str(tmp_path / "home")}


def write(tmp_path: Path, text: str, name: str = "config.yml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def errors_of(path, env, pm) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env, pm)
    return info.value.errors


MINIMAL = "version: 0.1\nstorage:\n  inmemory:\n"


# ---------------------------------------------------------------------------------------------
# Distribution's files load unchanged
# ---------------------------------------------------------------------------------------------


def test_distribution_sample_loads_unchanged(tmp_path, env, pm):
    path = write(tmp_path, DISTRIBUTION_SAMPLE.format(root=tmp_path / "data"))
    config = load_config(path, env, pm)
    assert isinstance(config, Config) and config.source == path
    assert storage_driver_name(config) == "filesystem"
    assert storage_params(config) == {"rootdirectory": str(tmp_path / "data")}
    assert delete_enabled(config) is True
    assert http_addr(config) == ("127.0.0.1", 5000)
    assert log_level(config) == "debug"
    assert drain_timeout(config) == 60.0
    assert http_headers(config) == {"X-Content-Type-Options": ["nosniff"]}
    assert catalog_max_entries(config) == 500
    # Sections the core does not implement are kept for whoever reads them.
    assert config["redis"]["pool"]["maxactive"] == 64
    assert config["health"]["storagedriver"]["interval"] == "10s"
    assert config["version"] == "0.1"


def test_minimal_config_and_defaults(tmp_path, env, pm):
    config = load_config(write(tmp_path, MINIMAL), env, pm)
    assert storage_driver_name(config) == "inmemory"
    assert storage_params(config) == {}
    assert delete_enabled(config) is False
    assert http_addr(config) == ("127.0.0.1", 5000)
    assert http_prefix(config) == "/"
    assert log_level(config) == "info"
    assert drain_timeout(config) == 10.0
    assert catalog_max_entries(config) == 1000


def test_empty_sections_are_absent_but_empty_driver_selects(tmp_path, env, pm):
    config = load_config(write(tmp_path, MINIMAL + "log:\nhttp:\nauth:\n  none:\n"), env, pm)
    assert "log" not in config and "http" not in config
    assert build_access_controller(config, pm) is None


def test_storage_may_be_a_driver_name(tmp_path, env, pm):
    config = load_config(write(tmp_path, "version: '0.1'\nstorage: inmemory\n"), env, pm)
    assert storage_driver_name(config) == "inmemory"


# ---------------------------------------------------------------------------------------------
# Errors: all of them, each with its path
# ---------------------------------------------------------------------------------------------


def test_every_error_is_reported_with_its_path(tmp_path, env, pm):
    path = write(
        tmp_path,
        """\
version: 0.1
log:
  level: verbose
storage:
  inmemory:
  delete:
    enabled: sometimes
notifications:
  endpoints:
    - name: listener
      timeout: 1s
""",
    )
    assert errors_of(path, env, pm) == [
        "log.level: 'verbose' is not one of ['error', 'warn', 'info', 'debug']",
        "notifications.endpoints[0]: 'url' is a required property",
        "storage.delete.enabled: 'sometimes' is not of type 'boolean'",
    ]


def test_unknown_driver_lists_installed_drivers(tmp_path, env, pm):
    errors = errors_of(write(tmp_path, "version: 0.1\nstorage:\n  foo:\n    bucket: x\n"), env, pm)
    installed = ", ".join(sorted(by_name(pm, "registry_storage_drivers")))
    assert errors == [f"storage: unknown driver 'foo' (installed: {installed})"]
    assert "inmemory" in installed


def test_two_drivers_are_refused(tmp_path, env, pm):
    errors = errors_of(write(tmp_path, MINIMAL + "  filesystem:\n"), env, pm)
    assert errors == ["storage: exactly one driver must be configured, found 2: inmemory, filesystem"]


def test_missing_storage_and_version(tmp_path, env, pm):
    errors = errors_of(write(tmp_path, "http:\n  addr: 127.0.0.1:5000\n"), env, pm)
    assert errors[0].startswith("storage: no storage driver configured; configure exactly one (installed: ")
    assert errors[1] == "version: is required"


def test_unsupported_version(tmp_path, env, pm):
    errors = errors_of(write(tmp_path, "version: 0.2\nstorage: inmemory\n"), env, pm)
    assert errors == ["version: unsupported version '0.2' (this registry reads 0.1)"]


def test_driver_schema_errors_carry_the_driver_path(tmp_path, env, pm):
    errors = errors_of(write(tmp_path, "version: 0.1\nstorage:\n  inmemory:\n    size: 3\n"), env, pm)
    assert errors == ["storage.inmemory.size: unknown key"]


def test_unknown_keys_get_a_suggestion(tmp_path, env, pm):
    text = MINIMAL + "storge:\n  inmemory:\nhttp:\n  adr: 127.0.0.1:5000\n  waitress:\n    thread: 4\n"
    assert errors_of(write(tmp_path, text), env, pm) == [
        "http.adr: unknown key (did you mean 'addr'?)",
        "http.waitress.thread: unknown key (did you mean 'threads'?)",
        "storge: unknown key (did you mean 'storage'?)",
    ]


def test_bad_values_in_core_keys(tmp_path, env, pm):
    text = MINIMAL + "http:\n  addr: localhost\n  draintimeout: 5 seconds\n  prefix: registry/\n"
    assert errors_of(write(tmp_path, text), env, pm) == [
        "http.addr: 'localhost' is not HOST:PORT (e.g. 127.0.0.1:5000, or :5000 for every interface)",
        "http.draintimeout: '5 seconds' is not a duration (write it like 500ms, 5s or 2h45m)",
        "http.prefix: 'registry/' must start with '/'",
    ]


def test_unknown_access_controller(tmp_path, env, pm):
    # Distribution's "silly" controller is for its own tests; no plugin declares it.
    errors = errors_of(write(tmp_path, MINIMAL + "auth:\n  silly:\n    realm: r\n    service: s\n"), env, pm)
    backends = ", ".join(sorted(by_name(pm, "registry_auth_backends")))
    assert errors == [f"auth: unknown access controller 'silly' (installed: {backends or 'none'})"]


def test_file_problems(tmp_path, env, pm):
    assert errors_of(str(tmp_path / "nope.yml"), env, pm) == [f"{tmp_path / 'nope.yml'}: no such file"]
    bad = write(tmp_path, "version: 0.1\nstorage:\n  inmemory:\n bad: [\n")
    (error,) = errors_of(bad, env, pm)
    assert error.startswith(f"{bad}:4:") and "invalid YAML" in error
    listing = write(tmp_path, "- a\n- b\n", "list.yml")
    assert errors_of(listing, env, pm) == [f"{listing}: expected a mapping of sections, found a list"]


def test_duplicate_keys_are_warned_about(tmp_path, env, pm, caplog):
    path = write(tmp_path, MINIMAL + "storage:\n  inmemory:\n  delete:\n    enabled: true\n")
    with caplog.at_level(logging.WARNING, logger="registry.config"):
        config = load_config(path, env, pm)
    assert delete_enabled(config)
    assert f"{path}:4: duplicate key 'storage'" in caplog.text


# ---------------------------------------------------------------------------------------------
# REGISTRY_* environment overrides
# ---------------------------------------------------------------------------------------------


def test_env_overrides_apply(tmp_path, env, pm):
    path = write(tmp_path, DISTRIBUTION_SAMPLE.format(root="/nonexistent/elsewhere"))
    env.update(
        REGISTRY_HTTP_ADDR="127.0.0.1:5999",
        REGISTRY_STORAGE_DELETE_ENABLED="false",
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=str(tmp_path / "env-root"),
        REGISTRY_LOG_LEVEL="WARN",
    )
    config = load_config(path, env, pm)
    assert http_addr(config) == ("127.0.0.1", 5999)
    assert delete_enabled(config) is False
    assert storage_params(config)["rootdirectory"] == str(tmp_path / "env-root")
    assert log_level(config) == "warn"
    assert config.env_overrides["REGISTRY_HTTP_ADDR"] == ("http", "addr")
    assert config.ignored_env == []


def test_env_creates_keys_the_schema_knows(tmp_path, env, pm):
    env.update(
        REGISTRY_STORAGE_DELETE_ENABLED="true",
        REGISTRY_HTTP_WAITRESS_MAX_REQUEST_BODY_SIZE="1099511627776",  # names with underscores
        REGISTRY_HTTP_SECRET="12345",  # a string key keeps digits as text
        REGISTRY_HTTP_HOST="'https://registry.example'",  # YAML quotes are removed, as in Distribution
        REGISTRY_REDIS_ADDRS_0="127.0.0.1:6379",  # list elements by index
        REGISTRY_REDIS_ADDRS_1="127.0.0.1:6380",
        REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL="30s",
        REGISTRY_HTTP_HEADERS_X="[a, b]",  # a free map: the key is lower-cased, as in Distribution
    )
    config = load_config(write(tmp_path, MINIMAL), env, pm)
    assert delete_enabled(config) is True
    assert config["http"]["waitress"]["max_request_body_size"] == 1 << 40
    assert config["http"]["secret"] == "12345"
    assert config["http"]["host"] == "https://registry.example"
    assert config["redis"]["addrs"] == ["127.0.0.1:6379", "127.0.0.1:6380"]
    assert config["health"]["storagedriver"]["interval"] == "30s"
    assert config["http"]["headers"]["x"] == ["a", "b"]


def test_env_overrides_list_elements_in_the_file(tmp_path, env, pm):
    path = write(tmp_path, DISTRIBUTION_SAMPLE.format(root=tmp_path))
    env["REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL"] = "https://other.example/event"
    env["REGISTRY_NOTIFICATIONS_ENDPOINTS_0_THRESHOLD"] = "9"
    config = load_config(path, env, pm)
    assert config["notifications"]["endpoints"][0]["url"] == "https://other.example/event"
    assert config["notifications"]["endpoints"][0]["threshold"] == 9
    assert config["notifications"]["endpoints"][0]["name"] == "alistener"


def test_env_names_nothing_is_warned_and_ignored(tmp_path, env, pm, caplog):
    env.update(
        REGISTRY_AUTH_FILE="/run/user/1000/containers/auth.json",  # podman's, not ours
        REGISTRY_HTTP_NOSUCHKEY="1",
        REGISTRY_NOTIFICATIONS_ENDPOINTS_5_URL="https://x.example",  # skips elements
        REGISTRY_DATA_DIR=str(tmp_path),  # ours: neither applied nor warned about
        REGISTRY_CONFIGURATION_PATH=write(tmp_path, MINIMAL),
    )
    with caplog.at_level(logging.WARNING, logger="registry.config"):
        config = load_config(None, env, pm)
    assert config.ignored_env == [
        "REGISTRY_AUTH_FILE",
        "REGISTRY_HTTP_NOSUCHKEY",
        "REGISTRY_NOTIFICATIONS_ENDPOINTS_5_URL",
    ]
    assert "auth" not in config
    warned = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("ignoring environment variable REGISTRY_AUTH_FILE: ") for m in warned)
    assert len(warned) == 3, warned


def test_env_errors_name_the_variable(tmp_path, env, pm):
    env["REGISTRY_STORAGE_DELETE_ENABLED"] = "maybe"
    errors = errors_of(write(tmp_path, MINIMAL), env, pm)
    assert errors == [
        "storage.delete.enabled: 'maybe' is not of type 'boolean' (set by REGISTRY_STORAGE_DELETE_ENABLED)"
    ]


def test_env_driver_for_another_driver_is_a_clear_error(tmp_path, env, pm):
    path = write(tmp_path, "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv\n")
    env["REGISTRY_STORAGE_INMEMORY"] = ""
    (error,) = errors_of(path, env, pm)
    assert error.startswith("storage: exactly one driver must be configured, found 2: filesystem, inmemory")
    assert "REGISTRY_STORAGE_INMEMORY added one; set REGISTRY_STORAGE=<driver> to switch drivers" in error


def test_env_storage_switches_driver(tmp_path, env, pm):
    # As in Distribution: REGISTRY_STORAGE replaces the section, then the more specific variables apply.
    path = write(tmp_path, "version: 0.1\nstorage:\n  inmemory:\n")
    env.update(REGISTRY_STORAGE="filesystem", REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=str(tmp_path))
    config = load_config(path, env, pm)
    assert storage_driver_name(config) == "filesystem"
    assert storage_params(config) == {"rootdirectory": str(tmp_path)}


def test_env_for_uninstalled_driver_names_installed_ones(tmp_path, env, pm, caplog):
    env["REGISTRY_STORAGE_NOSUCHDRIVER_BUCKET"] = "b"
    with caplog.at_level(logging.WARNING, logger="registry.config"):
        load_config(write(tmp_path, MINIMAL), env, pm)
    assert "REGISTRY_STORAGE_NOSUCHDRIVER_BUCKET" in caplog.text and "installed: " in caplog.text


# ---------------------------------------------------------------------------------------------
# The embedded default and the data directory
# ---------------------------------------------------------------------------------------------


def test_no_file_means_the_embedded_default(tmp_path, pm):
    env = {"HOME": str(tmp_path / "home")}
    config = load_config(None, env, pm)
    assert config.source is None
    assert storage_driver_name(config) == "filesystem"
    # The core names the default driver only; the driver fills in its own defaults.
    assert storage_params(config) == {}
    assert http_addr(config) == ("127.0.0.1", 5000)
    assert delete_enabled(config) is False
    assert config.not_acted_on == []


def test_data_dir_precedence(tmp_path):
    home = {"HOME": str(tmp_path)}
    assert default_data_dir(home) == tmp_path / ".local/share/registry"
    assert default_data_dir({**home, "XDG_DATA_HOME": str(tmp_path / "xdg")}) == tmp_path / "xdg/registry"
    assert default_data_dir({**home, "XDG_DATA_HOME": "relative"}) == tmp_path / ".local/share/registry"
    explicit = {**home, "XDG_DATA_HOME": str(tmp_path / "xdg"), "REGISTRY_DATA_DIR": str(tmp_path / "d")}
    assert default_data_dir(explicit) == tmp_path / "d"


def test_configuration_path_from_env(tmp_path, env, pm):
    env["REGISTRY_CONFIGURATION_PATH"] = write(tmp_path, MINIMAL)
    assert storage_driver_name(load_config(None, env, pm)) == "inmemory"


# ---------------------------------------------------------------------------------------------
# Schema composition
# ---------------------------------------------------------------------------------------------


class SectionPlugin:
    """A plugin declaring its own sections, one with local $defs/$ref."""

    @hookimpl
    def registry_config_schemas(self):
        return {
            "reporting.example": {
                "type": "object",
                "required": ["apikey"],
                "properties": {"apikey": {"type": "string"}, "every": {"$ref": "#/$defs/count"}},
                "$defs": {"count": {"type": "integer", "minimum": 1}},
            },
            "example": {"type": "object", "properties": {"max_items": {"type": "integer"}}},
        }


def test_plugin_sections_are_composed(tmp_path, env, pm):
    pm.register(SectionPlugin())
    text = MINIMAL + "reporting:\n  example:\n    every: 0\nexample:\n  max_items: 3\n"
    assert errors_of(write(tmp_path, text), env, pm) == [
        "reporting.example: 'apikey' is a required property",
        "reporting.example.every: 0 is less than the minimum of 1",
    ]
    env.update(REGISTRY_REPORTING_EXAMPLE_APIKEY="k", REGISTRY_EXAMPLE_MAX_ITEMS="7")
    config = load_config(write(tmp_path, MINIMAL), env, pm)
    assert config["reporting"]["example"] == {"apikey": "k"}
    assert config["example"] == {"max_items": 7}


class RefPlugin:
    """Declares a section whose keys are typed only through ``$ref``: into its own ``$defs`` and, from
    a fragment with its own ``$id``, into another ``$defs`` of that fragment."""

    @hookimpl
    def registry_config_schemas(self):
        return {
            "reporting.refs": {
                "type": "object",
                "properties": {"label": {"$ref": "#/$defs/label"}, "nested": {"$ref": "#/$defs/nested"}},
                "$defs": {
                    "label": {"type": "string"},
                    "nested": {"type": "object", "properties": {"count": {"$ref": "#/$defs/count"}}},
                    "count": {"type": "integer"},
                },
            },
            "example": {
                "$id": "https://plugin.invalid/example.json",
                "type": "object",
                "properties": {"code": {"$ref": "#/$defs/code"}},
                "$defs": {"code": {"type": "string"}},
            },
        }


def test_env_overrides_follow_refs_to_the_key_type(tmp_path, env, pm):
    pm.register(RefPlugin())
    # A string key keeps "123" as written; that needs the key's type, which only the $ref target has.
    env.update(REGISTRY_REPORTING_REFS_LABEL="123", REGISTRY_REPORTING_REFS_NESTED_COUNT="7",
               REGISTRY_EXAMPLE_CODE="007")
    config = load_config(write(tmp_path, MINIMAL), env, pm)
    assert config["reporting"]["refs"] == {"label": "123", "nested": {"count": 7}}
    assert config["example"] == {"code": "007"}


def test_undeclared_top_level_section_is_unknown(tmp_path, env, pm):
    assert errors_of(write(tmp_path, MINIMAL + "example:\n  max_items: 3\n"), env, pm) == ["example: unknown key"]


def test_invalid_plugin_schema_is_reported(pm):
    class Broken:
        @hookimpl
        def registry_config_schemas(self):
            return {"reporting.broken": {"type": "no-such-type"}}

    pm.register(Broken())
    with pytest.raises(ConfigError) as info:
        config_schema(pm)
    assert info.value.errors[0].startswith("reporting.broken: the plugin's schema is invalid: ")


def test_composed_schema_is_valid_and_names_drivers(pm):
    schema = config_schema(pm)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert {"inmemory", "filesystem", "delete"} <= set(schema["properties"]["storage"]["properties"])


def test_schema_copy_matches_package_data():
    packaged = ROOT / "registry" / "schemas" / "config.json"
    published = ROOT / "schemas" / "config.json"
    assert json.loads(published.read_text()) == json.loads(packaged.read_text()), (
        "schemas/config.json differs from registry/schemas/config.json (the source of truth): copy it over"
    )


# ---------------------------------------------------------------------------------------------
# Values and building
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("2h45m", 9900.0),
        ("1.5h", 5400.0),
        ("0", 0.0),
        ("300us", 3e-4),
        ("-1m", -60.0),
        (10**9, 1.0),
        (0, 0.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "5 s", "s", "", "1d", True, None, "5s3"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
        (":5000", ("", 5000)),
        ("[::1]:80", ("::1", 80)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_addr(addr, expected):
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["localhost", "::1:5000", "[::1]", "host:http", "host:70000"])
def test_parse_addr_refuses(addr):
    with pytest.raises(ValueError):
        parse_addr(addr)


def test_build_storage_wraps_the_driver(tmp_path, env, pm):
    driver = build_storage(load_config(write(tmp_path, MINIMAL), env, pm), pm)
    assert isinstance(driver, CheckedDriver)


def test_the_filesystem_plugin_defaults_to_the_data_dir(tmp_path, monkeypatch):
    pytest.importorskip("registry_filesystem")
    pm = create_plugin_manager()
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "data"))
    config = load_config(write(tmp_path, "version: 0.1\nstorage:\n  filesystem:\n"), {}, pm)
    assert build_storage(config, pm).inner.rootdirectory == str(tmp_path / "data")
    assert describe_storage(config, pm) == f"storage: filesystem in {tmp_path / 'data'}"
    config = load_config(write(tmp_path, f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/x\n"), {}, pm)
    assert build_storage(config, pm).inner.rootdirectory == str(tmp_path / "x")
    assert describe_storage(config, pm) == f"storage: filesystem in {tmp_path / 'x'}"


def test_a_driver_without_describe_is_logged_by_name(tmp_path, env):
    pm = create_plugin_manager(load_entry_points=False, plugins=[inmemory_plugin])
    config = load_config(write(tmp_path, MINIMAL), env, pm)
    assert describe_storage(config, pm) == "storage: inmemory"


def test_build_storage_reports_a_failing_factory(tmp_path, env):
    class Failing:
        @hookimpl
        def registry_storage_drivers(self):
            def factory(params):
                raise RuntimeError("endpoint unreachable")

            return [DriverDescriptor(name="failing", factory=factory)]

    pm = create_plugin_manager(load_entry_points=False, plugins=[Failing()])
    config = load_config(write(tmp_path, "version: 0.1\nstorage:\n  failing:\n"), env, pm)
    with pytest.raises(ConfigError) as info:
        build_storage(config, pm)
    assert info.value.errors == ["storage.failing: the driver failed to start: endpoint unreachable"]


def test_config_error_accepts_one_message():
    assert ConfigError("reporting.x: no key").errors == ["reporting.x: no key"]
