"""A fault: data naming the rules it breaks, plus its effect as edits at fixed layers.

Each layer sees the response at one stage, so an effect is a small pure function and faults
combine by composition (``/fault/crlf,stall-mid`` applies both):

* ``request``  — the parsed request before the endpoint sees it (accept a bad key, force
  ``stream``);
* ``chunks``   — the API's list of payloads before serialisation (dicts, and raw ``bytes``
  payloads written verbatim after ``data: ``): the protocol-level faults;
* ``reply``    — status, headers and error body of the endpoint's reply;
* ``frames``   — the timed wire frames (see ``send.py``): SSE encoding faults, timing
  (``buffered``) and transport faults (stall, reset, broken framing) as control frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..endpoint import Context, Reply, Request, StreamInfo
from ..send import Frame
from ..timing import Timing

__all__ = ["ChunkEdit", "Fault", "FaultSet", "FrameEdit", "ReplyEdit", "RequestEdit"]

RequestEdit = Callable[[Request, Context], Request]
ChunkEdit = Callable[[list[Any], StreamInfo], list[Any]]
ReplyEdit = Callable[[Reply], Reply]
FrameEdit = Callable[[list[Frame], Timing], list[Frame]]


@dataclass(frozen=True, slots=True)
class Fault:
    """One way to be wrong. ``rules``: the catalogue ids it trips in ``scenario`` (a scenario
    name of ``streamproof.scenarios``) for ``api`` (``"any"``: the effect is API-agnostic and
    so are its rules; ``{api}`` in a rule id stands for the API it runs against) — all of
    them, its collateral ones included, so that a test can hold the suite to exactly that
    set. ``weaker``: those of ``rules`` that it trips at a weaker
    level than the catalogue's (a MUST rule's warning, e.g. a repeated ``type``).
    ``refuses_connect``: it works at the URL level — ``ReferenceServer.url_for`` points at a
    port that refuses connections. ``setup``: the suite's setup check refuses the endpoint
    before any rule is judged (a usage error); these are words of its one line."""

    name: str
    api: Literal["openai", "anthropic", "responses", "any"]
    rules: tuple[str, ...]
    scenario: str
    description: str
    request: RequestEdit | None = None
    chunks: ChunkEdit | None = None
    reply: ReplyEdit | None = None
    frames: FrameEdit | None = None
    refuses_connect: bool = False
    weaker: tuple[str, ...] = ()
    setup: str = ""

    def rules_for(self, api: str) -> tuple[str, ...]:
        """The rule ids it trips against ``api`` (``{api}`` filled in)."""
        return tuple(r.replace("{api}", api) for r in self.rules)

    def weaker_for(self, api: str) -> tuple[str, ...]:
        return tuple(r.replace("{api}", api) for r in self.weaker)

    @property
    def layers(self) -> tuple[str, ...]:
        names = ("request", "chunks", "reply", "frames")
        used = tuple(n for n in names if getattr(self, n) is not None)
        return ("url", *used) if self.refuses_connect else used


@dataclass(frozen=True, slots=True)
class FaultSet:
    """The faults selected for one request, applied in selection order at each layer."""

    faults: tuple[Fault, ...] = ()

    def request(self, req: Request, ctx: Context) -> Request:
        for f in self.faults:
            if f.request is not None:
                req = f.request(req, ctx)
        return req

    def chunks(self, items: list[Any], info: StreamInfo) -> list[Any]:
        for f in self.faults:
            if f.chunks is not None:
                items = f.chunks(items, info)
        return items

    def reply(self, reply: Reply) -> Reply:
        for f in self.faults:
            if f.reply is not None:
                reply = f.reply(reply)
        return reply

    def frames(self, frames: list[Frame], timing: Timing) -> list[Frame]:
        for f in self.faults:
            if f.frames is not None:
                frames = f.frames(frames, timing)
        return frames
