"""Every error a client can see: one class per OCI error code, serialized one way.

The body is always the OCI error envelope (``{"errors": [{"code", "message", "detail"}]}``) as JSON,
whatever the request's ``Accept`` header says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar


class RegistryError(Exception):
    """Base class: an OCI error code with its HTTP status and a message a person can act on."""

    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "unknown error"

    def __init__(
        self, message: str | None = None, detail: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        self.message = message or self.default_message
        self.detail = detail
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return entry


def error_body(*errors: RegistryError) -> bytes:
    """Serialize errors as the OCI error envelope."""
    return json.dumps({"errors": [e.to_dict() for e in errors]}).encode()


class BlobUnknown(RegistryError):
    code, status, default_message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"


class BlobUploadUnknown(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code, status, default_message = "DIGEST_INVALID", 400, "provided digest did not match uploaded content"


class ManifestBlobUnknown(RegistryError):
    code, status = "MANIFEST_BLOB_UNKNOWN", 400
    default_message = "manifest references a manifest or blob unknown to registry"


class ManifestInvalid(RegistryError):
    code, status, default_message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestUnknown(RegistryError):
    code, status, default_message = "MANIFEST_UNKNOWN", 404, "manifest unknown to registry"


class NameInvalid(RegistryError):
    code, status, default_message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(RegistryError):
    code, status, default_message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(RegistryError):
    code, status, default_message = "SIZE_INVALID", 400, "provided length did not match content length"


class Unauthorized(RegistryError):
    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"


class Denied(RegistryError):
    code, status, default_message = "DENIED", 403, "requested access to the resource is denied"


class Unsupported(RegistryError):
    code, status, default_message = "UNSUPPORTED", 405, "the operation is unsupported"


class TooManyRequests(RegistryError):
    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"


# Codes beyond the OCI list, as Distribution sends them.


class RangeInvalid(RegistryError):
    """An unsatisfiable ``Range`` or an out-of-order ``Content-Range`` (416)."""

    code, status, default_message = "RANGE_INVALID", 416, "requested range not satisfiable"


class ManifestTooLarge(RegistryError):
    code, status, default_message = "SIZE_INVALID", 413, "manifest exceeds the size limit"


class NotFound(RegistryError):
    """A path that no route matches (Distribution answers 404 with this shape too)."""

    code, status, default_message = "NOT_FOUND", 404, "no such endpoint"


class MethodNotAllowed(RegistryError):
    code, status, default_message = "UNSUPPORTED", 405, "method not allowed on this endpoint"


class BadRequest(RegistryError):
    code, status, default_message = "UNSUPPORTED", 400, "malformed request"


class Unavailable(RegistryError):
    """Storage failed in a way that may pass (503 tells clients to retry)."""

    code, status, default_message = "UNAVAILABLE", 503, "storage is unavailable, retry later"


class InternalError(RegistryError):
    code, status, default_message = "UNKNOWN", 500, "internal server error"
