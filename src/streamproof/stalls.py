"""When this process itself was not running on time: the client's own stalls.

A stream whose events arrive as one burst after a long silence looks buffered
(``http.incremental``) — unless the silence was the client's: a starved CI runner, a long
garbage collection, the GIL held by another scenario's validator, a reference server in the
same process that could not run. Reading timestamps alone cannot tell these apart, so a
daemon thread (a greenlet under gevent) sleeps :data:`TICK_NS` at a time and records every
wake-up that came :data:`STALL_NS` or more late; a check subtracts those intervals from the
silence it measured before it calls a stream buffered.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence
from typing import Final

__all__ = ["STALL_NS", "TICK_NS", "WATCH", "Stall", "StallWatch", "overlap"]

TICK_NS: Final = 10_000_000
STALL_NS: Final = 50_000_000
_KEEP: Final = 4096  # the latest stalls; older ones belong to streams long judged

Stall = tuple[int, int]  # (start, end) in time.perf_counter_ns()


class StallWatch:
    """Records the intervals in which this process could not run a thread on time."""

    def __init__(self) -> None:
        self._stalls: collections.deque[Stall] = collections.deque(maxlen=_KEEP)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching (once per process; later calls cost one attribute read)."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="streamproof-stall-watch", daemon=True
                )
                self._thread.start()

    def between(self, t0: int, t1: int) -> tuple[Stall, ...]:
        """The recorded stalls that overlap ``[t0, t1]``, clipped to it."""
        return tuple((max(a, t0), min(b, t1)) for a, b in list(self._stalls) if b > t0 and a < t1)

    def _run(self) -> None:
        last = time.perf_counter_ns()
        while True:
            time.sleep(TICK_NS / 1e9)
            now = time.perf_counter_ns()
            if now - last - TICK_NS >= STALL_NS:
                self._stalls.append((last + TICK_NS, now))
            last = now


def overlap(stalls: Sequence[Stall], t0: int, t1: int) -> int:
    """Nanoseconds of ``[t0, t1]`` covered by ``stalls`` (which do not overlap each other)."""
    return sum(max(0, min(b, t1) - max(a, t0)) for a, b in stalls)


WATCH: Final = StallWatch()
