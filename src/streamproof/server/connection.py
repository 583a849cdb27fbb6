"""One HTTP/1.1 connection: an asyncio ``Protocol`` fed through httptools' C parser.

httptools handles the request grammar, chunked request bodies and ``should_keep_alive()``;
this class adds what a server needs around it: size caps (413 for a body over 4 MiB, 431 for
oversized headers), requests queued while a response is streaming (pipelining), keep-alive,
and cancelling the response when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from time import perf_counter_ns
from typing import Final, cast

import httptools

from .app import App
from .endpoint import Request
from .send import Clock, Plan, Sender
from .timing import SendStats

__all__ = ["MAX_BODY_BYTES", "MAX_HEADER_BYTES", "Connection"]

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
MAX_HEADER_BYTES: Final = 64 * 1024
_MAX_QUEUED: Final = 16  # pipelined requests waiting behind a response


class Connection(asyncio.Protocol):
    """Serves requests in order; at most one response is being sent at a time."""

    def __init__(
        self, app: App, clock: Clock, stats: SendStats, cap_ns: int, registry: set[Connection]
    ) -> None:
        self._app = app
        self._clock = clock
        self._stats = stats
        self._cap_ns = cap_ns
        self._registry = registry
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[Request] = deque()
        self._sender: Sender | None = None
        self._closing = False
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._head_size = 0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._registry.add(self)
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._registry.discard(self)
        self._queue.clear()
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None

    def eof_received(self) -> bool:
        return False  # the client is done: close (a pending stream is cancelled)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # refused in on_headers_complete
        except httptools.HttpParserError:
            self._refuse(400, "Malformed HTTP request.", "bad_request")

    def abort(self) -> None:
        """Drop the connection at once (server shutdown)."""
        if self._transport is not None:
            self._transport.abort()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = bytearray()
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        self._grow_head(len(name) + len(value))

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            self._refuse(413, f"Request body over {MAX_BODY_BYTES} bytes.", "body_too_large")
        elif "upgrade" in self._headers:  # httptools stops parsing HTTP/1.1 after an Upgrade
            self._refuse(400, "Protocol upgrades (e.g. h2c) are not supported.", "bad_request")
        elif self._headers.get("expect", "").lower() == "100-continue" and self._idle():
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it

    def on_body(self, body: bytes) -> None:
        if self._closing:
            return
        self._body += body
        if len(self._body) > MAX_BODY_BYTES:
            self._refuse(413, f"Request body over {MAX_BODY_BYTES} bytes.", "body_too_large")

    def on_message_complete(self) -> None:
        if self._closing:
            return
        if len(self._queue) >= _MAX_QUEUED:
            self._refuse(429, "Too many pipelined requests.", "too_many_requests")
            return
        self._queue.append(self._request(bytes(self._body), self._parser.should_keep_alive()))
        if self._sender is None:
            self._next()

    # -- serving -----------------------------------------------------------------------------

    def _idle(self) -> bool:
        """No response is being sent or waiting: the connection may write."""
        return self._transport is not None and self._sender is None and not self._queue

    def _request(self, body: bytes, keep_alive: bool) -> Request:
        return Request(
            self._parser.get_method().decode("ascii", "replace"),
            self._url.decode("latin-1"),
            self._headers,
            body,
            keep_alive,
        )

    def _grow_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEADER_BYTES and not self._closing:
            message = f"Request headers over {MAX_HEADER_BYTES} bytes."
            self._refuse(431, message, "headers_too_large")

    def _next(self) -> None:
        if self._closing or not self._queue or self._sender is not None:
            return
        req = self._queue.popleft()
        t0 = perf_counter_ns()
        self._serve(self._app.plan(req), t0)

    def _serve(self, plan: Plan, t0: int) -> None:
        assert self._transport is not None
        self._sender = Sender(
            self._clock, self._transport, plan, self._stats, self._cap_ns, self._done
        )
        self._sender.start(t0)

    def _done(self, reusable: bool) -> None:
        self._sender = None
        if not reusable:
            self._closing = True
            if self._transport is not None and not self._transport.is_closing():
                self._transport.close()
        elif self._queue:
            asyncio.get_running_loop().call_soon(self._next)

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer an unusable request and close: the rest of the input cannot be trusted."""
        self._closing = True
        self._queue.clear()
        if self._transport is None:
            return
        if self._sender is not None:  # mid-response: there is no clean way to answer
            self._sender.cancel()
            self._sender = None
            self._transport.close()
            return
        req = self._request(b"", keep_alive=False)
        self._serve(self._app.refuse(req, status, message, code), perf_counter_ns())
