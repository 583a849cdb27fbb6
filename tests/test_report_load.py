"""``streamproof run`` with its short load run (the README's main command, shortened): the
load summary lands in compliance.json and the Markdown and HTML reports show it; against an
endpoint with a key of its own, the key reaches the load run yet no file under the report
directory — the load run's own files included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamproof.reporting.compliance import validate_report
from streamproof.server import DEFAULT_MODEL, ReferenceServer

KEY = "sk-PLANTED-load-test-key-5b1e44d0"

pytestmark = pytest.mark.slow


def streamproof(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamproof", *args],
        cwd=cwd, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_run_with_a_short_load_run_reports_it(tmp_path: Path) -> None:
    with ReferenceServer(api_key=KEY) as srv:
        done = streamproof(
            "run", "--base-url", srv.base_url, "--model", DEFAULT_MODEL, "--api-key", KEY,
            "--api", "openai", "--scenario", "plain", "--load-duration", "2s",
            "--load-users", "2", cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "reports"
    report = json.loads((out / "compliance.json").read_text("utf-8"))
    assert validate_report(report) == []
    load = report["load"]
    assert load["summary"]["requests"]["completed"] > 0
    assert load["summary"]["interrupted"] is False  # the run held its 2 s (the loop's clock)
    assert load["summary"]["requests"]["failed"] == 0  # the key reached the load run
    assert load["files"]["summary"] == "load/summary.json"
    assert load["run"]["duration"] == "2s"
    assert "### Load: 2 users" in (out / "compliance.md").read_text("utf-8")
    html = (out / "index.html").read_text("utf-8")
    assert 'id="load-percentiles"' in html and html.count("<svg") == 3
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "requests.jsonl" for p in files)
    leaks = [str(p.relative_to(out)) for p in files if KEY.encode() in p.read_bytes()]
    assert leaks == []
