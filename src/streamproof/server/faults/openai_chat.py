"""Faults of the OpenAI chat-completions protocol: edits of the chunk list (and a few of the
frames), one or two rules each.

Chunk edits receive the stream as the endpoint built it — one-choice chunk dicts in sending
order, raw ``bytes`` payloads (``[DONE]``) — and return a new list; they never mutate the
dicts they were given (the usage dict is shared with the endpoint). Each edit is written to
leave every other rule intact where it can: e.g. ``not-json`` inserts a broken copy of a
chunk instead of breaking a real one, so no content goes missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from ..endpoint import StreamInfo, dumps_with_raw, new_id
from ..openai_chat import DONE
from ..send import EVENT, Frame
from ..timing import Timing
from .base import ChunkEdit, Fault
from .leak import leak_in_reply, leak_text, remember_key
from .wire import (
    accept_any_key,
    drop_tools,
    error_as_5xx,
    error_as_403,
    error_as_sse,
    error_detail_only,
    serve_any_model,
)

__all__ = ["OPENAI_FAULTS"]

Items = list[Any]
_RAW_A: Final = "\x00raw-a"
_RAW_B: Final = "\x00raw-b"


# -- helpers -----------------------------------------------------------------------------------


def _choice(item: Any) -> dict[str, Any] | None:
    """The (first) choice of a chunk dict, None for raw payloads and ``choices: []``."""
    if isinstance(item, dict) and item.get("choices"):
        return item["choices"][0]
    return None


def _with_delta(chunk: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    choice = {**chunk["choices"][0], "delta": delta, "finish_reason": None}
    return {**chunk, "choices": [choice]}


def _content_positions(items: Items) -> list[int]:
    """Where the content events are (text, or a tool-call fragment); at least one position."""
    found = [
        i
        for i, item in enumerate(items)
        if (c := _choice(item)) and (c["delta"].get("content") or c["delta"].get("tool_calls"))
    ]
    return found or [0]


def _first_finish(items: Items) -> int | None:
    finishes = (i for i, item in enumerate(items) if (c := _choice(item)) and c["finish_reason"])
    return next(finishes, None)


def _map_choices(items: Items, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> Items:
    return [
        {**item, "choices": [edit(c) for c in item["choices"]]} if _choice(item) else item
        for item in items
    ]


def _map_tool_entries(items: Items, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> Items:
    def per_choice(c: dict[str, Any]) -> dict[str, Any]:
        entries = c["delta"].get("tool_calls")
        if not entries:
            return c
        return {**c, "delta": {**c["delta"], "tool_calls": [edit(e) for e in entries]}}

    return _map_choices(items, per_choice)


def _call0_fragments(items: Items) -> list[int]:
    """Positions of the argument fragments (not the head) of choice 0's first tool call."""
    out = []
    for i, item in enumerate(items):
        c = _choice(item)
        if c and c["index"] == 0:
            entries = c["delta"].get("tool_calls") or []
            if any(e.get("index") == 0 and "id" not in e for e in entries):
                out.append(i)
    return out


def _from_middle(key: str, change: Callable[[Any], Any]) -> ChunkEdit:
    """An edit that changes ``key`` on every chunk from the middle of the stream on."""

    def edit(items: Items, info: StreamInfo) -> Items:
        chunks = [i for i, item in enumerate(items) if isinstance(item, dict)]
        first = chunks[len(chunks) // 2]
        value = change(items[first][key])
        return [
            {**item, key: value} if i >= first and isinstance(item, dict) else item
            for i, item in enumerate(items)
        ]

    return edit


def _finish_to(new: str, old: str | None = None) -> ChunkEdit:
    """An edit that rewrites the finish reasons (only ``old`` ones, if given) to ``new``."""

    def edit(items: Items, info: StreamInfo) -> Items:
        return _map_choices(
            items,
            lambda c: (
                {**c, "finish_reason": new}
                if c["finish_reason"] and old in (None, c["finish_reason"])
                else c
            ),
        )

    return edit


# -- framing and chunk shape -------------------------------------------------------------------


def _missing_done(items: Items, info: StreamInfo) -> Items:
    return [item for item in items if item != DONE]


def _data_after_done(items: Items, info: StreamInfo) -> Items:
    return [*items, DONE]


def _not_json(items: Items, info: StreamInfo) -> Items:
    """A chunk cut in half, as a server that splits one JSON object over two events sends
    it, inserted before the intact chunk."""
    p = _content_positions(items)[0]
    raw = orjson.dumps(items[p])
    return [*items[:p], raw[: len(raw) // 2], *items[p:]]


def _event_names(frames: list[Frame], timing: Timing) -> list[Frame]:
    return [f._replace(data=b"event: chunk\n" + f.data) if f.kind == EVENT else f for f in frames]


def _created_as_string(items: Items, info: StreamInfo) -> Items:
    return [
        {**item, "created": str(item["created"])} if isinstance(item, dict) else item
        for item in items
    ]


def _wrong_object(items: Items, info: StreamInfo) -> Items:
    """An extra empty-delta chunk whose object is "chat.completion" after the first content
    (the SDK's stream helper skips such chunks, so nothing is lost for it)."""
    p = _content_positions(items)[0]
    extra = {**_with_delta(items[p], {}), "object": "chat.completion"}
    return [*items[: p + 1], extra, *items[p + 1 :]]


def _wrong_object_content(items: Items, info: StreamInfo) -> Items:
    """The second content chunk's object is "chat.completion": the SDK's stream helper skips
    it, and its text is lost from the message it rebuilds."""
    positions = _content_positions(items)
    p = positions[min(1, len(positions) - 1)]
    return [*items[:p], {**items[p], "object": "chat.completion"}, *items[p + 1 :]]


def _finish_without_delta(items: Items, info: StreamInfo) -> Items:
    """The finish chunk's choice has no delta key (the SDK reads choice.delta and raises)."""
    p = _first_finish(items)
    if p is None:
        return items
    choice = {k: v for k, v in items[p]["choices"][0].items() if k != "delta"}
    return [*items[:p], {**items[p], "choices": [choice]}, *items[p + 1 :]]


def _no_finish_key(items: Items, info: StreamInfo) -> Items:
    """Intermediate choices leave out the finish_reason key (LiteLLM does)."""
    return _map_choices(
        items,
        lambda c: c if c["finish_reason"] else {k: v for k, v in c.items() if k != "finish_reason"},
    )


# -- lifecycle ---------------------------------------------------------------------------------


def _no_role(items: Items, info: StreamInfo) -> Items:
    return _map_choices(
        items, lambda c: {**c, "delta": {k: v for k, v in c["delta"].items() if k != "role"}}
    )


def _role_every_chunk(items: Items, info: StreamInfo) -> Items:
    return _map_choices(
        items,
        lambda c: {**c, "delta": {"role": "assistant", **c["delta"]}} if c["delta"] else c,
    )


def _content_number(items: Items, info: StreamInfo) -> Items:
    """The second content chunk's text replaced by the number 42 (the SDK cannot merge it
    and drops it: that piece of the text is lost)."""
    positions = _content_positions(items)
    p = positions[min(1, len(positions) - 1)]
    return [*items[:p], _with_delta(items[p], {"content": 42}), *items[p + 1 :]]


def _no_finish(items: Items, info: StreamInfo) -> Items:
    """The finish chunk says finish_reason null: the choice never finishes."""
    return _map_choices(items, lambda c: {**c, "finish_reason": None})


def _double_finish(items: Items, info: StreamInfo) -> Items:
    p = _first_finish(items)
    return items if p is None else [*items[: p + 1], items[p], *items[p + 1 :]]


def _content_after_finish(items: Items, info: StreamInfo) -> Items:
    """The finish chunk of a choice sent before that choice's last content chunk."""
    p = _first_finish(items)
    if p is None:
        return items
    index = items[p]["choices"][0]["index"]
    before = [q for q in _content_positions(items) if q < p and _choice(items[q])["index"] == index]
    if not before:
        return items
    q = before[-1]
    return [*items[:q], *items[q + 1 : p + 1], items[q], *items[p + 1 :]]


def _only_choice_0(items: Items, info: StreamInfo) -> Items:
    return [item for item in items if (c := _choice(item)) is None or c["index"] == 0]


# -- tool calls --------------------------------------------------------------------------------


def _tool_index_missing(items: Items, info: StreamInfo) -> Items:
    return _map_tool_entries(
        items, lambda e: e if "id" in e else {k: v for k, v in e.items() if k != "index"}
    )


def _tool_index_gap(items: Items, info: StreamInfo) -> Items:
    return _map_tool_entries(items, lambda e: {**e, "index": e["index"] + 1} if e["index"] else e)


def _tool_head_missing(items: Items, info: StreamInfo) -> Items:
    return _map_tool_entries(items, lambda e: {k: v for k, v in e.items() if k != "id"})


def _tool_head_repeat(items: Items, info: StreamInfo) -> Items:
    """Every argument fragment repeats the call's id, type and name (the SDK concatenates
    them: ids and names come out doubled)."""
    heads: dict[int, dict[str, Any]] = {}

    def edit(e: dict[str, Any]) -> dict[str, Any]:
        if "id" in e:
            heads[e["index"]] = e
            return e
        head = heads[e["index"]]
        function = {"name": head["function"]["name"], **e["function"]}
        return {**e, "id": head["id"], "type": head["type"], "function": function}

    return _map_tool_entries(items, edit)


def _tool_type_repeat(items: Items, info: StreamInfo) -> Items:
    """Every argument fragment repeats type: "function" (harmless for the SDK, which
    replaces type instead of concatenating it)."""
    return _map_tool_entries(items, lambda e: e if "id" in e else {**e, "type": "function"})


def _tool_args_object(items: Items, info: StreamInfo) -> Items:
    """The first call's arguments as one JSON object instead of string fragments."""
    fragments = _call0_fragments(items)
    if not fragments:
        return items
    text = "".join(
        e["function"]["arguments"]
        for p in fragments
        for e in items[p]["choices"][0]["delta"]["tool_calls"]
    )
    try:
        arguments = orjson.loads(text)
    except orjson.JSONDecodeError:  # cut by max_tokens: there is no object to send
        return items
    delta = {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}
    whole = _with_delta(items[fragments[0]], delta)
    kept = [item for i, item in enumerate(items) if i not in fragments[1:]]
    kept[fragments[0]] = whole
    return kept


def _tool_args_invalid(items: Items, info: StreamInfo) -> Items:
    """The first call's last argument fragment is never sent: its JSON does not close."""
    fragments = _call0_fragments(items)
    return [item for i, item in enumerate(items) if i != fragments[-1]] if fragments else items


def _tool_id_long(items: Items, info: StreamInfo) -> Items:
    return _map_tool_entries(items, lambda e: {**e, "id": new_id("call_", 60)} if "id" in e else e)


# -- usage -------------------------------------------------------------------------------------


def _is_usage(item: Any) -> bool:
    return isinstance(item, dict) and item.get("choices") == [] and bool(item.get("usage"))


def _map_usage(items: Items, edit: Callable[[dict[str, int]], dict[str, int]]) -> Items:
    return [{**item, "usage": edit(item["usage"])} if _is_usage(item) else item for item in items]


def _usage_missing(items: Items, info: StreamInfo) -> Items:
    return [item for item in items if not _is_usage(item)]


def _usage_total_wrong(items: Items, info: StreamInfo) -> Items:
    return _map_usage(items, lambda u: {**u, "total_tokens": u["total_tokens"] + 8})


def _usage_every_chunk(items: Items, info: StreamInfo) -> Items:
    return [{**item, "usage": dict(info.usage)} if _choice(item) else item for item in items]


def _usage_unrequested(items: Items, info: StreamInfo) -> Items:
    if any(_is_usage(item) for item in items):
        return items
    envelope = next(item for item in items if isinstance(item, dict))
    usage = {**envelope, "choices": [], "usage": dict(info.usage)}
    return [*items[:-1], usage, items[-1]] if items[-1] == DONE else [*items, usage]


def _usage_zero_output(items: Items, info: StreamInfo) -> Items:
    """The usage chunk counts 0 completion tokens (total = prompt) although text streamed."""
    return _map_usage(
        items, lambda u: {**u, "completion_tokens": 0, "total_tokens": u["prompt_tokens"]}
    )


def _usage_over_limit(items: Items, info: StreamInfo) -> Items:
    limit = info.body.get("max_completion_tokens") or info.body.get("max_tokens")
    if not isinstance(limit, int):
        return items

    def over(u: dict[str, int]) -> dict[str, int]:
        completion = max(u["completion_tokens"], limit + 3)
        total = u["prompt_tokens"] + completion
        return {**u, "completion_tokens": completion, "total_tokens": total}

    return _map_usage(items, over)


# -- errors and encoding -----------------------------------------------------------------------


def _midstream_error_malformed(items: Items, info: StreamInfo) -> Items:
    """After three content chunks an error object without a message, then ``[DONE]``."""
    positions = _content_positions(items)
    p = positions[min(2, len(positions) - 1)]
    error = {"message": None, "type": "server_error", "param": None, "code": "internal_error"}
    return [*items[: p + 1], {"error": error}, DONE]


def _leak_key(items: Items, info: StreamInfo) -> Items:
    """The key quoted in the first content chunk's text and, after three content chunks, in
    a well-formed error's message; then ``[DONE]``."""
    positions = _content_positions(items)
    p = positions[min(2, len(positions) - 1)]
    first = positions[0]
    choice = _choice(items[first])
    if choice is not None and isinstance(choice["delta"].get("content"), str):
        delta = {**choice["delta"], "content": choice["delta"]["content"] + leak_text()}
        items = [*items[:first], _with_delta(items[first], delta), *items[first + 1 :]]
    error = {"message": "upstream failed" + leak_text(), "type": "server_error", "param": None,
             "code": None}  # fmt: skip
    return [*items[: p + 1], {"error": error}, DONE]


def _text_chunk(items: Items) -> tuple[int, str]:
    """The first content chunk with a non-ASCII character (else the first content chunk)."""
    texts = [
        (i, text)
        for i, item in enumerate(items)
        if (c := _choice(item)) and isinstance(text := c["delta"].get("content"), str) and text
    ]
    return next(((i, t) for i, t in texts if not t.isascii()), texts[0] if texts else (-1, ""))


def _utf8_split(items: Items, info: StreamInfo) -> Items:
    """A multi-byte character split between two events: its lead byte ends one chunk's
    content, its continuation bytes start the next one's."""
    p, text = _text_chunk(items)
    if p < 0:
        return items
    if text.isascii():
        text += "é"
    at = next(i for i, ch in enumerate(text) if not ch.isascii())
    encoded = text[at].encode()
    head = _with_delta(items[p], {"content": text[:at] + _RAW_A})
    tail = _with_delta(items[p], {"content": _RAW_B + text[at + 1 :]})
    first = dumps_with_raw(head, {_RAW_A: encoded[:1]})
    second = dumps_with_raw(tail, {_RAW_B: encoded[1:]})
    return [*items[:p], first, second, *items[p + 1 :]]


def _invalid_utf8(items: Items, info: StreamInfo) -> Items:
    """A content chunk ending in the byte 0xFF, which UTF-8 never uses."""
    p, text = _text_chunk(items)
    if p < 0:
        return items
    raw = dumps_with_raw(_with_delta(items[p], {"content": text + _RAW_A}), {_RAW_A: b"\xff"})
    return [*items[:p], raw, *items[p + 1 :]]


OPENAI_FAULTS: Final = (
    # framing
    Fault("missing-done", "openai", ("openai.done",), "plain",
          "the stream ends without data: [DONE]", chunks=_missing_done),
    Fault("data-after-done", "openai", ("openai.done-last",), "plain",
          "a second data: [DONE] after the first", chunks=_data_after_done),
    Fault("not-json", "openai", ("openai.data-json", "sdk.openai-accumulate"), "plain",
          "an extra event holding half a chunk's JSON", chunks=_not_json),
    Fault("event-names", "openai", ("openai.no-event-names",), "plain",
          "every event carries 'event: chunk' (INFO)", frames=_event_names),
    # chunk shape
    Fault("bad-chunk-schema", "openai", ("openai.chunk-schema",), "plain",
          "created is a string in every chunk", chunks=_created_as_string),
    Fault("wrong-object", "openai", ("openai.object",), "plain",
          "an extra empty chunk whose object is chat.completion (a warning: it carries "
          "nothing)", chunks=_wrong_object, weaker=("openai.object",)),
    Fault("wrong-object-content", "openai", ("openai.object", "sdk.openai-accumulate"),
          "plain", "a content chunk whose object is chat.completion (the SDK's stream helper "
          "skips it and loses its text)", chunks=_wrong_object_content),
    Fault("id-changes", "openai", ("openai.id-stable",), "plain",
          "the chunk id changes in the middle of the stream",
          chunks=_from_middle("id", lambda _: new_id("chatcmpl-"))),
    Fault("created-changes", "openai", ("openai.created-stable",), "plain",
          "created moves on by one second in the middle of the stream",
          chunks=_from_middle("created", lambda t: t + 1)),
    Fault("model-changes", "openai", ("openai.model-stable",), "plain",
          "the model name gains a date suffix in the middle of the stream",
          chunks=_from_middle("model", lambda m: f"{m}-0806")),
    Fault("bad-choice", "openai", ("openai.choice-schema", "sdk.openai-accumulate"), "plain",
          "the finish chunk's choice has no delta (the SDK raises on it)",
          chunks=_finish_without_delta),
    Fault("no-finish-key", "openai", ("openai.finish-reason-key",), "plain",
          "intermediate choices have no finish_reason key (LiteLLM; the SDKs default it)",
          chunks=_no_finish_key),
    # lifecycle
    Fault("no-role", "openai", ("openai.role-first",), "plain",
          "no delta carries role", chunks=_no_role),
    Fault("role-every-chunk", "openai", ("openai.role-once", "sdk.openai-accumulate"), "plain",
          "every delta repeats role: assistant (the SDK rebuilds 'assistantassistant...')",
          chunks=_role_every_chunk),
    Fault("content-number", "openai", ("openai.delta-types",), "plain",
          "the second content chunk's text is the number 42", chunks=_content_number),
    Fault("no-finish", "openai", ("openai.finish-once",), "plain",
          "the finish chunk's finish_reason is null: the choice never finishes",
          chunks=_no_finish),
    Fault("double-finish", "openai", ("openai.finish-once",), "plain",
          "the finish chunk is sent twice (a warning: the same value)", chunks=_double_finish,
          weaker=("openai.finish-once",)),
    Fault("content-after-finish", "openai", ("openai.finish-last",), "plain",
          "the finish chunk comes before the last content chunk", chunks=_content_after_finish),
    Fault("finish-unknown", "openai", ("openai.finish-enum",), "plain",
          "finish_reason is 'end_turn'", chunks=_finish_to("end_turn")),
    Fault("ignore-max-tokens", "openai", ("openai.finish-length",), "max-tokens",
          "a generation cut by max_tokens finishes with 'stop'",
          chunks=_finish_to("stop", "length")),
    Fault("n-ignored", "openai", ("openai.n-choices",), "n2",
          "only choice 0 is streamed although n > 1", chunks=_only_choice_0),
    # tool calls
    Fault("tool-finish-stop", "openai", ("openai.finish-tool-calls",), "tool",
          "a tool-calling choice finishes with 'stop'", chunks=_finish_to("stop", "tool_calls")),
    Fault("tool-index-missing", "openai", ("openai.tool-index", "sdk.openai-accumulate"), "tool",
          "argument fragments have no index", chunks=_tool_index_missing),
    Fault("tool-index-gap", "openai", ("openai.tool-index", "sdk.openai-accumulate"),
          "parallel-tools", "the second parallel call has index 2 (indices 0, 2)",
          chunks=_tool_index_gap),
    Fault("tool-head-missing", "openai", ("openai.tool-head",), "tool",
          "the head fragments of tool calls have no id", chunks=_tool_head_missing),
    Fault("tool-head-repeat", "openai", ("openai.tool-head-once", "sdk.openai-accumulate"),
          "tool", "every argument fragment repeats id, type and name (the SDK doubles them)",
          chunks=_tool_head_repeat),
    Fault("tool-type-repeat", "openai", ("openai.tool-head-once",), "tool",
          "every argument fragment repeats type (a warning: the SDK replaces type)",
          chunks=_tool_type_repeat, weaker=("openai.tool-head-once",)),
    Fault("tool-choice-ignored", "openai", ("openai.tool-choice",), "tool",
          "tools and tool_choice are dropped: a forced tool call is answered in text",
          request=drop_tools),
    Fault("tool-args-object", "openai", ("openai.tool-args-string",), "tool",
          "the arguments come as one JSON object, not string fragments",
          chunks=_tool_args_object),
    Fault("tool-args-invalid", "openai", ("openai.tool-args-json",), "tool",
          "the last argument fragment is missing: the joined arguments are not JSON",
          chunks=_tool_args_invalid),
    Fault("tool-id-long", "openai", ("openai.tool-id-length",), "tool",
          "tool call ids of 65 characters", chunks=_tool_id_long),
    # usage
    Fault("usage-missing", "openai", ("openai.usage-chunk",), "usage",
          "no usage chunk although include_usage was requested", chunks=_usage_missing),
    Fault("usage-total-wrong", "openai", ("openai.usage-total",), "usage",
          "total_tokens is prompt + completion + 8", chunks=_usage_total_wrong),
    Fault("usage-every-chunk", "openai", ("openai.usage-null-before",), "usage",
          "every chunk carries the usage object, not only the usage chunk",
          chunks=_usage_every_chunk),
    Fault("usage-unrequested", "openai", ("openai.usage-unrequested",), "plain",
          "a choices: [] usage chunk although include_usage was not requested",
          chunks=_usage_unrequested),
    Fault("usage-zero-output", "openai", ("openai.usage-output",), "usage",
          "the usage chunk counts 0 completion tokens although text was streamed",
          chunks=_usage_zero_output),
    Fault("usage-over-limit", "openai", ("openai.usage-max-tokens",), "max-tokens",
          "usage reports 3 more completion tokens than max_tokens allows",
          chunks=_usage_over_limit),
    # errors
    Fault("accept-bad-key", "openai", ("http.auth-required",), "error-bad-key",
          "any API key is accepted: a bad key gets a 200 stream (INFO: the endpoint checks no "
          "keys)", request=accept_any_key),
    Fault("accept-any-model", "openai", ("http.unknown-model",), "error-unknown-model",
          "an unknown model name is served by the default model", request=serve_any_model),
    Fault("error-5xx", "openai", ("openai.error-status",), "error-bad-key",
          "client errors are answered 500", reply=error_as_5xx),
    Fault("error-403", "openai", ("openai.error-status",), "error-bad-key",
          "a bad key is answered 403 instead of 401 (a warning)", reply=error_as_403,
          weaker=("openai.error-status",)),
    Fault("error-body-sse", "openai", ("openai.error-body",), "error-bad-key",
          "error answers are an event stream holding the JSON", reply=error_as_sse),
    Fault("error-body-shape", "openai", ("openai.error-body",), "error-bad-key",
          'error bodies are {"detail": "..."} instead of {"error": {...}}',
          reply=error_detail_only),
    Fault("midstream-error-malformed", "openai", ("openai.midstream-error",
          "sdk.openai-accumulate"), "plain",
          "after three content chunks an error object without a message, then [DONE]",
          chunks=_midstream_error_malformed),
    Fault("leak-key", "openai", (), "plain",
          "the key echoed in debug headers, the text, error bodies and a mid-stream error "
          "(as given, URL-encoded, base64; JSON-escaped on the wire): nothing the suite "
          "writes may hold it", request=remember_key, chunks=_leak_key, reply=leak_in_reply),
    # encoding
    Fault("utf8-split", "openai", ("sse.utf8", "sdk.openai-accumulate"), "plain",
          "a multi-byte character split between two events", chunks=_utf8_split),
    Fault("invalid-utf8", "openai", ("sse.utf8", "sdk.openai-accumulate"), "plain",
          "a content chunk holds the byte 0xFF", chunks=_invalid_utf8),
)  # fmt: skip
