"""What every protocol validator shares: the feed/finish contract and the HTTP-level checks.

A validator is a state machine over the decoded events of one response. It is fed batches of
events as they arrive (``feed``), told when the body ended (``finish``), and then holds its
findings, the set of rules it actually evaluated (``checked``: a rule whose precondition never
occurred is neither passed nor failed), and the message a client would have rebuilt
(``message()``). It never raises on bad input: a broken server is the normal case.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson

from ..findings import Finding, excerpt
from ..rules import Level
from ..schemas import Schema
from ..sse import Event
from ..stalls import Stall, overlap

__all__ = [
    "MESSAGE_MAX_CHARS",
    "Stamps",
    "StreamValidator",
    "check_error_answer",
    "check_http",
    "check_json_answer",
    "event_json",
    "is_json_type",
    "json_error",
    "media_type",
]

# A buffering proxy delivers everything in one burst: the content events then arrive within
# a sliver of the time the client waited for the first one. The wait must be long (a
# buffered LLM answer holds for its whole generation) so that a client descheduled for a
# moment on a busy machine is not mistaken for a buffering server.
_BURST_MIN_EVENTS = 5
_BURST_SPREAD_FRACTION = 0.05
_BURST_MIN_WAIT_NS = 250_000_000
_loads = orjson.loads


def event_json(event: Event) -> Any:
    """The event's data parsed as JSON, parsed once and kept on the event (the validator and
    the load generator's tracker both read it). Raises ``orjson.JSONDecodeError``. A ``null``
    payload is parsed again on each call, which is harmless."""
    value = event.parsed
    if value is None:
        value = event.parsed = _loads(event.data)
    return value


# The message a validator rebuilds keeps at most this many characters of text, arguments and
# thinking: past it, a never-ending stream costs no more memory (and the SDK comparison,
# which needs the whole message, is not made).
MESSAGE_MAX_CHARS = 256 * 1024
MAX_CRASHES = 3


class Stamps:
    """Arrival stamps of content events in constant memory: how many, the first, the last —
    all that ``http.incremental`` and the usage checks read. ``s[0]`` and ``s[-1]`` work."""

    __slots__ = ("count", "first", "last")

    def __init__(self) -> None:
        self.count = 0
        self.first = 0
        self.last = 0

    def append(self, t: int) -> None:
        if not self.count:
            self.first = t
        self.last = t
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> int:
        if not self.count or i not in (0, -1):
            raise IndexError(i)
        return self.first if i == 0 else self.last


class StreamValidator:
    """Base class: subclasses implement ``_event`` and ``_end`` and fill ``self.content_t``.

    ``room``: characters the rebuilt message may still take (see ``MESSAGE_MAX_CHARS``);
    ``message_cut``: the message stopped growing there."""

    api: ClassVar[str] = ""

    def __init__(
        self, request: Mapping[str, Any] | None = None, *, expect: frozenset[str] = frozenset()
    ) -> None:
        self.request: Mapping[str, Any] = request or {}
        self.expect = expect  # scenario rules to enforce, e.g. "openai.finish-length"
        self.findings: list[Finding] = []
        self.checked: set[str] = set()
        self.content_t = Stamps()  # arrival stamps of content events
        self.room = MESSAGE_MAX_CHARS
        self.message_cut = False
        self.crashes: list[str] = []  # tool errors: a check that raised (see _crashed)
        self.events = 0
        self.finished = False

    def feed(self, events: list[Event]) -> None:
        for event in events:
            self.events += 1
            try:
                self._event(event)
            except Exception as exc:  # a bug of the tool: never the endpoint's finding
                self._crashed(exc, f"event {event.index}")

    def finish(self, *, truncated: bool = False) -> None:
        """The body ended. ``truncated``: it ended by a transport failure, not by itself."""
        if not self.finished:
            self.finished = True
            try:
                self._end(truncated)
            except Exception as exc:
                self._crashed(exc, "the end of the stream")

    def _crashed(self, exc: Exception, where: str) -> None:
        """A check raised: a tool error, kept with its traceback (the first few); the run
        says so (verdict ``error``) instead of blaming the endpoint."""
        if len(self.crashes) < MAX_CRASHES:
            trace = "".join(traceback.format_exception(exc)[-4:])
            self.crashes.append(f"{self.api} validator failed at {where}: {exc!r}\n{trace}")

    def add(
        self,
        rule: str,
        message: str,
        event: Event | int | None = None,
        data: str = "",
        level_as: Level | None = None,
    ) -> None:
        index = event.index if isinstance(event, Event) else event
        if not data and isinstance(event, Event):
            data = event.data
        self.findings.append(Finding(rule, message, index, excerpt(data), level_as))

    @property
    def ended_by_error(self) -> bool:
        """A well-formed mid-stream error ended the stream (clients then raise it)."""
        return False

    def message(self) -> dict[str, Any]:
        """The message a client rebuilds from the stream (shape is API-specific)."""
        raise NotImplementedError

    def _event(self, event: Event) -> None:
        raise NotImplementedError

    def _end(self, truncated: bool) -> None:
        raise NotImplementedError


def check_http(
    status: int | None,
    content_type: str,
    t_send: int,
    content_t: Sequence[int] | Stamps,
    stalls: Sequence[Stall] = (),
) -> tuple[list[Finding], set[str]]:
    """``http.status``, ``http.content-type`` and ``http.incremental`` for a streaming answer.
    ``stalls``: when this process itself could not run (``stalls.py``); a silence the client
    caused is not the server's, so it is left out of the wait before a burst."""
    findings: list[Finding] = []
    checked = {"http.status"}
    if status is None:
        return findings, checked
    if 200 < status < 300:
        findings.append(
            Finding(
                "http.status",
                f"a valid streaming request was answered {status}, not 200 (the SDKs read "
                "any 2xx as success)",
                level_as="SHOULD",
            )
        )
    elif status != 200:
        findings.append(Finding("http.status", f"a valid streaming request was answered {status}"))
        return findings, checked
    checked.add("http.content-type")
    if content_type != "text/event-stream":
        findings.append(
            Finding(
                "http.content-type",
                f"Content-Type is {content_type or 'missing'!r}, not text/event-stream",
            )
        )
    if len(content_t) >= _BURST_MIN_EVENTS:
        checked.add("http.incremental")
        stalled = overlap(stalls, t_send, content_t[0])
        wait = content_t[0] - t_send - stalled
        spread = content_t[-1] - content_t[0]
        if wait >= _BURST_MIN_WAIT_NS and spread < wait * _BURST_SPREAD_FRACTION:
            findings.append(
                Finding(
                    "http.incremental",
                    f"{len(content_t)} content events arrived within {spread / 1e6:.2f} ms "
                    f"after {wait / 1e6:.1f} ms of silence: the stream looks buffered "
                    "(a proxy holding events back)"
                    + (
                        f"; {stalled / 1e6:.0f} ms in which this client itself stalled are left out"
                        if stalled
                        else ""
                    ),
                )
            )
    return findings, checked


def media_type(content_type: str | None) -> str:
    """``text/event-stream; charset=utf-8`` → ``text/event-stream``."""
    return (content_type or "").split(";")[0].strip().lower()


def is_json_type(media: str) -> bool:
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def json_error(exc: Exception) -> str:
    """An orjson decode error in plain words (orjson's own text is terse about the two
    hostile cases: nesting past its 1024 levels, and numbers too big for a double)."""
    text = str(exc)
    if "depth limit" in text or "recursion" in text.lower():
        return f"nesting too deep: more than 1024 levels of arrays/objects ({text})"
    if "infinity" in text or "digits" in text:
        return f"a number too large for a 64-bit float or integer ({text})"
    return text


def check_json_answer(
    status: int | None, content_type: str | None, body: bytes, shape: Schema, what: str
) -> tuple[list[Finding], set[str]]:
    """``http.stream-false-json``: without ``stream: true`` the answer is one JSON object of
    the API's shape (``what`` names it in the message), not an event stream."""
    if status is None:
        return [], set()
    findings: list[Finding] = []
    sample = excerpt(body)

    def fail(message: str) -> tuple[list[Finding], set[str]]:
        findings.append(Finding("http.stream-false-json", message, None, sample))
        return findings, {"http.stream-false-json"}

    if status != 200:
        return fail(f"the stream: false request was answered {status}")
    media = media_type(content_type)
    if media == "text/event-stream":
        return fail("without stream: true the answer is an event stream, not one JSON object")
    if not is_json_type(media):
        fail(f"the answer's Content-Type is {media or 'missing'}, not application/json")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return fail(f"the answer is not JSON ({json_error(exc)})")
    if not shape.is_valid(value):
        fail(f"the answer is not {what}: {shape.explain(value)}")
    return findings, {"http.stream-false-json"}


def check_error_answer(
    api: str,
    status: int | None,
    content_type: str | None,
    body: bytes,
    expected_status: tuple[int, ...],
    shape: Schema,
    shape_text: str,
) -> tuple[list[Finding], set[str], Any]:
    """``{api}.error-status`` and ``{api}.error-body`` for a request that must be refused.

    The status must be one of ``expected_status`` (any 4xx when empty) and the body the
    API's JSON error object (``shape``, described by ``shape_text``), not an event stream.
    Returns the parsed body too (None when it is not JSON), for API-specific checks.
    """
    if status is None:
        return [], set(), None
    status_rule, body_rule = f"{api}.error-status", f"{api}.error-body"
    findings: list[Finding] = []
    checked = {status_rule}
    sample = excerpt(body)
    expected = " or ".join(str(s) for s in expected_status) or "a 4xx status"

    def fail(rule: str, message: str, level_as: Level | None = None) -> None:
        findings.append(Finding(rule, message, None, sample, level_as))

    if 200 <= status < 300:
        fail(
            status_rule,
            f"the invalid request was accepted with {status}; it must be refused before "
            f"streaming with {expected}",
        )
        return findings, checked, None
    if status >= 500:
        fail(
            status_rule,
            f"the invalid request was answered {status}, a server error: it is the client's "
            f"error ({expected}), and the SDKs retry a 5xx before they raise",
        )
    elif (expected_status and status not in expected_status) or (
        not expected_status and not 400 <= status < 500
    ):
        fail(
            status_rule,
            f"the invalid request was refused with {status}, expected {expected} (the SDKs "
            "raise another error class for it)",
            "SHOULD" if 400 <= status < 500 else None,
        )
    checked.add(body_rule)
    media = media_type(content_type)
    if media == "text/event-stream":
        fail(body_rule, f"the {status} error is sent as an event stream, not as a JSON body")
        return findings, checked, None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        fail(
            body_rule,
            f"the {status} error body is not JSON (Content-Type {media or 'missing'}): "
            "clients read the error's message from it",
        )
        return findings, checked, None
    if not shape.is_valid(value):
        fail(body_rule, f"the {status} error body is not {shape_text}: {shape.explain(value)}")
    elif not is_json_type(media):
        fail(
            body_rule,
            f"the {status} error body is JSON but labelled "
            f"{media or 'with no Content-Type'}, not application/json",
        )
    return findings, checked, value
