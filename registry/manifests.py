"""Manifest parsing and validation, and a cache of manifest bytes by digest. Manifests stay bytes:
the digest covers exactly what is stored.

Accepted: OCI image manifest and index, Docker schema 2 manifest and manifest list, OCI artifacts
(``artifactType``, empty config). Docker schema 1 is refused with an explanation.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

from registry.digests import Digest, digest_of, parse_digest
from registry.errors import DigestInvalid, ManifestInvalid

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = IMAGE_TYPES + INDEX_TYPES

#: The spec's recommended limit; larger manifests get 413.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024

#: Docker's foreign layers live elsewhere (``urls``); Distribution does not require them locally.
FOREIGN_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A validated manifest: its exact bytes plus what the registry needs to know about it."""

    raw: bytes
    digest: Digest
    media_type: str
    blobs: tuple[Digest, ...]  # config and layers that must exist in the repository
    children: tuple[Digest, ...]  # manifests an index refers to
    subject: Digest | None
    artifact_type: str | None
    annotations: dict[str, str]


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ManifestInvalid(f"duplicate key {key!r} in manifest JSON")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    base = resources.files("registry") / "schemas"
    names = ("descriptor.json", "image-manifest.json", "image-index.json")
    docs = {n: json.loads((base / n).read_text()) for n in names}
    store = Registry().with_resources(
        (f"https://registry.invalid/schemas/{n}", Resource.from_contents(d)) for n, d in docs.items()
    )
    return {
        kind: jsonschema.Draft202012Validator(docs[f"{kind}.json"], registry=store)
        for kind in ("image-manifest", "image-index")
    }


#: Manifests up to this many bytes have their media type remembered, by content (so never stale):
#: otherwise every manifest GET parses the whole document for one field. At most 1024 are kept.
MEDIA_TYPE_CACHE_LIMIT = 16384


def media_type_of(raw: bytes) -> str:
    """The media type of stored manifest bytes (for ``Content-Type`` on GET)."""
    if type(raw) is bytes and len(raw) <= MEDIA_TYPE_CACHE_LIMIT:
        return _cached_media_type(raw)
    return _parse_media_type(raw)


@lru_cache(maxsize=1024)
def _cached_media_type(raw: bytes) -> str:
    return _parse_media_type(raw)


def _parse_media_type(raw: bytes) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        return OCI_MANIFEST
    return _media_type(doc) or OCI_MANIFEST


def _media_type(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return None
    mt = doc.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc or "layers" in doc:
        return OCI_MANIFEST
    return None


class ManifestCache:
    """Small manifests' bytes by digest, least recently used first out, bounded by total size.

    Manifests are content-addressed: the bytes stored for a digest never change, so a cached copy
    cannot go stale, in this process or because another one shares the storage. Whether a
    repository still has the manifest (its revision link) and what a tag points at are not cached:
    :meth:`registry.storage.store.Store.get_manifest` reads both on every request. Only bytes that
    hash to their digest are kept, so a damaged file is served as before but never remembered.
    Thread-safe.

    :param max_bytes: the most bytes held in all (0 turns the cache off).
    :param max_item: larger manifests are not cached.
    """

    def __init__(self, max_bytes: int = 8 << 20, max_item: int = 64 << 10) -> None:
        self.max_bytes, self.max_item = max_bytes, min(max_item, max_bytes)
        self.size = 0
        self._items: OrderedDict[Digest, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, d: Digest) -> bytes | None:
        """The cached bytes of ``d``, or ``None``."""
        with self._lock:
            raw = self._items.get(d)
            if raw is not None:
                self._items.move_to_end(d)
            return raw

    def put(self, d: Digest, raw: bytes) -> None:
        """Remember ``raw`` as the bytes of ``d`` if it is small enough and really hashes to ``d``."""
        if len(raw) > self.max_item or type(raw) is not bytes or digest_of(raw, d.algorithm) != d:
            return
        with self._lock:
            if d in self._items:
                return
            self._items[d] = raw
            self.size += len(raw)
            while self.size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.size -= len(old)

    def __len__(self) -> int:
        return len(self._items)


def parse_manifest(raw: bytes, content_type: str | None) -> Manifest:
    """Validate ``raw`` as a manifest; raises :class:`ManifestInvalid` with the reason."""
    try:
        # Only what Go clients (containerd, docker, skopeo) can read back, or a tag could point at a
        # manifest nobody can pull: UTF-8 without a byte order mark (json.loads alone would take UTF-16,
        # UTF-32 and a BOM), no NaN or Infinity, and fractions kept as Decimal so the schemas' "integer"
        # refuses "size": 5.0 and "schemaVersion": 2.0, which Go will not unmarshal into an int.
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):
            raise ValueError("a byte order mark is not allowed")
        doc = json.loads(text, object_pairs_hook=_reject_duplicates, parse_float=Decimal,
                         parse_constant=_reject_constant)
    except ManifestInvalid:
        raise
    except (ValueError, RecursionError) as exc:
        raise ManifestInvalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    declared = content_type.split(";", 1)[0].strip().lower() if content_type else ""
    if doc.get("schemaVersion") == 1 or declared in DOCKER_SCHEMA1 or doc.get("mediaType") in DOCKER_SCHEMA1:
        raise ManifestInvalid(
            "Docker schema 1 manifests are not supported; push with a current client (OCI or Docker schema 2)"
        )
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise ManifestInvalid("mediaType must be a string")
    if body_type and declared and declared != body_type and declared not in ("application/json", "*/*"):
        raise ManifestInvalid(f"Content-Type {declared!r} does not match the manifest's mediaType {body_type!r}")
    media_type = body_type or (declared if declared in MANIFEST_TYPES else None) or _media_type(doc)
    if media_type not in MANIFEST_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type {media_type!r}")
    kind = "image-index" if media_type in INDEX_TYPES else "image-manifest"
    errors = sorted(_validators()[kind].iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        raise ManifestInvalid(f"{where}: {first.message}", detail={"errors": len(errors)})
    if kind == "image-manifest" and "manifests" in doc:
        raise ManifestInvalid("an image manifest must not have 'manifests'")
    if kind == "image-index" and ("config" in doc or "layers" in doc):
        raise ManifestInvalid("an index must not have 'config' or 'layers'")

    blobs: list[Digest] = []
    children: list[Digest] = []
    if kind == "image-manifest":
        blobs.append(_descriptor_digest(doc["config"], "config"))
        for i, layer in enumerate(doc["layers"]):
            d = _descriptor_digest(layer, f"layers/{i}")
            if layer.get("mediaType") in FOREIGN_LAYER_TYPES and layer.get("urls"):
                continue
            blobs.append(d)
    else:
        for i, child in enumerate(doc["manifests"]):
            children.append(_descriptor_digest(child, f"manifests/{i}"))
    subject = _descriptor_digest(doc["subject"], "subject") if "subject" in doc else None
    artifact_type = doc.get("artifactType")
    if artifact_type is None and kind == "image-manifest":
        # The distribution spec's rule for the referrers list: fall back to the config's media type.
        artifact_type = doc["config"].get("mediaType")
    return Manifest(
        raw=raw,
        digest=digest_of(raw),
        media_type=media_type,
        blobs=tuple(dict.fromkeys(blobs)),
        children=tuple(dict.fromkeys(children)),
        subject=subject,
        artifact_type=artifact_type,
        annotations=dict(doc.get("annotations") or {}),
    )


def manifest_references(raw: bytes) -> list[dict[str, Any]]:
    """The descriptors a stored manifest refers to (config and layers, or an index's manifests), each
    as ``mediaType``, ``digest`` and ``size``: an event's ``target.references`` when
    ``notifications.events.includereferences`` is set, as Distribution sends them. Empty for bytes
    that are not a manifest (never raises: an event must not fail the request)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return []
    if not isinstance(doc, dict):
        return []
    found = [doc.get("config"), *(doc.get("layers") or ()), *(doc.get("manifests") or ())]
    return [{k: d[k] for k in ("mediaType", "digest", "size") if k in d} for d in found
            if isinstance(d, dict) and isinstance(d.get("digest"), str)]


def _descriptor_digest(desc: dict[str, Any], where: str) -> Digest:
    try:
        return parse_digest(desc["digest"])
    except DigestInvalid as exc:
        raise ManifestInvalid(f"{where}: {exc.message}") from None
