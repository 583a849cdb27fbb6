"""OpenAI Responses checks of the framing and the lifecycle: event names, JSON payloads,
``[DONE]``, unknown types, sequence numbers, response.created first, the lifecycle events'
identity and status, the terminal event and error events. Each function or class is the one
check of its rule (``registry.py``) and listens to the transitions of ``responses_model.py``.

A problem that recurs (every event unnamed, every event without a sequence number) is told
once with its count.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ..schemas import schema
from ..sse import Event
from .base import json_error, kind, short
from .registry import check
from .responses_model import ENDED, ERRORED, TERMINAL, ResponsesModel

M = ResponsesModel
# the status each lifecycle event may carry (queued only in background mode)
_STATUS: Final = {
    "response.created": ("queued", "in_progress"),
    "response.queued": ("queued",),
    "response.in_progress": ("in_progress",),
    **{k: (v,) for k, v in TERMINAL.items()},
}


def _always(s: M) -> bool:
    return True


def _ran(s: M) -> bool:
    """Checked unless the transport cut the body before its first event."""
    return bool(s.events) or not s.truncated


def _had_events(s: M) -> bool:
    return s.events > 0


@check("responses.data-json", on="bad_data", when=_always)
def data_json(s: M, at: Event, value: Any) -> None:
    if isinstance(value, orjson.JSONDecodeError):
        what = f"not JSON ({json_error(value)})"
    elif type(value) is not dict:
        what = f"{kind(value)}, not a JSON object"
    else:
        what = "a JSON object without a string type"
    s.flag(
        "responses.data-json",
        at.index,
        at,
        f"event data is {what} (the SDK parses every payload and dispatches on its type)",
    )


@check("responses.event-name", on="event_name", when=_had_events)
def event_name(s: M, at: Event, kind_: str) -> None:
    if at.name is None:
        s.flag(
            "responses.event-name",
            None,
            at,
            f"the {kind_} event has no event: line (OpenAI names every event; the Python SDK "
            "reads the JSON type, clients that route by event name do not see it)",
        )


@check("responses.event-name-match", on="event_name", when=_had_events)
def event_name_match(s: M, at: Event, kind_: str) -> None:
    if at.name is not None:
        s.flag(
            "responses.event-name-match",
            (at.name, kind_),
            at,
            f"event: {at.name!r} but the JSON type is {kind_!r}",
        )


@check("responses.no-done", on="done", when=_ran)
def no_done(s: M, at: Event, _: None) -> None:
    where = (
        "after the terminal event (harmless: the SDK stops reading there)"
        if s.phase == ENDED
        else "before the terminal event: the SDK stops reading at it and loses the rest"
    )
    s.flag("responses.no-done", s.phase == ENDED, at, f"data: [DONE] {where}")


@check("responses.unknown-event", on="unknown_event", when=_always)
def unknown_event(s: M, at: Event, kind_: str) -> None:
    s.flag(
        "responses.unknown-event",
        kind_,
        at,
        f"event type {kind_!r} is not one the openai SDK knows (it passes it through as is)",
    )


@check("responses.seq-present", on="seq", when=_had_events)
def seq_present(s: M, at: Event, seq: Any) -> None:
    if seq is None:
        s.flag(
            "responses.seq-present",
            "absent",
            at,
            "an event without sequence_number (a client cannot resume the stream after it)",
        )
    elif type(seq) is not int:
        s.flag(
            "responses.seq-present",
            "type",
            at,
            f"sequence_number is {kind(seq)} ({short(seq)}), not an integer",
        )


@check("responses.seq-order", on="seq", when=_had_events)
def seq_order(s: M, at: Event, seq: Any) -> None:
    last = s.last_seq
    if type(seq) is int and last is not None and seq <= last:
        s.flag(
            "responses.seq-order",
            None,
            at,
            f"sequence_number {seq} after {last}: it must strictly increase (a resumed stream "
            "filters on sequence_number > N and drops or repeats events)",
        )


@check("responses.seq-dense", on="seq", when=_had_events)
def seq_dense(s: M, at: Event, seq: Any) -> None:
    last = s.last_seq
    if type(seq) is not int:
        return
    if last is None:
        if s.after is None:  # a replay's start is responses.resume's to judge
            s.flag("responses.seq-dense", "start", at, f"the first sequence_number is {seq}, not 0")
    elif seq > last + 1:
        s.flag(
            "responses.seq-dense",
            "gap",
            at,
            f"sequence_number jumps from {last} to {seq} (every recorded stream counts by 1)",
        )


@check("responses.created-first", when=lambda s: _ran(s) and s.after is None)
class CreatedFirst:
    """The first event is response.created (a valid error event may come first); a replay
    after a sequence number (``after``) owes none."""

    def early(s: M, at: Event, kind_: str) -> None:
        s.flag(
            "responses.created-first",
            "early",
            at,
            f"the first event is {kind_}, not response.created (the SDK's ResponseStream "
            "raises 'Expected to have received response.created')",
        )

    def created(s: M, at: Event, response: dict[str, Any]) -> None:
        if s.response is not response:
            s.flag("responses.created-first", "again", at, "a second response.created")

    def end(s: M, at: None, _: None) -> None:
        if s.after is None and not (s.truncated or s.created or s.early or s.clean_error):
            s.flag(
                "responses.created-first",
                "none",
                None,
                "the stream has no response.created"
                + ("" if s.events else " (the body held no events)"),
            )


@check("responses.created-shape", when=lambda s: s.created)
class CreatedShape:
    """response.created carries a response in progress with an empty output."""

    def created(s: M, at: Event, response: dict[str, Any]) -> None:
        obj = at.parsed
        shape = schema("responses", "created")
        if not shape.is_valid(obj):
            s.flag("responses.created-shape", "schema", at,
                   lambda: f"response.created: {shape.explain(obj)}")  # fmt: skip
            return
        if response.get("output"):
            s.flag(
                "responses.created-shape",
                "output",
                at,
                f"response.created holds {len(response['output'])} output item(s): the SDK "
                "takes them as items 0, 1 ... and raises 'Duplicate response output index' "
                "when they are streamed",
            )


@check("responses.in-progress", when=lambda s: s.created)
class InProgress:
    """response.in_progress follows response.created before the first item."""

    def item_added(s: M, at: Event, item: Any) -> None:
        if not s.in_progress and s.created and not s.item_list:
            s.flag(
                "responses.in-progress",
                None,
                at,
                "the first output item comes without a response.in_progress before it",
            )

    def terminal(s: M, at: Event, response: dict[str, Any]) -> None:
        if not s.in_progress and s.created and not s.item_list:
            s.flag("responses.in-progress", None, at, "no response.in_progress before the end")


@check("responses.id-stable", on="lifecycle", when=lambda s: s.created)
def id_stable(s: M, at: Event, response: dict[str, Any]) -> None:
    first = s.response.get("id") if s.created else None
    if s.created and response.get("id") != first:
        s.flag(
            "responses.id-stable",
            None,
            at,
            f"response.id {short(response.get('id'))} in {at.parsed['type']}, but "
            f"{short(first)} in response.created (the SDK raises 'Lifecycle response identity "
            "changed.')",
        )


@check("responses.model-stable", on="lifecycle", when=lambda s: s.created)
def model_stable(s: M, at: Event, response: dict[str, Any]) -> None:
    if not s.created:
        return
    for key in ("model", "created_at"):
        if key in response and response[key] != s.response.get(key):
            s.flag(
                "responses.model-stable",
                key,
                at,
                f"{key} {short(response[key])} in {at.parsed['type']}, but "
                f"{short(s.response.get(key))} in response.created",
            )


@check("responses.status-flow", on="lifecycle", when=lambda s: s.created)
def status_flow(s: M, at: Event, response: dict[str, Any]) -> None:
    kind_ = at.parsed["type"]
    status = response.get("status")
    allowed = _STATUS[kind_]
    if status not in allowed:
        s.flag(
            "responses.status-flow",
            kind_,
            at,
            f"{kind_} says status {short(status)}, expected {' or '.join(allowed)}",
        )
    elif status == "queued" and s.status == "in_progress":
        s.flag("responses.status-flow", "back", at, "status goes back from in_progress to queued")


@check("responses.terminal", when=_ran)
class Terminal:
    """The stream ends with one terminal event (or an error event)."""

    def done(s: M, at: Event, _: None) -> None:
        """[DONE] before the end: the SDK stops reading (told by no-done; judged at end)."""

    def end(s: M, at: None, _: None) -> None:
        if s.truncated or s.phase in (ENDED, ERRORED):
            return
        what = "the stream ended" if s.events else "the body held no events"
        s.flag(
            "responses.terminal",
            None,
            s.events - 1 if s.events else None,
            f"{what} without response.completed, .incomplete or .failed (the SDK's "
            "get_final_response() raises 'Didn't receive a response.completed event.')",
        )


@check("responses.terminal-last", on="after_end", when=lambda s: s.phase == ENDED)
def terminal_last(s: M, at: Event, kind_: str) -> None:
    if s.phase == ENDED:
        s.flag(
            "responses.terminal-last",
            kind_,
            at,
            f"{kind_} event after {s.terminal}: the terminal event must be the last",
        )


@check("responses.error-event")
class ErrorEvent:
    """An error after the 200 has a string message; only response.failed may follow."""

    def error(s: M, at: Event, obj: dict[str, Any]) -> None:
        if not s.clean_error:
            s.flag(
                "responses.error-event",
                "shape",
                at,
                "error event without a string message (neither error.message nor message)",
            )
        elif "type" not in obj:
            s.flag(
                "responses.error-event",
                "untyped",
                at,
                "an error payload without type 'error' (chat completions' shape): the SDK "
                "raises it as APIError, clients that dispatch on the type miss it",
                level_as="SHOULD",
            )

    def after_end(s: M, at: Event, kind_: str) -> bool:
        if s.phase == ERRORED:
            s.flag(
                "responses.error-event",
                ("after", kind_),
                at,
                f"{kind_} event after the error event: only response.failed may follow it",
            )
        return False


@check("responses.error-shape", on="error")
def error_shape(s: M, at: Event, obj: dict[str, Any]) -> None:
    nested = type(obj.get("error")) is dict
    if "type" not in obj:
        return  # not an error event at all: error-event tells it
    s.flag(
        "responses.error-shape",
        nested,
        at,
        "the error event is nested {type: error, error: {...}} (as the live API sends it; the "
        "SDK raises APIError on it)"
        if nested
        else "the error event is flat {type: error, code, message, param} (the documented "
        "shape; the SDK yields it as an event)",
    )
