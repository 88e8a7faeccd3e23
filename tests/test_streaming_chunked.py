"""Upload bodies in chunked transfer coding streamed from the socket into storage
(registry.streaming.ChunkedBodyStream), through real servers and a real skopeo: written once
whatever the offset, never spooled, a broken connection leaving a resumable upload, malformed
framing refused with the OCI error body, the body limit, trailers, tiny chunks."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from registry_filesystem import FilesystemDriver

from registry import streaming
from registry.digests import digest_of
from tests.test_streaming_uploads import MiB, _call, _Counting, _raw, _response, _serving, _start, _until_closed
from tests.test_streaming_uploads import spools as spools  # noqa: F401 - a fixture


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (contrib/dev/install-test-deps.sh installs it under CI)")
    pytest.skip(reason)


@pytest.fixture
def chunked_streams(monkeypatch: pytest.MonkeyPatch) -> list[streaming.ChunkedBodyStream]:
    """Every chunked body the server's parser streams (rather than leaving to waitress)."""
    made: list[streaming.ChunkedBodyStream] = []

    class Recording(streaming.ChunkedBodyStream):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(streaming, "ChunkedBodyStream", Recording)
    return made


def _framed(pieces: list[bytes], trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n" + trailer + b"\r\n"


def _path(loc: str) -> str:
    return "/" + (loc.split("://", 1)[-1].split("/", 1)[-1] if "://" in loc else loc.lstrip("/"))


def _head(method: str, url: str, **headers: str) -> bytes:
    lines = [f"{method} {url} HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _upload_size(conn: http.client.HTTPConnection, loc: str, expect: int) -> int:
    """The upload's size from ``GET``'s ``Range``, polled until ``expect`` (the server takes in a
    broken body asynchronously) or 10 s."""
    deadline, size = time.monotonic() + 10, -1
    while time.monotonic() < deadline:
        resp, _ = _call(conn, "GET", loc)
        assert resp.status == 204
        size = int(str(resp.getheader("Range")).split("-")[1]) + 1
        if size == expect:
            break
        time.sleep(0.05)
    return size


def test_chunked_bodies_at_every_offset_are_written_once_and_never_spooled(
        tmp_path: Path, spools: list[str], chunked_streams: list[Any]) -> None:
    driver = _Counting(str(tmp_path / "root"))
    first = [os.urandom(32 * 1024) for _ in range(40)] + [os.urandom(3 * MiB + 7)]  # offset 0
    second = [os.urandom(MiB + 1), os.urandom(17), os.urandom(2 * MiB)]  # at offset > 0
    last = [os.urandom(700_000), os.urandom(1)]  # in the PUT, at offset > 0
    layer = b"".join(first + second + last)
    mono = [os.urandom(MiB) for _ in range(3)]
    with _serving(tmp_path, driver) as port:
        spools.clear()  # the server's probe of its spool directory at start-up
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn)
        conn.request("PATCH", loc, body=iter(first), encode_chunked=True)
        resp = conn.getresponse()
        resp.read()
        size = sum(map(len, first))
        assert resp.status == 202 and resp.getheader("Range") == f"0-{size - 1}"
        # http.client sends no Content-Range with a chunked body; the offset is the upload's.
        conn.request("PATCH", str(resp.getheader("Location")), body=iter(second), encode_chunked=True)
        resp = conn.getresponse()
        resp.read()
        size += sum(map(len, second))
        assert resp.status == 202 and resp.getheader("Range") == f"0-{size - 1}"
        conn.request("PUT", f"{resp.getheader('Location')}?digest={digest_of(layer)}", body=iter(last),
                     encode_chunked=True)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 201
        whole = b"".join(mono)
        conn.request("POST", f"/v2/a/blobs/uploads/?digest={digest_of(whole)}", body=iter(mono), encode_chunked=True)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 201
        for data in (layer, whole):
            resp, got = _call(conn, "GET", f"/v2/a/blobs/{digest_of(data)}")
            assert resp.status == 200 and got == data
    assert len(chunked_streams) == 4 and all(s.complete for s in chunked_streams)
    assert spools == [] and driver.adopted == 0
    assert driver.written == len(layer) + len(whole)  # every byte written once


def test_a_wrong_digest_in_a_chunked_put_is_never_stored(tmp_path: Path) -> None:
    first, last = os.urandom(2 * MiB), [os.urandom(MiB)]
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = str(_call(conn, "PATCH", _start(conn), first)[0].getheader("Location"))
        wrong = digest_of(b"else")
        conn.request("PUT", f"{loc}?digest={wrong}", body=iter(last), encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 400 and json.loads(resp.read())["errors"][0]["code"] == "DIGEST_INVALID"
        assert _call(conn, "HEAD", f"/v2/a/blobs/{digest_of(first + last[0])}")[0].status == 404


def test_one_byte_chunks_split_anywhere_by_the_network(tmp_path: Path) -> None:
    """20000 one-byte chunks (with extensions, upper-case hex), sent in pieces that cut lines and
    CRLFs apart, then a pipelined request on the same connection."""
    data = os.urandom(20000)
    body = b"".join(b"1;ext=\"v\"\r\n%s\r\n" % data[i:i + 1] for i in range(len(data) - 26))
    body += b"A\r\n%s\r\n00010;x\r\n%s\r\n0\r\n\r\n" % (data[-26:-16], data[-16:])
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn)
        sock = _raw(port, _head("PATCH", _path(loc)))
        pos, step = 0, 1
        while pos < len(body):
            sock.sendall(body[pos:pos + step])
            pos += step
            step = step % 97 + 13  # 1, 14, 27, ... : cuts at every kind of place
            if pos < 3000:
                time.sleep(0.0005)  # separate reads at the start, whatever the TCP stack merges
        sock.sendall(f"GET {_path(loc)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = b""
        deadline = time.monotonic() + 30
        while answer.count(b"HTTP/1.1 ") < 2 and time.monotonic() < deadline:
            answer += sock.recv(65536)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 202 "), answer[:200]
        assert answer.count(f"Range: 0-{len(data) - 1}".encode()) == 2  # the PATCH's, then the GET's
        resp, _ = _call(conn, "PUT", f"{_path(loc)}?digest={digest_of(data)}")
        assert resp.status == 201
        assert _call(conn, "GET", f"/v2/a/blobs/{digest_of(data)}")[1] == data


def test_the_decoder_fed_one_byte_at_a_time() -> None:
    """The decoder alone (no socket): every byte a separate read, the next request left over."""
    pieces = [b"abc", os.urandom(300), b"x" * 16]
    wire = _framed(pieces, b"X-Trailer: 1\r\nOther: 2\r\n") + b"GET / HTTP/1.1\r\n"
    stream = streaming.ChunkedBodyStream(5.0, 1 << 30)
    consumed = 0
    for i in range(len(wire)):
        consumed += stream.feed(wire[i:i + 1])
    assert stream.complete and not stream.receiving
    assert consumed == len(wire) - len(b"GET / HTTP/1.1\r\n")
    assert stream.read() == b"".join(pieces)
    whole = streaming.ChunkedBodyStream(5.0, 1 << 30)
    assert whole.feed(wire) == consumed and whole.read(100) == b"".join(pieces)[:100]  # joined
    # Plain chunk-size lines (the one-match path) cut at every offset by reads of every size.
    plain = [os.urandom(n) for n in (1, 31, 32, 33, 200, 7)]
    wire = _framed(plain) + b"NEXT"
    for cut in range(1, 40):
        stream = streaming.ChunkedBodyStream(5.0, 1 << 30)
        consumed = sum(stream.feed(wire[i:i + cut]) for i in range(0, len(wire), cut))
        assert stream.complete and consumed == len(wire) - 4, cut
        assert stream.read() == b"".join(plain), cut


def test_an_unread_chunked_body_is_dropped_and_the_connection_goes_on(tmp_path: Path) -> None:
    """The app answers without reading (an unknown upload): the I/O thread decodes and drops the
    rest of the body, and the next request on the same connection is served."""
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("PATCH", "/v2/a/blobs/uploads/00000000-0000-4000-8000-000000000000",
                     body=iter([os.urandom(MiB) for _ in range(8)]), encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 404 and json.loads(resp.read())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        layer = os.urandom(2 * MiB)
        loc = str(_call(conn, "PATCH", _start(conn), layer)[0].getheader("Location"))
        assert _call(conn, "PUT", f"{loc}?digest={digest_of(layer)}")[0].status == 201
        # Malformed framing after the answer: the connection is closed, nothing after it parsed.
        sock = _raw(port, _head("PATCH", "/v2/a/blobs/uploads/00000000-0000-4000-8000-000000000000"),
                    b"%x\r\n" % MiB + os.urandom(MiB) + b"\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 404 ")
        sock.sendall(b"zz\r\n" + b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"HTTP/1.1 200" not in _until_closed(sock)


@pytest.mark.parametrize(("framing", "why", "kept"), [
    (b"zz\r\nab\r\n", "invalid chunk size", 0),
    (b"2\r\nabc\r\n", "longer than its chunk size", 2),  # its 2 bytes came, then no CRLF
    (b"2;=\r\nab\r\n", "invalid chunk extension", 0),
    (b"2\nab\r\n", "not ended by CRLF", 0),
    (b"1" * 5000, "too long", 0),
    (b"12345678901234567\r\n", "invalid chunk size", 0),
    (b"0\r\nno colon here\r\n\r\n", "not a field", 0),
])
def test_malformed_framing_is_a_400_and_keeps_what_came_before(tmp_path: Path, framing: bytes, why: str,
                                                              kept: int) -> None:
    good = os.urandom(MiB + 3)
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn)
        sock = _raw(port, _head("PATCH", _path(loc)), b"%x\r\n%s\r\n" % (len(good), good) + framing)
        answer = _until_closed(sock)  # answered, then closed: nothing after can be parsed
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"][0]
        assert error["code"] == "SIZE_INVALID" and why in error["message"], error
        assert b"Traceback" not in answer
        assert _upload_size(conn, loc, len(good) + kept) == len(good) + kept  # the chunks before were kept
        assert _call(conn, "HEAD", f"/v2/a/blobs/{digest_of(good)}")[0].status == 404


def test_broken_connection_mid_chunk_keeps_a_resumable_upload(tmp_path: Path) -> None:
    driver = _Counting(str(tmp_path / "root"))
    first, second = os.urandom(2 * MiB), os.urandom(6 * MiB)
    sent = 3 * MiB + 12345  # of the second chunk's data, before the connection breaks
    with _serving(tmp_path, driver) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = str(_call(conn, "PATCH", _start(conn), first)[0].getheader("Location"))
        head = _head("PATCH", _path(loc), Content_Range=f"{len(first)}-{len(first) + len(second) - 1}")
        sock = _raw(port, head, b"%x\r\n" % MiB + second[:MiB] + b"\r\n%x\r\n" % (len(second) - MiB)
                    + second[MiB:sent])
        time.sleep(0.3)  # let the server take in what was sent
        sock.close()
        size = _upload_size(conn, loc, len(first) + sent)
        assert size == len(first) + sent  # everything that arrived was kept, never more
        assert _call(conn, "HEAD", f"/v2/a/blobs/{digest_of(first + second[:sent])}")[0].status == 404
        # The client resumes from the Range it was told (chunked again), and the blob is right; the
        # hash over what was kept was saved with it, so nothing of the upload is read back.
        rest = second[sent:]
        conn.request("PATCH", loc, body=iter([rest[:1000], rest[1000:]]), encode_chunked=True,
                     headers={"Content-Range": f"{size}-{size + len(rest) - 1}"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 202
        layer = first + second
        resp, _ = _call(conn, "PUT", f"{resp.getheader('Location')}?digest={digest_of(layer)}")
        assert resp.status == 201
        assert [p for p in driver.reads if "/_uploads/" in p] == []
        resp, got = _call(conn, "GET", f"/v2/a/blobs/{digest_of(layer)}")
        assert resp.status == 200 and got == layer
    assert driver.written == len(first) + len(second)


def test_broken_chunked_monolithic_put_stores_nothing(tmp_path: Path) -> None:
    body = os.urandom(3 * MiB)
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn)
        sock = _raw(port, _head("PUT", f"{_path(loc)}?digest={digest_of(body)}"),
                    b"%x\r\n" % len(body) + body[:2 * MiB])
        time.sleep(0.3)
        sock.close()
        resp, _ = _call(conn, "GET", loc)
        assert resp.status == 204 and resp.getheader("Range") == "0-0"  # still there, empty: resumable
        assert _call(conn, "HEAD", f"/v2/a/blobs/{digest_of(body)}")[0].status == 404
        blobs = tmp_path / "root" / "docker" / "registry" / "v2" / "blobs"
        assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("data"))


def test_chunked_body_over_the_limit_closes_the_connection(tmp_path: Path) -> None:
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root")),
                  waitress={"max_request_body_size": 4 * MiB}) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn)
        big = os.urandom(8 * MiB)
        sock = _raw(port, _head("PATCH", _path(loc)))
        try:
            sock.sendall(_framed([big[i:i + MiB] for i in range(0, len(big), MiB)]))
        except OSError:
            pass  # the server closed while we were still sending: the expected outcome
        answer = b""
        try:
            answer = _until_closed(sock)
        except OSError:
            pass  # reset
        assert not answer.startswith(b"HTTP/1.1 2"), answer[:200]
        resp, _ = _call(conn, "GET", loc)
        assert resp.status == 204 and int(str(resp.getheader("Range")).split("-")[1]) < 4 * MiB  # none past it
        assert _call(conn, "HEAD", f"/v2/a/blobs/{digest_of(big)}")[0].status == 404
        # Under the limit a chunked body goes through.
        small = os.urandom(MiB)
        loc2 = _start(conn)
        conn.request("PUT", f"{loc2}?digest={digest_of(small)}", body=iter([small]), encode_chunked=True)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 201


def test_trailers_and_expect_continue_then_the_connection_goes_on(tmp_path: Path) -> None:
    layer = os.urandom(2 * MiB)
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn)
        sock = _raw(port, _head("PATCH", _path(loc), Expect="100-continue"))
        assert _response(sock).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(_framed([layer[:MiB], layer[MiB:]], b"Docker-Content-Digest: x\r\nX-Other: y\r\n"))
        assert _response(sock).startswith(b"HTTP/1.1 202 ")
        # The same connection carries the next request: the trailer was read to its end.
        sock.sendall(f"PUT {_path(loc)}?digest={digest_of(layer)} HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 0\r\n\r\n".encode())
        assert _response(sock).startswith(b"HTTP/1.1 201 ")
        sock.close()
        assert _call(conn, "GET", f"/v2/a/blobs/{digest_of(layer)}")[1] == layer


def test_chunked_bodies_of_other_routes_are_left_to_waitress(tmp_path: Path, chunked_streams: list[Any]) -> None:
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        config = b"{}"
        assert _call(conn, "PUT", f"{_start(conn)}?digest={digest_of(config)}", config)[0].status == 201
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": str(digest_of(config)), "size": 2}, "layers": []}).encode()
        conn.request("PUT", "/v2/a/manifests/t", body=iter([manifest[:10], manifest[10:]]), encode_chunked=True,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 201  # waitress dechunked it and set its Content-Length, as before
    assert chunked_streams == []


def test_waitress_internals_used_for_chunked_bodies() -> None:
    """registry.streaming relies on these (waitress>=3.0,<3.1): this fails when they change."""
    from waitress.adjustments import Adjustments
    from waitress.parser import HTTPRequestParser
    from waitress.rfc7230 import CHUNK_EXT_RE, ONLY_HEXDIG_RE

    assert ONLY_HEXDIG_RE.match(b"1aF") and not ONLY_HEXDIG_RE.match(b"1g") and not ONLY_HEXDIG_RE.match(b"")
    assert CHUNK_EXT_RE.match(b';a=b;c="d e"') and not CHUNK_EXT_RE.match(b" ;a") and not CHUNK_EXT_RE.match(b";=")
    parser = streaming.streaming_parser(HTTPRequestParser)(Adjustments())
    head = b"PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert parser.received(head + b"5\r\n") == len(head)
    assert parser.chunked and parser.completed and parser.body_rcv is None and parser.error is None
    assert "TRANSFER_ENCODING" not in parser.headers and "CONTENT_LENGTH" not in parser.headers
    assert isinstance(parser.get_body_stream(), streaming.ChunkedBodyStream)
    assert {"max_request_body_size", "channel_timeout", "inbuf_overflow"} <= set(dict(Adjustments._params))
    # A POST streams only with ?digest= (parser.query); one that just starts an upload is waitress's.
    for query, streamed in ((b"?digest=sha256:x", True), (b"", False)):
        parser = streaming.streaming_parser(HTTPRequestParser)(Adjustments())
        parser.received(b"POST /v2/a/blobs/uploads/%s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" % query)
        assert parser.query == query[1:].decode() and (parser.stream is not None) == streamed
        assert parser.completed == streamed and (parser.body_rcv is None) == streamed


# -- a real client ------------------------------------------------------------------------------


def _oci_layout(path: Path, layers: list[bytes]) -> None:
    """An OCI layout whose layers are uncompressed tars: ``--dest-compress`` makes skopeo gzip them
    on the fly, so it does not know their size and sends each in one chunked PATCH."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return f"sha256:{h}"

    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(tar), "size": len(tar)}
             for tar in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": put(config), "size": len(config)}, "layers": descs}).encode()
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "t"}}]}))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _skopeo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERS_", "REGISTRY_"))}
    env.update(HOME=str(home), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    return subprocess.run([shutil.which("skopeo") or "skopeo", "--insecure-policy", *args], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def _pulled_layers(layout: Path) -> Iterator[bytes]:
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    for desc in manifest["layers"]:
        data = (blobs / desc["digest"].split(":")[1]).read_bytes()
        assert str(digest_of(data)) == desc["digest"]
        yield data


def test_skopeo_pushes_compressed_layers_chunked_through_the_stream(
        tmp_path: Path, spools: list[str], chunked_streams: list[Any]) -> None:
    if shutil.which("skopeo") is None:
        unavailable("skopeo is not installed")
    tars = [_tar(f"f{i}", os.urandom(2 * MiB) + bytes(MiB)) for i in range(3)]
    _oci_layout(tmp_path / "src", tars)
    driver = _Counting(str(tmp_path / "root"))
    with _serving(tmp_path, driver) as port:
        spools.clear()
        copy = ("copy", "-q", "--dest-tls-verify=false", "--src-tls-verify=false")
        pushed = _skopeo(tmp_path / "home", *copy, "--dest-compress", f"oci:{tmp_path / 'src'}:t",
                         f"docker://127.0.0.1:{port}/multi/img:1")
        assert pushed.returncode == 0, pushed.stderr
        pulled = _skopeo(tmp_path / "home", *copy, f"docker://127.0.0.1:{port}/multi/img:1",
                         f"oci:{tmp_path / 'back'}:t")
        assert pulled.returncode == 0, pulled.stderr
    layers = list(_pulled_layers(tmp_path / "back"))
    assert [gzip.decompress(layer) for layer in layers] == tars  # what skopeo compressed, intact
    # Each layer came as one chunked PATCH, streamed: never spooled, each byte written once.
    assert len(chunked_streams) == len(tars) and all(s.complete for s in chunked_streams)
    assert spools == [] and driver.adopted == 0
    config_and_manifest = driver.written - sum(map(len, layers))
    assert 0 < config_and_manifest < 4096


def test_a_content_length_beside_chunked_is_ignored(tmp_path: Path) -> None:
    """Transfer-Encoding wins over Content-Length (RFC 9112 section 6.3): the whole decoded body is
    stored, not the first Content-Length bytes of it."""
    layer = os.urandom(2 * MiB)
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        loc = _start(conn)
        sock = _raw(port, _head("PATCH", _path(loc), Content_Length="5"), _framed([layer[:MiB], layer[MiB:]]))
        answer = _response(sock)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 202 ") and f"Range: 0-{len(layer) - 1}".encode() in answer
        assert _call(conn, "PUT", f"{_path(loc)}?digest={digest_of(layer)}")[0].status == 201
