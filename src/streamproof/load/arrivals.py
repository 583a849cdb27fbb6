"""The open loop's arrival schedule (``--arrival-rate``): one per process, shared by its
users, so the process sends at the rate whatever its user count; with ``--processes`` each
worker takes an equal share of the rate and its own seed."""

from __future__ import annotations

import random
import time

__all__ = ["Arrivals"]

_pc = time.perf_counter_ns


class Arrivals:
    """Open-loop schedule shared by a process's users: ``take()`` hands out the next
    arrival time (``perf_counter_ns``), Poisson or evenly spaced at ``rate`` per second."""

    def __init__(self, rate: float, process: str, seed: int = 0) -> None:
        self.rate = rate
        self.poisson = process == "poisson"
        self._rng = random.Random(seed)
        self._next: int | None = None

    def take(self) -> int:
        now = _pc()
        if self._next is None:
            self._next = now
        t = self._next
        gap = self._rng.expovariate(self.rate) if self.poisson else 1.0 / self.rate
        self._next = t + int(gap * 1e9)
        return t
