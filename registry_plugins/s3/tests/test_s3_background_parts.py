"""Parts sent in the background while a writer receives the next one, on a real S3 server (radosgw
and moto): one part in flight per writer, bytes in order, and a part that fails in flight.

A part that fails on the server at a chosen moment is a fault no real server produces on demand:
those tests wrap the real driver's ``call`` in-process (the fault injection is named ``flaky``)
and every other request goes to the server as usual.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest
from registry_s3.driver import MIN_PART, S3Driver, tail_key
from registry_s3.plugin import build_driver
from s3_servers import S3Server

from registry.storage.driver import StorageError, StorageUnavailableError

MiB = 1 << 20
PART = MIN_PART


@pytest.fixture
def driver(s3_server: S3Server) -> S3Driver:
    return build_driver(s3_server.options(s3_server.new_bucket(), rootdirectory="/r", chunksize=PART))


def pieces(data: bytes, size: int = MiB) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def wrap_upload_part(driver: S3Driver, before) -> None:
    """Run ``before(part_number)`` in the thread that sends each part, then send it."""
    real = driver.call

    def call(operation: str, *args, **kwargs):
        if operation == "upload_part":
            before(kwargs["PartNumber"])
        return real(operation, *args, **kwargs)

    driver.call = call  # type: ignore[method-assign]


def test_parts_go_while_the_next_is_received_one_at_a_time(driver: S3Driver) -> None:
    writer_thread = threading.current_thread()
    flying, most, threads = [0], [0], set()
    lock = threading.Lock()

    def slow(number: int) -> None:
        with lock:
            flying[0] += 1
            most[0] = max(most[0], flying[0])
            threads.add(threading.current_thread() is writer_thread)
        time.sleep(0.2)  # a slow store: the writer must go on receiving meanwhile
        with lock:
            flying[0] -= 1

    wrap_upload_part(driver, slow)
    data = os.urandom(6 * PART + 123)
    writer = driver.writer("/fresh")
    overlapped = 0
    for piece in pieces(data):
        writer.write(piece)
        overlapped += flying[0]  # a write that returned while a part was on its way
        # Memory: the buffer holds under two parts (plus one write), one more part is in flight.
        assert len(writer._buffer) < 2 * PART + MiB
    writer.commit()
    assert most[0] == 1 and overlapped > 0 and False in threads
    with driver.reader("/fresh") as r:
        assert hashlib.sha256(r.read()).digest() == hashlib.sha256(data).digest()
    driver.delete("/fresh")


def test_a_part_failed_in_flight_surfaces_at_the_next_write_and_close_sends_it_again(driver: S3Driver) -> None:
    path = "/up/data"
    driver.put_content(path, b"")
    failed = threading.Event()

    def flaky(number: int) -> None:  # in-process fault: part 1 fails once, in the background
        if number == 1 and not failed.is_set():
            failed.set()
            raise StorageUnavailableError("injected: the store dropped the part", path=path)

    wrap_upload_part(driver, flaky)
    data = os.urandom(2 * PART + 3 * MiB)
    writer = driver.writer(path, append=True)
    chunks = pieces(data)
    written = 0
    with pytest.raises(StorageUnavailableError, match="injected"):
        for piece in chunks:
            if failed.is_set():
                time.sleep(0.05)  # let the failure land before the next write
            writer.write(piece)
            written += len(piece)
    assert writer.size == written  # the failed part's bytes are back in the buffer
    writer.close()  # what the store does after a failed write: keep what arrived
    resumed = driver.writer(path, append=True)
    assert resumed.size == written
    resumed.write(data[written:])
    resumed.commit()
    assert hashlib.sha256(driver.get_content(path)).digest() == hashlib.sha256(data).digest()
    driver.delete("/up")


def test_a_part_that_keeps_failing_leaves_an_upload_without_holes(driver: S3Driver, s3_server: S3Server) -> None:
    """The store keeps failing after part 2: close raises, and what the upload then holds is a
    prefix of the bytes written (the resumed tail is not kept twice): nothing is lost silently, and
    nothing partial becomes the file."""
    path = "/up/data"
    driver.put_content(path, b"")
    first = os.urandom(PART - 1)
    writer = driver.writer(path, append=True)  # a rest under a part waits in the tail
    writer.write(first)
    writer.close()
    tail = s3_server.client().head_object(Bucket=driver.bucket, Key=driver.key(tail_key(path)))
    assert tail["ContentLength"] == len(first)

    def flaky(number: int) -> None:  # in-process fault: every part after the first fails
        if number > 1:
            raise StorageUnavailableError("injected: the store is failing", path=path)

    wrap_upload_part(driver, flaky)
    more = os.urandom(4 * PART)
    writer = driver.writer(path, append=True)
    with pytest.raises(StorageError, match="injected"):
        for piece in pieces(more):
            writer.write(piece)
    with pytest.raises(StorageError, match="injected"):
        writer.close()  # what the store does after a failed write: keep what it can
    driver.call = S3Driver.call.__get__(driver)  # type: ignore[method-assign]  # the store recovers
    resumed = driver.writer(path, append=True)
    kept = resumed.size
    assert 0 < kept <= len(first) + len(more)
    resumed.commit()
    content = driver.get_content(path)
    assert content == (first + more)[:kept]
    driver.delete("/up")
