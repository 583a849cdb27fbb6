"""OpenAI ``POST /v1/chat/completions`` (streaming and not) and ``GET /v1/models``.

The answer is generated first as a list of choices (tokens or tool calls, and a finish
reason each), then written out as the stream a conforming server sends: per choice a role
delta first, content (or one tool call after another: head fragment with id, type, name and
``arguments: ""``, then argument fragments), an empty-delta finish chunk; choices
interleaved chunk by chunk; with ``include_usage`` one ``choices: []`` usage chunk; then
``[DONE]``. Chunk-level faults edit that list of chunk dicts before it is serialised.

Deterministic choices worth knowing: with ``tools`` and ``tool_choice`` other than
``"none"`` the answer is always tool calls (a forced function: that one call; otherwise one
call per tool, or only the first with ``parallel_tool_calls: false``). A tool call costs one
token for its head plus one per 6-character argument fragment, so ``max_tokens`` can cut it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import orjson

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
from .text import (
    answer_text,
    arguments_for,
    cut_at_stop,
    message_text,
    prompt_tokens,
    split_pieces,
    tokens_of,
)

__all__ = ["API", "DONE", "error_reply"]

DONE: Final = b"[DONE]"
FINGERPRINT: Final = "fp_streamproof"
ARG_PIECE_CHARS: Final = 6
_MAX_N: Final = 128
_MAX_STOPS: Final = 4
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

    @property
    def used(self) -> int:
        """Completion tokens: words, plus per tool call its head and argument fragments."""
        return len(self.tokens) + sum(1 + len(c.pieces) for c in self.calls)


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
        body = _checked(req.body)
    except RequestError as exc:
        return error_reply(exc.status, exc.message, exc.code, ctx, param=exc.param)
    choices = _generate(body)
    prompt = prompt_tokens(body["messages"])
    completion = sum(c.used for c in choices)
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


def _checked(raw: bytes) -> dict[str, Any]:
    """The request body, or a RequestError naming the first problem (as OpenAI words it)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)",
        ) from None
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    for key in ("model", "messages"):
        if key not in body:
            raise RequestError(
                400,
                f"Missing required parameter: '{key}'.",
                param=key,
                code="missing_required_parameter",
            )
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        _invalid("messages", "a non-empty array of messages")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        _invalid("messages", "an array of objects with a string 'role'")
    if not isinstance(body["model"], str):
        _invalid("model", "a string")
    _check_int(body, "n", _MAX_N)
    _check_int(body, "max_tokens")
    _check_int(body, "max_completion_tokens")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not (isinstance(stop, list) and len(stop) <= _MAX_STOPS):
            _invalid("stop", f"a string or an array of at most {_MAX_STOPS} strings")
        if not all(isinstance(s, str) for s in stop):
            _invalid("stop", "a string or an array of strings")
    if body.get("stream_options") is not None:
        if not body.get("stream"):
            raise RequestError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        if not isinstance(body["stream_options"], dict):
            _invalid("stream_options", "an object")
    _check_tools(body)
    if body["model"] not in MODELS:
        raise RequestError(
            404,
            f"The model `{body['model']}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return body


def _check_int(body: Mapping[str, Any], key: str, most: int = 10**6) -> None:
    value = body.get(key)
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most
    ):
        _invalid(key, f"an integer from 1 to {most}")


def _check_tools(body: Mapping[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        names: list[str] = []
    elif isinstance(tools, list) and all(
        isinstance(t, dict)
        and t.get("type") == "function"
        and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
        for t in tools
    ):
        names = [t["function"]["name"] for t in tools]
    else:
        _invalid("tools", "an array of {'type': 'function', 'function': {'name': ...}} objects")
    choice = body.get("tool_choice")
    if choice is None or choice in ("none", "auto"):
        return
    if choice == "required":
        if not names:
            _invalid("tool_choice", "'none' when no tools are given")
        return
    forced = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(forced, dict) or forced.get("name") not in names:
        _invalid("tool_choice", "'none', 'auto', 'required' or a function named in 'tools'")


def _invalid(param: str, expected: str) -> None:
    raise RequestError(
        400, f"Invalid value for '{param}': expected {expected}.", param=param, code="invalid_value"
    )


def _generate(body: Mapping[str, Any]) -> list[_Choice]:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    functions = _functions_called(body)
    user = [m for m in body["messages"] if m.get("role") == "user"]
    prompt = message_text(user[-1].get("content")) if user else ""
    stop = body.get("stop") or []
    stops = [stop] if isinstance(stop, str) else stop
    out = []
    for k in range(body.get("n") or 1):
        if functions:
            out.append(_calls_choice(k, functions, limit))
            continue
        tokens, _ = cut_at_stop(tokens_of(answer_text(prompt, k)), stops)
        finish = "stop"
        if limit is not None and len(tokens) > limit:
            tokens, finish = tokens[:limit], "length"
        out.append(_Choice(k, tokens, [], finish))
    return out


def _functions_called(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or "auto"
    if not tools or choice == "none":
        return []
    functions = [t["function"] for t in tools]
    if isinstance(choice, dict):
        return [f for f in functions if f["name"] == choice["function"]["name"]][:1]
    return functions if body.get("parallel_tool_calls") is not False else functions[:1]


def _calls_choice(index: int, functions: list[Mapping[str, Any]], limit: int | None) -> _Choice:
    budget = limit if limit is not None else len(functions) * 10**6
    calls: list[_Call] = []
    finish = "tool_calls"
    for j, function in enumerate(functions):
        if budget < 1:
            finish = "length"
            break
        arguments = json.dumps(arguments_for(function.get("parameters"), j))
        pieces = split_pieces(arguments, ARG_PIECE_CHARS)
        budget -= 1
        if len(pieces) > budget:
            pieces, finish = pieces[:budget], "length"
        budget -= len(pieces)
        calls.append(_Call(new_id("call_"), function["name"], pieces))
    return _Choice(index, [], calls, finish)


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
    if choice.calls:
        yield {"role": "assistant", "content": None}, None
        for j, call in enumerate(choice.calls):
            function = {"name": call.name, "arguments": ""}
            yield {"tool_calls": [{"index": j, "id": call.id, "type": "function",
                                   "function": function}]}, None  # fmt: skip
            for piece in _joined(call.pieces, per_chunk):
                yield {"tool_calls": [{"index": j, "function": {"arguments": piece}}]}, None
    else:
        yield {"role": "assistant", "content": "", "refusal": None}, None
        for text in _joined(choice.tokens, per_chunk):
            yield {"content": text}, None
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
            "content": None if c.calls else "".join(c.tokens),
            "refusal": None,
        }
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
)
