"""Faults of the OpenAI Responses protocol (``POST /v1/responses``), and the API-agnostic faults
again for it.

Naming: every fault of this API starts with ``responses-`` (``-k responses`` selects them). This
module holds the framing, sequence-number, lifecycle, terminal-event and error faults; those of
the output items, parts, arguments and reasoning are in ``responses_items.py`` (with the edit
helpers both use). The wire, HTTP and transport faults of ``wire.py`` are registered a second
time as ``responses-<name>`` with ``api="responses"``: same effect, proven against the Responses
endpoint and scenarios. Of ``hostile.py`` only ``html-502`` is copied: it is the one fault that
trips ``http.status`` at its level (``status-201`` only warns); every other rule a hostile fault
trips has a cheaper Responses fault, and the hostile endpoints are proven once, with the OpenAI
API (tests/test_hostile_endpoints.py).

Chunk edits receive the event dicts in sending order, already numbered (``sequence_number``),
and return a new list (:class:`Raw` events are written as given, ``bytes`` as data-only events);
they never mutate the dicts they were given, and renumber the list when they add or drop
events unless the numbering is what they break. The descriptions say which rules each trips
besides its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from ..endpoint import Context, Request, StreamInfo, dumps_with_raw
from ..openai_responses import Raw, renumbered
from ..send import EVENT, Frame
from ..timing import Timing
from .base import ChunkEdit, Fault, RequestEdit
from .hostile import HOSTILE_FAULTS
from .leak import leak_in_reply, leak_text, remember_key
from .responses_items import (
    ITEM_FAULTS,
    Items,
    content,
    inserted,
    is_,
    mapped,
    terminal,
    where,
    with_response,
)
from .wire import (
    WIRE_FAULTS,
    accept_any_key,
    error_as_5xx,
    error_as_sse,
    error_detail_only,
    serve_any_model,
)

__all__ = ["OWN_RULES", "PREFIX", "RESPONSES_FAULTS"]

PREFIX: Final = "responses-"
_ERROR_AFTER: Final = 3  # content deltas before a mid-stream error
_HOSTILE: Final = ("html-502",)  # the hostile faults copied (see the module's docstring)
_RAW_A: Final = "\x00raw-a"


def _data(item: Any) -> bytes:
    if isinstance(item, Raw):
        return item.data
    return item if isinstance(item, bytes) else orjson.dumps(item)


def _name(item: Any) -> str | None:
    if isinstance(item, Raw):
        return item.name
    return item.get("type") if isinstance(item, dict) else None


def _without(item: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != key}


def _on_response(edit: Any, kinds: tuple[str, ...] | None = None) -> ChunkEdit:
    """A chunk edit of the response object of the terminal event (or of ``kinds``)."""

    def chunks(items: Items, info: StreamInfo) -> Items:
        return with_response(items, edit) if kinds is None else with_response(items, edit, kinds)

    return chunks


# -- framing -----------------------------------------------------------------------------------


def _no_event_lines(items: Items, info: StreamInfo) -> Items:
    return [Raw(None, _data(item)) for item in items]


def _not_json(items: Items, info: StreamInfo) -> Items:
    """A delta cut in half, as one event, before the intact delta."""
    found = content(items)
    if not found:
        return items
    p = found[0]
    raw = _data(items[p])
    return [*items[:p], Raw(_name(items[p]), raw[: len(raw) // 2]), *items[p:]]


def _short_names(items: Items, info: StreamInfo) -> Items:
    """The text deltas go out as ``event: delta``."""
    return [Raw("delta", _data(i)) if is_(i, "output_text.delta") else i for i in items]


def _done_after_terminal(items: Items, info: StreamInfo) -> Items:
    return [*items, b"[DONE]"]


def _data_first(frames: list[Frame], timing: Timing) -> list[Frame]:
    """Every event's data: line before its event: line, as Amazon Bedrock sends them."""

    def swapped(data: bytes) -> bytes:
        name, _, rest = data.partition(b"\n")  # rest: b"data: ...\n\n"
        return rest[:-1] + name + b"\n\n" if name.startswith(b"event:") else data

    return [f._replace(data=swapped(f.data)) if f.kind == EVENT else f for f in frames]


def _unknown_event(items: Items, info: StreamInfo) -> Items:
    added = where(items, "output_item.added")
    if not added:
        return items
    return inserted(items, added[0] + 1, {"type": "response.streamproof_progress", "done": 0.5})


# -- sequence numbers --------------------------------------------------------------------------


def _renumber(items: Items, shift: int, start: int = 0) -> Items:
    """``sequence_number`` moved by ``shift`` from position ``start`` on."""
    return [
        {**item, "sequence_number": item["sequence_number"] + shift}
        if n >= start and isinstance(item, dict) and "sequence_number" in item
        else item
        for n, item in enumerate(items)
    ]


def _no_sequence_numbers(items: Items, info: StreamInfo) -> Items:
    return [_without(i, "sequence_number") if isinstance(i, dict) else i for i in items]


def _sequence_repeat(items: Items, info: StreamInfo) -> Items:
    """From the first content delta on, every number one less: that delta repeats the number
    of the event before it, and the count goes on by 1 from there."""
    found = content(items)
    return _renumber(items, -1, found[0]) if found else items


def _sequence_from_1(items: Items, info: StreamInfo) -> Items:
    return _renumber(items, 1)


# -- lifecycle ---------------------------------------------------------------------------------


def _created_late(items: Items, info: StreamInfo) -> Items:
    """response.in_progress before response.created."""
    created, progress = where(items, "created"), where(items, "in_progress")
    if not created or not progress:
        return items
    a, b = sorted((created[0], progress[0]))
    return renumbered([*items[:a], items[b], *items[a + 1 : b], items[a], *items[b + 1 :]])


def _created_with_output(items: Items, info: StreamInfo) -> Items:
    """response.created already holds the first item of the final output."""
    end = terminal(items)
    output = items[end]["response"].get("output") if end is not None else None
    if not output:
        return items
    return with_response(items, lambda r: {**r, "output": output[:1]}, ("response.created",))


def _no_in_progress(items: Items, info: StreamInfo) -> Items:
    return renumbered([item for item in items if not is_(item, "in_progress")])


def _other_id(response: dict[str, Any]) -> dict[str, Any]:
    old = str(response.get("id"))
    return {**response, "id": old[:-4] + ("cafe" if old.endswith("beef") else "beef")}


def _dated_model(response: dict[str, Any]) -> dict[str, Any]:
    return {**response, "model": f"{response.get('model')}-2025-08-07"}


# -- the terminal event ------------------------------------------------------------------------


def _no_terminal(items: Items, info: StreamInfo) -> Items:
    end = terminal(items)
    return items if end is None else renumbered([*items[:end], *items[end + 1 :]])


def _terminal_twice(items: Items, info: StreamInfo) -> Items:
    end = terminal(items)
    return items if end is None else inserted(items, end + 1, items[end])


def _final_without_message(response: dict[str, Any]) -> dict[str, Any]:
    output = [o for o in response.get("output") or [] if o.get("type") != "message"]
    return {**response, "output": output}


def _final_items(edit: Any) -> Any:
    """A response edit of every final output item (``edit(item)``)."""
    return lambda r: {**r, "output": [edit(o) for o in r.get("output") or []]}


def _other_call_id(item: dict[str, Any]) -> dict[str, Any]:
    if item.get("type") != "function_call":
        return item
    return {**item, "call_id": str(item.get("call_id")) + "x"}


def _usage_edit(response: dict[str, Any], **fields: int) -> dict[str, Any]:
    usage = response.get("usage")
    return response if not isinstance(usage, dict) else {**response, "usage": {**usage, **fields}}


def _total_off(response: dict[str, Any]) -> dict[str, Any]:
    usage = response.get("usage") or {}
    return _usage_edit(response, total_tokens=usage.get("total_tokens", 0) + 1)


def _ended(kind: str, new: str, fields: dict[str, Any]) -> ChunkEdit:
    """A terminal event of ``kind`` sent as a ``new`` terminal event with its response's
    ``fields`` replaced (and every item status ``incomplete`` made ``completed``)."""

    def item(value: dict[str, Any]) -> dict[str, Any]:
        return {**value, "status": "completed"} if value.get("status") == "incomplete" else value

    def edit(items: Items, info: StreamInfo) -> Items:
        end = terminal(items)
        if end is None or not is_(items[end], kind):
            return items
        response = items[end]["response"]
        output = [item(o) for o in response.get("output") or []]
        final = {**items[end], "type": f"response.{new}",
                 "response": {**response, **fields, "output": output}}  # fmt: skip
        items = mapped(items, "output_item.done", lambda d: {**d, "item": item(d["item"])})
        return [*items[:end], final, *items[end + 1 :]]

    return edit


def _over_limit(items: Items, info: StreamInfo) -> Items:
    """usage.output_tokens 4 more than max_output_tokens (the total follows)."""
    limit = info.body.get("max_output_tokens")
    if not isinstance(limit, int):
        return items

    def edit(response: dict[str, Any]) -> dict[str, Any]:
        inp = (response.get("usage") or {}).get("input_tokens", 0)
        return _usage_edit(response, output_tokens=limit + 4, total_tokens=inp + limit + 4)

    return with_response(items, edit)


# -- errors ------------------------------------------------------------------------------------


def _error(message: str | None) -> dict[str, Any]:
    """The error event as the live API sent it (nested); without a message when None."""
    error = {"type": "server_error", "code": "server_error", "message": message, "param": None}
    return {"type": "error", "error": error if message is not None else _without(error, "message")}


def _failed(items: Items, message: str) -> dict[str, Any]:
    """response.failed as the live API sent it after an error: output [], usage null."""
    created = where(items, "created")
    base = items[created[0]]["response"] if created else {}
    error = {"code": "server_error", "message": message}
    response = {**base, "status": "failed", "error": error, "output": [], "usage": None}
    return {"type": "response.failed", "response": response}


def _after_error(items: Items, error: dict[str, Any], *, rest: bool, failed: str = "") -> Items:
    """The stream up to the third content delta, the error event, then (``failed``: its
    message) response.failed, or (``rest``) the remaining events as if nothing happened."""
    found = content(items)
    if not found:
        return items
    p = found[min(_ERROR_AFTER, len(found)) - 1] + 1
    tail = [_failed(items, failed)] if failed else []
    return renumbered([*items[:p], error, *tail, *(items[p:] if rest else ())])


def _midstream_error(items: Items, info: StreamInfo) -> Items:
    message = "The server had an error while processing your request. Sorry about that!"
    return _after_error(items, _error(message), rest=False, failed=message)


def _error_without_message(items: Items, info: StreamInfo) -> Items:
    return _after_error(items, _error(None), rest=False)


def _error_then_continue(items: Items, info: StreamInfo) -> Items:
    return _after_error(items, _error("The server had an error."), rest=True)


def _leak_key(items: Items, info: StreamInfo) -> Items:
    """The key quoted in the first text delta and, after three deltas, in a nested error
    event and the response.failed that end the stream."""
    for first in where(items, "output_text.delta")[:1]:
        item = items[first]
        items = [
            *items[:first],
            {**item, "delta": item["delta"] + leak_text()},
            *items[first + 1 :],
        ]
    message = "upstream failed" + leak_text()
    return _after_error(items, _error(message), rest=False, failed=message)


# -- resuming a background stream ---------------------------------------------------------------

Query = list[tuple[str, str]]


def _on_query(edit: Callable[[Query], Query]) -> RequestEdit:
    """A request edit of a GET's query (a stored response fetched again)."""

    def request(req: Request, ctx: Context) -> Request:
        if req.method != "GET":
            return req
        parts = urlsplit(req.target)
        query = urlencode(edit(parse_qsl(parts.query)))
        return replace(req, target=urlunsplit(parts._replace(query=query)))

    return request


def _from_start(query: Query) -> Query:
    return [(k, v) for k, v in query if k != "starting_after"]


def _one_later(query: Query) -> Query:
    return [(k, str(int(v) + 1) if k == "starting_after" else v) for k, v in query]


# -- encoding ----------------------------------------------------------------------------------


def _invalid_utf8(items: Items, info: StreamInfo) -> Items:
    """The first text delta's ``obfuscation`` padding (OpenAI pads deltas with it) holds the
    byte 0xFF, which UTF-8 never uses: the text itself stays intact, so no join breaks."""
    found = where(items, "output_text.delta")
    if not found:
        return items
    p = found[0]
    delta = {**items[p], "obfuscation": _RAW_A}
    raw = dumps_with_raw(delta, {_RAW_A: b"pad\xff"})
    return [*items[:p], Raw(delta["type"], raw), *items[p + 1 :]]


def _faults() -> tuple[Fault, ...]:
    own = (
        # framing
        Fault("no-event-lines", "responses", ("responses.event-name",), "plain",
              "no event: lines (SHOULD: the SDK dispatches on the JSON type)",
              chunks=_no_event_lines),
        Fault("not-json", "responses", ("responses.data-json", "sdk.responses-accumulate"),
              "plain", "an extra event holding half a delta's JSON (the SDK raises on it)",
              chunks=_not_json),
        Fault("event-name-mismatch", "responses", ("responses.event-name-match",), "plain",
              "text deltas go out as event: delta (the SDK reads the JSON type; clients that "
              "route by event name misroute them)", chunks=_short_names),
        Fault("data-first", "responses", ("responses.field-order",), "plain",
              "every event's data: line before its event: line (legal; INFO, as Bedrock "
              "sends them)", frames=_data_first),
        Fault("done-after-terminal", "responses", ("responses.no-done",), "plain",
              "data: [DONE] after response.completed (SHOULD)", chunks=_done_after_terminal),
        Fault("unknown-event", "responses", ("responses.unknown-event",), "plain",
              "an event of an unknown type after the first output_item.added (INFO)",
              chunks=_unknown_event),
        # sequence numbers
        Fault("no-sequence-numbers", "responses", ("responses.seq-present",), "plain",
              "no event carries a sequence_number (2025-03 OpenAI)",
              chunks=_no_sequence_numbers),
        Fault("sequence-repeat", "responses", ("responses.seq-order",), "plain",
              "the first text delta repeats the sequence_number of the event before it (the "
              "count goes on by 1 from there)", chunks=_sequence_repeat),
        Fault("sequence-from-1", "responses", ("responses.seq-dense",), "plain",
              "sequence_number counts from 1", chunks=_sequence_from_1),
        # lifecycle
        Fault("created-not-first", "responses", ("responses.created-first",
              "sdk.responses-accumulate"), "plain", "response.in_progress comes before "
              "response.created (the SDK raises 'Expected to have received response.created')",
              chunks=_created_late),
        Fault("created-with-output", "responses", ("responses.created-shape",
              "sdk.responses-accumulate"), "plain", "response.created already holds the final "
              "message in its output (the SDK raises 'Duplicate response output index 0')",
              chunks=_created_with_output),
        Fault("no-in-progress", "responses", ("responses.in-progress",), "plain",
              "no response.in_progress event", chunks=_no_in_progress),
        Fault("id-changes", "responses", ("responses.id-stable", "sdk.responses-accumulate"),
              "plain", "response.completed carries another response id (the SDK raises "
              "'Lifecycle response identity changed.')", chunks=_on_response(_other_id)),
        Fault("model-changes", "responses", ("responses.model-stable",), "plain",
              "response.completed names a dated model snapshot, created the alias",
              chunks=_on_response(_dated_model)),
        Fault("status-queued", "responses", ("responses.status-flow",), "plain",
              "response.in_progress says status queued",
              chunks=_on_response(lambda r: {**r, "status": "queued"},
                                  ("response.in_progress",))),
        # the terminal event
        Fault("no-terminal", "responses", ("responses.terminal", "sdk.responses-accumulate"),
              "plain", "the stream ends after the last output_item.done (the SDK raises "
              "'Didn't receive a response.completed event.')", chunks=_no_terminal),
        Fault("terminal-twice", "responses", ("responses.terminal-last",), "plain",
              "response.completed is sent twice", chunks=_terminal_twice),
        Fault("final-output-missing", "responses", ("responses.final-output",
              "sdk.responses-accumulate"), "plain", "response.completed's output lacks the "
              "streamed message (the SDK returns that empty output)",
              chunks=_on_response(_final_without_message)),
        Fault("final-call-id-changes", "responses", ("responses.final-output",
              "sdk.responses-accumulate"), "tool", "the final output's function call has "
              "another call_id than its output_item.done (the SDK returns that one; a client "
              "that followed the stream answers the other)",
              chunks=_on_response(_final_items(_other_call_id))),
        Fault("final-item-status", "responses", ("responses.final-output",), "plain",
              "the final output's message says status in_progress, its output_item.done "
              "completed (SHOULD: no field a client acts on)", weaker=("responses.final-output",),
              chunks=_on_response(_final_items(lambda o: {**o, "status": "in_progress"}))),
        Fault("completed-no-usage", "responses", ("responses.completed-shape",), "plain",
              "response.completed has usage null", chunks=_on_response(
                  lambda r: {**r, "usage": None}, ("response.completed",))),
        Fault("usage-total-wrong", "responses", ("responses.usage-total",), "plain",
              "total_tokens is one more than input_tokens + output_tokens",
              chunks=_on_response(_total_off)),
        Fault("ignore-max-output-tokens", "responses", ("responses.incomplete",),
              "max-output-tokens", "a generation cut by max_output_tokens ends with "
              "response.completed (status completed, no incomplete_details)",
              chunks=_ended("incomplete", "completed",
                            {"status": "completed", "incomplete_details": None})),
        Fault("usage-over-limit", "responses", ("responses.incomplete-usage",),
              "max-output-tokens", "usage.output_tokens is 4 more than max_output_tokens",
              chunks=_over_limit),
        Fault("failed-no-message", "responses", ("responses.failed-shape",), "plain",
              "the stream ends with response.failed whose error has a code but no message",
              chunks=_ended("completed", "failed",
                            {"status": "failed", "error": {"code": "server_error"}})),
        Fault("output-text-empty", "responses", ("responses.output-text-field",), "plain",
              'the final response carries output_text "" (OpenRouter)',
              chunks=_on_response(lambda r: {**r, "output_text": ""})),
        # errors
        Fault("accept-bad-key", "responses", ("http.auth-required",), "error-bad-key",
              "any API key is accepted: a bad key gets a 200 stream (INFO: the endpoint checks "
              "no keys)", request=accept_any_key),
        Fault("accept-any-model", "responses", ("http.unknown-model",), "error-unknown-model",
              "an unknown model name is served by the default model", request=serve_any_model),
        Fault("error-5xx", "responses", ("responses.error-status",), "error-bad-key",
              "client errors are answered 500", reply=error_as_5xx),
        Fault("error-body-sse", "responses", ("responses.error-body",), "error-bad-key",
              "error answers are an event stream holding the JSON", reply=error_as_sse),
        Fault("error-body-shape", "responses", ("responses.error-body",), "error-bad-key",
              'error bodies are {"detail": "..."} instead of {"error": {...}}',
              reply=error_detail_only),
        # a valid edge, not a fault: only the INFO rule that tells the error's shape
        Fault("midstream-error", "responses", ("responses.error-shape",),
              "plain", "valid edge: after three deltas a nested server_error event and "
              "response.failed (error {code, message}) end the stream, as the live API sends "
              "them; the SDK raises APIError (INFO error-shape)", chunks=_midstream_error),
        Fault("error-without-message", "responses", ("responses.error-event",
              "responses.error-shape", "sdk.responses-accumulate"), "plain", "after three "
              "deltas a nested error event with no message ends the stream (INFO error-shape; "
              "the SDK raises APIError with a made-up message)",
              chunks=_error_without_message),
        Fault("error-then-continue", "responses", ("responses.error-event",
              "responses.error-shape"), "plain", "after three deltas a valid error event, then "
              "the rest of the stream as if nothing happened (INFO error-shape)",
              chunks=_error_then_continue),
        Fault("leak-key", "responses", ("responses.error-shape",),
              "plain", "the key echoed in debug headers, the text, error bodies, a mid-stream "
              "error event and response.failed (as given, URL-encoded, base64; JSON-escaped on "
              "the wire): nothing the suite writes may hold it (as midstream-error)",
              request=remember_key, chunks=_leak_key, reply=leak_in_reply),
        # resuming
        Fault("resume-from-start", "responses", ("responses.resume",), "resume",
              "a background stream fetched again with starting_after is replayed from its "
              "start, response.created included (INFO)", request=_on_query(_from_start)),
        Fault("resume-one-late", "responses", ("responses.resume",), "resume",
              "a background stream fetched again with starting_after=N is replayed from N+2: "
              "one event lost (INFO)", request=_on_query(_one_later)),
        # encoding
        Fault("invalid-utf8", "responses", ("sse.utf8", "sdk.responses-accumulate"), "plain",
              "a text delta's obfuscation padding holds the byte 0xFF (the SDK's strict decode "
              "raises)", chunks=_invalid_utf8),
    )  # fmt: skip
    again = tuple(
        replace(
            f,
            api="responses",
            rules=OWN_RULES.get(f.name, f.rules_for("responses")),
            weaker=f.weaker_for("responses"),
        )
        for f in (*WIRE_FAULTS, *(h for h in HOSTILE_FAULTS if h.name in _HOSTILE))
    )
    return tuple(replace(f, name=PREFIX + f.name) for f in (*own, *ITEM_FAULTS, *again))


# the rules of the copied faults against this API, where not their own with {api} filled in
OWN_RULES: Final = {
    "meta-only": ("sse.meta-only", "sdk.responses-accumulate"),  # the SDK json-parses ""
    # the BOM lands on the first event's event: line, which the SDK does not need: it reads
    # the data and dispatches on the JSON type, so it loses nothing
    "bom": ("sse.bom",),
}


RESPONSES_FAULTS: Final = _faults()
