"""Digest parsing and hashing: the algorithms we accept and the resumable hashers uploads use."""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from registry.errors import DigestInvalid
from registry.routing import DIGEST_RE

#: Registered algorithms and the exact length of their lowercase hex encodings.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[a-f0-9]+\Z")


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
