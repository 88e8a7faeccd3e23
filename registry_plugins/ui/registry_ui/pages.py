"""The UI's pages: catalog, repository, manifest, delete confirmation, login; all server-rendered.

Every page is built from :class:`registry.storage.store.Store` with work bounded by what it shows:
the catalog reads one page of names from the store's ordered walk (``repositories(last, limit)``),
a repository page lists the tag names once and reads only the page's tags, and manifests come
through ``Store.get_manifest`` (the API's manifest cache). Image configs, which that cache does not
hold, are summarised in a small content-addressed cache of this module.
"""

from __future__ import annotations

import bisect
import datetime
import functools
import itertools
import json
import logging
import re
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import falcon
import jinja2

from registry.auth import Access
from registry.config import readonly_enabled
from registry.errors import RegistryError
from registry.grammar import MAX_NAME_LENGTH, NAME_RE, TAG_RE, Digest, parse_digest
from registry.storage.driver import PathNotFoundError
from registry_ui.auth import SESSION_COOKIE, Csrf, LoginFailed, Sessions, Viewer, token_client_of

log = logging.getLogger(__name__)

INDEX_TYPES = frozenset({"application/vnd.oci.image.index.v1+json",
                         "application/vnd.docker.distribution.manifest.list.v2+json"})
#: Children of an index read for a tag row's total size; more are counted, not read.
MAX_CHILDREN_READ = 16
#: Referrers shown per manifest, and how deep referrers of referrers go.
MAX_REFERRERS = 200
REFERRER_DEPTH = 3
#: The largest form body read (a delete form is ~200 bytes, a login form a few hundred).
MAX_FORM = 4096

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# -- formatting ----------------------------------------------------------------------------------


def human_size(size: Any) -> str:
    """``1536`` → ``1.5 KiB``; ``—`` for anything that is not a size."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "—"
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Go writes nanoseconds; Python's parser takes at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        t = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=datetime.UTC)


def relative_time(t: datetime.datetime, now: datetime.datetime | None = None) -> str:
    """``3 days ago`` / ``in 2 hours``."""
    now = now or datetime.datetime.now(datetime.UTC)
    seconds = (now - t).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    n, unit = int(seconds), "second"
    for limit, div, name in ((3600, 60, "minute"), (86400, 3600, "hour"), (86400 * 30, 86400, "day"),
                             (86400 * 365, 86400 * 30, "month"), (float("inf"), 86400 * 365, "year")):
        if seconds < div:
            break
        n, unit = int(seconds // div), name
        if seconds < limit:
            break
    text = f"{n} {unit}{'' if n == 1 else 's'}"
    return f"in {text}" if future else f"{text} ago"


def short_digest(d: Any) -> str:
    text = str(d)
    alg, _, hexpart = text.partition(":")
    return f"{alg}:{hexpart[:12]}" if hexpart else text[:19]


def platform_text(p: Any) -> str:
    if not isinstance(p, Mapping):
        return "unknown"
    parts = [str(p.get("os") or "?"), str(p.get("architecture") or "?")]
    if p.get("variant"):
        parts.append(str(p["variant"]))
    return "/".join(parts)


# -- reading the store ---------------------------------------------------------------------------


class ConfigCache:
    """Image config summaries (created, platform) by digest: content-addressed, so never stale."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[Digest, dict[str, Any]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, store: Any, d: Digest) -> dict[str, Any]:
        with self._lock:
            hit = self._items.get(d)
            if hit is not None:
                self._items.move_to_end(d)
                return hit
        summary: dict[str, Any] = {}
        try:
            raw = store.read_blob(d)
            doc = json.loads(raw) if len(raw) <= (4 << 20) else {}
        except (PathNotFoundError, ValueError):
            doc = {}
        if isinstance(doc, dict):
            summary = {"created": doc.get("created"), "os": doc.get("os"), "architecture": doc.get("architecture"),
                       "variant": doc.get("variant"), "config": doc.get("config") if isinstance(
                           doc.get("config"), dict) else {}}
        with self._lock:
            self._items[d] = summary
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return summary


def load_json(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def descriptor_digest(desc: Any) -> Digest | None:
    if not isinstance(desc, Mapping):
        return None
    try:
        return parse_digest(str(desc.get("digest", "")))
    except RegistryError:
        return None


def descriptor_size(desc: Any) -> int:
    size = desc.get("size") if isinstance(desc, Mapping) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0


def media_type(doc: Mapping[str, Any]) -> str:
    mt = doc.get("mediaType")
    if isinstance(mt, str):
        return mt
    if "manifests" in doc:
        return "application/vnd.oci.image.index.v1+json"
    return "application/vnd.oci.image.manifest.v1+json"


def artifact_type(doc: Mapping[str, Any]) -> str:
    at = doc.get("artifactType")
    if isinstance(at, str) and at:
        return at
    cfg = doc.get("config")
    if isinstance(cfg, Mapping) and isinstance(cfg.get("mediaType"), str):
        return cfg["mediaType"]
    return media_type(doc)


def image_size(doc: Mapping[str, Any], raw_len: int) -> int:
    """An image's bytes: the manifest, its config and its layers."""
    layers = doc.get("layers") if isinstance(doc.get("layers"), list) else []
    return raw_len + descriptor_size(doc.get("config")) + sum(descriptor_size(x) for x in layers)


# -- the UI --------------------------------------------------------------------------------------


def _safe_next(value: str | None, base: str) -> str:
    """A same-site path to return to after login: only paths under the UI."""
    if value and value.startswith(base + "/") and "//" not in value and "\\" not in value:
        return value
    return base + "/"


class UI:
    """The pages of one app. ``ctx`` (the registry's :class:`~registry.handlers.base.Context`) is
    bound when the app starts (``registry_startup``)."""

    def __init__(self, options: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        self.config = config
        self.path = str(options.get("path") or "/ui").rstrip("/")
        self.title = str(options.get("title") or "Registry")
        self.page_size = int(options.get("pagesize") or 50)
        self.max_page_size = max(int(options.get("maxpagesize") or 200), self.page_size)
        self.pull_host = options.get("pullhost")
        # Read-only mode refuses every POST before it reaches the UI: offer no delete at all then.
        self.offer_delete = options.get("delete") is not False and not readonly_enabled(config)
        self.csrf = Csrf(options.get("secret"))
        self.sessions = Sessions()
        self.configs = ConfigCache()
        self.ctx: Any = None
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("registry_ui", "templates"),
            autoescape=True,  # every template, whatever its name: names, tags and annotations are hostile
        )
        self.env.filters.update(size=human_size, short=short_digest, platform=platform_text)
        self.env.globals.update(reltime=self._time_html)

    # -- plumbing ----------------------------------------------------------------------------------

    @staticmethod
    def _time_html(value: Any) -> Any:
        t = parse_time(value) if not isinstance(value, datetime.datetime) else value
        if t is None:
            return "—"
        exact = t.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return jinja2.utils.markupsafe.Markup('<time datetime="{}" title="{}">{}</time>').format(
            t.isoformat(), exact, relative_time(t))

    def base(self, req: falcon.Request) -> str:
        return req.root_path + self.path

    def viewer(self, req: falcon.Request) -> Viewer:
        tokens = token_client_of(self.ctx.access) if self.ctx.access is not None else None
        session = self.sessions.get(req.cookies.get(SESSION_COOKIE)) if tokens is not None else None
        return Viewer(self.ctx, req, tokens=tokens, session=session)

    def render(self, req: falcon.Request, resp: falcon.Response, template: str, viewer: Viewer | None,
               status: str = falcon.HTTP_200, **values: Any) -> None:
        base = self.base(req)
        page = self.env.get_template(template).render(
            base=base, title=self.title, viewer=viewer, here=req.relative_uri, quote=_quote, **values)
        resp.status = status
        resp.content_type = "text/html; charset=utf-8"
        resp.text = page

    def pull_ref_host(self, req: falcon.Request) -> str:
        if self.pull_host:
            return str(self.pull_host)
        external = getattr(self.ctx, "external_url", None)
        if external:
            return urllib.parse.urlsplit(external).netloc or req.netloc
        return req.netloc

    def page_size_of(self, req: falcon.Request) -> int:
        n = req.get_param("n")
        if n is None or not n.isdigit():
            return self.page_size
        return max(1, min(int(n), self.max_page_size))

    def fail(self, req: falcon.Request, resp: falcon.Response, viewer: Viewer | None, status: str,
             message: str) -> None:
        self.render(req, resp, "error.html", viewer, status=status, message=message)

    def refuse(self, req: falcon.Request, resp: falcon.Response, viewer: Viewer) -> None:
        """Not allowed: 401 (with the Basic challenge, so the browser asks) for an anonymous viewer,
        403 for a logged-in one. Both look like "not found" would not: the name exists or not, we say neither."""
        if viewer.identity is None and self.ctx.access is not None:
            if viewer.challenge is not None and viewer.challenge.challenge.lower().startswith("basic"):
                resp.set_header("WWW-Authenticate", viewer.challenge.challenge)
            self.fail(req, resp, viewer, falcon.HTTP_401, "Log in to see this repository.")
        else:
            self.fail(req, resp, viewer, falcon.HTTP_403, "You may not see this repository.")

    # -- catalog ---------------------------------------------------------------------------------

    def catalog(self, req: falcon.Request, resp: falcon.Response) -> None:
        viewer = self.viewer(req)
        if viewer.bad_credentials:
            return self.bad_login(req, resp, viewer)
        store = self.ctx.store
        q = (req.get_param("q") or "").strip()
        last = req.get_param("last") or None
        n = self.page_size_of(req)
        if len(q) > MAX_NAME_LENGTH or (q and not re.fullmatch(r"[a-z0-9._/-]*", q)):
            return self.fail(req, resp, viewer, falcon.HTTP_400,
                             "Search by the start of a repository name: lowercase letters, digits, . _ - and /.")
        if last is not None and (len(last) > MAX_NAME_LENGTH or not NAME_RE.match(last)):
            return self.fail(req, resp, viewer, falcon.HTTP_400, "That is not a repository name to continue after.")
        # One page of names from the store's ordered walk, read as they are shown. Names the viewer
        # may not pull are skipped, reading at most four pages' worth; one more name read says
        # whether there is a next page.
        budget = 4 * n
        names = self._names(store, q, last, budget + 1)
        shown: list[str] = []
        scanned, last_scanned = 0, None
        while len(shown) < n and scanned < budget:
            chunk = list(itertools.islice(names, min(n - len(shown), budget - scanned)))
            if not chunk:
                break
            viewer.prepare(Access("repository", c, "pull") for c in chunk)  # one token per chunk
            scanned, last_scanned = scanned + len(chunk), chunk[-1]
            shown += [c for c in chunk if viewer.can(c, "pull")]
        next_last = last_scanned if last_scanned is not None and next(names, None) is not None else None
        self.render(req, resp, "catalog.html", viewer, repositories=shown, q=q, n=n, last=last,
                    next_last=next_last)

    @staticmethod
    def _names(store: Any, q: str, last: str | None, limit: int) -> Iterator[str]:
        """Up to ``limit`` names starting with ``q``, after ``last``, in the store's (path) order.

        The names starting with ``q`` are contiguous in path order and follow ``q`` itself (without
        a trailing ``/``), so the walk starts there and stops at the first name past them.
        """
        if limit <= 0:
            return
        start = last
        if q and (last is None or not last.startswith(q)):
            start = q.rstrip("/")
            if start == q and NAME_RE.match(q) and store.repository_exists(q):
                yield q
                limit -= 1
        for name in store.repositories(last=start or None, limit=limit):
            if q and not name.startswith(q):
                return
            yield name

    # -- repository ------------------------------------------------------------------------------

    def check_name(self, name: str) -> bool:
        return len(name) <= MAX_NAME_LENGTH and bool(NAME_RE.match(name))

    def repository(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        viewer = self.viewer(req)
        if viewer.bad_credentials:
            return self.bad_login(req, resp, viewer)
        if not self.check_name(name):
            return self.fail(req, resp, viewer, falcon.HTTP_404, "No such repository.")
        viewer.prepare([Access("repository", name, "pull"), Access("repository", name, "delete")])
        if not viewer.can(name, "pull"):
            return self.refuse(req, resp, viewer)
        store = self.ctx.store
        try:
            tags = store.tags(name)
        except PathNotFoundError:
            tags = []
        if not tags and not store.repository_exists(name):
            return self.fail(req, resp, viewer, falcon.HTTP_404, "No such repository.")
        n = self.page_size_of(req)
        last = req.get_param("last")
        start = 0
        if last:
            start = bisect.bisect_right(tags, last)
        page = tags[start:start + n]
        rows = [self._tag_row(store, name, tag) for tag in page]
        next_last = page[-1] if start + n < len(tags) and page else None
        self.render(req, resp, "repository.html", viewer, name=name, rows=rows, total=len(tags), n=n,
                    next_last=next_last, last=last, host=self.pull_ref_host(req), deleted=req.get_param("deleted"),
                    can_delete=self.can_delete(viewer, name),
                    csrf=self.csrf.token(viewer.identity, name))

    def _tag_row(self, store: Any, name: str, tag: str) -> dict[str, Any]:
        row: dict[str, Any] = {"tag": tag, "digest": None}
        d = store.resolve_tag(name, tag)
        if d is None:
            return row
        row["digest"] = str(d)
        raw = store.get_manifest(name, d)
        doc = load_json(raw)
        if doc is None or raw is None:
            return row
        mt = media_type(doc)
        row["media_type"] = mt
        if mt in INDEX_TYPES or isinstance(doc.get("manifests"), list):
            children = [c for c in doc.get("manifests") or [] if isinstance(c, Mapping)]
            row["platforms"] = [platform_text(c.get("platform")) for c in children
                                if isinstance(c.get("platform"), Mapping)
                                and c["platform"].get("architecture") != "unknown"]
            total, complete = self._index_total(store, name, children, len(raw))
            row["size"] = total
            row["size_partial"] = not complete
            annotations = doc.get("annotations") if isinstance(doc.get("annotations"), Mapping) else {}
            row["created"] = annotations.get("org.opencontainers.image.created")
        else:
            row["size"] = image_size(doc, len(raw))
            cfg = descriptor_digest(doc.get("config"))
            summary = self.configs.get(store, cfg) if cfg is not None and descriptor_size(
                doc.get("config")) > 2 else {}
            row["created"] = summary.get("created")
            if summary.get("architecture"):
                row["platforms"] = [platform_text(summary)]
        return row

    @staticmethod
    def _index_total(store: Any, name: str, children: list[Any], raw_len: int) -> tuple[int, bool]:
        """An index's bytes (itself and each child image's) and whether every child was counted:
        at most :data:`MAX_CHILDREN_READ` children are read, through the manifest cache."""
        total, complete = raw_len, True
        for i, child in enumerate(children):
            cd = descriptor_digest(child)
            if i >= MAX_CHILDREN_READ or cd is None:
                complete = False
                continue
            craw = store.get_manifest(name, cd)
            cdoc = load_json(craw)
            if cdoc is None or craw is None:
                complete = False
                continue
            total += image_size(cdoc, len(craw))
        return total, complete

    def can_delete(self, viewer: Viewer, name: str) -> bool:
        return bool(self.offer_delete and self.ctx.delete_enabled and viewer.can(name, "delete"))

    # -- manifest --------------------------------------------------------------------------------

    def manifest(self, req: falcon.Request, resp: falcon.Response, name: str, reference: str) -> None:
        viewer = self.viewer(req)
        if viewer.bad_credentials:
            return self.bad_login(req, resp, viewer)
        if not self.check_name(name):
            return self.fail(req, resp, viewer, falcon.HTTP_404, "No such repository.")
        viewer.prepare([Access("repository", name, "pull"), Access("repository", name, "delete")])
        if not viewer.can(name, "pull"):
            return self.refuse(req, resp, viewer)
        store = self.ctx.store
        tag = None
        if TAG_RE.match(reference):
            tag = reference
            d = store.resolve_tag(name, tag)
            if d is None:
                return self.fail(req, resp, viewer, falcon.HTTP_404, "No such tag.")
        else:
            try:
                d = parse_digest(reference)
            except RegistryError:
                return self.fail(req, resp, viewer, falcon.HTTP_404, "No such manifest.")
        raw = store.get_manifest(name, d)
        doc = load_json(raw)
        if raw is None or doc is None:
            return self.fail(req, resp, viewer, falcon.HTTP_404, "No such manifest.")
        mt = media_type(doc)
        is_index = mt in INDEX_TYPES or isinstance(doc.get("manifests"), list)
        config_summary: dict[str, Any] = {}
        cfg = doc.get("config") if isinstance(doc.get("config"), Mapping) else None
        cfg_digest = descriptor_digest(cfg)
        if cfg_digest is not None and descriptor_size(cfg) > 2:
            config_summary = self.configs.get(store, cfg_digest)
        layers = [x for x in doc.get("layers") or [] if isinstance(x, Mapping)] if not is_index else []
        children = [c for c in doc.get("manifests") or [] if isinstance(c, Mapping)] if is_index else []
        annotations = doc.get("annotations") if isinstance(doc.get("annotations"), Mapping) else {}
        subject = doc.get("subject") if isinstance(doc.get("subject"), Mapping) else None
        budget = [MAX_REFERRERS]
        referrers = self._referrer_tree(store, name, d, REFERRER_DEPTH, budget)
        self.render(req, resp, "manifest.html", viewer, name=name, digest=str(d), tag=tag, media_type=mt,
                    size=len(raw), is_index=is_index, config=cfg, config_summary=config_summary,
                    layers=layers, children=children, annotations=annotations, subject=subject,
                    artifact_type=doc.get("artifactType") if isinstance(doc.get("artifactType"), str) else None,
                    total=image_size(doc, len(raw)) if not is_index else self._index_total(
                        store, name, children, len(raw))[0],
                    referrers=referrers, referrers_truncated=budget[0] <= 0, host=self.pull_ref_host(req),
                    can_delete=self.can_delete(viewer, name), csrf=self.csrf.token(viewer.identity, name),
                    raw=raw.decode("utf-8", "replace") if len(raw) <= 256 * 1024 else None)

    def _referrer_tree(self, store: Any, name: str, d: Digest, depth: int, budget: list[int]) -> list[dict[str, Any]]:
        """Referrers grouped by artifact type, each with its own referrers (signatures of an SBOM)."""
        if depth <= 0 or budget[0] <= 0:
            return []
        groups: dict[str, list[dict[str, Any]]] = {}
        for rd in store.referrers(name, d):
            if budget[0] <= 0:
                break
            budget[0] -= 1
            rraw = store.get_manifest(name, rd)
            rdoc = load_json(rraw) or {}
            annotations = rdoc.get("annotations") if isinstance(rdoc.get("annotations"), Mapping) else {}
            groups.setdefault(artifact_type(rdoc), []).append({
                "digest": str(rd), "media_type": media_type(rdoc), "annotations": annotations,
                "created": annotations.get("org.opencontainers.image.created"),
                "size": len(rraw or b""),
                "children": self._referrer_tree(store, name, rd, depth - 1, budget),
            })
        return [{"artifact_type": k, "items": v} for k, v in sorted(groups.items())]

    # -- delete ------------------------------------------------------------------------------------

    def delete_form(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        viewer = self.viewer(req)
        if viewer.bad_credentials:
            return self.bad_login(req, resp, viewer)
        target = self._delete_target(req.get_param("tag"), req.get_param("digest"))
        if not self.check_name(name) or target is None:
            return self.fail(req, resp, viewer, falcon.HTTP_404, "Nothing to delete here.")
        viewer.prepare([Access("repository", name, "pull"), Access("repository", name, "delete")])
        if not viewer.can(name, "pull"):
            return self.refuse(req, resp, viewer)
        if not self.can_delete(viewer, name):
            return self.fail(req, resp, viewer, falcon.HTTP_403, "You may not delete in this repository.")
        kind, ref = target
        self.render(req, resp, "delete.html", viewer, name=name, kind=kind, ref=ref,
                    csrf=self.csrf.token(viewer.identity, name))

    @staticmethod
    def _delete_target(tag: str | None, digest: str | None) -> tuple[str, str] | None:
        if tag and TAG_RE.match(tag) and not digest:
            return "tag", tag
        if digest and not tag:
            try:
                return "manifest", str(parse_digest(digest))
            except RegistryError:
                return None
        return None

    def delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        viewer = self.viewer(req)
        if viewer.bad_credentials:
            return self.bad_login(req, resp, viewer)
        form = self._form(req)
        if form is None:
            return self.fail(req, resp, viewer, falcon.HTTP_400, "Malformed form.")
        target = self._delete_target(form.get("tag"), form.get("digest"))
        if not self.check_name(name) or target is None:
            return self.fail(req, resp, viewer, falcon.HTTP_400, "Nothing to delete.")
        # Origin, when the browser sends it, must be this site: a second guard beside the token.
        origin = req.get_header("Origin")
        if origin and origin != "null" and urllib.parse.urlsplit(origin).netloc != req.netloc:
            return self.fail(req, resp, viewer, falcon.HTTP_403, "Cross-site form refused.")
        if not self.csrf.check(form.get("csrf"), viewer.identity, name):
            return self.fail(req, resp, viewer, falcon.HTTP_403,
                             "The form has expired or was not made by this site; reload the page and try again.")
        viewer.prepare([Access("repository", name, "delete")])
        if not self.can_delete(viewer, name):
            if not (self.offer_delete and self.ctx.delete_enabled):
                return self.fail(req, resp, viewer, falcon.HTTP_405, "Deletion is disabled.")
            return self.fail(req, resp, viewer, falcon.HTTP_403, "You may not delete in this repository.")
        kind, ref = target
        store = self.ctx.store
        # The same steps as the API's DELETE (registry.handlers.manifests), with its events.
        if kind == "tag":
            if not store.untag(name, ref):
                return self.fail(req, resp, viewer, falcon.HTTP_404, "No such tag.")
            self.ctx.emit(req, "delete", name, {"tag": ref})
        else:
            d = parse_digest(ref)
            raw = store.get_manifest(name, d)
            if raw is None or not store.delete_manifest(name, d):
                return self.fail(req, resp, viewer, falcon.HTTP_404, "No such manifest.")
            subject = descriptor_digest((load_json(raw) or {}).get("subject"))
            if subject is not None:
                store.remove_referrer(name, subject, d)
            self.ctx.emit(req, "delete", name, {"digest": str(d)})
        log.info("ui: %s deleted %s %s from %s", viewer.identity or "anonymous", kind, ref, name)
        resp.status = falcon.HTTP_303
        resp.location = f"{self.base(req)}/r/{_quote(name)}?deleted={urllib.parse.quote(ref, safe='')}"

    @staticmethod
    def _form(req: falcon.Request) -> dict[str, str] | None:
        if (req.content_length or 0) > MAX_FORM:
            return None
        try:
            raw = req.bounded_stream.read(MAX_FORM + 1)
            if len(raw) > MAX_FORM:
                return None
            body = raw.decode("utf-8")
            pairs = urllib.parse.parse_qsl(body, keep_blank_values=True, max_num_fields=16, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            return None
        return dict(pairs)

    # -- login -----------------------------------------------------------------------------------

    def bad_login(self, req: falcon.Request, resp: falcon.Response, viewer: Viewer) -> None:
        if viewer.challenge is not None:
            resp.set_header("WWW-Authenticate", viewer.challenge.challenge)
        self.fail(req, resp, viewer, falcon.HTTP_401, "Wrong user name or password.")

    def login(self, req: falcon.Request, resp: falcon.Response) -> None:
        viewer = self.viewer(req)
        back = _safe_next(req.get_param("next"), self.base(req))
        if self.ctx.access is None:
            resp.status, resp.location = falcon.HTTP_303, back
            return
        if viewer.token_login:
            return self.render(req, resp, "login.html", viewer, next=back, error=None, user="")
        if viewer.identity is not None:
            resp.status, resp.location = falcon.HTTP_303, back
            return
        # Basic: the browser shows its own login dialog on this 401 and then sends the credentials
        # with every request to the site, as it would to the API.
        challenge = self.ctx.access.challenge(req, [])
        if challenge is not None:
            resp.set_header("WWW-Authenticate", challenge.challenge)
        self.fail(req, resp, viewer, falcon.HTTP_401, "Log in to continue.")

    def login_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        viewer = self.viewer(req)
        if not viewer.token_login:
            return self.fail(req, resp, viewer, falcon.HTTP_405, "This registry logs in with the browser's dialog.")
        form = self._form(req)
        back = _safe_next((form or {}).get("next"), self.base(req))
        if not form or not form.get("username") or "password" not in form:
            return self.render(req, resp, "login.html", viewer, status=falcon.HTTP_400, next=back,
                               error="User name and password are required.", user="")
        origin = req.get_header("Origin")
        if origin and origin != "null" and urllib.parse.urlsplit(origin).netloc != req.netloc:
            return self.fail(req, resp, viewer, falcon.HTTP_403, "Cross-site form refused.")
        user = form["username"][:256]
        assert viewer.tokens is not None
        try:
            refresh = viewer.tokens.login(user, form["password"])
        except LoginFailed:
            return self.render(req, resp, "login.html", viewer, status=falcon.HTTP_401, next=back,
                               error="Wrong user name or password.", user=user)
        sid = self.sessions.create(user, refresh)
        resp.set_cookie(SESSION_COOKIE, sid, path=(req.root_path + self.path) or "/", http_only=True,
                        secure=req.scheme == "https", same_site="Strict", max_age=None)
        resp.status, resp.location = falcon.HTTP_303, back

    def logout(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.sessions.drop(req.cookies.get(SESSION_COOKIE))
        resp.unset_cookie(SESSION_COOKIE, path=(req.root_path + self.path) or "/")
        resp.status, resp.location = falcon.HTTP_303, self.base(req) + "/"


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="/")


@functools.cache
def static_file(name: str) -> bytes | None:
    try:
        return resources.files("registry_ui").joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
