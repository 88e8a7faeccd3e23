"""The spec's grammars: repository names, tags, digests, references and upload ids.

Everything here is plain Python (no web framework), so the storage layer, which builds paths only
from values these functions accepted, imports without loading the HTTP stack. The router
(:mod:`registry.routing`) and the handlers use the same definitions.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from registry.errors import DigestInvalid, NameInvalid

# OCI distribution spec v1.1: <name> and <reference> grammars.
NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME = rf"{NAME_COMPONENT}(?:/{NAME_COMPONENT})*"
TAG = r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
# The image spec's digest grammar; only registered algorithms are accepted beyond it (ALGORITHMS).
DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
#: Upload session ids this registry hands out and accepts (a UUID, or Distribution's).
UPLOAD_ID = r"[A-Za-z0-9_-]{1,128}"

# \Z, not $: "$" also matches before a trailing newline, which would let "latest\n" through as a tag.
NAME_RE = re.compile(rf"^{NAME}\Z")
TAG_RE = re.compile(rf"^{TAG}\Z")
DIGEST_RE = re.compile(rf"^{DIGEST}\Z")
REFERENCE_RE = re.compile(rf"^(?:{TAG}|{DIGEST})\Z")
UPLOAD_ID_RE = re.compile(rf"^{UPLOAD_ID}\Z")

#: Distribution refuses names longer than this (with NAME_INVALID).
MAX_NAME_LENGTH = 255

#: Registered digest algorithms and the exact length of their lowercase hex encodings.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[a-f0-9]+\Z")


def check_name(name: str) -> str:
    """Validate a repository name by the spec's grammar (and Distribution's length limit).

    :raises NameInvalid: for anything else.
    """
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.match(name):
        raise NameInvalid(f"invalid repository name {name[:300]!r}", detail={"name": name[:300]})
    return name


def is_tag(reference: str) -> bool:
    """Whether ``reference`` is a tag by the spec's grammar."""
    return bool(TAG_RE.match(reference))


class Digest(NamedTuple):
    """A validated digest; ``str(d)`` gives ``algorithm:hex``."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_digest(value: str) -> Digest:
    """Parse ``value`` by the image spec's grammar and check the algorithm's encoding.

    Raises :class:`DigestInvalid` for anything else, so a digest that reaches a storage path is
    always ``sha256``/``sha512`` followed by lowercase hex of the right length.
    """
    if not value or len(value) > 200 or not DIGEST_RE.match(value):
        raise DigestInvalid(f"invalid digest {value[:200]!r}")
    algorithm, _, encoded = value.partition(":")
    length = ALGORITHMS.get(algorithm)
    if length is None:
        raise DigestInvalid(f"unsupported digest algorithm {algorithm!r} (use sha256 or sha512)")
    if len(encoded) != length or not _HEX.match(encoded):
        raise DigestInvalid(f"invalid {algorithm} digest: expected {length} lowercase hex characters")
    return Digest(algorithm, encoded)


def digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    """The digest of ``data``."""
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
