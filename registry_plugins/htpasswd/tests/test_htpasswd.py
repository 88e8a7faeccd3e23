"""The htpasswd access controller in-process: credentials, challenges, rules, reloads, limits."""

from __future__ import annotations

import base64
import logging
import os
import time

import bcrypt
import falcon.testing
import pytest
from registry_htpasswd.htpasswd import FailureLimiter, Htpasswd, parse_htpasswd
from registry_htpasswd.rules import parse_rules

from registry.app import create_app
from registry.authheaders import parse_challenge
from registry.config import load_config
from registry.plugins import by_name, create_plugin_manager

COST = 4  # the cheapest bcrypt cost: these tests check logic, not bcrypt


def line(user: str, password: str) -> str:
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(COST)).decode()}\n"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


RULES = """
groups:
  devs: [alice, bob]
rules:
  - repositories: ["public/**"]
    anonymous: [pull]
    authenticated: [pull]
  - repositories: ["a/*"]
    users: {alice: ["*"]}
  - repositories: ["{user}/**"]
    authenticated: [pull, push]
  - repositories: team/*
    groups: {devs: [pull]}
catalog:
  users: [alice]
"""


@pytest.fixture
def files(tmp_path):
    pw = tmp_path / "htpasswd"
    pw.write_text(line("alice", "alice-pw") + line("bob", "bob-pw"))
    rules = tmp_path / "access.yml"
    rules.write_text(RULES)
    return pw, rules


def make(tmp_path, files, *, rules: bool = True, **extra) -> falcon.testing.TestClient:
    pw, rules_path = files
    pm = create_plugin_manager()
    driver = by_name(pm, "registry_storage_drivers")["filesystem"].factory({"rootdirectory": str(tmp_path / "root")})
    options = {"realm": "test-realm", "path": str(pw), **extra}
    if rules:
        options["rules"] = str(rules_path)
    config = {"version": 0.1, "storage": {"filesystem": {}, "delete": {"enabled": True}}, "auth": {"htpasswd": options}}
    return falcon.testing.TestClient(create_app(config, pm, driver=driver))


def push_blob(client, name: str, headers: dict, data: bytes = b"x") -> falcon.testing.Result:
    import hashlib

    d = "sha256:" + hashlib.sha256(data).hexdigest()
    return client.simulate_post(f"/v2/{name}/blobs/uploads/", params={"digest": d}, body=data, headers=headers)


def assert_challenge(r, *, code: str = "UNAUTHORIZED") -> None:
    assert r.status_code == 401, r.text
    scheme, params = parse_challenge(r.headers["WWW-Authenticate"])
    assert scheme == "Basic" and params == {"realm": "test-realm"}
    if r.content:  # HEAD carries no body
        assert r.json["errors"][0]["code"] == code


def test_debian_sample_config_loads_unchanged(tmp_path, caplog):
    """Debian's /etc/docker/registry/config.yml names a directory as the htpasswd path: it starts,
    says why every login fails, and answers 401 (never 500)."""
    text = """version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: ROOT
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: DIR
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
""".replace("ROOT", str(tmp_path / "root")).replace("DIR", str(tmp_path))
    cfg = tmp_path / "config.yml"
    cfg.write_text(text)
    pm = create_plugin_manager()
    config = load_config(str(cfg), {}, pm)
    with caplog.at_level(logging.ERROR):
        client = falcon.testing.TestClient(create_app(config, pm))
    assert "htpasswd" in caplog.text
    r = client.simulate_get("/v2/", headers=basic("alice", "x"))
    assert r.status_code == 401 and "basic-realm" in r.headers["WWW-Authenticate"]


def test_login_wrong_password_unknown_user(tmp_path, files, caplog):
    client = make(tmp_path, files, rules=False)
    assert_challenge(client.simulate_get("/v2/"))
    assert client.simulate_get("/v2/", headers=basic("alice", "alice-pw")).status_code == 200
    with caplog.at_level(logging.WARNING):
        assert_challenge(client.simulate_get("/v2/", headers=basic("alice", "wrong-secret-1")))
        assert_challenge(client.simulate_get("/v2/", headers=basic("mallory", "wrong-secret-2")))
    assert "'alice'" in caplog.text and "'mallory'" in caplog.text
    assert "wrong-secret" not in caplog.text and "alice-pw" not in caplog.text
    # Without rules, any authenticated user may push anywhere; anonymous may do nothing.
    assert push_blob(client, "any/repo", basic("bob", "bob-pw")).status_code == 201
    assert_challenge(push_blob(client, "any/repo", {}))


@pytest.mark.parametrize("header", [
    "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic " + "A" * 10000,
    "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Bearer abc", "garbage",
])
def test_garbage_authorization_is_a_challenge(tmp_path, files, header):
    client = make(tmp_path, files)
    assert_challenge(client.simulate_get("/v2/", headers={"Authorization": header}))


def test_non_bcrypt_lines_refused_by_line_number(caplog):
    text = ("alice:$apr1$abcdefgh$0123456789abcdefghijkl\n# comment\n"
            "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n" + line("carol", "pw"))
    with caplog.at_level(logging.WARNING):
        users = parse_htpasswd(text, source="f")
    assert list(users) == ["carol"]
    assert "line 1" in caplog.text and "line 3" in caplog.text
    assert "$apr1$" not in caplog.text and "W6ph5" not in caplog.text


def test_file_edited_while_running(tmp_path):
    pw = tmp_path / "htpasswd"
    pw.write_text(line("alice", "old"))
    clock = [0.0]
    users = Htpasswd(str(pw), interval=1.0, clock=lambda: clock[0])
    assert users.verify("alice", "old")
    pw.write_text(line("alice", "new") + line("dave", "d"))
    os.utime(pw, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert users.verify("alice", "old")  # within the check interval: not looked at yet
    clock[0] = 2.0
    assert not users.verify("alice", "old")
    assert users.verify("alice", "new") and users.verify("dave", "d")
    pw.unlink()
    clock[0] = 4.0
    assert not users.verify("alice", "new") and users.error  # gone: every login fails


def test_unknown_user_costs_a_bcrypt_check(tmp_path):
    pw = tmp_path / "htpasswd"
    pw.write_text(f"alice:{bcrypt.hashpw(b'pw', bcrypt.gensalt(12)).decode()}\n")
    users = Htpasswd(str(pw))
    users.verify("warm", "up")

    def cost(user: str) -> float:
        t = time.perf_counter()
        assert not users.verify(user, "wrong")
        return time.perf_counter() - t

    known, unknown = min(cost("alice") for _ in range(2)), min(cost("nobody") for _ in range(2))
    assert unknown > known * 0.5 and known > 0.05  # cost 12 takes ~0.2 s here either way


def test_failures_rate_limited_per_address(tmp_path, files):
    client = make(tmp_path, files, maxfailures=3)
    for _ in range(3):
        assert_challenge(client.simulate_get("/v2/", headers=basic("alice", "nope")))
    r = client.simulate_get("/v2/", headers=basic("alice", "alice-pw"))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert r.json["errors"][0]["code"] == "TOOMANYREQUESTS"
    other = client.simulate_get("/v2/", headers=basic("alice", "alice-pw"), remote_addr="127.0.0.2")
    assert other.status_code == 200


def test_limiter_memory_is_bounded():
    limiter = FailureLimiter(2, 60, max_addresses=100, clock=lambda: 0.0)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._failures) == 100


def test_rules_alice_cannot_push_to_bobs(tmp_path, files):
    client = make(tmp_path, files)
    alice, bob = basic("alice", "alice-pw"), basic("bob", "bob-pw")
    assert push_blob(client, "bob/app", bob).status_code == 201
    r = push_blob(client, "bob/app", alice)
    assert r.status_code == 403 and r.json["errors"][0]["code"] == "DENIED"
    assert push_blob(client, "a/x", alice).status_code == 201
    assert push_blob(client, "a/x", bob).status_code == 403
    # Groups: devs may pull team/*, nobody may push there.
    assert push_blob(client, "team/x", alice).status_code == 403
    # Catalog: alice only; anonymous is asked to log in.
    assert client.simulate_get("/v2/_catalog", headers=alice).status_code == 200
    assert client.simulate_get("/v2/_catalog", headers=bob).status_code == 403
    assert_challenge(client.simulate_get("/v2/_catalog"))


def test_anonymous_pull_where_configured(tmp_path, files):
    client = make(tmp_path, files)
    assert push_blob(client, "public/x", basic("alice", "alice-pw")).status_code == 403  # pull only
    import hashlib

    d = "sha256:" + hashlib.sha256(b"x").hexdigest()
    assert push_blob(client, "alice/x", basic("alice", "alice-pw")).status_code == 201
    assert client.simulate_head(f"/v2/public/x/blobs/{d}").status_code == 404  # allowed, absent
    assert_challenge(client.simulate_head(f"/v2/alice/x/blobs/{d}"))
    assert_challenge(push_blob(client, "public/x", {}))
    assert_challenge(client.simulate_get("/v2/"))  # login still asks for credentials


@pytest.mark.parametrize("path", ["/v2/A/b/tags/list", "/v2/a/./b/tags/list", "/v2/a/../b/tags/list",
                                  "/v2/a%2F..%2Fb/tags/list", "/v2/a//b/tags/list"])
def test_name_variants_never_reach_storage(tmp_path, files, path):
    """Against a rule granting a/* only, what is checked is what would be stored: variants are
    NAME_INVALID or refused, never served from another repository."""
    client = make(tmp_path, files)
    r = client.simulate_get(path, headers=basic("alice", "alice-pw"))
    assert r.status_code in (400, 403, 404) and r.status_code != 200, r.text
    if r.status_code == 400:
        assert r.json["errors"][0]["code"] == "NAME_INVALID"


def test_percent_encoded_slash_is_the_name_stored(tmp_path, files):
    client = make(tmp_path, files)
    alice = basic("alice", "alice-pw")
    assert push_blob(client, "a%2Fb", alice).status_code == 201
    import hashlib

    d = "sha256:" + hashlib.sha256(b"x").hexdigest()
    assert client.simulate_head(f"/v2/a/b/blobs/{d}", headers=alice).status_code == 200
    assert push_blob(client, "a%2Fb%2Fc", alice).status_code == 403  # a/* is one component


def test_mount_needs_pull_on_the_source(tmp_path, files):
    client = make(tmp_path, files)
    alice, bob = basic("alice", "alice-pw"), basic("bob", "bob-pw")
    data = b"secret layer"
    import hashlib

    d = "sha256:" + hashlib.sha256(data).hexdigest()
    assert push_blob(client, "a/private", alice, data).status_code == 201
    r = client.simulate_post("/v2/bob/copy/blobs/uploads/", params={"mount": d, "from": "a/private"}, headers=bob)
    assert r.status_code == 202  # an ordinary upload, not the mount
    assert client.simulate_head(f"/v2/bob/copy/blobs/{d}", headers=bob).status_code == 404
    r = client.simulate_post("/v2/a/copy/blobs/uploads/", params={"mount": d, "from": "a/private"}, headers=alice)
    assert r.status_code == 201


def test_rules_file_errors():
    with pytest.raises(ValueError, match="unknown action"):
        parse_rules("rules: [{repositories: [x], users: {a: [write]}}]")
    with pytest.raises(ValueError, match="not defined"):
        parse_rules("rules: [{repositories: [x], groups: {g: [pull]}}]")
    with pytest.raises(ValueError, match="unknown key"):
        parse_rules("rule: []")
    rules = parse_rules(RULES)
    assert rules.allowed_actions("alice", "a/b") == {"pull", "push", "delete"}
    assert rules.allowed_actions("alice", "a/b/c") == frozenset()
    assert rules.allowed_actions(None, "alice/x") == frozenset()
    assert rules.allowed_actions("bob", "bob/x/y") == {"pull", "push"}
    assert rules.allowed_actions("bob", "alice/x") == frozenset()


def test_bad_rules_file_refuses_to_start(tmp_path, files):
    files[1].write_text("rules: [{repositories: []}]")
    from registry.config import ConfigError

    with pytest.raises(ConfigError, match="repositories"):
        make(tmp_path, files)
