"""Anthropic Messages checks of the framing and the message's first and last events: event
names, JSON payloads, ``[DONE]``, unknown types, pings, error events, message_start first and
message_stop last. Each function or class is the one check of its rule (``registry.py``) and
listens to the transitions of ``anthropic_model.py``.

A problem that recurs (every event unnamed, every event after message_stop) is told once with
its count; each unparsable payload is its own problem.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..schemas import schema
from ..sse import Event
from .anthropic_model import ERRORED, STOPPED, AnthropicMessagesModel, Delta
from .base import json_error
from .registry import check

M = AnthropicMessagesModel


def _always(s: M) -> bool:
    return True


def _ran(s: M) -> bool:
    """Checked unless the transport cut the body before its first event."""
    return bool(s.events) or not s.truncated


def _what(value: Any) -> tuple[str, str]:
    """A payload that is not a JSON object with a string type: (kind, words for it)."""
    if isinstance(value, orjson.JSONDecodeError):
        return "not JSON", f"not JSON ({json_error(value)})"
    if type(value) is not dict:
        return "not an object", "not a JSON object"
    return "no type", "a JSON object without a string type"


@check("anthropic.event-name", on="event_name", when=_always)
def event_name(s: M, at: Event, kind: str) -> None:
    if at.name is None:
        text = (
            f"the {kind} event has no event: line; the SDK skips unnamed events, so a client "
            "never sees it"
        )
    else:
        text = (
            f"event: {at.name!r} but the JSON type is {kind!r} (the SDK dispatches on the "
            "event name)"
        )
    s.flag("anthropic.event-name", (at.name, kind), at, text)


@check("anthropic.data-json", on="bad_data", when=_always)
def data_json(s: M, at: Event, value: Any) -> None:
    if at.name in ("ping", "error"):
        return  # ping-shape, error-event
    s.flag("anthropic.data-json", at.index, at, f"event data is {_what(value)[1]}")


@check("anthropic.no-done", on="done", when=_ran)
def no_done(s: M, at: Event, _: None) -> None:
    if s.phase >= STOPPED:
        s.flag(
            "anthropic.no-done",
            None,
            at,
            "data: [DONE] after the end of the message: the sentinel was removed in API "
            "version 2023-06-01",
        )


@check("anthropic.unknown-event", when=_always)
class UnknownEvent:
    """Clients ignore event and delta types they do not know: told, never failed."""

    def unknown_event(s: M, at: Event, kind: str) -> None:
        s.flag(
            "anthropic.unknown-event",
            kind,
            at,
            f"unknown event type {kind!r} (clients must ignore it)",
        )

    def delta(s: M, at: Event, d: Delta) -> None:
        if d.fit == "unknown":
            s.flag(
                "anthropic.unknown-event",
                ("delta", d.type),
                at,
                f"unknown delta type {d.type!r} in {d.block.describe()} (clients ignore it)",
            )


@check("anthropic.ping-shape")
class PingShape:
    """``ping`` is ``{"type": "ping"}``. Checked when a ping came; a ``ping`` event whose data
    is no typed JSON object is told, but does not by itself make the rule checked."""

    def ping(s: M, at: Event, obj: dict[str, Any]) -> None:
        """A ping event: its type says ping, and nothing else is asked of it."""

    def bad_data(s: M, at: Event, value: Any) -> bool:
        if at.name == "ping":
            key, what = _what(value)
            s.flag("anthropic.ping-shape", key, at, f'ping data is {what}, not {{"type": "ping"}}')
        return False


@check("anthropic.error-event")
class ErrorEvent:
    """An error after the 200 is ``event: error`` with a typed error object, and the stream
    ends there. Checked when a JSON error event came."""

    def error(s: M, at: Event, obj: dict[str, Any]) -> None:
        if not s.ended_by_error:
            s.flag(
                "anthropic.error-event",
                "shape",
                at,
                lambda: f"error event: {schema('anthropic', 'error').explain(obj)}",
            )

    def bad_data(s: M, at: Event, value: Any) -> bool:
        if at.name == "error":
            s.flag("anthropic.error-event", "data", at, f"error event data is {_what(value)[1]}")
        return False

    def after_end(s: M, at: Event, kind: str) -> bool:
        if s.phase == ERRORED:
            s.flag(
                "anthropic.error-event",
                ("after", kind),
                at,
                f"{kind} event after the error event: the stream must end at the error",
            )
        return False


@check("anthropic.start-first", when=_ran)
class StartFirst:
    """The first message event is message_start, and it comes once."""

    def early(s: M, at: Event, kind: str) -> None:
        s.flag(
            "anthropic.start-first",
            "early",
            at,
            f"{kind} before message_start: the SDK raises 'Unexpected event order'",
        )

    def restart(s: M, at: Event, obj: dict[str, Any]) -> None:
        s.flag(
            "anthropic.start-first",
            "again",
            at,
            "a second message_start: it must come once, as the first event",
        )

    def end(s: M, at: None, _: None) -> None:
        if not s.truncated and s.phase != ERRORED and not s.started and not s.early:
            s.flag(
                "anthropic.start-first",
                "none",
                None,
                "the stream has no message_start"
                + ("" if s.events else " (the body held no events)"),
            )


@check("anthropic.stop-last", when=_ran)
class StopLast:
    """message_stop is the last event, and it comes."""

    def done(s: M, at: Event, _: None) -> None:
        if s.phase < STOPPED:
            s.flag(
                "anthropic.stop-last",
                "[DONE]",
                at,
                "data: [DONE] before message_stop: a client that stops at the sentinel loses "
                "the rest of the message",
            )

    def after_end(s: M, at: Event, kind: str) -> None:
        if s.phase == STOPPED:
            s.flag(
                "anthropic.stop-last",
                ("after", kind),
                at,
                f"{kind} event after message_stop: message_stop must be the last event",
            )

    def end(s: M, at: None, _: None) -> None:
        if s.unfinished and s.deltas:
            s.flag(
                "anthropic.stop-last",
                "end",
                s.events - 1,
                "the stream ended without message_stop",
            )
