"""What Anthropic's ``POST /v1/messages`` (and ``/v1/messages/count_tokens``) refuses.

Anthropic answers a bad request with 400 ``invalid_request_error`` and a message that names
the field as a dotted path (``messages.0.content.1.tool_use_id: Field required``), in the
wording of its request validation (pydantic's: "Input should be ...", "Field required"); it has
no ``param`` field. Sources: the Messages API reference (docs.anthropic.com/en/api/messages:
roles, content block types, ``temperature``/``top_p`` in 0..1, ``top_k`` ≥ 0, ``max_tokens`` ≥
1, tool results answering the previous turn's ``tool_use`` blocks) and error bodies as quoted in
public reports. The first problem found is the one reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn

import orjson

from .endpoint import MODELS, Request, RequestError

__all__ = ["THINKING_BUDGET_MIN", "checked_request"]

THINKING_BUDGET_MIN: Final = 1024
MAX_STOPS: Final = 64  # not documented; generous, so no real client meets it
ROLES: Final = ("user", "assistant")
BLOCK_TYPES: Final = (
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
)
TOOL_CHOICES: Final = ("auto", "any", "tool", "none")
# (parameter, least, most, integer): the numeric sampling parameters and their ranges
NUMBERS: Final = (("temperature", 0, 1, False), ("top_p", 0, 1, False), ("top_k", 0, None, True))


def checked_request(req: Request, *, counting: bool = False) -> dict[str, Any]:
    """The request body, or a :class:`RequestError` for its first problem. ``counting``: a
    ``count_tokens`` request (no ``max_tokens``, no sampling parameters)."""
    if not req.headers.get("anthropic-version", "").strip():
        _invalid("anthropic-version: header is required")
    try:
        body = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        _invalid("The request body must be a JSON object")
    for key in ("model", "messages") if counting else ("model", "max_tokens", "messages"):
        if key not in body:
            _invalid(f"{key}: Field required")
    if not isinstance(body["model"], str):
        _invalid("model: Input should be a valid string")
    if not counting:
        limit = body["max_tokens"]
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            _invalid("max_tokens: Input should be an integer greater than or equal to 1")
        _check_numbers(body)
        if not isinstance(body.get("stream", False), bool):
            _invalid("stream: Input should be a valid boolean")
        _check_stops(body.get("stop_sequences"))
    _check_messages(body["messages"])
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        _invalid("system: Input should be a valid string or list of text blocks")
    _check_tools(body)
    _check_thinking(body, counting)
    if body["model"] not in MODELS:
        raise RequestError(404, f"model: {body['model']}")
    return body


def _invalid(message: str) -> NoReturn:
    raise RequestError(400, message)


def _check_numbers(body: Mapping[str, Any]) -> None:
    for name, least, most, integer in NUMBERS:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            _invalid(f"{name}: Input should be a valid {'integer' if integer else 'number'}")
        if integer and not isinstance(value, int):
            _invalid(f"{name}: Input should be a valid integer")
        if value < least:
            _invalid(f"{name}: Input should be greater than or equal to {least}")
        if most is not None and value > most:
            _invalid(f"{name}: Input should be less than or equal to {most}")


def _check_stops(stops: Any) -> None:
    if stops is not None and not (
        isinstance(stops, list)
        and len(stops) <= MAX_STOPS
        and all(isinstance(s, str) for s in stops)
    ):
        _invalid(f"stop_sequences: Input should be a list of at most {MAX_STOPS} strings")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        _invalid("messages: Input should be a valid list")
    if not messages:
        _invalid("messages: at least one message is required")
    uses: set[str] = set()  # tool_use ids of the previous assistant turn
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            _invalid(f"messages.{i}: Input should be a valid dictionary")
        if "role" not in message:
            _invalid(f"messages.{i}.role: Field required")
        if message["role"] not in ROLES:
            _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            _invalid(f"messages.{i}.content: Field required")
        content = message["content"]
        if isinstance(content, str):
            uses = set()
            continue
        if not isinstance(content, list):
            _invalid(f"messages.{i}.content: Input should be a valid list")
        results = [
            _check_block(block, f"messages.{i}.content.{j}") for j, block in enumerate(content)
        ]
        if message["role"] == "user":
            stray = [r for r in results if r is not None and r not in uses]
            if stray:
                _invalid(
                    f"messages.{i}.content.0: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {', '.join(stray)}. Each `tool_result` block "
                    "must have a corresponding `tool_use` block in the previous message."
                )
            uses = set()
        else:
            uses = {b["id"] for b in content if b.get("type") == "tool_use"}


def _check_block(block: Any, at: str) -> str | None:
    """Check one content block; returns the ``tool_use_id`` of a ``tool_result``."""
    if not isinstance(block, dict):
        _invalid(f"{at}: Input should be a valid dictionary or object to extract fields from")
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        expected = ", ".join(f"'{t}'" for t in BLOCK_TYPES)
        if kind is None:
            _invalid(f"{at}: Unable to extract tag using discriminator 'type'")
        _invalid(
            f"{at}: Input tag '{kind}' found using 'type' does not match any of the "
            f"expected tags: {expected}"
        )
    required = {
        "text": ("text",),
        "image": ("source",),
        "document": ("source",),
        "tool_use": ("id", "name", "input"),
        "tool_result": ("tool_use_id",),
        "thinking": ("thinking", "signature"),
        "redacted_thinking": ("data",),
    }[kind]
    for key in required:
        if key not in block:
            _invalid(f"{at}.{kind}.{key}: Field required")
    if kind == "text" and not isinstance(block["text"], str):
        _invalid(f"{at}.text.text: Input should be a valid string")
    if kind == "tool_use" and not isinstance(block["input"], dict):
        _invalid(f"{at}.tool_use.input: Input should be a valid dictionary")
    return block["tool_use_id"] if kind == "tool_result" else None


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
    if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES:
        _invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if choice["type"] in ("any", "tool") and not names:
        _invalid(f"tool_choice: {choice['type']!r} needs tools")
    if choice["type"] == "tool" and choice.get("name") not in names:
        _invalid(f"tool_choice.name: {choice.get('name')!r} is not one of the tools")


def _check_thinking(body: Mapping[str, Any], counting: bool) -> None:
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
    if not counting and budget >= body["max_tokens"]:
        _invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        _invalid("Thinking may not be enabled when tool_choice forces tool use.")
