"""OpenAI chat-completions checks of streamed tool calls: dense indices, one complete head,
string arguments that join to a JSON object, id length, the finish reason and the forced
``tool_choice``. Each function is the one check of its rule (``registry.py``)."""

from __future__ import annotations

from typing import Any, Final

import orjson

from ..sse import Event
from .base import kind, short
from .openai_model import Call, Choice, OpenAIChatModel
from .registry import check

MAX_TOOL_ID_CHARS: Final = 40

M = OpenAIChatModel
Fragment = tuple[Choice, Call, dict[str, Any], dict[str, Any]]


@check("openai.tool-index", when=lambda s: s.tools)
class ToolIndex:
    """Each tool_calls entry is an object with an integer index; new calls are 0-based and
    dense (the SDK places fragments by index)."""

    def tool_bad_entry(s: M, at: Event, subject: tuple[Choice, Any]) -> None:
        st, entry = subject
        ci = st.index
        if entry.__class__ is not dict:
            s.flag(
                "openai.tool-index",
                (ci, "entry"),
                at,
                f"choice {ci} (event {at.index}): a tool_calls entry is {kind(entry)}, not an "
                "object (the SDK raises TypeError)",
            )
            return
        k = entry.get("index")
        s.flag(
            "openai.tool-index",
            (ci, "no-index"),
            at,
            f"choice {ci} (event {at.index}): a tool_calls entry has "
            + ("no index" if k is None else f"index {short(k)}, not an integer")
            + " (the SDK cannot place the fragment and raises)",
        )

    def tool_head(s: M, at: Event, fragment: Fragment) -> None:
        st, call = fragment[0], fragment[1]
        expected = len(st.calls) - 1  # the new call is already in st.calls
        if call.index != expected:
            s.flag(
                "openai.tool-index",
                (st.index, "dense", call.index),
                at,
                f"choice {st.index}: a new tool call has index {call.index} at event {at.index} "
                f"where {expected} was expected (indices are 0-based and dense; the SDK "
                f"inserts it at position {expected} and misplaces the later fragments)",
            )


@check("openai.tool-head", on="tool_head", when=lambda s: s.tools)
def tool_head(s: M, at: Event, fragment: Fragment) -> None:
    st, call, entry, fn = fragment
    cid, name = entry.get("id"), fn.get("name")
    missing = []
    if not (cid.__class__ is str and cid):
        missing.append("id")
    if entry.get("type") != "function":
        missing.append("type 'function'")
    if not (name.__class__ is str and name):
        missing.append("function.name")
    if missing:
        s.flag(
            "openai.tool-head",
            (st.index, call.index),
            at,
            f"choice {st.index} tool call {call.index}: the first fragment (event {at.index}) "
            "lacks " + ", ".join(missing),
        )


@check("openai.tool-head-once", on="tool_more", when=lambda s: s.tool_repeat)
def tool_head_once(s: M, at: Event, fragment: Fragment) -> None:
    """Announced before the fragment is merged: ``call`` holds the head so far."""
    st, call, entry, fn = fragment
    repeated = []
    doubled = False  # a non-empty id or name repeated: the SDK concatenates it
    cid, ctype, name = entry.get("id"), entry.get("type"), fn.get("name")
    if cid is not None and call.id:
        repeated.append(f"id={short(cid, 50)}")
        doubled = bool(cid)
    if ctype is not None and call.type:
        repeated.append(f"type={short(ctype, 30)}")
    if name is not None and call.name:
        repeated.append(f"function.name={short(name, 50)}")
        doubled = doubled or bool(name)
    if repeated:
        s.flag(
            "openai.tool-head-once",
            (st.index, call.index),
            at,
            f"choice {st.index} tool call {call.index}: a later fragment (event {at.index}) "
            "repeats "
            + ", ".join(repeated)
            + (
                ": the SDK concatenates repeated id and name strings"
                if doubled
                else " (harmless for the SDK: it replaces type, and an empty string adds nothing)"
            ),
            level_as=None if doubled else "SHOULD",
        )


@check("openai.tool-args-string", when=lambda s: s.tools)
class ToolArgsString:
    """``function`` is an object and ``function.arguments`` a string: clients concatenate
    the fragments and ``json.loads`` the text."""

    def tool_bad_function(s: M, at: Event, subject: tuple[Choice, int, Any]) -> None:
        st, k, fn = subject
        s.flag(
            "openai.tool-args-string",
            (st.index, k, "function"),
            at,
            f"choice {st.index} tool call {k} (event {at.index}): function is {kind(fn)}, not "
            "an object with name and arguments",
        )

    def tool_bad_args(s: M, at: Event, subject: tuple[Choice, Call, Any]) -> None:
        st, call, args = subject
        s.flag(
            "openai.tool-args-string",
            (st.index, call.index),
            at,
            f"choice {st.index} tool call {call.index} (event {at.index}): function.arguments "
            f"is {kind(args)}, not a string: clients concatenate the fragments and json.loads "
            "the text",
        )


@check("openai.tool-id-length", on="tool_head", when=lambda s: s.tool_ids)
def tool_id_length(s: M, at: Event, fragment: Fragment) -> None:
    st, call, entry, _ = fragment
    cid = entry.get("id")
    if cid.__class__ is str and len(cid) > MAX_TOOL_ID_CHARS:
        s.flag(
            "openai.tool-id-length",
            (st.index, call.index),
            at,
            f"choice {st.index} tool call {call.index}: id {short(cid)} has {len(cid)} "
            f"characters; OpenAI rejects tool_call_id values longer than {MAX_TOOL_ID_CHARS} "
            "when the call is sent back",
        )


def _with_calls(s: M) -> list[Choice]:
    return [st for st in s.choices.values() if st.calls]


@check(
    "openai.finish-tool-calls",
    on="end",
    when=lambda s: any(st.finish is not None for st in _with_calls(s)),
)
def finish_tool_calls(s: M, at: None, _: None) -> None:
    for st in _with_calls(s):
        if st.finish is not None and st.finish != "tool_calls":
            s.flag(
                "openai.finish-tool-calls",
                st.index,
                st.finish_event,
                f"choice {st.index} streamed {len(st.calls)} tool call(s) but finishes with "
                f"{st.finish!r}, not 'tool_calls' (clients that dispatch on the finish reason "
                "skip the calls)",
            )


def _parsable(s: M) -> list[Choice]:
    """Choices whose joined arguments must parse: not on an interrupted, length-cut or
    size-bound stream (a generation stopped early cannot close its JSON)."""
    if not s.complete or s.message_cut:
        return []
    return [st for st in _with_calls(s) if st.finish != "length"]


@check("openai.tool-args-json", on="end", when=lambda s: bool(_parsable(s)))
def tool_args_json(s: M, at: None, _: None) -> None:
    for st in _parsable(s):
        for call in sorted(st.calls.values(), key=lambda c: c.index):
            text = "".join(call.args)
            if call.args_bad or not text:
                continue  # a non-string fragment (told already); no arguments count as {}
            head = f"choice {st.index} tool call {call.index} ({call.name!r}): the joined arguments"
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                problem = f"{head} are not JSON ({exc})"
            else:
                if value.__class__ is dict:
                    continue
                problem = f"{head} are {kind(value)}, not a JSON object"
            s.flag("openai.tool-args-json", (st.index, call.index), call.event, problem, data=text)


@check(
    "openai.tool-choice",
    on="end",
    when=lambda s: s.forced_tool is not None and s.complete and s.choices,
)
def tool_choice(s: M, at: None, _: None) -> None:
    """A forced tool call came (judged on complete streams; a choice cut by length or a
    content filter had no chance to make the call)."""
    forced = s.forced_tool
    if forced is None or not s.complete:
        return
    how = f"tool_choice names {forced!r}" if forced else 'tool_choice is "required"'
    for st in s.choices.values():
        if st.finish in ("length", "content_filter"):
            continue
        names = [c.name for c in sorted(st.calls.values(), key=lambda c: c.index)]
        if not names:
            text = "".join(st.content or ())
            said = f" after {len(text)} characters of text" if text else ""
            s.flag(
                "openai.tool-choice",
                st.index,
                st.finish_event if st.finish_event >= 0 else st.first_event,
                f"choice {st.index} answered without a tool call although {how}: it finishes "
                f"with {st.finish!r}{said}",
            )
        elif forced and forced not in names:
            s.flag(
                "openai.tool-choice",
                st.index,
                st.first_event,
                f"choice {st.index} calls {names} although {how}",
            )
