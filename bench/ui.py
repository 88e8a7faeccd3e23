"""The web UI's pages (``registry-ui``) on ``registry serve``: ``BENCH_ONLY=ui``.

One tree on disk serves both registries: ``BENCH_UI_REPOS`` repositories (the catalog phase's nested
layout, 100 per namespace, written straight to disk by :func:`bench.workloads.build_catalog_tree`)
plus one repository, ``big/tags``, with ``BENCH_UI_TAGS`` tags of one image, pushed through our API.
Ours runs with ``ui: {enabled: true}``. Distribution has no UI, so the UI rows have no Distribution
column; the API's own requests for the same data (``/v2/_catalog?n=100``, the tag list, the manifest)
are measured on both registries as the reference rows. Each request is timed alone on a kept-alive
connection, as the catalog phase does, in ``BENCH_UI_ROUNDS`` alternated rounds of ``BENCH_UI_BATCH``
requests per page and registry, with the server's CPU time around each request (from its threads'
``schedstat``, in nanoseconds: a page costs less than the 10 ms tick of ``/proc/<pid>/stat``). One
warm-up request per page first, not counted, whose body is checked for what the page must show (100
repositories, 50 tags, the manifest's digest).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import report
from bench.client import ACCEPT, RegistryClient, sha256_digest
from bench.servers import Server
from bench.workloads import Sample, build_catalog_tree, catalog_names

if TYPE_CHECKING:
    from bench.run import Runner

REPO = "big/tags"
#: Our UI's section; the rest of the config is the harness's (filesystem, purging off, log level warn).
UI_CONFIG = "ui: {enabled: true, maxpagesize: 200}\n"
#: Ports base+71 (ours) and base+72 (Distribution): no other phase uses them.
PHASE = 7


@dataclass
class Page:
    """One measured request: the row, the path, and a check of the body (``None``: any 200)."""

    row: report.Row
    path: str
    kinds: tuple[str, ...]
    check: Callable[[bytes], str | None] | None = None

    @property
    def accept(self) -> str | None:
        return ACCEPT if "/manifests/" in self.path else None


def count(pattern: str, expected: int) -> Callable[[bytes], str | None]:
    """A check that the body holds ``pattern`` exactly ``expected`` times; the error or ``None``."""
    compiled = re.compile(pattern.encode())

    def check(body: bytes) -> str | None:
        found = len(compiled.findall(body))
        return None if found == expected else f"{found} of {pattern!r}, expected {expected}"

    return check


def json_list(key: str, expected: int) -> Callable[[bytes], str | None]:
    def check(body: bytes) -> str | None:
        found = len(json.loads(body)[key] or [])
        return None if found == expected else f"{found} {key}, expected {expected}"

    return check


def shows(needle: bytes) -> Callable[[bytes], str | None]:
    return lambda body: None if needle in body else f"{needle!r} not shown"


def cpu_ns(server: Server) -> int:
    """The server's CPU time so far in nanoseconds, summed over its threads' ``schedstat``: a page
    costs less than one of the 10 ms ticks that ``/proc/<pid>/stat`` (:class:`CpuMeter`) counts in."""
    total = 0
    for task in os.listdir(f"/proc/{server.pid}/task"):
        try:
            with open(f"/proc/{server.pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # a thread that has just ended
            continue
    return total


def timed(server: Server, client: RegistryClient, path: str, accept: str | None = None) -> tuple[Sample, bytes]:
    """One ``GET``: its ms and the server's CPU ms, and the body."""
    headers = {"Accept": accept} if accept else None
    cpu0 = cpu_ns(server)
    t0 = time.perf_counter()
    resp = client.request("GET", path, headers=headers)
    elapsed = time.perf_counter() - t0
    return Sample(elapsed * 1000, (cpu_ns(server) - cpu0) / 1e6), resp.body  # type: ignore[attr-defined]


def seed(server: Server, tags: int) -> str:
    """Push one image to ``big/tags`` and tag it ``tags`` times (``t0000``...); the manifest digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-05-06T07:08:09Z",
                         "config": {"Entrypoint": ["/bin/app"]},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = b"bench ui layer\n" * 70
    with RegistryClient(server.port, timeout=60) as client:
        digest = client.push_image(REPO, "seed", [(layer, sha256_digest(layer))], config=config)
        manifest = client.request("GET", f"/v2/{REPO}/manifests/seed", headers={"Accept": ACCEPT}).body  # type: ignore[attr-defined]
        for i in range(tags):
            client.put_manifest(REPO, f"t{i:04d}", manifest)
    return digest


def ui_phase(runner: Runner) -> None:
    s = runner.s
    repos = int(os.environ.get("BENCH_UI_REPOS", s.catalog_repos))
    tags = int(os.environ.get("BENCH_UI_TAGS", 100 if s.quick else 1_000))
    runs = int(os.environ.get("BENCH_UI_ROUNDS", s.catalog_requests))  # alternated rounds...
    batch = int(os.environ.get("BENCH_UI_BATCH", 10))  # ...of this many requests per page and registry
    names = catalog_names(repos, "nested")
    total, n_tags = repos + 1, tags + 1  # with big/tags, and its "seed" tag
    middle = names[len(names) // 2]
    last_ns = names[-1].split("/")[0] + "/"
    in_last_ns = sum(1 for n in names if n.startswith(last_ns))
    tree = s.workdir / f"ui-nested-{repos}"
    t0 = time.monotonic()
    build_catalog_tree(tree, names, sha256_digest(b"bench catalog layer"))
    runner.log(f"ui: tree of {repos:,} repositories ready ({time.monotonic() - t0:.1f}s)")

    def row(key: str, title: str) -> report.Row:
        return runner.add(report.Row(key, title, "ms", "lower", cpu_unit="CPU ms"))

    both, ours_only = ("ours", "dist"), ("ours",)
    servers: dict[str, Server] = {}
    try:
        servers["ours"] = Server("ours", tree, s.port_base + PHASE * 10 + 1, s.workdir / "logs",
                                 config_extra=UI_CONFIG).start()
        t0 = time.monotonic()
        digest = seed(servers["ours"], tags)
        runner.log(f"ui: {REPO} with {n_tags:,} tags pushed ({time.monotonic() - t0:.1f}s)")
        servers["dist"] = Server("dist", tree, s.port_base + PHASE * 10 + 2, s.workdir / "logs").start()
        page_tags = 50
        pages = [
            Page(row("ui_catalog", f"UI catalog page (n=100), {total:,} repositories"),
                 "/ui/?n=100", ours_only, count(r'class="repository"', 100)),
            Page(row("ui_catalog_middle", f"UI catalog page in the middle (last={middle})"),
                 f"/ui/?n=100&last={middle}", ours_only, count(r'class="repository"', 100)),
            Page(row("ui_catalog_search", f"UI catalog prefix search (q={last_ns}, {in_last_ns} shown)"),
                 f"/ui/?n=100&q={last_ns}", ours_only, count(r'class="repository"', min(100, in_last_ns))),
            Page(row("ui_repository", f"UI repository page (n={page_tags}), {n_tags:,} tags"),
                 f"/ui/r/{REPO}?n={page_tags}", ours_only, count("data-tag=", page_tags)),
            Page(row("ui_repository_middle", f"UI repository page in the middle (last=t{tags // 2:04d})"),
                 f"/ui/r/{REPO}?n={page_tags}&last=t{tags // 2:04d}", ours_only,
                 count("data-tag=", min(page_tags, tags - tags // 2 - 1))),
            Page(row("ui_manifest", "UI manifest page (by tag)"), f"/ui/r/{REPO}/-/m/t0001", ours_only,
                 shows(digest.encode())),
            # The API for the same data, on both registries: the reference rows.
            Page(row("ui_ref_catalog", f"API /v2/_catalog?n=100, {total:,} repositories (reference)"),
                 "/v2/_catalog?n=100", both, json_list("repositories", 100)),
            Page(row("ui_ref_tags", f"API /v2/{REPO}/tags/list, {n_tags:,} tags (reference)"),
                 f"/v2/{REPO}/tags/list", both, json_list("tags", n_tags)),
            Page(row("ui_ref_manifest", "API GET manifest by tag (reference)"),
                 f"/v2/{REPO}/manifests/t0001", both, None),
        ]
        clients = {k: RegistryClient(v.port, timeout=300) for k, v in servers.items()}
        spent = {(p.row.key, k): 0.0 for p in pages for k in p.kinds}
        try:
            for page in pages:  # warm-up, not counted; and each page must show what it should
                for kind in page.kinds:
                    _, body = timed(servers[kind], clients[kind], page.path, page.accept)
                    problem = page.check(body) if page.check else None
                    if problem:
                        raise RuntimeError(f"{servers[kind].label} {page.path}: {problem}")
                    page.row.extra[f"{kind}_bytes"] = len(body)
            for i in range(runs):
                if i and runner.out_of_time():
                    break
                for page in pages:
                    for kind in runner.alternate(i):
                        if kind not in page.kinds or (i >= 2 and spent[page.row.key, kind] > s.catalog_seconds):
                            continue  # Distribution walks every repository for _catalog: bound its share
                        t = time.monotonic()
                        for _ in range(batch):
                            page.row.record(kind, timed(servers[kind], clients[kind], page.path, page.accept)[0])
                        spent[page.row.key, kind] += time.monotonic() - t
                runner.log(f"ui: round {i + 1}/{runs} ({batch} requests per page and registry)")
        finally:
            for c in clients.values():
                c.close()
    finally:
        for server in servers.values():
            server.stop()
    runner._progress(*(p.row for p in pages))
