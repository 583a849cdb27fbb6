"""Per-request stamps → the metrics of load-metrics.md, and their aggregation. Pure: no
Locust, no gevent, no I/O, so every definition is unit-tested on hand-made stamps.

A *record* is one request as plain data (JSON and msgpack friendly, so a worker can ship it
to the master): stamps are integers in microseconds after ``t_send`` (the request written),
``wall`` is the wall-clock time of ``t_send`` (to align workers on one time axis).

=================  =========================================================================
record key         meaning
=================  =========================================================================
``api``            ``openai``, ``anthropic`` or ``responses``
``completed``      the stream was read to its end (2xx, it ended by itself, no transport or
                   stream error): its figures count, whatever its findings
``ok``             completed and no MUST rule broken: the request succeeded
``aborted``        closed on purpose by the interrupting user (neither completed nor failed)
``retried``        sent a second time after a stale keep-alive connection (counted)
``error``          failure kind (``http.503``, ``transport.idle``, ``stream.error``,
                   ``protocol`` for a completed stream that broke a MUST rule) or None
``violations``     rule id → level (MUST or SHOULD) of each rule the stream broke
                   (validation on)
``wall``           ``time.time()`` at ``t_send``
``sched_us``       ``t_send - t_sched`` (open loop), else None
``ttfb_us``        response headers; ``content_us``: every content event; ``visible_us``: the
                   first non-reasoning one; ``end_us``: ``[DONE]`` / ``message_stop`` /
                   Responses' terminal event (completed, incomplete, failed);
                   ``last_us``: the last event of any kind; ``dur_us``: the whole exchange
``tokens``         output tokens N; ``source``: ``usage`` or ``events``
``worker``         the Locust worker index that sent it (0 in a single process)
``ttft_lag_us``    with send stamps: how late the first content event was read
=================  =========================================================================

Percentiles are computed from raw samples with linear interpolation between closest ranks
(numpy's default), never from averages or histograms. Memory stays bounded: each sample set
keeps every sample up to a cap, then a uniform reservoir sample (Vitter's algorithm R).
"""

from __future__ import annotations

import itertools
import math
import random
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .metric_defs import LATENCIES, SAMPLED, SCHED_LAG, SLO, THROUGHPUT

__all__ = [
    "METRICS",
    "PERCENTILES",
    "Aggregate",
    "LagHistogram",
    "RequestMetrics",
    "Reservoir",
    "Slo",
    "goodput",
    "itl_gaps",
    "percentile",
    "percentiles",
    "request_metrics",
]

PERCENTILES: Final = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999))
METRICS: Final = tuple(d.name for d in LATENCIES)  # the names of summary.json's latencies
DEFAULT_CAP: Final = 1_000_000
_US_PER_MS: Final = 1000.0


# -- per request -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestMetrics:
    """The metrics of one request, in ms (None where the stream gave no occasion)."""

    ttfb: float | None
    ttft: float | None
    ttfo: float | None
    tpot: float | None
    e2e: float | None
    last_content: float | None
    itl: list[float]
    tokens: int
    tok_s: float | None  # N / E2E
    tok_s_decode: float | None  # (N - 1) / (last content - first content)


def _ms(us: int | None) -> float | None:
    return None if us is None else us / _US_PER_MS


def itl_gaps(content_us: Sequence[int]) -> list[float]:
    """Gaps between consecutive content events, ms (a chunk of k tokens is one gap)."""
    return [(b - a) / _US_PER_MS for a, b in itertools.pairwise(content_us)]


def request_metrics(rec: Mapping[str, Any]) -> RequestMetrics:
    content: Sequence[int] = rec.get("content_us") or ()
    tokens = int(rec.get("tokens") or 0)
    first = content[0] if content else None
    last = content[-1] if content else None
    end = rec.get("end_us")
    if end is None:
        end = rec.get("last_us")
    tpot = None
    decode = None
    if first is not None and last is not None and tokens >= 2:
        tpot = (last - first) / _US_PER_MS / (tokens - 1)
        if last > first:
            decode = (tokens - 1) / ((last - first) / 1e6)
    tok_s = tokens / (end / 1e6) if end else None
    return RequestMetrics(
        ttfb=_ms(rec.get("ttfb_us")),
        ttft=_ms(first),
        ttfo=_ms(rec.get("visible_us")),
        tpot=tpot,
        e2e=_ms(end),
        last_content=_ms(last),
        itl=itl_gaps(content),
        tokens=tokens,
        tok_s=tok_s,
        tok_s_decode=decode,
    )


@dataclass(frozen=True, slots=True)
class Slo:
    """Service-level objectives in ms, one field per metric with ``slo`` in ``metric_defs``
    (named by its key); None: not configured."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def limits(self) -> list[tuple[str, str, float | None]]:
        """``(metric name, key, objective)`` of every metric that can have one."""
        return [(d.name, d.key, getattr(self, d.key)) for d in SLO]

    @property
    def configured(self) -> bool:
        return any(limit is not None for _, _, limit in self.limits())

    def as_dict(self) -> dict[str, float]:
        return {key: limit for _, key, limit in self.limits() if limit is not None}

    def met(self, ok: bool, m: RequestMetrics | None) -> bool:
        """Does a request meet every configured objective? Errors never do; a metric the
        request has no value for (TPOT of a one-token answer) does not count against it."""
        if not ok or m is None:
            return False
        for name, _, limit in self.limits():
            value = getattr(m, name)
            if limit is not None and value is not None and value > limit:
                return False
        return not (self.ttft_ms is not None and m.ttft is None)


def goodput(
    outcomes: Iterable[tuple[bool, RequestMetrics | None]], slo: Slo, window_s: float
) -> dict[str, Any] | None:
    """Requests meeting every SLO per second of the window, and their fraction of all."""
    if not slo.configured:
        return None
    total = good = 0
    for ok, m in outcomes:
        total += 1
        good += slo.met(ok, m)
    return {
        "slo": slo.as_dict(),
        "requests_per_s": good / window_s if window_s > 0 else 0.0,
        "fraction": good / total if total else 0.0,
    }


# -- percentiles -------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks of an ascending sequence (numpy 'linear')."""
    if not ordered:
        raise ValueError("no samples")
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    frac = pos - lo
    return ordered[lo] + (ordered[hi] - ordered[lo]) * frac


def percentiles(samples: Iterable[float]) -> dict[str, float | None]:
    """p50, p90, p95, p99, p99.9, min, max, mean of raw samples (all None when empty)."""
    ordered = sorted(samples)
    keys = [name for name, _ in PERCENTILES] + ["min", "max", "mean"]
    if not ordered:
        return dict.fromkeys(keys)
    out: dict[str, float | None] = {name: percentile(ordered, q) for name, q in PERCENTILES}
    out["min"] = ordered[0]
    out["max"] = ordered[-1]
    out["mean"] = math.fsum(ordered) / len(ordered)
    return out


class Reservoir:
    """Every sample up to ``cap``, then a uniform random sample of ``cap`` of them.

    Past ``cap`` it follows Li's Algorithm L: it draws how many samples to skip before the
    next replacement, so a long run (ITL gives one sample per content event) costs a slice
    per skip instead of a random number per sample. The samples are a C array of doubles
    (8 bytes each, a quarter of a list of floats): a full reservoir holds 8 MB.
    """

    __slots__ = ("_next", "_rng", "_w", "cap", "count", "values")

    def __init__(self, cap: int = DEFAULT_CAP, seed: int = 0) -> None:
        self.cap = cap
        self.count = 0
        self.values: array[float] = array("d")
        self._rng = random.Random(seed)
        self._w = 1.0
        self._next = 0  # the count at which the next sample replaces one (once full)

    @property
    def exact(self) -> bool:
        return self.count <= self.cap

    def add(self, value: float) -> None:
        self.extend((value,))

    def extend(self, values: Sequence[float]) -> None:
        room = self.cap - len(self.values)
        if room > 0:
            self.values.extend(values[:room])
            self.count += min(room, len(values))
            values = values[room:]
            if self.count == self.cap:
                self._draw()
        n = len(values)
        if not n:
            return
        start = self.count  # values[i] is sample number start + i + 1
        end = start + n
        while self._next <= end:
            self.values[self._rng.randrange(self.cap)] = values[self._next - start - 1]
            self._draw()
        self.count = end

    def _draw(self) -> None:
        """The next replacement: skip a geometric number of samples (Algorithm L)."""
        rng = self._rng
        self._w *= math.exp(math.log(1.0 - rng.random()) / self.cap)
        skip = math.floor(math.log(1.0 - rng.random()) / math.log1p(-self._w)) if self._w < 1 else 0
        base = max(self.count, self._next)
        self._next = base + skip + 1

    def percentiles(self) -> dict[str, float | None]:
        return percentiles(self.values)


class LagHistogram:
    """Client lateness (receive stamp minus the server's send stamp) as counts per bucket:
    10 µs wide below 100 ms, 1 ms wide above; the maximum is kept exactly. Mergeable
    across workers by adding counts."""

    __slots__ = ("buckets", "count", "max_us")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max_us = 0

    def add_ns(self, values: Iterable[int]) -> None:
        """Count lateness values in ns (one request's, ~one per event: list operations,
        not a Python loop per value)."""
        us = [ns // 1000 for ns in values]
        if not us:
            return
        low, top = min(us), max(us)
        if low < 0 or top >= 100_000:  # rare: clamp, and 1 ms buckets past 100 ms
            keys = [0 if u < 0 else u - u % 10 if u < 100_000 else u - u % 1000 for u in us]
        else:
            keys = [u - u % 10 for u in us]
        buckets = self.buckets
        for key, n in Counter(keys).items():
            buckets[key] = buckets.get(key, 0) + n
        self.count += len(us)
        self.max_us = max(self.max_us, top)

    def merge(self, data: Mapping[str, Any]) -> None:
        for key, n in data.get("buckets", {}).items():
            k = int(key)
            self.buckets[k] = self.buckets.get(k, 0) + int(n)
        self.count += int(data.get("count", 0))
        self.max_us = max(self.max_us, int(data.get("max_us", 0)))

    def take(self) -> dict[str, Any]:
        """The counts so far as plain data, and start again (a worker's report)."""
        out = {"buckets": self.buckets, "count": self.count, "max_us": self.max_us}
        self.buckets, self.count, self.max_us = {}, 0, 0
        return out

    def quantile_ms(self, q: float) -> float | None:
        """The upper edge of the bucket holding quantile ``q`` (never above the max)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                width = 10 if key < 100_000 else 1000
                return min(key + width, self.max_us) / _US_PER_MS
        return self.max_us / _US_PER_MS

    def summary(self) -> dict[str, float | None] | None:
        if not self.count:
            return None
        return {
            "p50": self.quantile_ms(0.50),
            "p99": self.quantile_ms(0.99),
            "max": self.max_us / _US_PER_MS,
        }


# -- aggregation -------------------------------------------------------------------------------


@dataclass
class Aggregate:
    """Everything the summary needs, accumulated one record at a time (master or local)."""

    slo: Slo = field(default_factory=Slo)
    cap: int = DEFAULT_CAP
    total: int = 0
    completed: int = 0
    failed: int = 0
    aborted: int = 0
    retried: int = 0
    by_error: dict[str, int] = field(default_factory=dict)
    violations: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule → level, requests
    tokens: int = 0
    sources: set[str] = field(default_factory=set)
    good: int = 0
    e2e_sum_s: float = 0.0
    first_wall: float | None = None
    last_wall: float | None = None
    buckets: dict[int, float] = field(default_factory=dict)  # wall second → output tokens
    lag: LagHistogram = field(default_factory=LagHistogram)
    samples: dict[str, Reservoir] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for d in SAMPLED:  # seeded by name: another metric's place in the list does not matter
            self.samples.setdefault(d.name, Reservoir(self.cap, seed=d.seed))

    def add(self, rec: Mapping[str, Any]) -> RequestMetrics | None:
        """Count one record; returns its metrics (None when the stream did not complete).

        A completed stream's figures count whatever its findings; a MUST violation makes it
        a failure too (``protocol``), so ``completed`` and ``failed`` can overlap."""
        wall = float(rec["wall"])
        end = wall + int(rec.get("dur_us") or 0) / 1e6
        if self.first_wall is None or wall < self.first_wall:
            self.first_wall = wall
        if self.last_wall is None or end > self.last_wall:
            self.last_wall = end
        sched = rec.get("sched_us")
        if sched is not None:
            self.samples[SCHED_LAG.name].add(sched / _US_PER_MS)
        self.total += 1
        self.retried += bool(rec.get("retried"))
        if rec.get("aborted"):
            self.aborted += 1
            return None
        for rule_id, level in (rec.get("violations") or {}).items():
            seen = self.violations.setdefault(rule_id, {"level": level, "requests": 0})
            seen["requests"] += 1
            if level == "MUST":
                seen["level"] = "MUST"
        if not rec.get("ok"):
            self.failed += 1
            kind = str(rec.get("error") or "unknown")
            self.by_error[kind] = self.by_error.get(kind, 0) + 1
        if not rec.get("completed"):
            return None
        m = request_metrics(rec)
        self.completed += 1
        self.tokens += m.tokens
        self.sources.add(str(rec.get("source") or "events"))
        if m.e2e is not None:
            self.e2e_sum_s += m.e2e / 1000.0
        if self.slo.configured and self.slo.met(bool(rec.get("ok")), m):
            self.good += 1
        s = self.samples
        for d in LATENCIES:
            value = getattr(m, d.name)
            if d.pooled:
                s[d.name].extend(value)
            elif value is not None:
                s[d.name].add(value)
        self._bucket(wall, rec.get("content_us") or (), m)
        return m

    def _bucket(self, wall: float, content: Sequence[int], m: RequestMetrics) -> None:
        if not m.tokens:
            return
        buckets = self.buckets
        if not content:
            second = math.floor(wall + (m.e2e or 0.0) / 1000.0)
            buckets[second] = buckets.get(second, 0.0) + m.tokens
            return
        share = m.tokens / len(content)
        get = buckets.get
        for second in [int(wall + us / 1e6) for us in content]:  # wall > 0: int() is floor()
            buckets[second] = get(second, 0.0) + share

    @property
    def window_s(self) -> float:
        if self.first_wall is None or self.last_wall is None:
            return 0.0
        return max(0.0, self.last_wall - self.first_wall)

    @property
    def source(self) -> str | None:
        if not self.sources:
            return None
        return next(iter(self.sources)) if len(self.sources) == 1 else "mixed"

    def goodput(self) -> dict[str, Any] | None:
        if not self.slo.configured:
            return None
        total = self.total - self.aborted
        window = self.window_s
        return {
            "slo": self.slo.as_dict(),
            "requests_per_s": self.good / window if window > 0 else 0.0,
            "fraction": self.good / total if total else 0.0,
        }

    @property
    def must_violations(self) -> int:
        """Streams that broke a MUST rule, summed over the rules."""
        return sum(v["requests"] for v in self.violations.values() if v["level"] == "MUST")

    def throughput(self) -> dict[str, float]:
        window = self.window_s
        if window <= 0:
            return dict.fromkeys((d.path[-1] for d in THROUGHPUT), 0.0)
        return {
            "output_tokens_per_s": self.tokens / window,
            "requests_per_s": self.completed / window,
            "achieved_concurrency": self.e2e_sum_s / window,
        }

    def token_series(self) -> list[list[float]]:
        """``[second, output tokens]`` for every second of the window (empty seconds as 0)."""
        if not self.buckets:
            return []
        first, last = min(self.buckets), max(self.buckets)
        return [[s, round(self.buckets.get(s, 0.0), 3)] for s in range(first, last + 1)]
