"""Load accounting that hides nothing: a stream with a deviation still gives its figures (a
SHOULD one is no failure at all, a MUST one is a failure named by rule), and dropped streams
are counted exactly — a reused connection is retried only when it had sat idle and failed
before the first response byte, and every retry is counted.

Each run is bounded (``--requests-per-user`` ends it, ``-t`` and a kill bound it)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time

import orjson
import pytest
from _load_support import SECRET, records, run_locust, stats_rows, summary

from streamproof.engine import model_for
from streamproof.load.apis import build_request, request_headers
from streamproof.load.stream import STALE_IDLE_NS, StreamClient
from streamproof.server import ReferenceServer, Timing

FAST = Timing(ttft_ms=1, gap_ms=0.2, tokens_per_chunk=1)


@pytest.fixture(scope="module")
def server():
    with ReferenceServer(api_key=SECRET) as srv:
        yield srv
        assert srv.errors == []


def _run(
    server, tmp_path, faults: tuple[str, ...], users: int, per_user: int, api: str = "openai"
) -> dict:
    args = [
        "-u", str(users), "-r", str(users), "-t", "40s",
        "--host", server.url_for(faults=faults, timing=FAST),
        "--api", api, "--max-tokens", "20", "--requests-per-user", str(per_user),
    ]  # fmt: skip
    run = run_locust(args, tmp_path, timeout=90)
    assert (tmp_path / "summary.json").exists(), run.stdout[-3000:]
    return summary(tmp_path)


# a SHOULD deviation per API: for responses CRLF line endings (a wire fault of every API)
SHOULD = [
    ("openai", "no-finish-key", "openai.finish-reason-key"),
    ("responses", "crlf", "sse.line-endings"),
]


@pytest.mark.parametrize(("api", "fault", "rule"), SHOULD, ids=[s[0] for s in SHOULD])
def test_should_deviation_keeps_figures_and_fails_nothing(
    api, fault, rule, server, tmp_path
) -> None:
    s = _run(server, tmp_path, (fault,), users=2, per_user=5, api=api)
    req = s["requests"]
    assert req["total"] == req["completed"] == 10
    assert req["failed"] == 0 and req["by_error"] == {}
    assert s["violations"] == {rule: {"level": "SHOULD", "requests": 10}}
    assert s["ttft_ms"]["p50"] is not None and s["e2e_ms"]["p50"] is not None
    assert s["output_tokens"] == {"total": 10 * 20, "source": "usage"}
    assert all(r["ok"] and r["api"] == api for r in records(tmp_path))
    e2e = stats_rows(tmp_path)[(api, "E2E")]
    assert e2e["Failure Count"] == "0"


def test_must_violation_is_a_failure_with_its_figures(server, tmp_path) -> None:
    s = _run(server, tmp_path, ("role-every-chunk",), users=2, per_user=5)
    req = s["requests"]
    assert req["completed"] == 10  # read to the end: the figures count
    assert req["failed"] == 10 and req["by_error"] == {"protocol": 10}
    assert s["violations"]["openai.role-once"] == {"level": "MUST", "requests": 10}
    assert s["ttft_ms"]["p50"] is not None and s["output_tokens"]["total"] == 10 * 20
    assert all(not r["ok"] and r["completed"] for r in records(tmp_path))
    rows = stats_rows(tmp_path)
    assert rows[("openai", "E2E")]["Failure Count"] == "10"
    assert int(rows[("openai", "TTFT")]["Request Count"]) == 10


def test_dropped_streams_are_counted_exactly(server, tmp_path) -> None:
    """drop-rate=0.2 cuts exactly every fifth stream mid-body; with keep-alive, none of
    them may be retried away: the failed fraction is 20% within 3 points over 520 streams."""
    s = _run(server, tmp_path, ("drop-rate=0.2",), users=4, per_user=130)
    req = s["requests"]
    assert req["total"] == 520
    assert abs(req["failed"] / req["total"] - 0.2) <= 0.03, req
    assert req["by_error"] == {"transport.broken": req["failed"]}
    assert req["retried"] == 0  # every reuse was immediate: nothing was stale
    assert req["completed"] == req["total"] - req["failed"]


class _DropsSecondRequest:
    """A keep-alive HTTP server on 127.0.0.1 that answers every request with a short
    OpenAI stream, except the second one it receives: that one it reads and then closes
    the connection on, without a byte (what aimock's disconnect chaos does). With
    ``close_after_answer`` it answers every request and closes each connection after it."""

    BODY = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
        b'[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}'
        b"\n\ndata: [DONE]\n\n"
    )

    def __init__(self, close_after_answer: bool = False) -> None:
        self.close_after_answer = close_after_answer  # close each connection once answered
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            for _ in range(4):  # bounded: the tests open at most 3 connections
                conn, _ = self.sock.accept()
                with conn:
                    conn.settimeout(5)
                    self._connection(conn)

    def _connection(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            while len(buffer) < length:
                buffer += conn.recv(65536)
            buffer = buffer[length:]
            self.requests += 1
            if self.requests == 2 and not self.close_after_answer:
                return  # the connection closes: not one byte of an answer
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"content-length: %d\r\n\r\n%b" % (len(self.BODY), self.BODY)
            )
            if self.close_after_answer:
                return

    def close(self) -> None:
        self.sock.close()


def _send(client: StreamClient):
    body = orjson.dumps(build_request("openai", "m", "hello", 3))
    return client.stream(
        "openai",
        body,
        request_headers("openai", None),
        model_for("openai", rules=False, content_t=[]),
    )


@pytest.mark.parametrize("idle", [False, True])
def test_a_connection_closed_on_the_request_is_retried_only_after_idling(idle: bool) -> None:
    """Reused at once, a connection the server closes on our request is the server dropping
    it: a failure, not retried. Reused after sitting idle past STALE_IDLE_NS, the same close
    is the server's keep-alive timer: sent again once, on a new connection, and marked."""
    server = _DropsSecondRequest()
    client = StreamClient(server.base_url)
    try:
        first = _send(client)
        assert first.error_kind is None and not first.retried
        if idle:
            client._idle_since -= STALE_IDLE_NS  # as if it had sat idle that long
        second = _send(client)
        assert server.requests == (3 if idle else 2)
        if idle:
            assert second.error_kind is None and second.retried
            assert second.record(0.0)["retried"] is True
        else:
            assert second.error_kind == "transport.broken" and not second.retried
            assert "before the response headers" in (second.error or "")
    finally:
        client.close()
        server.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_before_sending() -> None:
    """A keep-alive connection the server closed after its answer (no Connection: close)
    is found closed before the next request goes out: a new connection, nothing to retry."""
    server = _DropsSecondRequest(close_after_answer=True)
    client = StreamClient(server.base_url)
    try:
        assert _send(client).error_kind is None
        time.sleep(0.05)  # the server's FIN arrives
        second = _send(client)
        assert second.error_kind is None and not second.retried
        assert server.requests == 2  # both answered: nothing was lost or sent twice
    finally:
        client.close()
        server.close()
