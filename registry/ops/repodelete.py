"""Repository delete: every tag, manifest revision, layer link, referrer index entry and upload of
one repository, through :class:`registry.storage.store.Store` (so that anything hooked into its link
and unlink methods, such as usage counters, sees each removal). Blobs stay in the global store for
``registry garbage-collect``: another repository may share them.

A repository's directory also holds the directories of the repositories nested below it (``a`` holds
``a/b``), so only the repository's own ``_``-prefixed directories are removed, never the directory
itself.
"""

from __future__ import annotations

import dataclasses
import logging

from registry.ops.layout import linked_digests, references
from registry.storage import paths
from registry.storage.driver import PathNotFoundError
from registry.storage.store import Store

log = logging.getLogger(__name__)


class RepositoryUnknownError(LookupError):
    """The repository does not exist (nothing was pushed to it, or it was deleted)."""


@dataclasses.dataclass
class RepositoryDeleted:
    """What :func:`delete_repository` removed."""

    name: str
    tags: int = 0
    manifests: int = 0
    layers: int = 0
    #: What went, for the delete events the API sends.
    deleted_tags: list[str] = dataclasses.field(default_factory=list)
    deleted_manifests: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The counts (the API's response body)."""
        return {"name": self.name, "tags": self.tags, "manifests": self.manifests, "layers": self.layers}


def delete_repository(store: Store, name: str) -> RepositoryDeleted:
    """Delete repository ``name`` (already validated by the grammar). Tags go first, so that a pull
    by tag fails as soon as the delete starts; a storage failure part-way leaves a smaller
    repository, and running the delete again finishes it.

    :raises RepositoryUnknownError: when the catalog does not list ``name``.
    """
    if not store.repository_exists(name):
        raise RepositoryUnknownError(name)
    driver = store.driver
    done = RepositoryDeleted(name)
    try:
        tags = store.tags(name)
    except PathNotFoundError:
        tags = []
    for tag in tags:
        if store.untag(name, tag):
            done.tags += 1
            done.deleted_tags.append(tag)
    for d in linked_digests(driver, paths.revisions_dir(name)):
        subject = None
        try:
            refs = references(store.read_blob(d))
            subject = refs.subject if refs is not None else None
        except PathNotFoundError:
            pass
        if store.delete_manifest(name, d):
            done.manifests += 1
            done.deleted_manifests.append(str(d))
        if subject is not None:
            store.remove_referrer(name, subject, d)
    for d in linked_digests(driver, paths.layers_dir(name)):
        if store.unlink_layer(name, d):
            done.layers += 1
    # What is left: empty directories on a file system, referrer entries of subjects that were not
    # revisions here, unfinished uploads. Never the repository directory: nested ones live in it.
    for sub in (paths.manifests_dir(name), paths.layers_dir(name), paths.referrers_root(name),
                paths.uploads_dir(name)):
        try:
            driver.delete(sub)
        except PathNotFoundError:
            pass
    log.info("deleted repository %s: %d tags, %d manifests, %d layer links", name, done.tags, done.manifests,
             done.layers)
    return done
