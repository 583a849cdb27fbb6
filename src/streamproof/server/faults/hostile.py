"""Hostile endpoints: what a broken or malicious server does to a client, as faults.

They are API-agnostic (``api="any"``, run with ``--api openai``) and each names the rule or
transport finding it makes the suite report. The suite must survive every one of them: end
within its time bounds, in bounded memory, with a plain finding, and never follow a
redirect to another origin with the key. Big bodies are never materialised: the 100 MB
line is one REPEAT frame (``send.repeat``) written as the socket drains, and the gzip bomb
is compressed once per process.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from contextvars import ContextVar
from functools import cache
from typing import Any, Final

from ..endpoint import Context, Reply, Request, StreamInfo
from ..send import CLOSE, DATA, EVENT, HEAD, STALL, Frame, repeat
from ..timing import Timing
from .base import Fault

__all__ = [
    "ANTHROPIC_RULES",
    "BOMB_INFLATED_BYTES",
    "ENDLESS_EVENTS",
    "FIREHOSE_BLOCKS",
    "FLOOD_EVENTS",
    "HOSTILE_FAULTS",
    "HUGE_LINE_BYTES",
]

HUGE_LINE_BYTES: Final = 100 * 1024 * 1024  # one line of 100 MiB
_BLOCK: Final = 1024 * 1024
BOMB_INFLATED_BYTES: Final = 256 * 1024 * 1024  # the gzip bomb inflates to this (~1000x)
_BOMB_LINE: Final = 1024 * 1024  # the bomb is comment lines of this size (under any bound)
ENDLESS_EVENTS: Final = 30_000  # the never-ending stream: one event every 2 ms for 60 s
_ENDLESS_GAP_NS: Final = 2_000_000
FLOOD_EVENTS: Final = 60_000  # tiny events, 100 000 a second
_FIREHOSE_BLOCK_EVENTS: Final = 1000
FIREHOSE_BLOCKS: Final = 1_000_000  # a billion events: it never ends within any time bound
_FLOOD_GAP_NS: Final = 10_000
DEEP_LEVELS: Final = 100_000
HUGE_DIGITS: Final = 10_000

_HTML: Final = (
    b"<!DOCTYPE html>\n<html>\n<head><title>%d %s</title></head>\n<body>\n"
    b"<center><h1>%d %s</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n"
)
# The Host of the request being planned, for the redirect's Location (the request and reply
# edits of one request run in one synchronous App.plan call, so this never crosses requests).
_HOST: ContextVar[str] = ContextVar("streamproof_hostile_host", default="127.0.0.1")


def _events(frames: list[Frame]) -> list[int]:
    return [i for i, f in enumerate(frames) if f.kind == EVENT]


def _head(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.kind == HEAD]


# -- timing and size -----------------------------------------------------------------------


def _stall_after_headers(frames: list[Frame], timing: Timing) -> list[Frame]:
    """The response headers, then silence with the connection open."""
    if not _events(frames):
        return frames
    return [*_head(frames), Frame(0, b"", STALL)]


def _content_event(events: list[int]) -> int:
    """The middle event: a content event of a plain-text stream in both APIs (the first ones
    open the message, the last ones close it)."""
    return events[len(events) // 2]


def _endless(frames: list[Frame], timing: Timing) -> list[Frame]:
    """The events up to the middle one, then that content event again every 2 ms, never
    ending (until the server's cap resets it)."""
    events = _events(frames)
    if len(events) < 3:
        return frames
    middle = _content_event(events)
    start = frames[middle]
    keep = frames[: middle + 1]
    again = (Frame(start.at + (i + 1) * _ENDLESS_GAP_NS, start.data) for i in range(ENDLESS_EVENTS))
    return [*keep, *again, Frame(start.at + (ENDLESS_EVENTS + 1) * _ENDLESS_GAP_NS, b"", STALL)]


def _flood(frames: list[Frame], timing: Timing) -> list[Frame]:
    """After the middle event: FLOOD_EVENTS copies of it (a content event with one word) at
    100 000 a second; the stream then ends normally."""
    events = _events(frames)
    if len(events) < 3:
        return frames
    middle = _content_event(events)
    start = frames[middle]
    flood = [Frame(start.at + i * _FLOOD_GAP_NS, start.data) for i in range(FLOOD_EVENTS)]
    shift = FLOOD_EVENTS * _FLOOD_GAP_NS
    rest = [f._replace(at=f.at + shift) for f in frames[middle + 1 :]]
    return [*frames[: middle + 1], *flood, *rest]


def _firehose(frames: list[Frame], timing: Timing) -> list[Frame]:
    """The events up to the middle one, then that content event again as fast as the client
    reads, never ending (a REPEAT frame written as the socket drains, until the server's
    cap): a client that keeps what it reads runs out of memory."""
    events = _events(frames)
    if len(events) < 3:
        return frames
    middle = _content_event(events)
    start = frames[middle]
    block = start.data * _FIREHOSE_BLOCK_EVENTS
    return [*frames[: middle + 1], repeat(start.at, block, FIREHOSE_BLOCKS)]


def _huge_line(frames: list[Frame], timing: Timing) -> list[Frame]:
    """After the first event, a ``data:`` line of 100 MiB that never ends (written a block
    at a time as the client reads), then the connection closes."""
    events = _events(frames)
    if not events:
        return frames
    first = frames[events[0]]
    return [
        *frames[: events[0] + 1],
        Frame(first.at, b'data: {"padding": "', DATA),
        repeat(first.at, b"x" * _BLOCK, HUGE_LINE_BYTES // _BLOCK),
        Frame(first.at, b'"}\n\n', DATA),
        Frame(first.at, b"", CLOSE),
    ]


# -- content encoding ----------------------------------------------------------------------


def _gzip_header(reply: Reply) -> Reply:
    if reply.events is not None:
        reply.set_header("content-encoding", "gzip")
    return reply


@cache
def _bomb_tail() -> bytes:
    """Gzip members inflating to BOMB_INFLATED_BYTES of comment lines: one member of one
    1 MiB line (~1 KiB compressed) repeated, so that it costs milliseconds to build."""
    line = b":" + b"x" * (_BOMB_LINE - 2) + b"\n"
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = z.compress(line) + z.flush()
    return member * (BOMB_INFLATED_BYTES // _BOMB_LINE)


def _gzip_bomb(frames: list[Frame], timing: Timing) -> list[Frame]:
    """The stream gzip-compressed: the real events, then 256 MiB of comment lines that
    compress ~1000x (gzip members of ~1 KiB each)."""
    events = _events(frames)
    if not events:
        return frames
    body = b"".join(frames[i].data for i in events)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    # the events as a first gzip member, then the bomb's members (RFC 1952 allows many;
    # gzip -d and httpx read them all)
    member = z.compress(body) + z.flush()
    return [*_head(frames), Frame(frames[events[0]].at, member + _bomb_tail(), DATA)]


# -- wrong answers ---------------------------------------------------------------------------


def _html(status: int, reason: bytes) -> Callable[[Reply], Reply]:
    """A reply edit: the stream answered ``status`` with an nginx-style HTML page."""

    def edit(reply: Reply) -> Reply:
        if reply.events is None:
            return reply
        reply.status = status
        reply.events = None
        reply.ticks = None
        reply.headers = [(k, v) for k, v in reply.headers if k not in ("content-type",)]
        reply.set_header("content-type", "text/html; charset=utf-8")
        reply.body = _HTML % (status, reason, status, reason)
        return reply

    return edit


def _remember_host(req: Request, ctx: Context) -> Request:
    _HOST.set(req.headers.get("host", "127.0.0.1"))
    return req


def _redirect(reply: Reply) -> Reply:
    """307 to the same path on another origin: the same host, the next port (an address that
    binds everywhere, unlike a second loopback address)."""
    if reply.events is None:
        return reply
    host, _, port = _HOST.get().rpartition(":")
    if not port.isdigit():
        host, port = _HOST.get(), "80"
    reply.status = 307
    reply.events = None
    reply.ticks = None
    reply.headers = [(k, v) for k, v in reply.headers if k not in ("content-type",)]
    reply.set_header("location", f"http://{host}:{int(port) + 1}/v1/chat/completions")
    reply.set_header("content-type", "text/plain")
    reply.body = b"moved\n"
    return reply


# -- hostile JSON ----------------------------------------------------------------------------


def _after_first(items: list[Any], payload: bytes) -> list[Any]:
    """``payload`` as the data of an extra event after the first one: a raw chunk for the
    OpenAI API, a ``content_block_delta`` for the Anthropic one (its items are typed)."""
    if len(items) < 2:
        return items
    if isinstance(items[0], dict) and items[0].get("type") == "message_start":
        from ..anthropic_messages import Raw

        return [*items[:1], Raw("content_block_delta", payload), *items[1:]]
    return [*items[:1], payload, *items[1:]]


def _deep_json(items: list[Any], info: StreamInfo) -> list[Any]:
    """After the first chunk, a payload nested 100 000 arrays deep."""
    return _after_first(items, b'{"deep": ' + b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS + b"}")


def _huge_number(items: list[Any], info: StreamInfo) -> list[Any]:
    """After the first event, one whose JSON holds a number of 10 000 digits (a chunk's
    ``created``; a delta's ``index``)."""
    first = items[0] if items and isinstance(items[0], dict) else {}
    if first.get("type") == "message_start":
        payload = b'{"type": "content_block_delta", "index": %b, "delta": {}}'
    else:
        head = b'{"id": "%s", "object": "chat.completion.chunk", "created": ' % (
            str(first.get("id", "chatcmpl-x")).encode()
        )
        payload = head + b'%b, "choices": []}'
    return _after_first(items, payload % (b"9" * HUGE_DIGITS))


HOSTILE_FAULTS: Final = (
    Fault("stall-after-headers", "any", ("transport.idle",), "plain",
          "the 200 headers of the stream, then not one body byte (the connection stays "
          "open)", frames=_stall_after_headers),
    Fault("endless", "any", ("transport.total",), "plain",
          "a never-ending stream: the same content event every 2 ms, no end", frames=_endless),
    Fault("firehose", "any", ("transport.total",), "plain",
          "a never-ending stream as fast as the client reads: the same content event again "
          "and again, no end", frames=_firehose),
    Fault("event-flood", "any", (), "plain",
          f"{FLOOD_EVENTS} tiny content events at 100 000 a second, then a normal end (the "
          "client must keep up in bounded memory)", frames=_flood),
    Fault("huge-line", "any", ("sse.max-event",), "plain",
          f"after the first event one data line of {HUGE_LINE_BYTES // 2**20} MiB (written "
          "as the client reads), then the connection closes", frames=_huge_line),
    Fault("gzip-bomb", "any", ("transport.broken",), "plain",
          f"Content-Encoding: gzip; the events, then comment lines inflating to "
          f"{BOMB_INFLATED_BYTES // 2**20} MiB from ~270 KiB", reply=_gzip_header,
          frames=_gzip_bomb),
    Fault("gzip-lie", "any", ("transport.broken",), "plain",
          "Content-Encoding: gzip on a body that is not gzip (the plain event stream)",
          reply=_gzip_header),
    Fault("html-200", "any", (), "plain",
          "the stream is answered 200 with an HTML page (a captive portal, a misrouted "
          "proxy): the setup check says it is no LLM API", reply=_html(200, b"OK"),
          setup="(got 200 text/html)"),
    Fault("html-502", "any", ("http.status",), "plain",
          "the stream is answered 502 Bad Gateway with an nginx HTML page",
          reply=_html(502, b"Bad Gateway")),
    Fault("redirect-cross-origin", "any", ("http.status",), "plain",
          "the stream is answered 307 to the same path on the next port (another origin): "
          "a client must not follow it with the key", request=_remember_host,
          reply=_redirect),
    Fault("deep-json", "any", ("{api}.data-json", "sdk.{api}-accumulate"), "plain",
          f"after the first event, a payload nested {DEEP_LEVELS} arrays deep (the SDKs' "
          "json.loads raises RecursionError)", chunks=_deep_json),
    Fault("huge-number", "any", ("{api}.data-json", "sdk.{api}-accumulate"), "plain",
          f"after the first event, one holding a number of {HUGE_DIGITS} digits (Python's "
          "json.loads refuses more than 4300)", chunks=_huge_number),
)  # fmt: skip
# The rules a hostile fault trips against the Anthropic API where they are not its rules with
# {api} filled in (its anthropic- copy is registered with these).
ANTHROPIC_RULES: Final[dict[str, tuple[str, ...]]] = {}
