"""The only Server-Sent Events decoder: bytes in, events out, no network.

Written by hand because no maintained library does what the suite needs: httpx-sse and the
SDK decoders work on text (they lose raw bytes, BOM and bad-UTF-8 evidence), dispatch events
the WHATWG algorithm drops, keep no per-event arrival stamp and have no size bound. This one
follows "Interpreting an event stream" (WHATWG HTML) exactly, stamps every event with the
monotonic time of the read that completed it, and reports the ``sse.*`` wire findings
(``sse.field-order`` is no rule of its own: an API's rule adopts it, see ``answers.py``).

It is the hot path of offline checks and of validation under load, so per-event work is
kept small: LF-only input is split with one ``bytes.split``; the CR path is taken only when a
chunk holds a CR; UTF-8 is checked by a C decoder only on chunks that are not pure ASCII.
"""

from __future__ import annotations

import codecs
from typing import Final

from .findings import Finding, excerpt

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "Event", "SSEDecoder", "decode_body"]

DEFAULT_MAX_EVENT_BYTES: Final = 16 * 1024 * 1024
_BOM: Final = b"\xef\xbb\xbf"
_COLON: Final = 58  # ord(":")


class Event:
    """One dispatched event.

    ``name`` is the value of the last ``event:`` field, or None when the event had none (the
    WHATWG type then defaults to ``message``, see :attr:`type`). ``t`` is the
    ``perf_counter_ns`` stamp of the read that completed the event; ``offset`` is the byte
    offset in the body where the event's first line starts; ``index`` counts dispatched
    events from 0. ``comment`` is the last comment line of the event's block (without the
    colon), or None: WHATWG clients ignore comments, but the reference server puts its send
    stamp there (``: t=<ns>``) for load tests that measure their own lateness. ``parsed``
    caches ``data`` parsed as JSON for its consumers (``validators.base.event_json``), so the
    validator and the load generator's tracker parse each event once between them.
    """

    __slots__ = ("comment", "data", "id", "index", "name", "offset", "parsed", "retry", "t")

    def __init__(
        self,
        data: str,
        name: str | None,
        id: str | None,
        retry: int | None,
        index: int,
        offset: int,
        t: int,
        comment: bytes | None = None,
    ) -> None:
        self.data = data
        self.name = name
        self.id = id
        self.retry = retry
        self.index = index
        self.offset = offset
        self.t = t
        self.comment = comment
        self.parsed: object = None

    @property
    def type(self) -> str:
        return self.name if self.name is not None else "message"

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "name": self.name,
            "data": self.data,
            "id": self.id,
            "retry": self.retry,
            "offset": self.offset,
            "t": self.t,
        }

    def __repr__(self) -> str:
        return f"Event(index={self.index}, name={self.name!r}, data={excerpt(self.data, 60)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.data, self.name, self.id, self.retry) == (
            other.data,
            other.name,
            other.id,
            other.retry,
        )

    __hash__ = None  # type: ignore[assignment]


class SSEDecoder:
    """Incremental WHATWG event-stream decoder.

    ``feed(chunk, t)`` returns the events the chunk completed; ``finish()`` ends the body.
    Wire findings accumulate in :attr:`findings`. When a line or an event passes
    ``max_event_bytes`` the decoder records ``sse.max-event`` and stops: :attr:`stopped` is
    set and further input is ignored, so a hostile body cannot grow memory without bound.
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.findings: list[Finding] = []
        self.comments = 0
        # events whose data: came before their event: line (legal; told, not judged, here)
        self.late_names = 0
        self._late_first: int | None = None
        self.stopped = False
        self.last_event_id: str | None = None
        self.bytes_seen = 0
        self._buf = b""  # the incomplete last line
        self._more: list[bytes] = []  # reads without a line end, after _buf (a long line)
        self._more_size = 0
        self._buf_pos = 0  # body offset of _buf[0]
        self._at_start = True  # BOM not yet decided
        self._cr_pending = False  # the previous chunk ended with CR
        self._saw_cr = False
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self._utf8_partial = False
        self._utf8_bad = False
        # the event being built
        self._data: list[bytes] = []
        self._data_size = 0
        self._name: bytes | None = None
        self._comment: bytes | None = None  # the block's last comment line
        self._meta = False  # an id: or retry: field in this block
        self._start = -1  # offset of the block's first line
        self._retry: int | None = None
        self._count = 0

    # -- input -------------------------------------------------------------------------

    def feed(self, chunk: bytes, t: int = 0) -> list[Event]:
        if self.stopped or not chunk:
            return []
        pos = self.bytes_seen
        self.bytes_seen = pos + len(chunk)
        if self._utf8_partial or not chunk.isascii():
            self._check_utf8(chunk, pos)
        if self._at_start:
            chunk, pos = self._strip_bom(chunk, pos)
            if not chunk:
                return []
        if self._cr_pending:
            self._cr_pending = False
            if chunk[0] == 10:  # the LF of a CRLF split across reads
                chunk = chunk[1:]
                pos += 1
                if not chunk:
                    return []
        if self._buf:
            if 10 not in chunk and 13 not in chunk:
                # still inside a long line: keep the piece, join once when the line ends
                # (joining on every read would copy a 16 MiB line hundreds of times)
                self._more.append(chunk)
                self._more_size += len(chunk)
                if len(self._buf) + self._more_size > self.max_event_bytes:
                    self._too_big(
                        f"a line passed {self.max_event_bytes} bytes without ending", self._buf
                    )
                return []
            if self._more:
                buf = b"".join((self._buf, *self._more, chunk))
                self._more = []
                self._more_size = 0
            else:
                buf = self._buf + chunk
            base = self._buf_pos
        else:
            buf = chunk
            base = pos
        if 13 in buf:
            return self._feed_cr(buf, base, t)
        lines = buf.split(b"\n")
        rest = lines.pop()
        out: list[Event] = []
        for line in lines:
            if line:
                if self._start < 0:
                    self._start = base
                self._line(line, base)
            elif self._start >= 0:
                self._dispatch(out, t)
            base += len(line) + 1
            if self.stopped:
                return out
        self._keep(rest, base)
        return out

    def finish(self) -> list[Event]:
        """End of body: an event without its terminating blank line is discarded."""
        if self._utf8_partial and not self._utf8_bad:
            self._utf8_bad = True
            self.findings.append(
                Finding("sse.utf8", "the body ends inside a UTF-8 sequence", self._count)
            )
        if not self.stopped and (self._buf or self._data or self._name is not None):
            tail = self._buf[:400] or b"\n".join(self._data)[:400]
            self.findings.append(
                Finding(
                    "sse.terminated",
                    "the body ends without the blank line that dispatches the last event: "
                    "a conforming client drops it",
                    self._count,
                    excerpt(tail),
                )
            )
        if self.comments:
            self.findings.append(
                Finding("sse.comments", f"{self.comments} comment line(s) (keep-alives)")
            )
        if self.late_names:
            self.findings.append(
                Finding(
                    "sse.field-order",
                    f"{self.late_names} event(s) with the data: line before the event: line "
                    "(legal SSE: a conforming decoder reads the fields in any order)",
                    self._late_first,
                )
            )
        self._buf = b""
        self._more = []
        self._data = []
        self._name = None
        self.stopped = True
        return []

    # -- internals ---------------------------------------------------------------------

    def _feed_cr(self, buf: bytes, base: int, t: int) -> list[Event]:
        if not self._saw_cr:
            self._saw_cr = True
            self.findings.append(
                Finding(
                    "sse.line-endings",
                    "CR or CRLF line endings: the anthropic SDK splits events only on "
                    "\\n\\n, \\r\\r or \\r\\n\\r\\n and mixed endings lose events",
                    self._count,
                    excerpt(repr(buf[:80])),
                )
            )
        out: list[Event] = []
        lines = buf.splitlines(keepends=True)
        last = lines[-1]
        rest = b""
        if last[-1] not in (10, 13):
            rest = lines.pop()
        elif last[-1] == 13:
            self._cr_pending = True  # a following LF belongs to this line ending
        for raw in lines:
            size = len(raw)
            line = raw[:-2] if raw[-2:] == b"\r\n" else raw[:-1]
            if line:
                if self._start < 0:
                    self._start = base
                self._line(line, base)
            elif self._start >= 0:
                self._dispatch(out, t)
            base += size
            if self.stopped:
                return out
        self._keep(rest, base)
        return out

    def _keep(self, rest: bytes, pos: int) -> None:
        if len(rest) > self.max_event_bytes:
            self._too_big(f"a line passed {self.max_event_bytes} bytes without ending", rest)
            return
        self._buf = rest
        self._buf_pos = pos

    def _line(self, line: bytes, pos: int) -> None:
        if line[0] == _COLON:
            self.comments += 1
            self._comment = line[1:]
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._data_size += len(value) + 1
            if self._data_size > self.max_event_bytes:
                self._too_big(f"an event's data passed {self.max_event_bytes} bytes", value)
        elif name == b"event":
            if self._data:
                self._late_name()
            self._name = value
        elif name == b"id":
            self._meta = True
            if 0 not in value:
                self.last_event_id = value.decode("utf-8", "replace")
        elif name == b"retry":
            self._meta = True
            if value.isdigit() and value.isascii():
                self._retry = int(value)

    def _late_name(self) -> None:
        if not self.late_names:
            self._late_first = self._count
        self.late_names += 1

    def _dispatch(self, out: list[Event], t: int) -> None:
        parts = self._data
        if not parts:
            if self._meta:
                self.findings.append(
                    Finding(
                        "sse.meta-only",
                        "an event of only id:/retry: fields and no data (the openai SDK "
                        "parses its empty data as JSON and fails)",
                        self._count,
                    )
                )
            self._reset()
            return
        raw = parts[0] if len(parts) == 1 else b"\n".join(parts)
        data = raw.decode("ascii") if raw.isascii() else self._decode_event(raw)
        name = self._name
        out.append(
            Event(
                data,
                None if name is None else name.decode("utf-8", "replace"),
                self.last_event_id,
                self._retry,
                self._count,
                self._start,
                t,
                self._comment,
            )
        )
        self._count += 1
        self._reset()

    def _reset(self) -> None:
        self._comment = None
        self._data = []
        self._data_size = 0
        self._name = None
        self._meta = False
        self._retry = None
        self._start = -1

    def _decode_event(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if not self._utf8_bad:
                self._utf8_bad = True
                self.findings.append(
                    Finding(
                        "sse.utf8",
                        f"event data is not valid UTF-8 at byte {exc.start} of the event "
                        "(a code point split between events, or invalid bytes)",
                        self._count,
                        excerpt(repr(raw[max(0, exc.start - 20) : exc.start + 20])),
                    )
                )
            return raw.decode("utf-8", "replace")

    def _check_utf8(self, chunk: bytes, pos: int) -> None:
        try:
            self._utf8.decode(chunk)
        except UnicodeDecodeError as exc:
            self._utf8.reset()
            self._utf8_partial = False
            if not self._utf8_bad:
                self._utf8_bad = True
                self.findings.append(
                    Finding(
                        "sse.utf8",
                        f"invalid UTF-8 at body offset {pos + exc.start}",
                        self._count,
                        excerpt(repr(chunk[max(0, exc.start - 20) : exc.start + 20])),
                    )
                )
            return
        self._utf8_partial = bool(self._utf8.getstate()[0])

    def _strip_bom(self, chunk: bytes, pos: int) -> tuple[bytes, int]:
        head = self._buf + chunk if self._buf else chunk
        if len(head) < 3 and _BOM.startswith(head):
            self._buf = head  # not enough bytes yet to tell
            self._buf_pos = 0
            return b"", pos
        self._at_start = False
        if self._buf:  # the held bytes go back in front of this chunk
            self._buf = b""
            chunk, pos = head, 0
        if chunk.startswith(_BOM):
            self.findings.append(
                Finding(
                    "sse.bom",
                    "the body starts with a UTF-8 byte order mark: SDK decoders keep it and "
                    "lose the first event",
                )
            )
            return chunk[3:], pos + 3
        return chunk, pos

    def _too_big(self, message: str, sample: bytes) -> None:
        self.findings.append(Finding("sse.max-event", message, self._count, excerpt(sample[:80])))
        self.stopped = True
        self._buf = b""
        self._more = []
        self._data = []


def decode_body(
    body: bytes, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> tuple[list[Event], SSEDecoder]:
    """Decode a whole body at once (offline use): the events and the finished decoder."""
    decoder = SSEDecoder(max_event_bytes)
    events = decoder.feed(body)
    decoder.finish()
    return events, decoder
