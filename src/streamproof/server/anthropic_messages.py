"""Anthropic ``POST /v1/messages`` (streaming and not).

The answer is planned first as content blocks (thinking, text, tool_use: their pieces) and a
stop reason, then written out as the stream the real API sends, every event named by an
``event:`` line equal to its JSON ``type``::

    message_start                       usage: input_tokens = prompt words, output_tokens 1
    content_block_start(0)  ping        one ping right after the first block start
    content_block_delta(0) ...          text_delta / thinking_delta then one signature_delta /
    content_block_stop(0)               input_json_delta, the first one with partial_json ""
    ... the next blocks ...
    message_delta                       stop_reason, stop_sequence, usage.output_tokens
    message_stop

Chunk-level faults edit that list of event dicts (and :class:`Raw` events, written as given)
before it is serialised. Only content deltas take a gap of the stream's timing: the first one
goes out at ``ttft`` with everything before it, block stops and the closing events go out
with the last delta before them (``Reply.ticks``).

Deterministic choices worth knowing: ``thinking: {"type": "enabled"}`` puts a thinking block
(a fixed reflection on the prompt, then one ``signature_delta``) before the answer. With
``tools`` and ``tool_choice`` other than ``none`` the answer is one ``tool_use`` block (a forced
tool: that one; ``any`` / ``auto``: the tool the last user message names, else the first, after
a one-sentence text block for ``auto``) with stop reason ``tool_use`` — unless the last user
turn holds a ``tool_result`` and the choice is ``auto``: that is answered in text, so an agent
loop ends. A word is a token; a tool call costs one token for its head plus one per
6-character input fragment; thinking words count too, so ``max_tokens`` cuts anywhere. The
``x-streamproof-pings`` header moves the pings (:func:`parse_pings`). Requests are checked as
Anthropic checks them (``anthropic_request.py``); ``POST /v1/messages/count_tokens`` counts the
input as ``message_start`` reports it; a scripted reply (``script.py``) replaces the answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import orjson

from ..validators.anthropic_model import ERROR_TYPE_BY_STATUS
from .anthropic_request import checked_request
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
from .text import (
    answer_text,
    cut_at_stop,
    message_text,
    named_tool,
    question,
    split_pieces,
    tokens_of,
)

if TYPE_CHECKING:
    from .script import Scripted

__all__ = [
    "API",
    "PING",
    "Pings",
    "Raw",
    "error_reply",
    "is_content",
    "parse_pings",
    "thinking_text",
    "ticks_of",
]

PING: Final = {"type": "ping"}
PINGS_HEADER: Final = "x-streamproof-pings"
INPUT_PIECE_CHARS: Final = 6
_CONTENT_FIELDS: Final = {"text_delta": "text", "thinking_delta": "thinking",
                          "input_json_delta": "partial_json"}  # fmt: skip


class Raw(NamedTuple):
    """An event written as given: its ``event:`` name (None: no event line) and data."""

    name: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class Pings:
    """Where pings go: after the first block start (as the real API), between blocks, after
    every ``every``-th delta, before ``message_delta``. None of them changes the message."""

    start: bool = True
    blocks: bool = False
    every: int = 0
    end: bool = False


def parse_pings(spec: str | None) -> Pings:
    """``x-streamproof-pings``: ``none``, or a comma list of ``start``, ``blocks``, ``end``,
    ``every=N``; absent or empty: the default (``start``)."""
    if not spec or not spec.strip():
        return Pings()
    found: dict[str, Any] = {"start": False}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if item == "none":
            continue
        if not sep and key in ("start", "blocks", "end"):
            found[key] = True
        elif sep and key == "every" and value.isdigit() and int(value) > 0:
            found["every"] = int(value)
        else:
            raise RequestError(
                400, f"{PINGS_HEADER}: bad item {item!r} (use none, start, blocks, end, every=N)"
            )
    return Pings(**found)


@dataclass(slots=True)
class _Block:
    kind: str  # "thinking", "text" or "tool_use"
    pieces: list[str]  # words (thinking, text) or input JSON fragments (tool_use)
    id: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    signature: str = ""

    @property
    def used(self) -> int:
        return len(self.pieces) + (self.kind == "tool_use")


@dataclass(slots=True)
class _Answer:
    blocks: list[_Block]
    stop_reason: str
    stop_sequence: str | None = None

    @property
    def used(self) -> int:
        return sum(b.used for b in self.blocks)


# -- errors and checks -------------------------------------------------------------------------


def error_reply(status: int, message: str, code: str | None, ctx: Context) -> Reply:
    """Anthropic's error body: ``{"type": "error", "error": {"type", "message"},
    "request_id"}``, the error type following the status (``code`` is not used)."""
    kind = ERROR_TYPE_BY_STATUS.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    body = {"type": "error", "error": {"type": kind, "message": message},
            "request_id": ctx.request_id}  # fmt: skip
    return _request_id(json_reply(status, body, ctx), ctx)


def _request_id(reply: Reply, ctx: Context) -> Reply:
    """Anthropic names the header ``request-id``."""
    reply.headers = [(k, v) for k, v in reply.headers if k != "x-request-id"]
    reply.headers.append(("request-id", ctx.request_id))
    return reply


def _authorize(req: Request, ctx: Context) -> None:
    if ctx.api_key is None:
        return
    key = req.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise RequestError(401, "x-api-key header is required")
    if key != ctx.api_key:
        raise RequestError(401, "invalid x-api-key")


# -- the answer --------------------------------------------------------------------------------


def turn(body: Any) -> Turn | None:
    """Where the conversation of a (not yet checked) request body stands."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return None
    user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    content = user[-1].get("content") if user else ""
    parts = [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []
    result = any(part.get("type") == "tool_result" for part in parts)
    if result:  # the text of the tool results (and of any text block beside them)
        content = [
            *parts,
            *(
                {"text": message_text(p.get("content"))}
                for p in parts
                if p.get("type") == "tool_result"
            ),
        ]
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    names = frozenset(
        t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)
    )
    return Turn(message_text(content), names, result)


def _input_tokens(body: Mapping[str, Any]) -> int:
    system = body.get("system")
    words = len(message_text(system).split()) if system else 0
    return words + sum(len(message_text(m["content"]).split()) for m in body["messages"])


def thinking_text(prompt: str) -> str:
    return (
        f"The user wrote: {prompt.strip() or '(nothing)'} I will answer that directly, "
        "in the words the reference server always uses."
    )


def _signature(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest() * 3).decode()


def _tool_called(body: Mapping[str, Any], now: Turn) -> tuple[Mapping[str, Any] | None, bool]:
    """The tool to call (None: answer in text) and whether a text preamble goes first."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice["type"] == "none" or (choice["type"] == "auto" and now.tool_result):
        return None, False
    name = (
        choice["name"]
        if choice["type"] == "tool"
        else named_tool([t["name"] for t in tools], question(body["messages"]))
    )
    return next(t for t in tools if t["name"] == name), choice["type"] == "auto"


def _generate(body: Mapping[str, Any], scripted: Scripted | None) -> _Answer:
    if scripted is not None:
        thinking = tokens_of(scripted.reasoning) if scripted.reasoning else []
        text = tokens_of(scripted.text) if scripted.text else []
        calls = [(c.name, c.arguments) for c in scripted.tool_calls]
        return _planned(body, thinking, text, calls)
    now = turn(body)
    assert now is not None  # a checked body has messages
    prompt = question(body["messages"])
    enabled = (body.get("thinking") or {}).get("type") == "enabled"
    thinking = tokens_of(thinking_text(prompt)) if enabled else []
    tool, preamble = _tool_called(body, now)
    if tool is None:
        return _planned(body, thinking, tokens_of(answer_text(prompt)), [])
    text = tokens_of(f"I will call {tool['name']} for this.") if preamble else []
    return _planned(body, thinking, text, [(tool["name"], instance_for(tool.get("input_schema")))])


def _planned(
    body: Mapping[str, Any],
    thinking: list[str],
    text: list[str],
    calls: list[tuple[str, Mapping[str, Any]]],
) -> _Answer:
    """The blocks of these parts in order, cut at a stop sequence (in the text) or at
    ``max_tokens`` (anywhere)."""
    budget = body["max_tokens"]
    blocks: list[_Block] = []

    def words(kind: str, tokens: list[str]) -> bool:
        """Add a block of these words; False when max_tokens cut it (or left no room)."""
        nonlocal budget
        if not tokens:
            return True
        if budget < 1:
            return False
        taken = tokens[:budget]
        budget -= len(taken)
        block = _Block(kind, taken)
        if kind == "thinking":
            block.signature = _signature("".join(taken))
        blocks.append(block)
        return len(taken) == len(tokens)

    if not words("thinking", thinking):
        return _Answer(blocks, "max_tokens")
    text, matched = cut_at_stop(text, body.get("stop_sequences") or [])
    if not words("text", text):
        return _Answer(blocks, "max_tokens")
    if matched is not None:
        return _Answer(blocks, "stop_sequence", matched)
    for name, arguments in calls:
        if budget < 1:
            return _Answer(blocks, "max_tokens")
        pieces = split_pieces(json.dumps(arguments), INPUT_PIECE_CHARS)
        budget -= 1
        taken = pieces[:budget]
        budget -= len(taken)
        blocks.append(_Block("tool_use", taken, new_id("toolu_"), name, dict(arguments)))
        if len(taken) < len(pieces):
            return _Answer(blocks, "max_tokens")
    return _Answer(blocks, "tool_use" if calls else "end_turn")


# -- writing it out ----------------------------------------------------------------------------


def _usage(body: Mapping[str, Any], output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": _input_tokens(body),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _block_start(block: _Block) -> dict[str, Any]:
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if block.kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
    return {"type": "text", "text": ""}


def _delta(index: int, kind: str, value: str) -> dict[str, Any]:
    field_name = "signature" if kind == "signature_delta" else _CONTENT_FIELDS[kind]
    return {"type": "content_block_delta", "index": index,
            "delta": {"type": kind, field_name: value}}  # fmt: skip


def _joined(pieces: list[str], per_chunk: int) -> Iterator[str]:
    for i in range(0, len(pieces), per_chunk):
        yield "".join(pieces[i : i + per_chunk])


def _stream(
    body: Mapping[str, Any], answer: _Answer, usage: dict[str, int], per_chunk: int, pings: Pings
) -> list[Any]:
    """The stream as event dicts, in sending order."""
    start_usage = {**usage, "output_tokens": min(1, usage["output_tokens"])}
    message = {"id": new_id("msg_"), "type": "message", "role": "assistant", "content": [],
               "model": body["model"], "stop_reason": None, "stop_sequence": None,
               "usage": start_usage}  # fmt: skip
    items: list[Any] = [{"type": "message_start", "message": message}]
    deltas = 0
    for i, block in enumerate(answer.blocks):
        if i and pings.blocks:
            items.append(PING)
        items.append({"type": "content_block_start", "index": i,
                      "content_block": _block_start(block)})  # fmt: skip
        if i == 0 and pings.start:
            items.append(PING)
        kind = {"thinking": "thinking_delta", "text": "text_delta"}.get(block.kind)
        if kind is None:
            kind = "input_json_delta"
            items.append(_delta(i, kind, ""))
        for piece in _joined(block.pieces, per_chunk):
            items.append(_delta(i, kind, piece))
            deltas += 1
            if pings.every and deltas % pings.every == 0:
                items.append(PING)
        if block.kind == "thinking":
            items.append(_delta(i, "signature_delta", block.signature))
        items.append({"type": "content_block_stop", "index": i})
    if pings.end:
        items.append(PING)
    items.append({"type": "message_delta",
                  "delta": {"stop_reason": answer.stop_reason,
                            "stop_sequence": answer.stop_sequence},
                  "usage": {"output_tokens": usage["output_tokens"]}})  # fmt: skip
    items.append({"type": "message_stop"})
    return items


def is_content(item: Any) -> bool:
    """A delta that carries content (text, thinking or a non-empty input fragment); a
    :class:`Raw` event is judged by its data when that is JSON."""
    if isinstance(item, Raw):
        try:
            item = orjson.loads(item.data)
        except orjson.JSONDecodeError:
            return False
    if not isinstance(item, dict) or item.get("type") != "content_block_delta":
        return False
    delta = item.get("delta")
    name = _CONTENT_FIELDS.get(delta.get("type")) if isinstance(delta, dict) else None
    return name is not None and bool(delta.get(name))


def ticks_of(items: list[Any]) -> list[int]:
    """Gap slots: only content deltas (:func:`is_content`) take a gap."""
    return content_ticks(items, is_content)


def _serialise(item: Any) -> bytes:
    if isinstance(item, Raw):
        return sse_event(item.data, None if item.name is None else item.name.encode())
    return sse_event(orjson.dumps(item), str(item["type"]).encode())


def _message(body: Mapping[str, Any], answer: _Answer, usage: dict[str, int]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for block in answer.blocks:
        text = "".join(block.pieces)
        if block.kind == "thinking":
            content.append({"type": "thinking", "thinking": text, "signature": block.signature})
        elif block.kind == "tool_use":
            full = answer.stop_reason != "max_tokens" or block is not answer.blocks[-1]
            content.append({"type": "tool_use", "id": block.id, "name": block.name,
                            "input": block.input if full else {}})  # fmt: skip
        else:
            content.append({"type": "text", "text": text})
    return {"id": new_id("msg_"), "type": "message", "role": "assistant",
            "model": body["model"], "content": content, "stop_reason": answer.stop_reason,
            "stop_sequence": answer.stop_sequence, "usage": usage}  # fmt: skip


def messages(req: Request, ctx: Context) -> Reply:
    try:
        _authorize(req, ctx)
        body = checked_request(req)
        pings = parse_pings(req.headers.get(PINGS_HEADER))
    except RequestError as exc:
        return error_reply(exc.status, exc.message, exc.code, ctx)
    answer = _generate(body, ctx.scripted)
    usage = _usage(body, answer.used)
    if ctx.scripted is not None:
        for key in ("input_tokens", "output_tokens"):
            if (given := getattr(ctx.scripted, key)) is not None:
                usage[key] = given
    if not body.get("stream"):
        return _request_id(json_reply(200, _message(body, answer, usage), ctx), ctx)
    items = ctx.faults.chunks(
        _stream(body, answer, usage, ctx.timing.tokens_per_chunk, pings), StreamInfo(body, usage)
    )
    reply = _request_id(stream_reply([_serialise(item) for item in items], ctx), ctx)
    reply.ticks = ticks_of(items)
    return reply


def count_tokens(req: Request, ctx: Context) -> Reply:
    """``POST /v1/messages/count_tokens``: the input tokens a message would start with."""
    try:
        _authorize(req, ctx)
        body = checked_request(req, counting=True)
    except RequestError as exc:
        return error_reply(exc.status, exc.message, exc.code, ctx)
    return _request_id(json_reply(200, {"input_tokens": _input_tokens(body)}, ctx), ctx)


API: Final = Api(
    "anthropic",
    {"/v1/messages": {"POST": messages}, "/v1/messages/count_tokens": {"POST": count_tokens}},
    error_reply,
    turn,
    prefixes=("/v1/messages", "/v1/complete"),
    headers=("anthropic-version", "x-api-key"),
)
