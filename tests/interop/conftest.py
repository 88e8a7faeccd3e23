"""Our registry and Debian's docker-registry (Distribution 2.8.2) on ONE storage root, different ports.

What one writes the other must read: the storage layout is the contract. With
REGISTRY_TEST_SERVER=distribution the "ours" side is a second docker-registry (the harness's own check).
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

_CLIENTS = str(Path(__file__).resolve().parent.parent / "clients")
if _CLIENTS not in sys.path:  # the harness lives beside the client suite
    sys.path.insert(0, _CLIENTS)

from client_harness import (  # noqa: E402,F401  (fixtures and the report hook, registered by import)
    DISTRIBUTION,
    OURS,
    RegistryHTTP,
    RegistryProcess,
    containers_env,
    pytest_runtest_makereport,
    require_tools,
    running_registry,
    server_kind_under_test,
    test_images,
)


@dataclass
class RegistryPair:
    ours: RegistryProcess
    distribution: RegistryProcess
    root: Path

    @property
    def registry_processes(self) -> tuple[RegistryProcess, RegistryProcess]:
        return (self.ours, self.distribution)


@pytest.fixture(scope="session")
def registry_pair(tmp_path_factory):
    kind = server_kind_under_test()
    require_tools("registry" if kind == OURS else "docker-registry", "docker-registry")
    root = tmp_path_factory.mktemp("shared-root")
    with (
        running_registry(kind, root, tmp_path_factory.mktemp("ours-run")) as ours,
        running_registry(DISTRIBUTION, root, tmp_path_factory.mktemp("distribution-run")) as distribution,
    ):
        yield RegistryPair(ours, distribution, root)


@dataclass
class Direction:
    """One way across the pair: push through `src`, read through `dst`."""

    name: str
    src: RegistryProcess
    dst: RegistryProcess
    src_http: RegistryHTTP
    dst_http: RegistryHTTP

    @property
    def registry_processes(self) -> tuple[RegistryProcess, RegistryProcess]:
        return (self.src, self.dst)

    def repo(self, prefix: str) -> str:
        return f"interop/{prefix}/{self.name}"


@pytest.fixture(scope="session")
def pair_http(registry_pair):
    clients = {"ours": RegistryHTTP(registry_pair.ours), "distribution": RegistryHTTP(registry_pair.distribution)}
    yield clients
    for c in clients.values():
        c.close()


@pytest.fixture(params=["distribution-to-ours", "ours-to-distribution"])
def direction(request, registry_pair, pair_http) -> Direction:
    src, dst = request.param.split("-to-")
    servers = {"ours": registry_pair.ours, "distribution": registry_pair.distribution}
    return Direction(request.param, servers[src], servers[dst], pair_http[src], pair_http[dst])
