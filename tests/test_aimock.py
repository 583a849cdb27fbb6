"""The suite against a real third-party mock server, aimock (npm ``@copilotkit/aimock``, pinned in
``tests/_aimock.py``): what the conformance suite reports against it for each API, keyless, and
whether a load run counts the connections its disconnect chaos cuts.

aimock is not this project's code; these tests pin how the suite judges it, so that a change to
a rule (or to aimock, on a version bump) shows up as a changed expectation here, with its reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _aimock import AIMOCK_VERSION, ENV_DIR, plain_client_cuts, running_aimock

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5"}  # any name is served
DISCONNECT = 0.2  # --chaos-disconnect of the chaos instance
LOAD_TIMEOUT_S = 90.0

# The rules the suite reports against aimock 1.43.0 with the fixtures of tests/_aimock.py,
# keyless, and how (fail: MUST, warn: SHOULD); every other rule passes or is skipped. Each is
# classified in its comment: (a) a real aimock deviation from the API as the SDKs and docs
# define it, (c) a consequence of the setup; none is (b), a false failure of the rule (every
# client reads the stream fine) — that would be a bug in the rule. "src" is aimock's dist/.
# Keys are not checked by aimock unless AIMOCK_API_KEYS is set (its README, "API-key
# validation"), so the no-key / bad-key scenarios report http.auth-required (INFO) and skip the
# error rules: nothing flagged for them.
EXPECTED: dict[str, dict[str, str]] = {
    "openai": {
        # (c) the catch-all fixture ({} match, no "model") serves any model name. With
        # model-scoped fixtures aimock answers 404 {"error": {..., "code": "no_fixture_match"}},
        # which openai.error-status / error-body accept.
        "http.unknown-model": "warn",
        # (a) aimock ignores max_tokens (src/server.js handleCompletions never reads it): with
        # max_tokens=5 it streams the whole fixture text and finish_reason "stop"; the API cuts
        # at 5 tokens with "length".
        "openai.finish-length": "fail",
        # (a) aimock ignores n: only choice index 0 is streamed for n=2 (src/helpers.js
        # buildTextChunks always writes index 0); the API streams indices 0 and 1.
        "openai.n-choices": "fail",
        # (a) same root cause as finish-length: usage.completion_tokens 19 (length/4 estimate,
        # src/helpers.js estimateTokens) for max_tokens=5.
        "openai.usage-max-tokens": "fail",
    },
    "anthropic": {
        # (c) as for openai (catch-all fixture). With model-scoped fixtures the 404 body is
        # {"error": {message, type: "invalid_request_error"}}, which then fails
        # anthropic.error-status (404 goes with not_found_error) and anthropic.error-body (a).
        "http.unknown-model": "warn",
        # (a) aimock ignores max_tokens (src/messages.js claudeToCompletionRequest copies it,
        # nothing reads it): max_tokens=5 streams the whole text with stop_reason "end_turn".
        "anthropic.stop-max-tokens": "fail",
        # (a) message_start usage is {"input_tokens": 0, "output_tokens": 0} unless a fixture
        # sets usage (src/messages.js claudeUsage). The SDK accumulates it; the number is wrong.
        "anthropic.usage-input": "warn",
        # (a) message_delta usage.output_tokens is 0 after the text deltas (src/messages.js
        # buildClaudeTextStreamEvents: claudeUsage(overrides).output_tokens, 0 by default).
        "anthropic.usage-output": "warn",
        # (a) error-no-max-tokens: aimock never requires max_tokens (200 and a stream); the API
        # answers 400 invalid_request_error (max_tokens is a required parameter).
        "anthropic.error-status": "fail",
        # (a) error-malformed: the 400 body is OpenAI-shaped {"error": {message, type}}, without
        # the top-level "type": "error" (src/messages.js handleMessages). The anthropic SDK still
        # raises BadRequestError (it keeps any body as is), but the documented shape is
        # {"type": "error", "error": {type, message}}.
        "anthropic.error-body": "warn",
    },
}


@pytest.fixture(scope="module")
def aimock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """aimock with the text and tool-call fixtures; its API root."""
    with running_aimock(tmp_path_factory.mktemp("aimock")) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def aimock_chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same, with ``--chaos-disconnect 0.2``."""
    with running_aimock(tmp_path_factory.mktemp("aimock-chaos"), disconnect=DISCONNECT) as url:
        yield url


@pytest.fixture
def keyless(monkeypatch: pytest.MonkeyPatch) -> None:
    """No API key and no STREAMPROOF_* setting from the caller's environment reaches the run."""
    for name in list(os.environ):
        if name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY") or (
            name.startswith("STREAMPROOF_") and name != ENV_DIR
        ):
            monkeypatch.delenv(name)


@pytest.mark.slow
@pytest.mark.parametrize("api", sorted(EXPECTED))
def test_suite_against_aimock(api: str, aimock: str, keyless: None, pytester, tmp_path) -> None:
    """Exactly the rules that fail or warn against aimock, per API, each as it should
    (see EXPECTED)."""
    report_dir = tmp_path / "report"
    args = [
        str(CONFORMANCE),
        "--base-url", aimock,
        "--model", MODELS[api],
        "--api", api,
        "--report-dir", str(report_dir),
        "-p", "no:cacheprovider",
        "-q",
    ]  # fmt: skip
    result = pytester.runpytest_inprocess(*args)
    report = json.loads((report_dir / "compliance.json").read_text("utf-8"))
    found = {r["id"]: r["outcome"] for r in report["rules"] if r["outcome"] in ("fail", "warn")}
    messages = {r["id"]: r["message"] for r in report["rules"] if r["id"] in found}
    assert found == EXPECTED[api], f"aimock {AIMOCK_VERSION}, {api}: {messages}"
    assert report["setup"]["keys"].startswith("not checked")
    # aimock really answered: every stream went through the SDK, the tool fixture matched
    outcomes = {r["id"]: r["outcome"] for r in report["rules"]}
    tool_rule = "openai.tool-args-json" if api == "openai" else "anthropic.tool-input-json"
    assert outcomes[f"sdk.{api}-accumulate"] == "pass"
    assert outcomes[tool_rule] == "pass"
    assert result.ret == (1 if "fail" in found.values() else 0)


def test_chaos_disconnect_closes_before_any_response_byte(aimock_chaos: str) -> None:
    """What the disconnect chaos does on the wire, as a plain keep-alive client sees it: the
    socket is closed after the request was read and before any response byte (never mid-body),
    on about ``DISCONNECT`` of the requests."""
    seen = plain_client_cuts(aimock_chaos, 200)
    total = sum(seen.values())
    assert total == 200, seen
    assert seen["cut_after_bytes"] == 0, seen
    assert 0.10 <= seen["cut_before_any_byte"] / total <= 0.30, seen


def _load(host: str, tmp: Path, duration: str) -> dict[str, Any]:
    """``streamproof load`` in its own process group (killed whole if it overruns), keyless;
    its summary.json."""
    summary = tmp / "load" / "summary.json"
    cmd = [
        sys.executable, "-m", "streamproof", "load",
        "--host", host, "--model", MODELS["openai"], "--api", "openai",
        "--users", "4", "--duration", duration, "--summary-json", str(summary),
    ]  # fmt: skip
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "STREAMPROOF_API_KEY")
    }
    proc = subprocess.Popen(
        cmd,
        cwd=tmp,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=LOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"streamproof load overran {LOAD_TIMEOUT_S:.0f} s") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # Locust's leftovers, if any
    text = out.decode(errors="replace")
    assert proc.returncode in (0, 1), text[-3000:]  # 2: the run itself failed
    return json.loads(summary.read_text("utf-8"))


def test_load_against_aimock_has_no_failures(aimock: str, tmp_path) -> None:
    """The baseline: without chaos every request completes, so failures below are the chaos."""
    requests = _load(aimock, tmp_path, "3s")["requests"]
    assert requests["completed"] > 0 and requests["failed"] == 0, requests


def test_load_reports_the_chaos_disconnects(aimock_chaos: str, tmp_path) -> None:
    """A load run counts what a plain client sees: about ``DISCONNECT`` of the streams cut.
    aimock closes a connection it reused at once, on our request: that is the server dropping
    it, not a stale keep-alive connection, so nothing may be retried away."""
    requests = _load(aimock_chaos, tmp_path, "6s")["requests"]
    total = requests["total"]
    assert total > 0, requests
    fraction = requests["failed"] / total
    assert 0.14 <= fraction <= 0.30, f"failed fraction {fraction:.1%} of {total}: {requests}"
    assert requests["retried"] == 0, requests
    assert set(requests["by_error"]) == {"transport.broken"}, requests
