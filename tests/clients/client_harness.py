"""What tests/clients and tests/interop share: registry processes, client state, test images, HTTP calls.

- `start_registry` runs our registry (`registry serve CONFIG`) or Debian's `docker-registry` (Distribution
  2.8.2, the reference) on a free loopback port over a filesystem root; two of them may share one root.
- `ContainersEnv` keeps podman, buildah and skopeo state (storage, registries.conf, auth file, events log)
  in a temporary directory, as shared/notes/clients.md prescribes; nothing under /etc or $HOME changes.
- `build_test_images` makes a busybox image without the internet (amd64 and arm64 in the image store, an
  OCI layout of the amd64 one and a multi-arch OCI layout), once per pytest session.
- `RegistryHTTP` speaks the distribution spec directly with requests: uploads (monolithic, single-POST,
  chunked), manifests, tags, referrers.
- The pytest fixtures at the end are imported by tests/clients/conftest.py and tests/interop/conftest.py.

`REGISTRY_TEST_SERVER=distribution` points `registry_server` (and the "ours" side of the interop pair) at
Debian's docker-registry instead of ours: that is how the harness itself is checked, and assertions on
behaviour Distribution 2.8.2 lacks (referrers API, OCI-Subject, single-POST upload) look at
`RegistryProcess.is_ours` first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests

OURS = "ours"
DISTRIBUTION = "distribution"
SERVER_ENV = "REGISTRY_TEST_SERVER"
STORAGE_ENV = "REGISTRY_TEST_STORAGE"

START_TIMEOUT = 20.0  # seconds until `GET /v2/` must answer 200
STOP_TIMEOUT = 10.0
COMMAND_TIMEOUT = 120.0  # any one client command; the test images are ~2 MB
HTTP_TIMEOUT = 30.0
START_ATTEMPTS = 3  # a free port can be taken between probing it and the server binding it

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])

EMPTY_JSON = b"{}"

# Variables that would move the server off the port or root the fixture gave it, or that only the
# harness reads. Our config layer maps REGISTRY_* onto config keys, as Distribution does.
_SERVER_ENV_DROP = ("REGISTRY_AUTH_FILE", "REGISTRY_HTTP_ADDR", "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY")
_LOOPBACK_NO_PROXY = "127.0.0.1,localhost"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------
# Tools


class MissingTool(RuntimeError):
    pass


def find_tool(name: str) -> str | None:
    """A client binary: the venv's bin directory first (registry, dxf), then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def node_module_dir() -> Path:
    """Where contrib/dev/install-test-deps.sh installs the npm packages (tests/clients/js)."""
    return Path(__file__).resolve().parent / "js"


def _unusable(tools: tuple[str, ...], node_packages: tuple[str, ...] = ()) -> str | None:
    """Why some client is unusable (None when all are there). Under CI (CI set) it fails instead:
    contrib/dev/install-test-deps.sh installs every one of them, so a skip there would hide a broken install.
    """
    missing = [t for t in tools if find_tool(t) is None]
    missing += [
        f"npm:{p}" for p in node_packages if not (node_module_dir() / "node_modules" / p / "package.json").is_file()
    ]
    if not missing:
        return None
    reason = "client tools missing: " + ", ".join(missing) + " (contrib/dev/install-test-deps.sh installs them)"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    return reason


def requirement_marks(*tools: str, node_packages: tuple[str, ...] = ()) -> list:
    """Module marks: skip the whole module when one of its client binaries (or npm packages) is missing."""
    reason = _unusable(tools, node_packages)
    return [pytest.mark.skip(reason=reason)] if reason else []


def require_tools(*tools: str) -> None:
    """The same check inside a fixture: skip its tests now when a tool is missing."""
    reason = _unusable(tools)
    if reason:
        pytest.skip(reason)


def run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = COMMAND_TIMEOUT,
    check: bool = True,
    input: bytes | None = None,
) -> subprocess.CompletedProcess:
    """Run a client command with a timeout; on failure the assertion message carries its output."""
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            cwd=cwd,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"timed out after {timeout:.0f}s: {' '.join(cmd)}\n"
            f"stdout: {_text(exc.stdout)[-2000:]}\nstderr: {_text(exc.stderr)[-4000:]}"
        ) from None
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}: {' '.join(cmd)}\n"
            f"stdout: {_text(proc.stdout)[-2000:]}\nstderr: {_text(proc.stderr)[-4000:]}"
        )
    return proc


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def client_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a client subprocess: the test run's, never proxied to loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERS_")}
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = ",".join(filter(None, [env.get(key), _LOOPBACK_NO_PROXY]))
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------------------------------
# Registry processes


class RegistryStartError(RuntimeError):
    pass


@dataclass
class RegistryProcess:
    """One running registry: ours or Debian's docker-registry, over `root`."""

    kind: str
    root: Path
    port: int
    config: Path
    log_path: Path
    proc: subprocess.Popen

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def is_ours(self) -> bool:
        return self.kind == OURS

    @property
    def supports_referrers(self) -> bool:
        """Referrers API and `OCI-Subject`: ours implements them, Distribution 2.8.2 does not."""
        return self.is_ours

    @property
    def label(self) -> str:
        return f"{self.kind} registry at {self.url}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM its process group, SIGKILL after `timeout`; returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        return self.proc.returncode


def require_referrers(server: RegistryProcess) -> None:
    """Skip what only a registry with the referrers API can do (Distribution 2.8.2 answers 404)."""
    if not server.supports_referrers:
        pytest.skip(f"{server.kind} has no referrers API / OCI-Subject (checked against ours only)")


def server_kind_under_test() -> str:
    """`REGISTRY_TEST_SERVER`: `ours` (default) or `distribution`."""
    kind = os.environ.get(SERVER_ENV, OURS).strip().lower() or OURS
    if kind not in (OURS, DISTRIBUTION):
        raise pytest.UsageError(f"{SERVER_ENV}={kind!r}: expected {OURS!r} or {DISTRIBUTION!r}")
    return kind


def server_command(kind: str, config: Path) -> list[str]:
    name = "registry" if kind == OURS else "docker-registry"
    exe = find_tool(name)
    if exe is None:
        raise MissingTool(f"{name} not found (venv bin directory or PATH)")
    return [exe, "serve", str(config)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, *, root: Path, port: int) -> None:
    """The Distribution-format config both servers read. JSON strings are valid YAML scalars.

    With `REGISTRY_TEST_STORAGE` (a JSON mapping, e.g. `{"azure": {...}}`) its keys replace the
    filesystem driver under `storage:`: how a storage plugin runs this suite against its backend.
    """
    storage: dict = {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}}
    if os.environ.get(STORAGE_ENV):
        storage = {"delete": {"enabled": True}, **json.loads(os.environ[STORAGE_ENV])}
    path.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        + "".join(f"  {key}: {json.dumps(value)}\n" for key, value in storage.items())
        + f"http:\n  addr: 127.0.0.1:{port}\n"
    )


def _server_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SERVER_ENV_DROP and not k.startswith(("REGISTRY_TEST_", "CONTAINERS_"))
    }
    env["PYTHONUNBUFFERED"] = "1"  # so the log tail shown on failure is complete
    return env


def start_registry(kind: str, root: Path, workdir: Path, *, timeout: float = START_TIMEOUT) -> RegistryProcess:
    """Start a registry of `kind` over `root` and wait until `GET /v2/` answers 200.

    `workdir` receives the config and the process's combined stdout/stderr log. Raises
    `RegistryStartError` with the log when it exits or does not answer within `timeout`.
    """
    root.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        config = workdir / f"{kind}-{port}.yml"
        log_path = workdir / f"{kind}-{port}.log"
        write_config(config, root=root, port=port)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                server_command(kind, config),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_server_env(),
                cwd=workdir,
                start_new_session=True,  # its own process group: stop() ends the children too
            )
        server = RegistryProcess(kind, root, port, config, log_path, proc)
        if _wait_ready(server, time.monotonic() + timeout):
            return server
        server.stop()
        tail = server.log_tail()
        if "address already in use" in tail.lower() and attempt < START_ATTEMPTS:
            continue
        state = f"exited with {proc.returncode}" if proc.returncode is not None else "did not answer"
        raise RegistryStartError(
            f"{kind} registry on {server.host} {state} within {timeout:.0f}s "
            f"(command: {' '.join(server_command(kind, config))})\n--- its output ---\n{tail}"
        )
    raise AssertionError("unreachable")


def _wait_ready(server: RegistryProcess, deadline: float) -> bool:
    with requests.Session() as s:
        s.trust_env = False
        while time.monotonic() < deadline:
            if not server.alive():
                return False
            with contextlib.suppress(requests.RequestException):
                if s.get(server.url + "/v2/", timeout=1).status_code == 200:
                    return True
            time.sleep(0.05)
    return False


@contextlib.contextmanager
def running_registry(kind: str, root: Path, workdir: Path) -> Iterator[RegistryProcess]:
    """`start_registry` that stops the server afterwards and fails if it died while in use."""
    try:
        server = start_registry(kind, root, workdir)
    except (RegistryStartError, MissingTool) as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        died = not server.alive()
        code = server.stop()
        if died:
            pytest.fail(
                f"{server.label} exited with {code} while tests used it\n--- its output ---\n{server.log_tail()}",
                pytrace=False,
            )


# --------------------------------------------------------------------------------------------------
# podman / buildah / skopeo state


class ContainersEnv:
    """podman, buildah and skopeo confined to `base`: storage (vfs), registries.conf, auth file, events log.

    Each instance has its own image store; `fresh(base)` gives an empty one with the same settings, so a
    pull really downloads every blob instead of finding the layer already present.
    """

    def __init__(self, base: Path):
        self.base = base
        self.etc = base / "etc"
        self.etc.mkdir(parents=True, exist_ok=True)
        self._insecure: list[str] = []
        (self.etc / "auth.json").write_text("{}\n")  # podman pull fails when the auth file is missing
        (self.etc / "storage.conf").write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f"runroot = {json.dumps(str(base / 'run'))}\n"
            f"graphroot = {json.dumps(str(base / 'storage'))}\n"
        )
        (self.etc / "containers.conf").write_text(
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f"events_logfile_path = {json.dumps(str(base / 'events.log'))}\n"
            f"tmp_dir = {json.dumps(str(base / 'tmp'))}\n"
            'runtime = "crun"\n'
            "[network]\n"
            'network_backend = "netavark"\n'
        )
        self._write_registries()

    def _write_registries(self) -> None:
        text = "unqualified-search-registries = []\n"
        for host in self._insecure:
            text += f'\n[[registry]]\nlocation = "{host}"\ninsecure = true\n'
        (self.etc / "registries.conf").write_text(text)

    def add_insecure_registry(self, host: str) -> None:
        """List `host` as plain HTTP in registries.conf (podman/buildah; skopeo ignores the variable)."""
        if host not in self._insecure:
            self._insecure.append(host)
            self._write_registries()

    def fresh(self, base: Path) -> ContainersEnv:
        other = ContainersEnv(base)
        for host in self._insecure:
            other.add_insecure_registry(host)
        return other

    @property
    def env(self) -> dict[str, str]:
        return client_env(
            {
                "CONTAINERS_REGISTRIES_CONF": str(self.etc / "registries.conf"),
                "CONTAINERS_STORAGE_CONF": str(self.etc / "storage.conf"),
                "CONTAINERS_CONF": str(self.etc / "containers.conf"),
                "REGISTRY_AUTH_FILE": str(self.etc / "auth.json"),
                "BUILDAH_ISOLATION": "chroot",
                "STORAGE_DRIVER": "vfs",
            }
        )

    def run(self, tool: str, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True):
        exe = find_tool(tool)
        if exe is None:
            raise MissingTool(tool)
        return run([exe, *args], env=self.env, cwd=self.base, timeout=timeout, check=check)

    def podman(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("podman", *args, **kw)

    def buildah(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("buildah", *args, **kw)

    def skopeo(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("skopeo", *args, **kw)

    def image_info(self, ref: str) -> dict:
        """`podman image inspect` of a local image: Id, Architecture, Os, RootFS layers (diff IDs)."""
        out = self.podman("image", "inspect", ref).stdout
        (info,) = json.loads(out)
        return info


# --------------------------------------------------------------------------------------------------
# Test images


@dataclass(frozen=True)
class TestImages:
    """The busybox images every client test pushes. Built once per session."""

    __test__ = False  # not a test class, despite the name

    amd64: str  # local image names in the ContainersEnv's store
    arm64: str
    ids: dict[str, str]  # arch -> image ID (hex of the config digest)
    layout: Path  # OCI layout; reference "busybox" is the amd64 image
    multi_layout: Path  # OCI layout; reference "multi" is an index of amd64 + arm64

    @property
    def layout_ref(self) -> str:
        return f"oci:{self.layout}:busybox"

    @property
    def multi_ref(self) -> str:
        return f"oci:{self.multi_layout}:multi"

    def config_digest(self, arch: str) -> str:
        return "sha256:" + self.ids[arch]

    def manifest(self) -> OciLayoutEntry:
        return oci_layout_entry(self.layout, "busybox")

    def index(self) -> OciLayoutEntry:
        return oci_layout_entry(self.multi_layout, "multi")


def build_test_images(env: ContainersEnv, outdir: Path) -> TestImages:
    """busybox-static in a scratch image, for amd64 and arm64, without the internet.

    Both variants share the one layer; only the config differs. Takes well under a second with vfs.
    """
    busybox = shutil.which("busybox")
    if busybox is None:
        raise MissingTool("busybox (Debian package busybox-static)")
    busybox = os.path.realpath(busybox)
    ctr = env.buildah("from", "scratch").stdout.decode().strip()
    try:
        env.buildah("copy", ctr, busybox, "/bin/busybox")
        env.buildah("config", "--arch", "amd64", "--os", "linux", "--entrypoint", '["/bin/busybox"]', ctr)
        env.buildah("commit", "-q", "--format", "oci", ctr, "localhost/busybox:amd64")
        env.buildah("config", "--arch", "arm64", "--variant", "v8", ctr)
        env.buildah("commit", "-q", "--format", "oci", ctr, "localhost/busybox:arm64")
    finally:
        env.buildah("rm", ctr, check=False)
    ids = {arch: env.image_info(f"localhost/busybox:{arch}")["Id"] for arch in ("amd64", "arm64")}
    layout, multi = outdir / "busybox-layout", outdir / "multi-layout"
    env.buildah("push", "-q", "localhost/busybox:amd64", f"oci:{layout}:busybox")
    env.buildah("manifest", "create", "localhost/busybox-multi:test")
    for arch in ("amd64", "arm64"):
        env.buildah("manifest", "add", "localhost/busybox-multi:test", f"containers-storage:localhost/busybox:{arch}")
    env.buildah("manifest", "push", "-q", "--all", "localhost/busybox-multi:test", f"oci:{multi}:multi")
    return TestImages("localhost/busybox:amd64", "localhost/busybox:arm64", ids, layout, multi)


@dataclass(frozen=True)
class OciLayoutEntry:
    """A manifest (or index) of an OCI layout directory, with its bytes."""

    layout: Path
    digest: str
    media_type: str
    raw: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.raw)

    def blob(self, digest: str) -> bytes:
        return blob_path(self.layout, digest).read_bytes()

    def children(self) -> list[OciLayoutEntry]:
        return [
            OciLayoutEntry(self.layout, d["digest"], d["mediaType"], self.blob(d["digest"]))
            for d in self.json.get("manifests", [])
        ]

    def blob_digests(self) -> list[str]:
        """Config and layer digests of an image manifest."""
        m = self.json
        return [m["config"]["digest"], *(layer["digest"] for layer in m["layers"])]


def blob_path(layout: Path, digest: str) -> Path:
    algo, hexpart = digest.split(":", 1)
    return layout / "blobs" / algo / hexpart


def oci_layout_entry(layout: Path, ref_name: str) -> OciLayoutEntry:
    index = json.loads((layout / "index.json").read_text())
    for desc in index["manifests"]:
        if desc.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref_name:
            raw = blob_path(layout, desc["digest"]).read_bytes()
            assert sha256_digest(raw) == desc["digest"]
            return OciLayoutEntry(layout, desc["digest"], desc["mediaType"], raw)
    raise KeyError(f"{ref_name} not in {layout}/index.json")


def read_dir_transport(path: Path) -> tuple[bytes, dict[str, bytes]]:
    """What `skopeo copy … dir:PATH` wrote: the manifest bytes and the blobs by digest."""
    manifest = (path / "manifest.json").read_bytes()
    blobs = {}
    for f in path.iterdir():
        if len(f.name) == 64 and all(c in "0123456789abcdef" for c in f.name):
            blobs["sha256:" + f.name] = f.read_bytes()
    return manifest, blobs


# --------------------------------------------------------------------------------------------------
# The distribution API over plain HTTP


def with_query(url: str, **params: str) -> str:
    """`url` with `params` added to whatever query it has (upload locations carry state there)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def expect(response: requests.Response, *codes: int) -> requests.Response:
    """Assert the status code; the message shows the request and the body."""
    if response.status_code not in codes:
        req = response.request
        raise AssertionError(
            f"{req.method} {req.url} -> {response.status_code}, expected {codes}\n"
            f"headers: {dict(response.headers)}\nbody: {response.text[:1000]}"
        )
    return response


class RegistryHTTP:
    """The spec's endpoints against one server; every request has a timeout, nothing retries."""

    def __init__(self, server: RegistryProcess, timeout: float = HTTP_TIMEOUT):
        self.server = server
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only: no proxy, no netrc

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, path_or_url: str, **kw) -> requests.Response:
        url = path_or_url if "://" in path_or_url else self.server.url + path_or_url
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("allow_redirects", False)
        return self.session.request(method, url, **kw)

    # blobs

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        return expect(r, 200, 404).status_code == 200

    def get_blob(self, repo: str, digest: str) -> bytes:
        r = expect(self.request("GET", f"/v2/{repo}/blobs/{digest}", allow_redirects=True), 200)
        return r.content

    def start_upload(self, repo: str) -> str:
        r = expect(self.request("POST", f"/v2/{repo}/blobs/uploads/"), 202)
        return urljoin(r.url, r.headers["Location"])

    def finish_upload(self, location: str, digest: str, body: bytes = b"") -> requests.Response:
        r = self.request(
            "PUT",
            with_query(location, digest=digest),
            data=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        expect(r, 201)
        assert r.headers.get("Docker-Content-Digest") == digest
        assert r.headers.get("Location"), "a finished upload answers with the blob's Location"
        return r

    def upload_monolithic(self, repo: str, data: bytes) -> str:
        """POST for a session, then one PUT carrying the whole blob."""
        digest = sha256_digest(data)
        self.finish_upload(self.start_upload(repo), digest, data)
        return digest

    def upload_single_post(self, repo: str, data: bytes) -> requests.Response:
        """`POST ?digest=` with the blob as body (spec: 201; Distribution 2.8.2 answers 202, drops it)."""
        return self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?" + urlencode({"digest": sha256_digest(data)}),
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def upload_chunked(self, repo: str, data: bytes, chunk_size: int) -> str:
        """POST, one PATCH per chunk with Content-Range (following each new Location), closing PUT."""
        digest = sha256_digest(data)
        location = self.start_upload(repo)
        for start in range(0, len(data), chunk_size):
            chunk = data[start : start + chunk_size]
            end = start + len(chunk) - 1
            r = self.request(
                "PATCH",
                location,
                data=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{end}",
                    "Content-Length": str(len(chunk)),
                },
            )
            expect(r, 202)
            assert r.headers.get("Range") == f"0-{end}", r.headers
            location = urljoin(r.url, r.headers["Location"])
        self.finish_upload(location, digest)
        return digest

    # manifests and tags

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> requests.Response:
        r = self.request("PUT", f"/v2/{repo}/manifests/{reference}", data=raw, headers={"Content-Type": media_type})
        expect(r, 201)
        assert r.headers.get("Docker-Content-Digest") == sha256_digest(raw), r.headers
        return r

    def get_manifest(self, repo: str, reference: str, accept: str = MANIFEST_ACCEPT) -> requests.Response:
        return self.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})

    def head_manifest(self, repo: str, reference: str, accept: str = MANIFEST_ACCEPT) -> requests.Response:
        return self.request("HEAD", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})

    def descriptor(self, repo: str, reference: str) -> dict:
        """{mediaType, digest, size} of a manifest, from HEAD (exactly the stored bytes)."""
        r = expect(self.head_manifest(repo, reference), 200)
        return {
            "mediaType": r.headers["Content-Type"].split(";")[0].strip(),
            "digest": r.headers["Docker-Content-Digest"],
            "size": int(r.headers["Content-Length"]),
        }

    def tags(self, repo: str) -> list[str]:
        r = expect(self.request("GET", f"/v2/{repo}/tags/list"), 200)
        return r.json().get("tags") or []

    def catalog(self, page_size: int = 100, max_pages: int = 50) -> list[str]:
        """Every repository, following `Link: <…>; rel="next"` (bounded)."""
        repos: list[str] = []
        url = f"/v2/_catalog?n={page_size}"
        for _ in range(max_pages):
            r = expect(self.request("GET", url), 200)
            repos += r.json().get("repositories") or []
            nxt = r.links.get("next", {}).get("url")
            if not nxt:
                return repos
            url = urljoin(r.url, nxt)
        raise AssertionError(f"catalog still paginating after {max_pages} pages")

    def referrers(self, repo: str, digest: str, artifact_type: str | None = None) -> requests.Response:
        params = f"?{urlencode({'artifactType': artifact_type})}" if artifact_type else ""
        return self.request("GET", f"/v2/{repo}/referrers/{digest}{params}")

    # whole images

    def push_layout_entry(self, repo: str, entry: OciLayoutEntry, tag: str | None = None) -> str:
        """Push an image or index from an OCI layout (blobs monolithically, children by digest)."""
        doc = entry.json
        if "manifests" in doc:
            for child in entry.children():
                self.push_layout_entry(repo, child)
        else:
            for digest in entry.blob_digests():
                if not self.blob_exists(repo, digest):
                    assert self.upload_monolithic(repo, entry.blob(digest)) == digest
        self.put_manifest(repo, tag or entry.digest, entry.raw, entry.media_type)
        return entry.digest


def error_codes(response: requests.Response) -> list[str]:
    """The `errors[].code` values of an error body (empty when the body is not one)."""
    try:
        return [e.get("code") for e in response.json().get("errors", [])]
    except (ValueError, AttributeError):
        return []


def sigstore_attach(server: RegistryProcess, repo: str, tag: str, artifact: Path, media_type: str) -> dict:
    """tests/clients/js/attach.mjs: @sigstore/oci's getImageDigest + attachArtifactToImage.

    Returns {"imageDigest": ..., "artifact": descriptor of the artifact manifest}.
    """
    script = node_module_dir() / "attach.mjs"
    cmd = [find_tool("node") or "node", str(script), f"{server.host}/{repo}", tag, str(artifact), media_type]
    out = run(cmd, env=client_env(), cwd=node_module_dir()).stdout.decode()
    return json.loads(out.strip().splitlines()[-1])


def referrers_tag(digest: str) -> str:
    """The referrers tag schema: `<alg>-<hex>` (what clients fall back to without the referrers API)."""
    return digest.replace(":", "-")


# --------------------------------------------------------------------------------------------------
# Fixtures (imported by tests/clients/conftest.py and tests/interop/conftest.py)


@pytest.fixture(scope="session")
def registry_server(tmp_path_factory) -> Iterator[RegistryProcess]:
    """The registry under test (ours; Distribution with REGISTRY_TEST_SERVER=distribution), fresh root."""
    kind = server_kind_under_test()
    require_tools("registry" if kind == OURS else "docker-registry")
    root = tmp_path_factory.mktemp("registry-root")
    with running_registry(kind, root, tmp_path_factory.mktemp("registry-run")) as server:
        yield server


@pytest.fixture(scope="session")
def distribution_server(tmp_path_factory) -> Iterator[RegistryProcess]:
    """Debian's docker-registry (Distribution 2.8.2) on its own root."""
    require_tools("docker-registry")
    root = tmp_path_factory.mktemp("distribution-root")
    with running_registry(DISTRIBUTION, root, tmp_path_factory.mktemp("distribution-run")) as server:
        yield server


@pytest.fixture(scope="session")
def registry_http(registry_server) -> Iterator[RegistryHTTP]:
    http = RegistryHTTP(registry_server)
    yield http
    http.close()


# Both conftests register these session fixtures, which would give each directory its own store and its
# own build; the config's stash keeps one of each for the whole session.
_CONTAINERS_ENV = pytest.StashKey[ContainersEnv]()
_TEST_IMAGES = pytest.StashKey[TestImages]()


@pytest.fixture(scope="session")
def containers_env(request, tmp_path_factory) -> ContainersEnv:
    stash = request.config.stash
    if _CONTAINERS_ENV not in stash:
        stash[_CONTAINERS_ENV] = ContainersEnv(tmp_path_factory.mktemp("containers"))
    return stash[_CONTAINERS_ENV]


@pytest.fixture(scope="session")
def test_images(request, containers_env, tmp_path_factory) -> TestImages:
    require_tools("buildah", "busybox")
    stash = request.config.stash
    if _TEST_IMAGES not in stash:
        stash[_TEST_IMAGES] = build_test_images(containers_env, tmp_path_factory.mktemp("images"))
    return stash[_TEST_IMAGES]


@pytest.fixture
def fresh_store(containers_env, tmp_path) -> ContainersEnv:
    """An empty podman/buildah image store, for pulls that must download everything."""
    return containers_env.fresh(tmp_path / "fresh-store")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the output of every registry the test used to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown" or not report.failed:
        return
    seen = set()
    for value in getattr(item, "funcargs", {}).values():
        for server in _servers_in(value):
            if id(server) in seen:
                continue
            seen.add(id(server))
            state = "running" if server.alive() else f"EXITED with {server.proc.returncode}"
            report.sections.append((f"{server.label} ({state}), last lines", server.log_tail()))


def _servers_in(value) -> list[RegistryProcess]:
    if isinstance(value, RegistryProcess):
        return [value]
    if isinstance(value, RegistryHTTP):
        return [value.server]
    return [v for v in getattr(value, "registry_processes", ()) if isinstance(v, RegistryProcess)]
