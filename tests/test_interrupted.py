"""A report never says more than the run did: Ctrl-C (SIGINT) or SIGTERM in the middle of
``streamproof run`` or ``streamproof load`` ends it with exit status 130 and every report
says ``interrupted`` — never "pass". Each run is a subprocess against a slow reference server
on 127.0.0.1, signalled once it is under way, and bounded in time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamproof.reporting.compliance import validate_report
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer, Timing

SLOW = Timing(ttft_ms=300, gap_ms=100, tokens_per_chunk=1)  # a scenario takes seconds


@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    with ReferenceServer() as srv:
        yield srv.url_for(timing=SLOW)


def _interrupt(
    args: list[str], cwd: Path, sig: int, *, after_s: float = 0.0, after: str = ""
) -> subprocess.CompletedProcess:
    """Start ``streamproof ARGS`` and send ``sig`` once its output shows ``after`` and
    ``after_s`` seconds have passed."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "streamproof", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    seen = []
    start = time.monotonic()
    try:
        if after:
            for line in proc.stdout:  # type: ignore[union-attr]
                seen.append(line)
                if after in line:
                    break
                assert time.monotonic() - start < 60, "".join(seen)
        time.sleep(max(0.0, after_s - (time.monotonic() - start)))
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode, "".join(seen) + out, "")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_interrupted_in_the_suite(sig, slow_url, tmp_path) -> None:
    done = _interrupt(
        ["run", "--base-url", slow_url, "--model", DEFAULT_MODEL, "--api-key", DEFAULT_API_KEY,
         "--api", "openai", "--no-load"],
        tmp_path, sig, after_s=4.0,  # the plain scenario alone takes ~15 s
    )  # fmt: skip
    assert done.returncode == 130, done.stdout[-3000:]
    report = json.loads((tmp_path / "reports" / "compliance.json").read_text("utf-8"))
    assert report["verdict"] == "interrupted"
    assert validate_report(report) == []
    md = (tmp_path / "reports" / "compliance.md").read_text("utf-8")
    assert "INTERRUPTED" in md and "PASS" not in md
    html = (tmp_path / "reports" / "index.html").read_text("utf-8")
    assert 'data-verdict="interrupted"' in html
    junit = (tmp_path / "reports" / "junit.xml").read_text("utf-8")
    assert "<testsuite" in junit


def test_run_interrupted_in_the_load_run(tmp_path) -> None:
    done = _interrupt(
        ["run", "--api", "openai", "--scenario", "plain", "--load-duration", "30s"],
        tmp_path, signal.SIGINT, after="load run", after_s=3.0,
    )  # fmt: skip
    assert done.returncode == 130, done.stdout[-3000:]
    report = json.loads((tmp_path / "reports" / "compliance.json").read_text("utf-8"))
    assert report["verdict"] == "interrupted"
    assert "INTERRUPTED" in (tmp_path / "reports" / "compliance.md").read_text("utf-8")


def test_load_interrupted(tmp_path) -> None:
    summary = tmp_path / "load" / "summary.json"
    done = _interrupt(
        ["load", "--duration", "30s", "--users", "2", "--summary-json", str(summary), "-v"],
        tmp_path, signal.SIGINT, after_s=5.0,
    )  # fmt: skip
    assert done.returncode == 130, done.stdout[-3000:]
    data = json.loads(summary.read_text("utf-8"))
    assert data["interrupted"] is True
    assert data["run_s"] < 25
    assert "INTERRUPTED" in done.stdout
