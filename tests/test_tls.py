"""Native TLS (`http.tls`) from `registry serve`: HTTPS with a test CA, no plain HTTP on the TLS port,
large bodies both ways, mutual TLS refused at the handshake, minimum version, bad configs refused."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests import processes
from tests.tls_ca import make_pki

EXE = Path(sys.executable).with_name("registry")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(tmp_path: Path, tls_yaml: str):
    port = free_port()
    cfg = tmp_path / f"config-{port}.yml"
    cfg.write_text(f"version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: "
                   f"{json.dumps(str(tmp_path / 'root'))}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n{tls_yaml}")
    log = tmp_path / f"registry-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(EXE), "serve", str(cfg)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "listening on" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        assert "listening on https://" in log.read_text(), log.read_text()
        yield port, log
    finally:
        processes.stop(proc)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_lines(pki, extra: str = "") -> str:
    return f"    certificate: {pki.server_cert}\n    key: {pki.server_key}\n{extra}"


def test_https_with_a_test_ca_and_no_plain_http(tmp_path, pki):
    with serve(tmp_path, tls_lines(pki)) as (port, log):
        with requests.Session() as s:
            s.trust_env = False
            r = s.get(f"https://127.0.0.1:{port}/v2/", verify=str(pki.ca), timeout=10)
            assert r.status_code == 200 and r.json() == {}
            # 24 MiB up in one request and in chunks, and back, on kept-alive connections.
            data = os.urandom(24 << 20)
            d = "sha256:" + hashlib.sha256(data).hexdigest()
            base = f"https://127.0.0.1:{port}/v2/tls/big"
            r = s.post(f"{base}/blobs/uploads/", params={"digest": d}, data=data, verify=str(pki.ca), timeout=60,
                       headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
            r = s.get(f"{base}/blobs/{d}", verify=str(pki.ca), timeout=60)
            assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == d[7:]
            r = s.post(f"{base}2/blobs/uploads/", verify=str(pki.ca), timeout=10)
            location = r.headers["Location"]
            for i in range(0, len(data), 5 << 20):
                chunk = data[i:i + (5 << 20)]
                r = s.patch(f"https://127.0.0.1:{port}{location}", data=chunk, verify=str(pki.ca), timeout=60,
                            headers={"Content-Type": "application/octet-stream",
                                     "Content-Range": f"{i}-{i + len(chunk) - 1}"})
                assert r.status_code == 202, r.text
                location = r.headers["Location"]
            r = s.put(f"https://127.0.0.1:{port}{location}", params={"digest": d}, verify=str(pki.ca), timeout=60)
            assert r.status_code == 201, r.text
        # Plain HTTP on the TLS port gets no HTTP answer: the handshake fails and it is closed.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = raw.recv(100)
            except ConnectionResetError:
                answer = b""  # closed with the request unread
        assert not answer.startswith(b"HTTP/")
        # A client that does not trust the CA refuses the server.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://127.0.0.1:{port}/v2/", verify=str(pki.other_ca), timeout=10)


def _handshake(port: int, pki, *, cert: bool, maximum: ssl.TLSVersion | None = None) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    if maximum is not None:
        ctx.maximum_version = maximum
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = tls.recv(100)
        if not answer:
            raise ConnectionError("closed without an answer")
        assert answer.startswith(b"HTTP/1.1 200"), answer


def test_mutual_tls_refused_at_the_handshake_without_a_client_certificate(tmp_path, pki):
    with serve(tmp_path, tls_lines(pki, f"    clientcas:\n      - {pki.ca}\n")) as (port, log):
        _handshake(port, pki, cert=True)
        # TLS 1.3 sends the refusal after the client's Finished: it shows on the first read at the latest.
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _handshake(port, pki, cert=False)
        # The server logs after the client has seen the refusal: give it a moment (bounded).
        deadline = time.monotonic() + 10
        while "TLS handshake with 127.0.0.1 failed" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "TLS handshake with 127.0.0.1 failed" in log.read_text()


def test_minimum_tls_version(tmp_path, pki):
    with serve(tmp_path, tls_lines(pki, "    minimumtls: tls1.3\n")) as (port, _):
        _handshake(port, pki, cert=False)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _handshake(port, pki, cert=False, maximum=ssl.TLSVersion.TLSv1_2)


@pytest.mark.parametrize("tls_yaml,message", [
    ("    certificate: /nonexistent/c.pem\n    key: /nonexistent/k.pem\n", "no such file"),
    ("    certificate: CERT\n", "both certificate and key"),
    ("    letsencrypt:\n      cachefile: /var/cache/registry-acme\n", "letsencrypt: not supported"),
    ("    certificate: CERT\n    key: KEY\n    minimumtls: tls1.0\n", "broken"),
    ("    certificate: CERT\n    key: KEY\n    ciphersuites: [TLS_RSA_WITH_RC4_128_SHA]\n", "ciphersuites"),
    ("    certificate: CERT\n    key: CA\n", "cannot use certificate"),
])
def test_bad_tls_config_refuses_to_start(tmp_path, pki, tls_yaml, message):
    """Asked for HTTPS it cannot serve as asked, `registry serve` never serves plain HTTP instead."""
    tls_yaml = tls_yaml.replace("CERT", str(pki.server_cert)).replace("KEY", str(pki.server_key))
    tls_yaml = tls_yaml.replace("CA", str(pki.ca))
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  inmemory:\nhttp:\n  addr: 127.0.0.1:0\n  tls:\n{tls_yaml}")
    proc = subprocess.run([str(EXE), "serve", str(cfg)], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    assert "http.tls" in proc.stderr and message in proc.stderr, proc.stderr
    assert "listening" not in proc.stderr + proc.stdout
    check = subprocess.run([str(EXE), "config", "check", str(cfg)], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    assert check.returncode == 1 and message in check.stdout
