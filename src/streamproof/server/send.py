"""Sending one response: precomputed frames written at absolute deadlines.

A response is planned completely before its first byte goes out: a list of frames, each
``(at, data, kind)`` with ``at`` in ns after the request. :class:`Sender` writes them when
:class:`Clock` — one ``loop.call_at`` timer at absolute, millisecond-aligned deadlines,
shared by all responses — says they are due: no coroutine per event, no drift, and every
frame already due goes out in one ``transport.write``. That keeps a thousand concurrent
streams cheap and makes send lateness a meaningful number. Control frames end a response
abnormally (the transport layer of fault injection): stall with the connection open, reset
it, or close it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import socket
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Final, NamedTuple

from .timing import SendStats

__all__ = [
    "CLOSE",
    "DATA",
    "EVENT",
    "HEAD",
    "REPEAT",
    "RESET",
    "STALL",
    "WIRE",
    "Clock",
    "Frame",
    "Plan",
    "Sender",
]

# Frame kinds. EVENT is one serialised SSE event (stamped when stamps are on); DATA is other
# body bytes; both go through the body framing (a chunk each, or raw under Content-Length).
# HEAD writes the status line and headers. WIRE bytes bypass the framing (to break it).
# REPEAT is body bytes sent many times (``repeat(block, count)``): a body far larger than
# memory, written a piece at a time as the socket drains (a hostile endpoint's 100 MB line).
EVENT: Final = 0
DATA: Final = 1
HEAD: Final = 2
WIRE: Final = 3
REPEAT: Final = 7
# Control: STALL stops sending and keeps the connection open (until the client leaves or the
# cap); RESET aborts the connection with a TCP RST; CLOSE closes it (FIN) mid-response.
STALL: Final = 4
RESET: Final = 5
CLOSE: Final = 6

EARLY_NS: Final = 500_000  # a frame may leave this much before its deadline (half a slot)
_SLOT_NS: Final = 1_000_000  # EARLY_NS is half of it: a slot's frames are all due at its start
_SLOT_S: Final = _SLOT_NS / 1e9
_SAME_CLOCK_S: Final = 0.002
_log = logging.getLogger("streamproof.server")
_TERMINATOR: Final = b"0\r\n\r\n"
_REPEAT_HIGH: Final = 1024 * 1024  # REPEAT writes while the write buffer is under this
_LINGER_RST: Final = struct.pack("ii", 1, 0)


class Frame(NamedTuple):
    at: int  # ns after the request
    data: bytes
    kind: int = EVENT


def repeat(at: int, block: bytes, count: int) -> Frame:
    """A REPEAT frame: ``block`` sent ``count`` times, without ever holding them all."""
    return Frame(at, struct.pack("q", count) + block, REPEAT)


@dataclass(slots=True)
class Plan:
    """Everything about one response, decided before it starts."""

    head: bytes
    frames: list[Frame]
    chunked: bool  # body framing: chunked transfer-encoding, else Content-Length
    keep_alive: bool  # the connection may serve another request afterwards
    stamps: bool = False  # put ": t=<perf_counter_ns>" before each event


class Sender:
    """Writes one :class:`Plan` to a transport; ``done(reusable)`` is called when it ends by
    itself (``reusable``: the connection may carry another request). :meth:`cancel` stops it
    when the client is gone. No response outlives ``cap_ns``: a stall or a slow drip is cut
    with a reset at the cap, so nothing leaks."""

    __slots__ = (
        "_chunked",
        "_clock",
        "_done",
        "_frames",
        "_head",
        "_i",
        "_keep_alive",
        "_left",
        "_slot",
        "_stamps",
        "_stats",
        "_t0",
        "_transport",
        "active",
    )

    def __init__(
        self,
        clock: Clock,
        transport: asyncio.Transport,
        plan: Plan,
        stats: SendStats,
        cap_ns: int,
        done: Callable[[bool], None],
    ) -> None:
        self._clock = clock
        self._transport = transport
        self._head = plan.head
        self._chunked = plan.chunked
        self._keep_alive = plan.keep_alive
        self._stamps = plan.stamps
        self._stats = stats
        self._done = done
        self._frames = _Packed.of(_capped(plan.frames, cap_ns))
        self._i = 0
        self._left = -1  # REPEAT: blocks still to send of frame _i (-1: not started)
        self._slot = 0  # the clock slot this sender waits in (0: none)
        self._t0 = 0
        self.active = False

    def start(self, t0: int) -> None:
        """Begin; ``t0`` is the request's ``perf_counter_ns`` (frame deadlines count from it)."""
        self._t0 = t0
        self.active = True
        self._stats.started += 1
        self._tick()

    def cancel(self) -> None:
        """The client went away: leave the clock."""
        if self.active:
            self.active = False
            self._stats.cancelled += 1
            if self._slot:
                self._clock.forget(self, self._slot)
                self._slot = 0

    def _tick(self) -> None:
        self._slot = 0
        if not self.active:
            return
        ats, kinds, bounds, blob = self._frames
        count = len(kinds)
        i = self._i
        now = perf_counter_ns()
        limit = now + EARLY_NS
        t0 = self._t0
        stamps = self._stamps
        chunked = self._chunked
        record = self._stats.record
        parts: list[bytes] = []
        while i < count:
            due = t0 + ats[i]
            if due > limit:
                break
            kind = kinds[i]
            data = blob[bounds[i] : bounds[i + 1]]
            i += 1
            if kind <= DATA:  # EVENT or DATA
                if kind == EVENT and stamps:
                    data = b": t=%d\n%b" % (now, data)
                if not chunked:
                    parts.append(data)
                elif data:  # an empty chunk would end the body
                    parts.append(b"%x\r\n%b\r\n" % (len(data), data))
                record(now - due)
            elif kind == HEAD:
                parts.append(self._head)
            elif kind == WIRE:
                parts.append(data)
                record(now - due)
            elif kind == REPEAT:
                if parts:
                    self._transport.write(b"".join(parts))
                    parts = []
                if not self._repeat(data, chunked):
                    self._i = i - 1  # more to send once the socket drains
                    self._slot = self._clock.wake(self, now + _SLOT_NS)
                    return
            else:
                self._i = i
                if parts:
                    self._transport.write(b"".join(parts))
                self._control(kind)
                return
        self._i = i
        if i == count and chunked:
            parts.append(_TERMINATOR)
        if parts:
            self._transport.write(b"".join(parts))
        if i < count:
            self._slot = self._clock.wake(self, t0 + ats[i])
        else:
            self._end(self._keep_alive)

    def _repeat(self, data: bytes, chunked: bool) -> bool:
        """Write blocks of a REPEAT frame while the write buffer is low; True when done."""
        block = data[8:]
        if self._left < 0:
            self._left = struct.unpack("q", data[:8])[0]
        if chunked and block:
            block = b"%x\r\n%b\r\n" % (len(block), block)
        transport = self._transport
        while self._left > 0:
            if transport.is_closing() or transport.get_write_buffer_size() >= _REPEAT_HIGH:
                return transport.is_closing()
            transport.write(block)
            self._left -= 1
        self._left = -1
        return True

    def _control(self, kind: int) -> None:
        if kind == STALL:  # stay silent; the cap frame (always last) or the client ends it
            self._slot = self._clock.wake(self, self._t0 + self._frames.ats[-1])
            return
        if kind == RESET:
            sock = self._transport.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST instead of FIN
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            self._transport.abort()
        else:
            self._transport.close()
        self._end(False)

    def _fail(self) -> None:
        self._transport.abort()
        self._end(False)

    def _end(self, reusable: bool) -> None:
        self.active = False
        self._stats.finished += 1
        self._done(reusable)


class Clock:
    """The one timer of an event loop's senders. Deadlines are rounded to the nearest 1 ms
    slot; each slot is one ``loop.call_at`` at an absolute, millisecond-aligned time, and
    every sender due in it ticks in that one callback (a frame leaves at most EARLY_NS
    early). A timer per sender would cost a timer-heap entry and a loop callback per event.
    uvloop's timers count whole milliseconds of the same monotonic clock as perf_counter:
    aligned to it, they never fire early."""

    __slots__ = ("_armed", "_firing", "_heap", "_loop", "_offset", "_slots", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        offset = loop.time() - perf_counter_ns() / 1e9  # 0 where both are CLOCK_MONOTONIC
        self._offset = 0.0 if abs(offset) < _SAME_CLOCK_S else offset
        self._slots: dict[int, set[Sender]] = {}
        self._heap: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        self._armed = 0  # the slot the timer is set for (0: none)
        self._firing = False  # in _fire, which arms the timer once at its end

    def wake(self, sender: Sender, deadline_ns: int) -> int:
        """Tick ``sender`` at ``deadline_ns`` (perf_counter_ns); returns its slot."""
        slot = (deadline_ns + _SLOT_NS // 2) // _SLOT_NS
        bucket = self._slots.get(slot)
        if bucket is None:
            self._slots[slot] = {sender}
            heapq.heappush(self._heap, slot)
            if not self._firing and (not self._armed or slot < self._armed):
                self._arm(slot)
        else:
            bucket.add(sender)
        return slot

    def forget(self, sender: Sender, slot: int) -> None:
        bucket = self._slots.get(slot)
        if bucket is not None:
            bucket.discard(sender)

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = slot
        self._timer = self._loop.call_at(slot * _SLOT_S + self._offset, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed = 0
        self._firing = True
        heap = self._heap
        slots = self._slots
        limit = perf_counter_ns() // _SLOT_NS  # slots due by now: all their frames are due
        try:
            while heap and heap[0] <= limit:
                for sender in slots.pop(heapq.heappop(heap)):
                    try:
                        sender._tick()
                    except Exception:  # a bug ends that response only, never the others
                        _log.exception("sending a response failed")
                        sender._fail()
        finally:
            self._firing = False
            if heap:
                self._arm(heap[0])


class _Packed(NamedTuple):
    """A response's frames as four flat objects: deadlines, kinds, data bounds and all data
    in one blob. No object per frame: a full garbage collection with a thousand open streams
    would otherwise walk 300 000 frames (30+ ms of send lateness each time)."""

    ats: array[int]
    kinds: bytes
    bounds: array[int]  # frame i's data is blob[bounds[i]:bounds[i + 1]]
    blob: bytes

    @classmethod
    def of(cls, frames: list[Frame]) -> _Packed:
        sizes = (len(f.data) for f in frames)
        return cls(
            array("q", [f.at for f in frames]),
            bytes(f.kind for f in frames),
            array("q", [0, *itertools.accumulate(sizes)]),
            b"".join(f.data for f in frames),
        )


def _capped(frames: list[Frame], cap_ns: int) -> list[Frame]:
    """The frames due before the cap; whatever would go on longer (or stall) is reset there."""
    for i, frame in enumerate(frames):
        if frame.at > cap_ns or frame.kind == STALL:
            return [*frames[: i + (frame.kind == STALL)], Frame(cap_ns, b"", RESET)]
    return frames
