"""The suite against the driver named on the command line: what ``pytest --pyargs`` runs.

``--registry-storage-driver=NAME`` picks the driver by its entry-point name (default ``inmemory``, so a
bare run still tests something); ``--registry-storage-config=FILE`` is a YAML file of its parameters,
the mapping that would sit under ``storage.NAME`` in config.yml. For ``filesystem`` without a
``rootdirectory`` the suite uses a fresh temporary directory rather than ``/var/lib/registry``.

The registry's own ``pytest`` run does not collect this module (``testpaths`` leaves ``registry/``
out); its tests run the suite through subclasses and through this module in a subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from registry.storage.driver import StorageDriver
from registry.testing.conformance.suite import DriverSuite
from registry.testing.drivers import DEFAULT_DRIVER, create_driver, load_driver_options


class TestConfiguredDriver(DriverSuite):
    # One driver for the whole class: building one may mean connecting to a remote service.
    @pytest.fixture(scope="class")
    @classmethod
    def driver(cls, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageDriver]:
        name = pytestconfig.getoption("registry_storage_driver") or DEFAULT_DRIVER
        options = load_driver_options(pytestconfig.getoption("registry_storage_config"))
        if name == "filesystem" and not options.get("rootdirectory"):
            options["rootdirectory"] = str(tmp_path_factory.mktemp("filesystem-root"))
        driver = create_driver(name, options)
        yield driver
        driver.close()
