"""One HTTP exchange of the load generator being read: the httptools callbacks that stamp
and decode each read, the time bounds, TLS on memory BIOs, and the failures that end it.
``stream.StreamClient`` drives it; ``reactor.Reactor`` reads for it under gevent."""

from __future__ import annotations

import errno
import ssl
import time
import zlib
from typing import TYPE_CHECKING, Any, Final

import httptools

from ..sse import Event, SSEDecoder

if TYPE_CHECKING:
    from .stream import StreamResult

__all__ = ["ERROR_BODY_MAX", "READ_SIZE", "TLS", "Exchange", "Fail", "Stale"]

READ_SIZE: Final = 65536
ERROR_BODY_MAX: Final = 64 * 1024
_STALE_ERRNOS: Final = (errno.ECONNRESET, errno.EPIPE)
_pc = time.perf_counter_ns


class Fail(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Stale(Exception):
    """A reused keep-alive connection that had sat idle was closed by the server before
    answering (its keep-alive timer ran out as the request went out): sent again, once."""


class TLS:
    """TLS on a plain socket through the ssl module's memory BIOs (``SSLContext.wrap_bio``):
    the read path stays the same for HTTP and HTTPS — the encrypted read is stamped the moment
    it returns, then decrypted in place — so HTTPS streams are read in the reactor's callbacks
    too, where an ``SSLSocket`` needs a greenlet blocked in ``recv`` per stream. Measured
    (``bench_load.py --tls``, validation on): 29.7k events/s at lateness p50 < 5 ms, against
    21.1k with an ``SSLSocket`` per greenlet (stock HttpUser: 21.7k)."""

    __slots__ = ("incoming", "obj", "outgoing")

    def __init__(self, context: ssl.SSLContext, host: str) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_hostname=host)

    def handshake(self, sock: Any) -> None:
        """On a socket with its own waits and timeout (the caller maps the errors)."""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush(sock)
                data = sock.recv(READ_SIZE)
                if not data:
                    raise ConnectionResetError("the server closed the connection") from None
                self.incoming.write(data)
        self.flush(sock)

    def flush(self, sock: Any) -> None:
        """Send what TLS has to say (handshake records, the answer to a key update)."""
        out = self.outgoing.read()
        if out:
            sock.sendall(out)

    def encrypt(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.outgoing.read()

    def decrypt(self, data: bytes) -> tuple[bytes, bool]:
        """The plaintext of one read, and whether the server closed TLS (close_notify)."""
        self.incoming.write(data)
        parts: list[bytes] = []
        while True:
            try:
                part = self.obj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                return b"".join(parts), False
            except ssl.SSLZeroReturnError:
                return b"".join(parts), True
            if not part:
                return b"".join(parts), True
            parts.append(part)


class Exchange:
    """One response being read: the httptools callbacks (the stamp of the current read is
    ``t``) and :meth:`take`, the step shared by both read loops."""

    __slots__ = (
        "abort_after",
        "aborting",
        "close_delimited",
        "deadline",
        "decoder",
        "done",
        "error_body",
        "failure",
        "first_byte_ns",
        "got_any",
        "headers",
        "idle_ns",
        "inflate",
        "keep_alive",
        "lag",
        "last_read",
        "may_be_stale",
        "model",
        "parser",
        "raw",
        "result",
        "sse",
        "t",
        "tls",
        "wake",
    )

    def __init__(
        self,
        result: StreamResult,
        max_event_bytes: int,
        abort_after: int | None,
    ) -> None:
        self.result = result
        self.model = result.model
        self.decoder = SSEDecoder(max_event_bytes)
        self.headers: dict[str, str] = {}
        self.t = 0
        self.done = False
        self.keep_alive = False
        self.sse = False
        self.close_delimited = False
        self.error_body: list[bytes] = []
        self.inflate: Any = None
        self.lag: list[int] | None = None
        self.abort_after = abort_after
        self.aborting = False
        self.parser = httptools.HttpResponseParser(self)
        # read-loop state (set by the client before the first read)
        self.deadline = 0
        self.first_byte_ns = 0
        self.idle_ns = 0
        self.last_read = 0
        self.may_be_stale = False
        self.got_any = False
        self.raw: Any = None
        self.tls: TLS | None = None
        self.failure: BaseException | None = None
        self.wake: Any = None

    # -- one read --------------------------------------------------------------------------

    def take(self, data: bytes, t: int) -> bool:
        """Feed one read stamped ``t``; True when the exchange is over (complete or aborted).
        Raises :class:`Fail` (or :class:`Stale` on a dead keep-alive connection)."""
        result = self.result
        if not data:
            if self.may_be_stale and not self.got_any:
                raise Stale
            if result.t_headers is not None and self.close_delimited:
                self.done = True
                return True
            raise Fail("transport.broken", self.broken("connection closed"))
        self.got_any = True
        self.t = self.last_read = t
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            raise Fail("transport.broken", "unexpected protocol upgrade") from exc
        except httptools.HttpParserError as exc:
            raise Fail("transport.broken", f"malformed HTTP response: {exc}") from exc
        if self.aborting:
            result.aborted = True
            return True
        if self.sse and self.decoder.stopped:
            raise Fail("transport.broken", "an event passed the size bound (sse.max-event)")
        if t > self.deadline:
            raise Fail("transport.total", self.total_message())
        return self.done

    def take_read(self, data: bytes, t: int) -> bool:
        """:meth:`take` for one socket read, decrypted first on a TLS connection (a read of
        only TLS records, a session ticket say, has nothing to take yet)."""
        tls = self.tls
        if tls is None or not data:
            return self.take(data, t)
        try:
            plain, closed = tls.decrypt(data)
            tls.flush(self.raw)
        except (ssl.SSLError, OSError) as exc:
            raise Fail("transport.broken", self.broken(f"TLS failed: {exc}")) from exc
        if plain and self.take(plain, t):
            return True
        return self.take(b"", t) if closed else False

    def read_error(self, exc: OSError) -> Exception:
        if self.may_be_stale and not self.got_any and exc.errno in _STALE_ERRNOS:
            return Stale()
        return Fail("transport.broken", self.broken(str(exc)))

    def expired(self, now: int) -> Fail | None:
        """The time bound that ran out at ``now``, if any."""
        if now >= self.deadline:
            return Fail("transport.total", self.total_message())
        if self.result.t_headers is None:
            if now >= self.result.t_send + self.first_byte_ns:
                return Fail(
                    "transport.first-byte",
                    f"no response headers within {self.first_byte_ns / 1e9:g} s",
                )
        elif now >= self.last_read + self.idle_ns:
            return Fail(
                "transport.idle",
                f"no byte for {self.idle_ns / 1e9:g} s after {self.model.events} event(s)",
            )
        return None

    def timed_out(self) -> Fail:
        """A wait of the blocking read loop ran out: which bound was it?"""
        if _pc() >= self.deadline - 1_000_000:
            return Fail("transport.total", self.total_message())
        if self.result.t_headers is None:
            return Fail(
                "transport.first-byte", f"no response headers within {self.first_byte_ns / 1e9:g} s"
            )
        return Fail(
            "transport.idle",
            f"no byte for {self.idle_ns / 1e9:g} s after {self.model.events} event(s)",
        )

    def total_message(self) -> str:
        total = (self.deadline - self.result.t_send) / 1e9
        return f"the exchange did not end within {total:g} s ({self.model.events} event(s) so far)"

    def broken(self, what: str) -> str:
        if self.result.t_headers is None:
            return f"{what} before the response headers"
        return f"{what} after {self.model.events} event(s)"

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        result = self.result
        result.t_headers = self.t
        result.status = status = self.parser.get_status_code()
        self.sse = 200 <= status < 300
        headers = self.headers
        result.content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "deflate"):
            self.inflate = zlib.decompressobj(47 if encoding == "gzip" else 15)
        self.close_delimited = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
        )

    def on_body(self, data: bytes) -> None:
        self.result.body_bytes += len(data)
        if self.inflate is not None:
            data = self.inflate.decompress(data)
        if not self.sse:
            if sum(map(len, self.error_body)) < ERROR_BODY_MAX:
                self.error_body.append(data)
            return
        decoder = self.decoder
        events = decoder.feed(data, self.t)
        if not events:
            return
        model = self.model
        model.feed(events)
        if events[-1].comment is not None:  # the reference server's send stamps
            self._lateness(events, model.first_index)
        if self.abort_after is not None and len(model.content_t) >= self.abort_after:
            self.aborting = True

    def _lateness(self, events: list[Event], first: int) -> None:
        """Receive minus send stamp (``: t=<ns>`` before each event) per stamped event."""
        lag = self.lag
        if lag is None:
            lag = self.lag = []
        for event in events:
            comment = event.comment
            if comment is not None and comment.startswith(b" t="):
                try:
                    late = event.t - int(comment[3:])
                except ValueError:
                    continue
                lag.append(late)
                if event.index == first:
                    self.result.ttft_lag_ns = late

    def on_message_complete(self) -> None:
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()  # (reset once the call returns)
