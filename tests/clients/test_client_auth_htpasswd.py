"""podman and skopeo against `registry serve` with `auth.htpasswd` and an access rules file.

alice owns alice/*, bob owns bob/*, alice pushes public/*, which anyone may pull anonymously.
podman logs in (its own auth file per test), pushes and pulls; skopeo passes --creds; the wrong
password, an unknown user, anonymous pushes (401 with the Basic challenge) and alice pushing to bob's
repository (403) are refused, and a user added to the file while the registry runs can log in.
"""

from __future__ import annotations

import time

import bcrypt
import pytest
import requests
from auth_servers import auth_registry
from client_harness import error_codes, requirement_marks

from registry.authheaders import parse_challenge

pytestmark = [pytest.mark.clients, *requirement_marks("podman", "skopeo", "buildah", "busybox")]

NO_TLS = "--tls-verify=false"
COPY = ("copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false")
PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-2"}
RULES = """
rules:
  - repositories: ["{user}/**"]
    authenticated: ["*"]
  - repositories: ["public/**"]
    anonymous: [pull]
    authenticated: [pull]
    users: {alice: [push]}
"""


def htpasswd_line(user: str, password: str) -> str:
    # Cost 5 is what `htpasswd -B` writes by default.
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(5)).decode()}\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("auth-htpasswd")
    (work / "htpasswd").write_text("".join(htpasswd_line(u, p) for u, p in PASSWORDS.items()))
    (work / "access.yml").write_text(RULES)
    auth = (f"  htpasswd:\n    realm: test-realm\n    path: {work / 'htpasswd'}\n"
            f"    rules: {work / 'access.yml'}\n")
    with auth_registry(work, auth) as s:
        yield s
    log = s.log_path.read_text()
    assert all(p not in log for p in PASSWORDS.values()), "a password reached the log"


@pytest.fixture
def authfile(tmp_path):
    path = tmp_path / "auth.json"
    path.write_text("{}\n")
    return str(path)


def test_podman_login_push_pull(server, containers_env, fresh_store, test_images, authfile):
    host = server.host
    containers_env.run("podman", "login", NO_TLS, "--authfile", authfile, "-u", "alice", "-p",
                       PASSWORDS["alice"], host)
    ref = f"{host}/alice/busybox:1"
    containers_env.podman("push", "-q", NO_TLS, "--authfile", authfile, test_images.amd64, f"docker://{ref}")
    out = fresh_store.podman("pull", "-q", NO_TLS, "--authfile", authfile, ref).stdout.decode().split()[-1]
    assert out == test_images.ids["amd64"]
    # Without logging in, the same pull is asked for credentials.
    anonymous = fresh_store.podman("pull", "-q", NO_TLS, "--authfile", str(fresh_store.etc / "auth.json"),
                                   ref, check=False)
    assert anonymous.returncode != 0 and b"unauthorized" in anonymous.stderr.lower()


@pytest.mark.parametrize("user,password", [("alice", "wrong-password"), ("mallory", "whatever")])
def test_podman_login_refused(server, containers_env, authfile, user, password):
    r = containers_env.podman("login", NO_TLS, "--authfile", authfile, "-u", user, "-p", password, server.host,
                              check=False)
    assert r.returncode != 0 and b"invalid username/password" in r.stderr, r.stderr
    assert password not in server.log_path.read_text()
    assert repr(user) in server.log_path.read_text()  # the failed login is logged, with the user


def test_skopeo_creds_and_403_for_someone_elses_repository(server, containers_env, test_images):
    host = server.host
    bob = f"bob:{PASSWORDS['bob']}"
    containers_env.skopeo(*COPY, "--dest-creds", bob, test_images.layout_ref, f"docker://{host}/bob/app:1")
    raw = containers_env.skopeo("inspect", "--raw", NO_TLS, "--creds", bob, f"docker://{host}/bob/app:1").stdout
    assert b"schemaVersion" in raw
    r = containers_env.skopeo(*COPY, "--dest-creds", f"alice:{PASSWORDS['alice']}", test_images.layout_ref,
                              f"docker://{host}/bob/app:2", check=False)
    assert r.returncode != 0 and b"403 (forbidden)" in r.stderr.lower(), r.stderr
    # The HTTP answer itself: 403 DENIED with the error JSON.
    resp = requests.post(f"{server.url}/v2/bob/app/blobs/uploads/", auth=("alice", PASSWORDS["alice"]), timeout=10)
    assert resp.status_code == 403 and error_codes(resp) == ["DENIED"]


def test_anonymous_pull_public_and_push_challenged(server, containers_env, test_images):
    host = server.host
    containers_env.skopeo(*COPY, "--dest-creds", f"alice:{PASSWORDS['alice']}", test_images.layout_ref,
                          f"docker://{host}/public/busybox:1")
    raw = containers_env.skopeo("inspect", "--raw", NO_TLS, "--no-creds", f"docker://{host}/public/busybox:1").stdout
    assert b"schemaVersion" in raw
    r = containers_env.skopeo(*COPY, "--dest-no-creds", test_images.layout_ref, f"docker://{host}/public/other:1",
                              check=False)
    assert r.returncode != 0
    resp = requests.post(f"{server.url}/v2/public/busybox/blobs/uploads/", timeout=10)
    assert resp.status_code == 401 and error_codes(resp) == ["UNAUTHORIZED"]
    assert parse_challenge(resp.headers["WWW-Authenticate"]) == ("Basic", {"realm": "test-realm"})


def test_user_added_while_running(server, containers_env):
    path = server.config.parent / "htpasswd"
    path.write_text(path.read_text() + htpasswd_line("carol", "carol-Secret-3"))
    # The file is looked at once a second at most; each refused try counts as a failed login.
    deadline, status = time.monotonic() + 10, None
    while time.monotonic() < deadline and status != 200:
        time.sleep(0.6)
        status = requests.get(f"{server.url}/v2/", auth=("carol", "carol-Secret-3"), timeout=5).status_code
    assert status == 200
    out = containers_env.skopeo("list-tags", NO_TLS, "--creds", "carol:carol-Secret-3",
                                f"docker://{server.host}/carol/none", check=False)
    assert b"404 (not found)" in out.stderr.lower(), out.stderr  # let in (not 401/403), nothing there


def test_names_as_authorised_are_names_as_stored(server):
    """Over the wire (waitress decodes the path): `alice%2Fx` is authorised and stored as `alice/x`;
    dot segments and capitals are NAME_INVALID, never another user's repository."""
    import hashlib
    import http.client

    data = b"names as stored"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    alice = requests.auth._basic_auth_str("alice", PASSWORDS["alice"])

    def call(method: str, path: str, body: bytes | None = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers={"Authorization": alice})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    assert call("POST", f"/v2/alice%2Fx/blobs/uploads/?digest={digest}", data) == 201
    assert call("HEAD", f"/v2/alice/x/blobs/{digest}") == 200
    for path in (f"/v2/alice/../bob/app/blobs/uploads/?digest={digest}",
                 f"/v2/alice/./x/blobs/uploads/?digest={digest}",
                 f"/v2/alice%2F..%2Fbob%2Fapp/blobs/uploads/?digest={digest}",
                 f"/v2/Alice/x/blobs/uploads/?digest={digest}"):
        assert call("POST", path, data) in (400, 403, 404), path
    assert call("HEAD", f"/v2/bob/app/blobs/{digest}") == 403


def test_names_under_http_prefix(tmp_path):
    """With `http.prefix`, the name authorised is the name after the prefix, as stored."""
    (tmp_path / "htpasswd").write_text(htpasswd_line("alice", PASSWORDS["alice"]))
    (tmp_path / "access.yml").write_text(RULES)
    auth = (f"  htpasswd:\n    realm: test-realm\n    path: {tmp_path / 'htpasswd'}\n"
            f"    rules: {tmp_path / 'access.yml'}\n")
    creds = ("alice", PASSWORDS["alice"])
    with auth_registry(tmp_path / "run", auth, "  prefix: /reg\n", probe="/reg/v2/") as s:
        r = requests.post(f"{s.url}/reg/v2/alice/x/blobs/uploads/", auth=creds, timeout=10)
        assert r.status_code == 202 and r.headers["Location"].startswith("/reg/v2/alice/x/")
        r = requests.post(f"{s.url}/reg/v2/reg/alice/x/blobs/uploads/", auth=creds, timeout=10)
        assert r.status_code == 403  # "reg/alice/x" is not alice's
