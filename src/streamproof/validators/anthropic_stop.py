"""Anthropic Messages checks of the end of the message: message_delta and its stop reason, the
stop reason against the stream and the request (tool_use, stop_sequence, max_tokens,
tool_choice), and the usage counts. Each function or class is the one check of its rule
(``registry.py``) and listens to the transitions of ``anthropic_model.py``.

The verdicts that need the final stop reason listen to ``conclude`` (once, at message_stop,
or at the end when the body stopped after a message_delta, even cut by the transport).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..schemas import schema
from ..sse import Event
from .anthropic_model import STOP_REASONS, TAIL, AnthropicMessagesModel
from .registry import check

M = AnthropicMessagesModel

_USAGE_COUNTS: Final = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@check("anthropic.message-delta")
class MessageDelta:
    """A message_delta with a non-null stop_reason comes after the last block and before
    message_stop. Checked when a message_delta or message_stop came, or the body ended by
    itself inside the message."""

    def late_block(s: M, at: Event, kind: str) -> None:
        s.flag(
            "anthropic.message-delta",
            ("late", kind),
            at,
            f"{kind} after message_delta: message_delta must come after the last block",
        )

    def message_delta(s: M, at: Event, obj: dict[str, Any]) -> None:
        # the shape, usage aside (that is anthropic.usage)
        shape = schema("anthropic", "message_delta")
        stub = {**obj, "usage": {"output_tokens": 0}}
        if not shape.is_valid(stub):
            s.flag(
                "anthropic.message-delta",
                at.index,
                at,
                lambda: f"message_delta: {shape.explain(stub)}",
            )

    def message_stop(s: M, at: Event, obj: dict[str, Any]) -> None:
        if s.phase != TAIL:
            s.flag(
                "anthropic.message-delta",
                "missing",
                at,
                "message_stop without a message_delta: the stop reason and usage are missing",
            )

    def conclude(s: M, at: Event | None, _: None) -> None:
        if s.stop_reason is None:
            s.flag(
                "anthropic.message-delta", "null", at, "the last message_delta has stop_reason null"
            )

    def end(s: M, at: None, _: None) -> bool:
        if not s.unfinished:
            return False
        if not s.deltas:
            open_note = f" ({s.open.describe()} still open)" if s.open else ""
            s.flag(
                "anthropic.message-delta",
                "end",
                s.events - 1,
                f"the stream ended without message_delta or message_stop{open_note}",
            )
        return True


@check("anthropic.stop-reason-enum", on="message_delta")
def stop_reason_enum(s: M, at: Event, obj: dict[str, Any]) -> bool:
    reason = s.stop_reason
    if type(reason) is not str:
        return False
    if reason not in STOP_REASONS:
        s.flag(
            "anthropic.stop-reason-enum",
            reason,
            at,
            f"stop_reason {reason!r} is not a documented value",
        )
    return True


@check("anthropic.stop-consistent", on="conclude")
def stop_consistent(s: M, at: Event | None, _: None) -> None:
    """tool_use needs a client tool_use block (server_tool_use does not count), and a
    streamed tool_use block with end_turn / stop_sequence is a finding (cuts, refusals and
    pauses are not); the requested-sequence half only when the request is known."""
    rule, reason, sequence = "anthropic.stop-consistent", s.stop_reason, s.stop_sequence
    if reason == "tool_use" and not s.saw_tool_use:
        s.flag(rule, "tool_use", at, "stop_reason tool_use but no tool_use block was streamed")
    elif s.saw_tool_use and reason in ("end_turn", "stop_sequence"):
        s.flag(
            rule,
            "not tool_use",
            at,
            f"a tool_use block was streamed but stop_reason is {reason!r}, not tool_use "
            "(clients look at stop_reason to run tools)",
        )
    if reason == "stop_sequence":
        if type(sequence) is not str:
            s.flag(
                rule,
                "no sequence",
                at,
                f"stop_reason stop_sequence but stop_sequence is {sequence!r}",
            )
        elif s.request:
            wanted = s.request.get("stop_sequences") or []
            if sequence not in wanted:
                s.flag(
                    rule,
                    "unrequested",
                    at,
                    f"stop_sequence {sequence!r} is not one of the requested stop_sequences "
                    f"{list(wanted)!r}",
                )
    elif sequence is not None:
        s.flag(
            rule,
            "stray sequence",
            at,
            f"stop_sequence {sequence!r} with stop_reason {reason!r} (it is set only when "
            "stop_reason is stop_sequence)",
        )


@check("anthropic.stop-max-tokens", on="conclude")
def stop_max_tokens(s: M, at: Event | None, _: None) -> bool:
    """Only in the scenario that cuts the generation by max_tokens (``expect``)."""
    if "anthropic.stop-max-tokens" not in s.expect:
        return False
    if s.stop_reason != "max_tokens":
        s.flag(
            "anthropic.stop-max-tokens",
            None,
            at,
            f"a generation cut by max_tokens ({s.request.get('max_tokens')!r}) ended with "
            f"stop_reason {s.stop_reason!r} after {s.out_tokens!r} output tokens",
        )
    return True


def _forced_tool(choice: Any) -> str | None:
    """What ``tool_choice`` forces: None (nothing), "" (some tool: ``any``) or a tool name."""
    if not isinstance(choice, Mapping):
        return None
    if choice.get("type") == "any":
        return ""
    if choice.get("type") == "tool":
        name = choice.get("name")
        return name if isinstance(name, str) else ""
    return None


@check("anthropic.tool-choice", on="conclude")
def tool_choice(s: M, at: Event | None, _: None) -> bool:
    """The tool_use block a forced tool_choice asks for (a generation cut by max_tokens, or
    refused, had no chance to make the call)."""
    forced = _forced_tool(s.request.get("tool_choice"))
    reason = s.stop_reason
    if forced is None or reason in ("max_tokens", "refusal"):
        return False
    names = [b.start.get("name") for b in s.blocks if b.kind == "tool_use"]
    how = f"tool_choice names {forced!r}" if forced else 'tool_choice is {"type": "any"}'
    if not names:
        kinds = [b.kind for b in s.blocks]
        s.flag(
            "anthropic.tool-choice",
            None,
            at,
            f"no tool_use block although {how}: the message has {kinds or 'no blocks'} "
            f"and stop_reason {reason!r}",
        )
    elif forced and forced not in names:
        s.flag("anthropic.tool-choice", None, at, f"tool_use of {names} although {how}")
    return True


@check("anthropic.usage", when=lambda s: s.deltas)
class Usage:
    """message_delta carries usage with an integer output_tokens; counts are cumulative from
    message_start on: one that goes down is a warning (the SDK keeps the last value), a
    larger input_tokens is not (server tools add input; the SDK takes it)."""

    def message_start(s: M, at: Event, obj: dict[str, Any]) -> None:
        message = obj.get("message")
        usage = message.get("usage") if type(message) is dict else None
        if type(usage) is not dict:
            return
        for key in ("output_tokens", *_USAGE_COUNTS):
            value = usage.get(key)
            if type(value) is int:
                s.usage_high[key] = value

    def message_delta(s: M, at: Event, obj: dict[str, Any]) -> None:
        rule = "anthropic.usage"
        usage = obj.get("usage")
        if type(usage) is not dict:
            s.flag(rule, "no usage", at, "message_delta has no usage object")
            return
        out = usage.get("output_tokens")
        if type(out) is not int or out < 0:
            s.flag(
                rule,
                "output_tokens",
                at,
                f"message_delta usage.output_tokens is {out!r}, not a non-negative integer",
            )
        else:
            _cumulative(s, "output_tokens", out, at)
        for key in _USAGE_COUNTS:
            value = usage.get(key)
            if value is None:
                continue  # absent or null: the message_start value stands
            if type(value) is not int or value < 0:
                s.flag(
                    rule,
                    key,
                    at,
                    f"message_delta usage.{key} is {value!r}, not a non-negative integer or null",
                )
            else:
                _cumulative(s, key, value, at)


def _cumulative(s: M, key: str, value: int, at: Event) -> None:
    high = s.usage_high.get(key)
    if high is not None and value < high:
        s.flag(
            "anthropic.usage",
            ("down", key),
            at,
            f"usage.{key} went down from {high} to {value}: counts are cumulative (the SDK "
            "keeps the last value)",
            level_as="SHOULD",
        )
    else:
        s.usage_high[key] = value


def _prompt_empty(request: Mapping[str, Any]) -> bool:
    """True only when the request is known and has neither messages nor a system prompt.

    The API refuses an empty ``messages`` array and empty text blocks, so a stream answering
    an unknown request is taken to answer a non-empty prompt.
    """
    if not request:
        return False
    return not request.get("messages") and not request.get("system")


@check("anthropic.usage-input", on="message_start")
def usage_input(s: M, at: Event, obj: dict[str, Any]) -> bool:
    """Judged when message_start reports an integer input_tokens for a non-empty prompt;
    cached input counts."""
    message = obj.get("message")
    usage = message.get("usage") if type(message) is dict else None
    if type(usage) is not dict:
        return False
    inp = usage.get("input_tokens")
    if type(inp) is not int or _prompt_empty(s.request):
        return False
    cached = usage.get("cache_creation_input_tokens"), usage.get("cache_read_input_tokens")
    if inp + sum(c for c in cached if type(c) is int) <= 0:
        s.flag(
            "anthropic.usage-input",
            None,
            at,
            "message_start reports input_tokens 0 for a non-empty prompt (clients use it for "
            "context accounting)",
        )
    return True


@check("anthropic.usage-output", on="conclude")
def usage_output(s: M, at: Event | None, _: None) -> bool:
    """Judged when the final output_tokens is an integer and content was streamed."""
    out = s.out_tokens
    if type(out) is not int or not s.content_t:
        return False
    if out == 0:
        s.flag(
            "anthropic.usage-output",
            None,
            at,
            f"usage.output_tokens is 0 although {len(s.content_t)} content delta(s) were "
            "streamed (token counts, billing and load tests read 0)",
        )
    return True
