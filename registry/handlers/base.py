"""What every handler shares: the registry context, name validation, auth and events."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import falcon
import pluggy

from registry.auth import Access, AccessController, Grant
from registry.digests import Digest, parse_digest
from registry.errors import Denied, RegistryError
from registry.grammar import check_name  # noqa: F401 - the handlers import it from here
from registry.plugins import call_each
from registry.routing import TAG_RE
from registry.storage.store import Store
from registry.storage.uploads import Uploads

log = logging.getLogger(__name__)

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")


@dataclasses.dataclass
class Context:
    """Everything a handler needs, built once by :func:`registry.app.create_app`."""

    store: Store
    uploads: Uploads
    pm: pluggy.PluginManager
    access: AccessController | None = None
    delete_enabled: bool = False
    redirect_enabled: bool = True
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    instance_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    source_addr: str = dataclasses.field(default_factory=socket.gethostname)

    def authorize(self, req: falcon.Request, access: Sequence[Access]) -> Grant:
        """Authenticate ``req`` and check it may perform ``access``; raise an OCI error if not."""
        grant = self.access.authorize(req, access) if self.access is not None else Grant()
        hook = self.pm.hook.registry_authorize
        # A pluggy call costs more than the rest of this method: skip it when nothing implements it.
        verdict = hook(request=req, identity=grant.identity, access=list(access)) if hook.get_hookimpls() else None
        if verdict is False:
            raise Denied(detail=[{"Type": a.type, "Name": a.name, "Action": a.action} for a in access])
        req.context.identity = grant.identity
        return grant

    def wants_events(self) -> bool:
        """Whether any plugin implements ``registry_event``: building an event is wasted otherwise."""
        return bool(self.pm.hook.registry_event.get_hookimpls())

    def emit(self, req: falcon.Request, action: str, name: str, target: Mapping[str, Any]) -> None:
        """Send a Distribution-shaped event to every ``registry_event`` implementation."""
        if not self.wants_events():
            return
        event = {
            "id": str(uuid.uuid4()),
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
            "action": action,
            "target": {"repository": name, **target},
            "request": {
                "id": req.context.get("request_id", ""),
                "addr": req.remote_addr or "",
                "host": req.host,
                "method": req.method,
                "useragent": req.user_agent or "",
            },
            "actor": {"name": req.context.get("identity")} if req.context.get("identity") else {},
            "source": {"addr": self.source_addr, "instanceID": self.instance_id},
        }
        call_each(self.pm, "registry_event", event=event)


def event_target(d: Digest, size: int, media_type: str = "application/octet-stream",
                 tag: str | None = None) -> dict[str, Any]:
    """An event's ``target`` for content: Distribution sends ``size`` and, deprecated, ``length``."""
    target: dict[str, Any] = {"mediaType": media_type, "digest": str(d), "size": size, "length": size}
    if tag:
        target["tag"] = tag
    return target


def check_digest(value: str) -> Digest:
    return parse_digest(value)


def is_tag(reference: str) -> bool:
    return bool(TAG_RE.match(reference))


def pull(name: str) -> list[Access]:
    return [Access("repository", name, "pull")]


def push(name: str) -> list[Access]:
    return [Access("repository", name, "pull"), Access("repository", name, "push")]


def delete(name: str) -> list[Access]:
    return [Access("repository", name, "delete")]


def url(req: falcon.Request, path: str) -> str:
    """A URL path for a Location or Link header: ``path`` under the app's mount point.

    ``req.root_path`` is the WSGI ``SCRIPT_NAME``, which waitress sets from ``http.prefix``.
    """
    return req.root_path + path


def upload_location(req: falcon.Request, name: str, upload_id: str) -> str:
    return url(req, f"/v2/{name}/blobs/uploads/{upload_id}")


def upload_headers(req: falcon.Request, resp: falcon.Response, name: str, upload_id: str, size: int) -> None:
    resp.set_header("Location", upload_location(req, name, upload_id))
    resp.set_header("Docker-Upload-UUID", upload_id)
    # Range is inclusive; an empty upload is "0-0" as Distribution and clients expect.
    resp.set_header("Range", f"0-{max(size - 1, 0)}")
    resp.content_length = 0


def content_length(req: falcon.Request) -> int | None:
    return req.content_length


__all__ = ["RegistryError"]
