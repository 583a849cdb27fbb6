"""OpenAI chat-completions checks of the choices: their shape and lifecycle (role first and
once, delta types, one finish_reason from the enum and nothing after it, ``n``, the
requested length cut). Each function is the one check of its rule (``registry.py``)."""

from __future__ import annotations

from typing import Any, Final

from ..sse import Event
from .base import kind, short
from .openai_model import Choice, OpenAIChatModel
from .registry import check

FINISH_REASONS: Final = frozenset(
    {"stop", "length", "tool_calls", "content_filter", "function_call"}
)

M = OpenAIChatModel


@check("openai.choice-schema", when=lambda s: s.choices)
class ChoiceSchema:
    """Each choice entry matches schemas/openai/choice.json, with an integer index."""

    def choice_invalid(s: M, at: Event, subject: tuple[int, Any]) -> None:
        position, ch = subject
        if ch.__class__ is dict:
            index = ch.get("index")
            key: tuple[Any, ...] = (
                index if type(index) is int else None,
                tuple(
                    "-" if k not in ch else kind(ch[k])
                    for k in ("index", "delta", "finish_reason", "logprobs")
                ),
            )
        else:
            key = (None, kind(ch))
        s.flag(
            "openai.choice-schema",
            key,
            at,
            lambda: (
                f"event {at.index}: choices[{position}] does not match the choice schema: "
                f"{s.choice_schema.explain(ch)}"
            ),
        )

    def float_index(s: M, at: Event, index: float) -> None:
        # valid for JSON Schema ("integer"), but the SDK indexes a list with it and fails
        s.flag(
            "openai.choice-schema",
            ("float-index", index),
            at,
            f"event {at.index}: choice index is written {index!r}, not as an integer",
        )


@check("openai.finish-reason-key", on="finish_key_missing", when=lambda s: s.choices)
def finish_reason_key(s: M, at: Event, index: int) -> None:
    s.flag(
        "openai.finish-reason-key",
        index,
        at,
        f"choice {index} (event {at.index}) has no finish_reason key; it is required (null "
        "until the finish). The SDKs default it to null, clients reading "
        "choice['finish_reason'] raise KeyError",
    )


@check("openai.role-first", on="choice_opened", when=lambda s: s.choices)
def role_first(s: M, at: Event, opened: tuple[Choice, Any]) -> None:
    st, role = opened
    if role == "assistant":
        return
    s.flag(
        "openai.role-first",
        st.index,
        at,
        f"the first delta of choice {st.index} (event {at.index}) has no role"
        if role is None
        else f"the first delta of choice {st.index} (event {at.index}) has role {short(role)}, "
        "not 'assistant'",
    )


@check("openai.role-once", on="role_again", when=lambda s: s.deltas > len(s.choices))
def role_once(s: M, at: Event, again: tuple[Choice, Any]) -> None:
    st, role = again
    joined = st.role + role if role.__class__ is str and st.role is not None else None
    s.flag(
        "openai.role-once",
        st.index,
        at,
        f"role repeated in choice {st.index} delta (event {at.index}): the SDK "
        + (f"concatenates it to {joined!r}" if joined is not None else "cannot merge it"),
    )


@check("openai.delta-types", on="delta_type", when=lambda s: s.choices)
def delta_types(s: M, at: Event, subject: tuple[Choice, str, Any]) -> None:
    st, key, value = subject
    wanted = "an array" if key == "tool_calls" else "a string or null"
    s.flag(
        "openai.delta-types",
        (st.index, key),
        at,
        f"choice {st.index} delta (event {at.index}): {key} is {kind(value)}, not {wanted}",
    )


def _unfinished_counts(s: M) -> bool:
    """A complete stream owes a finish to each choice, and a choice to a request without
    ``n`` (a stream with none rebuilds an empty answer)."""
    return bool(s.finishes) or (s.complete and bool(s.choices or s.n is None))


@check("openai.finish-once", when=_unfinished_counts)
class FinishOnce:
    """Each choice gets exactly one finish_reason."""

    def finish_again(s: M, at: Event, subject: tuple[Choice, str]) -> None:
        st, finish = subject
        same = finish == st.finish
        s.flag(
            "openai.finish-once",
            ("again", st.index),
            at,
            f"choice {st.index} got a second finish_reason {finish!r} at event {at.index} (the "
            f"first, {st.finish!r}, was at event {st.finish_event})"
            + (
                "; the same value, so the rebuilt message is unchanged"
                if same
                else "; the SDK keeps the last one"
            ),
            level_as="SHOULD" if same else None,
        )

    def end(s: M, at: None, _: None) -> None:
        if not s.complete:
            return
        if not s.choices:
            if s.n is None:
                s.flag(
                    "openai.finish-once",
                    "none",
                    None,
                    "the stream carried no choice at all: the client rebuilds an empty answer"
                    if s.chunks
                    else "the stream carried no chunk at all: the client rebuilds nothing",
                )
            return
        for st in s.choices.values():
            if st.finish is None:
                s.flag(
                    "openai.finish-once",
                    ("never", st.index),
                    None,
                    f"choice {st.index} never got a finish_reason (it began at event "
                    f"{st.first_event}; the stream ended after event {s.events - 1})",
                )


@check("openai.finish-last", on="late_fragment", when=lambda s: s.finishes)
def finish_last(s: M, at: Event, subject: tuple[Choice, str]) -> None:
    st, what = subject
    s.flag(
        "openai.finish-last",
        st.index,
        at,
        f"choice {st.index} sends {what} at event {at.index} after its finish_reason "
        f"{st.finish!r} (event {st.finish_event})",
    )


@check("openai.finish-enum", on="finish", when=lambda s: s.finishes)
def finish_enum(s: M, at: Event, subject: tuple[Choice, str]) -> None:
    st, finish = subject
    if finish not in FINISH_REASONS:
        s.flag(
            "openai.finish-enum",
            (st.index, finish),
            at,
            f"choice {st.index} finishes with {short(finish)} (event {at.index}), not one of "
            "stop, length, tool_calls, content_filter, function_call",
        )


@check(
    "openai.finish-length",
    on="end",
    when=lambda s: "openai.finish-length" in s.expect and s.complete and s.choices,
)
def finish_length(s: M, at: None, _: None) -> None:
    """Scenario rule: the request's token limit cut every choice."""
    if "openai.finish-length" not in s.expect or not s.complete:
        return
    for st in s.choices.values():
        if st.finish is not None and st.finish != "length":
            s.flag(
                "openai.finish-length",
                st.index,
                st.finish_event,
                f"choice {st.index} was cut by the requested token limit but finishes with "
                f"{st.finish!r}, not 'length'",
            )


@check("openai.n-choices", when=lambda s: s.n is not None and (s.complete or s.choices))
class NChoices:
    """``n`` choices, indices 0..n-1."""

    def choice_opened(s: M, at: Event, opened: tuple[Choice, Any]) -> None:
        st = opened[0]
        if s.n is not None and st.index >= s.n:
            s.flag(
                "openai.n-choices",
                ("range", st.index),
                at,
                f"event {at.index}: choice index {st.index} although n={s.n} was requested "
                f"(indices 0..{s.n - 1})",
            )

    def end(s: M, at: None, _: None) -> None:
        if s.n is None or not s.complete:
            return
        missing = [i for i in range(s.n) if i not in s.choices]
        if missing:
            s.flag(
                "openai.n-choices",
                "missing",
                None,
                f"n={s.n} was requested but choice index(es) {missing} never appeared",
            )
