"""What every handler shares: the registry context, name validation, auth and events."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random
import re
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import falcon
import pluggy

from registry.auth import Access, AccessController, Grant, access_detail
from registry.digests import Digest, parse_digest
from registry.errors import Denied, RegistryError
from registry.grammar import check_name  # noqa: F401 - the handlers import it from here
from registry.plugins import call_each
from registry.proxy import PullThroughCache
from registry.routing import TAG_RE
from registry.storage.store import Store
from registry.storage.uploads import Uploads

log = logging.getLogger(__name__)

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")

#: The header carrying a request's id, in and out (as proxies and Distribution's clients use it).
REQUEST_ID_HEADER = "X-Request-Id"

# An incoming id is kept only if it is a short HTTP token (RFC 9110 tchar): it goes into logs,
# events and a response header, where a long or odd one could forge lines or break parsers.
_REQUEST_ID = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")


# A version-4 UUID's fixed bits: the version nibble (4) and the RFC 4122 variant (0b10).
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


def new_request_id() -> str:
    """A random version-4 UUID, in a third of ``str(uuid.uuid4())``'s time (every request makes
    one; a manifest pull is short enough for that to show). A request id names, it does not guard:
    :mod:`random` (reseeded in every forked process) is random enough."""
    h = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_id(req: falcon.Request) -> str:
    """The request's id: its ``X-Request-Id`` if that is a token of at most 128 characters, else
    a new UUID; made on first use and kept in ``req.context.request_id``."""
    rid = req.context.get("request_id")
    if rid is None:
        incoming = req.get_header(REQUEST_ID_HEADER)
        rid = incoming if incoming is not None and _REQUEST_ID.fullmatch(incoming) else new_request_id()
        req.context.request_id = rid
    return rid


_ANONYMOUS = Grant()


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
    #: ``http.host``: the base of the URLs in events, instead of the request's own.
    external_url: str | None = None
    instance_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    source_addr: str = dataclasses.field(default_factory=socket.gethostname)
    #: ``notifications.events.includereferences``: manifest events carry ``target.references``.
    include_references: bool = False
    #: ``proxy:``: the pull-through cache, ``None`` when the registry is not one.
    proxy: PullThroughCache | None = None

    def authorize(self, req: falcon.Request, access: Sequence[Access]) -> Grant:
        """Authenticate ``req`` and check it may perform ``access``; raise an OCI error if not.

        The grant is kept in ``req.context.grant`` (and its identity in ``req.context.identity``)
        for the request's events.
        """
        grant = self.access.authorize(req, access) if self.access is not None else _ANONYMOUS
        hook = self.pm.hook.registry_authorize
        # A pluggy call costs more than the rest of this method: skip it when nothing implements it.
        if hook.get_hookimpls():
            # An implementation may also raise AuthenticationRequired (401) or Denied itself.
            verdict = hook(request=req, identity=grant.identity, access=list(access), grant=grant)
            if verdict is False:
                if grant.identity is None and self.access is not None:
                    challenge = self.access.challenge(req, access)
                    if challenge is not None:
                        raise challenge
                raise Denied(detail=access_detail(access))
        req.context.grant = grant
        req.context.identity = grant.identity
        return grant

    def wants_events(self) -> bool:
        """Whether any plugin implements ``registry_event``: building an event is wasted otherwise."""
        return bool(self.pm.hook.registry_event.get_hookimpls())

    def emit(self, req: falcon.Request, action: str, name: str, target: Mapping[str, Any],
             kind: str = "blobs") -> None:
        """Send a Distribution-shaped event to every ``registry_event`` implementation.

        :param kind: ``blobs`` or ``manifests``: which URL a push, pull or mount target links to.
        """
        if not self.wants_events():
            return
        full = {"repository": name, **target}
        if action != "delete" and "digest" in full and "url" not in full:
            base = self.external_url + req.root_path if self.external_url else req.prefix
            full["url"] = f"{base}/v2/{name}/{kind}/{full['digest']}"
        identity = req.context.get("identity")
        event = {
            "id": str(uuid.uuid4()),
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
            "action": action,
            "target": full,
            "request": {
                "id": request_id(req),
                "addr": req.remote_addr or "",
                "host": req.host,
                "method": req.method,
                "useragent": req.user_agent or "",
            },
            "actor": {"name": identity} if identity else {},
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
