"""The capture keeps what a report can show — the first events, the last ones and those around
each finding — while validation sees every event as it arrives, so a flood of events cannot
grow memory without bound; once judged, a capture is slimmed to what the reports show."""

from __future__ import annotations

import httpx

from streamproof.capture import REPORT_BODY_BYTES, EventKeeper, exchange
from streamproof.engine import Target, model_for
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer
from streamproof.sse import Event


def test_events_kept_are_bounded_and_validation_sees_all() -> None:
    body = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "hi"}],
            "stream": True}  # fmt: skip
    validator = model_for("openai", body)
    with ReferenceServer() as srv, httpx.Client() as client:
        target = Target(srv.url_for(faults=("event-flood",)), DEFAULT_MODEL, DEFAULT_API_KEY)
        cap = exchange(
            client, "POST", target.url("openai"), headers=target.headers("openai", "key"),
            body=body, keeper=EventKeeper(head=100, tail=10), on_events=validator.feed,
        )  # fmt: skip
    validator.finish()
    indices = [e.index for e in cap.events]
    assert indices[:100] == list(range(100))
    assert indices[100:] == list(range(cap.events_total - 10, cap.events_total))
    assert cap.events_total > 10_000
    assert validator.events == cap.events_total
    assert [f for f in validator.findings if f.level == "MUST"] == []
    assert all(e.parsed is None for e in cap.events)  # light copies: no parsed JSON kept
    cap.slim()
    assert len(cap.body) <= REPORT_BODY_BYTES and cap.body_size > REPORT_BODY_BYTES
    assert cap.reads[-1][0] <= REPORT_BODY_BYTES


def _events(first: int, last: int) -> list[Event]:
    return [Event("x" * 10_000, None, None, None, i, 0, i) for i in range(first, last)]


def test_keeper_pins_the_events_around_a_finding() -> None:
    keeper = EventKeeper(head=3, tail=4, around=2, pins=10)
    keeper.add(_events(0, 50))
    keeper.pin(48)  # in the tail: 46, 47, 48 kept, and the next two when they come
    keeper.add(_events(50, 100))
    keeper.pin(5)  # long gone from the tail: nothing more kept (the finding has its excerpt)
    kept = keeper.events()
    assert [e.index for e in kept] == [0, 1, 2, 46, 47, 48, 49, 50, 96, 97, 98, 99]
    assert {len(e.data) for e in kept} == {4096}  # each cut for the transcript
