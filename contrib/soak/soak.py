"""Soak: a long mixed push/pull/delete load at a bounded rate, watching the server's memory and files.

    python contrib/soak/soak.py                      # 10 minutes against a registry it starts itself
    SOAK_SECONDS=120 python contrib/soak/soak.py     # or --seconds 120
    python contrib/soak/soak.py --url http://127.0.0.1:5400 --pid 1234   # a registry already running

It starts ``registry serve`` (the one beside this Python) over a temporary filesystem root with deletes
enabled, unless ``--url`` and ``--pid`` name a running one. ``--clients`` threads then push images
(blobs in all three upload forms, some abandoned and cancelled; manifests under tags), pull them (every
byte checked against its digest), list tags and the catalog, and delete tags, manifests and layers,
keeping a bounded working set, at most ``--rate`` requests per second in all.

Every ``--sample-every`` seconds it samples the server's resident memory (VmRSS) and open file
descriptors (entries of /proc/<pid>/fd), printing a row; at the end, the least-squares slope of each over
the run after the warm-up, and the error counts. Errors are 5xx answers, connection errors, unexpected
statuses and wrong bytes; a 404 for something another client just deleted is not one.

Exit status: 0 when there were no errors and neither memory nor descriptors grew significantly (more
than ``--max-rss-growth-mb`` / ``--max-fd-growth`` over the measured window, by the fitted slope);
1 otherwise; 2 when the registry could not be started.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REQUEST_TIMEOUT = 30.0
START_TIMEOUT = 30.0
REPOS = [f"soak/r{i}" for i in range(8)]
WORKING_SET = 120  # images kept around; above it, deletes win


# -- the server ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).parent / "registry"
    if not exe.exists():
        exe = Path(shutil.which("registry") or "registry")
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "version": "0.1",
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "root")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen([str(exe), "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    with requests.Session() as s:
        s.trust_env = False
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(requests.RequestException):
                if s.get(url + "/v2/", timeout=1).status_code == 200:
                    return proc, url
            time.sleep(0.1)
    stop_server(proc)
    tail = (workdir / "server.log").read_text(errors="replace")[-3000:]
    raise RuntimeError(f"registry did not start on {url}:\n{tail}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# -- measuring -------------------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    rss_kib: int
    fds: int
    threads: int
    requests: int
    errors: int


def sample_process(pid: int) -> tuple[int, int, int]:
    """(VmRSS in KiB, open descriptors, threads) of ``pid``; raises OSError when it is gone."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope of ys over xs, and the correlation coefficient (0 when undefined)."""
    n = len(xs)
    if n < 2:
        return 0.0, 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    if sxx == 0:
        return 0.0, 0.0
    r = sxy / (sxx * syy) ** 0.5 if syy else 0.0
    return sxy / sxx, r


# -- the load --------------------------------------------------------------------------------------------


class RateLimiter:
    """At most ``rate`` acquisitions per second across all threads, evenly spaced."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


@dataclass
class Image:
    repo: str
    tag: str
    digest: str
    raw: bytes
    blobs: dict[str, int]  # digest -> size


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    ops: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def error(self, kind: str, what: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            if len(self.examples) < 20:
                self.examples.append(f"{kind}: {what}")


class Unexpected(Exception):
    pass


class Client:
    def __init__(self, url: str, limiter: RateLimiter, stats: Stats) -> None:
        self.url, self.limiter, self.stats = url, limiter, stats
        self.s = requests.Session()
        self.s.trust_env = False

    def call(self, method: str, path: str, ok: tuple[int, ...], **kw) -> requests.Response:
        """One request at the bounded rate; 5xx, connection errors and other statuses are errors."""
        self.limiter.acquire()
        url = path if "://" in path else self.url + path
        what = f"{method} {path.split('?')[0][-90:]}"
        try:
            r = self.s.request(method, url, timeout=REQUEST_TIMEOUT, allow_redirects=False, **kw)
            if method != "HEAD":
                _ = r.content
        except requests.RequestException as exc:
            with self.stats.lock:
                self.stats.requests += 1
            self.stats.error("connection", f"{what}: {type(exc).__name__}")
            raise Unexpected(what) from exc
        with self.stats.lock:
            self.stats.requests += 1
            self.stats.statuses[r.status_code] += 1
        if r.status_code >= 500:
            self.stats.error("5xx", f"{what}: {r.status_code} {r.text[:200]}")
            raise Unexpected(what)
        if r.status_code not in ok:
            self.stats.error("unexpected", f"{what}: {r.status_code} {r.text[:200]}")
            raise Unexpected(what)
        return r

    def push_blob(self, repo: str, data: bytes, form: str) -> str:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        octet = {"Content-Type": "application/octet-stream"}
        base = f"/v2/{repo}/blobs/uploads/"
        if form == "single":
            self.call("POST", base + f"?digest={d}", (201,), data=data, headers=octet)
            return d
        r = self.call("POST", base, (202,))
        location = urljoin(self.url + base, r.headers["Location"])
        if form == "chunked":
            step = max(len(data) // 3, 1)
            for start in range(0, len(data), step):
                part = data[start : start + step]
                r = self.call("PATCH", location, (202,), data=part,
                              headers={**octet, "Content-Range": f"{start}-{start + len(part) - 1}"})
                location = urljoin(location, r.headers["Location"])
            data = b""
        sep = "&" if "?" in location else "?"
        self.call("PUT", f"{location}{sep}digest={d}", (201,), data=data, headers=octet)
        return d

    def abandon_upload(self, repo: str) -> None:
        """Start a session, send a little, then cancel it (clients do this when a push is interrupted)."""
        r = self.call("POST", f"/v2/{repo}/blobs/uploads/", (202,))
        location = urljoin(self.url, r.headers["Location"])
        self.call("PATCH", location, (202,), data=b"abandoned" * 100,
                  headers={"Content-Type": "application/octet-stream", "Content-Range": "0-899"})
        self.call("DELETE", location, (204,))

    def close(self) -> None:
        self.s.close()


class Load:
    """The shared working set and the operation mix."""

    def __init__(self, url: str, rate: float, seed: int) -> None:
        self.url = url
        self.stats = Stats()
        self.limiter = RateLimiter(rate)
        self.images: dict[tuple[str, str], Image] = {}
        self.lock = threading.Lock()
        self.seed = seed
        self.counter = 0

    def run_client(self, i: int, deadline: float, stop: threading.Event) -> None:
        rng = random.Random(self.seed * 1000 + i)
        c = Client(self.url, self.limiter, self.stats)
        try:
            while time.monotonic() < deadline and not stop.is_set():
                op = self.choose(rng)
                try:
                    getattr(self, op)(c, rng)
                    with self.stats.lock:
                        self.stats.ops[op] += 1
                except Unexpected:
                    with self.stats.lock:
                        self.stats.ops[op + " (failed)"] += 1
        finally:
            c.close()

    def choose(self, rng: random.Random) -> str:
        with self.lock:
            size = len(self.images)
        if size < 10:
            return "push"
        weights = {"push": 30, "pull": 45, "listing": 6, "abandon": 3,
                   "delete": 16 if size < WORKING_SET else 40}
        return rng.choices(list(weights), weights=list(weights.values()))[0]

    def pick(self, rng: random.Random) -> Image | None:
        with self.lock:
            if not self.images:
                return None
            return self.images[rng.choice(list(self.images))]

    def push(self, c: Client, rng: random.Random) -> None:
        with self.lock:
            self.counter += 1
            n = self.counter
        repo = rng.choice(REPOS)
        layers = [f"layer {n}.{k} ".encode() + rng.randbytes(rng.choice((512, 4096, 65536, 262144)))
                  for k in range(rng.randint(1, 3))]
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                             "config": {"Labels": {"n": str(n)}}}).encode()
        blobs = {}
        for data in [*layers, config]:
            d = c.push_blob(repo, data, rng.choice(("single", "post_put", "chunked")))
            blobs[d] = len(data)
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": "sha256:" + hashlib.sha256(b).hexdigest(), "size": len(b)} for b in layers]}
        raw = json.dumps(doc).encode()
        tag = f"t{n}"
        r = c.call("PUT", f"/v2/{repo}/manifests/{tag}", (201,), data=raw, headers={"Content-Type": OCI_MANIFEST})
        d = "sha256:" + hashlib.sha256(raw).hexdigest()
        if r.headers.get("Docker-Content-Digest") != d:
            self.stats.error("corrupt", f"manifest PUT answered {r.headers.get('Docker-Content-Digest')}, not {d}")
        with self.lock:
            self.images[(repo, tag)] = Image(repo, tag, d, raw, blobs)

    def pull(self, c: Client, rng: random.Random) -> None:
        img = self.pick(rng)
        if img is None:
            return
        ref = rng.choice((img.tag, img.digest))
        r = c.call("GET", f"/v2/{img.repo}/manifests/{ref}", (200, 404), headers={"Accept": OCI_MANIFEST})
        if r.status_code == 404:
            return  # deleted meanwhile by another client
        if r.content != img.raw or r.headers.get("Docker-Content-Digest") != img.digest:
            self.stats.error("corrupt", f"manifest {img.repo}:{ref} came back different")
        for d, size in img.blobs.items():
            headers = {}
            if size > 1000 and rng.random() < 0.2:
                headers["Range"] = f"bytes=100-{size - 1}"
            r = c.call("GET", f"/v2/{img.repo}/blobs/{d}", (200, 206, 404), headers=headers)
            if r.status_code == 404:
                continue
            if r.status_code == 206:
                if len(r.content) != size - 100:
                    self.stats.error("corrupt", f"range of {d} has {len(r.content)} bytes")
            elif "sha256:" + hashlib.sha256(r.content).hexdigest() != d:
                self.stats.error("corrupt", f"blob {img.repo}@{d} served wrong bytes")

    def listing(self, c: Client, rng: random.Random) -> None:
        if rng.random() < 0.5:
            c.call("GET", f"/v2/{rng.choice(REPOS)}/tags/list?n=50", (200, 404))
        else:
            c.call("GET", "/v2/_catalog?n=100", (200,))

    def abandon(self, c: Client, rng: random.Random) -> None:
        c.abandon_upload(rng.choice(REPOS))

    def delete(self, c: Client, rng: random.Random) -> None:
        with self.lock:
            if not self.images:
                return
            img = self.images.pop(rng.choice(list(self.images)))
        how = rng.random()
        if how < 0.4:
            c.call("DELETE", f"/v2/{img.repo}/manifests/{img.digest}", (202, 404))
        elif how < 0.8:
            c.call("DELETE", f"/v2/{img.repo}/manifests/{img.tag}", (202, 404))
        else:
            c.call("DELETE", f"/v2/{img.repo}/manifests/{img.tag}", (202, 404))
            for d in img.blobs:
                c.call("DELETE", f"/v2/{img.repo}/blobs/{d}", (202, 404))


# -- the run ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS") or 600),
                   help="how long the load runs (default: $SOAK_SECONDS or 600)")
    p.add_argument("--rate", type=float, default=40.0, help="requests per second, at most (default 40)")
    p.add_argument("--clients", type=int, default=6, help="client threads (default 6)")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples (default 5)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds left out of the trend (default: a fifth of the run, at most 60)")
    p.add_argument("--max-rss-growth-mb", type=float, default=16.0,
                   help="fitted RSS growth over the measured window that fails the run (default 16 MiB)")
    p.add_argument("--max-fd-growth", type=float, default=8.0,
                   help="fitted growth in open descriptors over the window that fails the run (default 8)")
    p.add_argument("--url", help="soak a running registry at this URL instead of starting one")
    p.add_argument("--pid", type=int, help="its process id (required with --url)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if bool(args.url) != bool(args.pid):
        p.error("--url and --pid go together")
    if args.seconds <= 0 or args.rate <= 0 or args.clients < 1 or args.sample_every <= 0:
        p.error("--seconds, --rate and --sample-every must be positive, --clients at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="registry-soak-"))
    proc = None
    try:
        if args.url:
            url, pid = args.url.rstrip("/"), args.pid
        else:
            try:
                proc, url = start_server(workdir)
            except (RuntimeError, OSError) as exc:
                print(f"soak: {exc}", file=sys.stderr)
                return 2
            pid = proc.pid
        return soak(args, url, pid)
    finally:
        if proc is not None:
            stop_server(proc)
            log = (workdir / "server.log").read_text(errors="replace")
            if "Traceback" in log:
                print("--- the server logged tracebacks; its log's end: ---\n" + log[-3000:])
        shutil.rmtree(workdir, ignore_errors=True)


def soak(args: argparse.Namespace, url: str, pid: int) -> int:
    load = Load(url, args.rate, args.seed)
    stop = threading.Event()
    started = time.monotonic()
    deadline = started + args.seconds
    threads = [threading.Thread(target=load.run_client, args=(i, deadline, stop), daemon=True)
               for i in range(args.clients)]
    print(f"soak: {url} (pid {pid}) for {args.seconds:.0f}s, {args.clients} clients, at most {args.rate:g} req/s")
    print(f"{'time':>7} {'rss MiB':>9} {'fds':>5} {'threads':>8} {'requests':>9} {'req/s':>6} {'errors':>7}")
    samples: list[Sample] = []
    last_requests, last_t = 0, 0.0
    for t in threads:
        t.start()
    gone = False
    try:
        next_sample = started
        while True:
            now = time.monotonic()
            if now >= next_sample:
                try:
                    rss, fds, nthreads = sample_process(pid)
                except OSError:
                    gone = True
                    load.stats.error("connection", "the registry process is gone")
                    break
                elapsed = now - started
                with load.stats.lock:
                    reqs, errs = load.stats.requests, sum(load.stats.errors.values())
                samples.append(Sample(elapsed, rss, fds, nthreads, reqs, errs))
                rate = (reqs - last_requests) / (elapsed - last_t) if elapsed > last_t else 0.0
                last_requests, last_t = reqs, elapsed
                print(f"{elapsed:6.0f}s {rss / 1024:9.1f} {fds:5d} {nthreads:8d} {reqs:9d} {rate:6.1f} {errs:7d}",
                      flush=True)
                next_sample += args.sample_every
            if now >= deadline and not any(t.is_alive() for t in threads):
                break
            if now >= deadline + REQUEST_TIMEOUT + 5:
                break  # a client stuck beyond its request timeout: stop waiting
            time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))
    finally:
        stop.set()
        for t in threads:
            t.join(REQUEST_TIMEOUT + 5)
    return report(args, load, samples, gone)


def report(args: argparse.Namespace, load: Load, samples: list[Sample], gone: bool) -> int:
    stats = load.stats
    warmup = args.warmup if args.warmup is not None else min(60.0, args.seconds / 5)
    window = [s for s in samples if s.t >= warmup] or samples
    xs = [s.t / 60 for s in window]
    rss_slope, rss_r = slope(xs, [s.rss_kib / 1024 for s in window])
    fd_slope, fd_r = slope(xs, [float(s.fds) for s in window])
    minutes = (window[-1].t - window[0].t) / 60 if len(window) > 1 else 0.0
    rss_growth, fd_growth = rss_slope * minutes, fd_slope * minutes
    duration = samples[-1].t if samples else 0.0
    errors = sum(stats.errors.values())
    print()
    print(f"requests: {stats.requests} in {duration:.0f}s ({stats.requests / max(duration, 1e-9):.1f}/s); "
          f"statuses: {dict(sorted(stats.statuses.items()))}")
    print(f"operations: {dict(sorted(stats.ops.items()))}")
    if window:
        print(f"trend over {minutes:.1f} min after a {warmup:.0f}s warm-up ({len(window)} samples):")
        print(f"  RSS  {window[0].rss_kib / 1024:.1f} -> {window[-1].rss_kib / 1024:.1f} MiB, "
              f"slope {rss_slope:+.3f} MiB/min (r={rss_r:+.2f}), fitted growth {rss_growth:+.2f} MiB "
              f"(limit {args.max_rss_growth_mb:g})")
        print(f"  fds  {window[0].fds} -> {window[-1].fds}, slope {fd_slope:+.3f}/min (r={fd_r:+.2f}), "
              f"fitted growth {fd_growth:+.2f} (limit {args.max_fd_growth:g})")
    print(f"errors: {errors} " + (f"{dict(stats.errors)}" if errors else "(5xx: 0, connection: 0, unexpected: 0, "
                                  "corrupt: 0)"))
    for example in stats.examples:
        print(f"  {example}")
    failed = []
    if errors:
        failed.append(f"{errors} errors")
    if gone:
        failed.append("the registry process died")
    if rss_growth > args.max_rss_growth_mb:
        failed.append(f"RSS grew {rss_growth:.1f} MiB")
    if fd_growth > args.max_fd_growth:
        failed.append(f"open descriptors grew {fd_growth:.1f}")
    print("soak: FAILED: " + "; ".join(failed) if failed else "soak: OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
