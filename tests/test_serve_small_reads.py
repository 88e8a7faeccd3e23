"""Small reads on waitress's I/O thread (registry/serve.py ``_SmallReads``): which configurations and
requests qualify, that pipelined requests are answered in order and complete, that HEAD has no
body and errors keep the OCI format, that events and request reports still fire, and that storage
which waits sends everything back to the worker threads instead of stalling other connections.

A real server on a loopback port, with the registry's app on the filesystem driver; the slow
storage is ``tests/faulty.py``'s latency (a real disk cannot be made slow on demand). Also the
other per-request savings: one Date header per response, and the filesystem driver's reads that
stop at a short read.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import falcon.testing
import pytest

import tests.faulty
from registry import hookimpl
from registry.app import create_app
from registry.plugins import create_plugin_manager
from registry.serve import INLINE_RUN, Server
from tests.conftest import Pusher
from tests.objstore import ObjectStoreDriver

pytest.importorskip("registry_filesystem")
from registry_filesystem.driver import _READ_SIZE as READ_SIZE  # noqa: E402
from registry_filesystem.driver import FilesystemDriver  # noqa: E402

OCI = "application/vnd.oci.image.manifest.v1+json"


class Recorder:
    """Events, request reports and the thread each ran on."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.finished: list[tuple[str, int, str]] = []

    @hookimpl
    def registry_event(self, event: Any) -> None:
        self.events.append((event["action"], threading.current_thread().name))

    @hookimpl
    def registry_request_finished(self, method: str, route: str, status: int, duration: float,
                                  bytes_in: int, bytes_out: int) -> None:
        self.finished.append((method, status, threading.current_thread().name))


def _config(extra: dict | None = None) -> dict:
    return {"version": 0.1, "storage": {"filesystem": {}, "delete": {"enabled": True}},
            "http": {"addr": "127.0.0.1:0"}, "log": {"accesslog": {"disabled": True}}, **(extra or {})}


class Served:
    def __init__(self, app: Any, config: dict) -> None:
        self.app = app
        self.server = Server(app, config)
        self.port = int(self.server.addresses[0].rsplit(":", 1)[1])
        self.thread = threading.Thread(target=self.server.run, name="io-loop", daemon=True)
        self.thread.start()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def stop(self) -> None:
        self.server.stop()
        self.server.stop()
        self.thread.join(10)


@pytest.fixture
def serve(tmp_path) -> Iterator[Any]:
    running: list[Served] = []

    def start(plugins: tuple = (), extra: dict | None = None, driver: Any = None) -> tuple[Served, Pusher, Recorder]:
        recorder = Recorder()
        config = _config(extra)
        pm = create_plugin_manager(plugins=[recorder, *plugins])
        root = str(tmp_path / f"root{len(running)}")
        app = create_app(config, pm, driver=driver or FilesystemDriver(root))
        pusher = Pusher(falcon.testing.TestClient(app))
        running.append(Served(app, config))
        return running[-1], pusher, recorder

    yield start
    for s in running:
        s.stop()


def _read_response(f: Any, method: str) -> tuple[int, dict[str, str], bytes]:
    status = int(f.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode().partition(":")
        headers[key.lower()] = value.strip()
    length = 0 if method == "HEAD" else int(headers.get("content-length", "0"))
    return status, headers, f.read(length)


def test_which_configurations_answer_small_reads_locally(tmp_path) -> None:
    def app(extra: dict | None = None, driver: Any = None, plugins: tuple = ()) -> Any:
        return create_app(_config(extra), create_plugin_manager(plugins=list(plugins)),
                          driver=driver or FilesystemDriver(str(tmp_path / "r")))

    assert app().small_reads_local
    assert app().is_small_read("GET", "/v2/a/b/manifests/latest")
    assert app().is_small_read("HEAD", "/v2/a/blobs/sha256:00")
    assert app().is_small_read("GET", "/v2/")
    assert not app().is_small_read("GET", "/v2/a/blobs/sha256:00")  # streams the blob
    assert not app().is_small_read("GET", "/v2/a/tags/list")
    assert not app().is_small_read("PUT", "/v2/a/manifests/latest")
    # An object store, an access controller, an authorize hook, a per-request health check: no.
    assert not app(driver=ObjectStoreDriver()).small_reads_local
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    assert not app({"auth": {"htpasswd": {"realm": "r", "path": str(htpasswd)}}}).small_reads_local

    class Authorize:
        @hookimpl
        def registry_authorize(self, request: Any, identity: Any, access: Any) -> bool:
            return True

    assert not app(plugins=(Authorize(),)).small_reads_local

    class Middleware:
        @hookimpl
        def registry_wsgi_middleware(self, app: Any) -> Any:
            return lambda environ, start_response: app(environ, start_response)

    wrapped = app(plugins=(Middleware(),))
    assert wrapped.small_reads_local
    wrapped.wsgi_app()
    assert not wrapped.small_reads_local and not wrapped.is_small_read("GET", "/v2/")


def test_manifest_reads_run_on_the_io_thread_with_events_and_reports(serve) -> None:
    served, pusher, recorder = serve()
    d, raw = pusher.image("small/reads", "v1")
    recorder.events.clear()
    recorder.finished.clear()
    conn = served.connect()
    for method in ("GET", "HEAD", "GET"):
        conn.request(method, "/v2/small/reads/manifests/v1", headers={"Accept": OCI})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200 and r.getheader("Docker-Content-Digest") == d
        assert r.getheader("Content-Length") == str(len(raw))
        assert body == (b"" if method == "HEAD" else raw)
    conn.request("GET", "/v2/small/reads/tags/list")  # not a small read: a worker answers it
    assert json.loads(conn.getresponse().read()) == {"name": "small/reads", "tags": ["v1"]}
    conn.close()
    assert recorder.events == [("pull", "io-loop"), ("pull", "io-loop")]
    assert [(m, s) for m, s, _ in recorder.finished] == [("GET", 200), ("HEAD", 200), ("GET", 200), ("GET", 200)]
    assert [t for _, _, t in recorder.finished[:3]] == ["io-loop"] * 3
    assert recorder.finished[3][2] != "io-loop"


def test_errors_keep_the_oci_format_and_head_has_no_body(serve) -> None:
    served, _, recorder = serve()
    conn = served.connect()
    conn.request("GET", "/v2/small/reads/manifests/nope")
    r = conn.getresponse()
    assert r.status == 404 and json.loads(r.read())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert r.getheader("Docker-Distribution-API-Version") == "registry/2.0"
    conn.request("HEAD", "/v2/small/reads/manifests/nope")
    r = conn.getresponse()
    assert r.status == 404 and r.read() == b""
    conn.request("GET", "/v2/")  # the connection is still in step
    assert conn.getresponse().read() == b"{}"
    conn.close()
    assert [t for _, _, t in recorder.finished] == ["io-loop"] * 3


def test_pipelined_requests_are_answered_in_order(serve) -> None:
    served, pusher, recorder = serve()
    images = {tag: pusher.image("pipe/line", tag, layers=(tag.encode(),)) for tag in ("a", "b", "c")}
    recorder.finished.clear()
    # More than INLINE_RUN small reads, a request for a worker in the middle, a miss and HEADs, in
    # one write: each answered, in order, complete.
    plan: list[tuple[str, str]] = []
    for i in range(INLINE_RUN + 8):
        tag = "abc"[i % 3]
        plan.append(("HEAD" if i % 4 == 3 else "GET", f"/v2/pipe/line/manifests/{tag}"))
        if i == 5:
            plan.append(("GET", "/v2/pipe/line/tags/list"))
        if i == 9:
            plan.append(("GET", "/v2/pipe/line/manifests/missing"))
    data = b"".join(f"{m} {p} HTTP/1.1\r\nHost: x\r\nAccept: {OCI}\r\n\r\n".encode() for m, p in plan)
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(data)
        f = sock.makefile("rb")
        for method, path in plan:
            status, headers, body = _read_response(f, method)
            ref = path.rsplit("/", 1)[1]
            if ref in images:
                d, raw = images[ref]
                assert status == 200 and headers["docker-content-digest"] == d, (method, path)
                assert body == (b"" if method == "HEAD" else raw)
            elif ref == "missing":
                assert status == 404 and json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
            else:
                assert status == 200 and json.loads(body)["tags"] == ["a", "b", "c"]
    threads = [t for _, _, t in recorder.finished]
    assert len(threads) == len(plan)
    assert threads[0] == "io-loop" and any(t != "io-loop" for t in threads)


def test_storage_that_waits_sends_small_reads_back_to_the_workers(serve, tmp_path) -> None:
    slow_ms = 400
    rules = [tests.faulty.Fault(op="get_content", path_contains="/slow/", latency_ms=slow_ms, error="none")]
    driver = tests.faulty.FaultyDriver(FilesystemDriver(str(tmp_path / "slowroot")), rules)
    served, pusher, recorder = serve(driver=driver)
    assert served.app.small_reads_local  # the wrapper keeps the filesystem's LOCAL_READS
    pusher.image("fast/repo", "v1")
    pusher.image("slow/repo", "v1")
    first = served.connect()
    first.request("GET", "/v2/slow/repo/manifests/v1")  # on the I/O thread: it waits, and pauses
    assert first.getresponse().read()
    assert served.server._small_reads.paused_until > time.monotonic()

    slow = served.connect()
    slow.request("GET", "/v2/slow/repo/manifests/v1")  # now on a worker
    time.sleep(0.05)
    fast = served.connect()
    started = time.monotonic()
    fast.request("GET", "/v2/fast/repo/manifests/v1")
    r = fast.getresponse()
    assert r.status == 200 and r.read()
    assert time.monotonic() - started < slow_ms / 1000 / 2  # not behind the slow read
    assert slow.getresponse().status == 200
    for c in (first, slow, fast):
        c.close()
    threads = [t for _, _, t in recorder.finished[-3:]]
    assert threads[0] == "io-loop" and "io-loop" not in threads[1:]


def _dated_app(environ: dict, start_response: Any) -> list[bytes]:
    headers = [("Content-Length", "2")]
    if environ["PATH_INFO"] == "/dated":
        headers.append(("date", "Mon, 01 Jan 2024 00:00:00 GMT"))
    start_response("200 OK", headers)
    return [b"ok"]


def test_one_date_header_per_response_current_or_the_apps() -> None:
    served = Served(_dated_app, {"version": "0.1", "storage": {"inmemory": None}, "http": {"addr": "127.0.0.1:0"}})
    try:
        conn = served.connect()
        for path in ("/plain", "/plain", "/dated"):
            conn.request("GET", path)
            r = conn.getresponse()
            assert r.read() == b"ok"
            dates = r.headers.get_all("Date")
            assert dates is not None and len(dates) == 1
            if path == "/dated":
                assert dates == ["Mon, 01 Jan 2024 00:00:00 GMT"]
            else:
                sent = email.utils.parsedate_to_datetime(dates[0]).timestamp()
                assert abs(sent - time.time()) < 5
        conn.close()
    finally:
        served.stop()


@pytest.mark.parametrize("size", [0, 1, 71, READ_SIZE - 1, READ_SIZE, READ_SIZE + 1, 3 * READ_SIZE])
def test_get_content_reads_whole_files_of_any_size(tmp_path, size) -> None:
    driver = FilesystemDriver(str(tmp_path))
    data = bytes(i % 251 for i in range(size))
    driver.put_content("/a/file", data)
    assert driver.get_content("/a/file") == data


def test_a_client_that_does_not_read_a_large_manifest_stalls_only_itself(serve) -> None:
    served, pusher, recorder = serve()
    big_d, big = pusher.image("big/one", "v1", extra={"annotations": {"filler": "x" * (3 << 20)}})
    small_d, _ = pusher.image("small/one", "v1")
    recorder.finished.clear()
    # Pipelined GETs of a 3 MiB manifest and a client that reads none of it: the responses wait in
    # the connection's buffer (the next request is not even read until it drains) ...
    request = f"GET /v2/big/one/manifests/v1 HTTP/1.1\r\nHost: x\r\nAccept: {OCI}\r\n\r\n".encode()
    stalled = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    stalled.sendall(request * 3)
    time.sleep(0.3)
    # ... while another connection is answered at once, many times.
    conn = served.connect()
    started = time.monotonic()
    for _ in range(20):
        conn.request("GET", "/v2/small/one/manifests/v1", headers={"Accept": OCI})
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Docker-Content-Digest") == small_d
        r.read()
    assert time.monotonic() - started < 2.0
    conn.close()
    # Then the slow reader gets its three responses, whole and in order.
    f = stalled.makefile("rb")
    for _ in range(3):
        status, headers, body = _read_response(f, "GET")
        assert status == 200 and headers["docker-content-digest"] == big_d and body == big
    stalled.close()
