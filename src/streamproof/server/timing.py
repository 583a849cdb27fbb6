"""When each event of a stream is due, and how late it actually went out.

A stream's timing is fixed before its first byte is sent (event ``i`` is due at
``ttft + max(0, i - 1) * gap`` after the request: the role chunk and the first token go out
together, as OpenAI sends them), so sending is a matter of hitting deadlines, and lateness
(actual minus scheduled write time) is a clean measure of how well the server keeps up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Final

__all__ = ["SendStats", "Timing", "TimingError", "event_offsets"]

_MS: Final = 1_000_000
_MAX_MS: Final = 600_000.0
_MAX_TOKENS_PER_CHUNK: Final = 1000
_BUCKET_NS: Final = 50_000  # lateness histogram resolution: 50 µs
_BUCKETS: Final = 20_000  # up to 1 s; later sends land in the last bucket


class TimingError(ValueError):
    """A timing spec that cannot be used (unknown key, not a number, out of range)."""


@dataclass(frozen=True, slots=True)
class Timing:
    """How fast a stream flows. The defaults are quick (a conformance run stays short) yet
    slow enough that the suite's ``http.incremental`` burst heuristic sees a spread-out
    stream: the first content waits >= 20 ms and five content events span >= 8 ms.
    ``ttfb_ms``: when a stream's response headers go (at once by default, as most servers
    do; a server that waits for the first token sends them later), never after its first
    event."""

    ttft_ms: float = 20.0
    gap_ms: float = 2.0
    tokens_per_chunk: int = 1
    ttfb_ms: float = 0.0

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "gap_ms", "ttfb_ms"):
            value = getattr(self, name)
            if not 0 <= value <= _MAX_MS:
                raise TimingError(f"{name} must be between 0 and {_MAX_MS:g}, not {value}")
        if self.ttfb_ms > self.ttft_ms:
            raise TimingError(
                f"ttfb_ms ({self.ttfb_ms:g}) must not exceed ttft_ms ({self.ttft_ms:g}): the "
                "headers go before the first token"
            )
        if not 1 <= self.tokens_per_chunk <= _MAX_TOKENS_PER_CHUNK:
            raise TimingError(
                f"tokens_per_chunk must be between 1 and {_MAX_TOKENS_PER_CHUNK}, "
                f"not {self.tokens_per_chunk}"
            )

    @classmethod
    def parse(cls, spec: str, base: Timing | None = None) -> Timing:
        """``"ttft_ms=100,gap_ms=10,tokens_per_chunk=1,ttfb_ms=50"``; keys left out keep
        ``base``'s value."""
        known = {f.name for f in fields(cls)}
        changes: dict[str, float | int] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise TimingError(
                    f"bad timing item {item!r}: use key=value with keys {', '.join(sorted(known))}"
                )
            try:
                changes[key] = int(value) if key == "tokens_per_chunk" else float(value)
            except ValueError:
                raise TimingError(f"timing {key} must be a number, not {value!r}") from None
        return replace(base or cls(), **changes)

    def spec(self) -> str:
        """The inverse of :meth:`parse` (for URLs and headers)."""
        spec = (
            f"ttft_ms={self.ttft_ms:g},gap_ms={self.gap_ms:g},"
            f"tokens_per_chunk={self.tokens_per_chunk}"
        )
        return spec + (f",ttfb_ms={self.ttfb_ms:g}" if self.ttfb_ms else "")


def event_offsets(count: int, timing: Timing, ticks: Sequence[int] | None = None) -> list[int]:
    """Deadlines (ns after the request) of ``count`` events: event ``i`` at ``ttft + ticks[i]
    * gap``. Without ``ticks`` (or with a list of another length) the first two events go at
    ``ttft`` and each later one a gap after the previous one."""
    ttft = int(timing.ttft_ms * _MS)
    gap = int(timing.gap_ms * _MS)
    if ticks is None or len(ticks) != count:
        ticks = [max(0, i - 1) for i in range(count)]
    return [ttft + tick * gap for tick in ticks]


class SendStats:
    """Send lateness of every frame written, and how many responses ran (every response is
    sent as frames; a stream is one that lasts).

    Written only by the server's event loop thread; read from any thread (plain ints, read
    under the GIL). Lateness is kept as a fixed 50 µs histogram, so memory stays constant
    however long the server runs, and percentiles are exact to the bucket.
    """

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.cancelled = 0  # the client went away before the response ended
        self.reset()

    def reset(self) -> None:
        """Start a new lateness measurement (e.g. after a ramp-up); stream counts go on."""
        self.count = 0
        self.total_ns = 0
        self.max_ns = 0
        self.early = 0  # writes made a little before their deadline (timer granularity)
        self._hist = [0] * _BUCKETS

    @property
    def active(self) -> int:
        return self.started - self.finished - self.cancelled

    def record(self, lateness_ns: int) -> None:
        self.count += 1
        if lateness_ns < 0:
            self.early += 1
            lateness_ns = 0
        self.total_ns += lateness_ns
        if lateness_ns > self.max_ns:
            self.max_ns = lateness_ns
        self._hist[min(lateness_ns // _BUCKET_NS, _BUCKETS - 1)] += 1

    def percentile_ms(self, q: float) -> float:
        """Lateness at quantile ``q`` (0..1) in ms: the upper edge of its bucket (at most
        the maximum)."""
        rank = max(1, round(q * self.count))
        seen = 0
        for bucket, n in enumerate(self._hist):
            seen += n
            if seen >= rank:
                return min((bucket + 1) * _BUCKET_NS, self.max_ns) / _MS
        return self.max_ns / _MS

    def snapshot(self) -> dict[str, float | int]:
        """Everything at once, for a report or a benchmark line."""
        return {
            "frames": self.count,
            "early": self.early,
            "mean_ms": self.total_ns / self.count / _MS if self.count else 0.0,
            "p50_ms": self.percentile_ms(0.50),
            "p99_ms": self.percentile_ms(0.99),
            "max_ms": self.max_ns / _MS,
            "responses_started": self.started,
            "responses_active": self.active,
            "responses_cancelled": self.cancelled,
        }
