"""Capture + stream models and checks → per-rule outcomes. No pytest, no Locust: the suite,
the CLI and the offline checks all call this module.

``Runner.run(scenario)`` sends one scenario's request, validates what came back and keeps the
:class:`ScenarioResult`; ``outcome(result, rule_id)`` turns it into pass/fail/warn/skip for one
rule. ``check_capture`` validates a capture (live or loaded from a transcript) the same way.
"""

from __future__ import annotations

import functools
import importlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote

import httpx
import orjson

from .capture import (
    Capture,
    EventKeeper,
    Timeouts,
    body_excerpt,
    exchange,
    load_transcript,
    tls_context,
)
from .endpoints import ANTHROPIC_VERSION, API_PATHS, request_headers
from .findings import Finding, excerpt
from .redact import is_secret_name, register_secret
from .scenarios import Scenario
from .sse import DEFAULT_MAX_EVENT_BYTES, Event, SSEDecoder
from .validators.answers import Answer, judge, served_texts
from .validators.model import StreamModel
from .validators.responses_model import ResponsesModel
from .validators.responses_resume import Transcript, compare

__all__ = [
    "Outcome",
    "RuleOutcome",
    "Runner",
    "ScenarioResult",
    "Target",
    "check_capture",
    "infer_request",
    "model_for",
    "outcome",
]

Outcome = Literal["pass", "fail", "warn", "skip"]

_MODELS: Final = {  # api -> (module, the model, the model bare)
    "openai": ("openai_model", "OpenAIChatModel", "BareOpenAIModel"),
    "anthropic": ("anthropic_model", "AnthropicMessagesModel", "BareAnthropicModel"),
    "responses": ("responses_model", "ResponsesModel", "BareResponsesModel"),
}
_BAD_KEY = "sk-streamproof-invalid-key-0000000000"
# The SDK replay costs ~0.6 ms an event (pydantic models per chunk): past this many events
# it is skipped, so that a flood of events cannot stretch a run far past its time bounds.
SDK_MAX_EVENTS = 20_000
# Statuses with which an endpoint says "I don't do that": the scenario is then skipped.
_UNSUPPORTED = (400, 404, 405, 422, 501)
# A stream that ends with one of these hung: no answer, or it stopped mid-way.
_HANGING = frozenset({"transport.connect", "transport.first-byte", "transport.idle"})
RUN_MARGIN_S = 5.0  # run_all's deadline: the total timeout and this
_TRANSPORT = (
    "transport.connect",
    "transport.first-byte",
    "transport.idle",
    "transport.total",
    "transport.broken",
)


def model_for(
    api: str,
    request: Mapping[str, Any] | None = None,
    expect: frozenset[str] = frozenset(),
    *,
    rules: bool = True,
    content_t: list[int] | None = None,
) -> StreamModel:
    """The stream model of ``api`` for one request, with every check of the API attached
    (``rules=False``: bare, as the load generator runs it with validation off: ``bare.py``).
    ``content_t``: keep every content stamp there (the load generator's inter-token
    latencies), not only the count, first and last."""
    if rules:
        return _model_class(api, True)(request, expect=expect, content_t=content_t)
    return _model_class(api, False)(request, content_t=content_t)


@functools.cache
def _model_class(api: str, rules: bool) -> type[StreamModel]:
    """Imported on first use (once: the load generator builds a model per request)."""
    module, name, bare = _MODELS[api]
    if rules:
        return getattr(importlib.import_module(f"streamproof.validators.{module}"), name)
    return getattr(importlib.import_module("streamproof.validators.bare"), bare)


@dataclass(frozen=True)
class Target:
    """Where and how to send: the API root (``.../v1``), credentials, model, bounds.

    ``auth_header``: send the key raw in this header instead (Azure's ``api-key``);
    ``extra_headers``: more headers on every request (a gateway's routing or tenant
    headers; values of secret-looking names are masked everywhere); ``extra_body``: keys
    merged into every JSON request body (vLLM's ``chat_template_kwargs``); ``api_bases``:
    another API root for one API (the built-in server's faults, by API)."""

    base_url: str
    model: str
    api_key: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    anthropic_version: str = ANTHROPIC_VERSION
    anthropic_auth: Literal["x-api-key", "bearer"] = "x-api-key"
    auth_header: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    api_bases: Mapping[str, str] = field(default_factory=dict)
    model_source: str = "given"  # or "GET /models"

    def __post_init__(self) -> None:
        register_secret(self.api_key)
        for name, value in self.extra_headers:
            if is_secret_name(name):
                register_secret(value)

    def headers(self, api: str, auth: str) -> dict[str, str]:
        key = {"key": self.api_key, "bad": _BAD_KEY, "none": None}[auth]
        return request_headers(
            api,
            key,
            anthropic_auth=self.anthropic_auth,
            auth_header=self.auth_header,
            extra=self.extra_headers,
            anthropic_version=self.anthropic_version,
        )

    def body(self, built: Any) -> Any:
        """A scenario's request body with ``extra_body`` merged in (not a malformed one)."""
        return {**built, **self.extra_body} if isinstance(built, dict) else built

    def url(self, api: str) -> str:
        return self.api_bases.get(api, self.base_url).rstrip("/") + API_PATHS[api]


@dataclass
class ScenarioResult:
    scenario: Scenario
    capture: Capture | None = None
    findings: list[Finding] = field(default_factory=list)
    checked: set[str] = field(default_factory=set)
    skipped: str | None = None  # why the whole scenario could not be checked
    skips: dict[str, str] = field(default_factory=dict)  # why one rule could not be checked
    message: dict[str, Any] | None = None
    crashes: list[str] = field(default_factory=list)  # tool errors: a check that raised

    def for_rule(self, rule_id: str) -> list[Finding]:
        return [f for f in self.findings if f.rule == rule_id]


@dataclass(frozen=True)
class RuleOutcome:
    outcome: Outcome
    message: str = ""
    finding: Finding | None = None
    excerpt: str = ""


def outcome(result: ScenarioResult, rule_id: str) -> RuleOutcome:
    """pass / fail / warn / skip for one rule in one scenario, with the first finding."""
    if result.skipped:
        return RuleOutcome("skip", result.skipped)
    if rule_id in result.skips:
        return RuleOutcome("skip", result.skips[rule_id])
    found = result.for_rule(rule_id)
    if found:
        order = {"MUST": 0, "SHOULD": 1, "INFO": 2}
        first = min(found, key=lambda f: order[f.level])  # the strongest finding speaks
        level = first.level
        others = [f for f in found if f is not first]
        more = ""
        if others:  # the others, in short (each is in the capture's transcript)
            listed = "; ".join(excerpt(f.message, 120) for f in others[:3])
            rest = f"; and {len(others) - 3} more" if len(others) > 3 else ""
            more = f" (also: {listed}{rest})"
        text = f"[{level}] {rule_id} in {result.scenario.id}: {first.message}{more}"
        if first.event is not None:
            text = (
                f"[{level}] {rule_id} in {result.scenario.id} at event {first.event}: "
                f"{first.message}{more}"
            )
        snippet = first.excerpt
        if result.capture is not None and first.event is not None:
            snippet = body_excerpt(result.capture, first.event) or first.excerpt
        kind: Outcome = {"MUST": "fail", "SHOULD": "warn", "INFO": "pass"}[level]
        return RuleOutcome(kind, text, first, snippet)
    if rule_id in result.checked:
        return RuleOutcome("pass")
    return RuleOutcome("skip", f"{result.scenario.id} gave no occasion to check {rule_id}")


def check_capture(
    api: str,
    cap: Capture,
    request: Mapping[str, Any] | None = None,
    expect: frozenset[str] = frozenset(),
    model: StreamModel | None = None,
    sdk: bool = False,
    resumed: Callable[[], list[Finding]] | None = None,
) -> tuple[list[Finding], set[str], StreamModel, list[str]]:
    """Validate a streamed answer: the stream model with its checks, then the answer checks
    (HTTP, wire, transport; the SDK replay when ``sdk`` and the body was kept whole; for a
    replayed Responses stream, ``resumed``: its comparison with the stream it replays).

    ``model``: one already fed every event as it arrived (``exchange(on_events=...)``);
    without it a new one is fed the events the capture kept (offline checks). A non-2xx
    answer is judged by ``http.status`` alone: there is no stream to hold to the protocol,
    and "no [DONE]" would only restate the status. Returns the findings, the checked rules,
    the model and the tool errors (checks that raised)."""
    if model is None:
        model = model_for(api, request, expect)
        if cap.status is None or 200 <= cap.status < 300:
            model.feed(cap.events)
    answer = Answer(
        api,
        "stream",
        cap.status,
        cap.content_type,
        request_id=cap.header("request-id"),
        t_send=cap.t_send,
        content_t=model.content_t,
        stalls=cap.stalls,
        wire=cap.findings,
        model=model,
        resumed=resumed,
    )
    if cap.status is not None and not 200 <= cap.status < 300:
        judge(answer)
        return answer.findings, answer.checked, model, answer.crashes
    # a transport failure or the size bound ended the body early: the model must not
    # restate that as a missing [DONE] or message_stop
    cut = cap.error is not None or any(f.rule == "sse.max-event" for f in cap.findings)
    model.finish(truncated=cut)
    # the SDK replays the kept body: only when it was kept whole (not past the cap) and
    # decoded to its end (not stopped by the size bound); not for a flood
    whole = (
        len(cap.body) >= cap.body_size
        and cap.events_total <= SDK_MAX_EVENTS
        and not model.message_cut
        and not cut
    )
    if sdk and cap.status == 200 and whole:
        answer.sdk_replay = _replay(api, cap, request or {}, model)
    judge(answer)
    findings = answer.findings + model.findings
    return findings, answer.checked | model.checked, model, model.crashes + answer.crashes


def _replay(
    api: str, cap: Capture, request: Mapping[str, Any], model: StreamModel
) -> Callable[[], list[Finding]]:
    def replay() -> list[Finding]:
        from .sdk_replay import compare_with_sdk

        return compare_with_sdk(
            api, cap, request, model.message(), ended_by_error=model.ended_by_error
        )

    return replay


class Runner:
    """Runs scenarios against one target over one HTTP client; results are kept by id.

    :meth:`run_all` sends a run's scenarios together, ``concurrency`` at a time (threads
    over one connection pool: the capture stays the one synchronous path the offline checks
    use too, and the suite's stamps feed only the buffering heuristic, which needs a quarter
    second of silence), streams first, all within one deadline — the total timeout plus a
    margin — and stops early when every stream so far hung at the transport level (a dead
    or hanging endpoint ends the run in about one timeout). The results are the same as one
    scenario after another (:meth:`result`), which a pytest-xdist worker uses."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.results: dict[str, ScenarioResult] = {}
        self.stopped: str | None = None  # why run_all ended early, if it did
        self._client = httpx.Client(
            trust_env=False, verify=tls_context(), limits=httpx.Limits(max_connections=64)
        )

    def close(self) -> None:
        self._client.close()

    def result(self, scenario: Scenario) -> ScenarioResult:
        """The scenario's result, running it on first use."""
        if scenario.id not in self.results:
            self.results[scenario.id] = self.run(scenario)
        return self.results[scenario.id]

    def run_all(self, scenarios: Iterable[Scenario], concurrency: int = 8) -> None:
        """Run every scenario not run yet (see the class docstring); ``stopped`` says why
        the rest were left out when every stream so far hung."""
        todo = [s for s in {s.id: s for s in scenarios}.values() if s.id not in self.results]
        todo.sort(key=lambda s: s.kind != "stream")  # streams first: they take longest
        streams = sum(s.kind == "stream" for s in todo)
        enough = min(max(1, concurrency), streams)
        deadline = time.perf_counter_ns() + int((self.target.timeouts.total + RUN_MARGIN_S) * 1e9)
        hung: list[str] = []
        with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="scenario") as pool:
            running = {pool.submit(self.run, s, deadline): s for s in todo}
            for done in as_completed(running):
                result = done.result()
                self.results[result.scenario.id] = result
                if result.scenario.kind != "stream" or self.stopped:
                    continue
                found = [f for f in result.findings if f.rule in _HANGING]
                hung.append(found[0].message if found else "")
                if len(hung) >= enough and all(hung):
                    self.stopped = (
                        f"every streaming request hung at the transport level "
                        f"({len(hung)} of {streams}): {hung[0]}"
                    )
                    for future in running:
                        future.cancel()
        for scenario in todo:
            if scenario.id not in self.results:
                self.results[scenario.id] = ScenarioResult(
                    scenario, skipped=f"not run: {self.stopped}"
                )

    def run(self, scenario: Scenario, deadline: int | None = None) -> ScenarioResult:
        if scenario.resume:
            return self._resume(scenario, deadline)
        target = self.target
        body = target.body(scenario.build(target.model))
        headers = target.headers(scenario.api, scenario.auth)
        streaming = scenario.kind == "stream"
        live = model_for(scenario.api, body, scenario.expect) if streaming else None
        keeper = EventKeeper()
        cap = self._send(
            "POST",
            target.url(scenario.api),
            headers,
            body,
            deadline,
            decode_sse=streaming,
            keeper=keeper,
            on_events=_pinning(live, keeper) if live is not None else None,
        )
        try:
            return self._judge(scenario, cap, body, live)
        finally:
            cap.slim()

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Any,
        deadline: int | None,
        *,
        decode_sse: bool = True,
        keeper: EventKeeper | None = None,
        on_events: Callable[[list[Event]], None] | None = None,
    ) -> Capture:
        """One exchange within the target's bounds (``capture.exchange``)."""
        return exchange(
            self._client,
            method,
            url,
            headers=headers,
            body=body,
            timeouts=self.target.timeouts,
            decode_sse=decode_sse,
            max_event_bytes=self.target.max_event_bytes,
            keeper=keeper,
            on_events=on_events,
            deadline=deadline,
        )

    def _resume(self, scenario: Scenario, deadline: int | None) -> ScenarioResult:
        """A resume scenario: read the (background) stream for its id and the sequence
        number of its response.created, fetch it again after that number and judge the
        replay, as a replay, and against the stream it replays."""
        target = self.target
        body = target.body(scenario.build(target.model))
        headers = target.headers(scenario.api, scenario.auth)
        original = Transcript()
        first = self._send(
            "POST", target.url(scenario.api), headers, body, deadline, on_events=original.take
        )
        first.slim()
        why = _not_resumable(scenario, first, original)
        if why:
            return ScenarioResult(scenario, first, skipped=why)
        assert original.response_id is not None and original.created_seq is not None
        after = original.created_seq
        url = (
            f"{target.url(scenario.api)}/{quote(original.response_id, safe='')}"
            f"?stream=true&starting_after={after}"
        )
        live = model_for(scenario.api, body, scenario.expect)
        assert isinstance(live, ResponsesModel)  # resume is a Responses scenario
        live.replaying_after(after)
        replay = Transcript()
        keeper = EventKeeper()
        pinning = _pinning(live, keeper)

        def feed(events: list[Event]) -> None:
            pinning(events)
            replay.take(events)

        cap = self._send("GET", url, headers, None, deadline, keeper=keeper, on_events=feed)
        try:
            if cap.status is not None and not 200 <= cap.status < 300:
                return ScenarioResult(
                    scenario,
                    cap,
                    skipped=f"the endpoint does not replay background streams: GET "
                    f"/responses/{{id}}?stream=true was answered {cap.status} ({_error_text(cap)})",
                )
            return self._judge(
                scenario, cap, body, live, resumed=lambda: compare(original, after, replay)
            )
        finally:
            cap.slim()

    def _judge(
        self,
        scenario: Scenario,
        cap: Capture,
        body: Any,
        live: StreamModel | None,
        resumed: Callable[[], list[Finding]] | None = None,
    ) -> ScenarioResult:
        result = ScenarioResult(scenario, cap)
        transport = [f for f in cap.findings if f.rule.startswith("transport.")]
        if transport and cap.status is None:
            result.findings = transport
            result.checked = set(_TRANSPORT)
            return result
        if scenario.kind != "stream":
            request = body if isinstance(body, dict) else {}
            answer = judge(
                Answer(
                    scenario.api,
                    scenario.kind,
                    cap.status,
                    cap.content_type,
                    cap.body,
                    wire=transport,
                    expect_status=scenario.expect_status,
                    accepted=scenario.accepted,
                    auth=scenario.auth,
                    model_name=request.get("model"),
                )
            )
            result.findings, result.checked = answer.findings, answer.checked
            result.crashes = answer.crashes
            if scenario.accepted and answer.accepted and answer.ok:
                skip = served_texts(answer)[1]
                result.skips = {r: skip for r in scenario.rules if r != scenario.accepted}
            return result
        if scenario.needs and cap.status in _UNSUPPORTED:
            result.skipped = (
                f"the endpoint refused the request with {cap.status}: it does not support "
                f"{scenario.needs} ({_error_text(cap)})"
            )
            return result
        found, checked, model, crashes = check_capture(
            scenario.api, cap, body, scenario.expect, model=live, sdk=scenario.sdk, resumed=resumed
        )
        result.crashes = crashes
        result.message = model.message()
        result.findings, result.checked = found, checked
        return result


def _pinning(live: StreamModel, keeper: EventKeeper) -> Callable[[list[Event]], None]:
    """The live model's feed, keeping the events around each new finding for the
    report (the keeper drops the rest of a long stream)."""

    def feed(events: list[Event]) -> None:
        before = len(live.findings)
        live.feed(events)
        for finding in live.findings[before:]:
            if finding.event is not None:
                keeper.pin(finding.event)

    return feed


def _not_resumable(scenario: Scenario, cap: Capture, original: Transcript) -> str:
    """Why a resume scenario's first stream gives nothing to fetch again ("" when it does)."""
    if cap.status is None:
        return f"the background stream to fetch again failed: {cap.error}"
    if cap.status in _UNSUPPORTED:
        return (
            f"the endpoint refused the request with {cap.status}: it does not support "
            f"{scenario.needs} ({_error_text(cap)})"
        )
    if not 200 <= cap.status < 300:
        return f"the background stream to fetch again was answered {cap.status}"
    if original.response_id is None or original.created_seq is None:
        return (
            "the background stream has no response.created with an id and a "
            "sequence_number to fetch it again after"
        )
    return ""


def _error_text(cap: Capture) -> str:
    body = cap.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))[:120]
    return cap.body[:120].decode("utf-8", "replace")


def check_file(
    api: str, path: Path, request: Mapping[str, Any] | None = None
) -> tuple[list[Finding], Capture, list[str]]:
    """``streamproof check``: a recorded stream, validated as it is read (any size, bounded
    memory). The request comes from ``request``, else the transcript's sidecar, else what
    the stream's beginning and end show (:func:`infer_request`)."""
    if request is None:
        request = _sidecar_request(path)
    if request is None:
        request = infer_request(api, _head_and_tail(path))
    live = model_for(api, request)
    keeper = EventKeeper()
    cap = load_transcript(path, on_events=_pinning(live, keeper), keeper=keeper)
    findings, _, _, crashes = check_capture(api, cap, request, model=live)
    return findings, cap, crashes


def _sidecar_request(path: Path) -> dict[str, Any] | None:
    sidecar = path.with_suffix(".json") if path.suffix == ".sse" else path
    if not sidecar.is_file() or sidecar.suffix != ".json":
        return None
    try:
        body = json.loads(sidecar.read_text("utf-8")).get("request_body")
    except (OSError, ValueError, AttributeError):
        return None
    return body if isinstance(body, dict) else None


def _head_and_tail(path: Path, size: int = 256 * 1024) -> list[Event]:
    """The events of a body's first and last ``size`` bytes (the tail from its first
    event boundary): enough to infer the request without reading the body twice."""
    body = path.with_suffix(".sse") if path.suffix != ".sse" else path
    with body.open("rb") as fh:
        head = fh.read(size)
        fh.seek(max(0, body.stat().st_size - size))
        tail = fh.read(size)
    events: list[Event] = []
    for piece in (head, tail.partition(b"\n\n")[2] if len(tail) == size else b""):
        decoder = SSEDecoder()
        events += decoder.feed(piece, 0)
    return events


def infer_request(api: str, events: list[Any]) -> dict[str, Any]:
    """For a body recorded without its request: the request options the stream itself shows
    (a usage chunk means include_usage was asked; the highest choice index gives n)."""
    if api != "openai":
        return {}
    request: dict[str, Any] = {}
    top = 0
    for event in events:
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(chunk, dict):
            continue
        choices = chunk.get("choices")
        if choices == [] and isinstance(chunk.get("usage"), dict):
            request["stream_options"] = {"include_usage": True}
        elif isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and isinstance(choice.get("index"), int):
                    top = max(top, choice["index"])
    if top:
        request["n"] = top + 1
    return request
