"""``DELETE /v2/_repositories/<name>``: delete a repository (ours; docs/operations.md).

Needs ``repository:<name>:delete`` from the access controller, and ``storage.delete.enabled``; the
catalog no longer lists the repository afterwards. Blobs are left to ``registry garbage-collect``.
Listeners get the ``delete`` events a client deleting each tag and manifest would cause.
"""

from __future__ import annotations

import json

import falcon

from registry.errors import NameUnknown, Unsupported
from registry.handlers.base import Context, check_name, delete
from registry.ops.repodelete import RepositoryUnknownError, delete_repository


class RepositoryResource:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        check_name(name)
        self.ctx.authorize(req, delete(name))
        if not self.ctx.delete_enabled:
            raise Unsupported("deletion is disabled (storage.delete.enabled is false)")
        try:
            done = delete_repository(self.ctx.store, name)
        except RepositoryUnknownError:
            raise NameUnknown(f"repository {name!r} is not known to this registry", detail={"name": name}) from None
        for tag in done.deleted_tags:
            self.ctx.emit(req, "delete", name, {"tag": tag})
        for digest in done.deleted_manifests:
            self.ctx.emit(req, "delete", name, {"digest": digest})
        resp.status = falcon.HTTP_202
        resp.content_type = "application/json"
        resp.data = json.dumps(done.as_dict()).encode()
