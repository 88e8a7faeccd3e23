"""Garbage collection while 8 clients push, against a real ``registry serve`` process on the
filesystem driver: ``registry garbage-collect --grace 0 --delete-untagged`` runs again and again as a
separate process during the pushes, and once after.

Then every image a client saw pushed (201 for its manifest) pulls back whole, every digest verified;
the storage keeps every promise of tests/integrity.py; and the blobs that were garbage before the
pushes began (a deleted image, an untagged one) are gone.

With ``--grace 0`` a push that was in flight when a run started is not protected (nothing tells its
blobs from abandoned ones until its manifest arrives): the registry may then refuse its manifest
(``MANIFEST_BLOB_UNKNOWN``), as it refuses any manifest whose blobs are missing, and the client
pushes again. What must never happen, and is checked here, is a manifest accepted and then left
without its blobs.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import pushing
from tests.clients.client_harness import OURS, running_registry
from tests.integrity import check_storage

pytest.importorskip("registry_filesystem")
from registry_filesystem.driver import FilesystemDriver  # noqa: E402

from registry.digests import parse_digest  # noqa: E402
from registry.storage.store import Store  # noqa: E402

PUSHERS = 8
IMAGES_EACH = 10
ATTEMPTS = 6
MAX_SECONDS = 120.0
MIN_GC_RUNS = 3
SCRIPT = Path(sys.executable).with_name("registry")
RETRY_CODES = {"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"}


def gc_run(config: Path, *extra: str) -> dict:
    r = subprocess.run([str(SCRIPT), "garbage-collect", "--grace", "0", "--delete-untagged", "--settle", "300ms",
                        "--json", "--quiet", *extra, str(config)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def push_image(s, base: str, repo: str, tag: str, layers: list[bytes], config: bytes, pause: float = 0.0) -> str:
    for i, layer in enumerate(layers):
        pushing.push_blob(s, base, repo, layer, pushing.UPLOAD_FORMS[i % 3], chunk=32768)
    pushing.push_blob(s, base, repo, config, "single")
    # A client between its blobs and its manifest: the window in which its blobs are referenced
    # by nothing but their fresh layer links.
    time.sleep(pause)
    return pushing.put_manifest(s, base, repo, tag, pushing.manifest(config, layers))


def test_gc_during_8_pushing_clients_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    rng = random.Random(15)
    base_layer = b"a base layer every image shares " + rng.randbytes(100_000)
    with running_registry(OURS, root, tmp_path / "run") as server, pushing.session() as s:
        url = server.url
        # Garbage from before: a deleted image and an untagged one; and a tagged image that stays.
        garbage, garbage_bytes = [], 0
        for n in range(3):
            layer = b"garbage %d " % n + rng.randbytes(50_000)
            config = pushing.config_blob(f"garbage-{n}")
            d = push_image(s, url, "seed/gone", f"g{n}", [layer], config)
            assert s.delete(f"{url}/v2/seed/gone/manifests/{d}", timeout=10).status_code == 202
            garbage += [pushing.digest(layer), pushing.digest(config), d]
            garbage_bytes += len(layer) + len(config) + len(pushing.manifest(config, [layer]))
        untagged_layer = b"untagged " + rng.randbytes(40_000)
        untagged_config = pushing.config_blob("untagged")
        raw = pushing.manifest(untagged_config, [untagged_layer])
        pushing.push_blob(s, url, "seed/kept", untagged_layer)
        pushing.push_blob(s, url, "seed/kept", untagged_config)
        garbage += [pushing.put_manifest(s, url, "seed/kept", pushing.digest(raw), raw),
                    pushing.digest(untagged_layer), pushing.digest(untagged_config)]
        garbage_bytes += len(raw) + len(untagged_layer) + len(untagged_config)
        push_image(s, url, "seed/kept", "stays", [base_layer], pushing.config_blob("stays"))
        time.sleep(1.2)  # older than the collector's slack for coarse clocks

        pushed: list[tuple[str, str, str, list[bytes], bytes]] = []
        retries: list[str] = []
        failures: list[BaseException] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            crng = random.Random(i)
            with pushing.session() as cs:
                for n in range(IMAGES_EACH):
                    repo = f"push/c{i}" if n % 2 else "push/shared"
                    tag = f"c{i}-v{n}"
                    layers = [base_layer, b"client %d image %d " % (i, n) + crng.randbytes(crng.randrange(20_000, 120_000))]
                    config = pushing.config_blob(f"{i}-{n}")
                    for attempt in range(ATTEMPTS):
                        try:
                            d = push_image(cs, url, repo, tag, layers, config, pause=crng.uniform(0, 0.6))
                        except pushing.Unexpected as exc:
                            if set(pushing.error_codes(exc.response)) & RETRY_CODES and attempt < ATTEMPTS - 1:
                                with lock:
                                    retries.append(f"{repo}:{tag}: {exc}")
                                continue
                            raise
                        with lock:
                            pushed.append((repo, tag, d, layers, config))
                        break

        def guarded(i: int) -> None:
            try:
                client(i)
            except BaseException as exc:  # reported by the main thread
                with lock:
                    failures.append(exc)

        threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(PUSHERS)]
        started = time.monotonic()
        for t in threads:
            t.start()
        runs: list[tuple[float, dict]] = []
        deadline = started + MAX_SECONDS
        while (any(t.is_alive() for t in threads) or len(runs) < MIN_GC_RUNS) and time.monotonic() < deadline:
            t0 = time.monotonic()
            result = gc_run(server.config)
            runs.append((time.monotonic() - t0, result))
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.monotonic()))
        assert not failures, failures[0]
        assert all(not t.is_alive() for t in threads), "pushers did not finish in time"
        during = sum(1 for _ in runs)
        t0 = time.monotonic()
        final = gc_run(server.config)
        final_seconds = time.monotonic() - t0

        # Every image a client saw pushed pulls back whole.
        assert len(pushed) == PUSHERS * IMAGES_EACH
        for repo, tag, d, layers, config in pushed:
            r = pushing.get_manifest(s, url, repo, tag)
            assert r.status_code == 200, (repo, tag, r.text)
            assert r.headers["Docker-Content-Digest"] == d and pushing.digest(r.content) == d
            for data in [*layers, config]:
                b = pushing.get_blob(s, url, repo, pushing.digest(data))
                assert b.status_code == 200, (repo, tag, b.text)
                assert b.content == data
        assert pushing.get_manifest(s, url, "seed/kept", "stays").status_code == 200

    # The garbage from before is gone, and the storage is consistent.
    store = Store(FilesystemDriver(str(root)))
    left = [d for d in garbage if store.blob_size(parse_digest(d)) is not None]
    assert left == []
    report = check_storage(FilesystemDriver(str(root)))
    assert report.problems == []
    freed = sum(r["bytes_freed"] for _, r in runs) + final["bytes_freed"]
    print(f"\n{during} GC runs during the pushes ({', '.join(f'{sec:.2f}s' for sec, _ in runs)}), final run "
          f"{final_seconds:.2f}s; {len(pushed)} images pushed, {len(retries)} manifest pushes refused and "
          f"retried; {sum(r['blobs_deleted'] for _, r in runs) + final['blobs_deleted']} blobs and {freed} bytes "
          f"freed; {sum(r['repaired'] for _, r in runs)} links repaired, "
          f"{sum(r['rescued'] for _, r in runs)} blobs rescued")
    assert freed >= garbage_bytes
    assert during >= MIN_GC_RUNS
