"""OpenAI ``POST /v1/chat/completions`` (streaming and not) and ``GET /v1/models``.

The answer is generated first as a list of choices (tokens or tool calls, and a finish
reason each), then written out as the stream a conforming server sends: per choice a role
delta first, content (or one tool call after another: head fragment with id, type, name and
``arguments: ""``, then argument fragments), an empty-delta finish chunk; choices
interleaved chunk by chunk; with ``include_usage`` one ``choices: []`` usage chunk; then
``[DONE]``. Chunk-level faults edit that list of chunk dicts before it is serialised.

Deterministic choices worth knowing: a forced function (``tool_choice`` naming it) is that
one call; ``required`` calls every tool (only the first with ``parallel_tool_calls:
false``); ``auto`` calls the tool the last user message names (its name, or the name with
spaces for underscores), else the first — unless the conversation ends in a tool result,
which is answered in text (so an agent loop ends). ``response_format`` ``json_object``
answers ``{"answer": ...}``, ``json_schema`` a value generated from the schema
(``instances.py``), streamed in word tokens like any text. A tool call costs one token for its
head plus one per 6-character argument fragment, so ``max_tokens`` can cut it. Requests are
checked as OpenAI checks them (``openai_request.py``); a scripted reply (``script.py``)
replaces the generated answer.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import orjson

from .endpoint import (
    MODELS,
    Api,
    Context,
    Reply,
    Request,
    RequestError,
    StreamInfo,
    Turn,
    json_reply,
    new_id,
    sse_event,
    stream_reply,
)
from .instances import instance_for
from .openai_request import checked_request
from .text import (
    answer_text,
    cut_at_stop,
    message_text,
    named_tool,
    prompt_tokens,
    question,
    split_pieces,
    tokens_of,
)

if TYPE_CHECKING:
    from .script import Scripted

__all__ = ["API", "DONE", "error_reply"]

DONE: Final = b"[DONE]"
FINGERPRINT: Final = "fp_streamproof"
ARG_PIECE_CHARS: Final = 6
_OWNER: Final = "streamproof"


@dataclass(slots=True)
class _Call:
    id: str
    name: str
    pieces: list[str]  # the argument fragments sent (fewer when max_tokens cut the call)


@dataclass(slots=True)
class _Choice:
    index: int
    tokens: list[str]
    calls: list[_Call]
    finish: str
    reasoning: list[str] = field(default_factory=list)  # streamed as reasoning_content

    @property
    def used(self) -> int:
        """Completion tokens: reasoning and answer words, plus per tool call its head and
        argument fragments."""
        calls = sum(1 + len(c.pieces) for c in self.calls)
        return len(self.reasoning) + len(self.tokens) + calls


def error_reply(
    status: int,
    message: str,
    code: str | None,
    ctx: Context,
    *,
    param: str | None = None,
) -> Reply:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {"message": message, "type": kind, "param": param, "code": code}
    return json_reply(status, {"error": error}, ctx)


def chat_completions(req: Request, ctx: Context) -> Reply:
    try:
        _authorize(req, ctx)
        body = checked_request(req.body)
    except RequestError as exc:
        return error_reply(exc.status, exc.message, exc.code, ctx, param=exc.param)
    choices = _generate(body, ctx.scripted)
    prompt = prompt_tokens(body["messages"])
    completion = sum(c.used for c in choices)
    if ctx.scripted is not None:
        prompt = _given(ctx.scripted.input_tokens, prompt)
        completion = _given(ctx.scripted.output_tokens, completion)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if not body.get("stream"):
        return json_reply(200, _completion(body, choices, usage), ctx)
    items = ctx.faults.chunks(
        _chunks(body, choices, usage, ctx.timing.tokens_per_chunk), StreamInfo(body, usage)
    )
    return stream_reply(
        [sse_event(item if isinstance(item, bytes) else orjson.dumps(item)) for item in items],
        ctx,
    )


def list_models(req: Request, ctx: Context) -> Reply:
    """The served models; for either API's client (Bearer or Anthropic's ``x-api-key``)."""
    if req.headers.get("x-api-key") and "authorization" not in req.headers:
        req = replace(
            req, headers={**req.headers, "authorization": f"Bearer {req.headers['x-api-key']}"}
        )
    try:
        _authorize(req, ctx)
    except RequestError as exc:
        return error_reply(exc.status, exc.message, exc.code, ctx, param=exc.param)
    created = int(time.time())
    data = [{"id": m, "object": "model", "created": created, "owned_by": _OWNER} for m in MODELS]
    return json_reply(200, {"object": "list", "data": data}, ctx)


def _authorize(req: Request, ctx: Context) -> None:
    if ctx.api_key is None:
        return
    scheme, _, key = req.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise RequestError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="invalid_api_key",
        )
    if key != ctx.api_key:
        masked = key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 7 else "***"
        raise RequestError(401, f"Incorrect API key provided: {masked}.", code="invalid_api_key")


def turn(body: Any) -> Turn | None:
    """Where the conversation of a (not yet checked) request body stands."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return None
    messages = [m for m in messages if isinstance(m, dict)]
    results = list(itertools.takewhile(lambda m: m.get("role") == "tool", reversed(messages)))
    if results:
        text = " ".join(message_text(m.get("content")) for m in reversed(results))
    else:
        user = [m for m in messages if m.get("role") == "user"]
        text = message_text(user[-1].get("content")) if user else ""
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    names = (t.get("function") for t in tools if isinstance(t, dict))
    return Turn(
        text,
        frozenset(
            f["name"] for f in names if isinstance(f, dict) and isinstance(f.get("name"), str)
        ),
        bool(results),
    )


def _given(value: int | None, counted: int) -> int:
    return counted if value is None else value


def _generate(body: Mapping[str, Any], scripted: Scripted | None) -> list[_Choice]:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    stop = body.get("stop") or []
    stops = [stop] if isinstance(stop, str) else stop
    count = body.get("n") or 1
    if scripted is not None:
        return [_scripted_choice(k, scripted, limit, stops) for k in range(count)]
    now = turn(body)
    assert now is not None  # a checked body has messages
    functions = _functions_called(body, now)
    out = []
    for k in range(count):
        if functions:
            calls = [
                (f["name"], instance_for(f.get("parameters"), j)) for j, f in enumerate(functions)
            ]
            out.append(_choice(k, [], [], calls, limit, stops))
        else:
            out.append(
                _choice(
                    k, [], tokens_of(_answer(body, question(body["messages"]), k)), [], limit, stops
                )
            )
    return out


def _answer(body: Mapping[str, Any], prompt: str, k: int) -> str:
    """The text answer: plain, or in the requested ``response_format``."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        return json.dumps({"answer": answer_text(prompt, k)}, ensure_ascii=False)
    if fmt.get("type") == "json_schema":
        schema = fmt["json_schema"].get("schema", {})
        return json.dumps(instance_for(schema, k), ensure_ascii=False)
    return answer_text(prompt, k)


def _scripted_choice(
    index: int, scripted: Scripted, limit: int | None, stops: list[str]
) -> _Choice:
    reasoning = tokens_of(scripted.reasoning) if scripted.reasoning else []
    tokens = tokens_of(scripted.text) if scripted.text else []
    calls = [(c.name, c.arguments) for c in scripted.tool_calls]
    return _choice(index, reasoning, tokens, calls, limit, stops)


def _choice(
    index: int,
    reasoning: list[str],
    tokens: list[str],
    calls: list[tuple[str, Any]],
    limit: int | None,
    stops: list[str],
) -> _Choice:
    """A choice of these parts, in sending order, cut at a stop sequence (in the text) or at
    ``limit`` tokens (anywhere; finish ``length``)."""
    budget = limit if limit is not None else 10**9
    choice = _Choice(index, [], [], "tool_calls" if calls else "stop")
    choice.reasoning = reasoning[:budget]
    budget -= len(choice.reasoning)
    text, matched = cut_at_stop(tokens, stops)
    choice.tokens = text[: max(budget, 0)]
    budget -= len(choice.tokens)
    if len(choice.reasoning) < len(reasoning) or len(choice.tokens) < len(text):
        choice.finish = "length"
        return choice
    if matched is not None:
        choice.finish = "stop"
        return choice
    for name, arguments in calls:
        if budget < 1:
            choice.finish = "length"
            break
        pieces = split_pieces(json.dumps(arguments), ARG_PIECE_CHARS)
        budget -= 1
        if len(pieces) > budget:
            pieces, choice.finish = pieces[:budget], "length"
        budget -= len(pieces)
        choice.calls.append(_Call(new_id("call_"), name, pieces))
    return choice


def _functions_called(body: Mapping[str, Any], now: Turn) -> list[Mapping[str, Any]]:
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or "auto"
    if not tools or choice == "none":
        return []
    functions = [t["function"] for t in tools]
    if isinstance(choice, dict):
        return [f for f in functions if f["name"] == choice["function"]["name"]][:1]
    if choice == "required":
        return functions if body.get("parallel_tool_calls") is not False else functions[:1]
    if now.tool_result:  # auto, after a tool result: answer in text
        return []
    named = named_tool([f["name"] for f in functions], question(body["messages"]))
    return [next(f for f in functions if f["name"] == named)]


def _chunks(
    body: Mapping[str, Any], choices: list[_Choice], usage: dict[str, int], per_chunk: int
) -> list[Any]:
    """The stream as chunk dicts (and raw payloads: ``[DONE]``), in sending order."""
    env: dict[str, Any] = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": FINGERPRINT,
    }
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if include_usage:
        env["usage"] = None  # as OpenAI sends it: null on every chunk but the usage chunk
    sequences = [list(_deltas(c, per_chunk)) for c in choices]
    items: list[Any] = []
    for step in range(max(map(len, sequences))):
        for choice, sequence in zip(choices, sequences, strict=True):
            if step < len(sequence):
                delta, finish = sequence[step]
                entry = {"index": choice.index, "delta": delta, "logprobs": None,
                         "finish_reason": finish}  # fmt: skip
                items.append({**env, "choices": [entry]})
    if include_usage:
        items.append({**env, "choices": [], "usage": usage})
    items.append(DONE)
    return items


def _deltas(choice: _Choice, per_chunk: int) -> Iterator[tuple[dict[str, Any], str | None]]:
    if choice.calls and not choice.tokens:
        yield {"role": "assistant", "content": None}, None
    else:
        yield {"role": "assistant", "content": "", "refusal": None}, None
    for text in _joined(choice.reasoning, per_chunk):
        yield {"reasoning_content": text}, None
    for text in _joined(choice.tokens, per_chunk):
        yield {"content": text}, None
    for j, call in enumerate(choice.calls):
        function = {"name": call.name, "arguments": ""}
        yield {"tool_calls": [{"index": j, "id": call.id, "type": "function",
                               "function": function}]}, None  # fmt: skip
        for piece in _joined(call.pieces, per_chunk):
            yield {"tool_calls": [{"index": j, "function": {"arguments": piece}}]}, None
    yield {}, choice.finish


def _joined(pieces: list[str], per_chunk: int) -> Iterator[str]:
    for i in range(0, len(pieces), per_chunk):
        yield "".join(pieces[i : i + per_chunk])


def _completion(
    body: Mapping[str, Any], choices: list[_Choice], usage: dict[str, int]
) -> dict[str, Any]:
    out = []
    for c in choices:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(c.tokens) if c.tokens or not c.calls else None,
            "refusal": None,
        }
        if c.reasoning:
            message["reasoning_content"] = "".join(c.reasoning)
        if c.calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": "".join(call.pieces)},
                }
                for call in c.calls
            ]
        out.append(
            {"index": c.index, "message": message, "logprobs": None, "finish_reason": c.finish}
        )
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": out,
        "usage": usage,
        "system_fingerprint": FINGERPRINT,
    }


API: Final = Api(
    "openai",
    {
        "/v1/chat/completions": {"POST": chat_completions},
        "/v1/models": {"GET": list_models},
    },
    error_reply,
    turn,
)
