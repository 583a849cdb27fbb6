"""From a parsed request to a planned response: selection, routing, faults, timing.

Per request the path prefixes (``/fault/a,b``, ``/timing/ttft_ms=...``, ``/stamps``, any
order, before ``/v1``) and the ``x-streamproof-fault`` / ``-timing`` / ``-stamps`` headers
choose faults, timing and send stamps, so one running server serves a whole test session. A
fault applies to the requests of its API (``any``: of both); the other API runs clean.
A script (``script.py``), when the server has one, may answer the request instead of the
generated answer, adding its own faults and timing (applied after the request's selection).
Then the layers run in order: request edits, the endpoint (which applies chunk edits), reply
edits, the timed frames, frame edits; the result is a :class:`Plan` for the sender.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Final
from urllib.parse import unquote

import orjson

from . import anthropic_messages, openai_chat, openai_responses
from .endpoint import Api, Context, Handler, Reply, Request, Store
from .faults import FAULTS, Fault, FaultSet, find_fault
from .faults.wire import PARAMETRIC
from .script import Script, Scripted
from .send import DATA, EVENT, HEAD, STALL, Frame, Plan
from .timing import Timing, TimingError, event_offsets

__all__ = ["APIS", "App", "Selection", "SelectionError", "select"]

APIS: Final[tuple[Api, ...]] = (openai_chat.API, anthropic_messages.API, openai_responses.API)
_log = logging.getLogger("streamproof.server")


class SelectionError(ValueError):
    """A bad fault name or timing spec; ``path`` is the API path, for the error's shape."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class Selection:
    path: str
    faults: tuple[Fault, ...]
    timing: Timing
    stamps: bool


def _split(target: str) -> tuple[str, list[str], list[str], bool]:
    """The API path and the raw prefix selections of a request-target."""
    segments = target.split("?", 1)[0].split("/")[1:]
    names: list[str] = []
    timings: list[str] = []
    stamps = False
    i = 0
    while i < len(segments):
        segment = segments[i]
        if segment in ("fault", "timing") and i + 1 < len(segments):
            (names if segment == "fault" else timings).append(unquote(segments[i + 1]))
            i += 2
        elif segment == "stamps":
            stamps = True
            i += 1
        else:
            break
    return "/" + "/".join(segments[i:]), names, timings, stamps


def select(target: str, headers: Mapping[str, str], timing: Timing) -> Selection:
    """Parse the selection of one request (headers apply after the path prefixes)."""
    path, raw_names, timings, stamps = _split(target)
    raw_names.append(headers.get("x-streamproof-fault", ""))
    timings.append(headers.get("x-streamproof-timing", ""))
    stamps = stamps or headers.get("x-streamproof-stamps", "").strip().lower() in ("1", "true")
    names = list(dict.fromkeys(n.strip() for raw in raw_names for n in raw.split(",") if n.strip()))
    faults = []
    for name in names:
        try:
            faults.append(find_fault(name))
        except KeyError:
            known = ", ".join([*FAULTS, *(f"{p}=P" for p in PARAMETRIC)])
            raise SelectionError(f"unknown fault(s): {name}. Known faults: {known}", path) from None
        except ValueError as exc:
            raise SelectionError(f"fault {name}: {exc}", path) from None
    try:
        for spec in timings:
            timing = Timing.parse(spec, timing)
    except TimingError as exc:
        raise SelectionError(str(exc), path) from None
    return Selection(path, tuple(faults), timing, stamps)


class App:
    """Routes requests to the endpoints of ``apis`` and plans their responses.

    Exceptions raised by an endpoint become a 500 in the API's error shape and are kept in
    :attr:`errors` (a test can assert it stays empty).
    """

    def __init__(
        self,
        api_key: str | None,
        timing: Timing,
        apis: Iterable[Api] = APIS,
        script: Script | None = None,
    ) -> None:
        self.api_key = api_key
        self.timing = timing
        self.script = script
        self.errors: list[BaseException] = []
        self.store = Store()
        self._routes: dict[str, tuple[Api, Mapping[str, Handler]]] = {
            path: (api, methods) for api in apis for path, methods in api.routes.items()
        }
        self._apis = tuple(apis)

    def plan(self, req: Request) -> Plan:
        try:
            sel = select(req.target, req.headers, self.timing)
        except SelectionError as exc:
            return self.refuse(req, 400, str(exc), "invalid_selection", path=exc.path)
        route = self._routes.get(sel.path) or self._routes.get(_templated(sel.path))
        if route is None:
            return self.refuse(req, 404, f"Unknown request URL: {req.method} {sel.path}.",
                               "unknown_url", path=sel.path)  # fmt: skip
        api, methods = route
        handler = methods.get(req.method)
        if handler is None:
            allowed = ", ".join(methods)
            return self.refuse(req, 405, f"Method {req.method} not allowed; use {allowed}.",
                               "method_not_allowed", path=sel.path)  # fmt: skip
        scripted = self._scripted(api, req.body)
        timing = sel.timing
        chosen = sel.faults
        if scripted is not None:
            chosen += scripted.faults
            timing = Timing.parse(scripted.timing, timing) if scripted.timing else timing
        # a fault of the other API is left out: one base URL serves a run of both APIs, and
        # the other API's requests run clean
        faults = FaultSet(tuple(f for f in chosen if f.api in ("any", api.name)))
        ctx = Context(self.api_key, timing, faults, scripted, store=self.store)
        req = faults.request(replace(req, path=sel.path), ctx)
        try:
            reply = handler(req, ctx)
        except Exception as exc:  # an endpoint bug must not take the connection down
            _log.exception("endpoint %s %s failed", req.method, sel.path)
            self.errors.append(exc)
            reply = api.error(500, f"internal error: {exc!r}", None, ctx)
        return _plan(faults.reply(reply), faults, timing, req.keep_alive, sel.stamps)

    def _scripted(self, api: Api, raw: bytes) -> Scripted | None:
        """The script's reply to this request body, if a rule matches (a body that is not
        a conversation matches nothing: the endpoint refuses it as usual)."""
        if self.script is None:
            return None
        try:
            turn = api.turn(orjson.loads(raw))
        except orjson.JSONDecodeError:
            return None
        return None if turn is None else self.script.reply_for(api.name, turn)

    def refuse(
        self, req: Request, status: int, message: str, code: str | None, *, path: str | None = None
    ) -> Plan:
        """An error answer in the shape of the API the request belongs to (its route; for an
        unknown path, the API that claims it by prefix or header; else the first); used by the
        connection too (malformed request, body too large), which then closes."""
        path = _split(req.target)[0] if path is None else path
        route = self._routes.get(path)
        if route is not None:
            api = route[0]
        else:
            claims = (a for a in self._apis if a.claims(path, req.headers))
            api = next(claims, self._apis[0])
        ctx = Context(self.api_key, self.timing, FaultSet())
        return _plan(api.error(status, message, code, ctx), FaultSet(), self.timing,
                     req.keep_alive, stamps=False)  # fmt: skip


def _templated(path: str) -> str:
    """The route of a path that names a stored object: ``/v1/responses/resp_1`` is served by
    ``/v1/responses/{id}``."""
    return path.rsplit("/", 1)[0] + "/{id}"


def _plan(reply: Reply, faults: FaultSet, timing: Timing, keep_alive: bool, stamps: bool) -> Plan:
    if reply.events is not None:
        offsets = event_offsets(len(reply.events), timing, reply.ticks)
        head = Frame(int(timing.ttfb_ms * 1_000_000), b"", HEAD)
        frames = [head, *map(Frame, offsets, reply.events)]
    else:
        frames = [Frame(0, b"", HEAD), Frame(0, reply.body, DATA)]
    frames = faults.frames(frames, timing)
    chunked = reply.events is not None
    keep_alive = keep_alive and all(f.kind < STALL for f in frames)
    length = None if chunked else sum(len(f.data) for f in frames if f.kind in (EVENT, DATA))
    return Plan(_head(reply, length, keep_alive), frames, chunked, keep_alive, stamps)


def _head(reply: Reply, length: int | None, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(reply.status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {reply.status} {reason}", "server: streamproof"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    lines.append("transfer-encoding: chunked" if length is None else f"content-length: {length}")
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
