"""Upload bodies streamed from the socket into storage (registry.streaming), through real servers:
written once whatever the offset, a broken connection leaving a resumable upload, wrong digests
never stored, the body limit, and flat memory of a real ``registry serve`` process."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from registry_filesystem import FilesystemDriver

from registry import spool as spool_module
from registry.app import create_app
from registry.digests import digest_of
from registry.plugins import create_plugin_manager
from registry.serve import Server
from tests import processes

MiB = 1 << 20


class _Counting(FilesystemDriver):
    """The filesystem driver, counting the bytes its writers write and the files they adopt: what a
    body costs the disk, seen from the storage contract."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.written = 0
        self.adopted = 0
        self.reads: list[str] = []
        self._lock = threading.Lock()

    def reader(self, path: str, offset: int = 0):
        self.reads.append(path)
        return super().reader(path, offset)

    def writer(self, path: str, append: bool = False):
        writer = super().writer(path, append)
        write, adopt = writer.write, writer.adopt

        def counting_write(data: bytes) -> int:
            n = write(data)
            with self._lock:
                self.written += n
            return n

        def counting_adopt(file: Any) -> bool:
            done = adopt(file)
            if done:
                with self._lock:
                    self.adopted += 1
            return done

        writer.write = counting_write  # type: ignore[method-assign]
        writer.adopt = counting_adopt  # type: ignore[method-assign]
        return writer


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every spool file the server's parser creates (the spooled copy streaming avoids)."""
    made: list[str] = []
    real = spool_module.open_spool

    def recording(directory: str):
        made.append(directory)
        return real(directory)

    monkeypatch.setattr(spool_module, "open_spool", recording)
    return made


@contextlib.contextmanager
def _serving(tmp_path: Path, driver: Any, *, extra: dict[str, Any] | None = None, **http: Any) -> Iterator[int]:
    """A real waitress server of the app on ``driver`` (``http`` settings and ``extra`` top-level
    sections added to the config), on a free loopback port."""
    config = {"version": "0.1", "storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}},
              "http": {"addr": "127.0.0.1:0", **http}, **(extra or {})}
    server = Server(create_app(config, create_plugin_manager(), driver=driver), config)
    port = int(server.addresses[0].rsplit(":", 1)[1])
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.stop()
        server.stop()
        thread.join(10)


def _call(conn: http.client.HTTPConnection, method: str, url: str, body: bytes | None = None,
          **headers: str) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, url, body=body, headers=headers)
    resp = conn.getresponse()
    return resp, resp.read()


def _start(conn: http.client.HTTPConnection, name: str = "a") -> str:
    resp, _ = _call(conn, "POST", f"/v2/{name}/blobs/uploads/")
    assert resp.status == 202
    return str(resp.getheader("Location"))


def _raw(port: int, head: bytes, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head + body)
    return sock


def _response(sock: socket.socket) -> bytes:
    data = b""
    deadline = time.monotonic() + 30
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    return data


def _until_closed(sock: socket.socket) -> bytes:
    data = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    sock.close()
    return data


def test_chunks_at_every_offset_are_written_once_and_never_spooled(tmp_path: Path, spools: list[str]) -> None:
    driver = _Counting(str(tmp_path / "root"))
    chunks = [os.urandom(3 * MiB + 17), os.urandom(2 * MiB), os.urandom(MiB + 5)]
    layer = b"".join(chunks)
    with _serving(tmp_path, driver) as port:
        spools.clear()  # the server's probe of its spool directory at start-up
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc, offset = _start(conn), 0
        for chunk in chunks:
            resp, _ = _call(conn, "PATCH", loc, chunk, **{"Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
            assert resp.status == 202, resp.status
            offset += len(chunk)
            assert resp.getheader("Range") == f"0-{offset - 1}"
            loc = str(resp.getheader("Location"))
        # The last chunk in the PUT itself, at an offset > 0.
        tail = os.urandom(2 * MiB + 3)
        resp, _ = _call(conn, "PUT", f"{loc}?digest={digest_of(layer + tail)}", tail,
                        **{"Content-Range": f"{offset}-{offset + len(tail) - 1}"})
        assert resp.status == 201
        # A monolithic POST ?digest= and a POST + PUT with the body.
        mono, put = os.urandom(4 * MiB), os.urandom(MiB + 1)
        assert _call(conn, "POST", f"/v2/a/blobs/uploads/?digest={digest_of(mono)}", mono)[0].status == 201
        assert _call(conn, "PUT", f"{_start(conn)}?digest={digest_of(put)}", put)[0].status == 201
        for data in (layer + tail, mono, put):
            resp, got = _call(conn, "GET", f"/v2/a/blobs/{digest_of(data)}")
            assert resp.status == 200 and got == data
    assert spools == []  # no body went through a spool file...
    assert driver.adopted == 0
    # ...and every byte was written once, by the storage writers (nothing else writes blob bytes).
    assert driver.written == len(layer) + len(tail) + len(mono) + len(put)


def test_small_bodies_and_other_routes_are_not_streamed(tmp_path: Path, spools: list[str]) -> None:
    """Bodies up to inbuf_overflow stay in memory as before; large non-upload bodies are spooled."""
    driver = _Counting(str(tmp_path / "root"))
    with _serving(tmp_path, driver) as port:
        spools.clear()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        small = os.urandom(1000)
        assert _call(conn, "PUT", f"{_start(conn)}?digest={digest_of(small)}", small)[0].status == 201
        assert spools == []
        resp, body = _call(conn, "PUT", "/v2/a/manifests/latest", os.urandom(MiB),
                           **{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert resp.status >= 400 and json.loads(body)["errors"]
        assert len(spools) == 1


def test_broken_connection_mid_patch_keeps_a_resumable_upload(tmp_path: Path) -> None:
    driver = _Counting(str(tmp_path / "root"))
    first, second = os.urandom(2 * MiB), os.urandom(6 * MiB)
    sent = 3 * MiB + 12345  # of the second chunk, before the connection breaks
    with _serving(tmp_path, driver) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn)
        loc = str(_call(conn, "PATCH", loc, first)[0].getheader("Location"))
        path = loc.split("://", 1)[-1].split("/", 1)[-1] if "://" in loc else loc.lstrip("/")
        head = (f"PATCH /{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(second)}\r\n"
                f"Content-Range: {len(first)}-{len(first) + len(second) - 1}\r\n\r\n").encode()
        sock = _raw(port, head, second[:sent])
        time.sleep(0.3)  # let the server take in what was sent
        sock.close()
        # The upload stands at what was kept: some prefix of the broken chunk, never more.
        deadline, size = time.monotonic() + 10, -1
        while time.monotonic() < deadline:
            resp, _ = _call(conn, "GET", loc)
            assert resp.status == 204
            size = int(str(resp.getheader("Range")).split("-")[1]) + 1
            if size == len(first) + sent:
                break
            time.sleep(0.05)
        assert size == len(first) + sent  # everything that arrived was kept
        kept = first + second[:sent]
        # Nothing partial became a blob.
        assert _call(conn, "HEAD", f"/v2/a/blobs/{digest_of(kept)}")[0].status == 404
        # The client resumes from the Range it was told, and the blob is right; the hash over what
        # was kept was saved with it, so nothing of the upload is read back.
        rest = second[sent:]
        resp, _ = _call(conn, "PATCH", loc, rest, **{"Content-Range": f"{size}-{size + len(rest) - 1}"})
        assert resp.status == 202
        layer = first + second
        resp, _ = _call(conn, "PUT", f"{resp.getheader('Location')}?digest={digest_of(layer)}")
        assert resp.status == 201
        assert [p for p in driver.reads if "/_uploads/" in p] == []
        resp, got = _call(conn, "GET", f"/v2/a/blobs/{digest_of(layer)}")
        assert resp.status == 200 and got == layer


def test_broken_monolithic_put_stores_nothing(tmp_path: Path) -> None:
    body = os.urandom(4 * MiB)
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn)
        path = loc.split("://", 1)[-1].split("/", 1)[-1] if "://" in loc else loc.lstrip("/")
        head = f"PUT /{path}?digest={digest_of(body)} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        sock = _raw(port, head.encode(), body[: 3 * MiB])
        time.sleep(0.3)
        sock.close()
        time.sleep(0.3)
        assert _call(conn, "HEAD", f"/v2/a/blobs/{digest_of(body)}")[0].status == 404
        blobs = tmp_path / "root" / "docker" / "registry" / "v2" / "blobs"
        assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("data"))


def test_wrong_digest_is_never_stored(tmp_path: Path) -> None:
    first, last = os.urandom(2 * MiB), os.urandom(3 * MiB)
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        wrong = digest_of(b"something else")
        loc = str(_call(conn, "PATCH", _start(conn), first)[0].getheader("Location"))
        resp, body = _call(conn, "PUT", f"{loc}?digest={wrong}", last,
                           **{"Content-Range": f"{len(first)}-{len(first) + len(last) - 1}"})
        assert resp.status == 400 and json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"
        resp, body = _call(conn, "POST", f"/v2/a/blobs/uploads/?digest={wrong}", last)
        assert resp.status == 400 and json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"
        for d in (wrong, digest_of(first + last), digest_of(last)):
            assert _call(conn, "HEAD", f"/v2/a/blobs/{d}")[0].status == 404


def test_error_before_the_body_is_read_keeps_the_connection_usable(tmp_path: Path) -> None:
    """The app answers without reading (an unknown upload): the rest of the body is read and
    dropped, and the next request on the same connection is served."""
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        resp, body = _call(conn, "PATCH", "/v2/a/blobs/uploads/00000000-0000-4000-8000-000000000000",
                           os.urandom(8 * MiB))
        assert resp.status == 404 and json.loads(body)["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        layer = os.urandom(2 * MiB)
        loc = str(_call(conn, "PATCH", _start(conn), layer)[0].getheader("Location"))
        assert _call(conn, "PUT", f"{loc}?digest={digest_of(layer)}")[0].status == 201


def test_expect_100_continue(tmp_path: Path) -> None:
    layer = os.urandom(2 * MiB)
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn)
        path = loc.split("://", 1)[-1].split("/", 1)[-1] if "://" in loc else loc.lstrip("/")
        head = (f"PATCH /{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(layer)}\r\n"
                "Expect: 100-continue\r\n\r\n").encode()
        sock = _raw(port, head)
        assert _response(sock).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(layer)
        assert _response(sock).startswith(b"HTTP/1.1 202 ")
        sock.close()
        assert _call(conn, "GET", loc)[0].getheader("Range") == f"0-{len(layer) - 1}"


def test_body_over_the_limit_is_refused_with_413(tmp_path: Path) -> None:
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root")),
                  waitress={"max_request_body_size": 4 * MiB}) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn)
        path = loc.split("://", 1)[-1].split("/", 1)[-1] if "://" in loc else loc.lstrip("/")
        sock = _raw(port, f"PATCH /{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {8 * MiB}\r\n\r\n".encode())
        answer = _until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"][0]["code"] == "SIZE_INVALID"
        # Under the limit the same upload takes a streamed body.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        layer = os.urandom(3 * MiB)
        assert _call(conn, "GET", loc)[0].getheader("Range") == "0-0"
        loc = str(_call(conn, "PATCH", loc, layer)[0].getheader("Location"))
        assert _call(conn, "PUT", f"{loc}?digest={digest_of(layer)}")[0].status == 201


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_memory_stays_flat_for_a_256_mib_patch(tmp_path: Path) -> None:
    """A real ``registry serve`` process takes a 256 MiB PATCH at offset > 0; its RSS, sampled from
    /proc while the body streams, grows by far less than the body."""
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'root'}\n  maintenance:\n    uploadpurging:\n      enabled: false\n"
        "http:\n  addr: 127.0.0.1:0\n"
    )
    registry = Path(sys.executable).parent / "registry"
    proc = subprocess.Popen([str(registry), "serve", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        port = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not port:
            line = proc.stdout.readline() if proc.stdout else ""
            if "listening on" in line:
                port = int(line.split("listening on", 1)[1].split()[0].rsplit(":", 1)[1].rstrip(",)"))
            elif not line and proc.poll() is not None:
                break
        assert port, "the server did not start"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        first = os.urandom(MiB)
        loc = str(_call(conn, "PATCH", _start(conn), first)[0].getheader("Location"))
        baseline = _rss_kib(proc.pid)
        size, piece = 256 * MiB, os.urandom(MiB)
        hasher = hashlib.sha256(first)
        peak = baseline
        conn.putrequest("PATCH", loc)
        conn.putheader("Content-Length", str(size))
        conn.putheader("Content-Range", f"{len(first)}-{len(first) + size - 1}")
        conn.endheaders()
        for i in range(size // MiB):
            conn.send(piece)
            hasher.update(piece)
            if i % 8 == 0:
                peak = max(peak, _rss_kib(proc.pid))
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 202
        peak = max(peak, _rss_kib(proc.pid))
        assert peak - baseline < 40 * 1024, (baseline, peak)  # KiB: bounded buffers, not the body
        digest = f"sha256:{hasher.hexdigest()}"
        assert _call(conn, "PUT", f"{resp.getheader('Location')}?digest={digest}")[0].status == 201
    finally:
        processes.stop(proc)
