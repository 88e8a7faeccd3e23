"""Quotas on upload bodies of unknown length (chunked transfer coding, streamed by
registry.streaming): a real waitress server on loopback, with a counting filesystem driver. Such a
body is read no further than the quota's room: refused with 403 DENIED once it would pass it, its
upload discarded, never more stored than the limit, the counters unchanged, the rest of a huge body
not read past a bounded drain (the connection is closed); under the limit it is stored as before,
and without quota rules it costs no storage call more than a Content-Length body."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from registry.digests import digest_of
from registry.ops.quota import read_usage
from registry.storage import paths
from registry.storage.checked import checked
from registry.storage.driver import PathNotFoundError
from registry.storage.store import Store
from registry.storage.uploads import CHUNK, UploadBudgetError, Uploads
from tests.test_streaming_uploads import MiB, _call, _Counting, _raw, _serving, _start

#: What every quota refusal's ``detail`` holds for a repository rule (docs/quotas.md).
DETAIL_KEYS = {"rule", "pattern", "scope", "repository", "limit", "usage", "requested"}


class _Calls(_Counting):
    """The counting filesystem driver, also recording every metadata call (method, path), and the
    largest upload data file seen by a writer: what a body costs the storage."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.calls.append((method, path))

    def list(self, path: str) -> list[str]:
        self._record("list", path)
        return super().list(path)

    def get_content(self, path: str) -> bytes:
        self._record("get_content", path)
        return super().get_content(path)

    def stat(self, path: str) -> Any:
        self._record("stat", path)
        return super().stat(path)

    def put_content(self, path: str, content: bytes) -> None:
        self._record("put_content", path)
        super().put_content(path, content)

    def put_scratch(self, path: str, content: bytes) -> None:
        self._record("put_scratch", path)
        super().put_scratch(path, content)

    def delete(self, path: str) -> None:
        self._record("delete", path)
        super().delete(path)

    def writer(self, path: str, append: bool = False) -> Any:
        self._record("writer", path)
        return super().writer(path, append)


def _chunked(conn: http.client.HTTPConnection, method: str, url: str, pieces: list[bytes],
             **headers: str) -> tuple[int, bytes]:
    conn.request(method, url, body=iter(pieces), encode_chunked=True, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _denied(status: int, body: bytes) -> dict[str, Any]:
    assert status == 403, (status, body[:300])
    (error,) = json.loads(body)["errors"]
    assert error["code"] == "DENIED" and "quota exceeded" in error["message"], error
    assert set(error["detail"]) == DETAIL_KEYS, error
    return error


def _uploads_left(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "root").rglob("_uploads/*/data"))


def _blob_stored(tmp_path: Path, data: bytes) -> bool:
    hexd = str(digest_of(data))[7:]
    return (tmp_path / "root/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data").exists()


def test_chunked_bodies_over_the_quota_are_stopped_at_the_limit(tmp_path: Path) -> None:
    driver = _Calls(str(tmp_path / "root"))
    limit = 5 * MiB
    rules = {"quotas": [{"pattern": "q", "limit": limit}]}
    with _serving(tmp_path, driver, extra=rules) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        counted = os.urandom(MiB)  # a blob already counted in the repository
        assert _call(conn, "POST", f"/v2/q/blobs/uploads/?digest={digest_of(counted)}", counted)[0].status == 201
        usage = read_usage(driver, "q")
        assert usage == (MiB, MiB)

        # A PATCH after 1 MiB of upload: 2 MiB of room left, 6 MiB sent in 32 KiB chunks.
        loc = _start(conn, "q")
        first = os.urandom(MiB)
        status, _ = _chunked(conn, "PATCH", loc, [first])
        assert status == 202
        written = driver.written
        over = [os.urandom(32 * 1024) for _ in range(6 * 32)]
        error = _denied(*_chunked(conn, "PATCH", loc, over))
        assert error["detail"]["usage"] == MiB and error["detail"]["limit"] == limit
        assert error["detail"]["requested"] > limit - MiB  # the upload so far and what was read
        # Stored: no more than the room (the read that would have passed it is not written).
        assert 0 < driver.written - written <= limit - MiB - len(first)
        # The upload is gone (it could never be finished), cleanly: 404, no data left.
        resp, body = _call(conn, "GET", loc)
        assert resp.status == 404 and json.loads(body)["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        assert _uploads_left(tmp_path) == []
        assert read_usage(driver, "q") == usage  # the refused request counted nothing

        # A chunked monolithic PUT (an empty upload's PUT, which stores straight at the blob path),
        # a chunked last chunk of a PUT at an offset, and a chunked POST ?digest=: all refused.
        big = os.urandom(6 * MiB)
        pieces = [big[i:i + 32 * 1024] for i in range(0, len(big), 32 * 1024)]
        loc = _start(conn, "q")
        written = driver.written
        _denied(*_chunked(conn, "PUT", f"{loc}?digest={digest_of(big)}", pieces))
        assert driver.written - written <= limit - MiB
        assert _call(conn, "GET", loc)[0].status == 404
        loc = str(_call(conn, "PATCH", _start(conn, "q"), first)[0].getheader("Location"))
        written = driver.written
        _denied(*_chunked(conn, "PUT", f"{loc}?digest={digest_of(first + big)}", pieces))
        assert driver.written - written <= limit - MiB - len(first)
        assert _call(conn, "GET", loc)[0].status == 404
        written = driver.written
        _denied(*_chunked(conn, "POST", f"/v2/q/blobs/uploads/?digest={digest_of(big)}", pieces))
        assert driver.written - written <= limit - MiB
        assert not _blob_stored(tmp_path, big) and not _blob_stored(tmp_path, first + big)
        assert _uploads_left(tmp_path) == [] and read_usage(driver, "q") == usage

        # The connection went on after each refusal (the rest was drained), and a chunked push that
        # fits the room is stored whole and counted.
        fits = os.urandom(2 * MiB - 1)
        loc = _start(conn, "q")
        status, _ = _chunked(conn, "PATCH", loc, [fits[:MiB], fits[MiB:]])
        assert status == 202
        resp, _ = _call(conn, "PUT", f"{loc}?digest={digest_of(fits)}")
        assert resp.status == 201
        assert _call(conn, "GET", f"/v2/q/blobs/{digest_of(fits)}")[1] == fits
        assert read_usage(driver, "q") == (3 * MiB - 1, 3 * MiB - 1)


def test_a_huge_chunked_body_over_the_quota_is_not_read_past_a_bounded_drain(tmp_path: Path) -> None:
    """256 MiB sent against 1 MiB of room: the 403 comes while the client still sends, and the server
    closes the connection after reading at most its buffers and the drain of the rest."""
    driver = _Calls(str(tmp_path / "root"))
    rules = {"quotas": [{"pattern": "q", "limit": MiB}]}
    piece = os.urandom(32 * 1024)
    frame = b"%x\r\n%s\r\n" % (len(piece), piece)
    total, sent = 256 * MiB, [0]
    with _serving(tmp_path, driver, extra=rules) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn, "q")
        path = "/" + loc.split("://", 1)[-1].split("/", 1)[-1] if "://" in loc else loc
        sock = _raw(port, f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())

        def send() -> None:
            with contextlib.suppress(OSError):  # the server closed: what the test expects
                while sent[0] < total:
                    sock.sendall(frame * 32)  # 1 MiB of chunks per call
                    sent[0] += 32 * len(piece)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = b""
        deadline = time.monotonic() + 30
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline:
                part = sock.recv(65536)
                if not part:
                    break
                answer += part
        sender.join(30)
        sock.close()
        assert not sender.is_alive()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403 "), answer[:300]
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        _denied(403, body[:length])
        # Bounded: what was stored (under 1 MiB), the stream's buffer, the drain, the sockets' buffers.
        assert sent[0] < 64 * MiB, sent[0]
        assert driver.written <= MiB
        assert _call(conn, "GET", loc)[0].status == 404 and _uploads_left(tmp_path) == []


def test_without_rules_a_chunked_body_costs_no_storage_call_more(tmp_path: Path) -> None:
    """No quota: the same driver calls for a chunked PATCH as for a Content-Length one (no usage
    read, no budget)."""
    driver = _Calls(str(tmp_path / "root"))
    data = os.urandom(2 * MiB)
    with _serving(tmp_path, driver) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        seen = []
        for chunked in (False, True):
            loc = _start(conn, "n")
            before = len(driver.calls)
            if chunked:
                status, _ = _chunked(conn, "PATCH", loc, [data[:MiB], data[MiB:]])
            else:
                status = _call(conn, "PATCH", loc, data)[0].status
            assert status == 202
            upload = loc.rsplit("/", 1)[1]
            seen.append([(m, p.replace(upload, "<id>")) for m, p in driver.calls[before:]])
        assert seen[0] == seen[1] and seen[0]
        assert not [c for c in driver.calls if "_usage" in c[1]]


def test_the_budget_of_a_body_of_unknown_length_on_every_driver(driver: Any) -> None:
    """The upload layer alone, on each core driver and the object-store-like one (where the final
    PUT commits in place rather than setting the data aside): a body of unknown length is stopped
    before the read that would pass its budget, at every kind of request, and nothing of it is
    committed; exactly the budget is accepted."""
    uploads = Uploads(Store(checked(driver)))
    first, body = os.urandom(CHUNK + 5), os.urandom(3 * CHUNK)
    upload_id = uploads.start("b")
    assert uploads.append("b", upload_id, io.BytesIO(first), None, budget=len(first)) == len(first)
    try:
        uploads.append("b", upload_id, io.BytesIO(body), None, budget=2 * CHUNK + 1)
    except UploadBudgetError as exc:
        assert (exc.written, exc.received, exc.budget) == (2 * CHUNK, 3 * CHUNK, 2 * CHUNK + 1)
    else:
        raise AssertionError("the body passed its budget")
    assert uploads.size("b", upload_id) == len(first) + 2 * CHUNK  # never more than the budget
    for finish_offset in (len(first), None):
        upload_id = uploads.start("b")
        if finish_offset:
            uploads.append("b", upload_id, io.BytesIO(first), len(first))
        whole = (first if finish_offset else b"") + body
        try:
            uploads.finish("b", upload_id, digest_of(whole), io.BytesIO(body), None, budget=len(body) - 1)
        except UploadBudgetError as exc:
            assert exc.written == 2 * CHUNK
        else:
            raise AssertionError("the last chunk passed its budget")
        try:
            driver.stat(paths.blob_data(digest_of(whole)))
        except PathNotFoundError:
            pass
        else:
            raise AssertionError("a body over its budget was committed")
        # Within the budget (exactly it), the same request stores the blob.
        upload_id = uploads.start("b")
        if finish_offset:
            uploads.append("b", upload_id, io.BytesIO(first), len(first))
        assert uploads.finish("b", upload_id, digest_of(whole), io.BytesIO(body), None,
                              budget=len(body)) == len(whole)


def test_skopeo_compressing_on_the_fly_over_the_quota_sees_a_clean_denied(tmp_path: Path) -> None:
    """skopeo --dest-compress sends each layer in one chunked PATCH: a 32 MiB random layer against
    2 MiB of room is cut off (most of it never read), and skopeo reports the DENIED with its
    message, not a broken connection; nothing of it is stored, and a layer that fits is pushed."""
    from tests.test_streaming_chunked import _oci_layout, _skopeo, _tar, unavailable

    if shutil.which("skopeo") is None:
        unavailable("skopeo is not installed")
    _oci_layout(tmp_path / "big", [_tar("big", os.urandom(32 * MiB))])
    _oci_layout(tmp_path / "small", [_tar("small", os.urandom(MiB))])
    driver = _Calls(str(tmp_path / "root"))
    rules = {"quotas": [{"pattern": "q/*", "limit": 2 * MiB}]}
    copy = ("copy", "-q", "--dest-tls-verify=false", "--dest-compress")
    with _serving(tmp_path, driver, extra=rules) as port:
        r = _skopeo(tmp_path / "home", *copy, f"oci:{tmp_path / 'big'}:t", f"docker://127.0.0.1:{port}/q/img:1")
        assert r.returncode != 0
        assert "denied" in r.stderr.lower() and "quota exceeded" in r.stderr, r.stderr
        assert f"{2 * MiB} bytes" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert driver.written <= 2 * MiB and _uploads_left(tmp_path) == []
        ok = _skopeo(tmp_path / "home", *copy, f"oci:{tmp_path / 'small'}:t", f"docker://127.0.0.1:{port}/q/img:2")
        assert ok.returncode == 0, ok.stderr
    assert 0 < read_usage(driver, "q/img")[0] <= 2 * MiB


def test_the_drain_of_a_refused_chunked_body() -> None:
    """The decoder alone (no socket): after a refusal and the answer, the rest is dropped, and the
    stream asks to hang up once more than DRAIN_BYTES came; a body ending within the drain does
    not, and an answer that said ``Connection: close`` is closed at the body's end, not before
    (closing with unread bytes would reset the connection under the client)."""
    from registry import streaming

    class Task:
        close_on_finish = False

    frame = b"%x\r\n%s\r\n" % (MiB, bytes(MiB))
    long = streaming.ChunkedBodyStream(5.0, 1 << 40)
    long.feed(frame)
    assert long.read(MiB) == bytes(MiB)
    long.refuse()
    task = Task()
    long.request_done(task)
    assert not task.close_on_finish and not long.hang_up
    for _ in range(streaming.DRAIN_BYTES // MiB - 1):
        long.feed(frame)
    assert not long.hang_up  # within the drain (counted on the wire, framing included)
    long.feed(frame + frame)
    assert long.hang_up and long.receiving and long._buffered == 0
    long.linger()
    assert not long.wants_data()  # lingering: the connection reads no more

    short = streaming.ChunkedBodyStream(5.0, 1 << 40)
    short.feed(frame)
    short.refuse()
    task = Task()
    task.close_on_finish = True
    short.request_done(task)
    assert not task.close_on_finish and short.close_after  # closed by the channel at the body's end
    short.feed(frame + b"0\r\n\r\n")
    assert short.complete and not short.hang_up and not short.receiving
