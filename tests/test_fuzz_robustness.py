"""Property tests: the decoder and the validators never raise, whatever they are fed.

The decoder gives the same events for any split of a body; arbitrary bytes never raise.
Both stream models with their checks (``engine.model_for``), the JSON/error-body checks and
``engine.check_capture`` take any event sequence — random JSON, deep nesting, 10 000-digit
numbers, wrong types — and answer with findings only.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproof.capture import Capture, replay
from streamproof.engine import check_capture, model_for
from streamproof.sse import SSEDecoder, decode_body
from streamproof.validators.answers import json_answer, refusal

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
APIS = ("openai", "anthropic")

# -- building blocks -------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        ["chat.completion.chunk", "assistant", "stop", "length", "tool_calls", "text",
         "message_start", "content_block_start", "content_block_delta", "content_block_stop",
         "message_delta", "message_stop", "ping", "error", "text_delta", "input_json_delta",
         "tool_use", "end_turn", "max_tokens", "function", ""]
    ),
)  # fmt: skip
KEYS = st.sampled_from(
    ["id", "object", "created", "model", "choices", "index", "delta", "content", "role",
     "finish_reason", "usage", "tool_calls", "function", "name", "arguments", "type",
     "message", "content_block", "text", "partial_json", "stop_reason", "input_tokens",
     "output_tokens", "error", "logprobs", "prompt_tokens", "completion_tokens",
     "total_tokens", "x"]
)  # fmt: skip
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=30,
)


def _hostile_payloads() -> st.SearchStrategy[str]:
    depth = st.integers(min_value=1, max_value=50_000)
    return st.one_of(
        depth.map(lambda n: "[" * n + "]" * n),
        depth.map(lambda n: '{"a":' * n + "1" + "}" * n),
        depth.map(lambda n: "[" * n),  # unclosed
        st.integers(min_value=1, max_value=20_000).map(lambda n: "9" * n),
        st.integers(min_value=1, max_value=20_000).map(
            lambda n: '{"choices":[{"index":%s,"delta":{}}]}' % ("1" * n)
        ),
        st.integers(min_value=1, max_value=20_000).map(
            lambda n: '{"type":"message_delta","usage":{"output_tokens":%s}}' % ("7" * n)
        ),
        st.sampled_from(["[DONE]", "", " ", "null", "NaN", "1e999", "-0", "\ufffd", "{", "}"]),
        st.text(max_size=50),
    )


payload = st.one_of(json_value.map(json.dumps), _hostile_payloads())


@st.composite
def events_body(draw) -> bytes:
    """An event stream of random payloads, names, ids and comments."""
    out = []
    for _ in range(draw(st.integers(0, 12))):
        name = draw(
            st.one_of(st.none(), st.sampled_from(["message_start", "content_block_delta",
                                                  "message_stop", "ping", "error", "bogus"]))
        )  # fmt: skip
        lines = []
        if draw(st.booleans()) and draw(st.booleans()):
            lines.append(": keep-alive")
        if name:
            lines.append(f"event: {name}")
        if draw(st.integers(0, 9)) == 0:
            lines.append("id: 7")
        lines.append("data: " + draw(payload).replace("\r", "").replace("\n", " "))
        out.append("\n".join(lines) + "\n\n")
    return "".join(out).encode("utf-8", "surrogatepass")


def _split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces, start = [], 0
    for p in points:
        pieces.append(body[start:p])
        start = p
    pieces.append(body[start:])
    return pieces


def _decode_pieces(pieces: list[bytes], limit: int = 1 << 24):
    dec = SSEDecoder(limit)
    events = []
    for i, piece in enumerate(pieces):
        events += dec.feed(piece, i)
    dec.finish()
    return events, dec


# -- decoder -----------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 4000), max_size=20))
def test_decoder_any_bytes_any_split_same_events(body: bytes, cuts: list[int]) -> None:
    whole, dec_whole = decode_body(body)
    split, dec_split = _decode_pieces(_split(body, cuts))
    assert split == whole
    assert [e.index for e in split] == list(range(len(split)))
    rules = sorted(f.rule for f in dec_whole.findings)
    assert sorted(f.rule for f in dec_split.findings) == rules


@FUZZ
@given(events_body(), st.lists(st.integers(0, 1 << 20), max_size=30))
def test_decoder_event_streams_any_split(body: bytes, cuts: list[int]) -> None:
    whole, _ = decode_body(body)
    split, _ = _decode_pieces(_split(body, cuts))
    assert split == whole
    assert all(isinstance(e.data, str) for e in whole)


@FUZZ
@given(
    st.lists(st.sampled_from([b"data: x", b"\r", b"\n", b"\r\n", b":", b"a" * 300, b"\xef\xbb\xbf",
                              b"\xff", b"\xc3", b"\xa9", b"event: e", b"id: \x00", b"retry: 5",
                              b"data:", b" "]), max_size=60),
    st.lists(st.integers(0, 20_000), max_size=20),
    st.integers(64, 4096),
)  # fmt: skip
def test_decoder_bounded_never_raises(parts, cuts, limit) -> None:
    body = b"".join(parts)
    events, dec = _decode_pieces(_split(body, cuts), limit)
    if dec.findings and any(f.rule == "sse.max-event" for f in dec.findings):
        assert dec.stopped
    for e in events:
        assert len(e.data.encode("utf-8", "surrogatepass")) <= 4 * limit


# -- validators ------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
@FUZZ
@given(body=events_body(), request=st.one_of(st.none(), json_value))
def test_validators_never_raise(api: str, body: bytes, request) -> None:
    events, _ = decode_body(body)
    req = request if isinstance(request, dict) else None
    validator = model_for(api, req)
    for i in range(0, len(events), 3):
        validator.feed(events[i : i + 3])
    validator.finish(truncated=bool(len(body) % 2))
    assert validator.crashes == []  # a check that raised is a tool error, never a finding
    message = validator.message()
    json.dumps(message, default=str)
    for finding in validator.findings:
        assert finding.message and isinstance(finding.message, str)
        str(finding)  # renders (level lookup of a known rule)


@pytest.mark.parametrize("api", APIS)
@FUZZ
@given(
    status=st.sampled_from([200, 201, 400, 401, 404, 429, 500, 502, 529, 999]),
    media=st.sampled_from(["application/json", "text/html", "", "text/event-stream",
                           "application/problem+json"]),
    body=st.one_of(st.binary(max_size=300), payload.map(str.encode),
                   json_value.map(lambda v: json.dumps(v).encode())),
    expect=st.sampled_from([(400,), (401,), (404, 400), ()]),
)  # fmt: skip
def test_body_checks_never_raise(api, status, media, body, expect) -> None:
    for found, checked in (
        refusal(api, status, media, body, expect),
        json_answer(api, status, media, body),
    ):
        assert isinstance(checked, set)
        for f in found:
            assert isinstance(f.message, str)
            str(f)


@pytest.mark.parametrize("api", APIS)
@FUZZ
@given(body=st.one_of(st.binary(max_size=3000), events_body()))
def test_check_capture_on_random_bytes(api: str, body: bytes) -> None:
    cap = Capture("POST", "http://127.0.0.1:9/v1", [], {"stream": True}, status=200,
                  response_headers=[("content-type", "text/event-stream")], body=body,
                  body_size=len(body), reads=[(len(body), 1)])  # fmt: skip
    replay(cap)
    findings, checked, _, crashes = check_capture(api, cap, {"stream": True})
    assert crashes == []
    assert "sse.utf8" in checked
    for f in findings:
        str(f)


@pytest.mark.parametrize("api", APIS)
def test_deepest_and_largest_json_give_findings(api: str) -> None:
    """The extreme cases, deterministically: 100 000 levels, 10 000 digits, both as event
    data and as JSON answers; no RecursionError or int-conversion ValueError escapes."""
    deep = "[" * 100_000 + "]" * 100_000
    digits = "9" * 10_000
    hostile = [
        deep,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        digits,
        '{"created":' + digits + ',"choices":[]}',
        '{"type":"ping","n":' + digits + "}",
    ]
    body = "".join(f"data: {d}\n\n" for d in hostile).encode()
    events, _ = decode_body(body)
    validator = model_for(api, {"stream": True})
    validator.feed(events)
    validator.finish()
    assert validator.crashes == []
    assert validator.findings
    messages = " ".join(f.message for f in validator.findings)
    if api == "openai":
        assert "nesting too deep" in messages
        assert "a number too large" in messages
    for raw in hostile:
        refusal(api, 500, "application/json", raw.encode(), (400,))
        found, _ = json_answer(api, 200, "application/json", raw.encode())
        assert found
