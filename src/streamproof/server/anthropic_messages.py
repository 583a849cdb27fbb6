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
tool: that one; ``any`` / ``auto``: the first tool, after a one-sentence text block for
``auto``) with stop reason ``tool_use`` — unless the last user turn holds a ``tool_result``,
which is answered in text. A word is a token; a tool call costs one token for its head plus
one per 6-character input fragment; thinking words count too, so ``max_tokens`` cuts anywhere.
The ``x-streamproof-pings`` header moves the pings (:func:`parse_pings`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import orjson

from ..validators.anthropic_messages import ERROR_TYPE_BY_STATUS
from .endpoint import (
    MODELS,
    Api,
    Context,
    Reply,
    Request,
    RequestError,
    StreamInfo,
    json_reply,
    new_id,
    sse_event,
    stream_reply,
)
from .text import answer_text, arguments_for, cut_at_stop, message_text, split_pieces, tokens_of

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
THINKING_BUDGET_MIN: Final = 1024
_MAX_STOPS: Final = 64
_ROLES: Final = ("user", "assistant")
_TOOL_CHOICES: Final = ("auto", "any", "tool", "none")
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


def _invalid(message: str) -> None:
    raise RequestError(400, message)


def _checked(req: Request) -> dict[str, Any]:
    """The request body, or a RequestError naming the first problem."""
    if not req.headers.get("anthropic-version", "").strip():
        _invalid("anthropic-version: header is required")
    try:
        body = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        _invalid("The request body must be a JSON object")
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            _invalid(f"{key}: Field required")
    if not isinstance(body["model"], str):
        _invalid("model: Input should be a valid string")
    limit = body["max_tokens"]
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        _invalid("max_tokens: Input should be an integer greater than or equal to 1")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        _invalid("messages: at least one message is required")
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and m.get("role") in _ROLES):
            _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if not isinstance(m.get("content"), str | list):
            _invalid(f"messages.{i}.content: Input should be a valid string or list")
    if not isinstance(body.get("stream", False), bool):
        _invalid("stream: Input should be a valid boolean")
    stops = body.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list)
        and len(stops) <= _MAX_STOPS
        and all(isinstance(s, str) for s in stops)
    ):
        _invalid(f"stop_sequences: Input should be a list of at most {_MAX_STOPS} strings")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        _invalid("system: Input should be a valid string or list of text blocks")
    _check_tools(body)
    _check_thinking(body)
    if body["model"] not in MODELS:
        raise RequestError(404, f"model: {body['model']}")
    return body


def _check_tools(body: Mapping[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None and not (
        isinstance(tools, list)
        and all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools)
    ):
        _invalid("tools: Input should be a list of tools with a name")
    names = [t["name"] for t in tools or []]
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        _invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if choice["type"] in ("any", "tool") and not names:
        _invalid(f"tool_choice: {choice['type']!r} needs tools")
    if choice["type"] == "tool" and choice.get("name") not in names:
        _invalid(f"tool_choice.name: {choice.get('name')!r} is not one of the tools")


def _check_thinking(body: Mapping[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
        _invalid("thinking.type: Input should be 'enabled' or 'disabled'")
    if thinking["type"] == "disabled":
        return
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < THINKING_BUDGET_MIN:
        _invalid(f"thinking.budget_tokens: Input should be >= {THINKING_BUDGET_MIN}")
    if budget >= body["max_tokens"]:
        _invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        _invalid("Thinking may not be enabled when tool_choice forces tool use.")


# -- the answer --------------------------------------------------------------------------------


def _prompt(body: Mapping[str, Any]) -> tuple[str, bool]:
    """The text of the last user turn, and whether that turn returns a tool result."""
    user = [m for m in body["messages"] if m["role"] == "user"]
    content = user[-1]["content"] if user else ""
    result = isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") == "tool_result" for part in content
    )
    if result:  # answer the question that led to the tool call
        texts = [message_text(m["content"]) for m in user]
        return next((t for t in reversed(texts) if t), ""), True
    return message_text(content), False


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


def _tool_called(body: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, bool]:
    """The tool to call (None: answer in text) and whether a text preamble goes first."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice["type"] == "none":
        return None, False
    if choice["type"] == "tool":
        return next(t for t in tools if t["name"] == choice["name"]), False
    return tools[0], choice["type"] == "auto"


def _generate(body: Mapping[str, Any]) -> _Answer:
    budget = body["max_tokens"]
    prompt, after_tool = _prompt(body)
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

    thinking = (body.get("thinking") or {}).get("type") == "enabled"
    if thinking and not words("thinking", tokens_of(thinking_text(prompt))):
        return _Answer(blocks, "max_tokens")
    tool, preamble = (None, False) if after_tool else _tool_called(body)
    if tool is not None:
        if preamble and not words("text", tokens_of(f"I will call {tool['name']} for this.")):
            return _Answer(blocks, "max_tokens")
        if budget < 1:
            return _Answer(blocks, "max_tokens")
        arguments = arguments_for(tool.get("input_schema"), 0)
        pieces = split_pieces(json.dumps(arguments), INPUT_PIECE_CHARS)
        budget -= 1
        cut = len(pieces) > budget
        blocks.append(
            _Block("tool_use", pieces[:budget], new_id("toolu_"), tool["name"], arguments)
        )
        return _Answer(blocks, "max_tokens" if cut else "tool_use")
    tokens, matched = cut_at_stop(tokens_of(answer_text(prompt)), body.get("stop_sequences") or [])
    if not words("text", tokens):
        return _Answer(blocks, "max_tokens")
    if matched is not None:
        return _Answer(blocks, "stop_sequence", matched)
    return _Answer(blocks, "end_turn")


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
    """Gap slots: the k-th content delta goes at tick k; any other event with the content
    before it (the events before the first content delta: with it)."""
    ticks = []
    seen = 0
    for item in items:
        if is_content(item):
            ticks.append(seen)
            seen += 1
        else:
            ticks.append(max(0, seen - 1))
    return ticks


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
        body = _checked(req)
        pings = parse_pings(req.headers.get(PINGS_HEADER))
    except RequestError as exc:
        return error_reply(exc.status, exc.message, exc.code, ctx)
    answer = _generate(body)
    usage = _usage(body, answer.used)
    if not body.get("stream"):
        return _request_id(json_reply(200, _message(body, answer, usage), ctx), ctx)
    items = ctx.faults.chunks(
        _stream(body, answer, usage, ctx.timing.tokens_per_chunk, pings), StreamInfo(body, usage)
    )
    reply = _request_id(stream_reply([_serialise(item) for item in items], ctx), ctx)
    reply.ticks = ticks_of(items)
    return reply


API: Final = Api("anthropic", {"/v1/messages": {"POST": messages}}, error_reply)
