"""Fixtures for the real-client suite; the machinery is in client_harness.py (shared with tests/interop).

`registry_server` is our registry on a fresh root, or Debian's docker-registry with
REGISTRY_TEST_SERVER=distribution (how the harness itself is checked against the reference).
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the harness is imported by name under any --import-mode
    sys.path.insert(0, _HERE)

from client_harness import (  # noqa: E402,F401  (fixtures and the report hook, registered by import)
    containers_env,
    distribution_server,
    fresh_store,
    pytest_runtest_makereport,
    registry_http,
    registry_server,
    test_images,
)
