"""Real S3 servers for the tests: a single-node Ceph radosgw and moto's server, each started by the
project's own launcher in contrib/dev/ on free loopback ports, once per session, and stopped after.

Without the server installed the tests that need it are skipped, except under CI (``CI`` set), where
contrib/dev/install-test-deps.sh installs everything and a skip would hide a broken install: there
they fail.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
CONTRIB = REPO / "contrib" / "dev"
START_TIMEOUT = 120


@dataclasses.dataclass
class S3Server:
    """A running S3 endpoint and what the s3 driver needs to reach it."""

    kind: str  # "rgw" or "moto"
    endpoint: str
    accesskey: str
    secretkey: str
    region: str
    env: dict[str, str]  # the launcher's environment (CEPH_DIR, MOTO_DIR, ...)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.accesskey, aws_secret_access_key=self.secretkey,
            region_name=self.region, config=Config(
                s3={"addressing_style": "path"}, signature_version="s3v4",
                request_checksum_calculation="when_required", response_checksum_validation="when_required"),
        )

    def new_bucket(self) -> str:
        bucket = f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def options(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """``storage.s3`` options for ``bucket`` on this server."""
        return {"regionendpoint": self.endpoint, "forcepathstyle": True, "bucket": bucket,
                "accesskey": self.accesskey, "secretkey": self.secretkey, "region": self.region, **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (contrib/dev/install-test-deps.sh installs it under CI)")
    pytest.skip(reason)


def _parse(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line and not line.startswith("#"))


def start_rgw(workdir: Path) -> S3Server:
    if not all(shutil.which(tool) for tool in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin")):
        unavailable("Ceph (ceph-mon, ceph-osd, radosgw) is not installed: contrib/dev/install-ceph.sh")
    env = {**os.environ, "CEPH_DIR": str(workdir / "ceph"), "RGW_PORT": str(free_port()),
           "MON_V2_PORT": str(free_port()), "MON_V1_PORT": str(free_port())}
    result = subprocess.run(["bash", str(CONTRIB / "start-ceph.sh")], env=env, capture_output=True, text=True,
                            timeout=START_TIMEOUT)
    if result.returncode:
        pytest.fail(f"start-ceph.sh failed: {result.stderr[-3000:]}")
    out = _parse(result.stdout)
    return S3Server("rgw", out["RGW_S3_ENDPOINT"], out["RGW_ACCESS_KEY_ID"], out["RGW_SECRET_ACCESS_KEY"],
                    out["RGW_REGION"], env)


def stop_rgw(server: S3Server, *args: str) -> None:
    subprocess.run(["bash", str(CONTRIB / "stop-ceph.sh"), *args], env=server.env, timeout=60, check=False)


def start_moto(workdir: Path) -> S3Server:
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        unavailable("moto[server] is not installed (the registry's [test] extra brings it)")
    env = {**os.environ, "MOTO_DIR": str(workdir / "moto"), "MOTO_PORT": str(free_port()), "MOTO_SERVER": str(exe)}
    result = subprocess.run(["bash", str(CONTRIB / "start-moto.sh")], env=env, capture_output=True, text=True,
                            timeout=START_TIMEOUT)
    if result.returncode:
        pytest.fail(f"start-moto.sh failed: {result.stderr[-3000:]}")
    out = _parse(result.stdout)
    return S3Server("moto", out["MOTO_S3_ENDPOINT"], out["MOTO_ACCESS_KEY_ID"], out["MOTO_SECRET_ACCESS_KEY"],
                    out["MOTO_REGION"], env)


def stop_moto(server: S3Server) -> None:
    subprocess.run(["bash", str(CONTRIB / "stop-moto.sh")], env=server.env, timeout=60, check=False)


#: One server of each kind for the whole session, however many conftests register the fixtures.
_SERVERS = pytest.StashKey[dict]()


def _shared(request: pytest.FixtureRequest, kind: str) -> S3Server:
    servers = request.config.stash.setdefault(_SERVERS, {})
    if kind not in servers:
        workdir = request.getfixturevalue("tmp_path_factory").mktemp(kind)
        if kind == "rgw":
            server = start_rgw(workdir)
            request.config.add_cleanup(lambda: stop_rgw(server, "--wipe"))
        else:
            server = start_moto(workdir)
            request.config.add_cleanup(lambda: stop_moto(server))
        servers[kind] = server
    return servers[kind]


@pytest.fixture(scope="session")
def rgw_server(request: pytest.FixtureRequest) -> S3Server:
    """A single-node Ceph cluster with radosgw (memstore OSD), started once per session."""
    return _shared(request, "rgw")


@pytest.fixture(scope="session")
def moto_server(request: pytest.FixtureRequest) -> S3Server:
    """moto's S3 server, started once per session."""
    return _shared(request, "moto")


@pytest.fixture(params=["rgw", "moto"])
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each test body once on radosgw, once on moto."""
    return request.getfixturevalue(f"{request.param}_server")
