"""The requests the suite sends, as data: one scenario per behaviour worth observing.

A scenario names the API, how to build the request, which scenario-only rules it enforces
(``expect``: e.g. a ``max_tokens`` cut must finish with ``length``) and which rules it can
observe at all (``rules``). A rule is reported per (rule, scenario); a scenario the endpoint
cannot serve is skipped with the reason, never passed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .rules import catalogue

__all__ = ["SCENARIOS", "Scenario", "scenarios_for"]

Kind = Literal["stream", "json", "error"]

UNKNOWN_MODEL = "streamproof-no-such-model"
PROMPT_LONG = "Write a short story about a lighthouse keeper, at least three paragraphs long."
PROMPT_SHORT = "Say hello in one short sentence."
PROMPT_COUNT = "Count from 1 to 20, separated by single spaces, and nothing else."
PROMPT_TOOL = "What is the weather in Paris? Use the get_weather tool."
PROMPT_TOOLS = (
    "What is the weather in Paris and what time is it in Tokyo? "
    "Call get_weather and get_time, both at once."
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current local time in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@dataclass(frozen=True)
class Scenario:
    """One request and what it can show.

    ``build(model)`` returns the JSON body (or raw bytes for a malformed body); ``auth`` is
    ``"key"`` (the configured key), ``"none"`` or ``"bad"``; ``expect_status`` lists the
    acceptable statuses of an error scenario. ``accepted``: for an error scenario whose
    request a real endpoint may legitimately serve (no key: the endpoint checks none; an
    unknown model: it serves any name), the rule a 2xx answer reports instead of failing
    the error rules, which are then skipped with the reason. ``resume`` (Responses only):
    the request's stream is read to get its id, and what is judged is that stream fetched
    again after its ``response.created`` (``GET /responses/{id}?stream=true&starting_after=N``).
    """

    name: str
    api: str
    kind: Kind
    title: str
    build: Callable[[str], Any]
    expect: frozenset[str] = frozenset()
    auth: Literal["key", "none", "bad"] = "key"
    expect_status: tuple[int, ...] = ()
    needs: str = ""  # what the endpoint must support, for the skip reason
    accepted: str = ""
    sdk: bool = True  # replay the captured body through the official SDK
    resume: bool = False  # judge the stream fetched again after its response.created

    @property
    def id(self) -> str:
        return f"{self.api}:{self.name}"

    @property
    def rules(self) -> tuple[str, ...]:
        """The rules it can observe: its API's whose catalogue entry names its kind or its
        name in ``seen_in`` (the catalogue says where each rule is judged)."""
        return tuple(
            r.id
            for r in catalogue().values()
            if self.api in r.apis and (self.kind in r.seen_in or self.name in r.seen_in)
        )


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def _openai() -> list[Scenario]:
    base = {"stream": True}
    return [
        Scenario(
            "plain",
            "openai",
            "stream",
            "plain text",
            lambda m: {"model": m, "messages": _messages(PROMPT_LONG), **base},
        ),
        Scenario(
            "max-tokens",
            "openai",
            "stream",
            "max_tokens cut (finish_reason length)",
            lambda m: {
                "model": m,
                "messages": _messages(PROMPT_LONG),
                "max_tokens": 5,
                "stream_options": {"include_usage": True},
                **base,
            },
            expect=frozenset({"openai.finish-length"}),
        ),
        Scenario(
            "stop",
            "openai",
            "stream",
            "stop sequence",
            lambda m: {"model": m, "messages": _messages(PROMPT_COUNT), "stop": [" 7"], **base},
        ),
        Scenario(
            "tool",
            "openai",
            "stream",
            "forced tool call",
            lambda m: {
                "model": m,
                "messages": _messages(PROMPT_TOOL),
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                **base,
            },
            needs="tools",
        ),
        Scenario(
            "parallel-tools",
            "openai",
            "stream",
            "parallel tool calls",
            lambda m: {
                "model": m,
                "messages": _messages(PROMPT_TOOLS),
                "tools": [WEATHER_TOOL, TIME_TOOL],
                "tool_choice": "required",
                "parallel_tool_calls": True,
                **base,
            },
            needs="parallel tool calls",
        ),
        Scenario(
            "usage",
            "openai",
            "stream",
            "stream_options.include_usage",
            lambda m: {
                "model": m,
                "messages": _messages(PROMPT_SHORT),
                "stream_options": {"include_usage": True},
                **base,
            },
        ),
        Scenario(
            "n2",
            "openai",
            "stream",
            "n=2 choices",
            lambda m: {"model": m, "messages": _messages(PROMPT_SHORT), "n": 2, **base},
            needs="n > 1",
        ),
        Scenario(
            "non-stream",
            "openai",
            "json",
            "stream: false answer",
            lambda m: {"model": m, "messages": _messages(PROMPT_SHORT)},
            sdk=False,
        ),
        *_error_scenarios("openai", {"model": None, "messages": _messages(PROMPT_SHORT), **base}),
    ]


_FIRST_KEY = {"openai": b"messages", "anthropic": b"messages", "responses": b"input"}


def _error_scenarios(api: str, body: dict[str, Any]) -> list[Scenario]:

    def valid(m: str) -> dict[str, Any]:
        return {**body, "model": m}

    return [
        Scenario(
            "error-no-key",
            api,
            "error",
            "no API key",
            valid,
            auth="none",
            expect_status=(401,),
            sdk=False,
            accepted="http.auth-required",
        ),
        Scenario(
            "error-bad-key",
            api,
            "error",
            "invalid API key",
            valid,
            auth="bad",
            expect_status=(401,),
            sdk=False,
            accepted="http.auth-required",
        ),
        Scenario(
            "error-malformed",
            api,
            "error",
            "malformed JSON body",
            lambda m: b'{"model": "' + m.encode() + b'", "' + _FIRST_KEY[api] + b'": [',
            expect_status=(400, 422),
            sdk=False,
        ),
        Scenario(
            "error-unknown-model",
            api,
            "error",
            "unknown model",
            lambda m: {**body, "model": UNKNOWN_MODEL},
            expect_status=(404, 400),
            sdk=False,
            accepted="http.unknown-model",
        ),
    ]


ANTHROPIC_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": WEATHER_TOOL["function"]["parameters"],
}


def _anthropic() -> list[Scenario]:
    def body(m: str, prompt: str, max_tokens: int = 256, **extra: Any) -> dict[str, Any]:
        return {
            "model": m,
            "max_tokens": max_tokens,
            "messages": _messages(prompt),
            "stream": True,
            **extra,
        }

    return [
        Scenario(
            "plain",
            "anthropic",
            "stream",
            "plain text",
            lambda m: body(m, PROMPT_LONG),
        ),
        Scenario(
            "max-tokens",
            "anthropic",
            "stream",
            "max_tokens cut (stop_reason max_tokens)",
            lambda m: body(m, PROMPT_LONG, max_tokens=5),
            expect=frozenset({"anthropic.stop-max-tokens"}),
        ),
        Scenario(
            "stop-sequence",
            "anthropic",
            "stream",
            "stop sequence (stop_reason stop_sequence)",
            lambda m: body(m, PROMPT_COUNT, stop_sequences=[" 7"]),
        ),
        Scenario(
            "tool",
            "anthropic",
            "stream",
            "forced tool use",
            lambda m: body(
                m,
                PROMPT_TOOL,
                tools=[ANTHROPIC_WEATHER_TOOL],
                tool_choice={"type": "tool", "name": "get_weather"},
            ),
            needs="tools",
        ),
        Scenario(
            "thinking",
            "anthropic",
            "stream",
            "extended thinking",
            lambda m: body(
                m,
                PROMPT_SHORT,
                max_tokens=2048,
                thinking={"type": "enabled", "budget_tokens": 1024},
            ),
            needs="extended thinking",
        ),
        Scenario(
            "non-stream",
            "anthropic",
            "json",
            "stream: false answer",
            lambda m: {k: v for k, v in body(m, PROMPT_SHORT).items() if k != "stream"},
            sdk=False,
        ),
        *_error_scenarios(
            "anthropic",
            {"model": None, "max_tokens": 64, "messages": _messages(PROMPT_SHORT), "stream": True},
        ),
        Scenario(
            "error-no-max-tokens",
            "anthropic",
            "error",
            "missing max_tokens",
            lambda m: {"model": m, "messages": _messages(PROMPT_SHORT), "stream": True},
            expect_status=(400,),
            sdk=False,
        ),
    ]


def _flat(tool: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions function tool in the Responses API's flat form."""
    return {"type": "function", **tool["function"]}


def _responses() -> list[Scenario]:
    def body(m: str, prompt: str, **extra: Any) -> dict[str, Any]:
        return {"model": m, "input": prompt, "stream": True, **extra}

    def background(m: str) -> dict[str, Any]:
        return body(m, PROMPT_SHORT, background=True, store=True)

    return [
        Scenario("plain", "responses", "stream", "plain text", lambda m: body(m, PROMPT_LONG)),
        Scenario(
            "max-output-tokens",
            "responses",
            "stream",
            "max_output_tokens cut (response.incomplete)",
            lambda m: body(m, PROMPT_LONG, max_output_tokens=16),
            expect=frozenset({"responses.incomplete"}),
        ),
        Scenario(
            "tool",
            "responses",
            "stream",
            "forced function call",
            lambda m: body(
                m,
                PROMPT_TOOL,
                tools=[_flat(WEATHER_TOOL)],
                tool_choice={"type": "function", "name": "get_weather"},
            ),
            needs="tools",
        ),
        Scenario(
            "parallel-tools",
            "responses",
            "stream",
            "parallel function calls",
            lambda m: body(
                m,
                PROMPT_TOOLS,
                tools=[_flat(WEATHER_TOOL), _flat(TIME_TOOL)],
                tool_choice="required",
                parallel_tool_calls=True,
            ),
            needs="parallel tool calls",
        ),
        Scenario(
            "reasoning",
            "responses",
            "stream",
            "reasoning with a summary",
            lambda m: body(m, PROMPT_SHORT, reasoning={"effort": "low", "summary": "auto"}),
            needs="reasoning",
        ),
        Scenario(
            "background",
            "responses",
            "stream",
            "background mode (queued first)",
            background,
            needs="background mode",
        ),
        Scenario(
            "resume",
            "responses",
            "stream",
            "a background stream fetched again after response.created",
            background,
            needs="background mode",
            sdk=False,
            resume=True,
        ),
        Scenario(
            "non-stream",
            "responses",
            "json",
            "stream: false answer",
            lambda m: {"model": m, "input": PROMPT_SHORT},
            sdk=False,
        ),
        *_error_scenarios("responses", {"model": None, "input": PROMPT_SHORT, "stream": True}),
        Scenario(
            "error-bad-temperature",
            "responses",
            "error",
            "temperature below its minimum",
            lambda m: body(m, PROMPT_SHORT, temperature=-1),
            expect_status=(400,),
            sdk=False,
        ),
    ]


SCENARIOS: tuple[Scenario, ...] = (*_openai(), *_anthropic(), *_responses())


def scenarios_for(api: str) -> list[Scenario]:
    """The scenarios of one API (``all`` gives every API's)."""
    return [s for s in SCENARIOS if api in ("all", s.api)]
