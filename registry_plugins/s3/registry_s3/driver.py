"""The storage contract (:mod:`registry.storage.driver`) on S3, through one boto3 client.

How the contract maps onto S3 (the same design as the test tree's in-memory model of an object store):

- A **fresh writer** buffers one part; content that fits is one ``PutObject`` at :meth:`commit`,
  anything larger becomes a multipart upload of its own, completed at :meth:`commit` and aborted by
  :meth:`close`/:meth:`cancel`.
- An **appending writer** resumes *the path's* multipart upload, found by ``ListMultipartUploads``
  (so any process can resume it): its parts (``ListParts``), then a small **tail** object holding
  what did not fill a part (S3 wants 5 MiB per part but the last), at ``<key>~tail`` (``~`` is
  outside the storage path alphabet, so no registry path can collide with it, and listings hide it).
  :meth:`close` keeps the parts and the tail; :meth:`commit` sends the last part and completes the
  upload; :meth:`cancel` aborts it and deletes everything. Nothing lives in this process's memory
  between two writers.
- **Conflicts**: before keeping anything, an appending writer lists the upload's parts again and
  compares them (numbers, ETags, sizes) and the tail's ETag with what it resumed from, plus the parts
  it sent itself; anything else means another writer got in, and it raises
  :class:`~registry.storage.driver.ConflictError`. The registry verifies every upload's digest over
  the committed bytes anyway: ETags are never taken for digests.
- **Part sizes** start at ``chunksize`` and grow with the offset (see :func:`part_size`) so that a
  file never needs more than S3's 10,000 parts.
- **Parts in the background**: once a writer holds two parts it sends the first from a thread of
  :meth:`S3Driver.part_pool` and goes on receiving; one part per writer is in flight at most (three
  parts in memory). A part that fails in flight goes back in front of the buffer, as if never sent:
  the next write raises, and close/commit send those bytes again, so what a writer keeps is always
  the bytes it was given, in order, without holes.
- :meth:`S3Driver.move` is one ``CopyObject`` (a multipart ``UploadPartCopy`` above
  ``multipartcopythresholdsize``) and a delete: no byte passes through the registry.
- **Signing**: an appending writer's parts are sent as ``UNSIGNED-PAYLOAD`` (see
  :func:`allow_unsigned_parts`): they hold an upload's data, which the registry hashes in full
  before it becomes a blob. Every other body keeps its SHA-256 in the signature.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import io
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from registry.storage.driver import (
    Capability,
    ConflictError,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    PathNotFoundError,
    StorageDriver,
    StorageError,
    StorageThrottledError,
    StorageUnavailableError,
    WriterBase,
)
from registry.storage.paging import delimited_page

log = logging.getLogger(__name__)

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
#: S3's smallest part, except the last of an upload.
MIN_PART = 5 * MiB
#: S3's most parts in one multipart upload.
MAX_PARTS = 10_000
#: S3's largest single copy (CopyObject) and single part.
MAX_SINGLE_COPY = 5 * GiB
#: Parts of ``chunksize`` up to this many; beyond, each part is a little larger (see part_size).
_PARTS_AT_CHUNKSIZE = 1000
#: Below this part number, an appending writer's close sends any rest of at least MIN_PART as a part
#: of its own (clients' chunks are parts, never stored twice); beyond it, rests smaller than the
#: current part size wait in the tail, so that many small chunks cannot use up the part numbers.
_FREE_PART_NUMBERS = 5000
#: Threads sending parts in the background, for all writers of a driver (each has one in flight at most).
PART_THREADS = 16
#: How much of a GET's body a reader fetches at once.
READ_BUFFER = 1 << 20
#: Keys the driver keeps for itself contain this character, which no storage path may contain.
OWN = "~"
#: Codes S3 (and RGW, MinIO) use when they throttle.
_THROTTLING = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
               "TooManyRequests", "TooManyRequestsException", "RequestThrottled"}
_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}


def part_size(chunksize: int, offset: int) -> int:
    """The size of the part that starts at ``offset``: ``chunksize`` for the first
    :data:`_PARTS_AT_CHUNKSIZE` parts, then one ``chunksize`` more per that many parts' worth of
    data. The part count grows with the logarithm of the size: with 10 MiB, 100 GiB take about 3,900
    parts and S3's largest object (5 TiB) about 7,800, always under 10,000."""
    return chunksize * (1 + offset // (chunksize * _PARTS_AT_CHUNKSIZE))


def tail_key(key: str) -> str:
    """Where an appending writer keeps what did not fill a part."""
    return f"{key}{OWN}tail"


class S3Driver(StorageDriver):
    """A storage driver on one S3 bucket (see the module docstring for the design).

    ``client`` is a boto3 S3 client (thread-safe; shared by every thread of the server);
    the other arguments are the validated ``storage.s3`` options.
    """

    name = "s3"
    capabilities = Capability.SERVER_COPY | Capability.REDIRECT | Capability.PAGED_LIST | Capability.FLAT_WALK

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        rootdirectory: str = "",
        chunksize: int = 10 * MiB,
        multipartcopychunksize: int = 32 * MiB,
        multipartcopymaxconcurrency: int = 100,
        multipartcopythresholdsize: int = 32 * MiB,
        redirectexpiry: int = 1200,
        put_args: Mapping[str, Any] | None = None,
        empty_etag_after_complete: bool = False,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.root = rootdirectory.strip("/")
        self.chunksize = max(int(chunksize), MIN_PART)
        self.copy_chunk = min(max(int(multipartcopychunksize), MIN_PART), MAX_SINGLE_COPY)
        self.copy_concurrency = max(int(multipartcopymaxconcurrency), 1)
        self.copy_threshold = min(int(multipartcopythresholdsize), MAX_SINGLE_COPY)
        self.redirect_expiry = int(redirectexpiry)
        #: Arguments of every object-creating request (storage class, ACL, encryption).
        self.put_args = dict(put_args or {})
        #: Ceph RGW answers CompleteMultipartUpload with an empty ETag: HEAD the object after it.
        self.empty_etag_after_complete = empty_etag_after_complete
        allow_unsigned_parts(client)
        self._part_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # -- keys ------------------------------------------------------------------------------------

    def key(self, path: str) -> str:
        """The object key of a storage path (Distribution's mapping: root directory + path, no
        leading slash)."""
        return f"{self.root}{path}" if self.root else path.lstrip("/")

    def _dir_prefix(self, path: str) -> str:
        if path == "/":
            return f"{self.root}/" if self.root else ""
        return self.key(path) + "/"

    def _path(self, key: str) -> str:
        return "/" + key[len(self.root) + 1:] if self.root else "/" + key

    # -- calls -----------------------------------------------------------------------------------

    def call(self, operation: str, path: str = "", **kwargs: Any) -> Any:
        """One S3 request, its errors mapped to the storage contract's (see :func:`map_error`)."""
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every botocore error is mapped, nothing else is caught
            raise map_error(exc, path=path, operation=operation) from exc

    def _head(self, key: str, path: str) -> dict[str, Any] | None:
        try:
            return self.call("head_object", path, Key=key)
        except PathNotFoundError:
            return None

    # -- reading ---------------------------------------------------------------------------------

    def get_content(self, path: str) -> bytes:
        response = self.call("get_object", path, Key=self.key(path))
        with _guard(path):
            return response["Body"].read()

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        if offset < 0:
            raise InvalidOffsetError(f"negative offset {offset}", path=path)
        key = self.key(path)
        try:
            response = self.call("get_object", path, Key=key, **({"Range": f"bytes={offset}-"} if offset else {}))
        except StorageError as exc:
            if getattr(exc, "s3_code", "") != "InvalidRange":
                raise
            # The offset is at or past the end: an empty stream at the end, an error beyond it.
            head = self._head(key, path)
            if head is None:
                raise PathNotFoundError(path=path) from None
            if offset == head["ContentLength"]:
                return io.BytesIO(b"")
            raise InvalidOffsetError(f"offset {offset} beyond {head['ContentLength']}", path=path) from None
        # Servers read responses in small blocks (8 KiB through falcon and waitress): a C-level buffer
        # of 1 MiB turns them into few large reads of the HTTP body.
        return io.BufferedReader(_Reader(response["Body"], path), READ_BUFFER)

    def stat(self, path: str) -> FileInfo:
        if path != "/":
            head = self._head(self.key(path), path)
            if head is not None:
                return FileInfo(path, head["ContentLength"], False, head.get("LastModified"))
        # A directory exists while a key exists below it: one key of a listing says so.
        listing = self.call("list_objects_v2", path, Prefix=self._dir_prefix(path), MaxKeys=1)
        if path == "/" or listing.get("KeyCount", 0):
            return FileInfo(path, 0, True, None)
        raise PathNotFoundError(path=path)

    def list(self, path: str) -> list[str]:
        prefix = self._dir_prefix(path)
        children: set[str] = set()
        found = False
        for page in self.pages(prefix, delimiter="/"):
            for item in page.get("Contents", ()):
                found = True
                name = item["Key"][len(prefix):]
                if name and OWN not in name:
                    children.add(name)
            for common in page.get("CommonPrefixes", ()):
                found = True
                children.add(common["Prefix"][len(prefix):].rstrip("/"))
        if not found and path != "/":
            raise PathNotFoundError(path=path)
        base = "" if path == "/" else path
        return sorted(f"{base}/{name}" for name in children)

    def list_page(self, path: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        """``ListObjectsV2`` with ``Delimiter='/'``, ``StartAfter`` at ``after`` and ``MaxKeys`` the
        page and two: one call per page, and one short check per ``-`` or ``.`` in the last name
        read when the page ends before the directory does (a directory ``a`` is listed as ``a/``,
        after ``a-b``: see :mod:`registry.storage.paging`)."""
        prefix = self._dir_prefix(path)
        names, more, any_entry = delimited_page(
            self._entries(prefix, prefix + after if after else "", min(limit + 2, 1000)),
            lambda name: self._has_keys(prefix + name + "/", path),
            after, limit, keep=lambda name: OWN not in name,
        )
        if not any_entry and path != "/" and (after is None or not self._has_keys(prefix, path)):
            raise PathNotFoundError(path=path)
        return names, more

    def _entries(self, prefix: str, start_after: str, max_keys: int) -> Iterator[str]:
        """A directory's children in key order, ``name/`` for a common prefix, page by page."""
        for page in self.pages(prefix, delimiter="/", start_after=start_after, max_keys=max_keys):
            entries = [item["Key"][len(prefix):] for item in page.get("Contents", ())]
            entries += [common["Prefix"][len(prefix):] for common in page.get("CommonPrefixes", ())]
            entries.sort()  # two sorted lists, one key order
            yield from entries

    def walk(self, path: str) -> Iterator[FileInfo]:
        """A flat ``ListObjectsV2`` under the path (no delimiter, 1,000 keys a page, read as it is
        yielded): files with their size and ``LastModified`` from the listing (no ``HEAD``), the
        directories their keys imply, in the contract's order (see :func:`_FlatWalk`). A walk costs
        one call per 1,000 objects below ``path``, plus one per directory that key order puts out
        of place (``a/`` after ``a-b``), not one per directory."""
        walk = _FlatWalk(self, self._dir_prefix(path), "" if path == "/" else path)
        entries = walk.entries()
        first = next(entries, None)
        if first is None:
            # Keys of the driver's own (an upload's tail) make a directory that holds nothing.
            if path != "/" and not self._has_keys(self._dir_prefix(path), path):
                raise PathNotFoundError(path=path)
            return
        yield first
        yield from entries

    def _has_keys(self, prefix: str, path: str) -> bool:
        return bool(self.call("list_objects_v2", path, Prefix=prefix, MaxKeys=1).get("KeyCount", 0))

    def pages(
        self, prefix: str, delimiter: str = "", start_after: str = "", max_pages: int = 1 << 20,
        max_keys: int = 1000,
    ) -> Iterator[dict]:
        """``ListObjectsV2`` pages under ``prefix`` (``max_keys`` keys or prefixes each), at most
        ``max_pages``."""
        kwargs: dict[str, Any] = {"Prefix": prefix}
        if max_keys != 1000:
            kwargs["MaxKeys"] = max_keys
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if start_after:
            kwargs["StartAfter"] = start_after
        for _ in range(max_pages):
            page = self.call("list_objects_v2", prefix, **kwargs)
            yield page
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def redirect_url(self, method: str, path: str) -> str | None:
        operation = {"GET": "get_object", "HEAD": "head_object"}.get(method.upper())
        if operation is None:
            return None
        try:
            return self.client.generate_presigned_url(
                operation, Params={"Bucket": self.bucket, "Key": self.key(path)}, ExpiresIn=self.redirect_expiry
            )
        except Exception as exc:  # noqa: BLE001 - e.g. no credentials to sign with: stream instead
            log.warning("cannot presign %s %s: %s", method, path, exc)
            return None

    # -- writing ---------------------------------------------------------------------------------

    def put_content(self, path: str, content: bytes) -> None:
        self.call("put_object", path, Key=self.key(path), Body=content, **self.put_args)

    def writer(self, path: str, append: bool = False) -> FileWriter:
        if append:
            return _AppendWriter(self, path)
        return _FreshWriter(self, path)

    def move(self, source: str, dest: str) -> None:
        src, dst = self.key(source), self.key(dest)
        head = self._head(src, source)
        if head is None:
            raise PathNotFoundError(path=source)
        size = head["ContentLength"]
        if size <= self.copy_threshold:
            self.call("copy_object", dest, Key=dst, CopySource={"Bucket": self.bucket, "Key": src},
                      MetadataDirective="COPY", **self.put_args)
        else:
            self._multipart_copy(src, dst, size, dest)
        self.call("delete_object", source, Key=src)

    def _multipart_copy(self, src: str, dst: str, size: int, path: str) -> None:
        # Parts no fewer than needed to stay under the part limit.
        chunk = max(self.copy_chunk, -(-size // MAX_PARTS))
        upload_id = self.call("create_multipart_upload", path, Key=dst, **self.put_args)["UploadId"]
        ranges = [(n, start, min(start + chunk, size) - 1) for n, start in enumerate(range(0, size, chunk), 1)]

        def copy(number: int, first: int, last: int) -> dict[str, Any]:
            response = self.call(
                "upload_part_copy", path, Key=dst, UploadId=upload_id, PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": src}, CopySourceRange=f"bytes={first}-{last}",
            )
            return {"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]}

        try:
            workers = min(self.copy_concurrency, len(ranges))
            with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="s3-copy") as pool:
                parts = list(pool.map(lambda r: copy(*r), ranges))
            self.call("complete_multipart_upload", path, Key=dst, UploadId=upload_id,
                      MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(StorageError):
                self.call("abort_multipart_upload", path, Key=dst, UploadId=upload_id)
            raise

    def delete(self, path: str) -> None:
        key = self.key(path)
        found = False
        # The file itself, its tail, and everything below it as a directory; never siblings that
        # merely share a string prefix.
        batch = [k for k in (key, tail_key(key)) if self._head(k, path) is not None]
        for page in self.pages(key + "/"):
            for item in page.get("Contents", ()):
                batch.append(item["Key"])
                if len(batch) >= 1000:
                    self._delete_keys(batch, path)
                    found, batch = True, []
        if batch:
            self._delete_keys(batch, path)
            found = True
        for upload in self.multipart_uploads(key):
            if upload["Key"] in (key, tail_key(key)) or upload["Key"].startswith(key + "/"):
                self._abort(upload["Key"], upload["UploadId"], path)
                found = True
        if not found:
            raise PathNotFoundError(path=path)

    def _delete_keys(self, keys: list[str], path: str) -> None:
        response = self.call("delete_objects", path, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            raise StorageError(f"could not delete {len(errors)} objects: {errors[0].get('Message', '')}", path=path)

    def _abort(self, key: str, upload_id: str, path: str) -> None:
        with contextlib.suppress(PathNotFoundError):
            self.call("abort_multipart_upload", path, Key=key, UploadId=upload_id)

    def multipart_uploads(self, prefix: str, max_pages: int = 1000) -> Iterator[dict[str, Any]]:
        """Unfinished multipart uploads whose key starts with ``prefix``."""
        kwargs: dict[str, Any] = {"Prefix": prefix}
        for _ in range(max_pages):
            page = self.call("list_multipart_uploads", prefix, **kwargs)
            yield from page.get("Uploads", ())
            if not page.get("IsTruncated"):
                return
            kwargs.update(KeyMarker=page.get("NextKeyMarker", ""), UploadIdMarker=page.get("NextUploadIdMarker", ""))

    def list_parts(self, key: str, upload_id: str, path: str) -> list[tuple[int, str, int]]:
        """``(number, etag, size)`` of every part of an upload, in order."""
        parts: list[tuple[int, str, int]] = []
        kwargs: dict[str, Any] = {"Key": key, "UploadId": upload_id}
        for _ in range(MAX_PARTS // 1000 + 1):
            page = self.call("list_parts", path, **kwargs)
            parts += [(p["PartNumber"], p["ETag"], p["Size"]) for p in page.get("Parts", ())]
            if not page.get("IsTruncated"):
                break
            kwargs["PartNumberMarker"] = page["NextPartNumberMarker"]
        return sorted(parts)

    def part_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """The threads that send writers' parts in the background (one part per writer at a time)."""
        with self._pool_lock:
            if self._part_pool is None:
                self._part_pool = concurrent.futures.ThreadPoolExecutor(PART_THREADS, thread_name_prefix="s3-part")
            return self._part_pool

    def close(self) -> None:
        if self._part_pool is not None:
            self._part_pool.shutdown(wait=True)
        with contextlib.suppress(Exception):
            self.client.close()


# -- walk ------------------------------------------------------------------------------------------


class _FlatWalk:
    """The entries below one key prefix in the walk's order, from a flat listing in key order.

    The walk's order (depth first, parents before children, siblings by name) is key order with
    ``/`` sorting below every other character. S3 sorts ``/`` above ``-`` and ``.``, so the keys of
    a directory ``a`` (``a/...``) come after those of a sibling ``a-b`` or ``a.b`` although ``a``
    comes first (:mod:`registry.storage.paging` has the same problem one level at a time). Only
    such a directory is out of place, and only later in the listing: whenever a key has a ``-`` or
    ``.`` after some start ``c`` of a name, the directory ``c`` (if any) must be walked first. Its
    own flat listing (which is also how we learn whether it exists) is yielded there, and when the
    main listing reaches its keys it starts again after the last of them (``StartAfter``).

    Memory: one listing page per open listing, and the candidates that start the current key.
    """

    def __init__(self, driver: S3Driver, prefix: str, base: str) -> None:
        self.driver, self.prefix, self.base = driver, prefix, base
        self.last_key = ""  # the last key read from this listing

    def _keys(self, start_after: str) -> Iterator[dict[str, Any]]:
        for page in self.driver.pages(self.prefix, start_after=start_after):
            yield from page.get("Contents", ())

    def entries(self) -> Iterator[FileInfo]:
        cut = len(self.prefix)
        open_dirs: list[str] = []  # the directories of the last entry yielded, outermost first
        # Candidates that start the current key: name -> the last key of its walk, "" if no directory.
        candidates: dict[str, str] = {}
        keys = self._keys("")
        while True:
            item = next(keys, None)
            if item is None:
                return
            key = item["Key"]
            self.last_key = key
            rel = key[cut:]
            for name in [c for c in candidates if not rel.startswith(c)]:
                del candidates[name]
            walked = next((c for c, last in candidates.items() if last and rel.startswith(c + "/")), None)
            if walked is not None:
                # Already walked out of place: go on after its last key (once; later strays are skipped).
                start, candidates[walked] = candidates[walked], "/"
                if start != "/":
                    keys, self.last_key = self._keys(start), start
                continue
            parts = rel.split("/")
            if not all(parts) or any(OWN in p for p in parts[:-1]):
                continue  # no storage path (an empty or foreign component)
            # Directories out of place: every start of a component that ends before a "-" or ".".
            at = 0
            for depth, part in enumerate(parts):
                for i in range(1, len(part)) if "-" in part or "." in part else ():
                    if part[i] >= "/":
                        continue
                    name = rel[:at + i]
                    if name in candidates:
                        continue
                    yield from self._open(open_dirs, parts[:depth])
                    sub = _FlatWalk(self.driver, self.prefix + name + "/", f"{self.base}/{name}")
                    inner = sub.entries()
                    first = next(inner, None)
                    candidates[name] = ""
                    if first is None:
                        continue
                    yield FileInfo(f"{self.base}/{name}", 0, True, None)
                    yield first
                    yield from inner
                    candidates[name] = sub.last_key
                    open_dirs[:] = name.split("/")
                at += len(part) + 1
            yield from self._open(open_dirs, parts[:-1])
            if OWN not in parts[-1]:  # the driver's own keys imply directories, never files
                yield FileInfo(f"{self.base}/{rel}", item["Size"], False, item.get("LastModified"))

    def _open(self, open_dirs: list[str], parents: list[str]) -> Iterator[FileInfo]:
        """Yield the directories of ``parents`` not yielded yet; ``open_dirs`` becomes ``parents``."""
        same = 0
        while same < min(len(open_dirs), len(parents)) and open_dirs[same] == parents[same]:
            same += 1
        for depth in range(same, len(parents)):
            yield FileInfo(f"{self.base}/{'/'.join(parents[:depth + 1])}", 0, True, None)
        open_dirs[:] = parents


# -- writers ---------------------------------------------------------------------------------------


class _Writer(WriterBase):

    #: Send parts as UNSIGNED-PAYLOAD (see :func:`allow_unsigned_parts`): only where every byte
    #: is hashed again by the registry before it can become a blob.
    unsigned_parts = False

    def __init__(self, driver: S3Driver, path: str) -> None:
        self._driver, self._path, self._key = driver, path, driver.key(path)
        self._buffer = bytearray()
        self._stored = 0  # bytes in parts (resumed and sent)
        self._upload_id: str | None = None
        self._sent: list[tuple[int, str, int]] = []  # parts this writer sent: (number, etag, size)
        #: The part being sent in the background while the next one is received: (number, bytes, future).
        self._flying: tuple[int, bytes, concurrent.futures.Future[str]] | None = None

    @property
    def size(self) -> int:
        return self._stored + len(self._buffer)

    def _next_number(self) -> int:
        raise NotImplementedError

    def _upload_part(self, number: int, body: bytes | bytearray) -> str:
        if number > MAX_PARTS:
            raise StorageError(f"more than {MAX_PARTS} parts (raise chunksize)", path=self._path)
        with _unsigned_payload(self.unsigned_parts):
            response = self._driver.call("upload_part", self._path, Key=self._key, UploadId=self._upload_id,
                                         PartNumber=number, Body=body)
        return response["ETag"]

    def _send(self, data: bytes | bytearray) -> None:
        """Upload ``data`` as the next part, after the one in flight (if any) has landed."""
        self._land()
        # A bytearray goes to the socket as it is: bytes(...) of it cost ~7% of a chunked upload's CPU.
        number = self._next_number()
        self._sent.append((number, self._upload_part(number, data), len(data)))
        self._stored += len(data)

    def _send_soon(self, data: bytes) -> None:
        """Upload ``data`` as the next part in the background, while the caller receives the next:
        one part in flight at most, so a writer holds at most three parts."""
        self._land()
        number = self._next_number()
        self._flying = (number, data, self._driver.part_pool().submit(self._upload_part, number, data))
        self._stored += len(data)

    def _land(self) -> None:
        """Wait for the part in flight. If it failed, its bytes go back in front of the buffer (as
        if it had never been sent, which is what the store sees: a later close sends them again or
        keeps nothing after the parts before it) and the error is raised here."""
        if self._flying is None:
            return
        number, data, future = self._flying
        self._flying = None
        try:
            etag = future.result()
        except BaseException:
            self._buffer[:0] = data
            self._stored -= len(data)
            raise
        self._sent.append((number, etag, len(data)))

    def _land_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self._land()

    def _part_size(self) -> int:
        return part_size(self._driver.chunksize, self._stored)

    def write(self, data: bytes) -> int:
        self._check_open()
        if self._flying is not None and self._flying[2].done():
            self._land()  # a failed part surfaces at the next write, which then takes nothing
        self._buffer += data
        # Two parts gathered: one goes (in the background), so that the last, whatever its size, can
        # go with the part before it.
        while len(self._buffer) >= 2 * self._part_size():
            self._ensure_upload()
            size = self._part_size()
            part = bytes(memoryview(self._buffer)[:size])
            del self._buffer[:size]
            self._send_soon(part)
        return len(data)

    def _ensure_upload(self) -> None:
        raise NotImplementedError

    def _complete(self, parts: list[tuple[int, str, int]]) -> None:
        self._driver.call("complete_multipart_upload", self._path, Key=self._key, UploadId=self._upload_id,
                          MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e, _ in parts]})
        if self._driver.empty_etag_after_complete:
            # RGW's answer carries no ETag; the object is there only once a HEAD sees it.
            self._driver.call("head_object", self._path, Key=self._key)


class _FreshWriter(_Writer):
    """One ``PutObject`` when the content fits a part; a multipart upload of its own beyond that."""

    def _next_number(self) -> int:
        return len(self._sent) + 1

    def _ensure_upload(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._driver.call(
                "create_multipart_upload", self._path, Key=self._key, **self._driver.put_args)["UploadId"]

    def _finish(self) -> None:
        self._land()
        if self._upload_id is None:
            self._driver.put_content(self._path, bytes(self._buffer))
        else:
            if self._buffer:
                self._send(self._buffer)
                self._buffer.clear()
            self._complete(self._sent)

    def _discard(self) -> None:
        self._land_quietly()  # no part may land after the abort
        if self._upload_id is not None:
            with contextlib.suppress(StorageError):
                self._driver._abort(self._key, self._upload_id, self._path)
            self._upload_id = None
        self._buffer.clear()


class _AppendWriter(_Writer):
    """Resumes the path's multipart upload: its parts, then its tail object, then this writer's bytes.

    Only an upload's data is written by appending, and the registry reads all of it back to check
    its digest before it becomes a blob: its parts go unsigned (:attr:`_Writer.unsigned_parts`).

    Opening costs a ``ListMultipartUploads``, a ``ListParts`` and a ``HEAD`` of the tail; the tail
    itself is read only when something is written (a writer opened to learn the size reads nothing).
    """

    unsigned_parts = True

    def __init__(self, driver: S3Driver, path: str) -> None:
        super().__init__(driver, path)
        self._tail_etag: str | None = None
        self._tail_size = 0
        self._tail_loaded = False
        upload = self._find_upload()
        if upload is None:
            upload = self._start_upload()
        self._upload_id = upload
        self._seen = driver.list_parts(self._key, upload, path)
        self._stored = sum(size for _, _, size in self._seen)
        head = driver._head(tail_key(self._key), path)
        if head is not None:
            self._tail_etag, self._tail_size = head["ETag"], head["ContentLength"]
        else:
            self._tail_loaded = True

    @property
    def size(self) -> int:
        return self._stored + (len(self._buffer) if self._tail_loaded else self._tail_size + len(self._buffer))

    def _find_upload(self) -> str | None:
        # The oldest upload of exactly this key is the path's: every process picks the same one.
        uploads = [u for u in self._driver.multipart_uploads(self._key) if u["Key"] == self._key]
        if not uploads:
            return None
        return min(uploads, key=lambda u: (u["Initiated"], u["UploadId"]))["UploadId"]

    def _start_upload(self) -> str:
        """Continue the committed file at the path as a new multipart upload."""
        driver, path, key = self._driver, self._path, self._key
        head = driver._head(key, path)
        if head is None:
            raise PathNotFoundError(path=path)
        upload = driver.call("create_multipart_upload", path, Key=key, **driver.put_args)["UploadId"]
        chosen = self._find_upload()
        if chosen != upload:
            # Another process started one at the same moment: continue that one.
            driver._abort(key, upload, path)
            if chosen is None:
                raise ConflictError("the upload was finished meanwhile", path=path)
            return chosen
        size = head["ContentLength"]
        source = {"Bucket": driver.bucket, "Key": key}
        if size >= MIN_PART:
            # The committed content becomes part 1, copied on the server.
            driver.call("upload_part_copy", path, Key=key, UploadId=upload, PartNumber=1, CopySource=source)
        elif size:
            driver.call("copy_object", path, Key=tail_key(key), CopySource=source, **driver.put_args)
        return upload

    def _load_tail(self) -> None:
        if self._tail_loaded:
            return
        response = self._driver.call("get_object", self._path, Key=tail_key(self._key), IfMatch=self._tail_etag)
        with _guard(self._path):
            self._buffer[:0] = response["Body"].read()
        self._tail_loaded = True

    def write(self, data: bytes) -> int:
        self._check_open()
        self._load_tail()
        return super().write(data)

    def _next_number(self) -> int:
        return (self._seen[-1][0] if self._seen else 0) + len(self._sent) + 1

    def _ensure_upload(self) -> None:
        pass  # resumed or started when opened

    def _verify(self) -> None:
        """Raise :class:`ConflictError` if anyone but this writer changed the upload since it opened."""
        driver = self._driver
        parts = driver.list_parts(self._key, self._upload_id, self._path)
        if parts != self._seen + self._sent:
            raise ConflictError("another writer added parts to this upload", path=self._path)
        head = driver._head(tail_key(self._key), self._path)
        if (head["ETag"] if head else None) != self._tail_etag:
            raise ConflictError("another writer changed this upload's tail", path=self._path)

    def _keep_tail(self) -> None:
        driver, key = self._driver, tail_key(self._key)
        if self._buffer:
            driver.call("put_object", self._path, Key=key, Body=bytes(self._buffer), **driver.put_args)
        elif self._tail_etag is not None:
            driver.call("delete_object", self._path, Key=key)

    def close(self) -> None:
        if self._ended:
            return
        self._ended = "closed"
        with contextlib.suppress(StorageError):
            self._land()  # a part that failed in flight is back in the buffer: sent again below
        if not self._sent and not self._tail_loaded:
            return  # nothing written (a look at the size): nothing to keep, nothing to conflict
        if not self._sent and not self._buffer and self._tail_etag is None:
            return
        self._verify()
        rest = len(self._buffer)
        with self._no_stale_tail():
            if rest >= MIN_PART and (self._next_number() <= _FREE_PART_NUMBERS or rest >= self._part_size()):
                self._send(self._buffer)
                self._buffer.clear()
            self._keep_tail()

    @contextlib.contextmanager
    def _no_stale_tail(self) -> Iterator[None]:
        """On a failure after this writer sent parts, delete the tail it resumed from: the tail's
        bytes went out at the start of the first part (a tail is smaller than a part), and the
        upload must not hold them twice."""
        try:
            yield
        except BaseException:
            if self._sent and self._tail_etag is not None:
                with contextlib.suppress(Exception):
                    self._driver.call("delete_object", self._path, Key=tail_key(self._key))
            raise

    def commit(self) -> None:
        self._check_open()
        self._ended = "closed"
        with contextlib.suppress(StorageError):
            self._land()  # a part that failed in flight is back in the buffer: sent again below
        self._load_tail()
        driver = self._driver
        self._verify()
        if not self._seen and not self._sent:
            # Everything is in the buffer: one put, no multipart upload to complete.
            driver.put_content(self._path, bytes(self._buffer))
            driver._abort(self._key, self._upload_id, self._path)
        else:
            with self._no_stale_tail():
                if self._buffer:
                    self._send(self._buffer)
                    self._buffer.clear()
                self._complete(self._seen + self._sent)
        if self._tail_etag is not None:
            driver.call("delete_object", self._path, Key=tail_key(self._key))
        self._ended = "committed"

    def cancel(self) -> None:
        if self._ended == "committed":
            return
        self._ended = "cancelled"
        self._land_quietly()
        driver = self._driver
        driver._abort(self._key, self._upload_id, self._path)
        for key in (tail_key(self._key), self._key):
            driver.call("delete_object", self._path, Key=key)


class _Reader(io.RawIOBase):
    """A GET's streaming body as a binary file object, its errors mapped like every other call's."""

    def __init__(self, body: Any, path: str) -> None:
        self._body, self._path = body, path
        self._direct = _plain_http_body(body)
        self._drained = False  # read to the end directly: urllib3 never saw those bytes

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._direct is not None or self._drained:
            return super().read(size)  # through readinto
        with _guard(self._path):
            return self._body.read(None if size is None or size < 0 else size)

    def readinto(self, buffer: Any) -> int:
        fp = self._direct
        if self._drained:
            return 0
        if fp is None:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        # Straight from the socket into the caller's buffer: through botocore and urllib3 each
        # byte was copied three more times, which made pulls from radosgw slower than
        # Distribution's (0.89x at 0.82 s CPU/GiB). http.client raises IncompleteRead when the
        # connection ends before Content-Length, so a cut body is still an error.
        with _guard(self._path):
            n = fp.readinto(buffer)
        if n == 0 and len(buffer):
            self._direct, self._drained = None, True  # the connection goes back to the pool
            with contextlib.suppress(Exception):
                self._body._raw_stream.release_conn()
        return n

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()


def _plain_http_body(body: Any) -> Any:
    """The http.client response under a botocore streaming body, when bytes can be read from it
    directly: a fixed-length, unencoded body of which nothing was read yet; else None."""
    raw = getattr(body, "_raw_stream", None)
    fp = getattr(raw, "_fp", None)
    if not isinstance(fp, http.client.HTTPResponse) or fp.length is None or fp.chunked:
        return None
    headers = getattr(raw, "headers", {}) or {}
    if headers.get("content-encoding") or getattr(raw, "_fp_bytes_read", 1) or len(getattr(raw, "_decoded_buffer", ())):
        return None
    return fp


_PAYLOAD = threading.local()


def allow_unsigned_parts(client: Any) -> None:
    """Let :func:`_unsigned_payload` send a thread's ``UploadPart`` bodies as ``UNSIGNED-PAYLOAD``.

    Over plain HTTP botocore puts the SHA-256 of every body into its signature, and the store
    hashes it again to check: ~1 CPU s per GiB on each side (7% of a chunked upload's samples here,
    and radosgw's share of the machine besides). An upload's parts need neither: the registry
    hashes all of an upload's committed bytes before it becomes a blob. Every other request (and
    anything over HTTPS with a checksum) is signed as botocore decides."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is None:
        return
    from botocore.config import Config

    base = client.meta.config
    unsigned = base.merge(Config(s3={**(base.s3 or {}), "payload_signing_enabled": False}))

    def before_sign(request: Any, **_: Any) -> None:
        if getattr(_PAYLOAD, "unsigned", False):
            request.context["client_config"] = unsigned  # what S3SigV4Auth reads the choice from

    events.register("before-sign.s3.UploadPart", before_sign, unique_id="registry-s3-unsigned-parts")


@contextlib.contextmanager
def _unsigned_payload(on: bool) -> Iterator[None]:
    previous = getattr(_PAYLOAD, "unsigned", False)
    _PAYLOAD.unsigned = on
    try:
        yield
    finally:
        _PAYLOAD.unsigned = previous


@contextlib.contextmanager
def _guard(path: str) -> Iterator[None]:
    """Map errors raised while a response body streams (a connection dropped mid-read)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise map_error(exc, path=path, operation="read") from exc


def map_error(exc: BaseException, *, path: str = "", operation: str = "") -> StorageError:
    """The storage contract's error for a boto3/botocore exception.

    Missing keys become :class:`PathNotFoundError`; throttling (``SlowDown``, 429, 503)
    :class:`StorageThrottledError` with the server's ``Retry-After``; connection failures,
    timeouts and other 5xx :class:`StorageUnavailableError`; anything else :class:`StorageError`.
    The S3 error code is kept as ``s3_code`` on the result.
    """
    from botocore import exceptions as bce

    name = "s3"
    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 0)
        message = f"{operation}: {code or status} {error.get('Message', '')}".strip()
        result: StorageError
        if code in _NOT_FOUND or status == 404 and code not in ("NoSuchBucket",):
            result = PathNotFoundError(message, path=path, driver=name)
        elif code in _THROTTLING or status in (429, 503):
            result = StorageThrottledError(message, path=path, driver=name,
                                           retry_after=_retry_after(meta.get("HTTPHeaders", {})))
        elif code == "PreconditionFailed" or status == 412:
            result = ConflictError(message, path=path, driver=name)
        elif status >= 500 or code in ("InternalError", "ServiceUnavailable", "RequestTimeout"):
            result = StorageUnavailableError(message, path=path, driver=name,
                                             retry_after=_retry_after(meta.get("HTTPHeaders", {})))
        else:
            result = StorageError(message, path=path, driver=name)
        result.s3_code = code  # type: ignore[attr-defined]
        return result
    unavailable: tuple[type[BaseException], ...] = (
        bce.EndpointConnectionError, bce.ConnectionClosedError, bce.ReadTimeoutError, bce.ConnectTimeoutError,
        bce.ResponseStreamingError, bce.IncompleteReadError, ConnectionError, TimeoutError,
    )
    if isinstance(exc, (*unavailable, bce.HTTPClientError)):
        return StorageUnavailableError(f"{operation}: the object store is unreachable: {exc}", path=path, driver=name)
    if isinstance(exc, bce.NoCredentialsError):
        return StorageError(f"{operation}: no S3 credentials (set accesskey/secretkey)", path=path, driver=name)
    return StorageError(f"{operation}: {type(exc).__name__}: {exc}", path=path, driver=name)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

