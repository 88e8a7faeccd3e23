"""Packaging: what the distributions declare, the waitress surface the server relies on, and a fresh
install of the core's and the filesystem plugin's wheels serving the embedded default."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
PYPROJECTS = sorted([ROOT / "pyproject.toml", *ROOT.glob("registry_plugins/*/pyproject.toml"),
                     *ROOT.glob("contrib/plugins/*/pyproject.toml")])


def project(path: Path = ROOT / "pyproject.toml") -> dict:
    return tomllib.loads(path.read_text())["project"]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


# ---------------------------------------------------------------------------------------------
# What the distributions declare
# ---------------------------------------------------------------------------------------------


def test_the_core_depends_on_its_default_driver_and_offers_an_extra_per_plugin():
    core = project()
    assert "registry-filesystem" in core["dependencies"]  # the embedded default names it
    shipped = {project(p)["name"] for p in ROOT.glob("registry_plugins/*/pyproject.toml")}
    extras = core["optional-dependencies"]
    for dist in shipped:
        assert extras.get(dist.removeprefix("registry-")) == [dist], f"no registry[{dist}] extra"


def test_the_core_registers_no_test_only_or_example_driver():
    assert set(project()["entry-points"]["registry.plugins"]) == {"inmemory"}
    installed = {ep.name for ep in metadata.entry_points(group="registry.plugins") if ep.dist.name == "registry"}
    assert installed == {"inmemory"}, "reinstall the core (make install) to refresh its entry points"


@pytest.mark.parametrize("path", PYPROJECTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_licenses_are_spdx_expressions(path):
    text = tomllib.loads(path.read_text())
    assert text["project"]["license"] == "Apache-2.0"
    (setuptools,) = [r for r in text["build-system"]["requires"] if r.startswith("setuptools")]
    assert _version(setuptools) >= (77,), "setuptools reads SPDX license strings from 77 on"


# ---------------------------------------------------------------------------------------------
# The waitress surface registry/serve.py and registry/spool.py override or use
# ---------------------------------------------------------------------------------------------


def test_installed_waitress_is_in_the_pinned_range():
    (spec,) = [d for d in project()["dependencies"] if d.startswith("waitress")]
    low, high = re.fullmatch(r"waitress>=([\d.]+),<([\d.]+)", spec).groups()
    assert _version(low) <= _version(metadata.version("waitress")) < _version(high)


def _signatures() -> dict[str, object]:
    from waitress import buffers, channel, parser, server, task, wasyncore

    return {
        "server.create_server": server.create_server,
        "channel.HTTPChannel.__init__": channel.HTTPChannel.__init__,
        "channel.HTTPChannel.write_soon": channel.HTTPChannel.write_soon,
        "channel.HTTPChannel.received": channel.HTTPChannel.received,
        "task.ErrorTask.execute": task.ErrorTask.execute,
        "task.WSGITask.write": task.WSGITask.write,
        "parser.HTTPRequestParser.parse_header": parser.HTTPRequestParser.parse_header,
        "buffers.TempfileBasedBuffer.newfile": buffers.TempfileBasedBuffer.newfile,
        "buffers.OverflowableBuffer.__init__": buffers.OverflowableBuffer.__init__,
        "buffers.OverflowableBuffer._set_large_buffer": buffers.OverflowableBuffer._set_large_buffer,
        "buffers.OverflowableBuffer.append": buffers.OverflowableBuffer.append,
        "wasyncore.loop": wasyncore.loop,
        "wasyncore.close_all": wasyncore.close_all,
    }


#: The parameters of each waitress callable the server overrides or calls, as in waitress 3.0.
EXPECTED_SIGNATURES = {
    "server.create_server": ["application", "map", "_start", "_sock", "_dispatcher", "kw"],
    "channel.HTTPChannel.__init__": ["self", "server", "sock", "addr", "adj", "map"],
    "channel.HTTPChannel.write_soon": ["self", "data"],
    "channel.HTTPChannel.received": ["self", "data"],
    "task.ErrorTask.execute": ["self"],
    "task.WSGITask.write": ["self", "data"],
    "parser.HTTPRequestParser.parse_header": ["self", "header_plus"],
    "buffers.TempfileBasedBuffer.newfile": ["self"],
    "buffers.OverflowableBuffer.__init__": ["self", "overflow"],
    "buffers.OverflowableBuffer._set_large_buffer": ["self"],
    "buffers.OverflowableBuffer.append": ["self", "s"],
    "wasyncore.loop": ["timeout", "use_poll", "map", "count"],
    "wasyncore.close_all": ["map", "ignore_all"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SIGNATURES))
def test_waitress_signatures_the_server_relies_on(name):
    assert list(inspect.signature(_signatures()[name]).parameters) == EXPECTED_SIGNATURES[name]


def test_waitress_attributes_the_server_relies_on():
    from waitress import adjustments, buffers, channel, parser, server, task

    from registry.serve import WAITRESS_DEFAULTS

    # Every default the registry passes is a waitress setting, and the ones it reads exist.
    params = dict(adjustments.Adjustments._params)
    assert set(WAITRESS_DEFAULTS) <= set(params)
    assert {"asyncore_loop_timeout", "asyncore_use_poll", "unix_socket", "outbuf_high_watermark",
            "outbuf_overflow", "inbuf_overflow", "url_prefix", "listen"} <= set(params)

    app = lambda environ, start_response: []  # noqa: E731
    single = server.create_server(app, listen="127.0.0.1:0")
    multi = server.create_server(app, listen="127.0.0.1:0 127.0.0.1:0")
    ours, theirs = socket.socketpair()
    try:
        assert isinstance(single, server.BaseWSGIServer) and isinstance(multi, server.MultiSocketServer)
        for name in ("_map", "adj", "effective_host", "effective_port", "task_dispatcher", "accepting",
                     "channel_class", "close"):
            assert hasattr(single, name), f"BaseWSGIServer.{name}"
        assert hasattr(single.task_dispatcher, "shutdown")
        assert isinstance(multi.map, dict) and len(multi.effective_listen) == 2
        assert {"task_class", "error_task_class", "parser_class"} <= set(dir(channel.HTTPChannel))

        conn = channel.HTTPChannel(single, ours, ("127.0.0.1", 1), single.adj, map={})
        for name in ("sendbuf_len", "outbuf_lock", "current_outbuf_count", "outbufs", "total_outbufs_len",
                     "connected", "will_close", "requests", "request", "adj", "send"):
            assert hasattr(conn, name), f"HTTPChannel.{name}"
        request = parser.HTTPRequestParser(single.adj)
        assert hasattr(request, "body_rcv") and hasattr(request, "adj") and hasattr(request, "error")
        wsgi_task = task.WSGITask(conn, request)
        for name in ("wrote_header", "channel", "request", "status", "response_headers", "content_length",
                     "set_close_on_finish", "write"):
            assert hasattr(wsgi_task, name), f"WSGITask.{name}"
        buffer = buffers.OverflowableBuffer(1 << 20)
        assert hasattr(buffer, "buf") and hasattr(buffer, "overflowed")
    finally:
        for s in (single, multi):
            s.close()
        ours.close()
        theirs.close()


# ---------------------------------------------------------------------------------------------
# A fresh install: the two wheels alone serve the embedded default
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_wheels_alone_serve_the_embedded_default(tmp_path):
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # Built from copies: setuptools leaves build/ and *.egg-info in the tree it builds.
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "tests")
    core, plugin = tmp_path / "src" / "core", tmp_path / "src" / "filesystem"
    shutil.copytree(ROOT / "registry", core / "registry", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, core / name)
    shutil.copytree(ROOT / "registry_plugins" / "filesystem", plugin, ignore=ignore)
    for source in (core, plugin):
        built = subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], timeout=180,
                               capture_output=True, text=True)
        assert built.returncode == 0, built.stderr
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    bin_dir = venv / "bin"
    # Dependencies come from wherever this machine's pip gets them (PyPI or its configured index).
    installed = subprocess.run([str(bin_dir / "python"), "-m", "pip", "--disable-pip-version-check", "-q",
                                "install", *map(str, sorted(wheels.glob("*.whl")))],
                               timeout=300, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(tmp_path / "home"), REGISTRY_DATA_DIR=str(tmp_path / "data"),
               REGISTRY_HTTP_ADDR=f"127.0.0.1:{_free_port()}")
    listed = subprocess.run([str(bin_dir / "registry"), "plugins", "--json"], env=env, capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {row["name"] for row in json.loads(listed.stdout)}
    drivers = {d for row in json.loads(listed.stdout) for d in row["drivers"]}
    assert "filesystem" in names and "filesystem" in drivers
    assert not {"faulty", "prefixed"} & (names | drivers)

    # cwd outside the source tree, so that the venv's installed packages are what runs.
    proc = subprocess.Popen([str(bin_dir / "registry"), "serve"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://{env['REGISTRY_HTTP_ADDR']}/v2/"
        deadline, answer = time.monotonic() + 30, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert answer is not None, f"no answer; exit status {proc.poll()}"
        assert answer.status_code == 200 and answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert f"storage: filesystem in {tmp_path / 'data'}" in stderr
    assert "accepted, not acted on" not in stderr
