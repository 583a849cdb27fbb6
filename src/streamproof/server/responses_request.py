"""What OpenAI's ``POST /v1/responses`` refuses, refused the same way.

As for chat completions (``openai_request.py``, whose raising helpers and number check this
module shares): the status (400, or 404 for an unknown model), ``error.param`` (the JSON
path, ``input[2].call_id``), ``error.code`` (``missing_required_parameter``,
``integer_below_min_value``, ``decimal_below_min_value``...) and the wording as the API sends
it. What differs from chat: the conversation is ``input`` (a string, or items: messages whose
parts are ``input_text`` / ``output_text``, ``function_call`` and ``function_call_output``
items tied by ``call_id``), function tools are flat (``{"type": "function", "name"}``: the
nested chat shape is refused as ``Missing required parameter: 'tools[0].name'.``, as the API
refuses it), ``max_output_tokens`` has a floor of 16, and a ``previous_response_id`` is
never found (responses are kept only for ``GET /v1/responses/{id}``, not as conversation
state). Sources: the API reference (platform.openai.com/docs/api-reference/responses/create)
and answers of the API quoted in public bug reports. The first problem found is the one reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn

from .endpoint import MODELS, RequestError
from .openai_request import (
    bad_value,
    check_number,
    check_stream_options,
    invalid,
    json_body,
    missing,
    one_of,
    wrong_type,
)
from .text import message_text

__all__ = ["MIN_OUTPUT_TOKENS", "checked_request", "input_items"]

MIN_OUTPUT_TOKENS: Final = 16
ROLES: Final = ("user", "assistant", "system", "developer")
ITEM_TYPES: Final = (
    "message", "function_call", "function_call_output", "reasoning", "item_reference",
    "custom_tool_call", "custom_tool_call_output", "file_search_call", "web_search_call",
    "computer_call", "computer_call_output", "code_interpreter_call", "image_generation_call",
    "mcp_list_tools", "mcp_approval_request", "mcp_approval_response", "mcp_call",
)  # fmt: skip
# the fields a call and its output must have (an output may be a string or parts)
CALL_FIELDS: Final = {
    "function_call": ("call_id", "name", "arguments"),
    "function_call_output": ("call_id", "output"),
}
INPUT_PARTS: Final = ("input_text", "input_image", "input_file")
OUTPUT_PARTS: Final = ("output_text", "refusal")
FORMATS: Final = ("text", "json_object", "json_schema")
EFFORTS: Final = ("none", "minimal", "low", "medium", "high", "xhigh")
SUMMARIES: Final = ("auto", "concise", "detailed")
INCLUDES: Final = (
    "reasoning.encrypted_content", "message.output_text.logprobs", "file_search_call.results",
    "web_search_call.results", "web_search_call.action.sources", "code_interpreter_call.outputs",
    "computer_call_output.output.image_url", "message.input_image.image_url",
)  # fmt: skip
# (parameter, kind, least, most), as documented; max_output_tokens as the API enforces it
NUMBERS: Final = (
    ("temperature", "decimal", 0, 2),
    ("top_p", "decimal", 0, 1),
    ("max_output_tokens", "integer", MIN_OUTPUT_TOKENS, None),
    ("top_logprobs", "integer", 0, 20),
)


def checked_request(raw: bytes) -> dict[str, Any]:
    """The request body, or a :class:`RequestError` for its first problem."""
    body = json_body(raw)
    for key in ("model", "input"):
        if key not in body:
            missing(key)
    if not isinstance(body["model"], str):
        wrong_type("model", "a string", body["model"])
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        wrong_type("instructions", "a string", body["instructions"])
    _check_input(body["input"], body.get("previous_response_id") is not None)
    for name, kind, least, most in NUMBERS:
        check_number(body, name, kind, least, most)
    for name in ("stream", "store", "parallel_tool_calls", "background"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            wrong_type(name, "a boolean", body[name])
    for name in ("metadata", "stream_options", "reasoning", "text"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            wrong_type(name, "an object", body[name])
    check_stream_options(body)
    if body.get("background") and body.get("store") is False:
        invalid("background", "Background mode requires 'store' to be true.")
    _check_include(body.get("include"))
    _check_reasoning(body.get("reasoning") or {})
    _check_text(body)
    names = _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"), names)
    if body["model"] not in MODELS:
        raise RequestError(
            404,
            f"The requested model '{body['model']}' does not exist.",
            param="model",
            code="model_not_found",
        )
    if body.get("previous_response_id") is not None:  # kept responses are no conversation state
        raise RequestError(
            400,
            f"Previous response with id '{body['previous_response_id']}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return body


def input_items(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``input`` as a list of items (a string is one user message)."""
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    return [item for item in raw if isinstance(item, Mapping)] if isinstance(raw, list) else []


# -- the parts ---------------------------------------------------------------------------------


def _check_input(raw: Any, continued: bool) -> None:
    """Every item well formed; unless the request continues a stored response, every
    function call answered by a ``function_call_output`` and every output answering one."""
    if isinstance(raw, str):
        return
    if not isinstance(raw, list):
        wrong_type("input", "one of a string or array of input items", raw)
    calls: set[str] = set()
    answered: set[str] = set()
    for i, item in enumerate(raw):
        at = f"input[{i}]"
        if not isinstance(item, dict):
            wrong_type(at, "an object", item)
        kind = item.get("type", "message")  # a message may leave its type out
        if kind not in ITEM_TYPES:
            bad_value(f"{at}.type", kind, ITEM_TYPES)
        if kind == "message":
            _check_message(item, at)
        elif kind in CALL_FIELDS:
            for key in CALL_FIELDS[kind]:
                if key not in item:
                    missing(f"{at}.{key}")
                if key != "output" and not isinstance(item[key], str):
                    wrong_type(f"{at}.{key}", "a string", item[key])
            if kind == "function_call":
                calls.add(item["call_id"])
                continue
            if item["call_id"] not in calls and not continued:
                invalid(
                    "input",
                    f"No tool call found for function call output with call_id {item['call_id']}.",
                    None,
                )
            answered.add(item["call_id"])
    if unanswered := sorted(calls - answered):
        invalid("input", f"No tool output found for function call {unanswered[0]}.", None)


def _check_message(item: Mapping[str, Any], at: str) -> None:
    role = one_of(item, "role", at, ROLES)
    if "content" not in item:
        missing(f"{at}.content")
    content = item["content"]
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        wrong_type(f"{at}.content", "one of a string or array of input items", content)
    supported = OUTPUT_PARTS if role == "assistant" else INPUT_PARTS
    for j, part in enumerate(content):
        where = f"{at}.content[{j}]"
        if not isinstance(part, dict):
            wrong_type(where, "an object", part)
        kind = one_of(part, "type", where, supported)
        field = {"input_text": "text", "output_text": "text", "refusal": "refusal"}.get(kind)
        if field is not None:
            if field not in part:
                missing(f"{where}.{field}")
            if not isinstance(part[field], str):
                wrong_type(f"{where}.{field}", "a string", part[field])


def _check_include(include: Any) -> None:
    if include is None:
        return
    if not isinstance(include, list):
        wrong_type("include", "an array", include)
    for j, value in enumerate(include):
        if value not in INCLUDES:
            bad_value(f"include[{j}]", value, INCLUDES)


def _check_reasoning(reasoning: Mapping[str, Any]) -> None:
    effort = reasoning.get("effort")
    if effort is not None and effort not in EFFORTS:
        bad_value("reasoning.effort", effort, EFFORTS)
    for key in ("summary", "generate_summary"):
        value = reasoning.get(key)
        if value is not None and value not in SUMMARIES:
            bad_value(f"reasoning.{key}", value, SUMMARIES)


def _check_text(body: Mapping[str, Any]) -> None:
    fmt = (body.get("text") or {}).get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        wrong_type("text.format", "an object", fmt)
    kind = one_of(fmt, "type", "text.format", FORMATS)
    if kind == "json_schema":
        for key in ("name", "schema"):
            if key not in fmt:
                missing(f"text.format.{key}")
        if not isinstance(fmt["schema"], dict):
            wrong_type("text.format.schema", "an object", fmt["schema"])
    texts = [body.get("instructions") or ""]
    texts += [message_text(item.get("content")) for item in input_items(body)]
    if kind == "json_object" and not any("json" in t.lower() for t in texts):
        invalid(
            "input",
            "Response input messages must contain the word 'json' in some form to use "
            "'text.format' of type 'json_object'.",
            None,
        )


def _check_tools(tools: Any) -> list[str]:
    """The function names; other tool types (web search, MCP...) are accepted and never
    called: the reference server runs no hosted tools."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        wrong_type("tools", "an array", tools)
    names = []
    for j, tool in enumerate(tools):
        where = f"tools[{j}]"
        if not isinstance(tool, dict):
            wrong_type(where, "an object", tool)
        if not isinstance(tool.get("type"), str):
            missing(f"{where}.type")
        if tool["type"] != "function":
            continue
        if "name" not in tool:  # the nested chat shape {"function": {...}} ends here
            missing(f"{where}.name")
        if not isinstance(tool["name"], str):
            wrong_type(f"{where}.name", "a string", tool["name"])
        if tool.get("parameters") is not None and not isinstance(tool["parameters"], dict):
            wrong_type(f"{where}.parameters", "an object", tool["parameters"])
        names.append(tool["name"])
    return names


def _check_tool_choice(choice: Any, names: list[str]) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            bad_value("tool_choice", choice, ("none", "auto", "required"))
        if choice == "required" and not names:
            _no_tools()
        return
    if not isinstance(choice, dict):
        wrong_type("tool_choice", "one of a string or object", choice)
    kind = choice.get("type")
    if kind is None:
        missing("tool_choice.type")
    if kind != "function":  # allowed_tools, a hosted tool type: not checked further
        return
    if "name" not in choice:
        missing("tool_choice.name")
    if not names:
        _no_tools()
    if choice["name"] not in names:
        invalid(
            "tool_choice",
            f"Invalid value for 'tool_choice': function '{choice['name']}' is not one of the "
            "given 'tools'.",
        )


def _no_tools() -> NoReturn:
    invalid(
        "tool_choice",
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
        "specified.",
        None,
    )
