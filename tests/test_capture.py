"""The capture keeps a bounded prefix of the events for excerpts while validation sees them all
as they arrive, so a flood of events cannot grow memory without bound."""

from __future__ import annotations

import httpx

from streamproof.capture import exchange
from streamproof.engine import Target, validator_for
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer


def test_events_kept_are_bounded_and_validation_sees_all() -> None:
    body = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "hi"}],
            "stream": True}  # fmt: skip
    validator = validator_for("openai", body)
    with ReferenceServer() as srv, httpx.Client() as client:
        target = Target(srv.url_for(faults=("event-flood",)), DEFAULT_MODEL, DEFAULT_API_KEY)
        cap = exchange(
            client, "POST", target.url("openai"), headers=target.headers("openai", "key"),
            body=body, keep_events=1000, on_events=validator.feed,
        )  # fmt: skip
    validator.finish()
    assert len(cap.events) == 1000
    assert [e.index for e in cap.events] == list(range(1000))
    assert cap.events_total > 10_000
    assert validator.events == cap.events_total
    assert [f for f in validator.findings if f.level == "MUST"] == []
