"""Digest parsing and hashing; the definitions live in :mod:`registry.grammar` with the other grammars."""

from __future__ import annotations

from registry.grammar import ALGORITHMS, Digest, digest_of, parse_digest

__all__ = ["ALGORITHMS", "Digest", "digest_of", "parse_digest"]
