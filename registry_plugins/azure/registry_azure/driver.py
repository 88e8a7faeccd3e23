"""The storage contract on Azure Blob Storage, with block blobs.

Every file is a block blob named ``ROOTDIRECTORY/path`` in one container; directories are prefixes.

Why block blobs with staged blocks (and not append blobs): a block blob is assembled by
``Put Block List`` from blocks staged beforehand, and staged, uncommitted blocks are kept by the
service for a week, visible to any client through ``Get Block List``. That is the contract's
appending writer as it stands: a chunk's bytes are staged as blocks (never sent again), ``close``
leaves them staged, the next writer in any process finds them, and ``commit`` makes them the blob
in one request, readers seeing the old content until then. An append blob appends in place (readers
would see a half-finished upload, and a failed chunk cannot be taken back), offers no atomic replace
and caps blocks at 4 MiB. Blocks have no minimum size, unlike S3's parts, so nothing is stored twice.

How an upload's blocks are found again. Block IDs have one length (the service requires it) and
read ``a`` + 16-digit offset + this writer's token + the previous writer's token. A writer that
staged blocks ends its ``close`` by setting the blob's metadata to ``END.TOKEN``, on the condition
that the blob's ETag is still the one it opened with (staging does not change the ETag; this
metadata change does). Two writers that resumed the same state therefore cannot both succeed: the
second gets 412 and raises :class:`~registry.storage.driver.ConflictError`, and its staged blocks,
found by no chain, are dropped at the commit. The next writer follows the chain back from the
metadata's token to the committed content. ``commit`` is ``Put Block List`` of the committed blocks
plus the chain, conditional on the same ETag.

Limits: at most 50,000 committed blocks per blob (an upload of more chunks than that fails at its
commit), a block of at most 4000 MiB (``blocksize``), 100,000 uncommitted blocks.

Moves are server-side copies (``start_copy_from_url``, polled until the copy succeeds; real Azure may
say ``pending``) and a delete. Azurite lacks ``stage_block_from_url`` and ``upload_blob_from_url``:
neither is used.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import io
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, TypeVar

from registry.config import parse_duration
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

log = logging.getLogger(__name__)

MiB = 1 << 20
DEFAULT_BLOCK_SIZE = 8 * MiB
#: Azure's limits on one block blob.
MAX_BLOCK_SIZE = 4000 * MiB
MAX_BLOCKS = 50_000
#: How long a redirect URL (SAS) is valid, as in Distribution's azure driver.
SAS_EXPIRY = datetime.timedelta(minutes=20)
#: Reads are fetched in pieces of this size, so that memory stays flat whatever the blob size.
READ_CHUNK = 8 * MiB  # per-request latency dominates below this (Azurite: 68 MB/s at 4 MiB, 100 at 8, 176 at 16)
#: The metadata key holding an unfinished append's chain head (``END.TOKEN``).
APPEND_KEY = "registryappend"
_TOKEN_LEN = 12  # IDs stay under 64 characters once base64-encoded (Azurite checks the encoded length)
_NO_TOKEN = "0" * _TOKEN_LEN

T = TypeVar("T")


def _block_id(kind: str, offset: int, token: str, prev: str) -> str:
    return base64.b64encode(f"{kind}{offset:016d}{token}{prev}".encode()).decode()


def _parse_block_id(block_id: str) -> tuple[str, int, str, str] | None:
    """``(kind, offset, token, prev)`` of one of our block IDs; ``None`` for any other."""
    try:
        raw = base64.b64decode(block_id).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    if len(raw) != 1 + 16 + 2 * _TOKEN_LEN or not raw[1:17].isdigit():
        return None
    return raw[0], int(raw[1:17]), raw[17 : 17 + _TOKEN_LEN], raw[17 + _TOKEN_LEN :]


def map_error(exc: BaseException, path: str) -> StorageError:
    """The contract's error for an exception of the Azure SDK (or of the transport below it)."""
    from azure.core import exceptions as ae

    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ae.ResourceNotFoundError):
        return PathNotFoundError(path=path)
    if isinstance(exc, ae.ResourceModifiedError):
        return ConflictError("the blob changed since this writer opened it", path=path)
    if isinstance(exc, ae.HttpResponseError) and exc.status_code is not None:
        code_enum = getattr(exc, "error_code", None) or ""
        status, code = exc.status_code, str(getattr(code_enum, "value", code_enum))
        message = f"Azure answered {status} {code}".strip()
        if status == 429 or (status == 503 and "ServerBusy" in code):
            return StorageThrottledError(message, path=path, retry_after=_retry_after(exc))
        if status >= 500 or status == 408:
            return StorageUnavailableError(message, path=path, retry_after=_retry_after(exc))
        return StorageError(f"{message}: {_first_line(exc)}", path=path)
    if isinstance(exc, (ae.ServiceRequestError, ae.ServiceResponseError, ConnectionError, TimeoutError)):
        return StorageUnavailableError(f"Azure unreachable: {type(exc).__name__}: {_first_line(exc)}", path=path)
    return StorageError(f"{type(exc).__name__}: {_first_line(exc)}", path=path)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:300]


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _mapped(method: Callable[..., T]) -> Callable[..., T]:
    """Driver methods whose first argument is a path: SDK errors come out as the contract's."""

    @functools.wraps(method)
    def wrapper(self: Any, path: str, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, path, *args, **kwargs)
        except Exception as exc:
            mapped = map_error(exc, path)
            if mapped is exc:
                raise
            raise mapped from exc

    return wrapper


class AzureDriver(StorageDriver):
    """Block blobs in one container (see the module docstring).

    :param container_client: an ``azure.storage.blob.ContainerClient`` for the container.
    :param root: the blob name prefix all paths live under (no leading or trailing slash).
    :param sas: makes a read-only SAS query string for a blob name (``None``: no redirects).
    """

    name = "azure"
    capabilities = Capability.SERVER_COPY | Capability.REDIRECT

    def __init__(
        self,
        container_client: Any,
        *,
        root: str = "",
        block_size: int = DEFAULT_BLOCK_SIZE,
        copy_poll_delay: float = 0.1,
        copy_poll_max: int = 60,
        sas: Callable[[str], str | None] | None = None,
    ) -> None:
        self.container = container_client
        self.root = root.strip("/")
        self.block_size = min(max(block_size, MiB), MAX_BLOCK_SIZE)
        self.copy_poll_delay = copy_poll_delay
        self.copy_poll_max = copy_poll_max
        self._sas = sas
        self._container_ready = False
        self._lock = threading.Lock()
        with contextlib.suppress(StorageError):
            self._ensure_container()  # unreachable now: tried again before the first write

    # -- names -----------------------------------------------------------------------------------

    def blob_name(self, path: str) -> str:
        rel = path.lstrip("/")
        return f"{self.root}/{rel}" if self.root else rel

    def _path(self, name: str) -> str:
        return "/" + (name[len(self.root) + 1 :] if self.root else name)

    def _prefix(self, path: str) -> str:
        if path == "/":
            return f"{self.root}/" if self.root else ""
        return self.blob_name(path) + "/"

    def blob(self, path: str) -> Any:
        return self.container.get_blob_client(self.blob_name(path))

    def _ensure_container(self) -> None:
        if self._container_ready:
            return
        from azure.core.exceptions import ResourceExistsError

        try:
            self.container.create_container()
        except ResourceExistsError:
            pass
        except Exception as exc:
            mapped = map_error(exc, "/")
            if isinstance(mapped, StorageUnavailableError):
                raise mapped from exc  # tried again before the next write
            # E.g. 403 for an identity that may use the container but not create one: the
            # container is assumed to exist, and the operations themselves report what is wrong.
            log.warning("azure: could not create container %s: %s", self.container.container_name, mapped)
        self._container_ready = True

    # -- reading ---------------------------------------------------------------------------------

    @_mapped
    def get_content(self, path: str) -> bytes:
        return self.blob(path).download_blob().readall()

    @_mapped
    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        if offset < 0:
            raise InvalidOffsetError(f"negative offset {offset}", path=path)
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        blob = self.blob(path)
        try:
            downloader = blob.download_blob(offset=offset) if offset else blob.download_blob()
        except ResourceNotFoundError:
            raise
        except HttpResponseError as exc:
            if exc.status_code != 416:
                raise
            size = blob.get_blob_properties().size
            if offset == size:
                return io.BytesIO(b"")
            raise InvalidOffsetError(f"offset {offset} outside 0..{size}", path=path) from None
        return _BlobReader(downloader, path)  # type: ignore[return-value]

    @_mapped
    def stat(self, path: str) -> FileInfo:
        from azure.core.exceptions import ResourceNotFoundError

        if path != "/":
            try:
                props = self.blob(path).get_blob_properties()
                return FileInfo(path, props.size, False, props.last_modified)
            except ResourceNotFoundError:
                pass
        if path == "/" or self._has_children(path):
            return FileInfo(path, 0, True, None)
        raise PathNotFoundError(path=path)

    def _has_children(self, path: str) -> bool:
        pages = self.container.list_blobs(name_starts_with=self._prefix(path), results_per_page=1).by_page()
        return any(True for page in pages for _ in page)

    @_mapped
    def list(self, path: str) -> list[str]:
        prefix = self._prefix(path)
        children = {item.name.rstrip("/") for item in self.container.walk_blobs(name_starts_with=prefix, delimiter="/")}
        if not children and path != "/":
            raise PathNotFoundError(path=path)
        return sorted(self._path(name) for name in children)

    # -- writing ---------------------------------------------------------------------------------

    @_mapped
    def put_content(self, path: str, content: bytes) -> None:
        self._ensure_container()
        self.blob(path).upload_blob(content, overwrite=True, max_concurrency=1)

    def writer(self, path: str, append: bool = False) -> FileWriter:
        try:
            self._ensure_container()
            return _AppendWriter(self, path) if append else _FreshWriter(self, path)
        except Exception as exc:
            raise map_error(exc, path) from exc

    @_mapped
    def move(self, source: str, dest: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        self._ensure_container()
        src = self.blob(source)
        props = src.get_blob_properties()  # PathNotFoundError before touching dest
        target = self.blob(dest)
        # A source in the same account is authorized by this request's own credential. A SAS on the
        # source URL would make Azurite fetch it over HTTP like a foreign URL (slow, and a 500 at 1 GiB).
        copy = target.start_copy_from_url(src.url, source_etag=props.etag, source_match_condition=_match_condition())
        status, delay = copy.get("copy_status"), self.copy_poll_delay
        for _ in range(self.copy_poll_max):
            if status == "success":
                break
            if status != "pending":
                raise StorageError(f"server-side copy ended {status}", path=source)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            status = target.get_blob_properties().copy.status
        else:
            with contextlib.suppress(Exception):
                target.abort_copy(copy["copy_id"])
            raise StorageUnavailableError("server-side copy still pending; retry", path=source)
        with contextlib.suppress(ResourceNotFoundError):
            src.delete_blob()

    @_mapped
    def delete(self, path: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        found = False
        try:
            self.blob(path).delete_blob()
            found = True
        except ResourceNotFoundError:
            pass
        for item in self.container.list_blobs(name_starts_with=self._prefix(path)):
            with contextlib.suppress(ResourceNotFoundError):
                self.container.delete_blob(item.name)
            found = True
        if not found:
            raise PathNotFoundError(path=path)

    def redirect_url(self, method: str, path: str) -> str | None:
        """A read-only SAS URL of the blob, valid for :data:`SAS_EXPIRY` (GET and HEAD only)."""
        if method not in ("GET", "HEAD") or self._sas is None:
            return None
        try:
            blob = self.blob(path)
            sas = self._sas(blob.blob_name)
        except Exception as exc:
            raise map_error(exc, path) from exc
        return f"{blob.url}?{sas}" if sas else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()


def _match_condition() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified


class _BlobReader(io.RawIOBase):
    """A ``StorageStreamDownloader`` as a binary file object, fetched :data:`READ_CHUNK` at a time."""

    def __init__(self, downloader: Any, path: str) -> None:
        self._chunks = downloader.chunks()
        self._buffer = memoryview(b"")
        self._path = path

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            except Exception as exc:
                raise map_error(exc, self._path) from exc
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class _Writer(WriterBase):
    """What both writers share: a buffer staged as blocks of ``block_size``."""

    kind = "f"

    def __init__(self, driver: AzureDriver, path: str) -> None:
        self._driver, self._path = driver, path
        self._blob = driver.blob(path)
        self._buffer = bytearray()
        self._token = secrets.token_hex(_TOKEN_LEN // 2)
        self._prev = _NO_TOKEN
        self._start = 0  # offset of this writer's first block
        self._staged: list[tuple[str, int, int]] = []  # (block id, offset, size)
        self._ended = ""

    @property
    def _staged_end(self) -> int:
        return self._staged[-1][1] + self._staged[-1][2] if self._staged else self._start

    @property
    def size(self) -> int:
        return self._staged_end + len(self._buffer)

    def write(self, data: bytes) -> int:
        self._check_open()
        try:
            self._buffer += data
            while len(self._buffer) >= self._driver.block_size:
                self._stage(bytes(self._buffer[: self._driver.block_size]))
                del self._buffer[: self._driver.block_size]
        except Exception as exc:
            raise map_error(exc, self._path) from exc
        return len(data)

    def _stage(self, data: bytes | memoryview) -> None:
        offset = self._staged_end
        block_id = _block_id(self.kind, offset, self._token, self._prev)
        self._blob.stage_block(block_id, data, length=len(data))
        self._staged.append((block_id, offset, len(data)))

    def _flush(self) -> None:
        if self._buffer:
            self._stage(bytes(self._buffer))
            self._buffer.clear()

    def _guard(self, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as exc:
            raise map_error(exc, self._path) from exc


class _FreshWriter(_Writer):
    """One ``Put Blob`` when the content fits a block; staged blocks and one ``Put Block List`` above."""

    def commit(self) -> None:
        self._check_open()
        self._ended = "closed"

        def run() -> None:
            from azure.storage.blob import BlobBlock

            if not self._staged:
                self._blob.upload_blob(bytes(self._buffer), overwrite=True, max_concurrency=1)
            else:
                self._flush()
                if len(self._staged) > MAX_BLOCKS:
                    raise StorageError(f"more than {MAX_BLOCKS} blocks: raise blocksize", path=self._path)
                self._blob.commit_block_list([BlobBlock(block_id=b[0]) for b in self._staged])

        try:
            self._guard(run)
        except StorageError as exc:
            if "InvalidBlockList" not in str(exc):
                raise
            # Another fresh writer of this path committed first, which drops every uncommitted
            # block, ours too: the same blob pushed twice at once. Retrying finds it stored.
            raise StorageUnavailableError("a concurrent writer replaced this file; retry", path=self._path) from exc
        self._ended = "committed"  # the buffer stays: it is what `size` counts

    def cancel(self) -> None:
        self.close()

    def close(self) -> None:
        # Staged blocks of a fresh writer are part of no chain: the blob's next commit drops them,
        # or the service does after a week.
        if not self._ended:
            self._ended = "closed"
            self._buffer.clear()


class _AppendWriter(_Writer):
    """Continues the committed blob and the chain of closed writers' staged blocks."""

    kind = "a"

    def __init__(self, driver: AzureDriver, path: str) -> None:
        super().__init__(driver, path)
        props = self._blob.get_blob_properties()  # PathNotFoundError when there is nothing to continue
        self._etag = props.etag
        self._committed_size = props.size
        head = (props.metadata or {}).get(APPEND_KEY)
        self._chain_head: tuple[int, str] | None = None
        if head:
            end, _, token = head.partition(".")
            self._chain_head = (int(end), token)
            self._start, self._prev = int(end), token
        else:
            self._start = props.size
        self._prepared = False

    def _block_backed(self) -> tuple[list[str], int]:
        """IDs and total size of the committed blocks."""
        committed, _ = self._blob.get_block_list("committed")
        return [b.id for b in committed], sum(b.size for b in committed)

    def _prepare_first_stage(self) -> None:
        """Before this writer stages its first block of an upload with no chain yet: a committed blob
        written by ``Put Blob`` has no blocks, so its content must be staged to be kept."""
        if self._prepared or self._chain_head is not None or self._committed_size == 0 or self._staged:
            return
        self._prepared = True
        ids, size = self._block_backed()
        if ids and size == self._committed_size:
            return
        content = self._blob.download_blob(etag=self._etag, match_condition=_match_condition()).readall()
        self._start = 0
        self._stage(content)

    def write(self, data: bytes) -> int:
        self._check_open()
        if data and not self._prepared and not self._staged and self._chain_head is None and self._committed_size:
            self._guard(self._prepare_first_stage)
        return super().write(data)

    def _chain(self) -> list[str]:
        """IDs of the closed writers' blocks, in order, that continue the committed content."""
        if self._chain_head is None:
            return []
        _, uncommitted = self._blob.get_block_list("uncommitted")
        by_token: dict[str, list[tuple[int, str, int, str]]] = {}
        for block in uncommitted:
            parsed = _parse_block_id(block.id)
            if parsed and parsed[0] == "a":
                by_token.setdefault(parsed[2], []).append((parsed[1], block.id, block.size, parsed[3]))
        end, token = self._chain_head
        out: list[str] = []
        for _ in range(MAX_BLOCKS + 1):
            blocks = sorted(by_token.get(token, []))
            if not blocks or blocks[-1][0] + blocks[-1][2] != end:
                raise StorageError("an unfinished upload's staged blocks are missing", path=self._path)
            for (offset, _id, size, _prev), nxt in zip(blocks, blocks[1:], strict=False):
                if offset + size != nxt[0]:
                    raise StorageError("an unfinished upload's staged blocks are not contiguous", path=self._path)
            out[:0] = [b[1] for b in blocks]
            end, token = blocks[0][0], blocks[0][3]
            if token == _NO_TOKEN:
                break
        if end not in (0, self._committed_size):
            raise StorageError("an unfinished upload's chain does not start at the committed content", path=self._path)
        return out

    def close(self) -> None:
        if self._ended:
            return
        self._ended = "closed"

        def run() -> None:
            if self._buffer and not self._staged:
                self._prepare_first_stage()
            self._flush()
            if not self._staged:
                return  # nothing written (a look at the size): nothing to store, nothing to conflict
            head = f"{self._staged_end}.{self._token}"
            self._blob.set_blob_metadata({APPEND_KEY: head}, etag=self._etag, match_condition=_match_condition())

        self._guard(run)

    def commit(self) -> None:
        self._check_open()
        self._ended = "closed"

        def run() -> None:
            from azure.storage.blob import BlobBlock

            if self._buffer and not self._staged:
                self._prepare_first_stage()
            self._flush()
            if self._staged:
                head: tuple[int, str] | None = (self._staged_end, self._token)
            else:
                head = self._chain_head
            if head is None:
                return  # nothing staged by anyone: the committed content is the whole file
            self._chain_head = head
            chain = self._chain()
            first = _parse_block_id(chain[0]) if chain else None
            committed: list[str] = []
            if first is not None and first[1] != 0:  # the chain continues block-backed committed content
                committed, _ = self._block_backed()
            ids = committed + chain
            if len(ids) > MAX_BLOCKS:
                raise StorageError(f"more than {MAX_BLOCKS} blocks in one upload", path=self._path)
            self._blob.commit_block_list(
                [BlobBlock(block_id=i) for i in ids], etag=self._etag, match_condition=_match_condition()
            )

        self._guard(run)
        self._ended = "committed"

    def cancel(self) -> None:
        if self._ended == "committed":
            return
        self._ended = "cancelled"
        self._buffer.clear()
        from azure.core.exceptions import ResourceNotFoundError

        def run() -> None:
            with contextlib.suppress(ResourceNotFoundError):
                self._blob.delete_blob()

        self._guard(run)


def from_parameters(params: Mapping[str, Any]) -> AzureDriver:
    """Build the driver from the validated ``storage.azure`` mapping (see ``schema.json``)."""
    from azure.storage.blob import BlobServiceClient, LinearRetry

    sdk_log = logging.getLogger("azure")
    if sdk_log.level == logging.NOTSET:
        # The SDK logs every request and response, headers included, at INFO: our log, not its.
        sdk_log.setLevel(logging.WARNING)

    account = params.get("accountname") or ""
    key = params.get("accountkey") or ""
    url = params.get("serviceurl") or ""
    if not url:
        if not account:
            raise StorageError("storage.azure: accountname or serviceurl is required", driver="azure")
        url = f"https://{account}.blob.{params.get('realm') or 'core.windows.net'}"
    url = url.rstrip("/")
    credential, kind = _credential(params, account, key)
    timeout = parse_duration(params.get("timeout", "30s"))
    retry = LinearRetry(
        backoff=parse_duration(params.get("retry_delay", "500ms")),
        random_jitter_range=0,
        retry_total=int(params.get("max_retries", 3)),
    )
    service = BlobServiceClient(
        url,
        credential=credential,
        retry_policy=retry,
        connection_timeout=timeout,
        read_timeout=timeout,
        max_single_get_size=READ_CHUNK,
        max_chunk_get_size=READ_CHUNK,
        max_single_put_size=64 * MiB,
    )
    sas = _sas_maker(service, credential, kind, params["container"])
    return AzureDriver(
        service.get_container_client(params["container"]),
        root=params.get("rootdirectory") or "",
        block_size=int(params.get("blocksize") or DEFAULT_BLOCK_SIZE),
        copy_poll_delay=parse_duration(params.get("copy_status_poll_delay", "100ms")),
        copy_poll_max=int(params.get("copy_status_poll_max_retry", 60)),
        sas=sas,
    )


def _credential(params: Mapping[str, Any], account: str, key: str) -> tuple[Any, str]:
    creds = params.get("credentials") or {}
    kind = str(creds.get("type") or ("sharedkey" if key else "default_credentials")).replace("_key", "key")
    if kind == "sharedkey":
        if not (account and key):
            raise StorageError("storage.azure: shared-key authentication needs accountname and accountkey",
                               driver="azure")
        return {"account_name": account, "account_key": key}, kind
    # Only these two need azure-identity, imported here and nowhere else.
    import azure.identity

    if kind == "client_secret":
        return azure.identity.ClientSecretCredential(creds["tenantid"], creds["clientid"], creds["secret"]), kind
    return azure.identity.DefaultAzureCredential(), kind


def _sas_maker(service: Any, credential: Any, kind: str, container: str) -> Callable[[str], str | None]:
    """Read-only SAS query strings for blob names: signed with the account key, or with a user
    delegation key (fetched for a day and renewed an hour before it expires) for Entra credentials."""
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    state: dict[str, Any] = {}
    lock = threading.Lock()

    def delegation_key(now: datetime.datetime) -> Any:
        with lock:
            key = state.get("key")
            if key is None or state["until"] - now < datetime.timedelta(hours=1):
                until = now + datetime.timedelta(days=1)
                key = service.get_user_delegation_key(now - datetime.timedelta(minutes=5), until)
                state.update(key=key, until=until)
            return key

    def make(blob_name: str) -> str | None:
        now = datetime.datetime.now(datetime.UTC)
        expiry = now + SAS_EXPIRY
        common = dict(
            account_name=service.account_name,
            container_name=container,
            blob_name=blob_name,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
            start=now - datetime.timedelta(minutes=5),  # clock skew between us and the service
        )
        if kind == "sharedkey":
            return generate_blob_sas(account_key=credential["account_key"], **common)
        return generate_blob_sas(user_delegation_key=delegation_key(now), **common)

    return make


def iter_blob_names(driver: AzureDriver, path: str) -> Iterator[str]:
    """Every blob name under ``path`` (for tests and tools)."""
    for item in driver.container.list_blobs(name_starts_with=driver._prefix(path)):
        yield item.name
