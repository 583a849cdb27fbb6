"""Faults of the OpenAI Responses output items: indices, item shape and references, items done
and nothing after, content parts, deltas, texts that join, annotations, built-in tool progress,
function-call arguments and reasoning. Also the edit helpers both Responses modules use.

Chunk edits receive the stream as the endpoint built it — event dicts in sending order, each
with its ``sequence_number`` already — and return a new list; they never mutate the dicts they
were given. An edit that adds or drops events renumbers the list (:func:`renumbered`) unless
the numbering is what it breaks. Each edit leaves every other rule intact where it can (a text
changed in one place is changed in every later copy of it too) and leaves a stream without the
events it needs as it is; the descriptions say which rules it trips besides its own. The
``responses-`` prefix is added where all of them are registered (``responses.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ..endpoint import StreamInfo
from ..openai_responses import TERMINALS, is_content, renumbered
from .base import ChunkEdit, Fault
from .wire import drop_tools

__all__ = [
    "ITEM_FAULTS",
    "Items",
    "content",
    "inserted",
    "is_",
    "mapped",
    "terminal",
    "where",
    "with_response",
]

Items = list[Any]
Edit = Callable[[dict[str, Any]], dict[str, Any]]
_LINK: Final = {"type": "url_citation", "start_index": 0, "end_index": 3,
                "title": "Lighthouses", "url": "https://example.com/lighthouses"}  # fmt: skip


# -- helpers (also used by responses.py) -------------------------------------------------------


def is_(item: Any, kind: str) -> bool:
    """An event dict of type ``response.<kind>`` (``error``: the error event)."""
    full = kind if kind == "error" else f"response.{kind}"
    return isinstance(item, dict) and item.get("type") == full


def where(items: Items, kind: str, index: int | None = None) -> list[int]:
    """Positions of the events of a kind (of the item at ``output_index``, if given)."""
    return [
        i
        for i, item in enumerate(items)
        if is_(item, kind) and (index is None or item.get("output_index") == index)
    ]


def mapped(items: Items, kind: str, edit: Edit, index: int | None = None) -> Items:
    """Every event of a kind (of one item) edited."""
    at = set(where(items, kind, index))
    return [edit(item) if i in at else item for i, item in enumerate(items)]


def content(items: Items) -> list[int]:
    """Positions of the content deltas (non-empty text, summary or argument deltas)."""
    return [i for i, item in enumerate(items) if is_content(item)]


def inserted(items: Items, at: int, *new: Any) -> Items:
    """``new`` events before position ``at``, the stream renumbered."""
    return renumbered([*items[:at], *new, *items[at:]])


def dropped(items: Items, positions: list[int]) -> Items:
    gone = set(positions)
    return renumbered([item for i, item in enumerate(items) if i not in gone])


def terminal(items: Items) -> int | None:
    """The position of the terminal event (completed, incomplete or failed), if any."""
    found = [i for i, item in enumerate(items) if isinstance(item, dict)
             and item.get("type") in TERMINALS]  # fmt: skip
    return found[-1] if found else None


def with_response(items: Items, edit: Edit, kinds: tuple[str, ...] = TERMINALS) -> Items:
    """The ``response`` object of the lifecycle events of ``kinds`` edited."""
    return [
        {**item, "response": edit(item["response"])}
        if isinstance(item, dict) and item.get("type") in kinds
        else item
        for item in items
    ]


def with_item(items: Items, index: int, edit: Edit) -> Items:
    """The item at ``output_index`` edited where it is whole: its output_item.done and the
    terminal response's output."""

    def final(response: dict[str, Any]) -> dict[str, Any]:
        output = list(response.get("output") or [])
        if index < len(output):
            output[index] = edit(output[index])
        return {**response, "output": output}

    items = mapped(items, "output_item.done", lambda d: {**d, "item": edit(d["item"])}, index)
    return with_response(items, final)


def _index_of(items: Items, kind: str) -> int | None:
    """The output_index of the first item of a type (message, function_call, reasoning)."""
    for i in where(items, "output_item.added"):
        if items[i]["item"].get("type") == kind:
            return int(items[i]["output_index"])
    return None


def _without(item: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != key}


def _on_item(kind: str, edit: Callable[[Items, int], Items]) -> ChunkEdit:
    """A chunk edit of the first item of a type; the stream as it is without one."""

    def chunks(items: Items, info: StreamInfo) -> Items:
        index = _index_of(items, kind)
        return items if index is None else edit(items, index)

    return chunks


def _shorter(text: Any) -> Any:
    """A text without its last word (the .done of a stream that lost a delta)."""
    return text.rsplit(" ", 1)[0] if isinstance(text, str) and " " in text else text


# -- items -------------------------------------------------------------------------------------


def _added_again(items: Items, index: int) -> Items:
    """The item's output_item.added sent a second time, after its output_item.done."""
    added = where(items, "output_item.added", index)[0]
    done = where(items, "output_item.done", index)
    return inserted(items, done[0] + 1, items[added]) if done else items


def _same_id(items: Items, index: int) -> Items:
    """The second function call takes the first one's item id, everywhere it is named."""
    calls = [items[i]["item"] for i in where(items, "output_item.added")
             if items[i]["item"].get("type") == "function_call"]  # fmt: skip
    if len(calls) < 2:
        return items
    old, new = calls[1]["id"], calls[0]["id"]

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: new if k in ("id", "item_id") and v == old else fix(v)
                    for k, v in value.items()}  # fmt: skip
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return [fix(item) for item in items]


def _unknown_index(items: Items, index: int) -> Items:
    """A copy of the first text delta naming output_index 1 more than the last item's."""
    deltas = where(items, "output_text.delta", index)
    if not deltas:
        return items
    last = max(int(items[i]["output_index"]) for i in where(items, "output_item.added"))
    stray = {**items[deltas[0]], "output_index": last + 1}
    return inserted(items, deltas[0] + 1, stray)


def _no_item_done(items: Items, index: int) -> Items:
    return dropped(items, where(items, "output_item.done", index))


def _text_done_again(items: Items, index: int) -> Items:
    """The output_text.done sent again after the item's output_item.done."""
    text_done = where(items, "output_text.done", index)
    done = where(items, "output_item.done", index)
    if not text_done or not done:
        return items
    return inserted(items, done[0] + 1, items[text_done[0]])


def _overlap(items: Items, index: int) -> Items:
    """The first item's output_item.done after the second item's output_item.added."""
    done = where(items, "output_item.done", index)
    second = where(items, "output_item.added", index + 1)
    if not done or not second:
        return items
    moved = [item for i, item in enumerate(items) if i != done[0]]
    at = second[0]  # the added event moved one place up with the done event gone
    return renumbered([*moved[:at], items[done[0]], *moved[at:]])


def _tool_unfinished(items: Items, info: StreamInfo) -> Items:
    """A web_search_call item after the others: in_progress and searching, then its
    output_item.done without web_search_call.completed (it is in the final output too)."""
    end = terminal(items)
    if end is None:
        return items
    index = len(where(items, "output_item.added"))
    item_id = "ws_" + "7e57" * 12
    action = {"type": "search", "query": "lighthouse keeper"}
    added = {"id": item_id, "type": "web_search_call", "status": "in_progress"}
    done = {**added, "status": "completed", "action": action}
    at = {"output_index": index, "item_id": item_id}
    events = [
        {"type": "response.output_item.added", "output_index": index, "item": added},
        {"type": "response.web_search_call.in_progress", **at},
        {"type": "response.web_search_call.searching", **at},
        {"type": "response.output_item.done", "output_index": index, "item": done},
    ]

    def final(response: dict[str, Any]) -> dict[str, Any]:
        return {**response, "output": [*(response.get("output") or []), done]}

    return inserted(with_response(items, final), end, *events)


# -- parts and text ----------------------------------------------------------------------------

_PART_EVENTS: Final = ("content_part.added", "output_text.delta", "output_text.done",
                       "content_part.done")  # fmt: skip


def _content_index_1(items: Items, index: int) -> Items:
    """The message's only part says content_index 1 on all its events."""
    for kind in _PART_EVENTS:
        items = mapped(items, kind, lambda e: {**e, "content_index": 1}, index)
    return items


def _text_in_reasoning(items: Items, index: int) -> Items:
    """An output_text.delta naming the reasoning item, after its first summary delta."""
    deltas = where(items, "reasoning_summary_text.delta", index)
    if not deltas:
        return items
    first = items[deltas[0]]
    stray = {"type": "response.output_text.delta", "item_id": first["item_id"],
             "output_index": index, "content_index": 0, "delta": " Hi", "logprobs": []}  # fmt: skip
    return inserted(items, deltas[0] + 1, stray)


def _delta_null(items: Items, index: int) -> Items:
    """An extra output_text.delta whose delta is null after the first one."""
    deltas = where(items, "output_text.delta", index)
    if not deltas:
        return items
    return inserted(items, deltas[0] + 1, {**items[deltas[0]], "delta": None})


def _done_field(kind: str, field: str) -> Callable[[Items, int], Items]:
    """The ``.done`` event of a kind holds its whole without the last word (or character)."""

    def edit(items: Items, index: int) -> Items:
        def one(event: dict[str, Any]) -> dict[str, Any]:
            value = event[field]
            cut = _shorter(value) if " " in value else value[:-1]
            return {**event, field: cut}

        return mapped(items, kind, one, index)

    return edit


def _no_part_done(items: Items, index: int) -> Items:
    return dropped(items, where(items, "content_part.done", index))


def _no_logprobs(items: Items, index: int) -> Items:
    for kind in ("output_text.delta", "output_text.done"):
        items = mapped(items, kind, lambda e: _without(e, "logprobs"), index)
    return items


def _annotation_lost(items: Items, index: int) -> Items:
    """A url_citation annotation after the last text delta, missing from the part's
    content_part.done (and from the done and final item)."""
    deltas = where(items, "output_text.delta", index)
    if not deltas:
        return items
    last = items[deltas[-1]]
    event = {"type": "response.output_text.annotation.added", "item_id": last["item_id"],
             "output_index": index, "content_index": 0, "annotation_index": 0,
             "annotation": _LINK}  # fmt: skip
    return inserted(items, deltas[-1] + 1, event)


# -- tool calls and reasoning ------------------------------------------------------------------


def _args_cut(items: Items, index: int) -> Items:
    """The last argument delta is never sent, and every later copy of the arguments is the
    cut text: one consistent call whose arguments are not JSON."""
    deltas = where(items, "function_call_arguments.delta", index)
    if len(deltas) < 2:
        return items
    cut = "".join(items[i]["delta"] for i in deltas[:-1])
    items = mapped(items, "function_call_arguments.done", lambda e: {**e, "arguments": cut}, index)
    items = with_item(items, index, lambda item: {**item, "arguments": cut})
    return dropped(items, deltas[-1:])


def _args_done_nameless(items: Items, index: int) -> Items:
    return mapped(items, "function_call_arguments.done", lambda e: _without(e, "name"), index)


def _summary_parts(items: Items, index: int) -> list[int]:
    kinds = ("reasoning_summary_part.added", "reasoning_summary_text.delta",
             "reasoning_summary_text.done", "reasoning_summary_part.done")  # fmt: skip
    return sorted(i for kind in kinds for i in where(items, kind, index))


def _hidden(items: Items, index: int) -> Items:
    """The reasoning summary is not streamed: no summary events, summary [] where the item
    is whole (its words only in usage reasoning_tokens)."""
    items = with_item(items, index, lambda item: {**item, "summary": []})
    return dropped(items, _summary_parts(items, index))


def _raw_reasoning(items: Items, index: int) -> Items:
    """The summary sent as raw reasoning (a reasoning_text content part, as DeepSeek does),
    its reasoning_text.done without the last word."""
    out: Items = []
    whole = ""
    summary = set(_summary_parts(items, index))
    for i, item in enumerate(items):
        if i not in summary:
            out.append(item)
            continue
        at = {"item_id": item["item_id"], "output_index": index, "content_index": 0}
        if is_(item, "reasoning_summary_part.added"):
            part = {"type": "reasoning_text", "text": ""}
            out.append({"type": "response.content_part.added", **at, "part": part})
        elif is_(item, "reasoning_summary_text.delta"):
            out.append({"type": "response.reasoning_text.delta", **at, "delta": item["delta"]})
        elif is_(item, "reasoning_summary_text.done"):
            whole = item["text"]
            cut = {"text": _shorter(whole)}
            out.append({"type": "response.reasoning_text.done", **at, **cut})
        else:
            part = {"type": "reasoning_text", "text": whole}
            out.append({"type": "response.content_part.done", **at, "part": part})
    parts = [{"type": "reasoning_text", "text": whole}]
    return renumbered(with_item(out, index, lambda i: {**i, "summary": [], "content": parts}))


def _faults() -> tuple[Fault, ...]:
    return (
        # items
        Fault("output-index-repeat", "responses", ("responses.output-index",
              "responses.item-shape", "responses.item-done", "sdk.responses-accumulate"),
              "plain", "the message's output_item.added is sent again after its done: output "
              "index 0 and its id twice, the second never done (the SDK raises 'Duplicate "
              "response output index 0')", chunks=_on_item("message", _added_again)),
        Fault("item-id-repeat", "responses", ("responses.item-shape",), "parallel-tools",
              "the second function call has the first one's item id, everywhere (the SDK "
              "keys calls by call_id and copes)", chunks=_on_item("function_call", _same_id)),
        Fault("item-ref-unknown", "responses", ("responses.item-ref",
              "sdk.responses-accumulate"), "plain", "a copy of the first text delta names an "
              "output_index no item has (the SDK raises 'Received a content event for output "
              "index 1 before receiving its output item')",
              chunks=_on_item("message", _unknown_index)),
        Fault("item-done-missing", "responses", ("responses.item-done",), "plain",
              "the message gets no output_item.done (it is in the final output)",
              chunks=_on_item("message", _no_item_done)),
        Fault("event-after-item-done", "responses", ("responses.item-after-done",), "plain",
              "output_text.done is sent again after the message's output_item.done",
              chunks=_on_item("message", _text_done_again)),
        Fault("items-overlap", "responses", ("responses.item-overlap",), "parallel-tools",
              "the second call is added before the first one's output_item.done (INFO: real "
              "streams overlap items)", chunks=_on_item("function_call", _overlap)),
        Fault("tool-progress-unfinished", "responses", ("responses.tool-progress",), "plain",
              "a web_search_call item (in the final output too) whose progress events stop "
              "at .searching: done without web_search_call.completed",
              chunks=_tool_unfinished),
        # parts and text
        Fault("content-index-from-1", "responses", ("responses.content-index",
              "responses.text-join", "sdk.responses-accumulate"), "plain", "the message's "
              "only part says content_index 1 on all its events (the done and final items "
              "hold it at 0: text-join; the SDK indexes content[1] and raises IndexError)",
              chunks=_on_item("message", _content_index_1)),
        Fault("text-in-reasoning", "responses", ("responses.part-ref",
              "sdk.responses-accumulate"), "reasoning", "an output_text.delta names the "
              "reasoning item (the SDK asserts a message item: AssertionError)",
              chunks=_on_item("reasoning", _text_in_reasoning)),
        Fault("delta-null", "responses", ("responses.delta-string",
              "sdk.responses-accumulate"), "plain", "an extra output_text.delta whose delta "
              "is null (the SDK's += raises TypeError)", chunks=_on_item("message", _delta_null)),
        Fault("text-done-differs", "responses", ("responses.text-join",), "plain",
              "output_text.done lacks the last word of what the deltas joined (the SDK "
              "returns the final output, which matches the deltas)",
              chunks=_on_item("message", _done_field("output_text.done", "text"))),
        Fault("part-not-closed", "responses", ("responses.part-closed",), "plain",
              "the message's part gets no content_part.done",
              chunks=_on_item("message", _no_part_done)),
        Fault("no-logprobs", "responses", ("responses.logprobs-key",), "plain",
              "output_text.delta and .done carry no logprobs key (2025-03 OpenAI)",
              chunks=_on_item("message", _no_logprobs)),
        Fault("annotation-lost", "responses", ("responses.annotations",), "plain",
              "a url_citation annotation is streamed but missing from content_part.done",
              chunks=_on_item("message", _annotation_lost)),
        # tool calls
        Fault("args-done-differs", "responses", ("responses.args-join",), "tool",
              "function_call_arguments.done lacks the last character of the joined arguments",
              chunks=_on_item("function_call", _done_field(
                  "function_call_arguments.done", "arguments"))),
        Fault("args-not-json", "responses", ("responses.args-json",), "tool",
              "the last argument delta is never sent and every copy of the arguments is the "
              "cut, unclosed JSON", chunks=_on_item("function_call", _args_cut)),
        Fault("args-done-nameless", "responses", ("responses.args-done-name",), "tool",
              "function_call_arguments.done carries no name (INFO: as no recorded stream)",
              chunks=_on_item("function_call", _args_done_nameless)),
        Fault("tool-choice-ignored", "responses", ("responses.tool-choice",), "tool",
              "tools and tool_choice are dropped: a forced function call is answered in text",
              request=drop_tools),
        # reasoning
        Fault("summary-done-differs", "responses", ("responses.reasoning-summary",),
              "reasoning", "reasoning_summary_text.done lacks the last word of the deltas",
              chunks=_on_item("reasoning", _done_field("reasoning_summary_text.done", "text"))),
        Fault("reasoning-text-differs", "responses", ("responses.reasoning-text",),
              "reasoning", "the summary is sent as raw reasoning (a reasoning_text part, as "
              "DeepSeek does) whose reasoning_text.done lacks the last word",
              chunks=_on_item("reasoning", _raw_reasoning)),
        Fault("reasoning-hidden", "responses", ("responses.reasoning-hidden",), "reasoning",
              "the reasoning summary asked for is not streamed: a reasoning item with no "
              "deltas (INFO: hidden reasoning)", chunks=_on_item("reasoning", _hidden)),
    )  # fmt: skip


ITEM_FAULTS: Final = _faults()
