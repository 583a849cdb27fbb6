"""The reference server's OpenAI Responses endpoint (``POST /v1/responses``): the stream's
grammar and numbering (text, function calls, reasoning summary, hidden reasoning,
``max_output_tokens`` cut), the ``stream: false`` answer, refused requests, timing (only
content deltas take a gap), scripted replies and the chunk-fault hook. The official ``openai``
SDK, sync and async, is the client wherever it can be: what it rebuilds must be what was
streamed."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from streamproof.server import (
    DEFAULT_API_KEY,
    DEFAULT_MODEL,
    ReferenceServer,
    Script,
    Timing,
)
from streamproof.server.endpoint import Context, Request, Store
from streamproof.server.faults.base import Fault, FaultSet
from streamproof.server.openai_responses import (
    API,
    Raw,
    is_content,
    renumbered,
    responses,
    serialise,
    ticks_of,
)
from streamproof.server.send import EARLY_NS
from streamproof.server.text import GREETING, STORY
from streamproof.sse import Event, SSEDecoder

AUTH = {"authorization": f"Bearer {DEFAULT_API_KEY}"}
HELLO = "Say hello in one short sentence."
LONG = "Write a short story about a lighthouse keeper, at least three paragraphs long."
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False},
}  # fmt: skip
TIME = {
    "type": "function",
    "name": "get_time",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
FORCED = {"type": "function", "name": "get_weather"}
TIMEOUT = 5.0
# the event types of an item, a run of deltas written ``X.delta+``
TEXT_ITEM = [
    "response.output_item.added", "response.content_part.added",
    "response.output_text.delta+", "response.output_text.done", "response.content_part.done",
    "response.output_item.done",
]  # fmt: skip
CALL_ITEM = [
    "response.output_item.added", "response.function_call_arguments.delta+",
    "response.function_call_arguments.done", "response.output_item.done",
]  # fmt: skip
SUMMARY_ITEM = [
    "response.output_item.added", "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta+", "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done", "response.output_item.done",
]  # fmt: skip
HEAD = ["response.created", "response.in_progress"]


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer(timing=Timing(ttft_ms=2, gap_ms=0.2)) as srv:
        yield srv
        assert srv.errors == []


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as c:
        yield c


# -- helpers -------------------------------------------------------------------------------


def body_of(**body: Any) -> dict[str, Any]:
    return {"model": DEFAULT_MODEL, "input": HELLO, **body}


def post(client: httpx.Client, base: str, **body: Any) -> httpx.Response:
    return client.post(f"{base}/responses", json=body_of(**body), headers=AUTH)


def decoded(r: httpx.Response) -> list[Event]:
    """A clean stream's events as decoded, the wire spotless."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    decoder = SSEDecoder()
    out = decoder.feed(r.content)
    decoder.finish()
    assert decoder.findings == []
    return out


def events(r: httpx.Response) -> list[dict[str, Any]]:
    """The events' JSON, each checked for the 2025-09 wire form: an ``event:`` name equal to
    ``type``, ``type`` and ``sequence_number`` first, compact JSON."""
    out = []
    for e in decoded(r):
        assert e.data != "[DONE]"
        assert orjson.dumps(orjson.loads(e.data)).decode() == e.data
        event = json.loads(e.data)
        assert e.name == event["type"]
        assert list(event)[:2] == ["type", "sequence_number"]
        out.append(event)
    return out


def shape(types: list[str]) -> list[str]:
    """The types with each run of one delta type written once, as ``X.delta+``."""
    return [f"{t}+" if t.endswith(".delta") else t for t, _ in itertools.groupby(types)]


def joined(evs: list[dict[str, Any]], kind: str, index: int = 0) -> str:
    return "".join(
        e["delta"]
        for e in evs
        if e["type"] == f"response.{kind}.delta" and e["output_index"] == index
    )


def check_stream(evs: list[dict[str, Any]]) -> dict[str, Any]:
    """Numbering, item references and the final output of a stream; its final response."""
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    created, final = evs[0]["response"], evs[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert created["usage"] is None and created["object"] == "response"
    assert evs[1]["response"] == created
    assert final["id"] == created["id"] and final["status"] == evs[-1]["type"].split(".")[1]
    assert "output_text" not in final
    added = [e for e in evs if e["type"] == "response.output_item.added"]
    done = [e for e in evs if e["type"] == "response.output_item.done"]
    assert [e["output_index"] for e in added] == list(range(len(added)))
    assert [e["item"]["id"] for e in done] == [e["item"]["id"] for e in added]
    ids = [e["item"]["id"] for e in added]
    for e in evs:
        if "item_id" in e:
            assert ids[e["output_index"]] == e["item_id"]
    assert final["output"] == [e["item"] for e in done]
    usage = final["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens_details"]["reasoning_tokens"] <= usage["output_tokens"]
    return final


def _sdk(server: ReferenceServer, key: str = DEFAULT_API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=TIMEOUT)


def _async_sdk(server: ReferenceServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.base_url, api_key=DEFAULT_API_KEY, max_retries=0, timeout=TIMEOUT
    )


def send_stamp(event: Event) -> int:
    assert event.comment is not None and event.comment.startswith(b" t="), event.comment
    return int(event.comment[3:])


# -- the clean stream ----------------------------------------------------------------------


def test_text_stream_shape(server: ReferenceServer, client: httpx.Client) -> None:
    evs = events(post(client, server.base_url, stream=True))
    assert shape([e["type"] for e in evs]) == [*HEAD, *TEXT_ITEM, "response.completed"]
    final = check_stream(evs)
    text = joined(evs, "output_text")
    assert text == GREETING
    item = final["output"][0]
    assert item["id"].startswith("msg_") and item["status"] == "completed"
    assert item["content"] == [{"type": "output_text", "annotations": [], "logprobs": [],
                                "text": text}]  # fmt: skip
    deltas = [e for e in evs if e["type"] == "response.output_text.delta"]
    assert all(e["logprobs"] == [] and e["content_index"] == 0 for e in deltas)
    assert list(deltas[0]) == ["type", "sequence_number", "item_id", "output_index",
                               "content_index", "delta", "logprobs"]  # fmt: skip
    assert final["usage"]["output_tokens"] == len(GREETING.split())
    assert final["usage"]["input_tokens"] == len(HELLO.split())


def test_function_calls(server: ReferenceServer, client: httpx.Client) -> None:
    evs = events(post(client, server.base_url, stream=True, tools=[WEATHER, TIME],
                      tool_choice=FORCED))  # fmt: skip
    assert shape([e["type"] for e in evs]) == [*HEAD, *CALL_ITEM, "response.completed"]
    final = check_stream(evs)
    (call,) = final["output"]
    assert call["id"].startswith("fc_") and call["call_id"].startswith("call_")
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    assert evs[2]["item"] == {**call, "status": "in_progress", "arguments": ""}
    assert joined(evs, "function_call_arguments") == call["arguments"]
    done = next(e for e in evs if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == call["arguments"] and done["name"] == "get_weather"
    # required calls every function, one after another; without parallel calls the first
    evs = events(post(client, server.base_url, stream=True, tools=[WEATHER, TIME],
                      tool_choice="required"))  # fmt: skip
    assert shape([e["type"] for e in evs]) == [*HEAD, *CALL_ITEM, *CALL_ITEM, "response.completed"]
    assert [i["name"] for i in check_stream(evs)["output"]] == ["get_weather", "get_time"]
    one = events(post(client, server.base_url, stream=True, tools=[WEATHER, TIME],
                            tool_choice="required", parallel_tool_calls=False))  # fmt: skip
    assert [i["name"] for i in check_stream(one)["output"]] == ["get_weather"]
    # auto: the tool the prompt names; none: text
    named = post(client, server.base_url, input="Call get_time for Oslo.", tools=[WEATHER, TIME])
    assert [i["name"] for i in named.json()["output"]] == ["get_time"]
    text = post(client, server.base_url, tools=[WEATHER], tool_choice="none").json()
    assert text["output"][0]["type"] == "message"


def test_tool_results_are_answered_in_text(server: ReferenceServer, client: httpx.Client) -> None:
    first = post(client, server.base_url, input="What is the weather in Paris?", tools=[WEATHER])
    call = first.json()["output"][0]
    assert call["type"] == "function_call"
    follow = [
        {"role": "user", "content": [{"type": "input_text", "text": "The weather in Paris?"}]},
        call,
        {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny, 21 C"},
    ]
    evs = events(post(client, server.base_url, input=follow, tools=[WEATHER], stream=True))
    assert shape([e["type"] for e in evs]) == [*HEAD, *TEXT_ITEM, "response.completed"]
    assert check_stream(evs)["usage"]["input_tokens"] == 4 + 3


def test_reasoning_summary_and_hidden_reasoning(
    server: ReferenceServer, client: httpx.Client
) -> None:
    evs = events(post(client, server.base_url, stream=True, reasoning={"summary": "auto"}))
    assert shape([e["type"] for e in evs]) == [*HEAD, *SUMMARY_ITEM, *TEXT_ITEM,
                                               "response.completed"]  # fmt: skip
    final = check_stream(evs)
    summary = joined(evs, "reasoning_summary_text")
    reasoning = final["output"][0]
    assert reasoning["id"].startswith("rs_") and "status" not in reasoning
    assert reasoning["summary"] == [{"type": "summary_text", "text": summary}]
    assert evs[2]["item"] == {**reasoning, "summary": []}
    assert final["reasoning"] == {"effort": "medium", "summary": "auto"}
    usage = final["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == len(summary.split())
    assert usage["output_tokens"] == len(summary.split()) + len(GREETING.split())
    # no summary asked for: the item is added and done at once, counted in usage only
    evs = events(post(client, server.base_url, stream=True, reasoning={"effort": "low"},
                      include=["reasoning.encrypted_content"]))  # fmt: skip
    assert shape([e["type"] for e in evs]) == [
        *HEAD, "response.output_item.added", "response.output_item.done", *TEXT_ITEM,
        "response.completed",
    ]  # fmt: skip
    final = check_stream(evs)
    hidden = final["output"][0]
    assert hidden["summary"] == [] and hidden["encrypted_content"]
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == len(summary.split())
    # effort none: no reasoning at all
    plain = post(client, server.base_url, reasoning={"effort": "none"}).json()
    assert [i["type"] for i in plain["output"]] == ["message"]


def test_max_output_tokens_ends_incomplete(server: ReferenceServer, client: httpx.Client) -> None:
    evs = events(post(client, server.base_url, stream=True, input=LONG, max_output_tokens=16))
    assert shape([e["type"] for e in evs]) == [*HEAD, *TEXT_ITEM, "response.incomplete"]
    final = check_stream(evs)
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"
    assert joined(evs, "output_text") == " ".join(STORY.split(" ")[:16])
    assert final["usage"]["output_tokens"] == 16
    # hidden reasoning counts: it leaves less room for the text
    evs = events(post(client, server.base_url, stream=True, input=LONG, max_output_tokens=40,
                      reasoning={"effort": "high"}))  # fmt: skip
    final = check_stream(evs)
    assert final["status"] == "incomplete" and final["usage"]["output_tokens"] == 40
    reasoning = final["usage"]["output_tokens_details"]["reasoning_tokens"]
    assert 0 < reasoning < 40 and len(joined(evs, "output_text", 1).split()) == 40 - reasoning
    assert [i["type"] for i in final["output"]] == ["reasoning", "message"]
    assert final["output"][1]["status"] == "incomplete"
    # a cut call: one token for its head, 15 argument fragments, incomplete
    wide = {"type": "object", "properties": {f"field_{k}": {"type": "string"} for k in range(20)}}
    tool = {"type": "function", "name": "fill_form", "parameters": wide}
    evs = events(post(client, server.base_url, stream=True, max_output_tokens=16, tools=[tool],
                      tool_choice="required"))  # fmt: skip
    assert shape([e["type"] for e in evs]) == [*HEAD, *CALL_ITEM, "response.incomplete"]
    final = check_stream(evs)
    (call,) = final["output"]
    assert call["status"] == "incomplete" and final["usage"]["output_tokens"] == 16
    assert call["arguments"] == joined(evs, "function_call_arguments")
    assert len(call["arguments"]) == 15 * 6 and call["arguments"].startswith('{"field_0":')
    # the SDK: create(stream=True) shows the incomplete end; the stream helper's final
    # response needs response.completed
    seen = [e for e in _sdk(server).responses.create(
        model=DEFAULT_MODEL, input=LONG, max_output_tokens=16, stream=True)]  # fmt: skip
    assert seen[-1].type == "response.incomplete"
    assert seen[-1].response.incomplete_details.reason == "max_output_tokens"
    assert seen[-1].response.usage.output_tokens <= 16


def test_tokens_per_chunk_and_text_formats(server: ReferenceServer, client: httpx.Client) -> None:
    base = server.url_for(timing=Timing(ttft_ms=0, gap_ms=0, tokens_per_chunk=3))
    evs = events(post(client, base, stream=True))
    deltas = [e["delta"] for e in evs if e["type"] == "response.output_text.delta"]
    assert len(deltas) == -(-len(GREETING.split()) // 3) and "".join(deltas) == GREETING
    fmt = {"type": "json_schema", "name": "city", "strict": True,
           "schema": {"type": "object", "properties": {"city": {"type": "string"}},
                      "required": ["city"], "additionalProperties": False}}  # fmt: skip
    answer = post(client, server.base_url, text={"format": fmt}).json()
    assert json.loads(answer["output"][0]["content"][0]["text"]) == {"city": "Paris"}
    assert answer["text"] == {"format": fmt, "verbosity": "medium"}
    answer = post(client, server.base_url, input="Answer in json.",
                  text={"format": {"type": "json_object"}}).json()  # fmt: skip
    assert "answer" in json.loads(answer["output"][0]["content"][0]["text"])


def test_non_stream_answer(server: ReferenceServer, client: httpx.Client) -> None:
    r = post(
        client, server.base_url, instructions="Be brief.", temperature=0.5, metadata={"a": "b"}
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    answer = r.json()
    assert answer["object"] == "response" and answer["status"] == "completed"
    assert answer["id"].startswith("resp_") and isinstance(answer["created_at"], int)
    assert "output_text" not in answer
    assert answer["instructions"] == "Be brief." and answer["temperature"] == 0.5
    assert answer["metadata"] == {"a": "b"} and answer["usage"]["input_tokens"] == 2 + 6
    response = _sdk(server).responses.create(model=DEFAULT_MODEL, input=HELLO)
    assert response.output_text == GREETING and response.status == "completed"
    cut = _sdk(server).responses.create(model=DEFAULT_MODEL, input=LONG, max_output_tokens=16)
    assert cut.status == "incomplete" and cut.usage.output_tokens == 16


# -- background mode and fetching a stored response again ---------------------------------


def test_background_stream_starts_queued_and_is_replayed_after_n(
    server: ReferenceServer, client: httpx.Client
) -> None:
    evs = events(post(client, server.base_url, stream=True, background=True))
    assert shape([e["type"] for e in evs]) == [
        "response.created", "response.queued", "response.in_progress", *TEXT_ITEM,
        "response.completed",
    ]  # fmt: skip
    statuses = [e["response"]["status"] for e in evs[:3]]
    assert statuses == ["queued", "queued", "in_progress"]
    assert evs[0]["response"]["background"] is True
    rid = evs[0]["response"]["id"]
    url = f"{server.base_url}/responses/{rid}"
    for after in (0, 4, len(evs) - 2):
        replay = events(client.get(url, params={"stream": "true", "starting_after": after},
                                   headers=AUTH))  # fmt: skip
        assert replay == evs[after + 1 :]
    assert events(client.get(url, params={"stream": "true"}, headers=AUTH)) == evs
    stored = client.get(url, headers=AUTH)
    assert stored.status_code == 200 and stored.json() == evs[-1]["response"]


def test_background_without_stream_answers_queued(
    server: ReferenceServer, client: httpx.Client
) -> None:
    r = post(client, server.base_url, background=True)
    assert r.status_code == 200 and r.json()["status"] == "queued" and r.json()["output"] == []
    stored = client.get(f"{server.base_url}/responses/{r.json()['id']}", headers=AUTH).json()
    assert stored["status"] == "completed" and stored["output"][0]["type"] == "message"


@pytest.mark.parametrize(
    ("body", "query", "status", "param"),
    [
        ({"stream": True, "store": False}, {}, 404, None),  # not stored: nothing to fetch
        ({"stream": True}, {"stream": "true"}, 400, "stream"),  # not a background response
        ({"stream": True, "background": True}, {"stream": "true", "starting_after": "x"}, 400,
         "starting_after"),
    ],
)  # fmt: skip
def test_fetching_again_refused(
    server: ReferenceServer, client: httpx.Client, body, query, status, param
) -> None:
    first = events(post(client, server.base_url, **body))
    rid = first[0]["response"]["id"]
    r = client.get(f"{server.base_url}/responses/{rid}", params=query, headers=AUTH)
    assert r.status_code == status, r.text
    assert _error(r)["param"] == param
    r = client.get(f"{server.base_url}/responses/resp_{'0' * 48}", headers=AUTH)
    assert r.status_code == 404 and "not found" in _error(r)["message"]
    assert client.get(f"{server.base_url}/responses/{rid}").status_code == 401
    r = post(client, server.base_url, stream=True, background=True, store=False)
    assert r.status_code == 400 and _error(r)["param"] == "background"


def test_the_store_keeps_the_most_recent() -> None:
    store = Store(size=2)
    for key in ("a", "b", "c"):
        store.put(key, key.upper())
    assert (store.get("a"), store.get("b"), store.get("c")) == (None, "B", "C")


def test_sdk_resumes_a_background_stream(server: ReferenceServer) -> None:
    sdk = _sdk(server)
    seen = list(sdk.responses.create(model=DEFAULT_MODEL, input=LONG, stream=True,
                                     background=True))  # fmt: skip
    rid = seen[0].response.id
    again = list(sdk.responses.retrieve(rid, stream=True, starting_after=5))
    assert [e.sequence_number for e in again] == list(range(6, len(seen)))
    assert [e.model_dump() for e in again] == [e.model_dump() for e in seen[6:]]
    with sdk.responses.stream(response_id=rid, starting_after=5) as s:
        assert [e.sequence_number for e in s] == list(range(6, len(seen)))
        final = s.get_final_response()
    assert final.output_text == STORY and final.status == "completed"


# -- the official SDK ----------------------------------------------------------------------


def test_sdk_iterates_every_event() -> None:
    with ReferenceServer() as server:
        seen = list(_sdk(server).responses.create(model=DEFAULT_MODEL, input=HELLO, stream=True))
        assert server.errors == []
    assert shape([e.type for e in seen]) == [*HEAD, *TEXT_ITEM, "response.completed"]
    assert [e.sequence_number for e in seen] == list(range(len(seen)))
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert text == GREETING == seen[-1].response.output_text


def test_sdk_stream_helper(server: ReferenceServer) -> None:
    sdk = _sdk(server)
    with sdk.responses.stream(model=DEFAULT_MODEL, input=LONG) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert final.output_text == "".join(deltas) == STORY
    with sdk.responses.stream(model=DEFAULT_MODEL, input=HELLO, tools=[WEATHER],
                              tool_choice=FORCED) as s:  # fmt: skip
        final = s.get_final_response()
    (call,) = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.parsed_arguments == {"city": "Paris"}  # a strict tool: the SDK parses them
    with sdk.responses.stream(model=DEFAULT_MODEL, input=HELLO, tools=[WEATHER, TIME],
                              tool_choice="required", parallel_tool_calls=True) as s:  # fmt: skip
        indexes = [e.output_index for e in s if e.type == "response.output_item.added"]
        final = s.get_final_response()
    assert indexes == [0, 1]
    assert [(o.type, o.name) for o in final.output] == [("function_call", "get_weather"),
                                                        ("function_call", "get_time")]  # fmt: skip
    assert [json.loads(o.arguments)["city"] for o in final.output] == ["Paris", "Tokyo"]
    with sdk.responses.stream(model=DEFAULT_MODEL, input=HELLO,
                              reasoning={"summary": "auto"}) as s:  # fmt: skip
        summary = "".join(e.delta for e in s if e.type == "response.reasoning_summary_text.delta")
        final = s.get_final_response()
    assert final.output[0].type == "reasoning"
    assert [p.text for p in final.output[0].summary] == [summary] and summary
    assert final.output_text == GREETING


def test_async_sdk(server: ReferenceServer) -> None:
    async def main() -> tuple[list[Any], Any, Any]:
        sdk = _async_sdk(server)
        seen = [e async for e in await sdk.responses.create(
            model=DEFAULT_MODEL, input=HELLO, stream=True)]  # fmt: skip
        async with sdk.responses.stream(model=DEFAULT_MODEL, input=HELLO, tools=[WEATHER],
                                        tool_choice=FORCED) as s:  # fmt: skip
            call = await s.get_final_response()
        async with sdk.responses.stream(model=DEFAULT_MODEL, input=HELLO,
                                        reasoning={"summary": "concise"}) as s:  # fmt: skip
            summary = ""
            async for e in s:
                if e.type == "response.reasoning_summary_text.delta":
                    summary += e.delta
            reasoning = await s.get_final_response()
        await sdk.close()
        return seen, call, (summary, reasoning)

    seen, call, (summary, reasoning) = asyncio.run(asyncio.wait_for(main(), 20))
    assert shape([e.type for e in seen]) == [*HEAD, *TEXT_ITEM, "response.completed"]
    assert [e.sequence_number for e in seen] == list(range(len(seen)))
    assert seen[-1].response.output_text == GREETING
    assert [o.type for o in call.output] == ["function_call"]
    assert json.loads(call.output[0].arguments) == {"city": "Paris"}
    assert reasoning.output[0].summary[0].text == summary and reasoning.output_text == GREETING


# -- refused requests ----------------------------------------------------------------------


def _error(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"] == "application/json", r.headers
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "param", "code"),
    [
        ({"authorization": ""}, {}, 401, None, "invalid_api_key"),
        ({"authorization": "Bearer sk-wrong-key"}, {}, 401, None, "invalid_api_key"),
        ({}, {"model": "streamproof-no-such-model"}, 404, "model", "model_not_found"),
        ({}, {"temperature": -1}, 400, "temperature", "decimal_below_min_value"),
        ({}, {"max_output_tokens": 15}, 400, "max_output_tokens", "integer_below_min_value"),
        ({}, {"input": 7}, 400, "input", "invalid_type"),
        ({}, {"input": None}, 400, "input", "missing_required_parameter"),
        ({}, {"tools": [{"type": "function", "function": {"name": "f"}}]}, 400,
         "tools[0].name", "missing_required_parameter"),
        ({}, {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, 400,
         "tool_choice", "invalid_value"),
        ({}, {"input": [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]},
         400, "input[0].content[0].type", "invalid_value"),
        ({}, {"input": [{"type": "function_call_output", "call_id": "call_1", "output": "x"}]},
         400, "input", None),
        ({}, {"reasoning": {"effort": "max"}}, 400, "reasoning.effort", "invalid_value"),
        ({}, {"include": ["everything"]}, 400, "include[0]", "invalid_value"),
        ({}, {"previous_response_id": "resp_1"}, 400, "previous_response_id",
         "previous_response_not_found"),
    ],
)  # fmt: skip
def test_refused_before_the_stream(
    server: ReferenceServer, client: httpx.Client, headers, body, status, param, code
) -> None:
    payload = {k: v for k, v in body_of(stream=True, **body).items() if v is not None}
    sent = {k: v for k, v in (AUTH | headers).items() if v}
    r = client.post(f"{server.base_url}/responses", json=payload, headers=sent)
    assert r.status_code == status, r.text
    error = _error(r)
    assert (error["param"], error["code"]) == (param, code), error
    assert error["type"] == "invalid_request_error"


def test_malformed_json_and_other_methods(server: ReferenceServer, client: httpx.Client) -> None:
    r = client.post(f"{server.base_url}/responses", content=b'{"model": "x", "input": [',
                    headers={**AUTH, "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 400 and "could not parse the JSON body" in _error(r)["message"]
    r = client.get(f"{server.base_url}/responses", headers=AUTH)
    assert r.status_code == 405 and _error(r)["code"] == "method_not_allowed"
    r = client.post(f"{server.base_url}/responses/resp_1/cancel", headers=AUTH)
    assert r.status_code == 404 and _error(r)["type"] == "invalid_request_error"


def test_sdk_exceptions(server: ReferenceServer) -> None:
    with pytest.raises(openai.AuthenticationError) as bad_key:
        _sdk(server, "sk-wrong").responses.create(model=DEFAULT_MODEL, input=HELLO, stream=True)
    assert bad_key.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as unknown:
        _sdk(server).responses.create(model="streamproof-no-such-model", input=HELLO, stream=True)
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        _sdk(server).responses.create(model=DEFAULT_MODEL, input=HELLO, temperature=-1,
                                      stream=True)  # fmt: skip
    assert (bad.value.code, bad.value.param) == ("decimal_below_min_value", "temperature")


# -- timing --------------------------------------------------------------------------------


def test_ticks_only_content_takes_a_gap() -> None:
    start = {"type": "response.created"}
    delta = {"type": "response.output_text.delta", "delta": "a"}
    empty = {"type": "response.function_call_arguments.delta", "delta": ""}
    summary = {"type": "response.reasoning_summary_text.delta", "delta": "b"}
    raw = Raw(None, orjson.dumps(delta))
    items = [start, empty, delta, summary, {"type": "x"}, raw, b"[DONE]", Raw("y", b"[")]
    assert ticks_of(items) == [0, 0, 0, 1, 1, 2, 2, 2]
    assert [is_content(i) for i in (delta, {**delta, "delta": 1}, raw, b"{")] == [
        True, False, True, False
    ]  # fmt: skip
    assert serialise(delta) == b'event: response.output_text.delta\ndata: {"type":' + (
        b'"response.output_text.delta","delta":"a"}\n\n'
    )
    assert serialise(raw) == b"data: " + orjson.dumps(delta) + b"\n\n"
    assert serialise(Raw("y", b"[")) == b"event: y\ndata: [\n\n"
    assert serialise({"delta": "x"}) == b'data: {"delta":"x"}\n\n'
    assert renumbered([{"type": "a", "sequence_number": 5}, b"x", {"type": "b"}]) == [
        {"type": "a", "sequence_number": 0}, b"x", {"type": "b", "sequence_number": 2}
    ]  # fmt: skip


def test_timing_is_kept(server: ReferenceServer) -> None:
    """Content delta k is due ``ttft + k * gap``; the events before the first one go with it,
    the closing ones with the last: lifecycle and item events take no gap of their own."""
    ttft, gap = 60.0, 8.0
    base = server.url_for(timing=Timing(ttft_ms=ttft, gap_ms=gap), stamps=True)
    decoder = SSEDecoder()
    seen: list[Event] = []
    with httpx.Client(trust_env=False, timeout=TIMEOUT) as c:
        t_send = time.perf_counter_ns()
        with c.stream("POST", f"{base}/responses", headers=AUTH,
                      json=body_of(stream=True, reasoning={"summary": "auto"})) as r:  # fmt: skip
            for raw in r.iter_raw():
                seen += decoder.feed(raw, time.perf_counter_ns())
    sent = [send_stamp(e) for e in seen]
    content = [i for i, e in enumerate(seen) if e.name.endswith(".delta")]
    assert len(content) > len(GREETING.split())  # summary and text
    due = [t_send + round((ttft + k * gap) * 1e6) for k in range(len(content))]
    early = [k for k, (i, d) in enumerate(zip(content, due, strict=True)) if sent[i] < d - EARLY_NS]
    assert early == []
    head, closing = sent[: content[0]], sent[content[-1] + 1 :]
    assert [e.name for e in seen[: content[0]]] == [
        *HEAD, "response.output_item.added", "response.reasoning_summary_part.added"
    ]  # fmt: skip
    assert [e.name for e in seen[content[-1] + 1 :]] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert all(abs(s - sent[content[0]]) < gap * 1e6 / 2 for s in head), head
    assert all(abs(s - sent[content[-1]]) < gap * 1e6 / 2 for s in closing), closing
    # the events between the summary and the text go with the last summary delta
    last_summary = max(i for i in content if "reasoning" in seen[i].name)
    first_text = min(i for i in content if "output_text" in seen[i].name)
    between = sent[last_summary + 1 : first_text]
    assert len(between) == 5 and all(abs(s - sent[last_summary]) < gap * 1e6 / 2 for s in between)
    pace = (sent[content[-1]] - sent[content[0]]) / 1e6 / (len(content) - 1)
    assert gap / 2 <= pace <= 2 * gap, pace


# -- scripted replies and the fault hook ------------------------------------------------------

SCRIPT = [
    {"match": {"api": "openai"}, "reply": {"text": "Only for chat completions."}},
    {"match": {"api": "responses", "tool_result": True}, "reply": {"text": "The tool says so."}},
    {
        "match": {"api": "responses", "contains": "weather", "tools": ["get_weather"]},
        "reply": {
            "reasoning": "Checking the weather tool.",
            "text": "Let me look that up.",
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Lima", "days": 2}}],
            "usage": {"input_tokens": 12, "output_tokens": 30},
        },
    },
]


def test_a_script_drives_the_responses_api() -> None:
    with ReferenceServer(script=Script.parse(SCRIPT), timing=Timing(ttft_ms=1, gap_ms=0)) as srv:
        sdk = _sdk(srv)
        with sdk.responses.stream(model=DEFAULT_MODEL, input="What is the weather in Lima?",
                                  tools=[WEATHER]) as s:  # fmt: skip
            types = shape([e.type for e in s])
            final = s.get_final_response()
        assert types == [*HEAD, *SUMMARY_ITEM, *TEXT_ITEM, *CALL_ITEM, "response.completed"]
        reasoning, _, call = final.output
        assert reasoning.summary[0].text == "Checking the weather tool."
        assert final.output_text == "Let me look that up."
        assert json.loads(call.arguments) == {"city": "Lima", "days": 2}
        assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 30)
        assert final.usage.output_tokens_details.reasoning_tokens == 4
        follow = [
            {"role": "user", "content": "What is the weather in Lima?"},
            {"type": "function_call", "call_id": call.call_id, "name": "get_weather",
             "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "Warm."},
        ]  # fmt: skip
        answer = sdk.responses.create(model=DEFAULT_MODEL, input=follow, tools=[WEATHER])
        assert answer.output_text == "The tool says so."
        # no rule for this one: the generated answer (the chat-only rule is not the API's)
        assert sdk.responses.create(model=DEFAULT_MODEL, input=HELLO).output_text == GREETING
        assert srv.errors == []


def test_chunk_faults_see_numbered_events() -> None:
    """The chunk layer gets the events numbered: dropping one leaves a gap in the numbers
    (what a numbering fault needs), and the ticks follow the edited list."""
    seen: list[list[Any]] = []

    def drop_third(items: list[Any], info: Any) -> list[Any]:
        seen.append(items)
        assert info.usage["output_tokens"] == len(GREETING.split())
        return [*items[:2], *items[3:], Raw(None, b"[DONE]")]

    fault = Fault("drop-item", "responses", (), "stream", "test only", chunks=drop_third)
    ctx = Context(DEFAULT_API_KEY, Timing(), FaultSet((fault,)))
    body = orjson.dumps(body_of(stream=True))
    reply = responses(Request("POST", "/v1/responses", AUTH, body), ctx)
    assert [i["sequence_number"] for i in seen[0]] == list(range(len(seen[0])))
    assert reply.events is not None and reply.ticks is not None
    assert len(reply.events) == len(reply.ticks) == len(seen[0])
    assert reply.events[2].startswith(b"event: response.content_part.added\ndata: ")
    assert b'"sequence_number":3' in reply.events[2]
    assert reply.events[-1] == b"data: [DONE]\n\n"
    assert API.name == "responses" and "/v1/responses" in API.routes
