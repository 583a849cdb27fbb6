"""Recorded OpenAI Responses streams (tests/golden/responses, see MANIFEST.tsv) through the
decoder, the stream model with every check and the official SDK's replay.

Genuine vendor streams must give no MUST finding; what they show that is worth knowing is
flagged for exactly what it is. ``EXPECTED`` lists, per file, every finding as (rule, level):
an extra finding, a missing one or a changed level fails the test.
"""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest

from streamproof.capture import Capture, EventKeeper, load_transcript
from streamproof.engine import check_capture, check_file, model_for
from streamproof.sse import SSEDecoder, decode_body
from streamproof.validators.responses_model import ResponsesModel

GOLDEN = Path(__file__).parent / "golden"
NAME_ONLY = ("responses.args-done-name", "INFO")  # no recorded stream sends the name

EXPECTED: dict[str, set[tuple[str, str]]] = {
    # DeepSeek: UUID ids, a reasoning_text content part, no obfuscation: all valid.
    "compat_deepseek_v4_reasoning_text_function_call.sse": {NAME_ONLY},
    # annotation events between text deltas, repeated in content_part.done: valid.
    "openai_gpt4o_file_search_annotation.sse": set(),
    # the 2025-03 API sent no sequence_number at all: a warning (only resuming needs it).
    "openai_gpt4o_function_call_no_sequence_number.sse": {
        ("responses.seq-present", "SHOULD"),
        NAME_ONLY,
    },
    # logprobs rounded in output_item.done and the final response: logprobs are not text.
    "openai_gpt4omini_text_logprobs_rounded_in_done.sse": set(),
    "openai_gpt55_commentary_text_then_function_call.sse": {
        NAME_ONLY,
        ("responses.reasoning-hidden", "INFO"),
    },
    "openai_gpt5_code_interpreter_reasoning_summary.sse": set(),
    "openai_gpt5_hidden_reasoning_then_function_call.sse": {
        NAME_ONLY,
        ("responses.reasoning-hidden", "INFO"),
    },
    "openai_gpt5_web_search_call_reasoning.sse": {("responses.reasoning-hidden", "INFO")},
    # the live API's nested error event, then response.failed: a valid end of the stream.
    "openai_gpt5nano_error_event_then_failed_reconstructed.sse": {
        ("responses.error-shape", "INFO"),
    },
    "openai_o3mini_reasoning_summary_four_parts.sse": set(),
    # three items overlap? no: mcp_list_tools is closed before the reasoning starts.
    "openai_o4mini_mcp_list_tools_mcp_call.sse": {("responses.reasoning-hidden", "INFO")},
}
REQUEST = {"model": "gpt-5", "input": "hello"}


def manifest() -> dict[str, dict[str, str]]:
    with (GOLDEN / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        rows = csv.DictReader(fh, delimiter="\t")
        return {Path(r["file"]).name: r for r in rows if r["file"].startswith("responses/")}


def validate(body: bytes, piece: int = 0) -> ResponsesModel:
    """The model with every check, fed the body whole or in ``piece``-byte reads."""
    model = model_for("responses", REQUEST)
    assert isinstance(model, ResponsesModel)
    if piece:
        decoder = SSEDecoder()
        for i in range(0, len(body), piece):
            model.feed(decoder.feed(body[i : i + piece], i))
        model.feed(decoder.finish())
    else:
        model.feed(decode_body(body)[0])
    model.finish()
    return model


def test_every_golden_file_has_expectations_and_a_manifest_row() -> None:
    on_disk = {p.name for p in (GOLDEN / "responses").glob("*.sse")}
    assert on_disk == set(EXPECTED)
    rows = manifest()
    assert set(rows) == on_disk
    assert all(rows[name]["api"] == "responses" for name in on_disk)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_stream_is_flagged_for_what_it_is(name: str) -> None:
    model = validate((GOLDEN / "responses" / name).read_bytes())
    assert model.crashes == []
    found = {(f.rule, f.level) for f in model.findings}
    assert found == EXPECTED[name], [(f.rule, f.message) for f in model.findings]
    assert not any(level == "MUST" for _, level in found)
    # the stream ended by itself, with a terminal event (or the error event and failed)
    assert model.terminal in ("response.completed", "response.failed")
    assert model.end_t is not None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_one_byte_reads_validate_the_same(name: str) -> None:
    body = (GOLDEN / "responses" / name).read_bytes()
    whole, bytewise = validate(body), validate(body, piece=1)
    assert [(f.rule, f.message, f.event) for f in bytewise.findings] == [
        (f.rule, f.message, f.event) for f in whole.findings
    ]
    assert bytewise.checked == whole.checked
    assert bytewise.message() == whole.message()
    assert len(bytewise.content_t) == len(whole.content_t) > 0 or whole.error_text


def _capture(name: str) -> tuple[Capture, ResponsesModel]:
    live = model_for("responses", REQUEST)
    assert isinstance(live, ResponsesModel)
    cap = load_transcript(GOLDEN / "responses" / name, on_events=live.feed, keeper=EventKeeper())
    cap.status = 200
    return cap, live


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_official_sdk_rebuilds_what_the_model_rebuilds(name: str) -> None:
    """``client.responses.stream(...)`` over the recorded bytes: its final response equals
    the model's accumulation (the error stream: the SDK raises the error as APIError, which
    is its right reading of a well-formed error event)."""
    cap, live = _capture(name)
    findings, checked, _, crashes = check_capture("responses", cap, REQUEST, model=live, sdk=True)
    assert crashes == []
    assert "sdk.responses-accumulate" in checked
    assert [f for f in findings if f.rule == "sdk.responses-accumulate"] == []


def test_the_models_accumulation_holds_the_streamed_items() -> None:
    model = validate(
        (GOLDEN / "responses" / "openai_gpt55_commentary_text_then_function_call.sse").read_bytes()
    )
    output = model.message()["output"]
    assert [item["type"] for item in output] == ["reasoning", "message", "function_call"]
    assert output[1]["content"][0]["text"]
    assert output[2]["arguments"].startswith("{") and output[2]["name"]
    assert model.message()["status"] == "completed"
    # 26 of its output tokens were hidden reasoning: TPOT counts only what streamed
    usage = model.usage
    assert usage is not None and usage["output_tokens_details"]["reasoning_tokens"] == 26
    hidden = usage["output_tokens"] - 26
    assert model.output_tokens == (hidden, "usage less hidden reasoning")
    assert model.visible_t is not None


# -- real-world variants of a genuine stream: each flagged for exactly what it is ----------------


def _variant(edit) -> set[tuple[str, str]]:
    body = (
        GOLDEN / "responses" / "openai_gpt4omini_text_logprobs_rounded_in_done.sse"
    ).read_bytes()
    model = validate(edit(body))
    assert model.crashes == []
    return {(f.rule, f.level) for f in model.findings}


def test_data_only_events_warn_once() -> None:
    """transformers serve and OpenRouter send no event: lines: the SDK reads the JSON type."""
    lines = [ln for ln in (b"\n".join(_lines())).split(b"\n") if not ln.startswith(b"event:")]
    assert _variant(lambda body: b"\n".join(lines)) == {("responses.event-name", "SHOULD")}


def _lines() -> list[bytes]:
    body = (
        GOLDEN / "responses" / "openai_gpt4omini_text_logprobs_rounded_in_done.sse"
    ).read_bytes()
    return body.split(b"\n")


def test_data_before_event_lines_is_told_once(tmp_path: Path) -> None:
    """Amazon Bedrock writes every event's data: line before its event: line: legal SSE."""
    golden = GOLDEN / "responses" / "openai_gpt4omini_text_logprobs_rounded_in_done.sse"
    swapped = tmp_path / "bedrock_order.sse"
    events = golden.read_bytes().split(b"\n\n")
    swapped.write_bytes(
        b"\n\n".join(b"\n".join(reversed(e.split(b"\n"))) for e in events if e) + b"\n\n"
    )

    def found(path: Path) -> set[tuple[str, str, int | None]]:
        findings, _, crashes = check_file("responses", path)
        assert crashes == []
        return {(f.rule, f.level, f.event) for f in findings}

    assert found(swapped) - found(golden) == {("responses.field-order", "INFO", 0)}
    assert found(golden) <= found(swapped)


def _final_item_edited(edit) -> set[tuple[str, str]]:
    """The function-call recording with its final output item edited (``edit(item)``)."""
    golden = GOLDEN / "responses" / "openai_gpt5_hidden_reasoning_then_function_call.sse"
    events = golden.read_bytes().rstrip(b"\n").split(b"\n\n")
    name, _, data = events[-1].partition(b"\ndata: ")
    final = orjson.loads(data)
    final["response"]["output"] = [edit(o) for o in final["response"]["output"]]
    body = b"\n\n".join([*events[:-1], name + b"\ndata: " + orjson.dumps(final)]) + b"\n\n"
    found = {(f.rule, f.level) for f in validate(body).findings}
    return found - EXPECTED[golden.name]


def _call(edit):
    return lambda o: edit(o) if o["type"] == "function_call" else o


@pytest.mark.parametrize(
    ("edit", "found"),
    [
        (_call(lambda o: {**o, "call_id": "call_other"}), {("responses.final-output", "MUST")}),
        (_call(lambda o: {**o, "name": "get_time"}), {("responses.final-output", "MUST")}),
        (_call(lambda o: {**o, "status": "in_progress"}), {("responses.final-output", "SHOULD")}),
        (_call(lambda o: {**o, "namespace": "tools"}), {("responses.final-output", "SHOULD")}),
        # reasoning re-encrypted in the final output (as OpenAI does): nothing to tell
        (lambda o: {**o, "encrypted_content": "gAAAAB"} if o["type"] == "reasoning" else o,
         set()),
    ],
    ids=["call_id", "name", "status", "extra-key", "re-encrypted"],
)  # fmt: skip
def test_the_final_item_must_hold_what_its_done_event_held(edit, found) -> None:
    assert _final_item_edited(edit) == found


def test_done_after_the_terminal_event_warns() -> None:
    assert _variant(lambda body: body + b"data: [DONE]\n\n") == {("responses.no-done", "SHOULD")}


def test_an_event_after_the_terminal_event_fails() -> None:
    def edit(body: bytes) -> bytes:
        first = body.split(b"\n\n")[0]
        return body + first + b"\n\n"

    assert ("responses.terminal-last", "MUST") in _variant(edit)


def test_a_cut_stream_misses_its_terminal_event() -> None:
    def edit(body: bytes) -> bytes:
        events = body.split(b"\n\n")
        return b"\n\n".join(events[:-3]) + b"\n\n"

    found = _variant(edit)
    assert ("responses.terminal", "MUST") in found


@pytest.mark.parametrize(("limit", "flagged"), [(10_000, False), (5, True)])
def test_a_completed_answer_is_owed_a_cut_only_past_its_limit(limit: int, flagged: bool) -> None:
    """The max-output-tokens scenario expects response.incomplete; an answer that fit in the
    budget (a mock's short canned reply) had nothing to cut."""
    body = (
        GOLDEN / "responses" / "openai_gpt4omini_text_logprobs_rounded_in_done.sse"
    ).read_bytes()
    model = model_for(
        "responses", {**REQUEST, "max_output_tokens": limit}, frozenset({"responses.incomplete"})
    )
    model.feed(decode_body(body)[0])
    model.finish()
    assert ("responses.incomplete" in {f.rule for f in model.findings}) is flagged
    assert "responses.incomplete" in model.checked
