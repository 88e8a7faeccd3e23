"""nginx from Debian, run for a test in a folder of its own: what the recipes in contrib/nginx/ are
tested with (the scale-out cluster, the web UI behind it, the TLS front)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests import processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: The temporary folders nginx wants under its prefix.
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_executable() -> str:
    """nginx's path; skips without it, and fails under CI, where the installers put it there."""
    exe = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed (contrib/dev/install-ceph.sh, run by install-test-deps.sh, "
                        "installs it under CI)")
        pytest.skip("nginx is not installed: contrib/dev/install-ceph.sh")
    return exe


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    """A recipe with its ``@NAME@`` placeholders filled, except in comments (which name them too)."""
    lines = []
    for line in text.splitlines():
        if not line.lstrip().startswith("#"):
            for placeholder, value in values.items():
                line = line.replace(placeholder, value)
        lines.append(line)
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def running_nginx(prefix: Path, write_config: Callable[[Path], Path], url: str,
                  verify: str | bool = True) -> Iterator[str]:
    """Run nginx with the configuration ``write_config(prefix)`` writes (it returns the file's path)
    until ``url + "/v2/"`` answers 200; yields ``url``, stops nginx after."""
    exe = nginx_executable()
    for sub in ("", *TEMP_DIRS):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
        (prefix / sub).chmod(0o777)  # nginx's workers may run as nobody
    conf = write_config(prefix)
    check = subprocess.run([exe, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, f"nginx refuses the configuration: {check.stderr}"
    proc = subprocess.Popen([exe, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        with requests.Session() as s:
            s.trust_env, s.verify = False, verify
            while True:
                assert proc.poll() is None, f"nginx exited: {proc.stderr.read().decode(errors='replace')}"
                with contextlib.suppress(requests.RequestException):
                    if s.get(url + "/v2/", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, "nginx did not answer"
                time.sleep(0.1)
        yield url
    finally:
        processes.stop(proc)


REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def nginx_cluster(workdir: Path, hosts: list[str]) -> Iterator[str]:
    """contrib/nginx/registry-cluster.conf, its placeholders filled, round robin over ``hosts``
    (``127.0.0.1:PORT`` each); yields the URL nginx answers on."""
    port = free_port()

    def write(prefix: Path) -> Path:
        values = {"@PREFIX@": str(prefix), "@LISTEN@": f"127.0.0.1:{port}",
                  "@SERVERS@": "\n        ".join(f"server {h};" for h in hosts)}
        conf = prefix / "nginx.conf"
        conf.write_text(fill_placeholders((REPO / "contrib" / "nginx" / "registry-cluster.conf").read_text(), values))
        return conf

    with running_nginx(workdir / "nginx", write, f"http://127.0.0.1:{port}") as url:
        yield url
