"""Recorded OpenAI-style streams (tests/golden/openai, see MANIFEST.tsv) through the decoder and
the validator: genuine OpenAI streams give no MUST/SHOULD finding, compatible servers are
flagged for exactly their documented deviations and nothing else.

The request of each recording is not stored; it is derived from the stream the way the suite
derives it offline (a ``choices: []`` chunk with usage means include_usage was asked, the
highest choice index gives n), plus what the manifest states (max_tokens=1 for the length
recording).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streamproof.capture import load_transcript
from streamproof.engine import infer_request
from streamproof.sdk_replay import sdk_message
from streamproof.sse import SSEDecoder, decode_body
from streamproof.validators.openai_model import OpenAIChatModel

GOLDEN = Path(__file__).parent / "golden" / "openai"

# file -> the (rule id, level) of every MUST and SHOULD finding expected (decoder and validator
# together; a rule found at both levels counts at its strongest). INFO findings are not part of
# the comparison.
EXPECTED: dict[str, set[tuple[str, str]]] = {
    # -- genuine api.openai.com recordings: nothing to report ----------------------------
    "openai_gpt41nano_text_obfuscation_usage_null.sse": set(),  # tolerated: obfuscation, usage null
    "openai_gpt4o_content_logprobs.sse": set(),
    "openai_gpt4o_finish_reason_length.sse": set(),  # finish-length expected and met
    "openai_gpt4o_json_object_long_content.sse": set(),
    "openai_gpt4o_n3_multiple_choices.sse": set(),  # n=3 interleaved
    "openai_gpt4o_nonstrict_tool_call.sse": set(),
    "openai_gpt4o_parallel_tool_calls.sse": set(),  # first delta without a refusal key: tolerated
    "openai_gpt4o_plain_text_include_usage.sse": set(),
    "openai_gpt4o_refusal.sse": set(),
    "openai_gpt4o_refusal_logprobs.sse": set(),
    "openai_gpt4o_single_tool_call_streamed_args.sse": set(),
    "openai_gpt4o_strict_tool_call.sse": set(),
    "openai_gpt4o_structured_output_json_content.sse": set(),
    # A fragment: only the error event (and [DONE]) of a stream whose content chunks were not
    # captured. What it can show is the error event itself, and that one is well formed (an
    # object with a string message). It shows no choice, so role-first, finish-once and the
    # other per-choice rules have nothing to judge, and since the error ends the stream for the
    # client (the SDK raises on it) no finish or usage is required after it.
    "openai_midstream_error_server_error_fragment.sse": set(),
    # -- compatible servers --------------------------------------------------------------
    # DashScope: continuation fragments repeat id "" and type (a warning: the SDK replaces
    # type and "" adds nothing to the id); the trailing extra tool_calls delta has no
    # finish_reason key (a warning: the SDKs default it to null).
    "compat_alibaba_qwen3max_tool_call_empty_id_continuations.sse": {
        ("openai.tool-head-once", "SHOULD"),
        ("openai.finish-reason-key", "SHOULD"),
    },
    # Gateway in front of Anthropic: the tool call's index is 1 with no index 0 (the content
    # block index leaks through; the SDK's list insert then splits the call). The file also
    # ends "data: [DONE]\n" with one LF only: a conforming decoder drops that unterminated
    # event (sse.terminated), so the client never sees [DONE] (openai.done).
    "compat_anthropic_openai_gateway_tool_index_1.sse": {
        ("openai.tool-index", "MUST"),
        ("sse.terminated", "MUST"),
        ("openai.done", "MUST"),
    },
    # Azure model router: the first chunk is a prompt-filter annotation with object "" (and
    # empty id/model, created 0). Reported once under openai.object, as a warning: the chunk
    # carries no choice, so the SDK's stream helper, which skips it by its object (exactly for
    # Azure), loses nothing. It is not used for the id/created/model stability checks.
    "compat_azure_model_router_prompt_filter_chunk.sse": {("openai.object", "SHOULD")},
    # Groq: x_groq extension and usage on the finish chunk. No choices: [] chunk, so the
    # derived request has no include_usage: nothing to report.
    "compat_groq_llama33_tool_call_x_groq.sse": set(),
    # Ollama: role "assistant" repeated in every delta (the SDK rebuilds
    # "assistantassistantassistant") and created ticks from ...392 to ...393 mid-stream (a
    # warning: the SDK keeps the first chunk's).
    "compat_ollama_parallel_tool_calls_whole.sse": {
        ("openai.role-once", "MUST"),
        ("openai.created-stable", "SHOULD"),
    },
    # Perplexity: no finish_reason key on intermediate chunks, role repeated, created changes,
    # and the last chunk's object is "chat.completion.done": it carries the finish_reason,
    # which the SDK's stream helper loses by skipping it (MUST). Usage on every chunk is not
    # reported: no usage chunk, so include_usage is not derived, and usage-null-before only
    # applies when usage was requested.
    "compat_perplexity_sonar_citations_usage_every_chunk.sse": {
        ("openai.finish-reason-key", "SHOULD"),
        ("openai.role-once", "MUST"),
        ("openai.created-stable", "SHOULD"),
        ("openai.object", "MUST"),
    },
    # vLLM: model "" in every chunk is stable (and a string), the head fragment without an
    # arguments key is fine; the tool call id is 46 characters (> 40: a warning).
    "compat_vllm_tool_call_empty_model.sse": {("openai.tool-id-length", "SHOULD")},
    # xAI: no finish_reason key on intermediate chunks, created changes second by second, and
    # total_tokens counts reasoning tokens on top of prompt + completion: three warnings and
    # no failure, as every client reads the stream fine.
    "compat_xai_grok3mini_reasoning_tool_call_whole.sse": {
        ("openai.finish-reason-key", "SHOULD"),
        ("openai.created-stable", "SHOULD"),
        ("openai.usage-total", "SHOULD"),
    },
}

# What the manifest says about a recording's request beyond what the stream shows.
EXTRA_REQUEST: dict[str, tuple[dict[str, Any], frozenset[str]]] = {
    "openai_gpt4o_finish_reason_length.sse": (
        {"max_tokens": 1},
        frozenset({"openai.finish-length"}),
    ),
}

FILES = sorted(p.name for p in GOLDEN.glob("*.sse"))
GENUINE = [f for f in FILES if f.startswith("openai_") and "fragment" not in f]


def validate(name: str, read_size: int | None = None):
    body = (GOLDEN / name).read_bytes()
    if read_size is None:
        events, decoder = decode_body(body)
    else:
        decoder = SSEDecoder()
        events = []
        for start in range(0, len(body), read_size):
            events += decoder.feed(body[start : start + read_size], start)
        decoder.finish()
    request = {"stream": True, **infer_request("openai", events)}
    extra, expect = EXTRA_REQUEST.get(name, ({}, frozenset()))
    request.update(extra)
    validator = OpenAIChatModel(request, expect=expect)
    if read_size is None:
        validator.feed(events)
    else:
        for start in range(0, len(events), 3):
            validator.feed(events[start : start + 3])
    validator.finish()
    return decoder.findings + validator.findings, validator, request


def test_every_golden_file_has_an_expectation() -> None:
    assert set(FILES) == set(EXPECTED)
    assert len(GENUINE) == 13


@pytest.mark.parametrize("name", FILES)
def test_golden_findings(name: str) -> None:
    findings, validator, _ = validate(name)
    graded = {f.rule for f in findings if f.level in ("MUST", "SHOULD")}
    strongest = {
        (r, "MUST" if any(f.rule == r and f.level == "MUST" for f in findings) else "SHOULD")
        for r in graded
    }
    assert strongest == EXPECTED[name], "\n".join(str(f) for f in findings)
    for f in findings:
        assert "could not interpret" not in f.message
    # every rule that produced a finding was evaluated
    assert {r for r in graded if r.startswith("openai.")} <= validator.checked


@pytest.mark.parametrize("name", GENUINE)
def test_genuine_streams_have_no_must_finding(name: str) -> None:
    findings, validator, request = validate(name)
    assert [str(f) for f in findings if f.level == "MUST"] == []
    if "stream_options" in request:
        assert "openai.usage-chunk" in validator.checked
    assert validator.content_t, "a genuine stream has content events"


@pytest.mark.parametrize("name", FILES)
def test_read_size_does_not_matter(name: str) -> None:
    whole, v1, _ = validate(name)
    small, v2, _ = validate(name, read_size=13)
    assert [(f.rule, f.event) for f in whole] == [(f.rule, f.event) for f in small]
    assert v1.message() == v2.message()
    assert v1.checked == v2.checked


def test_scenario_rules_are_evaluated_when_the_request_asks() -> None:
    _, v, _ = validate("openai_gpt4o_finish_reason_length.sse")
    assert {"openai.finish-length", "openai.usage-max-tokens", "openai.usage-chunk"} <= v.checked
    _, v, _ = validate("openai_gpt4o_n3_multiple_choices.sse")
    assert "openai.n-choices" in v.checked
    assert [c["finish_reason"] for c in v.message()["choices"]] == ["stop"] * 3
    _, v, _ = validate("openai_gpt4o_plain_text_include_usage.sse")
    assert "openai.finish-length" not in v.checked and "openai.n-choices" not in v.checked
    assert not any(r.startswith("openai.tool-") for r in v.checked)
    _, v, _ = validate("openai_midstream_error_server_error_fragment.sse")
    assert "openai.midstream-error" in v.checked and "openai.done" not in v.checked


def test_golden_messages() -> None:
    _, v, _ = validate("openai_gpt4o_parallel_tool_calls.sse")
    (choice,) = v.message()["choices"]
    assert [c["index"] for c in choice["tool_calls"]] == [0, 1]
    for call in choice["tool_calls"]:
        assert call["id"].startswith("call_") and call["type"] == "function"
        assert isinstance(orjson.loads(call["arguments"]), dict)
    assert choice["content"] is None and choice["finish_reason"] == "tool_calls"
    _, v, _ = validate("openai_gpt4o_refusal.sse")
    (choice,) = v.message()["choices"]
    assert choice["content"] is None and choice["refusal"].startswith("I'm sorry")
    _, v, _ = validate("compat_alibaba_qwen3max_tool_call_empty_id_continuations.sse")
    (call,) = v.message()["choices"][0]["tool_calls"]
    assert call["id"] == "call_eee11723464a4b9eb8cee71d"
    assert call["arguments"] == '{"location": "San Francisco"}'
    _, v, _ = validate("compat_xai_grok3mini_reasoning_tool_call_whole.sse")
    assert v.message()["usage"] == {
        "prompt_tokens": 307,
        "completion_tokens": 26,
        "total_tokens": 560,
    }
    assert len(v.content_t) > 200  # reasoning_content deltas count as content events


def _sdk_message(name: str) -> dict[str, Any]:
    """What the official SDK rebuilds from the same bytes (through the suite's replay path)."""
    cap = load_transcript(GOLDEN / name)
    return sdk_message("openai", cap, {"model": "golden", "messages": [], "stream": True})


@pytest.mark.parametrize("name", GENUINE)
def test_accumulator_matches_the_sdk_on_genuine_streams(name: str) -> None:
    _, validator, _ = validate(name)
    assert validator.message() == _sdk_message(name)


def test_sdk_concatenates_the_repeated_role_the_validator_reports() -> None:
    name = "compat_ollama_parallel_tool_calls_whole.sse"
    _, validator, _ = validate(name)
    assert validator.message()["choices"][0]["role"] == "assistant"
    assert _sdk_message(name)["choices"][0]["role"] == "assistant" * 3
