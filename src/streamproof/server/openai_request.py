"""What OpenAI's ``POST /v1/chat/completions`` refuses, refused the same way.

A client's test against the reference server should fail where it would fail against
OpenAI: the status (400, or 404 for an unknown model), ``error.type``
(``invalid_request_error``), ``error.param`` (the JSON path, ``messages[1].tool_call_id``) and
``error.code`` (``invalid_value``, ``invalid_type``, ``missing_required_parameter``,
``integer_below_min_value``...), worded as the API words them. Sources: the parameter ranges
of the API reference (platform.openai.com/docs/api-reference/chat/create) and the wording of
the API's answers as quoted in public bug reports (e.g. "Invalid parameter: messages with
role 'tool' must be a response to a preceeding message with 'tool_calls'.", spelling as
sent; shell_gpt#717). The first problem found is the one reported, as by the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn

import orjson

from .endpoint import MODELS, RequestError
from .text import message_text

__all__ = [
    "bad_value",
    "check_number",
    "check_stream_options",
    "checked_request",
    "invalid",
    "json_body",
    "mentions_json",
    "missing",
    "one_of",
    "wrong_type",
]

ROLES: Final = ("system", "assistant", "user", "function", "tool", "developer")
PART_TYPES: Final = ("text", "image_url", "input_audio", "file")
RESPONSE_FORMATS: Final = ("text", "json_object", "json_schema")
MAX_N: Final = 128
MAX_STOPS: Final = 4
MAX_OUTPUT_TOKENS: Final = 10**6

# (parameter, kind, least, most): the numeric parameters and their ranges, as documented.
NUMBERS: Final = (
    ("temperature", "decimal", 0, 2),
    ("top_p", "decimal", 0, 1),
    ("presence_penalty", "decimal", -2, 2),
    ("frequency_penalty", "decimal", -2, 2),
    ("n", "integer", 1, MAX_N),
    ("max_tokens", "integer", 1, None),
    ("max_completion_tokens", "integer", 1, None),
    ("top_logprobs", "integer", 0, 20),
)
_TYPE_NAMES: Final = {
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def json_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or OpenAI's 400 for one that is not."""
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
    return body


def checked_request(raw: bytes) -> dict[str, Any]:
    """The request body, or a :class:`RequestError` for its first problem."""
    body = json_body(raw)
    for key in ("model", "messages"):
        if key not in body:
            missing(key)
    if not isinstance(body["model"], str):
        wrong_type("model", "a string", body["model"])
    _check_messages(body["messages"])
    for name, kind, least, most in NUMBERS:
        check_number(body, name, kind, least, most)
    _check_stop(body.get("stop"))
    check_stream_options(body)
    names = _check_tools(body)
    _check_tool_choice(body.get("tool_choice"), names)
    _check_response_format(body)
    if body["model"] not in MODELS:
        raise RequestError(
            404,
            f"The model `{body['model']}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return body


def mentions_json(messages: list[Mapping[str, Any]]) -> bool:
    return any("json" in message_text(m.get("content")).lower() for m in messages)


# -- raising -----------------------------------------------------------------------------------


def missing(param: str) -> NoReturn:
    raise RequestError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def wrong_type(param: str, expected: str, got: Any) -> NoReturn:
    raise RequestError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got "
        f"{_TYPE_NAMES.get(type(got), 'a value')} instead.",
        param=param,
        code="invalid_type",
    )


def bad_value(param: str, value: Any, supported: tuple[str, ...]) -> NoReturn:
    listed = ", ".join(f"'{s}'" for s in supported[:-1]) + f", and '{supported[-1]}'"
    raise RequestError(
        400,
        f"Invalid value: '{value}'. Supported values are: {listed}.",
        param=param,
        code="invalid_value",
    )


def invalid(param: str, message: str, code: str | None = "invalid_value") -> NoReturn:
    raise RequestError(400, message, param=param, code=code)


def one_of(obj: Mapping[str, Any], key: str, at: str, supported: tuple[str, ...]) -> Any:
    """``obj[key]``, refused as the API refuses it unless it is one of ``supported`` (``at``:
    the parameter path of ``obj``)."""
    value = obj.get(key)
    if value is None:
        missing(f"{at}.{key}")
    if value not in supported:
        bad_value(f"{at}.{key}", value, supported)
    return value


# -- the parts ---------------------------------------------------------------------------------


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        wrong_type("messages", "an array", messages)
    if not messages:
        invalid(
            "messages",
            "Invalid 'messages': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
            "empty_array",
        )
    answered: set[str] = set()  # tool_call_ids the tool messages since the last call answer
    pending: list[str] = []  # tool_call_ids of the last assistant message, not yet answered
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(message, dict):
            wrong_type(at, "an object", message)
        role = one_of(message, "role", at, ROLES)
        if pending and role != "tool":
            _check_answered(pending, answered, i)
            pending = []
        _check_content(message, role, at)
        if role == "tool":
            if "tool_call_id" not in message:
                missing(f"{at}.tool_call_id")
            if not isinstance(message["tool_call_id"], str):
                wrong_type(f"{at}.tool_call_id", "a string", message["tool_call_id"])
            if not pending:
                invalid(
                    f"messages.[{i}].role",
                    "Invalid parameter: messages with role 'tool' "
                    "must be a response to a preceeding message with 'tool_calls'.",
                    None,
                )
            answered.add(message["tool_call_id"])
        elif role == "assistant":
            pending = _tool_call_ids(message.get("tool_calls"), at)
            answered = set()
    _check_answered(pending, answered, len(messages) - 1)


def _check_answered(pending: list[str], answered: set[str], i: int) -> None:
    """Every tool call of the last assistant message has its tool message by message ``i``."""
    unanswered = [c for c in pending if c not in answered]
    if unanswered:
        invalid(
            f"messages.[{i}].role",
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            "response messages: " + ", ".join(unanswered),
            None,
        )


def _tool_call_ids(calls: Any, at: str) -> list[str]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        wrong_type(f"{at}.tool_calls", "an array", calls)
    ids = []
    for j, call in enumerate(calls):
        where = f"{at}.tool_calls[{j}]"
        if not isinstance(call, dict):
            wrong_type(where, "an object", call)
        for key in ("id", "function"):
            if key not in call:
                missing(f"{where}.{key}")
        if not isinstance(call["id"], str):
            wrong_type(f"{where}.id", "a string", call["id"])
        ids.append(call["id"])
    return ids


def _check_content(message: Mapping[str, Any], role: str, at: str) -> None:
    content = message.get("content")
    if content is None:
        # an assistant turn may carry only tool calls (or a refusal)
        if role == "assistant" and (message.get("tool_calls") or message.get("refusal")):
            return
        missing(f"{at}.content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        wrong_type(f"{at}.content", "one of a string or array of objects", content)
    supported = PART_TYPES if role == "user" else ("text",) + (("refusal",) * (role == "assistant"))
    for j, part in enumerate(content):
        where = f"{at}.content[{j}]"
        if not isinstance(part, dict):
            wrong_type(where, "an object", part)
        kind = part.get("type")
        if kind is None:
            missing(f"{where}.type")
        if kind not in supported:
            if len(supported) == 1:
                invalid(f"{where}.type", f"Invalid value: '{kind}'. Value must be 'text'.")
            bad_value(f"{where}.type", kind, supported)
        field = {"text": "text", "refusal": "refusal"}.get(kind)
        if field is not None:
            if field not in part:
                missing(f"{where}.{field}")
            if not isinstance(part[field], str):
                wrong_type(f"{where}.{field}", "a string", part[field])
        elif kind == "image_url":
            image = part.get("image_url")
            if image is None:
                missing(f"{where}.image_url")
            if not isinstance(image, dict):
                wrong_type(f"{where}.image_url", "an object", image)
            if not isinstance(image.get("url"), str):
                missing(f"{where}.image_url.url")


def check_number(
    body: Mapping[str, Any], name: str, kind: str, least: float, most: float | None
) -> None:
    value = body.get(name)
    if value is None:
        return
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer" and not (numeric and float(value).is_integer()):
        wrong_type(name, "an integer", value)
    if kind == "decimal" and not numeric:
        wrong_type(name, "a decimal", value)
    shown = int(value) if kind == "integer" else value
    if value < least:
        invalid(
            name,
            f"Invalid '{name}': {kind} below minimum value. Expected a value >= "
            f"{least}, but got {shown} instead.",
            f"{kind}_below_min_value",
        )
    if most is not None and value > most:
        invalid(
            name,
            f"Invalid '{name}': {kind} above maximum value. Expected a value <= "
            f"{most}, but got {shown} instead.",
            f"{kind}_above_max_value",
        )
    if kind == "integer" and name.startswith("max_") and value > MAX_OUTPUT_TOKENS:
        invalid(
            name,
            f"{name} is too large: {shown}. This model supports at most "
            f"{MAX_OUTPUT_TOKENS} completion tokens, whereas you provided {shown}.",
        )


def _check_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        wrong_type("stop", "one of a string or array of strings", stop)
    if len(stop) > MAX_STOPS:
        invalid(
            "stop",
            f"Invalid 'stop': array too long. Expected an array with maximum "
            f"length {MAX_STOPS}, but got an array with length {len(stop)} instead.",
            "array_above_max_length",
        )


def check_stream_options(body: Mapping[str, Any]) -> None:
    options = body.get("stream_options")
    if options is None:
        return
    if not body.get("stream"):
        invalid(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        )
    if not isinstance(options, dict):
        wrong_type("stream_options", "an object", options)


def _check_tools(body: Mapping[str, Any]) -> list[str]:
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        wrong_type("tools", "an array", tools)
    names = []
    for j, tool in enumerate(tools):
        where = f"tools[{j}]"
        if not isinstance(tool, dict):
            wrong_type(where, "an object", tool)
        if tool.get("type") != "function":
            bad_value(f"{where}.type", tool.get("type"), ("function", "custom"))
        function = tool.get("function")
        if not isinstance(function, dict):
            missing(f"{where}.function")
        if not isinstance(function.get("name"), str):
            missing(f"{where}.function.name")
        names.append(function["name"])
    return names


def _check_tool_choice(choice: Any, names: list[str]) -> None:
    if choice is None:
        return
    if choice != "none" and not names:
        invalid(
            "tool_choice",
            "Invalid value for 'tool_choice': 'tool_choice' is only "
            "allowed when 'tools' are specified.",
            None,
        )
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            bad_value("tool_choice", choice, ("none", "auto", "required"))
        return
    if not isinstance(choice, dict):
        wrong_type("tool_choice", "one of a string or object", choice)
    function = choice.get("function")
    if choice.get("type") != "function" or not isinstance(function, dict):
        missing("tool_choice.function")
    if function.get("name") not in names:
        invalid(
            "tool_choice",
            f"Invalid value for 'tool_choice': function "
            f"'{function.get('name')}' is not one of the given 'tools'.",
        )


def _check_response_format(body: Mapping[str, Any]) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        wrong_type("response_format", "an object", fmt)
    kind = fmt.get("type")
    if kind is None:
        missing("response_format.type")
    if kind not in RESPONSE_FORMATS:
        bad_value("response_format.type", kind, RESPONSE_FORMATS)
    if kind == "json_object" and not mentions_json(body["messages"]):
        invalid(
            "messages",
            "'messages' must contain the word 'json' in some form, to use "
            "'response_format' of type 'json_object'.",
            None,
        )
    if kind != "json_schema":
        return
    spec = fmt.get("json_schema")
    if spec is None:
        missing("response_format.json_schema")
    if not isinstance(spec, dict):
        wrong_type("response_format.json_schema", "an object", spec)
    if not isinstance(spec.get("name"), str):
        missing("response_format.json_schema.name")
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        wrong_type("response_format.json_schema.schema", "an object", schema)
    if spec.get("strict") is True:
        problem = _strict_problem(schema, ())
        if problem is not None:
            invalid(
                "response_format",
                f"Invalid schema for response_format '{spec['name']}': {problem}",
                "invalid_json_schema",
            )


def _strict_problem(schema: Any, context: tuple[str, ...]) -> str | None:
    """Why a schema is not allowed under ``strict: true`` (every object closed, every property
    required), or None; nested objects, arrays, ``$defs`` and ``anyOf`` branches included."""
    if not isinstance(schema, Mapping):
        return None
    where = f"In context=({', '.join(repr(c) for c in context)}{',' * (len(context) == 1)})"
    props = schema.get("properties")
    if schema.get("type") == "object" or isinstance(props, Mapping):
        if schema.get("additionalProperties") is not False:
            return f"{where}, 'additionalProperties' is required to be supplied and to be false."
        keys = list(props) if isinstance(props, Mapping) else []
        required = schema.get("required") or []
        missing = [k for k in keys if k not in required]
        if missing:
            return (
                f"{where}, 'required' is required to be supplied and to be an array "
                f"including every key in properties. Missing '{missing[0]}'."
            )
        for key in keys:
            if problem := _strict_problem(props[key], (*context, "properties", key)):
                return problem
    children = [("items", schema.get("items"))]
    for group in ("$defs", "definitions"):
        if isinstance(defs := schema.get(group), Mapping):
            children += [(f"{group}/{k}", v) for k, v in defs.items()]
    for group in ("anyOf", "oneOf", "allOf"):
        if isinstance(branches := schema.get(group), list):
            children += [(f"{group}/{k}", v) for k, v in enumerate(branches)]
    for key, child in children:
        if problem := _strict_problem(child, (*context, *key.split("/"))):
            return problem
    return None
