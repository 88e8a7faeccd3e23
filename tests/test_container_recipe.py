"""contrib/container/Containerfile builds with buildah into an image that serves, and
contrib/systemd/registry.service passes `systemd-analyze verify`.

This machine (and CI) cannot pull base images, so the test assembles its own base offline: the
host's Debian Python (/usr/bin/python3.11, its standard library, the shared libraries it and its
extension modules link, Debian's bundled pip wheel for `venv`) plus busybox for `/bin/sh`, committed
with `buildah from scratch`. It passes that as the recipe's BASE build argument and a dist/ of wheels
(the core, the filesystem driver, their dependencies), builds, then runs the image's registry with
`buildah run` on a free loopback port and talks to it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent / "clients"))

from client_harness import free_port  # noqa: E402

HOST_PYTHON = Path("/usr/bin/python3.11")
TIMEOUT = 300


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (contrib/dev/install-test-deps.sh installs it under CI)")
    pytest.skip(reason)


def test_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed (Debian package systemd)")
    # verify checks that ExecStart exists: point it at this checkout's registry, the rest unchanged.
    unit = (ROOT / "contrib/systemd/registry.service").read_text()
    assert "ExecStart=/opt/registry/bin/registry serve /etc/registry/config.yml" in unit
    registry = Path(sys.executable).parent / "registry"
    copy = tmp_path / "registry.service"
    copy.write_text(unit.replace("/opt/registry/bin/registry", str(registry)))
    r = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # An unknown or misspelt key is only warned about (exit 0): any output about the unit fails.
    lines = [line for line in (r.stdout + r.stderr).splitlines() if "registry.service" in line]
    assert r.returncode == 0 and not lines, r.stdout + r.stderr


def test_systemd_verify_catches_a_bad_key(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed (Debian package systemd)")
    bad = tmp_path / "registry.service"
    bad.write_text(f"[Service]\nExecStart={sys.executable}\nRestartSecs=2\n")
    r = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "RestartSecs" in r.stderr


def _libraries(binaries: list[Path]) -> set[Path]:
    found: set[Path] = set()
    for binary in binaries:
        r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30)
        for line in r.stdout.splitlines():
            parts = line.split()
            path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
            if path.startswith("/"):
                found.add(Path(path))
    return found


def _wheel_extensions(dist: Path, into: Path) -> list[Path]:
    """The compiled extension modules inside the wheels of ``dist`` (rpds-py's, for one), unpacked."""
    import zipfile

    found = []
    for wheel in sorted(dist.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.endswith(".so"):
                    found.append(Path(zf.extract(name, into / wheel.stem)))
    return found


def assemble_base(rootfs: Path, extensions: list[Path]) -> None:
    """A minimal root file system: Debian's Python 3.11 with venv, busybox as /bin/sh, and the shared
    libraries Python, its extension modules and the wheels' (``extensions``) link."""
    stdlib = Path("/usr/lib/python3.11")
    (rootfs / "usr/bin").mkdir(parents=True)
    shutil.copy2(HOST_PYTHON, rootfs / "usr/bin/python3.11")
    (rootfs / "usr/bin/python3").symlink_to("python3.11")
    shutil.copytree(stdlib, rootfs / stdlib.relative_to("/"), symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "test", "idlelib", "tkinter"))
    wheels = Path("/usr/share/python-wheels")  # Debian's ensurepip installs pip from here
    shutil.copytree(wheels, rootfs / wheels.relative_to("/"))
    for lib in _libraries([HOST_PYTHON, *sorted((stdlib / "lib-dynload").glob("*.so")), *extensions]):
        target = rootfs / lib.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), target)
    bin_dir = rootfs / "bin"
    bin_dir.mkdir()
    busybox = shutil.which("busybox")
    shutil.copy2(busybox, bin_dir / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=30).stdout.split()
    for applet in applets:
        if not (bin_dir / applet).exists():
            (bin_dir / applet).symlink_to("busybox")
    for d in ("tmp", "etc", "var/lib"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    (rootfs / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")


@pytest.fixture
def buildah_env(tmp_path):
    if shutil.which("buildah") is None or shutil.which("busybox") is None:
        unavailable("buildah and busybox-static are not installed")
    if not HOST_PYTHON.is_file() or not Path("/usr/share/python-wheels").is_dir():
        unavailable("Debian's python3.11 and python3-venv are needed to assemble a base image offline")
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{tmp_path / "run"}"\ngraphroot = "{tmp_path / "graph"}"\n')
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "chroot",
           "STORAGE_DRIVER": "vfs", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    env.pop("CONTAINERS_CONF", None)
    return env


def buildah(env: dict[str, str], *args: str, timeout: float = TIMEOUT) -> str:
    r = subprocess.run(["buildah", *args], capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, f"buildah {' '.join(args)}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout.strip()


@pytest.mark.slow
@pytest.mark.clients
def test_containerfile_builds_an_image_that_serves(tmp_path, buildah_env):
    env = buildah_env
    # The build context: the recipe's files, and dist/ with the wheels it installs.
    context = tmp_path / "context"
    (context / "contrib/container").mkdir(parents=True)
    for name in ("Containerfile", "config.yml"):
        shutil.copy2(ROOT / "contrib/container" / name, context / "contrib/container" / name)
    dist = context / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(dist), str(ROOT),
                        str(ROOT / "registry_plugins/filesystem")],
                       capture_output=True, text=True, timeout=TIMEOUT,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stderr[-3000:]

    rootfs = tmp_path / "rootfs"
    assemble_base(rootfs, _wheel_extensions(dist, tmp_path / "extensions"))
    ctr = buildah(env, "from", "scratch")
    buildah(env, "copy", ctr, str(rootfs), "/")
    buildah(env, "commit", "-q", ctr, "localhost/registry-test-base")
    buildah(env, "rm", ctr)

    buildah(env, "bud", "-q", "--network", "host", "--build-arg", "BASE=localhost/registry-test-base",
            "-t", "localhost/registry-test", "-f", str(context / "contrib/container/Containerfile"), str(context))
    config = json.loads(buildah(env, "inspect", "--type", "image", "localhost/registry-test"))
    oci = config["OCIv1"]["config"]
    assert oci["Entrypoint"] == ["/opt/registry/bin/registry"] and oci["Cmd"] == ["serve"]
    assert oci["User"] == "65534:65534" and "5000/tcp" in oci["ExposedPorts"]

    ctr = buildah(env, "from", "localhost/registry-test")
    try:
        plugins = buildah(env, "run", ctr, "--", "/opt/registry/bin/registry", "plugins")
        assert "registry-filesystem" in plugins, plugins
        check = buildah(env, "run", ctr, "--", "/opt/registry/bin/registry", "config", "check")
        assert check == "OK"
        # Serve from the image (chroot isolation: the host's network) and push a blob to it.
        port = free_port()
        log = (tmp_path / "serve.log").open("wb")
        server = subprocess.Popen(
            ["buildah", "run", "--env", f"REGISTRY_HTTP_ADDR=127.0.0.1:{port}", ctr, "--",
             "/opt/registry/bin/registry", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/v2/", timeout=2) as resp:
                        assert resp.status == 200
                        break
                except OSError:
                    assert server.poll() is None, (tmp_path / "serve.log").read_text()
                    assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                    time.sleep(0.3)
            import hashlib

            body = b"pushed into the container image's registry\n"
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            req = urllib.request.Request(f"{base}/v2/demo/c/blobs/uploads/?digest={digest}", data=body, method="POST",
                                         headers={"Content-Type": "application/octet-stream"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 201
            with urllib.request.urlopen(f"{base}/v2/demo/c/blobs/{digest}", timeout=10) as resp:
                assert resp.read() == body
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
            log.close()
        assert "storage: filesystem in /var/lib/registry" in (tmp_path / "serve.log").read_text()
    finally:
        buildah(env, "rm", ctr)
        subprocess.run(["buildah", "rmi", "-a", "-f"], env=env, capture_output=True, timeout=TIMEOUT)
