"""What the load generator needs to know about each API: the request it sends and, per event,
whether it is a content event (load-metrics.md), its usage and where the stream ends.

Pure and small: one ``orjson.loads`` per event and a few dict look-ups, because it runs for
every event of every stream under load. Protocol checking is the validators' business
(``engine.validator_for``), switched on separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from ..endpoints import ANTHROPIC_VERSION, API_PATHS, APIS, request_headers
from ..sse import Event
from ..validators.base import event_json

__all__ = [
    "ANTHROPIC_VERSION",
    "APIS",
    "API_PATHS",
    "StreamTracker",
    "build_request",
    "request_headers",
    "tracker_for",
]

_JSONError = orjson.JSONDecodeError
_VISIBLE_DELTAS: Final = {"text_delta": "text", "input_json_delta": "partial_json"}


def build_request(
    api: str,
    model: str,
    prompt: str,
    max_tokens: int,
    *,
    include_usage: bool = True,
) -> dict[str, Any]:
    """The streaming request body for one prompt."""
    messages = [{"role": "user", "content": prompt}]
    if api == "anthropic":
        return {"model": model, "max_tokens": max_tokens, "messages": messages, "stream": True}
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "stream": True,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return body


class StreamTracker:
    """Per-request stamps of one stream, from its decoded events.

    ``content_t`` holds the arrival stamps of content events (one per event, however many
    tokens it carries); ``visible_t`` the first non-reasoning one (TTFO); ``usage_tokens`` the
    server's output token count when it sent one; ``end_t`` the terminal event (``[DONE]`` or
    ``message_stop``); ``last_t`` the last event of any kind; ``error`` a mid-stream error.
    """

    __slots__ = (
        "content_t",
        "end_t",
        "error",
        "events",
        "first_index",
        "last_t",
        "usage_tokens",
        "visible_t",
    )

    def __init__(self) -> None:
        self.content_t: list[int] = []
        self.visible_t: int | None = None
        self.usage_tokens: int | None = None
        self.end_t: int | None = None
        self.last_t: int | None = None
        self.error: str | None = None
        self.events = 0
        self.first_index = -1  # index of the first content event in the stream

    def feed(self, events: list[Event]) -> int:
        """Take a batch of events; returns how many content events it held."""
        raise NotImplementedError

    @property
    def output_tokens(self) -> tuple[int, str]:
        """N and its source: the server's usage when present, else the content events (also
        when usage counts 0 although content streamed: a server that does not count)."""
        if self.usage_tokens is not None and (self.usage_tokens or not self.content_t):
            return self.usage_tokens, "usage"
        return len(self.content_t), "events"


class OpenAITracker(StreamTracker):
    __slots__ = ()

    def feed(self, events: list[Event]) -> int:
        found = 0
        for event in events:
            self.events += 1
            t = self.last_t = event.t
            data = event.data
            if data == "[DONE]":
                self.end_t = t
                continue
            try:
                obj = event_json(event)
            except _JSONError:
                continue
            if obj.__class__ is not dict:
                continue
            choices = obj.get("choices")
            if choices and choices.__class__ is list:
                visible = reasoning = False
                for choice in choices:
                    delta = choice.get("delta") if choice.__class__ is dict else None
                    if not delta or delta.__class__ is not dict:
                        continue
                    if delta.get("content") or delta.get("tool_calls") or delta.get("refusal"):
                        visible = True
                    elif delta.get("reasoning_content") or delta.get("reasoning"):
                        reasoning = True
                if visible or reasoning:
                    found += 1
                    if not self.content_t:
                        self.first_index = self.events - 1
                    self.content_t.append(t)
                    if visible and self.visible_t is None:
                        self.visible_t = t
            usage = obj.get("usage")
            if usage and usage.__class__ is dict:
                tokens = usage.get("completion_tokens")
                if tokens.__class__ is int:
                    self.usage_tokens = tokens
            error = obj.get("error")
            if error and self.error is None:
                message = error.get("message") if error.__class__ is dict else None
                self.error = str(message or error)[:200]
        return found


class AnthropicTracker(StreamTracker):
    __slots__ = ()

    def feed(self, events: list[Event]) -> int:
        found = 0
        for event in events:
            self.events += 1
            t = self.last_t = event.t
            name = event.name
            if name == "ping":
                continue
            try:
                obj = event_json(event)
            except _JSONError:
                continue
            if obj.__class__ is not dict:
                continue
            kind = name if name is not None else obj.get("type")
            if kind == "content_block_delta":
                delta = obj.get("delta")
                if delta.__class__ is not dict:
                    continue
                dtype = delta.get("type")
                key = _VISIBLE_DELTAS.get(dtype)
                if key is not None:
                    visible = bool(delta.get(key))
                    reasoning = False
                elif dtype == "citations_delta":
                    visible, reasoning = True, False
                else:
                    visible = False
                    reasoning = dtype == "thinking_delta" and bool(delta.get("thinking"))
                if visible or reasoning:
                    found += 1
                    if not self.content_t:
                        self.first_index = self.events - 1
                    self.content_t.append(t)
                    if visible and self.visible_t is None:
                        self.visible_t = t
            elif kind == "message_delta":
                usage = obj.get("usage")
                if usage.__class__ is dict:
                    tokens = usage.get("output_tokens")
                    if tokens.__class__ is int:
                        self.usage_tokens = tokens
            elif kind == "message_stop":
                self.end_t = t
            elif kind == "error" and self.error is None:
                error = obj.get("error")
                message = error.get("message") if isinstance(error, Mapping) else None
                self.error = str(message or error)[:200]
        return found


def tracker_for(api: str) -> StreamTracker:
    return AnthropicTracker() if api == "anthropic" else OpenAITracker()
