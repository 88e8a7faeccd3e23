"""The reference token server in-process, its tokens checked by the registry's token controller."""

from __future__ import annotations

import base64

import bcrypt
import falcon.testing
import pytest
from registry_htpasswd.htpasswd import Htpasswd
from registry_htpasswd.rules import NO_ACCESS, parse_rules
from registry_htpasswd.watched import WatchedFile
from registry_token.controller import TokenAccessController
from registry_token_server.app import TokenIssuer, create_token_app, parse_scope
from registry_token_server.cli import registry_config
from registry_token_server.keys import load_or_create

from registry.auth import Access

RULES = """
rules:
  - repositories: ["{user}/**"]
    authenticated: ["*"]
  - repositories: ["public/**"]
    anonymous: [pull]
catalog:
  users: [alice]
"""


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "htpasswd").write_text("".join(
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
        for u, p in (("alice", "apw"), ("bob", "bpw"))))
    (tmp_path / "access.yml").write_text(RULES)
    key, cert = load_or_create(tmp_path / "keys", "test-issuer")
    assert (tmp_path / "keys" / "signing-key.pem").stat().st_mode & 0o077 == 0
    users = Htpasswd(str(tmp_path / "htpasswd"))
    rules = WatchedFile(str(tmp_path / "access.yml"), parse_rules, NO_ACCESS, name="rules")
    issuer = TokenIssuer(key=key, issuer="test-issuer", service="registry", users=users, rules=rules)
    client = falcon.testing.TestClient(create_token_app(issuer, "http://t/token"))
    verifier = TokenAccessController({"realm": "http://t/token", "service": "registry", "issuer": "test-issuer",
                                      "rootcertbundle": str(cert)})
    return client, verifier, tmp_path


def basic(user, pw):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def granted(verifier, token):
    claims = verifier.verify(token)
    return claims["sub"], sorted((a["name"], tuple(a["actions"])) for a in claims["access"])


def test_get_token_with_basic_auth(setup):
    client, verifier, _ = setup
    r = client.simulate_get("/token", params={"service": "registry", "scope": [
        "repository:alice/app:pull,push", "repository:bob/app:pull,push", "repository:public/x:pull"]},
        headers=basic("alice", "apw"))
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert r.json["token"] == r.json["access_token"] and r.json["expires_in"] == 300
    # The intersection: alice's own repository in full, nothing of bob's, what anyone may pull.
    assert granted(verifier, r.json["token"]) == ("alice", [("alice/app", ("pull", "push")), ("public/x", ("pull",))])


def test_anonymous_token_and_wrong_password(setup):
    client, verifier, _ = setup
    r = client.simulate_get("/token", params={"service": "registry", "scope": "repository:public/x:pull,push"})
    assert r.status_code == 200
    assert granted(verifier, r.json["token"]) == ("", [("public/x", ("pull",))])
    r = client.simulate_get("/token", params={"service": "registry"}, headers=basic("alice", "nope"))
    assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"]
    r = client.simulate_get("/token", params={"service": "registry"}, headers=basic("mallory", "x"))
    assert r.status_code == 401
    assert client.simulate_get("/token", params={"service": "other"}).status_code == 400


def test_oauth2_password_and_refresh(setup):
    client, verifier, tmp_path = setup
    form = "grant_type=password&username=bob&password=bpw&service=registry&client_id=t&access_type=offline" \
           "&scope=repository%3Abob%2Fx%3Apull%2Cpush"
    r = client.simulate_post("/token", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert granted(verifier, r.json["access_token"]) == ("bob", [("bob/x", ("pull", "push"))])
    assert r.json["scope"] == "repository:bob/x:pull repository:bob/x:push"
    refresh = r.json["refresh_token"]
    r = client.simulate_post("/token", body=f"grant_type=refresh_token&refresh_token={refresh}&service=registry"
                             "&scope=repository%3Abob%2Fy%3Apull")
    assert r.status_code == 200 and granted(verifier, r.json["access_token"]) == ("bob", [("bob/y", ("pull",))])
    # A refresh token is no access token, and an access token is no refresh token.
    with pytest.raises(ValueError):
        verifier.verify(refresh)
    access = r.json["access_token"]
    r = client.simulate_post("/token", body=f"grant_type=refresh_token&refresh_token={access}&service=registry")
    assert r.status_code == 401
    # A refresh token outlives no removal from the htpasswd file.
    import os
    import time

    (tmp_path / "htpasswd").write_text((tmp_path / "htpasswd").read_text().split("\n")[0] + "\n")
    os.utime(tmp_path / "htpasswd", ns=(time.time_ns(), time.time_ns() + 10**9))
    time.sleep(1.1)
    r = client.simulate_post("/token", body=f"grant_type=refresh_token&refresh_token={refresh}&service=registry")
    assert r.status_code == 401
    bad = client.simulate_post("/token", body="grant_type=password&username=alice&password=wrong&service=registry")
    assert bad.status_code == 401
    assert client.simulate_post("/token", body="grant_type=client_credentials").status_code == 400


def test_parse_scope():
    assert parse_scope("repository:a/b:pull,push") == [Access("repository", "a/b", "pull"),
                                                        Access("repository", "a/b", "push")]
    assert parse_scope("repository:localhost:5000/a:pull") == [Access("repository", "localhost:5000/a", "pull")]
    assert parse_scope("registry:catalog:*") == [Access("registry", "catalog", "*")]
    assert parse_scope("repository(plugin):a:pull") == [Access("repository", "a", "pull")]
    assert parse_scope("garbage") == [] and parse_scope("a::") == []


def test_keys_are_kept_and_config_printed(tmp_path):
    key1, cert = load_or_create(tmp_path, "i")
    key2, _ = load_or_create(tmp_path, "i")
    assert key1.private_numbers() == key2.private_numbers()
    text = registry_config("http://t/token", "registry", "i", cert)
    assert "rootcertbundle: " + str(cert.resolve()) in text and "issuer: i" in text
