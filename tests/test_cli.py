"""The ``streamproof`` command as a user runs it (a subprocess): run, rules, serve, check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from streamproof.capture import exchange, load_transcript
from streamproof.engine import Target, check_capture
from streamproof.rules import catalogue
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, FAULTS, ReferenceServer


def streamproof(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamproof", *args],
        cwd=cwd, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_run_against_the_embedded_server_passes(tmp_path: Path) -> None:
    done = streamproof("run", "--api", "openai", "--no-load", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "reports" / "compliance.json").read_text())
    assert report["verdict"] == "pass"
    assert "verdict PASS" in done.stdout
    assert "openai.done" in done.stdout  # the per-rule table


def test_run_with_a_fault_fails_naming_the_rule(tmp_path: Path) -> None:
    done = streamproof(
        "run", "--api", "openai", "--fault", "missing-done", "--scenario", "plain",
        "--report-dir", "out", "--no-load", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    report = json.loads((tmp_path / "out" / "compliance.json").read_text())
    failed = {r["id"] for r in report["rules"] if r["outcome"] == "fail"}
    assert "openai.done" in failed
    assert "FAIL    MUST   openai.done" in done.stdout


def test_run_against_nothing_exits_2_with_one_line(tmp_path: Path) -> None:
    with ReferenceServer() as srv:  # its refusing port: bound, never listening
        url = srv.url_for(faults=("connect-refused",))
    done = streamproof("run", "--base-url", url, "--model", "m", "--connect-timeout", "2",
                       cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "cannot reach" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_rules_json_is_the_catalogue(tmp_path: Path) -> None:
    done = streamproof("rules", "--json", cwd=tmp_path)
    rules = json.loads(done.stdout)
    assert [r["id"] for r in rules] == list(catalogue())
    assert {r["level"] for r in rules} == {"MUST", "SHOULD", "INFO"}
    assert all(r["source"] and r["title"] for r in rules)


def test_serve_lists_every_fault(tmp_path: Path) -> None:
    done = streamproof("serve", "--list-faults", cwd=tmp_path)
    assert done.returncode == 0
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert set(FAULTS) <= listed
    assert "openai.role-once, sdk.openai-accumulate" in done.stdout  # rules, not letters


def test_transcript_round_trip_checks_the_same(tmp_path: Path) -> None:
    with ReferenceServer() as srv, httpx.Client() as client:
        target = Target(srv.url_for(faults=("role-every-chunk",)), DEFAULT_MODEL, DEFAULT_API_KEY)
        body = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "hi"}],
                "stream": True}  # fmt: skip
        cap = exchange(client, "POST", target.url("openai"),
                       headers=target.headers("openai", "key"), body=body)  # fmt: skip
    live, _, _, _ = check_capture("openai", cap, body)
    sse, meta = cap.save(tmp_path / "capture")
    assert DEFAULT_API_KEY not in meta.read_text()  # credential headers are dropped
    loaded = load_transcript(tmp_path / "capture")
    assert [(e.data, e.t) for e in loaded.events] == [(e.data, e.t) for e in cap.events]
    offline, _, _, _ = check_capture("openai", loaded, loaded.request_body)
    assert [(f.rule, f.event) for f in offline] == [(f.rule, f.event) for f in live]
    assert "openai.role-once" in {f.rule for f in offline}
    done = streamproof("check", str(sse), "--api", "openai", "--json", cwd=tmp_path)
    assert done.returncode == 1
    assert "openai.role-once" in {json.loads(line)["rule"] for line in done.stdout.splitlines()}
