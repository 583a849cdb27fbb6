"""Locust users that stream: an abstract :class:`StreamingUser` holds the client and reports
every request to Locust itself, so the web UI table, ``--csv``, ``--html`` and the
master/worker merge carry the streaming metrics as rows. Locust's totals — request count,
RPS, failures, the Charts tab — count streams: one ``E2E`` (or ``ABORT``) sample per request,
through ``events.request``; the metric rows are logged into their own entries only
(:func:`log_samples`), visible in the table without inflating the totals.

The rows are the sampled metrics of ``metric_defs`` (:data:`ROWS`), named by their labels:

==============  ===============================================================================
row (name)      one sample per ...
==============  ===============================================================================
``TTFB``        completed request: response headers − send
``TTFT``        completed request: first content event − send
``TTFO``        completed request: first non-reasoning content event − send
``TPOT``        completed request with N ≥ 2: (last − first content) / (N − 1)
``ITL``         gap between two content events (a chunk of k tokens is one gap)
``E2E``         request: last event − send; its *size* column is the output token count N;
                failures (non-2xx, transport, timeouts, ``stream.error``, MUST violations)
                are reported on this row, named by kind (``protocol: openai.done``). A
                stream read to its end counts in every row whatever its findings; one that
                broke a MUST rule is also a failure
``SCHED_LAG``   open loop: send − scheduled arrival
``ABORT``       interrupting user: a stream closed on purpose after K content events (not a
                metric: the stream's row, as ``E2E`` is for the others)
==============  ===============================================================================

The request type column is the API (``openai`` / ``anthropic`` / ``responses``;
``<api>-interrupt`` for the interrupting user). Concrete users are a few lines (see
``loadtests/locustfile.py``).
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import gevent
import locust.stats
import orjson
from locust import User, constant, task
from locust.exception import StopUser

from ..engine import model_for
from . import plugin  # noqa: F401  (registers streamproof's Locust event listeners)
from .apis import APIS, build_request
from .metric_defs import E2E, LATENCIES, SAMPLED, SCHED_LAG, TTFT
from .metrics import RequestMetrics, request_metrics
from .prompts import PromptSource, load_prompts
from .runtime import runtime
from .stream import StreamClient

__all__ = [
    "ABORT",
    "ROWS",
    "InterruptingStreamingUser",
    "StreamFailure",
    "StreamingUser",
    "log_samples",
]

# Locust's rows: every sampled metric by its label, and the interrupted streams
ROWS = tuple(d.label for d in SAMPLED)
ABORT = "ABORT"
# a completed request's metric rows; E2E is the stream's own row (Locust's totals)
_METRIC_ROWS = tuple(d for d in LATENCIES if d is not E2E)

_pc = time.perf_counter_ns
_user_numbers = itertools.count()
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0


def log_samples(
    stats: locust.stats.RequestStats, method: str, name: str, samples: Sequence[float]
) -> None:
    """What ``stats.get(name, method).log(x, 0)`` does for each x, in one pass: a metric
    row's samples in its own entry, not in Locust's totals (which count streams).

    Why in one pass: an ITL sample per content event through ``events.request.fire`` cost
    3 µs each, a tenth of the worker's whole budget per event. The first sample goes through
    Locust's own ``StatsEntry.log`` (timestamps, the response-time cache); the rest add to
    the same counters Locust serialises between workers and master
    (``StatsEntry.serialize``), bucketed by Locust's replaceable ``bucket_response_time``.
    ``tests/test_load_metrics.py`` checks the result equals per-sample logging.
    """
    if not samples:
        return
    entry = stats.get(name, method)
    entry.log(samples[0], 0)
    rest = samples[1:]
    if not rest:
        return
    n, total, low, high = len(rest), sum(rest), min(rest), max(rest)
    buckets = Counter(map(locust.stats.bucket_response_time, rest))
    entry.num_requests += n
    entry.num_reqs_per_sec[int(entry.last_request_timestamp)] += n
    entry.total_response_time += total
    entry.min_response_time = min(entry.min_response_time, low)
    entry.max_response_time = max(entry.max_response_time, high)
    times = entry.response_times
    for key, count in buckets.items():
        times[key] += count


class StreamFailure(Exception):
    """A failed request as Locust shows it: the kind (``http.503``, ``transport.idle``,
    ``protocol: openai.done``) — stable text, so failures group by kind."""


class StreamingUser(User):
    """Sends streaming requests back to back (closed loop) or at the arrivals of the open
    loop (``--arrival-rate``), one at a time, over its own keep-alive connection."""

    abstract = True
    api: ClassVar[str] = "openai"  # one of APIS, or "mixed" (cycle through them)
    interrupt: ClassVar[bool] = False
    wait_time = constant(0)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.number = next(_user_numbers)
        self.client: StreamClient | None = None
        self.sent = 0
        self._failures = 0  # consecutive requests without an answer (back-off)
        self._apis = itertools.cycle(APIS)

    def on_start(self) -> None:
        rt = runtime(self.environment)
        s = rt.settings
        if not self.host:
            rt.log.error("no host: give --host (the API root, e.g. http://127.0.0.1:8000/v1)")
            raise StopUser
        self.client = StreamClient(self.host, s.timeouts, send_stamps=s.send_stamps)
        self.prompts = PromptSource(
            load_prompts(s.prompts, s.prompt_words, s.prompt_file), offset=self.number
        )
        if s.start_jitter > 0 and rt.arrivals is None:
            gevent.sleep(random.uniform(0.0, s.start_jitter))

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()

    def pick_api(self) -> str:
        api = self.api
        if api == "mixed" or api not in APIS:
            configured = runtime(self.environment).settings.api
            return next(self._apis) if configured == "mixed" else configured
        return api

    @task
    def stream(self) -> None:
        rt = runtime(self.environment)
        s = rt.settings
        if s.requests_per_user and self.sent >= s.requests_per_user:
            raise StopUser
        assert self.client is not None
        api = self.pick_api()
        body = build_request(
            api, s.model, self.prompts.pick(), s.max_tokens, include_usage=s.include_usage
        )
        body.update(s.extra_body)
        t_sched = None
        if rt.arrivals is not None:
            t_sched = rt.arrivals.take()
            wait = t_sched - _pc()
            if wait > 0:
                gevent.sleep(wait / 1e9)
        model = model_for(api, body, rules=s.validate, content_t=[])
        wall = time.time()
        result = self.client.stream(
            api,
            orjson.dumps(body),
            s.request_headers(api),
            model,
            abort_after=s.interrupt_after if self.interrupt else None,
        )
        self.sent += 1
        rec = result.record(wall, t_sched)
        rec["worker"] = rt.worker_index
        self._report(rec, rt.collector.add(rec, result.lag_ns))
        self._back_off(rec["completed"] or rec["aborted"])

    def _back_off(self, answered: bool) -> None:
        """A user whose requests keep failing waits before the next one, doubling from
        BACKOFF_FIRST_S to BACKOFF_MAX_S (a dead host is not hammered); an answer resets it.
        A stream that broke a rule was answered: no wait."""
        if answered:
            self._failures = 0
            return
        self._failures += 1
        gevent.sleep(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self._failures - 1)))

    def _report(self, rec: dict[str, Any], m: RequestMetrics | None) -> None:
        """The request as rows of Locust's statistics (``m``: its metrics, if already known):
        one stream in the totals (``E2E`` or ``ABORT``), its metrics in their own rows."""
        fire = self.environment.events.request.fire
        stats = self.environment.stats
        kind = f"{rec['api']}-interrupt" if self.interrupt else rec["api"]
        if rec["sched_us"] is not None:
            stats.get(SCHED_LAG.label, kind).log(rec["sched_us"] / 1000, 0)
        if rec["aborted"]:
            content = rec["content_us"]
            if content:
                stats.get(TTFT.label, kind).log(content[0] / 1000, 0)
            fire(
                request_type=kind,
                name=ABORT,
                response_time=rec["dur_us"] / 1000,
                response_length=len(content),
                exception=None,
                context={},
            )
            return
        if not rec["completed"]:
            fire(
                request_type=kind,
                name=E2E.label,
                response_time=rec["dur_us"] / 1000,
                response_length=0,
                exception=StreamFailure(rec["error"] or "unknown"),
                context={},
            )
            return
        if m is None:
            m = request_metrics(rec)
        for d in _METRIC_ROWS:
            value = getattr(m, d.name)
            if d.pooled:
                log_samples(stats, kind, d.label, value)
            elif value is not None:
                stats.get(d.label, kind).log(value, 0)
        failure = None
        if not rec["ok"]:  # completed, but broke a MUST rule: its figures count all the same
            must = [rule for rule, level in rec["violations"].items() if level == "MUST"]
            failure = StreamFailure("protocol: " + ", ".join(must))
        fire(
            request_type=kind,
            name=E2E.label,
            response_time=m.e2e or rec["dur_us"] / 1000,
            response_length=m.tokens,
            exception=failure,
            context={},
        )


class InterruptingStreamingUser(StreamingUser):
    """Hangs up after ``--interrupt-after`` content events (a client that goes away): the
    server must stay healthy, and the other users' rows show what it cost them. Its API
    follows ``--api``; how many there are: ``--interrupt-users`` (a fixed count)."""

    abstract = True
    api = "mixed"
    interrupt = True
