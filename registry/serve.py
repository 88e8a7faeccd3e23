"""Serving a WSGI app with waitress: settings from ``http.*``, one listening line, graceful shutdown.

On SIGTERM or SIGINT the server stops accepting connections, closes idle keep-alive connections and
lets requests in flight finish for up to ``http.draintimeout`` (10s by default) before it exits; a
second signal exits at once. Distribution drains the same way.

With ``http.debug.addr`` a second listener serves the app's debug app (``/debug/health``, plugin
debug routes) from the same event loop, with its own two worker threads so that a health probe is
answered even while every API worker is busy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

import waitress.server
from waitress import wasyncore
from waitress.buffers import OverflowableBuffer
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import build_http_date

from registry.config import drain_timeout, http_addr, http_net, http_prefix, parse_addr
from registry.handlers.base import API_VERSION_HEADER
from registry.plugins import options_of
from registry.spool import spooling_parser, usable_spool_directory
from registry.streaming import StreamingChannelMixin, StreamingTaskMixin, streaming_parser
from registry.tls import tls_context, tls_settings

log = logging.getLogger(__name__)

_RUSAGE_THREAD: int | None = getattr(resource, "RUSAGE_THREAD", None)

#: Our defaults where waitress's do not suit a registry: its body cap of 1 GiB breaks layer pushes,
#: and its 8 KiB socket reads cost one turn of the event loop (and one append to the request's
#: buffer) per 8 KiB of every layer pushed; 1 MiB reads cut the server's CPU time per GiB pushed
#: by about 40% (docs/benchmarks.md). A read returns what has arrived: small requests are unaffected.
WAITRESS_DEFAULTS: Mapping[str, Any] = {
    "threads": 8,
    "max_request_body_size": 0,
    "recv_bytes": 1 << 20,
    "ident": "registry",
}

#: The most bytes of a response waitress reads per attempt to send (see :class:`_Channel`).
SEND_CHUNK = 1 << 20

#: Worker threads of the debug listener: health probes and metrics scrapes, one or two at a time.
DEBUG_THREADS = 2

#: A request served on the I/O thread (:class:`_SmallReads`) that takes longer than this, in wall
#: time, *and* waited (the thread gave up the CPU: a read from a cold disk or a network file
#: system, a lock) sends small reads back to the worker threads for :data:`INLINE_PAUSE_SECONDS`:
#: storage that stalls stalls one request's worth of every connection, not more. Time lost to
#: preemption by other processes (a busy machine) is not waiting and does not count.
INLINE_SLOW_SECONDS = 0.002
INLINE_PAUSE_SECONDS = 5.0
#: The most requests of one connection (pipelined in one read) the I/O thread serves in a row; the
#: rest go to a worker, so that one client cannot keep the loop from the others.
INLINE_RUN = 16

# How often the serving loop looks at the stop flag, and how often it checks on draining connections.
_POLL_SECONDS = 0.5
_DRAIN_POLL_SECONDS = 0.05


def refuse_unserved_tls(config: Mapping[str, Any]) -> None:
    """Raise :class:`registry.config.ConfigError` when ``http.tls`` asks for HTTPS that cannot be
    served as asked (see :func:`registry.tls.tls_context`): never plain HTTP in its place."""
    tls_context(config)


def waitress_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments for :func:`waitress.create_server`: where to listen (``http.addr``,
    ``http.net``) and the ``http.waitress`` settings over :data:`WAITRESS_DEFAULTS`."""
    options = {**WAITRESS_DEFAULTS, **options_of(config, "http.waitress")}
    if not options["max_request_body_size"]:
        # 0 means no limit; waitress itself would refuse every body at or above its limit.
        options["max_request_body_size"] = sys.maxsize
    prefix = http_prefix(config).rstrip("/")
    if prefix:
        # waitress moves the prefix into SCRIPT_NAME; the app builds its URLs from it.
        options.setdefault("url_prefix", prefix)
    if "unix_socket_perms" in options:
        options["unix_socket_perms"] = str(options["unix_socket_perms"])  # octal digits, as in chmod
    if tls_settings(config) is not None:
        options.setdefault("url_scheme", "https")
    if http_net(config) == "unix":
        options["unix_socket"] = str(options_of(config, "http").get("addr"))
    else:
        options["listen"] = _listen(*http_addr(config))
    return options


def _listen(host: str, port: int) -> str:
    if not host:
        host = "*"  # Go's ":5000": every interface, IPv4 and IPv6
    elif ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def debug_addr(config: Mapping[str, Any]) -> tuple[str, int] | None:
    """``http.debug.addr`` as ``(host, port)``, or ``None`` when there is no debug listener.

    :raises ValueError: when the address is not ``HOST:PORT``.
    """
    addr = options_of(config, "http.debug").get("addr")
    return parse_addr(str(addr)) if addr else None


class _OCIErrorTask(ErrorTask):
    """waitress's own error responses (a malformed request, headers or a body over the limits, an
    unsupported transfer coding) with the OCI error body, like every error the app sends."""

    def execute(self) -> None:
        e = self.request.error
        code = {413: "SIZE_INVALID", 500: "UNKNOWN"}.get(e.code, "UNSUPPORTED")
        body = json.dumps({"errors": [{"code": code, "message": f"{e.reason}: {e.body}"}]}).encode()
        self.status = f"{e.code} {e.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), API_VERSION_HEADER])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


_TLS_REFUSAL = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)


class _Task(StreamingTaskMixin, WSGITask):
    """waitress's WSGI task, sending a response's header together with the first piece of its body
    (and dropping what the app left unread of a streamed body: :mod:`registry.streaming`).

    waitress sends each write at once (its ``send_bytes`` is 1), so every small response went out as
    two TCP segments, header then body: two ``send`` calls, and two wake-ups of the client. Here the
    header waits in the connection's buffer for the body's first write, which sends both; what is
    sent, and in which order, does not change. Should no body follow (waitress drops one given with
    a 204 or 304), the header is sent when the task ends, as any output still buffered is.
    """

    def write(self, data: bytes) -> None:
        if data and not self.wrote_header:
            self.channel.hold_next_write = True
        super().write(data)

    def build_response_header(self) -> bytes:
        # waitress formats the Date header afresh for every response (time.gmtime and a format
        # string: 2% of a manifest GET); it only changes once a second.
        headers = self.response_headers
        for key, _ in headers:
            if key.lower() == "date":
                break
        else:
            headers.append(("Date", _http_date(int(self.start_time))))
        return super().build_response_header()


_date_cache: tuple[int, str] = (-1, "")


def _http_date(second: int) -> str:
    """waitress's ``build_http_date``, remembered for the current second."""
    global _date_cache
    cached = _date_cache
    if cached[0] != second:
        cached = _date_cache = (second, build_http_date(second))
    return cached[1]


def _voluntary_switches() -> int:
    """How often the calling thread has given up the CPU to wait (Linux's ``RUSAGE_THREAD``; 0
    elsewhere, where no request is then taken for one that waited)."""
    return resource.getrusage(_RUSAGE_THREAD).ru_nvcsw if _RUSAGE_THREAD is not None else 0


class _SmallReads:
    """Which requests waitress's I/O thread answers itself instead of handing them to a worker.

    A request handed to a worker costs a lock, a condition variable's wake-up, two switches of the
    GIL and a write to the loop's trigger pipe (which wakes the loop once more to read it): on a
    manifest ``GET`` that was most of the server's CPU time (docs/benchmarks.md). The loop serves a
    request itself only when the app says it answers it without waiting on anything but a local
    file system (:meth:`registry.app.RegistryApp.is_small_read`: no body, a route of a few small
    reads, a driver declaring ``LOCAL_READS``, no plugin that might block), the connection has no
    unsent output (so the response can never wait for the loop to send earlier bytes), and fewer
    than :data:`INLINE_RUN` of the connection's requests were just served this way. A request that
    still takes long pauses the whole policy (:data:`INLINE_SLOW_SECONDS`): everything then goes to
    the workers as before, and waits there on its own.
    """

    def __init__(self, is_small_read: Callable[[str, str], bool], url_prefix: str) -> None:
        self.is_small_read = is_small_read
        self.url_prefix = url_prefix
        #: The thread running the event loop (set by :meth:`Server.run`).
        self.io_thread: int | None = None
        self.paused_until = 0.0
        #: The loop thread's voluntary context switches when it first served a request itself in
        #: this turn of the loop (``None`` until then; :meth:`Server.run` resets it every turn,
        #: after the turn's wait in ``select``, which is one): one ``getrusage`` per turn, not per request.
        self.switches: int | None = None

    def accepts(self, channel: Any) -> bool:
        """Whether the I/O thread serves ``channel``'s next request (``channel.requests[0]``) now."""
        if threading.get_ident() != self.io_thread or channel.total_outbufs_len:
            return False
        if channel.inline_run >= INLINE_RUN or (self.paused_until and time.monotonic() < self.paused_until):
            return False
        request = channel.requests[0]
        if request.error is not None or request.content_length or request.chunked:
            return False
        path = request.path
        if self.url_prefix:
            # As waitress makes PATH_INFO; a path outside the prefix is the app's 404, on a worker.
            if not path.startswith(self.url_prefix + "/"):
                return False
            path = path[len(self.url_prefix):]
        return self.is_small_read(request.command, path)

    def turn_started(self) -> None:
        """A turn of the loop served a request itself: remember the thread's switches, once."""
        if self.switches is None:
            self.switches = _voluntary_switches()

    def waited(self, seconds: float) -> bool:
        """After a request that took ``seconds`` (over :data:`INLINE_SLOW_SECONDS`): pause the
        policy if the thread gave up the CPU since :meth:`turn_started`. Returns whether it paused."""
        now = _voluntary_switches()
        if self.switches is None or now == self.switches:
            return False
        self.switches = now
        self.paused_until = time.monotonic() + INLINE_PAUSE_SECONDS
        # At info: under mixed load (workers holding the GIL) this is routine, not a fault.
        log.info("a request on the I/O thread waited %.1f ms: small reads go to worker threads for %gs",
                 seconds * 1000, INLINE_PAUSE_SECONDS)
        return True

    def install(self, listener: Any) -> None:
        """Route ``listener``'s hand-offs through this policy: an accepted request is marked for the
        channel to serve (:meth:`_Channel.received`), the others are queued for the workers as
        waitress queues them; and the loop's trigger is not pulled from the loop's own thread, which
        looks at every connection again on its next turn anyway."""
        queue, trigger = listener.add_task, listener.pull_trigger

        def add_task(channel: Any) -> None:
            if getattr(channel, "inline_run", None) is not None and self.accepts(channel):
                channel.inline_next = True
            else:
                queue(channel)

        def pull_trigger() -> None:
            if threading.get_ident() != self.io_thread:
                trigger()

        listener.add_task, listener.pull_trigger = add_task, pull_trigger
        listener.small_reads = self


class _Channel(StreamingChannelMixin, HTTPChannel):
    """waitress's connection, reading at most :data:`SEND_CHUNK` bytes of a response per send,
    sending a response's header and the start of its body in one segment (:class:`_Task`),
    answering waitress's own errors with the OCI error body (:class:`_OCIErrorTask`), and streaming
    upload bodies into the app as they arrive (:mod:`registry.streaming`).

    waitress reads as much of a response body as the socket's send buffer holds (``SO_SNDBUF``, about
    4 MiB here) into a new string on every attempt to send, then re-reads from the file whatever the
    kernel did not take: a blob download read each byte several times over. 1 MiB reads cut the
    server's CPU time per GiB downloaded by about 40% and raised loopback throughput to match
    (docs/benchmarks.md). Only how much is read per ``send`` changes; what is sent, and when, does not.
    """

    task_class = _Task
    error_task_class = _OCIErrorTask
    parser_class = streaming_parser(HTTPRequestParser)
    #: Set by :class:`_Task` for the response header: buffer the next write without sending it.
    hold_next_write = False
    #: Set by :class:`_SmallReads` when the I/O thread is to serve the next request itself.
    inline_next = False
    #: Requests of this connection served on the I/O thread since its last read.
    inline_run = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sendbuf_len = min(self.sendbuf_len, SEND_CHUNK)
        self._first_read = True

    def write_soon(self, data: Any) -> int:
        if not self.hold_next_write:
            return super().write_soon(data)
        self.hold_next_write = False
        if not data or not self.connected:
            return super().write_soon(data)
        # What HTTPChannel.write_soon does for bytes, less the send: the body's write sends both.
        with self.outbuf_lock:
            if self.current_outbuf_count >= self.adj.outbuf_high_watermark:
                self.outbufs.append(OverflowableBuffer(self.adj.outbuf_overflow))
                self.current_outbuf_count = 0
            self.outbufs[-1].append(data)
            self.current_outbuf_count += len(data)
            self.total_outbufs_len += len(data)
        return len(data)

    def received(self, data: bytes) -> bool:
        # skopeo, podman and buildah try https:// first even with --tls-verify=false and fall back
        # to http:// only once the handshake fails. waitress would wait for the end of a request
        # line that a TLS ClientHello never sends, so each command stalled for the client's
        # handshake timeout (10 s). Refuse at once, as Go's server (and so Distribution) does.
        if self._first_read and data:
            self._first_read = False
            if data[:1] == b"\x16":
                with contextlib.suppress(OSError):
                    self.send(_TLS_REFUSAL)
                self.will_close = True
                return False
        handled = super().received(data)
        if self.inline_next:
            self._serve_inline()
        return handled

    def _serve_inline(self) -> None:
        # Outside received()'s requests_lock, which service() takes. service() pops the request it
        # served and hands on the next, if any: through _SmallReads again, which may mark it too.
        small_reads: _SmallReads = self.server.small_reads
        small_reads.turn_started()
        try:
            while self.inline_next:
                self.inline_next = False
                self.inline_run += 1
                started = time.perf_counter()
                try:
                    self.service()
                except Exception:  # service() answers the app's errors; this is waitress's own
                    log.exception("error serving a request on the I/O thread")
                    self.will_close = True
                    return
                elapsed = time.perf_counter() - started
                if elapsed > INLINE_SLOW_SECONDS:
                    small_reads.waited(elapsed)
        finally:
            self.inline_run = 0


class _TLSChannel(_Channel):
    """A connection wrapped in TLS (``http.tls``), on waitress's event loop.

    The accepted socket is wrapped without a handshake; the handshake then advances whenever the
    socket is ready (a client that never completes it is closed by waitress's idle timeout, and one
    without an acceptable certificate, under ``clientcas``, is refused during it). ``recv`` and
    ``send`` map OpenSSL's want-read/want-write to "nothing now", which waitress's plain-socket
    code would take for a closed connection, and each moves as many records as the socket takes.
    waitress sends from task threads while the event loop reads: one lock per connection keeps them
    from using the OpenSSL connection at once, which it does not allow. A read stops only when
    OpenSSL wants more from the socket (or ``recv_bytes`` are in hand, and then the loop's next
    round reads on), so no decrypted data is left waiting inside OpenSSL while the loop waits for
    the socket to become readable.
    """

    tls_context: ssl.SSLContext

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        self._tls_lock = threading.Lock()
        self._tls_ready = False
        self._tls_want_write = False
        sock = self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        super().__init__(server, sock, addr, adj, map)

    def _handshake(self) -> bool:
        with self._tls_lock:
            try:
                self.socket.do_handshake()
            except ssl.SSLWantReadError:
                self._tls_want_write = False
                return False
            except ssl.SSLWantWriteError:
                self._tls_want_write = True
                return False
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake with %s failed: %s", self.addr[0] if self.addr else "?",
                         getattr(exc, "reason", None) or exc)
                failed = True
            else:
                failed = False
        if failed:
            self.handle_close()
            return False
        self._tls_ready, self._tls_want_write = True, False
        return True

    def readable(self) -> bool:
        return super().readable() if self._tls_ready else not self._tls_want_write

    def writable(self) -> bool:
        return self._tls_want_write or (self._tls_ready and bool(super().writable()))

    def handle_write(self) -> None:
        if not self._tls_ready:
            self._handshake()
            return
        super().handle_write()

    def handle_read(self) -> None:
        if not self._tls_ready and not self._handshake():
            return
        # One recv is one TLS record (16 KiB at most): read records until the socket is drained or
        # recv_bytes are in hand, so that waitress parses large pieces, as with a plain socket.
        chunks: list[bytes] = []
        size, closed, failed = 0, False, False
        with self._tls_lock:
            # Past recv_bytes only to empty OpenSSL's buffer: a record read in part leaves the rest
            # decrypted there, and the socket would never become readable for it.
            while size < self.adj.recv_bytes or self.socket.pending():
                try:
                    data = self.socket.recv(max(self.adj.recv_bytes - size, self.socket.pending()))
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break  # a record not yet complete, or a TLS message that carried no data
                except ssl.SSLZeroReturnError:
                    closed = True
                    break
                except OSError:
                    failed = True
                    break
                if not data:
                    closed = True
                    break
                chunks.append(data)
                size += len(data)
        if chunks:
            self.last_activity = time.time()
            self.received(b"".join(chunks) if len(chunks) > 1 else chunks[0])
            return  # a close or an error shows again on the next read, after this data is handled
        if failed and self.adj.log_socket_errors:
            self.logger.exception("Socket error")
        if failed or closed:
            self.handle_close()  # the client closed (close_notify or EOF), or the connection broke

    def send(self, data: Any, do_close: bool = True) -> int:
        # OpenSSL returns after each record (16 KiB) in Python's partial-write mode; waitress would
        # then read the next chunk from the body file again for every record. Send records until
        # the socket is full, as a plain socket's send does. A retry after want-write starts with
        # the same bytes (waitress re-reads from the unsent offset), as OpenSSL requires.
        view = memoryview(data)
        sent, failed = 0, False
        with self._tls_lock:
            while sent < len(view):
                try:
                    n = self.socket.send(view[sent:])
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    break
                except OSError:
                    failed = True
                    break
                if n <= 0:
                    break
                sent += n
        if failed and not sent and do_close:
            self.handle_close()
        return sent


def _channel_class(app: Callable[..., Any]) -> type[HTTPChannel]:
    """:class:`_Channel`, spooling the large request bodies it does not stream where the app's
    storage can adopt them."""
    context = getattr(app, "registry_context", None)
    driver = context.store.driver if context is not None else None
    directory = usable_spool_directory(driver.spool_directory() if driver is not None else None)
    if directory is None:
        return _Channel
    return type("_SpoolingChannel", (_Channel,), {"parser_class": streaming_parser(spooling_parser(directory))})


class Server:
    """A waitress server that can be stopped gracefully from a signal handler or another thread.

    :param app: the WSGI application; for the registry's app (:func:`registry.app.create_app`),
        what its ``wsgi_app()`` returns (the app in the plugins' WSGI middleware) is served.
    :param config: the registry configuration (``http.*`` is read).
    :param debug_app: served on ``http.debug.addr`` if that is set; default: ``app.debug_app``.
    """

    def __init__(self, app: Callable[..., Any], config: Mapping[str, Any], *,
                 debug_app: Callable[..., Any] | None = None) -> None:
        self.drain_timeout = drain_timeout(config)
        wrap = getattr(app, "wsgi_app", None)
        served = wrap() if callable(wrap) else app
        self._server: Any = waitress.server.create_server(served, **waitress_options(config))
        # One listener comes back as itself, several (localhost: IPv4 and IPv6) as a MultiSocketServer.
        if isinstance(self._server, waitress.server.MultiSocketServer):
            self._map: dict[int, Any] = self._server.map
        else:
            self._map = self._server._map
        channel_class = _channel_class(app)
        context = tls_context(config)
        if context is not None:
            channel_class = type(f"_TLS{channel_class.__name__}", (_TLSChannel, channel_class),
                                 {"tls_context": context})
        self._tls = context is not None
        is_small_read = getattr(app, "is_small_read", None)
        #: The I/O thread's own requests (:class:`_SmallReads`); ``None`` when the app names none.
        self._small_reads = (_SmallReads(is_small_read, self._server.adj.url_prefix)
                             if callable(is_small_read) and getattr(app, "small_reads_local", False) else None)
        for dispatcher in self._map.values():  # the listeners: nothing has been accepted yet
            if isinstance(dispatcher, waitress.server.BaseWSGIServer):
                dispatcher.channel_class = channel_class
                if self._small_reads is not None:
                    self._small_reads.install(dispatcher)
        self._adj = self._server.adj
        self._debug: Any = None
        debug = debug_addr(config)
        debug_app = debug_app if debug_app is not None else getattr(app, "debug_app", None)
        if debug is not None and debug_app is not None:
            try:
                # The same map: one event loop serves both listeners, and draining drains both.
                self._debug = waitress.server.create_server(
                    debug_app, map=self._map, listen=_listen(*debug), threads=DEBUG_THREADS,
                    ident=WAITRESS_DEFAULTS["ident"],
                )
            except BaseException:
                self._close_listeners()
                raise
        self._stop_requested = False
        self._force = False
        self._reason = ""

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` has been called."""
        return self._stop_requested

    @property
    def addresses(self) -> list[str]:
        """The URLs the server listens on, with the real port when ``http.addr`` asked for port 0."""
        if self._adj.unix_socket:
            return [f"unix:{self._adj.unix_socket}"]
        return _urls(self._server, "https" if self._tls else "http")

    @property
    def debug_addresses(self) -> list[str]:
        """The URLs of the debug listener (none without ``http.debug.addr``)."""
        return _urls(self._debug) if self._debug is not None else []

    def _close_listeners(self) -> None:
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(self._map)

    def stop(self, reason: str = "stop requested") -> None:
        """Ask the server to drain and return from :meth:`run`; a second call stops draining.

        Safe from a signal handler: it only sets flags, which the serving loop polls.
        """
        if self._stop_requested:
            self._force = True
        else:
            self._reason = reason
        self._stop_requested = True

    def run(self) -> None:
        """Serve until :meth:`stop` is called, then drain and close everything."""
        small_reads = self._small_reads
        if small_reads is not None:
            small_reads.io_thread = threading.get_ident()
        try:
            while not self._stop_requested:
                if small_reads is not None:
                    small_reads.switches = None
                wasyncore.loop(
                    timeout=min(_POLL_SECONDS, self._adj.asyncore_loop_timeout),
                    map=self._map,
                    use_poll=self._adj.asyncore_use_poll,
                    count=1,
                )
            self._drain()
        finally:
            if self._debug is not None:
                self._debug.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
            self._close_listeners()

    def _drain(self) -> None:
        log.info("%s: draining requests in flight (up to %gs), then stopping", self._reason, self.drain_timeout)
        deadline = time.monotonic() + self.drain_timeout
        for dispatcher in list(self._map.values()):
            if isinstance(dispatcher, waitress.server.BaseWSGIServer):
                dispatcher.accepting = False
                dispatcher.close()
        while True:
            if self._force:
                log.warning("stopping without waiting for requests in flight")
                return
            channels = [d for d in list(self._map.values()) if isinstance(d, HTTPChannel)]
            busy = 0
            for channel in channels:
                if channel.requests or channel.request is not None or channel.total_outbufs_len:
                    busy += 1
                else:
                    channel.will_close = True  # idle keep-alive: nothing to wait for
            if not channels:
                return
            if time.monotonic() >= deadline:
                log.warning("drain timeout: closing %d connection(s) with requests in flight", busy)
                return
            wasyncore.loop(timeout=_DRAIN_POLL_SECONDS, map=self._map, use_poll=self._adj.asyncore_use_poll, count=1)


def _urls(server: Any, scheme: str = "http") -> list[str]:
    listening = getattr(server, "effective_listen", None)
    if listening is None:
        listening = [(server.effective_host, server.effective_port)]
    return [f"{scheme}://[{h}]:{p}" if ":" in str(h) else f"{scheme}://{h}:{p}" for h, p in listening]


def serve(app: Callable[..., Any], config: Mapping[str, Any], *, describe: str = "") -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully (the app's ``startup()``
    and ``shutdown()`` are the caller's: see ``registry serve``).

    :param describe: extra words for the listening line (e.g. the storage driver).
    :raises OSError: when the address cannot be bound (in use, not local).
    :raises ValueError: when waitress refuses the address or a setting.
    """
    run_until_signalled(Server(app, config), describe=describe)


#: glibc's M_TRIM_THRESHOLD and M_MMAP_THRESHOLD (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Allocations of at least this many bytes are mapped on their own and unmapped when freed.
MMAP_THRESHOLD = 4 << 20
#: Free memory at the top of a heap beyond this much is given back to the system (see below).
TRIM_THRESHOLD = 2 << 20


def pin_malloc_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` (unless ``MALLOC_MMAP_THRESHOLD_`` is
    set, which glibc reads itself); returns whether it was set.

    Why: glibc raises the threshold to the size of each large block freed (up to 32 MiB), after
    which large blocks come from its arenas and their space is kept after they are freed. A
    streamed upload's socket reads are allocated by waitress's I/O thread and freed by a worker,
    and object-store drivers gather them into part-sized buffers: a 1 GiB push to radosgw in
    16 MiB chunks peaked at 274-300 MiB of RSS with the moving threshold, 146-151 MiB with it
    pinned at 4 MiB. At 1 MiB it was 108 MiB, but then every 1 MiB socket read is mapped afresh:
    +0.4 s of server CPU per GiB uploaded (bench, 512 MiB rows), where 4 MiB cost nothing measurable.

    Pinning the mmap threshold also pins the trim threshold, at glibc's 128 KiB; it is raised to
    :data:`TRIM_THRESHOLD` (unless ``MALLOC_TRIM_THRESHOLD_`` is set). waitress reads a socket
    into a new ``recv_bytes`` (1 MiB) string, which is then shrunk to what arrived: the freed
    remainder went back to the system and was asked for again by the next read, two ``brk``
    calls and a page fault per request (a manifest ``GET`` included); 2 MiB holds one read's worth.
    """
    import ctypes
    import os

    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no such threshold to pin)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    pinned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if pinned and not os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return pinned


def run_until_signalled(server: Server, *, describe: str = "") -> None:
    """Log the listening line and run ``server`` until SIGTERM or SIGINT; a second signal skips draining."""
    pin_malloc_mmap_threshold()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop(signal.Signals(signum).name)  # only sets flags: logging here could interleave

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        suffix = f" ({describe})" if describe else ""
        log.info("registry listening on %s%s", ", ".join(server.addresses), suffix)
        if server.debug_addresses:
            log.info("debug listener on %s (/debug/health)", ", ".join(server.debug_addresses))
        server.run()
        log.info("registry stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["WAITRESS_DEFAULTS", "Server", "debug_addr", "run_until_signalled", "serve", "waitress_options"]
