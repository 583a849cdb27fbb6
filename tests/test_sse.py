"""The SSE decoder against the WHATWG algorithm: the wpt eventsource case classes, each also
fed in 1-byte reads, plus property tests that any split of a body gives the same events."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproof.sse import SSEDecoder, decode_body


def decode(body: bytes, step: int | None = None, max_event_bytes: int = 1 << 24):
    decoder = SSEDecoder(max_event_bytes)
    events = []
    if step is None:
        events += decoder.feed(body, 1)
    else:
        for i in range(0, len(body), step):
            events += decoder.feed(body[i : i + step], i)
    decoder.finish()
    return [(e.name, e.data, e.id, e.retry) for e in events], sorted(
        {f.rule for f in decoder.findings}
    )


# body, expected events as (name, data, last id, retry), expected wire findings
CASES = {
    "single data": (b"data: a\n\n", [(None, "a", None, None)], []),
    "no space after colon": (b"data:a\n\n", [(None, "a", None, None)], []),
    "only one leading space removed": (b"data:  a\n\n", [(None, " a", None, None)], []),
    "tab is kept": (b"data:\ta\n\n", [(None, "\ta", None, None)], []),
    "multi-line data joins with LF": (
        b"data: a\ndata: b\ndata:\n\n",
        [(None, "a\nb\n", None, None)],
        [],
    ),
    "event name": (b"event: add\ndata: 1\n\n", [("add", "1", None, None)], []),
    "last event name wins": (b"event: a\nevent: b\ndata: 1\n\n", [("b", "1", None, None)], []),
    "event name resets after dispatch": (
        b"event: a\ndata: 1\n\ndata: 2\n\n",
        [("a", "1", None, None), (None, "2", None, None)],
        [],
    ),
    "comment ignored": (b": keep-alive\ndata: a\n\n", [(None, "a", None, None)], ["sse.comments"]),
    "long comment with NUL": (
        b":" + b"x\x00" * 5000 + b"\ndata: a\n\n",
        [(None, "a", None, None)],
        ["sse.comments"],
    ),
    "field without colon is a name with empty value": (
        b"data\n\n",
        [(None, "", None, None)],
        [],
    ),
    "unknown field ignored": (b"foo: bar\ndata: a\n\n", [(None, "a", None, None)], []),
    "field names are case-sensitive": (b"Data: a\ndata: b\n\n", [(None, "b", None, None)], []),
    "CRLF endings": (
        b"data: a\r\n\r\ndata: b\r\n\r\n",
        [(None, "a", None, None), (None, "b", None, None)],
        ["sse.line-endings"],
    ),
    "CR endings": (
        b"data: a\r\rdata: b\r\r",
        [(None, "a", None, None), (None, "b", None, None)],
        ["sse.line-endings"],
    ),
    "mixed endings": (
        b"data: a\r\ndata: b\n\rdata: c\r\n\n",
        [(None, "a\nb", None, None), (None, "c", None, None)],
        ["sse.line-endings"],
    ),
    "empty data with no field does not dispatch": (
        b"\n\n\ndata: a\n\n",
        [(None, "a", None, None)],
        [],
    ),
    "id persists": (
        b"id: 7\ndata: a\n\ndata: b\n\n",
        [(None, "a", "7", None), (None, "b", "7", None)],
        [],
    ),
    "id with NUL is ignored": (b"id: 1\x002\ndata: a\n\n", [(None, "a", None, None)], []),
    "id-only block is not dispatched": (
        b"id: 1\n\ndata: a\n\n",
        [(None, "a", "1", None)],
        ["sse.meta-only"],
    ),
    "retry digits": (b"retry: 1500\ndata: a\n\n", [(None, "a", None, 1500)], []),
    "bogus retry ignored": (b"retry: 15x\ndata: a\n\n", [(None, "a", None, None)], []),
    "retry-only block": (b"retry: 10\n\n", [], ["sse.meta-only"]),
    "first BOM dropped": (b"\xef\xbb\xbfdata: a\n\n", [(None, "a", None, None)], ["sse.bom"]),
    "second BOM kept (field name no longer matches)": (
        b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n",
        [(None, "b", None, None)],
        ["sse.bom"],
    ),
    "invalid UTF-8 becomes U+FFFD": (
        b"data: \xff\n\n",
        [(None, "\ufffd", None, None)],
        ["sse.utf8"],
    ),
    "code point split between events": (
        b"data: \xc3\n\ndata: \xa9\n\n",
        [(None, "\ufffd", None, None), (None, "\ufffd", None, None)],
        ["sse.utf8"],
    ),
    "valid multi-byte kept": ("data: é€😀\n\n".encode(), [(None, "é€😀", None, None)], []),
    "NUL in data kept": (b"data: a\x00b\n\n", [(None, "a\x00b", None, None)], []),
    "unterminated last event dropped": (
        b"data: a\n\ndata: b",
        [(None, "a", None, None)],
        ["sse.terminated"],
    ),
    "data before final empty line missing": (
        b"data: a\n\ndata: b\n",
        [(None, "a", None, None)],
        ["sse.terminated"],
    ),
    "space-only value": (b"data: \n\n", [(None, "", None, None)], []),
    "colon in value kept": (b"data: a: b\n\n", [(None, "a: b", None, None)], []),
    "data before the event name (Bedrock)": (
        b"event: a\ndata: 1\n\ndata: 2\nevent: b\n\n",
        [("a", "1", None, None), ("b", "2", None, None)],
        ["sse.field-order"],
    ),
}


@pytest.mark.parametrize("step", [None, 1, 2, 7], ids=["whole", "1-byte", "2-byte", "7-byte"])
@pytest.mark.parametrize("name", list(CASES))
def test_whatwg_case(name: str, step: int | None) -> None:
    body, events, findings = CASES[name]
    assert decode(body, step) == (events, findings)


def test_crlf_split_across_reads() -> None:
    body = b"data: a\r\n\r\ndata: b\r\n\r\n"
    for cut in range(1, len(body)):
        decoder = SSEDecoder()
        events = decoder.feed(body[:cut]) + decoder.feed(body[cut:])
        assert [e.data for e in events] == ["a", "b"], cut


def test_stamps_are_those_of_the_completing_read() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n", 100) == []
    (event,) = decoder.feed(b"\ndata: b", 200)
    assert (event.data, event.t, event.offset, event.index) == ("a", 200, 0, 0)
    (event,) = decoder.feed(b"\n\n", 300)
    assert (event.data, event.t, event.offset, event.index) == ("b", 300, 9, 1)


def test_offsets_with_crlf_and_bom() -> None:
    body = b"\xef\xbb\xbfdata: a\r\n\r\n: c\r\ndata: b\r\n\r\n"
    events, _ = decode_body(body)
    assert [body[e.offset : e.offset + 4] for e in events] == [b"data", b": c\r"]


def test_max_event_line_without_end() -> None:
    decoder = SSEDecoder(max_event_bytes=1024)
    events = decoder.feed(b"data: ok\n\n" + b"data: " + b"x" * 4000)
    assert [e.data for e in events] == ["ok"]
    assert decoder.stopped
    assert [f.rule for f in decoder.findings] == ["sse.max-event"]
    assert decoder.feed(b"\n\ndata: later\n\n") == []


def test_max_event_many_data_lines() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    decoder.feed(b"data: " + b"y" * 100 + b"\n" * 1)
    for _ in range(20):
        decoder.feed(b"data: " + b"y" * 100 + b"\n")
    assert decoder.stopped
    assert decoder.findings[0].rule == "sse.max-event"


def test_utf8_split_across_reads_is_valid() -> None:
    body = "data: 😀é\n\n".encode()
    for cut in range(1, len(body)):
        decoder = SSEDecoder()
        events = decoder.feed(body[:cut]) + decoder.feed(body[cut:])
        decoder.finish()
        assert [e.data for e in events] == ["😀é"]
        assert decoder.findings == []


def test_body_ending_inside_a_code_point() -> None:
    _, findings = decode(b"data: a\n\n\xf0\x9f")
    assert "sse.utf8" in findings


_lines = st.lists(
    st.one_of(
        st.builds(lambda v: b"data: " + v, st.binary(max_size=12)),
        st.sampled_from(
            [b"", b":c", b"event: x", b"id: 3", b"retry: 12", b"data", b"\xef\xbb\xbf"]
        ),
    ),
    max_size=30,
)
_ends = st.sampled_from([b"\n", b"\r\n", b"\r"])


@settings(max_examples=300, deadline=None)
@given(lines=_lines, end=_ends, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_split_gives_the_same_events(lines: list[bytes], end: bytes, cuts: list[int]) -> None:
    body = end.join(lines) + end
    whole, whole_findings = decode(body)
    decoder = SSEDecoder()
    events = []
    start = 0
    for cut in sorted({c for c in cuts if c < len(body)}):
        events += decoder.feed(body[start:cut])
        start = cut
    events += decoder.feed(body[start:])
    decoder.finish()
    assert [(e.name, e.data, e.id, e.retry) for e in events] == whole
    assert sorted({f.rule for f in decoder.findings}) == whole_findings


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=600), step=st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_never_raise(body: bytes, step: int) -> None:
    decoder = SSEDecoder(max_event_bytes=256)
    for i in range(0, len(body), step):
        decoder.feed(body[i : i + step])
    decoder.finish()
    assert all(f.rule.startswith("sse.") for f in decoder.findings)


def test_the_last_comment_of_a_block_rides_on_its_event() -> None:
    events, decoder = decode_body(b": t=1\ndata: a\n\ndata: b\n\n: x\n: t=2\ndata: c\n\n")
    assert [(e.data, e.comment) for e in events] == [("a", b" t=1"), ("b", None), ("c", b" t=2")]
    assert decoder.comments == 3


def test_data_before_the_event_name_is_counted_with_its_first_event() -> None:
    body = b"event: a\ndata: 1\n\n" + b"data: 2\nevent: b\n\n" * 3 + b"data: 3\n\n"
    _, decoder = decode_body(body)
    (finding,) = decoder.findings
    assert (finding.rule, finding.event, decoder.late_names) == ("sse.field-order", 1, 3)
    assert finding.message.startswith("3 event(s) with the data: line before the event: line")
