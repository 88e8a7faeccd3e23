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

from tests import processes


def auth_config(root: Path, port: int, auth_yaml: str, http_extra: str = "") -> str:
    return (
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(root))}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{http_extra}"
        f"auth:\n{auth_yaml}"
    )


@contextlib.contextmanager
def auth_registry(workdir: Path, auth_yaml: str, http_extra: str = "", probe: str | None = "/v2/",
                  ca: Path | None = None) -> Iterator[RegistryProcess]:
    """`registry serve` with `auth_yaml` (indented two spaces under `auth:`) and `http_extra` (lines
    under `http:`), stopped afterwards; ready when `probe` answers 200 or 401 (over HTTPS, trusting
    `ca`, when `ca` is given), or with `probe=None` when the log says it listens."""
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
                if probe is None:
                    ready = "listening on" in log_path.read_text()
                else:
                    base = f"https://{server.host}" if ca is not None else server.url
                    status = requests.get(base + probe, timeout=1, verify=str(ca) if ca else True).status_code
                    ready = status in (200, 401)
            if not ready:
                time.sleep(0.05)
        if not ready:
            pytest.fail(f"registry with auth did not start:\n{server.log_tail()}", pytrace=False)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def token_server(workdir: Path, users: dict[str, str], rules: str, service: str = "test-registry"):
    """The reference token server (contrib/token-server) with `users` and `rules`, on a free loopback
    port; yields the `auth:` lines it printed for the registry (indented under `auth:`) and its port."""
    import bcrypt

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "htpasswd").write_text("".join(
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(5)).decode()}\n" for u, p in users.items()))
    (workdir / "access.yml").write_text(rules)
    exe = find_tool("registry-token-server")
    if exe is None:
        pytest.fail("registry-token-server is not installed (make install installs contrib/token-server)",
                    pytrace=False)
    port = free_port()
    log_path = workdir / "token-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [exe, "--htpasswd", str(workdir / "htpasswd"), "--rules", str(workdir / "access.yml"), "--keys",
             str(workdir / "keys"), "--listen", f"127.0.0.1:{port}", "--service", service],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_server_env(), start_new_session=True)
    try:
        deadline, up = time.monotonic() + START_TIMEOUT, False
        while time.monotonic() < deadline and proc.poll() is None and not up:
            with contextlib.suppress(requests.RequestException):
                up = requests.get(f"http://127.0.0.1:{port}/token", timeout=1).status_code == 200
            if not up:
                time.sleep(0.05)
        printed = log_path.read_text()
        assert up, f"token server did not start:\n{printed}"
        # What it printed is the registry's config, used as it is.
        auth = printed.split("Add this to the registry's config.yml:\n\n", 1)[1].split("\n\n", 1)[0]
        assert auth.startswith("auth:\n")
        yield auth.split("\n", 1)[1] + "\n", port
    finally:
        processes.stop(proc)
        text = log_path.read_text()
        assert all(p not in text for p in users.values()), "a password reached the token server's log"
