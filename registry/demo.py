"""``registry demo-image``: a small, valid OCI image layout written offline, for the quickstart.

The layout holds one image: a single gzip layer with one file (``/hello.txt``), an image config and a
manifest, named by ``org.opencontainers.image.ref.name`` in ``index.json``, so that
``skopeo copy oci:DIR:TAG docker://HOST/REPO:TAG`` can push it. The bytes are deterministic (tar and
gzip timestamps are fixed), so the same arguments always give the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
from dataclasses import dataclass
from pathlib import Path

from registry.grammar import TAG_RE

LAYOUT_MEDIA = "application/vnd.oci.layout.header.v1+json"
INDEX_MEDIA = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

# Python's platform.machine() names -> the GOARCH values image configs use.
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_arch() -> str:
    """The host's architecture as an image config names it (``amd64``, ``arm64``...)."""
    machine = platform.machine().lower()
    return _ARCHES.get(machine, machine)


@dataclass(frozen=True)
class DemoImage:
    """What :func:`write_demo_image` wrote: the layout directory, the tag and the manifest's digest."""

    directory: Path
    tag: str
    manifest_digest: str
    manifest_size: int


def _blob(blobs: Path, data: bytes) -> tuple[str, int]:
    hexdigest = hashlib.sha256(data).hexdigest()
    (blobs / hexdigest).write_bytes(data)
    return f"sha256:{hexdigest}", len(data)


def _layer(text: str) -> tuple[bytes, bytes]:
    """The layer tar and its gzip; fixed owner, mode and times, so the digests never change."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        content = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode, info.mtime, info.uid, info.gid = len(content), 0o644, 0, 0, 0
        tar.addfile(info, io.BytesIO(content))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return raw.getvalue(), packed.getvalue()


def write_demo_image(directory: str | Path, tag: str = "demo", arch: str | None = None) -> DemoImage:
    """Write (or add to) an OCI image layout at ``directory`` holding a one-file image tagged ``tag``.

    An existing layout keeps its other images; an image of the same tag is replaced in ``index.json``.

    :raises ValueError: when ``tag`` is not a valid tag, or ``directory`` is a file or a directory
        that is neither empty nor an OCI layout.
    """
    if not TAG_RE.match(tag):
        raise ValueError(f"invalid tag {tag!r}: up to 128 of [A-Za-z0-9_.-], not starting with . or -")
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()) and not (root / "oci-layout").is_file():
        raise ValueError(f"{root} is not empty and not an OCI image layout (no oci-layout file)")
    arch = arch or host_arch()
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    tar, tgz = _layer(f"Hello from registry demo-image ({tag}, linux/{arch}).\n")
    diff_id = f"sha256:{hashlib.sha256(tar).hexdigest()}"
    layer_digest, layer_size = _blob(blobs, tgz)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/hello.txt"], "Labels": {"org.opencontainers.image.title": "registry demo-image"}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "registry demo-image", "comment": "one file, /hello.txt"}],
    }
    config_digest, config_size = _blob(blobs, json.dumps(config, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA,
        "config": {"mediaType": CONFIG_MEDIA, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": LAYER_MEDIA, "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = _blob(blobs, json.dumps(manifest, separators=(",", ":")).encode())

    index_path = root / "index.json"
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA, "manifests": []}
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text())
        except ValueError as exc:
            raise ValueError(f"{index_path} is not JSON: {exc}") from None
    others = [m for m in index.get("manifests", []) if (m.get("annotations") or {}).get(REF_NAME) != tag]
    entry = {
        "mediaType": MANIFEST_MEDIA,
        "digest": manifest_digest,
        "size": manifest_size,
        "platform": {"architecture": arch, "os": "linux"},
        "annotations": {REF_NAME: tag},
    }
    index["manifests"] = [*others, entry]
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return DemoImage(root, tag, manifest_digest, manifest_size)
