"""OpenAI Responses checks of the terminal response and of the request's contract: the final
output against what streamed, the completed, incomplete and failed shapes, the usage, the
``output_text`` convenience field and a forced ``tool_choice``. Each function or class is the
one check of its rule (``registry.py``) and listens to the transitions of
``responses_model.py``.
"""

from __future__ import annotations

from typing import Any, Final

from ..schemas import schema
from ..sse import Event
from .base import kind, short
from .registry import check
from .responses_model import ResponsesModel

M = ResponsesModel
_USAGE_KEYS: Final = ("input_tokens", "output_tokens", "total_tokens")
_INCOMPLETE_REASONS: Final = ("max_output_tokens", "content_filter")
# left out when a done item is compared with its final copy: what deltas stream (the join
# rules compare it) and what legitimately changes between the two (reasoning re-encrypted,
# logprobs rounded: shared/spec/openai-responses-streaming.md, real-world tolerance)
_NOT_COMPARED: Final = frozenset(
    {"text", "refusal", "arguments", "input", "code", "logprobs", "encrypted_content"}
)
# the fields a client acts on: another value in the final copy rebuilds another answer
_ACTED_ON: Final = ("call_id", "name", "role")


def _ended(kind_: str) -> Any:
    return lambda s: s.terminal == kind_


@check("responses.final-output", on="terminal", when=lambda s: s.terminal is not None)
def final_output(s: M, at: Event, response: dict[str, Any]) -> None:
    """Every streamed item at its output_index with its id and type and what its
    output_item.done held (:func:`_same_as_done`), and no other item (a failed response's
    output may be empty)."""
    if s.terminal == "response.failed":
        return
    output = response.get("output")
    if type(output) is not list:
        s.flag("responses.final-output", "type", at,
               f"{s.terminal}'s response.output is {kind(output)}, not a list")  # fmt: skip
        return
    streamed = [i for i in s.item_list if type(i.index) is int]
    for item in streamed:
        got = output[item.index] if item.index < len(output) else None
        if type(got) is not dict:
            s.flag(
                "responses.final-output",
                ("missing", item.index),
                at,
                f"the final output has no item at index {item.index}, where {item.describe()} "
                f"streamed (id {short(item.id)})"
                + (
                    ""
                    if item.done is not None
                    else ": the SDK raises 'Cannot complete response with unfinished output items.'"
                ),
            )
        elif got.get("id") != item.id or got.get("type") != item.kind:
            s.flag(
                "responses.final-output",
                ("differs", item.index),
                at,
                f"the final output's item {item.index} is {short(got.get('type'))} "
                f"{short(got.get('id'))}, but {item.describe()} {short(item.id)} streamed",
            )
        elif item.done:  # (a done event without an item object is item-done's finding)
            _same_as_done(s, at, item.index, item.done, got)
    if len(output) > len({i.index for i in streamed}):
        s.flag(
            "responses.final-output",
            "extra",
            at,
            f"the final output holds {len(output)} item(s), {len(streamed)} streamed: clients "
            "that followed the stream never saw the others",
        )


def _same_as_done(s: M, at: Event, index: int, done: dict[str, Any], final: dict[str, Any]) -> None:
    """The final copy of an item holds what its output_item.done held (a client that follows
    the stream acts on the done item, get_final_response() returns the final one). A field a
    client acts on is a failure; any other a warning."""
    a, b = _compared(done), _compared(final)
    if a == b:
        return
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    acted = [k for k in keys if k in _ACTED_ON]
    shown = "; ".join(f"{k} {_value(a, k)} → {_value(b, k)}" for k in keys[:3])
    more = f"; and {len(keys) - 3} more field(s)" if len(keys) > 3 else ""
    s.flag(
        "responses.final-output",
        ("content", index),
        at,
        f"the final output's item {index} differs from its output_item.done (done → "
        f"final): {shown}{more}" + ("" if acted else " (no field a client acts on)"),
        level_as=None if acted else "SHOULD",
    )


def _value(obj: dict[str, Any], key: str) -> str:
    return short(obj[key], 50) if key in obj else "absent"


def _compared(value: Any) -> Any:
    if type(value) is dict:
        return {k: _compared(v) for k, v in value.items() if k not in _NOT_COMPARED}
    if type(value) is list:
        return [_compared(v) for v in value]
    return value


def _usage_problems(usage: Any) -> tuple[list[str], list[str]]:
    """What is wrong with a usage object: the counts (clients bill on them), and the
    details (the SDK types them as required but builds the response without them)."""
    if type(usage) is not dict:
        return [f"usage is {kind(usage)}"], []
    counts = [f"{k} {short(usage.get(k))}" for k in _USAGE_KEYS if type(usage.get(k)) is not int]
    details = []
    for key, inner in (("input_tokens_details", "cached_tokens"),
                       ("output_tokens_details", "reasoning_tokens")):  # fmt: skip
        found = usage.get(key)
        if type(found) is not dict or type(found.get(inner)) is not int:
            details.append(f"{key}.{inner} missing")
    return counts, details


@check("responses.completed-shape", on="terminal", when=_ended("response.completed"))
def completed_shape(s: M, at: Event, response: dict[str, Any]) -> None:
    if s.terminal != "response.completed":
        return
    problems = []
    if response.get("status") != "completed":
        problems.append(f"status {short(response.get('status'))}")
    for key in ("error", "incomplete_details"):
        if response.get(key) is not None:
            problems.append(f"{key} {short(response[key])}")
    counts, details = _usage_problems(response.get("usage"))
    problems += [f"usage: {p}" for p in counts]
    if not problems and not details:
        shape = schema("responses", "completed")
        if not shape.is_valid(at.parsed):
            problems.append(shape.explain(at.parsed))
    if problems:
        s.flag("responses.completed-shape", None, at,
               "response.completed: " + "; ".join(problems))  # fmt: skip
    if details:
        s.flag("responses.completed-shape", "details", at,
               f"response.completed: usage {'; '.join(details)} (the SDK's type requires "
               "them; it builds the response without, and code that reads them fails)",
               level_as="SHOULD")  # fmt: skip


@check("responses.usage-total", on="terminal", when=lambda s: s.usage is not None)
def usage_total(s: M, at: Event, response: dict[str, Any]) -> None:
    usage = s.usage
    if usage is None or not all(type(usage.get(k)) is int for k in _USAGE_KEYS):
        return
    inp, out, total = (usage[k] for k in _USAGE_KEYS)
    if inp + out != total:
        s.flag("responses.usage-total", "total", at,
               f"total_tokens {total} is not input_tokens {inp} + output_tokens {out}")  # fmt: skip
    for key, inner, whole, name in (
        ("output_tokens_details", "reasoning_tokens", out, "output_tokens"),
        ("input_tokens_details", "cached_tokens", inp, "input_tokens"),
    ):
        details = usage.get(key)
        part = details.get(inner) if type(details) is dict else None
        if type(part) is int and part > whole:
            s.flag("responses.usage-total", inner, at,
                   f"{inner} {part} is more than {name} {whole}")  # fmt: skip


def _counted(s: M) -> str:
    tokens, source = s.output_tokens
    return f"{tokens} content events" if source == "events" else f"{tokens} output tokens"


def _limit(s: M) -> int | None:
    limit = s.request.get("max_output_tokens")
    return limit if type(limit) is int else None


@check(
    "responses.incomplete",
    when=lambda s: (
        s.terminal == "response.incomplete"
        or ("responses.incomplete" in s.expect and s.terminal is not None)
    ),
)
class Incomplete:
    """A cut generation ends with response.incomplete and says why; a request whose
    max_output_tokens must cut the answer (the scenario's ``expect``) is cut."""

    def terminal(s: M, at: Event, response: dict[str, Any]) -> None:
        if s.terminal != "response.incomplete":
            return
        details = response.get("incomplete_details")
        reason = details.get("reason") if type(details) is dict else None
        problems = []
        if response.get("status") != "incomplete":
            problems.append(f"status {short(response.get('status'))}")
        if reason not in _INCOMPLETE_REASONS:
            problems.append(f"incomplete_details.reason {short(reason)}")
        if type(response.get("usage")) is not dict:
            problems.append("no usage")
        if problems:
            s.flag("responses.incomplete", "shape", at,
                   "response.incomplete: " + "; ".join(problems))  # fmt: skip

    def end(s: M, at: None, _: None) -> None:
        if "responses.incomplete" not in s.expect or s.terminal in (None, "response.incomplete"):
            return
        limit = _limit(s)
        if s.terminal == "response.failed" or (limit is not None and s.output_tokens[0] < limit):
            return  # failed, or the answer fit in the budget: there was nothing to cut
        s.flag(
            "responses.incomplete",
            "missing",
            None,
            f"max_output_tokens {_limit(s)} must cut this long answer, but it ended with "
            f"{s.terminal} ({_counted(s)})",
        )


@check(
    "responses.incomplete-usage",
    on="terminal",
    when=lambda s: _limit(s) is not None and s.usage_tokens is not None,
)
def incomplete_usage(s: M, at: Event, response: dict[str, Any]) -> None:
    limit, used = _limit(s), s.usage_tokens
    if limit is not None and used is not None and used > limit:
        s.flag(
            "responses.incomplete-usage",
            None,
            at,
            f"usage.output_tokens {used} is more than max_output_tokens {limit}",
        )


@check("responses.failed-shape", on="terminal", when=_ended("response.failed"))
def failed_shape(s: M, at: Event, response: dict[str, Any]) -> None:
    if s.terminal != "response.failed":
        return
    error = response.get("error")
    problems = []
    if response.get("status") != "failed":
        problems.append(f"status {short(response.get('status'))}")
    if type(error) is not dict:
        problems.append(f"error is {kind(error)}")
    else:
        problems += [f"error.{k} is {kind(error.get(k))}" for k in ("code", "message")
                     if type(error.get(k)) is not str]  # fmt: skip
    if problems:
        said = "; ".join(problems)
        s.flag("responses.failed-shape", None, at,
               f"response.failed: {said} (clients show error.message)")  # fmt: skip


@check(
    "responses.output-text-field",
    on="terminal",
    when=lambda s: s.final is not None and "output_text" in s.final,
)
def output_text_field(s: M, at: Event, response: dict[str, Any]) -> None:
    if "output_text" not in response or s.message_cut:
        return
    joined = "".join(
        part.text
        for item in sorted(s.item_list, key=lambda i: i.position)
        if item.kind == "message"
        for _, part in sorted(item.parts.items())
        if part.kind == "output_text"
    )
    value = response["output_text"]
    if value != joined:
        s.flag(
            "responses.output-text-field",
            None,
            at,
            f"response.output_text is {short(value, 40)}, the streamed text {short(joined, 40)} "
            "(the SDK computes its own output_text from the output)",
        )


def _forced(s: M) -> str | None:
    """The function a request forces ("" for any: ``required``), or None."""
    choice = s.request.get("tool_choice")
    if choice == "required":
        return ""
    if type(choice) is dict and choice.get("type") == "function":
        name = choice.get("name")
        return name if type(name) is str else ""
    return None


@check(
    "responses.tool-choice",
    on="end",
    when=lambda s: _forced(s) is not None and s.terminal == "response.completed",
)
def tool_choice(s: M, at: None, _: None) -> None:
    """A forced function call came (judged on completed responses: an incomplete one may
    have been cut before it)."""
    forced = _forced(s)
    if forced is None or s.terminal != "response.completed":
        return
    names = [i.added.get("name") for i in s.item_list if i.kind == "function_call"]
    how = f"tool_choice names {forced!r}" if forced else 'tool_choice is "required"'
    if not names:
        kinds = sorted({str(i.kind) for i in s.item_list}) or ["nothing"]
        s.flag("responses.tool-choice", None, None,
               f"the response has no function_call although {how}: it streamed "
               f"{', '.join(kinds)}")  # fmt: skip
    elif forced and forced not in names:
        s.flag("responses.tool-choice", None, None, f"the response calls {names} although {how}")
