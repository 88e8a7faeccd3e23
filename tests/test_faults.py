"""Storage faults at every step of a push, a pull and a delete: the client gets an error body and storage
stays consistent.

The storage calls a clean run makes are recorded once (at collection) through the `faulty` middleware
(tests/faulty.py, a fake: no real backend fails a chosen call on demand); each
test then replays the run with exactly one of those calls failing (before it takes effect, after it took
effect as a lost reply, or as "not found"), over the inmemory and the filesystem driver. Whatever the
step, the client sees 503 UNAVAILABLE with the OCI error body and Retry-After (or, for "not found", another
OCI error), never a 500; storage holds no link without its blob, no tag without its manifest and no wrong byte
(tests/integrity.py); an interrupted upload either resumes or is cleanly BLOB_UPLOAD_UNKNOWN; and the
same push, retried once the fault has cleared, succeeds and pulls back byte-identical.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import falcon.testing
import pytest
import requests

from registry import hookimpl
from registry.app import create_app
from registry.plugins import by_name, create_plugin_manager
from registry.storage import paths
from registry.storage.driver import StorageDriver
from registry.storage.inmemory import InMemoryDriver
from registry.testing.conformance import DriverSuite
from tests import faulty as faulty_plugin
from tests.conftest import sha256
from tests.faulty import Fault, FaultyDriver
from tests.integrity import check_storage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
REPO = "faults/app"
LAYER = bytes((i * 7 + i // 256) % 251 for i in range(10_000))  # three PATCHes of CHUNK
LAYER2 = b"second layer " * 300
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
EMPTY = b"{}"
CHUNK = 4096


def _manifest(config: bytes, config_type: str, layers: list[bytes], **extra) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(b), "size": len(b)}
                   for b in layers],
        **extra,
    }
    return json.dumps(doc, indent=2).encode()


IMAGE = _manifest(CONFIG, "application/vnd.oci.image.config.v1+json", [LAYER, LAYER2])
SBOM = _manifest(EMPTY, OCI_EMPTY, [EMPTY], artifactType="application/vnd.example.sbom",
                 subject={"mediaType": OCI_MANIFEST, "digest": sha256(IMAGE), "size": len(IMAGE)})
BLOBS = {sha256(b): b for b in (LAYER, LAYER2, CONFIG, EMPTY)}

_PM = create_plugin_manager()


def make_client(driver) -> falcon.testing.TestClient:
    config = {"version": 0.1, "storage": {"inmemory": {}, "delete": {"enabled": True}}}
    return falcon.testing.TestClient(create_app(config, _PM, driver=driver))


def codes(r) -> list[str]:
    try:
        return [e["code"] for e in r.json["errors"]]
    except (ValueError, KeyError, TypeError):
        return []


# -- the client side: requests as steps -----------------------------------------------------------------


class Failed(Exception):
    def __init__(self, step: str, response, upload: tuple[str, bytes] | None) -> None:
        super().__init__(f"{step}: {response.status_code} {response.text[:300]}")
        self.step, self.response, self.upload = step, response, upload


class Session:
    """Sends each request as a named step; an unexpected status raises :class:`Failed`.

    ``upload`` is the session in progress (its location and the blob being sent), so that after a
    failure the test can check that the session resumes or is cleanly unknown.
    """

    def __init__(self, client: falcon.testing.TestClient, on_step: Callable[[str], None] | None = None) -> None:
        self.c = client
        self.on_step = on_step
        self.upload: tuple[str, bytes] | None = None

    def request(self, step: str, method: str, path: str, expect: tuple[int, ...], **kw):
        if self.on_step is not None:
            self.on_step(step)
        r = self.c.simulate_request(method, path, **kw)
        if r.status_code not in expect:
            raise Failed(step, r, self.upload)
        return r

    def chunked(self, step: str, data: bytes) -> None:
        r = self.request(f"{step} POST", "POST", f"/v2/{REPO}/blobs/uploads/", (202,))
        loc = r.headers["Location"]
        self.upload = (loc, data)
        for n, start in enumerate(range(0, len(data), CHUNK)):
            chunk = data[start : start + CHUNK]
            r = self.request(f"{step} PATCH{n}", "PATCH", loc, (202,), body=chunk,
                             headers={"Content-Range": f"{start}-{start + len(chunk) - 1}",
                                      "Content-Type": "application/octet-stream"})
            loc = r.headers["Location"]
            self.upload = (loc, data)
        self.request(f"{step} PUT", "PUT", loc, (201,), params={"digest": sha256(data)})
        self.upload = None

    def post_put(self, step: str, data: bytes) -> None:
        r = self.request(f"{step} POST", "POST", f"/v2/{REPO}/blobs/uploads/", (202,))
        self.upload = (r.headers["Location"], data)
        self.request(f"{step} PUT", "PUT", r.headers["Location"], (201,), params={"digest": sha256(data)}, body=data,
                     headers={"Content-Type": "application/octet-stream"})
        self.upload = None

    def single_post(self, step: str, data: bytes) -> None:
        self.request(f"{step} POST?digest", "POST", f"/v2/{REPO}/blobs/uploads/", (201,),
                     params={"digest": sha256(data)}, body=data, headers={"Content-Type": "application/octet-stream"})

    def put_manifest(self, step: str, ref: str, raw: bytes) -> None:
        self.request(step, "PUT", f"/v2/{REPO}/manifests/{ref}", (201,), body=raw,
                     headers={"Content-Type": OCI_MANIFEST})


def push(s: Session) -> None:
    """An image (chunked layer, POST+PUT layer, single-POST config) under two tags, and a referrer."""
    s.chunked("layer", LAYER)
    s.post_put("layer2", LAYER2)
    s.single_post("config", CONFIG)
    s.put_manifest("manifest:v1", "v1", IMAGE)
    s.put_manifest("manifest:v2", "v2", IMAGE)
    s.single_post("empty", EMPTY)
    s.put_manifest("referrer", sha256(SBOM), SBOM)


def verify_pull(c: falcon.testing.TestClient) -> None:
    """Everything the push sent comes back byte-identical under its digest."""
    for ref in ("v1", "v2", sha256(IMAGE)):
        r = c.simulate_get(f"/v2/{REPO}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == IMAGE, (ref, r.status_code)
        assert r.headers["Docker-Content-Digest"] == sha256(IMAGE)
    for d, data in BLOBS.items():
        r = c.simulate_get(f"/v2/{REPO}/blobs/{d}")
        assert r.status_code == 200 and r.content == data, d
    r = c.simulate_get(f"/v2/{REPO}/referrers/{sha256(IMAGE)}")
    assert [m["digest"] for m in r.json["manifests"]] == [sha256(SBOM)]


# Reads and deletes of a pushed image. Delete steps accept 404 too: when the storage call failed after
# taking effect, the retried delete finds the thing already gone.
def read_and_delete(s: Session, retry: bool = False) -> None:
    gone = (202, 404) if retry else (202,)
    s.request("tags", "GET", f"/v2/{REPO}/tags/list", (200,))
    s.request("catalog", "GET", "/v2/_catalog", (200,))
    s.request("GET :v1", "GET", f"/v2/{REPO}/manifests/v1", (200,), headers={"Accept": OCI_MANIFEST})
    s.request("HEAD @digest", "HEAD", f"/v2/{REPO}/manifests/{sha256(IMAGE)}", (200,))
    s.request("GET blob", "GET", f"/v2/{REPO}/blobs/{sha256(LAYER)}", (200,))
    s.request("GET blob range", "GET", f"/v2/{REPO}/blobs/{sha256(LAYER)}", (206,), headers={"Range": "bytes=10-99"})
    s.request("HEAD blob", "HEAD", f"/v2/{REPO}/blobs/{sha256(CONFIG)}", (200,))
    s.request("referrers", "GET", f"/v2/{REPO}/referrers/{sha256(IMAGE)}", (200,))
    s.request("DELETE referrer", "DELETE", f"/v2/{REPO}/manifests/{sha256(SBOM)}", gone)
    s.request("DELETE :v2", "DELETE", f"/v2/{REPO}/manifests/v2", gone)
    s.request("DELETE blob", "DELETE", f"/v2/{REPO}/blobs/{sha256(LAYER2)}", gone)
    s.request("DELETE @digest", "DELETE", f"/v2/{REPO}/manifests/{sha256(IMAGE)}", gone)


def verify_deleted(c: falcon.testing.TestClient) -> None:
    for ref in ("v1", "v2", sha256(IMAGE), sha256(SBOM)):
        assert c.simulate_head(f"/v2/{REPO}/manifests/{ref}").status_code == 404, ref
    assert c.simulate_head(f"/v2/{REPO}/blobs/{sha256(LAYER2)}").status_code == 404
    assert c.simulate_get(f"/v2/{REPO}/blobs/{sha256(LAYER)}").content == LAYER
    assert c.simulate_get(f"/v2/{REPO}/referrers/{sha256(IMAGE)}").json["manifests"] == []
    assert c.simulate_get(f"/v2/{REPO}/tags/list").json["tags"] == []


# -- the injection sites: every storage call of a clean run -------------------------------------------------

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX = re.compile(r"([0-9a-f]{8})[0-9a-f]{56}")


@dataclasses.dataclass(frozen=True)
class Site:
    """The ``after``-th call of ``op`` on a path containing ``path_contains``, made during ``step``."""

    step: str
    op: str
    path_contains: str
    after: int
    label: str

    def fault(self, error: str, when: str) -> Fault:
        return Fault(op=self.op, path_contains=self.path_contains, after=self.after, times=1, error=error, when=when)


def _stable(path: str) -> str:
    """What identifies a path across runs: upload ids are random, so only what follows one."""
    m = _UUID.search(path)
    return (path[m.end():] or "/_uploads/") if m else path


def trace(scenario: Callable[[Session], None], setup: Callable[[Session], None] | None = None) -> list[Site]:
    faulty = FaultyDriver(InMemoryDriver())
    client = make_client(faulty)
    if setup is not None:
        setup(Session(client))
    faulty.record = True
    marks: list[tuple[int, str]] = []
    scenario(Session(client, on_step=lambda step: marks.append((len(faulty.calls), step))))
    sites = []
    for i, (op, *where) in enumerate(faulty.calls):
        step = [name for start, name in marks if start <= i][-1]
        stable = _stable(where[0])
        # `after` counts earlier calls of this op on any path that contains `stable` (move: either path).
        after = sum(1 for o, *w in faulty.calls[:i] if o == op and any(stable in p for p in w))
        label = _HEX.sub(r"\1", _UUID.sub("<id>", where[0].replace(paths.ROOT, "").replace(f"/repositories/{REPO}", "/R")))
        sites.append(Site(step, op, stable, after, f"{step}|{op}|{label}|{after}"))
    return sites


PUSH_SITES = trace(push)
READ_SITES = trace(read_and_delete, setup=push)
MODES = [("before", "unavailable"), ("after", "unavailable"), ("before", "notfound")]


def assert_clean_failure(failed: Failed, site: Site, error: str) -> None:
    r = failed.response
    assert r.status_code != 500, r.text
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    head = failed.step.startswith("HEAD")  # no body, but the same status and headers
    if error == "unavailable":
        assert failed.step == site.step, f"the fault fired in {site.step!r} but {failed.step!r} failed"
        assert r.status_code == 503 and (head or codes(r) == ["UNAVAILABLE"]), r.text
        assert r.headers.get("retry-after") == "1", r.headers
    else:
        assert r.status_code >= 400 and (head or codes(r)), r.text


def check_resume(c: falcon.testing.TestClient, upload: tuple[str, bytes]) -> str:
    """An interrupted upload session is resumable (GET → 204 + Range, PATCH the rest, PUT) or unknown."""
    loc, data = upload
    r = c.simulate_get(loc)
    if r.status_code == 404:
        assert codes(r) == ["BLOB_UPLOAD_UNKNOWN"], r.text
        return "unknown"
    assert r.status_code == 204, r.text
    end = int(r.headers["Range"].split("-")[1])
    size = 0 if end == 0 else end + 1  # "0-0" is an empty upload (our chunks are never one byte)
    assert size <= len(data), r.headers
    if size < len(data):
        r = c.simulate_patch(loc, body=data[size:], headers={"Content-Range": f"{size}-{len(data) - 1}"})
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
    r = c.simulate_put(loc, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert c.simulate_get(f"/v2/{REPO}/blobs/{sha256(data)}").content == data
    return "resumed"


#: Storage calls that change something: on the filesystem driver these are worth the fsyncs.
MUTATING = frozenset({"writer", "write", "commit", "adopt", "move", "move_scratch", "put_content", "put_scratch",
                      "delete"})


def _installed(name: str) -> bool:
    return name in by_name(_PM, "registry_storage_drivers")


def cases(sites: list[Site]) -> list:
    """Every site in every mode on inmemory; on filesystem (real files, fsyncs: slower), the calls that
    change something, failing after taking effect (plus the writer's own, failing before: an appending
    writer closed without commit keeps its bytes there, unlike inmemory's)."""
    params = []
    for site in sites:
        modes = [("inmemory", when, error) for when, error in MODES]
        if site.op in MUTATING and _installed("filesystem"):
            modes.append(("filesystem", "after", "unavailable"))
            if site.op in ("write", "commit"):
                modes.append(("filesystem", "before", "unavailable"))
        params += [pytest.param(name, site, when, error, id=f"{name}-{error}-{when}-{site.label}")
                   for name, when, error in modes]
    return params


@pytest.fixture
def make_driver(tmp_path: Path) -> Callable[[str], StorageDriver]:
    def make(name: str) -> StorageDriver:
        params = {"rootdirectory": str(tmp_path / "root")} if name == "filesystem" else {}
        return by_name(_PM, "registry_storage_drivers")[name].factory(params)

    return make


@pytest.mark.parametrize(("name", "site", "when", "error"), cases(PUSH_SITES))
def test_fault_during_push(make_driver, name: str, site: Site, when: str, error: str) -> None:
    driver = make_driver(name)
    faulty = FaultyDriver(driver)
    client = make_client(faulty)
    rule = faulty.add(site.fault(error, when))
    session = Session(client)
    failed = None
    try:
        push(session)
    except Failed as exc:
        failed = exc
    assert rule.fired == 1, "the fault never fired: the storage calls of a push changed"
    faulty.clear()
    if failed is not None:
        assert_clean_failure(failed, site, error)
    report = check_storage(driver)
    assert report.problems == []
    if failed is not None and failed.upload is not None:
        check_resume(client, failed.upload)
        assert check_storage(driver).problems == []
    push(Session(client))  # the client retries the whole push
    verify_pull(client)
    report = check_storage(driver)
    assert report.problems == [] and report.half_tags == []


@pytest.mark.parametrize(("name", "site", "when", "error"), cases(READ_SITES))
def test_fault_during_pull_and_delete(make_driver, name: str, site: Site, when: str, error: str) -> None:
    driver = make_driver(name)
    faulty = FaultyDriver(driver)
    client = make_client(faulty)
    push(Session(client))
    rule = faulty.add(site.fault(error, when))
    steps: list[str] = []
    failed = None
    try:
        read_and_delete(Session(client, on_step=steps.append))
    except Failed as exc:
        failed = exc
    assert rule.fired == 1, "the fault never fired: the storage calls of the scenario changed"
    faulty.clear()
    if failed is not None:
        assert_clean_failure(failed, site, error)
    # A false "not found" while a delete looks for the manifest's tags (listing them, reading one,
    # removing one) makes the core believe the tag is already gone: the tag stays behind, pointing at
    # the deleted manifest (GET answers 404). No ordering can defend against a store that denies what
    # it holds; everything else must still hold.
    lying = error == "notfound" and site.step == "DELETE @digest" and "/_manifests/tags" in site.path_contains
    problems = check_storage(driver, references=False).problems
    assert [p for p in problems if not (lying and p.startswith("tag "))] == []
    # The client retries from the failed step on; everything ends deleted and consistent.
    done = set(steps[:-1]) if failed is not None else set(steps)
    read_and_delete(_Skipping(client, done), retry=True)
    if lying:
        client.simulate_delete(f"/v2/{REPO}/manifests/v1")  # what an operator would do about it
    verify_deleted(client)
    report = check_storage(driver, references=False)
    assert report.problems == [] and report.half_tags == []


class _Skipping(Session):
    """A session that skips the steps already done."""

    def __init__(self, client: falcon.testing.TestClient, done: set[str]) -> None:
        super().__init__(client)
        self.done = done

    def request(self, step: str, method: str, path: str, expect: tuple[int, ...], **kw):
        if step in self.done:
            return None
        return super().request(step, method, path, expect, **kw)


def test_sites_cover_every_step() -> None:
    """The traces reach every request of both scenarios and every kind of write a push makes."""
    push_steps = {s.step for s in PUSH_SITES}
    assert {"layer POST", "layer PATCH0", "layer PATCH2", "layer PUT", "layer2 PUT", "config POST?digest",
            "manifest:v1", "referrer"} <= push_steps
    ops = {(s.step, s.op) for s in PUSH_SITES}
    # A chunk is written and its writer closed, never committed; a whole blob in one request is
    # committed at its blob path.
    assert {("layer PATCH0", "write"), ("config POST?digest", "commit"), ("layer PUT", "move"),
            ("layer PUT", "put_content"), ("manifest:v1", "put_content")} <= ops
    writes = [s.label.split("|")[2] for s in PUSH_SITES if s.step == "manifest:v1" and s.op == "put_content"]
    # The manifest's blob, its revision link, the tag's index entry, the tag's current link: in that order.
    kinds = ["/blobs/", "/_manifests/revisions/", "/index/", "/current/link"]
    assert len(writes) == 4 and all(k in w for k, w in zip(kinds, writes)), writes
    assert {s.step for s in READ_SITES} >= {"tags", "catalog", "GET blob", "referrers", "DELETE @digest"}
    assert {"list", "reader", "delete", "get_content", "stat"} <= {s.op for s in READ_SITES}


# -- the driver itself ---------------------------------------------------------------------------------------


def test_faulty_passes_through_and_counts() -> None:
    inner = InMemoryDriver()
    faulty = FaultyDriver(inner, [{"op": "put_content", "path_contains": "/b", "after": 1, "times": 2}])
    faulty.put_content("/a", b"1")  # not matching
    faulty.put_content("/b1", b"1")  # the one let through by after=1
    for _ in range(2):
        with pytest.raises(Exception, match="injected fault"):
            faulty.put_content("/b2", b"2")
    faulty.put_content("/b2", b"2")  # times=2 exhausted
    assert inner.get_content("/b2") == b"2"
    assert faulty.injected == 2 and [i.op for i in faulty.injections] == ["put_content", "put_content"]


def test_faulty_after_takes_effect_then_fails() -> None:
    from registry.storage.driver import PathNotFoundError, StorageError

    inner = InMemoryDriver()
    inner.put_content("/src", b"x")
    faulty = FaultyDriver(inner)
    faulty.add(op="move", path_contains="/dst", when="after")
    with pytest.raises(StorageError):
        faulty.move("/src", "/dst")
    assert inner.get_content("/dst") == b"x"
    faulty.clear()
    faulty.add(op="stat", error="notfound")
    with pytest.raises(PathNotFoundError):
        faulty.stat("/dst")


def test_faulty_writer_and_latency() -> None:
    faulty = FaultyDriver(InMemoryDriver(), [Fault(op="commit", times=1), Fault(op="get_content", latency_ms=30)])
    w = faulty.writer("/f")
    w.write(b"abc")
    with pytest.raises(Exception, match="injected"):
        w.commit()
    w.close()
    faulty.put_content("/f", b"ok")
    start = time.monotonic()
    assert faulty.get_content("/f") == b"ok"  # latency only: the call succeeds, late
    assert time.monotonic() - start >= 0.025
    assert faulty.injected == 1 and len(faulty.injections) == 2


def test_fault_rules_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        Fault(op="rename")
    with pytest.raises(ValueError, match="unknown error"):
        Fault(op="move", error="boom")
    with pytest.raises(ValueError, match="unknown fault keys"):
        Fault.from_mapping({"op": "move", "probability": 0.5})
    assert Fault(op="move", latency_ms=5).error == "none"


def test_fault_errors_are_the_storage_errors_a_backend_raises() -> None:
    from registry.storage.driver import PathNotFoundError, StorageError, StorageThrottledError, StorageUnavailableError

    faulty = FaultyDriver(InMemoryDriver())
    expected = {"storage": StorageError, "unavailable": StorageUnavailableError, "throttled": StorageThrottledError,
                "notfound": PathNotFoundError, "bug": faulty_plugin.DriverBug}
    for error, cls in expected.items():
        faulty.clear()
        faulty.add(op="stat", error=error, times=1)
        with pytest.raises(cls) as info:
            faulty.stat("/x")
        assert type(info.value) is cls, error
    assert not issubclass(faulty_plugin.DriverBug, StorageError)  # what the checked wrapper must classify


def test_operations_follow_the_contract() -> None:
    """Every method of the driver and writer contract can be faulted, by name, without this module naming it."""
    from registry.storage.driver import FileWriter

    contract = {a for cls in (StorageDriver, FileWriter) for a, v in vars(cls).items()
                if callable(v) and not a.startswith("_")}
    assert set(faulty_plugin.OPS) == {faulty_plugin.ALIASES.get(a, a) for a in contract} - faulty_plugin.UNFAULTED
    faulty = FaultyDriver(InMemoryDriver(), [{"op": "redirect_url", "error": "throttled", "times": 1}])
    with pytest.raises(Exception, match="injected"):
        faulty.redirect_url("GET", "/a")
    assert faulty.redirect_url("GET", "/a") is None  # forwarded once the fault is spent


def test_middleware_from_config_through_the_plugin_manager_in_hand(tmp_path: Path) -> None:
    """`middleware.storage: [{name: faulty}]` wraps the configured driver, built with the plugin manager
    the app was given (faulty is registered on it only, never installed)."""
    from registry.config import build_storage, validate

    pm = create_plugin_manager(plugins=[faulty_plugin])
    config = {"version": 0.1, "storage": {"inmemory": {}},
              "middleware": {"storage": [{"name": "faulty", "options": {"faults": [{"op": "list", "times": 1}]}}]}}
    assert validate(config, pm) == []
    storage = build_storage(config, pm)
    assert isinstance(storage.inner, FaultyDriver) and storage.inner.rules[0].op == "list"
    storage.put_content("/x", b"1")
    with pytest.raises(Exception, match="injected"):
        storage.list("/")
    assert storage.list("/") == ["/x"]


def test_faulty_is_not_shipped() -> None:
    """The core's distribution neither declares nor offers it: `registry plugins` and the error for an
    unknown driver list only what users can configure."""
    from registry.config import ConfigError, build_storage, validate
    from registry.plugins import describe_plugins

    pm = create_plugin_manager()
    assert all("faulty" not in (info.name, *info.drivers) for info in describe_plugins(pm))
    config = {"version": 0.1, "storage": {"nope": {}}}
    assert not any("faulty" in line for line in validate(config, pm)), validate(config, pm)
    with pytest.raises(ConfigError) as info:
        build_storage({"version": 0.1, "storage": {"inmemory": {}}, "middleware": {"storage": [{"name": "faulty"}]}},
                      pm)
    assert "unknown storage middleware 'faulty'" in str(info.value)


class TestFaultyWithoutFaultsConforms(DriverSuite):
    """With no rules the wrapper is invisible: the exported driver suite passes through it."""

    @pytest.fixture
    def driver(self) -> FaultyDriver:
        return FaultyDriver(InMemoryDriver())


# -- over HTTP, through a real server ----------------------------------------------------------------------


@contextlib.contextmanager
def serving(config: dict, pm) -> Iterator[tuple[str, object]]:
    """A real server (waitress, in this process: the faulty middleware is registered on ``pm``, not
    installed) for ``config``; yields its URL and the app."""
    from registry.config import validate
    from registry.serve import Server

    config = {"version": "0.1", "log": {"level": "error"}, "http": {"addr": "127.0.0.1:0"}, **config}
    assert validate(config, pm) == []
    app = create_app(config, pm)
    server = Server(app, config)
    port = int(server.addresses[0].rsplit(":", 1)[1])
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.stop()
        thread.join(10)


def faulty_config(root: Path, faults: list[dict]) -> dict:
    return {"storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
            "middleware": {"storage": [{"name": "faulty", "options": {"faults": faults}}]}}


def test_faulty_middleware_in_a_real_server(tmp_path: Path) -> None:
    """A server over `middleware: storage: [faulty]` around filesystem: a commit that fails as a transient
    backend failure is a 503 with the error body, the retry succeeds, and latency rules slow requests
    without failing them."""
    pytest.importorskip("registry_filesystem")
    root = tmp_path / "root"
    pm = create_plugin_manager(plugins=[faulty_plugin])
    faults = [{"op": "commit", "path_contains": "/blobs/", "times": 1, "error": "unavailable"},
              {"op": "get_content", "path_contains": "/_manifests/tags/", "latency_ms": 200}]
    with serving(faulty_config(root, faults), pm) as (url, _), requests.Session() as s:
        s.trust_env = False
        data = b"a blob that fails to commit once"
        r = s.post(f"{url}/v2/cfg/blobs/uploads/", params={"digest": sha256(data)}, data=data, timeout=10)
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE", r.text
        assert s.head(f"{url}/v2/cfg/blobs/{sha256(data)}", timeout=10).status_code == 404
        r = s.post(f"{url}/v2/cfg/blobs/uploads/", params={"digest": sha256(data)}, data=data, timeout=10)
        assert r.status_code == 201, r.text
        manifest = _manifest(data, "application/vnd.oci.image.config.v1+json", [])
        assert s.put(f"{url}/v2/cfg/manifests/t", data=manifest, headers={"Content-Type": OCI_MANIFEST},
                     timeout=10).status_code == 201
        start = time.monotonic()
        r = s.get(f"{url}/v2/cfg/manifests/t", headers={"Accept": OCI_MANIFEST}, timeout=10)
        assert r.status_code == 200 and r.content == manifest
        assert time.monotonic() - start >= 0.19  # the latency rule applied to the tag lookup
    fs = by_name(pm, "registry_storage_drivers")["filesystem"].factory({"rootdirectory": str(root)})
    assert check_storage(fs).problems == []


class Reports:
    """Records what reaches ``registry_report_exception``."""

    def __init__(self) -> None:
        self.exceptions: list[BaseException] = []

    @hookimpl
    def registry_report_exception(self, exc, request):
        self.exceptions.append(exc)


# (fault error, status, OCI code, Retry-After expected, reported as an exception)
STATUSES = [
    ("bug", 500, "UNKNOWN", False, True),
    ("storage", 500, "UNKNOWN", False, True),
    ("unavailable", 503, "UNAVAILABLE", True, False),
    ("throttled", 429, "TOOMANYREQUESTS", True, False),
]


@pytest.mark.parametrize(("error", "status", "code", "retry", "reported"), STATUSES, ids=[s[0] for s in STATUSES])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_storage_failures_over_http(tmp_path: Path, error: str, status: int, code: str, retry: bool,
                                    reported: bool, method: str) -> None:
    """A driver bug is a 500 reported to the reporting plugins (retrying cannot help); a transient
    backend failure a 503 and throttling a 429, both with Retry-After and not reported. Faults a real
    backend cannot produce on demand: the faulty middleware (a fake) makes the tag lookup fail once."""
    pytest.importorskip("registry_filesystem")
    reports = Reports()
    pm = create_plugin_manager(plugins=[faulty_plugin, reports])
    faults = [{"op": "get_content", "path_contains": "/_manifests/tags/t/current", "times": 1, "error": error}]
    with serving(faulty_config(tmp_path / "root", faults), pm) as (url, app), requests.Session() as s:
        s.trust_env = False
        r = s.request(method, f"{url}/v2/lib/app/manifests/t", timeout=10)
        assert r.status_code == status, r.text
        assert r.headers["Content-Type"].startswith("application/json")
        if method == "GET":
            body = r.json()["errors"]
            assert [e["code"] for e in body] == [code]
            assert "injected" not in body[0]["message"]  # the driver's own words stay in the log
        assert ("Retry-After" in r.headers) is retry and (not retry or int(r.headers["Retry-After"]) >= 1)
        assert len(reports.exceptions) == (1 if reported else 0)
        # The fault was spent: the same request now finds no such tag.
        r = s.request(method, f"{url}/v2/lib/app/manifests/t", timeout=10)
        assert r.status_code == 404


def test_a_corrupt_link_is_a_500_for_the_operator_not_a_retry() -> None:
    """Damaged storage (a tag link edited by hand: a real state, no fake needed) is a storage error the
    handlers map to 500 UNKNOWN with a message for the operator, reported; never DIGEST_INVALID (that
    would blame the client) nor 503 (retrying cannot repair it)."""
    reports = Reports()
    driver = InMemoryDriver()
    client = falcon.testing.TestClient(create_app({"version": 0.1, "storage": {"inmemory": {}}},
                                                  create_plugin_manager(plugins=[reports]), driver=driver))
    driver.put_content(paths.tag_current_link("lib/app", "t"), b"sha256:not-a-digest")
    for method in ("GET", "HEAD"):
        r = client.simulate_request(method, "/v2/lib/app/manifests/t")
        assert r.status_code == 500, r.text
        if method == "GET":
            assert codes(r) == ["UNKNOWN"] and "damaged link" in r.json["errors"][0]["message"]
    from registry.storage.store import CorruptLinkError

    assert len(reports.exceptions) == 2 and all(isinstance(e, CorruptLinkError) for e in reports.exceptions)


def test_storage_layer_names_no_http_error() -> None:
    """Storage raises storage errors only: the store does not even import the HTTP layer's errors."""
    import ast

    import registry.storage.store as store

    tree = ast.parse(Path(store.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "registry.errors" not in imported
