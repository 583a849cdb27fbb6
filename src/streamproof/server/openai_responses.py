"""OpenAI ``POST /v1/responses`` (streaming and not): the Responses API.

The answer is planned first as output items (a reasoning item, a message, function calls:
the pieces each sends), then written out as OpenAI has sent it since 2025-09: every event
named by an ``event:`` line equal to its JSON ``type``, compact JSON with the keys ``type``,
``sequence_number`` (0, 1, 2 …), then the fields; no ``[DONE]``. ``i`` is the item's
``output_index``; every event below an item carries its ``item_id``::

    response.created                        response: status in_progress, output [], usage null
    response.in_progress                    the same object
    output_item.added(i)                    reasoning {"id": "rs_…", "summary": []}
      reasoning_summary_part.added(i, 0)    with ``reasoning.summary`` (or a scripted reasoning):
      reasoning_summary_text.delta ...      one summary_text part; without a summary the item
      reasoning_summary_text.done           is hidden (added, done: its words only in usage
      reasoning_summary_part.done           ``reasoning_tokens``)
    output_item.done(i)
    output_item.added(i)                    message {"id": "msg_…", status in_progress}
      content_part.added(i, 0)              output_text, text "", annotations [], logprobs []
      output_text.delta ...                 ``logprobs: []`` on each, and on the done
      output_text.done
      content_part.done
    output_item.done(i)                     status completed (incomplete when cut)
    output_item.added(i)                    function_call {"id": "fc_…", "call_id": "call_…",
      function_call_arguments.delta ...     "name", "arguments": ""}: one item per call
      function_call_arguments.done          the arguments, and the name
    output_item.done(i)
    response.completed | response.incomplete  output: the done items; usage

In background mode (``background: true``) the response starts ``queued``: ``response.created``
(status queued), ``response.queued``, then ``response.in_progress`` (status in_progress); a
``stream: false`` request gets the queued response at once. A response made with ``store``
(the default) is kept (the server's :class:`Store`, the most recent only) for ``GET
/v1/responses/{id}``: the response, or with ``stream=true`` a background response's events
again as they were sent (faults included), those after ``starting_after`` — the resume the
background guide describes.

Chunk-level faults edit that list of event dicts, numbered already (so that a fault can
break the numbering; :func:`renumbered` mends it for one that should not), and :class:`Raw`
events or ``bytes`` payloads (written as given, data only) before it is serialised. Only
content deltas take a gap of the stream's timing (:func:`ticks_of`): the events before the
first one go out with it, the closing ones with the last one.

Deterministic choices worth knowing, as in ``openai_chat.py``: a forced function is that one
call; ``required`` calls every function tool (only the first with ``parallel_tool_calls:
false``); ``auto`` calls the one the last user message names, else the first — unless the
input ends in ``function_call_output`` items, which are answered in text. ``allowed_tools``
narrows the functions and sets the mode; hosted tools are never called. ``reasoning`` (its
effort not ``none``) puts a reasoning item first (a fixed reflection on the prompt).
``text.format`` ``json_object`` / ``json_schema`` shape the text as ``response_format`` does for
chat. A word is a token, a call costs one token for its head plus one per 6-character
argument fragment, hidden reasoning words count: ``max_output_tokens`` cuts anywhere, and
the stream then ends in ``response.incomplete`` (reason ``max_output_tokens``, the cut item
``incomplete``). Requests are checked as OpenAI checks them (``responses_request.py``); a
scripted reply (``script.py``) replaces the answer, its reasoning as a summary.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from .anthropic_messages import Raw, thinking_text
from .endpoint import (
    Api,
    Context,
    Reply,
    Request,
    RequestError,
    StreamInfo,
    Turn,
    content_ticks,
    json_reply,
    new_id,
    sse_event,
    stream_reply,
)
from .instances import instance_for
from .openai_chat import _authorize, error_reply
from .openai_request import wrong_type
from .responses_request import checked_request, input_items
from .text import answer_text, message_text, named_tool, question, split_pieces, tokens_of

if TYPE_CHECKING:
    from .script import Scripted

__all__ = [
    "API",
    "CONTENT_DELTAS",
    "TERMINALS",
    "Raw",
    "is_content",
    "renumbered",
    "serialise",
    "ticks_of",
    "turn",
]

ARG_PIECE_CHARS: Final = 6
ID_HEX: Final = 48  # OpenAI's item ids: a prefix and 48-50 hex digits
ENCRYPTED: Final = "reasoning.encrypted_content"
# the events that carry content when their ``delta`` is a non-empty string (load-metrics.md)
CONTENT_DELTAS: Final = frozenset(
    f"response.{kind}.delta"
    for kind in ("output_text", "refusal", "function_call_arguments", "custom_tool_call_input",
                 "reasoning_summary_text", "reasoning_text")
)  # fmt: skip
TERMINALS: Final = ("response.completed", "response.incomplete", "response.failed")
# the items a tool round ends the input with: calls (and their reasoning), then the outputs
_TOOL_TURN: Final = ("function_call_output", "function_call", "reasoning")


@dataclass(slots=True)
class _Item:
    kind: str  # "reasoning", "message" or "function_call"
    id: str
    pieces: list[str]  # summary or text words, or argument fragments: as sent
    complete: bool = True  # False: max_output_tokens cut it
    hidden: int = 0  # reasoning words not shown (no summary asked for)
    name: str = ""
    call_id: str = ""
    encrypted: str | None = None

    @property
    def used(self) -> int:
        """Output tokens: its words (shown or hidden) or fragments, plus a call's head."""
        return self.hidden + len(self.pieces) + (self.kind == "function_call")


@dataclass(frozen=True, slots=True)
class _Stored:
    """A kept response: as it finished, and a background response's events as sent."""

    response: dict[str, Any]
    events: list[Any] | None


@dataclass(slots=True)
class _Answer:
    items: list[_Item]
    complete: bool

    @property
    def used(self) -> int:
        return sum(item.used for item in self.items)

    @property
    def reasoning(self) -> int:
        return sum(item.used for item in self.items if item.kind == "reasoning")


# -- the answer --------------------------------------------------------------------------------


def turn(body: Any) -> Turn | None:
    """Where the conversation of a (not yet checked) request body stands: after a tool
    round the text of the ``function_call_output`` items that end the input."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), str | list):
        return None
    items = input_items(body)
    tail = list(itertools.takewhile(lambda i: i.get("type") in _TOOL_TURN, reversed(items)))
    results = [i for i in reversed(tail) if i.get("type") == "function_call_output"]
    if results:
        text = " ".join(message_text(r.get("output")) for r in results)
    else:
        user = [i for i in items if i.get("role") == "user"]
        text = message_text(user[-1].get("content")) if user else ""
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    names = frozenset(
        t["name"]
        for t in tools
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    )
    return Turn(text, names, bool(results))


def _input_tokens(body: Mapping[str, Any]) -> int:
    words = len((body.get("instructions") or "").split())
    for item in input_items(body):
        words += len(message_text(item.get("content")).split())
        words += len(message_text(item.get("output")).split())
    return words


def _functions_called(body: Mapping[str, Any], now: Turn) -> list[Mapping[str, Any]]:
    functions = [t for t in body.get("tools") or [] if t["type"] == "function"]
    choice = body.get("tool_choice") or "auto"
    if isinstance(choice, dict) and choice["type"] == "allowed_tools":
        allowed = {t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict)}
        functions = [f for f in functions if f["name"] in allowed]
        choice = choice.get("mode") or "auto"
    if not functions or choice == "none":
        return []
    if isinstance(choice, dict):  # a function, or a hosted tool (never run here)
        return [f for f in functions if f["name"] == choice.get("name")][:1]
    if choice == "required":
        return functions if body.get("parallel_tool_calls") is not False else functions[:1]
    if now.tool_result:  # auto, after a tool result: answer in text
        return []
    named = named_tool([f["name"] for f in functions], question(input_items(body)))
    return [next(f for f in functions if f["name"] == named)]


def _answer(body: Mapping[str, Any], prompt: str) -> str:
    """The text answer: plain, or in the requested ``text.format``."""
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_object":
        return json.dumps({"answer": answer_text(prompt)}, ensure_ascii=False)
    if fmt.get("type") == "json_schema":
        return json.dumps(instance_for(fmt.get("schema")), ensure_ascii=False)
    return answer_text(prompt)


def _generate(body: Mapping[str, Any], scripted: Scripted | None) -> _Answer:
    if scripted is not None:
        reasoning = tokens_of(scripted.reasoning) if scripted.reasoning else []
        text = tokens_of(scripted.text) if scripted.text else []
        calls = [(c.name, c.arguments) for c in scripted.tool_calls]
        return _planned(body, reasoning, False, text, calls)
    now = turn(body)
    assert now is not None  # a checked body has input
    prompt = question(input_items(body))
    settings = body.get("reasoning")
    thinks = settings is not None and settings.get("effort") != "none"
    reasoning = tokens_of(thinking_text(prompt)) if thinks else []
    hidden = not (settings or {}).get("summary") and not (settings or {}).get("generate_summary")
    functions = _functions_called(body, now)
    if not functions:
        return _planned(body, reasoning, hidden, tokens_of(_answer(body, prompt)), [])
    calls = [(f["name"], instance_for(f.get("parameters"), j)) for j, f in enumerate(functions)]
    return _planned(body, reasoning, hidden, [], calls)


def _planned(
    body: Mapping[str, Any],
    reasoning: list[str],
    hidden: bool,
    text: list[str],
    calls: list[tuple[str, Any]],
) -> _Answer:
    """The items of these parts in order, cut at ``max_output_tokens`` (anywhere: the cut
    item is the last, incomplete)."""
    budget = body.get("max_output_tokens") or 10**9
    items: list[_Item] = []
    if reasoning:
        taken = reasoning[:budget]
        budget -= len(taken)
        item = _Item("reasoning", new_id("rs_", ID_HEX), [] if hidden else taken,
                     len(taken) == len(reasoning), len(taken) if hidden else 0)  # fmt: skip
        if ENCRYPTED in (body.get("include") or ()):
            item.encrypted = _encrypted("".join(taken))
        items.append(item)
        if not item.complete:
            return _Answer(items, False)
    if text:
        if budget < 1:
            return _Answer(items, False)
        taken = text[:budget]
        budget -= len(taken)
        items.append(_Item("message", new_id("msg_", ID_HEX), taken, len(taken) == len(text)))
        if not items[-1].complete:
            return _Answer(items, False)
    for name, arguments in calls:
        if budget < 1:
            return _Answer(items, False)
        pieces = split_pieces(
            json.dumps(arguments, ensure_ascii=False, separators=(",", ":")), ARG_PIECE_CHARS
        )
        budget -= 1
        taken = pieces[:budget]
        budget -= len(taken)
        call = _Item("function_call", new_id("fc_", ID_HEX), taken, len(taken) == len(pieces))
        call.name, call.call_id = name, new_id("call_")
        items.append(call)
        if not call.complete:
            return _Answer(items, False)
    return _Answer(items, True)


def _encrypted(text: str) -> str:
    """A stand-in for the opaque reasoning state OpenAI returns when asked to include it."""
    return "gAAAAA" + base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest() * 4).decode()


# -- writing it out ----------------------------------------------------------------------------


def _usage(body: Mapping[str, Any], answer: _Answer, scripted: Scripted | None) -> dict[str, Any]:
    prompt, output = _input_tokens(body), answer.used
    if scripted is not None:
        prompt = prompt if scripted.input_tokens is None else scripted.input_tokens
        output = output if scripted.output_tokens is None else scripted.output_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": min(answer.reasoning, output)},
        "total_tokens": prompt + output,
    }


def _tool(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    """A tool as the response echoes it (functions with every field, ``strict`` true unless
    sent false, as the API defaults it)."""
    if tool["type"] != "function":
        return tool
    return {"type": "function", "description": tool.get("description"), "name": tool["name"],
            "parameters": tool.get("parameters"), "strict": tool.get("strict", True)}  # fmt: skip


def _response(body: Mapping[str, Any]) -> dict[str, Any]:
    """The response object of ``response.created``: in progress, the request's settings
    echoed (defaults filled in) in the key order OpenAI sends."""

    def given(key: str, default: Any) -> Any:
        return default if body.get(key) is None else body[key]

    reasoning = body.get("reasoning")
    if reasoning is not None:
        summary = reasoning.get("summary") or reasoning.get("generate_summary")
        reasoning = {"effort": reasoning.get("effort") or "medium", "summary": summary}
    text = {"format": {"type": "text"}, "verbosity": "medium", **(body.get("text") or {})}
    return {
        "id": new_id("resp_", ID_HEX),
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": given("background", False),
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": body["model"],
        "output": [],
        "parallel_tool_calls": given("parallel_tool_calls", True),
        "previous_response_id": None,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": reasoning or {"effort": None, "summary": None},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": given("store", True),
        "temperature": given("temperature", 1.0),
        "text": text,
        "tool_choice": given("tool_choice", "auto"),
        "tools": [_tool(t) for t in body.get("tools") or []],
        "top_logprobs": given("top_logprobs", 0),
        "top_p": given("top_p", 1.0),
        "truncation": given("truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
        "metadata": given("metadata", {}),
    }


def _finished(base: dict[str, Any], answer: _Answer, usage: dict[str, Any]) -> dict[str, Any]:
    """The response object of the terminal event (and of ``stream: false``)."""
    return {
        **base,
        "status": "completed" if answer.complete else "incomplete",
        "incomplete_details": None if answer.complete else {"reason": "max_output_tokens"},
        "output": [_done(item) for item in answer.items],
        "usage": usage,
    }


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _added(item: _Item) -> dict[str, Any]:
    """The item as ``output_item.added`` announces it: nothing generated yet."""
    if item.kind == "reasoning":
        secret = {} if item.encrypted is None else {"encrypted_content": item.encrypted}
        return {"id": item.id, "type": "reasoning", **secret, "summary": []}
    if item.kind == "message":
        return {"id": item.id, "type": "message", "status": "in_progress", "content": [],
                "role": "assistant"}  # fmt: skip
    return {"id": item.id, "type": "function_call", "status": "in_progress", "arguments": "",
            "call_id": item.call_id, "name": item.name}  # fmt: skip


def _done(item: _Item) -> dict[str, Any]:
    """The item as ``output_item.done`` and the final ``output`` hold it."""
    out = _added(item)
    text = "".join(item.pieces)
    if item.kind == "reasoning":
        out["summary"] = [{"type": "summary_text", "text": text}] if item.pieces else []
        return out
    out["status"] = "completed" if item.complete else "incomplete"
    if item.kind == "message":
        out["content"] = [_part(text)]
    else:
        out["arguments"] = text
    return out


def _joined(pieces: list[str], per_chunk: int) -> Iterator[str]:
    for i in range(0, len(pieces), per_chunk):
        yield "".join(pieces[i : i + per_chunk])


def _stream(
    base: dict[str, Any], final: dict[str, Any], answer: _Answer, per_chunk: int
) -> list[Any]:
    """The stream as event dicts, numbered, in sending order."""
    items: list[Any] = []

    def emit(kind: str, **fields: Any) -> None:
        items.append({"type": f"response.{kind}", "sequence_number": len(items), **fields})

    emit("created", response=base)
    if base["status"] == "queued":
        emit("queued", response={**base})
    emit("in_progress", response={**base, "status": "in_progress"})
    for i, item in enumerate(answer.items):
        at = {"item_id": item.id, "output_index": i}
        text = "".join(item.pieces)
        emit("output_item.added", output_index=i, item=_added(item))
        if item.kind == "reasoning" and item.pieces:
            summary = {"type": "summary_text", "text": ""}
            emit("reasoning_summary_part.added", **at, summary_index=0, part=summary)
            for piece in _joined(item.pieces, per_chunk):
                emit("reasoning_summary_text.delta", **at, summary_index=0, delta=piece)
            emit("reasoning_summary_text.done", **at, summary_index=0, text=text)
            emit("reasoning_summary_part.done", **at, summary_index=0,
                 part={**summary, "text": text})  # fmt: skip
        elif item.kind == "message":
            emit("content_part.added", **at, content_index=0, part=_part(""))
            for piece in _joined(item.pieces, per_chunk):
                emit("output_text.delta", **at, content_index=0, delta=piece, logprobs=[])
            emit("output_text.done", **at, content_index=0, text=text, logprobs=[])
            emit("content_part.done", **at, content_index=0, part=_part(text))
        elif item.kind == "function_call":
            for piece in _joined(item.pieces, per_chunk):
                emit("function_call_arguments.delta", **at, delta=piece)
            emit("function_call_arguments.done", **at, arguments=text, name=item.name)
        emit("output_item.done", output_index=i, item=_done(item))
    emit(final["status"], response=final)
    return items


def renumbered(items: list[Any]) -> list[Any]:
    """The event dicts with ``sequence_number`` 0, 1, 2 … again (a fault that adds or drops
    events but should break nothing else); other events are counted, left as they are."""
    return [
        {**item, "sequence_number": n} if isinstance(item, dict) else item
        for n, item in enumerate(items)
    ]


def is_content(item: Any) -> bool:
    """A content delta (:data:`CONTENT_DELTAS`) with a non-empty string ``delta``; a
    :class:`Raw` event or a ``bytes`` payload is judged by its data when that is JSON."""
    if isinstance(item, Raw | bytes):
        try:
            item = orjson.loads(item.data if isinstance(item, Raw) else item)
        except orjson.JSONDecodeError:
            return False
    if not isinstance(item, dict) or item.get("type") not in CONTENT_DELTAS:
        return False
    delta = item.get("delta")
    return isinstance(delta, str) and bool(delta)


def ticks_of(items: list[Any]) -> list[int]:
    """Gap slots: only content deltas (:func:`is_content`) take a gap."""
    return content_ticks(items, is_content)


def serialise(item: Any) -> bytes:
    """One event on the wire: a dict with an ``event:`` line of its ``type`` (none when it
    has no string ``type``), a :class:`Raw` event as given, ``bytes`` as a data-only event."""
    if isinstance(item, Raw):
        return sse_event(item.data, None if item.name is None else item.name.encode())
    if isinstance(item, bytes):
        return sse_event(item)
    name = item.get("type")
    return sse_event(orjson.dumps(item), name.encode() if isinstance(name, str) else None)


def responses(req: Request, ctx: Context) -> Reply:
    try:
        _authorize(req, ctx)
        body = checked_request(req.body)
    except RequestError as exc:
        return error_reply(exc.status, exc.message, exc.code, ctx, param=exc.param)
    answer = _generate(body, ctx.scripted)
    usage = _usage(body, answer, ctx.scripted)
    base = _response(body)
    final = _finished(base, answer, usage)
    background = bool(body.get("background"))
    if background:
        base["status"] = "queued"
    if not body.get("stream"):
        _keep(ctx, body, final, None)
        return json_reply(200, base if background else final, ctx)
    flat = {
        "input_tokens": usage["input_tokens"],
        "output_tokens": usage["output_tokens"],
        "reasoning_tokens": usage["output_tokens_details"]["reasoning_tokens"],
        "total_tokens": usage["total_tokens"],
    }
    items = ctx.faults.chunks(
        _stream(base, final, answer, ctx.timing.tokens_per_chunk), StreamInfo(body, flat)
    )
    _keep(ctx, body, final, items if background else None)
    return _streamed(items, ctx)


def _streamed(items: list[Any], ctx: Context) -> Reply:
    reply = stream_reply([serialise(item) for item in items], ctx)
    reply.ticks = ticks_of(items)
    return reply


def _keep(ctx: Context, body: Mapping[str, Any], final: dict[str, Any], events: Any) -> None:
    if ctx.store is not None and body.get("store") is not False:
        ctx.store.put(final["id"], _Stored(final, events))


def retrieve(req: Request, ctx: Context) -> Reply:
    """``GET /v1/responses/{id}``: a kept response; with ``stream=true`` a background
    response's events again, those after ``starting_after`` (all without it)."""
    try:
        _authorize(req, ctx)
        response_id = unquote(req.path.rsplit("/", 1)[1])
        kept = ctx.store.get(response_id) if ctx.store is not None and response_id else None
        if kept is None:
            raise RequestError(404, f"Response with id '{response_id}' not found.")
        query = parse_qs(urlsplit(req.target).query)
        after = query.get("starting_after", [None])[-1]
        if after is not None and not after.isdigit():
            wrong_type("starting_after", "an integer", after)
        if query.get("stream", ["false"])[-1].lower() != "true":
            return json_reply(200, kept.response, ctx)
        if kept.events is None:
            raise RequestError(
                400, "Only responses created with background: true can be streamed.",
                param="stream",
            )  # fmt: skip
    except RequestError as exc:
        return error_reply(exc.status, exc.message, exc.code, ctx, param=exc.param)
    return _streamed(_after(kept.events, None if after is None else int(after)), ctx)


def _after(items: list[Any], after: int | None) -> list[Any]:
    """The events after sequence number ``after`` (an event without one goes with the
    numbered event before it)."""
    if after is None:
        return items
    out = []
    seen = -1
    for item in items:
        seq = item.get("sequence_number") if isinstance(item, dict) else None
        if type(seq) is int:
            seen = seq
        if seen > after:
            out.append(item)
    return out


API: Final = Api(
    "responses",
    {"/v1/responses": {"POST": responses}, "/v1/responses/{id}": {"GET": retrieve}},
    error_reply,
    turn,
    prefixes=("/v1/responses",),
)
