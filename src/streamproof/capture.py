"""One streaming HTTP exchange → a :class:`Capture` record. The only module that uses httpx.

Every read is stamped with ``perf_counter_ns`` as soon as it returns and fed straight to the
SSE decoder, so event stamps are arrival times, never "when somebody looked". Time bounds:
``connect`` (TCP/TLS), ``first_byte`` (until the response headers), ``idle`` (the longest gap
between reads after the headers) and ``total`` (the whole exchange); each one that runs out
becomes a ``transport.*`` finding, never a hang. A capture can be saved as a transcript
(raw ``.sse`` body + JSON sidecar) and loaded again to check offline.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# httpx imports httpcore lazily and maps its exceptions through a table built on first use; if
# httpcore were first imported inside a run that later unloads it (pytest's in-process
# pytester runs), the table would keep stale classes and a reset would escape as a raw
# httpcore error. Importing it with httpx keeps the two together.
import httpcore  # noqa: F401
import httpx

from .findings import Finding, excerpt
from .redact import mask_headers, redact, redact_bytes
from .sse import DEFAULT_MAX_EVENT_BYTES, Event, SSEDecoder
from .stalls import WATCH, Stall

__all__ = [
    "Capture",
    "EventKeeper",
    "Timeouts",
    "exchange",
    "load_transcript",
    "replay",
    "tls_context",
]

# The body is kept up to this for the SDK replay (decoding and validation go on past it) and
# cut to REPORT_BODY_BYTES once the scenario is judged (``Capture.slim``).
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
REPORT_BODY_BYTES = 64 * 1024
REPORT_EVENT_CHARS = 4096  # a kept event's data, for the transcript lines around a finding
_INFLATE_STEP = 256 * 1024


def tls_context() -> ssl.SSLContext:
    """The client TLS context of the suite and the load generator: the CA bundle named by
    ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set (a gateway behind a private CA), else
    certifi's, as httpx chooses. Read here because the clients run with ``trust_env=False``
    (no proxy taken from the environment). One context per setting: building one loads the
    whole bundle."""
    return _tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _tls_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class EventKeeper:
    """The events a report can show, in bounded memory however long the stream: the first
    ``head``, the last ``tail``, and ``around`` events either side of each event a finding
    names (:meth:`pin`, as the validator makes the finding; at most ``pins`` of them).
    Validation sees every event; this only decides which ones stay for the transcript."""

    __slots__ = ("_until", "around", "head", "head_max", "pinned", "pins", "tail")

    def __init__(self, head: int = 200, tail: int = 50, around: int = 2, pins: int = 100) -> None:
        self.head: list[Event] = []
        self.head_max = head
        self.tail: deque[Event] = deque(maxlen=tail)
        self.pinned: dict[int, Event] = {}
        self.around = around
        self.pins = pins
        self._until = -1  # every event up to this index stays (the ones after a pin)

    def add(self, events: list[Event]) -> None:
        room = self.head_max - len(self.head)
        if room > 0:
            self.head.extend(events[:room])
            events = events[room:]
            if not events:
                return
        if self._until >= events[0].index:
            for ev in events:
                if ev.index <= self._until:
                    self.pinned[ev.index] = ev
        self.tail.extend(events)

    def pin(self, index: int) -> None:
        """Keep the events around ``index`` (those still in the tail, and the next ones)."""
        if index < len(self.head) or len(self.pinned) >= self.pins:
            return
        for ev in self.tail:
            if abs(ev.index - index) <= self.around:
                self.pinned[ev.index] = ev
        self._until = max(self._until, index + self.around)

    def events(self) -> list[Event]:
        """The kept events in order, each a light copy (data cut for the report, no parse)."""
        kept = {ev.index: ev for ev in (*self.head, *self.pinned.values(), *self.tail)}
        return [_light(kept[i]) for i in sorted(kept)]


def _light(ev: Event) -> Event:
    data = ev.data if len(ev.data) <= REPORT_EVENT_CHARS else ev.data[:REPORT_EVENT_CHARS]
    return Event(data, ev.name, ev.id, ev.retry, ev.index, ev.offset, ev.t, ev.comment)


class InflateError(Exception):
    """A Content-Encoding body that cannot be inflated, or inflates past the bound."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. Defaults make a run against a dead endpoint end well under a minute."""

    connect: float = 10.0
    first_byte: float = 30.0
    idle: float = 30.0
    total: float = 120.0


@dataclass
class Capture:
    """What one exchange showed: request (credentials masked), response, body, events, stamps."""

    method: str
    url: str
    request_headers: list[tuple[str, str]]
    request_body: Any
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    body_size: int = 0
    reads: list[tuple[int, int]] = field(default_factory=list)  # (end offset, t), kept body
    events: list[Event] = field(default_factory=list)  # the kept ones (EventKeeper)
    events_total: int = 0  # all events decoded, kept or not
    findings: list[Finding] = field(default_factory=list)  # wire + transport
    comments: int = 0
    t_send: int = 0
    t_headers: int | None = None
    t_end: int = 0
    error: str | None = None
    stalls: tuple[Stall, ...] = ()  # this process's own stalls during the exchange

    def slim(self) -> None:
        """Keep only what the reports show: the body's first ``REPORT_BODY_BYTES`` and its
        reads, the kept events as light copies (once a scenario is judged, a run holds every
        scenario's capture until the reports are written)."""
        if len(self.body) > REPORT_BODY_BYTES:
            self.body = self.body[:REPORT_BODY_BYTES]
            self.reads = [r for r in self.reads if r[0] <= REPORT_BODY_BYTES]
        self.events = [_light(ev) for ev in self.events]

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.response_headers:
            if key.lower() == name:
                return value
        return None

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    @property
    def is_sse(self) -> bool:
        return self.content_type == "text/event-stream"

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def save(self, stem: Path) -> tuple[Path, Path]:
        """Write ``stem.sse`` (raw body) and ``stem.json`` (sidecar); no credentials kept."""
        stem.parent.mkdir(parents=True, exist_ok=True)
        body_path = stem.with_suffix(".sse")
        meta_path = stem.with_suffix(".json")
        body_path.write_bytes(redact_bytes(self.body))
        meta = {
            "method": self.method,
            "url": redact(self.url),
            "request_headers": mask_headers(self.request_headers, drop=True),
            "request_body": _redacted_body(self.request_body),
            "status": self.status,
            "response_headers": mask_headers(self.response_headers),
            "body_size": self.body_size,
            "reads": self.reads,
            "t_send": self.t_send,
            "t_headers": self.t_headers,
            "t_end": self.t_end,
            "client_stalls": self.stalls,
            "error": redact(self.error) if self.error else None,
        }
        meta_path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return body_path, meta_path


def _redacted_body(body: Any) -> Any:
    if isinstance(body, bytes):
        return redact(body.decode("utf-8", "replace"))
    return json.loads(redact(json.dumps(body)))


def _transport_finding(exc: Exception, cap: Capture, timeouts: Timeouts, now: int) -> Finding:
    n = cap.events_total
    if cap.t_headers is None:
        after = "before the response headers"
    elif n == 0:
        after = "after the response headers, before any event"
    else:
        after = f"after {n} event(s)"
    if isinstance(exc, httpx.ConnectTimeout):
        return Finding("transport.connect", f"no connection within {timeouts.connect:g} s")
    if isinstance(exc, httpx.ConnectError):
        return Finding("transport.connect", f"could not connect: {exc}")
    if isinstance(exc, httpx.ReadTimeout):
        if cap.t_headers is None:
            return Finding(
                "transport.first-byte",
                f"no response headers within {min(timeouts.first_byte, timeouts.total):g} s",
            )
        return Finding("transport.idle", f"no byte for {timeouts.idle:g} s {after}", n or None)
    if isinstance(exc, httpx.TimeoutException):
        return Finding("transport.total", f"{type(exc).__name__} {after}")
    return Finding(
        "transport.broken",
        f"{_describe(exc)} {after} ({cap.body_size} body bytes)",
        n or None,
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, InflateError):
        return str(exc)
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "reset" in lowered or "peer closed" in lowered or "incomplete" in lowered:
        return f"connection closed abruptly: {text}"
    return f"{type(exc).__name__}: {text}"


class _Inflater:
    """Bounded Content-Encoding decoding (gzip/deflate), one step at a time.

    httpx's own decoder inflates a whole read at once: a 1000x bomb in one 64 KiB read
    becomes 64 MiB. Here each step yields at most ``_INFLATE_STEP`` bytes.
    """

    def __init__(self, encoding: str, limit: int) -> None:
        self._wbits = 47 if encoding == "gzip" else 15
        self._z = zlib.decompressobj(self._wbits)
        self.encoding = encoding
        self.limit = limit
        self.compressed = 0
        self.inflated = 0

    def steps(self, data: bytes):
        self.compressed += len(data)
        while data:
            try:
                out = self._z.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                if self.inflated == 0:
                    raise InflateError(
                        f"Content-Encoding {self.encoding} but the body is not "
                        f"{self.encoding} ({exc})"
                    ) from None
                raise InflateError(
                    f"the {self.encoding} body is corrupt after {self.inflated} inflated "
                    f"bytes ({exc})"
                ) from None
            data = self._z.unconsumed_tail
            if self._z.eof and self._z.unused_data:  # another gzip member follows
                data = self._z.unused_data
                self._z = zlib.decompressobj(self._wbits)
            if out:
                self.inflated += len(out)
                if self.inflated > self.limit:
                    raise InflateError(
                        f"{self.encoding} body inflated past {self.limit // 2**20} MiB from "
                        f"{self.compressed} compressed bytes (a compression bomb); "
                        "reading stopped there"
                    )
                yield out
            elif not data:
                break


def exchange(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: Any,
    timeouts: Timeouts = Timeouts(),
    decode_sse: bool = True,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_inflated_bytes: int | None = None,
    keeper: EventKeeper | None = None,
    on_events: Callable[[list[Event]], None] | None = None,
    deadline: int | None = None,
) -> Capture:
    """Send one request and read the whole response within the time bounds.

    With ``decode_sse`` a 2xx body is decoded as an event stream whatever its content type
    (a wrong content type is a finding, not a reason to stop looking). ``body`` is sent as
    JSON, or as it is when it is bytes (a malformed body on purpose). ``on_events`` gets
    each batch of events as it is decoded (validation as the bytes arrive); ``keeper``
    decides which stay in the capture for the report, so a flood cannot grow memory.
    ``deadline`` (``perf_counter_ns``): end the exchange there at the latest (a run's own
    bound), even before ``timeouts.total``.

    Redirects are never followed: a 3xx is the answer (an ``http.status`` finding), so the
    credentials in ``headers`` only ever go to ``url``'s origin. A ``Content-Encoding``
    body is inflated a bounded step at a time and at most ``max_inflated_bytes`` in all
    (default: the event-size bound, which no real stream's body comes near).
    """
    keeper = keeper or EventKeeper()
    if max_inflated_bytes is None:
        max_inflated_bytes = max_event_bytes
    cap = Capture(method, url, mask_headers(headers), body)
    decoder = SSEDecoder(max_event_bytes)
    timeout = httpx.Timeout(
        connect=timeouts.connect,
        read=min(timeouts.first_byte, timeouts.total),
        write=timeouts.connect,
        pool=timeouts.connect,
    )
    payload = {"content": body} if isinstance(body, bytes) else {"json": body}
    request = client.build_request(method, url, headers=headers, timeout=timeout, **payload)
    WATCH.start()
    cap.t_send = time.perf_counter_ns()
    own = cap.t_send + int(timeouts.total * 1e9)
    deadline = own if deadline is None else min(own, deadline)
    response: httpx.Response | None = None
    kept: list[bytes] = []
    try:
        # never follow a redirect: the answer is the 3xx, and the key stays with this origin
        response = client.send(request, stream=True, follow_redirects=False)
        cap.t_headers = now = time.perf_counter_ns()
        cap.status = response.status_code
        cap.response_headers = list(response.headers.multi_items())
        if now > deadline:
            raise httpx.TimeoutException("total")
        # httpcore reads the body's read timeout from this dict when the body starts
        request.extensions["timeout"]["read"] = min(timeouts.idle, (deadline - now) / 1e9)
        sse = decode_sse and 200 <= cap.status < 300
        encoding = (response.headers.get("content-encoding") or "").strip().lower()
        inflater = (
            _Inflater(encoding, max_inflated_bytes) if encoding in ("gzip", "deflate") else None
        )
        for raw in response.iter_raw():
            t = time.perf_counter_ns()
            pieces = inflater.steps(raw) if inflater else (raw,)
            for data in pieces:
                cap.body_size += len(data)
                if cap.body_size <= max_body_bytes:
                    kept.append(data)
                    cap.reads.append((cap.body_size, t))
                if sse and not decoder.stopped:
                    events = decoder.feed(data, t)
                    if events:
                        cap.events_total += len(events)
                        keeper.add(events)
                        if on_events is not None:
                            on_events(events)
            if t > deadline:
                raise httpx.TimeoutException("total")
            if decoder.stopped and sse:
                break
    except httpx.TimeoutException as exc:
        now = time.perf_counter_ns()
        if str(exc) == "total" or now > deadline:
            within = (deadline - cap.t_send) / 1e9
            cap.findings.append(
                Finding(
                    "transport.total",
                    f"the exchange did not end within {within:g} s "
                    f"({cap.events_total} event(s), {cap.body_size} bytes so far)"
                    + ("" if deadline == own else " (the run's own time bound)"),
                    cap.events_total or None,
                )
            )
        else:
            cap.findings.append(_transport_finding(exc, cap, timeouts, now))
        cap.error = cap.findings[-1].message
    except (httpx.HTTPError, InflateError, zlib.error, OSError) as exc:
        cap.findings.append(_transport_finding(exc, cap, timeouts, time.perf_counter_ns()))
        cap.error = cap.findings[-1].message
    finally:
        if response is not None:
            response.close()
        cap.t_end = time.perf_counter_ns()
        cap.stalls = WATCH.between(cap.t_send, cap.t_end)
        cap.body = b"".join(kept)
        cap.events = keeper.events()
    if decode_sse and cap.status is not None and 200 <= cap.status < 300:
        if cap.error is None:
            decoder.finish()
        cap.findings[:0] = decoder.findings
        cap.comments = decoder.comments
    return cap


def load_transcript(
    stem: Path,
    *,
    on_events: Callable[[list[Event]], None] | None = None,
    keeper: EventKeeper | None = None,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Capture:
    """A capture saved by :meth:`Capture.save`, or a bare ``.sse`` body with no sidecar,
    decoded as it is read — cut at the recorded reads with their stamps, else in 1 MiB
    pieces — so that a body of any size takes bounded memory: ``on_events`` sees every
    event (validation), ``keeper`` decides which stay, the body is kept up to
    ``max_body_bytes``."""
    body_path = stem.with_suffix(".sse") if stem.suffix != ".sse" else stem
    meta_path = body_path.with_suffix(".json")
    meta: dict[str, Any] = {}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text("utf-8"))
    size = body_path.stat().st_size
    cap = Capture(
        meta.get("method", "POST"),
        meta.get("url", str(body_path)),
        [tuple(p) for p in meta.get("request_headers", [])],
        meta.get("request_body"),
        status=meta.get("status", 200),
        response_headers=[tuple(p) for p in meta.get("response_headers", [])]
        or [("content-type", "text/event-stream")],
        body_size=size,
        t_send=meta.get("t_send", 0),
        t_headers=meta.get("t_headers", 0),
        t_end=meta.get("t_end", 0),
        error=meta.get("error"),
        stalls=tuple(tuple(s) for s in meta.get("client_stalls", [])),
    )
    reads = [tuple(r) for r in meta.get("reads", [])]
    keeper = keeper or EventKeeper()
    decoder = SSEDecoder(max_event_bytes)
    kept: list[bytes] = []
    kept_bytes = 0
    with body_path.open("rb") as fh:
        for data, t in _pieces(fh, reads):
            if kept_bytes < max_body_bytes:
                piece = data[: max_body_bytes - kept_bytes]
                kept.append(piece)
                kept_bytes += len(piece)
                cap.reads.append((kept_bytes, t))
            events = decoder.feed(data, t)
            if events:
                cap.events_total += len(events)
                keeper.add(events)
                if on_events is not None:
                    on_events(events)
            if decoder.stopped:
                break
    decoder.finish()
    cap.body = b"".join(kept)
    cap.events = keeper.events()
    cap.comments = decoder.comments
    cap.findings[:0] = decoder.findings
    return cap


def _pieces(fh: Any, reads: list[tuple[int, int]]) -> Iterator[tuple[bytes, int]]:
    """The body in the pieces it arrived in (recorded reads), the rest in 1 MiB pieces."""
    start = 0
    for end, t in reads:
        if end > start:
            yield fh.read(end - start), t
            start = end
    last = reads[-1][1] if reads else 0
    while data := fh.read(1024 * 1024):
        yield data, last


def replay(cap: Capture, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Capture:
    """Decode ``cap.body`` again, cut at the recorded reads with their stamps."""
    decoder = SSEDecoder(max_event_bytes)
    events: list[Event] = []
    start = 0
    for end, t in cap.reads:
        if end > start:
            events.extend(decoder.feed(cap.body[start:end], t))
        start = end
    if start < len(cap.body):
        events.extend(decoder.feed(cap.body[start:], cap.reads[-1][1] if cap.reads else 0))
    decoder.finish()
    cap.events = events
    cap.events_total = len(events)
    cap.comments = decoder.comments
    cap.findings = [f for f in cap.findings if f.rule.startswith("transport.")]
    cap.findings[:0] = decoder.findings
    return cap


def body_excerpt(cap: Capture, event: int | None, around: int = 2) -> str:
    """The transcript lines around event ``event`` (those kept), for a failure message."""
    if event is None or not cap.events:
        return excerpt(cap.body[:400])
    lines = []
    for ev in (e for e in cap.events if abs(e.index - event) <= around):
        mark = ">" if ev.index == event else " "
        name = f"event: {ev.name} " if ev.name is not None else ""
        lines.append(f"{mark} #{ev.index} {name}data: {excerpt(ev.data, 160)}")
    return redact("\n".join(lines))
