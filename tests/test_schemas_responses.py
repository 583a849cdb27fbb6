"""The JSON Schemas of the OpenAI Responses stream events (schemas/responses/).

One file per event type of the official SDK's ``ResponseStreamEvent`` union, named after the
type (``response.`` dropped, dots to underscores; ``error`` stays ``error``), plus the Response
object, the output item and the JSON error body of a refused request. Checked here:

- every event of every recorded stream in tests/golden/responses/ (verbatim copies of the
  shared golden set, see MANIFEST.tsv) is valid against the schema of its type, for both
  validators the suite uses (jsonschema-rs ``is_valid`` and jsonschema ``explain``);
- the event types no recording shows are valid in the SDK's own shape (each example is first
  parsed by the SDK's pydantic types, so it is the SDK's shape, not the schema's);
- every file is a valid draft 2020-12 schema, self-contained, with the ``$id`` of its path;
- the set of files is exactly the SDK's union plus the three extra files;
- the documented breakages fail with a readable explanation.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent

from streamproof.schemas import schema
from streamproof.sse import SSEDecoder

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas" / "responses"
GOLDEN = Path(__file__).parent / "golden" / "responses"
GOLDEN_FILES = sorted(p.name for p in GOLDEN.glob("*.sse"))
ID_BASE = "https://streamproof.dev/schemas/responses/"
EXTRA_FILES = {"response", "output_item", "error_body"}


def schema_name(event_type: str) -> str:
    """``response.output_text.delta`` -> ``output_text_delta``; ``error`` stays ``error``."""
    return event_type.removeprefix("response.").replace(".", "_")


def sdk_event_classes() -> dict[str, type[pydantic.BaseModel]]:
    """The ``type`` literal of every member of the SDK's ResponseStreamEvent union (an
    Annotated Union of pydantic models), with its class."""
    found: dict[str, type[pydantic.BaseModel]] = {}

    def walk(tp: Any) -> None:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            walk(typing.get_args(tp)[0])
        elif origin is typing.Union:
            for member in typing.get_args(tp):
                walk(member)
        else:
            (literal,) = typing.get_args(tp.model_fields["type"].annotation)
            found[literal] = tp

    walk(ResponseStreamEvent)
    return found


def sdk_event_types() -> set[str]:
    return set(sdk_event_classes())


def golden_events(name: str) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    events = decoder.feed((GOLDEN / name).read_bytes(), 0)
    events += decoder.finish()
    assert decoder.findings == [], decoder.findings
    out = []
    for event in events:
        obj = json.loads(event.data)
        assert event.name in (None, obj["type"]), (event.name, obj["type"])
        out.append(obj)
    return out


def problems(name: str, instance: Any) -> list[str]:
    """What is wrong with ``instance`` by ``schemas/responses/{name}.json``: both validators
    must agree that nothing is."""
    shape = schema("responses", name)
    found = []
    if not shape.is_valid(instance):
        found.append(f"{name}: jsonschema-rs says invalid")
    explained = shape.explain(instance)
    if explained:
        found.append(f"{name}: {explained}")
    return found


# -- recorded streams ---------------------------------------------------------------------------


def test_golden_copies_present() -> None:
    assert len(GOLDEN_FILES) >= 11, GOLDEN_FILES


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_golden_events_valid(name: str) -> None:
    events = golden_events(name)
    assert events
    failures = []
    for i, obj in enumerate(events):
        kind = schema_name(obj["type"])
        assert (SCHEMAS / f"{kind}.json").is_file(), f"no schema for {obj['type']}"
        failures += [f"event {i}: {p}" for p in problems(kind, obj)]
        # the embedded objects also match the stand-alone schemas
        if "response" in obj:
            failures += [f"event {i}: {p}" for p in problems("response", obj["response"])]
        if "item" in obj:
            failures += [f"event {i}: {p}" for p in problems("output_item", obj["item"])]
        for item in obj.get("response", {}).get("output", []):
            failures += [f"event {i}: {p}" for p in problems("output_item", item)]
    assert failures == []


def test_golden_shows_both_optional_key_eras() -> None:
    """The tolerances are exercised by real data: a stream without sequence_number and
    logprobs (2025-03) and streams with obfuscation and logprobs."""
    events = [obj for name in GOLDEN_FILES for obj in golden_events(name)]
    assert any("sequence_number" not in obj for obj in events)
    assert any("sequence_number" in obj for obj in events)
    assert any("obfuscation" in obj for obj in events)
    assert any(obj["type"] == "error" and "error" in obj for obj in events)
    deltas = [obj for obj in events if obj["type"] == "response.output_text.delta"]
    assert any(obj.get("logprobs") for obj in deltas)


# -- the SDK's shape of the events no recording shows ------------------------------------------

RESPONSE: dict[str, Any] = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1760000000,
    "model": "gpt-5",
    "status": "in_progress",
    "output": [],
    "usage": None,
    "error": None,
    "incomplete_details": None,
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
}
# cache_write_tokens: required by the SDK 3.6x type, absent from all but the 2026 recordings
# (the SDK builds its models unchecked, so the schema leaves it optional)
USAGE = {
    "input_tokens": 10,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 16,
    "output_tokens_details": {"reasoning_tokens": 16},
    "total_tokens": 26,
}
ITEM = {"item_id": "it_1", "output_index": 0, "sequence_number": 5}
PART = {**ITEM, "content_index": 0}

SDK_EXAMPLES: list[dict[str, Any]] = [
    {"type": "response.queued", "sequence_number": 1, "response": {**RESPONSE, "status": "queued"}},
    {
        "type": "response.incomplete",
        "sequence_number": 9,
        "response": {
            **RESPONSE,
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "usage": USAGE,
            "output": [
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [],
                    "encrypted_content": "gAAA",
                    "status": "incomplete",
                }
            ],
        },
    },
    {
        "type": "response.content_part.added",
        **PART,
        "part": {"type": "refusal", "refusal": ""},
    },
    {"type": "response.refusal.delta", **PART, "delta": "I can't"},
    {"type": "response.refusal.done", **PART, "refusal": "I can't help with that."},
    {
        "type": "response.output_item.added",
        "output_index": 0,
        "sequence_number": 2,
        "item": {
            "type": "custom_tool_call",
            "id": "ctc_1",
            "call_id": "call_1",
            "name": "grammar",
            "input": "",
        },
    },
    {"type": "response.custom_tool_call_input.delta", **ITEM, "delta": "SELECT"},
    {"type": "response.custom_tool_call_input.done", **ITEM, "input": "SELECT 1"},
    {"type": "response.image_generation_call.in_progress", **ITEM},
    {"type": "response.image_generation_call.generating", **ITEM},
    {
        "type": "response.image_generation_call.partial_image",
        **ITEM,
        "partial_image_b64": "iVBORw0KGgo=",
        "partial_image_index": 0,
        "size": "1024x1024",
    },
    {"type": "response.image_generation_call.completed", **ITEM},
    {"type": "response.mcp_call.failed", **ITEM},
    {"type": "response.mcp_list_tools.failed", **ITEM},
    {"type": "response.compaction.compacting", **ITEM},
    {"type": "response.audio.delta", "sequence_number": 3, "delta": "UklGRg=="},
    {"type": "response.audio.done", "sequence_number": 4},
    {"type": "response.audio.transcript.delta", "sequence_number": 5, "delta": "Hel"},
    {"type": "response.audio.transcript.done", "sequence_number": 6},
    {
        "type": "response.shell_call_command.added",
        "output_index": 0,
        "command_index": 0,
        "command": "",
        "sequence_number": 3,
    },
    {
        "type": "response.shell_call_command.delta",
        "output_index": 0,
        "command_index": 0,
        "delta": "ls -l",
        "obfuscation": "",
        "sequence_number": 4,
    },
    {
        "type": "response.shell_call_command.done",
        "output_index": 0,
        "command_index": 0,
        "command": "ls -l",
        "sequence_number": 5,
    },
    {
        "type": "response.shell_call_output_content.delta",
        **ITEM,
        "command_index": 0,
        "delta": {"stdout": "total 0\n"},
    },
    {
        "type": "response.shell_call_output_content.done",
        **ITEM,
        "command_index": 0,
        "output": [
            {"outcome": {"type": "exit", "exit_code": 0}, "stdout": "total 0\n", "stderr": ""}
        ],
    },
    # the documented flat error event (the recording has the nested one)
    {
        "type": "error",
        "sequence_number": 2,
        "code": "server_error",
        "message": "The server had an error.",
        "param": None,
    },
]


@pytest.mark.parametrize("example", SDK_EXAMPLES, ids=lambda e: schema_name(e["type"]))
def test_sdk_shaped_examples_valid(example: dict[str, Any]) -> None:
    sdk_class = sdk_event_classes()[example["type"]]
    sdk_class.model_validate(example)  # the SDK's shape, strictly
    assert problems(schema_name(example["type"]), example) == []


def test_examples_and_recordings_cover_the_union() -> None:
    seen = {obj["type"] for name in GOLDEN_FILES for obj in golden_events(name)}
    seen |= {example["type"] for example in SDK_EXAMPLES}
    assert sdk_event_types() - seen == set()


# -- the files ----------------------------------------------------------------------------------

SCHEMA_FILES = sorted(p.stem for p in SCHEMAS.glob("*.json"))


def local_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in local_refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in local_refs(v)]
    return []


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_file_is_draft_2020_12(name: str) -> None:
    raw = json.loads((SCHEMAS / f"{name}.json").read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(raw)
    assert raw["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert raw["$id"] == f"{ID_BASE}{name}.json"
    assert raw["title"] and raw["description"]
    defs = raw.get("$defs", {})
    for ref in local_refs(raw):  # self-contained: loaded one file at a time
        assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in defs, ref
    assert schema("responses", name).raw == raw  # both validators compile it


def test_schema_files_are_the_sdk_union() -> None:
    types = sdk_event_types()
    assert len(types) >= 50
    assert set(SCHEMA_FILES) == {schema_name(t) for t in types} | EXTRA_FILES
    for event_type in types:
        raw = schema("responses", schema_name(event_type)).raw
        assert raw["properties"]["type"] == {"const": event_type}
        assert "type" in raw["required"]


def test_error_body() -> None:
    body = {
        "error": {
            "message": "Invalid 'temperature': decimal below minimum value.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "decimal_below_min_value",
        }
    }
    assert problems("error_body", body) == []
    del body["error"]["param"]
    assert "'param' is a required property" in schema("responses", "error_body").explain(body)


# -- what must fail -----------------------------------------------------------------------------


def _completed_with_string_tokens() -> dict[str, Any]:
    usage = {**USAGE, "output_tokens": "16"}
    response = {**RESPONSE, "status": "completed", "usage": usage}
    return {"type": "response.completed", "sequence_number": 9, "response": response}


NEGATIVE: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "created without response.id",
        "created",
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": {k: v for k, v in RESPONSE.items() if k != "id"},
        },
        "response: 'id' is a required property",
    ),
    (
        "numeric output_text delta",
        "output_text_delta",
        {"type": "response.output_text.delta", **PART, "delta": 5, "logprobs": []},
        "delta: 5 is not of type 'string'",
    ),
    (
        "function_call added without call_id",
        "output_item_added",
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "sequence_number": 2,
            "item": {"type": "function_call", "id": "fc_1", "name": "f", "arguments": ""},
        },
        "item: 'call_id' is a required property",
    ),
    (
        "completed with a string output_tokens",
        "completed",
        _completed_with_string_tokens(),
        "response/usage/output_tokens: '16' is not of type 'integer'",
    ),
    (
        "error event with no message",
        "error",
        {"type": "error", "sequence_number": 2, "code": "server_error", "param": None},
        "(root): 'message' is a required property",
    ),
    (
        "nested error event with no message",
        "error",
        {"type": "error", "sequence_number": 2, "error": {"type": "server_error"}},
        "error: 'message' is a required property",
    ),
    (
        "output_item.added at output_index -1",
        "output_item_added",
        {
            "type": "response.output_item.added",
            "output_index": -1,
            "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []},
        },
        "output_index: -1 is less than the minimum of 0",
    ),
    (
        "negative sequence_number",
        "output_text_delta",
        {"type": "response.output_text.delta", **PART, "delta": "x", "sequence_number": -1},
        "sequence_number: -1 is less than the minimum of 0",
    ),
    (
        "created with a terminal status",
        "created",
        {"type": "response.created", "response": {**RESPONSE, "status": "completed"}},
        "response/status: 'completed' is not one of ['in_progress', 'queued']",
    ),
    (
        "failed with a null error",
        "failed",
        {"type": "response.failed", "response": {**RESPONSE, "status": "failed"}},
        "response/error: None is not of type 'object'",
    ),
]


@pytest.mark.parametrize(
    ("name", "instance", "expected"),
    [case[1:] for case in NEGATIVE],
    ids=[case[0] for case in NEGATIVE],
)
def test_breakage_fails_readably(name: str, instance: dict[str, Any], expected: str) -> None:
    shape = schema("responses", name)
    assert not shape.is_valid(instance)
    explained = shape.explain(instance)
    assert explained.startswith(expected), explained


def test_tolerances_pass() -> None:
    """What real streams do and the schemas must not fail: no sequence_number, no logprobs,
    empty obfuscation, extra keys, a null usage on failed."""
    delta = {"type": "response.output_text.delta", **PART, "delta": "x", "obfuscation": ""}
    del delta["sequence_number"]
    delta["future_key"] = {"anything": [1, 2]}
    assert problems("output_text_delta", delta) == []
    failed = {
        "type": "response.failed",
        "response": {
            **RESPONSE,
            "status": "failed",
            "error": {"code": "insufficient_quota", "message": "You exceeded your quota."},
            "usage": None,
        },
    }
    assert problems("failed", failed) == []
