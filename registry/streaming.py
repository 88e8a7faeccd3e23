"""Upload bodies streamed from the socket into storage instead of spooled first.

waitress reads a whole request body before the application runs, and keeps any body over its
``inbuf_overflow`` in a temporary file: every byte of a chunk that did not start an upload was
written twice, once into that spool and once appended to the upload's data. For the requests that
carry blob bytes (``PATCH`` and ``PUT`` of ``/v2/<name>/blobs/uploads/<id>``, ``POST
/v2/<name>/blobs/uploads/`` with a body) and a ``Content-Length`` over ``inbuf_overflow``, the
parser here finishes the request at the end of its header instead: the task starts at once, and its
``wsgi.input`` is a :class:`BodyStream` that the connection feeds as the bytes arrive.

The same requests with a body in chunked transfer coding, whatever its size (a ``POST`` only with
``?digest=``: one without it does not read its body), get a :class:`ChunkedBodyStream`: the I/O
thread decodes the framing as the bytes arrive and feeds the chunks' data; the length is known at
the last chunk only (``length`` is ``None``, and the application sees no ``Content-Length``). This
is what skopeo and podman (containers/image, which buildah shares) send for a layer they compress
on the fly: one ``PATCH`` of 32 KiB chunks. The stream's ``complete`` tells the body's end (last
chunk and trailer read) from a connection that broke before it; the upload layer reads a body of
unknown length to its end and treats an incomplete one as a short body (``SIZE_INVALID``; the
upload keeps what arrived, and ``GET`` reports it). Malformed framing ends the body the same way:
the application's answer is a 400 in the OCI error format, and then the connection is closed
(nothing after can be parsed). A chunked body reaching ``max_request_body_size`` (counted on the
wire, framing included, as waitress counts it) closes the connection at once; the read that reached
it is not stored.

Threads: waitress's I/O thread reads the socket and feeds the stream (:meth:`BodyStream.feed`); a
worker thread runs the application, which reads it. At most :data:`BUFFER_BYTES` (plus one socket
read) wait between the two: past that the connection stops reading the socket (TCP then slows the
client), and the worker wakes the I/O thread when it has read the buffer down. Memory stays flat
whatever the body's size.

A connection that breaks (or stalls for ``channel_timeout``) mid-body ends the stream early: the
application sees a short body (the upload layer keeps what was written, answers ``SIZE_INVALID``,
and ``GET`` of the upload then reports the bytes kept). An application that answers without reading
the whole body (an error, say) leaves the rest to be read and dropped by the I/O thread, so the
connection can go on; a client that waits for ``100 Continue`` gets it at the first read only, and
otherwise the connection is closed after the answer.

An application that refuses a body (a quota: a chunked body is read no further than the room
left) calls :meth:`BodyStream.refuse`: after its answer, at most :data:`DRAIN_BYTES` more of a
chunked body are read and dropped, then the connection's sending side is shut, nothing more is
read, and it is closed :data:`LINGER_SECONDS` later (a client still sending gets to read the
answer before the reset that closing with unread bytes causes), so that a refused body of unknown
length costs a bounded read (a ``Content-Length`` body's rest is drained,
bounded by its declared length).

Bodies up to ``inbuf_overflow``, and all bodies of other requests, are buffered by waitress as
before. Limits are waitress's: a ``Content-Length`` at or over ``max_request_body_size`` is refused
with 413 before anything is read.

This is a server module: the storage and handler layers never import it; they recognize a stream by
its ``streaming_body`` attribute.
"""

from __future__ import annotations

import collections
import contextlib
import re
import socket
import threading
from typing import Any

# waitress's grammar of a chunk-size line, so that we accept what it accepts (pinned by
# tests/test_streaming_chunked.py).
from waitress.rfc7230 import CHUNK_EXT_RE, ONLY_HEXDIG_RE

#: Bytes received and not yet read by the application, at most (one more socket read may land on
#: top): four 1 MiB reads, so that the I/O thread can run ahead of a worker writing to disk.
BUFFER_BYTES = 4 << 20

#: A worker that read a full buffer down to this wakes the I/O thread to read the socket again. Each
#: wake-up (a write to waitress's trigger pipe, a turn of its loop, a hand-over of the GIL) cost ~18%
#: of the samples of a chunked upload when it came after every read (docs/benchmarks.md); with
#: this gap the I/O thread reads about 2 MiB per wake-up.
RESUME_BYTES = BUFFER_BYTES // 2

#: The requests whose bodies are streamed: the blob-carrying upload requests (the app validates the
#: name and id; anything else matching here is streamed harmlessly and answered by the app).
#: What is still read (and dropped) of a body the application refused (:meth:`BodyStream.refuse`)
#: after its answer, before the connection is closed: time for a client that is still sending to
#: read the answer (a close with unread bytes resets the connection, and the answer may be lost).
DRAIN_BYTES = 4 << 20

#: After that drain the connection's sending side is shut and nothing more is read for this long,
#: then it is closed: time for a client still sending to read the answer before the reset that a
#: close with unread bytes causes (Go's server waits 500 ms the same way).
LINGER_SECONDS = 1.0

_UPLOAD_PATH = re.compile(r"/v2/.+/blobs/uploads/[^/]*\Z")
_METHODS = frozenset({"PATCH", "PUT", "POST"})

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BodyStream:
    """A request body of known length, read by the application while the connection receives it.

    ``read`` blocks until bytes are there, and returns ``b""`` at the end of the body or when the
    connection broke before it (the caller compares what it got with the ``Content-Length``).
    """

    #: What the handlers look for: a body that is neither in memory nor in a file.
    streaming_body = True
    #: Join small queued pieces into one read (a chunked body's chunks may be a few KiB each).
    _gather = False

    def __init__(self, length: int | None, timeout: float) -> None:
        #: The body's length, or ``None`` when it is not known before its end (chunked).
        self.length = length
        self._remaining = length or 0  # bytes still to come from the socket
        self._timeout = timeout
        self._chunks: collections.deque[bytes | memoryview] = collections.deque()
        self._buffered = 0
        self._cond = threading.Condition(threading.Lock())
        self._broken = ""  # why the body ended early
        self._discard = False  # the application is done: drop what still comes
        self._stalled = False  # the buffer filled up: the I/O thread stopped reading the socket
        self._channel: Any = None
        self.expect_continue = False  # the client waits for "100 Continue" before the body
        self.read_started = False
        self._drain: int | None = None  # bytes still to drop after a refusal, then close
        #: The rest of a refused body is more than :data:`DRAIN_BYTES`: close the connection once
        #: the answer is sent (the channel looks at this after each feed).
        self.hang_up = False
        #: The answer said ``Connection: close``: close once the body's end was dropped.
        self.close_after = False

    # -- the I/O thread ---------------------------------------------------------------------------

    def attach(self, channel: Any) -> None:
        self._channel = channel

    @property
    def receiving(self) -> bool:
        """Whether body bytes are still to come from the socket."""
        return self._remaining > 0 and not self._broken

    def _received_all(self) -> bool:
        return self._remaining <= 0

    @property
    def complete(self) -> bool:
        """Whether the whole body arrived (a reader that got ``b""`` before can tell a broken
        connection from the body's end, which matters when :attr:`length` is ``None``)."""
        return self._received_all() and not self._broken

    @property
    def broken(self) -> str:
        """Why the body ended early (``""`` when it did not)."""
        return self._broken

    def wants_data(self) -> bool:
        """Whether the connection should read the socket for this body now (the backpressure)."""
        return self._discard or not self._stalled

    def feed(self, data: bytes) -> int:
        """Take the body's part of ``data`` (what the socket gave); returns how many bytes were the
        body's (the rest is the next request)."""
        n = min(len(data), self._remaining)
        if n <= 0:
            return 0
        piece = data if n == len(data) else data[:n]
        with self._cond:
            self._remaining -= n
            if not self._discard and not self._broken:
                self._chunks.append(piece)
                self._buffered += n
                if self._buffered >= BUFFER_BYTES:
                    self._stalled = True
            self._cond.notify()
        return n

    def _drained(self, n: int) -> None:
        """Count ``n`` bytes dropped after a refusal (called with the lock held)."""
        if self._discard and self._drain is not None:
            self._drain -= n
            if self._drain < 0 and not self._received_all():
                self.hang_up = True

    def refuse(self) -> None:
        """The application refuses the body (a quota). A body of known length is drained as any
        unread one: its rest is bounded by the ``Content-Length`` (under ``max_request_body_size``),
        and a client that sends it all before reading the answer still gets the answer. A chunked
        one overrides this."""

    def abort(self, reason: str) -> None:
        """The connection closed or failed: the body ends here."""
        with self._cond:
            if not self._received_all() and not self._broken:
                self._broken = reason
            self._cond.notify_all()

    # -- the worker thread ------------------------------------------------------------------------

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while True:
                part = self.read(1 << 20)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        if size == 0:
            return b""
        if not self.read_started:
            self.read_started = True
            if self.expect_continue:
                self._send_continue()
        wake = False
        with self._cond:
            while not self._chunks:
                if self._received_all() or self._broken:
                    return b""
                if not self._cond.wait(self._timeout) and not self._chunks:
                    self._broken = f"no body bytes for {self._timeout:g}s"
                    self._close_channel()
                    return b""
            chunk: bytes | memoryview = self._chunks.popleft()
            if self._gather and len(chunk) < size and self._chunks:
                chunk = self._join(chunk, size)
            elif len(chunk) > size:
                self._chunks.appendleft(chunk[size:])
                chunk = chunk[:size]
            self._buffered -= len(chunk)
            wake = self._stalled and self._buffered < RESUME_BYTES
            if wake:
                self._stalled = False
        if wake and self._channel is not None:
            # The I/O thread stopped reading this socket: make it look at readable() again.
            self._channel.server.pull_trigger()
        return chunk if isinstance(chunk, bytes) else bytes(chunk)

    def _join(self, first: bytes | memoryview, size: int) -> bytes:
        """``first`` and the queued pieces after it, up to ``size`` bytes, as one string: one copy,
        and one write and hash update per read however small the client's chunks (called with the
        lock held)."""
        parts, total = [first], len(first)
        while self._chunks and total < size:
            piece = self._chunks.popleft()
            if total + len(piece) > size:
                cut = size - total
                self._chunks.appendleft(piece[cut:])
                piece = piece[:cut]
            parts.append(piece)
            total += len(piece)
        return b"".join(parts)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def _send_continue(self) -> None:
        channel = self._channel
        if channel is not None and channel.connected:
            try:
                channel.write_soon(_CONTINUE)
            except Exception:  # noqa: BLE001 - the client is gone (waitress's ClientDisconnected)
                self.abort("the connection closed")

    def _close_channel(self) -> None:
        channel = self._channel
        if channel is not None:
            channel.will_close = True
            channel.server.pull_trigger()

    def request_done(self, task: Any) -> None:
        """The application answered: drop the rest of the body as it comes, or close the connection
        if the client is still waiting for leave to send it (or it broke)."""
        with self._cond:
            if self._received_all():
                return
            self._chunks.clear()
            self._buffered = 0
            if self._broken or (self.expect_continue and not self.read_started):
                task.close_on_finish = True
                return
            if self._drain is not None and task.close_on_finish:
                # A refused body (refuse): closing as soon as the answer is flushed would reset
                # the connection under a client still sending, often before it read the answer.
                # The drain, then the linger, close it instead (or the body's end, if sooner).
                task.close_on_finish = False
                self.close_after = True
            self._discard = True
        if self._channel is not None:
            self._channel.server.pull_trigger()


#: The longest chunk-size line (with its extensions) and the most trailer bytes accepted: what a
#: client needs is a few bytes; more is an attack on the server's memory.
MAX_CHUNK_LINE = 4096
MAX_TRAILER = 65536

#: The end of a chunk's data and the next chunk-size line, when it has no extensions.
_NEXT_CHUNK = re.compile(rb"\r\n([0-9A-Fa-f]{1,16})\r\n")

# States of the chunked decoder: a chunk-size line, chunk data, the CRLF after the data, trailer lines.
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class ChunkedBodyStream(BodyStream):
    """A request body in chunked transfer coding (RFC 9112 section 7.1), decoded by the I/O thread
    as it arrives; its length is known at its end only (:attr:`length` is ``None``).

    :attr:`complete` tells the body's end (the last chunk and the trailer section read) from a
    connection that broke before it: ``read`` returns ``b""`` in both cases. Malformed framing ends
    the body too (``complete`` false, :attr:`malformed` says why); what follows on the connection
    is dropped, and the connection is closed once the application answered, since no next request
    can be found in it. Chunk-size lines are checked as waitress checks them (its grammar from
    ``waitress.rfc7230``); trailer fields are read and dropped, as waitress does.
    """

    _gather = True

    def __init__(self, timeout: float, max_size: int) -> None:
        super().__init__(None, timeout)
        self._max_size = max_size  # bytes on the wire, framing included, as waitress counts them
        self._consumed = 0
        self._state = _SIZE
        self._left = 0  # bytes of the current chunk still to come
        self._line = b""  # a line begun in an earlier read
        self._trailer = 0
        self._finished = False
        #: Why the framing was refused (``""`` when it was not).
        self.malformed = ""
        #: The body went over ``max_request_body_size``: the connection is closed at once.
        self.too_large = False
        #: A refused body: the answer is out, the sending side shut (:meth:`linger`).
        self.lingering = False

    def _received_all(self) -> bool:
        return self._finished

    @property
    def receiving(self) -> bool:
        # After malformed framing the connection still reads (and drops) what comes, until the
        # application's answer has gone out.
        return not self._finished and (not self._broken or bool(self.malformed))

    def wants_data(self) -> bool:
        if self.lingering:
            return False
        return bool(self.malformed) or super().wants_data()

    def feed(self, data: bytes) -> int:
        if self._finished:
            return 0
        if self.malformed or self._broken:
            return len(data)
        pieces: list[bytes | memoryview] = []
        size, i, error = len(data), 0, ""
        view: memoryview | None = None
        while i < size and not self._finished:
            if self._state == _DATA:
                take = min(self._left, size - i)
                if take == size:
                    pieces.append(data)
                else:
                    if view is None:
                        view = memoryview(data)
                    pieces.append(view[i:i + take])
                i += take
                self._left -= take
                if self._left:
                    continue
                # The common case, in one regex match: the CRLF after the data and a plain
                # chunk-size line, both within this read (anything else takes the line path below).
                m = _NEXT_CHUNK.match(data, i)
                if m is None:
                    self._state = _DATA_END
                    continue
                i = m.end()
                self._left = int(m.group(1), 16)
                if not self._left:
                    self._state = _TRAILER
                continue
            end = data.find(b"\n", i)
            if end < 0:
                self._line += data[i:]
                i = size
                if len(self._line) > (MAX_TRAILER if self._state == _TRAILER else MAX_CHUNK_LINE):
                    error = "a chunk-size line or trailer section too long"
                break
            line = self._line + data[i:end] if self._line else data[i:end]
            self._line = b""
            i = end + 1
            error = self._line_done(line)
            if error:
                break
        self._consumed += i
        if self._discard:
            with self._cond:
                self._drained(i)
        if not error and self._consumed >= self._max_size:
            error = f"the body exceeds max_request_body_size ({self._max_size} bytes)"
            self.too_large = True
        with self._cond:
            # The read that went over the limit is dropped whole: what is stored stays under it.
            if not self._discard and not self._broken and not self.too_large:
                for piece in pieces:
                    self._chunks.append(piece)
                    self._buffered += len(piece)
                if self._buffered >= BUFFER_BYTES:
                    self._stalled = True
            if error:
                self.malformed = self._broken = error
                if self._discard:
                    # The application has answered: nobody is left to close the connection after.
                    self._close_channel()
            self._cond.notify_all()
        return size if error else i

    def refuse(self) -> None:
        """Once the application has answered, at most :data:`DRAIN_BYTES` more of the body are read
        and dropped, then the connection is closed: a body of unknown length may not end."""
        with self._cond:
            if self._drain is None:
                self._drain = DRAIN_BYTES

    def linger(self) -> None:
        """The answer is out and the connection's sending side shut: nothing more is read (the
        connection is closed :data:`LINGER_SECONDS` later)."""
        with self._cond:
            self.lingering = True

    def _line_done(self, line: bytes) -> str:
        """Take one line (without its LF); returns what is wrong with it, or ``""``."""
        if not line.endswith(b"\r"):
            return "a line of the chunked framing not ended by CRLF"
        line = line[:-1]
        if self._state == _DATA_END:
            if line:
                return "chunk data longer than its chunk size"
            self._state = _SIZE
            return ""
        if self._state == _TRAILER:
            self._trailer += len(line) + 2
            if self._trailer > MAX_TRAILER:
                return "a trailer section over 64 KiB"
            if not line:
                self._finished = True
            elif b":" not in line:
                return "a trailer line that is not a field"
            return ""
        semi = line.find(b";")
        if semi >= 0:
            if not CHUNK_EXT_RE.match(line[semi:]):
                return "an invalid chunk extension"
            line = line[:semi]
        if not ONLY_HEXDIG_RE.match(line) or len(line) > 16:
            return f"an invalid chunk size {line[:20]!r}"
        self._left = int(line, 16)
        self._state = _DATA if self._left else _TRAILER
        return ""


def streaming_parser(base: type) -> type:
    """A waitress request parser class (deriving from ``base``) that streams upload bodies."""

    class StreamingParser(base):  # type: ignore[misc, valid-type]
        stream: BodyStream | None = None

        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            if (not (self.chunked or self.content_length > self.adj.inbuf_overflow)
                    or self.command not in _METHODS or not _UPLOAD_PATH.search(self.path)):
                return
            if self.chunked and self.command == "POST" and "digest=" not in self.query:
                # A POST that only starts an upload does not read its body: waitress's own check of
                # the framing then answers a malformed one (400), as for any other request.
                return
            if self.body_rcv is not None:
                self.body_rcv.getbuf().close()
                self.body_rcv = None  # the parser then completes the request with its header
            stream: BodyStream
            if self.chunked:
                # Whatever its size: it is not known before the last chunk. A Content-Length sent
                # with it is void (RFC 9112 section 6.3); waitress replaces it with the decoded
                # length, which is not known here.
                self.headers.pop("CONTENT_LENGTH", None)
                stream = ChunkedBodyStream(float(self.adj.channel_timeout), self.adj.max_request_body_size)
            else:
                stream = BodyStream(self.content_length, float(self.adj.channel_timeout))
            # 100 Continue goes out when the application starts reading, not from the I/O thread.
            stream.expect_continue, self.expect_continue = self.expect_continue, False
            self.stream = stream

        def get_body_stream(self) -> Any:
            if self.stream is not None:
                return self.stream
            return super().get_body_stream()

    return StreamingParser


class StreamingChannelMixin:
    """For waitress's ``HTTPChannel``: feeds a streamed request's body to its :class:`BodyStream`
    while the request's task runs, reading the socket only while the stream has room."""

    _body: BodyStream | None = None

    # Attributes of HTTPChannel used here.
    requests_lock: Any
    request: Any
    requests: list[Any]
    server: Any
    adj: Any
    will_close: bool
    close_when_flushed: bool
    sent_continue: bool
    parser_class: Any

    def readable(self) -> bool:
        body = self._body
        if body is not None and body.receiving:
            return not (self.will_close or self.close_when_flushed) and body.wants_data()
        return super().readable()  # type: ignore[misc]

    def received(self, data: bytes) -> bool:
        # waitress's HTTPChannel.received, plus: a request whose parser made a stream is handed to
        # a worker at the end of its header, and the body bytes that follow go to its stream.
        if not data:
            return False
        with self.requests_lock:
            if self.will_close or self.close_when_flushed:
                return False
            while data:
                body = self._body
                if body is not None:
                    n = body.feed(data)
                    if getattr(body, "too_large", False):
                        # Over the limit: no more of it is read, and no answer can be sent.
                        self.will_close = True
                        return False
                    # A refused body longer than the drain, its answer sent (till then the drain
                    # goes on: the worker hands the answer over to this thread first).
                    if (body.hang_up and not (self.requests or self.total_outbufs_len)
                            and not self._linger(body)):
                        return False
                    if not body.receiving:
                        self._body = None
                        if getattr(body, "lingering", False) or body.close_after:
                            # The sending side is shut, or the answer said it closes: no next
                            # request.
                            self.close_when_flushed = True
                            return False
                    if n >= len(data):
                        break
                    data = data[n:]
                    continue
                if self.request is None:
                    self.request = self.parser_class(self.adj)
                request = self.request
                n = request.received(data)
                if (request.expect_continue and request.headers_finished and not self.requests
                        and not self.sent_continue):
                    self.send_continue()  # type: ignore[attr-defined]
                if request.completed:
                    self.sent_continue = False
                    stream = getattr(request, "stream", None)
                    if stream is not None and request.error is None:
                        stream.attach(self)
                        if stream.receiving:
                            self._body = stream
                    if not request.empty:
                        self.requests.append(request)
                        if len(self.requests) == 1:
                            self.server.add_task(self)
                    self.request = None
                if n >= len(data):
                    break
                data = data[n:]
        return True

    def _linger(self, body: Any) -> bool:
        """Shut the sending side (the client gets the answer, then the end of the connection),
        stop reading, and close :data:`LINGER_SECONDS` later: a close with unread bytes resets
        the connection, and a client still sending (Go's, so skopeo's and podman's) reports the
        reset, not the answer, when the reset comes before it read the answer. Returns whether to
        go on with ``data`` (no: nothing more is read; the body stays this connection's, so that
        nothing after it is taken for a request)."""
        try:
            self.socket.shutdown(socket.SHUT_WR)  # type: ignore[attr-defined]
        except OSError:
            self.will_close = True
            return False
        body.linger()
        timer = threading.Timer(LINGER_SECONDS, self._end_linger)
        timer.daemon = True
        timer.start()
        return False

    def _end_linger(self) -> None:
        self.will_close = True
        with contextlib.suppress(OSError, ValueError):  # the server stopped meanwhile
            self.server.pull_trigger()

    def _abort_body(self, reason: str) -> None:
        body = self._body
        if body is not None:
            body.abort(reason)

    def handle_close(self) -> None:
        self._abort_body("the connection closed")
        super().handle_close()  # type: ignore[misc]

    def close(self) -> None:
        self._abort_body("the connection closed")
        super().close()  # type: ignore[misc]

    def cancel(self) -> None:
        self._abort_body("the server is stopping")
        super().cancel()  # type: ignore[misc]


class StreamingTaskMixin:
    """For waitress's ``WSGITask``: after the application answered a streamed request, the rest of
    its body is dropped as it comes or the connection closed (:meth:`BodyStream.request_done`)."""

    request: Any

    def service(self) -> None:
        try:
            super().service()  # type: ignore[misc]
        finally:
            stream = getattr(self.request, "stream", None)
            if stream is not None:
                stream.request_done(self)


__all__ = [
    "BUFFER_BYTES", "BodyStream", "ChunkedBodyStream", "StreamingChannelMixin", "StreamingTaskMixin",
    "streaming_parser",
]
