"""Every command the tutorials show is run here, so the pages cannot drift from what works.

A tutorial page is read top to bottom. Each fenced block is one of:

- ```` ```sh ````: commands, run with ``bash -euo pipefail`` in the tutorial's working directory;
  after ``<!-- background: ... -->`` the block is started in the background (a server) and the
  next block waits until ``http://127.0.0.1:5000/v2/`` answers;
- any block after ``<!-- file: PATH -->``: written to PATH (relative to the working directory);
- ```` ```text ````/```` ```console ````: output shown to the reader, not run.

Any other block fails the test: a command nobody runs is one that can go stale. The working
directory is a temporary one holding ``.venv`` (a virtual environment layered on the checkout's, so
``.venv/bin/pip install`` there leaves the checkout's own untouched); ``make`` runs in the checkout.
``127.0.0.1:5000`` becomes a free port, and the registry's data directory a temporary one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(Path(__file__).resolve().parent / "clients"))

from client_harness import ContainersEnv, _unusable, free_port  # noqa: E402

BLOCK_TIMEOUT = 240.0  # one block: a pip install of a local plugin, or the exported suite
START_TIMEOUT = 90.0  # `make run` up to a registry answering (make install is a no-op when up to date)

_FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
_MARK = re.compile(r"<!--\s*(file|background|not-run):?\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    lang: str
    body: str
    mark: str | None  # "file", "background"
    arg: str
    line: int


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, each with the marker comment on the line before it, if any."""
    text = page.read_text()
    found = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        found.append(Block(m.group(1), m.group(2), mark.group(1) if mark else None, mark.group(2) if mark else "",
                           text.count("\n", 0, m.start()) + 1))
    return found


def layered_venv(path: Path) -> Path:
    """A virtual environment that sees the checkout's installed packages (through a ``.pth`` that
    adds its site-packages as a site directory, editable finders included) but installs into its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    purelib = Path(sysconfig.get_paths(vars={"base": str(path), "platbase": str(path)})["purelib"])
    parent = sysconfig.get_paths()["purelib"]
    (purelib / "_checkout_venv.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    # The checkout's console scripts (pip, registry, pytest...), run by this environment's python.
    parent_bin = Path(sys.executable).parent
    for script in parent_bin.iterdir():
        if (path / "bin" / script.name).exists() or not script.is_file():
            continue
        try:
            first, rest = script.read_text().split("\n", 1)
        except (UnicodeDecodeError, ValueError):
            continue
        if first.startswith("#!") and first[2:].strip().startswith(str(parent_bin)):
            (path / "bin" / script.name).write_text(f"#!{path}/bin/python\n{rest}")
            (path / "bin" / script.name).chmod(0o755)
    return path


class Tutorial:
    """Runs a page's blocks in order in one working directory, with one environment."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.port = free_port()
        self.background: list[subprocess.Popen] = []
        self.log = workdir / "background.log"

    def substitute(self, text: str) -> str:
        return text.replace("127.0.0.1:5000", f"127.0.0.1:{self.port}")

    def run(self, page: Path) -> list[str]:
        ran = []
        waiting = False
        for block in blocks(page):
            where = f"{page.name}:{block.line}"
            if block.mark == "file":
                target = self.workdir / block.arg
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(self.substitute(block.body))
                continue
            if block.lang in ("text", "console"):
                continue
            assert block.lang == "sh", f"{where}: a ```{block.lang} block without <!-- file: PATH -->: nobody runs it"
            if waiting:
                self.wait_until_serving(where)
                waiting = False
            script = self.substitute(block.body)
            if block.mark == "background":
                with self.log.open("ab") as log:
                    self.background.append(subprocess.Popen(
                        ["bash", "-euo", "pipefail", "-c", script], cwd=self.workdir, env=self.env,
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
                waiting = True
                ran.append(script)
                continue
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.workdir, env=self.env,
                               capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
            assert r.returncode == 0, (
                f"{where} failed (exit {r.returncode}):\n{script}\n--- stdout\n{r.stdout[-4000:]}\n"
                f"--- stderr\n{r.stderr[-4000:]}\n--- server\n{self.server_log()}")
            ran.append(script)
        return ran

    def server_log(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def wait_until_serving(self, where: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.background):
                pytest.fail(f"{where}: the background command exited:\n{self.server_log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # answering (401 with auth configured)
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"{where}: nothing answered on 127.0.0.1:{self.port} in {START_TIMEOUT:.0f} s:\n"
                    f"{self.server_log()}")

    def stop(self) -> None:
        for proc in self.background:  # only the process groups this test started
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.background:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def tutorial(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    layered_venv(work / ".venv")
    containers = ContainersEnv(tmp_path / "containers")
    env = dict(containers.env)
    env.update({
        "HOME": str(tmp_path / "home"),
        "REGISTRY_DATA_DIR": str(tmp_path / "data"),
        "PATH": f"{work / '.venv' / 'bin'}:{env.get('PATH', '')}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    (tmp_path / "home").mkdir()
    # `make` is the checkout's: run there, with the checkout's .venv.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    (bin_dir / "make").write_text(f'#!/bin/sh\nexec /usr/bin/env -u MAKEFLAGS -u MAKELEVEL {make} -s -C "{ROOT}" "$@"\n')
    (bin_dir / "make").chmod(0o755)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    t = Tutorial(work, env)
    # `make run` serves the built-in default configuration: its address comes from the environment.
    env["REGISTRY_HTTP_ADDR"] = f"127.0.0.1:{t.port}"
    containers.add_insecure_registry(f"127.0.0.1:{t.port}")
    yield t
    t.stop()


def test_blocks_are_parsed(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("x\n<!-- file: a/b.py -->\n```python\nprint(1)\n```\n\n```sh\necho hi\n```\n"
                    "<!-- background: serve -->\n```sh\nsleep 1\n```\n")
    got = [(b.lang, b.mark, b.arg, b.body) for b in blocks(page)]
    assert got == [("python", "file", "a/b.py", "print(1)\n"), ("sh", None, "", "echo hi\n"),
                   ("sh", "background", "serve", "sleep 1\n")]


def test_an_unrunnable_block_fails(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```yaml\nversion: 0.1\n```\n")
    with pytest.raises(AssertionError, match="nobody runs it"):
        Tutorial(tmp_path, dict(os.environ)).run(page)


def test_a_failing_command_fails(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```sh\ntrue\nfalse\necho never\n```\n")
    with pytest.raises(AssertionError, match="failed"):
        Tutorial(tmp_path, dict(os.environ)).run(page)


@pytest.mark.clients
@pytest.mark.slow
def test_quickstart(tutorial):
    reason = _unusable(("skopeo", "podman", "curl"))
    if reason:
        pytest.skip(reason)
    ran = tutorial.run(DOCS / "quickstart.md")
    assert any("podman pull" in s for s in ran) and any("skopeo copy" in s for s in ran)
    # What the page says the reader now has: the image, pushed and pulled back, in the data directory.
    data = Path(tutorial.env["REGISTRY_DATA_DIR"])
    assert (data / "docker/registry/v2/repositories/demo/hello/_manifests/tags/1").is_dir()
    assert (data / "docker/registry/v2/repositories/demo/copy/_manifests/tags/1").is_dir()


@pytest.mark.slow
def test_storage_plugin_tutorial(tutorial):
    ran = tutorial.run(DOCS / "tutorial-storage-plugin.md")
    assert any("--registry-storage-driver=dictstore" in s for s in ran)
    # The plugin went into the tutorial's environment, not the checkout's.
    assert "registry-dictstore" not in subprocess.run(
        [sys.executable, "-m", "pip", "list"], capture_output=True, text=True).stdout


@pytest.mark.clients
@pytest.mark.slow
def test_auth_plugin_tutorial(tutorial):
    reason = _unusable(("skopeo", "curl"))
    if reason:
        pytest.skip(reason)
    ran = tutorial.run(DOCS / "tutorial-auth-plugin.md")
    assert any("--dest-creds alice:s3cret" in s for s in ran)


def test_readme_quickstart_commands_are_the_tested_ones():
    """The README's quickstart shows a few of docs/quickstart.md's commands: each must be one that
    test_quickstart runs, so the README cannot drift either."""
    tested = "".join(b.body for b in blocks(DOCS / "quickstart.md") if b.lang == "sh")
    shown = [b for b in blocks(ROOT / "README.md") if b.lang == "sh" and "skopeo copy" in b.body]
    assert shown, "the README's quickstart block (with registry demo-image) is gone"
    for block in shown:
        for line in block.body.splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("#"):
                assert command in tested, f"README runs {command!r}, which docs/quickstart.md does not"
