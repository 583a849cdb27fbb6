"""OpenAI chat-completions checks of the framing and the chunk envelope: JSON payloads,
``[DONE]``, event names, mid-stream errors, the chunk schema, ``object`` and the stable
id/created/model. Each function is the one check of its rule (``registry.py``)."""

from __future__ import annotations

from typing import Any

import orjson

from ..sse import Event
from .base import json_error, kind, short
from .openai_model import OpenAIChatModel
from .registry import check

_ENVELOPE_KEYS = (
    "id",
    "object",
    "created",
    "model",
    "choices",
    "usage",
    "system_fingerprint",
    "service_tier",
    "obfuscation",
)

M = OpenAIChatModel


@check("openai.data-json", on="bad_payload", when=lambda s: s.payloads)
def data_json(s: M, at: Event, problem: Any) -> None:
    if isinstance(problem, orjson.JSONDecodeError):
        text = f"the data payload is not JSON ({json_error(problem)}); the SDK raises on it"
    else:
        text = f"the data payload is {kind(problem)}, not a JSON object"
    s.flag("openai.data-json", at.index, at, f"event {at.index}: {text}")


@check("openai.done", on="end", when=lambda s: s.complete)
def done(s: M, at: None, _: None) -> None:
    if s.complete and s.done < 0:
        s.flag(
            "openai.done",
            None,
            None,
            "the stream ended without data: [DONE] (the SDK waits for it)",
        )


@check("openai.done-last", on="after_done", when=lambda s: s.done >= 0)
def done_last(s: M, at: Event, _: None) -> None:
    s.flag(
        "openai.done-last",
        None,
        at,
        f"event {at.index} follows data: [DONE] (event {s.done}): clients stop reading at "
        "[DONE] and never see it",
    )


@check("openai.no-event-names", on="named", when=lambda s: s.events)
def no_event_names(s: M, at: Event, name: str) -> None:
    s.flag(
        "openai.no-event-names",
        None,
        at,
        f"event {at.index} has an event: name ({name!r}); OpenAI sends plain data: events (the "
        "SDK ignores the name and reads the payload"
        + ("; naming error events is a compatible-server habit)" if name == "error" else ")"),
    )


@check("openai.midstream-error", when=lambda s: s.error_seen)
class MidstreamError:
    """A payload with a top-level error: the SDK raises ``APIError`` with its message and
    stops reading, so the error must be an object with a message, and nothing may follow."""

    def error(s: M, at: Event, err: Any) -> None:
        rule = "openai.midstream-error"
        if not err:
            s.flag(
                rule,
                "falsy",
                at,
                f"event {at.index} has error {short(err)}: the SDK raises only on a non-empty "
                "error object and otherwise parses the event as a chunk",
            )
        elif err.__class__ is not dict:
            s.flag(
                rule,
                "shape",
                at,
                f"event {at.index}: error is {kind(err)}, not an object with a message (the SDK "
                "raises 'An error occurred during streaming' and the cause is lost)",
            )
        else:
            message = err.get("message")
            if not (message.__class__ is str and message):
                s.flag(
                    rule,
                    "message",
                    at,
                    f"event {at.index}: error.message is "
                    + ("missing" if message is None else short(message))
                    + ", not a non-empty string (the SDK replaces it with 'An error occurred "
                    "during streaming')",
                )

    def after_error(s: M, at: Event, obj: dict[str, Any]) -> None:
        choices = obj.get("choices")
        finishing = choices.__class__ is list and any(
            c.__class__ is dict and c.get("finish_reason") is not None for c in choices
        )
        s.flag(
            "openai.midstream-error",
            "after-finish" if finishing else "after",
            at,
            f"event {at.index} follows the mid-stream error of event {s.error}"
            + (" and carries a finish_reason" if finishing else "")
            + ": the SDK raised at the error and never sees it",
        )


@check("openai.chunk-schema", on="chunk_invalid", when=lambda s: s.chunks)
def chunk_schema(s: M, at: Event, envelope: dict[str, Any]) -> None:
    sig = tuple(k if k not in envelope else kind(envelope[k]) for k in _ENVELOPE_KEYS)
    s.flag(
        "openai.chunk-schema",
        sig,
        at,
        lambda: (
            f"event {at.index}: the chunk does not match the chat.completion.chunk schema: "
            f"{s.chunk_schema.explain(envelope)}"
        ),
    )


def _carries(obj: dict[str, Any]) -> bool:
    """Whether a chunk carries anything a client rebuilds: content, a refusal, tool calls, a
    role, a finish_reason or usage."""
    if obj.get("usage"):
        return True
    choices = obj.get("choices")
    if choices.__class__ is not list:
        return False
    for ch in choices:
        if ch.__class__ is not dict:
            continue
        if ch.get("finish_reason") is not None:
            return True
        delta = ch.get("delta")
        if delta.__class__ is dict and any(
            delta.get(k) for k in ("content", "refusal", "tool_calls", "role")
        ):
            return True
    return False


@check("openai.object", on="wrong_object", when=lambda s: s.chunks)
def wrong_object(s: M, at: Event, obj: dict[str, Any]) -> None:
    value = short(obj.get("object"))
    head = f"event {at.index}: object is {value}, not 'chat.completion.chunk'"
    if _carries(obj):
        s.flag(
            "openai.object",
            value,
            at,
            f"{head}: the SDK's stream helper skips the chunk, and what it carries is lost",
        )
    else:
        s.flag(
            "openai.object",
            value,
            at,
            f"{head} (the SDK's stream helper skips the chunk; it carries nothing the client "
            "needs)",
            level_as="SHOULD",
        )


def _stable(rule: str, field: str, why: str) -> None:
    """Register the check that ``field`` keeps the first chunk's value."""

    def changed(s: M, at: Event, change: tuple[str, Any, Any]) -> bool:
        name, old, new = change
        if name != field:
            return False
        old_text, new_text = (repr(v) if field != "created" else str(v) for v in (old, new))
        s.flag(
            rule,
            None,
            at,
            f"{field} changed from {old_text} (event {s.ref_event}) to {new_text} at event "
            f"{at.index}{why}",
        )
        return True

    changed.__qualname__ = changed.__name__ = f"{field}_stable"
    check(rule, on="identity", when=lambda s: s.same)(changed)


_stable("openai.id-stable", "id", ": every chunk of a stream carries the same id")
_stable(
    "openai.created-stable",
    "created",
    ": every chunk carries the creation time of the completion, not of the chunk",
)
_stable("openai.model-stable", "model", "")
