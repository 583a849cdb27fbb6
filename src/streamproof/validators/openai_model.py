"""The OpenAI chat-completions stream model: one ``POST /chat/completions`` stream, parsed once.

Per event it parses the ``data:`` payload (orjson), trusts the chunk when it matches
``schemas/openai/chunk.json`` (jsonschema-rs ``is_valid``) and advances one small state per
choice index — NEW → OPEN (first delta) → FINISHED (finish_reason) — with the tool calls of a
choice grouped by their ``index``. It rebuilds the message a client rebuilds (``message()``)
and stamps content events (``content_t``). The rules are checks (``openai_framing.py``,
``openai_choices.py``, ``openai_tools.py``, ``openai_usage.py``) listening to these
transitions (``at``: the event; the subject as listed):

===================== ============================================ =========================
transition            when                                         subject
===================== ============================================ =========================
named                 an event carries an ``event:`` name          the name
after_done            an event follows ``[DONE]``                  None
bad_payload           the data is not JSON, or not an object       the error or the value
error                 a payload's ``error`` key is not null        the error value
after_error           a payload follows the error that ended it    the payload
chunk_invalid         a chunk fails chunk.json (envelope part)     the envelope
wrong_object          ``object`` is not chat.completion.chunk      the chunk
identity              id/created/model differs from the first      (field, old, new)
choice_invalid        a choice fails choice.json                   (position, choice)
float_index           a choice index is written as a float         the index
finish_key_missing    a choice entry has no finish_reason key      the choice index
choice_opened         the first delta of a choice index            (choice, role)
role_again            a later delta carries a role                 (choice, role)
delta_type            content/refusal/tool_calls has a wrong type  (choice, key, value)
content               a non-empty content fragment (announced      (choice, text)
                      only when a check listens: the hot path)
late_fragment         content after the choice's finish_reason     (choice, what)
finish                a choice's first finish_reason               (choice, value)
finish_again          a further finish_reason                      (choice, value)
tool_bad_entry        a tool_calls entry is no object / no index   (choice, entry)
tool_bad_function     a tool call's function is no object          (choice, index, value)
tool_head             the first fragment of a tool call            (choice, call, entry, fn)
tool_more             a later fragment (before it is merged)       (choice, call, entry, fn)
tool_bad_args         function.arguments is not a string           (choice, call, value)
empty_choices         ``choices: []`` without usage                the chunk
usage_chunk           ``choices: []`` with a usage object          the chunk
usage_with_choices    a chunk with choices carries usage           the chunk
choices_after_usage   a chunk with choices after the usage chunk   None
end                   the stream ended                             None
===================== ============================================ =========================

Decisions worth knowing (the spec leaves them open):

* **Mid-stream error.** A truthy top-level ``error`` ends the stream for the client (the SDK
  raises ``APIError`` and stops reading); after it nothing a client sees is owed, so the
  stream is not ``complete``. A falsy error (``{}``, ``""``) is announced and the payload
  then parsed as a chunk, as the SDK does.
* **Chunks whose ``object`` is wrong** (Azure's prompt-filter chunk, Perplexity's
  ``chat.completion.done``) are not used as the identity reference (their fields belong to
  another object); their choices still go through the lifecycle, as a client iterating the
  raw stream sees them.
* **Trailing ``choices: []`` chunks without usage after the usage chunk** (gpt-5's
  ``moderation`` chunk) are tolerated silently.
* ``message()`` merges the deltas, except that the head fields (role, tool-call
  id/type/name) are taken once (the first non-empty value) instead of concatenated as the
  SDK does; ``finish_reason`` is the first non-null one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from ..schemas import schema
from ..sse import Event
from .base import event_json
from .model import StreamModel

__all__ = ["CHUNK_OBJECT", "Call", "Choice", "OpenAIChatModel"]

CHUNK_OBJECT: Final = "chat.completion.chunk"

_JSONError = orjson.JSONDecodeError
_DONE: Final = "[DONE]"
_MISSING: Final = object()
_REASONING: Final = 1  # what a choice entry carried: reasoning only
_VISIBLE: Final = 2  # ... or content a user sees (text, a refusal, tool calls)


def _forced_tool(choice: Any) -> str | None:
    """What ``tool_choice`` forces: None (nothing), "" (some tool: ``"required"``) or the
    name of the function it names."""
    if choice == "required":
        return ""
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else None
        return name if isinstance(name, str) else ""
    return None


class Call:
    """One tool call of a choice, grouped by its ``index``."""

    __slots__ = ("args", "args_bad", "event", "fragments", "id", "index", "name", "type")

    def __init__(self, index: int, event: int) -> None:
        self.index = index
        self.event = event  # event of the head fragment
        self.id: str | None = None
        self.type: str | None = None
        self.name: str | None = None
        self.args: list[str] = []
        self.args_bad = False  # a non-string fragment was seen
        self.fragments = 1


class Choice:
    """The state of one choice index."""

    __slots__ = (
        "calls",
        "content",
        "finish",
        "finish_event",
        "first_event",
        "index",
        "refusal",
        "role",
    )

    def __init__(self, index: int, event: int) -> None:
        self.index = index
        self.first_event = event
        self.role: str | None = None
        self.content: list[str] | None = None  # None: never sent
        self.refusal: list[str] | None = None
        self.calls: dict[int, Call] = {}
        self.finish: str | None = None
        self.finish_event = -1


class OpenAIChatModel(StreamModel):
    """Model of one ``POST /chat/completions`` stream (``stream: true``); the request's
    options the checks judge by are read once here."""

    __slots__ = (
        "_chunk_valid", "_hear_content", "choice_schema", "choices", "chunk_schema", "chunks",
        "clean_error", "deltas", "done", "error", "error_seen", "finishes", "forced_tool",
        "include_usage", "max_tokens", "n", "payloads", "ref_created", "ref_event", "ref_id",
        "ref_model", "same", "tool_ids", "tool_repeat", "tools", "usage", "usage_event",
        "usage_from", "usage_on_choice",
    )  # fmt: skip
    api = "openai"
    TRANSITIONS = frozenset(
        {
            "named", "after_done", "bad_payload", "error", "after_error", "chunk_invalid",
            "wrong_object", "identity", "choice_invalid", "float_index", "finish_key_missing",
            "choice_opened", "role_again", "delta_type", "content", "late_fragment", "finish",
            "finish_again", "tool_bad_entry", "tool_bad_function", "tool_head", "tool_more",
            "tool_bad_args", "empty_choices", "usage_chunk", "usage_with_choices",
            "choices_after_usage",
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
        req = self.request
        options = req.get("stream_options")
        self.include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
        n = req.get("n")
        self.n: int | None = n if type(n) is int and n >= 1 else None
        limit = req.get("max_completion_tokens")
        if type(limit) is not int:
            limit = req.get("max_tokens")
        self.max_tokens: int | None = limit if type(limit) is int else None
        self.forced_tool = _forced_tool(req.get("tool_choice"))
        self.chunk_schema = schema("openai", "chunk")
        self._chunk_valid = self.chunk_schema.is_valid
        self.choice_schema = schema("openai", "choice")
        self._hear_content = self.listens("content")
        self.choices: dict[int, Choice] = {}
        self.done = -1  # event index of [DONE]
        self.error = -1  # event index of the mid-stream error that ended the stream
        self.clean_error = False  # ... and it was well formed, with nothing after it
        self.error_seen = False
        self.payloads = 0  # data payloads other than [DONE]
        self.chunks = 0  # JSON-object chunks (not errors)
        self.same = 0  # chunks compared against the identity reference
        self.deltas = 0  # choice entries processed
        # the identity of the first chunk (a field of the wrong type: from a later one)
        self.ref_id: str | None = None
        self.ref_created: int | None = None
        self.ref_model: str | None = None
        self.ref_event = -1
        self.usage_event = -1  # the usage chunk (choices: [] with a usage object)
        self.usage: dict[str, Any] | None = None  # the usage the client ends up with
        self.usage_from = -1
        self.usage_on_choice = -1  # first chunk with choices that carried a usage object
        self.tools = False  # a tool-call fragment was seen
        self.tool_repeat = False  # a tool call got a second fragment
        self.tool_ids = False  # a tool call carried a string id
        self.finishes = 0  # finish_reason values seen

    @property
    def ended_by_error(self) -> bool:
        return self.clean_error

    @property
    def usage_tokens(self) -> int | None:
        tokens = self.usage.get("completion_tokens") if self.usage is not None else None
        return tokens if type(tokens) is int else None

    # -- events -----------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        if self.done >= 0:
            self.emit("after_done", event)
            return
        if event.name is not None:
            self.emit("named", event, event.name)
        data = event.data
        if data == _DONE:
            self.done = event.index
            self.end_t = event.t
            return
        self.payloads += 1
        try:
            obj = event_json(event)
        except _JSONError as exc:
            self.emit("bad_payload", event, exc)
            return
        if obj.__class__ is not dict:
            self.emit("bad_payload", event, obj)
            return
        if "error" in obj and obj["error"] is not None and self._error_event(obj, event):
            return
        if self.error >= 0:
            self.clean_error = False
            self.emit("after_error", event, obj)
            return
        self.chunks += 1
        if not self.rules:  # bare: no check hears about the envelope
            choices = obj.get("choices")
        elif not self._chunk_valid(obj):
            choices = self._invalid_chunk(obj, event)
        elif (  # hot path: the envelope of the first chunk again
            self.ref_event >= 0
            and obj["object"] == CHUNK_OBJECT
            and obj["id"] == self.ref_id
            and obj["created"] == self.ref_created
            and obj["model"] == self.ref_model
        ):
            self.same += 1
            choices = obj["choices"]
        else:
            choices = self._envelope(obj, event)
        if choices.__class__ is not list:
            return
        if not choices:
            self._empty_choices(obj, event)
            return
        if self.usage_event >= 0 or obj.get("usage") is not None:
            self._chunk_extras(obj, event)
        self.deltas += len(choices)
        states = self.choices
        got = 0
        for ch in choices:
            # hot path: a plain content delta of an open choice; anything unusual (a
            # TypeError or KeyError on a malformed choice) takes the slow path
            try:
                index = ch["index"]
                st = states.get(index) if index.__class__ is int else None
                if st is not None and st.content is not None and st.finish is None:
                    delta = ch["delta"]
                    if len(delta) == 1 and ch.get("finish_reason", _MISSING) is None:
                        text = delta["content"]
                        if text.__class__ is str:
                            if text:
                                if self.room > 0:
                                    st.content.append(text)
                                    self.room -= len(text)
                                else:
                                    self.message_cut = True
                                if self._hear_content:
                                    self.emit("content", event, (st, text))
                                got = _VISIBLE
                            continue
            except (KeyError, TypeError, AttributeError):
                st = None
            found = self._choice(ch, st, event)
            if found > got:
                got = found
        if got:
            self.content_t.append(event.t)
            if self.first_index < 0:
                self.first_index = self.events - 1
            if got == _VISIBLE and self.visible_t is None:
                self.visible_t = event.t

    def _envelope(self, obj: dict[str, Any], event: Event) -> list[Any] | None:
        """A chunk whose envelope differs from the first chunk's (or is the first): the
        identity fields, and ``object``. Returns the choices."""
        if obj.get("object") == CHUNK_OBJECT:
            if self.ref_event < 0:
                self._reference(obj, event)
            else:
                self.same += 1
                self._identity(obj, event)
        else:
            self.emit("wrong_object", event, obj)
        choices = obj.get("choices")
        return choices if choices.__class__ is list else None

    def _error_event(self, obj: dict[str, Any], event: Event) -> bool:
        """A payload with a top-level error: True when it ended the stream for the client
        (a falsy one does not: the SDK parses the payload as a chunk)."""
        self.error_seen = True
        err = obj["error"]
        if self.error >= 0:
            self.clean_error = False
            self.emit("after_error", event, obj)
            return True
        self.emit("error", event, err)
        if not err:
            return False
        text = err.get("message") if err.__class__ is dict else None
        self.clean_error = text.__class__ is str and bool(text)
        self.error = event.index
        self.error_text = str(text or err)[:200]
        return True

    def _chunk_extras(self, obj: dict[str, Any], event: Event) -> None:
        """A chunk with choices: is it after the usage chunk, does it carry usage?"""
        if self.usage_event >= 0:
            self.emit("choices_after_usage", event)
        usage = obj.get("usage")
        if usage is not None:
            if self.usage_on_choice < 0:
                self.usage_on_choice = event.index
            if usage.__class__ is dict and self.usage_event < 0:
                self.usage = usage
                self.usage_from = event.index
            self.emit("usage_with_choices", event, obj)

    # -- envelope ---------------------------------------------------------------------

    def _reference(self, obj: dict[str, Any], event: Event) -> None:
        """The first well-typed chunk with the right object sets id/created/model."""
        rid, created, model = obj.get("id"), obj.get("created"), obj.get("model")
        if rid.__class__ is str:
            self.ref_id = rid
        if type(created) is int:
            self.ref_created = created
        if model.__class__ is str:
            self.ref_model = model
        self.ref_event = event.index

    def _identity(self, obj: dict[str, Any], event: Event) -> None:
        """Compare id/created/model with the reference chunk (wrong types are skipped; a
        reference field still unset is taken from this chunk)."""
        for field, ok in (("id", str), ("created", int), ("model", str)):
            value = obj.get(field)
            if type(value) is not ok:
                continue
            old = getattr(self, f"ref_{field}")
            if old is None:
                setattr(self, f"ref_{field}", value)
            elif value != old:
                self.emit("identity", event, (field, old, value))

    def _invalid_chunk(self, obj: dict[str, Any], event: Event) -> list[Any] | None:
        """Slow path of a chunk failing chunk.json: announce the envelope and each invalid
        choice, then carry on with whatever parts are usable. Returns the choices."""
        choices = obj.get("choices")
        envelope = {**obj, "choices": []} if choices.__class__ is list else obj
        if not self._chunk_valid(envelope):
            self.emit("chunk_invalid", event, envelope)
        if choices.__class__ is list:
            valid = self.choice_schema.is_valid
            for position, ch in enumerate(choices):
                if not valid(ch):
                    self.emit("choice_invalid", event, (position, ch))
        return self._envelope(obj, event)

    def _empty_choices(self, obj: dict[str, Any], event: Event) -> None:
        usage = obj.get("usage")
        if usage is None:
            if self.usage_event < 0:  # after the usage chunk (a moderation chunk): tolerated
                self.emit("empty_choices", event, obj)
            return
        second = self.include_usage and self.usage_event >= 0
        self.emit("usage_chunk", event, obj)
        if second:
            return
        if self.usage_event < 0:
            self.usage_event = event.index
        if usage.__class__ is dict:
            self.usage = usage
            self.usage_from = event.index

    # -- choices ----------------------------------------------------------------------

    def _choice(self, ch: Any, st: Choice | None, event: Event) -> int:
        """One choice entry of a chunk; returns what content it carried: nothing (0),
        reasoning only (``_REASONING``) or visible content (``_VISIBLE``)."""
        if ch.__class__ is not dict:
            return 0  # announced as choice_invalid
        index = ch.get("index")
        delta = ch.get("delta")
        if index.__class__ is float and index.is_integer() and index >= 0:
            # valid for JSON Schema ("integer"), but the SDK indexes a list with it and fails
            self.emit("float_index", event, index)
            index = int(index)
        if delta is None:
            delta = {}  # announced as choice_invalid; its finish_reason still counts
        if type(index) is not int or index < 0 or delta.__class__ is not dict:
            return 0  # announced as choice_invalid; nothing usable
        finish = ch.get("finish_reason", _MISSING)
        if finish is _MISSING:
            self.emit("finish_key_missing", event, index)
            finish = None
        if st is None:
            st = self.choices.get(index)
        role = delta.get("role")
        if st is None:
            st = self.choices[index] = Choice(index, event.index)
            self.emit("choice_opened", event, (st, role))
            if role.__class__ is str:
                st.role = role
        elif role is not None:
            if st.role is None:
                if role.__class__ is str:
                    st.role = role  # a late role: the first delta was already announced
            else:
                self.emit("role_again", event, (st, role))
        finished = st.finish is not None
        got = 0
        if delta:
            if "content" in delta and self._text(st, "content", delta["content"], finished, event):
                got = _VISIBLE
            if "refusal" in delta and self._text(st, "refusal", delta["refusal"], finished, event):
                got = _VISIBLE
            if not got:
                for key in ("reasoning_content", "reasoning"):
                    text = delta.get(key)
                    if text.__class__ is str and text:
                        got = _REASONING
            calls = delta.get("tool_calls")
            if calls is not None:
                if calls.__class__ is not list:
                    self.emit("delta_type", event, (st, "tool_calls", calls))
                elif calls:
                    got = _VISIBLE
                    if finished:
                        self.emit("late_fragment", event, (st, "a tool-call fragment"))
                    self._tool_calls(st, calls, event)
        if finish is not None and finish.__class__ is str:
            self.finishes += 1
            if st.finish is not None:
                self.emit("finish_again", event, (st, finish))
            else:
                st.finish = finish
                st.finish_event = event.index
                self.emit("finish", event, (st, finish))
        return got

    def _text(self, st: Choice, key: str, text: Any, finished: bool, event: Event) -> bool:
        if text is None:
            return False
        if text.__class__ is not str:
            self.emit("delta_type", event, (st, key, text))
            return False
        parts = st.content if key == "content" else st.refusal
        if parts is None:
            parts = []
            if key == "content":
                st.content = parts
            else:
                st.refusal = parts
        if not text:
            return False
        if self.room > 0:
            parts.append(text)
            self.room -= len(text)
        else:
            self.message_cut = True
        if key == "content" and self._hear_content:
            self.emit("content", event, (st, text))
        if finished:
            self.emit("late_fragment", event, (st, key))
        return True

    def _tool_calls(self, st: Choice, entries: list[Any], event: Event) -> None:
        self.tools = True
        for entry in entries:
            k = entry.get("index") if entry.__class__ is dict else None
            if type(k) is not int:
                self.emit("tool_bad_entry", event, (st, entry))
                continue
            fn = entry.get("function")
            if fn is None:
                fn = {}
            elif fn.__class__ is not dict:
                self.emit("tool_bad_function", event, (st, k, fn))
                fn = {}
            call = st.calls.get(k)
            if call is None:
                call = st.calls[k] = Call(k, event.index)
                self.emit("tool_head", event, (st, call, entry, fn))
                self._merge_head(call, entry, fn)
            else:
                call.fragments += 1
                self.tool_repeat = True
                self.emit("tool_more", event, (st, call, entry, fn))
                self._merge_head(call, entry, fn)
            args = fn.get("arguments")
            if args is not None:
                if args.__class__ is str:
                    if self.room > 0:
                        call.args.append(args)
                        self.room -= len(args)
                    else:
                        self.message_cut = True
                else:
                    call.args_bad = True
                    self.emit("tool_bad_args", event, (st, call, args))

    def _merge_head(self, call: Call, entry: dict[str, Any], fn: dict[str, Any]) -> None:
        """Head fields are taken once: the first string value (a later one only when the
        call has none yet)."""
        cid, ctype, name = entry.get("id"), entry.get("type"), fn.get("name")
        if cid.__class__ is str and not call.id:
            call.id = cid
            self.tool_ids = True
        if ctype.__class__ is str and not call.type:
            call.type = ctype
        if name.__class__ is str and not call.name:
            call.name = name

    # -- the end -----------------------------------------------------------------------

    def _end(self, truncated: bool) -> None:
        self.complete = not truncated and self.error < 0

    def message(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self.choices):
            st = self.choices[index]
            calls = [
                {
                    "index": call.index,
                    "id": call.id,
                    "type": call.type,
                    "name": call.name,
                    "arguments": "".join(call.args),
                }
                for call in sorted(st.calls.values(), key=lambda c: c.index)
            ]
            choices.append(
                {
                    "index": index,
                    "role": st.role,
                    "content": None if st.content is None else "".join(st.content),
                    "refusal": None if st.refusal is None else "".join(st.refusal),
                    "tool_calls": calls,
                    "finish_reason": st.finish,
                }
            )
        usage = None
        raw = self.usage
        if raw is not None:
            names = ("prompt_tokens", "completion_tokens", "total_tokens")
            fields = [raw.get(name) for name in names]
            if all(type(v) is int for v in fields):
                usage = dict(zip(names, fields, strict=True))
        return {"choices": choices, "usage": usage}
