"""The pull-through cache (``proxy:``) against real upstreams on loopback.

Upstreams: Debian's Go registry (``docker-registry``, Distribution 2.8), this registry with token
auth (the reference token server, contrib/token-server) and with htpasswd basic auth; the cache is
``registry serve`` with a ``proxy:`` section. Pulls go through skopeo and plain HTTP. The one fake
is the corrupt upstream (a small in-process HTTP server serving wrong bytes for a digest): a real
registry cannot be made to do that.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

_CLIENTS = str(Path(__file__).resolve().parent / "clients")
if _CLIENTS not in sys.path:
    sys.path.insert(0, _CLIENTS)

from auth_servers import auth_registry, token_server  # noqa: E402
from client_harness import (  # noqa: E402
    DISTRIBUTION,
    RegistryProcess,
    _server_env,
    find_tool,
    free_port,
    require_tools,
    run,
    start_registry,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MIB = 1 << 20


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # loopback only, never through an HTTP proxy from the environment
    return s


# --------------------------------------------------------------------------------------------------
# Servers


@contextlib.contextmanager
def go_registry(workdir: Path) -> Iterator[RegistryProcess]:
    require_tools("docker-registry")
    server = start_registry(DISTRIBUTION, workdir / "root", workdir)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def cache_registry(workdir: Path, proxy_yaml: str, extra: str = "") -> Iterator[RegistryProcess]:
    """`registry serve` as a pull-through cache: `proxy_yaml` is the section's body (indented two)."""
    exe = find_tool("registry")
    if exe is None:
        pytest.fail("registry not found in the venv", pytrace=False)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(workdir / 'root'))}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + extra + "proxy:\n" + proxy_yaml
    )
    log_path = workdir / "cache.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([exe, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=_server_env(), cwd=workdir, start_new_session=True)
    server = RegistryProcess("ours", workdir / "root", port, config, log_path, proc)
    try:
        deadline, ready = time.monotonic() + 20, False
        with session() as s:
            while time.monotonic() < deadline and server.alive() and not ready:
                with contextlib.suppress(requests.RequestException):
                    ready = s.get(server.url + "/v2/", timeout=1).status_code == 200
                if not ready:
                    time.sleep(0.05)
        if not ready:
            pytest.fail(f"cache did not start:\n{server.log_tail()}", pytrace=False)
        yield server
    finally:
        server.stop()


class CountingProxy:
    """A TCP relay in front of an upstream that counts the bytes the upstream sends: how a test
    knows how often a blob was fetched."""

    def __init__(self, target_port: int, pause: float = 0.0, needle: bytes = b"\0never") -> None:
        self.target, self.pause = target_port, pause
        self.last_byte_at = 0.0
        #: How often ``needle`` was sent to the upstream (request lines, e.g. ``GET /token``).
        self.needle, self.needles_seen = needle, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.downstream_bytes = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=30)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if not count:
                    with self._lock:
                        self.needles_seen += data.count(self.needle)
                if count:
                    with self._lock:
                        self.downstream_bytes += len(data)
                        self.last_byte_at = time.monotonic()
                    if self.pause:
                        time.sleep(self.pause)  # a slow upstream: the fetch lasts long enough to overlap
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the other thread
        self.sock.close()


# --------------------------------------------------------------------------------------------------
# Pushing into an upstream (plain HTTP, as a client does)


class Upstream:
    def __init__(self, url: str, auth: dict[str, str] | None = None) -> None:
        self.url, self.auth, self.s = url, auth or {}, session()

    def blob(self, name: str, data: bytes | Path) -> str:
        if isinstance(data, Path):
            h = hashlib.sha256()
            with open(data, "rb") as f:
                for chunk in iter(lambda: f.read(MIB), b""):
                    h.update(chunk)
            d = "sha256:" + h.hexdigest()
        else:
            d = sha256(data)
        r = self.s.post(f"{self.url}/v2/{name}/blobs/uploads/", headers=self.auth, timeout=30)
        assert r.status_code == 202, r.text
        loc = urljoin(self.url, r.headers["Location"])
        body = open(data, "rb") if isinstance(data, Path) else data  # noqa: SIM115
        try:
            r = self.s.put(loc + ("&" if "?" in loc else "?") + f"digest={d}", data=body, timeout=120,
                           headers={**self.auth, "Content-Type": "application/octet-stream"})
        finally:
            if isinstance(data, Path):
                body.close()
        assert r.status_code == 201, r.text
        return d

    def image(self, name: str, tag: str, layers: list[bytes | Path]) -> tuple[str, bytes, list[str]]:
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        cd = self.blob(name, config)
        descs = []
        for layer in layers:
            size = layer.stat().st_size if isinstance(layer, Path) else len(layer)
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": self.blob(name, layer),
                          "size": size})
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": cd, "size": len(config)},
                               "layers": descs}).encode()
        r = self.s.put(f"{self.url}/v2/{name}/manifests/{tag}", data=manifest, timeout=30,
                       headers={**self.auth, "Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
        return sha256(manifest), manifest, [cd] + [x["digest"] for x in descs]


def pull_http(base: str, name: str, ref: str) -> tuple[str, dict[str, bytes]]:
    """Pull an image through plain HTTP: its manifest digest and every blob, each verified."""
    with session() as s:
        r = s.get(f"{base}/v2/{name}/manifests/{ref}", headers={"Accept": OCI_MANIFEST}, timeout=30)
        assert r.status_code == 200, r.text
        manifest = r.json()
        blobs = {}
        for desc in [manifest["config"], *manifest["layers"]]:
            b = s.get(f"{base}/v2/{name}/blobs/{desc['digest']}", timeout=60)
            assert b.status_code == 200, b.text
            assert sha256(b.content) == desc["digest"]
            blobs[desc["digest"]] = b.content
        return r.headers["Docker-Content-Digest"], blobs


def stored_blob(cache: RegistryProcess, digest: str) -> Path:
    alg, hexd = digest.split(":")
    return cache.root / "docker/registry/v2/blobs" / alg / hexd[:2] / hexd / "data"


def error_codes(r: requests.Response) -> list[str]:
    return [e["code"] for e in r.json()["errors"]]


# --------------------------------------------------------------------------------------------------
# Tests


def test_skopeo_pulls_through_and_the_cache_serves_with_the_upstream_stopped(tmp_path):
    require_tools("skopeo")
    with go_registry(tmp_path / "go") as go:
        up = Upstream(go.url)
        digest, _, blobs = up.image("library/app", "v1", [os.urandom(300_000), os.urandom(200_000)])
        counter = CountingProxy(go.port)
        try:
            with cache_registry(tmp_path / "cache", f"  remoteurl: http://127.0.0.1:{counter.port}\n") as cache:
                src = f"docker://{cache.host}/library/app:v1"
                run(["skopeo", "copy", "-q", "--preserve-digests", "--src-tls-verify=false", src, f"oci:{tmp_path / 'first'}:v1"])
                fetched = counter.downstream_bytes
                assert fetched > 500_000  # the first pull came from the upstream
                for d in blobs + [digest]:
                    assert stored_blob(cache, d).is_file(), f"{d} not cached"
                index = json.loads((tmp_path / "first" / "index.json").read_text())
                assert index["manifests"][0]["digest"] == digest

                go.stop()
                counter.close()
                with pytest.raises(requests.RequestException):
                    requests.get(go.url + "/v2/", timeout=2)
                run(["skopeo", "copy", "-q", "--preserve-digests", "--src-tls-verify=false", src, f"oci:{tmp_path / 'second'}:v1"])
                index = json.loads((tmp_path / "second" / "index.json").read_text())
                assert index["manifests"][0]["digest"] == digest
                for d in blobs:
                    alg, hexd = d.split(":")
                    assert (tmp_path / "second" / "blobs" / alg / hexd).read_bytes() == stored_blob(cache, d).read_bytes()
                # By digest too, and nothing cached answers 503 with an error body.
                assert pull_http(cache.url, "library/app", digest)[0] == digest
                r = requests.get(f"{cache.url}/v2/library/other/manifests/latest", timeout=10)
                assert r.status_code == 503 and error_codes(r) == ["UNAVAILABLE"]
        finally:
            counter.close()


def test_unknown_upstream_content_is_404_and_writes_are_refused(tmp_path):
    with go_registry(tmp_path / "go") as go, \
            cache_registry(tmp_path / "cache", f"  remoteurl: {go.url}\n") as cache:
        Upstream(go.url).image("team/app", "v1", [b"layer"])
        base = cache.url
        r = requests.get(f"{base}/v2/team/app/manifests/nope", timeout=10)
        assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
        missing = sha256(b"not there")
        for method in ("GET", "HEAD"):
            r = requests.request(method, f"{base}/v2/team/app/blobs/{missing}", timeout=10)
            assert r.status_code == 404
        assert error_codes(requests.get(f"{base}/v2/team/app/blobs/{missing}", timeout=10)) == ["BLOB_UNKNOWN"]
        # HEAD of an uncached blob asks the upstream for its size and stores nothing.
        present = sha256(b"layer")
        r = requests.head(f"{base}/v2/team/app/blobs/{present}", timeout=10)
        assert r.status_code == 200 and r.headers["Content-Length"] == "5"
        assert not stored_blob(cache, present).exists()
        # A ranged GET of an uncached blob waits for it to be stored, then serves the range.
        r = requests.get(f"{base}/v2/team/app/blobs/{present}", headers={"Range": "bytes=1-3"}, timeout=10)
        assert r.status_code == 206 and r.content == b"aye"
        assert stored_blob(cache, present).is_file()
        # Tags come from the upstream.
        r = requests.get(f"{base}/v2/team/app/tags/list", timeout=10)
        assert r.json() == {"name": "team/app", "tags": ["v1"]}

        refused = [
            ("POST", "/v2/team/app/blobs/uploads/"),
            ("PUT", "/v2/team/app/manifests/v2"),
            ("DELETE", "/v2/team/app/manifests/v1"),
            ("DELETE", f"/v2/team/app/blobs/{present}"),
            ("PATCH", "/v2/team/app/blobs/uploads/abc"),
        ]
        for method, path in refused:
            r = requests.request(method, base + path, data=b"{}", timeout=10)
            assert r.status_code == 405, (method, path, r.text)
            assert error_codes(r) == ["UNSUPPORTED"] and "pull-through cache" in r.json()["errors"][0]["message"]
        assert pull_http(base, "team/app", "v1")[1][present] == b"layer"


def test_tag_revalidated_after_ttl(tmp_path):
    with go_registry(tmp_path / "go") as go, \
            cache_registry(tmp_path / "cache", f"  remoteurl: {go.url}\n  ttl: 2s\n") as cache:
        up = Upstream(go.url)
        first, _, _ = up.image("team/app", "latest", [b"one"])
        assert pull_http(cache.url, "team/app", "latest")[0] == first
        second, _, _ = up.image("team/app", "latest", [b"two"])
        assert second != first
        # Within the ttl the cached tag serves without asking the upstream.
        assert pull_http(cache.url, "team/app", "latest")[0] == first
        deadline = time.monotonic() + 10
        seen = first
        while seen == first and time.monotonic() < deadline:
            time.sleep(0.5)
            seen = pull_http(cache.url, "team/app", "latest")[0]
        assert seen == second
        # The upstream gone, the cached tag still serves even after its ttl, and tags list the cached ones.
        go.stop()
        time.sleep(2.1)
        assert pull_http(cache.url, "team/app", "latest")[0] == second
        r = requests.get(f"{cache.url}/v2/team/app/tags/list", timeout=10)
        assert r.status_code == 200 and r.json()["tags"] == ["latest"]


@pytest.mark.slow
def test_concurrent_pulls_of_one_uncached_blob_fetch_it_once(tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(MIB))
    with go_registry(tmp_path / "go") as go:
        up = Upstream(go.url)
        d = up.blob("team/big", big)
        counter = CountingProxy(go.port, pause=0.001)
        try:
            with cache_registry(tmp_path / "cache", f"  remoteurl: http://127.0.0.1:{counter.port}\n") as cache:
                results: list[str] = []
                answered: list[float] = []
                errors: list[BaseException] = []

                def pull() -> None:
                    try:
                        with session() as s, s.get(f"{cache.url}/v2/team/big/blobs/{d}", stream=True, timeout=60) as r:
                            assert r.status_code == 200
                            answered.append(time.monotonic())
                            h = hashlib.sha256()
                            for chunk in r.iter_content(MIB):
                                h.update(chunk)
                            results.append("sha256:" + h.hexdigest())
                    except BaseException as exc:
                        errors.append(exc)

                threads = [threading.Thread(target=pull) for _ in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(120)
                assert not errors, errors
                assert results == [d, d]
                # Both were answered while the upstream was still sending: the second joined the fetch.
                assert max(answered) < counter.last_byte_at
                print(f"\ntwo concurrent pulls of a 64 MiB blob: {counter.downstream_bytes} bytes from the upstream "
                      f"over {counter.connections} connection(s)")
                # Once: 64 MiB and headers, not 128 MiB.
                assert 64 * MIB <= counter.downstream_bytes < 65 * MIB, counter.downstream_bytes
                assert stored_blob(cache, d).stat().st_size == 64 * MIB
                # The spool file goes once its last reader is done: no descriptor left to a deleted file.
                fd_dir = Path(f"/proc/{cache.proc.pid}/fd")
                if fd_dir.is_dir():
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline:
                        spools = [f for f in fd_dir.iterdir()
                                  if "(deleted)" in os.readlink(f) or "#" in os.readlink(f)]
                        if not spools:
                            break
                        time.sleep(0.1)
                    assert not spools, [os.readlink(f) for f in spools]
        finally:
            counter.close()


def test_a_blob_stored_for_one_repository_is_linked_not_fetched_again(tmp_path):
    shared = os.urandom(2 * MIB)
    with go_registry(tmp_path / "go") as go:
        up = Upstream(go.url)
        d = up.blob("team/a", shared)
        assert up.blob("team/b", shared) == d
        up.blob("team/c", b"something else")
        counter = CountingProxy(go.port)
        try:
            with cache_registry(tmp_path / "cache", f"  remoteurl: http://127.0.0.1:{counter.port}\n") as cache:
                r = requests.get(f"{cache.url}/v2/team/a/blobs/{d}", timeout=30)
                assert r.status_code == 200 and r.content == shared
                fetched = counter.downstream_bytes
                assert fetched > 2 * MIB
                r = requests.get(f"{cache.url}/v2/team/b/blobs/{d}", timeout=30)
                assert r.status_code == 200 and r.content == shared
                assert counter.downstream_bytes - fetched < 4096  # a HEAD, not the blob again
                # A repository the upstream does not give the blob to does not get it from the cache.
                r = requests.get(f"{cache.url}/v2/team/c/blobs/{d}", timeout=30)
                assert r.status_code == 404 and error_codes(r) == ["BLOB_UNKNOWN"]
        finally:
            counter.close()


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to measure RSS")
def test_streaming_a_256_mib_blob_keeps_memory_flat(tmp_path):
    big = tmp_path / "big"
    block = os.urandom(MIB)
    with open(big, "wb") as f:
        for i in range(256):
            f.write(block[:-8] + i.to_bytes(8, "big"))
    with go_registry(tmp_path / "go") as go, \
            cache_registry(tmp_path / "cache", f"  remoteurl: {go.url}\n") as cache:
        d = Upstream(go.url).blob("team/huge", big)
        big.unlink()
        with session() as s:
            s.get(f"{cache.url}/v2/", timeout=10)
            before = _rss_kib(cache.proc.pid)
            peak = before
            h = hashlib.sha256()
            with s.get(f"{cache.url}/v2/team/huge/blobs/{d}", stream=True, timeout=120) as r:
                assert r.status_code == 200 and r.headers["Content-Length"] == str(256 * MIB)
                for i, chunk in enumerate(r.iter_content(MIB)):
                    h.update(chunk)
                    if i % 16 == 0:
                        peak = max(peak, _rss_kib(cache.proc.pid))
        assert "sha256:" + h.hexdigest() == d
        growth_mib = (peak - before) / 1024
        print(f"\ncache RSS before {before / 1024:.1f} MiB, peak while streaming 256 MiB {peak / 1024:.1f} MiB "
              f"(+{growth_mib:.1f} MiB)")
        assert growth_mib < 48, f"RSS grew {growth_mib:.1f} MiB while streaming 256 MiB"
        assert stored_blob(cache, d).stat().st_size == 256 * MIB


class _CorruptUpstream(http.server.ThreadingHTTPServer):
    """A fake upstream for the one fault no real registry produces on demand: a blob whose bytes do
    not hash to the digest it is served under."""

    daemon_threads = True

    def __init__(self, good: bytes, bad: bytes) -> None:
        self.good, self.bad, self.blob_gets = good, bad, 0
        self.manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                               "digest": sha256(b"{}"), "size": 2},
                                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                                "digest": sha256(good), "size": len(good)}]}).encode()
        super().__init__(("127.0.0.1", 0), _CorruptHandler)


class _CorruptHandler(http.server.BaseHTTPRequestHandler):
    server: _CorruptUpstream

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        if self.path.endswith("/manifests/v1"):
            body, ctype = srv.manifest, OCI_MANIFEST
        elif self.path.endswith("/blobs/" + sha256(srv.good)):
            srv.blob_gets += 1
            body, ctype = srv.bad, "application/octet-stream"  # the wrong bytes, of the right length
        elif self.path.endswith("/blobs/" + sha256(srv.good[:MIB])):
            # The right bytes, cut off half-way: Content-Length promises more than comes.
            self.send_response(200)
            self.send_header("Content-Length", str(MIB))
            self.end_headers()
            self.wfile.write(srv.good[:MIB // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if ctype == OCI_MANIFEST:
            self.send_header("Docker-Content-Digest", sha256(body))
        self.end_headers()
        if ctype == OCI_MANIFEST:
            self.wfile.write(body)
            return
        # All but the last byte, a pause, then the (wrong) last byte: the client's response has
        # certainly started, and has had time to take everything the cache would give it.
        self.wfile.write(body[:-1])
        self.wfile.flush()
        time.sleep(0.3)
        self.wfile.write(body[-1:])


def _broken_pull(url: str, started: bool = False) -> int:
    """GET a blob the upstream spoils: how many bytes came before the pull failed. A failure found
    before the response started is an OCI error (5xx); one found later breaks the connection short
    of its Content-Length. Either way the client never holds a complete wrong blob."""
    got = 0
    with session() as s, s.get(url, stream=True, timeout=30) as r:
        if r.status_code != 200 and not started:
            assert r.status_code in (500, 503) and error_codes(r), r.text
            return 0
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for chunk in r.iter_content(MIB):
                got += len(chunk)
    return got


def test_corrupt_upstream_blob_is_never_stored_and_never_served_whole(tmp_path):
    good = os.urandom(3 * MIB)
    bad = bytearray(good)
    bad[-1] ^= 0xFF  # wrong only in the last byte: everything before it already went out
    fake = _CorruptUpstream(good, bytes(bad))
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    try:
        with cache_registry(tmp_path / "cache", f"  remoteurl: http://127.0.0.1:{fake.server_address[1]}\n") as cache:
            d = sha256(good)
            for _ in range(2):
                # The last byte is held back until the digest is checked, then the connection breaks
                # (waitress drops what it had not sent yet, so the client holds at most len - 1).
                assert _broken_pull(f"{cache.url}/v2/fake/app/blobs/{d}", started=True) < len(good)
                assert not stored_blob(cache, d).exists()
            assert fake.blob_gets == 2  # nothing was cached, so each pull asked again
            # An upstream that breaks off: the client's pull breaks too, nothing is stored.
            cut = sha256(good[:MIB])
            assert _broken_pull(f"{cache.url}/v2/fake/app/blobs/{cut}") < MIB
            assert not stored_blob(cache, cut).exists()
            # skopeo refuses it too.
            if find_tool("skopeo"):
                p = run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{cache.host}/fake/app:v1",
                         f"oci:{tmp_path / 'out'}:v1"], check=False, timeout=60)
                assert p.returncode != 0
            assert not stored_blob(cache, d).exists()
            assert "sent a bad copy" in cache.log_path.read_text()
    finally:
        fake.shutdown()
        fake.server_close()


TOKEN_USERS = {"alice": "alice-Upstream-1"}
TOKEN_RULES = """
rules:
  - repositories: ["{user}/**"]
    authenticated: ["*"]
  - repositories: ["public/**"]
    anonymous: [pull]
    users: {alice: [push]}
"""
BASIC_USERS = {"bob": "bob-Upstream-2"}


def _token_for(port: int, user: str, password: str, scope: str) -> str:
    r = session().get(f"http://127.0.0.1:{port}/token", params={"service": "test-registry", "scope": scope},
                      auth=(user, password), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["token"]


@contextlib.contextmanager
def _counted_realm(auth_yaml: str, port: int) -> Iterator[tuple[str, CountingProxy]]:
    """The registry's token `auth:` lines with the realm behind a CountingProxy that counts token requests."""
    counter = CountingProxy(port, needle=b"GET /token")
    try:
        old = f"127.0.0.1:{port}/token"
        assert old in auth_yaml
        yield auth_yaml.replace(old, f"127.0.0.1:{counter.port}/token"), counter
    finally:
        counter.close()


def test_prefix_routing_to_three_upstreams_with_token_and_basic_auth(tmp_path):
    import bcrypt

    require_tools("docker-registry")
    basic_dir = tmp_path / "basic"
    basic_dir.mkdir()
    (basic_dir / "htpasswd").write_text("".join(
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(5)).decode()}\n" for u, p in BASIC_USERS.items()))
    with go_registry(tmp_path / "go") as go, \
            token_server(tmp_path / "token", TOKEN_USERS, TOKEN_RULES) as (token_auth, token_port), \
            _counted_realm(token_auth, token_port) as (token_auth, token_counter), \
            auth_registry(tmp_path / "tokreg", token_auth) as tokreg, \
            auth_registry(basic_dir, f"  htpasswd:\n    realm: up\n    path: {basic_dir / 'htpasswd'}\n") as basic:
        go_digest, _, _ = Upstream(go.url).image("library/alpine", "3", [b"go-layer"])
        token = _token_for(token_counter.port, "alice", TOKEN_USERS["alice"], "repository:alice/app:pull,push")
        tok_digest, _, _ = Upstream(tokreg.url, {"Authorization": f"Bearer {token}"}).image(
            "alice/app", "1.0", [b"token-layer"])
        public_token = _token_for(token_counter.port, "alice", TOKEN_USERS["alice"], "repository:public/tool:pull,push")
        public_digest, _, _ = Upstream(tokreg.url, {"Authorization": f"Bearer {public_token}"}).image(
            "public/tool", "1", [b"public-layer"])
        basic_digest, _, _ = Upstream(basic.url, {"Authorization": requests.auth._basic_auth_str(
            "bob", BASIC_USERS["bob"])}).image("bob/tool", "2", [b"basic-layer"])
        proxy = (
            "  remotes:\n"
            f"    - prefix: go/\n      remoteurl: {go.url}\n"
            f"    - prefix: tok/\n      remoteurl: {tokreg.url}\n"
            f"      username: alice\n      password: {TOKEN_USERS['alice']}\n      ttl: 1s\n"
            f"    - prefix: anon/\n      remoteurl: {tokreg.url}\n"
            f"    - prefix: basic/\n      remoteurl: {basic.url}\n"
            f"      username: bob\n      password: {BASIC_USERS['bob']}\n"
        )
        with cache_registry(tmp_path / "cache", proxy) as cache:
            assert pull_http(cache.url, "go/library/alpine", "3")[0] == go_digest
            _, blobs = pull_http(cache.url, "tok/alice/app", "1.0")
            assert b"token-layer" in blobs.values()
            # Past the 1s ttl: the tag is checked again (HEAD) with the cached token or a new one.
            time.sleep(1.2)
            assert pull_http(cache.url, "tok/alice/app", "1.0")[0] == tok_digest
            # One token for the repository, kept for its 300 s: 2 manifest requests and 2 blobs later,
            # the token server was asked once (plus the test's own two push tokens above).
            assert token_counter.needles_seen == 3, token_counter.needles_seen
            # An anonymous token (no credentials configured) for a public repository; a private one
            # is refused upstream, which the cache answers with DENIED.
            assert pull_http(cache.url, "anon/public/tool", "1")[0] == public_digest
            r = requests.get(f"{cache.url}/v2/anon/alice/app/manifests/1.0", timeout=10)
            assert r.status_code == 403 and error_codes(r) == ["DENIED"], r.text
            assert pull_http(cache.url, "basic/bob/tool", "2")[0] == basic_digest
            # Each prefix reaches only its own upstream.
            r = requests.get(f"{cache.url}/v2/go/alice/app/manifests/1.0", timeout=10)
            assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
            # A name no prefix matches is a local repository: it takes pushes.
            local = Upstream(cache.url)
            local_digest, _, _ = local.image("mine/app", "v1", [b"local-layer"])
            assert pull_http(cache.url, "mine/app", "v1")[0] == local_digest
            r = requests.post(f"{cache.url}/v2/go/library/alpine/blobs/uploads/", timeout=10)
            assert r.status_code == 405
            # The catalog lists what is stored locally (cached and pushed), as Distribution's does.
            cat = requests.get(f"{cache.url}/v2/_catalog", timeout=10).json()["repositories"]
            assert {"go/library/alpine", "tok/alice/app", "basic/bob/tool", "mine/app"} <= set(cat)
            log = cache.log_path.read_text()
        assert TOKEN_USERS["alice"] not in log and BASIC_USERS["bob"] not in log, "a password reached the log"
        assert TOKEN_USERS["alice"] not in tokreg.log_path.read_text()


@pytest.fixture(scope="module")
def go_upstream(tmp_path_factory):
    with go_registry(tmp_path_factory.mktemp("go-upstream")) as go:
        yield go


def test_pull_through_on_every_storage_driver(driver, go_upstream):
    """The cache stores through the driver API only: the same pulls over the in-memory, the
    object-store-like and the filesystem driver (the ``driver`` fixture of tests/conftest.py)."""
    import falcon.testing

    from registry.app import create_app
    from registry.plugins import create_plugin_manager

    layer = os.urandom(2 * MIB + 17)
    digest, manifest, blobs = Upstream(go_upstream.url).image(f"drivers/{driver.name}", "v1", [layer])
    config = {"version": 0.1, "storage": {driver.name: {}}, "proxy": {"remoteurl": go_upstream.url}}
    app = create_app(config, create_plugin_manager(), driver=driver)
    with app:
        c = falcon.testing.TestClient(app)
        name = f"drivers/{driver.name}"
        r = c.simulate_get(f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == manifest and r.headers["Docker-Content-Digest"] == digest
        for d in blobs:
            r = c.simulate_get(f"/v2/{name}/blobs/{d}")
            assert r.status_code == 200 and sha256(r.content) == d
        r = c.simulate_get(f"/v2/{name}/blobs/{blobs[-1]}", headers={"Range": "bytes=0-9"})
        assert r.status_code == 206 and r.content == layer[:10]
        # Stored: served with the upstream unreachable (pointed elsewhere), by the same storage.
    config["proxy"] = {"remoteurl": f"http://127.0.0.1:{free_port()}"}
    with create_app(config, create_plugin_manager(), driver=driver) as app:
        c = falcon.testing.TestClient(app)
        r = c.simulate_get(f"/v2/{name}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == manifest
        r = c.simulate_get(f"/v2/{name}/blobs/{blobs[-1]}")
        assert r.status_code == 200 and r.content == layer
        r = c.simulate_get(f"/v2/{name}/manifests/v1")  # tag: the upstream down, served from the cache
        assert r.status_code == 200 and r.content == manifest
