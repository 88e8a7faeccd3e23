"""The keys tokens may be signed with: a certificate bundle (by ``kid`` or an ``x5c`` chain to it)
and a JSON Web Key Set (a file or a URL)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

log = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

#: The algorithms a token may use: asymmetric only. HMAC (HS*) would make every holder of the
#: verification key a token issuer; ``none`` signs nothing.
ASYMMETRIC = ("EdDSA", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
_EC_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
MAX_CHAIN = 5
MAX_JWKS_BYTES = 1 << 20


def libtrust_kid(key: PublicKey) -> str:
    """The key id Distribution's token servers write: SHA-256 of the DER public key, first 240
    bits, base32 in twelve groups of four joined by ``:``."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(b32[i:i + 4] for i in range(0, 48, 4))


def jwk_thumbprint(key: PublicKey) -> str:
    """RFC 7638 thumbprint (base64url SHA-256 of the canonical JWK), the other common ``kid``."""
    jwk = json.loads(jwt.algorithms.get_default_algorithms()[_family_alg(key)].to_jwk(key))
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _family_alg(key: PublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ES256"
    return "EdDSA"


def key_fits(alg: str, key: Any) -> bool:
    """Whether ``key`` is of the kind ``alg`` needs (an RSA key for RS/PS, the right curve for ES)."""
    if alg.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048
    if alg in _EC_CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _EC_CURVES[alg])
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


def load_bundle(path: str) -> list[x509.Certificate]:
    with open(path, "rb") as f:
        data = f.read()
    certs = x509.load_pem_x509_certificates(data)
    if not certs:
        raise ValueError(f"{path}: no certificates")
    return certs


def parse_jwks(data: bytes | str, source: str) -> dict[str, PublicKey]:
    """``kid → public key`` of a JWKS; symmetric (``oct``) keys and keys without a ``kid`` are
    skipped with a warning."""
    doc = json.loads(data)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
        raise ValueError(f"{source}: not a JSON Web Key Set (no keys list)")
    keys: dict[str, PublicKey] = {}
    for i, entry in enumerate(doc["keys"]):
        if not isinstance(entry, Mapping) or entry.get("kty") not in ("RSA", "EC", "OKP") or "d" in entry:
            log.warning("%s: key %d is not a public RSA, EC or OKP key; skipped", source, i)
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            log.warning("%s: key %d has no kid; skipped", source, i)
            continue
        try:
            key = jwt.PyJWK.from_dict(dict(entry)).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: key %d (%s) cannot be read: %s; skipped", source, i, kid, exc)
            continue
        keys[kid] = key
    return keys


class JWKSource:
    """A JWKS from a file (read once) or a URL (fetched now and on :meth:`refresh`)."""

    def __init__(self, location: str, timeout: float = 10.0) -> None:
        self.location = location
        self.timeout = timeout
        self.is_url = location.startswith(("https://", "http://"))
        self._lock = threading.Lock()
        self.keys: dict[str, PublicKey] = {}
        self.refresh(raise_errors=True)

    def refresh(self, raise_errors: bool = False) -> None:
        try:
            if self.is_url:
                with urllib.request.urlopen(self.location, timeout=self.timeout) as resp:  # noqa: S310 - http(s) only
                    data = resp.read(MAX_JWKS_BYTES + 1)
            else:
                with open(self.location, "rb") as f:
                    data = f.read(MAX_JWKS_BYTES + 1)
            if len(data) > MAX_JWKS_BYTES:
                raise ValueError("larger than 1 MiB")
            keys = parse_jwks(data, self.location)
        except (OSError, ValueError) as exc:
            if raise_errors:
                raise ValueError(f"jwks {self.location}: {exc}") from exc
            log.error("jwks %s: %s; keeping the %d keys fetched before", self.location, exc, len(self.keys))
            return
        with self._lock:
            self.keys = keys


class TrustedKeys:
    """Every key a token may be verified with, and the bundle its ``x5c`` chains must end in."""

    def __init__(self, bundle: list[x509.Certificate], jwks: JWKSource | None) -> None:
        self.bundle = bundle
        self.jwks = jwks
        self._bundle_der = {c.public_bytes(serialization.Encoding.DER) for c in bundle}
        self._by_kid: dict[str, PublicKey] = {}
        for cert in bundle:
            key = cert.public_key()
            if isinstance(key, PublicKey):
                self._by_kid[libtrust_kid(key)] = key
                self._by_kid[jwk_thumbprint(key)] = key

    def by_kid(self, kid: str) -> PublicKey | None:
        key = self._by_kid.get(kid)
        if key is None and self.jwks is not None:
            key = self.jwks.keys.get(kid)
        return key

    def from_x5c(self, chain: Any, now: datetime.datetime) -> PublicKey:
        """The leaf's key, once the chain is shown to end in the bundle; :class:`ValueError` if not.

        Each certificate must be within its validity period and directly issued by the next (which
        must be a CA), and the last must be a bundle certificate or directly issued by one."""
        if not isinstance(chain, list) or not 1 <= len(chain) <= MAX_CHAIN \
                or not all(isinstance(c, str) for c in chain):
            raise ValueError("x5c is not a list of 1 to 5 certificates")
        try:
            certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in chain]
        except ValueError as exc:
            raise ValueError(f"x5c does not hold certificates: {exc}") from None
        for cert in certs:
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise ValueError("a certificate of x5c is outside its validity period")
        for child, parent in zip(certs, certs[1:], strict=False):
            _check_issued(child, parent)
        last = certs[-1]
        if last.public_bytes(serialization.Encoding.DER) not in self._bundle_der:
            for anchor in self.bundle:
                try:
                    _check_issued(last, anchor)
                    break
                except ValueError:
                    continue
            else:
                raise ValueError("x5c does not chain to the root certificate bundle")
        key = certs[0].public_key()
        if not isinstance(key, PublicKey):
            raise ValueError("unsupported key type in x5c")
        return key


def _check_issued(child: x509.Certificate, parent: x509.Certificate) -> None:
    try:
        constraints = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise ValueError("an issuer in x5c is not a CA") from None
    if not constraints.ca:
        raise ValueError("an issuer in x5c is not a CA")
    try:
        child.verify_directly_issued_by(parent)
    except Exception as exc:  # InvalidSignature, ValueError, TypeError: all mean "not issued by"
        raise ValueError(f"x5c: a certificate is not issued by the next: {type(exc).__name__}") from None
