"""pytest11 plugin: command-line options for the exported driver suite. Import-light and inert."""

from __future__ import annotations


def pytest_addoption(parser) -> None:  # type: ignore[no-untyped-def]
    group = parser.getgroup("registry", "registry storage driver conformance")
    group.addoption("--registry-storage-driver", default=None, help="driver name to test")
    group.addoption("--registry-storage-config", default=None, help="YAML file of the driver's parameters")
