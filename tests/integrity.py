"""A storage integrity check shared by the fault, crash and concurrency tests.

`check_storage(driver)` walks everything a driver holds (in Distribution's layout, built by
registry.storage.paths) and lists every broken promise:

- every blob's data hashes to the digest its path names (no wrong or partial blob is stored);
- every layer link, revision link, tag link and referrer link holds the digest its path names and that
  blob's data exists (no link without its blob);
- every tag's current link points at a manifest the repository has (a revision link);
- with `references=True`, every stored manifest's config, layers and child manifests are in its
  repository (deleting blobs breaks this legitimately, as in Distribution);
- every saved upload hash state equals the hash of the upload's data up to its offset, so a resumed
  upload can never be accepted under a digest its bytes do not have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from registry.digests import Digest, parse_digest
from registry.storage import paths
from registry.storage.driver import PathNotFoundError, StorageDriver
from registry.storage.hashstate import ResumableSha256

_HEX = r"[0-9a-f]{64}"
_BLOB = re.compile(rf"^{paths.BLOBS}/sha256/[0-9a-f]{{2}}/({_HEX})/data$")
_REPO = re.escape(paths.REPOSITORIES)
_LAYER = re.compile(rf"^{_REPO}/(.+)/_layers/sha256/({_HEX})/link$")
_REVISION = re.compile(rf"^{_REPO}/(.+)/_manifests/revisions/sha256/({_HEX})/link$")
_TAG_CURRENT = re.compile(rf"^{_REPO}/(.+)/_manifests/tags/([^/]+)/current/link$")
_TAG_INDEX = re.compile(rf"^{_REPO}/(.+)/_manifests/tags/([^/]+)/index/sha256/({_HEX})/link$")
_TAG_ANY = re.compile(rf"^{_REPO}/(.+)/_manifests/tags/([^/]+)/")
_REFERRER = re.compile(rf"^{_REPO}/(.+)/_referrers/sha256/({_HEX})/sha256/({_HEX})/link$")
_UPLOAD_DATA = re.compile(rf"^{_REPO}/(.+)/_uploads/([^/]+)/data$")
_HASHSTATE = re.compile(rf"^{_REPO}/(.+)/_uploads/([^/]+)/pyhashstate-sha256-(\d+)$")


@dataclasses.dataclass
class Report:
    problems: list[str] = dataclasses.field(default_factory=list)
    blobs: int = 0
    links: int = 0
    manifests: int = 0
    tags: int = 0
    uploads: int = 0
    #: tags whose directory exists without a current link (the index entry was written, the current
    #: link was not): listed by tags/list, answered 404 by GET, as in Distribution. Not a problem.
    half_tags: list[str] = dataclasses.field(default_factory=list)


def _digest(hex_: str) -> Digest:
    return parse_digest(f"sha256:{hex_}")


def check_storage(driver: StorageDriver, *, references: bool = True) -> Report:
    """Check every promise listed in the module docstring; ``report.problems`` is empty when all hold."""
    report = Report()
    try:
        files = sorted(info.path for info in driver.walk("/") if not info.is_dir)
    except PathNotFoundError:
        return report
    present = set(files)

    def content(path: str) -> bytes | None:
        try:
            return driver.get_content(path)
        except PathNotFoundError:  # removed since the walk (a concurrent delete)
            return None

    def has_blob(d: Digest) -> bool:
        return paths.blob_data(d) in present

    def check_link(path: str, d: Digest) -> None:
        report.links += 1
        raw = content(path)
        if raw is not None and raw.strip() != str(d).encode():
            report.problems.append(f"{path}: holds {raw[:80]!r}, not {d}")
        if not has_blob(d):
            report.problems.append(f"{path}: links {d}, whose blob data is missing")

    tag_dirs: set[tuple[str, str]] = set()
    current_tags: set[tuple[str, str]] = set()
    uploads: dict[tuple[str, str], bytes | None] = {}
    for path in files:
        if m := _BLOB.match(path):
            report.blobs += 1
            data = content(path)
            if data is not None and hashlib.sha256(data).hexdigest() != m.group(1):
                report.problems.append(f"{path}: content hashes to sha256:{hashlib.sha256(data).hexdigest()}")
        elif m := _LAYER.match(path):
            check_link(path, _digest(m.group(2)))
        elif m := _REVISION.match(path):
            name, d = m.group(1), _digest(m.group(2))
            report.manifests += 1
            check_link(path, d)
            if references and has_blob(d):
                _check_references(report, name, d, content(paths.blob_data(d)), present)
        elif m := _TAG_CURRENT.match(path):
            name, tag = m.group(1), m.group(2)
            current_tags.add((name, tag))
            raw = content(path)
            if raw is None:
                continue
            report.tags += 1
            try:
                d = parse_digest(raw.decode().strip())
            except Exception:
                report.problems.append(f"{path}: not a digest: {raw[:80]!r}")
                continue
            check_link(path, d)
            if paths.revision_link(name, d) not in present:
                report.problems.append(f"tag {name}:{tag} points at {d}, which the repository does not have")
        elif (m := _TAG_INDEX.match(path)) or (m := _REFERRER.match(path)):
            check_link(path, _digest(m.group(3)))
        elif m := _UPLOAD_DATA.match(path):
            report.uploads += 1
            uploads[(m.group(1), m.group(2))] = content(path)
        if m := _TAG_ANY.match(path):
            tag_dirs.add((m.group(1), m.group(2)))
    report.half_tags = sorted(f"{n}:{t}" for n, t in tag_dirs - current_tags)
    for path in files:
        if m := _HASHSTATE.match(path):
            _check_hashstate(report, path, int(m.group(3)), uploads.get((m.group(1), m.group(2))), content(path))
    return report


def _check_references(report: Report, name: str, d: Digest, raw: bytes | None, present: set[str]) -> None:
    if raw is None:
        return
    try:
        doc = json.loads(raw)
    except ValueError:
        report.problems.append(f"manifest {name}@{d} is not JSON")
        return
    blobs = [doc["config"]] if isinstance(doc.get("config"), dict) else []
    blobs += [x for x in doc.get("layers") or () if isinstance(x, dict) and not x.get("urls")]
    for desc in blobs:
        b = parse_digest(desc["digest"])
        if paths.layer_link(name, b) not in present and paths.revision_link(name, b) not in present:
            report.problems.append(f"manifest {name}@{d} references blob {b}, not linked in the repository")
    for desc in doc.get("manifests") or ():
        c = parse_digest(desc["digest"])
        if paths.revision_link(name, c) not in present:
            report.problems.append(f"index {name}@{d} references manifest {c}, not in the repository")


def _check_hashstate(report: Report, path: str, offset: int, data: bytes | None, state: bytes | None) -> None:
    if data is None or state is None:
        return  # the upload finished or was cancelled meanwhile
    if offset > len(data):
        report.problems.append(f"{path}: hash state at {offset} beyond the upload's {len(data)} bytes")
        return
    try:
        saved = ResumableSha256.from_state(state, offset).hexdigest()
    except (ValueError, RuntimeError):
        return  # another OpenSSL build's state (or none at all): never used, the data is re-hashed instead
    if saved != hashlib.sha256(data[:offset]).hexdigest():
        report.problems.append(f"{path}: hash state does not match the upload's first {offset} bytes")
