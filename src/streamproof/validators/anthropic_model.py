"""The Anthropic Messages stream model: one ``POST /messages`` stream, parsed once.

Grammar (shared/spec/anthropic-messages-streaming.md)::

    message_start  (ping | block)*  message_delta+  message_stop
    block = content_block_start(i)  (content_block_delta(i) | ping)*  content_block_stop(i)

Per event it parses the ``data:`` payload once (``event_json``), dispatches on its JSON
``type`` (an event whose ``event:`` name differs is still read by its type, so one missing
name is one finding, not a cascade), keeps the phase of the message, the blocks, the stop
reason and the usage as the SDK merges them, rebuilds the message (``message()``) and stamps
content events (``content_t``: non-empty text/thinking/input_json/citations deltas; the
leading ``partial_json: ""`` and an empty ``thinking_delta`` are not content; ``visible_t``:
the first that is not thinking; ``end_t``: message_stop; ``error_text``: the error event's
message). The rules are checks (``anthropic_framing.py``, ``anthropic_blocks.py``,
``anthropic_stop.py``) listening to these transitions (``at``: the event, None at ``end``):

================ ===================================================== ====================
transition       when                                                  subject
================ ===================================================== ====================
event_name       the ``event:`` name is not the JSON type (or absent)  the type
done             ``data: [DONE]``                                      None
bad_data         the data is not a JSON object with a string type      the error or value
unknown_event    a JSON object of an unknown type                      the type
after_end        an event after message_stop or an error event         the type (or
                 (``phase`` tells which)                               "non-JSON")
early            the first message event before any message_start      the event type
message_start    the first message_start, its message and usage read   the event object
restart          a further message_start (ignored)                     the event object
late_block       a content_block_start/delta after message_delta       the event type
block_start      content_block_start, before the block is added        the new Block
                 (``open``: the block still open; ``blocks``: those
                 before it)
unknown_block    a delta or stop names no started block                the index
delta            a delta of a started block off the hot path, after    a Delta
                 the model took what the client takes of it
block_stop       content_block_stop of a started block, before it is   the Block
                 applied (``open`` still set)
block_end        a block ends: its stop while open, or left open at    the Block
                 message_delta
message_delta    message_delta, stop fields read, before the open      the event object
                 block is closed and the usage merged
message_stop     message_stop, before the open block is dropped        the event object
ping             a ping (a JSON object of type ping)                   the event object
error            an error event (``ended_by_error`` says if valid)     the event object
conclude         the final stop reason is known: once, at              None
                 message_stop or the end, after a message_delta
end              the stream ended (``StreamModel``)                    None
================ ===================================================== ====================

Hot path: a delta of the open block in the body (no transition; bare: ``bare.py``).

Decisions worth knowing (the spec leaves them open):

* **Before message_start**, pings and unknown event types are tolerated (the SDK drops pings
  by name and ignores unknown types before its order check); a message event there is
  ``early`` (once). A valid ``error`` event may come first: the real API sends overloaded
  errors right after the 200 and the SDK raises the typed error first.
* **After an error event** nothing is owed; every further event is ``after_end``, as is
  every event after ``message_stop`` except ``data: [DONE]`` (``done`` at any point).
* **Usage** as the SDK merges it: ``output_tokens`` overwritten by each message_delta (None
  when it is not an integer), ``input_tokens`` only by a non-negative integer.
* **A delta** is taken (text, thinking and tool input joined; the last signature kept) only
  when it fits its block and is well formed (``Delta.fit``); a thinking_delta after the
  signature still counts, as the SDK appends it.
* **Truncated streams** (transport failure): the stop reason is concluded only when a
  message_delta made it through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import orjson

from ..schemas import schema
from ..sse import Event
from .base import event_json
from .model import StreamModel

__all__ = [
    "BEFORE",
    "BODY",
    "CONTENT_FIELD",
    "ERRORED",
    "ERROR_TYPE_BY_STATUS",
    "FITS",
    "STOPPED",
    "STOP_REASONS",
    "TAIL",
    "TOOL_KINDS",
    "AnthropicMessagesModel",
    "Block",
    "Delta",
]

STOP_REASONS: Final = frozenset(
    {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
     "model_context_window_exceeded"}
)  # fmt: skip
# Anthropic API reference, "Errors": the error type that goes with each HTTP status.
ERROR_TYPE_BY_STATUS: Final = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error",
}  # fmt: skip

_API: Final = "anthropic"

# phases of the message
BEFORE: Final = 0  # no message_start yet
BODY: Final = 1  # after message_start: blocks
TAIL: Final = 2  # after a message_delta: more message_delta, then message_stop
STOPPED: Final = 3  # after message_stop: nothing may follow
ERRORED: Final = 4  # after an error event: the stream ends

TOOL_KINDS: Final = frozenset({"tool_use", "server_tool_use"})
# which delta types fit which block type; block types not listed here are not judged
FITS: Final[dict[str, frozenset[str]]] = {
    "text": frozenset({"text_delta", "citations_delta"}),
    "thinking": frozenset({"thinking_delta", "signature_delta"}),
    "redacted_thinking": frozenset(),
    "tool_use": frozenset({"input_json_delta"}),
    "server_tool_use": frozenset({"input_json_delta"}),
}
_DELTA_FIELD: Final = {
    "text_delta": "text",
    "citations_delta": "citation",
    "input_json_delta": "partial_json",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
}
# the delta type and field the hot path accepts without further thought, per block type
_FAST: Final = {
    "text": ("text_delta", "text"),
    "thinking": ("thinking_delta", "thinking"),
    "tool_use": ("input_json_delta", "partial_json"),
    "server_tool_use": ("input_json_delta", "partial_json"),
}
# the delta types that are content, and the field that holds their piece
CONTENT_FIELD: Final = {
    t: _DELTA_FIELD[t]
    for t in ("text_delta", "thinking_delta", "input_json_delta", "citations_delta")
}

_loads = orjson.loads
_JSONError = orjson.JSONDecodeError


class Block:
    """One content block: what the start said and what the deltas added."""

    __slots__ = (
        "fast_field", "fast_type", "index", "kind", "late", "parts", "position", "signature",
        "signatures", "start",
    )  # fmt: skip

    def __init__(self, position: int, index: Any, kind: str | None, start: dict[str, Any]) -> None:
        self.position = position  # 0, 1, 2 ... in order of the starts
        self.index = index  # as the start said (not necessarily an integer)
        self.kind = kind  # the block's type; None when it is not a string
        self.start = start
        # left open when the next block started or message_delta came: its stop may still
        # arrive after message_delta, and is then no surprise
        self.late = False
        self.parts: list[str] = []
        self.signature: str | None = None
        self.signatures = 0  # signature_delta events taken
        fast = _FAST.get(kind) if kind is not None else None
        self.fast_type, self.fast_field = fast if fast else (None, None)

    def describe(self) -> str:
        return f"block {self.index} ({self.kind})"


class Delta(NamedTuple):
    """A delta of a started block off the hot path. ``fit``: ``"ok"`` (taken), ``"untyped"``
    (no string type), ``"unknown"`` (a delta type this model does not know), ``"unjudged"``
    (a block type without known deltas), ``"misfit"`` (a type the block does not take) or
    ``"malformed"`` (fails content_block_delta.json)."""

    block: Block
    type: Any
    fit: str


class AnthropicMessagesModel(StreamModel):
    """Model of one Anthropic Messages stream; rebuilds the message (``message()``)."""

    __slots__ = (
        "_content_append", "_handlers", "blocks", "by_index", "clean_error", "concluded",
        "deltas", "early", "held_tool_input", "in_tokens", "open", "out_tokens", "phase",
        "saw_tool_use", "start", "started", "stop_reason", "stop_sequence", "usage_high",
    )  # fmt: skip
    api = _API
    TRANSITIONS = frozenset(
        {
            "event_name", "done", "bad_data", "unknown_event", "after_end", "early",
            "message_start", "restart", "late_block", "block_start", "unknown_block", "delta",
            "block_stop", "block_end", "message_delta", "message_stop", "ping", "error",
            "conclude",
        }
    )  # fmt: skip

    def __init__(
        self,
        request: Mapping[str, Any] | None = None,
        *,
        expect: frozenset[str] = frozenset(),
        rules: bool = True,
        content_t: list[int] | None = None,
    ) -> None:
        super().__init__(request, expect=expect, rules=rules, content_t=content_t)
        self.phase = BEFORE
        self.clean_error = False  # a well-formed error event ended the stream
        self._handlers = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "ping": self._ping,
            "error": self._error,
        }
        self.blocks: list[Block] = []
        self.by_index: dict[int, Block] = {}
        self.open: Block | None = None
        self.start: dict[str, Any] = {}  # the message of message_start
        self.started = False  # a message_start was seen
        self.early = False  # a message event came before any message_start
        self.deltas = 0  # message_delta events
        self.stop_reason: Any = None  # of the last message_delta
        self.stop_sequence: Any = None
        self.out_tokens: Any = None  # usage.output_tokens as the SDK merges it
        self.in_tokens: Any = None  # usage.input_tokens as the SDK merges it
        self.saw_tool_use = False  # a (client) tool_use block was streamed
        self.concluded = False
        # kept for checks: the highest usage count so far per key (anthropic.usage), and
        # tool input findings held until the stop reason is known (anthropic.tool-input-json)
        self.usage_high: dict[str, int] = {}
        self.held_tool_input: list[tuple[Block, str, Event]] = []
        self._content_append = self.content_t.append

    @property
    def ended_by_error(self) -> bool:
        return self.clean_error

    @property
    def usage_tokens(self) -> int | None:
        """The output_tokens of the last message_delta (None before one, or when it has no
        integer count)."""
        return self.out_tokens if self.deltas else None

    @property
    def unfinished(self) -> bool:
        """At the end: the body ended by itself inside the message (after it began, before
        message_stop, with no error event), so what is owed at the end is missing."""
        return (
            not self.truncated
            and self.phase not in (ERRORED, STOPPED)
            and (self.started or self.early)
        )

    # -- dispatch ----------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        try:
            obj = event_json(event)
            kind = obj["type"]
            handler = self._handlers[kind]
        except Exception as exc:  # not JSON, not an object, no type, an unknown type, [DONE]
            self._irregular(event, exc)
            return
        if event.name != kind:
            self.emit("event_name", event, kind)
        if self.phase >= STOPPED:
            self._after_end(kind, event)
            return
        handler(obj, event)

    def _after_end(self, kind: str, event: Event) -> None:
        self.clean_error = False
        self.emit("after_end", event, kind)

    def _irregular(self, event: Event, exc: Exception) -> None:
        if event.data.strip() == "[DONE]":
            self.emit("done", event)
            return
        # the parsed value (kept on the event), or why it is not JSON
        value: Any = exc if isinstance(exc, _JSONError) else event.parsed
        kind = value.get("type") if type(value) is dict else None
        if self.phase >= STOPPED:
            self._after_end(kind if type(kind) is str else "non-JSON", event)
            return
        if type(kind) is not str:
            self.emit("bad_data", event, value)
            if event.name == "error":
                self.phase = ERRORED
            return
        # a JSON object of a type this model does not know: tolerated (a new event type)
        if event.name != kind:
            self.emit("event_name", event, kind)
        self.emit("unknown_event", event, kind)

    def _early(self, kind: str, event: Event) -> None:
        """A message event before any message_start (the phase moves on to the body)."""
        if not self.early:
            self.early = True
            self.emit("early", event, kind)
        self.phase = BODY

    # -- handlers ----------------------------------------------------------------------

    def _message_start(self, obj: dict[str, Any], event: Event) -> None:
        if self.started:
            self.emit("restart", event, obj)
            return
        self.started = True
        if self.phase == BEFORE:
            self.phase = BODY
        # else: a late message_start (announced as early); its data still counts
        message = obj.get("message")
        if type(message) is dict:
            self.start = message
            usage = message.get("usage")
            if type(usage) is dict:
                out = usage.get("output_tokens")
                if type(out) is int:
                    self.out_tokens = out
                inp = usage.get("input_tokens")
                if type(inp) is int:
                    self.in_tokens = inp
        self.emit("message_start", event, obj)

    def _block_start(self, obj: dict[str, Any], event: Event) -> None:
        if self.phase == BEFORE:
            self._early("content_block_start", event)
        elif self.phase == TAIL:
            self.emit("late_block", event, "content_block_start")
        start = obj.get("content_block")
        if type(start) is not dict:
            start = {}
        kind = start.get("type")
        if type(kind) is not str:
            kind = None  # never used as a key
        index = obj.get("index")
        block = Block(len(self.blocks), index, kind, start)
        self.emit("block_start", event, block)
        if self.open is not None:
            self.open.late = True
        self.blocks.append(block)
        if type(index) is int:
            self.by_index.setdefault(index, block)
        self.open = block
        if kind == "tool_use":
            self.saw_tool_use = True

    def _block_delta(self, obj: dict[str, Any], event: Event) -> None:
        block = self.open
        if block is not None and self.phase == BODY:
            delta = obj.get("delta")
            index = obj.get("index")
            if (
                type(delta) is dict
                and type(index) is int
                and index == block.index
                and delta.get("type") == block.fast_type
            ):
                piece = delta.get(block.fast_field)
                if type(piece) is str:
                    if piece:
                        self._content_append(event.t)
                        if self.visible_t is None:
                            self._first_content(event, block.fast_type != "thinking_delta")
                    if self.room > 0:
                        block.parts.append(piece)
                        self.room -= len(piece)
                    else:
                        self.message_cut = True
                    return
        self._delta_slow(obj, event)

    def _delta_slow(self, obj: dict[str, Any], event: Event) -> None:
        if self.phase == BEFORE:
            self._early("content_block_delta", event)
        elif self.phase == TAIL:
            self.emit("late_block", event, "content_block_delta")
        index = obj.get("index")
        delta = obj.get("delta")
        dtype = delta.get("type") if type(delta) is dict else None
        field = _DELTA_FIELD.get(dtype) if type(dtype) is str else None
        if field is not None and dtype in CONTENT_FIELD and delta.get(field):
            self._content_append(event.t)
            if self.visible_t is None:
                self._first_content(event, dtype != "thinking_delta")
        block = self._lookup(index)
        if block is None:
            self.emit("unknown_block", event, index)
            return
        fits = FITS.get(block.kind) if block.kind is not None else None
        if type(dtype) is not str:
            fit = "untyped"
        elif field is None:
            fit = "unknown"
        elif fits is None:
            fit = "unjudged"
        elif dtype not in fits:
            fit = "misfit"
        elif not schema(_API, "content_block_delta").is_valid(obj):
            fit = "malformed"
        else:
            fit = "ok"
            piece = delta[field]
            if dtype == "signature_delta":
                block.signatures += 1
                block.signature = piece
                block.fast_type = None  # a thinking_delta from now on is out of order
            elif dtype != "citations_delta":
                self._keep(block, piece)
        self.emit("delta", event, Delta(block, dtype, fit))

    def _first_content(self, event: Event, visible: bool) -> None:
        """Stamps of the first content event, and of the first a user sees (not thinking)."""
        if self.first_index < 0:
            self.first_index = self.events - 1
        if visible:
            self.visible_t = event.t

    def _keep(self, block: Block, piece: str) -> None:
        if self.room > 0:
            block.parts.append(piece)
            self.room -= len(piece)
        else:
            self.message_cut = True

    def _lookup(self, index: Any) -> Block | None:
        current = self.open
        if current is not None and type(index) is int and index == current.index:
            return current
        return self.by_index.get(index) if type(index) is int else None

    def _block_stop(self, obj: dict[str, Any], event: Event) -> None:
        if self.phase == BEFORE:
            self._early("content_block_stop", event)
        index = obj.get("index")
        block = self._lookup(index)
        if block is None:
            self.emit("unknown_block", event, index)
            return
        self.emit("block_stop", event, block)
        if block is self.open:
            self.open = None
            self.emit("block_end", event, block)
        elif block.late and self.phase == TAIL:
            block.late = False  # the stop it missed, after message_delta

    def _message_delta(self, obj: dict[str, Any], event: Event) -> None:
        if self.phase == BEFORE:
            self._early("message_delta", event)
        self.deltas += 1
        self.phase = TAIL
        delta = obj.get("delta")
        if type(delta) is dict:
            self.stop_reason = delta.get("stop_reason")
            self.stop_sequence = delta.get("stop_sequence")
        else:
            self.stop_reason = self.stop_sequence = None
        self.emit("message_delta", event, obj)
        current = self.open
        if current is not None:
            self.open = None
            current.late = True
            self.emit("block_end", event, current)
        usage = obj.get("usage")
        if type(usage) is not dict:
            self.out_tokens = None
            return
        out = usage.get("output_tokens")
        self.out_tokens = out if type(out) is int else None  # the SDK overwrites it
        inp = usage.get("input_tokens")
        if type(inp) is int and inp >= 0:
            self.in_tokens = inp  # the SDK overwrites it when present

    def _message_stop(self, obj: dict[str, Any], event: Event) -> None:
        if self.phase == BEFORE:
            self._early("message_stop", event)
        self.end_t = event.t
        self.emit("message_stop", event, obj)
        self.open = None
        self.phase = STOPPED
        self._conclude(event)

    def _ping(self, obj: dict[str, Any], event: Event) -> None:
        self.emit("ping", event, obj)

    def _error(self, obj: dict[str, Any], event: Event) -> None:
        # A valid error event may come at any point, even first: the real API sends
        # overloaded errors right after the 200, and the SDK raises the typed error before its
        # event-order check. No message_delta / message_stop is owed after it.
        self.clean_error = schema(_API, "error").is_valid(obj)
        error = obj.get("error")
        text = error.get("message") if type(error) is dict else None
        self.error_text = str(text or error)[:200]
        self.emit("error", event, obj)
        self.phase = ERRORED
        self.open = None

    # -- the end -----------------------------------------------------------------------

    def _conclude(self, event: Event | None) -> None:
        """The final stop reason is known (once, at message_stop or the end)."""
        if self.concluded or not self.deltas:
            return
        self.concluded = True
        self.emit("conclude", event)

    def _end(self, truncated: bool) -> None:
        self.complete = not truncated and self.phase != ERRORED
        if truncated or self.unfinished:
            # (cut by the transport: the stop reason stands only when a message_delta came)
            self._conclude(None)

    # -- the accumulated message -------------------------------------------------------

    def message(self) -> dict[str, Any]:
        """The message a client rebuilds, normalised (compared with the SDK's final message).

        Blocks in index order; usage from message_start merged with the last message_delta
        as the SDK does (output_tokens overwritten by each message_delta, input_tokens only
        when a message_delta carries a non-null one).
        """
        start = self.start
        content: list[dict[str, Any]] = []
        blocks = sorted(self.blocks, key=lambda b: (0, b.index) if type(b.index) is int else (1, 0))
        for block in blocks:
            kind = block.kind
            head = block.start
            if kind == "text":
                text = head.get("text")
                content.append(
                    {
                        "type": "text",
                        "text": (text if type(text) is str else "") + "".join(block.parts),
                    }
                )
            elif kind == "thinking":
                thinking = head.get("thinking")
                signature = block.signature
                if signature is None:
                    signature = head.get("signature")
                content.append(
                    {
                        "type": "thinking",
                        "thinking": (thinking if type(thinking) is str else "")
                        + "".join(block.parts),
                        "signature": signature if type(signature) is str else "",
                    }
                )
            elif kind == "redacted_thinking":
                data = head.get("data")
                content.append({"type": kind, "data": data if type(data) is str else ""})
            elif kind in TOOL_KINDS:
                content.append(
                    {
                        "type": kind,
                        "id": head.get("id"),
                        "name": head.get("name"),
                        "input": _tool_input(block),
                    }
                )
            else:
                content.append(dict(head))
        return {
            "id": _str_or_none(start.get("id")),
            "model": _str_or_none(start.get("model")),
            "role": _str_or_none(start.get("role")),
            "content": content,
            "stop_reason": _str_or_none(self.stop_reason),
            "stop_sequence": _str_or_none(self.stop_sequence),
            "usage": {"input_tokens": self.in_tokens, "output_tokens": self.out_tokens},
        }


def _tool_input(block: Block) -> Any:
    joined = "".join(block.parts)
    if not joined:
        return block.start.get("input", {})
    try:
        return _loads(joined)
    except _JSONError:
        return None


def _str_or_none(value: Any) -> str | None:
    return value if type(value) is str else None
