"""OpenAI chat-completions stream validator: a state machine over decoded SSE events.

One instance checks one response. Per event it parses the ``data:`` payload (orjson), checks
the chunk envelope against ``schemas/openai/chunk.json`` (jsonschema-rs ``is_valid``; the
readable explanation is produced only when a finding is made) and advances one small state
per choice index: NEW -> OPEN (first delta seen) -> FINISHED (finish_reason seen), with the
tool calls of the choice grouped by their ``index``. End-of-stream checks run in ``_end``.

Decisions worth knowing (the spec leaves them open):

* **Mid-stream error.** A payload with a truthy top-level ``error`` ends the stream for the
  client: the official SDK raises ``APIError`` on it and stops reading. It must be an object
  with a non-empty string ``message`` (otherwise the SDK raises a generic message). After it
  nothing the client could see is required any more, so a stream that ends with a well-formed
  error is *not* also reported for a missing ``[DONE]``, unfinished choices, a missing usage
  chunk or unterminated tool arguments. Any chunk after the error is ``openai.midstream-error``
  (the client never sees it; a finish chunk after an error contradicts it). A falsy error
  (``{}``, ``""``) is reported too, and then parsed as a chunk, as the SDK does.
* **Chunks whose ``object`` is wrong** (Azure's prompt-filter chunk with ``object: ""``,
  Perplexity's ``chat.completion.done``) are reported once under ``openai.object``. They are
  not used for the id/created/model stability checks (their identity fields belong to another
  object: reporting them again would restate one fault four times); their choices still go
  through the lifecycle, as a client iterating the raw stream sees them. (The SDK's
  ``.stream()`` helper skips them, so its rebuilt message can differ: that is the
  ``sdk.openai-accumulate`` comparison's business.)
* **Tool arguments of a choice cut by ``length``** are not required to parse: a generation
  stopped by ``max_tokens`` cannot close its JSON.
* **Trailing ``choices: []`` chunks without usage after the usage chunk** (gpt-5's
  ``moderation`` chunk) are tolerated silently: the spec calls them INFO, and the catalogue
  has no INFO rule for them.
* **Noise control.** A problem is reported once per (rule, what it is about): e.g. a repeated
  role once per choice, with the number of occurrences appended at the end of the stream;
  after ``MAX_DISTINCT`` distinct problems of one rule the rest are only counted in a summary.
* **Truncated streams** (transport failure): end-of-stream completeness findings are not
  made, and those rules are not marked as checked.

``message()`` is the message a client rebuilds: a pure merge of the deltas, except that the
head fields (role, tool-call id/type/name) are taken once (first non-empty value) instead of
being concatenated like the SDK does; ``finish_reason`` is the first non-null one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from ..findings import Finding
from ..rules import Level
from ..schemas import schema
from ..sse import Event
from .base import (
    StreamValidator,
    check_error_answer,
    check_json_answer,
    event_json,
    json_error,
)

__all__ = [
    "CHUNK_OBJECT",
    "FINISH_REASONS",
    "MAX_DISTINCT",
    "MAX_TOOL_ID_CHARS",
    "OpenAIChatValidator",
    "check_error_response",
    "check_json_response",
]

CHUNK_OBJECT: Final = "chat.completion.chunk"
FINISH_REASONS: Final = frozenset(
    {"stop", "length", "tool_calls", "content_filter", "function_call"}
)
MAX_TOOL_ID_CHARS: Final = 40
MAX_DISTINCT: Final = 5  # distinct findings listed per rule; further ones are only counted

_loads = orjson.loads
_JSONError = orjson.JSONDecodeError
_DONE: Final = "[DONE]"
_MISSING: Final = object()
_ENVELOPE_KEYS: Final = (
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
_TYPE_NAMES: Final = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _kind(value: object) -> str:
    """The JSON type of a parsed value, in words."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


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


class _Call:
    """One tool call of a choice, grouped by its ``index``."""

    __slots__ = ("args", "args_bad", "event", "fragments", "id", "index", "name", "type")

    def __init__(self, index: int, event: int) -> None:
        self.index = index
        self.event = event  # event of the head fragment
        self.id: str | None = None
        self.type: str | None = None
        self.name: str | None = None
        self.args: list[str] = []
        self.args_bad = False  # a non-string fragment was seen (already reported)
        self.fragments = 1


class _Choice:
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
        self.calls: dict[int, _Call] = {}
        self.finish: str | None = None
        self.finish_event = -1


class OpenAIChatValidator(StreamValidator):
    """Validator of one ``POST /chat/completions`` stream (``stream: true``)."""

    api = "openai"

    def __init__(
        self, request: Mapping[str, Any] | None = None, *, expect: frozenset[str] = frozenset()
    ) -> None:
        super().__init__(request, expect=expect)
        req = self.request
        options = req.get("stream_options")
        self.include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
        n = req.get("n")
        self.n: int | None = n if type(n) is int and n >= 1 else None
        limit = req.get("max_completion_tokens")
        if type(limit) is not int:
            limit = req.get("max_tokens")
        self.max_tokens: int | None = limit if type(limit) is int else None
        self.expect_length = "openai.finish-length" in expect
        self.forced_tool = _forced_tool(req.get("tool_choice"))
        chunk_schema = schema("openai", "chunk")
        self._chunk_schema = chunk_schema
        self._chunk_valid = chunk_schema.is_valid
        self._choice_schema = schema("openai", "choice")
        self._usage_schema = schema("openai", "usage_chunk")
        self._choices: dict[int, _Choice] = {}
        # stream-level state
        self._done = -1  # event index of [DONE]
        self._error = -1  # event index of the mid-stream error that ended the stream
        self._clean_error = False  # ... and it was well formed, with nothing after it
        self._error_seen = False
        self._payloads = 0  # data payloads other than [DONE]
        self._chunks = 0  # JSON-object chunks (not errors)
        self._same = 0  # chunks compared against the identity reference
        self._deltas = 0  # choice entries processed
        self._ref_id: str | None = None
        self._ref_created: int | None = None
        self._ref_model: str | None = None
        self._ref_event = -1
        self._usage_event = -1  # the usage chunk (choices: [] with a usage object)
        self._usage: dict[str, Any] | None = None  # the usage the client ends up with
        self._usage_from = -1
        self._usage_on_choice = -1  # first chunk with choices that carried a usage object
        self._tools = False
        self._tool_repeat = False
        self._tool_ids = False
        self._finished = False
        # noise control: (rule, key) -> [finding position or -1, occurrences]
        self._seen: dict[tuple[str, object], list[int]] = {}
        self._distinct: dict[str, int] = {}

    # -- findings ---------------------------------------------------------------------

    def _flag(
        self,
        rule: str,
        key: object,
        event: Event | int | None,
        message: str | Callable[[], str],
        level_as: Level | None = None,
    ) -> None:
        """Report a problem once per (rule, key, level); later occurrences are only counted.
        ``level_as``: a weaker level for this occurrence (see the catalogue's header)."""
        slot = (rule, key, level_as)
        seen = self._seen.get(slot)
        if seen is not None:
            seen[1] += 1
            return
        distinct = self._distinct.get(rule, 0) + 1
        self._distinct[rule] = distinct
        if distinct > MAX_DISTINCT:
            self._seen[slot] = [-1, 1]
            return
        self._seen[slot] = [len(self.findings), 1]
        self.add(rule, message if isinstance(message, str) else message(), event, level_as=level_as)

    @property
    def ended_by_error(self) -> bool:
        return self._clean_error

    def _summarise(self) -> None:
        for position, count in self._seen.values():
            if position >= 0 and count > 1:
                old = self.findings[position]
                self.findings[position] = Finding(
                    old.rule,
                    f"{old.message} [{count} occurrences in all]",
                    old.event,
                    old.excerpt,
                    old.level_as,
                )
        for rule, distinct in self._distinct.items():
            if distinct > MAX_DISTINCT:
                self.add(
                    rule,
                    f"{distinct - MAX_DISTINCT} more distinct problem(s) of this kind, "
                    "not listed one by one",
                )

    # -- events -----------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        if self._done >= 0:
            self._flag(
                "openai.done-last",
                None,
                event,
                f"event {event.index} follows data: [DONE] (event {self._done}): clients stop "
                "reading at [DONE] and never see it",
            )
            return
        if event.name is not None:
            self._named(event)
        data = event.data
        if data == _DONE:
            self._done = event.index
            return
        self._payloads += 1
        try:
            obj = event_json(event)
        except _JSONError as exc:
            self._flag(
                "openai.data-json",
                event.index,
                event,
                f"event {event.index}: the data payload is not JSON ({json_error(exc)}); "
                "the SDK raises on it",
            )
            return
        if obj.__class__ is not dict:
            self._flag(
                "openai.data-json",
                event.index,
                event,
                f"event {event.index}: the data payload is {_kind(obj)}, not a JSON object",
            )
            return
        if "error" in obj and obj["error"] is not None and self._error_event(obj, event):
            return
        if self._error >= 0:
            self._after_error(obj, event)
            return
        self._chunks += 1

        states = self._choices
        got = False
        if self._chunk_valid(obj):
            if obj["object"] == CHUNK_OBJECT:
                if self._ref_event < 0:
                    self._reference(obj, event)
                else:
                    self._same += 1
                    if (
                        obj["id"] != self._ref_id
                        or obj["created"] != self._ref_created
                        or obj["model"] != self._ref_model
                    ):
                        self._identity(obj, event)
            else:
                self._wrong_object(obj, event)
            choices = obj["choices"]
            if not choices:
                self._empty_choices(obj, event)
                return
            if self._usage_event >= 0 or obj.get("usage") is not None:
                self._chunk_extras(obj, event)
            self._deltas += len(choices)
            for ch in choices:
                # fast path: a plain content delta of an open choice
                index = ch["index"]
                st = states.get(index)
                if (
                    st is not None
                    and st.content is not None
                    and st.finish is None
                    and index.__class__ is int
                ):
                    delta = ch["delta"]
                    if len(delta) == 1 and ch.get("finish_reason", _MISSING) is None:
                        text = delta.get("content")
                        if text.__class__ is str:
                            if text:
                                if self.room > 0:
                                    st.content.append(text)
                                    self.room -= len(text)
                                else:
                                    self.message_cut = True
                                got = True
                            continue
                if self._choice(ch, st, event):
                    got = True
        else:
            choices = self._invalid_chunk(obj, event)
            if choices is None:
                return
            if not choices:
                self._empty_choices(obj, event)
                return
            self._chunk_extras(obj, event)
            self._deltas += len(choices)
            for ch in choices:
                if self._choice(ch, None, event):
                    got = True
        if got:
            self.content_t.append(event.t)

    def _chunk_extras(self, obj: dict[str, Any], event: Event) -> None:
        """A chunk with choices: is it after the usage chunk, does it carry usage?"""
        if self._usage_event >= 0:
            self._choices_after_usage(event)
        if obj.get("usage") is not None:
            self._usage_with_choices(obj, event)

    # -- envelope ---------------------------------------------------------------------

    def _named(self, event: Event) -> None:
        name = event.name
        self._flag(
            "openai.no-event-names",
            None,
            event,
            f"event {event.index} has an event: name ({name!r}); OpenAI sends plain data: "
            "events (the SDK ignores the name and reads the payload"
            + ("; naming error events is a compatible-server habit)" if name == "error" else ")"),
        )

    def _reference(self, obj: dict[str, Any], event: Event) -> None:
        """The first well-typed chunk with the right object sets id/created/model."""
        rid, created, model = obj.get("id"), obj.get("created"), obj.get("model")
        if rid.__class__ is str:
            self._ref_id = rid
        if type(created) is int:
            self._ref_created = created
        if model.__class__ is str:
            self._ref_model = model
        self._ref_event = event.index

    def _identity(self, obj: dict[str, Any], event: Event) -> None:
        """Compare id/created/model with the reference chunk (wrong types are skipped)."""
        first = self._ref_event
        rid = obj.get("id")
        if rid.__class__ is str:
            if self._ref_id is None:
                self._ref_id = rid
            elif rid != self._ref_id:
                self._flag(
                    "openai.id-stable",
                    None,
                    event,
                    f"id changed from {self._ref_id!r} (event {first}) to {rid!r} at event "
                    f"{event.index}: every chunk of a stream carries the same id",
                )
        created = obj.get("created")
        if type(created) is int:
            if self._ref_created is None:
                self._ref_created = created
            elif created != self._ref_created:
                self._flag(
                    "openai.created-stable",
                    None,
                    event,
                    f"created changed from {self._ref_created} (event {first}) to {created} at "
                    f"event {event.index}: every chunk carries the creation time of the "
                    "completion, not of the chunk",
                )
        model = obj.get("model")
        if model.__class__ is str:
            if self._ref_model is None:
                self._ref_model = model
            elif model != self._ref_model:
                self._flag(
                    "openai.model-stable",
                    None,
                    event,
                    f"model changed from {self._ref_model!r} (event {first}) to {model!r} at "
                    f"event {event.index}",
                )

    def _wrong_object(self, obj: dict[str, Any], event: Event) -> None:
        value = obj.get("object")
        if _carries(obj):
            self._flag(
                "openai.object",
                _short(value),
                event,
                f"event {event.index}: object is {_short(value)}, not 'chat.completion.chunk': "
                "the SDK's stream helper skips the chunk, and what it carries is lost",
            )
        else:
            self._flag(
                "openai.object",
                _short(value),
                event,
                f"event {event.index}: object is {_short(value)}, not 'chat.completion.chunk' "
                "(the SDK's stream helper skips the chunk; it carries nothing the client needs)",
                level_as="SHOULD",
            )

    def _invalid_chunk(self, obj: dict[str, Any], event: Event) -> list[Any] | None:
        """Slow path of a chunk failing chunk.json: report the most specific rule, then
        carry on with whatever parts are usable. Returns the choices to process."""
        choices = obj.get("choices")
        envelope = {**obj, "choices": []} if choices.__class__ is list else obj
        if not self._chunk_valid(envelope):
            sig = tuple(k if k not in envelope else _kind(envelope[k]) for k in _ENVELOPE_KEYS)
            detail = self._chunk_schema.explain
            self._flag(
                "openai.chunk-schema",
                sig,
                event,
                lambda: (
                    f"event {event.index}: the chunk does not match the "
                    f"chat.completion.chunk schema: {detail(envelope)}"
                ),
            )
        if choices.__class__ is not list:
            return None
        valid = self._choice_schema.is_valid
        for position, ch in enumerate(choices):
            if valid(ch):
                continue
            self._invalid_choice(position, ch, event)
        if obj.get("object") == CHUNK_OBJECT:
            if self._ref_event < 0:
                self._reference(obj, event)
            else:
                self._same += 1
                self._identity(obj, event)
        else:
            self._wrong_object(obj, event)
        return choices

    def _invalid_choice(self, position: int, ch: Any, event: Event) -> None:
        if ch.__class__ is dict:
            index = ch.get("index")
            key: tuple[Any, ...] = (
                index if type(index) is int else None,
                tuple(
                    "-" if k not in ch else _kind(ch[k])
                    for k in ("index", "delta", "finish_reason", "logprobs")
                ),
            )
        else:
            key = (None, _kind(ch))
        detail = self._choice_schema.explain
        self._flag(
            "openai.choice-schema",
            key,
            event,
            lambda: (
                f"event {event.index}: choices[{position}] does not match the choice "
                f"schema: {detail(ch)}"
            ),
        )

    # -- choices ----------------------------------------------------------------------

    def _choice(self, ch: Any, st: _Choice | None, event: Event) -> bool:
        """One choice entry of a chunk; returns whether it carried content."""
        if ch.__class__ is not dict:
            return False  # reported as choice-schema
        index = ch.get("index")
        delta = ch.get("delta")
        if index.__class__ is float and index.is_integer() and index >= 0:
            # valid for JSON Schema ("integer"), but the SDK indexes a list with it and fails
            self._flag(
                "openai.choice-schema",
                ("float-index", index),
                event,
                f"event {event.index}: choice index is written {index!r}, not as an integer",
            )
            index = int(index)
        if delta is None:
            delta = {}  # reported as choice-schema; its finish_reason still counts
        if type(index) is not int or index < 0 or delta.__class__ is not dict:
            return False  # reported as choice-schema; nothing usable
        finish = ch.get("finish_reason", _MISSING)
        if finish is _MISSING:
            self._flag(
                "openai.finish-reason-key",
                index,
                event,
                f"choice {index} (event {event.index}) has no finish_reason key; it is required "
                "(null until the finish). The SDKs default it to null, clients reading "
                "choice['finish_reason'] raise KeyError",
            )
            finish = None
        if st is None:
            st = self._choices.get(index)
        role = delta.get("role")
        if st is None:
            st = self._choices[index] = _Choice(index, event.index)
            if self.n is not None and index >= self.n:
                self._flag(
                    "openai.n-choices",
                    ("range", index),
                    event,
                    f"event {event.index}: choice index {index} although n={self.n} was "
                    f"requested (indices 0..{self.n - 1})",
                )
            if role != "assistant":
                self._flag(
                    "openai.role-first",
                    index,
                    event,
                    f"the first delta of choice {index} (event {event.index}) has no role"
                    if role is None
                    else f"the first delta of choice {index} (event {event.index}) has role "
                    f"{_short(role)}, not 'assistant'",
                )
            if role.__class__ is str:
                st.role = role
        elif role is not None:
            if st.role is None:
                if role.__class__ is str:
                    st.role = role  # a late role: the first delta was already reported
            else:
                joined = st.role + role if role.__class__ is str else None
                self._flag(
                    "openai.role-once",
                    index,
                    event,
                    f"role repeated in choice {index} delta (event {event.index}): the SDK "
                    + (
                        f"concatenates it to {joined!r}"
                        if joined is not None
                        else "cannot merge it"
                    ),
                )
        finished = st.finish is not None
        got = False
        if delta:
            if "content" in delta:
                got = self._text(st, "content", delta["content"], finished, event)
            if "refusal" in delta and self._text(st, "refusal", delta["refusal"], finished, event):
                got = True
            for key in ("reasoning_content", "reasoning"):
                text = delta.get(key)
                if text.__class__ is str and text:
                    got = True
            calls = delta.get("tool_calls")
            if calls is not None:
                if calls.__class__ is not list:
                    self._flag(
                        "openai.delta-types",
                        (index, "tool_calls"),
                        event,
                        f"choice {index} delta (event {event.index}): tool_calls is "
                        f"{_kind(calls)}, not an array",
                    )
                elif calls:
                    got = True
                    if finished:
                        self._after_finish(st, "a tool-call fragment", event)
                    self._tool_calls(st, calls, event)
        if finish is not None and finish.__class__ is str:
            self._finish(st, finish, event)
        return got

    def _text(self, st: _Choice, key: str, text: Any, finished: bool, event: Event) -> bool:
        if text is None:
            return False
        if text.__class__ is not str:
            self._flag(
                "openai.delta-types",
                (st.index, key),
                event,
                f"choice {st.index} delta (event {event.index}): {key} is {_kind(text)}, not "
                "a string or null",
            )
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
        if finished:
            self._after_finish(st, key, event)
        return True

    def _after_finish(self, st: _Choice, what: str, event: Event) -> None:
        self._flag(
            "openai.finish-last",
            st.index,
            event,
            f"choice {st.index} sends {what} at event {event.index} after its finish_reason "
            f"{st.finish!r} (event {st.finish_event})",
        )

    def _finish(self, st: _Choice, finish: str, event: Event) -> None:
        self._finished = True
        if st.finish is not None:
            same = finish == st.finish
            self._flag(
                "openai.finish-once",
                ("again", st.index),
                event,
                f"choice {st.index} got a second finish_reason {finish!r} at event "
                f"{event.index} (the first, {st.finish!r}, was at event {st.finish_event})"
                + (
                    "; the same value, so the rebuilt message is unchanged"
                    if same
                    else "; the SDK keeps the last one"
                ),
                level_as="SHOULD" if same else None,
            )
            return
        st.finish = finish
        st.finish_event = event.index
        if finish not in FINISH_REASONS:
            self._flag(
                "openai.finish-enum",
                (st.index, finish),
                event,
                f"choice {st.index} finishes with {_short(finish)} (event {event.index}), not "
                "one of stop, length, tool_calls, content_filter, function_call",
            )

    # -- tool calls -------------------------------------------------------------------

    def _tool_calls(self, st: _Choice, entries: list[Any], event: Event) -> None:
        self._tools = True
        ci = st.index
        for entry in entries:
            if entry.__class__ is not dict:
                self._flag(
                    "openai.tool-index",
                    (ci, "entry"),
                    event,
                    f"choice {ci} (event {event.index}): a tool_calls entry is "
                    f"{_kind(entry)}, not an object (the SDK raises TypeError)",
                )
                continue
            k = entry.get("index")
            if type(k) is not int:
                self._flag(
                    "openai.tool-index",
                    (ci, "no-index"),
                    event,
                    f"choice {ci} (event {event.index}): a tool_calls entry has "
                    + ("no index" if k is None else f"index {_short(k)}, not an integer")
                    + " (the SDK cannot place the fragment and raises)",
                )
                continue
            fn = entry.get("function")
            if fn is None:
                fn = {}
            elif fn.__class__ is not dict:
                self._flag(
                    "openai.tool-args-string",
                    (ci, k, "function"),
                    event,
                    f"choice {ci} tool call {k} (event {event.index}): function is "
                    f"{_kind(fn)}, not an object with name and arguments",
                )
                fn = {}
            call = st.calls.get(k)
            if call is None:
                call = self._tool_head(st, k, entry, fn, event)
            else:
                call.fragments += 1
                self._tool_repeat = True
                self._tool_more(st, call, entry, fn, event)
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
                    self._flag(
                        "openai.tool-args-string",
                        (ci, k),
                        event,
                        f"choice {ci} tool call {k} (event {event.index}): "
                        f"function.arguments is {_kind(args)}, not a string: clients "
                        "concatenate the fragments and json.loads the text",
                    )

    def _tool_head(
        self, st: _Choice, k: int, entry: dict[str, Any], fn: dict[str, Any], event: Event
    ) -> _Call:
        ci = st.index
        expected = len(st.calls)
        if k != expected:
            self._flag(
                "openai.tool-index",
                (ci, "dense", k),
                event,
                f"choice {ci}: a new tool call has index {k} at event {event.index} where "
                f"{expected} was expected (indices are 0-based and dense; the SDK inserts "
                f"it at position {expected} and misplaces the later fragments)",
            )
        call = st.calls[k] = _Call(k, event.index)
        cid, ctype, name = entry.get("id"), entry.get("type"), fn.get("name")
        missing = []
        if cid.__class__ is str:
            call.id = cid
            self._tool_ids = True
            if len(cid) > MAX_TOOL_ID_CHARS:
                self._flag(
                    "openai.tool-id-length",
                    (ci, k),
                    event,
                    f"choice {ci} tool call {k}: id {_short(cid)} has {len(cid)} characters; "
                    f"OpenAI rejects tool_call_id values longer than {MAX_TOOL_ID_CHARS} when "
                    "the call is sent back",
                )
        if not (cid.__class__ is str and cid):
            missing.append("id")
        if ctype.__class__ is str:
            call.type = ctype
        if ctype != "function":
            missing.append("type 'function'")
        if name.__class__ is str:
            call.name = name
        if not (name.__class__ is str and name):
            missing.append("function.name")
        if missing:
            self._flag(
                "openai.tool-head",
                (ci, k),
                event,
                f"choice {ci} tool call {k}: the first fragment (event {event.index}) lacks "
                + ", ".join(missing),
            )
        return call

    def _tool_more(
        self, st: _Choice, call: _Call, entry: dict[str, Any], fn: dict[str, Any], event: Event
    ) -> None:
        repeated = []
        doubled = False  # a non-empty id or name repeated: the SDK concatenates it
        cid, ctype, name = entry.get("id"), entry.get("type"), fn.get("name")
        if cid is not None:
            if call.id:
                repeated.append(f"id={_short(cid, 50)}")
                doubled = doubled or bool(cid)
            elif cid.__class__ is str:
                call.id = cid  # late head field (the head was already reported)
                self._tool_ids = True
        if ctype is not None:
            if call.type:
                repeated.append(f"type={_short(ctype, 30)}")
            elif ctype.__class__ is str:
                call.type = ctype
        if name is not None:
            if call.name:
                repeated.append(f"function.name={_short(name, 50)}")
                doubled = doubled or bool(name)
            elif name.__class__ is str:
                call.name = name
        if repeated:
            ci, k = st.index, call.index
            self._flag(
                "openai.tool-head-once",
                (ci, k),
                event,
                f"choice {ci} tool call {k}: a later fragment (event {event.index}) repeats "
                + ", ".join(repeated)
                + (
                    ": the SDK concatenates repeated id and name strings"
                    if doubled
                    else " (harmless for the SDK: it replaces type, and an empty string adds "
                    "nothing)"
                ),
                level_as=None if doubled else "SHOULD",
            )

    # -- usage and empty-choices chunks ------------------------------------------------

    def _empty_choices(self, obj: dict[str, Any], event: Event) -> None:
        usage = obj.get("usage")
        if usage is None:
            if self._usage_event >= 0:
                return  # trailing chunk after the usage chunk (e.g. moderation): tolerated
            if not self.include_usage:
                self._flag(
                    "openai.usage-unrequested",
                    "empty",
                    event,
                    f"event {event.index} has choices: [] although include_usage was not "
                    "requested: clients that read choices[0] fail on it",
                )
            return
        if not self.include_usage:
            self._flag(
                "openai.usage-unrequested",
                "usage",
                event,
                f"event {event.index} is a usage chunk (choices: []) although "
                "stream_options.include_usage was not requested: clients that read "
                "choices[0] fail on it",
            )
        elif self._usage_event >= 0:
            self._flag(
                "openai.usage-chunk",
                "second",
                event,
                f"event {event.index} is a second usage chunk (the first was event "
                f"{self._usage_event})",
            )
            return
        else:
            if not self._usage_schema.is_valid(obj):
                detail = self._usage_schema.explain
                self._flag(
                    "openai.usage-chunk",
                    "shape",
                    event,
                    lambda: f"the usage chunk (event {event.index}) is malformed: {detail(obj)}",
                )
            open_choices = [i for i, s in sorted(self._choices.items()) if s.finish is None]
            if open_choices:
                self._flag(
                    "openai.usage-chunk",
                    "early",
                    event,
                    f"the usage chunk (event {event.index}) comes before the finish of "
                    f"choice(s) {open_choices}: it must follow the last finish chunk",
                )
        if self._usage_event < 0:
            self._usage_event = event.index
        if usage.__class__ is dict:
            self._usage = usage
            self._usage_from = event.index

    def _choices_after_usage(self, event: Event) -> None:
        if self.include_usage:
            self._flag(
                "openai.usage-chunk",
                "after",
                event,
                f"event {event.index} carries choices after the usage chunk (event "
                f"{self._usage_event}): the usage chunk must be the last one before [DONE]",
            )

    def _usage_with_choices(self, obj: dict[str, Any], event: Event) -> None:
        usage = obj["usage"]
        if self._usage_on_choice < 0:
            self._usage_on_choice = event.index
        if usage.__class__ is dict and self._usage_event < 0:
            self._usage = usage
            self._usage_from = event.index
        if self.include_usage:
            self._flag(
                "openai.usage-null-before",
                None,
                event,
                f"event {event.index} carries a usage object on a chunk with choices; with "
                "include_usage, usage is null or absent until the separate usage chunk",
            )

    # -- mid-stream errors --------------------------------------------------------------

    def _error_event(self, obj: dict[str, Any], event: Event) -> bool:
        """A payload with a top-level error. True when it ended the stream for the client."""
        self._error_seen = True
        err = obj["error"]
        if self._error >= 0:
            self._after_error(obj, event)
            return True
        if not err:
            self._flag(
                "openai.midstream-error",
                "falsy",
                event,
                f"event {event.index} has error {_short(err)}: the SDK raises only on a "
                "non-empty error object and otherwise parses the event as a chunk",
            )
            return False
        text = err.get("message") if err.__class__ is dict else None
        self._clean_error = text.__class__ is str and bool(text)
        if err.__class__ is not dict:
            self._flag(
                "openai.midstream-error",
                "shape",
                event,
                f"event {event.index}: error is {_kind(err)}, not an object with a message "
                "(the SDK raises 'An error occurred during streaming' and the cause is lost)",
            )
        else:
            message = err.get("message")
            if not (message.__class__ is str and message):
                self._flag(
                    "openai.midstream-error",
                    "message",
                    event,
                    f"event {event.index}: error.message is "
                    + ("missing" if message is None else _short(message))
                    + ", not a non-empty string (the SDK replaces it with 'An error occurred "
                    "during streaming')",
                )
        self._error = event.index
        return True

    def _after_error(self, obj: dict[str, Any], event: Event) -> None:
        self._clean_error = False
        finishing = False
        choices = obj.get("choices")
        if choices.__class__ is list:
            finishing = any(
                c.__class__ is dict and c.get("finish_reason") is not None for c in choices
            )
        self._flag(
            "openai.midstream-error",
            "after-finish" if finishing else "after",
            event,
            f"event {event.index} follows the mid-stream error of event {self._error}"
            + (" and carries a finish_reason" if finishing else "")
            + ": the SDK raised at the error and never sees it",
        )

    # -- end of stream ----------------------------------------------------------------

    def _end(self, truncated: bool) -> None:
        checked = self.checked
        errored = self._error >= 0
        complete = not truncated and not errored
        if self.events:
            checked.add("openai.no-event-names")
        if self._payloads:
            checked.add("openai.data-json")
        if self._done >= 0:
            checked.add("openai.done-last")
        if complete:
            checked.add("openai.done")
            if self._done < 0:
                self.add(
                    "openai.done", "the stream ended without data: [DONE] (the SDK waits for it)"
                )
        if self._error_seen:
            checked.add("openai.midstream-error")
        if self._chunks:
            checked.update(("openai.chunk-schema", "openai.object"))
        if self._same:
            checked.update(("openai.id-stable", "openai.created-stable", "openai.model-stable"))
        self._end_choices(complete)
        self._end_tools(complete)
        self._end_tool_choice(complete)
        self._end_usage(complete)
        self._summarise()

    def _end_choices(self, complete: bool) -> None:
        checked = self.checked
        states = self._choices
        if states:
            checked.update(
                (
                    "openai.choice-schema",
                    "openai.finish-reason-key",
                    "openai.role-first",
                    "openai.delta-types",
                )
            )
            if self._deltas > len(states):
                checked.add("openai.role-once")
        if self._finished:
            checked.update(("openai.finish-enum", "openai.finish-last", "openai.finish-once"))
        if complete:
            if states:
                checked.add("openai.finish-once")
                for st in states.values():
                    if st.finish is None:
                        self.add(
                            "openai.finish-once",
                            f"choice {st.index} never got a finish_reason (it began at event "
                            f"{st.first_event}; the stream ended after event {self.events - 1})",
                        )
            elif self.n is None:
                checked.add("openai.finish-once")
                self.add(
                    "openai.finish-once",
                    "the stream carried no choice at all: the client rebuilds an empty answer"
                    if self._chunks
                    else "the stream carried no chunk at all: the client rebuilds nothing",
                )
        if self.n is not None and (complete or states):
            checked.add("openai.n-choices")
            missing = [i for i in range(self.n) if i not in states]
            if complete and missing:
                self.add(
                    "openai.n-choices",
                    f"n={self.n} was requested but choice index(es) {missing} never appeared",
                )
        if self.expect_length and complete and states:
            checked.add("openai.finish-length")
            for st in states.values():
                if st.finish is not None and st.finish != "length":
                    self.add(
                        "openai.finish-length",
                        f"choice {st.index} was cut by the requested token limit but finishes "
                        f"with {st.finish!r}, not 'length'",
                        st.finish_event,
                    )

    def _end_tools(self, complete: bool) -> None:
        if not self._tools:
            return
        checked = self.checked
        checked.update(("openai.tool-index", "openai.tool-head", "openai.tool-args-string"))
        if self._tool_repeat:
            checked.add("openai.tool-head-once")
        if self._tool_ids:
            checked.add("openai.tool-id-length")
        for st in self._choices.values():
            if not st.calls:
                continue
            if st.finish is not None:
                checked.add("openai.finish-tool-calls")
                if st.finish != "tool_calls":
                    self.add(
                        "openai.finish-tool-calls",
                        f"choice {st.index} streamed {len(st.calls)} tool call(s) but finishes "
                        f"with {st.finish!r}, not 'tool_calls' (clients that dispatch on the "
                        "finish reason skip the calls)",
                        st.finish_event,
                    )
            if not complete or st.finish == "length" or self.message_cut:
                continue  # an interrupted, length-cut or size-bound call: it cannot parse
            checked.add("openai.tool-args-json")
            for call in sorted(st.calls.values(), key=lambda c: c.index):
                if call.args_bad:
                    continue
                text = "".join(call.args)
                if not text:
                    continue  # no arguments at all counts as {}
                try:
                    value = _loads(text)
                except _JSONError as exc:
                    self.add(
                        "openai.tool-args-json",
                        f"choice {st.index} tool call {call.index} ({call.name!r}): the joined "
                        f"arguments are not JSON ({exc})",
                        call.event,
                        text,
                    )
                    continue
                if value.__class__ is not dict:
                    self.add(
                        "openai.tool-args-json",
                        f"choice {st.index} tool call {call.index} ({call.name!r}): the joined "
                        f"arguments are {_kind(value)}, not a JSON object",
                        call.event,
                        text,
                    )

    def _end_tool_choice(self, complete: bool) -> None:
        """``openai.tool-choice``: a forced tool call came (judged on complete streams; a
        choice cut by length or a content filter had no chance to make the call)."""
        forced = self.forced_tool
        if forced is None or not complete or not self._choices:
            return
        self.checked.add("openai.tool-choice")
        how = f"tool_choice names {forced!r}" if forced else 'tool_choice is "required"'
        for st in self._choices.values():
            if st.finish in ("length", "content_filter"):
                continue
            names = [c.name for c in sorted(st.calls.values(), key=lambda c: c.index)]
            if not names:
                text = "".join(st.content or ())
                said = f" after {len(text)} characters of text" if text else ""
                self.add(
                    "openai.tool-choice",
                    f"choice {st.index} answered without a tool call although {how}: it "
                    f"finishes with {st.finish!r}{said}",
                    st.finish_event if st.finish_event >= 0 else st.first_event,
                )
            elif forced and forced not in names:
                self.add(
                    "openai.tool-choice",
                    f"choice {st.index} calls {names} although {how}",
                    st.first_event,
                )

    def _end_usage(self, complete: bool) -> None:
        checked = self.checked
        if self._chunks:
            if self.include_usage:
                checked.add("openai.usage-null-before")
            else:
                checked.add("openai.usage-unrequested")
        if self.include_usage and (complete or self._usage_event >= 0):
            checked.add("openai.usage-chunk")
            if self._usage_event < 0:
                where = (
                    f"; a usage object came on a chunk with choices instead (event "
                    f"{self._usage_on_choice})"
                    if self._usage_on_choice >= 0
                    else ""
                )
                self.add(
                    "openai.usage-chunk",
                    "include_usage was requested but no usage chunk (choices: [] with a usage "
                    f"object) came before [DONE]{where}",
                )
        usage = self._usage
        if usage is None:
            return
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        total = usage.get("total_tokens")
        if type(prompt) is int and type(completion) is int and type(total) is int:
            checked.add("openai.usage-total")
            if total != prompt + completion:
                self.add(
                    "openai.usage-total",
                    f"usage total_tokens is {total} but prompt_tokens + completion_tokens is "
                    f"{prompt} + {completion} = {prompt + completion}"
                    + (
                        " (the difference may be reasoning tokens counted separately)"
                        if total > prompt + completion
                        else ""
                    ),
                    self._usage_from,
                )
        if type(completion) is int and self.content_t:
            checked.add("openai.usage-output")
            if completion == 0:
                self.add(
                    "openai.usage-output",
                    f"usage completion_tokens is 0 although {len(self.content_t)} content "
                    "event(s) were streamed (token counts, billing and load tests read 0)",
                    self._usage_from,
                )
        if self.max_tokens is not None and type(completion) is int:
            checked.add("openai.usage-max-tokens")
            if completion > self.max_tokens:
                self.add(
                    "openai.usage-max-tokens",
                    f"usage completion_tokens is {completion}, more than the requested limit "
                    f"of {self.max_tokens}",
                    self._usage_from,
                )

    # -- the rebuilt message -----------------------------------------------------------

    def message(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self._choices):
            st = self._choices[index]
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
        raw = self._usage
        if raw is not None:
            names = ("prompt_tokens", "completion_tokens", "total_tokens")
            fields = [raw.get(name) for name in names]
            if all(type(v) is int for v in fields):
                usage = dict(zip(names, fields, strict=True))
        return {"choices": choices, "usage": usage}


# -- non-stream checks --------------------------------------------------------------------


def check_error_response(
    status: int | None,
    content_type: str | None,
    body: bytes,
    expected_status: tuple[int, ...],
) -> tuple[list[Finding], set[str]]:
    """``openai.error-status`` and ``openai.error-body`` for a request that must be refused."""
    findings, checked, _ = check_error_answer(
        "openai", status, content_type, body, expected_status,
        schema("openai", "error_body"), '{"error": {message, type, param, code}}',
    )  # fmt: skip
    return findings, checked


def check_json_response(
    status: int | None, content_type: str | None, body: bytes
) -> tuple[list[Finding], set[str]]:
    """``http.stream-false-json``: without ``stream`` the answer is one chat.completion."""
    return check_json_answer(
        status, content_type, body, schema("openai", "completion"), "a chat.completion object"
    )
