"""Paired A/B of the manifest workloads: this checkout against another build of our registry, with
Distribution beside both for the ratio, all on the same pinned core and alternated sample by sample.

    .venv/bin/python -m bench.ab --base /path/to/other/checkout [--pairs 8] [--seconds 1.5]

``--base`` is a source tree of the registry (``git archive <commit> | tar -x -C DIR``): its
``registry`` package and its filesystem plugin are put first on the server's ``PYTHONPATH``. Each
pair runs every row (GET and HEAD of a manifest by tag, 16 and 64 connections) once on each server,
in an order that alternates between pairs. Prints, per row, the CPU ms per request of each server
(median and minimum), the median of the per-pair ratios new/base with its quartiles, the ratio of
each to Distribution's, req/s, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

from bench.client import RegistryClient, sha256_digest
from bench.servers import REPO_ROOT, Server
from bench.workloads import load

PATH = "/v2/bench/manifest/manifests/latest"


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v, v
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, type=Path, help="source tree of the build to compare against")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--connections", default="16,64")
    p.add_argument("--methods", default="GET,HEAD")
    p.add_argument("--no-dist", action="store_true", help="leave Distribution out")
    args = p.parse_args(argv)
    base = args.base.resolve()
    port = int(os.environ.get("BENCH_PORT_BASE", "5200")) + 60
    work = Path(os.environ.get("BENCH_WORKDIR", REPO_ROOT / "bench" / ".work")) / "ab"
    shutil.rmtree(work, ignore_errors=True)
    pythonpath = os.pathsep.join([str(base), str(base / "registry_plugins" / "filesystem")])
    servers = {
        "base": Server("ours", work / "base", port, work / "logs", cpus="1", env={"PYTHONPATH": pythonpath}),
        "new": Server("ours", work / "new", port + 1, work / "logs", cpus="1"),
    }
    if not args.no_dist and shutil.which("docker-registry"):
        servers["dist"] = Server("dist", work / "dist", port + 2, work / "logs", cpus="1")
    rows = [(m, int(c)) for m in args.methods.split(",") for c in args.connections.split(",")]
    cpu: dict[tuple[str, int], dict[str, list[float]]] = {r: {k: [] for k in servers} for r in rows}
    rate: dict[tuple[str, int], dict[str, list[float]]] = {r: {k: [] for k in servers} for r in rows}
    load_before = os.getloadavg()
    try:
        layer = os.urandom(1024)
        for server in servers.values():
            server.start()
            with RegistryClient(server.port) as client:
                client.push_image("bench/manifest", "latest", [(layer, sha256_digest(layer))])
            load(server, PATH, "GET", 16, 1.0, "0")  # warm-up
        kinds = list(servers)
        for i in range(args.pairs):
            order = kinds if i % 2 == 0 else kinds[::-1]
            for row in rows:
                for kind in order:
                    sample = load(servers[kind], PATH, row[0], row[1], args.seconds, "0")
                    cpu[row][kind].append(sample.cpu)
                    rate[row][kind].append(sample.value)
            print(f"pair {i + 1}/{args.pairs} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    finally:
        for server in servers.values():
            server.stop()
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.1f} / {load_before[1]:.1f}, after {load_after[0]:.1f} / "
          f"{load_after[1]:.1f}; {args.pairs} pairs of {args.seconds}s samples")
    print("| row | CPU ms/req base -> new, median (min) | paired new/base, median [quartiles] "
          "| vs Distribution, base -> new (medians) | req/s base -> new, median |")
    print("|---|---|---|---|---|")
    for row in rows:
        c, r = cpu[row], rate[row]
        ratios = [n / b for n, b in zip(c["new"], c["base"], strict=True)]
        q1, med, q3 = _quartiles(ratios)
        dist = ""
        if "dist" in c:
            d = statistics.median(c["dist"])
            dist = (f"{statistics.median(c['base']) / d:.3f} -> {statistics.median(c['new']) / d:.3f} "
                    f"(Distribution {d:.3f} ms)")
        print(f"| {row[0]}, {row[1]} connections | {statistics.median(c['base']):.3f} ({min(c['base']):.3f}) -> "
              f"{statistics.median(c['new']):.3f} ({min(c['new']):.3f}) | {med:.2f} [{q1:.2f}-{q3:.2f}] | {dist} | "
              f"{statistics.median(r['base']):,.0f} -> {statistics.median(r['new']):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
