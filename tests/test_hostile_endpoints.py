"""Hostile and broken endpoints: the suite never hangs, never crashes, never leaks a key.

For each hostile behaviour of the reference server the conformance suite (in-process, as a
user runs it) ends within a bound, names what the endpoint did in ``compliance.json`` and
writes its reports. The 100 MB line and the gzip bomb are measured for peak memory in a
child process; a planted key is searched for in everything a run writes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from streamproof.capture import Timeouts, exchange
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, FAULTS, ReferenceServer

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
TOTAL_S = 4.0
FAST = (
    "--first-byte-timeout", "2", "--idle-timeout", "1", "--total-timeout", str(TOTAL_S),
    "--connect-timeout", "2",
)  # fmt: skip
BOUND_FACTOR = 3.0  # a run ends within 3x its total timeout
# the event flood is valid but long: a busy machine needs more than TOTAL_S to read its 60 000
# events (and the SDK replay reads them again); its run gets this total and this idle bound
FLOOD_TOTAL_S = 20.0
FLOOD = ("--total-timeout", str(FLOOD_TOTAL_S), "--idle-timeout", "5")

# fault → (rule expected in compliance.json, words its message must contain); each runs
# against both APIs ({api} is the API; its anthropic- copy proves it for that API)
HOSTILE = {
    "stall-headers": ("transport.first-byte", "no response headers within 2 s"),
    "stall-after-headers": ("transport.idle", "no byte for 1 s after the response headers"),
    "stall-mid": ("transport.idle", "no byte for 1 s after"),
    "slow-drip": ("transport.total", "did not end within 4 s"),
    "endless": ("transport.total", "did not end within 4 s"),
    "huge-line": ("sse.max-event", "a line passed 16777216 bytes"),
    "invalid-utf8": ("sse.utf8", "UTF-8"),
    "gzip-bomb": ("transport.broken", "gzip body inflated past 16 MiB"),  # the event bound
    "gzip-lie": ("transport.broken", "Content-Encoding gzip but the body is not gzip"),
    "html-200": (None, "does not look like an"),  # the setup check: a usage error
    "html-502": ("http.status", "answered 502"),
    "reset": ("transport.broken", "connection closed abruptly"),
    "bad-chunked": ("transport.broken", "after"),
    "redirect-cross-origin": ("http.status", "answered 307"),
    "deep-json": ("{api}.data-json", "nesting too deep"),
    "huge-number": ("{api}.data-json", "a number too large"),
    "event-flood": (None, ""),  # a valid stream
}


@pytest.fixture(scope="module")
def server():
    with ReferenceServer() as srv:
        yield srv


def run_suite(
    pytester, url: str, report_dir: Path, key: str = DEFAULT_API_KEY, extra=(), api="openai"
):
    args = [
        str(CONFORMANCE), "--base-url", url, "--model", DEFAULT_MODEL, "--api-key", key,
        "--api", api, "--scenario", "plain", "--report-dir", str(report_dir),
        "-p", "no:cacheprovider", "-q", *FAST, *extra,
    ]  # fmt: skip
    t0 = time.monotonic()
    result = pytester.runpytest_inprocess(*args)
    elapsed = time.monotonic() - t0
    report = json.loads((report_dir / "compliance.json").read_text("utf-8"))
    return result, report, elapsed


def _fault(name: str, api: str) -> str:
    return name if api == "openai" else f"anthropic-{name}"


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_every_hostile_fault_is_registered(api: str) -> None:
    for name in HOSTILE:
        spec = FAULTS[_fault(name, api)]
        assert spec.api in ("any", api) and spec.description
        expected = HOSTILE[name][0]
        rules = spec.rules_for(api)
        assert (expected.format(api=api) in rules) if expected else rules == ()
        assert bool(spec.setup) == (name == "html-200")


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", sorted(HOSTILE))
def test_suite_survives(fault, api, pytester, server, tmp_path) -> None:
    rule_id, words = HOSTILE[fault]
    rule_id = rule_id and rule_id.format(api=api)
    url = server.url_for(faults=[_fault(fault, api)])
    flood = fault == "event-flood"
    result, report, elapsed = run_suite(pytester, url, tmp_path, api=api,
                                        extra=FLOOD if flood else ())  # fmt: skip
    bound = BOUND_FACTOR * (FLOOD_TOTAL_S if flood else TOTAL_S)
    assert elapsed < bound, f"{fault}: the run took {elapsed:.1f} s"
    by_id = {r["id"]: r for r in report["rules"]}
    assert (tmp_path / "compliance.json").stat().st_size > 0
    assert any(p.suffix in (".html", ".xml", ".md") for p in tmp_path.rglob("*")), list(
        tmp_path.rglob("*")
    )
    if FAULTS[_fault(fault, api)].setup:  # no LLM API: one line, a usage error
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert words in report["error"] and report["verdict"] == "error"
        return
    # a verdict, or (nothing answered) the one line of exit status 2; never an internal error
    assert result.ret in (0, 1, 2), result.outlines[-20:]
    if rule_id is None:  # a valid (if extreme) stream: the suite keeps up and passes it
        bad = [(r["id"], r["message"]) for r in report["rules"] if r["outcome"] in ("fail", "warn")]
        assert bad == []
        return
    entry = by_id[rule_id]
    assert entry["outcome"] in ("fail", "warn"), entry
    assert words in entry["message"], entry["message"]
    if result.ret == 2:  # nothing answered in time: the run ended there, saying why
        assert report["verdict"] == "error" and words in report["error"]
        return
    # the other checks still ran: the run has rules that passed besides the finding
    assert any(r["outcome"] == "pass" for r in report["rules"])


def test_dead_endpoint_with_default_timeouts_ends_quickly(pytester, tmp_path) -> None:
    """Nothing listens: default bounds end the run within seconds (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        str(CONFORMANCE), "--base-url", f"http://127.0.0.1:{port}/v1", "--model", DEFAULT_MODEL,
        "--api-key", DEFAULT_API_KEY, "--api", "openai", "--report-dir", str(tmp_path),
        "-p", "no:cacheprovider", "-q",
    ]  # fmt: skip
    t0 = time.monotonic()
    result = pytester.runpytest_inprocess(*args)
    assert time.monotonic() - t0 < 30
    assert result.ret == 2
    assert Timeouts().connect + Timeouts().first_byte < 60


# -- redirects: never followed, credentials never leave the origin --------------------------


class _Recorder:
    """A listener that records every request it gets (and answers 200 with nothing)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_capture_never_follows_a_redirect_to_another_origin() -> None:
    """A 307 to another listener: the capture reports the 307; the other origin gets no
    request at all (so no Authorization / x-api-key either)."""
    other = _Recorder("127.0.0.1", 0)
    key = "sk-redirect-canary-0123456789"
    try:
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            port = srv.getsockname()[1]

            def answer() -> None:
                conn, _ = srv.accept()
                with conn:
                    conn.recv(65536)
                    location = f"http://127.0.0.1:{other.port}/v1/chat/completions"
                    conn.sendall(
                        b"HTTP/1.1 307 Temporary Redirect\r\nlocation: %s\r\n"
                        b"content-length: 0\r\nconnection: close\r\n\r\n" % location.encode()
                    )

            t = threading.Thread(target=answer, daemon=True)
            t.start()
            # even a client configured to follow redirects is overridden by exchange()
            with httpx.Client(trust_env=False, follow_redirects=True) as client:
                cap = exchange(
                    client, "POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                    headers={"authorization": f"Bearer {key}", "x-api-key": key},
                    body={"model": "m", "stream": True},
                    timeouts=Timeouts(2, 2, 2, 4),
                )  # fmt: skip
            t.join(5)
        time.sleep(0.3)
        assert cap.status == 307
        assert other.received == []
        assert key not in json.dumps(cap.request_headers)
    finally:
        other.close()


def _server_below(recorder: _Recorder, key: str) -> ReferenceServer | None:
    """A started reference server on the port just below the recorder's (the fault redirects
    to the next port); None when that port is taken."""
    try:
        return ReferenceServer(api_key=key, port=recorder.port - 1).start()
    except RuntimeError:  # the port is taken
        return None


def test_suite_never_sends_the_key_to_the_redirect_target(pytester, tmp_path) -> None:
    """The reference server's 307 points at its own host on the next port (another origin); a
    recorder there must see no request during a whole suite run."""
    key = "sk-redirect-suite-canary-424242"
    for _ in range(20):  # find a free port whose neighbour below is free too
        other = _Recorder("127.0.0.1", 0)
        srv = _server_below(other, key)
        if srv is not None:
            break
        other.close()
    else:
        pytest.fail("no two adjacent free ports on 127.0.0.1 in 20 tries")
    try:
        _, report, _ = run_suite(
            pytester, srv.url_for(faults=["redirect-cross-origin"]), tmp_path, key=key
        )
    finally:
        srv.stop()
        other.close()
    assert other.received == []
    assert {r["id"]: r for r in report["rules"]}["http.status"]["outcome"] == "fail"


# -- memory --------------------------------------------------------------------------------

_MEASURE = r"""
import resource, sys, pytest
conformance, url, clean, d = sys.argv[1:5]
common = ["--model", "streamproof-1", "--api-key", "sk-streamproof-local", "--api", "openai",
          "--scenario", "plain", "-p", "no:cacheprovider", "-q", "--first-byte-timeout", "2",
          "--idle-timeout", "1", "--total-timeout", "4"]
pytest.main([conformance, "--base-url", clean, "--report-dir", d + "/clean", *common])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pytest.main([conformance, "--base-url", url, "--report-dir", d + "/fault", *common])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("MAXRSS", base, peak)
"""
MEMORY_BOUND_KB = 100 * 1024  # peak over the same process's clean run


@pytest.mark.parametrize("fault", ["huge-line", "gzip-bomb"])
def test_peak_memory_is_bounded(fault, server, tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(CONFORMANCE), server.url_for(faults=[fault]),
         server.url_for(), str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    line = [x for x in out.stdout.splitlines() if x.startswith("MAXRSS")]
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    base, peak = map(int, line[0].split()[1:])
    print(f"{fault}: peak RSS {peak / 1024:.0f} MiB, clean run {base / 1024:.0f} MiB")
    assert peak - base < MEMORY_BOUND_KB
    report = json.loads((tmp_path / "fault" / "compliance.json").read_text("utf-8"))
    assert report["verdict"] == "fail"


# -- secrets -------------------------------------------------------------------------------

LEAK_FAULTS = ("reset", "gzip-lie", "html-502", "redirect-cross-origin", "deep-json", "stall-mid")


def test_no_key_in_any_output(pytester, tmp_path, capfd) -> None:
    """A recognisable key: runs with several faults (and a short load run), then every file
    written and everything printed is searched for it."""
    key = "sk-canary-" + os.urandom(12).hex()
    outputs: list[str] = []
    with ReferenceServer(api_key=key) as srv:
        for fault in LEAK_FAULTS:
            result, _, _ = run_suite(
                pytester, srv.url_for(faults=[fault]), tmp_path / "suite" / fault, key=key,
                extra=("--junitxml", str(tmp_path / "suite" / fault / "junit.xml")),
            )  # fmt: skip
            outputs += result.outlines + result.errlines
        load = subprocess.run(
            [sys.executable, "-m", "streamproof", "load", "--host", srv.base_url,
             "--users", "2", "--duration", "3s",
             "--summary-json", str(tmp_path / "load" / "summary.json"), "-v"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={**os.environ, "STREAMPROOF_API_KEY": key},  # keys stay off command lines
        )  # fmt: skip
        outputs += [load.stdout, load.stderr]
        summary = json.loads((tmp_path / "load" / "summary.json").read_text("utf-8"))
        assert summary["requests"]["completed"] > 0, load.stderr[-2000:]  # the key was used
    captured = capfd.readouterr()
    outputs += [captured.out, captured.err]
    hits = [p for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert hits == []
    assert not any(key in text for text in outputs)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 10  # the search did look at reports


def test_saved_transcript_drops_credential_headers(tmp_path) -> None:
    """``Capture.save`` keeps no credential header (not even masked) and no key anywhere."""
    from streamproof.redact import register_secret

    key = "sk-transcript-canary-" + os.urandom(8).hex()
    register_secret(key)
    with ReferenceServer(api_key=key) as srv, httpx.Client(trust_env=False) as client:
        for fault in ("reset", "gzip-lie"):
            cap = exchange(
                client, "POST", srv.url_for(faults=[fault]) + "/chat/completions",
                headers={"authorization": f"Bearer {key}", "x-api-key": key,
                         "content-type": "application/json"},
                body={"model": DEFAULT_MODEL, "stream": True,
                      "messages": [{"role": "user", "content": f"my key is {key}"}]},
                timeouts=Timeouts(2, 2, 1, 4),
            )  # fmt: skip
            assert cap.error  # the fault was seen
            body_path, meta_path = cap.save(tmp_path / fault)
            meta = json.loads(meta_path.read_text("utf-8"))
            names = {name.lower() for name, _ in meta["request_headers"]}
            assert not names & {"authorization", "x-api-key"}
            for path in (body_path, meta_path):
                assert key.encode() not in path.read_bytes()
