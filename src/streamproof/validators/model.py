"""What every stream model shares: feeding, transitions to the registered checks, findings.

A stream model (``openai_model.py``, ``anthropic_model.py``) parses each event of one
response once, keeps the state a client keeps (the message it rebuilds, the stamps of content
events) and announces what happens as *transitions* (a choice or block opened, a finish, the
usage, an error, the end). The rules are not in the model: they are checks registered by
catalogue id (``registry.py``) that listen to the transitions. The suite and ``streamproof
check`` run a model with every check of its API; ``rules=False`` runs it bare.

The model never raises on bad input (a broken server is the normal case). A check that raises
is a tool error, kept in ``crashes`` with its traceback (the run says so, verdict ``error``),
and the other checks go on.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final

from ..findings import Finding, excerpt
from ..rules import Level
from ..sse import Event
from .base import MESSAGE_MAX_CHARS, Stamps
from .registry import EMPTY_PLAN, Hook, plan

__all__ = ["MAX_DISTINCT", "StreamModel", "keep_crash"]

MAX_DISTINCT: Final = 5  # distinct findings listed per rule; further ones are only counted
MAX_CRASHES: Final = 3


def keep_crash(crashes: list[str], api: str, where: str, exc: Exception) -> None:
    """A check (or a model) raised: a tool error, kept with its traceback (the first few);
    the run says so (verdict ``error``) instead of blaming the endpoint."""
    if len(crashes) < MAX_CRASHES:
        trace = "".join(traceback.format_exception(exc)[-4:])
        crashes.append(f"{api} check failed: {where}: {exc!r}\n{trace}")


class StreamModel:
    """Base of the per-API stream models: subclasses implement ``_event`` (and ``_end`` for
    their own bookkeeping) and list their transitions in ``TRANSITIONS``; ``end`` is
    announced here, after ``_end``.

    ``room``: characters the rebuilt message may still take (``MESSAGE_MAX_CHARS``; 0 when
    bare); ``message_cut``: the message stopped growing there. ``complete``: the stream ended by
    itself, neither cut by the transport nor ended by an error (set by the subclass's
    ``_end``)."""

    # slots: the load generator reads and writes these per event, and a slot costs less than
    # an instance dict of this size (~25 ns an access, ~15 accesses an event)
    __slots__ = (
        "_broken", "_distinct", "_on", "_plan", "_ran", "_seen", "checked", "complete",
        "content_t", "crashes", "end_t", "error_text", "events", "expect", "findings",
        "finished", "first_index", "last_t", "message_cut", "request", "room", "rules",
        "truncated", "visible_t",
    )  # fmt: skip
    api: ClassVar[str] = ""
    TRANSITIONS: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        request: Mapping[str, Any] | None = None,
        *,
        expect: frozenset[str] = frozenset(),
        rules: bool = True,
        content_t: list[int] | None = None,
    ) -> None:
        self.request: Mapping[str, Any] = request or {}
        self.expect = expect  # scenario rules to enforce, e.g. "openai.finish-length"
        self.rules = rules
        self.findings: list[Finding] = []
        self.checked: set[str] = set()
        self.crashes: list[str] = []
        # arrival stamps of content events: every one under load (inter-token latency),
        # else the count, the first and the last in constant memory
        self.content_t: Stamps | list[int] = content_t if content_t is not None else Stamps()
        self.first_index = -1  # index of the first content event
        self.visible_t: int | None = None  # the first content a user sees (not reasoning)
        self.end_t: int | None = None  # the terminal event ([DONE], message_stop)
        self.last_t: int | None = None  # the last event of any kind
        self.error_text: str | None = None  # a mid-stream error's message
        # bare, no message is rebuilt (nothing reads it under load): cut from the start
        self.room = MESSAGE_MAX_CHARS if rules else 0
        self.message_cut = not rules
        self.events = 0
        self.finished = False
        self.truncated = False
        self.complete = False
        self._plan = plan(self.api, self.TRANSITIONS | {"end"}) if rules else EMPTY_PLAN
        self._on = self._plan.on
        self._ran: set[str] = set()
        self._broken: set[str] = set()  # rules whose check raised: neither passed nor failed
        # noise control: (rule, key, level) -> [finding position or -1, occurrences]
        self._seen: dict[tuple[str, object, Level | None], list[int]] = {}
        self._distinct: dict[str, int] = {}

    # -- feeding -----------------------------------------------------------------------

    def feed(self, events: list[Event]) -> None:
        if events:
            self.last_t = events[-1].t
        for event in events:
            self.events += 1
            self._take(event)

    def _take(self, event: Event) -> None:
        """One event through the model (``events`` already counts it)."""
        try:
            self._event(event)
        except Exception as exc:  # a bug of the tool: never the endpoint's finding
            self._crashed(exc, f"the {self.api} model at event {event.index}")

    def finish(self, *, truncated: bool = False) -> None:
        """The body ended. ``truncated``: it ended by a transport failure, not by itself."""
        if self.finished:
            return
        self.finished = True
        self.truncated = truncated
        try:
            self._end(truncated)
        except Exception as exc:
            self._crashed(exc, f"the {self.api} model at the end of the stream")
        self.emit("end", None)
        for c in self._plan.checks:
            if c.rule in self._broken:
                continue
            if c.when is None:
                if c.rule in self._ran:
                    self.checked.add(c.rule)
                continue
            try:
                if c.when(self):
                    self.checked.add(c.rule)
            except Exception as exc:
                self._crashed(exc, f"{c.rule}'s precondition")
        self._summarise()

    def _event(self, event: Event) -> None:
        raise NotImplementedError

    def _end(self, truncated: bool) -> None:
        self.complete = not truncated

    @property
    def ended_by_error(self) -> bool:
        """A well-formed mid-stream error ended the stream (clients then raise it)."""
        return False

    @property
    def usage_tokens(self) -> int | None:
        """The server's output token count, when it sent one."""
        return None

    @property
    def output_tokens(self) -> tuple[int, str]:
        """N and its source: the server's usage when present, else the content events (also
        when usage counts 0 although content streamed: a server that does not count)."""
        tokens = self.usage_tokens
        if tokens is not None and (tokens or not self.content_t):
            return tokens, "usage"
        return len(self.content_t), "events"

    def message(self) -> dict[str, Any]:
        """The message a client rebuilds from the stream (shape is API-specific)."""
        raise NotImplementedError

    # -- transitions -------------------------------------------------------------------

    def listens(self, name: str) -> bool:
        """Whether a check listens to ``name`` (a model may skip building a transition's
        subject on its hot path when none does)."""
        return name in self._on

    def emit(self, name: str, at: Event | None, subject: Any = None) -> None:
        """Announce a transition to the checks that listen to it."""
        hooks = self._on.get(name)
        if hooks:
            for rule, hook in hooks:
                self._call(rule, hook, at, subject)

    def _call(self, rule: str, hook: Hook, at: Event | None, subject: Any) -> None:
        try:
            ran = hook(self, at, subject)
        except Exception as exc:
            where = "the end of the stream" if at is None else f"event {at.index}"
            self._broken.add(rule)
            self._crashed(exc, f"{rule} at {where}")
            return
        if ran is not False:
            self._ran.add(rule)

    def _crashed(self, exc: Exception, where: str) -> None:
        keep_crash(self.crashes, self.api, where, exc)

    # -- findings ----------------------------------------------------------------------

    def flag(
        self,
        rule: str,
        key: object,
        at: Event | int | None,
        message: str | Callable[[], str],
        level_as: Level | None = None,
        data: str = "",
    ) -> None:
        """Report a problem once per (rule, key, level); later occurrences are only counted,
        and past ``MAX_DISTINCT`` distinct keys of one rule only the number is told.
        ``message`` may be a function, called only when the finding is made. ``level_as``: a
        weaker level for this occurrence (see the catalogue's header)."""
        slot = (rule, key, level_as)
        seen = self._seen.get(slot)
        if seen is not None:
            seen[1] += 1
            return
        distinct = self._distinct.get(rule, 0) + 1
        self._distinct[rule] = distinct
        if distinct > MAX_DISTINCT:
            self._seen[slot] = [-1, 1]
            return
        self._seen[slot] = [len(self.findings), 1]
        index = at.index if isinstance(at, Event) else at
        if not data and isinstance(at, Event):
            data = at.data
        text = message if isinstance(message, str) else message()
        self.findings.append(Finding(rule, text, index, excerpt(data), level_as))

    def _summarise(self) -> None:
        for position, count in self._seen.values():
            if position >= 0 and count > 1:
                old = self.findings[position]
                self.findings[position] = Finding(
                    old.rule,
                    f"{old.message} [{count} occurrences in all]",
                    old.event,
                    old.excerpt,
                    old.level_as,
                )
        for rule, distinct in self._distinct.items():
            if distinct > MAX_DISTINCT:
                self.findings.append(
                    Finding(
                        rule,
                        f"{distinct - MAX_DISTINCT} more distinct problem(s) of this kind, "
                        "not listed one by one",
                    )
                )
