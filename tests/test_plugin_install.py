"""A plugin installed with pip, as a user installs one, using the new hooks through ``registry serve``.

``tests/plugins/registry-hooktest`` is built and installed with pip into a temporary directory put
on ``PYTHONPATH`` (the development venv's packages stay as they are), then a real ``registry serve``
runs with a debug listener on loopback. Over HTTP: the plugin's debug route answers, its health check
turns ``/debug/health`` to 503 and back, and it sees startup and, on SIGTERM, shutdown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.test_cli import COMMAND, Serving

PLUGIN = Path(__file__).resolve().parent / "plugins" / "registry-hooktest"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The plugin, installed by pip into a directory of its own (built from a copy, so that the
    build leaves nothing in the source tree)."""
    base = tmp_path_factory.mktemp("hooktest")
    source, target = base / "src", base / "site"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    if r.returncode != 0:
        pytest.fail(f"pip could not install the test plugin:\n{r.stdout}\n{r.stderr}")
    assert (target / "registry_hooktest" / "__init__.py").exists()
    return target


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "HOOKTEST_", "PYTHONPATH"))}
    clean.update(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "xdg"))
    return clean


def plugins(env: dict[str, str]) -> dict[str, dict]:
    r = subprocess.run([*COMMAND, "plugins", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {p["name"]: p for p in json.loads(r.stdout)}


def test_the_test_plugin_is_not_listed_without_its_install(installed, env):
    assert "hooktest" not in plugins(env)
    listed = plugins({**env, "PYTHONPATH": str(installed)})["hooktest"]
    assert listed["distribution"] == "registry-hooktest"
    assert {"registry_routes", "registry_health_checks", "registry_startup", "registry_shutdown"} <= set(listed["hooks"])


def test_a_pip_installed_plugin_adds_a_debug_route_a_health_check_and_sees_the_lifecycle(installed, env, tmp_path):
    markers, unhealthy = tmp_path / "markers.txt", tmp_path / "unhealthy"
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  inmemory:\n"
        "http:\n  addr: 127.0.0.1:0\n  draintimeout: 2s\n  debug:\n    addr: 127.0.0.1:0\n"
    )
    env = {**env, "PYTHONPATH": str(installed), "HOOKTEST_MARKERS": str(markers), "HOOKTEST_UNHEALTHY": str(unhealthy)}
    server = Serving(str(config), env)
    try:
        main = int(server.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        debug = int(server.wait_for(r"debug listener on http://127\.0\.0\.1:(\d+)").group(1))
        assert main != debug
        assert markers.read_text().splitlines() == ["configure", "startup RegistryApp"]

        r = requests.get(f"http://127.0.0.1:{debug}/hooktest/ping", timeout=10)
        assert (r.status_code, r.text, r.headers["X-Hooktest"]) == (200, "hooktest GET /hooktest/ping\n", "1")
        assert requests.get(f"http://127.0.0.1:{main}/hooktest/ping", timeout=10).status_code == 404

        health = f"http://127.0.0.1:{debug}/debug/health"
        r = requests.get(health, timeout=10)
        assert (r.status_code, r.json()) == (200, {})
        unhealthy.write_text("out of rotation")
        r = requests.get(health, timeout=10)
        assert (r.status_code, r.json()) == (503, {"hooktest": "unhealthy exists"})
        assert requests.get(f"http://127.0.0.1:{main}/v2/", timeout=10).status_code == 503  # out of rotation
        unhealthy.unlink()
        r = requests.get(health, timeout=10)
        assert (r.status_code, r.json()) == (200, {})

        assert requests.get(f"http://127.0.0.1:{main}/v2/", timeout=10).status_code == 200
        assert "shutdown" not in markers.read_text()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0
        server.wait_for(r"registry stopped")
        assert markers.read_text().splitlines() == ["configure", "startup RegistryApp", "shutdown"]
    finally:
        server.stop()
