"""A keep-alive HTTP load generator for small requests, for the manifest workloads.

``wrk`` 4.1 (Debian's) cannot do ``HEAD``: it waits for the ``Content-Length`` bytes a ``HEAD``
response never carries. This one keeps ``connections`` sockets each with one request in flight
(as ``wrk`` does), reads each response (headers, then ``Content-Length`` bytes unless ``HEAD``),
checks its status and sends the next request, on one thread in a ``selectors`` loop.

    python -m bench.loadgen --port 5201 --path /v2/x/manifests/latest --method HEAD -c 16 -d 4

prints one JSON line: requests, seconds, errors, latency percentiles.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time

ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


class _Conn:
    __slots__ = ("sock", "buf", "need", "sent_at", "header_done")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.need = -1  # body bytes still expected once the headers are in; -1 while reading headers
        self.sent_at = 0.0
        self.header_done = False


def run(port: int, path: str, method: str, connections: int, seconds: float, warmup: float = 0.5) -> dict:
    request = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {ACCEPT}\r\n"
               f"User-Agent: bench-loadgen\r\n\r\n").encode()
    head = method == "HEAD"
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        c = _Conn(s)
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    done = errors = total = 0
    latencies: list[float] = []
    for c in conns:
        c.sent_at = time.perf_counter()
        c.sock.send(request)
    now = start
    while now < stop_at:
        for key, _ in sel.select(timeout=1.0):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("server closed a keep-alive connection")
            c.buf += data
            while True:
                if c.need < 0:
                    end = c.buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    header = c.buf[:end]
                    c.buf = c.buf[end + 4:]
                    status = int(header[9:12])
                    if status != 200:
                        errors += 1
                    length = 0
                    if not head:
                        lower = header.lower()
                        i = lower.find(b"\r\ncontent-length:")
                        if i >= 0:
                            j = lower.find(b"\r\n", i + 2)
                            length = int(lower[i + 17:j if j > 0 else len(lower)])
                    c.need = length
                if len(c.buf) < c.need:
                    break
                c.buf = c.buf[c.need:]
                c.need = -1
                t = time.perf_counter()
                total += 1
                if t >= measure_from:
                    done += 1
                    latencies.append(t - c.sent_at)
                c.sent_at = t
                c.sock.send(request)
                if not c.buf:
                    break
        now = time.perf_counter()
    elapsed = now - measure_from
    for c in conns:
        c.sock.close()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    # ``total`` counts the warm-up too: the server's CPU time is measured over the whole run.
    return {"requests": done, "total_requests": total, "seconds": elapsed, "errors": errors,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--method", default="GET", choices=["GET", "HEAD"])
    p.add_argument("-c", "--connections", type=int, default=16)
    p.add_argument("-d", "--seconds", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=0.5)
    args = p.parse_args(argv)
    print(json.dumps(run(args.port, args.path, args.method, args.connections, args.seconds, args.warmup)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
