"""podman and skopeo through the reference token server (contrib/token-server) to `registry serve`
with `auth.token`: login, push and pull with tokens, anonymous pull of a public repository, the
Bearer challenge for an anonymous push, 403 for alice pushing to bob's repository."""

from __future__ import annotations

import contextlib
import subprocess
import time

import bcrypt
import pytest
import requests
from auth_servers import auth_registry
from client_harness import _server_env, error_codes, find_tool, free_port, requirement_marks

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
    (work / "htpasswd").write_text("".join(
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(5)).decode()}\n" for u, p in PASSWORDS.items()))
    (work / "access.yml").write_text(RULES)
    exe = find_tool("registry-token-server")
    if exe is None:
        pytest.fail("registry-token-server is not installed (make install installs contrib/token-server)",
                    pytrace=False)
    port = free_port()
    log_path = work / "token-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [exe, "--htpasswd", str(work / "htpasswd"), "--rules", str(work / "access.yml"), "--keys",
             str(work / "keys"), "--listen", f"127.0.0.1:{port}", "--service", "test-registry"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_server_env(), start_new_session=True)
    try:
        deadline, up = time.monotonic() + 20, False
        while time.monotonic() < deadline and proc.poll() is None and not up:
            with contextlib.suppress(requests.RequestException):
                up = requests.get(f"http://127.0.0.1:{port}/token", timeout=1).status_code == 200
            if not up:
                time.sleep(0.05)
        printed = log_path.read_text()
        assert up, f"token server did not start:\n{printed}"
        # What it printed is the registry's config, used as it is.
        auth = printed.split("Add this to the registry's config.yml:\n\n", 1)[1].split("\n\n", 1)[0]
        assert auth.startswith("auth:\n")
        with auth_registry(work / "registry", auth.split("\n", 1)[1] + "\n") as registry:
            yield registry, port
    finally:
        proc.terminate()
        proc.wait(10)
        text = log_path.read_text()
        assert all(p not in text for p in PASSWORDS.values()), "a password reached the token server's log"


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
