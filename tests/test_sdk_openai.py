"""The official ``openai`` SDK as a real client of the reference server, sync and async: over
the network it rebuilds the same message as the suite's accumulator (text, tool calls, usage,
n=2), and its exception classes fire for the errors the suite checks."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from streamproof.capture import exchange
from streamproof.engine import Target, model_for
from streamproof.scenarios import scenarios_for
from streamproof.sdk_replay import openai_normalized
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer

SCENARIOS = {s.name: s for s in scenarios_for("openai") if s.kind == "stream"}
COMPARED = ("plain", "max-tokens", "stop", "tool", "parallel-tools", "usage", "n2")


@pytest.fixture(scope="module")
def server():
    with ReferenceServer() as srv:
        yield srv


def _without_call_ids(message: dict[str, Any]) -> dict[str, Any]:
    """Call ids are random per request; everything else must match exactly."""
    for choice in message["choices"]:
        for call in choice["tool_calls"]:
            assert call["id"] and call["id"].startswith("call_")
            call["id"] = "<id>"
    return message


def _accumulated(server: ReferenceServer, body: dict[str, Any]) -> dict[str, Any]:
    target = Target(server.base_url, DEFAULT_MODEL, DEFAULT_API_KEY)
    with httpx.Client() as client:
        cap = exchange(
            client,
            "POST",
            target.url("openai"),
            headers=target.headers("openai", "key"),
            body=body,
        )
    validator = model_for("openai", body)
    validator.feed(cap.events)
    validator.finish()
    assert [f for f in validator.findings if f.level != "INFO"] == []
    return _without_call_ids(validator.message())


def _request(name: str) -> dict[str, Any]:
    body = SCENARIOS[name].build(DEFAULT_MODEL)
    return {k: v for k, v in body.items() if k != "stream"}


@pytest.mark.parametrize("name", COMPARED)
def test_sync_sdk_rebuilds_the_accumulated_message(server, name: str) -> None:
    request = _request(name)
    client = openai.OpenAI(base_url=server.base_url, api_key=DEFAULT_API_KEY, max_retries=0)
    state = ChatCompletionStreamState()
    with client.chat.completions.create(stream=True, **request) as stream:
        for chunk in stream:
            state.handle_chunk(chunk)
    client.close()
    sdk = _without_call_ids(openai_normalized(state.current_completion_snapshot))
    assert sdk == _accumulated(server, {**request, "stream": True})
    if name == "n2":
        assert [c["index"] for c in sdk["choices"]] == [0, 1]
    if name == "parallel-tools":
        assert [c["name"] for c in sdk["choices"][0]["tool_calls"]] == ["get_weather", "get_time"]
    if name in ("usage", "max-tokens"):
        assert sdk["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("name", ["plain", "tool", "usage", "n2"])
def test_async_sdk_stream_helper_rebuilds_the_accumulated_message(server, name: str) -> None:
    request = _request(name)

    async def main() -> dict[str, Any]:
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key=DEFAULT_API_KEY, max_retries=0
        )
        async with client.chat.completions.stream(**request) as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_completion()
        await client.close()
        return openai_normalized(final)

    sdk = _without_call_ids(asyncio.run(main()))
    assert sdk == _accumulated(server, {**request, "stream": True})


@pytest.mark.parametrize(
    ("key", "request_changes", "error"),
    [
        ("sk-wrong", {}, openai.AuthenticationError),
        (DEFAULT_API_KEY, {"messages": []}, openai.BadRequestError),
        (DEFAULT_API_KEY, {"model": "streamproof-no-such-model"}, openai.NotFoundError),
    ],
)
def test_sdk_exceptions_fire(server, key: str, request_changes: dict, error: type) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
    with pytest.raises(error):
        client.chat.completions.create(stream=True, **{**_request("plain"), **request_changes})
    client.close()
