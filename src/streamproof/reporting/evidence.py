"""What a report shows next to a finding: where the rule comes from (a link), the exchange's
headers, and a command that sends the same request again. Credentials never appear: header
values are masked at capture time and every text passes through :func:`redact`; the
reproduce command reads the key from the environment.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from ..capture import Capture
from ..findings import excerpt
from ..redact import is_secret_name, mask_headers, redact
from ..rules import Rule

__all__ = [
    "API_NAMES",
    "GROUP_NAMES",
    "GROUP_ORDER",
    "headers_text",
    "reproduce",
    "request_text",
    "source_url",
    "transcript",
]

API_NAMES = {
    "openai": "OpenAI chat completions",
    "anthropic": "Anthropic messages",
    "responses": "OpenAI Responses",
}
GROUP_NAMES = {
    "http": "HTTP",
    "framing": "framing",
    "lifecycle": "lifecycle",
    "tools": "tool calls",
    "usage": "usage",
    "errors": "errors",
    "sdk": "SDK",
    "encoding": "encoding",
    "transport": "transport",
    "chunk": "chunk",
}
# The order areas are shown in (the wire first, then what is built on it).
GROUP_ORDER = (
    "encoding",
    "http",
    "transport",
    "framing",
    "chunk",
    "lifecycle",
    "tools",
    "usage",
    "errors",
    "sdk",
)

_WHATWG = (
    "https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation"
)
_OPENAI_REF = "https://platform.openai.com/docs/api-reference/chat/streaming"
_OPENAI_SPEC = "https://github.com/openai/openai-openapi"
_OPENAI_SDK = "https://github.com/openai/openai-python/blob/main/src/openai/lib/streaming/chat/_completions.py"
_OPENAI_SSE = "https://github.com/openai/openai-python/blob/main/src/openai/_streaming.py"
_RESPONSES_REF = "https://platform.openai.com/docs/api-reference/responses-streaming"
_RESPONSES_SDK = "https://github.com/openai/openai-python/blob/main/src/openai/lib/streaming/responses/_responses.py"
_ANTHROPIC_STREAM = "https://docs.anthropic.com/en/docs/build-with-claude/streaming"
_ANTHROPIC_ERRORS = "https://docs.anthropic.com/en/api/errors"
_ANTHROPIC_SDK = "https://github.com/anthropics/anthropic-sdk-python/blob/main/src/anthropic/lib/streaming/_messages.py"
_ANTHROPIC_SSE = (
    "https://github.com/anthropics/anthropic-sdk-python/blob/main/src/anthropic/_streaming.py"
)
_RFC9112 = "https://www.rfc-editor.org/rfc/rfc9112"

# First matching prefix of the rule's ``source`` wins.
_SOURCES: tuple[tuple[str, str], ...] = (
    ("WHATWG", _WHATWG),
    ("RFC 9112", _RFC9112),
    ("OpenAI OpenAPI", _OPENAI_SPEC),
    ("OpenAI API reference: error", "https://platform.openai.com/docs/guides/error-codes"),
    ("OpenAI API reference: Respons", _RESPONSES_REF),
    ("OpenAI API reference: response", _RESPONSES_REF),
    ("OpenAI API reference: output", _RESPONSES_REF),
    ("OpenAI API reference: the Response", _RESPONSES_REF),
    (
        "OpenAI API reference: function calling",
        "https://platform.openai.com/docs/guides/function-calling",
    ),
    ("OpenAI API reference: content_part", _RESPONSES_REF),
    ("OpenAI API reference: delta", _RESPONSES_REF),
    ("OpenAI API reference: function_call", _RESPONSES_REF),
    ("OpenAI API reference: reasoning", _RESPONSES_REF),
    ("OpenAI API reference: web_search", _RESPONSES_REF),
    ("OpenAI API reference: max_output", _RESPONSES_REF),
    ("OpenAI reasoning guide", "https://platform.openai.com/docs/guides/reasoning"),
    ("OpenAI API reference", _OPENAI_REF),
    ("OpenAI and Anthropic", _OPENAI_REF),
    ("OpenAI CreateChatCompletionResponse", _OPENAI_REF),
    ("OpenAI", _OPENAI_REF),
    ("openai SDK ResponseStream", _RESPONSES_SDK),
    ("openai SDK Response", _RESPONSES_SDK),
    ("openai SDK parse_response", _RESPONSES_SDK),
    ("openai SDK SSE", _OPENAI_SSE),
    ("openai SDK Stream", _OPENAI_SSE),
    ("openai SDK", _OPENAI_SDK),
    ("Anthropic API reference: errors", _ANTHROPIC_ERRORS),
    ("Anthropic API reference: request", _ANTHROPIC_ERRORS),
    ("Anthropic API versioning", "https://docs.anthropic.com/en/api/versioning"),
    ("Anthropic", _ANTHROPIC_STREAM),
    ("anthropic SDK SSE", _ANTHROPIC_SSE),
    ("anthropic SDK", _ANTHROPIC_SDK),
)


def source_url(rule: Rule) -> str | None:
    """A page where the rule's source can be read (its spec or SDK code); None for the
    suite's own bounds and heuristics (``source = "streamproof: ..."``)."""
    for prefix, url in _SOURCES:
        if rule.source.startswith(prefix):
            return url
    return None


def transcript(cap: Capture, event: int | None, around: int = 2, width: int = 600) -> str:
    """The transcript lines around event ``event`` (marked ``>``), each cut at ``width``
    characters: wider than a failure message's, so that the offending field shows. For a
    finding about the stream as a whole (no event), its first event and its last ones: how it
    began and how it ended; for a body that is no event stream, its beginning."""
    if not cap.events:
        return redact(excerpt(cap.body[:width], width))

    def line(ev: Any) -> str:
        mark = ">" if ev.index == event else " "
        name = f"event: {ev.name} " if ev.name is not None else ""
        return f"{mark} #{ev.index} {name}data: {excerpt(ev.data, width)}"

    if event is None:
        head, tail = cap.events[:1], cap.events[max(1, len(cap.events) - around - 1) :]
        gap = ["  …"] if tail and tail[0].index > 1 else []
        return redact("\n".join([*map(line, head), *gap, *map(line, tail)]))
    near = [ev for ev in cap.events if abs(ev.index - event) <= around]
    if not near:  # not kept (a long stream keeps its head, its tail and what findings name)
        return redact(f"  (event {event} of {cap.events_total} was not kept for the report)")
    return redact("\n".join(line(ev) for ev in near))


def headers_text(cap: Capture) -> str:
    """Request line, request headers, status and response headers; credentials masked."""
    lines = [f"> {cap.method} {redact(cap.url)}"]
    lines += [f"> {k}: {v}" for k, v in mask_headers(cap.request_headers)]
    lines.append("")
    if cap.status is None:
        lines.append(f"< (no response: {redact(cap.error or 'unknown')})")
    else:
        lines.append(f"< HTTP {cap.status}")
        lines += [f"< {k}: {v}" for k, v in mask_headers(cap.response_headers)]
    return "\n".join(lines)


def request_text(cap: Capture) -> str:
    body = cap.request_body
    if isinstance(body, bytes):
        return redact(body.decode("utf-8", "replace"))
    return redact(json.dumps(body, indent=1, ensure_ascii=False))


def reproduce(cap: Capture, auth: str = "key") -> str:
    """A ``curl`` command that sends the scenario's request again (key from the environment:
    ``$STREAMPROOF_API_KEY``)."""
    parts = ["curl", "-sN", "-X", cap.method, shlex.quote(redact(cap.url))]
    for name, value in cap.request_headers:
        lower = name.lower()
        if is_secret_name(lower):
            secret = "sk-invalid" if auth == "bad" else "$STREAMPROOF_API_KEY"
            value = f"Bearer {secret}" if lower == "authorization" else secret
            parts += ["-H", f'"{name}: {value}"']
        else:
            parts += ["-H", shlex.quote(f"{name}: {redact(value)}")]
    body: Any = cap.request_body
    data = body.decode("utf-8", "replace") if isinstance(body, bytes) else json.dumps(body)
    parts += ["--data-raw", shlex.quote(redact(data))]
    return " ".join(parts)
