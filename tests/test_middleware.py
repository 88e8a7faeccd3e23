"""Storage middleware (``middleware.storage``): composition around the driver, config errors, the schema,
and the forwarding base class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from registry import hookimpl
from registry.config import ConfigError, build_storage, config_schema, validate
from registry.plugins import create_plugin_manager
from registry.storage.checked import CheckedDriver
from registry.storage.driver import StorageDriver
from registry.storage.inmemory import InMemoryDriver
from registry.storage.middleware import MiddlewareDescriptor, StorageMiddleware, contract_members, wrap
from registry.testing.conformance import DriverSuite


class Tagging(StorageMiddleware):
    """Appends a tag to everything it stores: shows in which order wrappers apply."""

    name = "tagging"

    def __init__(self, inner: StorageDriver, tag: str) -> None:
        super().__init__(inner)
        self.tag = tag.encode()

    def put_content(self, path: str, content: bytes) -> None:
        self.inner.put_content(path, content + self.tag)


class TaggingPlugin:
    def __init__(self) -> None:
        self.built: list[StorageDriver] = []

    def factory(self, inner: StorageDriver, options: Mapping[str, Any]) -> StorageDriver:
        if options.get("fail"):
            raise RuntimeError("cannot reach the CDN")
        self.built.append(inner)
        return Tagging(inner, options["tag"])

    @hookimpl
    def registry_storage_middleware(self) -> list[MiddlewareDescriptor]:
        schema = {"type": "object", "required": ["tag"], "additionalProperties": False,
                  "properties": {"tag": {"type": "string"}, "fail": {"type": "boolean"}}}
        return [MiddlewareDescriptor(name="tagging", factory=self.factory, schema=schema, description="tests")]


def config(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"version": 0.1, "storage": {"inmemory": {}}, "middleware": {"storage": list(entries)}}


def test_entries_apply_in_order_first_innermost_disabled_skipped() -> None:
    plugin = TaggingPlugin()
    pm = create_plugin_manager(plugins=[plugin])
    cfg = config({"name": "tagging", "options": {"tag": "-inner"}}, {"name": "tagging", "options": {"tag": "-outer"}},
                 {"name": "tagging", "disabled": True, "options": {"tag": "-never"}})
    assert validate(cfg, pm) == []
    storage = build_storage(cfg, pm)
    assert isinstance(storage, CheckedDriver) and isinstance(storage.inner, Tagging)
    storage.put_content("/f", b"x")
    # The outer one runs first, then hands its result to the inner one.
    assert storage.get_content("/f") == b"x-outer-inner"
    # Each middleware gets the storage below it checked, like the core does.
    assert all(isinstance(inner, CheckedDriver) for inner in plugin.built) and len(plugin.built) == 2


def test_no_middleware_is_the_driver_itself() -> None:
    driver = InMemoryDriver()
    pm = create_plugin_manager(plugins=[TaggingPlugin()])
    assert wrap(driver, None, pm) is driver
    assert wrap(driver, [], pm) is driver
    assert wrap(driver, [{"name": "tagging", "disabled": True}], pm) is driver


def test_the_plugin_manager_in_hand_is_used() -> None:
    """A middleware registered on the app's plugin manager only (not installed) is found: no fresh
    plugin manager is built behind the caller's back."""
    cfg = config({"name": "tagging", "options": {"tag": "!"}})
    with pytest.raises(ConfigError, match="unknown storage middleware 'tagging'"):
        build_storage(cfg, create_plugin_manager())
    assert isinstance(build_storage(cfg, create_plugin_manager(plugins=[TaggingPlugin()])).inner, Tagging)


def test_unknown_names_are_config_errors_listing_the_installed_ones() -> None:
    pm = create_plugin_manager(plugins=[TaggingPlugin()])
    cfg = config({"name": "taging", "options": {"tag": "x"}})
    with pytest.raises(ConfigError) as info:
        build_storage(cfg, pm)
    assert info.value.errors == ["middleware.storage[0]: unknown storage middleware 'taging' (installed: "
                                 + ", ".join(sorted(["tagging", *_installed()])) + ")"]
    problems = validate(cfg, pm)
    assert any(p.startswith("middleware.storage[0].name: 'taging' is not one of") and "'tagging'" in p
               for p in problems), problems


def _installed() -> list[str]:
    from registry.storage.middleware import descriptors

    return list(descriptors(create_plugin_manager()))


def test_options_fit_the_schema_and_a_failing_factory_refuses_to_start() -> None:
    pm = create_plugin_manager(plugins=[TaggingPlugin()])
    for cfg, message in [
        (config({"name": "tagging", "options": {}}), "middleware.storage[0].options: 'tag' is a required property"),
        (config({"name": "tagging", "options": {"tag": 1}}), "middleware.storage[0].options: 1 is not of type"),
        (config({"name": "tagging", "options": {"tag": "x", "fail": True}}),
         "middleware.storage[0]: storage middleware 'tagging' failed to start: cannot reach the CDN"),
    ]:
        with pytest.raises(ConfigError) as info:
            build_storage(cfg, pm)
        assert info.value.errors[0].startswith(message), info.value.errors
    assert validate(config({"name": "tagging"}), pm) == ["middleware.storage[0]: 'options' is a required property"]
    assert validate(config({"name": "tagging", "options": {"tag": 1}}), pm) != []
    assert validate(config({"name": "tagging", "options": {"tag": "x"}, "option": {}}), pm) != []  # a typo'd key


def test_two_plugins_declaring_one_name_is_an_error() -> None:
    pm = create_plugin_manager(plugins=[TaggingPlugin(), TaggingPlugin()])
    with pytest.raises(ConfigError, match="two plugins declare middleware named 'tagging'"):
        config_schema(pm)


def test_schema_composes_each_middlewares_options() -> None:
    schema = config_schema(create_plugin_manager(plugins=[TaggingPlugin()]))
    items = schema["properties"]["middleware"]["properties"]["storage"]["items"]
    assert "tagging" in items["properties"]["name"]["enum"]
    tagging = [branch["then"]["properties"]["options"] for branch in items["allOf"]
               if branch["if"]["properties"]["name"]["const"] == "tagging"]
    assert len(tagging) == 1 and tagging[0]["required"] == ["tag"]


def test_storage_middleware_forwards_the_whole_contract() -> None:
    """Every public member of StorageDriver reaches the inner driver, so an operation the contract gains
    is not silently answered by the base class's default."""
    calls: list[str] = []

    class Spy:
        name = "spy"

        def __getattr__(self, attr: str) -> Any:
            calls.append(attr)
            return lambda *args, **kwargs: attr

    forwarding = StorageMiddleware(Spy())  # type: ignore[arg-type]
    members = contract_members(StorageDriver)
    for attr, is_method in members.items():
        value = getattr(forwarding, attr)
        if is_method:
            assert value() == attr
    assert set(calls) == set(members)
    assert forwarding.name == "spy"  # a pass-through goes by the name of what it wraps


def test_what_the_contract_does_not_name_reaches_the_inner_driver_too() -> None:
    """A driver's own extras (an attribute set in ``__init__``, a method of its own) are not hidden by a
    wrapper: the contract may gain such a member, as an instance attribute, before the wrapper knows."""
    inner = InMemoryDriver()
    inner.capabilities_of_tomorrow = frozenset({"append"})  # type: ignore[attr-defined]
    wrapped = Tagging(StorageMiddleware(inner), "!")
    assert wrapped.capabilities_of_tomorrow == frozenset({"append"})
    with pytest.raises(AttributeError):
        wrapped.no_such_member  # noqa: B018 - the lookup is the test


class TestStorageMiddlewareConforms(DriverSuite):
    """A pass-through middleware is invisible: the exported driver suite passes through it."""

    @pytest.fixture
    def driver(self) -> StorageDriver:
        return StorageMiddleware(InMemoryDriver())


def test_composition_loads_neither_the_web_framework_nor_the_config_machinery() -> None:
    """Storage uses nothing above it: composing middleware needs only the plugin manager in hand."""
    import subprocess
    import sys

    code = ("import sys; import registry.storage.middleware; "
            "print(sorted({'falcon', 'registry.config', 'registry.plugins', 'registry.errors'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_a_middleware_keeps_the_capabilities_of_what_it_wraps_and_is_listed_as_middleware() -> None:
    from registry.plugins import describe_plugins
    from registry.storage.driver import Capability

    wrapped = Tagging(StorageMiddleware(InMemoryDriver()), "!")
    assert Capability.EXCLUSIVE_APPEND in wrapped.capabilities  # else the core would not trust hash states
    [info] = [i for i in describe_plugins(create_plugin_manager(load_entry_points=False, plugins=[TaggingPlugin()]))]
    assert "storage-middleware" in info.kind.split(",")
