"""Faults that do not depend on the API: HTTP, SSE encoding, timing and transport.

Their effects work on any endpoint's reply and frames. The request and error-answer
effects (:func:`accept_any_key`, :func:`serve_any_model`, :func:`drop_tools`,
:func:`error_as_5xx`, :func:`error_as_403`, :func:`error_as_sse`, :func:`error_detail_only`)
are generic too, but the rules they trip are named per API, so each API registers its own
faults with them.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import replace
from typing import Final

import orjson

from ..endpoint import DEFAULT_MODEL, MODELS, Context, Reply, Request, sse_event
from ..send import CLOSE, DATA, EVENT, HEAD, RESET, STALL, WIRE, Frame
from ..timing import Timing
from .base import Fault

__all__ = [
    "ANTHROPIC_RULES",
    "HUGE_EVENT_BYTES",
    "PARAMETRIC",
    "WIRE_FAULTS",
    "accept_any_key",
    "drop_tools",
    "error_as_5xx",
    "error_as_403",
    "error_as_sse",
    "error_detail_only",
    "serve_any_model",
]

HUGE_EVENT_BYTES: Final = 2 * 1024 * 1024  # the huge event's data line is a little longer
_DRIP_NS: Final = 100_000_000  # slow-drip: one byte every 100 ms
_BUFFER_NS: Final = 600_000_000  # buffered: hold everything at least this long
_BOM: Final = b"\xef\xbb\xbf"


# -- request and reply level -----------------------------------------------------------------


def accept_any_key(req: Request, ctx: Context) -> Request:
    """Authenticate whatever key was sent (the request carries the server's key from here)."""
    if ctx.api_key is None:
        return req
    headers = {**req.headers, "authorization": f"Bearer {ctx.api_key}", "x-api-key": ctx.api_key}
    return replace(req, headers=headers)


def serve_any_model(req: Request, ctx: Context) -> Request:
    """Serve an unknown model name with the default model (a gateway that maps any name)."""
    try:
        body = orjson.loads(req.body)
    except orjson.JSONDecodeError:
        return req
    if not isinstance(body, dict) or body.get("model") in MODELS:
        return req
    return replace(req, body=orjson.dumps({**body, "model": DEFAULT_MODEL}))


def drop_tools(req: Request, ctx: Context) -> Request:
    """Drop the request's tools and tool_choice (a gateway that loses them): the model then
    answers in text, whatever tool_choice forced."""
    try:
        body = orjson.loads(req.body)
    except orjson.JSONDecodeError:
        return req
    if not isinstance(body, dict) or "tools" not in body:
        return req
    kept = {k: v for k, v in body.items() if k not in ("tools", "tool_choice")}
    return replace(req, body=orjson.dumps(kept))


def error_as_5xx(reply: Reply) -> Reply:
    """A client error answered as a server error (500), body and all."""
    if 400 <= reply.status < 500:
        reply.status = 500
    return reply


def error_as_403(reply: Reply) -> Reply:
    """An authentication error answered 403 instead of 401."""
    if reply.status == 401:
        reply.status = 403
    return reply


def error_as_sse(reply: Reply) -> Reply:
    """An error answered as an event stream: same status, the JSON as one ``data:`` event."""
    if reply.status < 400:
        return reply
    reply.events = [sse_event(reply.body)]
    reply.body = b""
    reply.set_header("content-type", "text/event-stream; charset=utf-8")
    return reply


def error_detail_only(reply: Reply) -> Reply:
    """An error body in a framework's default shape, ``{"detail": "..."}`` (FastAPI)."""
    if reply.status < 400:
        return reply
    try:
        message = orjson.loads(reply.body)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = "error"
    reply.body = orjson.dumps({"detail": message})
    return reply


def _force_stream(req: Request, ctx: Context) -> Request:
    try:
        body = orjson.loads(req.body)
    except orjson.JSONDecodeError:
        return req
    if not isinstance(body, dict) or body.get("stream"):
        return req
    return replace(req, body=orjson.dumps({**body, "stream": True}))


def _status_201(reply: Reply) -> Reply:
    if reply.events is not None and reply.status == 200:
        reply.status = 201
    return reply


def _text_plain(reply: Reply) -> Reply:
    if reply.events is not None:
        reply.set_header("content-type", "text/plain; charset=utf-8")
    return reply


# -- frame level -------------------------------------------------------------------------------


def _events(frames: list[Frame]) -> list[int]:
    return [i for i, f in enumerate(frames) if f.kind == EVENT]


def _buffered(frames: list[Frame], timing: Timing) -> list[Frame]:
    """A buffering proxy: every event held back and released in one burst at the end."""
    release = max([_BUFFER_NS, *(f.at for f in frames)])
    return [f._replace(at=release) if f.kind == EVENT else f for f in frames]


def _crlf(frames: list[Frame], timing: Timing) -> list[Frame]:
    return [
        f._replace(data=f.data.replace(b"\n", b"\r\n")) if f.kind == EVENT else f for f in frames
    ]


def _bom(frames: list[Frame], timing: Timing) -> list[Frame]:
    """A BOM right before the first event: a conforming decoder drops it; the SDK decoders
    keep it in the first field name ("\ufeffdata"), which they ignore, so the first event
    is lost to them."""
    events = _events(frames)
    if not events:
        return frames
    first = frames[events[0]]
    return [*frames[: events[0]], first._replace(data=_BOM + first.data), *frames[events[0] + 1 :]]


def _comments(frames: list[Frame], timing: Timing) -> list[Frame]:
    """A keep-alive comment before every fifth event, starting with the first."""
    out: list[Frame] = []
    seen = 0
    for frame in frames:
        if frame.kind == EVENT:
            if seen % 5 == 0:
                out.append(Frame(frame.at, b": keep-alive\n\n", DATA))
            seen += 1
        out.append(frame)
    return out


def _insert(frames: list[Frame], at_event: int, data: bytes, kind: int) -> list[Frame]:
    """``frames`` with a new frame before event number ``at_event`` (negative: from the end),
    sent with it; unchanged when there is no such event (e.g. a JSON answer)."""
    events = _events(frames)
    if not -len(events) <= at_event < len(events):
        return frames
    i = events[at_event]
    return [*frames[:i], Frame(frames[i].at, data, kind), *frames[i:]]


def _meta_only(frames: list[Frame], timing: Timing) -> list[Frame]:
    """An event of only an ``id:`` field, right after the first event."""
    return _insert(frames, 1, b"id: 1\n\n", DATA)


def _unterminated(frames: list[Frame], timing: Timing) -> list[Frame]:
    """After the real last event, a copy of it without its blank line: the body ends inside
    an event, which a conforming client drops (so the stream is otherwise complete)."""
    events = _events(frames)
    if not events:
        return frames
    last = frames[events[-1]]
    return [*frames, Frame(last.at, last.data.rstrip(b"\r\n") + b"\n", DATA)]


def _huge_event(frames: list[Frame], timing: Timing) -> list[Frame]:
    """An event of more than HUGE_EVENT_BYTES before the last event."""
    data = b'data: {"padding": "' + b"x" * HUGE_EVENT_BYTES + b'"}\n\n'
    return _insert(frames, -1, data, EVENT)


def _cut(frames: list[Frame], *tail: tuple[bytes, int]) -> list[Frame]:
    """The head and the first half of the events (at least two), then ``tail`` at the time
    the next event was due."""
    events = _events(frames)
    keep = max(2, len(events) // 2)
    if keep >= len(events):
        return [*frames, *(Frame(frames[-1].at, data, kind) for data, kind in tail)]
    cut = events[keep]
    return [*frames[:cut], *(Frame(frames[cut].at, data, kind) for data, kind in tail)]


@functools.cache
def drop_rate(value: str) -> Fault:
    """``drop-rate=P``: a fraction P of the streams is cut mid-body (half the events, then
    the connection closes). Exactly P: of any run of consecutive requests of the process,
    request n is cut when floor((n + 1)·P) > floor(n·P) — a load test measures the client's
    accounting, not the luck of a coin. One fault object (and counter) per value."""
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"drop-rate takes a fraction between 0 and 1, not {value!r}")
    counter = itertools.count()

    def frames(frames: list[Frame], timing: Timing) -> list[Frame]:
        n = next(counter)
        if math.floor((n + 1) * rate) > math.floor(n * rate):
            return _cut(frames, (b"", CLOSE))
        return frames

    return Fault(f"drop-rate={value}", "any", ("transport.broken",), "plain",
                 "that fraction of the streams is cut mid-body: the connection closes after "
                 "half the events (exactly that fraction of consecutive requests)",
                 frames=frames)  # fmt: skip


# The rules a wire fault trips against the Anthropic API where they are not its rules with
# {api} filled in (its anthropic- copy is registered with these): the anthropic SDK skips an
# event without a name, so it reads the id-only event fine.
ANTHROPIC_RULES: Final = {"meta-only": ("sse.meta-only",)}

# Faults that take a value (``name=value``), by name: value -> Fault.
PARAMETRIC: Final = {"drop-rate": drop_rate}


def _stall_headers(frames: list[Frame], timing: Timing) -> list[Frame]:
    return [Frame(0, b"", STALL)]


def _stall_mid(frames: list[Frame], timing: Timing) -> list[Frame]:
    return _cut(frames, (b"", STALL))


def _reset(frames: list[Frame], timing: Timing) -> list[Frame]:
    return _cut(frames, (b"", RESET))


def _bad_chunked(frames: list[Frame], timing: Timing) -> list[Frame]:
    return _cut(frames, (b"zz\r\nthis is not a chunk\r\n", WIRE), (b"", CLOSE))


def _slow_drip(frames: list[Frame], timing: Timing) -> list[Frame]:
    """The head at once, then the body one byte every 100 ms."""
    body = b"".join(f.data for f in frames if f.kind in (EVENT, DATA))
    return [
        *(f for f in frames if f.kind == HEAD),
        *(Frame((i + 1) * _DRIP_NS, body[i : i + 1], DATA) for i in range(len(body))),
    ]


def _close_at_once(frames: list[Frame], timing: Timing) -> list[Frame]:
    return [Frame(0, b"", CLOSE)]


WIRE_FAULTS: Final = (
    Fault("status-201", "any", ("http.status",), "plain",
          "the stream is answered 201 Created instead of 200 (a warning: the SDKs read any "
          "2xx as success)", reply=_status_201, weaker=("http.status",)),
    Fault("wrong-content-type", "any", ("http.content-type",), "plain",
          "the stream is labelled text/plain", reply=_text_plain),
    Fault("stream-false-sse", "any", ("http.stream-false-json",), "non-stream",
          "a request without stream: true is answered with an event stream",
          request=_force_stream),
    Fault("buffered", "any", ("http.incremental",), "plain",
          "every event is held back and sent in one burst at the end (a buffering proxy)",
          frames=_buffered),
    Fault("crlf", "any", ("sse.line-endings",), "plain",
          "CRLF line endings in every event", frames=_crlf),
    Fault("bom", "any", ("sse.bom", "sdk.{api}-accumulate"), "plain",
          "the body starts with a UTF-8 byte order mark (the SDKs lose the first event)",
          frames=_bom),
    Fault("unterminated", "any", ("sse.terminated",), "plain",
          "the body ends inside an event: a copy of the last event without its blank line",
          frames=_unterminated),
    Fault("meta-only", "any", ("sse.meta-only", "sdk.openai-accumulate"), "plain",
          "an event made only of an id: field (the openai SDK parses its empty data as JSON)",
          frames=_meta_only),
    Fault("comments", "any", ("sse.comments",), "plain",
          "': keep-alive' comment lines between events (allowed; reported as INFO)",
          frames=_comments),
    Fault("huge-event", "any", ("sse.max-event",), "plain",
          f"an event of more than {HUGE_EVENT_BYTES} bytes before the last one (trips the "
          "bound only when the client's max event size is at most that)",
          frames=_huge_event),
    Fault("connect-refused", "any", ("transport.connect",), "plain",
          "url_for() points at a port that refuses connections (used as a path prefix on "
          "the live port, the connection is closed without an answer)",
          frames=_close_at_once, refuses_connect=True),
    Fault("stall-headers", "any", ("transport.first-byte",), "plain",
          "no response headers ever; the connection stays open (until the client leaves)",
          frames=_stall_headers),
    Fault("stall-mid", "any", ("transport.idle",), "plain",
          "half of the events, then silence with the connection open", frames=_stall_mid),
    Fault("slow-drip", "any", ("transport.total",), "plain",
          "the body one byte every 100 ms: never idle, never done in time", frames=_slow_drip),
    Fault("reset", "any", ("transport.broken",), "plain",
          "half of the events, then a TCP reset", frames=_reset),
    Fault("bad-chunked", "any", ("transport.broken",), "plain",
          "half of the events, then bytes that are not a valid chunk, then the connection "
          "closes", frames=_bad_chunked),
)  # fmt: skip
