"""The Anthropic Messages stream validator: a state machine over the decoded SSE events.

Grammar (shared/spec/anthropic-messages-streaming.md)::

    message_start  (ping | block)*  message_delta+  message_stop
    block = content_block_start(i)  (content_block_delta(i) | ping)*  content_block_stop(i)

Every ``anthropic.*`` rule a stream can show is checked here; the spec's tolerance list (JSON
padding, pings anywhere, extra keys, ``output_tokens > 0`` at the start, ``signature: ""`` at a
thinking start, empty ``thinking_delta`` / ``partial_json`` fragments, key order,
``context_management``, ``stop_details`` ...) is honoured. The module also holds the checks of
the non-stream answers (``check_error_response``, ``check_json_response``).

Decisions worth knowing (the spec leaves them open):

* **Before message_start**, pings and unknown event types are tolerated (the SDK drops pings
  by name and ignores unknown types before its order check); any message event there is
  ``start-first``, reported once. A valid ``error`` event may come first: the real API sends
  overloaded errors right after the 200 and the SDK raises the typed error first.
* **After an error event** nothing is owed (no message_delta / message_stop); any further
  event is ``error-event``. After ``message_stop`` anything is ``stop-last`` except
  ``data: [DONE]``, which is the ``no-done`` warning; ``[DONE]`` earlier is ``stop-last``.
* **event-name**: the event is still interpreted by its JSON ``type``, so one missing name
  is one finding, not a cascade.
* **block-closed** when ``stop_reason`` is ``max_tokens`` is a finding with ``level_as="SHOULD"``
  (level SHOULD) — the real API skips the stop of a tool block cut mid-input.
  ``tool-input-json`` is judged at ``message_stop`` (or the end), so that ``max_tokens``
  can excuse it; a block left open is judged on what it received.
* **usage**: counts are cumulative from ``message_start`` on; a count that goes *down*
  (output_tokens, or input/cache tokens when a message_delta repeats them) is a finding, a
  larger ``input_tokens`` in message_delta is not (server tools add input; the SDK takes it).
* **stop-consistent**: ``tool_use`` needs a client ``tool_use`` block (``server_tool_use``
  does not count); a streamed tool_use block with ``end_turn`` / ``stop_sequence`` is a
  finding (cuts, refusals and pauses are not); the requested-sequence half only when the
  request is known.
* **content_t** stamps non-empty text/thinking/input_json/citations deltas only (the
  leading ``partial_json: ""`` and an empty ``thinking_delta`` are not content).
* **Truncated streams** (transport failure): no end-of-stream finding; verdicts that need
  the stop reason stand only if a message_delta arrived.
* **Noise**: the first few findings per rule are listed, the rest counted in one summary.

Hot path: a ``text_delta`` (or ``thinking_delta`` / ``input_json_delta``) for the open block
costs one ``orjson.loads``, one dict lookup for the handler and a handful of comparisons; no
allocation but the appended fragment. Everything unusual goes to a slow path that builds the
finding's message. The JSON Schemas in ``schemas/anthropic/`` (jsonschema-rs ``is_valid``)
check the once-per-block and once-per-stream events; a failing instance is explained by the
pure-Python validator only when the finding is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from ..findings import Finding, excerpt
from ..rules import Level
from ..schemas import schema
from ..sse import Event
from .base import (
    StreamValidator,
    check_error_answer,
    check_json_answer,
    event_json,
    json_error,
)

__all__ = [
    "ERROR_TYPES",
    "ERROR_TYPE_BY_STATUS",
    "STOP_REASONS",
    "AnthropicMessagesValidator",
    "check_error_response",
    "check_json_response",
]

STOP_REASONS: Final = frozenset(
    {
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
    }
)
ERROR_TYPES: Final = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
    }
)
# Anthropic API reference, "Errors": the error type that goes with each HTTP status.
ERROR_TYPE_BY_STATUS: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_API: Final = "anthropic"
_CAP: Final = 5  # findings shown per rule; the rest are counted
_USAGE_COUNTS: Final = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")

# phases of the message
_BEFORE: Final = 0  # no message_start yet
_BODY: Final = 1  # after message_start: blocks
_TAIL: Final = 2  # after a message_delta: more message_delta, then message_stop
_STOPPED: Final = 3  # after message_stop: nothing may follow
_ERRORED: Final = 4  # after an error event: the stream ends

_TOOL_KINDS: Final = frozenset({"tool_use", "server_tool_use"})
# which delta types fit which block type; block types not listed here are not judged
_FITS: Final[dict[str, frozenset[str]]] = {
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
_CONTENT_DELTAS: Final = frozenset(
    {"text_delta", "thinking_delta", "input_json_delta", "citations_delta"}
)

_loads = orjson.loads


class _Block:
    """One content block: what the start said and what the deltas added."""

    __slots__ = (
        "fast_field",
        "fast_type",
        "index",
        "kind",
        "late",
        "parts",
        "signature",
        "signatures",
        "start",
    )

    def __init__(self, index: Any, kind: str | None, start: dict[str, Any]) -> None:
        self.index = index
        self.kind = kind
        self.start = start
        self.late = False  # left open (at message_delta or a new start): already reported
        self.parts: list[str] = []
        self.signature: str | None = None
        self.signatures = 0
        fast = _FAST.get(kind) if kind is not None else None
        self.fast_type, self.fast_field = fast if fast else (None, None)

    def describe(self) -> str:
        return f"block {self.index} ({self.kind})"


def _forced_tool(choice: Any) -> str | None:
    """What ``tool_choice`` forces: None (nothing), "" (some tool: ``any``) or a tool name."""
    if not isinstance(choice, Mapping):
        return None
    if choice.get("type") == "any":
        return ""
    if choice.get("type") == "tool":
        name = choice.get("name")
        return name if isinstance(name, str) else ""
    return None


def _is_int(value: Any) -> bool:
    return type(value) is int


def _prompt_empty(request: Mapping[str, Any]) -> bool:
    """True only when the request is known and has neither messages nor a system prompt.

    The API refuses an empty ``messages`` array and empty text blocks, so a stream answering
    an unknown request is taken to answer a non-empty prompt.
    """
    if not request:
        return False
    return not request.get("messages") and not request.get("system")


class AnthropicMessagesValidator(StreamValidator):
    """Validates one Anthropic Messages stream and rebuilds the message (``message()``)."""

    api = _API

    def __init__(
        self, request: Mapping[str, Any] | None = None, *, expect: frozenset[str] = frozenset()
    ) -> None:
        super().__init__(request, expect=expect)
        self._phase = _BEFORE
        self._clean_error = False  # a well-formed error event ended the stream
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
        self._counts: dict[str, int] = {}
        self._blocks: list[_Block] = []
        self._by_index: dict[Any, _Block] = {}
        self._open: _Block | None = None
        self._start: dict[str, Any] = {}
        self._started = False  # a message_start was seen
        self._missing_start = False  # start-first already reported
        self._deltas = 0  # message_delta events
        self._stop_reason: Any = None
        self._stop_sequence: Any = None
        self._output_tokens: Any = None  # as the SDK merges it
        self._input_tokens: Any = None
        self._high: dict[str, int] = {}  # highest count seen so far, per usage key
        self._saw_tool_use = False
        self._pending_tool: list[tuple[str, Event]] = []  # tool-input-json, judged at the end
        self._concluded = False
        self._content_append = self.content_t.append

    # -- findings ----------------------------------------------------------------------

    def _flag(
        self,
        rule: str,
        message: str,
        event: Event | int | None = None,
        level_as: Level | None = None,
    ) -> None:
        count = self._counts.get(rule, 0) + 1
        self._counts[rule] = count
        if count <= _CAP:
            self.add(rule, message, event, level_as=level_as)

    def _warn(self, rule: str, message: str, event: Event | None) -> None:
        index = event.index if event is not None else None
        self.findings.append(
            Finding(rule, message, index, excerpt(event.data) if event else "", level_as="SHOULD")
        )

    # -- dispatch ----------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        try:
            obj = event_json(event)
            kind = obj["type"]
            handler = self._handlers[kind]
        except Exception:  # not JSON, not an object, no type, an unknown type, [DONE]
            self._irregular(event)
            return
        if event.name != kind:
            self._wrong_name(event, kind)
        if self._phase >= _STOPPED:
            self._after_end(kind, event)
            return
        handler(obj, event)

    def _wrong_name(self, event: Event, kind: str) -> None:
        if event.name is None:
            self._flag(
                "anthropic.event-name",
                f"the {kind} event has no event: line; the SDK skips unnamed events, so a "
                "client never sees it",
                event,
            )
        else:
            self._flag(
                "anthropic.event-name",
                f"event: {event.name!r} but the JSON type is {kind!r} (the SDK dispatches on "
                "the event name)",
                event,
            )

    def _after_end(self, kind: str, event: Event) -> None:
        self._clean_error = False
        if self._phase == _STOPPED:
            self._flag(
                "anthropic.stop-last",
                f"{kind} event after message_stop: message_stop must be the last event",
                event,
            )
        else:
            self._flag(
                "anthropic.error-event",
                f"{kind} event after the error event: the stream must end at the error",
                event,
            )

    def _irregular(self, event: Event) -> None:
        data = event.data
        name = event.name
        if data.strip() == "[DONE]":
            if self._phase >= _STOPPED:
                self._flag(
                    "anthropic.no-done",
                    "data: [DONE] after the end of the message: the sentinel was removed in API "
                    "version 2023-06-01",
                    event,
                )
            else:
                self._flag(
                    "anthropic.stop-last",
                    "data: [DONE] before message_stop: a client that stops at the sentinel "
                    "loses the rest of the message",
                    event,
                )
            return
        why = ""
        try:
            obj = _loads(data)
        except orjson.JSONDecodeError as exc:
            obj = _NOT_JSON
            why = f" ({json_error(exc)})"
        kind = obj.get("type") if type(obj) is dict else None
        if self._phase >= _STOPPED:
            self._after_end(kind if type(kind) is str else "non-JSON", event)
            return
        if type(kind) is not str:
            what = (
                f"not JSON{why}"
                if obj is _NOT_JSON
                else "not a JSON object"
                if type(obj) is not dict
                else "a JSON object without a string type"
            )
            if name == "ping":
                self._flag(
                    "anthropic.ping-shape", f'ping data is {what}, not {{"type": "ping"}}', event
                )
            elif name == "error":
                self._flag("anthropic.error-event", f"error event data is {what}", event)
                self._phase = _ERRORED
            else:
                self._flag("anthropic.data-json", f"event data is {what}", event)
            return
        # a JSON object of a type this validator does not know: tolerated (a new event type)
        if name != kind:
            self._wrong_name(event, kind)
        self._flag(
            "anthropic.unknown-event",
            f"unknown event type {kind!r} (clients must ignore it)",
            event,
        )

    def _no_start(self, what: str, event: Event) -> None:
        """An event of the message body before any message_start."""
        if not self._missing_start:
            self._missing_start = True
            self._flag(
                "anthropic.start-first",
                f"{what} before message_start: the SDK raises 'Unexpected event order'",
                event,
            )
        self._phase = _BODY

    # -- handlers ----------------------------------------------------------------------

    def _message_start(self, obj: dict[str, Any], event: Event) -> None:
        if self._started:
            self._flag(
                "anthropic.start-first",
                "a second message_start: it must come once, as the first event",
                event,
            )
            return
        self._started = True
        if self._phase == _BEFORE:
            self._phase = _BODY
        # else: a late message_start, already reported as start-first; its data still counts
        self.checked.add("anthropic.start-shape")
        check = schema(_API, "message_start")
        if not check.is_valid(obj):
            self._flag("anthropic.start-shape", f"message_start: {check.explain(obj)}", event)
        message = obj.get("message")
        if type(message) is not dict:
            return
        self._start = message
        usage = message.get("usage")
        if type(usage) is not dict:
            return
        out = usage.get("output_tokens")
        if _is_int(out):
            self._output_tokens = out
            self._high["output_tokens"] = out
        inp = usage.get("input_tokens")
        if _is_int(inp):
            self._input_tokens = inp
        for key in _USAGE_COUNTS:
            value = usage.get(key)
            if _is_int(value):
                self._high[key] = value
        if _is_int(inp) and not _prompt_empty(self.request):
            self.checked.add("anthropic.usage-input")
            cached = usage.get("cache_creation_input_tokens"), usage.get("cache_read_input_tokens")
            total = inp + sum(c for c in cached if _is_int(c))
            if total <= 0:
                self._flag(
                    "anthropic.usage-input",
                    "message_start reports input_tokens 0 for a non-empty prompt (clients use "
                    "it for context accounting)",
                    event,
                )

    def _block_start(self, obj: dict[str, Any], event: Event) -> None:
        if self._phase == _BEFORE:
            self._no_start("content_block_start", event)
        elif self._phase == _TAIL:
            self._flag(
                "anthropic.message-delta",
                "content_block_start after message_delta: message_delta must come after the "
                "last block",
                event,
            )
        index = obj.get("index")
        expected = len(self._blocks)
        if not _is_int(index) or index != expected:
            self._flag(
                "anthropic.block-index",
                f"content_block_start has index {index!r}, expected {expected} (indices are "
                "0, 1, 2 ... in order; the SDK appends blocks and looks deltas up by index)",
                event,
            )
        current = self._open
        if current is not None:
            self._flag(
                "anthropic.block-nesting",
                f"content_block_start of block {index!r} while {current.describe()} is still open",
                event,
            )
            current.late = True  # reported here; not again as block-closed
        check = schema(_API, "content_block_start")
        if not check.is_valid(obj):
            self._flag(
                "anthropic.block-start-shape", f"content_block_start: {check.explain(obj)}", event
            )
        start = obj.get("content_block")
        if type(start) is not dict:
            start = {}
        kind = start.get("type")
        if type(kind) is not str:
            kind = None  # reported as block-start-shape; never used as a key
        block = _Block(index, kind, start)
        self._blocks.append(block)
        if type(index) is int:
            self._by_index.setdefault(index, block)
        self._open = block
        if kind == "tool_use":
            self._saw_tool_use = True

    def _block_delta(self, obj: dict[str, Any], event: Event) -> None:
        block = self._open
        if block is not None and self._phase == _BODY:
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
                    if self.room > 0:
                        block.parts.append(piece)
                        self.room -= len(piece)
                    else:
                        self.message_cut = True
                    return
        self._delta_slow(obj, event)

    def _delta_slow(self, obj: dict[str, Any], event: Event) -> None:
        if self._phase == _BEFORE:
            self._no_start("content_block_delta", event)
        elif self._phase == _TAIL:
            self._flag(
                "anthropic.message-delta",
                "content_block_delta after message_delta: message_delta must come after the "
                "last block",
                event,
            )
        index = obj.get("index")
        delta = obj.get("delta")
        dtype = delta.get("type") if type(delta) is dict else None
        field = _DELTA_FIELD.get(dtype) if type(dtype) is str else None
        if field is not None:
            piece = delta.get(field)
            if dtype in _CONTENT_DELTAS and piece:
                self._content_append(event.t)
        block = self._lookup(index)
        if block is None:
            self._unknown_block("content_block_delta", index, event)
            return
        if block is not self._open:
            self._not_open("content_block_delta", block, event)
        if type(dtype) is not str:
            self._flag(
                "anthropic.delta-type", f"{block.describe()}: the delta has no string type", event
            )
            return
        if field is None:
            self._flag(
                "anthropic.unknown-event",
                f"unknown delta type {dtype!r} in {block.describe()} (clients ignore it)",
                event,
            )
            return
        fits = _FITS.get(block.kind) if type(block.kind) is str else None
        if fits is None:
            if type(block.kind) is str and block.kind.endswith("_tool_result"):
                self._flag(
                    "anthropic.delta-type",
                    f"{dtype} in {block.describe()}: server tool results arrive whole in "
                    "content_block_start",
                    event,
                )
            return  # a block type this validator does not know: not judged
        if dtype not in fits:
            allowed = " or ".join(sorted(fits)) or "no delta at all"
            self._flag(
                "anthropic.delta-type",
                f"{dtype} in {block.describe()}, which takes {allowed}",
                event,
            )
            return
        check = schema(_API, "content_block_delta")
        if not check.is_valid(obj):
            self._flag("anthropic.delta-type", f"content_block_delta: {check.explain(obj)}", event)
            return
        piece = delta[field]
        if dtype == "signature_delta":
            block.signatures += 1
            if block.signatures == 2:
                self._flag(
                    "anthropic.delta-type",
                    f"a second signature_delta for {block.describe()}: the SDK keeps only the "
                    "last one, so a signature sent in pieces is lost",
                    event,
                )
            block.signature = piece
            block.fast_type = None  # a thinking_delta from now on is out of order
        elif dtype == "thinking_delta" and block.signatures:
            self._flag(
                "anthropic.delta-type",
                f"a thinking_delta after the signature_delta of {block.describe()}",
                event,
            )
            self._keep(block, piece)
        elif dtype != "citations_delta":
            self._keep(block, piece)

    def _keep(self, block: _Block, piece: str) -> None:
        if self.room > 0:
            block.parts.append(piece)
            self.room -= len(piece)
        else:
            self.message_cut = True

    def _lookup(self, index: Any) -> _Block | None:
        current = self._open
        if current is not None and type(index) is int and index == current.index:
            return current
        return self._by_index.get(index) if type(index) is int else None

    def _unknown_block(self, what: str, index: Any, event: Event) -> None:
        if type(index) is not int:
            self._flag(
                "anthropic.block-nesting", f"{what} without an integer index ({index!r})", event
            )
        else:
            self._flag(
                "anthropic.block-nesting",
                f"{what} names block {index}, which was never started",
                event,
            )

    def _not_open(self, what: str, block: _Block, event: Event) -> None:
        current = self._open
        if block.late and self._phase == _TAIL:
            return  # already reported as block-closed / block-nesting
        if current is None:
            self._flag(
                "anthropic.block-nesting",
                f"{what} for {block.describe()} after its content_block_stop",
                event,
            )
        else:
            self._flag(
                "anthropic.block-nesting",
                f"{what} for {block.describe()} while {current.describe()} is open",
                event,
            )

    def _block_stop(self, obj: dict[str, Any], event: Event) -> None:
        if self._phase == _BEFORE:
            self._no_start("content_block_stop", event)
        index = obj.get("index")
        block = self._lookup(index)
        if block is None:
            self._unknown_block("content_block_stop", index, event)
            return
        if block is self._open:
            # (in the message_delta phase this block started there: reported at its start)
            self._open = None
            self._close(block, event)
        elif block.late and self._phase == _TAIL:
            # the stop that block-closed missed, arriving after message_delta: judged there
            block.late = False
        else:
            self._not_open("content_block_stop", block, event)

    def _close(self, block: _Block, event: Event) -> None:
        if block.kind not in _TOOL_KINDS or self.message_cut:
            return  # (a message cut at its size bound cannot show whole tool input)
        self.checked.add("anthropic.tool-input-json")
        joined = "".join(block.parts)
        if not joined:
            return  # a tool without arguments: input stays {}
        try:
            value = _loads(joined)
        except orjson.JSONDecodeError:
            self._pending_tool.append(
                (
                    f"the joined partial_json of {block.describe()} is not JSON: "
                    f"{excerpt(joined, 120)!r}",
                    event,
                )
            )
            return
        if type(value) is not dict:
            self._pending_tool.append(
                (
                    f"the joined partial_json of {block.describe()} is a JSON "
                    f"{type(value).__name__}, not an object",
                    event,
                )
            )

    def _message_delta(self, obj: dict[str, Any], event: Event) -> None:
        if self._phase == _BEFORE:
            self._no_start("message_delta", event)
        self._deltas += 1
        self._phase = _TAIL
        self.checked.update(("anthropic.message-delta", "anthropic.usage"))
        delta = obj.get("delta")
        stop_reason = delta.get("stop_reason") if type(delta) is dict else None
        stop_sequence = delta.get("stop_sequence") if type(delta) is dict else None
        self._stop_reason = stop_reason
        self._stop_sequence = stop_sequence
        # shape, usage aside (that is anthropic.usage, checked by hand below)
        check = schema(_API, "message_delta")
        stub = {**obj, "usage": {"output_tokens": 0}}
        if not check.is_valid(stub):
            self._flag("anthropic.message-delta", f"message_delta: {check.explain(stub)}", event)
        if type(stop_reason) is str:
            self.checked.add("anthropic.stop-reason-enum")
            if stop_reason not in STOP_REASONS:
                self._flag(
                    "anthropic.stop-reason-enum",
                    f"stop_reason {stop_reason!r} is not a documented value",
                    event,
                )
        # a block still open
        current = self._open
        if current is not None:
            self.checked.add("anthropic.block-closed")
            self._open = None
            current.late = True
            if current.kind in _TOOL_KINDS:
                self._close(current, event)
            message = f"{current.describe()} has no content_block_stop before message_delta"
            if stop_reason == "max_tokens":
                self._warn(
                    "anthropic.block-closed",
                    message + " (stop_reason max_tokens: a known edge of the real API)",
                    event,
                )
            else:
                self._flag("anthropic.block-closed", message, event)
        elif self._blocks:
            self.checked.add("anthropic.block-closed")
        self._usage(obj.get("usage"), event)

    def _usage(self, usage: Any, event: Event) -> None:
        if type(usage) is not dict:
            self._flag("anthropic.usage", "message_delta has no usage object", event)
            self._output_tokens = None
            return
        out = usage.get("output_tokens")
        self._output_tokens = out if _is_int(out) else None  # the SDK overwrites it
        if not _is_int(out) or out < 0:
            self._flag(
                "anthropic.usage",
                f"message_delta usage.output_tokens is {out!r}, not a non-negative integer",
                event,
            )
        else:
            self._cumulative("output_tokens", out, event)
        for key in _USAGE_COUNTS:
            value = usage.get(key)
            if value is None:
                continue  # absent or null: the message_start value stands
            if not _is_int(value) or value < 0:
                self._flag(
                    "anthropic.usage",
                    f"message_delta usage.{key} is {value!r}, not a non-negative integer or null",
                    event,
                )
                continue
            if key == "input_tokens":
                self._input_tokens = value  # the SDK overwrites it when present
            self._cumulative(key, value, event)

    def _cumulative(self, key: str, value: int, event: Event) -> None:
        high = self._high.get(key)
        if high is not None and value < high:
            self._flag(
                "anthropic.usage",
                f"usage.{key} went down from {high} to {value}: counts are cumulative (the SDK "
                "keeps the last value)",
                event,
                level_as="SHOULD",
            )
        else:
            self._high[key] = value

    def _message_stop(self, obj: dict[str, Any], event: Event) -> None:
        if self._phase == _BEFORE:
            self._no_start("message_stop", event)
        self.checked.add("anthropic.message-delta")
        current = self._open
        if current is not None:
            self.checked.add("anthropic.block-closed")
            self._open = None
            self._flag(
                "anthropic.block-closed",
                f"{current.describe()} has no content_block_stop before message_stop",
                event,
            )
        if self._phase != _TAIL:
            self._flag(
                "anthropic.message-delta",
                "message_stop without a message_delta: the stop reason and usage are missing",
                event,
            )
        self._phase = _STOPPED
        self._conclude(event)

    def _ping(self, obj: dict[str, Any], event: Event) -> None:
        self.checked.add("anthropic.ping-shape")

    @property
    def ended_by_error(self) -> bool:
        return self._clean_error

    def _error(self, obj: dict[str, Any], event: Event) -> None:
        self.checked.add("anthropic.error-event")
        check = schema(_API, "error")
        self._clean_error = check.is_valid(obj)
        if not self._clean_error:
            self._flag("anthropic.error-event", f"error event: {check.explain(obj)}", event)
        # A valid error event may come at any point, even first: the real API sends
        # overloaded errors right after the 200, and the SDK raises the typed error before its
        # event-order check. No message_delta / message_stop is owed after it.
        self._phase = _ERRORED
        self._open = None

    # -- the end -----------------------------------------------------------------------

    def _conclude(self, event: Event | None) -> None:
        """Verdicts that need the final stop reason (once, at message_stop or the end)."""
        if self._concluded or not self._deltas:
            return
        self._concluded = True
        reason = self._stop_reason
        sequence = self._stop_sequence
        if reason is None:
            self._flag(
                "anthropic.message-delta",
                "the last message_delta has stop_reason null",
                event,
            )
        self.checked.add("anthropic.stop-consistent")
        if reason == "tool_use" and not self._saw_tool_use:
            self._flag(
                "anthropic.stop-consistent",
                "stop_reason tool_use but no tool_use block was streamed",
                event,
            )
        elif self._saw_tool_use and reason in ("end_turn", "stop_sequence"):
            self._flag(
                "anthropic.stop-consistent",
                f"a tool_use block was streamed but stop_reason is {reason!r}, not tool_use "
                "(clients look at stop_reason to run tools)",
                event,
            )
        if reason == "stop_sequence":
            if type(sequence) is not str:
                self._flag(
                    "anthropic.stop-consistent",
                    f"stop_reason stop_sequence but stop_sequence is {sequence!r}",
                    event,
                )
            elif self.request:
                wanted = self.request.get("stop_sequences") or []
                if sequence not in wanted:
                    self._flag(
                        "anthropic.stop-consistent",
                        f"stop_sequence {sequence!r} is not one of the requested "
                        f"stop_sequences {list(wanted)!r}",
                        event,
                    )
        elif sequence is not None:
            self._flag(
                "anthropic.stop-consistent",
                f"stop_sequence {sequence!r} with stop_reason {reason!r} (it is set only when "
                "stop_reason is stop_sequence)",
                event,
            )
        if "anthropic.stop-max-tokens" in self.expect:
            self.checked.add("anthropic.stop-max-tokens")
            if reason != "max_tokens":
                limit = self.request.get("max_tokens")
                self._flag(
                    "anthropic.stop-max-tokens",
                    f"a generation cut by max_tokens ({limit!r}) ended with stop_reason "
                    f"{reason!r} after {self._output_tokens!r} output tokens",
                    event,
                )
        if reason != "max_tokens":  # the one excuse for unparsable tool input
            for message, at in self._pending_tool:
                self._flag("anthropic.tool-input-json", message, at)
        self._pending_tool.clear()
        self._tool_choice(reason, event)
        out = self._output_tokens
        if _is_int(out) and self.content_t:
            self.checked.add("anthropic.usage-output")
            if out == 0:
                self._flag(
                    "anthropic.usage-output",
                    f"usage.output_tokens is 0 although {len(self.content_t)} content delta(s) "
                    "were streamed (token counts, billing and load tests read 0)",
                    event,
                )

    def _tool_choice(self, reason: Any, event: Event | None) -> None:
        """``anthropic.tool-choice``: the tool_use block a forced tool_choice asks for (a
        generation cut by max_tokens, or refused, had no chance to make the call)."""
        forced = _forced_tool(self.request.get("tool_choice"))
        if forced is None or reason in ("max_tokens", "refusal"):
            return
        self.checked.add("anthropic.tool-choice")
        names = [b.start.get("name") for b in self._blocks if b.kind == "tool_use"]
        how = f"tool_choice names {forced!r}" if forced else 'tool_choice is {"type": "any"}'
        if not names:
            kinds = [b.kind for b in self._blocks]
            self._flag(
                "anthropic.tool-choice",
                f"no tool_use block although {how}: the message has {kinds or 'no blocks'} "
                f"and stop_reason {reason!r}",
                event,
            )
        elif forced and forced not in names:
            self._flag("anthropic.tool-choice", f"tool_use of {names} although {how}", event)

    def _end(self, truncated: bool) -> None:
        self.checked.update(
            ("anthropic.event-name", "anthropic.data-json", "anthropic.unknown-event")
        )
        if self.events or not truncated:
            self.checked.update(
                ("anthropic.start-first", "anthropic.no-done", "anthropic.stop-last")
            )
        if self._blocks:
            self.checked.update(
                (
                    "anthropic.block-index",
                    "anthropic.block-nesting",
                    "anthropic.block-start-shape",
                    "anthropic.delta-type",
                )
            )
        if truncated:
            # the transport failure is the finding; verdicts that need the final stop reason
            # stand only when a message_delta made it through
            if self._deltas:
                self._conclude(None)
        elif self._phase == _ERRORED:
            pass  # the stream ended at an error event: nothing more is owed
        elif not self._started and not self._missing_start:
            self._flag(
                "anthropic.start-first",
                "the stream has no message_start"
                + ("" if self.events else " (the body held no events)"),
            )
        elif self._phase != _STOPPED:
            self.checked.add("anthropic.message-delta")
            last = self.events - 1 if self.events else None
            open_note = f" ({self._open.describe()} still open)" if self._open else ""
            if not self._deltas:
                self._flag(
                    "anthropic.message-delta",
                    f"the stream ended without message_delta or message_stop{open_note}",
                    last,
                )
            else:
                self._flag("anthropic.stop-last", "the stream ended without message_stop", last)
                self._conclude(None)
        if not truncated and self._phase != _ERRORED and not self._concluded:
            # no stop reason to excuse it: a stopped tool block with broken input stands
            for message, at in self._pending_tool:
                self._flag("anthropic.tool-input-json", message, at)
        for rule, count in self._counts.items():
            if count > _CAP:
                self.findings.append(
                    Finding(rule, f"... and {count - _CAP} more finding(s) of this rule")
                )

    # -- the accumulated message -------------------------------------------------------

    def message(self) -> dict[str, Any]:
        """The message a client rebuilds, normalised (compared with the SDK's final message).

        Blocks in index order; usage from message_start merged with the last message_delta
        as the SDK does (output_tokens overwritten by each message_delta, input_tokens only
        when a message_delta carries a non-null one).
        """
        start = self._start
        content: list[dict[str, Any]] = []
        blocks = sorted(
            self._blocks, key=lambda b: (0, b.index) if type(b.index) is int else (1, 0)
        )
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
            elif kind in _TOOL_KINDS:
                content.append(
                    {
                        "type": kind,
                        "id": head.get("id"),
                        "name": head.get("name"),
                        "input": self._tool_input(block),
                    }
                )
            else:
                content.append(dict(head))
        return {
            "id": _str_or_none(start.get("id")),
            "model": _str_or_none(start.get("model")),
            "role": _str_or_none(start.get("role")),
            "content": content,
            "stop_reason": _str_or_none(self._stop_reason),
            "stop_sequence": _str_or_none(self._stop_sequence),
            "usage": {"input_tokens": self._input_tokens, "output_tokens": self._output_tokens},
        }

    @staticmethod
    def _tool_input(block: _Block) -> Any:
        joined = "".join(block.parts)
        if not joined:
            return block.start.get("input", {})
        try:
            return _loads(joined)
        except orjson.JSONDecodeError:
            return None


_NOT_JSON: Final = object()


def _str_or_none(value: Any) -> str | None:
    return value if type(value) is str else None


# -- non-stream answers -----------------------------------------------------------------


def check_error_response(
    status: int | None,
    content_type: str | None,
    body: bytes,
    expected_status: tuple[int, ...],
) -> tuple[list[Finding], set[str]]:
    """``anthropic.error-status`` and ``anthropic.error-body`` for a request that must be refused.

    Besides the shared checks, the body's ``error.type`` must be the one that goes with the
    status (401 authentication_error, 400 invalid_request_error, 404 not_found_error, ...).
    """
    findings, checked, value = check_error_answer(
        _API, status, content_type, body, expected_status,
        schema(_API, "error_body"), '{"type": "error", "error": {type, message}}',
    )  # fmt: skip
    error = value.get("error") if type(value) is dict else None
    found = error.get("type") if type(error) is dict else None
    wanted = ERROR_TYPE_BY_STATUS.get(status) if status is not None else None
    if wanted is not None and type(found) is str and found != wanted:
        findings.append(
            Finding(
                "anthropic.error-status",
                f"status {status} goes with error type {wanted!r}, the body says {found!r} "
                "(the SDK picks the error class by status)",
                None,
                excerpt(body),
                level_as="SHOULD",
            )
        )
    return findings, checked


def check_json_response(
    status: int | None, content_type: str | None, body: bytes
) -> tuple[list[Finding], set[str]]:
    """``http.stream-false-json``: without ``stream: true`` the answer is one JSON message."""
    return check_json_answer(
        status, content_type, body, schema(_API, "message"), "a message object"
    )
