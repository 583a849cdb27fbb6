"""Where the latency figures start: TTFB and TTFT are both measured from the request's send.

The server waits 200 ms before its response headers and 300 ms before its first token, so a
TTFT timed from the headers would read about 100 ms, and a TTFB timed from the first token
300 ms. The bounds come from that schedule: the server is never more than half a millisecond
early (``EARLY_NS``), and medians over several requests keep one late frame on a busy
machine from deciding the result.
"""

from __future__ import annotations

import statistics
import time

import orjson
import pytest
from _load_support import SECRET, run_locust, summary

from streamproof.endpoints import request_headers
from streamproof.engine import model_for
from streamproof.load.apis import build_request
from streamproof.load.metrics import request_metrics
from streamproof.load.stream import StreamClient
from streamproof.server import DEFAULT_MODEL, ReferenceServer, Timing
from streamproof.server.send import EARLY_NS

TTFB_MS, TTFT_MS = 200.0, 300.0
TIMING = Timing(ttfb_ms=TTFB_MS, ttft_ms=TTFT_MS, gap_ms=5)
EARLY_MS = EARLY_NS / 1e6
REQUESTS = 5


@pytest.fixture(scope="module")
def server():
    with ReferenceServer(api_key=SECRET) as srv:
        yield srv


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_the_stream_client_times_both_from_the_send(server, api: str) -> None:
    client = StreamClient(server.url_for(timing=TIMING))
    body = orjson.dumps(build_request(api, DEFAULT_MODEL, "hello", 8))
    try:
        metrics = [
            request_metrics(
                client.stream(
                    api,
                    body,
                    request_headers(api, SECRET),
                    model_for(api, rules=False, content_t=[]),
                ).record(time.time())
            )
            for _ in range(REQUESTS)
        ]
    finally:
        client.close()
    ttfb = statistics.median(m.ttfb for m in metrics)
    ttft = statistics.median(m.ttft for m in metrics)
    assert TTFB_MS - EARLY_MS <= ttfb < TTFT_MS, ttfb  # the headers, not the first token
    assert ttft >= TTFT_MS - EARLY_MS, ttft  # from the send, not from the headers
    assert ttft - ttfb >= (TTFT_MS - TTFB_MS) / 2, (ttfb, ttft)


def test_the_load_summary_reports_both_from_the_send(server, tmp_path) -> None:
    """The same through Locust, as a user reads it in summary.json."""
    args = [
        "-u", "1", "-r", "1", "-t", "30s", "--host", server.url_for(timing=TIMING),
        "--api", "openai", "--max-tokens", "8", "--requests-per-user", str(REQUESTS),
    ]  # fmt: skip
    run = run_locust(args, tmp_path, timeout=60)
    assert run.returncode == 0, run.stdout[-3000:]
    s = summary(tmp_path)
    assert s["requests"]["completed"] == REQUESTS
    assert TTFB_MS - EARLY_MS <= s["ttfb_ms"]["p50"] < TTFT_MS, s["ttfb_ms"]
    assert s["ttft_ms"]["p50"] >= TTFT_MS - EARLY_MS, s["ttft_ms"]
    assert s["ttft_ms"]["min"] >= TTFT_MS - EARLY_MS, s["ttft_ms"]  # the server is never early
