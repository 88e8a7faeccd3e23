"""podman and skopeo through the reference token server (contrib/token-server) to `registry serve`
with `auth.token`: login, push and pull with tokens, anonymous pull of a public repository, the
Bearer challenge for an anonymous push, 403 for alice pushing to bob's repository."""

from __future__ import annotations

import pytest
import requests
from auth_servers import auth_registry, token_server
from client_harness import error_codes, requirement_marks

from registry.authheaders import parse_challenge

pytestmark = [pytest.mark.clients, *requirement_marks("podman", "skopeo", "buildah", "busybox")]

NO_TLS = "--tls-verify=false"
COPY = ("copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false")
PASSWORDS = {"alice": "alice-Token-1", "bob": "bob-Token-2"}
RULES = """
rules:
  - repositories: ["{user}/**"]
    authenticated: ["*"]
  - repositories: ["public/**"]
    anonymous: [pull]
    users: {alice: [push]}
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    work = tmp_path_factory.mktemp("auth-token")
    with token_server(work / "token", PASSWORDS, RULES) as (auth, port), \
            auth_registry(work / "registry", auth) as registry:
        yield registry, port


@pytest.fixture
def authfile(tmp_path):
    path = tmp_path / "auth.json"
    path.write_text("{}\n")
    return str(path)


def test_challenge_for_anonymous_push(servers):
    registry, port = servers
    r = requests.post(f"{registry.url}/v2/public/x/blobs/uploads/", timeout=10)
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
    scheme, params = parse_challenge(r.headers["WWW-Authenticate"])
    assert scheme == "Bearer"
    assert params == {"realm": f"http://127.0.0.1:{port}/token", "service": "test-registry",
                      "scope": "repository:public/x:pull,push"}


def test_podman_login_push_pull(servers, containers_env, fresh_store, test_images, authfile):
    registry, _ = servers
    host = registry.host
    bad = containers_env.podman("login", NO_TLS, "--authfile", authfile, "-u", "alice", "-p", "wrong", host,
                                check=False)
    assert bad.returncode != 0
    containers_env.podman("login", NO_TLS, "--authfile", authfile, "-u", "alice", "-p", PASSWORDS["alice"], host)
    ref = f"{host}/alice/busybox:1"
    containers_env.podman("push", "-q", NO_TLS, "--authfile", authfile, test_images.amd64, f"docker://{ref}")
    image_id = fresh_store.podman("pull", "-q", NO_TLS, "--authfile", authfile, ref).stdout.decode().split()[-1]
    assert image_id == test_images.ids["amd64"]
    # Neither a password nor a token (a JWT starts "eyJ") reaches the registry's log.
    log = registry.log_path.read_text()
    assert PASSWORDS["alice"] not in log and "eyJ" not in log


def test_skopeo_creds_403_and_anonymous_public_pull(servers, containers_env, test_images):
    registry, _ = servers
    host = registry.host
    alice = f"alice:{PASSWORDS['alice']}"
    containers_env.skopeo(*COPY, "--dest-creds", alice, test_images.layout_ref, f"docker://{host}/public/busybox:1")
    raw = containers_env.skopeo("inspect", "--raw", NO_TLS, "--no-creds", f"docker://{host}/public/busybox:1").stdout
    assert b"schemaVersion" in raw
    r = containers_env.skopeo(*COPY, "--dest-creds", alice, test_images.layout_ref, f"docker://{host}/bob/app:1",
                              check=False)
    assert r.returncode != 0 and b"403 (forbidden)" in r.stderr.lower(), r.stderr
    # bob may push there, and alice may not even read it.
    bob = f"bob:{PASSWORDS['bob']}"
    containers_env.skopeo(*COPY, "--dest-creds", bob, test_images.layout_ref, f"docker://{host}/bob/app:1")
    r = containers_env.skopeo("inspect", "--raw", NO_TLS, "--creds", alice, f"docker://{host}/bob/app:1", check=False)
    assert r.returncode != 0
