"""The token access controller in-process, and the forgery corpus: every token below is refused."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time

import falcon.testing
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from registry_token.keys import libtrust_kid

from registry.app import create_app
from registry.authheaders import parse_challenge
from registry.plugins import by_name, create_plugin_manager

SERVICE, ISSUER, REALM = "registry.test", "auth.test", "https://auth.test/token"


def cert_for(key, subject: str, issuer_key=None, issuer_name: str | None = None, *, ca: bool = False,
             days: int = 30) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name or subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key or key, hashes.SHA256())


def der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


class Keys:
    def __init__(self, tmp_path):
        self.signing = ec.generate_private_key(ec.SECP256R1())
        self.signing_cert = cert_for(self.signing, "token-signer")
        self.ca = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = cert_for(self.ca, "token-ca", ca=True)
        self.leaf = ec.generate_private_key(ec.SECP256R1())
        self.leaf_cert = cert_for(self.leaf, "leaf", self.ca, "token-ca")
        self.rsa = rsa.generate_private_key(65537, 2048)
        self.rsa_cert = cert_for(self.rsa, "rsa-signer")
        self.bundle = tmp_path / "bundle.pem"
        self.bundle.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                         for c in (self.signing_cert, self.ca_cert, self.rsa_cert)))

    @property
    def kid(self) -> str:
        return libtrust_kid(self.signing.public_key())


def claims(access=(), sub="alice", **over):
    now = int(time.time())
    out = {"iss": ISSUER, "sub": sub, "aud": SERVICE, "exp": now + 300, "nbf": now - 5, "iat": now,
           "jti": "j1", "access": [{"type": t, "name": n, "actions": a} for t, n, a in access]}
    out.update(over)
    return {k: v for k, v in out.items() if v is not None}


def sign(keys: Keys, payload: dict, *, key=None, alg="ES256", headers=None) -> str:
    h = {"kid": keys.kid} if headers is None else headers
    return jwt.encode(payload, key or keys.signing, algorithm=alg, headers=h)


@pytest.fixture
def keys(tmp_path):
    return Keys(tmp_path)


@pytest.fixture
def client(tmp_path, keys):
    pm = create_plugin_manager()
    driver = by_name(pm, "registry_storage_drivers")["filesystem"].factory({"rootdirectory": str(tmp_path / "root")})
    config = {"version": 0.1, "storage": {"filesystem": {}}, "auth": {"token": {
        "realm": REALM, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(keys.bundle)}}}
    return falcon.testing.TestClient(create_app(config, pm, driver=driver))


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


PULL_A = [("repository", "a", ["pull"])]
PUSH_A = [("repository", "a", ["pull", "push"])]


def push(client, name: str, token: str):
    data = b"layer"
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    return client.simulate_post(f"/v2/{name}/blobs/uploads/", params={"digest": d}, body=data, headers=bearer(token))


def test_valid_tokens_work(client, keys):
    assert push(client, "a", sign(keys, claims(PUSH_A))).status_code == 201
    assert client.simulate_get("/v2/a/tags/list", headers=bearer(sign(keys, claims(PULL_A)))).status_code == 200
    # An x5c chain to the bundle's CA, an RSA key by kid, and "*" as every action.
    x5c = sign(keys, claims(PULL_A), key=keys.leaf, headers={"x5c": [der_b64(keys.leaf_cert), der_b64(keys.ca_cert)]})
    assert client.simulate_get("/v2/a/tags/list", headers=bearer(x5c)).status_code == 200
    rs = sign(keys, claims([("repository", "a", ["*"])]), key=keys.rsa, alg="RS256",
              headers={"kid": libtrust_kid(keys.rsa.public_key())})
    assert push(client, "a", rs).status_code == 201
    catalog = sign(keys, claims([("registry", "catalog", ["*"])]))
    assert client.simulate_get("/v2/_catalog", headers=bearer(catalog)).status_code == 200


def test_anonymous_gets_the_bearer_challenge(client):
    r = push(client, "a", "")
    r = client.simulate_post("/v2/a/blobs/uploads/")
    assert r.status_code == 401 and r.json["errors"][0]["code"] == "UNAUTHORIZED"
    scheme, params = parse_challenge(r.headers["WWW-Authenticate"])
    assert scheme == "Bearer"
    assert params == {"realm": REALM, "service": SERVICE, "scope": "repository:a:pull,push"}


def _forgeries(keys: Keys) -> dict[str, tuple[str, str, str]]:
    """name → (method, path, token): each must be refused."""
    now = int(time.time())
    other = ec.generate_private_key(ec.SECP256R1())
    pub_pem = keys.signing.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    unsigned = (base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT", "kid": keys.kid}).encode())
                .rstrip(b"=").decode() + "." + base64.urlsafe_b64encode(json.dumps(claims(PUSH_A)).encode())
                .rstrip(b"=").decode() + ".")
    import hmac as _hmac

    def hs256_with_public_key() -> str:
        head = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": keys.kid}).encode())
        head = head.rstrip(b"=")
        body = base64.urlsafe_b64encode(json.dumps(claims(PUSH_A)).encode()).rstrip(b"=")
        sig = base64.urlsafe_b64encode(_hmac.new(pub_pem, head + b"." + body, hashlib.sha256).digest()).rstrip(b"=")
        return (head + b"." + body + b"." + sig).decode()

    self_signed = cert_for(other, "evil")
    evil_ca = ec.generate_private_key(ec.SECP256R1())
    evil_ca_cert = cert_for(evil_ca, "token-ca", ca=True)  # same name as the real CA, another key
    evil_leaf_cert = cert_for(other, "leaf", evil_ca, "token-ca")
    non_ca_leaf = cert_for(other, "leaf2", keys.leaf, "leaf")  # "issued" by a leaf, which is no CA
    return {
        "alg none": ("POST", "/v2/a/blobs/uploads/", unsigned),
        "HS256 with the public key": ("POST", "/v2/a/blobs/uploads/", hs256_with_public_key()),
        "wrong key, right kid": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A), key=other)),
        "unknown kid": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A), key=other,
                                                              headers={"kid": libtrust_kid(other.public_key())})),
        "no kid nor x5c": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A), headers={})),
        "embedded jwk": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A), key=other, headers={
            "kid": keys.kid, "jwk": json.loads(jwt.algorithms.ECAlgorithm.to_jwk(other.public_key()))})),
        "x5c self-signed": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A), key=other,
                                                                  headers={"x5c": [der_b64(self_signed)]})),
        "x5c to a look-alike CA": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A), key=other, headers={
            "x5c": [der_b64(evil_leaf_cert), der_b64(evil_ca_cert)]})),
        "x5c issued by a non-CA": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A), key=other, headers={
            "x5c": [der_b64(non_ca_leaf), der_b64(keys.leaf_cert), der_b64(keys.ca_cert)]})),
        "x5c garbage": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A), headers={"x5c": ["!!"]})),
        "expired": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A, exp=now - 600, nbf=now - 900))),
        "not yet valid": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A, nbf=now + 600, exp=now + 900))),
        "no exp": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A, exp=None))),
        "wrong aud": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A, aud="other-registry"))),
        "wrong iss": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PUSH_A, iss="evil"))),
        "pull token used to push": ("POST", "/v2/a/blobs/uploads/", sign(keys, claims(PULL_A))),
        "token for a used on b": ("GET", "/v2/b/tags/list", sign(keys, claims(PULL_A))),
        "token for a used on a/b": ("GET", "/v2/a/b/tags/list", sign(keys, claims(PULL_A))),
        "token for a used on a/../b": ("GET", "/v2/a/../b/tags/list", sign(keys, claims(PULL_A))),
        "token for a* used on ab": ("GET", "/v2/ab/tags/list",
                                    sign(keys, claims([("repository", "a*", ["pull"])]))),
        "catalog without the catalog scope": ("GET", "/v2/_catalog", sign(keys, claims(PUSH_A))),
        "catalog scope of another type": ("GET", "/v2/_catalog",
                                          sign(keys, claims([("repository", "catalog", ["*"])]))),
        "malformed access claim": ("GET", "/v2/a/tags/list", sign(keys, {**claims(), "access": "a:pull"})),
        "RSA key with ES256": ("GET", "/v2/a/tags/list", sign(keys, claims(PULL_A), key=keys.signing, alg="ES256",
                                                              headers={"kid": libtrust_kid(keys.rsa.public_key())})),
        "truncated signature": ("GET", "/v2/a/tags/list", sign(keys, claims(PULL_A))[:-10]),
        "garbage": ("GET", "/v2/a/tags/list", "not.a.token"),
    }


FORGERY_NAMES = [
    "alg none", "HS256 with the public key", "wrong key, right kid", "unknown kid", "no kid nor x5c",
    "embedded jwk", "x5c self-signed", "x5c to a look-alike CA", "x5c issued by a non-CA", "x5c garbage", "expired",
    "not yet valid", "no exp", "wrong aud", "wrong iss", "pull token used to push", "token for a used on b",
    "token for a used on a/b", "token for a used on a/../b", "token for a* used on ab",
    "catalog without the catalog scope", "catalog scope of another type", "malformed access claim",
    "RSA key with ES256", "truncated signature", "garbage",
]


@pytest.mark.parametrize("name", FORGERY_NAMES)
def test_forgery_refused(client, keys, name):
    method, path, token = _forgeries(keys)[name]
    r = client.simulate_request(method, path, headers=bearer(token),
                                body=b"layer" if method == "POST" else None)
    assert r.status_code in (400, 401, 403), (name, r.status_code, r.text)
    code = r.json["errors"][0]["code"]
    assert code in ("UNAUTHORIZED", "DENIED", "NAME_INVALID"), code
    if r.status_code == 401:
        assert parse_challenge(r.headers["WWW-Authenticate"])[0] == "Bearer"


def test_forgery_corpus_is_complete(keys):
    assert sorted(_forgeries(keys)) == sorted(FORGERY_NAMES)


@pytest.mark.parametrize("header", ["Bearer", "Bearer    ", "Basic YWxpY2U6cHc=", "garbage", "Bearer " + "A" * 20000,
                                    "Bearer a.b.c.d", "Bearer \u00e9\u00e9"])
def test_garbage_authorization_headers(client, header):
    r = client.simulate_get("/v2/a/tags/list", headers={"Authorization": header})
    assert r.status_code == 401 and r.json["errors"][0]["code"] == "UNAUTHORIZED"
    _, params = parse_challenge(r.headers["WWW-Authenticate"])
    assert params["error"] == "invalid_token"


def test_insufficient_scope_is_403_with_a_challenge_for_a_user_401_for_anonymous(client, keys):
    r = push(client, "a", sign(keys, claims(PULL_A)))
    assert r.status_code == 403 and r.json["errors"][0]["code"] == "DENIED"
    assert r.json["errors"][0]["detail"] == [{"Type": "repository", "Name": "a", "Action": "push"}]
    assert parse_challenge(r.headers["WWW-Authenticate"])[1]["error"] == "insufficient_scope"
    r = push(client, "a", sign(keys, claims(PULL_A, sub="")))
    assert r.status_code == 401


def test_subject_is_the_event_actor(tmp_path, keys):
    from registry import hookimpl

    seen = []

    class Events:
        @hookimpl
        def registry_event(self, event):
            seen.append(event)

    pm = create_plugin_manager(plugins=[Events()])
    driver = by_name(pm, "registry_storage_drivers")["inmemory"].factory({})
    config = {"storage": {"inmemory": {}}, "auth": {"token": {
        "realm": REALM, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(keys.bundle)}}}
    client = falcon.testing.TestClient(create_app(config, pm, driver=driver))
    assert push(client, "a", sign(keys, claims(PUSH_A, sub="alice"))).status_code == 201
    assert seen and seen[-1]["actor"] == {"name": "alice"}


def test_jwks_file_and_hmac_refused(tmp_path, keys):
    from registry_token.controller import TokenAccessController, allowed_algorithms

    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(keys.signing.public_key()))
    jwk["kid"] = "k1"
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk, {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}))
    ctrl = TokenAccessController({"realm": REALM, "service": SERVICE, "issuer": ISSUER,
                                  "jwks": str(tmp_path / "jwks.json")})
    assert set(ctrl.keys.jwks.keys) == {"k1"}  # the oct (HMAC) key is never loaded
    good = sign(keys, claims(PULL_A), headers={"kid": "k1"})
    assert ctrl.verify(good)["sub"] == "alice"
    hs = jwt.encode(claims(PULL_A), "s" * 32, algorithm="HS256", headers={"kid": "h"})
    with pytest.raises(ValueError):
        ctrl.verify(hs)
    assert "HS256" not in allowed_algorithms(["HS256", "ES256"])
    with pytest.raises(ValueError):
        allowed_algorithms(["HS256"])
    with pytest.raises(ValueError):
        allowed_algorithms(["none"])


def test_jwks_url_fetched_and_refreshed_from_startup(tmp_path, keys):
    """A real loopback HTTP server holds the JWKS; a key added to it is picked up by a refresh, and
    the refresher thread runs from registry_startup to registry_shutdown."""
    import http.server
    import threading

    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(keys.signing.public_key()))
    served = {"keys": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            body = json.dumps(served).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        pm = create_plugin_manager()
        driver = by_name(pm, "registry_storage_drivers")["inmemory"].factory({})
        config = {"storage": {"inmemory": {}}, "auth": {"token": {
            "realm": REALM, "service": SERVICE, "issuer": ISSUER, "jwks": url, "jwksrefresh": "5s"}}}
        app = create_app(config, pm, driver=driver)
        client = falcon.testing.TestClient(app)
        token = sign(keys, claims(PULL_A), headers={"kid": "late"})
        assert client.simulate_get("/v2/a/tags/list", headers=bearer(token)).status_code == 401
        served["keys"] = [{**jwk, "kid": "late"}]
        with app:
            names = [t.name for t in threading.enumerate()]
            assert "jwks-refresh" in names
            app.registry_context.access.jwks.refresh()  # what the thread does every jwksrefresh
            assert client.simulate_get("/v2/a/tags/list", headers=bearer(token)).status_code == 404
            served["keys"] = "broken"
            app.registry_context.access.jwks.refresh()  # a bad answer keeps the keys it had
            assert client.simulate_get("/v2/a/tags/list", headers=bearer(token)).status_code == 404
        assert "jwks-refresh" not in [t.name for t in threading.enumerate()]
    finally:
        server.shutdown()
        server.server_close()
