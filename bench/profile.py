"""Profile our registry on one workload with py-spy and summarize where its samples go.

    .venv/bin/pip install py-spy
    .venv/bin/python -m bench.profile upload_mono [--seconds 20] [--native] [--top 25]

Workloads: ``upload_mono``, ``upload_chunked``, ``download``, ``manifest_get``, ``manifest_head``,
``push``. The server runs on its own data root (port ``BENCH_PORT_BASE`` + 50, 5250 by default);
py-spy samples every thread that is running (not idle) at 200 Hz, for as long as the workload
loops (bounded by ``--seconds`` and a repeat count). The summary lists functions by *self* share
(the frame that was on CPU) and by *total* share (anywhere on the stack), as percentages of all
samples, and the raw collapsed stacks are kept in ``bench/.work/profile-<workload>.txt`` (open
them with speedscope or flamegraph.pl).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.client import PatternBlob, RegistryClient, sha256_digest
from bench.servers import REPO_ROOT, Server
from bench.workloads import MiB, load, push_many

WORKLOADS = ("upload_mono", "upload_chunked", "download", "manifest_get", "manifest_head", "push")


def summarize(collapsed: Path, top: int) -> str:
    """Self and total shares per function from py-spy's ``--format raw`` output."""
    self_counts: collections.Counter[str] = collections.Counter()
    total_counts: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += n
        self_counts[frames[-1]] += n
        for f in set(frames):
            total_counts[f] += n
    if not samples:
        return "no samples"
    out = [f"{samples} samples", "", "self %  function (the frame on CPU)"]
    out += [f"{100 * c / samples:6.1f}  {f}" for f, c in self_counts.most_common(top)]
    out += ["", "total % function (anywhere on the stack)"]
    out += [f"{100 * c / samples:6.1f}  {f}" for f, c in total_counts.most_common(top)]
    return "\n".join(out)


def drive(workload: str, server: Server, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    if workload.startswith("upload"):
        for i in range(20):
            blob = PatternBlob(512 * MiB, seed=1000 + i)
            blob.compute_digest()
            with RegistryClient(server.port) as c:
                if workload == "upload_mono":
                    c.upload_monolithic("prof/up", blob.chunks(), blob.size, blob.digest)
                else:
                    c.upload_chunked("prof/up", blob.chunks(16 * MiB), blob.digest)
            if time.monotonic() > deadline:
                return
    elif workload == "download":
        blob = PatternBlob(512 * MiB, seed=7)
        blob.compute_digest()
        with RegistryClient(server.port) as c:
            c.upload_monolithic("prof/down", blob.chunks(), blob.size, blob.digest)
            for _ in range(200):
                c.download("prof/down", blob.digest, blob.size)
                if time.monotonic() > deadline:
                    return
    elif workload.startswith("manifest"):
        layer = os.urandom(1024)
        with RegistryClient(server.port) as c:
            c.push_image("prof/manifest", "latest", [(layer, sha256_digest(layer))])
        method = "GET" if workload == "manifest_get" else "HEAD"
        load(server, "/v2/prof/manifest/manifests/latest", method, 16, seconds, "0")
    elif workload == "push":
        for r in range(20):
            push_many(server, f"prof/push{r}", 8, 50, MiB)
            if time.monotonic() > deadline:
                return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("workload", choices=WORKLOADS)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rate", type=int, default=200)
    p.add_argument("--native", action="store_true", help="include C frames (py-spy --native)")
    p.add_argument("--gil", action="store_true",
                   help="sample only the thread holding the GIL (py-spy --gil): where Python CPU goes")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    work = REPO_ROOT / "bench" / ".work"
    root = work / "profile-data"
    shutil.rmtree(root, ignore_errors=True)
    cpus = "1" if args.workload.startswith("manifest") else None
    out = work / f"profile-{args.workload}.txt"
    port = int(os.environ.get("BENCH_PORT_BASE", "5200")) + 50
    with Server("ours", root, port, work / "logs", cpus=cpus) as server:
        cmd = [pyspy, "record", "--pid", str(server.pid), "--rate", str(args.rate), "--format", "raw",
               "--output", str(out), "--duration", str(int(args.seconds + 30)), "--nonblocking"]
        if args.native:
            cmd.append("--native")
        if args.gil:
            cmd.append("--gil")
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)
        try:
            drive(args.workload, server, args.seconds)
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
    shutil.rmtree(root, ignore_errors=True)
    print(summarize(out, args.top))
    print(f"\ncollapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
