"""What an API endpoint is given and what it returns; helpers every endpoint shares.

An endpoint is a plain function ``(Request, Context) -> Reply``: it checks the request,
generates the answer and serialises it (a JSON body, or a list of SSE events). It never
touches the network and never thinks about time: the app turns the reply into timed frames
(see ``app.py``). An API is a routing table plus its error shape (:class:`Api`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .timing import Timing

if TYPE_CHECKING:
    from .faults.base import FaultSet
    from .script import Scripted

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_MODEL",
    "MODELS",
    "Api",
    "Context",
    "Handler",
    "Reply",
    "Request",
    "RequestError",
    "Store",
    "StreamInfo",
    "Turn",
    "content_ticks",
    "dumps_with_raw",
    "json_reply",
    "new_id",
    "sse_event",
    "stream_reply",
]

DEFAULT_API_KEY = "sk-streamproof-local"
# The models every endpoint serves; any other name is answered 404 (the suite's unknown-model
# scenario asks for "streamproof-no-such-model"). The list is what GET /v1/models shows.
MODELS = ("streamproof-1", "streamproof-1-mini")
DEFAULT_MODEL = MODELS[0]


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed HTTP request. ``target`` is the request-target as sent (selection prefixes
    and query included); ``path`` is the API path after the prefixes (set by the app)."""

    method: str
    target: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    keep_alive: bool = True
    path: str = ""


@dataclass(slots=True)
class Reply:
    """An endpoint's answer. ``events`` set: a stream (one serialised SSE event each, sent
    with chunked encoding at the stream's timing); otherwise ``body`` with Content-Length.
    ``ticks`` (optional, one per event): event ``i`` is due ``ticks[i]`` gaps after the first
    token (see ``timing.event_offsets``), so that only content events take a gap."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    events: list[bytes] | None = None
    ticks: list[int] | None = None

    def set_header(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != name] + [(name, value)]


class Store:
    """What a server keeps between requests, by id (the Responses API's stored responses):
    the ``size`` most recent only, so that a long load run holds bounded memory."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._kept: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._kept[key] = value
            self._kept.move_to_end(key)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)

    def get(self, key: str) -> Any:
        with self._lock:
            return self._kept.get(key)


@dataclass(frozen=True, slots=True)
class Context:
    """Per-request settings: the server's key (None: no auth), the stream timing, the faults
    selected for this request, the scripted reply (None: generate one), its request id and
    the server's :class:`Store` (None: nothing is kept)."""

    api_key: str | None
    timing: Timing
    faults: FaultSet
    scripted: Scripted | None = None
    request_id: str = field(default_factory=lambda: new_id("req_"))
    store: Store | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """Where a conversation stands: what a scripted rule matches on, and what decides
    whether a tool is called."""

    text: str  # the last turn's text: the user's message, or the tool results it returns
    tools: frozenset[str]  # the names of the tools offered
    tool_result: bool  # the last turn returns a tool result


Handler = Callable[[Request, Context], Reply]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a chunk-level fault may need besides the chunks: the request and the true usage."""

    body: Mapping[str, Any]
    usage: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Api:
    """One API: its routes by path and method, how it shapes an error (used for the app's own
    refusals too: unknown path or fault, body too large), where a conversation stands in a
    request body (:class:`Turn`, None for a body that is not one), and which requests to an
    unknown path are its own (by path prefix or by a header only its clients send)."""

    name: str
    routes: Mapping[str, Mapping[str, Handler]]
    error: Callable[[int, str, str | None, Context], Reply]  # (status, message, code, ctx)
    turn: Callable[[Any], Turn | None]
    prefixes: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()

    def claims(self, path: str, headers: Mapping[str, str]) -> bool:
        return path.startswith(self.prefixes) or any(h in headers for h in self.headers)


class RequestError(Exception):
    """A refused request: the endpoint turns it into its API's error shape."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def new_id(prefix: str, hex_chars: int = 24) -> str:
    return prefix + os.urandom((hex_chars + 1) // 2).hex()[:hex_chars]


def json_reply(status: int, obj: Any, ctx: Context) -> Reply:
    return Reply(
        status,
        [("content-type", "application/json"), ("x-request-id", ctx.request_id)],
        orjson.dumps(obj),
    )


def stream_reply(events: list[bytes], ctx: Context) -> Reply:
    return Reply(
        200,
        [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("x-request-id", ctx.request_id),
        ],
        events=events,
    )


def content_ticks(items: list[Any], is_content: Callable[[Any], bool]) -> list[int]:
    """Gap slots of a stream's events (``Reply.ticks``): the k-th content event goes at tick
    k; any other event with the content before it (the events before the first content
    event: with it)."""
    ticks = []
    seen = 0
    for item in items:
        if is_content(item):
            ticks.append(seen)
            seen += 1
        else:
            ticks.append(max(0, seen - 1))
    return ticks


def sse_event(data: bytes, name: bytes | None = None) -> bytes:
    """One event: optional ``event:`` line, one ``data:`` line, the blank line."""
    if name is None:
        return b"data: %b\n\n" % data
    return b"event: %b\ndata: %b\n\n" % (name, data)


def dumps_with_raw(obj: Any, raw: Mapping[str, bytes]) -> bytes:
    """JSON with some string values replaced by raw bytes, which JSON cannot express (a lone
    UTF-8 lead byte, an invalid byte). ``obj`` holds the keys of ``raw`` as placeholder
    strings; each must start with a NUL so that it cannot occur in real text."""
    out = orjson.dumps(obj)
    for placeholder, data in raw.items():
        out = out.replace(orjson.dumps(placeholder)[1:-1], data)
    return out
