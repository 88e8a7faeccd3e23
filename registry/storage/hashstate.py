"""Resumable SHA-256 whose state can be saved and restored in another process.

``hashlib`` objects cannot be serialized, so an upload continued on another process (or after a
restart) would have to re-read everything uploaded so far. OpenSSL 3 still exports the low-level
``SHA256_Init/Update/Final`` (deprecated, not removed); their ``SHA256_CTX`` is a plain struct we can
copy out and back. Its layout belongs to the OpenSSL build, so a saved state carries a tag naming
the library version and the struct size, and a state from another build is refused (the caller then
re-hashes the stored data, the always-correct fallback).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import struct
import zlib

_CTX_SIZE = 112  # sizeof(SHA256_CTX): 8 + 2 + 2*... words as OpenSSL lays it out; checked below


def _load() -> tuple[ctypes.CDLL | None, bytes]:
    try:
        import _hashlib  # the libcrypto that hashlib itself uses

        path = _hashlib.__file__
        lib = ctypes.CDLL(path)  # resolves libcrypto symbols through _hashlib's dependencies
        lib.SHA256_Init.argtypes = [ctypes.c_void_p]
    except (ImportError, OSError, AttributeError):
        name = ctypes.util.find_library("crypto")
        if not name:
            return None, b""
        try:
            lib = ctypes.CDLL(name)
            lib.SHA256_Init.argtypes = [ctypes.c_void_p]
        except (OSError, AttributeError):
            return None, b""
    lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    try:
        lib.OpenSSL_version.restype = ctypes.c_char_p
        version = lib.OpenSSL_version(0) or b"unknown"
    except AttributeError:
        version = b"unknown"
    return lib, b"openssl-sha256:" + version + b":" + str(_CTX_SIZE).encode()


_LIB, _TAG = _load()


def _self_test() -> bool:
    if _LIB is None:
        return False
    try:
        h = ResumableSha256()
        h.update(b"a" * 1000)
        restored = ResumableSha256.from_state(h.state())
        restored.update(b"b")
        if restored.length != 1001:  # the byte count sits where from_state() looks for it
            return False
        return restored.hexdigest() == hashlib.sha256(b"a" * 1000 + b"b").hexdigest()
    except Exception:
        return False


class ResumableSha256:
    """SHA-256 with :meth:`state`/:meth:`from_state`; falls back to ``hashlib`` (not resumable)."""

    def __init__(self) -> None:
        self._ctx = ctypes.create_string_buffer(_CTX_SIZE + 64)  # slack in case of a larger struct
        if _LIB is None or _LIB.SHA256_Init(self._ctx) != 1:
            raise RuntimeError("OpenSSL SHA256 is unavailable")

    def update(self, data: bytes | bytearray | memoryview) -> None:
        buf = data if isinstance(data, bytes) else bytes(data)
        _LIB.SHA256_Update(self._ctx, buf, len(buf))  # type: ignore[union-attr]

    def state(self) -> bytes:
        """The tagged, checksummed, opaque state; valid only for this OpenSSL build."""
        blob = struct.pack(">H", len(_TAG)) + _TAG + self._ctx.raw[:_CTX_SIZE]
        return blob + struct.pack(">I", zlib.crc32(blob))

    @property
    def length(self) -> int:
        """Bytes hashed so far, as the context counts them (``Nl``/``Nh``: bits, after ``h[8]``)."""
        low, high = struct.unpack_from("=II", self._ctx.raw, 32)
        return ((high << 32) | low) >> 3

    @classmethod
    def from_state(cls, blob: bytes, length: int | None = None) -> ResumableSha256:
        """Restore a state saved by :meth:`state`; raises ``ValueError`` for a foreign, torn or
        corrupt one, or (given ``length``) one that did not hash exactly ``length`` bytes.

        States are written without ``fsync`` (they can always be rebuilt from the data), so after
        a machine crash a state file may hold anything: the checksum and the length decide.
        """
        if len(blob) < 6:
            raise ValueError("truncated hash state")
        body, (crc,) = blob[:-4], struct.unpack(">I", blob[-4:])
        if zlib.crc32(body) != crc:
            raise ValueError("hash state checksum mismatch")
        (n,) = struct.unpack(">H", body[:2])
        if body[2 : 2 + n] != _TAG or len(body) != 2 + n + _CTX_SIZE:
            raise ValueError("hash state from another OpenSSL build")
        h = cls()
        ctypes.memmove(h._ctx, body[2 + n :], _CTX_SIZE)
        if length is not None and h.length != length:
            raise ValueError(f"hash state covers {h.length} bytes, not {length}")
        return h

    def hexdigest(self) -> str:
        out = ctypes.create_string_buffer(32)
        ctx = ctypes.create_string_buffer(self._ctx.raw)  # Final must not consume our state
        _LIB.SHA256_Final(out, ctx)  # type: ignore[union-attr]
        return out.raw.hex()


RESUMABLE = _self_test()


def new_sha256() -> ResumableSha256 | None:
    """A resumable hasher, or ``None`` when this OpenSSL cannot provide one."""
    return ResumableSha256() if RESUMABLE else None
