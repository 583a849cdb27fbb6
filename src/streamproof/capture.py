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
from collections.abc import Callable
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

__all__ = ["Capture", "Timeouts", "exchange", "load_transcript", "replay", "tls_context"]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024  # kept for the report; decoding goes on past it
DEFAULT_MAX_KEPT_EVENTS = 100_000  # kept for excerpts; validation sees every event
# A compressed body is read until it inflates past this; then the exchange stops with a
# transport.broken finding (a compression bomb). No LLM stream comes near it.
DEFAULT_MAX_INFLATED_BYTES = 64 * 1024 * 1024
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
    reads: list[tuple[int, int]] = field(default_factory=list)  # (body end offset, t)
    events: list[Event] = field(default_factory=list)  # the first ones (keep_events)
    events_total: int = 0  # all events decoded, kept or not
    findings: list[Finding] = field(default_factory=list)  # wire + transport
    comments: int = 0
    t_send: int = 0
    t_headers: int | None = None
    t_end: int = 0
    error: str | None = None

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
            "error": redact(self.error) if self.error else None,
        }
        meta_path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return body_path, meta_path


def _redacted_body(body: Any) -> Any:
    if isinstance(body, bytes):
        return redact(body.decode("utf-8", "replace"))
    return json.loads(redact(json.dumps(body)))


def _transport_finding(exc: Exception, cap: Capture, timeouts: Timeouts, now: int) -> Finding:
    n = len(cap.events)
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
                f"no response headers within {timeouts.first_byte:g} s",
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

    def __init__(self, encoding: str, limit: int = DEFAULT_MAX_INFLATED_BYTES) -> None:
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
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES,
    keep_events: int = DEFAULT_MAX_KEPT_EVENTS,
    on_events: Callable[[list[Event]], None] | None = None,
) -> Capture:
    """Send one request and read the whole response within the time bounds.

    With ``decode_sse`` a 2xx body is decoded as an event stream whatever its content type
    (a wrong content type is a finding, not a reason to stop looking). ``body`` is sent as
    JSON, or as it is when it is bytes (a malformed body on purpose). ``on_events`` gets
    each batch of events as it is decoded (validation as the bytes arrive); only the first
    ``keep_events`` are kept in the capture, for excerpts, so a flood cannot grow memory.

    Redirects are never followed: a 3xx is the answer (an ``http.status`` finding), so the
    credentials in ``headers`` only ever go to ``url``'s origin. A ``Content-Encoding``
    body is inflated a bounded step at a time and at most ``max_inflated_bytes`` in all.
    """
    cap = Capture(method, url, mask_headers(headers), body)
    decoder = SSEDecoder(max_event_bytes)
    timeout = httpx.Timeout(
        connect=timeouts.connect,
        read=timeouts.first_byte,
        write=timeouts.connect,
        pool=timeouts.connect,
    )
    payload = {"content": body} if isinstance(body, bytes) else {"json": body}
    request = client.build_request(method, url, headers=headers, timeout=timeout, **payload)
    cap.t_send = time.perf_counter_ns()
    deadline = cap.t_send + int(timeouts.total * 1e9)
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
                        room = keep_events - len(cap.events)
                        if room > 0:
                            cap.events.extend(events[:room])
                        if on_events is not None:
                            on_events(events)
            if t > deadline:
                raise httpx.TimeoutException("total")
            if decoder.stopped and sse:
                break
    except httpx.TimeoutException as exc:
        now = time.perf_counter_ns()
        if str(exc) == "total" or now > deadline:
            cap.findings.append(
                Finding(
                    "transport.total",
                    f"the exchange did not end within {timeouts.total:g} s "
                    f"({len(cap.events)} event(s), {cap.body_size} bytes so far)",
                    len(cap.events) or None,
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
        cap.body = b"".join(kept)
    if decode_sse and cap.status is not None and 200 <= cap.status < 300:
        if cap.error is None:
            decoder.finish()
        cap.findings[:0] = decoder.findings
        cap.comments = decoder.comments
    return cap


def load_transcript(stem: Path) -> Capture:
    """A capture saved by :meth:`Capture.save`, or a bare ``.sse`` body with no sidecar."""
    body_path = stem.with_suffix(".sse") if stem.suffix != ".sse" else stem
    meta_path = body_path.with_suffix(".json")
    body = body_path.read_bytes()
    meta: dict[str, Any] = {}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text("utf-8"))
    cap = Capture(
        meta.get("method", "POST"),
        meta.get("url", str(body_path)),
        [tuple(p) for p in meta.get("request_headers", [])],
        meta.get("request_body"),
        status=meta.get("status", 200),
        response_headers=[tuple(p) for p in meta.get("response_headers", [])]
        or [("content-type", "text/event-stream")],
        body=body,
        body_size=len(body),
        reads=[tuple(r) for r in meta.get("reads", [])] or [(len(body), 0)],
        t_send=meta.get("t_send", 0),
        t_headers=meta.get("t_headers", 0),
        t_end=meta.get("t_end", 0),
        error=meta.get("error"),
    )
    return replay(cap)


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
    """The transcript lines around event ``event``, for a failure message."""
    if event is None or not cap.events:
        return excerpt(cap.body[:400])
    lo = max(0, event - around)
    hi = min(len(cap.events), event + around + 1)
    lines = []
    for ev in cap.events[lo:hi]:
        mark = ">" if ev.index == event else " "
        name = f"event: {ev.name} " if ev.name is not None else ""
        lines.append(f"{mark} #{ev.index} {name}data: {excerpt(ev.data, 160)}")
    return redact("\n".join(lines))
