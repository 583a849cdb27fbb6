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
(:class:`Reactor`) instead of in a greenlet blocked in ``recv`` per stream. In Locust
(``benchmarks/bench_load.py``, figures in BENCHMARKS.md) one process keeps lateness p50 under
5 ms up to ~54k events/s with validation off and ~38k with every event validated, where stock
HttpUser ``iter_lines(chunk_size=None)`` passes 5 ms at ~26-28k with a p99 near 100 ms;
FastHttpUser's ``iter_lines`` reads 1 KiB blocks (``response.read(1024)`` waits for the block
to fill), batches ~8 events and is ~20 ms late at p50 at any rate. A read returns as soon as
any byte is there (no read-ahead buffer), so a stamp is never late by more than the time the
process's one core takes to get to it. HTTPS takes the same path: TLS runs on memory BIOs
(:class:`TLS`), so the encrypted read is stamped and then decrypted. Without gevent (a plain
script) the client reads with the socket's own blocking waits.

Time bounds as in ``capture.Timeouts``: connect, first byte (until the response headers), idle
(the longest silence between reads) and total; each one that runs out is a failure of kind
``transport.<name>``, never a hang. Not supported: proxies and redirects (an API root is
addressed directly), HTTP/2.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from ..capture import Timeouts, tls_context
from ..endpoints import API_PATHS
from ..findings import Finding
from ..redact import redact
from ..sse import DEFAULT_MAX_EVENT_BYTES
from ..stalls import WATCH
from ..validators.answers import Answer, judge
from ..validators.model import StreamModel
from .exchange import READ_SIZE, TLS, Exchange, Fail, Stale
from .reactor import gevent_patched, reactor

__all__ = ["STAMP_HEADER", "StreamClient", "StreamResult"]

STAMP_HEADER: Final = "x-streamproof-stamps"
# A reused connection that fails before the first response byte is taken for stale (and the
# request sent again, once, and counted) only when it had been idle this long: a server's
# keep-alive timeout is seconds (uvicorn and Node 5 s, nginx 75 s), so a connection reused
# at once that the server closes on our request is the server dropping it — a failure. A
# connection the server already closed is found before sending (``_alive``) and replaced
# without a retry, since nothing was sent on it.
STALE_IDLE_NS: Final = 1_000_000_000
_pc = time.perf_counter_ns
_USER_AGENT: Final = "streamproof-load"


@dataclass(slots=True)
class StreamResult:
    """Everything one exchange showed, as stamps (``perf_counter_ns``) and counts.

    ``error_kind`` is None for a complete 2xx stream, else ``http.<status>``,
    ``transport.{connect,first-byte,idle,total,broken}`` or ``stream.error`` (an error event
    or payload inside a 200 stream). ``findings`` holds the protocol findings (validation on).
    ``retried``: the request was sent a second time after a stale keep-alive connection.
    """

    api: str
    model: StreamModel  # the stream model: stamps, usage, end; findings with validation on
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
        model = self.model
        violations = self.violations()
        must = [rule for rule, level in violations.items() if level == "MUST"]
        completed = self.error_kind is None and not self.aborted
        error, detail = self.error_kind, self.error
        if error is None and must:
            error = "protocol"
            first = next(f for f in self.findings or () if f.rule == must[0])
            detail = redact(f"{first.rule}: {first.message}"[:300])
        tokens, source = model.output_tokens
        end, last, visible = model.end_t, model.last_t, model.visible_t
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
            "content_us": [(t - t0) // 1000 for t in model.content_t],
            "visible_us": None if visible is None else (visible - t0) // 1000,
            "end_us": None if end is None else (end - t0) // 1000,
            "last_us": None if last is None else (last - t0) // 1000,
            "dur_us": (self.t_end - t0) // 1000,
            "tokens": tokens,
            "source": source,
            "events": model.events,
            "bytes": self.body_bytes,
            "ttft_lag_us": None if self.ttft_lag_ns is None else self.ttft_lag_ns // 1000,
        }


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
        self._tls: TLS | None = None  # the connection's TLS state (https)
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
        model: StreamModel,
        *,
        abort_after: int | None = None,
        on_send: Callable[[int], None] | None = None,
    ) -> StreamResult:
        """POST ``body`` to the API's streaming path and read the whole answer.

        ``abort_after``: close the connection once that many content events arrived (the
        interrupting user); the result is then ``aborted``. Never raises for a server's or the
        network's failure: those end up in ``error_kind``.
        """
        result = StreamResult(api, model)
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
            ex = Exchange(result, self.max_event_bytes, abort_after)
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
                        raise Stale from exc
                    raise Fail("transport.broken", f"sending the request failed: {exc}") from exc
                if gevent_patched():
                    reactor().read(sock, ex)
                else:
                    self._read(sock, ex)
            except Stale:
                self.close()
                result = StreamResult(api, model, retried=True)
                continue
            except Fail as fail:
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
        self._finish(result, ex)
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
            raise Fail(
                "transport.connect", f"no connection within {self.timeouts.connect:g} s"
            ) from exc
        except OSError as exc:
            raise Fail("transport.connect", f"could not connect: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                tls = TLS(self._ssl or tls_context(), self.host)
                tls.handshake(sock)
                self._tls = tls
        except TimeoutError as exc:
            sock.close()
            raise Fail("transport.connect", "TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise Fail("transport.connect", f"TLS handshake failed: {exc}") from exc
        self._sock = sock
        return sock

    def _read(self, sock: Any, ex: Exchange) -> None:
        """Read with the socket's own waits (without gevent: plain blocking sockets)."""
        ex.raw = sock
        recv = sock.recv
        settimeout = sock.settimeout
        idle = self.timeouts.idle
        first_byte = self.timeouts.first_byte
        while True:
            left = (ex.deadline - _pc()) / 1e9
            if left <= 0:
                raise Fail("transport.total", ex.total_message())
            settimeout(min(idle if ex.result.t_headers is not None else first_byte, left))
            try:
                data = recv(READ_SIZE)
            except TimeoutError as exc:
                raise ex.timed_out() from exc
            except OSError as exc:
                raise ex.read_error(exc) from exc
            if ex.take_read(data, _pc()):
                return

    def _finish(self, result: StreamResult, ex: Exchange) -> None:
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
        model = result.model
        if result.error_kind is None and model.error_text is not None:
            result.error_kind = "stream.error"
            result.error = redact(f"error event in the stream: {model.error_text}")
        if model.rules:  # validation on
            model.finish(truncated=truncated)
            answer = Answer(
                result.api,
                "stream",
                status,
                result.content_type,
                request_id=ex.headers.get("request-id"),
                t_send=result.t_send,
                content_t=model.content_t,
                stalls=WATCH.between(result.t_send, _pc()),
                wire=ex.decoder.findings,
            )
            result.findings = judge(answer).findings + model.findings
