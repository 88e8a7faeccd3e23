"""The ``registry`` command, run as a user runs it: a subprocess, real files, real signals."""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

SCRIPT = Path(sys.executable).with_name("registry")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "registry.cli"]

MINIMAL = "version: 0.1\nstorage:\n  inmemory:\n"

THREE_MISTAKES = """\
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
"""


@pytest.fixture
def env(tmp_path):
    """The caller's environment without REGISTRY_* variables, with home and data under tmp_path."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    clean.update(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "xdg"))
    return clean


def run(*args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], env=env, capture_output=True, text=True, timeout=timeout)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("args", [[], ["serve"], ["plugins"], ["config"], ["config", "check"], ["config", "schema"]])
def test_help(args, env):
    r = run(*args, "--help", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: registry")


def test_no_command_prints_usage(env):
    r = run(env=env)
    assert r.returncode == 2
    assert "usage: registry" in r.stderr


def test_version(env):
    from registry import __version__

    r = run("--version", env=env)
    assert r.stdout.strip() == f"registry {__version__}"


def test_plugins_table(env):
    r = run("plugins", env=env)
    assert r.returncode == 0, r.stderr
    plugins, described = r.stdout.split("\n\n")
    header, *rows = plugins.splitlines()
    assert header.split() == ["NAME", "DISTRIBUTION", "VERSION", "KIND", "DRIVERS", "HOOKS"]
    # Then every driver with the description its descriptor gives.
    header, *lines = described.splitlines()
    assert header.split() == ["DRIVER", "PLUGIN", "DESCRIPTION"]
    from registry.storage.inmemory import registry_storage_drivers

    [descriptor] = registry_storage_drivers()
    assert descriptor.description and any(
        line.split(None, 2) == ["inmemory", "inmemory", descriptor.description] for line in lines
    ), lines
    by_name = {row.split()[0]: row.split() for row in rows}
    name, distribution, _version, kind, drivers, hooks = by_name["inmemory"]
    assert (distribution, kind, drivers, hooks) == ("registry", "storage", "inmemory", "storage_drivers")
    if "filesystem" in by_name:  # installed by `make install`, from registry_plugins/filesystem
        assert by_name["filesystem"][1] == "registry-filesystem"


def test_plugins_json(env):
    r = run("plugins", "--json", env=env)
    assert r.returncode == 0, r.stderr
    plugins = {p["name"]: p for p in json.loads(r.stdout)}
    assert plugins["inmemory"]["drivers"] == ["inmemory"]
    assert plugins["inmemory"]["kind"] == "storage"
    assert plugins["inmemory"]["descriptions"]["inmemory"].startswith("Process-local memory")
    assert "registry_storage_drivers" in plugins["inmemory"]["hooks"]


def test_config_schema(env):
    r = run("config", "schema", env=env)
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert "inmemory" in schema["properties"]["storage"]["properties"]


def test_config_check_ok(tmp_path, env):
    r = run("config", "check", write(tmp_path, MINIMAL), env=env)
    assert (r.returncode, r.stdout) == (0, "OK\n"), r.stderr


def test_config_check_lists_every_error(tmp_path, env):
    r = run("config", "check", write(tmp_path, THREE_MISTAKES), env=env)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "log.level: 'verbose' is not one of ['error', 'warn', 'info', 'debug']",
        "notifications.endpoints[0]: 'url' is a required property",
        "storage.delete.enabled: 'sometimes' is not of type 'boolean'",
    ]


def test_config_check_unknown_driver(tmp_path, env):
    r = run("config", "check", write(tmp_path, "version: 0.1\nstorage:\n  foo:\n"), env=env)
    assert r.returncode == 1
    (line,) = r.stdout.splitlines()
    installed = re.fullmatch(r"storage: unknown driver 'foo' \(installed: (.*)\)", line)
    assert installed and "inmemory" in installed.group(1).split(", ")


def test_config_check_env_overrides(tmp_path, env):
    env.update(REGISTRY_STORAGE_DELETE_ENABLED="yes please", REGISTRY_HTTP_ADDR="127.0.0.1:6000")
    r = run("config", "check", write(tmp_path, MINIMAL), env=env)
    assert r.returncode == 1
    assert r.stdout == (
        "storage.delete.enabled: 'yes please' is not of type 'boolean' (set by REGISTRY_STORAGE_DELETE_ENABLED)\n"
    )


def test_config_check_warns_about_foreign_variables(tmp_path, env):
    env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")  # podman's
    r = run("config", "check", write(tmp_path, MINIMAL), env=env)
    assert (r.returncode, r.stdout) == (0, "OK\n")
    assert "ignoring environment variable REGISTRY_AUTH_FILE" in r.stderr


def test_config_path_from_environment(tmp_path, env):
    env["REGISTRY_CONFIGURATION_PATH"] = write(tmp_path, THREE_MISTAKES)
    r = run("config", "check", env=env)
    assert r.returncode == 1 and len(r.stdout.splitlines()) == 3


def test_serve_refuses_an_invalid_config(tmp_path, env):
    r = run("serve", write(tmp_path, THREE_MISTAKES), env=env)
    assert r.returncode == 1
    assert f"registry: invalid configuration ({tmp_path / 'config.yml'}):" in r.stderr
    assert "  storage.delete.enabled: 'sometimes' is not of type 'boolean'" in r.stderr


class Serving:
    """``registry serve`` in a subprocess; its stderr is read on a thread so it never blocks."""

    def __init__(self, config: str, env: dict) -> None:
        self.proc = subprocess.Popen(
            [*COMMAND, "serve", config], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"{pattern!r} not logged; stderr so far:\n{''.join(self.seen)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.skipif(importlib.util.find_spec("registry.app") is None, reason="registry.app not written yet")
def test_serve_answers_and_stops_on_sigterm(tmp_path, env):
    # Port 0: the kernel picks a free port and the listening line says which.
    config = write(tmp_path, MINIMAL + "http:\n  addr: 127.0.0.1:0\n  draintimeout: 5s\n")
    server = Serving(config, env)
    try:
        port = int(server.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        response = requests.get(f"http://127.0.0.1:{port}/v2/", timeout=10)
        assert response.status_code == 200
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=15) == 0
        server.wait_for(r"registry stopped")
    finally:
        server.stop()
