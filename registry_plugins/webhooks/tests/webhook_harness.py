"""What the webhook tests drive: a real HTTP receiver on loopback, and a real ``registry serve``.

:class:`Receiver` is a threaded :mod:`http.server` that records every envelope and can be told to
answer 500, to hang past the sender's timeout, or to be down (its port closed) and come back on the
same port. :class:`Registry` runs ``registry serve`` in a subprocess with a given ``notifications``
section and stops it with SIGTERM, as an init system does.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry as SchemaRegistry
from referencing import Resource

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
_EVENT = json.loads((SCHEMAS / "event.json").read_text())
_ENVELOPE = json.loads((SCHEMAS / "envelope.json").read_text())
ENVELOPE_VALIDATOR = jsonschema.Draft202012Validator(
    _ENVELOPE,
    registry=SchemaRegistry().with_resource(_EVENT["$id"], Resource.from_contents(_EVENT)),
    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
)


def envelope_errors(doc: Any) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                  for e in ENVELOPE_VALIDATOR.iter_errors(doc))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, timeout: float, what: str, step: float = 0.05) -> None:
    """Poll ``predicate`` until true, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Receiver:
    """A webhook receiver on 127.0.0.1. ``mode`` is ``ok`` (202), ``fail`` (500, body not kept) or
    ``hang`` (reads the body, then sleeps ``hang_for`` seconds without answering, body not kept)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.mode = "ok"
        self.hang_for = 3.0
        #: In ``ok`` mode, seconds to wait before answering (a slow receiver).
        self.delay = 0.0
        self.lock = threading.Lock()
        #: (headers: every value of each, raw body, time received) of every envelope answered 202.
        self.received: list[tuple[dict[str, list[str]], bytes, float]] = []
        self.attempts = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.attempts += 1
                    mode = receiver.mode
                if mode == "hang":
                    time.sleep(receiver.hang_for)
                    self.close_connection = True
                    return
                if mode == "fail":
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.lock:
                    headers: dict[str, list[str]] = {}
                    for k, v in self.headers.items():
                        headers.setdefault(k.lower(), []).append(v)
                    receiver.received.append((headers, body, time.monotonic()))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: the port is closed (connections are refused)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def envelopes(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body, _ in self.received]

    def events(self) -> list[dict[str, Any]]:
        return [e for env in self.envelopes() for e in env["events"]]

    def ids(self) -> set[str]:
        return {e["id"] for e in self.events()}


def registry_command() -> list[str]:
    beside = Path(sys.executable).parent / "registry"
    exe = str(beside) if beside.exists() else shutil.which("registry")
    if exe is None:
        pytest.fail("the registry command is not installed")
    return [exe, "serve"]


class Registry:
    """``registry serve`` on a free loopback port, filesystem storage, with ``notifications``."""

    def __init__(self, workdir: Path, notifications: dict[str, Any]) -> None:
        self.workdir = workdir
        self.notifications = notifications
        self.port = free_port()
        self.debug_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "registry.log"
        self.config = workdir / "config.yml"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = {
            "version": 0.1,
            "log": {"level": "info"},
            "storage": {"filesystem": {"rootdirectory": str(self.workdir / "root")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}", "debug": {"addr": f"127.0.0.1:{self.debug_port}"}},
            "notifications": self.notifications,
        }
        self.config.write_text(json.dumps(cfg))  # JSON is YAML

    def start(self, timeout: float = 30.0) -> Registry:
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*registry_command(), str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"registry exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if self.request("GET", "/v2/")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"registry did not answer within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, and wait for the exit (the drain included)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"registry ignored SIGTERM for {timeout}s") from None
        return self.proc.returncode

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                port: int | None = None, conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
        own = conn is None
        c = conn or http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=15)
        try:
            c.request(method, path, body=body or None, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            if own:
                c.close()

    def metrics(self) -> dict[str, Any]:
        status, body = self.request("GET", "/debug/webhooks", port=self.debug_port)
        assert status == 200, body
        return json.loads(body)["endpoints"]

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def push_blob(reg: Registry, name: str, data: bytes, conn: http.client.HTTPConnection | None = None) -> str:
    d = sha256(data)
    status, body = reg.request("POST", f"/v2/{name}/blobs/uploads/?digest={d}", data,
                               {"Content-Type": "application/octet-stream"}, conn=conn)
    assert status == 201, body
    return d


def push_image(reg: Registry, name: str, tag: str, layers: tuple[bytes, ...]) -> tuple[str, list[str], bytes]:
    """Config, layers, then the manifest; returns the manifest's digest, the blobs' digests and the manifest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cd = push_blob(reg, name, config)
    descs = [{"mediaType": OCI_LAYER, "digest": push_blob(reg, name, layer), "size": len(layer)} for layer in layers]
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(config)}, "layers": descs}).encode()
    status, body = reg.request("PUT", f"/v2/{name}/manifests/{tag}", raw, {"Content-Type": OCI_MANIFEST})
    assert status == 201, body
    return sha256(raw), [cd, *(x["digest"] for x in descs)], raw
