"""Registries with access control for the real-client auth tests: `registry serve` with an `auth:`
section, on a free loopback port, ready when `GET /v2/` answers (401 counts: it is asking to log in)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from client_harness import (
    START_TIMEOUT,
    RegistryProcess,
    _server_env,
    find_tool,
    free_port,
)


def auth_config(root: Path, port: int, auth_yaml: str, http_extra: str = "") -> str:
    return (
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(root))}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{http_extra}"
        f"auth:\n{auth_yaml}"
    )


@contextlib.contextmanager
def auth_registry(workdir: Path, auth_yaml: str, http_extra: str = "", probe: str = "/v2/") -> Iterator[RegistryProcess]:
    """`registry serve` with `auth_yaml` (indented two spaces under `auth:`) and `http_extra` (lines
    under `http:`), stopped afterwards; ready when `probe` answers 200 or 401."""
    exe = find_tool("registry")
    if exe is None:
        pytest.fail("registry not found in the venv", pytrace=False)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(auth_config(workdir / "root", port, auth_yaml, http_extra))
    log_path = workdir / "registry.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([exe, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=_server_env(), cwd=workdir, start_new_session=True)
    server = RegistryProcess("ours", workdir / "root", port, config, log_path, proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        ready = False
        while time.monotonic() < deadline and server.alive() and not ready:
            with contextlib.suppress(requests.RequestException):
                ready = requests.get(server.url + probe, timeout=1).status_code in (200, 401)
            if not ready:
                time.sleep(0.05)
        if not ready:
            pytest.fail(f"registry with auth did not start:\n{server.log_tail()}", pytrace=False)
        yield server
    finally:
        server.stop()
