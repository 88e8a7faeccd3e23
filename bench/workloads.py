"""The workloads: each function measures one sample against one running server.

Every function is bounded: fixed sizes and counts, and socket timeouts on every connection.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.client import PatternBlob, RegistryClient, sha256_digest
from bench.servers import CpuMeter, RssSampler, Server

MiB = 1 << 20
MB = 1_000_000
LUA = Path(__file__).with_name("manifest.lua")


@dataclass
class Sample:
    """One measurement: the row's figure and the server CPU time per unit of work."""

    value: float
    cpu: float | None = None
    extra: dict | None = None


def forget_blob(server: Server, digest: str, repo: str | None = None) -> None:
    """Remove a blob (and optionally a repository) straight from disk, outside any timing, so the
    disk does not fill up over the repeats. Neither registry caches blob metadata in this setup."""
    hexpart = digest.split(":", 1)[1]
    v2 = server.root / "docker" / "registry" / "v2"
    shutil.rmtree(v2 / "blobs" / "sha256" / hexpart[:2] / hexpart, ignore_errors=True)
    if repo:
        shutil.rmtree(v2 / "repositories" / repo, ignore_errors=True)


# -- uploads and downloads -------------------------------------------------------------------------


def upload(server: Server, blob: PatternBlob, *, chunk: int | None, repo: str, streamed: bool = False) -> Sample:
    """Push ``blob`` monolithically (``chunk=None``), in ``chunk``-byte ``PATCH``es, or
    (``streamed``) in one ``PATCH`` in chunked transfer coding; MB/s and CPU seconds per GiB."""
    with RegistryClient(server.port) as client, CpuMeter(server) as cpu:
        t0 = time.perf_counter()
        if streamed:
            client.upload_streamed(repo, blob.chunks(), blob.digest)
        elif chunk is None:
            client.upload_monolithic(repo, blob.chunks(), blob.size, blob.digest)
        else:
            client.upload_chunked(repo, blob.chunks(chunk), blob.digest)
        elapsed = time.perf_counter() - t0
    forget_blob(server, blob.digest, repo)
    return Sample(blob.size / elapsed / MB, cpu.seconds / (blob.size / (1 << 30)))


def download(server: Server, repo: str, digest: str, size: int, count: int) -> Sample:
    """``GET`` the blob ``count`` times over one connection; MB/s and CPU seconds per GiB."""
    with RegistryClient(server.port) as client, CpuMeter(server) as cpu:
        t0 = time.perf_counter()
        for _ in range(count):
            client.download(repo, digest, size)
        elapsed = time.perf_counter() - t0
    total = size * count
    return Sample(total / elapsed / MB, cpu.seconds / (total / (1 << 30)))


# -- manifests under wrk ---------------------------------------------------------------------------

_WRK_LINE = re.compile(r"^BENCH (.*)$", re.M)


def wrk(server: Server, url_path: str, method: str, connections: int, seconds: float,
        cpus: str | None) -> Sample:
    """Run ``wrk`` (one thread, keep-alive) for ``seconds``; req/s and server CPU ms per request."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
           "-s", str(LUA), f"{server.base}{url_path}"]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    env = dict(os.environ, BENCH_METHOD=method)
    with CpuMeter(server) as cpu:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60, check=True).stdout
    m = _WRK_LINE.search(out)
    if not m:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    stats = dict(kv.split("=") for kv in m.group(1).split())
    requests = int(stats["requests"])
    errors = sum(int(v) for k, v in stats.items() if k.startswith("errors_"))
    if errors or not requests:
        raise RuntimeError(f"wrk against {server.label}: {errors} errors in {requests} requests\n{out}")
    duration = int(stats["duration_us"]) / 1e6
    return Sample(requests / duration, cpu.seconds * 1000 / requests,
                  {"p50_ms": int(stats["p50_us"]) / 1000, "p99_ms": int(stats["p99_us"]) / 1000})


def load(server: Server, url_path: str, method: str, connections: int, seconds: float,
         cpus: str | None) -> Sample:
    """Run :mod:`bench.loadgen` (one thread, keep-alive) for ``seconds`` after a short warm-up;
    req/s and server CPU ms per request (over every request of the run, warm-up included)."""
    cmd = [sys.executable, "-m", "bench.loadgen", "--port", str(server.port), "--path", url_path,
           "--method", method, "-c", str(connections), "-d", str(seconds)]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    with CpuMeter(server) as cpu:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True,
                             cwd=Path(__file__).resolve().parent.parent).stdout
    stats = json.loads(out)
    if stats["errors"] or not stats["requests"]:
        raise RuntimeError(f"{method} against {server.label}: {stats['errors']} errors in {stats['requests']}")
    return Sample(stats["requests"] / stats["seconds"], cpu.seconds * 1000 / stats["total_requests"],
                  {"p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"]})


# -- many clients pushing at once ------------------------------------------------------------------


def _push_worker(port: int, repo: str, blobs: int, blob_size: int, barrier, results) -> None:  # noqa: ANN001
    try:
        layers = []
        for _ in range(blobs):
            data = os.urandom(blob_size)
            layers.append((data, sha256_digest(data)))
        with RegistryClient(port, timeout=120) as client:
            client.request("GET", "/v2/")  # connect before the start line, as a client would have
            barrier.wait(60)
            client.push_image(repo, "latest", layers)
        results.put(("ok", time.monotonic()))
    except Exception as exc:  # reported to the parent, which raises
        results.put(("error", repr(exc)))


def push_many(server: Server, prefix: str, clients: int, blobs: int, blob_size: int) -> Sample:
    """``clients`` processes each push ``blobs`` distinct blobs and a manifest to their own
    repository (``HEAD``, ``POST``, ``PATCH``, ``PUT`` per blob); wall seconds from the common start
    to the last manifest, and server CPU seconds."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_push_worker, args=(server.port, f"{prefix}-{i}", blobs, blob_size, barrier, results))
             for i in range(clients)]
    for p in procs:
        p.start()
    try:
        barrier.wait(120)
        with CpuMeter(server) as cpu:
            t0 = time.monotonic()
            ends = [results.get(timeout=300) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join(5)
    failed = [e for kind, e in ends if kind != "ok"]
    if failed:
        raise RuntimeError(f"push against {server.label} failed: {failed[0]}")
    wall = max(t for _, t in ends) - t0
    for i in range(clients):
        shutil.rmtree(server.root / "docker" / "registry" / "v2" / "repositories" / f"{prefix}-{i}",
                      ignore_errors=True)
    return Sample(wall, cpu.seconds)


# -- memory while pushing and pulling a big blob ---------------------------------------------------


def rss_push_pull(server: Server, blob: PatternBlob, repo: str) -> Sample:
    """Push ``blob`` in one ``PUT`` and pull it back while sampling the server's RSS; the figure is
    the largest sample in MiB (``extra`` has ``VmHWM`` and the RSS at the start)."""
    server.reset_peak_rss()
    before = server.status_kib("VmRSS") / 1024
    with RegistryClient(server.port, timeout=600) as client, RssSampler(server) as sampler:
        client.upload_monolithic(repo, blob.chunks(), blob.size, blob.digest)
        push_peak = sampler.peak_mib
        client.download(repo, blob.digest, blob.size)
    hwm = server.status_kib("VmHWM") / 1024
    forget_blob(server, blob.digest, repo)
    return Sample(sampler.peak_mib, None, {"push_peak_mib": push_peak, "hwm_mib": hwm, "start_mib": before,
                                           "samples": len(sampler.samples)})


# -- catalog ---------------------------------------------------------------------------------------


def catalog_request(server: Server, client: RegistryClient, n: int) -> tuple[float, float, list[str]]:
    """One ``GET /v2/_catalog?n=`` on a kept-alive connection: ms, server CPU ms, the page."""
    with CpuMeter(server) as cpu:
        t0 = time.perf_counter()
        page = client.catalog(n)
        elapsed = time.perf_counter() - t0
    return elapsed * 1000, cpu.seconds * 1000, page


def build_catalog_tree(root: Path, names: list[str], digest: str) -> None:
    """Create each repository of ``names`` directly on disk, in the storage layout both registries
    read: ``repositories/<name>/_layers/sha256/<hex>/link``. Written once; a stamp marks it done."""
    stamp = root / "bench-tree-complete"
    if stamp.exists():
        return
    if root.exists():
        shutil.rmtree(root)
    repos = root / "docker" / "registry" / "v2" / "repositories"
    hexpart = digest.split(":", 1)[1]
    link = digest.encode()
    made: set[str] = set()
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in made:
                os.makedirs(repos / parent, exist_ok=True)
                made.add(parent)
        leaf = repos / name / "_layers" / "sha256" / hexpart
        os.makedirs(leaf)
        with open(leaf / "link", "wb") as f:
            f.write(link)
    stamp.write_text(json.dumps({"repositories": len(names)}))


def catalog_names(count: int, layout: str) -> list[str]:
    """``flat``: ``repo-000000``...; ``nested``: ``team-000/app-00000``... (100 per namespace)."""
    if layout == "flat":
        return [f"repo-{i:06d}" for i in range(count)]
    per = 100
    return [f"team-{i // per:04d}/app-{i:06d}" for i in range(count)]
