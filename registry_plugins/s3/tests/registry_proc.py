"""A real ``registry serve`` process on an S3 bucket, and a counting TCP proxy for the tests."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from s3_servers import free_port

START_TIMEOUT = 60


@dataclasses.dataclass
class Registry:
    url: str
    proc: subprocess.Popen
    log: Path

    def rss(self) -> int:
        """The server's resident set size in bytes (VmRSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # loopback only, never through a proxy from the environment
    return s


@contextlib.contextmanager
def running_registry(workdir: Path, driver: str, options: dict[str, Any], *, redirect: bool = True,
                     env: dict[str, str] | None = None) -> Iterator[Registry]:
    """``registry serve`` on ``storage.<driver>: options`` on a free loopback port, stopped afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {"version": "0.1", "log": {"level": "warn"},
              "storage": {driver: options, "delete": {"enabled": True}, "redirect": {"disable": not redirect}},
              "http": {"addr": f"127.0.0.1:{port}"}}
    path = workdir / f"config-{port}.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    log = workdir / f"registry-{port}.log"
    exe = str(Path(sys.executable).with_name("registry"))
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    server_env.update(env or {})
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "serve", str(path)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=server_env, start_new_session=True)
    registry = Registry(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        with session() as s:
            while True:
                assert proc.poll() is None, f"registry exited:\n{registry.log_tail()}"
                with contextlib.suppress(requests.RequestException):
                    if s.get(registry.url + "/v2/", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"registry did not answer:\n{registry.log_tail()}"
                time.sleep(0.1)
        yield registry
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


class CountingProxy:
    """A TCP proxy on loopback in front of ``target`` counting the bytes each way: ``sent`` (to the
    target, the object store) and ``received``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = self.received = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            done = threading.Semaphore(0)
            for args in ((client, upstream, "sent"), (upstream, client, "received")):
                threading.Thread(target=self._pump, args=(*args, done), daemon=True).start()
            threading.Thread(target=self._close_after, args=(client, upstream, done), daemon=True).start()

    @staticmethod
    def _close_after(a: socket.socket, b: socket.socket, done: threading.Semaphore) -> None:
        for _ in range(2):
            done.acquire()
        a.close()
        b.close()

    def _pump(self, src: socket.socket, dst: socket.socket, counter: str, done: threading.Semaphore) -> None:
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                dst.sendall(data)
                with self._lock:
                    setattr(self, counter, getattr(self, counter) + len(data))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            done.release()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5)
