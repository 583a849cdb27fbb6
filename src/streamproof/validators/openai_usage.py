"""OpenAI chat-completions checks of usage: the separate usage chunk when ``include_usage``
is asked (and none when it is not), consistent totals, a non-zero output count, the
requested token limit. Each function is the one check of its rule (``registry.py``)."""

from __future__ import annotations

from typing import Any

from ..schemas import schema
from ..sse import Event
from .openai_model import OpenAIChatModel
from .registry import check

M = OpenAIChatModel


@check("openai.usage-chunk", when=lambda s: s.include_usage and (s.complete or s.usage_event >= 0))
class UsageChunk:
    """With ``include_usage``: one usage chunk (``choices: []`` and a usage object), well
    formed, after the last finish and before ``[DONE]``."""

    def usage_chunk(s: M, at: Event, obj: dict[str, Any]) -> None:
        if not s.include_usage:
            return
        rule = "openai.usage-chunk"
        if s.usage_event >= 0:
            s.flag(
                rule,
                "second",
                at,
                f"event {at.index} is a second usage chunk (the first was event {s.usage_event})",
            )
            return
        shape = schema("openai", "usage_chunk")
        if not shape.is_valid(obj):
            s.flag(
                rule,
                "shape",
                at,
                lambda: f"the usage chunk (event {at.index}) is malformed: {shape.explain(obj)}",
            )
        open_choices = [i for i, st in sorted(s.choices.items()) if st.finish is None]
        if open_choices:
            s.flag(
                rule,
                "early",
                at,
                f"the usage chunk (event {at.index}) comes before the finish of choice(s) "
                f"{open_choices}: it must follow the last finish chunk",
            )

    def choices_after_usage(s: M, at: Event, _: None) -> None:
        if s.include_usage:
            s.flag(
                "openai.usage-chunk",
                "after",
                at,
                f"event {at.index} carries choices after the usage chunk (event "
                f"{s.usage_event}): the usage chunk must be the last one before [DONE]",
            )

    def end(s: M, at: None, _: None) -> None:
        if not (s.include_usage and s.complete) or s.usage_event >= 0:
            return
        where = (
            f"; a usage object came on a chunk with choices instead (event {s.usage_on_choice})"
            if s.usage_on_choice >= 0
            else ""
        )
        s.flag(
            "openai.usage-chunk",
            "missing",
            None,
            "include_usage was requested but no usage chunk (choices: [] with a usage object) "
            f"came before [DONE]{where}",
        )


@check(
    "openai.usage-null-before",
    on="usage_with_choices",
    when=lambda s: s.chunks and s.include_usage,
)
def usage_null_before(s: M, at: Event, _: dict[str, Any]) -> None:
    if s.include_usage:
        s.flag(
            "openai.usage-null-before",
            None,
            at,
            f"event {at.index} carries a usage object on a chunk with choices; with "
            "include_usage, usage is null or absent until the separate usage chunk",
        )


@check("openai.usage-unrequested", when=lambda s: s.chunks and not s.include_usage)
class UsageUnrequested:
    """Without ``include_usage`` no chunk has ``choices: []``: clients read choices[0]."""

    def empty_choices(s: M, at: Event, _: dict[str, Any]) -> None:
        if not s.include_usage:
            s.flag(
                "openai.usage-unrequested",
                "empty",
                at,
                f"event {at.index} has choices: [] although include_usage was not requested: "
                "clients that read choices[0] fail on it",
            )

    def usage_chunk(s: M, at: Event, _: dict[str, Any]) -> None:
        if not s.include_usage:
            s.flag(
                "openai.usage-unrequested",
                "usage",
                at,
                f"event {at.index} is a usage chunk (choices: []) although "
                "stream_options.include_usage was not requested: clients that read "
                "choices[0] fail on it",
            )


def _counts(s: M) -> tuple[Any, Any, Any]:
    """prompt, completion and total tokens of the usage the client ends up with."""
    usage = s.usage or {}
    return (
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        usage.get("total_tokens"),
    )


@check("openai.usage-total", on="end", when=lambda s: all(type(v) is int for v in _counts(s)))
def usage_total(s: M, at: None, _: None) -> None:
    prompt, completion, total = _counts(s)
    if not all(type(v) is int for v in (prompt, completion, total)) or total == prompt + completion:
        return
    s.flag(
        "openai.usage-total",
        None,
        s.usage_from,
        f"usage total_tokens is {total} but prompt_tokens + completion_tokens is {prompt} + "
        f"{completion} = {prompt + completion}"
        + (
            " (the difference may be reasoning tokens counted separately)"
            if total > prompt + completion
            else ""
        ),
    )


@check(
    "openai.usage-output",
    on="end",
    when=lambda s: type(_counts(s)[1]) is int and len(s.content_t) > 0,
)
def usage_output(s: M, at: None, _: None) -> None:
    completion = _counts(s)[1]
    if type(completion) is int and completion == 0 and s.content_t:
        s.flag(
            "openai.usage-output",
            None,
            s.usage_from,
            f"usage completion_tokens is 0 although {len(s.content_t)} content event(s) were "
            "streamed (token counts, billing and load tests read 0)",
        )


@check(
    "openai.usage-max-tokens",
    on="end",
    when=lambda s: s.max_tokens is not None and type(_counts(s)[1]) is int,
)
def usage_max_tokens(s: M, at: None, _: None) -> None:
    completion = _counts(s)[1]
    if s.max_tokens is not None and type(completion) is int and completion > s.max_tokens:
        s.flag(
            "openai.usage-max-tokens",
            None,
            s.usage_from,
            f"usage completion_tokens is {completion}, more than the requested limit of "
            f"{s.max_tokens}",
        )
