"""Plain HTTP (requests) smoke: the version check and an error body, before any client runs."""

import socket
import ssl
import time

import pytest
from client_harness import error_codes, expect, sha256_digest

pytestmark = pytest.mark.clients


def test_version_check_header(registry_http):
    r = expect(registry_http.request("GET", "/v2/"), 200)
    # Header names are case-insensitive; Distribution spells it Docker-Distribution-Api-Version.
    assert r.headers.get("Docker-Distribution-API-Version") == "registry/2.0"


def test_unknown_manifest_is_404_with_error_code(registry_http):
    r = registry_http.get_manifest("clients/http-smoke", "no-such-tag")
    expect(r, 404)
    assert "MANIFEST_UNKNOWN" in error_codes(r) or "NAME_UNKNOWN" in error_codes(r), r.text


def test_blob_roundtrip_monolithic_and_chunked(registry_http):
    repo = "clients/http-smoke"
    mono = b"monolithic blob\n" * 1000
    chunked = bytes(range(256)) * 700  # 179200 bytes in 3 chunks of 64 KiB and a tail
    assert registry_http.upload_monolithic(repo, mono) == sha256_digest(mono)
    assert registry_http.upload_chunked(repo, chunked, 64 * 1024) == sha256_digest(chunked)
    for data in (mono, chunked):
        r = expect(registry_http.request("HEAD", f"/v2/{repo}/blobs/{sha256_digest(data)}"), 200)
        assert int(r.headers["Content-Length"]) == len(data)
        assert r.headers["Docker-Content-Digest"] == sha256_digest(data)
        assert registry_http.get_blob(repo, sha256_digest(data)) == data


def test_tls_client_hello_is_refused_at_once(registry_server):
    """A TLS handshake on the plain-HTTP port must fail fast, not hang.

    containers/image (skopeo, podman, buildah) with --tls-verify=false pings https:// first and falls
    back to http:// only once that fails; a server that waits for the rest of a request costs every
    command its 10 s TLS handshake timeout. Distribution answers the ClientHello with a plain-text 400.
    """
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    with (
        socket.create_connection(("127.0.0.1", registry_server.port), timeout=5) as sock,
        pytest.raises((ssl.SSLError, ConnectionError, TimeoutError)) as excinfo,
    ):
        ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    elapsed = time.monotonic() - started
    assert not isinstance(excinfo.value, TimeoutError), f"handshake hung for {elapsed:.1f}s"
    assert elapsed < 2.0
