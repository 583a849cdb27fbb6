"""The official ``openai`` SDK as a real client of the reference server's ``/v1/responses``,
sync and async, with ``responses.create(stream=True)`` (raw events: the terminal event's
response) and ``responses.stream(...)`` (the helper: ``get_final_response()``): over the
network it rebuilds the same response as the suite's stream model."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest

from streamproof.capture import exchange
from streamproof.engine import Target, model_for
from streamproof.scenarios import scenarios_for
from streamproof.sdk_replay import responses_normalized
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer

# the streams a POST answers (resume fetches one again: test_server_responses.py, test_resume.py)
SCENARIOS = {s.name: s for s in scenarios_for("responses") if s.kind == "stream" and not s.resume}
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@pytest.fixture(scope="module")
def server():
    with ReferenceServer() as srv:
        yield srv


def _neutral(response: dict[str, Any]) -> dict[str, Any]:
    """Ids are random per request; everything else must match exactly."""
    assert response["id"] and response["id"].startswith("resp_")
    for item in response["output"]:
        assert item["id"]
        item["id"] = "<id>"
        if "call_id" in item:
            assert item["call_id"].startswith("call_")
            item["call_id"] = "<id>"
    return {**response, "id": "<id>"}


def _request(name: str) -> dict[str, Any]:
    body = SCENARIOS[name].build(DEFAULT_MODEL)
    return {k: v for k, v in body.items() if k != "stream"}


def _accumulated(server: ReferenceServer, request: dict[str, Any]) -> dict[str, Any]:
    body = {**request, "stream": True}
    target = Target(server.base_url, DEFAULT_MODEL, DEFAULT_API_KEY)
    with httpx.Client() as client:
        cap = exchange(
            client,
            "POST",
            target.url("responses"),
            headers=target.headers("responses", "key"),
            body=body,
        )
    model = model_for("responses", body)
    model.feed(cap.events)
    model.finish()
    assert [f for f in model.findings if f.level != "INFO"] == []
    return _neutral(model.message())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_sync_raw_events_end_in_the_accumulated_response(server, name: str) -> None:
    request = _request(name)
    client = openai.OpenAI(base_url=server.base_url, api_key=DEFAULT_API_KEY, max_retries=0)
    with client.responses.create(stream=True, **request) as stream:
        events = list(stream)
    client.close()
    assert events[0].type == "response.created"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type in TERMINAL
    sdk = _neutral(responses_normalized(events[-1].response))
    assert sdk == _accumulated(server, request)
    if name == "max-output-tokens":
        assert events[-1].type == "response.incomplete"
        assert events[-1].response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("name", sorted(set(SCENARIOS) - {"max-output-tokens"}))
def test_sync_stream_helper_rebuilds_the_accumulated_response(server, name: str) -> None:
    request = _request(name)
    client = openai.OpenAI(base_url=server.base_url, api_key=DEFAULT_API_KEY, max_retries=0)
    with client.responses.stream(**request) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    client.close()
    sdk = _neutral(responses_normalized(final))
    assert sdk == _accumulated(server, request)
    kinds = [item["type"] for item in sdk["output"]]
    expected = {
        "plain": ["message"],
        "background": ["message"],
        "tool": ["function_call"],
        "parallel-tools": ["function_call", "function_call"],
        "reasoning": ["reasoning", "message"],
    }
    assert kinds == expected[name]
    if name == "parallel-tools":
        assert [i["name"] for i in sdk["output"]] == ["get_weather", "get_time"]
    if name == "reasoning":
        assert sdk["output"][0]["summary"][0]
    if kinds[-1] == "message":
        assert final.output_text == sdk["output"][-1]["content"][0]["text"]


@pytest.mark.parametrize("name", ["plain", "tool", "reasoning", "max-output-tokens"])
def test_async_sdk_rebuilds_the_accumulated_response(server, name: str) -> None:
    request = _request(name)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key=DEFAULT_API_KEY, max_retries=0
        )
        stream = await client.responses.create(stream=True, **request)
        async with stream:
            raw = [event async for event in stream]
        async with client.responses.stream(**request) as helper:
            last = None
            async for event in helper:
                if event.type in TERMINAL:
                    last = event.response
            if name != "max-output-tokens":
                last = await helper.get_final_response()
        await client.close()
        return responses_normalized(raw[-1].response), responses_normalized(last)

    from_raw, from_helper = asyncio.run(main())
    expected = _accumulated(server, request)
    assert _neutral(from_raw) == expected
    assert _neutral(from_helper) == expected


@pytest.mark.parametrize(
    ("key", "request_changes", "error"),
    [
        ("sk-wrong", {}, openai.AuthenticationError),
        (DEFAULT_API_KEY, {"temperature": -1}, openai.BadRequestError),
        (DEFAULT_API_KEY, {"model": "streamproof-no-such-model"}, openai.NotFoundError),
    ],
)
def test_sdk_exceptions_fire(server, key: str, request_changes: dict, error: type) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
    with pytest.raises(error):
        client.responses.create(stream=True, **{**_request("plain"), **request_changes})
    client.close()
