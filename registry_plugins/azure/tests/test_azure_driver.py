"""The azure driver's own behaviour on Azurite: resuming from another client, conflicts, staged
blocks, errors, SAS expiry, config and lazy imports. (The contract itself: test_azure_conformance.py.)"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from azurite_server import require_sdk  # noqa: E402

from registry.storage.checked import checked
from registry.storage.driver import (
    ConflictError,
    PathNotFoundError,
    StorageError,
    StorageThrottledError,
    StorageUnavailableError,
)

require_sdk()  # at import: skips (or, under CI, fails) the module without the SDK

from registry_azure.driver import AzureDriver, from_parameters  # noqa: E402

MiB = 1 << 20


@pytest.fixture
def make_driver(azurite, container_name: str) -> Iterator:
    """Drivers on one container, each with its own SDK client: as separate registry processes."""
    made: list[AzureDriver] = []

    def make(**extra: object) -> AzureDriver:
        driver = from_parameters(azurite.options(container_name, rootdirectory="root", blocksize=MiB, **extra))
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.close()


def _uncommitted(driver: AzureDriver, path: str) -> list:
    return driver.blob(path).get_block_list("uncommitted")[1]


def test_an_upload_resumes_from_another_client_and_nothing_is_staged_twice(make_driver) -> None:
    raw = make_driver()
    one, two = checked(raw), checked(make_driver())
    path = "/_uploads/u/data"
    one.put_scratch(path, b"")
    chunks = [os.urandom(n) for n in (3 * MiB + 5, 10, 2 * MiB, 1)]
    for index, chunk in enumerate(chunks):
        writer = (one if index % 2 else two).writer(path, append=True)
        assert writer.size == sum(map(len, chunks[:index]))
        writer.write(chunk)
        writer.close()
    blocks = _uncommitted(raw, path)
    # Every byte was staged exactly once (no tail stored again, unlike S3's minimum part size)...
    assert sum(b.size for b in blocks) == sum(map(len, chunks))
    # ...in blocks of at most the block size, with IDs of one length, as the service requires.
    assert max(b.size for b in blocks) <= MiB
    assert len({len(b.id) for b in blocks}) == 1
    assert one.get_content(path) == b""  # readers see the last commit only
    final = two.writer(path, append=True)
    assert final.size == sum(map(len, chunks))
    final.commit()
    final.close()
    assert one.get_content(path) == b"".join(chunks)
    assert _uncommitted(raw, path) == []


def test_two_writers_at_one_offset_second_close_conflicts(make_driver) -> None:
    one, two = checked(make_driver()), checked(make_driver())
    path = "/_uploads/c/data"
    one.put_scratch(path, b"")
    first, second = one.writer(path, append=True), two.writer(path, append=True)
    first.write(b"A" * (2 * MiB + 1))
    second.write(b"B" * 1000)
    first.close()
    with pytest.raises(ConflictError):
        second.close()
    final = one.writer(path, append=True)
    assert final.size == 2 * MiB + 1
    final.commit()
    final.close()
    assert two.get_content(path) == b"A" * (2 * MiB + 1)


def test_commit_after_another_writer_closed_conflicts(make_driver) -> None:
    one, two = checked(make_driver()), checked(make_driver())
    path = "/_uploads/k/data"
    one.put_scratch(path, b"")
    stale = one.writer(path, append=True)
    racing = two.writer(path, append=True)
    racing.write(b"racing")
    racing.close()
    stale.write(b"stale")
    with pytest.raises(ConflictError):
        stale.commit()
    stale.close()
    final = two.writer(path, append=True)
    final.commit()
    assert one.get_content(path) == b"racing"


def test_missing_upload_is_not_found(make_driver) -> None:
    storage = checked(make_driver())
    with pytest.raises(PathNotFoundError):
        storage.writer("/_uploads/none/data", append=True)


def test_redirect_url_is_a_read_only_sas_expiring_in_20_minutes(make_driver) -> None:
    storage = checked(make_driver())
    storage.put_content("/blobs/x/data", b"payload")
    url = storage.redirect_url("GET", "/blobs/x/data")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    expiry = datetime.datetime.fromisoformat(query["se"].replace("Z", "+00:00"))
    left = expiry - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=19) < left <= datetime.timedelta(minutes=20), left
    assert query["sp"] == "r"
    assert storage.redirect_url("PUT", "/blobs/x/data") is None


def test_unreachable_service_is_unavailable(container_name: str) -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    driver = from_parameters({"accountname": "devstoreaccount1", "accountkey": base64.b64encode(b"k").decode(),
                              "container": container_name, "serviceurl": f"http://127.0.0.1:{port}/devstoreaccount1",
                              "max_retries": 0, "timeout": "2s"})
    storage = checked(driver)
    for call in (lambda: storage.stat("/a"), lambda: storage.put_content("/a", b"x"), lambda: storage.list("/")):
        with pytest.raises(StorageUnavailableError) as caught:
            call()
        assert not isinstance(caught.value, StorageThrottledError)


class _FakeBusyService(http.server.BaseHTTPRequestHandler):
    """A fake blob service answering every request with one error: throttling and 5xx on demand,
    which Azurite cannot produce."""

    status, code = 503, "ServerBusy"

    def _answer(self) -> None:
        body = f'<?xml version="1.0"?><Error><Code>{self.code}</Code><Message>busy</Message></Error>'.encode()
        self.send_response(self.status)
        self.send_header("x-ms-error-code", self.code)
        self.send_header("Retry-After", "7")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "code", "error"), [
    (503, "ServerBusy", StorageThrottledError),
    (429, "TooManyRequests", StorageThrottledError),
    (500, "InternalError", StorageUnavailableError),
    (403, "AuthenticationFailed", StorageError),
])
def test_service_errors_are_typed(status: int, code: str, error: type) -> None:
    handler = type("Handler", (_FakeBusyService,), {"status": status, "code": code})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        driver = from_parameters({
            "accountname": "devstoreaccount1", "accountkey": base64.b64encode(b"k").decode(), "container": "busy",
            "serviceurl": f"http://127.0.0.1:{server.server_address[1]}/devstoreaccount1", "max_retries": 0,
        })
        with pytest.raises(error) as caught:
            checked(driver).get_content("/some/file")
        assert type(caught.value) is error
        if error is StorageThrottledError:
            assert caught.value.retry_after == 7
    finally:
        server.shutdown()
        server.server_close()


class _FakePendingCopy:
    """A fake blob client whose copy stays pending twice before it succeeds (real Azure may answer
    "pending"; Azurite always copies at once)."""

    def __init__(self, statuses: list[str]) -> None:
        self.statuses, self.deleted, self.aborted = statuses, False, False
        self.url, self.blob_name = "http://127.0.0.1:1/acct/c/src", "src"

    def get_blob_properties(self):
        status = self.statuses.pop(0) if self.statuses else "pending"
        return type("P", (), {"etag": '"e"', "copy": type("C", (), {"status": status})})()

    def start_copy_from_url(self, url, **kw):
        return {"copy_status": "pending", "copy_id": "id"}

    def abort_copy(self, copy_id):
        self.aborted = True

    def delete_blob(self):
        self.deleted = True


@pytest.mark.parametrize(("statuses", "outcome"), [
    (["props", "pending", "success"], "moved"),
    (["props"], "gave up"),
    (["props", "failed"], "failed"),
])
def test_move_polls_a_pending_copy(statuses: list[str], outcome: str) -> None:
    fake = _FakePendingCopy(statuses)
    container = type("Container", (), {"get_blob_client": lambda self, name: fake,
                                       "create_container": lambda self: None})()
    driver = AzureDriver(container, copy_poll_delay=0.001, copy_poll_max=5)
    if outcome == "moved":
        driver.move("/src", "/dest")
        assert fake.deleted and fake.statuses == []
    elif outcome == "gave up":
        with pytest.raises(StorageUnavailableError):
            driver.move("/src", "/dest")
        assert fake.aborted and not fake.deleted
    else:
        with pytest.raises(StorageError):
            driver.move("/src", "/dest")
        assert not fake.deleted


def test_plugin_import_is_light_and_identity_only_when_needed() -> None:
    code = (
        "import sys, registry_azure.plugin as p\n"
        "assert 'azure.storage.blob' not in sys.modules, 'SDK imported with the plugin'\n"
        "p.create_driver({'accountname': 'a', 'accountkey': 'a2V5', 'container': 'abc',"
        " 'serviceurl': 'http://127.0.0.1:9/a'})\n"
        "print(sorted(m for m in ('azure.storage.blob', 'azure.identity') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['azure.storage.blob']"


def _check(tmp_path: Path, azure: dict) -> subprocess.CompletedProcess:
    config = tmp_path / "config.yml"
    config.write_text(json.dumps({"version": 0.1, "storage": {"azure": azure}}))
    registry = Path(sys.executable).parent / "registry"
    return subprocess.run([str(registry), "config", "check", str(config)], capture_output=True, text=True, timeout=60)


def test_config_check_knows_every_option(tmp_path: Path) -> None:
    good = {"accountname": "acct", "accountkey": "a2V5", "container": "registry", "realm": "core.chinacloudapi.cn",
            "rootdirectory": "/prefix", "serviceurl": "https://acct.blob.core.chinacloudapi.cn",
            "credentials": {"type": "client_secret", "clientid": "c", "tenantid": "t", "secret": "s"},
            "blocksize": 16 * MiB, "max_retries": 2, "retry_delay": "200ms", "copy_status_poll_max_retry": 10,
            "copy_status_poll_delay": "50ms", "timeout": "10s"}
    result = _check(tmp_path, good)
    assert result.returncode == 0, result.stdout + result.stderr
    for bad in ({**good, "credentials": {"type": "client_secret", "clientid": "c"}},
                {**good, "credentials": {"type": "password"}},
                {**good, "container": "No_Such"}, {**good, "retry_delay": "soon"}, {**good, "unknown": 1}):
        result = _check(tmp_path, bad)
        assert result.returncode == 1, (bad, result.stdout)
        assert "storage.azure" in result.stdout + result.stderr


def test_docs_page_names_every_option() -> None:
    schema = json.loads((Path(__file__).parents[1] / "registry_azure" / "schema.json").read_text())
    docs = (Path(__file__).parents[3] / "docs" / "azure.md").read_text()
    props = schema["properties"]
    options = [k for k in props if k != "credentials"]
    options += [f"credentials.{k}" for k in props["credentials"]["properties"]]
    missing = [name for name in options if f"| `{name}` |" not in docs]
    assert not missing, missing
    for kind in schema["properties"]["credentials"]["properties"]["type"]["enum"]:
        assert f"`{kind}`" in docs, kind


def test_fresh_writers_racing_on_one_path_leave_one_whole_version(make_driver) -> None:
    """Two fresh writers staging blocks for one path (one blob pushed twice at once): the first
    commit wins whole; the second, whose staged blocks that commit dropped, is told to retry."""
    one, two = checked(make_driver()), checked(make_driver())
    path = "/blobs/same/data"
    first, second = one.writer(path), two.writer(path)
    a, b = os.urandom(2 * MiB + 3), os.urandom(2 * MiB + 3)
    first.write(a)
    second.write(b)
    first.commit()
    with pytest.raises(StorageUnavailableError):
        second.commit()
    second.close()
    assert one.get_content(path) == a


def test_sdk_request_logging_stays_out_of_an_info_log(make_driver, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    storage = checked(make_driver())
    with caplog.at_level(logging.INFO):
        storage.put_content("/logged/file", b"x")
        assert storage.get_content("/logged/file") == b"x"
    assert not [r for r in caplog.records if r.name.startswith("azure")], caplog.text[:500]
