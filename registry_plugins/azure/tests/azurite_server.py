"""Azurite for the tests: the project's launcher (contrib/dev/start-azurite.sh) on a free loopback port.

Installed by contrib/dev/install-azurite.sh (CI runs it through install-test-deps.sh). Outside CI a
missing Azurite skips the tests that need it; under CI (``CI`` set) it fails them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LAUNCHER = REPO / "contrib" / "dev" / "start-azurite.sh"
BINARY = REPO / "contrib" / "dev" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
#: Azurite's well-known development key (public; documented by Microsoft).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT = 60.0
START_ATTEMPTS = 3


def require_sdk() -> None:
    """The plugin's SDK (installed with it by `make install`): skipped without it, failed under CI."""
    try:
        import azure.storage.blob  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"azure-storage-blob is not installed: {exc}", pytrace=False)
        pytest.skip(f"azure-storage-blob is not installed: {exc}", allow_module_level=True)


def require_azurite() -> None:
    require_sdk()
    if BINARY.exists():
        return
    reason = f"Azurite is not installed ({BINARY.relative_to(REPO)}): run contrib/dev/install-azurite.sh"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Azurite:
    """One Azurite blob service; ``start`` and ``stop`` may be called again (same port, and with a
    ``location`` the same data)."""

    def __init__(self, workdir: Path, *, location: Path | None = None, port: int | None = None) -> None:
        self.workdir, self.location = workdir, location
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "azurite.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def options(self, container: str, **extra: object) -> dict:
        """``storage.azure`` for this server."""
        return {"accountname": ACCOUNT, "accountkey": KEY, "container": container, "serviceurl": self.url, **extra}

    def start(self) -> Azurite:
        for attempt in range(START_ATTEMPTS):
            env = {**os.environ, "AZURITE_PORT": str(self.port), "AZURITE_HOST": "127.0.0.1"}
            env.pop("AZURITE_LOCATION", None)
            if self.location is not None:
                env["AZURITE_LOCATION"] = str(self.location)
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    ["bash", str(LAUNCHER)], cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
            if self._wait_ready(time.monotonic() + START_TIMEOUT):
                return self
            self.stop()
            # A taken port, or a start slower than the timeout on a loaded machine (seen once in a
            # full run at load 9: "starting" logged, the port never opened): try again on a new port.
            if attempt + 1 < START_ATTEMPTS:
                self.port = free_port()
                continue
            raise RuntimeError(f"Azurite did not start on port {self.port}:\n{self.log_tail()}")
        raise AssertionError("unreachable")

    def _wait_ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def rss_kib(self) -> int:
        """VmRSS of the node process (for memory checks of the emulator itself)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"


def delete_container(server: Azurite, name: str) -> None:
    """Drop a test's container, so the in-memory emulator does not keep every test's data."""
    from azure.storage.blob import ContainerClient

    with contextlib.suppress(Exception), ContainerClient(
        server.url, name, credential={"account_name": ACCOUNT, "account_key": KEY}
    ) as container:
        container.delete_container()
