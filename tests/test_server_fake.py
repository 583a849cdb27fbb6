"""The reference server as a faithful fake: it refuses what the real APIs refuse (status,
error type, ``param``, and the official SDKs' exception classes), ends agent loops, honours
``response_format``, serves ``count_tokens``, answers unknown paths in the vendor's shape, and
plays scripted replies."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pytest

from streamproof.capture import Timeouts, exchange
from streamproof.engine import check_capture
from streamproof.scenarios import ANTHROPIC_WEATHER_TOOL, TIME_TOOL, WEATHER_TOOL
from streamproof.server import (
    DEFAULT_API_KEY,
    DEFAULT_MODEL,
    ReferenceServer,
    Script,
    ScriptError,
)

KEY = DEFAULT_API_KEY
ANTHROPIC_TIME_TOOL = {"name": "get_time", "input_schema": TIME_TOOL["function"]["parameters"]}
USER = {"role": "user", "content": "What is the weather in Paris?"}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
ASSISTANT_CALL = {"role": "assistant", "content": None, "tool_calls": [CALL]}


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer() as srv:
        yield srv
        assert srv.errors == []


@pytest.fixture(scope="module")
def oai(server: ReferenceServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def claude(server: ReferenceServer) -> Iterator[anthropic.Anthropic]:
    root = server.base_url.removesuffix("/v1")
    with anthropic.Anthropic(base_url=root, api_key=KEY, max_retries=0) as client:
        yield client


# -- 1. requests the real APIs refuse ----------------------------------------------------------

# (case, the request's fields, status, error.code, error.param); the request is model +
# messages [USER] + these fields. Wording and codes: server/openai_request.py.
OPENAI_REFUSED = [
    ("unknown role", {"messages": [{"role": "fake_role", "content": "hi"}]},
     400, "invalid_value", "messages[0].role"),
    ("content not text", {"messages": [{"role": "user", "content": 123}]},
     400, "invalid_type", "messages[0].content"),
    ("user without content", {"messages": [{"role": "user"}]},
     400, "missing_required_parameter", "messages[0].content"),
    ("unknown part type", {"messages": [{"role": "user", "content": [{"type": "bogus"}]}]},
     400, "invalid_value", "messages[0].content[0].type"),
    ("text part without text", {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
     400, "missing_required_parameter", "messages[0].content[0].text"),
    ("image part without url",
     {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     400, "missing_required_parameter", "messages[0].content[0].image_url.url"),
    ("tool message without tool_call_id",
     {"messages": [USER, ASSISTANT_CALL, {"role": "tool", "content": "18 C"}]},
     400, "missing_required_parameter", "messages[2].tool_call_id"),
    ("tool message answering nothing",
     {"messages": [USER, {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}]},
     400, None, "messages.[1].role"),
    ("tool call left unanswered", {"messages": [USER, ASSISTANT_CALL, USER]},
     400, None, "messages.[2].role"),
    ("tool_choice names an unknown tool",
     {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "x"}}},
     400, "invalid_value", "tool_choice"),
    ("tool_choice without tools", {"tool_choice": "required"}, 400, None, "tool_choice"),
    ("unknown response_format", {"response_format": {"type": "bogus"}},
     400, "invalid_value", "response_format.type"),
    ("json_object without the word JSON", {"response_format": {"type": "json_object"}},
     400, None, "messages"),
    ("strict schema left open",
     {"response_format": {"type": "json_schema", "json_schema": {
         "name": "answer", "strict": True,
         "schema": {"type": "object", "properties": {"a": {"type": "string"}},
                    "required": ["a"]}}}},
     400, "invalid_json_schema", "response_format"),
    ("temperature above 2", {"temperature": 3}, 400, "decimal_above_max_value", "temperature"),
    ("temperature not a number", {"temperature": "hot"}, 400, "invalid_type", "temperature"),
    ("top_p below 0", {"top_p": -0.5}, 400, "decimal_below_min_value", "top_p"),
    ("n above 128", {"n": 129}, 400, "integer_above_max_value", "n"),
    ("max_tokens 0", {"max_tokens": 0}, 400, "integer_below_min_value", "max_tokens"),
    ("max_completion_tokens too large", {"max_completion_tokens": 10**7},
     400, "invalid_value", "max_completion_tokens"),
    ("unknown model", {"model": "streamproof-no-such-model"}, 404, "model_not_found", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "status", "code", "param"),
    [case[1:] for case in OPENAI_REFUSED],
    ids=[case[0] for case in OPENAI_REFUSED],
)
def test_openai_refuses_what_openai_refuses(
    oai: openai.OpenAI, fields: dict[str, Any], status: int, code: str | None, param: str | None
) -> None:
    request = {"model": DEFAULT_MODEL, "messages": [USER], **fields}
    expected = openai.NotFoundError if status == 404 else openai.BadRequestError
    for stream in (False, True):
        with pytest.raises(expected) as raised:
            oai.chat.completions.create(**request, stream=stream)
        error = raised.value
        assert (error.status_code, error.code, error.param) == (status, code, param)
        assert error.type == "invalid_request_error"


# (case, the request's fields, status, error.type, the message's start); the request is
# model + max_tokens + messages [USER] + these fields. Wording: server/anthropic_request.py.
ANTHROPIC_REFUSED = [
    ("unknown role", {"messages": [{"role": "fake_role", "content": "hi"}]},
     400, "invalid_request_error", "messages.0.role: Input should be 'user' or 'assistant'"),
    ("content not text", {"messages": [{"role": "user", "content": 123}]},
     400, "invalid_request_error", "messages.0.content: Input should be a valid list"),
    ("user without content", {"messages": [{"role": "user"}]},
     400, "invalid_request_error", "messages.0.content: Field required"),
    ("unknown block type", {"messages": [{"role": "user", "content": [{"type": "bogus"}]}]},
     400, "invalid_request_error", "messages.0.content.0: Input tag 'bogus'"),
    ("text block without text", {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
     400, "invalid_request_error", "messages.0.content.0.text.text: Field required"),
    ("image block without source",
     {"messages": [{"role": "user", "content": [{"type": "image"}]}]},
     400, "invalid_request_error", "messages.0.content.0.image.source: Field required"),
    ("tool_result without tool_use_id",
     {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "18 C"}]}]},
     400, "invalid_request_error", "messages.0.content.0.tool_result.tool_use_id: Field"),
    ("tool_result answering nothing",
     {"messages": [{"role": "user", "content": [
         {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"}]}]},
     400, "invalid_request_error", "messages.0.content.0: unexpected `tool_use_id`"),
    ("tool_choice names an unknown tool",
     {"tools": [ANTHROPIC_WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "x"}},
     400, "invalid_request_error", "tool_choice.name:"),
    ("temperature above 1", {"temperature": 1.5},
     400, "invalid_request_error", "temperature: Input should be less than or equal to 1"),
    ("top_p below 0", {"top_p": -0.5},
     400, "invalid_request_error", "top_p: Input should be greater than or equal to 0"),
    ("top_k not an integer", {"top_k": 1.5},
     400, "invalid_request_error", "top_k: Input should be a valid integer"),
    ("max_tokens 0", {"max_tokens": 0},
     400, "invalid_request_error", "max_tokens: Input should be an integer greater"),
    ("unknown model", {"model": "streamproof-no-such-model"},
     404, "not_found_error", "model: streamproof-no-such-model"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "status", "kind", "message"),
    [case[1:] for case in ANTHROPIC_REFUSED],
    ids=[case[0] for case in ANTHROPIC_REFUSED],
)
def test_anthropic_refuses_what_anthropic_refuses(
    claude: anthropic.Anthropic, fields: dict[str, Any], status: int, kind: str, message: str
) -> None:
    request = {"model": DEFAULT_MODEL, "max_tokens": 64, "messages": [USER], **fields}
    # sampling parameters the SDK no longer names go as extra body fields
    extra = {k: request.pop(k) for k in ("temperature", "top_p", "top_k") if k in request}
    expected = anthropic.NotFoundError if status == 404 else anthropic.BadRequestError
    for stream in (False, True):
        with pytest.raises(expected) as raised:
            claude.messages.create(**request, stream=stream, extra_body=extra)
        body = raised.value.body
        assert isinstance(body, dict) and body["type"] == "error"
        assert body["error"]["type"] == kind
        assert body["error"]["message"].startswith(message), body["error"]["message"]


def test_valid_rich_requests_are_accepted(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    """The checks refuse only what the APIs refuse: image parts, a developer message, a
    full tool round and sampling parameters at their bounds all pass."""
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    done = oai.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": parts},
            {"role": "assistant", "content": "A picture."},
            USER,
            ASSISTANT_CALL,
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
        ],
        temperature=2,
        top_p=0,
        n=2,
        max_tokens=5,
        presence_penalty=-2,
    )
    assert [c.finish_reason for c in done.choices] == ["length", "length"]
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    message = claude.messages.create(
        model=DEFAULT_MODEL,
        max_tokens=5,
        extra_body={"temperature": 1, "top_p": 0, "top_k": 0},
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "What?"}]}],
    )
    assert message.stop_reason == "max_tokens"


# -- 2. conversations that behave --------------------------------------------------------------


def _openai_turn(oai: openai.OpenAI, messages: list[Any], stream: bool) -> tuple[Any, str]:
    """One assistant turn: (the message as the SDK builds it, the finish reason)."""
    request: dict[str, Any] = {
        "model": DEFAULT_MODEL,
        "messages": messages,
        "tools": [WEATHER_TOOL, TIME_TOOL],
    }
    if not stream:
        choice = oai.chat.completions.create(**request).choices[0]
        return choice.message, choice.finish_reason
    with oai.chat.completions.stream(**request) as events:
        choice = events.get_final_completion().choices[0]
    return choice.message, choice.finish_reason


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_openai_agent_loop_ends_after_one_tool_round(oai: openai.OpenAI, stream: bool) -> None:
    messages: list[Any] = [{"role": "user", "content": "What time is it in Tokyo? Use get_time."}]
    rounds = []
    for _ in range(4):  # bounded: a server that never stops calling tools fails here
        message, finish = _openai_turn(oai, messages, stream)
        rounds.append(finish)
        if finish != "tool_calls":
            break
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "09:00"})
    assert rounds == ["tool_calls", "stop"]
    first = messages[1]["tool_calls"]
    assert [c["function"]["name"] for c in first] == ["get_time"]  # the tool the prompt names
    assert message.content and not message.tool_calls


def test_auto_calls_the_named_tool_else_the_first(oai: openai.OpenAI) -> None:
    def called(prompt: str) -> list[str]:
        message, _ = _openai_turn(oai, [{"role": "user", "content": prompt}], False)
        return [c.function.name for c in message.tool_calls or []]

    assert called("Please get weather for Oslo") == ["get_weather"]
    assert called("get_time for Lima, please") == ["get_time"]
    assert called("Tell me something") == ["get_weather"]


def test_a_forced_tool_is_called_again_after_a_tool_result(oai: openai.OpenAI) -> None:
    done = oai.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[USER, ASSISTANT_CALL, {"role": "tool", "tool_call_id": "call_1", "content": "x"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    assert done.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_anthropic_agent_loop_ends_after_one_tool_round(
    claude: anthropic.Anthropic, stream: bool
) -> None:
    messages: list[Any] = [{"role": "user", "content": "What time is it in Tokyo? Use get_time."}]
    request = {
        "model": DEFAULT_MODEL,
        "max_tokens": 256,
        "tools": [ANTHROPIC_WEATHER_TOOL, ANTHROPIC_TIME_TOOL],
    }
    rounds = []
    for _ in range(4):  # bounded
        if stream:
            with claude.messages.stream(**request, messages=messages) as events:
                message = events.get_final_message()
        else:
            message = claude.messages.create(**request, messages=messages)
        rounds.append(message.stop_reason)
        if message.stop_reason != "tool_use":
            break
        messages.append({"role": "assistant", "content": [b.model_dump() for b in message.content]})
        uses = [b for b in message.content if b.type == "tool_use"]
        assert [b.name for b in uses] == ["get_time"]
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": b.id, "content": "09:00"} for b in uses
                ],
            }
        )
    assert rounds == ["tool_use", "end_turn"]
    assert [b.type for b in message.content] == ["text"]
    forced = claude.messages.create(
        **request, messages=messages, tool_choice={"type": "tool", "name": "get_weather"}
    )
    assert forced.stop_reason == "tool_use"


# -- 3. response_format ------------------------------------------------------------------------

SCHEMAS = {
    "nested objects": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "reading": {"type": "object", "properties": {
                "celsius": {"type": "number", "minimum": -90, "maximum": 60},
                "windy": {"type": "boolean"}},
                "required": ["celsius", "windy"], "additionalProperties": False},
        },
        "required": ["city", "reading"],
        "additionalProperties": False,
    },
    "arrays and enums": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "minLength": 12},
                     "minItems": 3, "maxItems": 5},
            "mood": {"type": "string", "enum": ["calm", "stormy"]},
            "count": {"type": "integer", "exclusiveMinimum": 10},
            "note": {"type": ["string", "null"], "maxLength": 3},
        },
        "required": ["tags", "mood", "count", "note"],
        "additionalProperties": False,
    },
    "definitions and anyOf": {
        "type": "object",
        "$defs": {"step": {"type": "object", "properties": {"n": {"type": "integer"},
                                                            "say": {"type": "string"}},
                           "required": ["n", "say"], "additionalProperties": False}},
        "properties": {
            "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 2},
            "result": {"anyOf": [{"type": "integer", "maximum": -5}, {"type": "null"}]},
        },
        "required": ["steps", "result"],
        "additionalProperties": False,
    },
}  # fmt: skip


@pytest.mark.parametrize("name", SCHEMAS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_json_schema_replies_validate(oai: openai.OpenAI, name: str, stream: bool) -> None:
    schema = SCHEMAS[name]
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "reply", "strict": True, "schema": schema},
    }
    request = {"model": DEFAULT_MODEL, "messages": [USER], "response_format": fmt}
    if stream:
        chunks = list(oai.chat.completions.create(**request, stream=True))
        pieces = [c.choices[0].delta.content for c in chunks if c.choices]
        assert sum(1 for p in pieces if p) > 2  # streamed in deltas, like any text
        text = "".join(p for p in pieces if p)
    else:
        text = oai.chat.completions.create(**request).choices[0].message.content or ""
    jsonschema.validate(json.loads(text), schema)


def test_json_object_replies_are_json_objects(oai: openai.OpenAI) -> None:
    done = oai.chat.completions.create(
        model=DEFAULT_MODEL,
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Answer in JSON: say hello"}],
    )
    assert isinstance(json.loads(done.choices[0].message.content or ""), dict)


# -- 4. count_tokens and the vendor's error shape everywhere -----------------------------------


def test_count_tokens_counts_what_message_start_reports(claude: anthropic.Anthropic) -> None:
    messages = [{"role": "user", "content": "Count these five words please"}]
    counted = claude.messages.count_tokens(
        model=DEFAULT_MODEL, messages=messages, system="Be brief."
    )
    with claude.messages.stream(
        model=DEFAULT_MODEL, max_tokens=8, messages=messages, system="Be brief."
    ) as events:
        started = events.get_final_message().usage.input_tokens
    assert counted.input_tokens == started == 7
    with pytest.raises(anthropic.BadRequestError, match=r"messages\.0\.role"):
        claude.messages.count_tokens(model=DEFAULT_MODEL, messages=[{"role": "x", "content": ""}])


@pytest.mark.parametrize(
    ("path", "headers", "shape"),
    [
        ("/v1/messages/nope", {"anthropic-version": "2023-06-01"}, "anthropic"),
        ("/v1/messages/batches", {}, "anthropic"),
        ("/v1/nope", {"x-api-key": KEY}, "anthropic"),
        ("/v1/nope", {"authorization": f"Bearer {KEY}"}, "openai"),
    ],
)
def test_unknown_paths_answer_in_the_vendors_shape(
    server: ReferenceServer, path: str, headers: dict[str, str], shape: str
) -> None:
    root = server.base_url.removesuffix("/v1")
    r = httpx.post(root + path, headers=headers, json={}, trust_env=False, timeout=5)
    assert r.status_code == 404
    body = r.json()
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
        assert "request-id" in r.headers
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}


# -- 5. scripted replies -----------------------------------------------------------------------

SCRIPT_YAML = """\
rules:
  - match: {contains: "weather", tools: [get_weather]}
    reply:
      text: "Let me check."
      tool_calls: [{name: get_weather, arguments: {city: Lima, days: 2}}]
  - match: {regex: "(?i)^plan\\\\b", api: anthropic}
    reply:
      reasoning: "Three steps will do."
      text: "First, second, third."
      usage: {input_tokens: 40, output_tokens: 12}
  - match: {contains: "broken"}
    reply:
      text: "This stream loses its end."
      faults: [missing-done]
      timing: "ttft_ms=1,gap_ms=1"
  - match: {tool_result: true}
    reply: {text: "The tool says so."}
  - match: {contains: "hello"}
    reply: {text: "Hi from the script, scripted and streamed."}
"""


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    path = tmp_path_factory.mktemp("script") / "replies.yaml"
    path.write_text(SCRIPT_YAML, "utf-8")
    with ReferenceServer(script=Script.load(path)) as srv:
        yield srv
        assert srv.errors == []


def _capture(server: ReferenceServer, api: str, body: dict[str, Any]) -> Any:
    path, headers = (
        ("/chat/completions", {"authorization": f"Bearer {KEY}"})
        if api == "openai"
        else ("/messages", {"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    )
    with httpx.Client(trust_env=False) as c:
        cap = exchange(
            c,
            "POST",
            server.base_url + path,
            headers=headers,
            body=body,
            timeouts=Timeouts(total=5),
        )
    findings, _, validator, _ = check_capture(api, cap, body)
    return cap, findings, validator


def test_a_script_drives_text_and_a_tool_call(scripted: ReferenceServer) -> None:
    with openai.OpenAI(base_url=scripted.base_url, api_key=KEY, max_retries=0) as oai:
        done = oai.chat.completions.create(
            model=DEFAULT_MODEL,
            messages=[{"role": "user", "content": "weather in Lima?"}],
            tools=[WEATHER_TOOL],
        )
        plain = oai.chat.completions.create(
            model=DEFAULT_MODEL, messages=[{"role": "user", "content": "hello there"}], n=2
        )
    choice = done.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("tool_calls", "Let me check.")
    assert [
        (c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls
    ] == [("get_weather", {"city": "Lima", "days": 2})]
    assert [c.message.content for c in plain.choices] == [
        "Hi from the script, scripted and streamed."
    ] * 2
    # the same rule streams a clean stream (the suite's own checks find nothing)
    body = {
        "model": DEFAULT_MODEL,
        "stream": True,
        "tools": [WEATHER_TOOL],
        "messages": [{"role": "user", "content": "weather in Lima?"}],
    }
    _, findings, _ = _capture(scripted, "openai", body)
    assert [f for f in findings if f.level != "INFO"] == []


def test_a_script_drives_reasoning_usage_and_anthropic_tool_results(
    scripted: ReferenceServer,
) -> None:
    root = scripted.base_url.removesuffix("/v1")
    with anthropic.Anthropic(base_url=root, api_key=KEY, max_retries=0) as claude:
        with claude.messages.stream(
            model=DEFAULT_MODEL, max_tokens=64, messages=[{"role": "user", "content": "Plan it"}]
        ) as events:
            message = events.get_final_message()
        answer = claude.messages.create(
            model=DEFAULT_MODEL,
            max_tokens=64,
            tools=[ANTHROPIC_WEATHER_TOOL],
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18"}],
                },
            ],
        )
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Three steps will do."  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (40, 12)
    assert [b.text for b in answer.content if b.type == "text"] == ["The tool says so."]
    # "plan" is scripted for Anthropic only: OpenAI generates its usual answer
    with openai.OpenAI(base_url=scripted.base_url, api_key=KEY, max_retries=0) as oai:
        other = oai.chat.completions.create(
            model=DEFAULT_MODEL, messages=[{"role": "user", "content": "Plan it"}]
        )
    assert "Three steps" not in (other.choices[0].message.content or "")


def test_a_script_drives_a_fault(scripted: ReferenceServer) -> None:
    body = {
        "model": DEFAULT_MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "a broken one"}],
    }
    _, findings, _ = _capture(scripted, "openai", body)
    assert "openai.done" in {f.rule for f in findings}


def test_max_tokens_cuts_a_scripted_reply(scripted: ReferenceServer) -> None:
    with openai.OpenAI(base_url=scripted.base_url, api_key=KEY, max_retries=0) as oai:
        done = oai.chat.completions.create(
            model=DEFAULT_MODEL, max_tokens=2, messages=[{"role": "user", "content": "hello"}]
        )
    assert (done.choices[0].message.content, done.choices[0].finish_reason) == ("Hi from", "length")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": [{"reply": {}}]}, "rules[0].reply: a reply needs 'text' or 'tool_calls'"),
        ([{"match": {"contain": "x"}, "reply": {"text": "y"}}], "rules[0].match: unknown key"),
        ([{"reply": {"text": "y", "faults": ["no-such-fault"]}}], "unknown fault 'no-such-fault'"),
        ([{"reply": {"text": "y", "timing": "ttft_ms=-1"}}], "rules[0].reply.timing"),
        ([{"match": {"regex": "("}, "reply": {"text": "y"}}], "rules[0].match.regex"),
        ([{"reply": {"tool_calls": [{"arguments": {}}]}}], "'name' is a required property"),
        ("rules", "the top level: 'rules' is not of type 'object'"),
    ],
)
def test_a_malformed_script_is_a_one_line_error(data: Any, message: str) -> None:
    with pytest.raises(ScriptError) as raised:
        Script.parse(data)
    text = str(raised.value)
    assert message in text and "\n" not in text


def test_serve_reports_a_bad_script_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n  {reply: {text: 'unclosed'\n", "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "streamproof", "serve", "--port", "0", "--script", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.yaml: not valid YAML" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def _readme_block(marker: str) -> str:
    """The fenced block right after ``<!-- marker -->`` in the README."""
    text = (Path(__file__).parent.parent / "README.md").read_text("utf-8")
    after = text.split(f"<!-- {marker} -->\n", 1)[1]
    return after.split("\n", 1)[1].split("\n```", 1)[0]


def test_the_readme_mock_llm_example_runs(tmp_path: Path) -> None:
    """The README's script and fixture, as a user would copy them, pass under pytest."""
    (tmp_path / "llm-replies.yaml").write_text(_readme_block("mock-script"), "utf-8")
    (tmp_path / "test_example.py").write_text(_readme_block("mock-fixture"), "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
