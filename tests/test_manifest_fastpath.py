"""The manifest pull path: cached manifest bytes never outlive a delete or a tag move, and the
server sends a small response's header and body in one segment."""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
from collections.abc import Iterator

import falcon.testing
import pytest

from registry.app import create_app
from registry.digests import Digest, digest_of, parse_digest
from registry.manifests import ManifestCache
from registry.plugins import create_plugin_manager
from registry.serve import Server, _Channel
from tests.conftest import Pusher, sha256

pytest.importorskip("registry_filesystem")
from registry_filesystem.driver import FilesystemDriver  # noqa: E402

OCI = "application/vnd.oci.image.manifest.v1+json"


# -- the cache ------------------------------------------------------------------------------------


def _item(n: int, size: int = 100) -> tuple[Digest, bytes]:
    raw = bytes([n % 256]) * size
    return digest_of(raw), raw


def test_cache_returns_what_was_put() -> None:
    cache = ManifestCache()
    d, raw = _item(1)
    assert cache.get(d) is None
    cache.put(d, raw)
    assert cache.get(d) is raw
    assert len(cache) == 1 and cache.size == len(raw)


def test_cache_is_bounded_by_bytes_and_drops_the_least_recently_used() -> None:
    cache = ManifestCache(max_bytes=300, max_item=100)
    items = [_item(n) for n in range(3)]
    for d, raw in items:
        cache.put(d, raw)
    assert cache.get(items[0][0]) is not None  # 0 is now the most recently used
    d3, raw3 = _item(3)
    cache.put(d3, raw3)
    assert cache.get(items[1][0]) is None  # 1 was the least recently used
    assert all(cache.get(d) is not None for d in (items[0][0], items[2][0], d3))
    assert cache.size == 300


def test_cache_skips_large_manifests() -> None:
    cache = ManifestCache(max_bytes=1000, max_item=100)
    d, raw = _item(1, size=101)
    cache.put(d, raw)
    assert cache.get(d) is None and cache.size == 0


def test_cache_keeps_only_bytes_that_hash_to_their_digest() -> None:
    cache = ManifestCache()
    d, raw = _item(1)
    cache.put(d, raw + b" ")
    assert cache.get(d) is None
    d512 = Digest("sha512", hashlib.sha512(raw).hexdigest())
    cache.put(d512, raw)
    assert cache.get(d512) is raw


def test_cache_off() -> None:
    cache = ManifestCache(max_bytes=0)
    d, raw = _item(1)
    cache.put(d, raw)
    assert cache.get(d) is None


def test_cache_from_many_threads() -> None:
    cache = ManifestCache(max_bytes=50 * 100, max_item=100)
    items = [_item(n) for n in range(200)]

    def work(offset: int) -> None:
        for i in range(2000):
            d, raw = items[(i * 7 + offset) % len(items)]
            got = cache.get(d)
            assert got is None or got == raw
            cache.put(d, raw)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.size <= 50 * 100 and cache.size == sum(len(cache.get(d) or b"") for d, _ in items)


# -- two registries on one storage root (as two processes would be) -------------------------------


@pytest.fixture
def pair(tmp_path) -> Iterator[tuple[falcon.testing.TestClient, falcon.testing.TestClient]]:
    def make() -> falcon.testing.TestClient:
        config = {"version": 0.1, "storage": {"filesystem": {}, "delete": {"enabled": True}}}
        driver = FilesystemDriver(str(tmp_path / "root"))
        return falcon.testing.TestClient(create_app(config, create_plugin_manager(), driver=driver))

    yield make(), make()


def _get(client: falcon.testing.TestClient, ref: str, method: str = "GET") -> falcon.testing.Result:
    return client.simulate_request(method, f"/v2/fast/path/manifests/{ref}", headers={"Accept": OCI})


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_delete_by_the_other_registry_takes_effect_at_once(pair, method) -> None:
    a, b = pair
    d, raw = Pusher(b).image("fast/path", "v1")
    for _ in range(2):  # the second pull is served from a's cache
        r = _get(a, "v1", method)
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == d
        assert r.headers["Content-Length"] == str(len(raw))
    assert b.simulate_delete(f"/v2/fast/path/manifests/{d}").status_code == 202
    assert _get(a, "v1", method).status_code == 404
    assert _get(a, d, method).status_code == 404
    # Pushed again, it is back: the revision link decides, not the cache.
    r = b.simulate_put(f"/v2/fast/path/manifests/{d}", body=raw, headers={"Content-Type": OCI})
    assert r.status_code == 201
    assert _get(a, d, method).status_code == 200
    assert _get(a, "v1", method).status_code == 404  # the delete removed the tag


def test_a_tag_moved_by_the_other_registry_is_seen_at_once(pair) -> None:
    a, b = pair
    pusher = Pusher(b)
    first, raw1 = pusher.image("fast/path", "latest", layers=(b"one",))
    assert _get(a, "latest").content == raw1
    second, raw2 = pusher.image("fast/path", "latest", layers=(b"two",))
    r = _get(a, "latest")
    assert r.content == raw2 and r.headers["Docker-Content-Digest"] == second
    assert _get(a, first).content == raw1


def test_damaged_manifest_bytes_are_served_as_stored_but_not_remembered(pair, tmp_path) -> None:
    a, b = pair
    d, raw = Pusher(b).image("fast/path", "v1")
    hexdigest = parse_digest(d).hex
    data = tmp_path / "root" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"
    data.write_bytes(raw.replace(b"schemaVersion", b"schemaVersioN"))
    assert _get(a, "v1").content != raw  # what storage holds (as before the cache)
    data.write_bytes(raw)
    assert _get(a, "v1").content == raw
    assert sha256(_get(a, "v1").content) == d


# -- one segment per small response ---------------------------------------------------------------


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        time.sleep(2)
    if path == "/chunks":  # no Content-Length: waitress sends it chunked
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"first ", b"second ", b"third"]
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    if path == "/dropped":  # a body waitress must not send: the held header goes out alone
        start_response("204 No Content", [])
        return [b"never sent"]
    body = b'{"small": "manifest"}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def served(monkeypatch) -> Iterator[tuple[int, list[bytearray]]]:
    sent: list[bytearray] = []
    send = _Channel.send

    def recording_send(self, data, do_close=True):
        # Recorded before sending: the client may have the response before send() returns.
        attempt = bytearray(data)
        sent.append(attempt)
        n = send(self, data, do_close=do_close)
        del attempt[n:]
        return n

    monkeypatch.setattr(_Channel, "send", recording_send)
    server = Server(_app, {"version": "0.1", "storage": {"inmemory": None}, "http": {"addr": "127.0.0.1:0"}})
    port = int(server.addresses[0].rsplit(":", 1)[1])
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield port, sent
    finally:
        server.stop()
        server.stop()
        thread.join(10)


def test_header_and_body_go_out_in_one_send(served) -> None:
    port, sent = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(3):  # keep-alive: each response starts a fresh output buffer
        sent.clear()
        conn.request("GET", "/small")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b'{"small": "manifest"}'
        assert len(sent) == 1 and sent[0].startswith(b"HTTP/1.1 200 OK") and sent[0].endswith(b'"manifest"}')
    conn.close()


@pytest.mark.parametrize(("method", "path", "status", "body"), [
    ("HEAD", "/small", 200, b""),
    ("GET", "/empty", 204, b""),
    ("GET", "/dropped", 204, b""),
    ("GET", "/chunks", 200, b"first second third"),
])
def test_responses_without_a_plain_body_are_complete(served, method, path, status, body) -> None:
    port, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(2):
        conn.request(method, path)
        r = conn.getresponse()
        assert (r.status, r.read()) == (status, body)
    conn.request("GET", "/small")  # and the connection is still in step
    assert conn.getresponse().read() == b'{"small": "manifest"}'
    conn.close()


def test_a_slow_request_does_not_hold_up_other_connections(served) -> None:
    port, _ = served
    slow = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    slow.request("GET", "/slow")
    time.sleep(0.2)  # the slow request is being served
    fast = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.monotonic()
    fast.request("GET", "/small")
    assert fast.getresponse().read() == b'{"small": "manifest"}'
    assert time.monotonic() - started < 1.0
    assert slow.getresponse().read() == b'{"small": "manifest"}'
    slow.close()
    fast.close()
