"""Request bodies spooled where the filesystem driver adopts them (registry.spool): the waitress
parser, the upload paths that adopt instead of copying, and the same through a real server."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from registry_filesystem import TEMP_DIR, FilesystemDriver
from waitress.adjustments import Adjustments

from registry import streaming
from registry.app import create_app
from registry.digests import Digest, digest_of
from registry.plugins import create_plugin_manager
from registry.serve import Server
from registry.spool import SpoolFile, open_spool, spooling_parser
from registry.storage import paths
from registry.storage import uploads as uploads_module
from registry.storage.checked import checked
from registry.storage.store import Store
from registry.storage.uploads import DigestMismatchError, Uploads
from tests.faulty import FaultyDriver

MiB = 1 << 20

pytestmark = pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="O_TMPFILE is Linux-only")


def _digest(data: bytes) -> Digest:
    return digest_of(data)


def _spooled(directory: str, data: bytes) -> SpoolFile:
    spool = open_spool(directory)
    assert isinstance(spool, SpoolFile)
    spool.write(data)
    spool.flush()
    spool.seek(0)
    return spool


def _parse(directory: str, raw: bytes):
    parser = spooling_parser(directory)(Adjustments(inbuf_overflow=512 * 1024))
    view = memoryview(raw)
    while view and not parser.completed:
        view = view[parser.received(bytes(view[: 256 * 1024])) :]
    assert parser.completed and parser.error is None
    return parser


# -- the waitress parser -----------------------------------------------------------------------------


def test_large_body_is_spooled_as_an_unnamed_file_in_the_directory(tmp_path: Path) -> None:
    body = os.urandom(MiB + 1)
    parser = _parse(str(tmp_path), b"PUT /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    stream = parser.get_body_stream()
    try:
        assert isinstance(stream, SpoolFile)
        assert os.fstat(stream.fileno()).st_dev == os.stat(tmp_path).st_dev
        assert os.fstat(stream.fileno()).st_size == len(body)
        assert stream.read() == body
        assert list(tmp_path.iterdir()) == []  # unnamed: nothing to clean up after a crash
    finally:
        parser.close()


def test_chunked_body_is_spooled_decoded(tmp_path: Path) -> None:
    body = os.urandom(MiB)
    chunks = b"".join(b"%x\r\n" % len(part) + part + b"\r\n" for part in (body[:300_000], body[300_000:]))
    raw = b"PATCH /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    parser = _parse(str(tmp_path), raw)
    stream = parser.get_body_stream()
    try:
        assert isinstance(stream, SpoolFile)
        assert stream.read() == body
        assert parser.headers["CONTENT_LENGTH"] == str(len(body))
    finally:
        parser.close()


def test_small_body_stays_in_memory(tmp_path: Path) -> None:
    parser = _parse(str(tmp_path), b"PUT /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    assert not isinstance(parser.get_body_stream(), SpoolFile)
    assert parser.get_body_stream().read() == b"hello"


# -- uploads adopting the spool ------------------------------------------------------------------


@pytest.fixture
def fs(tmp_path: Path) -> FilesystemDriver:
    driver = FilesystemDriver(str(tmp_path / "root"))
    driver.put_content("/docker/registry/v2/.keep", b"")  # makes the root and its temp directory
    return driver


@pytest.fixture
def uploads(fs: FilesystemDriver) -> Uploads:
    return Uploads(Store(checked(fs)))


def _data_file(fs: FilesystemDriver, path: str) -> os.stat_result:
    return os.stat(fs.rootdirectory + path)


def test_patch_at_offset_zero_adopts_the_spool_and_saves_a_verified_hash_state(
    fs: FilesystemDriver, uploads: Uploads
) -> None:
    body, rest = os.urandom(MiB + 7), os.urandom(1000)
    upload = uploads.start("repo")
    with _spooled(fs.spool_directory(), body) as spool:
        assert uploads.append("repo", upload, spool, len(body)) == len(body)
        # The very file waitress wrote is now the upload's data: no second write of the body.
        assert _data_file(fs, paths.upload_data("repo", upload)).st_ino == os.fstat(spool.fileno()).st_ino
    assert uploads.append("repo", upload, io.BytesIO(rest), len(rest)) == len(body) + len(rest)
    assert uploads.finish("repo", upload, _digest(body + rest), None, 0) == len(body) + len(rest)
    with open(fs.rootdirectory + paths.blob_data(_digest(body + rest)), "rb") as f:
        assert f.read() == body + rest
    assert os.listdir(Path(fs.rootdirectory) / TEMP_DIR) == []


def test_monolithic_put_adopts_the_spool_as_the_blob(fs: FilesystemDriver, uploads: Uploads) -> None:
    body = os.urandom(2 * MiB)
    upload = uploads.start("repo")
    with _spooled(fs.spool_directory(), body) as spool:
        inode = os.fstat(spool.fileno()).st_ino
        assert uploads.finish("repo", upload, _digest(body), spool, len(body)) == len(body)
    blob = _data_file(fs, paths.blob_data(_digest(body)))
    assert blob.st_ino == inode and blob.st_size == len(body)
    assert not os.path.exists(fs.rootdirectory + paths.upload_dir("repo", upload))


def test_adopted_body_with_the_wrong_digest_is_refused_and_not_stored(fs: FilesystemDriver, uploads: Uploads) -> None:
    body = os.urandom(MiB)
    upload = uploads.start("repo")
    with _spooled(fs.spool_directory(), body) as spool, pytest.raises(DigestMismatchError):
        uploads.finish("repo", upload, _digest(b"something else"), spool, len(body))
    assert not os.path.exists(fs.rootdirectory + paths.blob_data(_digest(body)))
    assert not os.path.exists(fs.rootdirectory + paths.upload_dir("repo", upload))


def test_spool_is_copied_when_the_upload_already_has_data(fs: FilesystemDriver, uploads: Uploads) -> None:
    first, body = b"first", os.urandom(MiB)
    upload = uploads.start("repo")
    uploads.append("repo", upload, io.BytesIO(first), len(first))
    with _spooled(fs.spool_directory(), body) as spool:
        assert uploads.append("repo", upload, spool, len(body)) == len(first) + len(body)
        assert _data_file(fs, paths.upload_data("repo", upload)).st_ino != os.fstat(spool.fileno()).st_ino
    assert uploads.finish("repo", upload, _digest(first + body), None, 0) == len(first) + len(body)


@pytest.mark.parametrize("damage", ["torn", "zeroed", "other offset"])
def test_damaged_hash_state_is_not_trusted(
    fs: FilesystemDriver, uploads: Uploads, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """States are written without fsync: after a machine crash one may hold anything. The checksum
    and the byte count inside it decide; the data is re-hashed instead."""
    monkeypatch.setattr(uploads_module, "STATE_FILE_MIN", 0)  # state files for small uploads too
    first, second = os.urandom(100_000), os.urandom(5000)
    upload = uploads.start("repo")
    uploads.append("repo", upload, io.BytesIO(first), len(first))
    state_path = fs.rootdirectory + paths.upload_hashstate("repo", upload, "sha256", len(first))
    state = Path(state_path).read_bytes()
    if damage == "torn":
        Path(state_path).write_bytes(state[: len(state) // 2])
    elif damage == "zeroed":
        Path(state_path).write_bytes(bytes(len(state)))
    else:  # a valid state, but of fewer bytes than its name says
        other = uploads.start("other")
        uploads.append("other", other, io.BytesIO(first[:-1]), len(first) - 1)
        Path(state_path).write_bytes(
            Path(fs.rootdirectory + paths.upload_hashstate("other", other, "sha256", len(first) - 1)).read_bytes()
        )
    restarted = Uploads(Store(checked(fs)))  # another process: only the damaged file to go by
    restarted.append("repo", upload, io.BytesIO(second), len(second))
    assert restarted.finish("repo", upload, _digest(first + second), None, 0) == len(first) + len(second)


def test_small_uploads_keep_their_state_in_memory(fs: FilesystemDriver, uploads: Uploads) -> None:
    """Below STATE_FILE_MIN no state file is made: the same process continues from memory, another
    one re-hashes the (small) data; both get the right digest."""
    first, second, third = os.urandom(300_000), os.urandom(7), os.urandom(1000)
    upload = uploads.start("repo")
    uploads.append("repo", upload, io.BytesIO(first), len(first))
    upload_dir = Path(fs.rootdirectory + paths.upload_dir("repo", upload))
    assert sorted(p.name for p in upload_dir.iterdir()) == ["data", "startedat"]
    reads: list[str] = []
    real_reader = fs.reader
    fs.reader = lambda path, offset=0: (reads.append(path), real_reader(path, offset))[1]  # type: ignore[method-assign]
    uploads.append("repo", upload, io.BytesIO(second), len(second))
    assert reads == []  # continued from the remembered state, not from the data
    restarted = Uploads(Store(checked(fs)))
    restarted.append("repo", upload, io.BytesIO(third), len(third))
    assert len(reads) == 1  # no state anywhere for it: the data so far was read once
    assert restarted.finish("repo", upload, _digest(first + second + third), None, 0) == 301_007


def test_large_uploads_save_state_files(fs: FilesystemDriver, uploads: Uploads, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads_module, "STATE_FILE_MIN", 1000)
    upload = uploads.start("repo")
    uploads.append("repo", upload, io.BytesIO(b"x" * 999), 999)
    uploads.append("repo", upload, io.BytesIO(b"y" * 2), 2)
    uploads.append("repo", upload, io.BytesIO(b"z" * 3), 3)
    upload_dir = Path(fs.rootdirectory + paths.upload_dir("repo", upload))
    assert sorted(p.name for p in upload_dir.iterdir()) == ["data", "pyhashstate-sha256-1004", "startedat"]


# -- through a real server ------------------------------------------------------------------------


class _Recording(FilesystemDriver):
    """The filesystem driver, counting what its writers adopt (to prove the server path adopts)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.adopted: list[str] = []

    def writer(self, path: str, append: bool = False):
        writer = super().writer(path, append)
        adopt = writer.adopt

        def recording(file) -> bool:
            done = adopt(file)
            if done:
                self.adopted.append(path)
            return done

        writer.adopt = recording  # type: ignore[method-assign]
        return writer


@contextlib.contextmanager
def _serving(tmp_path: Path, driver) -> Iterator[http.client.HTTPConnection]:
    """A real server (waitress, the spooling parser) over ``driver``; yields a connection to it."""
    config = {"version": "0.1", "storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}},
              "http": {"addr": "127.0.0.1:0"}}
    # Upload bodies are streamed (registry.streaming, also in chunked transfer coding): with no
    # request streamed, their large bodies take the spooling parser, whose adoption is tested here.
    with mock.patch.object(streaming, "_METHODS", frozenset()):
        server = Server(create_app(config, create_plugin_manager(), driver=driver), config)
        port = int(server.addresses[0].rsplit(":", 1)[1])
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            yield http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        finally:
            server.stop()
            server.stop()
            thread.join(10)


def _send(conn: http.client.HTTPConnection, method: str, url: str, body: bytes | None,
          headers: dict[str, str] | None = None) -> None:
    """A request whose large body goes in chunked transfer coding, which waitress spools decoded
    (with streaming off, see :func:`_serving`)."""
    if body is not None and len(body) > 512 * 1024:
        conn.request(method, url, body=iter([body[:MiB], body[MiB:]]), headers=headers or {},
                     encode_chunked=True)
    else:
        conn.request(method, url, body=body, headers=headers or {})


def test_server_adopts_layer_bodies(tmp_path: Path) -> None:
    driver = _Recording(str(tmp_path / "root"))
    with _serving(tmp_path, driver) as conn:

        def call(method: str, url: str, body: bytes | None = None, **headers: str) -> http.client.HTTPResponse:
            _send(conn, method, url, body, headers)
            resp = conn.getresponse()
            resp.read()
            return resp

        patched, put, small = os.urandom(3 * MiB), os.urandom(2 * MiB + 1), os.urandom(1000)
        # POST, PATCH (the whole layer), PUT: docker, containerd, skopeo, podman.
        loc = call("POST", "/v2/a/blobs/uploads/").getheader("Location")
        loc = call("PATCH", loc, patched, **{"Content-Type": "application/octet-stream"}).getheader("Location")
        assert call("PUT", f"{loc}?digest={_digest(patched)}").status == 201
        # POST, then PUT with the body: oras, and the spec's monolithic upload.
        loc = call("POST", "/v2/a/blobs/uploads/").getheader("Location")
        assert call("PUT", f"{loc}?digest={_digest(put)}", put).status == 201
        # A body under inbuf_overflow is never spooled: copied as before.
        loc = call("POST", "/v2/a/blobs/uploads/").getheader("Location")
        assert call("PUT", f"{loc}?digest={_digest(small)}", small).status == 201
        assert len(driver.adopted) == 2
        for data in (patched, put, small):
            conn.request("GET", f"/v2/a/blobs/{_digest(data)}")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == data
        assert os.listdir(tmp_path / "root" / TEMP_DIR) == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_server_answers_a_failed_adoption_with_503_and_stores_nothing_wrong(tmp_path: Path, when: str) -> None:
    """A storage fault in the adoption itself (the faulty middleware: a real file system cannot fail on
    demand): the client gets 503 with the error body, no blob appears, and a new push succeeds."""
    driver = FaultyDriver(FilesystemDriver(str(tmp_path / "root")),
                          [{"op": "adopt", "when": when, "times": 1, "error": "unavailable"}])
    with _serving(tmp_path, driver) as conn:

        def call(method: str, url: str, body: bytes | None = None) -> tuple[http.client.HTTPResponse, bytes]:
            _send(conn, method, url, body)
            resp = conn.getresponse()
            return resp, resp.read()

        layer = os.urandom(2 * MiB)
        loc = call("POST", "/v2/a/blobs/uploads/")[0].getheader("Location")
        resp, body = call("PATCH", loc, layer)
        assert resp.status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
        assert driver.injected == 1
        assert call("HEAD", f"/v2/a/blobs/{_digest(layer)}")[0].status == 404
        loc = call("POST", "/v2/a/blobs/uploads/")[0].getheader("Location")
        loc = call("PATCH", loc, layer)[0].getheader("Location")
        assert call("PUT", f"{loc}?digest={_digest(layer)}")[0].status == 201
        resp, body = call("GET", f"/v2/a/blobs/{_digest(layer)}")
        assert resp.status == 200 and body == layer


def test_concurrent_patches_of_one_upload_through_a_real_server_never_interleave(tmp_path: Path) -> None:
    """Eight clients PATCH spooled bodies into one upload at once (a misbehaving client, or a retry
    storm): one is adopted, the others wait for the appenders' lock and continue the adopted file.
    Every acknowledged body ends up whole, once, and the data is exactly their concatenation."""
    bodies = [os.urandom(MiB + 1000 * i) for i in range(8)]
    with _serving(tmp_path, FilesystemDriver(str(tmp_path / "root"))) as conn:
        conn.request("POST", "/v2/a/blobs/uploads/")
        resp = conn.getresponse()
        resp.read()
        location = resp.getheader("Location")
        port = conn.port
        statuses: dict[int, int] = {}

        def patch(i: int) -> None:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("PATCH", location, body=bodies[i])
            r = c.getresponse()
            r.read()
            statuses[i] = r.status
            c.close()

        threads = [threading.Thread(target=patch, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(statuses.values()) == [202] * 8
        upload_id = location.rstrip("/").rsplit("/", 1)[1]
        data = Path(tmp_path / "root" / paths.upload_data("a", upload_id).lstrip("/")).read_bytes()
        assert len(data) == sum(len(b) for b in bodies)
        by_start = {b[:64]: b for b in bodies}
        seen, offset = [], 0
        while offset < len(data):
            body = by_start[data[offset:offset + 64]]  # KeyError: a body cut or interleaved
            assert data[offset:offset + len(body)] == body
            seen.append(body)
            offset += len(body)
        assert sorted(len(b) for b in seen) == sorted(len(b) for b in bodies)
        conn.request("PUT", f"{location}?digest={_digest(data)}")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 201
