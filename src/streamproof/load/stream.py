"""The load generator's HTTP client: one keep-alive connection per user, one streaming POST
at a time, every socket read stamped the moment it returns and fed straight to the engine's
SSE decoder (``SSEDecoder.feed(chunk, t)``).

Why a small client of our own (plain sockets, which Locust's gevent patch makes cooperative,
plus httptools' C response parser, already a dependency of the reference server) rather than
Locust's clients — chosen by measurement: one gevent process, the reference server in another
process, 10 ms between events, lateness = receive stamp minus the server's send stamp. First,
readers feeding the same decoder, a greenlet per stream, 200 streams (~18.5k events/s):

===========================================  ==========  ============  =====
reader                                        lateness    lateness      CPU
                                              p50         p99
===========================================  ==========  ============  =====
sockets + httptools                           0.31 ms     4.0 ms        58 %
geventhttpclient raw ``sock.recv`` + feed     0.50 ms     5.6 ms        76 %
  (FastHttpUser's parser, private attributes)
requests ``iter_content(chunk_size=None)``    0.43 ms     10.3 ms       73 %
  (HttpUser's client, one read per chunk)
httpx ``iter_raw()`` under gevent             5.9 ms      35 ms         97 %
  (and only 3.9k events/s got through)
===========================================  ==========  ============  =====

Then, for plain HTTP under gevent, the reads happen in the event loop's own callbacks
(:class:`_Reactor`) instead of in a greenlet blocked in ``recv`` per stream. In Locust
(``benchmarks/bench_load.py``, figures in BENCHMARKS.md) one process keeps lateness p50 under
5 ms up to ~54k events/s with validation off and ~38k with every event validated, where stock
HttpUser ``iter_lines(chunk_size=None)`` passes 5 ms at ~26-28k with a p99 near 100 ms;
FastHttpUser's ``iter_lines`` reads 1 KiB blocks (``response.read(1024)`` waits for the block
to fill), batches ~8 events and is ~20 ms late at p50 at any rate. A read returns as soon as
any byte is there (no read-ahead buffer), so a stamp is never late by more than the time the
process's one core takes to get to it. HTTPS takes the same path: TLS runs on memory BIOs
(:class:`_TLS`), so the encrypted read is stamped and then decrypted. Without gevent (a plain
script) the client reads with the socket's own blocking waits.

Time bounds as in ``capture.Timeouts``: connect, first byte (until the response headers), idle
(the longest silence between reads) and total; each one that runs out is a failure of kind
``transport.<name>``, never a hang. Not supported: proxies and redirects (an API root is
addressed directly), HTTP/2.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import ssl
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httptools

from ..capture import Timeouts, tls_context
from ..endpoints import API_PATHS
from ..findings import Finding, at_api_level
from ..redact import redact
from ..sse import DEFAULT_MAX_EVENT_BYTES, Event, SSEDecoder
from ..stalls import WATCH
from ..validators.base import StreamValidator, check_http
from .apis import StreamTracker

__all__ = ["STAMP_HEADER", "StreamClient", "StreamResult"]

STAMP_HEADER: Final = "x-streamproof-stamps"
_READ: Final = 65536
_ERROR_BODY_MAX: Final = 64 * 1024
_STALE_ERRNOS: Final = (errno.ECONNRESET, errno.EPIPE)
# A reused connection that fails before the first response byte is taken for stale (and the
# request sent again, once, and counted) only when it had been idle this long: a server's
# keep-alive timeout is seconds (uvicorn and Node 5 s, nginx 75 s), so a connection reused
# at once that the server closes on our request is the server dropping it — a failure. A
# connection the server already closed is found before sending (``_alive``) and replaced
# without a retry, since nothing was sent on it.
STALE_IDLE_NS: Final = 1_000_000_000
_EVENT_READ: Final = 1  # libev (gevent.core) READ
_pc = time.perf_counter_ns
_USER_AGENT: Final = "streamproof-load"


class _Fail(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class _Stale(Exception):
    """A reused keep-alive connection that had sat idle was closed by the server before
    answering (its keep-alive timer ran out as the request went out): sent again, once."""


@dataclass(slots=True)
class StreamResult:
    """Everything one exchange showed, as stamps (``perf_counter_ns``) and counts.

    ``error_kind`` is None for a complete 2xx stream, else ``http.<status>``,
    ``transport.{connect,first-byte,idle,total,broken}`` or ``stream.error`` (an error event
    or payload inside a 200 stream). ``findings`` holds the protocol findings (validation on).
    ``retried``: the request was sent a second time after a stale keep-alive connection.
    """

    api: str
    tracker: StreamTracker
    t_send: int = 0
    t_headers: int | None = None
    t_end: int = 0
    status: int | None = None
    content_type: str = ""
    error_kind: str | None = None
    error: str | None = None
    body_bytes: int = 0
    aborted: bool = False
    findings: list[Finding] | None = None
    lag_ns: list[int] | None = None
    ttft_lag_ns: int | None = None
    retried: bool = False

    def violations(self) -> dict[str, str]:
        """Rule id → level of every MUST and SHOULD finding (the strongest per rule)."""
        out: dict[str, str] = {}
        for f in self.findings or ():
            if f.level == "MUST" or (f.level == "SHOULD" and f.rule not in out):
                out[f.rule] = f.level
        return dict(sorted(out.items()))

    def record(self, wall: float, t_sched: int | None = None) -> dict[str, Any]:
        """The request as plain data (see ``metrics``): stamps in µs after ``t_send``.

        ``completed``: the stream was read to its end, so its figures count whatever its
        findings; ``ok``: completed and no MUST rule broken (a MUST violation is a failure of
        kind ``protocol``, its figures counted all the same)."""
        t0 = self.t_send
        tracker = self.tracker
        violations = self.violations()
        must = [rule for rule, level in violations.items() if level == "MUST"]
        completed = self.error_kind is None and not self.aborted
        error, detail = self.error_kind, self.error
        if error is None and must:
            error = "protocol"
            first = next(f for f in self.findings or () if f.rule == must[0])
            detail = redact(f"{first.rule}: {first.message}"[:300])
        tokens, source = tracker.output_tokens
        end, last, visible = tracker.end_t, tracker.last_t, tracker.visible_t
        return {
            "api": self.api,
            "ok": completed and not must,
            "completed": completed,
            "aborted": self.aborted,
            "retried": self.retried,
            "status": self.status,
            "error": None if self.aborted else error,
            "detail": detail,
            "violations": violations,
            "wall": wall,
            "sched_us": None if t_sched is None else (t0 - t_sched) // 1000,
            "ttfb_us": None if self.t_headers is None else (self.t_headers - t0) // 1000,
            "content_us": [(t - t0) // 1000 for t in tracker.content_t],
            "visible_us": None if visible is None else (visible - t0) // 1000,
            "end_us": None if end is None else (end - t0) // 1000,
            "last_us": None if last is None else (last - t0) // 1000,
            "dur_us": (self.t_end - t0) // 1000,
            "tokens": tokens,
            "source": source,
            "events": tracker.events,
            "bytes": self.body_bytes,
            "ttft_lag_us": None if self.ttft_lag_ns is None else self.ttft_lag_ns // 1000,
        }


class _TLS:
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
                data = sock.recv(_READ)
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
                part = self.obj.read(_READ)
            except ssl.SSLWantReadError:
                return b"".join(parts), False
            except ssl.SSLZeroReturnError:
                return b"".join(parts), True
            if not part:
                return b"".join(parts), True
            parts.append(part)


class _Exchange:
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
        "parser",
        "raw",
        "result",
        "sse",
        "t",
        "tls",
        "tracker",
        "validator",
        "wake",
    )

    def __init__(
        self,
        result: StreamResult,
        validator: StreamValidator | None,
        max_event_bytes: int,
        abort_after: int | None,
    ) -> None:
        self.result = result
        self.tracker = result.tracker
        self.validator = validator
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
        self.tls: _TLS | None = None
        self.failure: BaseException | None = None
        self.wake: Any = None

    # -- one read --------------------------------------------------------------------------

    def take(self, data: bytes, t: int) -> bool:
        """Feed one read stamped ``t``; True when the exchange is over (complete or aborted).
        Raises :class:`_Fail` (or :class:`_Stale` on a dead keep-alive connection)."""
        result = self.result
        if not data:
            if self.may_be_stale and not self.got_any:
                raise _Stale
            if result.t_headers is not None and self.close_delimited:
                self.done = True
                return True
            raise _Fail("transport.broken", self.broken("connection closed"))
        self.got_any = True
        self.t = self.last_read = t
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            raise _Fail("transport.broken", "unexpected protocol upgrade") from exc
        except httptools.HttpParserError as exc:
            raise _Fail("transport.broken", f"malformed HTTP response: {exc}") from exc
        if self.aborting:
            result.aborted = True
            return True
        if self.sse and self.decoder.stopped:
            raise _Fail("transport.broken", "an event passed the size bound (sse.max-event)")
        if t > self.deadline:
            raise _Fail("transport.total", self.total_message())
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
            raise _Fail("transport.broken", self.broken(f"TLS failed: {exc}")) from exc
        if plain and self.take(plain, t):
            return True
        return self.take(b"", t) if closed else False

    def read_error(self, exc: OSError) -> Exception:
        if self.may_be_stale and not self.got_any and exc.errno in _STALE_ERRNOS:
            return _Stale()
        return _Fail("transport.broken", self.broken(str(exc)))

    def expired(self, now: int) -> _Fail | None:
        """The time bound that ran out at ``now``, if any."""
        if now >= self.deadline:
            return _Fail("transport.total", self.total_message())
        if self.result.t_headers is None:
            if now >= self.result.t_send + self.first_byte_ns:
                return _Fail(
                    "transport.first-byte",
                    f"no response headers within {self.first_byte_ns / 1e9:g} s",
                )
        elif now >= self.last_read + self.idle_ns:
            return _Fail(
                "transport.idle",
                f"no byte for {self.idle_ns / 1e9:g} s after {self.tracker.events} event(s)",
            )
        return None

    def timed_out(self) -> _Fail:
        """A wait of the blocking read loop ran out: which bound was it?"""
        if _pc() >= self.deadline - 1_000_000:
            return _Fail("transport.total", self.total_message())
        if self.result.t_headers is None:
            return _Fail(
                "transport.first-byte", f"no response headers within {self.first_byte_ns / 1e9:g} s"
            )
        return _Fail(
            "transport.idle",
            f"no byte for {self.idle_ns / 1e9:g} s after {self.tracker.events} event(s)",
        )

    def total_message(self) -> str:
        total = (self.deadline - self.result.t_send) / 1e9
        return (
            f"the exchange did not end within {total:g} s ({self.tracker.events} event(s) so far)"
        )

    def broken(self, what: str) -> str:
        if self.result.t_headers is None:
            return f"{what} before the response headers"
        return f"{what} after {self.tracker.events} event(s)"

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
            if sum(map(len, self.error_body)) < _ERROR_BODY_MAX:
                self.error_body.append(data)
            return
        decoder = self.decoder
        events = decoder.feed(data, self.t)
        if not events:
            return
        tracker = self.tracker
        found = tracker.feed(events)
        if self.validator is not None:
            self.validator.feed(events)
        if events[-1].comment is not None:  # the reference server's send stamps
            self._lateness(events, tracker.first_index)
        if found and self.abort_after is not None and len(tracker.content_t) >= self.abort_after:
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


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


class _Reactor:
    """Reads every in-flight plain-HTTP stream of the process inside gevent's own event loop.

    Under gevent each ``sock.recv`` of a waiting greenlet costs a failed non-blocking read, a
    timeout object and two greenlet switches per read. Here each exchange gets one libev read
    watcher whose callback runs in the hub: it reads the ready socket once, stamps the read the
    moment it returns and feeds it on, with no greenlet switch and no second poll; the user
    greenlet sleeps until its exchange is over. Measured with a client that only reads (250
    streams from the reference server, 10 ms between events): 10.5 µs of CPU per read, against
    12.1 for one reader greenlet on its own epoll and ~14 when that greenlet also waits with a
    timeout, as it did. Time bounds are checked by one repeating timer every ``CHECK_S``.
    """

    CHECK_S: Final = 0.05

    def __init__(self) -> None:
        import gevent
        import gevent.event

        self._loop = gevent.get_hub().loop
        self._event_cls = gevent.event.Event
        self._active: dict[_Exchange, Any] = {}  # exchange -> its read watcher
        self._timer: Any = None

    def read(self, sock: Any, ex: _Exchange) -> None:
        """Wait (this greenlet) until the exchange is over; raise its failure, if any."""
        raw = getattr(sock, "_sock", sock)  # gevent's socket wraps a non-blocking one
        ex.raw = raw
        ex.last_read = ex.result.t_send
        ex.wake = self._event_cls()
        watcher = self._loop.io(raw.fileno(), _EVENT_READ)
        self._active[ex] = watcher
        watcher.start(self._ready, ex)
        if self._timer is None:
            self._timer = self._loop.timer(self.CHECK_S, self.CHECK_S)
            self._timer.start(self._check)
        try:
            ex.wake.wait()
        finally:
            self._forget(ex)
        if ex.failure is not None:
            raise ex.failure

    def _forget(self, ex: _Exchange) -> None:
        watcher = self._active.pop(ex, None)
        if watcher is not None:
            watcher.stop()
            watcher.close()
        if not self._active and self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = None

    def _end(self, ex: _Exchange, failure: BaseException | None) -> None:
        ex.failure = failure
        self._forget(ex)
        ex.wake.set()

    def _ready(self, ex: _Exchange) -> None:
        """The watcher's callback (in the hub: it must never block or raise)."""
        try:
            data = ex.raw.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._end(ex, ex.read_error(exc))
            return
        t = _pc()
        try:
            over = ex.take(data, t) if ex.tls is None else ex.take_read(data, t)
        except (_Fail, _Stale) as exc:
            self._end(ex, exc)
            return
        except Exception as exc:  # a bug must end one exchange, never the event loop
            self._end(ex, _Fail("transport.broken", f"client error: {exc!r}"))
            return
        if over:
            self._end(ex, None)

    def _check(self) -> None:
        now = _pc()
        for ex in list(self._active):
            failure = ex.expired(now)
            if failure is not None:
                self._end(ex, failure)


_REACTORS: dict[int, _Reactor] = {}


def _reactor() -> _Reactor:
    """The process's reactor (a forked worker process makes its own)."""
    pid = os.getpid()
    reactor = _REACTORS.get(pid)
    if reactor is None:
        reactor = _REACTORS[pid] = _Reactor()
    return reactor


class StreamClient:
    """One connection to an API root (``http(s)://host:port/prefix/v1``), reused across
    requests while the server keeps it alive."""

    def __init__(
        self,
        base_url: str,
        timeouts: Timeouts | None = None,
        *,
        send_stamps: bool = False,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) API root: {redact(base_url)!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        default_port = self.port == (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if default_port else f"{host}:{self.port}"
        self.timeouts = timeouts or Timeouts()
        self.send_stamps = send_stamps
        self.max_event_bytes = max_event_bytes
        self._ssl = ssl_context
        self._sock: Any = None
        self._tls: _TLS | None = None  # the connection's TLS state (https)
        self._idle_since = 0  # when the connection's last exchange ended

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._tls = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def path(self, api: str) -> str:
        return self.prefix + API_PATHS[api]

    def _alive(self) -> bool:
        """Whether the idle keep-alive connection is still open: nothing to read on it (a
        server that closed it has sent its FIN, and a byte there would be out of turn)."""
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def stream(
        self,
        api: str,
        body: bytes,
        headers: dict[str, str],
        tracker: StreamTracker,
        *,
        validator: StreamValidator | None = None,
        abort_after: int | None = None,
        on_send: Callable[[int], None] | None = None,
    ) -> StreamResult:
        """POST ``body`` to the API's streaming path and read the whole answer.

        ``abort_after``: close the connection once that many content events arrived (the
        interrupting user); the result is then ``aborted``. Never raises for a server's or the
        network's failure: those end up in ``error_kind``.
        """
        result = StreamResult(api, tracker)
        head = self._head(api, headers, len(body))
        t_out = self.timeouts
        if self._sock is not None and not self._alive():
            self.close()  # closed by the server while idle: nothing was sent on it
        for attempt in (0, 1):
            reused = self._sock is not None
            WATCH.start()
            result.t_send = t_send = _pc()
            if on_send is not None and attempt == 0:
                on_send(t_send)
            ex = _Exchange(result, validator, self.max_event_bytes, abort_after)
            ex.deadline = t_send + int(t_out.total * 1e9)
            ex.first_byte_ns = int(t_out.first_byte * 1e9)
            ex.idle_ns = int(t_out.idle * 1e9)
            ex.may_be_stale = reused and attempt == 0 and t_send - self._idle_since >= STALE_IDLE_NS
            try:
                sock = self._sock or self._connect(ex.deadline)
                ex.tls = tls = self._tls
                try:
                    request = head + body
                    sock.sendall(request if tls is None else tls.encrypt(request))
                except (OSError, ssl.SSLError) as exc:
                    if reused and attempt == 0:  # the server cannot have read the request
                        raise _Stale from exc
                    raise _Fail("transport.broken", f"sending the request failed: {exc}") from exc
                if _gevent_patched():
                    _reactor().read(sock, ex)
                else:
                    self._read(sock, ex)
            except _Stale:
                self.close()
                result = StreamResult(api, tracker, retried=True)
                continue
            except _Fail as fail:
                self.close()
                result.error_kind = fail.kind
                result.error = redact(fail.message)
            except BaseException:  # GreenletExit when Locust stops the user: no half state
                self.close()
                raise
            break
        if result.error_kind is None and (
            result.aborted or not ex.keep_alive or ex.close_delimited
        ):
            self.close()
        result.t_end = self._idle_since = _pc()
        self._finish(result, ex, validator)
        return result

    # -- internals -----------------------------------------------------------------------

    def _head(self, api: str, headers: dict[str, str], length: int) -> bytes:
        lines = [f"POST {self.path(api)} HTTP/1.1", f"host: {self.authority}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += [
            f"content-length: {length}",
            "accept-encoding: identity",
            f"user-agent: {_USER_AGENT}",
        ]
        if self.send_stamps:
            lines.append(f"{STAMP_HEADER}: 1")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    def _connect(self, deadline: int) -> Any:
        timeout = max(0.001, min(self.timeouts.connect, (deadline - _pc()) / 1e9))
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except TimeoutError as exc:
            raise _Fail(
                "transport.connect", f"no connection within {self.timeouts.connect:g} s"
            ) from exc
        except OSError as exc:
            raise _Fail("transport.connect", f"could not connect: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                tls = _TLS(self._ssl or tls_context(), self.host)
                tls.handshake(sock)
                self._tls = tls
        except TimeoutError as exc:
            sock.close()
            raise _Fail("transport.connect", "TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise _Fail("transport.connect", f"TLS handshake failed: {exc}") from exc
        self._sock = sock
        return sock

    def _read(self, sock: Any, ex: _Exchange) -> None:
        """Read with the socket's own waits (without gevent: plain blocking sockets)."""
        ex.raw = sock
        recv = sock.recv
        settimeout = sock.settimeout
        idle = self.timeouts.idle
        first_byte = self.timeouts.first_byte
        while True:
            left = (ex.deadline - _pc()) / 1e9
            if left <= 0:
                raise _Fail("transport.total", ex.total_message())
            settimeout(min(idle if ex.result.t_headers is not None else first_byte, left))
            try:
                data = recv(_READ)
            except TimeoutError as exc:
                raise ex.timed_out() from exc
            except OSError as exc:
                raise ex.read_error(exc) from exc
            if ex.take_read(data, _pc()):
                return

    def _finish(
        self, result: StreamResult, ex: _Exchange, validator: StreamValidator | None
    ) -> None:
        result.lag_ns = ex.lag
        status = result.status
        if result.error_kind is None and status is not None and not 200 <= status < 300:
            result.error_kind = f"http.{status}"
            text = b"".join(ex.error_body)[:400].decode("utf-8", "replace")
            result.error = redact(f"HTTP {status}: {text}".strip())
        if result.aborted or not ex.sse:
            return
        truncated = result.error_kind is not None
        if not truncated:
            ex.decoder.finish()
        if result.error_kind is None and result.tracker.error is not None:
            result.error_kind = "stream.error"
            result.error = redact(f"error event in the stream: {result.tracker.error}")
        if validator is not None:
            validator.finish(truncated=truncated)
            stalls = WATCH.between(result.t_send, _pc())
            found, _ = check_http(
                status, result.content_type, result.t_send, result.tracker.content_t, stalls
            )
            wire = at_api_level(ex.decoder.findings, result.api)
            result.findings = found + wire + validator.findings
