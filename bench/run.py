"""The benchmark runner: ``make bench`` / ``python -m bench``.

Both registries run side by side on loopback (ports 5200-5299); every workload alternates between
them over the repeats (ours first on even repeats, Distribution first on odd ones), and each row
reports medians and ranges. Sizes come from environment variables (see :class:`Settings`);
``BENCH_QUICK=1`` shrinks everything for a smoke run of a minute or two.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench import report, ui
from bench.client import PatternBlob, RegistryClient, sha256_digest
from bench.servers import REPO_ROOT, Server
from bench.workloads import (
    MiB,
    Sample,
    build_catalog_tree,
    catalog_names,
    catalog_request,
    download,
    load,
    push_many,
    rss_push_pull,
    upload,
    wrk,
)

KINDS = ("ours", "dist")
GROUPS = ("upload", "download", "manifest", "push", "rss", "catalog", "s3", "ui")


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _env_list(name: str, default: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, default).split(",") if x.strip()]


@dataclasses.dataclass
class Settings:
    """What to run, from the environment. Every size is overridable; ``BENCH_QUICK=1`` changes the
    defaults to small ones."""

    quick: bool
    repeats: int  # BENCH_REPEATS: alternated repeats of the upload, download and push workloads
    upload_mib: int  # BENCH_UPLOAD_MIB
    chunk_mib: int  # BENCH_CHUNK_MIB
    download_mib: int  # BENCH_DOWNLOAD_MIB
    download_count: int  # BENCH_DOWNLOAD_COUNT: GETs per sample
    load_repeats: int  # BENCH_LOAD_REPEATS: repeats of each manifest workload
    load_seconds: float  # BENCH_LOAD_SECONDS: measured seconds per manifest sample
    connections: list[int]  # BENCH_CONNECTIONS
    push_clients: int  # BENCH_PUSH_CLIENTS
    push_blobs: int  # BENCH_PUSH_BLOBS
    push_blob_kib: int  # BENCH_PUSH_BLOB_KIB
    rss_mib: list[int]  # BENCH_RSS_MIB: blob sizes of the memory workload, smallest first
    catalog_repos: int  # BENCH_CATALOG_REPOS
    catalog_layouts: list[str]  # BENCH_CATALOG_LAYOUTS: flat and/or nested
    catalog_requests: int  # BENCH_CATALOG_REQUESTS: measured requests per registry (at most)
    catalog_seconds: float  # BENCH_CATALOG_SECONDS: time budget per registry and layout
    only: list[str]  # BENCH_ONLY: a subset of GROUPS
    port_base: int  # BENCH_PORT_BASE (5200): ports base+1 .. base+40 are used
    workdir: Path  # BENCH_WORKDIR (bench/.work): data roots, logs, results.json, catalog trees
    docs: bool  # BENCH_DOCS: write docs/bench.png and the results block of docs/benchmarks.md
    server_cpu: str  # BENCH_SERVER_CPU (1): the core the server is pinned to for manifest workloads
    client_cpu: str  # BENCH_CLIENT_CPU (0): the core the load generator is pinned to
    deadline_minutes: float  # BENCH_DEADLINE_MINUTES: remaining repeats are skipped after this
    s3_mib: int = 512  # BENCH_S3_MIB: the layer pushed and pulled through both registries on radosgw

    @classmethod
    def from_env(cls) -> Settings:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        only = _env_list("BENCH_ONLY", ",".join(GROUPS))
        unknown = set(only) - set(GROUPS)
        if unknown:
            raise SystemExit(f"BENCH_ONLY: unknown workload group(s) {sorted(unknown)}; known: {GROUPS}")
        full = not quick and set(only) == set(GROUPS)
        return cls(
            quick=quick,
            repeats=_env_int("BENCH_REPEATS", 2 if quick else 5),
            upload_mib=_env_int("BENCH_UPLOAD_MIB", 64 if quick else 512),
            chunk_mib=_env_int("BENCH_CHUNK_MIB", 16),
            download_mib=_env_int("BENCH_DOWNLOAD_MIB", 64 if quick else 512),
            download_count=_env_int("BENCH_DOWNLOAD_COUNT", 2),
            load_repeats=_env_int("BENCH_LOAD_REPEATS", 2 if quick else 5),
            load_seconds=_env_float("BENCH_LOAD_SECONDS", 1.5 if quick else 3.0),
            connections=[int(x) for x in _env_list("BENCH_CONNECTIONS", "16,64")],
            push_clients=_env_int("BENCH_PUSH_CLIENTS", 8),
            push_blobs=_env_int("BENCH_PUSH_BLOBS", 10 if quick else 50),
            push_blob_kib=_env_int("BENCH_PUSH_BLOB_KIB", 1024),
            rss_mib=sorted(int(x) for x in _env_list("BENCH_RSS_MIB", "128,512" if quick else "512,2048")),
            catalog_repos=_env_int("BENCH_CATALOG_REPOS", 10_000 if quick else 100_000),
            catalog_layouts=_env_list("BENCH_CATALOG_LAYOUTS", "flat,nested"),
            catalog_requests=_env_int("BENCH_CATALOG_REQUESTS", 5 if quick else 15),
            catalog_seconds=_env_float("BENCH_CATALOG_SECONDS", 10 if quick else 40),
            only=only,
            port_base=_env_int("BENCH_PORT_BASE", 5200),
            workdir=Path(os.environ.get("BENCH_WORKDIR", REPO_ROOT / "bench" / ".work")).resolve(),
            docs=os.environ.get("BENCH_DOCS", "1" if full else "0") not in ("", "0"),
            server_cpu=os.environ.get("BENCH_SERVER_CPU", "1"),
            client_cpu=os.environ.get("BENCH_CLIENT_CPU", "0"),
            deadline_minutes=_env_float("BENCH_DEADLINE_MINUTES", 14.0),
            s3_mib=_env_int("BENCH_S3_MIB", 64 if quick else 512),
        )


class Runner:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.rows: list[report.Row] = []
        self.notes: list[str] = []
        self.started = time.monotonic()
        self.deadline = self.started + settings.deadline_minutes * 60
        self.load_start = round(os.getloadavg()[0], 1)  # the machine is shared: say how busy it was

    # -- helpers -------------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def out_of_time(self) -> bool:
        if time.monotonic() > self.deadline:
            self.notes.append("the time budget ran out: some repeats were skipped")
            return True
        return False

    def servers(self, phase: int, *, cpus: str | None = None,
                roots: dict[str, Path] | None = None) -> dict[str, Server]:
        """Start both registries for one phase (each on its own data root unless ``roots`` says)."""
        servers: dict[str, Server] = {}
        work = self.s.workdir
        try:
            for i, kind in enumerate(KINDS):
                root = roots[kind] if roots else work / "data" / kind
                port = self.s.port_base + phase * 10 + i + 1
                servers[kind] = Server(kind, root, port, work / "logs", cpus=cpus).start()
        except BaseException:
            for server in servers.values():
                server.stop()
            raise
        return servers

    @staticmethod
    def alternate(repeat: int) -> tuple[str, ...]:
        return KINDS if repeat % 2 == 0 else KINDS[::-1]

    def repeat(self, count: int) -> Iterator[int]:
        for r in range(count):
            if r and self.out_of_time():
                return
            yield r

    def add(self, row: report.Row) -> report.Row:
        self.rows.append(row)
        return row

    # -- phases --------------------------------------------------------------------------------------

    def run(self) -> None:
        s = self.s
        shutil.rmtree(s.workdir / "data", ignore_errors=True)
        shutil.rmtree(s.workdir / "logs", ignore_errors=True)
        # The small-request phases first, and a sync before each phase: writing back the GiBs of the
        # transfer phases would otherwise run on the cores (and evict the caches) of what follows.
        phases = [("manifest", self.manifest_phase), ("catalog", self.catalog_phase),
                  ("transfers", self.transfer_phase), ("rss", self.rss_phase), ("s3", self.s3_phase),
                  ("ui", lambda: ui.ui_phase(self))]
        for name, phase in phases:
            wanted = {"upload", "download", "push"} if name == "transfers" else {name}
            if wanted & set(s.only):
                os.sync()
                phase()
        shutil.rmtree(s.workdir / "data", ignore_errors=True)

    def transfer_phase(self) -> None:
        s = self.s
        size, chunk = s.upload_mib * MiB, s.chunk_mib * MiB
        rows = {}
        if "upload" in s.only:
            rows["mono"] = self.add(report.Row(
                "upload_mono", f"upload {s.upload_mib} MiB, monolithic (POST + PUT)", "MB/s", "higher",
                target=report.Target("ratio_ge", 2.5), cpu_unit="CPU s/GiB"))
            rows["chunked"] = self.add(report.Row(
                "upload_chunked", f"upload {s.upload_mib} MiB in {s.chunk_mib} MiB PATCHes", "MB/s", "higher",
                target=report.Target("ratio_ge", 2.5), cpu_unit="CPU s/GiB"))
            rows["streamed"] = self.add(report.Row(
                "upload_chunked_te", f"upload {s.upload_mib} MiB in one chunked-transfer PATCH (no Content-Length)",
                "MB/s", "higher", target=report.Target("ratio_ge", 2.5), cpu_unit="CPU s/GiB"))
        if "download" in s.only:
            rows["download"] = self.add(report.Row(
                "download", f"download {s.download_mib} MiB", "MB/s", "higher",
                target=report.Target("ratio_ge", 1.1), cpu_unit="CPU s/GiB"))
        if "push" in s.only:
            rows["push"] = self.add(report.Row(
                "push_many", f"{s.push_clients} clients x {s.push_blobs} blobs of {s.push_blob_kib} KiB + manifest",
                "s", "lower", target=report.Target("ratio_le", 0.5), cpu_unit="CPU s"))
        servers = self.servers(0)
        try:
            blob_for_download = None
            if "download" in rows:
                blob_for_download = PatternBlob(s.download_mib * MiB, seed=1)
                blob_for_download.compute_digest()
                for server in servers.values():
                    with RegistryClient(server.port) as client:
                        client.upload_monolithic("bench/download", blob_for_download.chunks(),
                                                 blob_for_download.size, blob_for_download.digest)
            for r in self.repeat(s.repeats):
                self.log(f"transfers: repeat {r + 1}/{s.repeats}")
                blob = None
                if "mono" in rows:
                    blob = PatternBlob(size, seed=100 + r)
                    blob.compute_digest()
                for kind in self.alternate(r):
                    server = servers[kind]
                    if "mono" in rows:
                        assert blob is not None
                        rows["mono"].record(kind, upload(server, blob, chunk=None, repo="bench/upload"))
                        rows["chunked"].record(kind, upload(server, blob, chunk=chunk, repo="bench/upload"))
                        rows["streamed"].record(kind, upload(server, blob, chunk=None, repo="bench/upload",
                                                             streamed=True))
                    if blob_for_download is not None:
                        rows["download"].record(kind, download(server, "bench/download", blob_for_download.digest,
                                                               blob_for_download.size, s.download_count))
                    if "push" in rows:
                        rows["push"].record(kind, push_many(server, f"push/r{r}", s.push_clients, s.push_blobs,
                                                            s.push_blob_kib * 1024))
                self._progress(*rows.values())
        finally:
            for server in servers.values():
                server.stop()

    def s3_phase(self) -> None:
        """Push (16 MiB PATCHes) and pull a layer through both registries on one radosgw: ours with
        the rgw driver, Distribution with its own s3 driver, each on a bucket of its own, redirects
        off so that the bytes pass through the registry."""
        s = self.s
        size, chunk = s.s3_mib * MiB, s.chunk_mib * MiB
        up = self.add(report.Row("s3_upload", f"S3 (radosgw): upload {s.s3_mib} MiB in {s.chunk_mib} MiB PATCHes",
                                 "MB/s", "higher", target=report.Target("ratio_ge", 1.5), cpu_unit="CPU s/GiB"))
        down = self.add(report.Row("s3_download", f"S3 (radosgw): download {s.s3_mib} MiB", "MB/s", "higher",
                                   target=report.Target("ratio_ge", 1.5), cpu_unit="CPU s/GiB"))
        ceph_dir = s.workdir / "ceph"
        ports = {"RGW_PORT": s.port_base + 90, "MON_V2_PORT": s.port_base + 91, "MON_V1_PORT": s.port_base + 92}
        env = {**os.environ, "CEPH_DIR": str(ceph_dir), "OSD_STORE": "bluestore",
               **{k: str(v) for k, v in ports.items()}}
        started = subprocess.run(["bash", str(REPO_ROOT / "contrib" / "dev" / "start-ceph.sh")], env=env,
                                 capture_output=True, text=True, timeout=180)
        if started.returncode:
            raise RuntimeError(f"start-ceph.sh failed: {started.stderr[-2000:]}")
        out = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line and line[0] != "#")
        endpoint, key, secret = out["RGW_S3_ENDPOINT"], out["RGW_ACCESS_KEY_ID"], out["RGW_SECRET_ACCESS_KEY"]
        servers: dict[str, Server] = {}
        try:
            common = (f"regionendpoint: {endpoint}, bucket: bench-{{kind}}, accesskey: {key}, secretkey: {secret}, "
                      f"chunksize: {chunk}")
            tail = (", delete: {enabled: true}, redirect: {disable: true}, "
                    "maintenance: {uploadpurging: {enabled: false}}}\n")
            storage = {
                "ours": "storage: {rgw: {" + common.format(kind="ours") + ", createbucket: true}" + tail,
                # Distribution creates no bucket: ours makes its own above, and this one here.
                "dist": "storage: {s3: {" + common.format(kind="dist") + ", region: us-east-1, secure: false, "
                        "v4auth: true, forcepathstyle: true}" + tail,
            }
            for i, kind in enumerate(KINDS):
                if kind == "dist":
                    _create_bucket(endpoint, key, secret, "bench-dist")
                # Distribution's s3 driver refuses to start with AWS_CA_BUNDLE set (LoadCustomCABundleError).
                servers[kind] = Server(kind, s.workdir / "data" / kind, s.port_base + 80 + i, s.workdir / "logs",
                                       storage=storage[kind], drop_env=("AWS_CA_BUNDLE",)).start()
            for r in self.repeat(s.repeats):
                self.log(f"s3: repeat {r + 1}/{s.repeats}")
                blob = PatternBlob(size, seed=300 + r)
                blob.compute_digest()
                for kind in self.alternate(r):
                    up.record(kind, upload(servers[kind], blob, chunk=chunk, repo=f"bench/s3-{r}"))
                    down.record(kind, download(servers[kind], f"bench/s3-{r}", blob.digest, blob.size, 1))
                self._progress(up, down)
        finally:
            for server in servers.values():
                server.stop()
            subprocess.run(["bash", str(REPO_ROOT / "contrib" / "dev" / "stop-ceph.sh"), "--wipe"], env=env,
                           timeout=120, check=False)

    def manifest_phase(self) -> None:
        s = self.s
        path = "/v2/bench/manifest/manifests/latest"
        rows: dict[tuple[str, int], report.Row] = {}
        for method in ("GET", "HEAD"):
            for conns in s.connections:
                rows[method, conns] = self.add(report.Row(
                    f"manifest_{method.lower()}_{conns}", f"{method} manifest by tag, {conns} connections, 1 core",
                    "req/s", "higher", target=report.Target("ratio_ge", 5.0, cpu_ratio_le=0.15), cpu_unit="CPU ms/req"))
        cross = self.add(report.Row(
            "manifest_get_wrk", f"GET manifest by tag, {s.connections[0]} connections, 1 core (wrk, cross-check)",
            "req/s", "higher", target=report.Target("none"), cpu_unit="CPU ms/req"))
        servers = self.servers(1, cpus=s.server_cpu)
        try:
            layer = os.urandom(1024)
            for server in servers.values():
                with RegistryClient(server.port) as client:
                    client.push_image("bench/manifest", "latest", [(layer, sha256_digest(layer))])
                load(server, path, "GET", 16, 1.0, s.client_cpu)  # warm-up
            for r in self.repeat(s.load_repeats):
                self.log(f"manifests: repeat {r + 1}/{s.load_repeats}")
                for (method, conns), row in rows.items():
                    for kind in self.alternate(r):
                        row.record(kind, load(servers[kind], path, method, conns, s.load_seconds, s.client_cpu))
                for kind in self.alternate(r):
                    cross.record(kind, wrk(servers[kind], path, "GET", s.connections[0], s.load_seconds, s.client_cpu))
                self._progress(*rows.values(), cross)
        finally:
            for server in servers.values():
                server.stop()

    def rss_phase(self) -> None:
        s = self.s
        rows = {}
        for mib in s.rss_mib:
            label = f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"
            rows[mib] = self.add(report.Row(
                f"rss_{mib}", f"peak RSS pushing + pulling a {label} blob", "MiB", "lower",
                target=report.Target("ours_le", 150.0)))
        growth = None
        if len(s.rss_mib) > 1:
            growth = self.add(report.Row(
                "rss_growth", f"RSS growth from {s.rss_mib[0]} MiB to {s.rss_mib[-1]} MiB blob", "MiB", "lower",
                target=report.Target("ours_le", 16.0), show_ratio=False))
        blobs = {}
        for i, mib in enumerate(s.rss_mib):
            blobs[mib] = PatternBlob(mib * MiB, seed=200 + i)
            blobs[mib].compute_digest()
        # Fresh servers: the peak must be this workload's, not a leftover of an earlier one. A warm-up
        # first (three small pushes and pulls: waitress hands consecutive requests to different
        # worker threads, each with its own allocator arena), so that what is compared between sizes
        # is the steady state and not how many threads have served a large request so far.
        servers = self.servers(2)
        warm = PatternBlob(min(64, s.rss_mib[0]) * MiB, seed=299)
        warm.compute_digest()
        try:
            for kind in KINDS:
                start_mib = servers[kind].status_kib("VmRSS") / 1024
                for _ in range(3):
                    rss_push_pull(servers[kind], warm, "bench/warm")
                for row in rows.values():
                    row.extra[f"{kind}_start_mib"] = round(start_mib, 1)
                peaks = []
                for mib in s.rss_mib:
                    self.log(f"memory: {servers[kind].label}, {mib} MiB")
                    sample = rss_push_pull(servers[kind], blobs[mib], "bench/rss")
                    rows[mib].record(kind, sample)
                    peaks.append(sample.value)
                if growth is not None:
                    growth.record(kind, Sample(peaks[-1] - peaks[0]))
        finally:
            for server in servers.values():
                server.stop()
        self._progress(*rows.values(), *([growth] if growth else []))

    def catalog_phase(self) -> None:
        s = self.s
        digest = sha256_digest(b"bench catalog layer")
        for j, layout in enumerate(s.catalog_layouts):
            names = catalog_names(s.catalog_repos, layout)
            desc = ("in one directory" if layout == "flat"
                    else f"in {len({n.split('/')[0] for n in names})} namespaces")
            row = self.add(report.Row(
                f"catalog_{layout}", f"catalog first page (n=100), {s.catalog_repos:,} repositories {desc}", "ms",
                "lower", target=report.Target("ours_le", 50.0), cpu_unit="CPU ms"))
            tree = s.workdir / f"catalog-{layout}-{s.catalog_repos}"
            t0 = time.monotonic()
            build_catalog_tree(tree, names, digest)
            self.log(f"catalog: {layout} tree of {s.catalog_repos:,} repositories ready "
                     f"({time.monotonic() - t0:.1f}s)")
            servers = self.servers(3 + j, roots={"ours": tree, "dist": tree})
            try:
                clients = {k: RegistryClient(v.port, timeout=300) for k, v in servers.items()}
                pages = {}
                spent = dict.fromkeys(KINDS, 0.0)
                for kind in KINDS:  # warm-up (directory caches); not counted
                    t = time.monotonic()
                    *_, pages[kind] = catalog_request(servers[kind], clients[kind], 100)
                    spent[kind] += time.monotonic() - t
                for i in range(s.catalog_requests):
                    for kind in self.alternate(i):
                        if i >= 2 and spent[kind] > s.catalog_seconds:
                            continue  # Distribution walks everything: bound its share by time
                        t = time.monotonic()
                        ms, cpu_ms, page = catalog_request(servers[kind], clients[kind], 100)
                        spent[kind] += time.monotonic() - t
                        row.record(kind, Sample(ms, cpu_ms))
                if pages["ours"] != pages["dist"]:
                    self.notes.append(f"catalog ({layout}): the two registries' first pages differ")
                row.extra["same_first_page"] = pages["ours"] == pages["dist"]
                for c in clients.values():
                    c.close()
            finally:
                for server in servers.values():
                    server.stop()
            self._progress(row)

    def _progress(self, *rows: report.Row) -> None:
        for row in rows:
            print("    " + report.one_line(row), flush=True)


def _create_bucket(endpoint: str, key: str, secret: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                 region_name="us-east-1").create_bucket(Bucket=bucket)


def environment() -> dict:
    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unknown"

    import falcon
    import waitress

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "falcon": falcon.__version__,
        "waitress": waitress.__version__ if hasattr(waitress, "__version__") else _dist_version("waitress"),
        "distribution": version(["docker-registry", "--version"]),
        "kernel": platform.release(),
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--report-only", action="store_true",
                        help="re-print the table (and rewrite the plot/docs) from bench/.work/results.json")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    results_path = settings.workdir / "results.json"
    if args.report_only:
        data = json.loads(results_path.read_text())
    else:
        for tool in ("docker-registry", "wrk", "taskset"):
            if shutil.which(tool) is None:
                raise SystemExit(f"bench needs {tool!r} on PATH")
        settings.workdir.mkdir(parents=True, exist_ok=True)
        runner = Runner(settings)
        runner.log(f"benchmark: {'quick' if settings.quick else 'full'} run, workloads {', '.join(settings.only)}")
        try:
            runner.run()
        finally:
            settings_dict = {k: (str(v) if isinstance(v, Path) else v)
                             for k, v in dataclasses.asdict(settings).items()}
            data = {
                "environment": {**environment(), "load_start": runner.load_start,
                                "load_end": round(os.getloadavg()[0], 1)},
                "settings": settings_dict,
                "minutes": round((time.monotonic() - runner.started) / 60, 1),
                "notes": runner.notes,
                "rows": [row.to_dict() for row in runner.rows],
            }
            results_path.write_text(json.dumps(data, indent=1))
    rows = report.in_order([report.Row.from_dict(r) for r in data["rows"]])
    print()
    print(report.table(rows))
    for note in data.get("notes", []):
        print(f"note: {note}")
    print(f"({data['minutes']} minutes; results in {results_path})")
    docs = settings.docs
    out_dir = REPO_ROOT / "docs" if docs else settings.workdir
    png = report.plot(rows, out_dir / "bench.png", data["environment"])
    if png:
        print(f"plot: {png}")
    if docs:
        report.update_docs(REPO_ROOT / "docs" / "benchmarks.md", rows, data)
        print("docs/benchmarks.md: results block updated")
    failed = [r.key for r in rows if r.passed() is False]
    if failed and os.environ.get("BENCH_STRICT", "") not in ("", "0"):
        print(f"BENCH_STRICT: {len(failed)} target(s) missed: {', '.join(failed)}")
        return 1
    return 0
