"""Starting, measuring and stopping the two registries under test.

Each server is one process whose CPU time (``utime + stime`` from ``/proc/<pid>/stat``) and memory
(``VmRSS``/``VmHWM`` from ``/proc/<pid>/status``) we read directly: CPU time per unit of work is the
steadiest figure on a shared, noisy machine.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Seconds a server gets to answer ``GET /v2/`` after it starts, and to exit after SIGTERM.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


# Both configs turn upload purging off: ours walks the whole tree at start-up (seconds of CPU on the
# 100,000-repository catalog tree, while the catalog is being measured), Distribution's after a
# random delay of up to an hour; neither belongs in the figures (see docs/benchmarks.md).
_STORAGE = "storage: {{filesystem: {{rootdirectory: {root}}}, delete: {{enabled: true}}, " \
           "maintenance: {{uploadpurging: {{enabled: false}}}}}}\n"


def _our_config(root: Path, port: int, threads: int, storage: str | None = None) -> str:
    return (
        "version: 0.1\n"
        + (storage or _STORAGE.format(root=root)) +
        f"http: {{addr: 127.0.0.1:{port}, waitress: {{threads: {threads}}}}}\n"
        "log: {level: warn}\n"
    )


def _dist_config(root: Path, port: int, storage: str | None = None) -> str:
    # The access log is off: it costs Distribution CPU per request and we log nothing per request
    # either; the secret only silences the start-up warning.
    return (
        "version: 0.1\n"
        + (storage or _STORAGE.format(root=root)) +
        f"http: {{addr: 127.0.0.1:{port}, secret: bench-not-secret}}\n"
        "log: {level: warn, accesslog: {disabled: true}}\n"
    )


class Server:
    """One registry process.

    :param kind: ``"ours"`` or ``"dist"``.
    :param root: the storage root directory.
    :param port: a loopback port (5200-5299).
    :param workdir: where the config file, log and (for ours) waitress's spool directory go.
    :param cpus: CPU list for ``taskset -c`` (``None``: not pinned).
    :param env: extra environment variables for the server (e.g. ``PYTHONPATH`` of another checkout,
        to compare our registry before and after a change).
    :param storage: the config's ``storage:`` line (YAML flow style, newline-terminated) instead of
        the filesystem driver on ``root``; ``drop_env`` names variables the server must not see.
    :param config_extra: more top-level YAML for our config (e.g. a ``ui:`` section).
    """

    def __init__(self, kind: str, root: Path, port: int, workdir: Path, *, cpus: str | None = None,
                 threads: int = 8, env: dict[str, str] | None = None, storage: str | None = None,
                 drop_env: tuple[str, ...] = (), config_extra: str = "") -> None:
        self.storage, self.drop_env = storage, drop_env
        self.config_extra = config_extra
        self.kind, self.port, self.cpus = kind, port, cpus
        self.root, self.workdir = root.resolve(), workdir.resolve()
        self.threads = threads
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{port}"

    @property
    def label(self) -> str:
        return "registry" if self.kind == "ours" else "Distribution"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self, config_path: Path) -> list[str]:
        if self.kind == "ours":
            cmd = [str(Path(sys.executable).parent / "registry"), "serve", str(config_path)]
        else:
            cmd = ["docker-registry", "serve", str(config_path)]
        return (["taskset", "-c", self.cpus] if self.cpus else []) + cmd

    def start(self) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / f"{self.kind}-{self.port}.yml"
        if self.kind == "ours":
            config_path.write_text(_our_config(self.root, self.port, self.threads, self.storage) + self.config_extra)
        else:
            config_path.write_text(_dist_config(self.root, self.port, self.storage))
        env = dict(os.environ)
        # waitress spools large request bodies to $TMPDIR: keep that on the data's disk, in our tree.
        spool = self.workdir / "tmp"
        spool.mkdir(exist_ok=True)
        env["TMPDIR"] = str(spool)
        env.pop("REGISTRY_CONFIGURATION_PATH", None)
        env.update(self.extra_env)
        for name in self.drop_env:
            env.pop(name, None)
        self._log = open(self.workdir / f"{self.kind}-{self.port}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(config_path), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=self.workdir)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited at start-up; see {self._log.name}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v2/")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.label} did not answer on port {self.port} within {START_TIMEOUT}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self.proc = None
        self._log.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- measurements ------------------------------------------------------------------------------

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (all threads)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # After the ")" closing comm: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_kib(self, key: str) -> int:
        """A ``kB`` value from ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise KeyError(key)

    def reset_peak_rss(self) -> bool:
        """Reset ``VmHWM`` to the current RSS (``clear_refs`` 5); ``False`` where the kernel refuses."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            return False
        return True


class CpuMeter:
    """``with CpuMeter(server) as m: ...`` then ``m.seconds``: the server's CPU time in the block."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.seconds = 0.0

    def __enter__(self) -> CpuMeter:
        self._start = self.server.cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = self.server.cpu_seconds() - self._start


class RssSampler:
    """Samples the server's ``VmRSS`` every ``interval`` seconds in a thread; ``peak_mib`` is the
    largest sample (bounded: it stops after ``limit`` seconds even if nobody stops it)."""

    def __init__(self, server: Server, interval: float = 0.02, limit: float = 600.0) -> None:
        self.server, self.interval, self.limit = server, interval, limit
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(OSError, KeyError):
                self.samples.append(self.server.status_kib("VmRSS"))
            self._stop.wait(self.interval)

    @property
    def peak_mib(self) -> float:
        return max(self.samples, default=0) / 1024

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
