"""The OpenAI Responses stream model: one ``POST /responses`` stream, parsed once.

Grammar (shared/spec/openai-responses-streaming.md)::

    response.created  response.queued?  response.in_progress?  item*  terminal
    item = output_item.added(i)  (part | tool-progress(i) | args-delta(i)* args-done(i)
           | summary-part(i) | annotation(i))*  output_item.done(i)
    part = content_part.added(i,c)  (output_text | refusal | reasoning_text).delta*
           .done  content_part.done(i,c)
    terminal = response.completed | response.incomplete | response.failed
             | error response.failed?

Per event it parses the ``data:`` payload once (``event_json``), dispatches on its JSON
``type`` (the ``event:`` name is only compared: the SDK reads the type), tracks items by
``output_index`` (items overlap in real streams, so no stack), joins the deltas of each part,
summary part and argument stream as a client does, keeps the terminal response and stamps
content events (``content_t``: non-empty output text, refusal, function-call and custom-tool
argument deltas, which a user sees (``visible_t``), and reasoning summary and reasoning text
deltas; ``end_t``: the terminal event, or the error event). The rules are checks
(``responses_framing.py``, ``responses_items.py``, ``responses_final.py``) listening to these
transitions (``at``: the event, None at ``end``):

============= ============================================================ =================
transition    when                                                         subject
============= ============================================================ =================
event_name    the ``event:`` name is not the JSON type (or absent)         the type
seq           ``sequence_number`` is not the next one (absent, repeated,   the value
              out of order, a gap), before ``last_seq`` moves to it
done          ``data: [DONE]``                                             None
bad_data      the data is not a JSON object with a string type             the error/value
unknown_event a JSON object of a type this model does not know             the type
early         the first event is not response.created (once)              the type
after_end     an event after the terminal event, or after an error event  the type
              other than response.failed (``phase`` tells which)
lifecycle     created, queued, in_progress or a terminal event             the response
created       response.created, after ``lifecycle``                       the response
terminal      a terminal event, after ``lifecycle``; ``final`` is set      the response
error         an error event (``clean_error`` says if well-formed)          the event object
item_added    output_item.added, before the item is stored                  the new Item
item_ref      an event names no added item, or another ``item_id``         (index, Item|None)
after_done    an event names an item after its output_item.done           the Item
item_done     output_item.done of an added item, before ``done`` is set     (Item, the item)
part_added    content_part.added / reasoning_summary_part.added, before    (Item, Part)
              the part is stored
part_done     content_part.done / reasoning_summary_part.done               (Item, Part|None,
                                                                            the part)
misfit        a delta or .done names no part of the right kind              (Item, family)
part_delta    the first delta of a part, before it is joined               (Item, Part)
bad_delta     a delta whose ``delta`` is not a string                      the value
text_done     a .done event of text, summary, arguments, input or code      TextDone
annotation    output_text.annotation.added                                  (Item, Part|None,
                                                                            the event object)
progress      a built-in tool's progress event                             (Item, the type)
end           the stream ended (``StreamModel``)                           None
============= ============================================================ =================

Hot path: an ``output_text.delta`` of a known open part (no transition; bare: ``bare.py``).

Decisions worth knowing:

* A valid ``error`` event may come first (a server that fails right after the 200): no
  ``early``. After an error only ``response.failed`` may follow.
* A delta is joined only where the SDK would take it (its item and part exist and fit); the
  others are ``misfit`` and join nothing.
* ``sequence_number``: one finding per irregularity, then the count restarts from the value
  seen (a gap is one finding, not one per later event).
* A replay (a background stream fetched again after sequence number N, ``replaying_after``)
  owes no response.created and counts from N + 1; where it starts is ``responses.resume``'s
  to judge (``responses_resume.py``), not ``created-first``'s or ``seq-dense``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import orjson

from ..sse import Event
from .base import event_json
from .model import StreamModel
from .responses_output import streamed_item

__all__ = [
    "BEFORE",
    "BODY",
    "CONTENT_DELTAS",
    "DELTAS",
    "DONES",
    "ENDED",
    "ERRORED",
    "PART_KINDS",
    "STREAMS",
    "TERMINAL",
    "Item",
    "Part",
    "ResponsesModel",
    "TextDone",
]

_API: Final = "responses"
BEFORE: Final = 0  # no event yet
BODY: Final = 1  # after response.created (or the first event)
ERRORED: Final = 2  # after an error event: only response.failed may follow
ENDED: Final = 3  # after the terminal event: nothing may follow

TERMINAL: Final = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
}
_LIFECYCLE: Final = frozenset({"response.created", "response.queued", "response.in_progress"})
# delta event -> the family of what it joins
DELTAS: Final = {
    "response.output_text.delta": "output_text",
    "response.refusal.delta": "refusal",
    "response.reasoning_text.delta": "reasoning_text",
    "response.reasoning_summary_text.delta": "summary",
    "response.function_call_arguments.delta": "arguments",
    "response.mcp_call_arguments.delta": "arguments",
    "response.custom_tool_call_input.delta": "input",
    "response.code_interpreter_call_code.delta": "code",
}
# .done event -> (family, the field holding the whole)
DONES: Final = {
    "response.output_text.done": ("output_text", "text"),
    "response.refusal.done": ("refusal", "refusal"),
    "response.reasoning_text.done": ("reasoning_text", "text"),
    "response.reasoning_summary_text.done": ("summary", "text"),
    "response.function_call_arguments.done": ("arguments", "arguments"),
    "response.mcp_call_arguments.done": ("arguments", "arguments"),
    "response.custom_tool_call_input.done": ("input", "input"),
    "response.code_interpreter_call_code.done": ("code", "code"),
}
# content events (load metrics): True where a user sees it, False for reasoning
CONTENT_DELTAS: Final = {
    "response.output_text.delta": True,
    "response.refusal.delta": True,
    "response.function_call_arguments.delta": True,
    "response.custom_tool_call_input.delta": True,
    "response.reasoning_summary_text.delta": False,
    "response.reasoning_text.delta": False,
}
# part family -> (the item type it belongs to, the part type, the part's text field)
PART_KINDS: Final = {
    "output_text": ("message", "output_text", "text"),
    "refusal": ("message", "refusal", "refusal"),
    "reasoning_text": ("reasoning", "reasoning_text", "text"),
    "summary": ("reasoning", "summary_text", "text"),
}
# argument-like stream family -> (the item types it belongs to, its field in the item)
STREAMS: Final = {
    "arguments": (frozenset({"function_call", "mcp_call"}), "arguments"),
    "input": (frozenset({"custom_tool_call"}), "input"),
    "code": (frozenset({"code_interpreter_call"}), "code"),
}
_PROGRESS: Final = (
    "response.web_search_call.", "response.file_search_call.",
    "response.code_interpreter_call.", "response.mcp_call.", "response.mcp_list_tools.",
    "response.image_generation_call.",
)  # fmt: skip
_KNOWN_OTHER: Final = frozenset(
    {"response.output_item.added", "response.output_item.done", "response.content_part.added",
     "response.content_part.done", "response.reasoning_summary_part.added",
     "response.reasoning_summary_part.done", "response.output_text.annotation.added", "error",
     *TERMINAL, *_LIFECYCLE, *DELTAS, *DONES}
)  # fmt: skip
_JSONError = orjson.JSONDecodeError


class Part:
    """A content part (or a reasoning summary part): how it started, what the deltas joined,
    what its ``.done`` and its part-done said."""

    __slots__ = ("annotations", "closed", "deltas", "done_text", "index", "kind", "pieces", "start")

    def __init__(self, index: Any, start: Any) -> None:
        self.index = index
        self.start: dict[str, Any] = start if type(start) is dict else {}
        kind = self.start.get("type")
        self.kind: str | None = kind if type(kind) is str else None
        self.pieces: list[str] = []
        self.deltas = 0
        self.done_text: Any = None  # the .done event's whole text (None: no .done yet)
        self.closed: dict[str, Any] | None = None  # the part of content_part.done
        self.annotations: list[Any] = []

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class Item:
    """An output item: as added, as done, its parts by index and its joined streams."""

    __slots__ = ("added", "done", "id", "index", "kind", "parts", "position", "progress",
                 "streams", "summary")  # fmt: skip

    def __init__(self, position: int, index: Any, added: Any) -> None:
        self.position = position  # 0, 1, 2 ... in order of output_item.added
        self.index = index  # as the event said
        self.added: dict[str, Any] = added if type(added) is dict else {}
        kind = self.added.get("type")
        self.kind: str | None = kind if type(kind) is str else None
        item_id = self.added.get("id")
        self.id: str | None = item_id if type(item_id) is str else None
        self.done: dict[str, Any] | None = None
        self.parts: dict[int, Part] = {}
        self.summary: dict[int, Part] = {}
        self.streams: dict[str, list[str]] = {}
        self.progress: str | None = None  # the last tool progress status

    def describe(self) -> str:
        return f"item {self.index} ({self.kind})"

    def joined(self, family: str) -> str | None:
        """The joined argument-like stream (None: no delta came)."""
        pieces = self.streams.get(family)
        return None if pieces is None else "".join(pieces)


class TextDone(NamedTuple):
    """A ``.done`` event: its item, the part it names (None for item-level streams or when
    no such part exists), its family and the whole value it carries."""

    item: Item
    part: Part | None
    family: str
    value: Any


class ResponsesModel(StreamModel):
    """Model of one OpenAI Responses stream; rebuilds the response (``message()``)."""

    __slots__ = (
        "_handlers", "after", "clean_error", "created", "early", "final", "in_progress",
        "item_list", "items", "last_seq", "next_seq", "phase", "reasoning_deltas", "response",
        "status", "terminal",
    )  # fmt: skip
    api = _API
    TRANSITIONS = frozenset(
        {
            "event_name", "seq", "done", "bad_data", "unknown_event", "early", "after_end",
            "lifecycle", "created", "terminal", "error", "item_added", "item_ref",
            "after_done", "item_done", "part_added", "part_done", "misfit", "bad_delta",
            "text_done", "annotation", "progress", "part_delta",
        }
    )  # fmt: skip

    def __init__(
        self,
        request: Mapping[str, Any] | None = None,
        *,
        expect: frozenset[str] = frozenset(),
        rules: bool = True,
        content_t: list[int] | None = None,
    ) -> None:
        super().__init__(request, expect=expect, rules=rules, content_t=content_t)
        self.phase = BEFORE
        self.created = False  # a response.created came
        self.early = False  # the first event was not response.created
        self.in_progress = False  # a response.in_progress came
        self.clean_error = False  # a well-formed error event came
        self.response: dict[str, Any] = {}  # of response.created
        self.status: str | None = None  # the last lifecycle status
        self.terminal: str | None = None  # the terminal event's type
        self.final: dict[str, Any] | None = None  # the terminal event's response
        self.items: dict[int, Item] = {}  # by output_index
        self.item_list: list[Item] = []  # in arrival order
        self.reasoning_deltas = 0  # non-empty reasoning summary / text deltas
        self.last_seq: int | None = None
        self.next_seq = 0
        self.after: int | None = None  # a replay of the events after this sequence number
        self._handlers = {
            "response.output_item.added": self._item_added,
            "response.output_item.done": self._item_done,
            "response.content_part.added": self._part_added,
            "response.content_part.done": self._part_done,
            "response.reasoning_summary_part.added": self._part_added,
            "response.reasoning_summary_part.done": self._part_done,
            "response.output_text.annotation.added": self._annotation,
            "error": self._error,
            **dict.fromkeys((*_LIFECYCLE, *TERMINAL), self._lifecycle),
            **dict.fromkeys(DELTAS, self._delta),
            **dict.fromkeys(DONES, self._text_done),
        }

    def replaying_after(self, seq: int) -> None:
        """The stream is a replay of the events after sequence number ``seq`` (a resumed
        background stream): it owes no response.created and counts on from ``seq`` + 1."""
        self.after = seq
        self.next_seq = seq + 1

    @property
    def ended_by_error(self) -> bool:
        return self.clean_error

    @property
    def usage_tokens(self) -> int | None:
        usage = self.final.get("usage") if self.final is not None else None
        out = usage.get("output_tokens") if type(usage) is dict else None
        return out if type(out) is int else None

    @property
    def output_tokens(self) -> tuple[int, str]:
        """N, less the reasoning tokens of reasoning that streamed no text (hidden
        reasoning: its tokens took the time before the first token, not the gaps between
        the streamed ones, so TPOT counts only what streamed); the source says so."""
        tokens, source = super().output_tokens
        usage = self.usage
        details = usage.get("output_tokens_details") if usage is not None else None
        hidden = details.get("reasoning_tokens") if type(details) is dict else None
        if (
            source == "usage"
            and type(hidden) is int
            and 0 < hidden < tokens
            and not self.reasoning_deltas
            and any(item.kind == "reasoning" for item in self.item_list)
        ):
            return tokens - hidden, "usage less hidden reasoning"
        return tokens, source

    @property
    def usage(self) -> dict[str, Any] | None:
        """The terminal response's usage object, when it has one."""
        usage = self.final.get("usage") if self.final is not None else None
        return usage if type(usage) is dict else None

    # -- dispatch ----------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        try:
            obj = event_json(event)
            kind = obj["type"]
            if type(kind) is not str:
                raise TypeError(kind)
        except Exception as exc:  # not JSON, not an object, no string type, [DONE]
            self._irregular(event, exc)
            return
        if event.name != kind:
            self.emit("event_name", event, kind)
        seq = obj.get("sequence_number")
        if seq.__class__ is int and seq == self.next_seq:
            self.last_seq = seq
            self.next_seq = seq + 1
        else:
            self.emit("seq", event, seq)
            if type(seq) is int:
                self.last_seq = seq
                self.next_seq = seq + 1
        phase = self.phase
        if phase == ENDED or (phase == ERRORED and kind != "response.failed"):
            self.emit("after_end", event, kind)
            return
        if phase == BEFORE:
            self.phase = BODY
            if kind != "response.created" and kind != "error" and self.after is None:
                self.early = True
                self.emit("early", event, kind)
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(kind, obj, event)
        elif kind.startswith(_PROGRESS) and "output_index" in obj:
            item = self._item(obj, event)
            if item is not None:
                self.emit("progress", event, (item, kind))
                item.progress = kind.rsplit(".", 1)[1]
        else:
            self.emit("unknown_event", event, kind)

    def _irregular(self, event: Event, exc: Exception) -> None:
        if event.data.strip() == "[DONE]":
            self.emit("done", event)
            return
        value: Any = exc if isinstance(exc, _JSONError) else event.parsed
        if self.phase == ENDED:
            self.emit("after_end", event, "non-JSON")
            return
        if type(value) is dict and type(value.get("error")) is dict and "type" not in value:
            # chat completions' error payload: the SDK raises it as APIError all the same
            self._error("error", value, event)
            return
        self.emit("bad_data", event, value)

    def _item(self, obj: dict[str, Any], event: Event) -> Item | None:
        """The item an event names by ``output_index`` (and ``item_id``), or None."""
        index = obj.get("output_index")
        item = self.items.get(index) if type(index) is int else None
        if item is None or ("item_id" in obj and obj["item_id"] != item.id):
            self.emit("item_ref", event, (index, item))
            if item is None:
                return None
        if item.done is not None:
            self.emit("after_done", event, item)
        return item

    # -- lifecycle ---------------------------------------------------------------------

    def _lifecycle(self, kind: str, obj: dict[str, Any], event: Event) -> None:
        response = obj.get("response")
        if type(response) is not dict:
            response = {}
        self.emit("lifecycle", event, response)
        status = response.get("status")
        self.status = status if type(status) is str else None
        if kind == "response.created":
            if not self.created:
                self.created = True
                self.response = response
            self.emit("created", event, response)
        elif kind == "response.in_progress":
            self.in_progress = True
        elif kind in TERMINAL:
            self.terminal = kind
            self.final = response
            self.end_t = event.t
            self.phase = ENDED
            self.emit("terminal", event, response)

    def _error(self, kind: str, obj: dict[str, Any], event: Event) -> None:
        error = obj.get("error")
        message = error.get("message") if type(error) is dict else obj.get("message")
        self.clean_error = type(message) is str
        self.error_text = str(message if message is not None else error or obj)[:200]
        self.end_t = event.t
        self.phase = ERRORED
        self.emit("error", event, obj)

    # -- items and parts ---------------------------------------------------------------

    def _item_added(self, kind: str, obj: dict[str, Any], event: Event) -> None:
        index = obj.get("output_index")
        item = Item(len(self.item_list), index, obj.get("item"))
        self.emit("item_added", event, item)
        self.item_list.append(item)
        if type(index) is int and index not in self.items:
            self.items[index] = item
        for family, (kinds, field) in STREAMS.items():
            if item.kind in kinds:  # the SDK starts from the added item's value
                start = item.added.get(field)
                item.streams[family] = [start] if type(start) is str and start else []

    def _item_done(self, kind: str, obj: dict[str, Any], event: Event) -> None:
        item = self._item(obj, event)
        if item is None or item.done is not None:
            return
        done = obj.get("item")
        self.emit("item_done", event, (item, done))
        item.done = done if type(done) is dict else {}

    def _part_added(self, kind: str, obj: dict[str, Any], event: Event) -> None:
        item = self._item(obj, event)
        if item is None:
            return
        index, parts = _indexed(item, obj, kind == "response.reasoning_summary_part.added")
        part = Part(index, obj.get("part"))
        self.emit("part_added", event, (item, part))
        if type(index) is int and index not in parts:
            parts[index] = part

    def _part_done(self, kind: str, obj: dict[str, Any], event: Event) -> None:
        item = self._item(obj, event)
        if item is None:
            return
        index, parts = _indexed(item, obj, kind == "response.reasoning_summary_part.done")
        part = parts.get(index) if type(index) is int else None
        closed = obj.get("part")
        self.emit("part_done", event, (item, part, closed))
        if part is not None:
            part.closed = closed if type(closed) is dict else {}

    def _part_of(self, item: Item, family: str, obj: dict[str, Any]) -> Part | None:
        """The part a text or summary event names, when it fits (item and part type)."""
        owner, part_type, _ = PART_KINDS[family]
        if item.kind != owner:
            return None
        if family == "summary":  # (_indexed inline: once a delta)
            index = obj.get("summary_index")
            part = item.summary.get(index) if type(index) is int else None
        else:
            index = obj.get("content_index")
            part = item.parts.get(index) if type(index) is int else None
        if part is None or part.kind != part_type:
            return None
        return part

    # -- deltas and their wholes -------------------------------------------------------

    def _delta(self, kind: str, obj: dict[str, Any], event: Event) -> None:
        piece = obj.get("delta")
        if type(piece) is str:
            if piece:
                visible = CONTENT_DELTAS.get(kind)
                if visible is not None:
                    self.content_t.append(event.t)
                    if self.first_index < 0:
                        self.first_index = self.events - 1
                    if visible:
                        if self.visible_t is None:
                            self.visible_t = event.t
                    else:
                        self.reasoning_deltas += 1
        else:
            self.emit("bad_delta", event, piece)
        item = self._item(obj, event)
        if item is None or type(piece) is not str:
            return
        family = DELTAS[kind]
        if family in PART_KINDS:
            part = self._part_of(item, family, obj)
            if part is None:
                self.emit("misfit", event, (item, family))
                return
            if not part.deltas:
                self.emit("part_delta", event, (item, part))
            part.deltas += 1
            self._keep(part.pieces, piece)
        elif item.kind in STREAMS[family][0]:
            self._keep(item.streams.setdefault(family, []), piece)
        else:
            self.emit("misfit", event, (item, family))

    def _keep(self, pieces: list[str], piece: str) -> None:
        if self.room > 0:
            pieces.append(piece)
            self.room -= len(piece)
        else:
            self.message_cut = True

    def _text_done(self, kind: str, obj: dict[str, Any], event: Event) -> None:
        item = self._item(obj, event)
        if item is None:
            return
        family, field = DONES[kind]
        part = None
        if family in PART_KINDS:
            part = self._part_of(item, family, obj)
            if part is None:
                self.emit("misfit", event, (item, family))
                return
            part.done_text = obj.get(field)
        elif item.kind not in STREAMS[family][0]:
            self.emit("misfit", event, (item, family))
            return
        self.emit("text_done", event, TextDone(item, part, family, obj.get(field)))

    def _annotation(self, kind: str, obj: dict[str, Any], event: Event) -> None:
        item = self._item(obj, event)
        if item is None:
            return
        part = self._part_of(item, "output_text", obj)
        self.emit("annotation", event, (item, part, obj))
        if part is not None:
            part.annotations.append(obj.get("annotation"))

    # -- the end -----------------------------------------------------------------------

    def _end(self, truncated: bool) -> None:
        self.complete = not truncated and self.terminal in ("response.completed",
                                                            "response.incomplete")  # fmt: skip

    # -- the accumulated response ------------------------------------------------------

    def message(self) -> dict[str, Any]:
        """The response a client rebuilds from the stream, normalised (compared with the
        SDK's final response, ``responses_output.py``): the items in
        ``output_index`` order with what their deltas joined, the terminal status and
        usage."""
        final = self.final or {}
        items = sorted(
            self.item_list, key=lambda i: (0, i.index) if type(i.index) is int else (1, 0)
        )
        usage = self.usage
        return {
            "id": _str_or_none(self.response.get("id")),
            "status": _str_or_none(final.get("status")),
            "output": [streamed_item(item) for item in items],
            "usage": None
            if usage is None
            else {k: usage.get(k) for k in ("input_tokens", "output_tokens", "total_tokens")},
        }


def _indexed(item: Item, obj: dict[str, Any], summary: bool) -> tuple[Any, dict[int, Part]]:
    """The part index an event names and the parts it indexes: the item's reasoning summary
    parts (``summary_index``) or its content parts (``content_index``)."""
    if summary:
        return obj.get("summary_index"), item.summary
    return obj.get("content_index"), item.parts


def _str_or_none(value: Any) -> str | None:
    return value if type(value) is str else None
