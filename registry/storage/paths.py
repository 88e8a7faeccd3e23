"""The storage layout, identical to CNCF Distribution's (``registry/storage/paths.go``).

Every storage path the core uses is built here, from values that were validated by the spec's
grammars (names, tags) or by :func:`registry.digests.parse_digest`. Nothing else joins strings
into storage paths. A directory or bucket written by Distribution is served by us, and the other
way round; ``tests/test_paths.py`` pins every path.

    /docker/registry/v2/
      blobs/<alg>/<hex[:2]>/<hex>/data
      _quarantine/blobs/<alg>/<hex>/data              (ours: what `registry scrub --quarantine` set aside)
      _gc/<id>                                        (ours: a garbage collection's clock probe, removed)
      repositories/<name>/
        _layers/<alg>/<hex>/link                      -> "<alg>:<hex>"
        _manifests/revisions/<alg>/<hex>/link
        _manifests/tags/<tag>/current/link
        _manifests/tags/<tag>/index/<alg>/<hex>/link
        _uploads/<id>/data
        _uploads/<id>/startedat
        _uploads/<id>/committing                       (ours: the data while PUT checks its digest)
        _uploads/<id>/hashstates/<alg>/<offset>        (Distribution's Go hash states; never read)
        _uploads/<id>/pyhashstate-<alg>-<offset>       (ours: OpenSSL context, see hashstate.py)
        _referrers/<alg>/<hex>/<alg>/<hex>/link        (ours: subject -> referrer; Distribution ignores it)
        _usage/<writer>                                (ours, with quotas: usage counters, see ops/quota.py)
"""

from __future__ import annotations

from registry.digests import Digest

ROOT = "/docker/registry/v2"
BLOBS = f"{ROOT}/blobs"
REPOSITORIES = f"{ROOT}/repositories"
QUARANTINE = f"{ROOT}/_quarantine"
GC_DIR = f"{ROOT}/_gc"


def blob_dir(d: Digest) -> str:
    return f"{BLOBS}/{d.algorithm}/{d.hex[:2]}/{d.hex}"


def blob_data(d: Digest) -> str:
    return f"{blob_dir(d)}/data"


def quarantine_blob(d: Digest) -> str:
    """Where ``registry scrub --quarantine`` moves a blob whose content does not match its digest:
    outside ``blobs/``, so it is no longer served, nor seen by either registry's GC."""
    return f"{QUARANTINE}/blobs/{d.algorithm}/{d.hex}/data"


def gc_probe(probe_id: str) -> str:
    """A file a garbage collection writes and removes at once, to read the storage's own clock."""
    return f"{GC_DIR}/{probe_id}"


def revisions_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/revisions"


def referrers_root(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_referrers"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, d: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_layers/{d.algorithm}/{d.hex}/link"


def layers_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_layers"


def manifests_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests"


def revision_dir(name: str, d: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/revisions/{d.algorithm}/{d.hex}"


def revision_link(name: str, d: Digest) -> str:
    return f"{revision_dir(name, d)}/link"


def tags_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_dir(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/index"


def tag_index_link(name: str, tag: str, d: Digest) -> str:
    return f"{tag_dir(name, tag)}/index/{d.algorithm}/{d.hex}/link"


def uploads_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/data"


def upload_committing(name: str, upload_id: str) -> str:
    """Where an upload's data is moved while its digest is checked: no writer can reach it there."""
    return f"{upload_dir(name, upload_id)}/committing"


def upload_started_at(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/startedat"


def upload_hashstate(name: str, upload_id: str, algorithm: str, offset: int) -> str:
    # Flat in the upload's directory: two directories per upload cost more to create and remove
    # than the state file itself.
    return f"{upload_dir(name, upload_id)}/pyhashstate-{algorithm}-{offset}"


def referrers_dir(name: str, subject: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_referrers/{subject.algorithm}/{subject.hex}"


def referrer_link(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers_dir(name, subject)}/{referrer.algorithm}/{referrer.hex}/link"


def usage_dir(name: str) -> str:
    """Usage counters of a repository or namespace (``name`` is a name's leading components): one
    file per writing process, so that no two processes ever rewrite the same file."""
    return f"{REPOSITORIES}/{name}/_usage"


def usage_file(name: str, writer: str) -> str:
    return f"{usage_dir(name)}/{writer}"
