"""``http.tls``: the :class:`ssl.SSLContext` that ``registry serve`` wraps its connections in.

Distribution's options, read as it reads them: ``certificate`` and ``key`` (PEM files; the
certificate file may hold the chain), ``minimumtls`` (``tls1.2`` by default, ``tls1.3``; 1.0 and 1.1
are refused as broken), ``ciphersuites`` (Go's names for TLS 1.2 suites; TLS 1.3's suites are all
strong and not configurable here), ``clientcas`` (CA files: clients must present a certificate one of
them issued, checked during the handshake) and ``clientauth``. ``letsencrypt`` is not supported.
No web framework or server is imported here.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from registry.config import ConfigError

#: Go's crypto/tls names → OpenSSL's, for the TLS 1.2 suites worth offering.
GO_CIPHER_SUITES: Mapping[str, str] = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
}
TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"})
_VERSIONS = {"tls1.2": ssl.TLSVersion.TLSv1_2, "tls1.3": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"require-and-verify-client-cert": ssl.CERT_REQUIRED, "verify-client-cert-if-given": ssl.CERT_OPTIONAL}


def tls_settings(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``http.tls`` when it asks for HTTPS (a certificate, key, client CAs or Let's Encrypt)."""
    http = config.get("http")
    tls = http.get("tls") if isinstance(http, Mapping) else None
    if not isinstance(tls, Mapping):
        return None
    letsencrypt = tls.get("letsencrypt") if isinstance(tls.get("letsencrypt"), Mapping) else {}
    if tls.get("certificate") or tls.get("key") or tls.get("clientcas") or letsencrypt.get("cachefile"):
        return tls
    return None


def tls_context(config: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The server context ``http.tls`` describes, or ``None`` without TLS.

    :raises ConfigError: for anything that would not serve what was asked: missing or unreadable
        files, a key that does not match the certificate, an unknown version, suite or client auth
        mode, Let's Encrypt.
    """
    tls = tls_settings(config)
    if tls is None:
        return None
    errors: list[str] = []
    letsencrypt = tls.get("letsencrypt") if isinstance(tls.get("letsencrypt"), Mapping) else {}
    if letsencrypt.get("cachefile"):
        raise ConfigError(["http.tls.letsencrypt: not supported; give certificate and key (certbot can "
                           "renew them), or terminate TLS in a proxy (contrib/nginx/registry-tls.conf)"])
    cert, key = tls.get("certificate"), tls.get("key")
    if not cert or not key:
        raise ConfigError(["http.tls: both certificate and key are required to serve HTTPS"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    minimum = str(tls.get("minimumtls") or "tls1.2").lower()
    if minimum in ("tls1.0", "tls1.1"):
        errors.append(f"http.tls.minimumtls: {minimum} is broken and not served; use tls1.2 or tls1.3")
    elif minimum not in _VERSIONS:
        errors.append(f"http.tls.minimumtls: unknown version {minimum!r} (tls1.2 or tls1.3)")
    else:
        ctx.minimum_version = _VERSIONS[minimum]
    suites = list(tls.get("ciphersuites") or [])
    if suites:
        unknown = [s for s in suites if s not in GO_CIPHER_SUITES and s not in TLS13_SUITES]
        if unknown:
            errors.append(f"http.tls.ciphersuites: unknown or unsupported {unknown} (Go's names, e.g. "
                          "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
        else:
            tls12 = [GO_CIPHER_SUITES[s] for s in suites if s in GO_CIPHER_SUITES]
            if tls12:
                ctx.set_ciphers(":".join(dict.fromkeys(tls12)))
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        errors.append(f"http.tls: {exc.filename}: no such file")
    except (OSError, ssl.SSLError) as exc:
        errors.append(f"http.tls: cannot use certificate {cert} with key {key}: {exc}")
    clientcas = tls.get("clientcas") or []
    if isinstance(clientcas, str):
        clientcas = [clientcas]
    mode = str(tls.get("clientauth") or "require-and-verify-client-cert")
    if clientcas:
        if mode not in _CLIENT_AUTH:
            errors.append(f"http.tls.clientauth: {mode!r} is not supported ({', '.join(_CLIENT_AUTH)})")
        else:
            ctx.verify_mode = _CLIENT_AUTH[mode]
        for ca in clientcas:
            try:
                ctx.load_verify_locations(cafile=str(ca))
            except (OSError, ssl.SSLError) as exc:
                errors.append(f"http.tls.clientcas: cannot load {ca}: {exc}")
    if errors:
        raise ConfigError(errors)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx
