"""Small pieces the stream models and the checks share: the parsed payload of an event, the
constant-memory stamps of content events, the bound on the rebuilt message, and the words
findings use for JSON types and media types."""

from __future__ import annotations

from typing import Any, Final

import orjson

from ..sse import Event

__all__ = [
    "MESSAGE_MAX_CHARS",
    "Stamps",
    "event_json",
    "is_json_type",
    "json_error",
    "kind",
    "media_type",
    "short",
]

_loads = orjson.loads


def event_json(event: Event) -> Any:
    """The event's data parsed as JSON, parsed once and kept on the event (the validator and
    the load generator's tracker both read it). Raises ``orjson.JSONDecodeError``. A ``null``
    payload is parsed again on each call, which is harmless."""
    value = event.parsed
    if value is None:
        value = event.parsed = _loads(event.data)
    return value


# The message a validator rebuilds keeps at most this many characters of text, arguments and
# thinking: past it, a never-ending stream costs no more memory (and the SDK comparison,
# which needs the whole message, is not made).
MESSAGE_MAX_CHARS = 256 * 1024


class Stamps:
    """Arrival stamps of content events in constant memory: how many, the first, the last —
    all that ``http.incremental`` and the usage checks read. ``s[0]`` and ``s[-1]`` work."""

    __slots__ = ("count", "first", "last")

    def __init__(self) -> None:
        self.count = 0
        self.first = 0
        self.last = 0

    def append(self, t: int) -> None:
        if not self.count:
            self.first = t
        self.last = t
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> int:
        if not self.count or i not in (0, -1):
            raise IndexError(i)
        return self.first if i == 0 else self.last


_TYPE_NAMES: Final = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def kind(value: object) -> str:
    """The JSON type of a parsed value, in words (for findings)."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def short(value: object, limit: int = 60) -> str:
    """A value's repr cut to ``limit`` characters (for findings)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def media_type(content_type: str | None) -> str:
    """``text/event-stream; charset=utf-8`` → ``text/event-stream``."""
    return (content_type or "").split(";")[0].strip().lower()


def is_json_type(media: str) -> bool:
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def json_error(exc: Exception) -> str:
    """An orjson decode error in plain words (orjson's own text is terse about the two
    hostile cases: nesting past its 1024 levels, and numbers too big for a double)."""
    text = str(exc)
    if "depth limit" in text or "recursion" in text.lower():
        return f"nesting too deep: more than 1024 levels of arrays/objects ({text})"
    if "infinity" in text or "digits" in text:
        return f"a number too large for a 64-bit float or integer ({text})"
    return text
