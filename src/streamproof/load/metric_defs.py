"""The load metrics, defined once: name, label, unit, what each one measures (in the words of
the project's load-metrics notes) and which way is better.

Every list of metrics is a view of :data:`DEFINITIONS`: the summary's keys and its table, the
samples an :class:`~streamproof.load.metrics.Aggregate` keeps (and their seeds), the metrics
of each line of ``requests.jsonl``, Locust's statistics rows, the SLO options, the web UI's
tab and live charts, the HTML and Markdown reports, and what ``streamproof diff`` compares.
The report schema and the README cannot import Python: tests check theirs against these.

Pure data, no Locust: safe to import anywhere (the reports do). ``python -m
streamproof.load.metric_defs`` prints the README's table of metrics.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ACHIEVED_CONCURRENCY",
    "CLIENT_LAG",
    "DEFINITIONS",
    "DIFF",
    "E2E",
    "FAILED_FRACTION",
    "GOODPUT",
    "GOODPUT_FRACTION",
    "ITL",
    "LAST_CONTENT",
    "LATENCIES",
    "LIVE",
    "MUST_VIOLATIONS",
    "OUTPUT_TOKENS",
    "OUTPUT_TOKENS_PER_S",
    "RECORD",
    "REQUESTS_PER_S",
    "SAMPLED",
    "SCHED_LAG",
    "SLO",
    "THROUGHPUT",
    "TOK_S",
    "TOK_S_DECODE",
    "TPOT",
    "TTFB",
    "TTFO",
    "TTFT",
    "VALUE",
    "Metric",
    "by_key",
    "label_of",
    "markdown_table",
]

VALUE: Final = "value"  # what ``diff`` compares of a metric that is one figure


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric. ``name`` is its attribute in :class:`RequestMetrics` and its sample set;
    ``key`` (``name`` + ``_ms`` for a time) names it in ``summary.json`` and
    ``requests.jsonl``; ``label`` names it in every report and Locust row."""

    name: str
    label: str
    unit: str
    title: str
    definition: str
    lower_is_better: bool | None  # None: neither (a count, not a quality)
    path: tuple[str, ...] = ()  # where summary.json holds it; () where it does not
    sampled: bool = False  # raw samples → percentiles (p50 ... mean)
    pooled: bool = False  # many samples per request, pooled (ITL's gaps), not one per request
    diff: tuple[str, ...] = ()  # what ``streamproof diff`` compares: percentiles, or VALUE
    slo: bool = False  # goodput can have an objective on it (``--slo-<name>-ms``)
    live: bool = False  # charted live in the web UI (percentiles over the last seconds)

    @property
    def key(self) -> str:
        return f"{self.name}_ms" if self.unit == "ms" else self.name

    @property
    def seed(self) -> int:
        """The seed of its reservoir sample: from its name alone (CRC-32, not Python's salted
        ``hash``), so adding or moving a metric leaves every other metric's sample as it was."""
        return zlib.crc32(self.name.encode("utf-8"))

    @property
    def better(self) -> str:
        return {True: "lower", False: "higher", None: "–"}[self.lower_is_better]

    def describe(self) -> str:
        """One line: ``TTFT (time to first token), ms: first content event − t_send``."""
        title = f" ({self.title})" if self.title != self.label else ""
        return f"{self.label}{title}, {self.unit}: {self.definition}"

    def read(self, summary: Mapping[str, Any]) -> Any:
        """Its value in a summary (None where the summary has none: another version's)."""
        value: Any = summary if self.path else None
        for key in self.path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value

    def as_json(self) -> dict[str, Any]:
        """What the web UI's page reads (``/streamproof/metrics``)."""
        return {
            "name": self.name,
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "title": self.title,
            "definition": self.definition,
            "lower_is_better": self.lower_is_better,
            "live": self.live,
        }


def _latency(name: str, label: str, title: str, definition: str, **kw: Any) -> Metric:
    return Metric(name, label, "ms", title, definition, True, (f"{name}_ms",), sampled=True, **kw)


TTFB: Final = _latency(
    "ttfb", "TTFB", "time to first byte",
    "response status and headers received − t_send",
    diff=("p50",),
)  # fmt: skip
TTFT: Final = _latency(
    "ttft", "TTFT", "time to first token",
    "first content event − t_send",
    diff=("p50", "p90", "p99"), slo=True, live=True,
)  # fmt: skip
TTFO: Final = _latency(
    "ttfo", "TTFO", "time to first output",
    "first non-reasoning content event − t_send (time to first visible output)",
)  # fmt: skip
TPOT: Final = _latency(
    "tpot", "TPOT", "time per output token",
    "(last content event − first content event) / (N − 1), per request",
    diff=("p50", "p99"), slo=True,
)  # fmt: skip
ITL: Final = _latency(
    "itl", "ITL", "inter-token latency",
    "the gaps between consecutive content events, pooled over all requests; a chunk "
    "carrying k tokens is one gap sample",
    pooled=True, diff=("p50", "p99"), live=True,
)  # fmt: skip
E2E: Final = _latency(
    "e2e", "E2E", "end-to-end latency",
    "the stream's end ([DONE] / message_stop / the terminal response event) − t_send",
    diff=("p50", "p99"), slo=True,
)  # fmt: skip
SCHED_LAG: Final = Metric(
    "sched", "SCHED_LAG", "ms", "schedule lag",
    "t_send − t_sched: how late the request went out after the load model meant to send it "
    "(open loop)",
    True, sampled=True,
)  # fmt: skip
LAST_CONTENT: Final = Metric(
    "last_content", "last content", "ms", "last content event",
    "last content event − t_send, per request", True,
)  # fmt: skip
TOK_S: Final = Metric(
    "tok_s", "tok/s", "tok/s", "per-request output tokens/s",
    "N / E2E, per request", False,
)  # fmt: skip
TOK_S_DECODE: Final = Metric(
    "tok_s_decode", "decode tok/s", "tok/s", "per-request decode tokens/s",
    "(N − 1) / (last content event − first content event), per request", False,
)  # fmt: skip
OUTPUT_TOKENS: Final = Metric(
    "output_tokens", "output tokens", "tokens", "output tokens N",
    "server usage when present (usage.completion_tokens; Anthropic "
    "message_delta.usage.output_tokens; Responses response.usage.output_tokens less the "
    "reasoning_tokens of reasoning that streamed no text), else the number of content "
    "events; the summary says which (source: usage, usage less hidden reasoning, or events)",
    None, ("output_tokens", "total"),
)  # fmt: skip
OUTPUT_TOKENS_PER_S: Final = Metric(
    "output_tokens_per_s", "output tokens/s", "tok/s", "aggregate output tokens/s",
    "Σ N of completed requests / wall window (first send → last end); also per 1-second "
    "bucket over time (tokens_per_s.json)",
    False, ("throughput", "output_tokens_per_s"), diff=(VALUE,),
)  # fmt: skip
REQUESTS_PER_S: Final = Metric(
    "requests_per_s", "requests/s", "req/s", "request throughput",
    "completed requests / window",
    False, ("throughput", "requests_per_s"), diff=(VALUE,),
)  # fmt: skip
ACHIEVED_CONCURRENCY: Final = Metric(
    "achieved_concurrency", "achieved concurrency", "requests", "achieved concurrency",
    "Σ E2E / window",
    None, ("throughput", "achieved_concurrency"),
)  # fmt: skip
GOODPUT: Final = Metric(
    "goodput", "goodput", "req/s", "goodput",
    "requests meeting every configured SLO (TTFT ≤ a, TPOT ≤ b, E2E ≤ c) / window; errors "
    "count as misses",
    False, ("goodput", "requests_per_s"),
)  # fmt: skip
GOODPUT_FRACTION: Final = Metric(
    "goodput_fraction", "goodput fraction", "fraction", "goodput fraction",
    "requests meeting every configured SLO / requests sent (aborted ones aside)",
    False, ("goodput", "fraction"), diff=(VALUE,),
)  # fmt: skip
FAILED_FRACTION: Final = Metric(
    "failed_fraction", "failed fraction", "fraction", "failed fraction",
    "failed requests (non-2xx, transport errors, timeouts, streams with MUST-level protocol "
    "violations) / requests sent; from requests.failed and requests.total",
    True, diff=(VALUE,),
)  # fmt: skip
MUST_VIOLATIONS: Final = Metric(
    "must_violations", "MUST violations", "streams", "MUST violations under load",
    "streams that broke a MUST rule, summed over the rules; from violations",
    True, diff=(VALUE,),
)  # fmt: skip
CLIENT_LAG: Final = Metric(
    "client_lag", "client lateness", "ms", "client lateness",
    "receive stamp − the reference server's send stamp of each event: the load generator's "
    "own lateness (p50, p99, max; against the reference server only)",
    True, ("client_lag_ms",),
)  # fmt: skip

DEFINITIONS: Final[tuple[Metric, ...]] = (
    TTFB, TTFT, TTFO, TPOT, ITL, E2E, SCHED_LAG, LAST_CONTENT, TOK_S, TOK_S_DECODE,
    OUTPUT_TOKENS, OUTPUT_TOKENS_PER_S, REQUESTS_PER_S, ACHIEVED_CONCURRENCY, GOODPUT,
    GOODPUT_FRACTION, FAILED_FRACTION, MUST_VIOLATIONS, CLIENT_LAG,
)  # fmt: skip
# the latencies of summary.json (``<name>_ms``: percentiles of raw samples), in its order;
# each is a row of Locust's statistics too
LATENCIES: Final = tuple(d for d in DEFINITIONS if d.sampled and d.path)
# every metric kept as raw samples (a reservoir each): the latencies and the schedule lag
SAMPLED: Final = tuple(d for d in DEFINITIONS if d.sampled)
# a request's own metrics, as each line of requests.jsonl carries them (``metrics``)
RECORD: Final = (
    *(d for d in LATENCIES if not d.pooled), LAST_CONTENT, TOK_S, TOK_S_DECODE
)  # fmt: skip
THROUGHPUT: Final = tuple(d for d in DEFINITIONS if d.path[:1] == ("throughput",))
SLO: Final = tuple(d for d in DEFINITIONS if d.slo)
LIVE: Final = tuple(d for d in DEFINITIONS if d.live)
DIFF: Final = tuple(d for d in DEFINITIONS if d.diff)
_BY_KEY: Final = {d.key: d for d in DEFINITIONS}


def by_key(key: str) -> Metric | None:
    """The metric whose key this is (``ttft_ms`` → TTFT), or None."""
    return _BY_KEY.get(key)


def label_of(key: str) -> str:
    """How reports name the metric of a key (``ttft_ms`` → ``TTFT``; an unknown key from
    another version's file: the key without ``_ms``, upper case)."""
    d = _BY_KEY.get(key)
    return d.label if d is not None else key.removesuffix("_ms").upper()


def _where(d: Metric) -> str:
    places = []
    if d.path:
        places.append(f"`{'.'.join(d.path)}`" + (" (percentiles)" if d.sampled else ""))
    if d in RECORD:
        places.append(f"`metrics.{d.key}` per request")
    if d.sampled:
        places.append(f"Locust row `{d.label}`")
    if d.diff:
        stats = "" if d.diff == (VALUE,) else f" ({', '.join(d.diff)})"
        places.append(f"compared by `streamproof diff`{stats}")
    return "; ".join(places)


def markdown_table() -> str:
    """The README's table: every metric, its unit, definition, which way is better and
    where it is (summary.json's key, a request's line of requests.jsonl, Locust's rows)."""
    lines = [
        "| metric | unit | definition | better | where |",
        "|---|---|---|---|---|",
    ]
    for d in DEFINITIONS:
        name = f"**{d.label}**" + (f" ({d.title})" if d.title != d.label else "")
        lines.append(f"| {name} | {d.unit} | {d.definition} | {d.better} | {_where(d)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
