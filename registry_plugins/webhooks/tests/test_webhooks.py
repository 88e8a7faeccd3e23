"""The webhooks plugin end to end: a real ``registry serve`` delivering to a real HTTP receiver on
loopback (webhook_harness.py), plus the queue, the backoff and the config on their own."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from registry_webhooks.notifier import EndpointConfig, envelope, parse_settings, queue_file
from registry_webhooks.queue import DiskQueue
from webhook_harness import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Receiver,
    Registry,
    envelope_errors,
    free_port,
    push_blob,
    push_image,
    sha256,
    wait_for,
)

from registry.config import ConfigError
from registry.config.settings import not_acted_on
from registry.plugins import create_plugin_manager

ENVELOPE_TYPE = "application/vnd.docker.distribution.events.v1+json"


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def make(port: int | None = None) -> Receiver:
        r = Receiver(port).start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


@pytest.fixture
def registries(tmp_path):
    started: list[Registry] = []

    def make(notifications: dict, workdir: Path | None = None) -> Registry:
        reg = Registry(workdir or tmp_path, notifications)
        started.append(reg)
        return reg.start()

    yield make
    for reg in started:
        if reg.proc is not None and reg.proc.poll() is None:
            reg.proc.kill()
            reg.proc.wait(10)


def endpoint(name: str, url: str, **extra) -> dict:
    return {"name": name, "url": url, "timeout": "500ms", "threshold": 2, "backoff": "100ms",
            "maxbackoff": "400ms", **extra}


def queue_dir(tmp_path: Path) -> dict:
    return {"directory": str(tmp_path / "queue"), "draintimeout": "1s"}


# --- the envelope, in order, schema-valid, signed ------------------------------------------------


def _oci_layout(path: Path, layers: list[bytes]) -> tuple[str, list[str]]:
    """An OCI image layout with one image tagged ``v1`` (what skopeo copies from)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        d = sha256(data)
        (blobs / d.split(":")[1]).write_bytes(data)
        return d

    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(x) for x in layers]}}).encode()
    cd = put(config)
    # Compressed already, so that skopeo copies the layers (and so the manifest) as they are.
    descs = [{"mediaType": OCI_LAYER + "+gzip", "digest": put(x), "size": len(x)} for x in layers]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(config)},
                           "layers": descs}).encode()
    md = put(manifest)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": md, "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
    return md, [cd, *(x["digest"] for x in descs)]


def _skopeo() -> str:
    exe = shutil.which("skopeo")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("skopeo is not installed (contrib/dev/install-test-deps.sh installs it)")
        pytest.skip("skopeo is not installed")
    return exe


def test_a_skopeo_push_delivers_its_events_in_order_signed_and_schema_valid(tmp_path, receivers, registries):
    skopeo = _skopeo()
    rc = receivers()
    url = rc.url.replace("http://", "http://hook:pa%3Ass@")
    reg = registries({"queue": queue_dir(tmp_path), "events": {"includereferences": True},
                      "endpoints": [endpoint("ci", url, secret="s3cret",
                                             headers={"Authorization": ["Bearer t0ken"], "X-Two": ["a", "b"]})]})
    layers = [gzip.compress(os.urandom(3000), mtime=0), gzip.compress(os.urandom(5000), mtime=0)]
    md, blob_digests = _oci_layout(tmp_path / "layout", layers)
    run = subprocess.run([skopeo, "copy", "--quiet", "--dest-tls-verify=false", f"oci:{tmp_path / 'layout'}:v1",
                          f"docker://127.0.0.1:{reg.port}/hook/demo:v1"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    wait_for(lambda: any(e["target"].get("digest") == md for e in rc.events()), 10, "the manifest push event")
    time.sleep(0.3)  # nothing more should come
    events = rc.events()
    assert [e["action"] for e in events] == ["push"] * 4
    # Every blob before the manifest that needs it, each exactly once; then the manifest, with its tag.
    assert sorted(e["target"]["digest"] for e in events[:3]) == sorted(blob_digests)
    last = events[3]["target"]
    assert (last["digest"], last["tag"], last["mediaType"], last["repository"]) == (md, "v1", OCI_MANIFEST, "hook/demo")
    assert [r["digest"] for r in last["references"]] == blob_digests
    assert last["url"] == f"http://127.0.0.1:{reg.port}/v2/hook/demo/manifests/{md}"
    assert events[0]["request"]["useragent"].startswith("skopeo")
    assert len({e["id"] for e in events}) == 4
    for headers, body, _ in rc.received:
        assert envelope_errors(json.loads(body)) == []
        assert headers["content-type"] == [ENVELOPE_TYPE]
        # The URL's credentials as Basic auth, then the configured header; a list is one line each.
        assert headers["authorization"] == ["Basic " + base64.b64encode(b"hook:pa:ss").decode(), "Bearer t0ken"]
        assert headers["x-two"] == ["a", "b"]
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        [signature] = headers["x-registry-signature-256"]
        assert hmac.compare_digest(signature, expected)
    m = reg.metrics()["ci"]
    assert (m["delivered"], m["pending"], m["failed"]) == (4, 0, 0)
    assert m["url"] == rc.url.replace("http://", "http://hook:xxxxx@")
    assert "pa%3Ass" not in reg.log.read_text() and "s3cret" not in reg.log.read_text()


def test_the_envelope_schema_refuses_what_a_receiver_could_not_read():
    good = {"events": [{"id": "1", "timestamp": "2026-01-01T00:00:00Z", "action": "delete",
                        "target": {"repository": "a", "digest": sha256(b"x")},
                        "request": {"id": "r", "addr": "", "host": "h", "method": "DELETE", "useragent": ""},
                        "actor": {}, "source": {"addr": "h", "instanceID": "i"}}]}
    assert envelope_errors(good) == []
    assert envelope_errors({"events": []})
    assert envelope_errors({**good, "extra": 1})
    assert envelope_errors({"events": [{**good["events"][0], "action": "upload"}]})
    assert json.loads(envelope([json.dumps(e).encode() for e in good["events"] * 2])) == {"events": good["events"] * 2}


# --- durability: 500s, timeouts, down across a restart -------------------------------------------


def _push_blobs(reg: Registry, name: str, n: int, tag: str) -> list[str]:
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=15)
    try:
        return [push_blob(reg, name, f"{tag}-{i}-{os.urandom(4).hex()}".encode(), conn=conn) for i in range(n)]
    finally:
        conn.close()


def test_no_event_is_lost_through_500s_timeouts_and_a_restart_while_down(tmp_path, receivers, registries):
    rc = receivers()
    rc.mode = "fail"
    rc.hang_for = 1.5
    notifications = {"queue": {**queue_dir(tmp_path), "maxbatch": 5}, "endpoints": [endpoint("durable", rc.url)]}
    reg = registries(notifications)
    pushed = _push_blobs(reg, "dur/a", 10, "500s")
    wait_for(lambda: reg.metrics()["durable"]["failed"] >= 3, 10, "failed deliveries")
    assert rc.received == []
    rc.mode = "hang"  # the receiver takes the body and never answers within the 500ms timeout
    pushed += _push_blobs(reg, "dur/a", 10, "hang")
    before = reg.metrics()["durable"]["failed"]
    wait_for(lambda: reg.metrics()["durable"]["failed"] >= before + 2, 15, "timed-out deliveries")
    m = reg.metrics()["durable"]
    assert "timed out" in m["last_error"] or "Timeout" in m["last_error"], m["last_error"]
    assert m["retries"] >= 4 and m["delivered"] == 0 and m["pending"] == 20
    rc.stop()  # down: connections refused
    pushed += _push_blobs(reg, "dur/a", 10, "down")
    t0 = time.monotonic()
    assert reg.stop() == 0
    assert time.monotonic() - t0 < 5, "the drain is bounded by notifications.queue.draintimeout"
    # Started again on the same queue while the receiver is still down: the 30 are still queued.
    reg2 = registries(notifications, tmp_path)
    wait_for(lambda: reg2.metrics()["durable"]["failed"] >= 1, 10, "a failed delivery after the restart")
    assert reg2.metrics()["durable"]["pending"] == 30
    pushed += _push_blobs(reg2, "dur/a", 10, "restarted")
    rc2 = receivers(rc.port)  # back, on the same port
    wait_for(lambda: {e["target"]["digest"] for e in rc2.events()} >= set(pushed), 20, "every event")
    events = rc2.events()
    assert len({e["id"] for e in events}) == 40  # one event per push, none lost, ids stable
    assert all(envelope_errors(json.loads(b)) == [] for _, b, _ in rc2.received)
    # In queue order: the events of one process arrive as they were queued.
    order = [e["target"]["digest"] for e in events]
    assert order == list(dict.fromkeys(order)) and [d for d in order if d in pushed] == pushed
    wait_for(lambda: reg2.metrics()["durable"]["pending"] == 0, 5, "an empty queue")


def test_sigterm_drains_within_the_timeout_and_keeps_the_rest(tmp_path, receivers, registries):
    rc = receivers()
    rc.mode = "fail"
    notifications = {"queue": {"directory": str(tmp_path / "queue"), "draintimeout": "2s", "maxbatch": 1},
                     "endpoints": [endpoint("drain", rc.url, backoff="30s", maxbackoff="30s", threshold=0)]}
    reg = registries(notifications)
    pushed = _push_blobs(reg, "drain/a", 40, "x")
    wait_for(lambda: reg.metrics()["drain"]["failed"] >= 1, 10, "the first failure (then a 30s backoff)")
    # The receiver works again, slowly: 0.1s per envelope of one event, so 2s drain about 20 of 40.
    rc.mode, rc.delay = "ok", 0.1
    t0 = time.monotonic()
    assert reg.stop() == 0
    took = time.monotonic() - t0
    drained = len(rc.ids())
    assert 1 <= drained < 40 and took < 4.5, (drained, took)
    rc.delay = 0.0
    reg2 = registries(notifications, tmp_path)
    wait_for(lambda: {e["target"]["digest"] for e in rc.events()} >= set(pushed), 20, "the rest after the restart")
    assert reg2.metrics()["drain"]["pending"] == 0


# --- isolation ------------------------------------------------------------------------------------


def test_a_hanging_and_a_dead_endpoint_never_delay_the_live_one_or_a_push(tmp_path, receivers, registries):
    live, hanging = receivers(), receivers()
    hanging.mode, hanging.hang_for = "hang", 10.0
    dead = f"http://127.0.0.1:{free_port()}/events"
    reg = registries({"queue": queue_dir(tmp_path), "endpoints": [
        endpoint("hanging", hanging.url, timeout="5s"), endpoint("dead", dead), endpoint("live", live.url)]})
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=15)
    lags, latencies = [], []
    for i in range(20):
        t = time.monotonic()
        d = push_blob(reg, "iso/a", f"iso-{i}".encode(), conn=conn)
        latencies.append(time.monotonic() - t)
        wait_for(lambda d=d: any(e["target"]["digest"] == d for e in live.events()), 5, f"event {i} at the live one")
        lags.append(time.monotonic() - t)
    conn.close()
    assert max(lags) < 1.0, f"live endpoint lag up to {max(lags):.3f}s"
    assert max(latencies) < 1.0, f"push latency up to {max(latencies):.3f}s"
    m = reg.metrics()
    assert m["live"]["delivered"] == 20 and m["live"]["pending"] == 0
    assert m["dead"]["delivered"] == 0 and m["dead"]["pending"] == 20 and m["dead"]["failed"] >= 1
    assert m["hanging"]["delivered"] == 0 and m["hanging"]["pending"] == 20
    t0 = time.monotonic()
    assert reg.stop() == 0
    assert time.monotonic() - t0 < 8, "a delivery hanging in flight does not hold the exit beyond the drain"


# --- ignore rules ---------------------------------------------------------------------------------


def test_ignore_rules_filter_by_media_type_and_action(tmp_path, receivers, registries):
    no_blobs, no_pulls, no_manifests, all_, off = (receivers() for _ in range(5))
    reg = registries({"queue": queue_dir(tmp_path), "endpoints": [
        endpoint("no-blobs", no_blobs.url, ignoredmediatypes=["application/octet-stream"]),
        endpoint("no-pulls", no_pulls.url, ignore={"actions": ["pull", "delete"]}),
        endpoint("no-manifests", no_manifests.url, ignore={"mediatypes": [OCI_MANIFEST]}),
        endpoint("all", all_.url),
        endpoint("off", off.url, disabled=True),
    ]})
    md, blobs, _ = push_image(reg, "ign/a", "v1", (b"ignored layer",))
    assert reg.request("GET", "/v2/ign/a/manifests/v1")[0] == 200
    assert reg.request("GET", f"/v2/ign/a/blobs/{blobs[1]}")[0] == 200
    assert reg.request("DELETE", "/v2/ign/a/manifests/v1")[0] == 202
    wait_for(lambda: len(all_.events()) == 6, 10, "all six events at the unfiltered endpoint")
    for r in (no_blobs, no_pulls, no_manifests):
        wait_for(lambda r=r: r.events(), 5, "some events")
    time.sleep(0.3)

    def seen(r: Receiver) -> list[tuple[str, str]]:
        return [(e["action"], e["target"].get("mediaType", "-")) for e in r.events()]

    octet = "application/octet-stream"
    assert seen(all_) == [("push", octet), ("push", octet), ("push", OCI_MANIFEST), ("pull", OCI_MANIFEST),
                          ("pull", octet), ("delete", "-")]
    assert seen(no_blobs) == [("push", OCI_MANIFEST), ("pull", OCI_MANIFEST), ("delete", "-")]
    assert seen(no_pulls) == [("push", octet), ("push", octet), ("push", OCI_MANIFEST)]
    assert seen(no_manifests) == [("push", octet), ("push", octet), ("pull", octet), ("delete", "-")]
    assert off.attempts == 0 and "off" not in reg.metrics()


# --- 10,000 events while the receiver is down -----------------------------------------------------

MAX_BYTES = 2 << 20
#: docs/webhooks.md: the queue's files stay under 1.5 x maxbytes + 12 MiB.
DISK_BOUND = int(1.5 * MAX_BYTES) + (12 << 20)


def test_ten_thousand_events_while_down_keep_memory_disk_and_push_latency_flat(tmp_path, receivers, registries):
    port = free_port()
    reg = registries({"queue": {"directory": str(tmp_path / "queue"), "maxbytes": MAX_BYTES, "maxbatch": 500},
                      "endpoints": [endpoint("down", f"http://127.0.0.1:{port}/events", backoff="200ms",
                                             maxbackoff="1s")]})
    push_image(reg, "load/a", "v1", (b"load layer",))
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=15)
    push_latency: list[float] = []
    pushed: list[str] = []
    rss: list[int] = []
    total = 3  # the image's events
    for i in range(10_000):
        if i % 10 == 0:
            t = time.perf_counter()
            pushed.append(push_blob(reg, "load/a", b"load-%d" % i, conn=conn))
            push_latency.append(time.perf_counter() - t)
        else:
            status, _ = reg.request("GET", "/v2/load/a/manifests/v1", conn=conn)
            assert status == 200
        total += 1
        if i == 999:
            rss.append(reg.rss_kib())
    conn.close()
    rss.append(reg.rss_kib())
    wait_for(lambda: reg.metrics()["down"]["pending"] + reg.metrics()["down"]["dropped"] == total, 10,
             "every event queued or counted as dropped")
    m = reg.metrics()["down"]
    disk = m["disk_bytes"]
    first, last = statistics.median(push_latency[:100]), statistics.median(push_latency[-100:])
    sys.stderr.write(f"\n10k events: RSS {rss[0]} -> {rss[1]} KiB; queue {m['queue_bytes']} B of {MAX_BYTES}, "
                     f"disk {disk} B (bound {DISK_BOUND}); pending {m['pending']}, dropped {m['dropped']}; "
                     f"push median first 100 {first * 1e3:.2f} ms, last 100 {last * 1e3:.2f} ms\n")
    assert m["dropped"] > 0 and m["queue_bytes"] <= MAX_BYTES  # the bound held, by dropping
    assert disk <= DISK_BOUND, disk
    assert rss[1] - rss[0] < 20 * 1024, f"RSS grew {rss[1] - rss[0]} KiB over 9,000 events"
    assert last < max(2 * first, first + 0.005), f"push latency grew: {first * 1e3:.2f} -> {last * 1e3:.2f} ms"
    # The overflow policy keeps the newest: once up, the receiver gets the last push, not the first.
    rc = receivers(port)
    wait_for(lambda: any(e["target"].get("digest") == pushed[-1] for e in rc.events()), 30, "the newest event")
    wait_for(lambda: reg.metrics()["down"]["pending"] == 0, 30, "the queue drained")
    got = {e["target"].get("digest") for e in rc.events()}
    assert not got & set(pushed[:10])  # (the pulls all name the image's manifest)
    assert len(rc.ids()) == m["pending"]
    assert reg.metrics()["down"]["disk_bytes"] < disk, "a drained queue gives its pages back"


# --- the parts on their own -----------------------------------------------------------------------


def test_the_disk_queue_keeps_order_across_reopening_and_drops_the_oldest(tmp_path):
    path = tmp_path / "q.sqlite3"
    q = DiskQueue(path, max_bytes=100)
    q.put([b"a" * 30, b"b" * 30])
    q.put([b"c" * 30])
    assert [b[:1] for _, b in q.peek(10)] == [b"a", b"b", b"c"] and q.bytes == 90
    q.close()
    q = DiskQueue(path, max_bytes=100)
    assert len(q) == 3 and q.bytes == 90
    q.put([b"d" * 30])  # 120 > 100: the oldest goes
    assert [b[:1] for _, b in q.peek(10)] == [b"b", b"c", b"d"] and q.dropped == 1
    q.put([b"e" * 101])  # larger than the bound on its own: dropped, nothing else is
    assert len(q) == 3 and q.dropped == 2
    batch = q.peek(2)
    q.ack([s for s, _ in batch])
    assert [b[:1] for _, b in q.peek(10)] == [b"d"] and q.bytes == 30
    q.close()


def test_backoff_is_short_below_the_threshold_then_doubles_up_to_the_cap():
    cfg = EndpointConfig(name="e", url="http://127.0.0.1:9/", threshold=3, backoff=1.0, maxbackoff=5.0)
    assert [cfg.delay(n) for n in range(1, 8)] == [0.05, 0.1, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert EndpointConfig(name="e", url="u", threshold=0, backoff=0.5, maxbackoff=60).delay(1) == 1.0
    spin = EndpointConfig(name="e", url="u", threshold=2, backoff=0.0, maxbackoff=0.0)
    assert [spin.delay(n) for n in range(1, 5)] == [0.05] * 4


def test_settings_read_distributions_section_and_refuse_bad_endpoints(tmp_path):
    s = parse_settings({"notifications": {"endpoints": [
        {"name": "a", "url": "https://h.example/e", "timeout": "250ms", "backoff": "2s", "threshold": 4,
         "ignoredmediatypes": ["x"], "ignore": {"mediatypes": ["y"], "actions": ["pull"]}},
        {"name": "b", "url": "http://h/e", "disabled": True}]}}, environ={"REGISTRY_DATA_DIR": str(tmp_path)})
    [a] = s.endpoints
    assert (a.timeout, a.backoff, a.threshold) == (0.25, 2.0, 4)
    assert a.ignored_media_types == {"x", "y"} and a.ignored_actions == {"pull"}
    assert s.directory == tmp_path / "webhooks"
    with pytest.raises(ConfigError, match="used twice"):
        parse_settings({"notifications": {"endpoints": [{"name": "a", "url": "http://h/"}] * 2}})
    with pytest.raises(ConfigError, match="not an http"):
        parse_settings({"notifications": {"endpoints": [{"name": "a", "url": "file:///etc/passwd"}]}})
    # A name never reaches a path as it is.
    f = queue_file(tmp_path, "../../etc/x")
    assert f.parent == tmp_path and f.name.startswith("______etc_x-")


def test_the_section_is_acted_on_and_checked(tmp_path):
    pm = create_plugin_manager()
    config = {"version": 0.1, "storage": {"inmemory": {}}, "notifications": {
        "events": {"includereferences": True},
        "endpoints": [{"name": "a", "url": "http://127.0.0.1:9/", "headers": {"A": ["b"]}, "timeout": "1s",
                       "threshold": 10, "backoff": "1s", "ignoredmediatypes": ["application/octet-stream"],
                       "ignore": {"mediatypes": ["x"], "actions": ["pull"]}, "disabled": False}]}}
    assert not [k for k in not_acted_on(config, pm) if k.startswith("notifications")]
    good = tmp_path / "good.yml"
    good.write_text(json.dumps(config))
    registry = str(Path(sys.executable).parent / "registry")
    assert subprocess.run([registry, "config", "check", str(good)], capture_output=True).returncode == 0
    bad = tmp_path / "bad.yml"
    config["notifications"]["queue"] = {"maxbytes": 10, "unknown": 1}
    bad.write_text(json.dumps(config))
    out = subprocess.run([registry, "config", "check", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and "maxbytes" in out.stdout + out.stderr and "unknown" in out.stdout + out.stderr


def test_a_second_process_on_one_queue_directory_refuses_to_start(tmp_path, receivers, registries):
    rc = receivers()
    notifications = {"queue": queue_dir(tmp_path), "endpoints": [endpoint("one", rc.url)]}
    first = registries(notifications, tmp_path / "a")
    second = Registry(tmp_path / "b", notifications)
    with pytest.raises(AssertionError, match="exited 1") as exc:
        second.start()
    assert f"is in use by another registry process (pid {first.proc.pid})" in str(exc.value)
    assert first.stop() == 0
    registries(notifications, tmp_path / "b")  # free once the first has stopped


def test_a_queue_directory_that_cannot_be_made_refuses_to_start(tmp_path, receivers):
    (tmp_path / "file").write_text("not a directory")
    reg = Registry(tmp_path, {"queue": {"directory": str(tmp_path / "file" / "queue")},
                              "endpoints": [endpoint("one", receivers().url)]})
    with pytest.raises(AssertionError, match="exited 1") as exc:
        reg.start()
    assert "notifications.queue.directory: cannot use" in str(exc.value) and "Traceback" not in str(exc.value)


def test_events_are_built_only_while_endpoints_run(tmp_path, receivers):
    from registry.app import create_app
    from registry.storage.inmemory import InMemoryDriver

    base = {"version": 0.1, "storage": {"inmemory": {}}}
    idle = create_app(base, create_plugin_manager(), driver=InMemoryDriver())
    with idle:
        assert not idle.registry_context.wants_events()  # installed, nothing configured: no cost
    rc = receivers()
    cfg = {**base, "notifications": {"queue": queue_dir(tmp_path), "endpoints": [endpoint("in", rc.url)]}}
    app = create_app(cfg, create_plugin_manager(), driver=InMemoryDriver())
    assert not app.registry_context.wants_events()
    with app:
        assert app.registry_context.wants_events()
    assert not app.registry_context.wants_events()
