"""The mistakes every newcomer makes are usage errors: one line saying what to fix, the right
exit status, no traceback — from ``streamproof run``, ``pytest conformance`` and
``streamproof load`` alike; and a key given by mistake in the wrong place is never printed.

Each command runs as a user runs it (a subprocess, bounded in time) against servers on
127.0.0.1: the reference server (``streamproof serve`` in a thread), a plain web server, a
port nothing listens on.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamproof.capture import Timeouts
from streamproof.preflight import Unreachable, probe, probe_body
from streamproof.server import DEFAULT_MODEL, ReferenceServer

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "conformance"
KEY = "sk-streamproof-first-hour-KEY-7777"
PLANTED = "sk-PLANTED-secret-0123456789"


def _run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def web_server() -> Iterator[str]:
    """``python3 -m http.server``: a web server, no LLM API."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


# -- usage errors of the suite: one line, exit 2 (streamproof) / 4 (pytest) ----------------


def _mistakes(server: ReferenceServer, web: str) -> dict[str, tuple[list[str], str]]:
    base = server.base_url
    root = base.removesuffix("/v1")
    return {
        "unknown fault": (["--fault", "nosuch"], "--fault nosuch: no such fault"),
        "unknown scenario": (["--api", "anthropic", "--scenario", "stop"],
                             "--scenario: unknown stop (known: "),
        "bad --api": (["--api", "both"],
                      "--api takes openai, anthropic, responses, all, not 'both'"),
        "bad timeout": (["--idle-timeout", "soon"], "--idle-timeout: not a number: 'soon'"),
        "fault with a base URL": (["--base-url", base, "--fault", "reset", "--model", "m"],
                                  "--fault applies to the built-in server only"),
        "no key": (["--base-url", base, "--model", DEFAULT_MODEL],
                   "the endpoint wants a key (401): give --api-key / OPENAI_API_KEY"),
        "wrong key": (["--base-url", base, "--model", DEFAULT_MODEL, "--api-key", "sk-wrong"],
                      "the endpoint refused the key (401): check --api-key / OPENAI_API_KEY"),
        "no /v1": (["--base-url", root, "--model", DEFAULT_MODEL, "--api-key", KEY],
                   "does the base URL end in /v1?"),
        "no /v1, no model": (["--base-url", root, "--api-key", KEY],
                             "does the base URL end in /v1? (or name the model with --model)"),
        "unknown model": (["--base-url", base, "--model", "gpt-nope", "--api-key", KEY],
                          "the endpoint does not serve the model 'gpt-nope' (404"),
        "not an LLM API": (["--base-url", web, "--model", "m"],
                           "does not look like an OpenAI-compatible API (got 501 text/html)"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "mistake",
    ["unknown fault", "unknown scenario", "bad --api", "bad timeout", "fault with a base URL",
     "no key", "wrong key", "no /v1", "no /v1, no model", "unknown model", "not an LLM API"],
)  # fmt: skip
def test_run_mistake_is_one_line(mistake, server, web_server, tmp_path) -> None:
    args, words = _mistakes(server, web_server)[mistake]
    done = _run("streamproof", "run", *args, "--no-load", cwd=tmp_path)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = _lines(done)
    assert len(lines) == 1, lines
    assert words in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("mistake", ["unknown scenario", "wrong key", "not an LLM API"])
def test_pytest_conformance_mistake_is_a_usage_error(mistake, server, web_server, tmp_path):
    args, words = _mistakes(server, web_server)[mistake]
    done = _run("pytest", str(CONFORMANCE), "-q", *args, cwd=tmp_path)
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    lines = _lines(done)
    assert len(lines) == 1 and lines[0].startswith("ERROR: ") and words in lines[0], lines


def test_nothing_reachable_is_exit_2_with_one_line_and_reports(tmp_path) -> None:
    done = _run("streamproof", "run", "--base-url", _dead_url(), "--model", "m", "--no-load",
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert [line for line in _lines(done) if "cannot reach" in line] != []
    assert "Traceback" not in done.stdout + done.stderr
    report = json.loads((tmp_path / "reports" / "compliance.json").read_text())
    assert report["verdict"] == "error" and "cannot reach" in report["error"]


# -- model discovery ----------------------------------------------------------------------


def test_model_is_discovered_from_get_models(server, tmp_path) -> None:
    done = _run("streamproof", "run", "--base-url", server.base_url, "--api-key", KEY,
                "--api", "openai", "--scenario", "plain", "--no-load", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    report = json.loads((tmp_path / "reports" / "compliance.json").read_text())
    assert report["target"]["model"] == DEFAULT_MODEL
    assert report["target"]["model_source"] == "GET /models"
    assert f"model: {DEFAULT_MODEL} (the first one GET /models lists)" in done.stdout


# -- the key in no output --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["load", "--api-key", PLANTED, "--bogus"],
        ["load", f"--api-key={PLANTED}", "--users", "0"],
        ["run", "--api-key", PLANTED, "--api", "nope", "--no-load"],
        ["run", "--header", f"x-api-key: {PLANTED}", "--header", "broken", "--no-load"],
        ["serve", "--api-key", PLANTED, "--port", "notaport"],
        ["check", "nofile.sse", "--api", "openai", "--request", PLANTED],
        ["diff", "a.json", "b.json", "--threshold", PLANTED],
    ],
    ids=["load-unknown", "load-users-0", "run-bad-api", "run-bad-header", "serve-bad-port",
         "check-missing", "diff-bad"],
)  # fmt: skip
def test_planted_key_appears_in_no_output(args: list[str], tmp_path: Path) -> None:
    done = _run("streamproof", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert PLANTED not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert len(_lines(done)) <= 2, _lines(done)


class _Flaky:
    """A listener that drops the first ``drops`` connections without a response (a flaky
    server or proxy), then answers 200 with an empty event stream."""

    def __init__(self, drops: int) -> None:
        self.drops, self.accepted = drops, 0
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # a timeout: look at the stop flag again
                continue
            self.accepted += 1
            with conn:
                conn.recv(65536)
                if self.accepted > self.drops:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                 b"content-length: 0\r\nconnection: close\r\n\r\n")  # fmt: skip

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


def _probe(url: str) -> dict[str, str]:
    return probe(url, ["openai"], lambda api: {"authorization": f"Bearer {KEY}"},
                 lambda api: probe_body(api, DEFAULT_MODEL), timeouts=Timeouts(2, 2, 2, 4),
                 explicit=True, given_key=True)  # fmt: skip


def test_preflight_sends_again_after_a_broken_connection() -> None:
    """Like the SDKs (max_retries=2): two dropped connections are a flaky server, not a setup
    mistake; a third is the endpoint's transport.broken."""
    flaky = _Flaky(drops=2)
    try:
        assert _probe(flaky.url) == {}
    finally:
        flaky.close()
    assert flaky.accepted == 3
    broken = _Flaky(drops=3)
    try:
        with pytest.raises(Unreachable) as caught:
            _probe(broken.url)
    finally:
        broken.close()
    assert caught.value.rule == "transport.broken" and broken.accepted == 3
    assert "broke the connection" in str(caught.value)


def test_load_with_a_key_flag_and_a_dead_host_ends_at_once(tmp_path: Path) -> None:
    done = _run("streamproof", "load", "--host", _dead_url(), "--model", "m", "--api-key",
                PLANTED, "--duration", "20s", cwd=tmp_path, timeout=60)  # fmt: skip
    assert done.returncode == 2
    lines = _lines(done)
    assert len(lines) == 1 and "cannot reach" in lines[0], lines
    assert PLANTED not in done.stdout + done.stderr


# -- serve says where it is ------------------------------------------------------------------


def test_serve_prints_url_key_and_ready(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamproof", "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line.strip())
            if line.startswith("ready"):
                break
            assert len(lines) < 20, lines
    finally:
        proc.terminate()
        proc.wait(10)
    assert lines[0] == f"streamproof reference server: http://127.0.0.1:{port}/v1"
    assert any("key: sk-streamproof-local" in line for line in lines)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        busy = _run("streamproof", "serve", "--port", str(taken), cwd=tmp_path, timeout=30)
    assert busy.returncode == 2
    assert _lines(busy) == [f"streamproof serve: cannot listen on 127.0.0.1:{taken}: "
                            "Address already in use"]  # fmt: skip


# -- tracebacks that became messages --------------------------------------------------------


def test_check_messages(tmp_path: Path) -> None:
    sidecar = tmp_path / "j.json"
    sidecar.write_text("{}")
    done = _run("streamproof", "check", str(sidecar), "--api", "openai", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(_lines(done)) == 1 and "cannot read the transcript" in done.stderr
    binary = tmp_path / "b.sse"
    binary.write_bytes(b"data: \x00\x01\x1b[31mred\xff\xfe\n\n" * 3)
    done = _run("streamproof", "check", str(binary), "--api", "openai", cwd=tmp_path)
    assert "\x1b" not in done.stdout and "\x00" not in done.stdout  # shown escaped
    assert "\\x1b" in done.stdout or "\\u001b" in done.stdout


@pytest.mark.parametrize("value", ["5x", "-5s", "0s"])
def test_load_duration_mistakes(value: str, tmp_path: Path) -> None:
    done = _run("streamproof", "load", f"--duration={value}", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--duration" in done.stderr and len(_lines(done)) <= 2


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (("serve", "--ttft-ms", "-1"), "ttft_ms must be between 0 and"),
        (("serve", "--ttft-ms", "10", "--ttfb-ms", "20"), "ttfb_ms (20) must not exceed"),
        (("load", "--gap-ms", "-3", "--duration", "1s"), "gap_ms must be between 0 and"),
    ],
)
def test_timing_mistakes(command: tuple[str, ...], words: str, tmp_path: Path) -> None:
    done = _run("streamproof", *command, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(_lines(done)) == 1 and words in done.stderr
    assert not (tmp_path / "reports").exists()  # nothing ran, so nothing was written


def test_rules_into_a_closed_pipe(tmp_path: Path) -> None:
    done = subprocess.run(
        f"{sys.executable} -m streamproof rules | head -1", shell=True, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert done.stdout.startswith("sse.utf8")


def test_every_option_has_help(tmp_path: Path) -> None:
    from streamproof.cli import _parser

    parser = _parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subs.choices.items():
        assert sub.description, name
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings}"


def test_an_endpoint_without_responses_skips_it_with_the_reason(tmp_path: Path) -> None:
    """``--api all`` against a server of chat completions and messages only: the Responses
    rules are skipped with why (404 at /v1/responses), the run passes on the other two; asked
    for by name (``--api responses``) it is a usage error of one line."""
    from streamproof.server import app as server_app
    from streamproof.server.timing import Timing

    with ReferenceServer(api_key=KEY) as srv:
        srv.app = server_app.App(KEY, Timing(), apis=server_app.APIS[:2])
        common = ["--base-url", srv.base_url, "--api-key", KEY, "--no-load"]
        done = _run("streamproof", "run", *common, "--report-dir", str(tmp_path / "all"),
                    cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, _lines(done)[-5:]
        report = json.loads((tmp_path / "all" / "compliance.json").read_text("utf-8"))
        why = report["options"]["left_out"]["responses"]
        assert "no API at" in why and "404" in why
        ours = [r for r in report["rules"] if r["id"].startswith("responses.")]
        assert ours and all(r["outcome"] == "skip" for r in ours)
        assert report["verdict"] == "pass"
        done = _run("streamproof", "run", *common, "--api", "responses",
                    "--report-dir", str(tmp_path / "one"), cwd=tmp_path)  # fmt: skip
        assert done.returncode == 2
        assert len(_lines(done)) == 1 and "no API at" in _lines(done)[0], _lines(done)
