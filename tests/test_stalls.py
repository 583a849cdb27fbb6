"""A silence the client caused is not the server's: the stall watch records when this process
could not run, and ``http.incremental`` leaves that time out of the wait before a burst."""

from __future__ import annotations

import sys
import time

from streamproof.stalls import WATCH, overlap
from streamproof.validators.answers import Answer, judge

MS = 1_000_000


def _burst(t_send: int, wait_ms: int, events: int = 20) -> list[int]:
    """Content stamps: ``events`` events within 1 ms, ``wait_ms`` after ``t_send``."""
    first = t_send + wait_ms * MS
    return [first + k * 50_000 for k in range(events)]


def test_a_stall_of_this_process_is_recorded() -> None:
    WATCH.start()
    time.sleep(0.05)  # the watch is ticking
    before = sys.getswitchinterval()
    sys.setswitchinterval(1.0)  # the busy loop below keeps the GIL: no other thread runs
    try:
        t0 = time.perf_counter_ns()
        while time.perf_counter_ns() - t0 < 300 * MS:
            pass
        t1 = time.perf_counter_ns()
    finally:
        sys.setswitchinterval(before)
    time.sleep(0.05)  # the watch wakes up and records the stall
    stalled = overlap(WATCH.between(t0, t1), t0, t1)
    assert stalled >= 200 * MS, WATCH.between(t0 - 100 * MS, t1 + 100 * MS)
    assert all(b - a <= t1 - t0 for a, b in WATCH.between(t0, t1))  # clipped to the window


def check_http(t_send: int, content: list[int], stalls=()):  # type: ignore[no-untyped-def]
    """The HTTP checks of a 200 event stream whose content events came at ``content``."""
    answer = Answer("openai", "stream", 200, "text/event-stream", t_send=t_send,
                    content_t=content, stalls=stalls)  # fmt: skip
    return judge(answer).findings, answer.checked


def test_a_burst_after_silence_is_flagged_unless_the_client_stalled() -> None:
    t_send = 10**12
    content = _burst(t_send, 400)
    found, checked = check_http(t_send, content)
    assert [f.rule for f in found] == ["http.incremental"] and "http.incremental" in checked
    # the client itself stalled 300 of those 400 ms: 100 ms of silence is no sign of buffering
    stall = (t_send + 50 * MS, t_send + 350 * MS)
    found, _ = check_http(t_send, content, [stall])
    assert found == []
    # a short stall leaves a long silence flagged, and the message says what was left out
    found, _ = check_http(t_send, _burst(t_send, 900), [stall])
    assert [f.rule for f in found] == ["http.incremental"]
    assert "300 ms in which this client itself stalled are left out" in found[0].message


def test_overlap_clips_to_the_window() -> None:
    stalls = [(0, 100), (200, 300)]
    assert overlap(stalls, 50, 250) == 100
    assert overlap(stalls, 300, 400) == 0
    assert overlap([], 0, 10) == 0
