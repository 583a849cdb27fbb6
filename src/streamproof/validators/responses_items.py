"""OpenAI Responses checks of the output items and what streams inside them: output indices,
item shape and references, items done once and nothing after, content parts and their
indices, deltas, text that joins to every later copy of it, arguments, reasoning summaries and
reasoning text, annotations, built-in tool progress. Each function or class is the one check
of its rule (``registry.py``) and listens to the transitions of ``responses_model.py``.

A text is compared with each later copy of it: its ``.done`` event, its part's done event, the
done item and the terminal response's item at the same ``output_index``. Problems are told
once per item and place.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ..sse import Event
from .base import kind, short
from .registry import check
from .responses_model import PART_KINDS, STREAMS, Item, Part, ResponsesModel, TextDone

M = ResponsesModel
# which rule compares the text of which family
_JOIN_RULE: Final = {
    "output_text": "responses.text-join",
    "refusal": "responses.text-join",
    "reasoning_text": "responses.reasoning-text",
    "summary": "responses.reasoning-summary",
    "arguments": "responses.args-join",
    "input": "responses.args-join",
    "code": "responses.args-join",
}
_EMPTY_PART: Final = {"output_text": "text", "refusal": "refusal", "reasoning_text": "text"}
_ARGS_JSON_KINDS: Final = ("function_call", "mcp_call")
# the events whose item and part the SDK's ResponseStreamState asserts
_SDK_ASSERTS: Final = frozenset(
    {"response.output_text.delta", "response.output_text.done",
     "response.function_call_arguments.delta"}
)  # fmt: skip


def _had_items(s: M) -> bool:
    return bool(s.item_list)


def _has(kinds: tuple[str, ...]) -> Any:
    return lambda s: any(i.kind in kinds for i in s.item_list)


def _type(at: Event) -> str:
    return str(at.parsed["type"]) if type(at.parsed) is dict else "event"


# -- items -------------------------------------------------------------------------------


@check("responses.output-index", on="item_added", when=_had_items)
def output_index(s: M, at: Event, item: Item) -> None:
    index, expected = item.index, item.position
    if type(index) is int and index in s.items:
        s.flag(
            "responses.output-index",
            ("again", index),
            at,
            f"a second output_item.added with output_index {index} (the SDK raises "
            f"'Duplicate response output index {index}')",
        )
    elif type(index) is not int or index != expected:
        s.flag(
            "responses.output-index",
            ("order", expected),
            at,
            f"output_item.added has output_index {short(index)}, expected {expected} (items "
            "are numbered 0, 1, 2 ... in the order they are added)",
        )


@check("responses.item-shape", on="item_added", when=_had_items)
def item_shape(s: M, at: Event, item: Item) -> None:
    added = at.parsed.get("item")
    where = f"output_item.added {short(item.index)}"
    if type(added) is not dict:
        s.flag("responses.item-shape", "item", at, f"{where}: item is {kind(added)}")
        return
    if item.kind is None:
        s.flag("responses.item-shape", "type", at, f"{where}: the item has no string type")
    if not item.id:
        s.flag("responses.item-shape", "id", at, f"{where}: the {item.kind} item has no id")
    elif any(other.id == item.id for other in s.item_list):
        s.flag("responses.item-shape", ("dup", item.id), at,
               f"{where}: id {item.id!r} is already the id of another item")  # fmt: skip
    if item.kind == "function_call":
        problems = []
        if not (type(added.get("call_id")) is str and added["call_id"]):
            problems.append("no call_id")
        if type(added.get("name")) is not str or not added["name"]:
            problems.append("no name")
        if type(added.get("arguments")) is not str:
            problems.append(f"arguments is {kind(added.get('arguments'))}, not a string")
        if problems:
            s.flag("responses.item-shape", "function_call", at,
                   f"{where}: the function_call item has {', '.join(problems)}")  # fmt: skip


@check("responses.item-ref", on="item_ref", when=_had_items)
def item_ref(s: M, at: Event, subject: tuple[Any, Item | None]) -> None:
    index, item = subject
    if item is None:
        s.flag(
            "responses.item-ref",
            ("index", _type(at)),
            at,
            f"{_type(at)} names output_index {short(index)}, where no item was added (the SDK "
            "raises 'Received a content event for output index ... before receiving its "
            "output item')",
        )
    else:
        s.flag(
            "responses.item-ref",
            ("id", item.position),
            at,
            f"{_type(at)} names item_id {short(at.parsed.get('item_id'))}, but the item at "
            f"output_index {index} has id {short(item.id)}",
        )


@check("responses.item-done", when=_had_items)
class ItemDone:
    """Each added item gets its output_item.done (judged at the end of a whole stream)."""

    def item_done(s: M, at: Event, subject: tuple[Item, Any]) -> None:
        item, done = subject
        if type(done) is not dict:
            s.flag("responses.item-done", ("item", item.position), at,
                   f"output_item.done of {item.describe()}: item is {kind(done)}")  # fmt: skip

    def end(s: M, at: None, _: None) -> None:
        if s.truncated or s.terminal in (None, "response.failed"):
            return  # a failed response leaves the item it was streaming unfinished
        open_ = [i for i in s.item_list if i.done is None]
        if open_:
            s.flag(
                "responses.item-done",
                "open",
                None,
                f"{len(open_)} item(s) never got an output_item.done: "
                + ", ".join(i.describe() for i in open_[:3]),
            )


@check("responses.item-after-done", when=_had_items)
class ItemAfterDone:
    """Nothing names an item after its output_item.done; the done item is the added one."""

    def after_done(s: M, at: Event, item: Item) -> None:
        s.flag(
            "responses.item-after-done",
            (item.position, _type(at)),
            at,
            f"{_type(at)} names {item.describe()} after its output_item.done",
        )

    def item_done(s: M, at: Event, subject: tuple[Item, Any]) -> None:
        item, done = subject
        if type(done) is not dict:
            return
        changed = [
            f"{key} {short(done.get(key))} (added: {short(getattr(item, attr))})"
            for key, attr in (("id", "id"), ("type", "kind"))
            if done.get(key) != getattr(item, attr)
        ]
        if changed:
            s.flag(
                "responses.item-after-done",
                ("identity", item.position),
                at,
                f"output_item.done of {item.describe()} has {', '.join(changed)} (the SDK raises "
                "'Completed output item identity changed.')",
            )


@check("responses.item-overlap", on="item_added", when=_had_items)
def item_overlap(s: M, at: Event, item: Item) -> None:
    open_ = [i for i in s.item_list if i.done is None]
    if open_:
        s.flag(
            "responses.item-overlap",
            None,
            at,
            f"{item.describe()} is added while {open_[-1].describe()} is still open (items "
            "overlap; clients must track them by output_index)",
        )


@check("responses.tool-progress")
class ToolProgress:
    """Built-in tool progress events belong to their item and end in completed/failed."""

    def progress(s: M, at: Event, subject: tuple[Item, str]) -> None:
        item, kind_ = subject
        family = kind_.removeprefix("response.").rsplit(".", 1)[0]
        if item.kind != family:
            s.flag("responses.tool-progress", ("kind", item.position), at,
                   f"{kind_} names {item.describe()}")  # fmt: skip

    def item_done(s: M, at: Event, subject: tuple[Item, Any]) -> bool:
        item = subject[0]
        if item.progress is None:
            return False
        if item.progress not in ("completed", "failed"):
            s.flag(
                "responses.tool-progress",
                ("end", item.position),
                at,
                f"{item.describe()} is done after a {item.progress!r} progress event, with no "
                ".completed or .failed",
            )
        return True


# -- parts and deltas --------------------------------------------------------------------


@check("responses.content-index", on="part_added", when=_had_items)
def content_index(s: M, at: Event, subject: tuple[Item, Part]) -> bool:
    item, part = subject
    if _type(at) != "response.content_part.added":
        return False
    if type(part.index) is not int or part.index != len(item.parts):
        s.flag(
            "responses.content-index",
            ("index", item.position),
            at,
            f"content_part.added of {item.describe()} has content_index {short(part.index)}, "
            f"expected {len(item.parts)} (the SDK appends parts and indexes them by "
            "content_index)",
        )
    field = _EMPTY_PART.get(part.kind or "")
    if field is None:
        if part.kind is None:
            s.flag("responses.content-index", ("type", item.position), at,
                   f"content_part.added of {item.describe()}: the part has no type")  # fmt: skip
    elif part.start.get(field) != "":
        s.flag(
            "responses.content-index",
            ("empty", item.position),
            at,
            f"content_part.added of {item.describe()} starts with {field} "
            f'{short(part.start.get(field))}, not "" (the SDK adds the deltas to it)',
        )
    return True


def _misfit_where(at: Event, item: Item, family: str) -> tuple[str, str]:
    """Where a misfit event points, and what it should have named."""
    if family in PART_KINDS:
        owner, part_type, _ = PART_KINDS[family]
        index = at.parsed.get("summary_index" if family == "summary" else "content_index")
        wanted = f"a {part_type} part of a {owner} item"
        where = f"{item.describe()}, part {short(index)}"
    else:
        wanted = " or ".join(sorted(STREAMS[family][0])) + " item"
        where = item.describe()
    return where, wanted


@check("responses.part-ref", on="misfit", when=_had_items)
def part_ref(s: M, at: Event, subject: tuple[Item, str]) -> None:
    """The events the SDK asserts the item and part of; the other misfits (summary,
    reasoning text, refusal, MCP / custom tool / code streams, which the SDK passes through)
    are told by the rule of their text (``_join_check``)."""
    if _type(at) not in _SDK_ASSERTS:
        return
    where, wanted = _misfit_where(at, *subject)
    s.flag(
        "responses.part-ref",
        (subject[0].position, subject[1]),
        at,
        f"{_type(at)} names {where}, which is not {wanted} (the SDK asserts the item and "
        "part type)",
    )


@check("responses.delta-string", on="bad_delta", when=_had_items)
def delta_string(s: M, at: Event, value: Any) -> None:
    s.flag(
        "responses.delta-string",
        _type(at),
        at,
        f"{_type(at)} has delta {kind(value)} ({short(value)}), not a string (the SDK "
        "concatenates deltas with +=)",
    )


@check("responses.logprobs-key", when=_has(("message",)))
class LogprobsKey:
    """output_text.delta and .done carry a logprobs array (told once per part)."""

    def part_delta(s: M, at: Event, subject: tuple[Item, Part]) -> None:
        if subject[1].kind == "output_text":
            _logprobs(s, at)

    def text_done(s: M, at: Event, done: TextDone) -> None:
        if done.family == "output_text":
            _logprobs(s, at)


def _logprobs(s: M, at: Event) -> None:
    value = at.parsed.get("logprobs", None)
    if type(value) is not list:
        what = "no logprobs key" if "logprobs" not in at.parsed else f"logprobs {kind(value)}"
        said = f"{_type(at)} has {what}"
        s.flag("responses.logprobs-key", _type(at), at,
               f"{said} (the SDK's type wants an array, [] when not asked)")  # fmt: skip


@check("responses.annotations")
class Annotations:
    """annotation_index counts 0, 1 ... per part; each annotation is in content_part.done."""

    def annotation(s: M, at: Event, subject: tuple[Item, Part | None, dict[str, Any]]) -> None:
        item, part, obj = subject
        if part is None:
            return  # told by part-ref's sibling: the event names no output_text part
        index = obj.get("annotation_index")
        if index != len(part.annotations):
            s.flag("responses.annotations", ("index", item.position), at,
                   f"output_text.annotation.added of {item.describe()} has annotation_index "
                   f"{short(index)}, expected {len(part.annotations)}")  # fmt: skip

    def part_done(s: M, at: Event, subject: tuple[Item, Part | None, Any]) -> bool:
        item, part, closed = subject
        if part is None or not part.annotations:
            return False
        listed = closed.get("annotations") if type(closed) is dict else None
        missing = [a for a in part.annotations if type(listed) is not list or a not in listed]
        if missing:
            s.flag("responses.annotations", ("done", item.position), at,
                   f"content_part.done of {item.describe()} lacks {len(missing)} streamed "
                   f"annotation(s), e.g. {short(missing[0])}")  # fmt: skip
        return True


@check("responses.part-closed", on="item_done", when=_had_items)
def part_closed(s: M, at: Event, subject: tuple[Item, Any]) -> None:
    item = subject[0]
    for label, parts in (("content part", item.parts), ("summary part", item.summary)):
        for index, part in sorted(parts.items()):
            missing = [
                what
                for what, seen in (("its .done", part.done_text is not None),
                                   ("its part done event", part.closed is not None))
                if not seen
            ]  # fmt: skip
            if missing:
                s.flag("responses.part-closed", (item.position, label, index), at,
                       f"{item.describe()} is done, but its {label} {index} had no "
                       + " and no ".join(m.removeprefix("its ") for m in missing))  # fmt: skip


# -- joins -------------------------------------------------------------------------------


def _join(
    s: M, rule: str, family: str, at: Event | None, where: str, joined: str, value: Any
) -> None:
    """The joined deltas against a later copy of the text (only ``rule``'s families)."""
    if _JOIN_RULE[family] != rule or s.message_cut or value == joined:
        return
    if type(value) is not str:
        said = f"{kind(value)} ({short(value)})"
    else:
        said = f"{len(value)} characters: {short(value, 40)}"
    s.flag(rule, (where, family), at,
           f"{where} holds {said}, but the deltas joined to {len(joined)} characters: "
           f"{short(joined, 40)}")  # fmt: skip


def _item_texts(s: M, rule: str, at: Event, item: Item, copy: Any, where: str) -> None:
    """Every joined text of a streamed item against the same item's copy (done or final)."""
    if type(copy) is not dict:
        return
    if item.kind == "message":
        content = copy.get("content")
        for index, part in sorted(item.parts.items()):
            if part.kind not in ("output_text", "refusal"):
                continue
            got = content[index] if type(content) is list and index < len(content) else None
            field = "refusal" if part.kind == "refusal" else "text"
            value = got.get(field) if type(got) is dict else None
            _join(s, rule, part.kind, at, f"{where} content[{index}]", part.text, value)
    elif item.kind == "reasoning":
        for key, family, parts in (("summary", "summary", item.summary),
                                   ("content", "reasoning_text", item.parts)):  # fmt: skip
            listed = copy.get(key)
            for index, part in sorted(parts.items()):
                got = listed[index] if type(listed) is list and index < len(listed) else None
                value = got.get("text") if type(got) is dict else None
                _join(s, rule, family, at, f"{where} {key}[{index}]", part.text, value)
    for family, (kinds, field) in STREAMS.items():
        joined = item.joined(family)
        if item.kind in kinds and joined is not None and (joined or field in copy):
            _join(s, rule, family, at, f"{where} {field}", joined, copy.get(field))


def _final_item(s: M, item: Item) -> Any:
    output = s.final.get("output") if s.final is not None else None
    if type(output) is not list or type(item.index) is not int or item.index >= len(output):
        return None
    return output[item.index]


def _join_check(rule: str, families: tuple[str, ...], **more: Any) -> None:
    """Register the check of ``rule``: the joined deltas of ``families`` against their
    ``.done`` event, their part's done event, the done item and the final item (and the
    hooks in ``more``); checked when a stream of those families came."""

    def text_done(s: M, at: Event, done: TextDone) -> None:
        part = done.part
        joined = part.text if part is not None else done.item.joined(done.family) or ""
        where = f"{_type(at)} of {done.item.describe()}"
        _join(s, rule, done.family, at, where, joined, done.value)

    def part_done(s: M, at: Event, subject: tuple[Item, Part | None, Any]) -> None:
        item, part, closed = subject
        if part is None or part.kind is None or type(closed) is not dict:
            return
        family = "summary" if part.kind == "summary_text" else part.kind
        if family in _JOIN_RULE:
            field = "refusal" if family == "refusal" else "text"
            where = f"{_type(at)} of {item.describe()}"
            _join(s, rule, family, at, where, part.text, closed.get(field))

    def item_done(s: M, at: Event, subject: tuple[Item, Any]) -> None:
        item, done = subject
        _item_texts(s, rule, at, item, done, f"output_item.done of {item.describe()}")

    def terminal(s: M, at: Event, response: dict[str, Any]) -> None:
        if s.terminal == "response.failed":
            return  # a failed response's output need not hold what streamed
        for item in s.item_list:
            _item_texts(s, rule, at, item, _final_item(s, item), f"the final {item.describe()}")

    def misfit(s: M, at: Event, subject: tuple[Item, str]) -> None:
        item, family = subject
        if _JOIN_RULE[family] != rule or _type(at) in _SDK_ASSERTS:
            return
        where, wanted = _misfit_where(at, item, family)
        s.flag(rule, ("misfit", item.position, family), at,
               f"{_type(at)} names {where}, which is not {wanted}: its text joins nothing "
               "(the SDK passes it through)", level_as="SHOULD")  # fmt: skip

    hooks = {"text_done": text_done, "part_done": part_done, "item_done": item_done,
             "terminal": terminal, "misfit": misfit, **more}  # fmt: skip
    name = "".join(w.title() for w in rule.split(".")[1].split("-"))
    check(rule, when=lambda s: _streamed(s, families))(type(name, (), hooks))


def _summary_index(s: M, at: Event, subject: tuple[Item, Part]) -> None:
    item, part = subject
    if _type(at) == "response.reasoning_summary_part.added" and part.index != len(item.summary):
        s.flag(
            "responses.reasoning-summary",
            ("index", item.position),
            at,
            f"reasoning_summary_part.added of {item.describe()} has summary_index "
            f"{short(part.index)}, expected {len(item.summary)}",
        )


@check("responses.args-json", on="end", when=_has(_ARGS_JSON_KINDS))
def args_json(s: M, at: None, _: None) -> None:
    """Arguments parse as a JSON object (an empty string counts as {}); a response cut by
    max_output_tokens may end inside them."""
    if s.terminal == "response.incomplete" or s.message_cut:
        return
    for item in s.item_list:
        if item.kind not in _ARGS_JSON_KINDS:
            continue
        done = item.done.get("arguments") if item.done is not None else None
        text = done if type(done) is str else item.joined("arguments") or ""
        if not text:
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            problem = f"are not JSON ({exc})"
        else:
            if type(value) is dict:
                continue
            problem = f"are {kind(value)}, not a JSON object"
        s.flag("responses.args-json", item.position, None,
               f"the arguments of {item.describe()} {problem}", data=text)  # fmt: skip


@check("responses.args-done-name", on="text_done", when=_has(("function_call",)))
def args_done_name(s: M, at: Event, done: TextDone) -> None:
    if _type(at) == "response.function_call_arguments.done" and "name" not in at.parsed:
        s.flag(
            "responses.args-done-name",
            None,
            at,
            "function_call_arguments.done carries no name (the SDK's type lists it; clients "
            "take the name from output_item.added)",
        )


@check("responses.reasoning-hidden", on="end", when=_has(("reasoning",)))
def reasoning_hidden(s: M, at: None, _: None) -> None:
    usage = s.usage or {}
    details = usage.get("output_tokens_details")
    tokens = details.get("reasoning_tokens") if type(details) is dict else None
    for item in s.item_list:
        if item.kind == "reasoning" and not (item.summary or item.parts or s.reasoning_deltas):
            said = f" ({tokens} reasoning tokens)" if type(tokens) is int else ""
            s.flag(
                "responses.reasoning-hidden",
                None,
                None,
                f"{item.describe()} streamed no text: hidden reasoning{said}; the wait before "
                "the first token includes it",
            )


def _streamed(s: M, families: tuple[str, ...]) -> bool:
    for item in s.item_list:
        if any(item.joined(f) is not None for f in families):
            return True
        parts = [*item.parts.values(), *item.summary.values()]
        if any(("summary" if p.kind == "summary_text" else p.kind) in families for p in parts):
            return True
    return False


_join_check("responses.text-join", ("output_text", "refusal"))
_join_check("responses.reasoning-text", ("reasoning_text",))
_join_check("responses.reasoning-summary", ("summary",), part_added=_summary_index)
_join_check("responses.args-join", ("arguments", "input", "code"))
