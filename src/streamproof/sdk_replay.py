"""The ``sdk.*`` rules: replay a captured body through the official SDK and compare.

The same bytes the suite validated are served to the real ``openai`` / ``anthropic`` client
through a mock transport, so the comparison is exact even against a non-deterministic model:
where the SDK rebuilds a different message than the suite's accumulator (or raises), real
clients see something other than what the server meant.
"""

from __future__ import annotations

import importlib
import traceback
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx2

from .capture import Capture
from .findings import Finding, excerpt

__all__ = [
    "anthropic_normalized",
    "compare_with_sdk",
    "describe",
    "openai_normalized",
    "responses_normalized",
    "sdk_final",
    "sdk_message",
]

_HOP_HEADERS = {"content-length", "transfer-encoding", "content-encoding", "connection"}
_REPLAY_KEY = "sk-streamproof-replay"


def _transport(cap: Capture) -> httpx2.MockTransport:
    headers = [(k, v) for k, v in cap.response_headers if k.lower() not in _HOP_HEADERS]

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(cap.status or 200, headers=headers, content=cap.body)

    return httpx2.MockTransport(handler)


def _openai_final(cap: Capture, request: Mapping[str, Any]) -> Any:
    """``client.chat.completions.stream(...)``, the SDK's own streaming helper (it skips
    chunks whose object is not ``chat.completion.chunk``), read to the end.

    The snapshot is read rather than ``get_final_completion()``, which raises on a
    ``length`` finish by design (it wants to parse structured output).
    """
    kwargs = {k: v for k, v in request.items() if k != "stream"}
    with httpx2.Client(transport=_transport(cap)) as http:
        client = _openai_client(http)
        with client.chat.completions.stream(**kwargs) as stream:
            for _ in stream:
                pass
            return stream.current_completion_snapshot


def _openai_client(http: httpx2.Client) -> Any:
    """The official openai client, reading the captured body from ``http``."""
    import openai

    return openai.OpenAI(
        api_key=_REPLAY_KEY, base_url="http://replay.invalid/v1", http_client=http, max_retries=0
    )


def openai_normalized(final: Any) -> dict[str, Any]:
    """A ChatCompletion (or the stream state's snapshot) in the accumulator's shape."""
    choices = []
    for choice in sorted(final.choices, key=lambda c: c.index):
        msg = choice.message
        calls = [
            {
                "index": k,
                "id": call.id,
                "type": call.type,
                "name": call.function.name,
                "arguments": call.function.arguments,
            }
            for k, call in enumerate(msg.tool_calls or [])
        ]
        choices.append(
            {
                "index": choice.index,
                "role": msg.role,
                "content": msg.content,
                "refusal": msg.refusal,
                "tool_calls": calls,
                "finish_reason": choice.finish_reason,
            }
        )
    usage = None
    if final.usage is not None:
        usage = {
            "prompt_tokens": final.usage.prompt_tokens,
            "completion_tokens": final.usage.completion_tokens,
            "total_tokens": final.usage.total_tokens,
        }
    return {"choices": choices, "usage": usage}


def _openai_comparable(message: Mapping[str, Any]) -> dict[str, Any]:
    """Only what both sides define: tool-call positions are renumbered in order."""
    choices = []
    for choice in message.get("choices", []):
        calls = [{**call, "index": k} for k, call in enumerate(choice.get("tool_calls") or [])]
        choices.append({**choice, "tool_calls": calls})
    return {"choices": choices, "usage": message.get("usage")}


def _anthropic_final(cap: Capture, request: Mapping[str, Any]) -> Any:
    import anthropic

    kwargs = {k: v for k, v in request.items() if k != "stream"}
    with httpx2.Client(transport=_transport(cap)) as http:
        client = anthropic.Anthropic(
            api_key=_REPLAY_KEY,
            base_url="http://replay.invalid",
            http_client=http,
            max_retries=0,
        )
        with client.messages.stream(**kwargs) as stream:
            for _ in stream:
                pass
            return stream.get_final_message()


def anthropic_normalized(final: Any) -> dict[str, Any]:
    """An SDK Message in the accumulator's shape."""
    blocks: list[dict[str, Any]] = []
    for block in final.content:
        raw = block.model_dump(exclude_none=False)
        kind = raw.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": raw.get("text")})
        elif kind == "thinking":
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": raw.get("thinking"),
                    "signature": raw.get("signature"),
                }
            )
        elif kind == "redacted_thinking":
            blocks.append({"type": "redacted_thinking", "data": raw.get("data")})
        elif kind in ("tool_use", "server_tool_use"):
            blocks.append(
                {
                    "type": kind,
                    "id": raw.get("id"),
                    "name": raw.get("name"),
                    "input": raw.get("input"),
                }
            )
        else:
            blocks.append({"type": kind})
    return {
        "id": final.id,
        "model": final.model,
        "role": final.role,
        "content": blocks,
        "stop_reason": final.stop_reason,
        "stop_sequence": final.stop_sequence,
        "usage": {
            "input_tokens": final.usage.input_tokens,
            "output_tokens": final.usage.output_tokens,
        },
    }


def _anthropic_comparable(message: Mapping[str, Any]) -> dict[str, Any]:
    blocks = []
    for block in message.get("content", []):
        if block.get("type") in (
            "text",
            "thinking",
            "redacted_thinking",
            "tool_use",
            "server_tool_use",
        ):
            blocks.append(dict(block))
        else:
            blocks.append({"type": block.get("type")})
    return {**message, "content": blocks}


def _responses_final(cap: Capture, request: Mapping[str, Any]) -> Any:
    """``client.responses.stream(...)``, the SDK's own streaming helper, read to the end: its
    ``get_final_response()`` after response.completed; the response of the terminal event it
    yields after response.incomplete or .failed (where ``get_final_response()`` raises by
    design)."""
    kwargs = {k: v for k, v in request.items() if k != "stream"}
    with httpx2.Client(transport=_transport(cap)) as http:
        client = _openai_client(http)
        # the SDK's own re-serialisation warns on item types its unions do not know
        with warnings.catch_warnings(), client.responses.stream(**kwargs) as stream:
            warnings.simplefilter("ignore")
            last = None
            for event in stream:
                if event.type in ("response.incomplete", "response.failed"):
                    last = event.response
            return last if last is not None else stream.get_final_response()


def responses_normalized(final: Any) -> dict[str, Any]:
    """A Response in the shape of the model's ``message()``."""
    from .validators.responses_output import normalized_item

    raw = final.model_dump(mode="json", warnings=False)
    usage = raw.get("usage")
    return {
        "id": raw.get("id"),
        "status": raw.get("status"),
        "output": [normalized_item(item) for item in raw.get("output") or []],
        "usage": None
        if usage is None
        else {k: usage.get(k) for k in ("input_tokens", "output_tokens", "total_tokens")},
    }


# per API: the SDK's own final object, its normalised form, and what of it is compared
_SDK: dict[str, tuple[Callable[..., Any], Callable[..., dict[str, Any]], Callable[..., Any]]] = {
    "openai": (_openai_final, openai_normalized, _openai_comparable),
    "anthropic": (_anthropic_final, anthropic_normalized, _anthropic_comparable),
    "responses": (_responses_final, responses_normalized, dict),
}
# the package whose APIError a well-formed mid-stream error raises
_PACKAGE = {"openai": "openai", "anthropic": "anthropic", "responses": "openai"}


def sdk_final(api: str, cap: Capture, request: Mapping[str, Any]) -> Any:
    """The official SDK's own final object for the captured body (a ChatCompletion
    snapshot, a Message); it may raise."""
    return _SDK[api][0](cap, request)


def sdk_message(api: str, cap: Capture, request: Mapping[str, Any]) -> dict[str, Any]:
    """What the official SDK rebuilds from the captured body, normalised (it may raise)."""
    final, normalized, _ = _SDK[api]
    return normalized(final(cap, request))


def compare_with_sdk(
    api: str,
    cap: Capture,
    request: Mapping[str, Any],
    ours: Mapping[str, Any],
    *,
    ended_by_error: bool = False,
) -> list[Finding]:
    """A ``sdk.{api}-accumulate`` finding when the SDK fails or rebuilds something else.

    When a well-formed mid-stream error ended the stream, the SDK raising that error as its
    own ``APIError`` is the right behaviour, not a finding.
    """
    rule_id = f"sdk.{api}-accumulate"
    comparable = _SDK[api][2]
    try:
        theirs = comparable(sdk_message(api, cap, request))
    except Exception as exc:  # the SDK's own failure is the finding
        if ended_by_error and isinstance(exc, importlib.import_module(_PACKAGE[api]).APIError):
            return []
        sdk = _PACKAGE[api]
        return [Finding(rule_id, f"the official {sdk} SDK failed on this stream: {describe(exc)}")]
    mine = comparable(ours)
    diff = _first_difference(mine, theirs)
    if diff is None:
        return []
    path, a, b = diff
    return [
        Finding(
            rule_id,
            f"the official {_PACKAGE[api]} SDK rebuilds a different message at {path}: "
            f"suite {excerpt(repr(a), 80)} vs SDK {excerpt(repr(b), 80)}",
        )
    ]


def describe(exc: BaseException) -> str:
    """An exception as one line a person can act on: its type and text, and where it was
    raised (an ``AssertionError`` deep in an SDK often has no text at all)."""
    text = excerpt(str(exc).strip(), 200)
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return f"{type(exc).__name__}: {text}" if text else repr(exc)
    frame = frames[-1]
    parts = Path(frame.filename).parts
    short = "/".join(parts[-3:]) if len(parts) >= 3 else frame.filename
    where = f"{short}:{frame.lineno} in {frame.name}"
    if text:
        return f"{type(exc).__name__}: {text} (at {where})"
    code = f": `{excerpt(frame.line, 120)}`" if frame.line else ""
    return f"{type(exc).__name__} with no message, raised at {where}{code}"


def _first_difference(a: Any, b: Any, path: str = "message") -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return (f"{path} (length)", len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else (path, a, b)
