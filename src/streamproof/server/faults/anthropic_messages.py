"""Faults of the Anthropic Messages protocol, and the API-agnostic faults again for it.

Naming: every fault of this API starts with ``anthropic-`` (``-k anthropic`` selects them).
The wire, HTTP and transport faults of ``wire.py`` and the hostile ones of ``hostile.py`` are
registered a second time as ``anthropic-<name>`` with ``api="anthropic"``: same effect, but
proven against the Anthropic endpoint and scenarios (the ``"any"`` originals are proven with
the OpenAI API).

Chunk edits receive the stream as the endpoint built it — event dicts in sending order — and
return a new list (:class:`Raw` events are written as given, e.g. without an ``event:`` line);
they never mutate the dicts they were given. Each edit leaves every other rule intact where it
can, and says in its description which rules it trips besides its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

import orjson

from ..anthropic_messages import PING, Raw, is_content
from ..endpoint import Reply, StreamInfo, dumps_with_raw
from .base import ChunkEdit, Fault
from .hostile import ANTHROPIC_RULES as HOSTILE_ANTHROPIC_RULES
from .hostile import HOSTILE_FAULTS
from .leak import leak_in_reply, leak_text, remember_key
from .wire import ANTHROPIC_RULES as WIRE_ANTHROPIC_RULES
from .wire import (
    WIRE_FAULTS,
    accept_any_key,
    drop_tools,
    error_as_5xx,
    error_as_sse,
    error_detail_only,
    serve_any_model,
)

__all__ = ["ANTHROPIC_FAULTS", "PREFIX"]

PREFIX: Final = "anthropic-"
Items = list[Any]
_RAW_A: Final = "\x00raw-a"
_RAW_B: Final = "\x00raw-b"
_ERROR_AFTER: Final = 3  # content deltas before a mid-stream error


# -- helpers -----------------------------------------------------------------------------------


def _is(item: Any, kind: str) -> bool:
    return isinstance(item, dict) and item.get("type") == kind


def _where(items: Items, kind: str) -> list[int]:
    return [i for i, item in enumerate(items) if _is(item, kind)]


def _content(items: Items, delta_type: str | None = None) -> list[int]:
    """Positions of the content deltas (of one delta type); at least one position."""
    found = [
        i
        for i, item in enumerate(items)
        if is_content(item) and delta_type in (None, item["delta"]["type"])
    ]
    return found or [len(items) - 1]


def _map(items: Items, kind: str, edit: Callable[[dict[str, Any]], Any]) -> Items:
    return [edit(item) if _is(item, kind) else item for item in items]


def _data(item: Any) -> bytes:
    return item.data if isinstance(item, Raw) else orjson.dumps(item)


def _stop_reason(new: str, old: str | None = None, sequence: str | None = None) -> ChunkEdit:
    """An edit that sets the stop reason (only where it is ``old``, if given) and the
    stop sequence of every message_delta."""

    def edit(items: Items, info: StreamInfo) -> Items:
        def one(item: dict[str, Any]) -> dict[str, Any]:
            if old is not None and item["delta"]["stop_reason"] != old:
                return item
            return {**item, "delta": {"stop_reason": new, "stop_sequence": sequence}}

        return _map(items, "message_delta", one)

    return edit


def _after_error(items: Items, error: dict[str, Any], rest: bool) -> Items:
    """The stream up to the third content delta, an ``error`` event, and (``rest``) the
    remaining events after it."""
    positions = _content(items)
    p = positions[min(_ERROR_AFTER, len(positions)) - 1] + 1
    return [*items[:p], error, *(items[p:] if rest else ())]


def _error(kind: str | None, message: str) -> dict[str, Any]:
    body = {"message": message} if kind is None else {"type": kind, "message": message}
    return {"type": "error", "error": body}


# -- framing -----------------------------------------------------------------------------------


def _no_event_lines(items: Items, info: StreamInfo) -> Items:
    return [Raw(None, _data(item)) for item in items]


def _not_json(items: Items, info: StreamInfo) -> Items:
    """A delta cut in half, as one event, before the intact delta."""
    p = _content(items)[0]
    raw = _data(items[p])
    return [*items[:p], Raw("content_block_delta", raw[: len(raw) // 2]), *items[p:]]


def _done_after_stop(items: Items, info: StreamInfo) -> Items:
    return [*items, Raw(None, b"[DONE]")]


def _unknown_event(items: Items, info: StreamInfo) -> Items:
    p = _where(items, "content_block_start")[0] + 1
    return [*items[:p], {"type": "streamproof_progress", "done": 0.5}, *items[p:]]


def _ping_shape(items: Items, info: StreamInfo) -> Items:
    """The pings carry ``{}``; one is added after the first block start if there is none."""
    bad = Raw("ping", b"{}")
    if not any(item == PING for item in items):
        p = _where(items, "content_block_start")[0] + 1
        items = [*items[:p], PING, *items[p:]]
    return [bad if item == PING else item for item in items]


# -- lifecycle ---------------------------------------------------------------------------------


def _start_not_first(items: Items, info: StreamInfo) -> Items:
    """The first content_block_start before message_start."""
    p = _where(items, "content_block_start")[0]
    return [items[p], *items[:p], *items[p + 1 :]]


def _start_without_role(items: Items, info: StreamInfo) -> Items:
    def edit(item: dict[str, Any]) -> dict[str, Any]:
        message = {k: v for k, v in item["message"].items() if k != "role"}
        return {**item, "message": message}

    return _map(items, "message_start", edit)


def _shift_index(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "index": item["index"] + 1}


def _block_index_skip(items: Items, info: StreamInfo) -> Items:
    """Block indices count from 1 (start, deltas and stop alike)."""
    for kind in ("content_block_start", "content_block_delta", "content_block_stop"):
        items = _map(items, kind, _shift_index)
    return items


def _blocks_interleaved(items: Items, info: StreamInfo) -> Items:
    """The stop of block 0 comes after the start of block 1."""
    starts = _where(items, "content_block_start")
    stop = _where(items, "content_block_stop")[0]
    if len(starts) < 2:
        return items
    after = starts[1] + 1
    return [*items[:stop], *items[stop + 1 : after], items[stop], *items[after:]]


def _block_not_closed(items: Items, info: StreamInfo) -> Items:
    last = _where(items, "content_block_stop")[-1]
    return [item for i, item in enumerate(items) if i != last]


def _text_start_missing_text(items: Items, info: StreamInfo) -> Items:
    def edit(item: dict[str, Any]) -> dict[str, Any]:
        if item["content_block"]["type"] != "text":
            return item
        return {**item, "content_block": {"type": "text"}}

    return _map(items, "content_block_start", edit)


def _text_deltas(items: Items) -> list[int]:
    """Positions of the text deltas (none in a stream of tool calls only)."""
    return [i for i, item in enumerate(items) if _is(item, "content_block_delta")
            and item["delta"]["type"] == "text_delta"]  # fmt: skip


def _delta_type_mismatch(items: Items, info: StreamInfo) -> Items:
    """The second text piece sent as an input_json_delta inside the text block: the SDK
    ignores a delta that does not fit its block, and that piece of the text is lost."""
    positions = _text_deltas(items)
    if not positions:
        return items
    p = positions[min(1, len(positions) - 1)]
    text = items[p]["delta"]["text"]
    wrong = {**items[p], "delta": {"type": "input_json_delta", "partial_json": text}}
    return [*items[:p], wrong, *items[p + 1 :]]


def _usage_missing(items: Items, info: StreamInfo) -> Items:
    return _map(items, "message_delta", lambda d: {k: v for k, v in d.items() if k != "usage"})


def _zero_output_tokens(items: Items, info: StreamInfo) -> Items:
    """output_tokens 0 in message_start and every message_delta although text was streamed
    (aimock does this)."""

    def start(item: dict[str, Any]) -> dict[str, Any]:
        message = item["message"]
        return {**item, "message": {**message, "usage": {**message["usage"], "output_tokens": 0}}}

    items = _map(items, "message_start", start)
    return _map(
        items, "message_delta", lambda d: {**d, "usage": {**d["usage"], "output_tokens": 0}}
    )


def _signature_split(items: Items, info: StreamInfo) -> Items:
    """The signature in two signature_delta events (the SDK keeps only the last one)."""
    out: Items = []
    for item in items:
        if _is(item, "content_block_delta") and item["delta"]["type"] == "signature_delta":
            signature = item["delta"]["signature"]
            half = len(signature) // 2
            for part in (signature[:half], signature[half:]):
                out.append({**item, "delta": {"type": "signature_delta", "signature": part}})
        else:
            out.append(item)
    return out


def _tool_input_invalid(items: Items, info: StreamInfo) -> Items:
    """The last input fragment is never sent: the joined partial_json does not close."""
    last = _content(items, "input_json_delta")[-1]
    return [item for i, item in enumerate(items) if i != last]


def _without(kind: str) -> ChunkEdit:
    def edit(items: Items, info: StreamInfo) -> Items:
        return [item for item in items if not _is(item, kind)]

    return edit


def _data_after_stop(items: Items, info: StreamInfo) -> Items:
    return [*items, PING]


# -- usage -------------------------------------------------------------------------------------


def _usage_decreasing(items: Items, info: StreamInfo) -> Items:
    """A first message_delta that counts three more output tokens than the final one."""
    p = _where(items, "message_delta")[0]
    delta = items[p]
    usage = delta["usage"]
    high = {**delta, "usage": {**usage, "output_tokens": usage["output_tokens"] + 3}}
    return [*items[:p], high, *items[p:]]


def _zero_input_tokens(items: Items, info: StreamInfo) -> Items:
    def edit(item: dict[str, Any]) -> dict[str, Any]:
        message = item["message"]
        return {**item, "message": {**message, "usage": {**message["usage"], "input_tokens": 0}}}

    return _map(items, "message_start", edit)


# -- errors and encoding -----------------------------------------------------------------------


def _midstream_error_malformed(items: Items, info: StreamInfo) -> Items:
    return _after_error(items, _error(None, "Internal server error"), rest=False)


def _error_then_continue(items: Items, info: StreamInfo) -> Items:
    return _after_error(items, _error("api_error", "Internal server error"), rest=True)


def _overloaded_midstream(items: Items, info: StreamInfo) -> Items:
    return _after_error(items, _error("overloaded_error", "Overloaded"), rest=False)


def _leak_key(items: Items, info: StreamInfo) -> Items:
    """The key quoted in the first text delta and, after three deltas, in an api_error
    event's message, which ends the stream."""
    for first in _text_deltas(items)[:1]:
        item = items[first]
        delta = {**item["delta"], "text": item["delta"]["text"] + leak_text()}
        items = [*items[:first], {**item, "delta": delta}, *items[first + 1 :]]
    return _after_error(items, _error("api_error", "upstream failed" + leak_text()), rest=False)


def _no_request_id(reply: Reply) -> Reply:
    reply.headers = [(k, v) for k, v in reply.headers if k != "request-id"]
    return reply


def _wrong_error_type(reply: Reply) -> Reply:
    """The 401 says invalid_request_error (the type must follow the status)."""
    if reply.status < 400:
        return reply
    body = orjson.loads(reply.body)
    body["error"]["type"] = "invalid_request_error" if reply.status != 400 else "api_error"
    reply.body = orjson.dumps(body)
    return reply


def _text_delta(items: Items) -> tuple[int, str] | None:
    """The first text delta with a non-ASCII character (else the first text delta; None
    without text)."""
    texts = [(p, items[p]["delta"]["text"]) for p in _text_deltas(items)]
    return next(((p, t) for p, t in texts if not t.isascii()), texts[0] if texts else None)


def _with_text(item: dict[str, Any], text: str) -> dict[str, Any]:
    return {**item, "delta": {"type": "text_delta", "text": text}}


def _utf8_split(items: Items, info: StreamInfo) -> Items:
    """A multi-byte character split between two events: its lead byte ends one delta's
    text, its continuation bytes start the next one's."""
    if (found := _text_delta(items)) is None:
        return items
    p, text = found
    if text.isascii():
        text += "é"
    at = next(i for i, ch in enumerate(text) if not ch.isascii())
    encoded = text[at].encode()
    head = dumps_with_raw(_with_text(items[p], text[:at] + _RAW_A), {_RAW_A: encoded[:1]})
    tail = dumps_with_raw(_with_text(items[p], _RAW_B + text[at + 1 :]), {_RAW_B: encoded[1:]})
    name = "content_block_delta"
    return [*items[:p], Raw(name, head), Raw(name, tail), *items[p + 1 :]]


def _invalid_utf8(items: Items, info: StreamInfo) -> Items:
    """A text delta ending in the byte 0xFF, which UTF-8 never uses."""
    if (found := _text_delta(items)) is None:
        return items
    p, text = found
    raw = dumps_with_raw(_with_text(items[p], text + _RAW_A), {_RAW_A: b"\xff"})
    return [*items[:p], Raw("content_block_delta", raw), *items[p + 1 :]]


def _faults() -> tuple[Fault, ...]:
    own = (
        # framing
        Fault("no-event-lines", "anthropic", ("anthropic.event-name", "sdk.anthropic-accumulate"),
              "plain", "no event: lines (the SDK skips unnamed events: it rebuilds nothing)",
              chunks=_no_event_lines),
        Fault("not-json", "anthropic", ("anthropic.data-json", "sdk.anthropic-accumulate"),
              "plain", "an extra event holding half a delta's JSON (the SDK raises on it)",
              chunks=_not_json),
        Fault("done-after-stop", "anthropic", ("anthropic.no-done",), "plain",
              "data: [DONE] after message_stop (SHOULD)", chunks=_done_after_stop),
        Fault("unknown-event", "anthropic", ("anthropic.unknown-event",), "plain",
              "an event of an unknown type after the first block start (INFO)",
              chunks=_unknown_event),
        Fault("ping-shape", "anthropic", ("anthropic.ping-shape",), "plain",
              "pings carry {} instead of {\"type\": \"ping\"}", chunks=_ping_shape),
        # lifecycle
        Fault("start-not-first", "anthropic", ("anthropic.start-first",
              "sdk.anthropic-accumulate"), "plain", "the first content_block_start comes "
              "before message_start (the SDK drops it, then fails on its deltas)",
              chunks=_start_not_first),
        Fault("start-shape", "anthropic", ("anthropic.start-shape",), "plain",
              "message_start's message has no role", chunks=_start_without_role),
        Fault("block-index-skip", "anthropic", ("anthropic.block-index",
              "sdk.anthropic-accumulate"), "plain", "block indices count from 1 (the SDK "
              "looks deltas up by index and fails)", chunks=_block_index_skip),
        Fault("blocks-interleaved", "anthropic", ("anthropic.block-nesting",), "thinking",
              "the text block starts before the thinking block stops",
              chunks=_blocks_interleaved),
        Fault("block-not-closed", "anthropic", ("anthropic.block-closed",), "plain",
              "the last block has no content_block_stop", chunks=_block_not_closed),
        Fault("text-start-missing-text", "anthropic", ("anthropic.block-start-shape",
              "sdk.anthropic-accumulate"), "plain", 'text blocks start as {"type": "text"}, '
              "without the text key (the SDK then adds text to None and raises)",
              chunks=_text_start_missing_text),
        Fault("delta-type-mismatch", "anthropic", ("anthropic.delta-type",), "plain",
              "a piece of the text sent as input_json_delta in the text block (the SDK "
              "drops it)", chunks=_delta_type_mismatch),
        Fault("signature-split", "anthropic", ("anthropic.delta-type",), "thinking",
              "the signature comes in two signature_delta events (the SDK keeps the last)",
              chunks=_signature_split),
        Fault("tool-input-invalid", "anthropic", ("anthropic.tool-input-json",
              "sdk.anthropic-accumulate"), "tool", "the last input fragment is missing: the "
              "joined partial_json is not JSON (the SDK's partial parser still makes an "
              "object of it)", chunks=_tool_input_invalid),
        Fault("no-message-delta", "anthropic", ("anthropic.message-delta",), "plain",
              "no message_delta: no stop reason, no final usage",
              chunks=_without("message_delta")),
        Fault("no-message-stop", "anthropic", ("anthropic.stop-last",), "plain",
              "the stream ends after message_delta, without message_stop",
              chunks=_without("message_stop")),
        Fault("data-after-stop", "anthropic", ("anthropic.stop-last",), "plain",
              "a ping after message_stop", chunks=_data_after_stop),
        Fault("stop-reason-unknown", "anthropic", ("anthropic.stop-reason-enum",), "plain",
              "stop_reason is 'stop' (an OpenAI finish reason)", chunks=_stop_reason("stop")),
        Fault("stop-inconsistent", "anthropic", ("anthropic.stop-consistent",), "plain",
              "stop_reason tool_use although no tool_use block was streamed",
              chunks=_stop_reason("tool_use")),
        Fault("stop-sequence-unrequested", "anthropic", ("anthropic.stop-consistent",), "plain",
              "stop_reason stop_sequence with a stop_sequence that was never requested",
              chunks=_stop_reason("stop_sequence", sequence="\n\nHuman:")),
        Fault("tool-stop-end-turn", "anthropic", ("anthropic.stop-consistent",), "tool",
              "a streamed tool_use block ends with stop_reason end_turn",
              chunks=_stop_reason("end_turn", "tool_use")),
        Fault("ignore-max-tokens", "anthropic", ("anthropic.stop-max-tokens",), "max-tokens",
              "a generation cut by max_tokens ends with stop_reason end_turn",
              chunks=_stop_reason("end_turn", "max_tokens")),
        # usage
        Fault("usage-decreasing", "anthropic", ("anthropic.usage",), "plain",
              "a first message_delta counts three output tokens more than the final one (a "
              "warning: the SDK keeps the last count)", chunks=_usage_decreasing,
              weaker=("anthropic.usage",)),
        Fault("usage-missing", "anthropic", ("anthropic.usage", "sdk.anthropic-accumulate"),
              "plain", "message_delta has no usage object (the SDK reads usage.output_tokens "
              "from it and raises)", chunks=_usage_missing),
        Fault("zero-output-tokens", "anthropic", ("anthropic.usage-output",), "plain",
              "message_delta reports output_tokens 0 although text was streamed",
              chunks=_zero_output_tokens),
        Fault("tool-choice-ignored", "anthropic", ("anthropic.tool-choice",), "tool",
              "tools and tool_choice are dropped: a forced tool use is answered in text",
              request=drop_tools),
        Fault("zero-input-tokens", "anthropic", ("anthropic.usage-input",), "plain",
              "message_start reports input_tokens 0 (SHOULD)", chunks=_zero_input_tokens),
        # errors
        Fault("no-request-id", "anthropic", ("anthropic.request-id",), "plain",
              "no request-id response header (INFO)", reply=_no_request_id),
        Fault("accept-bad-key", "anthropic", ("http.auth-required",), "error-bad-key",
              "any API key is accepted: a bad key gets a 200 stream (INFO: the endpoint checks "
              "no keys)", request=accept_any_key),
        Fault("accept-any-model", "anthropic", ("http.unknown-model",), "error-unknown-model",
              "an unknown model name is served by the default model", request=serve_any_model),
        Fault("error-5xx", "anthropic", ("anthropic.error-status",), "error-bad-key",
              "client errors are answered 500", reply=error_as_5xx),
        Fault("error-type-wrong", "anthropic", ("anthropic.error-status",), "error-bad-key",
              "the 401 error body says invalid_request_error, not authentication_error (a "
              "warning)", reply=_wrong_error_type, weaker=("anthropic.error-status",)),
        Fault("error-body-sse", "anthropic", ("anthropic.error-body",), "error-bad-key",
              "error answers are an event stream holding the JSON", reply=error_as_sse),
        Fault("error-body-shape", "anthropic", ("anthropic.error-body",), "error-bad-key",
              'error bodies are {"detail": "..."} instead of {"type": "error", ...}',
              reply=error_detail_only),
        Fault("midstream-error-malformed", "anthropic", ("anthropic.error-event",
              "sdk.anthropic-accumulate"), "plain", "after three deltas an error event whose "
              "error has no type; the stream ends there", chunks=_midstream_error_malformed),
        Fault("error-then-continue", "anthropic", ("anthropic.error-event",
              "sdk.anthropic-accumulate"), "plain", "after three deltas a valid api_error "
              "event, then the rest of the stream as if nothing happened",
              chunks=_error_then_continue),
        # a valid edge, not a fault: it trips no rule, and the suite proves that it passes
        Fault("overloaded-midstream", "anthropic", (), "plain",
              "valid edge: after three deltas a well-formed overloaded_error event ends the "
              "stream, as the real API sends it; the SDK raises it as APIStatusError",
              chunks=_overloaded_midstream),
        Fault("leak-key", "anthropic", (), "plain",
              "the key echoed in debug headers, the text, error bodies and a mid-stream "
              "api_error (as given, URL-encoded, base64; JSON-escaped on the wire): nothing "
              "the suite writes may hold it", request=remember_key, chunks=_leak_key,
              reply=leak_in_reply),
        # encoding
        Fault("utf8-split", "anthropic", ("sse.utf8", "sdk.anthropic-accumulate"), "plain",
              "a multi-byte character split between two events (the SDK's strict decode "
              "raises)", chunks=_utf8_split),
        Fault("invalid-utf8", "anthropic", ("sse.utf8", "sdk.anthropic-accumulate"), "plain",
              "a text delta holds the byte 0xFF (the SDK's strict decode raises)",
              chunks=_invalid_utf8),
    )  # fmt: skip
    again = tuple(
        replace(
            f,
            api="anthropic",
            rules=OWN_RULES.get(f.name, f.rules_for("anthropic")),
            weaker=f.weaker_for("anthropic"),
        )
        for f in (*WIRE_FAULTS, *HOSTILE_FAULTS)
    )
    return tuple(replace(f, name=PREFIX + f.name) for f in (*own, *again))


# the rules of the wire and hostile faults against this API, where not their own with {api}
OWN_RULES: Final = {**WIRE_ANTHROPIC_RULES, **HOSTILE_ANTHROPIC_RULES}


ANTHROPIC_FAULTS: Final = _faults()
