"""The reference server's OpenAI endpoint: clean streams, request options, errors, HTTP
behaviour, timing, send stamps, and every fault of the registry (each changes the response
in its own way). Also the official ``openai`` SDK, sync and async, against the server."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from streamproof.capture import Capture, Timeouts, exchange
from streamproof.rules import catalogue
from streamproof.scenarios import SCENARIOS, WEATHER_TOOL, Scenario
from streamproof.server import (
    DEFAULT_API_KEY,
    DEFAULT_MODEL,
    FAULTS,
    HUGE_EVENT_BYTES,
    ReferenceServer,
    Timing,
    fault_table,
)
from streamproof.server.faults.leak import LEAK_HEADERS
from streamproof.server.send import EARLY_NS
from streamproof.server.text import GREETING, STORY
from streamproof.server.timing import TimingError
from streamproof.sse import Event, SSEDecoder

AUTH = {"authorization": f"Bearer {DEFAULT_API_KEY}"}
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
STORY_PROMPT = [{"role": "user", "content": "Write a short story."}]
COUNT = [{"role": "user", "content": "Count from 1 to 20."}]
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}}},
}  # fmt: skip
# idle outlasts the buffered fault's 600 ms hold; total still ends the stall faults quickly
FAULT_TIMEOUTS = Timeouts(connect=1.0, first_byte=1.0, idle=0.8, total=1.5)
# the event flood is valid but long: a busy machine needs seconds to plan and read its 60 000
# events
FLOOD_TIMEOUTS = Timeouts(connect=1.0, first_byte=5.0, idle=5.0, total=20.0)
# the buffered fault sends nothing for 600 ms: no event before half of that is a signature
# that CPU load cannot fake (the server is never early); a clean stream starts at 5 ms
HOLD_NS = 300_000_000
FAULT_TIMING = Timing(ttft_ms=5, gap_ms=0.5)  # quick streams, still clearly not one burst
OPENAI_SCENARIOS = {s.name: s for s in SCENARIOS if s.api == "openai"}
# the faults proven on this API (the Anthropic ones: tests/test_server_anthropic.py)
OPENAI_FAULTS = {n: f for n, f in FAULTS.items() if f.api in ("openai", "any")}


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer() as srv:
        yield srv
        assert srv.errors == []


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as c:
        yield c


# -- helpers -------------------------------------------------------------------------------


def chat(
    client: httpx.Client, base: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    body = {"model": DEFAULT_MODEL, "messages": HELLO, **body}
    return client.post(f"{base}/chat/completions", json=body, headers=headers or AUTH)


def events_of(body: bytes) -> tuple[list[str], SSEDecoder]:
    decoder = SSEDecoder()
    events = decoder.feed(body)
    decoder.finish()
    return [e.data for e in events], decoder


def stream(client: httpx.Client, base: str, **body: Any) -> list[dict[str, Any]]:
    """A clean stream's chunks (the [DONE] sentinel checked and dropped)."""
    r = chat(client, base, stream=True, **body)
    assert r.status_code == 200, r.text
    datas, decoder = events_of(r.content)
    assert decoder.findings == []
    assert datas[-1] == "[DONE]"
    assert "[DONE]" not in datas[:-1]
    return [json.loads(d) for d in datas[:-1]]


def content(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        c["delta"].get("content") or ""
        for chunk in chunks
        for c in chunk["choices"]
        if c["index"] == index
    )


def tool_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Calls of choice 0 by index: head fields once, arguments joined."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for entry in chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"] else []:
            call = calls.setdefault(entry["index"], {"arguments": ""})
            if "id" in entry:
                assert "id" not in call, "head fields repeated"
                call.update(id=entry["id"], type=entry["type"], name=entry["function"]["name"])
            call["arguments"] += entry["function"]["arguments"]
    return calls


def finishes(chunks: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [
        (c["index"], c["finish_reason"])
        for ch in chunks
        for c in ch["choices"]
        if c["finish_reason"]
    ]


def raw_exchange(port: int, payload: bytes, responses: int = 1, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until ``responses`` complete responses (chunked or sized) came."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        deadline = time.monotonic() + timeout
        while _complete(data) < responses and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _complete(data: bytes) -> int:
    """How many whole responses ``data`` holds (a chunked one ends with the last-chunk)."""
    count = 0
    while (end := data.find(b"\r\n\r\n")) >= 0:
        head, rest = data[:end], data[end + 4 :]
        length = re.search(rb"content-length: (\d+)", head)
        if length:
            if len(rest) < int(length[1]):
                break
            data = rest[int(length[1]) :]
        else:
            stop = rest.find(b"\r\n0\r\n\r\n")
            if stop < 0:
                break
            data = rest[stop + 7 :]
        count += 1
    return count


def post_bytes(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {DEFAULT_API_KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def wait_for(condition: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def send_stamp(event: Event) -> int:
    """The server's send stamp of ``event`` (``: t=<perf_counter_ns>`` before it, with stamps
    on): when the frame was written, on the same clock as the client's read stamps."""
    assert event.comment is not None and event.comment.startswith(b" t="), event.comment
    return int(event.comment[3:])


# -- the clean stream ------------------------------------------------------------------------


def test_clean_stream_shape(server: ReferenceServer, client: httpx.Client) -> None:
    r = chat(client, server.base_url, stream=True, messages=STORY_PROMPT)
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-request-id"].startswith("req_")
    assert r.headers["transfer-encoding"] == "chunked"
    chunks = stream(client, server.base_url, messages=STORY_PROMPT)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        (chunks[0]["id"], chunks[0]["created"], DEFAULT_MODEL, "chat.completion.chunk")
    }
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{24}", chunks[0]["id"])
    assert all(isinstance(c["created"], int) for c in chunks)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert finishes(chunks) == [(0, "stop")]
    assert content(chunks) == STORY
    assert all("usage" not in c for c in chunks)  # not requested


def test_max_tokens_cuts_with_length(server: ReferenceServer, client: httpx.Client) -> None:
    chunks = stream(
        client, server.base_url, messages=STORY_PROMPT, max_tokens=5,
        stream_options={"include_usage": True},
    )  # fmt: skip
    assert content(chunks) == "The lighthouse keeper climbed the"
    assert finishes(chunks) == [(0, "length")]
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    limited = stream(client, server.base_url, messages=STORY_PROMPT, max_completion_tokens=2)
    assert content(limited) == "The lighthouse"


def test_stop_sequence_cuts_before_the_match(server: ReferenceServer, client: httpx.Client) -> None:
    assert content(stream(client, server.base_url, messages=COUNT)) == " ".join(
        str(n) for n in range(1, 21)
    )
    chunks = stream(client, server.base_url, messages=COUNT, stop=[" 7", "xyz"])
    assert content(chunks) == "1 2 3 4 5 6"
    assert finishes(chunks) == [(0, "stop")]
    assert content(stream(client, server.base_url, messages=COUNT, stop="3 4")) == "1 2 "


def test_n_choices_interleave_each_with_role_and_finish(
    server: ReferenceServer, client: httpx.Client
) -> None:
    chunks = stream(client, server.base_url, n=2)
    indices = [c["choices"][0]["index"] for c in chunks]
    assert indices[:4] == [0, 1, 0, 1]
    for k in (0, 1):
        own = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == k]
        assert own[0]["delta"]["role"] == "assistant"
        assert sum("role" in c["delta"] for c in own) == 1
        assert [c["finish_reason"] for c in own if c["finish_reason"]] == ["stop"]
    assert content(chunks, 0) == GREETING
    assert content(chunks, 1) == f"Choice 2: {GREETING}"


def test_forced_tool_call(server: ReferenceServer, client: httpx.Client) -> None:
    forced = {"type": "function", "function": {"name": "get_weather"}}
    chunks = stream(client, server.base_url, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=forced)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    head = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
    assert head["function"]["arguments"] == ""
    calls = tool_calls(chunks)
    assert list(calls) == [0]
    assert re.fullmatch(r"call_[0-9a-f]{24}", calls[0]["id"])
    assert (calls[0]["type"], calls[0]["name"]) == ("function", "get_weather")
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert len(chunks) > 4  # the arguments come in several fragments
    assert finishes(chunks) == [(0, "tool_calls")]
    assert content(chunks) == ""


def test_parallel_tool_calls_stream_one_after_another(
    server: ReferenceServer, client: httpx.Client
) -> None:
    chunks = stream(
        client, server.base_url, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="required"
    )
    calls = tool_calls(chunks)
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_time"]
    assert [json.loads(calls[i]["arguments"]) for i in (0, 1)] == [
        {"city": "Paris"}, {"city": "Tokyo"},
    ]  # fmt: skip
    order = [
        e["index"]
        for c in chunks
        if c["choices"]
        for e in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert order == sorted(order)
    single = stream(
        client, server.base_url, tools=[WEATHER_TOOL, TIME_TOOL], parallel_tool_calls=False
    )
    assert list(tool_calls(single)) == [0]
    none = stream(client, server.base_url, tools=[WEATHER_TOOL], tool_choice="none")
    assert content(none) == GREETING


def test_include_usage_counts_what_was_streamed(
    server: ReferenceServer, client: httpx.Client
) -> None:
    for extra in ({}, {"tools": [WEATHER_TOOL, TIME_TOOL]}, {"n": 2}):
        chunks = stream(client, server.base_url, stream_options={"include_usage": True}, **extra)
        *rest, last = chunks
        assert last["choices"] == []
        assert all(c["usage"] is None for c in rest)
        usage = last["usage"]
        streamed = sum(  # one token per word, per tool-call head and per argument fragment
            bool(
                c["choices"][0]["delta"].get("content")
                or c["choices"][0]["delta"].get("tool_calls")
            )
            for c in rest
        )
        assert usage["completion_tokens"] == streamed
        assert usage["prompt_tokens"] == len(HELLO[0]["content"].split())
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_tokens_per_chunk_groups_words(server: ReferenceServer, client: httpx.Client) -> None:
    base = server.url_for(timing=Timing(ttft_ms=0, gap_ms=0, tokens_per_chunk=3))
    chunks = stream(client, base, messages=COUNT)
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["1 2 3", " 4 5 6"]
    assert content(chunks) == " ".join(str(n) for n in range(1, 21))


def test_non_stream_answer_is_one_json_completion(
    server: ReferenceServer, client: httpx.Client
) -> None:
    r = chat(client, server.base_url, stream=False)
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["content-length"]) == len(r.content)
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": GREETING,
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == len(GREETING.split())
    tools = chat(client, server.base_url, tools=[WEATHER_TOOL]).json()["choices"][0]
    assert tools["finish_reason"] == "tool_calls"
    assert json.loads(tools["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Paris"
    }


# -- errors ----------------------------------------------------------------------------------


def _error(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize(
    ("headers", "body", "status", "code", "param"),
    [
        ({}, {"stream": True}, 401, "invalid_api_key", None),
        ({"authorization": "Bearer sk-wrong-key-1234"}, {}, 401, "invalid_api_key", None),
        ({"authorization": "Basic abc"}, {}, 401, "invalid_api_key", None),
        (AUTH, {"model": "streamproof-no-such-model"}, 404, "model_not_found", None),
        (AUTH, {"messages": None}, 400, "missing_required_parameter", "messages"),
        (AUTH, {"messages": []}, 400, "empty_array", "messages"),
        (AUTH, {"n": 0}, 400, "integer_below_min_value", "n"),
        (AUTH, {"max_tokens": "5"}, 400, "invalid_type", "max_tokens"),
        (AUTH, {"stop": ["a", "b", "c", "d", "e"]}, 400, "array_above_max_length", "stop"),
        (AUTH, {"stream_options": {"include_usage": True}}, 400, "invalid_value", "stream_options"),
        (
            AUTH,
            {"tools": [{"type": "function"}]},
            400,
            "missing_required_parameter",
            "tools[0].function",
        ),
        (
            AUTH,
            {
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            400,
            "invalid_value",
            "tool_choice",
        ),
    ],
)
def test_refused_requests(
    server: ReferenceServer, client: httpx.Client, headers, body, status, code, param
) -> None:
    payload = {"model": DEFAULT_MODEL, "messages": HELLO, **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    r = client.post(f"{server.base_url}/chat/completions", json=payload, headers=headers)
    assert r.status_code == status
    error = _error(r)
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)


def test_malformed_json_and_shared_refusals(server: ReferenceServer, client: httpx.Client) -> None:
    url = f"{server.base_url}/chat/completions"
    r = client.post(url, content=b'{"model": "streamproof-1", "messages": [', headers=AUTH)
    assert r.status_code == 400
    assert "could not parse the JSON body" in _error(r)["message"]
    assert client.get(f"{server.base_url}/nowhere", headers=AUTH).status_code == 404
    wrong = client.get(url, headers=AUTH)
    assert wrong.status_code == 405
    assert _error(wrong)["code"] == "method_not_allowed"
    unknown = client.post(f"http://127.0.0.1:{server.port}/fault/nope/v1/chat/completions")
    assert unknown.status_code == 400
    assert "missing-done" in _error(unknown)["message"]  # the known faults are listed
    timing = client.post(f"http://127.0.0.1:{server.port}/timing/gap=1/v1/chat/completions")
    assert timing.status_code == 400


def test_models_list(server: ReferenceServer, client: httpx.Client) -> None:
    r = client.get(f"{server.base_url}/models", headers=AUTH)
    assert [m["id"] for m in r.json()["data"]] == ["streamproof-1", "streamproof-1-mini"]
    assert client.get(f"{server.base_url}/models").status_code == 401


def test_body_size_cap(server: ReferenceServer) -> None:
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
        f"content-length: {5 * 1024 * 1024}\r\n\r\n"
    ).encode()
    response = raw_exchange(server.port, head)
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in response


def test_chunked_request_body(server: ReferenceServer) -> None:
    body = json.dumps({"model": DEFAULT_MODEL, "messages": HELLO}).encode()
    half = len(body) // 2
    chunked = b"%x\r\n%b\r\n%x\r\n%b\r\n0\r\n\r\n" % (
        half,
        body[:half],
        len(body) - half,
        body[half:],
    )
    payload = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
        f"authorization: Bearer {DEFAULT_API_KEY}\r\n\r\n"
    ).encode() + chunked
    response = raw_exchange(server.port, payload)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert GREETING.encode() in response


# -- HTTP behaviour ---------------------------------------------------------------------------


def test_keep_alive_and_pipelining(server: ReferenceServer) -> None:
    streamed = json.dumps({"model": DEFAULT_MODEL, "messages": HELLO, "stream": True}).encode()
    plain = json.dumps({"model": DEFAULT_MODEL, "messages": HELLO}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for body in (streamed, plain):  # two requests, one after the other, one connection
            sock.sendall(post_bytes("/v1/chat/completions", body))
            data = b""
            while _complete(data) < 1:
                data += sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200 ")
            assert b"connection: close" not in data
    both = raw_exchange(server.port, post_bytes("/v1/chat/completions", streamed) * 2, 2)
    assert both.count(b"HTTP/1.1 200 ") == 2
    assert both.count(b"data: [DONE]") == 2
    closing = raw_exchange(
        server.port, post_bytes("/v1/chat/completions", plain, "connection: close\r\n")
    )
    assert b"connection: close" in closing


def test_httpx_reuses_the_connection(server: ReferenceServer) -> None:
    seen: list[object] = []
    with httpx.Client(trust_env=False) as c:
        for _ in range(3):
            with c.stream(
                "POST", f"{server.base_url}/chat/completions", headers=AUTH,
                json={"model": DEFAULT_MODEL, "messages": HELLO, "stream": True},
            ) as r:  # fmt: skip
                r.read()
                seen.append(r.extensions["network_stream"])
    assert len({id(s) for s in seen}) == 1


def test_timing_is_kept() -> None:
    """The stream follows its schedule: content event k is due ``ttft + k * gap`` after the
    request. On a busy machine any event may be late, none may be early (the server sends at
    most ``EARLY_NS`` ahead of a deadline): that bound holds for every event. How late is
    judged on the first token and on the stream's pace, with bands derived from the schedule."""
    ttft, gap = 100.0, 10.0
    with ReferenceServer() as srv:  # its own server: the lateness below is this stream's only
        base = srv.url_for(timing=Timing(ttft_ms=ttft, gap_ms=gap), stamps=True)
        decoder = SSEDecoder()
        seen: list[Event] = []
        with httpx.Client(trust_env=False) as c:
            t_send = time.perf_counter_ns()  # before connecting: the server's clock starts later
            with c.stream(
                "POST", f"{base}/chat/completions", headers=AUTH,
                json={"model": DEFAULT_MODEL, "messages": STORY_PROMPT, "stream": True},
            ) as r:  # fmt: skip
                for raw in r.iter_raw():
                    seen += decoder.feed(raw, time.perf_counter_ns())
        lateness = srv.stats.snapshot()
    content = [e for e in seen if re.search(r'"content":"[^"]', e.data)]
    assert len(content) == len(STORY.split())
    sent = [send_stamp(e) for e in content]
    read = [e.t for e in content]
    due = [t_send + round((ttft + k * gap) * 1e6) for k in range(len(content))]
    early = [(k, (s - d) / 1e6) for k, (s, d) in enumerate(zip(sent, due, strict=True))
             if s < d - EARLY_NS]  # fmt: skip
    assert early == [], early  # (event, ms before its deadline): sent all at once, or too fast
    assert all(e.t >= send_stamp(e) for e in seen), "read before sent: not the same clock"
    # how late: the first token within one more TTFT; the pace (first to last token over the
    # gaps between) within a band of the gap. Not single gaps, nor their median: a starved
    # process reads a catching-up schedule in bursts (under CPU stress one run's median gap
    # was 0.01 ms), while the pace moves by a stall's length / the number of gaps only
    ttft_ms = (read[0] - t_send) / 1e6
    assert ttft - EARLY_NS / 1e6 <= ttft_ms < 2 * ttft, ttft_ms
    pace = (read[-1] - read[0]) / 1e6 / (len(read) - 1)
    gaps = [round((b - a) / 1e6, 2) for a, b in itertools.pairwise(read)]
    assert gap / 2 <= pace <= 2 * gap, f"pace {pace:.2f} ms, gaps {gaps}"
    # the server's own account: one lateness sample per event, none later than the exchange
    assert lateness["frames"] == len(seen)
    assert 0 <= lateness["p50_ms"] <= lateness["p99_ms"] <= lateness["max_ms"], lateness
    assert lateness["max_ms"] < (seen[-1].t - t_send) / 1e6, lateness


def test_timing_spec_round_trip() -> None:
    timing = Timing.parse("ttft_ms=100, gap_ms=10", Timing(tokens_per_chunk=2))
    assert timing == Timing(ttft_ms=100, gap_ms=10, tokens_per_chunk=2)
    assert Timing.parse(timing.spec()) == timing
    late_headers = Timing.parse("ttfb_ms=40,ttft_ms=50")
    assert late_headers.ttfb_ms == 40 and Timing.parse(late_headers.spec()) == late_headers
    for bad in ("gap=1", "ttft_ms=x", "tokens_per_chunk=0", "gap_ms=-1", "ttft_ms",
                "ttfb_ms=60,ttft_ms=50"):  # fmt: skip
        with pytest.raises(TimingError):
            Timing.parse(bad)


def test_header_selection_and_send_stamps(server: ReferenceServer, client: httpx.Client) -> None:
    headers = {**AUTH, "x-streamproof-stamps": "1", "x-streamproof-fault": "missing-done",
               "x-streamproof-timing": "ttft_ms=0,gap_ms=0"}  # fmt: skip
    r = chat(client, server.base_url, headers=headers, stream=True)
    lines = r.content.split(b"\n")
    stamps = [int(line[5:]) for line in lines if line.startswith(b": t=")]
    datas, decoder = events_of(r.content)
    assert len(stamps) == len(datas) and "[DONE]" not in datas
    assert stamps == sorted(stamps)
    after = [lines[i + 1] for i, line in enumerate(lines) if line.startswith(b": t=")]
    assert all(line.startswith(b"data: ") for line in after)
    assert decoder.comments == len(stamps)
    by_path = chat(client, server.url_for(stamps=True), stream=True)
    assert by_path.content.startswith(b": t=")


def test_disconnect_cancels_the_stream() -> None:
    with ReferenceServer(timing=Timing(ttft_ms=0, gap_ms=50)) as srv:
        for fault in ((), ("stall-headers",)):
            with httpx.Client(trust_env=False, timeout=0.3) as c:
                try:
                    with c.stream("POST", f"{srv.url_for(faults=fault)}/chat/completions",
                                  headers=AUTH, json={"model": DEFAULT_MODEL, "messages": HELLO,
                                                      "stream": True}) as r:  # fmt: skip
                        next(r.iter_raw())
                except httpx.ReadTimeout:
                    assert fault  # no headers ever
            assert wait_for(lambda: srv.stats.active == 0), srv.stats.snapshot()
        assert srv.stats.cancelled == 2
        assert srv.stats.finished == 0


def test_stalls_are_capped() -> None:
    with ReferenceServer(stall_cap_s=0.3) as srv:
        start = time.monotonic()
        with httpx.Client(trust_env=False) as c:
            cap = exchange(
                c, "POST", f"{srv.url_for(faults=('stall-mid',))}/chat/completions",
                headers=AUTH, body={"model": DEFAULT_MODEL, "messages": HELLO, "stream": True},
                timeouts=Timeouts(idle=5, total=5),
            )  # fmt: skip
        assert [f.rule for f in cap.findings] == ["transport.broken"]
        assert 0.25 < time.monotonic() - start < 2
        assert srv.stats.active == 0


def test_run_server_stops_on_ctrl_c() -> None:
    code = (
        "from streamproof.server import run_server\n"
        "run_server(port=0, on_ready=lambda url: print(url, flush=True))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        assert httpx.get(f"{url}/models", headers=AUTH, trust_env=False).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


# -- faults ------------------------------------------------------------------------------------


def test_registry_names_real_rules_and_scenarios() -> None:
    rules = catalogue()
    for fault in OPENAI_FAULTS.values():
        # a valid edge (the event flood) trips no rule: the suite proves that it passes it
        # a valid edge (the event flood) trips no rule: the suite proves that it passes it; a
        # setup fault (an HTML page) is refused by the setup check before any rule
        assert fault.rules or fault.name in VALID_EDGES or fault.setup, fault.name
        found = fault.rules_for("openai")
        assert all(r in rules for r in found), fault.name
        assert fault.scenario in OPENAI_SCENARIOS, fault.name
        assert all("openai" in rules[r].apis for r in found), fault.name
        assert set(fault.weaker) <= set(fault.rules), fault.name
    covered = {
        r for f in FAULTS.values() if f.api in ("openai", "any") for r in f.rules_for("openai")
    }
    missing = [r.id for r in rules.values() if "openai" in r.apis and r.id not in covered]
    assert missing == []
    table = fault_table()
    assert [row["name"] for row in table] == [*FAULTS, "drop-rate=P"]
    assert table[0].keys() == {"name", "api", "rules", "scenario", "layer", "description"}


def run(server: ReferenceServer, scenario: Scenario, faults: tuple[str, ...] = ()) -> Capture:
    headers = {"content-type": "application/json"}
    if scenario.auth == "key":
        headers.update(AUTH)
    elif scenario.auth == "bad":
        headers["authorization"] = "Bearer sk-not-the-key"
    with httpx.Client(trust_env=False) as c:
        return exchange(
            c, "POST", f"{server.url_for(faults, FAULT_TIMING)}/chat/completions", headers=headers,
            body=scenario.build(DEFAULT_MODEL),
            timeouts=FLOOD_TIMEOUTS if "event-flood" in faults else FAULT_TIMEOUTS,
            decode_sse=scenario.kind == "stream", max_event_bytes=HUGE_EVENT_BYTES,
        )  # fmt: skip


_VARYING = re.compile(rb"(chatcmpl-|call_|req_)[0-9a-f]{24}|\"created\":\d+|: t=\d+")


def held(cap: Capture) -> bool:
    """No event for ``HOLD_NS`` after the request. Not the spread of the read stamps: a busy
    machine stretches a burst (the reader is descheduled between its chunks) past 5 ms."""
    return bool(cap.events) and cap.events[0].t - cap.t_send >= HOLD_NS


def signature(cap: Capture) -> tuple[Any, ...]:
    """What a response looks like: ids and times numbered by first appearance (so a value
    that changes mid-stream still shows), whether the events were held back."""
    seen: dict[bytes, bytes] = {}
    body = _VARYING.sub(lambda m: seen.setdefault(m[0], b"<%d>" % len(seen)), cap.body)
    return cap.status, cap.content_type, body, sorted(f.rule for f in cap.findings), held(cap)


def _payloads(cap: Capture) -> list[Any]:
    out: list[Any] = []
    for event in cap.events:
        try:
            out.append(json.loads(event.data))
        except ValueError:
            out.append(event.data)
    return out


def _chunks(cap: Capture) -> list[dict[str, Any]]:
    return [p for p in _payloads(cap) if isinstance(p, dict) and "choices" in p]


def _choices(cap: Capture) -> list[dict[str, Any]]:
    return [c for chunk in _chunks(cap) for c in chunk["choices"]]


def _entries(cap: Capture) -> list[dict[str, Any]]:
    return [e for c in _choices(cap) for e in c["delta"].get("tool_calls", [])]


def _finishes(cap: Capture) -> list[str]:
    return [c["finish_reason"] for c in _choices(cap) if c.get("finish_reason")]


def _usage(cap: Capture) -> dict[str, int]:
    return next(c["usage"] for c in _chunks(cap) if c["choices"] == [] and c.get("usage"))


def _total_off(usage: dict[str, int]) -> int:
    return usage["total_tokens"] - usage["prompt_tokens"] - usage["completion_tokens"]


def _port(c: Capture) -> int:
    return int(urlsplit(c.url).port or 80)


def _rules(cap: Capture) -> set[str]:
    return {f.rule for f in cap.findings}


def _args(cap: Capture) -> str:
    return "".join(e["function"]["arguments"] for e in _entries(cap) if e.get("index", 0) == 0)


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


# The effect each fault must have on its scenario's response, checked loosely.
EFFECTS: dict[str, Callable[[Capture], bool]] = {
    "status-201": lambda c: c.status == 201,
    "wrong-content-type": lambda c: c.content_type == "text/plain",
    "stream-false-sse": lambda c: c.is_sse and b"data: [DONE]" in c.body,
    "buffered": lambda c: held(c) and c.events[-1].t - c.events[0].t < HOLD_NS / 2,  # a burst
    "crlf": lambda c: b"\r\n\r\n" in c.body and b"\n\n" not in c.body.replace(b"\r\n", b""),
    "bom": lambda c: c.body.startswith(b"\xef\xbb\xbf"),
    "unterminated": lambda c: c.body.endswith(b"data: [DONE]\n") and "sse.terminated" in _rules(c),
    "meta-only": lambda c: b"\nid: 1\n\n" in c.body and "sse.meta-only" in _rules(c),
    "comments": lambda c: c.comments > 0,
    "huge-event": lambda c: c.body_size > HUGE_EVENT_BYTES and "sse.max-event" in _rules(c),
    "connect-refused": lambda c: _rules(c) == {"transport.connect"},
    "stall-headers": lambda c: c.status is None and _rules(c) == {"transport.first-byte"},
    "stall-mid": lambda c: "transport.idle" in _rules(c),
    "slow-drip": lambda c: "transport.total" in _rules(c) and 0 < c.body_size < 30,
    "reset": lambda c: "transport.broken" in _rules(c) and len(c.events) > 2,
    "bad-chunked": lambda c: "transport.broken" in _rules(c),
    "missing-done": lambda c: "[DONE]" not in [e.data for e in c.events],
    "data-after-done": lambda c: [e.data for e in c.events][-2:] == ["[DONE]", "[DONE]"],
    "not-json": lambda c: any(_not_json(e.data) for e in c.events if e.data != "[DONE]"),
    "event-names": lambda c: {e.name for e in c.events} == {"chunk"},
    "bad-chunk-schema": lambda c: all(isinstance(ch["created"], str) for ch in _chunks(c)),
    "wrong-object": lambda c: "chat.completion" in {ch["object"] for ch in _chunks(c)},
    "wrong-object-content": lambda c: any(
        ch["object"] == "chat.completion" and ch["choices"][0]["delta"].get("content")
        for ch in _chunks(c)
    ),
    "id-changes": lambda c: len({ch["id"] for ch in _chunks(c)}) == 2,
    "created-changes": lambda c: len({ch["created"] for ch in _chunks(c)}) == 2,
    "model-changes": lambda c: len({ch["model"] for ch in _chunks(c)}) == 2,
    "bad-choice": lambda c: any("delta" not in ch for ch in _choices(c)),
    "no-finish-key": lambda c: any("finish_reason" not in ch for ch in _choices(c)),
    "no-finish": lambda c: _finishes(c) == [],
    "no-role": lambda c: not any("role" in ch["delta"] for ch in _choices(c)),
    "role-every-chunk": lambda c: sum("role" in ch["delta"] for ch in _choices(c)) > 2,
    "content-number": lambda c: any(ch["delta"].get("content") == 42 for ch in _choices(c)),
    "double-finish": lambda c: _finishes(c) == ["stop", "stop"],
    "content-after-finish": lambda c: bool(_choices(c)[-1]["delta"].get("content")),
    "finish-unknown": lambda c: _finishes(c) == ["end_turn"],
    "ignore-max-tokens": lambda c: _finishes(c) == ["stop"],
    "n-ignored": lambda c: {ch["index"] for ch in _choices(c)} == {0},
    "tool-finish-stop": lambda c: _finishes(c) == ["stop"] and bool(_entries(c)),
    "tool-index-missing": lambda c: any("index" not in e for e in _entries(c)),
    "tool-index-gap": lambda c: {e["index"] for e in _entries(c)} == {0, 2},
    "tool-head-missing": lambda c: not any("id" in e for e in _entries(c)),
    "tool-head-repeat": lambda c: sum("id" in e for e in _entries(c)) > 2,
    "tool-type-repeat": lambda c: sum("type" in e for e in _entries(c)) > 2
                                  and sum("id" in e for e in _entries(c)) == 1,
    "tool-choice-ignored": lambda c: not _entries(c) and _finishes(c) == ["stop"],
    "tool-args-object": lambda c: {"city": "Paris"} in [e["function"]["arguments"] for e in
                                                         _entries(c)],
    "tool-args-invalid": lambda c: _not_json(_args(c)),
    "tool-id-long": lambda c: all(len(e["id"]) > 40 for e in _entries(c) if "id" in e),
    "usage-missing": lambda c: not any(ch["choices"] == [] for ch in _chunks(c)),
    "usage-total-wrong": lambda c: _total_off(_usage(c)) == 8,
    "usage-every-chunk": lambda c: all(ch.get("usage") for ch in _chunks(c)),
    "usage-unrequested": lambda c: _usage(c)["completion_tokens"] > 0,
    "usage-over-limit": lambda c: _usage(c)["completion_tokens"] > 5,
    "usage-zero-output": lambda c: _usage(c)["completion_tokens"] == 0,
    "accept-bad-key": lambda c: c.status == 200,
    "accept-any-model": lambda c: c.status == 200,
    "error-5xx": lambda c: c.status == 500,
    "error-403": lambda c: c.status == 403,
    "error-body-sse": lambda c: c.status == 401 and c.is_sse,
    "error-body-shape": lambda c: c.status == 401 and set(c.json()) == {"detail"},
    "midstream-error-malformed": lambda c: any(
        isinstance(p, dict) and "error" in p and p["error"]["message"] is None for p in _payloads(c)
    ),
    "leak-key": lambda c: c.header(LEAK_HEADERS[0]) == DEFAULT_API_KEY
                          and c.body.count(b"[debug: key=" + DEFAULT_API_KEY.encode()) == 2,
    "utf8-split": lambda c: "sse.utf8" in _rules(c),
    "invalid-utf8": lambda c: b"\xff" in c.body and "sse.utf8" in _rules(c),
    # hostile endpoints (faults/hostile.py)
    "stall-after-headers": lambda c: c.status == 200 and not c.events
                                     and _rules(c) == {"transport.idle"},
    "endless": lambda c: "transport.total" in _rules(c) and c.events_total > 50,
    "firehose": lambda c: "transport.total" in _rules(c) and c.events_total > 10_000,
    "event-flood": lambda c: c.events_total > 1000,
    "huge-line": lambda c: c.body_size > HUGE_EVENT_BYTES and "sse.max-event" in _rules(c),
    "gzip-bomb": lambda c: c.header("content-encoding") == "gzip"
                           and bool(_rules(c) & {"transport.broken", "transport.total"}),
    "gzip-lie": lambda c: c.header("content-encoding") == "gzip"
                          and "transport.broken" in _rules(c),
    "html-200": lambda c: c.status == 200 and c.content_type == "text/html",
    "html-502": lambda c: c.status == 502 and c.content_type == "text/html",
    "redirect-cross-origin": lambda c: c.status == 307 and c.header("location")
                                       == f"http://127.0.0.1:{_port(c) + 1}/v1/chat/completions",
    "deep-json": lambda c: b"[" * 1000 in c.body,
    "huge-number": lambda c: b"9" * 10_000 in c.body,
}  # fmt: skip
VALID_EDGES = {"event-flood", "leak-key"}


def test_every_fault_has_an_effect_check() -> None:
    assert sorted(EFFECTS) == sorted(OPENAI_FAULTS)


def test_no_fault_breaks_the_server_in_any_scenario(server: ReferenceServer) -> None:
    """The suite sends every scenario with the faults selected, not only the one a fault is
    meant for: an edit that assumes text where there are only tool calls must leave the
    stream alone, never make the server answer 500. (Faults edit the endpoint's output —
    request, chunk and reply layers; timing faults only reshape frames.)"""
    broken = []
    with httpx.Client(trust_env=False, timeout=10) as client:
        for name, fault in FAULTS.items():
            if fault.frames is not None or fault.refuses_connect:
                continue
            for scenario in SCENARIOS:
                if scenario.kind != "stream" or fault.api not in ("any", scenario.api):
                    continue
                path = "/chat/completions" if scenario.api == "openai" else "/messages"
                headers = {**AUTH, "x-api-key": DEFAULT_API_KEY, "anthropic-version": "2023-06-01"}
                url = server.url_for(faults=[name]) + path
                body = scenario.build(DEFAULT_MODEL)
                with client.stream("POST", url, headers=headers, json=body) as reply:
                    if reply.status_code == 500:  # raw: some faults lie about the encoding
                        broken.append((name, scenario.name, b"".join(reply.iter_raw())[:200]))
    assert broken == []


@pytest.fixture(scope="module")
def clean(server: ReferenceServer) -> dict[str, Capture]:
    return {
        name: run(server, s) for name, s in OPENAI_SCENARIOS.items() if name != "error-malformed"
    }


@pytest.mark.parametrize("name", list(OPENAI_FAULTS))
def test_fault_changes_the_response(
    name: str, server: ReferenceServer, clean: dict[str, Capture]
) -> None:
    fault = FAULTS[name]
    scenario = OPENAI_SCENARIOS[fault.scenario]
    cap = run(server, scenario, (name,))
    assert signature(cap) != signature(clean[fault.scenario])
    assert EFFECTS[name](cap), (cap.status, cap.findings, cap.body[:600])


def test_clean_scenarios_have_no_wire_findings(clean: dict[str, Capture]) -> None:
    for name, cap in clean.items():
        assert cap.findings == [], name
        assert cap.status == (OPENAI_SCENARIOS[name].expect_status or (200,))[0], name


def test_faults_combine(server: ReferenceServer) -> None:
    cap = run(server, OPENAI_SCENARIOS["plain"], ("crlf", "missing-done", "stall-mid"))
    assert b"\r\n" in cap.body
    assert "[DONE]" not in [e.data for e in cap.events]
    assert "transport.idle" in _rules(cap)


# -- the official SDK ---------------------------------------------------------------------------


def _sdk(server: ReferenceServer, key: str = DEFAULT_API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=5)


def test_sdk_streams_text_usage_and_choices(server: ReferenceServer) -> None:
    client = _sdk(server)
    chunks = list(client.chat.completions.create(
        model=DEFAULT_MODEL, messages=STORY_PROMPT, stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == STORY
    assert chunks[-1].usage.completion_tokens == len(STORY.split())
    with client.chat.completions.stream(model=DEFAULT_MODEL, messages=HELLO, n=2) as s:
        final = s.get_final_completion()
    assert [c.message.content for c in final.choices] == [GREETING, f"Choice 2: {GREETING}"]
    assert [c.message.role for c in final.choices] == ["assistant", "assistant"]


def test_sdk_rebuilds_parallel_tool_calls(server: ReferenceServer) -> None:
    with _sdk(server).chat.completions.stream(
        model=DEFAULT_MODEL, messages=HELLO, tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice="required", stream_options={"include_usage": True},
    ) as s:  # fmt: skip
        final = s.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(t.function.name, json.loads(t.function.arguments)) for t in message.tool_calls] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"city": "Tokyo"}),
    ]  # fmt: skip
    assert final.usage.total_tokens == final.usage.prompt_tokens + final.usage.completion_tokens


def test_async_sdk(server: ReferenceServer) -> None:
    async def main() -> tuple[str, str]:
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key=DEFAULT_API_KEY, max_retries=0
        )
        text = ""
        async for chunk in await client.chat.completions.create(
            model=DEFAULT_MODEL, messages=HELLO, stream=True
        ):
            text += chunk.choices[0].delta.content or ""
        async with client.chat.completions.stream(
            model=DEFAULT_MODEL, messages=HELLO, tools=[WEATHER_TOOL]
        ) as s:
            final = await s.get_final_completion()
        await client.close()
        return text, final.choices[0].message.tool_calls[0].function.arguments

    text, arguments = asyncio.run(main())
    assert text == GREETING
    assert json.loads(arguments) == {"city": "Paris"}


def test_sdk_exceptions(server: ReferenceServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        _sdk(server, "sk-wrong").chat.completions.create(model=DEFAULT_MODEL, messages=HELLO)
    with pytest.raises(openai.BadRequestError):
        _sdk(server).chat.completions.create(model=DEFAULT_MODEL, messages=[])
    with pytest.raises(openai.NotFoundError) as info:
        _sdk(server).chat.completions.create(model="streamproof-no-such-model", messages=HELLO)
    assert info.value.code == "model_not_found"


def test_sdk_sees_the_tool_head_repeat_fault(server: ReferenceServer) -> None:
    sdk = openai.OpenAI(
        base_url=server.url_for(faults=("tool-head-repeat",)),
        api_key=DEFAULT_API_KEY,
        max_retries=0,
    )
    with sdk.chat.completions.stream(
        model=DEFAULT_MODEL, messages=HELLO, tools=[WEATHER_TOOL]
    ) as s:
        call = s.get_final_completion().choices[0].message.tool_calls[0]
    assert call.function.name.startswith("get_weatherget_weather")  # concatenated by the SDK
