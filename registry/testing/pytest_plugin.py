"""pytest11 plugin: the command-line options of the exported driver suite.

Loaded into every pytest run of an environment where the registry is installed, so it stays
import-light (nothing beyond pytest at module level) and inert: without ``--registry-storage-driver``
or ``--registry-storage-config`` it adds two options and does nothing else. The suite itself lives in
:mod:`registry.testing.conformance`::

    pytest --pyargs registry.testing.conformance \\
        --registry-storage-driver=filesystem --registry-storage-config=fs.yaml
"""

from __future__ import annotations

import pytest

# The suite's asserts live outside test modules; this gives them pytest's detailed failure messages.
pytest.register_assert_rewrite("registry.testing.conformance")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("registry", "registry storage driver conformance")
    group.addoption(
        "--registry-storage-driver",
        default=None,
        metavar="NAME",
        help="storage driver (entry-point name) that registry.testing.conformance tests; default inmemory",
    )
    group.addoption(
        "--registry-storage-config",
        default=None,
        metavar="FILE",
        help="YAML file of the driver's parameters: the mapping under storage.<driver> in config.yml",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a bad driver name or parameters file once, up front, instead of erroring every test."""
    name = config.getoption("registry_storage_driver", None)
    options_file = config.getoption("registry_storage_config", None)
    if name is None and options_file is None:
        return
    if name is None:
        raise pytest.UsageError("--registry-storage-config needs --registry-storage-driver=NAME")

    from registry.testing.drivers import DriverOptionsError, driver_descriptors, load_driver_options

    try:
        load_driver_options(options_file)
    except DriverOptionsError as exc:
        raise pytest.UsageError(str(exc)) from None
    known = driver_descriptors()
    if name not in known:
        raise pytest.UsageError(
            f"--registry-storage-driver={name}: no such storage driver is installed "
            f"(installed: {', '.join(sorted(known)) or 'none'})"
        )


def pytest_report_header(config: pytest.Config) -> str | None:
    name = config.getoption("registry_storage_driver", None)
    if name is None:
        return None
    options_file = config.getoption("registry_storage_config", None)
    return f"registry storage driver: {name} (parameters: {options_file or 'none'})"
