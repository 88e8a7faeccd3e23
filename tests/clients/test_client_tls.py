"""podman and skopeo over native TLS (`http.tls`) with a test CA, through the reference token server:
login, push and pull verifying the registry's certificate; mutual TLS refuses a client without a
certificate at the handshake and lets one with a certificate from `clientcas` in."""

from __future__ import annotations

import shutil

import pytest
from auth_servers import auth_registry, token_server
from client_harness import requirement_marks

from tests.tls_ca import make_pki

pytestmark = [pytest.mark.clients, *requirement_marks("podman", "skopeo", "buildah", "busybox")]


PASSWORDS = {"alice": "alice-Tls-1"}
RULES = "rules:\n  - repositories: [\"{user}/**\"]\n    authenticated: [\"*\"]\n"


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    with token_server(tmp_path_factory.mktemp("tls-token"), PASSWORDS, RULES) as (auth, port):
        yield auth, port


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("tls-pki"))


@pytest.fixture(scope="module")
def cert_dirs(pki, tmp_path_factory):
    """--cert-dir contents: the CA only; and the CA with the client's certificate and key."""
    trust = tmp_path_factory.mktemp("certs-trust")
    shutil.copy(pki.ca, trust / "ca.crt")
    client = tmp_path_factory.mktemp("certs-client")
    for f in (pki.ca, pki.client_cert, pki.client_key):
        shutil.copy(f, client / f.name)
    return trust, client


def tls_yaml(pki, mutual: bool) -> str:
    text = f"  tls:\n    certificate: {pki.server_cert}\n    key: {pki.server_key}\n"
    if mutual:
        text += f"    clientcas: [{pki.ca}]\n"
    return text


@pytest.fixture
def authfile(tmp_path):
    path = tmp_path / "auth.json"
    path.write_text("{}\n")
    return str(path)


def test_podman_over_tls_through_the_token_server(tokens, pki, cert_dirs, containers_env,
                                                  fresh_store, test_images, tmp_path, authfile):
    trust, _ = cert_dirs
    auth, _ = tokens
    with auth_registry(tmp_path / "registry", auth, tls_yaml(pki, mutual=False), ca=pki.ca) as registry:
        host = registry.host
        assert "listening on https://" in registry.log_path.read_text()
        cert = ("--cert-dir", str(trust))
        containers_env.podman("login", *cert, "--authfile", authfile, "-u", "alice", "-p", PASSWORDS["alice"], host)
        ref = f"{host}/alice/tls:1"
        containers_env.podman("push", "-q", *cert, "--authfile", authfile, test_images.amd64, f"docker://{ref}")
        out = fresh_store.podman("pull", "-q", *cert, "--authfile", authfile, ref).stdout.decode().split()[-1]
        assert out == test_images.ids["amd64"]
        # Without the test CA, the registry's certificate is refused.
        r = containers_env.skopeo("inspect", "--raw", "--creds", f"alice:{PASSWORDS['alice']}", f"docker://{ref}",
                                  check=False)
        assert r.returncode != 0 and b"certificate" in r.stderr.lower(), r.stderr


def test_mutual_tls_with_skopeo(tokens, pki, cert_dirs, containers_env, test_images, tmp_path):
    trust, client = cert_dirs
    auth, _ = tokens
    creds = f"alice:{PASSWORDS['alice']}"
    # The readiness probe has no client certificate: its handshake fails, so probe with the log.
    with auth_registry(tmp_path / "registry", auth, tls_yaml(pki, mutual=True), ca=None, probe=None) as registry:
        ref = f"docker://{registry.host}/alice/mtls:1"
        containers_env.skopeo("copy", "-q", "--dest-cert-dir", str(client), "--dest-creds", creds,
                              test_images.layout_ref, ref)
        r = containers_env.skopeo("inspect", "--raw", "--cert-dir", str(trust), "--creds", creds, ref, check=False)
        assert r.returncode != 0, r.stderr
        assert "TLS handshake with 127.0.0.1 failed" in registry.log_path.read_text()
