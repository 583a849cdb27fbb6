"""Checks of an HTTP answer as a whole: status and headers, the decoder's and the transport's
observations, the non-streamed JSON answer, refusals of invalid requests, the SDK replay.

Each is the one check of its rule (``registry.py``), registered ``on="answer"`` and called
as ``hook(answer)`` with the :class:`Answer`; it returns ``False`` when the answer gives it
no occasion (a refusal check on a streamed answer), and is then not *checked*. The engine
(suite, ``check``) and the load generator (validation under load) build the Answer from
what they captured and call :func:`judge`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Final, Literal

import orjson

from ..findings import Finding, at_api_level, excerpt
from ..rules import Level
from ..schemas import schema
from ..stalls import Stall, overlap
from .anthropic_model import ERROR_TYPE_BY_STATUS
from .base import Stamps, is_json_type, json_error, media_type
from .model import StreamModel, keep_crash
from .registry import answer_checks, check

__all__ = ["Answer", "judge"]

# A buffering proxy delivers everything in one burst: the content events then arrive within
# a sliver of the time the client waited for the first one. The wait must be long (a
# buffered LLM answer holds for its whole generation) so that a client descheduled for a
# moment on a busy machine is not mistaken for a buffering server.
_BURST_MIN_EVENTS: Final = 5
_BURST_SPREAD_FRACTION: Final = 0.05
_BURST_MIN_WAIT_NS: Final = 250_000_000
_ERROR_SHAPES: Final = {
    "openai": '{"error": {message, type, param, code}}',
    "anthropic": '{"type": "error", "error": {type, message}}',
    "responses": '{"error": {message, type, param, code}}',
}
_ANSWER_SHAPES: Final = {
    "openai": ("completion", "a chat.completion object"),
    "anthropic": ("message", "a message object"),
    "responses": ("response", "a response object"),
}
_NOT_JSON: Final = object()


@dataclass
class Answer:
    """One HTTP answer to judge, and what was asked of it.

    ``kind``: ``stream`` (a streamed answer, judged with its ``model``), ``json`` (a
    ``stream: false`` request) or ``error`` (a request that must be refused, with
    ``expect_status``; any 4xx when empty). ``wire``: the decoder's and the transport's
    findings. ``sdk_replay``: a function that replays the body through the official SDK and
    returns its findings, or None when the body cannot be replayed (not kept whole).
    ``resumed``: for a stream fetched again after a sequence number (a Responses replay), a
    function that compares it with the stream it replays (``responses_resume.py``)."""

    api: str
    kind: Literal["stream", "json", "error"]
    status: int | None
    content_type: str | None = ""
    body: bytes = b""
    request_id: str | None = None
    t_send: int = 0
    content_t: Stamps | Sequence[int] = ()
    stalls: Sequence[Stall] = ()
    wire: Sequence[Finding] = ()
    expect_status: tuple[int, ...] = ()
    model: StreamModel | None = None
    sdk_replay: Any = None
    resumed: Callable[[], list[Finding]] | None = None
    findings: list[Finding] = field(default_factory=list)
    checked: set[str] = field(default_factory=set)
    crashes: list[str] = field(default_factory=list)
    accepted: str = ""  # an error scenario's rule for a real endpoint that serves it anyway
    auth: str = "key"  # the credentials the request carried: key, none or bad
    model_name: Any = None  # the model the request named
    json_error: str = ""  # why the body is not JSON (set by ``json``)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def media(self) -> str:
        return media_type(self.content_type)

    @cached_property
    def json(self) -> Any:
        """The body parsed as JSON, or ``_NOT_JSON`` (the decode error is in ``json_error``)."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            self.json_error = json_error(exc)
            return _NOT_JSON

    def flag(self, rule: str, message: str, level_as: Level | None = None) -> None:
        """A finding about the body as a whole (its excerpt is the body's beginning)."""
        self.findings.append(Finding(rule, message, None, excerpt(self.body), level_as))


def judge(answer: Answer) -> Answer:
    """Run every answer check of the API; a check that raises is a tool error."""
    for c in answer_checks(answer.api):
        try:
            ran = c.hooks["answer"](answer)
        except Exception as exc:
            keep_crash(answer.crashes, answer.api, c.rule, exc)
            continue
        if ran is not False:
            answer.checked.add(c.rule)
    return answer


# -- streamed answers: HTTP ---------------------------------------------------------------


@check("http.status", on="answer")
def status(a: Answer) -> bool:
    if a.kind != "stream" or a.status is None:
        return a.kind == "stream"
    if 200 < a.status < 300:
        a.flag(
            "http.status",
            f"a valid streaming request was answered {a.status}, not 200 (the SDKs read any 2xx "
            "as success)",
            level_as="SHOULD",
        )
    elif a.status != 200:
        a.flag("http.status", f"a valid streaming request was answered {a.status}")
    return True


@check("http.content-type", on="answer")
def content_type(a: Answer) -> bool:
    if a.kind != "stream" or not a.ok:
        return False
    if a.media != "text/event-stream":
        a.flag(
            "http.content-type",
            f"Content-Type is {a.media or 'missing'!r}, not text/event-stream",
        )
    return True


@check("http.incremental", on="answer")
def incremental(a: Answer) -> bool:
    """The content events arrive over time, not in one burst after a long silence (a
    buffering proxy). A silence this process caused itself (``stalls.py``) is left out."""
    content_t = a.content_t
    if a.kind != "stream" or not a.ok or len(content_t) < _BURST_MIN_EVENTS:
        return False
    stalled = overlap(a.stalls, a.t_send, content_t[0])
    wait = content_t[0] - a.t_send - stalled
    spread = content_t[-1] - content_t[0]
    if wait >= _BURST_MIN_WAIT_NS and spread < wait * _BURST_SPREAD_FRACTION:
        left_out = (
            f"; {stalled / 1e6:.0f} ms in which this client itself stalled are left out"
            if stalled
            else ""
        )
        a.findings.append(
            Finding(
                "http.incremental",
                f"{len(content_t)} content events arrived within {spread / 1e6:.2f} ms after "
                f"{wait / 1e6:.1f} ms of silence: the stream looks buffered (a proxy holding "
                f"events back){left_out}",
            )
        )
    return True


@check("anthropic.request-id", on="answer")
def request_id(a: Answer) -> bool:
    if a.kind != "stream" or not a.ok:
        return False
    if a.request_id is None:
        a.findings.append(
            Finding(
                "anthropic.request-id",
                "no request-id response header (the real API sends one; support tickets and "
                "logs key on it)",
            )
        )
    return True


# -- what the decoder and the transport saw -------------------------------------------------


def _wire(rule: str, transport: bool, seen_as: str = "") -> None:
    """Register the check that reports the decoder's (or the transport's) findings of
    ``rule``: they are observed where the bytes are read, judged here. A wire rule is
    checked on a 2xx stream (its body was decoded); a transport rule on every exchange.
    ``seen_as``: the decoder's name for a fact that is a rule of one API only (the decoder
    knows no API)."""
    seen = seen_as or rule

    def adopt(a: Answer) -> bool:
        found = (replace(f, rule=rule) for f in a.wire if f.rule == seen)
        a.findings += at_api_level(found, a.api)
        return transport or (a.kind == "stream" and a.ok)

    adopt.__qualname__ = adopt.__name__ = rule.replace(".", "_").replace("-", "_")
    check(rule, on="answer")(adopt)


for _rule in (
    "sse.utf8",
    "sse.terminated",
    "sse.bom",
    "sse.line-endings",
    "sse.meta-only",
    "sse.comments",
    "sse.max-event",
):
    _wire(_rule, transport=False)
_wire("responses.field-order", transport=False, seen_as="sse.field-order")
for _rule in (
    "transport.connect",
    "transport.first-byte",
    "transport.idle",
    "transport.total",
    "transport.broken",
):
    _wire(_rule, transport=True)


# -- the SDK replay ---------------------------------------------------------------------------


def _sdk(api: str) -> None:
    rule = f"sdk.{api}-accumulate"

    def replay(a: Answer) -> bool:
        """The official SDK rebuilds the same message from the body as the model."""
        if a.kind != "stream" or a.sdk_replay is None:
            return False
        a.findings += a.sdk_replay()
        return True

    replay.__qualname__ = replay.__name__ = f"sdk_{api}_accumulate"
    check(rule, on="answer")(replay)


for _api in ("openai", "anthropic", "responses"):
    _sdk(_api)


# -- the non-streamed answer --------------------------------------------------------------------


@check("http.stream-false-json", on="answer")
def stream_false_json(a: Answer) -> bool:
    """Without ``stream: true`` the answer is one JSON object of the API's shape."""
    if a.kind != "json" or a.status is None:
        return False
    rule = "http.stream-false-json"
    if a.status != 200:
        a.flag(rule, f"the stream: false request was answered {a.status}")
        return True
    if a.media == "text/event-stream":
        a.flag(rule, "without stream: true the answer is an event stream, not one JSON object")
        return True
    if not is_json_type(a.media):
        a.flag(rule, f"the answer's Content-Type is {a.media or 'missing'}, not application/json")
    value = a.json
    if value is _NOT_JSON:
        a.flag(rule, f"the answer is not JSON ({a.json_error})")
        return True
    name, what = _ANSWER_SHAPES[a.api]
    shape = schema(a.api, name)
    if not shape.is_valid(value):
        a.flag(rule, f"the answer is not {what}: {shape.explain(value)}")
    return True


# -- refusals of invalid requests ---------------------------------------------------------------


def _expected(a: Answer) -> str:
    return " or ".join(str(s) for s in a.expect_status) or "a 4xx status"


def _served(a: Answer) -> bool:
    """An error scenario a real endpoint may legitimately serve (no key: it checks none; an
    unknown model: it serves any name) was served: judged by ``accepted`` alone."""
    return bool(a.accepted) and a.ok


def _error_status(a: Answer) -> bool:
    """The invalid request is refused before streaming, with the expected 4xx."""
    if a.kind != "error" or a.status is None or _served(a):
        return False
    rule = f"{a.api}.error-status"
    code = a.status
    if 200 <= code < 300:
        a.flag(
            rule,
            f"the invalid request was accepted with {code}; it must be refused before "
            f"streaming with {_expected(a)}",
        )
    elif code >= 500:
        a.flag(
            rule,
            f"the invalid request was answered {code}, a server error: it is the client's "
            f"error ({_expected(a)}), and the SDKs retry a 5xx before they raise",
        )
    elif (a.expect_status and code not in a.expect_status) or (
        not a.expect_status and not 400 <= code < 500
    ):
        a.flag(
            rule,
            f"the invalid request was refused with {code}, expected {_expected(a)} (the SDKs "
            "raise another error class for it)",
            "SHOULD" if 400 <= code < 500 else None,
        )
    if a.api == "anthropic" and not 200 <= code < 300:
        value = a.json
        error = value.get("error") if type(value) is dict else None
        found = error.get("type") if type(error) is dict else None
        wanted = ERROR_TYPE_BY_STATUS.get(code)
        if wanted is not None and type(found) is str and found != wanted:
            a.flag(
                rule,
                f"status {code} goes with error type {wanted!r}, the body says {found!r} (the "
                "SDK picks the error class by status)",
                level_as="SHOULD",
            )
    return True


def _error_body(a: Answer) -> bool:
    """The refusal's body is the API's JSON error object (clients read the message from
    it), not an event stream."""
    if a.kind != "error" or a.status is None or a.ok:
        return False
    rule, code = f"{a.api}.error-body", a.status
    if a.media == "text/event-stream":
        a.flag(rule, f"the {code} error is sent as an event stream, not as a JSON body")
        return True
    value = a.json
    if value is _NOT_JSON:
        a.flag(
            rule,
            f"the {code} error body is not JSON (Content-Type {a.media or 'missing'}): clients "
            "read the error's message from it",
        )
        return True
    shape = schema(a.api, "error_body")
    if not shape.is_valid(value):
        error = value.get("error") if type(value) is dict else None
        readable = type(error) is dict and type(error.get("message")) is str
        a.flag(
            rule,
            f"the {code} error body is not {_ERROR_SHAPES[a.api]}: {shape.explain(value)}"
            + (" (the SDK still reads its message)" if readable else ""),
            # the SDK reads error.message and gets None for a missing key: a warning
            level_as="SHOULD" if readable else None,
        )
    elif not is_json_type(a.media):
        a.flag(
            rule,
            f"the {code} error body is JSON but labelled {a.media or 'with no Content-Type'}, "
            "not application/json",
        )
    return True


for _api in ("openai", "anthropic", "responses"):
    check(f"{_api}.error-status", on="answer")(_error_status)
    check(f"{_api}.error-body", on="answer")(_error_body)


# What a 2xx answer to an error scenario with ``accepted`` tells about the endpoint's setup:
# the finding, and why the scenario's other rules are skipped (not failed).
_SERVED: Final = {
    "http.auth-required": (
        "the endpoint does not check keys: a request {how} was answered {status}",
        "the endpoint does not check keys (a request {how} was answered {status}): there was "
        "nothing to refuse",
    ),
    "http.unknown-model": (
        "the unknown model {model!r} was answered {status}: the endpoint serves any model name "
        "(a mistyped model name goes unnoticed)",
        "the endpoint serves any model name ({model!r} was answered {status}): there was "
        "nothing to refuse",
    ),
}
_HOW: Final = {"none": "without an API key", "bad": "with an invalid API key"}


def served_texts(a: Answer) -> tuple[str, str]:
    """The finding and the skip reason of a served error scenario."""
    words = {"how": _HOW.get(a.auth, ""), "status": a.status, "model": a.model_name}
    finding, skip = (text.format(**words) for text in _SERVED[a.accepted])
    return finding, skip


def _served_check(rule: str) -> None:
    """Register the check of ``rule``: told, not failed, when a real endpoint served the
    request (INFO for keys, SHOULD for models: the catalogue's levels)."""

    def served(a: Answer) -> bool:
        if a.kind != "error" or a.status is None or a.accepted != rule:
            return False
        if a.ok:
            a.findings.append(Finding(rule, served_texts(a)[0]))
        return True

    served.__qualname__ = served.__name__ = rule.split(".")[1].replace("-", "_")
    check(rule, on="answer")(served)


for _rule in _SERVED:
    _served_check(_rule)


def refusal(
    api: str,
    status: int | None,
    content_type: str | None,
    body: bytes,
    expected_status: tuple[int, ...] = (),
) -> tuple[list[Finding], set[str]]:
    """The findings and checked rules of a refusal (an ``error`` answer), for callers
    outside a run (the fuzzers, the tests)."""
    a = judge(Answer(api, "error", status, content_type, body, expect_status=expected_status))
    return a.findings, a.checked & {f"{api}.error-status", f"{api}.error-body"}


def json_answer(
    api: str, status: int | None, content_type: str | None, body: bytes
) -> tuple[list[Finding], set[str]]:
    """The findings and checked rules of a ``stream: false`` answer."""
    a = judge(Answer(api, "json", status, content_type, body))
    return a.findings, a.checked & {"http.stream-false-json"}
