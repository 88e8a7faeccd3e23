"""``health.storagedriver`` in a real ``registry serve``: 503 on ``/debug/health`` and on the API while
the storage fails, 200 again once it recovers. The failure is a real one of the filesystem: the root
directory becomes a symbolic link to itself (``stat`` fails with ``ELOOP``), then the directory again."""

from __future__ import annotations

import os
import time

import pytest
import requests

from tests.test_cli import MINIMAL, Serving, write  # noqa: F401
from tests.test_cli import env as env  # noqa: F401 - the fixture: no REGISTRY_* from the machine

pytest.importorskip("registry_filesystem")


def _wait_status(url: str, status: int, timeout: float = 15) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = requests.get(url, timeout=10)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_health_follows_the_storage_down_and_back_up(tmp_path, env):
    root = tmp_path / "root"
    root.mkdir()
    config = write(tmp_path, "version: 0.1\n"
                   f"storage:\n  filesystem:\n    rootdirectory: {root}\n"
                   "http:\n  addr: 127.0.0.1:0\n  debug:\n    addr: 127.0.0.1:0\n"
                   "health:\n  storagedriver:\n    enabled: true\n    interval: 50ms\n    threshold: 2\n")
    server = Serving(config, env)
    try:
        api = "http://127.0.0.1:" + server.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1)
        debug = "http://127.0.0.1:" + server.wait_for(r"debug listener on http://127\.0\.0\.1:(\d+)").group(1)
        assert _wait_status(f"{debug}/debug/health", 200).json() == {}
        assert requests.get(f"{api}/v2/", timeout=10).status_code == 200

        away = root.rename(tmp_path / "away")
        os.symlink(root, root)  # stat() now fails: too many levels of symbolic links
        down = _wait_status(f"{debug}/debug/health", 503)
        assert down.status_code == 503 and list(down.json()) == ["storagedriver_filesystem"]
        r = requests.get(f"{api}/v2/", timeout=10)
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"

        root.unlink()
        away.rename(root)
        assert _wait_status(f"{debug}/debug/health", 200).json() == {}
        assert requests.get(f"{api}/v2/", timeout=10).status_code == 200
    finally:
        server.stop()
