"""kill -9 under load: 20 clients push to a real `registry serve` process, which is SIGKILLed mid-way and
restarted on the same root.

Every push the registry acknowledged (201) pulls back byte-identical under its digest; every blob in
storage hashes to its path and every blob a repository serves has the right bytes; upload sessions cut
short either resume where the registry says they are (GET → 204 + Range, PATCH the rest, PUT verifies)
or answer BLOB_UPLOAD_UNKNOWN.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests import pushing
from tests.clients.client_harness import OURS, MissingTool, RegistryStartError, start_registry
from tests.integrity import check_storage

pytest.importorskip("registry_filesystem")
from registry_filesystem.driver import FilesystemDriver  # noqa: E402

CLIENTS = 20
KILL_AFTER_MANIFESTS = 100  # acknowledged manifests before the kill, across all clients
KILL_DEADLINE = 20.0  # ...or this many seconds of load, whichever comes first
CLIENT_DEADLINE = 40.0  # the clients stop by themselves after this, if the kill never came
IMAGES_PER_CLIENT = 200  # an upper bound on each client's loop


@dataclasses.dataclass
class Log:
    """What one client saw."""

    blobs: list[tuple[str, str, bytes]] = dataclasses.field(default_factory=list)  # repo, digest, data
    manifests: list[tuple[str, str, str, bytes]] = dataclasses.field(default_factory=list)  # repo, tag, digest, raw
    interrupted: list[tuple[str, bytes, int]] = dataclasses.field(default_factory=list)  # location, data, acked
    unexpected: list[str] = dataclasses.field(default_factory=list)
    requests: int = 0


def client(i: int, base: str, stop: threading.Event, deadline: float, log: Log, progress: list[int]) -> None:
    """Push images to crash/c<i> until the registry goes away: layers in all three upload forms, a config,
    a manifest under a tag; shared layers across clients make some blobs be pushed concurrently."""
    rng = random.Random(i)
    repo = f"crash/c{i:02d}"
    shared = b"shared layer " + bytes(range(256)) * 64  # every client pushes this one too
    session: list = [None]  # the upload session in progress: [location, data, acked bytes]

    def on_progress(location: str, acked: int) -> None:
        log.requests += 1
        session[0] = [location, session[0][1] if session[0] else b"", acked]

    s = pushing.session()
    try:
        for j in range(IMAGES_PER_CLIENT):
            if stop.is_set() or time.monotonic() > deadline:
                return
            layers = [shared] if j == 0 else []
            layers += [f"c{i}-{j}-{k} ".encode() + rng.randbytes(rng.randrange(2000, 120_000)) for k in range(2)]
            for data in layers:
                form = rng.choice(pushing.UPLOAD_FORMS)
                session[0] = [None, data, 0]
                d = pushing.push_blob(s, base, repo, data, form, chunk=rng.choice((8192, 32768)),
                                      progress=on_progress)
                session[0] = None
                log.requests += 1
                log.blobs.append((repo, d, data))
            config = pushing.config_blob(f"c{i}-{j}")
            log.blobs.append((repo, pushing.push_blob(s, base, repo, config), config))
            raw = pushing.manifest(config, layers)
            tag = f"v{j}"
            d = pushing.put_manifest(s, base, repo, tag, raw)
            log.requests += 2
            log.manifests.append((repo, tag, d, raw))
            progress[0] += 1
    except pushing.Unexpected as exc:
        if not stop.is_set():
            log.unexpected.append(str(exc))
    except requests.RequestException:
        pass  # the registry was killed under us
    finally:
        if session[0] and session[0][0]:
            log.interrupted.append(tuple(session[0]))
        s.close()


def resume(s: requests.Session, base: str, location: str, data: bytes, acked: int) -> str:
    """Continue an interrupted session on the restarted registry; returns what happened to it."""
    url = base + urlsplit(location).path  # the same session, on the new server
    r = s.get(url, timeout=pushing.TIMEOUT)
    if r.status_code == 404:
        assert pushing.error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"], r.text
        return "unknown"
    assert r.status_code == 204, r.text
    end = int(r.headers["Range"].split("-")[1])
    size = end + 1 if end or acked else 0  # "0-0": empty (chunks are never a single byte)
    # What the registry acknowledged survived; anything beyond it is a prefix of what was being sent.
    assert acked <= size <= len(data), (acked, size, len(data))
    if size < len(data):
        r = s.patch(url, data=data[size:], timeout=pushing.TIMEOUT,
                    headers={"Content-Range": f"{size}-{len(data) - 1}", "Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        url = base + urlsplit(r.headers["Location"]).path
    r = s.put(url, params={"digest": pushing.digest(data)}, timeout=pushing.TIMEOUT)
    assert r.status_code == 201, r.text  # the digest check passes: the stored bytes are the right ones
    return "resumed"


@pytest.mark.slow
def test_kill_9_under_load(tmp_path: Path) -> None:
    root = tmp_path / "root"
    try:
        server = start_registry(OURS, root, tmp_path / "run1")
    except (RegistryStartError, MissingTool) as exc:
        pytest.fail(str(exc), pytrace=False)
    logs = [Log() for _ in range(CLIENTS)]
    progress = [[0] for _ in range(CLIENTS)]
    stop = threading.Event()
    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i, server.url, stop, started + CLIENT_DEADLINE, logs[i],
                                                     progress[i]), daemon=True) for i in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        while sum(p[0] for p in progress) < KILL_AFTER_MANIFESTS and time.monotonic() < started + KILL_DEADLINE:
            assert server.alive(), server.log_tail()
            time.sleep(0.02)
        busy = sum(t.is_alive() for t in threads)
        os.kill(server.proc.pid, signal.SIGKILL)  # kill -9, while the clients are mid-push
        server.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(20)
        assert not any(t.is_alive() for t in threads), "a client did not stop"
    finally:
        stop.set()
        server.stop()
    unexpected = [u for log in logs for u in log.unexpected]
    assert unexpected == [], unexpected  # before the kill, every request got what it expected
    assert server.proc.returncode == -signal.SIGKILL
    assert busy == CLIENTS, "the kill came after some clients had finished: not under load"

    blobs = {(repo, d): data for log in logs for repo, d, data in log.blobs}
    manifests = [m for log in logs for m in log.manifests]
    interrupted = [x for log in logs for x in log.interrupted]
    assert len(manifests) >= CLIENTS, "too little was pushed before the kill to tell anything"

    try:
        server = start_registry(OURS, root, tmp_path / "run2")
    except (RegistryStartError, MissingTool) as exc:
        pytest.fail(str(exc), pytrace=False)
    s = pushing.session()
    try:
        for (repo, d), data in blobs.items():
            r = pushing.get_blob(s, server.url, repo, d)
            assert r.status_code == 200 and r.content == data, f"acknowledged blob {repo}@{d}: {r.status_code}"
        for repo, tag, d, raw in manifests:
            for ref in (tag, d):
                r = pushing.get_manifest(s, server.url, repo, ref)
                assert r.status_code == 200 and r.content == raw, f"acknowledged manifest {repo}:{ref}"
                assert r.headers["Docker-Content-Digest"] == d
        outcomes = [resume(s, server.url, loc, data, acked) for loc, data, acked in interrupted]

        # Nothing in storage is wrong, acknowledged or not, and every blob a repository serves is right.
        report = check_storage(FilesystemDriver(str(root)))
        assert report.problems == []
        served = 0
        for path in sorted(root.glob("docker/registry/v2/repositories/**/_layers/sha256/*/link")):
            repo = str(path.relative_to(root / "docker/registry/v2/repositories").parents[3])
            d = path.read_text()
            body = pushing.get_blob(s, server.url, repo, d).content
            assert "sha256:" + hashlib.sha256(body).hexdigest() == d, f"{repo}@{d} served wrong bytes"
            served += 1
        assert server.alive(), server.log_tail()
    finally:
        s.close()
        server.stop()
    print(f"\nkill -9 under load: {CLIENTS} clients, {sum(log.requests for log in logs)} requests before the kill; "
          f"acknowledged and verified after restart: {len(blobs)} blobs, {len(manifests)} manifests; "
          f"interrupted sessions: {outcomes.count('resumed')} resumed, {outcomes.count('unknown')} unknown; "
          f"storage: {report.blobs} blobs hashed, {served} served blobs verified, {report.links} links, "
          f"half-written tags: {len(report.half_tags)}")
