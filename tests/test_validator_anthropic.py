"""The Anthropic Messages stream model and its checks, rule by rule, on small synthetic streams.

Streams are written as lists of ``(event name, payload)``: a dict payload is serialised as
the ``data:`` line, a str payload goes out verbatim, a ``None`` name means no ``event:`` line.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproof.findings import Finding
from streamproof.sse import SSEDecoder, decode_body
from streamproof.validators.answers import json_answer, refusal
from streamproof.validators.anthropic_model import AnthropicMessagesModel
from streamproof.validators.model import MAX_DISTINCT


def check_error_response(status, ctype, body, expected):  # type: ignore[no-untyped-def]
    return refusal("anthropic", status, ctype, body, expected)


def check_json_response(status, ctype, body):  # type: ignore[no-untyped-def]
    return json_answer("anthropic", status, ctype, body)


Spec = list[tuple[str | None, Any]]

# -- builders ----------------------------------------------------------------------------


def message_start(**usage: Any) -> tuple[str, dict[str, Any]]:
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-test",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 1, **usage},
            },
        },
    )


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def text_start(index: int = 0) -> tuple[str, dict[str, Any]]:
    return block_start(index, {"type": "text", "text": ""})


def tool_start(index: int = 0, kind: str = "tool_use") -> tuple[str, dict[str, Any]]:
    return block_start(index, {"type": kind, "id": "toolu_01", "name": "get_weather", "input": {}})


def delta(index: int, kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}},
    )


def text(index: int, piece: str) -> tuple[str, dict[str, Any]]:
    return delta(index, "text_delta", text=piece)


def json_piece(index: int, piece: str) -> tuple[str, dict[str, Any]]:
    return delta(index, "input_json_delta", partial_json=piece)


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(
    stop_reason: Any = "end_turn", stop_sequence: Any = None, **usage: Any
) -> tuple[str, dict[str, Any]]:
    return (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": usage or {"output_tokens": 7},
        },
    )


def stop_for(block: dict[str, Any]) -> str:
    return "tool_use" if block.get("type") == "tool_use" else "end_turn"


MESSAGE_STOP = ("message_stop", {"type": "message_stop"})
PING = ("ping", {"type": "ping"})


def text_stream(*pieces: str, stop: str = "end_turn") -> Spec:
    return [
        message_start(),
        text_start(0),
        PING,
        *(text(0, p) for p in pieces or ("Hello", " world")),
        block_stop(0),
        message_delta(stop),
        MESSAGE_STOP,
    ]


def tool_stream(*pieces: str, stop: str = "tool_use", close: bool = True) -> Spec:
    return [
        message_start(),
        text_start(0),
        text(0, "Let me check."),
        block_stop(0),
        tool_start(1),
        *(json_piece(1, p) for p in pieces),
        *([block_stop(1)] if close else []),
        message_delta(stop),
        MESSAGE_STOP,
    ]


def body(spec: Spec) -> bytes:
    out = []
    for name, payload in spec:
        data = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
        head = f"event: {name}\n" if name is not None else ""
        out.append(f"{head}data: {data}\n\n")
    return "".join(out).encode()


def run(
    spec: Spec | bytes,
    request: dict[str, Any] | None = None,
    expect: frozenset[str] = frozenset(),
    truncated: bool = False,
) -> AnthropicMessagesModel:
    raw = spec if isinstance(spec, bytes) else body(spec)
    events, _ = decode_body(raw)
    validator = AnthropicMessagesModel(request, expect=expect)
    validator.feed(events)
    validator.finish(truncated=truncated)
    return validator


def rules(v: AnthropicMessagesModel, *levels: str) -> set[str]:
    """Rule ids of the findings at these levels (default MUST and SHOULD)."""
    wanted = levels or ("MUST", "SHOULD")
    return {f.rule for f in v.findings if f.level in wanted}


def must(v: AnthropicMessagesModel) -> set[str]:
    return rules(v, "MUST")


# -- a clean stream ----------------------------------------------------------------------


def test_clean_text_stream_has_no_findings() -> None:
    v = run(text_stream())
    assert v.findings == []
    assert {
        "anthropic.start-shape",
        "anthropic.message-delta",
        "anthropic.usage",
        "anthropic.stop-last",
        "anthropic.event-name",
        "anthropic.ping-shape",
    } <= v.checked


def test_clean_tool_stream_has_no_findings() -> None:
    v = run(tool_stream("", '{"city": ', '"Paris"}'))
    assert v.findings == []
    assert "anthropic.tool-input-json" in v.checked


# -- framing -----------------------------------------------------------------------------


def test_event_name_missing_is_sdk_breaking() -> None:
    spec = text_stream()
    spec[3] = (None, spec[3][1])
    v = run(spec)
    assert must(v) == {"anthropic.event-name"}
    assert "no event: line" in v.findings[0].message
    assert v.findings[0].event == 3


def test_event_name_differs_from_type() -> None:
    spec = text_stream()
    spec[3] = ("delta", spec[3][1])
    v = run(spec)
    assert must(v) == {"anthropic.event-name"}
    assert "'delta'" in v.findings[0].message


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '"text"', '{"index": 0}', '{"type": 5}'])
def test_data_json(data: str) -> None:
    spec = text_stream()
    spec.insert(3, ("content_block_delta", data))
    assert must(run(spec)) == {"anthropic.data-json"}


def test_done_after_message_stop_is_a_warning() -> None:
    v = run([*text_stream(), (None, "[DONE]")])
    assert rules(v) == {"anthropic.no-done"}
    assert must(v) == set()


def test_done_before_message_stop_is_a_failure() -> None:
    spec = text_stream()
    spec.insert(-1, (None, "[DONE]"))
    assert must(run(spec)) == {"anthropic.stop-last"}


def test_unknown_event_is_info_only() -> None:
    spec = text_stream()
    spec.insert(3, ("thought_summary", {"type": "thought_summary", "text": "x"}))
    spec.insert(0, ("preamble", {"type": "preamble"}))  # even before message_start
    v = run(spec)
    assert rules(v) == set()
    assert rules(v, "INFO") == {"anthropic.unknown-event"}


# -- grammar -----------------------------------------------------------------------------


def test_start_first() -> None:
    spec = text_stream()
    assert must(run(spec[1:])) == {"anthropic.start-first"}
    assert must(run(b"")) == {"anthropic.start-first"}
    assert must(run([spec[0], *spec])) == {"anthropic.start-first"}  # twice
    # a ping before message_start is dropped by the SDK before it looks at the order
    assert run([PING, *spec]).findings == []


def test_start_first_not_restated_when_message_start_is_late() -> None:
    spec = text_stream()
    v = run([spec[1], spec[0], *spec[2:]])
    assert must(v) == {"anthropic.start-first"}
    assert len(v.findings) == 1
    assert v.message()["id"] == "msg_01"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("content", [{"type": "text", "text": "hi"}]),
        ("role", "user"),
        ("stop_reason", "end_turn"),
        ("usage", {"input_tokens": 3}),
        ("id", None),
    ],
)
def test_start_shape(path: str, value: Any) -> None:
    start = message_start()
    start[1]["message"][path] = value
    v = run([start, *text_stream()[1:]])
    assert "anthropic.start-shape" in must(v)
    assert path in next(f.message for f in v.findings if f.rule == "anthropic.start-shape")


def test_start_shape_tolerates_extra_usage_keys_and_output_tokens() -> None:
    start = message_start(
        output_tokens=88,
        cache_creation={"ephemeral_5m_input_tokens": 0},
        service_tier="standard",
        inference_geo="not_available",
    )
    start[1]["message"]["container"] = None
    v = run([start, *text_stream()[1:6], message_delta(output_tokens=90), MESSAGE_STOP])
    assert v.findings == []


def test_block_index() -> None:
    spec = [
        message_start(),
        text_start(1),
        text(1, "x"),
        block_stop(1),
        message_delta(),
        MESSAGE_STOP,
    ]
    assert must(run(spec)) == {"anthropic.block-index"}
    again = [
        message_start(),
        text_start(0),
        block_stop(0),
        text_start(0),
        block_stop(0),
        message_delta(),
        MESSAGE_STOP,
    ]
    assert must(run(again)) == {"anthropic.block-index"}


def test_block_nesting_delta_names_another_block() -> None:
    spec = [
        message_start(),
        text_start(0),
        text(0, "a"),
        block_stop(0),
        text_start(1),
        text(0, "b"),
        block_stop(1),
        message_delta(),
        MESSAGE_STOP,
    ]
    v = run(spec)
    assert must(v) == {"anthropic.block-nesting"}
    assert "block 1 (text) is open" in v.findings[0].message


def test_block_nesting_start_while_open() -> None:
    spec = [
        message_start(),
        text_start(0),
        text(0, "a"),
        text_start(1),
        text(1, "b"),
        block_stop(1),
        message_delta(),
        MESSAGE_STOP,
    ]
    v = run(spec)
    assert must(v) == {"anthropic.block-nesting"}  # not again as block-closed


def test_block_nesting_stop_twice_and_unknown_block() -> None:
    spec = text_stream()
    spec.insert(5, block_stop(0))
    assert must(run(spec)) == {"anthropic.block-nesting"}
    spec = text_stream()
    spec.insert(4, text(7, "?"))
    v = run(spec)
    assert must(v) == {"anthropic.block-nesting"}
    assert "never started" in v.findings[0].message


def test_block_closed() -> None:
    spec = [message_start(), text_start(0), text(0, "a"), message_delta(), MESSAGE_STOP]
    v = run(spec)
    assert must(v) == {"anthropic.block-closed"}
    spec = [message_start(), text_start(0), text(0, "a"), MESSAGE_STOP]
    assert must(run(spec)) == {"anthropic.block-closed", "anthropic.message-delta"}


def test_block_closed_is_a_warning_when_max_tokens() -> None:
    v = run(tool_stream("", '{"city": "Par', stop="max_tokens", close=False))
    assert must(v) == set()
    assert rules(v, "SHOULD") == {"anthropic.block-closed"}
    (finding,) = v.findings
    assert finding.level_as == "SHOULD"
    assert finding.level == "SHOULD"
    assert finding.as_dict()["level"] == "SHOULD"
    # the unparsable input of the cut tool call is excused too
    assert "anthropic.tool-input-json" in v.checked
    assert v.message()["content"][1]["input"] is None


def test_late_block_stop_after_message_delta_is_reported_once() -> None:
    spec = tool_stream("", '{"city": "Paris"}', close=False)
    spec.insert(-1, block_stop(1))
    v = run(spec)
    assert [f.rule for f in v.findings] == ["anthropic.block-closed"]


@pytest.mark.parametrize(
    "block",
    [
        {"type": "text", "text": "already here"},
        {"type": "text"},
        {"type": "thinking"},
        {"type": "redacted_thinking"},
        {"type": "tool_use", "name": "f", "input": {}},
        {"type": "tool_use", "id": "t", "name": "f", "input": {"city": "Paris"}},
        {"type": "server_tool_use", "id": "t", "name": "web_search"},
        {"type": "web_search_tool_result", "content": []},
        {"text": ""},
    ],
)
def test_block_start_shape(block: dict[str, Any]) -> None:
    spec = [message_start(), block_start(0, block), block_stop(0), message_delta(), MESSAGE_STOP]
    assert "anthropic.block-start-shape" in must(run(spec))


def test_block_type_not_a_string() -> None:
    spec = [
        message_start(),
        block_start(0, {"type": {"text": ""}}),
        delta(0, "text_delta", text="x"),
        block_stop(0),
        message_delta(),
        MESSAGE_STOP,
    ]
    v = run(spec)
    assert must(v) == {"anthropic.block-start-shape"}
    assert v.message()["content"] == [{"type": {"text": ""}}]


@pytest.mark.parametrize(
    "block",
    [
        {"citations": [], "type": "text", "text": ""},
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy..."},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}, "caller": {"type": "direct"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        {"type": "some_future_block", "payload": 1},
    ],
)
def test_block_start_shape_clean(block: dict[str, Any]) -> None:
    spec = [
        message_start(),
        block_start(0, block),
        block_stop(0),
        message_delta(stop_for(block)),
        MESSAGE_STOP,
    ]
    v = run(spec)
    assert v.findings == []


@pytest.mark.parametrize(
    ("block", "bad"),
    [
        ({"type": "tool_use", "id": "t", "name": "f", "input": {}}, text(0, "x")),
        ({"type": "text", "text": ""}, json_piece(0, "{}")),
        ({"type": "text", "text": ""}, delta(0, "thinking_delta", thinking="x")),
        ({"type": "thinking", "thinking": ""}, text(0, "x")),
        ({"type": "redacted_thinking", "data": "x"}, delta(0, "thinking_delta", thinking="x")),
        ({"type": "web_search_tool_result", "tool_use_id": "s"}, text(0, "x")),
        ({"type": "text", "text": ""}, delta(0, "text_delta", text=5)),
        ({"type": "text", "text": ""}, delta(0, "text_delta")),
        ({"type": "text", "text": ""}, delta(0, "citations_delta", citation="x")),
        (
            {"type": "text", "text": ""},
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": "x"}),
        ),
    ],
)
def test_delta_type(block: dict[str, Any], bad: tuple[str, dict[str, Any]]) -> None:
    spec = [
        message_start(),
        block_start(0, block),
        bad,
        block_stop(0),
        message_delta(stop_for(block)),
        MESSAGE_STOP,
    ]
    assert must(run(spec)) == {"anthropic.delta-type"}


def thinking_stream(*deltas: tuple[str, dict[str, Any]]) -> Spec:
    return [
        message_start(),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        *deltas,
        block_stop(0),
        text_start(1),
        text(1, "185"),
        block_stop(1),
        message_delta(),
        MESSAGE_STOP,
    ]


def test_thinking_clean_and_out_of_order() -> None:
    think = delta(0, "thinking_delta", thinking="925 / 5")
    empty = delta(0, "thinking_delta", thinking="")
    sig = delta(0, "signature_delta", signature="EvQB")
    assert run(thinking_stream(think, empty, sig)).findings == []
    assert must(run(thinking_stream(sig, think))) == {"anthropic.delta-type"}
    v = run(thinking_stream(think, sig, sig))
    assert must(v) == {"anthropic.delta-type"}
    assert "second signature_delta" in v.findings[0].message


def test_unknown_delta_type_is_info() -> None:
    spec = text_stream()
    spec.insert(4, delta(0, "annotation_delta", note="x"))
    v = run(spec)
    assert rules(v) == set()
    assert rules(v, "INFO") == {"anthropic.unknown-event"}


@pytest.mark.parametrize("pieces", [('{"city": "Par',), ("[1, 2]",), ('{"a": 1}', "}"), ("nope",)])
def test_tool_input_json(pieces: tuple[str, ...]) -> None:
    assert must(run(tool_stream("", *pieces))) == {"anthropic.tool-input-json"}


def test_tool_input_json_server_tool_and_no_arguments() -> None:
    spec = [
        message_start(),
        tool_start(0, "server_tool_use"),
        json_piece(0, ""),
        json_piece(0, '{"query": "x"'),
        block_stop(0),
        message_delta(),
        MESSAGE_STOP,
    ]
    assert must(run(spec)) == {"anthropic.tool-input-json"}
    v = run(tool_stream(""))
    assert v.findings == []
    assert v.message()["content"][1]["input"] == {}


def test_tool_input_json_excused_by_max_tokens() -> None:
    v = run(tool_stream("", '{"city": "Par', stop="max_tokens"))
    assert v.findings == []
    assert "anthropic.tool-input-json" in v.checked


def test_message_delta_missing() -> None:
    spec = text_stream()
    del spec[-2]
    v = run(spec)
    assert must(v) == {"anthropic.message-delta"}
    assert "without a message_delta" in v.findings[0].message


def test_message_delta_stop_reason_null() -> None:
    spec = text_stream()
    spec[-2] = message_delta(None)
    assert must(run(spec)) == {"anthropic.message-delta"}


def test_message_delta_before_the_last_block() -> None:
    spec = text_stream()
    spec[-1:-1] = [text_start(1), text(1, "more"), block_stop(1)]
    assert must(run(spec)) == {"anthropic.message-delta"}


def test_several_message_deltas_are_fine() -> None:
    spec = text_stream()
    spec[-2:-1] = [message_delta(None, output_tokens=3), message_delta(output_tokens=5)]
    v = run(spec)
    assert v.findings == []
    assert v.message()["usage"]["output_tokens"] == 5


def test_stream_ending_early() -> None:
    spec = text_stream()
    v = run(spec[:4])
    assert must(v) == {"anthropic.message-delta"}
    assert "still open" in v.findings[0].message
    v = run(spec[:-1])
    assert must(v) == {"anthropic.stop-last"}


def test_truncated_stream_is_not_restated() -> None:
    v = run(text_stream()[:4], truncated=True)
    assert v.findings == []
    assert "anthropic.message-delta" not in v.checked
    assert run(b"", truncated=True).findings == []


def test_stop_reason_enum() -> None:
    spec = text_stream(stop="finished")
    assert rules(run(spec), "SHOULD") == {"anthropic.stop-reason-enum"}  # the SDK copes
    for reason in ("pause_turn", "refusal", "model_context_window_exceeded"):
        assert run(text_stream(stop=reason)).findings == []


def test_stop_consistent_tool_use() -> None:
    assert rules(run(text_stream(stop="tool_use"))) == {"anthropic.stop-consistent"}
    assert rules(run(tool_stream("", "{}", stop="end_turn"))) == {"anthropic.stop-consistent"}
    # server tools do not make a tool_use stop
    spec = [
        message_start(),
        tool_start(0, "server_tool_use"),
        json_piece(0, "{}"),
        block_stop(0),
        message_delta("tool_use"),
        MESSAGE_STOP,
    ]
    assert rules(run(spec), "SHOULD") == {"anthropic.stop-consistent"}


def test_stop_consistent_stop_sequence() -> None:
    spec = text_stream()
    spec[-2] = message_delta("stop_sequence", "\n\nHuman:")
    request = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stop_sequences": ["\n\nHuman:"],
    }
    assert run(spec, request).findings == []
    assert run(spec).findings == []  # request unknown: only the null/non-null half
    other = {**request, "stop_sequences": ["END"]}
    assert rules(run(spec, other), "SHOULD") == {"anthropic.stop-consistent"}
    spec[-2] = message_delta("stop_sequence", None)
    assert rules(run(spec), "SHOULD") == {"anthropic.stop-consistent"}
    spec[-2] = message_delta("end_turn", "END")
    assert rules(run(spec), "SHOULD") == {"anthropic.stop-consistent"}


def test_stop_max_tokens_only_when_expected() -> None:
    expect = frozenset({"anthropic.stop-max-tokens"})
    request = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    v = run(text_stream(), request, expect)
    assert must(v) == {"anthropic.stop-max-tokens"}
    assert "(5)" in v.findings[0].message
    assert run(text_stream(stop="max_tokens"), request, expect).findings == []
    v = run(text_stream(), request)
    assert "anthropic.stop-max-tokens" not in v.checked


@pytest.mark.parametrize(
    ("usages", "level", "expected"),
    [
        ([{"input_tokens": 12}], "MUST", {"anthropic.usage"}),
        ([{"output_tokens": "7"}], "MUST", {"anthropic.usage"}),
        ([{"output_tokens": -1}], "MUST", {"anthropic.usage"}),
        ([{"output_tokens": 9, "cache_read_input_tokens": "x"}], "MUST", {"anthropic.usage"}),
        # counts that go down: the SDK keeps the last one (a warning)
        ([{"output_tokens": 9}, {"output_tokens": 8}], "SHOULD", {"anthropic.usage"}),
        ([{"output_tokens": 9, "input_tokens": 3}], "SHOULD", {"anthropic.usage"}),
        # below message_start's output_tokens (1), and 0 although text was streamed
        ([{"output_tokens": 0}], "SHOULD", {"anthropic.usage", "anthropic.usage-output"}),
    ],
)
def test_usage(usages: list[dict[str, Any]], level: str, expected: set[str]) -> None:
    spec = text_stream()
    spec[-2:-1] = [message_delta(**u) for u in usages]
    v = run(spec)
    assert rules(v) == expected
    assert rules(v, level) == expected


def test_usage_tolerates_repeated_and_grown_input_tokens() -> None:
    spec = text_stream()
    spec[-2] = message_delta(output_tokens=9, input_tokens=12, cache_read_input_tokens=0)
    assert run(spec).findings == []
    spec[-2] = message_delta(output_tokens=9, input_tokens=40)  # server tools add input
    v = run(spec)
    assert v.findings == []
    assert v.message()["usage"] == {"input_tokens": 40, "output_tokens": 9}


def test_usage_missing_object() -> None:
    spec = text_stream()
    spec[-2] = ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}})
    assert must(run(spec)) == {"anthropic.usage"}


def test_usage_input() -> None:
    spec = text_stream()
    spec[0] = message_start(input_tokens=0)
    v = run(spec)
    assert rules(v) == {"anthropic.usage-input"}
    assert must(v) == set()
    # an empty prompt (known request) is not judged; cached input counts
    assert "anthropic.usage-input" not in run(spec, {"model": "m", "messages": []}).checked
    spec[0] = message_start(input_tokens=0, cache_read_input_tokens=900)
    assert run(spec).findings == []


def test_stop_last() -> None:
    v = run([*text_stream(), text(0, "late")])
    assert must(v) == {"anthropic.stop-last"}
    assert "after message_stop" in v.findings[0].message
    assert must(run([*text_stream(), PING])) == {"anthropic.stop-last"}


@pytest.mark.parametrize("data", ["", "ping", "[]"])
def test_ping_shape(data: str) -> None:
    spec = text_stream()
    spec[2] = ("ping", data)
    assert rules(run(spec), "SHOULD") == {"anthropic.ping-shape"}  # the SDK skips pings


def test_pings_anywhere_and_padding() -> None:
    raw = body(text_stream()).replace(b"}\n\n", b"}      \n\n")
    raw = raw.replace(b'data: {"type":"ping"}', b'data: {"type": "ping"}')
    spec_pings = [
        message_start(),
        PING,
        text_start(0),
        PING,
        text(0, "a"),
        PING,
        PING,
        block_stop(0),
        PING,
        PING,
        message_delta(),
        MESSAGE_STOP,
    ]
    assert run(raw).findings == []
    assert run(spec_pings).findings == []


ERROR = (
    "error",
    {
        "type": "error",
        "error": {"details": None, "type": "overloaded_error", "message": "Overloaded"},
    },
)


def test_error_event_mid_stream_ends_the_stream() -> None:
    spec = [*text_stream()[:4], ERROR]
    v = run(spec)
    assert v.findings == []
    assert "anthropic.error-event" in v.checked
    assert "anthropic.message-delta" not in v.checked
    assert run([ERROR]).findings == []  # alone, as the first event


@pytest.mark.parametrize(
    "error",
    [
        {"type": "error", "error": {"type": "server_on_fire", "message": "x"}},
        {"type": "error", "error": {"type": "api_error"}},
        {"type": "error", "message": "Overloaded"},
    ],
)
def test_error_event_shape(error: dict[str, Any]) -> None:
    v = run([*text_stream()[:4], ("error", error)])
    assert must(v) == {"anthropic.error-event"}


def test_error_event_not_json_and_events_after_it() -> None:
    assert must(run([*text_stream()[:4], ("error", "Overloaded")])) == {"anthropic.error-event"}
    v = run([*text_stream()[:4], ERROR, *text_stream()[-2:]])
    assert must(v) == {"anthropic.error-event"}
    assert "after the error event" in v.findings[0].message


def test_error_event_without_name_is_lost_by_the_sdk() -> None:
    v = run([*text_stream()[:4], (None, ERROR[1])])
    assert must(v) == {"anthropic.event-name"}


def test_error_tools_and_expectations_only_checked_when_shown() -> None:
    checked = run(text_stream()).checked
    assert (
        not {"anthropic.error-event", "anthropic.tool-input-json", "anthropic.stop-max-tokens"}
        & checked
    )
    assert (
        "anthropic.block-index"
        not in run([message_start(), message_delta("refusal"), MESSAGE_STOP]).checked
    )


def test_repeats_are_capped() -> None:
    # each unparsable payload is its own problem: MAX_DISTINCT listed, the rest counted
    spec = text_stream()
    spec[3:3] = [("content_block_delta", "{bad")] * 20
    v = run(spec)
    data_json = [f for f in v.findings if f.rule == "anthropic.data-json"]
    assert len(data_json) == MAX_DISTINCT + 1
    assert [f.event for f in data_json[:MAX_DISTINCT]] == [3, 4, 5, 6, 7]
    assert data_json[-1].message.startswith(f"{20 - MAX_DISTINCT} more distinct problem(s)")
    # the same problem on every event (no event: line) is one finding with its count
    spec = [(None, payload) for _, payload in text_stream()]
    v = run(spec)
    (finding,) = [f for f in v.findings if "content_block_delta" in f.message]
    assert finding.rule == "anthropic.event-name"
    assert finding.event == 3
    assert finding.message.endswith("[2 occurrences in all]")
    assert len(v.findings) == 6  # one per event type


# -- the accumulated message --------------------------------------------------------------


def test_message_text() -> None:
    v = run(text_stream("Hel", "lo", " wor", "ld"))
    assert v.message() == {
        "id": "msg_01",
        "model": "claude-test",
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello world"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 7},
    }


def test_message_thinking_signature_and_redacted() -> None:
    spec = thinking_stream(
        delta(0, "thinking_delta", thinking="925 "),
        delta(0, "thinking_delta", thinking="/ 5"),
        delta(0, "thinking_delta", thinking=""),
        delta(0, "signature_delta", signature="EvQB=="),
    )
    spec[-2:-2] = [block_start(2, {"type": "redacted_thinking", "data": "Emw"}), block_stop(2)]
    content = run(spec).message()["content"]
    assert content == [
        {"type": "thinking", "thinking": "925 / 5", "signature": "EvQB=="},
        {"type": "text", "text": "185"},
        {"type": "redacted_thinking", "data": "Emw"},
    ]


def test_message_tool_use_fragments_and_raw_blocks() -> None:
    v = run(tool_stream("", '{"ci', 'ty": "Pa', 'ris"}'))
    assert v.message()["content"][1] == {
        "type": "tool_use",
        "id": "toolu_01",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    result = {"type": "web_search_tool_result", "tool_use_id": "s", "content": [{"x": 1}]}
    spec = [message_start(), block_start(0, result), block_stop(0), message_delta(), MESSAGE_STOP]
    assert run(spec).message()["content"] == [result]


def test_message_stop_sequence_and_usage_merge() -> None:
    spec = text_stream()
    spec[-2] = message_delta("stop_sequence", "END", output_tokens=4)
    message = run(spec).message()
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")
    assert message["usage"] == {"input_tokens": 12, "output_tokens": 4}
    # without message_delta: message_start's values
    assert run(text_stream()[:4], truncated=True).message()["usage"] == {
        "input_tokens": 12,
        "output_tokens": 1,
    }


def test_message_of_an_empty_stream() -> None:
    assert run(b"").message() == {
        "id": None,
        "model": None,
        "role": None,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": None, "output_tokens": None},
    }


def test_content_stamps() -> None:
    spec = [
        message_start(),
        text_start(0),
        text(0, ""),
        text(0, "a"),
        PING,
        text(0, "b"),
        block_stop(0),
        tool_start(1),
        json_piece(1, ""),
        json_piece(1, "{}"),
        block_stop(1),
        message_delta("tool_use"),
        MESSAGE_STOP,
    ]
    decoder = SSEDecoder()
    validator = AnthropicMessagesModel()
    for i, chunk in enumerate(body(spec).split(b"\n\n")):
        validator.feed(decoder.feed(chunk + b"\n\n", 1000 + i))
    validator.finish()
    assert validator.findings == []
    stamps = validator.content_t  # 1003, 1005, 1009: non-empty content deltas only
    assert (len(stamps), stamps[0], stamps[-1]) == (3, 1003, 1009)


# -- chunking and robustness ----------------------------------------------------------------


def one_byte(raw: bytes) -> AnthropicMessagesModel:
    decoder = SSEDecoder()
    validator = AnthropicMessagesModel()
    for i in range(len(raw)):
        validator.feed(decoder.feed(raw[i : i + 1], i))
    decoder.finish()
    validator.finish()
    return validator


def summary(v: AnthropicMessagesModel) -> tuple[list[tuple[str, str, int | None]], Any]:
    return [(f.rule, f.level, f.event) for f in v.findings], v.message()


@pytest.mark.parametrize(
    "spec",
    [
        text_stream("Grüße", " 🌍", "!"),
        tool_stream("", '{"city": "Par', stop="max_tokens", close=False),
        thinking_stream(
            delta(0, "signature_delta", signature="x"), delta(0, "thinking_delta", thinking="late")
        ),
        [*text_stream(), (None, "[DONE]")],
    ],
)
def test_one_byte_reads_validate_the_same(spec: Spec) -> None:
    raw = body(spec)
    assert summary(one_byte(raw)) == summary(run(raw))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=8,
)
_types = st.sampled_from(
    [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
        "other",
    ]
)
_block = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "text",
                "thinking",
                "tool_use",
                "server_tool_use",
                "redacted_thinking",
                "web_search_tool_result",
                "x",
            ]
        )
        | _json
    },
    optional={
        "text": _json,
        "thinking": _json,
        "id": _json,
        "name": _json,
        "input": _json,
        "data": _json,
        "signature": _json,
    },
)
_delta = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "text_delta",
                "input_json_delta",
                "thinking_delta",
                "signature_delta",
                "citations_delta",
                "other",
            ]
        )
    },
    optional={
        "text": _json,
        "partial_json": _json,
        "thinking": _json,
        "signature": _json,
        "citation": _json,
    },
)
_payload = st.fixed_dictionaries(
    {"type": _types},
    optional={
        "index": st.integers(-1, 3) | _json,
        "content_block": _block | _json,
        "delta": _delta | _json,
        "usage": _json,
        "message": _json,
        "error": _json,
    },
)
_event = st.tuples(
    st.sampled_from([None, "message_start", "content_block_delta", "ping", "error", "other"]),
    _payload | _json | st.sampled_from(["[DONE]", "", "{", "ping"]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event, max_size=14), st.booleans())
def test_random_events_never_raise(spec: Spec, truncated: bool) -> None:
    raw = "".join(
        (f"event: {name}\n" if name else "")
        + "data: "
        + (p if isinstance(p, str) else orjson.dumps(p).decode()).replace("\n", "\ndata: ")
        + "\n\n"
        for name, p in spec
    ).encode()
    v = run(raw, truncated=truncated)
    assert not any("could not interpret" in f.message for f in v.findings)
    assert all(isinstance(f, Finding) and f.level in ("MUST", "SHOULD", "INFO") for f in v.findings)
    message = v.message()
    assert isinstance(message["content"], list)
    orjson.dumps(message)


# -- non-stream answers ------------------------------------------------------------------


def error_body(kind: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": kind, "message": "no"}, "request_id": "req_1"}
    )


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [
        (401, "authentication_error", (401,)),
        (400, "invalid_request_error", (400, 422)),
        (404, "not_found_error", (404, 400)),
        (400, "invalid_request_error", (404, 400)),
    ],
)
def test_error_response_clean(status: int, kind: str, expected: tuple[int, ...]) -> None:
    findings, checked = check_error_response(status, "application/json", error_body(kind), expected)
    assert findings == []
    assert checked == {"anthropic.error-status", "anthropic.error-body"}


def test_error_response_status() -> None:
    ok = error_body("authentication_error")
    findings, _ = check_error_response(403, "application/json", ok, (401,))
    assert {f.rule for f in findings} == {"anthropic.error-status"}  # status and type
    findings, _ = check_error_response(
        401, "application/json", error_body("invalid_request_error"), (401,)
    )
    assert [f.rule for f in findings] == ["anthropic.error-status"]
    assert "authentication_error" in findings[0].message
    findings, checked = check_error_response(200, "text/event-stream", b"event: x\n\n", (401,))
    assert [f.rule for f in findings] == ["anthropic.error-status"]
    assert checked == {"anthropic.error-status"}
    assert check_error_response(None, "", b"", (401,)) == ([], set())


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("text/event-stream", b'event: error\ndata: {"type":"error"}\n\n'),
        ("text/html", b"<html>401</html>"),
        ("application/json", b'{"error": {"message": "bad key"}}'),
        ("application/json", b'{"type": "error", "error": {"type": "authentication_error"}}'),
        ("text/plain", error_body("authentication_error")),
    ],
)
def test_error_response_body(content_type: str, raw: bytes) -> None:
    findings, _ = check_error_response(401, content_type, raw, (401,))
    assert {f.rule for f in findings} == {"anthropic.error-body"}


MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-test",
    "content": [
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 2, "service_tier": "standard"},
}


def test_json_response() -> None:
    raw = orjson.dumps(MESSAGE)
    assert check_json_response(200, "application/json", raw) == ([], {"http.stream-false-json"})
    for status, ctype, bad in [
        (200, "text/event-stream", raw),
        (200, "application/json", b"{"),
        (200, "text/plain", raw),
        (500, "application/json", raw),
        (200, "application/json", orjson.dumps({**MESSAGE, "stop_reason": None})),
        (200, "application/json", orjson.dumps({**MESSAGE, "content": [{"type": "text"}]})),
    ]:
        findings, _ = check_json_response(status, ctype, bad)
        assert [f.rule for f in findings] == ["http.stream-false-json"], (status, ctype, bad)
    assert check_json_response(None, "", b"") == ([], set())


def test_broken_tool_input_stands_when_the_stream_ends_early() -> None:
    spec = tool_stream("", '{"city": "Par')[:-2]  # block stopped, then the body ends
    assert must(run(spec)) == {"anthropic.message-delta", "anthropic.tool-input-json"}
    assert run(spec, truncated=True).findings == []


def test_delta_after_block_stop() -> None:
    spec = text_stream()
    spec.insert(6, text(0, "late"))  # after block_stop(0)
    v = run(spec)
    assert must(v) == {"anthropic.block-nesting"}
    assert "after its content_block_stop" in v.findings[0].message


def test_error_response_without_expected_status_wants_a_4xx() -> None:
    raw = error_body("api_error")
    assert check_error_response(500, None, raw, ())[0][0].rule == "anthropic.error-status"
    findings, _ = check_error_response(429, "application/json", error_body("rate_limit_error"), ())
    assert findings == []
