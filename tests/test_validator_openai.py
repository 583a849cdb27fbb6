"""OpenAI chat-completions validator: one small stream per rule that trips it and a clean one
that does not, the accumulator, the non-stream checks, and a never-raises property test.

Streams are written as lists of dicts (one per ``data:`` event) and encoded to SSE bytes, then
decoded by the real decoder, so the tests go through the same path as a live capture.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproof.findings import Finding
from streamproof.rules import catalogue
from streamproof.sse import Event, decode_body
from streamproof.validators.answers import json_answer, refusal
from streamproof.validators.model import MAX_DISTINCT
from streamproof.validators.openai_model import OpenAIChatModel


def check_error_response(status, ctype, body, expected):  # type: ignore[no-untyped-def]
    return refusal("openai", status, ctype, body, expected)


def check_json_response(status, ctype, body):  # type: ignore[no-untyped-def]
    return json_answer("openai", status, ctype, body)


DONE = "[DONE]"
USAGE = {"stream_options": {"include_usage": True}}


# -- stream builders ----------------------------------------------------------------------


def chunk(*choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion.chunk",
        "created": 1727346168,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_1",
        "choices": list(choices),
    }
    body.update(extra)
    return body


def choice(delta: dict[str, Any], finish: str | None = None, index: int = 0, **extra: Any):
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}


def first(index: int = 0, **delta: Any) -> dict[str, Any]:
    return chunk(
        choice({"role": "assistant", "content": "", "refusal": None, **delta}, None, index)
    )


def text(content: str, index: int = 0) -> dict[str, Any]:
    return chunk(choice({"content": content}, None, index))


def finish(reason: str = "stop", index: int = 0, **extra: Any) -> dict[str, Any]:
    return chunk(choice({}, reason, index), **extra)


def usage_chunk(prompt: int = 10, completion: int = 3, total: int | None = None, **extra: Any):
    total = prompt + completion if total is None else total
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    return chunk(usage=usage, **extra)


def tool(k: int, id: str | None = None, name: str | None = None, args: Any = None, **extra: Any):
    entry: dict[str, Any] = {"index": k, **extra}
    if id is not None:
        entry["id"] = id
        entry["type"] = "function"
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if args is not None:
        function["arguments"] = args
    if function:
        entry["function"] = function
    return entry


def calls(*entries: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return chunk(choice({"tool_calls": list(entries)}, None, index))


def plain(*texts: str) -> list[Any]:
    return [first(), *(text(t) for t in texts), finish("stop"), DONE]


def tool_stream() -> list[Any]:
    return [
        chunk(choice({"role": "assistant", "content": None})),
        calls(tool(0, "call_a", "get_weather", "")),
        calls(tool(0, args='{"city": ')),
        calls(tool(0, args='"Paris"}')),
        calls(tool(1, "call_b", "get_time", "")),
        calls(tool(1, args='{"city": "Tokyo"}')),
        finish("tool_calls"),
        DONE,
    ]


def encode(items: list[Any]) -> bytes:
    """dict -> data: JSON; str -> data: str verbatim; (name, item) -> with an event: line."""
    out = []
    for item in items:
        name = None
        if isinstance(item, tuple):
            name, item = item
        data = item if isinstance(item, str) else orjson.dumps(item).decode()
        head = f"event: {name}\n" if name is not None else ""
        out.append(f"{head}data: {data}\n\n")
    return "".join(out).encode()


def run(
    items: list[Any],
    request: dict[str, Any] | None = None,
    expect: frozenset[str] = frozenset(),
    truncated: bool = False,
) -> OpenAIChatModel:
    events, decoder = decode_body(encode(items))
    assert not decoder.findings
    validator = OpenAIChatModel(request, expect=expect)
    validator.feed(events)
    validator.finish(truncated=truncated)
    for f in validator.findings:
        assert "could not interpret" not in f.message, f  # the validator itself raised
    return validator


def found(v: OpenAIChatModel) -> set[str]:
    return {f.rule for f in v.findings}


def messages(v: OpenAIChatModel, rule: str) -> list[str]:
    return [f.message for f in v.findings if f.rule == rule]


# -- one tripping stream per rule -----------------------------------------------------------

LONG_ID = "call_" + "x" * 36  # 41 characters

TRIPS: dict[str, tuple[list[Any], dict[str, Any] | None, frozenset[str]]] = {
    "data-json: not JSON": ([first(), "{not json", finish(), DONE], None, frozenset()),
    "data-json: an array": ([first(), "[1, 2]", finish(), DONE], None, frozenset()),
    "done": ([first(), text("Hi"), finish()], None, frozenset()),
    "done-last": ([*plain("Hi"), text("late")], None, frozenset()),
    "no-event-names": ([("completion", first()), text("Hi"), finish(), DONE], None, frozenset()),
    "chunk-schema: no id": (
        [first(), {k: v for k, v in text("Hi").items() if k != "id"}, finish(), DONE],
        None,
        frozenset(),
    ),
    "chunk-schema: created string": (
        [first(), {**text("Hi"), "created": "1727346168"}, finish(), DONE],
        None,
        frozenset(),
    ),
    "object": (
        [first(), {**text("Hi"), "object": "chat.completion"}, finish(), DONE],
        None,
        frozenset(),
    ),
    "id-stable": (
        [first(), {**text("Hi"), "id": "chatcmpl-other"}, finish(), DONE],
        None,
        frozenset(),
    ),
    "created-stable": (
        [first(), {**text("Hi"), "created": 1727346169}, finish(), DONE],
        None,
        frozenset(),
    ),
    "model-stable": (
        [first(), {**text("Hi"), "model": "gpt-4o-mini"}, finish(), DONE],
        None,
        frozenset(),
    ),
    "finish-reason-key": (
        [first(), chunk({"index": 0, "delta": {"content": "Hi"}}), finish(), DONE],
        None,
        frozenset(),
    ),
    "choice-schema: no delta": (
        [first(), chunk({"index": 0, "finish_reason": None}), finish(), DONE],
        None,
        frozenset(),
    ),
    "choice-schema: bad logprobs": (
        [
            first(),
            chunk(
                choice({"content": "Hi"}, logprobs={"content": [{"token": "Hi"}], "refusal": None})
            ),
            finish(),
            DONE,
        ],
        None,
        frozenset(),
    ),
    "role-first": ([text("Hi"), finish(), DONE], None, frozenset()),
    "role-first: wrong role": (
        [chunk(choice({"role": "model", "content": ""})), finish(), DONE],
        None,
        frozenset(),
    ),
    "role-once": (
        [first(), chunk(choice({"role": "assistant", "content": "Hi"})), finish(), DONE],
        None,
        frozenset(),
    ),
    "delta-types: content number": (
        [first(), chunk(choice({"content": 5})), finish(), DONE],
        None,
        frozenset(),
    ),
    "delta-types: tool_calls object": (
        [first(), chunk(choice({"tool_calls": {"index": 0}})), finish(), DONE],
        None,
        frozenset(),
    ),
    "finish-once: twice": ([first(), text("Hi"), finish(), finish(), DONE], None, frozenset()),
    "finish-once: never": ([first(), text("Hi"), DONE], None, frozenset()),
    "finish-once: no choice at all": ([DONE], None, frozenset()),
    "finish-last": ([first(), finish(), text("late"), DONE], None, frozenset()),
    "finish-enum": ([first(), text("Hi"), finish("done"), DONE], None, frozenset()),
    "finish-length": (
        [first(), text("Hi"), finish("stop"), DONE],
        {"max_tokens": 5},
        frozenset({"openai.finish-length"}),
    ),
    "finish-tool-calls": ([*tool_stream()[:-2], finish("stop"), DONE], None, frozenset()),
    "n-choices: missing": ([first(), text("Hi"), finish(), DONE], {"n": 2}, frozenset()),
    "n-choices: out of range": (
        [first(), first(1), finish(), finish(index=1), DONE],
        {"n": 1},
        frozenset(),
    ),
    "tool-index: not 0-based": (
        [first(), calls(tool(1, "call_a", "f", "{}")), finish("tool_calls"), DONE],
        None,
        frozenset(),
    ),
    "tool-index: no index": (
        [
            first(),
            calls({"id": "call_a", "type": "function", "function": {"name": "f"}}),
            finish("tool_calls"),
            DONE,
        ],
        None,
        frozenset(),
    ),
    "tool-head": (
        [first(), calls(tool(0, name="f", args="{}")), finish("tool_calls"), DONE],
        None,
        frozenset(),
    ),
    "tool-head-once: name repeated": (
        [
            first(),
            calls(tool(0, "call_a", "f", "")),
            calls(tool(0, name="f", args="{}")),
            finish("tool_calls"),
            DONE,
        ],
        None,
        frozenset(),
    ),
    "tool-head-once: empty id repeated": (
        [
            first(),
            calls(tool(0, "call_a", "f", "")),
            calls({"index": 0, "id": "", "function": {"arguments": "{}"}}),
            finish("tool_calls"),
            DONE,
        ],
        None,
        frozenset(),
    ),
    "tool-args-string": (
        [first(), calls(tool(0, "call_a", "f", {"city": "Paris"})), finish("tool_calls"), DONE],
        None,
        frozenset(),
    ),
    "tool-args-json: not JSON": (
        [first(), calls(tool(0, "call_a", "f", '{"city": ')), finish("tool_calls"), DONE],
        None,
        frozenset(),
    ),
    "tool-args-json: not an object": (
        [first(), calls(tool(0, "call_a", "f", "[1]")), finish("tool_calls"), DONE],
        None,
        frozenset(),
    ),
    "tool-id-length": (
        [first(), calls(tool(0, LONG_ID, "f", "{}")), finish("tool_calls"), DONE],
        None,
        frozenset(),
    ),
    "usage-chunk: missing": ([first(), text("Hi"), finish(), DONE], USAGE, frozenset()),
    "usage-chunk: twice": (
        [first(), text("Hi"), finish(), usage_chunk(), usage_chunk(), DONE],
        USAGE,
        frozenset(),
    ),
    "usage-chunk: before the finish": (
        [first(), text("Hi"), usage_chunk(), finish(), DONE],
        USAGE,
        frozenset(),
    ),
    "usage-chunk: string tokens": (
        [
            first(),
            text("Hi"),
            finish(),
            chunk(usage={"prompt_tokens": "1", "completion_tokens": 1, "total_tokens": 2}),
            DONE,
        ],
        USAGE,
        frozenset(),
    ),
    "usage-total": (
        [first(), text("Hi"), finish(), usage_chunk(10, 3, 20), DONE],
        USAGE,
        frozenset(),
    ),
    "usage-null-before": (
        [
            first(),
            text("Hi"),
            finish(usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
            usage_chunk(),
            DONE,
        ],
        USAGE,
        frozenset(),
    ),
    "usage-unrequested: usage chunk": (
        [first(), text("Hi"), finish(), usage_chunk(), DONE],
        None,
        frozenset(),
    ),
    "usage-unrequested: empty choices": (
        [first(), chunk(), text("Hi"), finish(), DONE],
        None,
        frozenset(),
    ),
    "usage-max-tokens": (
        [first(), text("Hi"), finish(), usage_chunk(10, 9), DONE],
        {**USAGE, "max_tokens": 5},
        frozenset(),
    ),
    "midstream-error: no message": (
        [first(), text("Hi"), {"error": {"type": "server_error"}}, DONE],
        None,
        frozenset(),
    ),
    "midstream-error: a string": ([first(), text("Hi"), {"error": "boom"}], None, frozenset()),
    "midstream-error: finish after it": (
        [
            first(),
            text("Hi"),
            {"error": {"message": "overloaded", "type": "server_error"}},
            finish(),
            DONE,
        ],
        None,
        frozenset(),
    ),
}


@pytest.mark.parametrize("case", list(TRIPS), ids=list(TRIPS))
def test_rule_trips(case: str) -> None:
    items, request, expect = TRIPS[case]
    rule = "openai." + case.split(":")[0]
    v = run(items, request, expect)
    assert rule in found(v), [str(f) for f in v.findings]
    assert rule in v.checked
    for f in v.findings:
        assert f.message and "\n" not in f.message
        assert f.rule in catalogue()


# -- clean streams: nothing found, and the rules were evaluated ----------------------------

CLEAN: dict[str, tuple[list[Any], dict[str, Any] | None, frozenset[str], set[str]]] = {
    "plain text": (
        plain("Hel", "lo"),
        None,
        frozenset(),
        {
            "openai.data-json",
            "openai.done",
            "openai.done-last",
            "openai.no-event-names",
            "openai.chunk-schema",
            "openai.object",
            "openai.id-stable",
            "openai.created-stable",
            "openai.model-stable",
            "openai.choice-schema",
            "openai.role-first",
            "openai.role-once",
            "openai.delta-types",
            "openai.finish-once",
            "openai.finish-last",
            "openai.finish-enum",
            "openai.usage-unrequested",
        },
    ),
    "tool calls": (
        tool_stream(),
        None,
        frozenset(),
        {
            "openai.tool-index",
            "openai.tool-head",
            "openai.tool-head-once",
            "openai.tool-args-string",
            "openai.tool-args-json",
            "openai.tool-id-length",
            "openai.finish-tool-calls",
        },
    ),
    "usage": (
        [*plain("Hi")[:-1], usage_chunk(), DONE],
        {**USAGE, "max_completion_tokens": 3},
        frozenset(),
        {
            "openai.usage-chunk",
            "openai.usage-total",
            "openai.usage-null-before",
            "openai.usage-max-tokens",
        },
    ),
    "length": (
        [first(), text("Hi"), finish("length"), usage_chunk(5, 1), DONE],
        {**USAGE, "max_tokens": 1},
        frozenset({"openai.finish-length"}),
        {"openai.finish-length", "openai.usage-max-tokens"},
    ),
    "n=2 interleaved": (
        [first(0), first(1), text("a", 0), text("b", 1), finish(index=1), finish(index=0), DONE],
        {"n": 2},
        frozenset(),
        {"openai.n-choices", "openai.finish-once"},
    ),
    "midstream error after content": (
        [
            first(),
            text("Hi"),
            {
                "error": {
                    "message": "overloaded",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            },
            DONE,
        ],
        None,
        frozenset(),
        {"openai.midstream-error"},
    ),
    "midstream error, stream closed without [DONE]": (
        [first(), text("Hi"), ("error", {"error": {"message": "overloaded"}})],
        USAGE,
        frozenset(),
        {"openai.midstream-error"},
    ),
    # the spec's tolerance list
    "tolerated: obfuscation, usage null everywhere, empty finish delta": (
        [
            {**first(), "usage": None, "obfuscation": "abc"},
            {**text("Hi"), "usage": None, "obfuscation": ""},
            {**finish(), "usage": None, "obfuscation": "x" * 15},
            usage_chunk(obfuscation="q", service_tier="default"),
            DONE,
        ],
        USAGE,
        frozenset(),
        {"openai.usage-null-before"},
    ),
    "tolerated: gpt-5 style (no logprobs key, trailing moderation chunk)": (
        [
            {
                **chunk(
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ),
                "system_fingerprint": None,
            },
            chunk({"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}),
            chunk({"index": 0, "delta": {}, "finish_reason": "stop"}),
            usage_chunk(),
            chunk(moderation={"flagged": False}),
            DONE,
        ],
        USAGE,
        frozenset(),
        {"openai.usage-chunk"},
    ),
    "tolerated: content null first delta without refusal key, head with arguments ''": (
        tool_stream(),
        None,
        frozenset(),
        {"openai.tool-head"},
    ),
}


@pytest.mark.parametrize("case", list(CLEAN), ids=list(CLEAN))
def test_clean_stream(case: str) -> None:
    items, request, expect, rules = CLEAN[case]
    v = run(items, request, expect)
    named = any(isinstance(item, tuple) for item in items)
    assert [f.rule for f in v.findings] == (["openai.no-event-names"] if named else []), [
        str(f) for f in v.findings
    ]
    assert all(f.level == "INFO" for f in v.findings)
    assert rules <= v.checked, rules - v.checked


# -- what is (not) in checked --------------------------------------------------------------


def test_checked_only_rules_whose_precondition_occurred() -> None:
    v = run(plain("Hi"))
    tool_rules = {r for r in catalogue() if r.startswith("openai.tool-")}
    assert not tool_rules & v.checked
    assert "openai.finish-tool-calls" not in v.checked
    assert (
        not {"openai.usage-chunk", "openai.usage-null-before", "openai.finish-length"} & v.checked
    )
    assert "openai.n-choices" not in v.checked
    assert "openai.midstream-error" not in v.checked
    assert "openai.usage-total" not in v.checked  # no usage object was seen
    assert "openai.usage-max-tokens" not in v.checked
    # a single chunk: nothing to compare for stability, no later delta for role-once
    v = run([chunk(choice({"role": "assistant", "content": "Hi"}, "stop")), DONE])
    assert v.findings == []
    assert not {"openai.id-stable", "openai.role-once"} & v.checked


def test_truncated_stream_does_not_restate_the_transport_failure() -> None:
    items = [first(), text("Hi"), calls(tool(0, "call_a", "f", '{"ci'))]
    v = run(items, {**USAGE, "n": 2}, frozenset({"openai.finish-length"}), truncated=True)
    assert v.findings == []
    for rule in ("done", "usage-chunk", "tool-args-json", "finish-length"):
        assert "openai." + rule not in v.checked
    # the same stream ended by the server is a different matter
    v = run(items, {**USAGE, "n": 2})
    assert {
        "openai.done",
        "openai.finish-once",
        "openai.usage-chunk",
        "openai.tool-args-json",
        "openai.n-choices",
    } <= found(v)


def test_length_cut_tool_arguments_are_not_required_to_parse() -> None:
    items = [first(), calls(tool(0, "call_a", "f", '{"ci')), finish("length"), DONE]
    v = run(items, {"max_tokens": 3}, frozenset({"openai.finish-length"}))
    assert "openai.tool-args-json" not in found(v)
    assert found(v) == {"openai.finish-tool-calls"}  # SHOULD: cut by length, not tool_calls


def test_valid_midstream_error_ends_the_stream_for_the_client() -> None:
    v = run([first(), text("Hi"), {"error": {"message": "overloaded", "type": "server_error"}}])
    assert v.findings == []
    assert "openai.done" not in v.checked and "openai.midstream-error" in v.checked
    assert v.message()["choices"][0]["content"] == "Hi"
    assert v.message()["choices"][0]["finish_reason"] is None
    # chunks after the error: reported (a finish explicitly), not accumulated
    v = run([first(), {"error": {"message": "x"}}, text("late"), text("later"), finish(), DONE])
    assert [f.rule for f in v.findings] == ["openai.midstream-error"] * 2
    assert "[2 occurrences in all]" in v.findings[0].message
    assert "carries a finish_reason" in v.findings[1].message
    assert v.message()["choices"][0]["content"] == ""
    assert v.message()["choices"][0]["finish_reason"] is None


def test_float_choice_index_is_reported_and_used() -> None:
    v = run(
        [
            first(),
            '{"id": "chatcmpl-abc123", "object": "chat.completion.chunk", '
            '"created": 1727346168, "model": "gpt-4o-2024-08-06", "choices": '
            '[{"index": 0.0, "delta": {"content": "Hi"}, "finish_reason": null}]}',
            finish(),
            DONE,
        ]
    )
    assert found(v) == {"openai.choice-schema"}
    assert v.message()["choices"][0]["content"] == "Hi"


def test_falsy_error_is_reported_and_parsed_as_a_chunk() -> None:
    v = run([first(), {**text("Hi"), "error": {}}, finish(), DONE])
    assert found(v) == {"openai.midstream-error"}
    assert v.message()["choices"][0]["content"] == "Hi"


def test_wrong_object_is_reported_once_not_as_identity_changes() -> None:
    azure_filter = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [],
    }
    v = run([azure_filter, *plain("Hi")[:-1], usage_chunk(), DONE], USAGE)
    assert found(v) == {"openai.object"}


# -- messages and noise control ------------------------------------------------------------


def test_role_once_message_is_specific() -> None:
    v = run([first(), chunk(choice({"role": "assistant", "content": "Hi"})), finish(), DONE])
    (message,) = messages(v, "openai.role-once")
    assert "choice 0" in message and "event 1" in message and "'assistantassistant'" in message


def test_repeats_are_counted_not_listed() -> None:
    many = [chunk(choice({"role": "assistant", "content": "x"})) for _ in range(1000)]
    v = run([first(), *many, finish(), DONE])
    assert len(v.findings) == 1
    assert "[1000 occurrences in all]" in v.findings[0].message


def test_distinct_problems_are_capped_per_rule() -> None:
    items = [first()] + [{**text("x"), "object": f"thing.{k}"} for k in range(MAX_DISTINCT + 7)]
    v = run([*items, finish(), DONE])
    object_findings = messages(v, "openai.object")
    assert len(object_findings) == MAX_DISTINCT + 1
    assert object_findings[-1].startswith("7 more distinct problem(s)")


def test_per_choice_findings() -> None:
    items = [
        chunk(choice({"content": "a"}, None, 0), choice({"content": "b"}, None, 1)),
        finish(index=0),
        finish(index=1),
        DONE,
    ]
    v = run(items, {"n": 2})
    assert len(messages(v, "openai.role-first")) == 2


def test_finding_points_at_the_event() -> None:
    v = run([first(), text("Hi"), {**text("!"), "id": "chatcmpl-zzz"}, finish(), DONE])
    (f,) = v.findings
    assert f.rule == "openai.id-stable" and f.event == 2
    assert "chatcmpl-zzz" in f.excerpt


# -- the accumulator ------------------------------------------------------------------------


def test_accumulate_text() -> None:
    v = run([*plain("Hel", "lo", " world")[:-1], usage_chunk(5, 3), DONE], USAGE)
    assert v.message() == {
        "choices": [
            {
                "index": 0,
                "role": "assistant",
                "content": "Hello world",
                "refusal": None,
                "tool_calls": [],
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def test_accumulate_parallel_tools() -> None:
    v = run(tool_stream())
    (c,) = v.message()["choices"]
    assert c["content"] is None and c["refusal"] is None and c["role"] == "assistant"
    assert c["finish_reason"] == "tool_calls"
    assert c["tool_calls"] == [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {
            "index": 1,
            "id": "call_b",
            "type": "function",
            "name": "get_time",
            "arguments": '{"city": "Tokyo"}',
        },
    ]
    assert v.message()["usage"] is None


def test_accumulate_takes_head_fields_once() -> None:
    v = run(
        [
            first(),
            calls(tool(0, "call_a", "f", "")),
            calls(
                {
                    "index": 0,
                    "id": "",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{}"},
                }
            ),
            chunk(choice({"role": "assistant"})),
            finish("tool_calls"),
            DONE,
        ]
    )
    (c,) = v.message()["choices"]
    assert c["role"] == "assistant"
    assert c["tool_calls"] == [
        {"index": 0, "id": "call_a", "type": "function", "name": "f", "arguments": "{}"}
    ]
    assert found(v) == {"openai.tool-head-once", "openai.role-once"}


def test_accumulate_refusal() -> None:
    items = [
        chunk(choice({"role": "assistant", "content": None, "refusal": ""})),
        chunk(choice({"refusal": "I can't"})),
        chunk(choice({"refusal": " help."})),
        finish(),
        DONE,
    ]
    v = run(items)
    (c,) = v.message()["choices"]
    assert c["content"] is None and c["refusal"] == "I can't help."
    assert v.findings == []


def test_accumulate_empty_content_is_not_none() -> None:
    v = run([first(), finish(), DONE])
    assert v.message()["choices"][0]["content"] == ""
    v = run([chunk(choice({"role": "assistant"})), finish(), DONE])
    assert v.message()["choices"][0]["content"] is None


def test_accumulate_n2_sorted_by_index() -> None:
    items = [
        first(1),
        text("b", 1),
        first(0),
        text("a", 0),
        finish("length", 1),
        finish("stop", 0),
        DONE,
    ]
    v = run(items, {"n": 2})
    assert v.findings == []
    choices = v.message()["choices"]
    assert [(c["index"], c["content"], c["finish_reason"]) for c in choices] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]


def test_content_stamps() -> None:
    body = encode(
        [
            first(),
            text("a"),
            text(""),
            chunk(choice({"reasoning_content": "hmm"})),
            chunk(choice({"refusal": "no"})),
            calls(tool(0, "call_a", "f", "")),
            finish(),
            DONE,
        ]
    )
    events, _ = decode_body(body)
    for k, event in enumerate(events):
        event.t = 1000 + k
    v = OpenAIChatModel()
    v.feed(events)
    v.finish()
    # 1001, 1003, 1004, 1005 (the empty text at 1002 is no content): count, first, last
    assert (len(v.content_t), v.content_t[0], v.content_t[-1]) == (4, 1001, 1005)


def test_feeding_in_batches_is_the_same_as_at_once() -> None:
    items = [*tool_stream()[:-1], {**text("late"), "id": "other"}, DONE, text("after")]
    events, _ = decode_body(encode(items))
    whole = OpenAIChatModel()
    whole.feed(events)
    whole.finish()
    parts = OpenAIChatModel()
    for event in events:
        parts.feed([event])
    parts.finish()
    assert whole.findings == parts.findings and whole.message() == parts.message()


# -- non-stream checks -----------------------------------------------------------------------

ERROR_BODY = orjson.dumps(
    {
        "error": {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
)


@pytest.mark.parametrize(
    ("status", "ctype", "body", "expected", "rules"),
    [
        (401, "application/json", ERROR_BODY, (401,), set()),
        (400, "application/json; charset=utf-8", ERROR_BODY, (400, 422), set()),
        (200, "text/event-stream", b"data: {}\n\n", (401,), {"openai.error-status"}),
        (403, "application/json", ERROR_BODY, (401,), {"openai.error-status"}),
        (401, "text/event-stream", b"data: " + ERROR_BODY + b"\n\n", (401,), {"openai.error-body"}),
        (401, "text/html", b"<html>Unauthorized</html>", (401,), {"openai.error-body"}),
        (401, "application/json", b'{"detail": "Unauthorized"}', (401,), {"openai.error-body"}),
        (
            401,
            "application/json",
            b'{"error": {"message": "no", "type": "auth"}}',
            (401,),
            {"openai.error-body"},
        ),
        (404, "text/plain", ERROR_BODY, (404, 400), {"openai.error-body"}),
    ],
)
def test_check_error_response(status, ctype, body, expected, rules) -> None:
    findings, checked = check_error_response(status, ctype, body, expected)
    assert {f.rule for f in findings} == rules
    assert "openai.error-status" in checked
    assert all(isinstance(f, Finding) and f.event is None for f in findings)


def test_check_error_response_without_status() -> None:
    assert check_error_response(None, "", b"", (401,)) == ([], set())


COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1727346168,
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


@pytest.mark.parametrize(
    ("status", "ctype", "body", "bad"),
    [
        (200, "application/json", orjson.dumps(COMPLETION), False),
        (200, "text/event-stream", encode(plain("Hi")), True),
        (
            200,
            "application/json",
            orjson.dumps({**COMPLETION, "object": "chat.completion.chunk"}),
            True,
        ),
        (200, "application/json", b"not json", True),
        (500, "application/json", ERROR_BODY, True),
        (200, "application/json", orjson.dumps({**COMPLETION, "choices": []}), True),
    ],
)
def test_check_json_response(status, ctype, body, bad) -> None:
    findings, checked = check_json_response(status, ctype, body)
    assert checked == {"http.stream-false-json"}
    assert bool(findings) is bad
    assert all(f.rule == "http.stream-false-json" for f in findings)


# -- property: any input, no exception, findings instead -------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
anything = json_values | st.sampled_from(
    ["", "assistant", "function", "stop", "tool_calls", 0, 1, -1, []]
)
deltas = st.fixed_dictionaries(
    {},
    optional={
        "role": anything,
        "content": anything,
        "refusal": anything,
        "reasoning_content": anything,
        "tool_calls": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "index": anything,
                    "id": anything,
                    "type": anything,
                    "function": st.fixed_dictionaries(
                        {}, optional={"name": anything, "arguments": anything}
                    )
                    | anything,
                },
            )
            | anything,
            max_size=3,
        )
        | anything,
    },
)
choices_ = st.fixed_dictionaries(
    {},
    optional={
        "index": st.integers(0, 2) | anything,
        "delta": deltas | anything,
        "finish_reason": st.sampled_from([None, "stop", "length", "tool_calls", "bogus"])
        | anything,
        "logprobs": anything,
    },
)
chunks = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["a", "b"]) | anything,
        "object": st.sampled_from(["chat.completion.chunk", ""]) | anything,
        "created": st.sampled_from([1, 2]) | anything,
        "model": st.sampled_from(["m"]) | anything,
        "choices": st.lists(choices_ | anything, max_size=3) | anything,
        "usage": st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "prompt_tokens": anything,
                "completion_tokens": anything,
                "total_tokens": anything,
            },
        )
        | anything,
        "error": st.none() | anything,
    },
)
payloads = (
    chunks.map(lambda c: orjson.dumps(c).decode())
    | json_values.map(lambda c: orjson.dumps(c).decode())
    | st.sampled_from([DONE, "", "{", "null", "[DONE] ", "data"])
    | st.text(max_size=20)
)
events_ = st.lists(
    st.tuples(st.none() | st.sampled_from(["error", "message", "x"]), payloads), max_size=12
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "n": anything | st.integers(1, 3),
        "stream_options": anything | st.just({"include_usage": True}),
        "max_tokens": anything | st.integers(0, 5),
        "max_completion_tokens": anything,
    },
)


def _is_object(data: str) -> bool:
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_, request=requests | st.none(), truncated=st.booleans(), length=st.booleans())
def test_never_raises(events, request, truncated, length) -> None:
    stream = [Event(data, name, None, None, k, 0, k) for k, (name, data) in enumerate(events)]
    expect = frozenset({"openai.finish-length"}) if length else frozenset()
    v = OpenAIChatModel(request, expect=expect)
    v.feed(stream)
    v.finish(truncated=truncated)
    rules = catalogue()
    for f in v.findings:
        assert "could not interpret" not in f.message, f
        assert f.rule in rules and f.rule.startswith("openai.")
        assert isinstance(f.message, str) and f.message
    assert v.checked <= set(rules)
    message = v.message()
    assert set(message) == {"choices", "usage"}
    orjson.dumps(message)
    if not truncated and not any(_is_object(data) for _, data in events):
        assert v.findings  # nothing usable came: that is always a finding
