"""The stream models as the load generator runs them with validation off: no check attached,
no message rebuilt (``message_cut`` from the start), and a shortcut for the common event.

Under load every event costs worker CPU, and most events are content deltas whose only use
with validation off is their arrival stamp. Each shortcut takes an event only when the full
model would do nothing with it that a bare model keeps but stamp it (content or not, first
content, first visible content); every other event goes through the full model (``_take``),
which defines what counts as content. ``tests/test_load_metrics.py`` holds the two to the
same stamps, usage, end and error on every golden stream.

Measured (``valgrind --tool=callgrind``, instructions an event fed one by one, the harness
included; BENCHMARKS.md): OpenAI 13.3k against 14.2k for the load tracker the models
replaced and 17.4k for the model's own hot path; Anthropic 10.3k against 10.8k.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..sse import Event
from .anthropic_model import BODY, CONTENT_FIELD, AnthropicMessagesModel
from .openai_model import OpenAIChatModel
from .responses_model import BODY as RESPONSES_BODY
from .responses_model import CONTENT_DELTAS, ResponsesModel

__all__ = ["BareAnthropicModel", "BareOpenAIModel", "BareResponsesModel"]

_loads = orjson.loads


class BareOpenAIModel(OpenAIChatModel):
    """A content event by any reading: one choice of a chunk, a non-negative integer index,
    its delta's ``content`` a non-empty string, no usage, no error, before ``[DONE]``, an
    error payload or the usage chunk (``_open``)."""

    __slots__ = ("_open",)

    def __init__(
        self, request: Mapping[str, Any] | None = None, *, content_t: list[int] | None = None
    ) -> None:
        super().__init__(request, rules=False, content_t=content_t)
        self._open = True

    def feed(self, events: list[Event]) -> None:
        for event in events:
            self.events += 1
            self.last_t = event.t
            if self._open:
                try:  # not JSON, or not a chunk of one choice with a delta: the full model
                    obj = event.parsed
                    if obj is None:
                        obj = event.parsed = _loads(event.data)
                    (ch,) = obj["choices"]
                    text = ch["delta"].get("content")
                    index = ch["index"]
                    if (
                        text
                        and text.__class__ is str
                        and index.__class__ is int
                        and index >= 0
                        and "error" not in obj
                        and obj.get("usage") is None
                    ):
                        self.content_t.append(event.t)
                        if self.first_index < 0:
                            self.first_index = self.events - 1
                        if self.visible_t is None:
                            self.visible_t = event.t
                        continue
                except (KeyError, TypeError, ValueError, AttributeError):
                    pass  # (orjson's JSONDecodeError is a ValueError)
            self._take(event)
            self._open = self.done < 0 and self.error < 0 and self.usage_event < 0


class BareAnthropicModel(AnthropicMessagesModel):
    """A ``content_block_delta`` inside the message (phase ``BODY``): content when its delta
    is of a content type with a non-empty piece; nothing else of it is kept bare."""

    __slots__ = ()

    def __init__(
        self, request: Mapping[str, Any] | None = None, *, content_t: list[int] | None = None
    ) -> None:
        super().__init__(request, rules=False, content_t=content_t)

    def feed(self, events: list[Event]) -> None:
        for event in events:
            self.events += 1
            self.last_t = event.t
            if self.phase == BODY:
                try:  # not JSON, or not an object with a delta of a named type: the full model
                    obj = event.parsed
                    if obj is None:
                        obj = event.parsed = _loads(event.data)
                    if obj["type"] == "content_block_delta":
                        delta = obj["delta"]
                        dtype = delta["type"]
                        field = CONTENT_FIELD.get(dtype)
                        if field is not None and delta.get(field):
                            self.content_t.append(event.t)
                            if self.visible_t is None:
                                self._first_content(event, dtype != "thinking_delta")
                        continue
                except (KeyError, TypeError, ValueError, AttributeError):
                    pass  # (orjson's JSONDecodeError is a ValueError)
            self._take(event)


class BareResponsesModel(ResponsesModel):
    """A content delta (``CONTENT_DELTAS``) inside the response (phase ``BODY``) with a
    non-empty string ``delta``; nothing else of it is kept bare."""

    __slots__ = ()

    def __init__(
        self, request: Mapping[str, Any] | None = None, *, content_t: list[int] | None = None
    ) -> None:
        super().__init__(request, rules=False, content_t=content_t)

    def feed(self, events: list[Event]) -> None:
        for event in events:
            self.events += 1
            self.last_t = event.t
            if self.phase == RESPONSES_BODY:
                try:  # not JSON, or not a content delta: the full model
                    obj = event.parsed
                    if obj is None:
                        obj = event.parsed = _loads(event.data)
                    visible = CONTENT_DELTAS.get(obj["type"])
                    if visible is not None:
                        piece = obj["delta"]
                        if piece and piece.__class__ is str:
                            self.content_t.append(event.t)
                            if self.first_index < 0:
                                self.first_index = self.events - 1
                            if not visible:
                                self.reasoning_deltas += 1
                            elif self.visible_t is None:
                                self.visible_t = event.t
                            continue
                except (KeyError, TypeError, ValueError, AttributeError):
                    pass  # (orjson's JSONDecodeError is a ValueError)
            self._take(event)
