"""HTTPS end to end: the reference server behind TLS with a private CA (made by trustme), the
suite's client and the load generator trusting it through ``SSL_CERT_FILE`` as a user behind
a corporate CA does, and a clear failure by kind when the certificate is not trusted."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import trustme
from _load_support import SECRET, all_completed, free_port, records, run_locust, summary

from streamproof.engine import Runner, Target, model_for
from streamproof.load.apis import build_request, request_headers
from streamproof.load.stream import StreamClient
from streamproof.scenarios import SCENARIOS
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer, Timing
from streamproof.server.send import EARLY_NS
from streamproof.server.text import STORY

TIMING = Timing(ttft_ms=100, gap_ms=10, tokens_per_chunk=1)
BY_ID = {s.id: s for s in SCENARIOS}
# rules that must have run on each scenario's decrypted stream (``ScenarioResult.checked``):
# the wire, the API's own end of stream, the official SDK's replay; and what it rebuilds to
CHECKED = {
    "openai:plain": {"sse.utf8", "sse.terminated", "openai.done", "sdk.openai-accumulate"},
    "anthropic:tool": {"sse.utf8", "anthropic.stop-last", "anthropic.tool-input-json",
                       "sdk.anthropic-accumulate"},
}  # fmt: skip
REBUILT: dict[str, Callable[[dict[str, Any]], bool]] = {
    "openai:plain": lambda m: m["choices"][0]["content"] == STORY,
    "anthropic:tool": lambda m: (
        [(b["type"], b["name"], b["input"]) for b in m["content"]]
        == [("tool_use", "get_weather", {"city": "Paris"})]
    ),
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with ReferenceServer(api_key=SECRET, ssl_context=context) as srv:
        yield srv, ca_file
        assert srv.errors == []


def _run(srv: ReferenceServer, scenario_id: str):
    runner = Runner(Target(srv.base_url, DEFAULT_MODEL, SECRET))
    try:
        return runner.run(BY_ID[scenario_id])
    finally:
        runner.close()


@pytest.mark.parametrize("scenario_id", ["openai:plain", "anthropic:tool"])
def test_suite_checks_a_stream_over_tls(tls, monkeypatch, scenario_id) -> None:
    srv, ca_file = tls
    assert srv.base_url.startswith("https://127.0.0.1:")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    result = _run(srv, scenario_id)
    assert result.capture is not None and result.capture.status == 200
    assert result.findings == [] and len(result.capture.events) > 5
    assert CHECKED[scenario_id] <= result.checked, CHECKED[scenario_id] - result.checked
    assert result.message is not None and REBUILT[scenario_id](result.message), result.message


def test_suite_reports_an_untrusted_certificate(tls, monkeypatch) -> None:
    srv, _ = tls
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    result = _run(srv, "openai:plain")
    assert [f.rule for f in result.findings] == ["transport.connect"]
    assert "certificate" in result.findings[0].message.lower()


def test_client_without_gevent_streams_over_tls_on_one_connection(tls, monkeypatch) -> None:
    srv, ca_file = tls
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    client = StreamClient(srv.url_for(timing=Timing(5, 1, 1), stamps=True), send_stamps=True)
    body = orjson.dumps(build_request("openai", DEFAULT_MODEL, "Write a short story.", 20))
    try:
        sockets = []
        for _ in range(3):
            model = model_for("openai", rules=False, content_t=[])
            result = client.stream("openai", body, request_headers("openai", SECRET), model)
            assert (result.status, result.error_kind) == (200, None), result.error
            assert model.output_tokens == (20, "usage") and model.end_t is not None
            assert result.lag_ns and len(result.lag_ns) == model.events  # stamps decrypted
            sockets.append(client._sock)
        assert sockets[0] is sockets[1] is sockets[2]  # kept alive, TLS state and all
    finally:
        client.close()


def test_load_run_over_tls_is_exact(tls, monkeypatch, tmp_path) -> None:
    srv, ca_file = tls
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    users, per_user, tokens = 3, 2, 40
    host = srv.url_for(timing=TIMING, stamps=True)
    run_locust(
        ["-u", str(users), "-r", str(users), "-t", "20s", "--max-tokens", str(tokens),
         "--requests-per-user", str(per_user), "--host", host, "--api", "anthropic"],
        tmp_path,
    )  # fmt: skip
    s = summary(tmp_path)
    assert s["requests"] == all_completed(users * per_user)
    assert s["output_tokens"] == {"total": users * per_user * tokens, "source": "usage"}
    assert s["violations"] == {}
    recs = records(tmp_path)
    assert [(r["api"], r["tokens"]) for r in recs] == [("anthropic", tokens)] * users * per_user
    # the schedule, measured through TLS: never early (the server is not, the clock starts
    # before the request), so the lower bounds hold for every sample; lateness on medians
    ttft, gap, early = TIMING.ttft_ms, TIMING.gap_ms, EARLY_NS / 1e6
    assert ttft - early <= s["ttft_ms"]["min"] and s["ttft_ms"]["p50"] < 1.5 * ttft, s["ttft_ms"]
    assert gap / 2 <= s["tpot_ms"]["p50"] <= 1.5 * gap, s["tpot_ms"]  # the pace
    assert s["itl_ms"]["p50"] <= 1.5 * gap, s["itl_ms"]
    assert s["itl_ms"]["mean"] == pytest.approx(s["tpot_ms"]["mean"], abs=0.002), s["itl_ms"]
    assert all(r["content_us"][-1] / 1000 >= ttft + (tokens - 1) * gap - early for r in recs)
    lag = s["client_lag_ms"]  # the send stamps were read through TLS too
    assert lag is not None and 0 <= lag["p50"] <= lag["p99"] <= lag["max"], lag


def test_load_run_counts_an_untrusted_certificate_by_kind(tls, monkeypatch, tmp_path) -> None:
    srv, _ = tls
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    run_locust(
        ["-u", "2", "-r", "2", "-t", "20s", "--requests-per-user", "2", "--host", srv.base_url],
        tmp_path,
    )
    s = summary(tmp_path)
    assert s["requests"]["completed"] == 0
    assert s["requests"]["by_error"] == {"transport.connect": 4}
    assert all("certificate" in r["detail"].lower() for r in records(tmp_path))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_serve_command_speaks_https(tmp_path, monkeypatch) -> None:
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    port = free_port()
    cmd = [sys.executable, "-m", "streamproof", "serve", "--port", str(port)]
    cmd += ["--tls-cert", str(pem)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        runner = Runner(Target(f"https://127.0.0.1:{port}/v1", DEFAULT_MODEL, DEFAULT_API_KEY))
        try:
            result = runner.run(BY_ID["openai:plain"])
        finally:
            runner.close()
        assert result.capture is not None and result.capture.status == 200
        assert result.findings == [] and REBUILT["openai:plain"](result.message)
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_command_explains_a_bad_certificate(tmp_path) -> None:
    cmd = [sys.executable, "-m", "streamproof", "serve", "--tls-cert", str(tmp_path / "no.pem")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot load the TLS certificate" in done.stderr
