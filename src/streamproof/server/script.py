"""Scripted replies: the reference server as a mock LLM for a user's own tests.

``streamproof serve --script FILE`` (JSON or YAML) maps a match on the conversation to a
reply; the first rule that matches answers, a request no rule matches gets the usual
generated answer. A rule::

    - match:                        # every key optional; all given must hold
        contains: "weather"         # substring of the last turn's text: the user's
                                    # message, or after tool calls the results returned
        regex: "(?i)forecast for (\\w+)"
        tools: [get_weather]        # these tools are offered in the request
        tool_result: false          # the last turn returns a tool result (or not)
        api: openai                 # openai or anthropic
      reply:                        # text and/or tool_calls
        reasoning: "Checking the weather tool."  # thinking block / reasoning_content
        text: "Let me look that up."
        tool_calls: [{name: get_weather, arguments: {city: Paris}}]
        usage: {input_tokens: 12, output_tokens: 30}
        timing: "ttft_ms=150,gap_ms=10"  # as /timing/...
        faults: [drop-done]         # any of `streamproof serve --list-faults`

The reply is streamed (or returned whole, with ``stream: false``) in the API's own shape,
with the request's ``max_tokens``, ``stop`` and ``n`` applied as to a generated answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsonschema
import yaml

from .endpoint import Turn
from .faults import Fault, find_fault
from .timing import Timing, TimingError

__all__ = ["Script", "ScriptError", "Scripted", "ScriptedCall"]

_SCHEMA: Final = {
    "type": "object",
    "required": ["rules"],
    "additionalProperties": False,
    "properties": {"rules": {"type": "array", "items": {"$ref": "#/$defs/rule"}}},
    "$defs": {
        "rule": {
            "type": "object",
            "required": ["reply"],
            "additionalProperties": False,
            "properties": {"match": {"$ref": "#/$defs/match"}, "reply": {"$ref": "#/$defs/reply"}},
        },
        "match": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "contains": {"type": "string"},
                "regex": {"type": "string"},
                "tools": {"type": "array", "items": {"type": "string"}},
                "tool_result": {"type": "boolean"},
                "api": {"enum": ["openai", "anthropic", "responses"]},
            },
        },
        "reply": {
            "type": "object",
            "additionalProperties": False,
            "anyOf": [{"required": ["text"]}, {"required": ["tool_calls"]}],
            "properties": {
                "text": {"type": "string"},
                "reasoning": {"type": "string"},
                "tool_calls": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "arguments": {"type": "object"},
                        },
                    },
                },
                "usage": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "input_tokens": {"type": "integer", "minimum": 0},
                        "output_tokens": {"type": "integer", "minimum": 0},
                    },
                },
                "timing": {"type": "string"},
                "faults": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
}


class ScriptError(ValueError):
    """A script file that cannot be used; the message is one line naming the place."""


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Scripted:
    """A scripted reply; ``input_tokens`` / ``output_tokens`` None: counted as usual."""

    text: str | None = None
    reasoning: str | None = None
    tool_calls: tuple[ScriptedCall, ...] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    timing: str | None = None
    faults: tuple[Fault, ...] = ()  # resolved when the script is loaded


@dataclass(frozen=True, slots=True)
class _Rule:
    contains: str | None
    regex: re.Pattern[str] | None
    tools: frozenset[str]
    tool_result: bool | None
    api: str | None
    reply: Scripted

    def matches(self, api: str, turn: Turn) -> bool:
        return (
            (self.api is None or self.api == api)
            and (self.contains is None or self.contains in turn.text)
            and (self.regex is None or self.regex.search(turn.text) is not None)
            and self.tools <= turn.tools
            and (self.tool_result is None or self.tool_result == turn.tool_result)
        )


class Script:
    """Rules in order; :meth:`reply_for` gives the first match's reply."""

    def __init__(self, rules: tuple[_Rule, ...]) -> None:
        self._rules = rules

    def __len__(self) -> int:
        return len(self._rules)

    @classmethod
    def load(cls, path: str | Path) -> Script:
        """Read and check a script file (``.yaml``/``.yml``: YAML, anything else: JSON)."""
        path = Path(path)
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScriptError(f"{path}: cannot read it ({exc})") from None
        is_yaml = path.suffix.lower() in (".yaml", ".yml")
        try:
            data = yaml.safe_load(text) if is_yaml else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            first = " ".join(str(exc).split())
            raise ScriptError(
                f"{path}: not valid {'YAML' if is_yaml else 'JSON'}: {first}"
            ) from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Any, source: str = "script") -> Script:
        """Check a script already loaded as data (a list of rules, or ``{"rules": [...]}``)."""
        if isinstance(data, list):
            data = {"rules": data}
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(_SCHEMA).iter_errors(data)
        )
        if error is not None:
            where = error.json_path.removeprefix("$.").removeprefix("$") or "the top level"
            raise ScriptError(f"{source}: {where}: {_plain(error)}")
        return cls(
            tuple(_rule(raw, f"{source}: rules[{i}]") for i, raw in enumerate(data["rules"]))
        )

    def reply_for(self, api: str, turn: Turn) -> Scripted | None:
        return next((r.reply for r in self._rules if r.matches(api, turn)), None)


def _plain(error: jsonschema.ValidationError) -> str:
    if error.validator == "anyOf" and error.json_path.endswith("reply"):
        return "a reply needs 'text' or 'tool_calls'"
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key")
    return error.message


def _rule(raw: Mapping[str, Any], where: str) -> _Rule:
    match = raw.get("match") or {}
    reply = raw["reply"]
    try:
        regex = re.compile(match["regex"]) if "regex" in match else None
    except re.error as exc:
        raise ScriptError(f"{where}.match.regex: not a valid regular expression: {exc}") from None
    faults = []
    for name in reply.get("faults") or ():
        try:
            faults.append(find_fault(name))
        except (KeyError, ValueError):
            raise ScriptError(
                f"{where}.reply.faults: unknown fault {name!r} "
                "(see streamproof serve --list-faults)"
            ) from None
    timing = reply.get("timing")
    if timing is not None:
        try:
            Timing.parse(timing, Timing())
        except TimingError as exc:
            raise ScriptError(f"{where}.reply.timing: {exc}") from None
    usage = reply.get("usage") or {}
    calls = tuple(
        ScriptedCall(c["name"], c.get("arguments") or {}) for c in reply.get("tool_calls") or ()
    )
    return _Rule(
        contains=match.get("contains"),
        regex=regex,
        tools=frozenset(match.get("tools") or ()),
        tool_result=match.get("tool_result"),
        api=match.get("api"),
        reply=Scripted(
            reply.get("text"),
            reply.get("reasoning"),
            calls,
            usage.get("input_tokens"),
            usage.get("output_tokens"),
            timing,
            tuple(faults),
        ),
    )
