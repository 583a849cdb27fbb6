"""The suite's session as pytest users drive it: ``-n`` (pytest-xdist) gives the same report
as a serial run, ``-k`` narrows the report to the rules it ran, ``junit.xml`` is written by
default, gateway headers and body keys reach every request (secrets masked), and a load run
against another host is not merged into a report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamproof.cli import main
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
HIDDEN = "tenant-secret-value-31337"


def _pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(CONFORMANCE), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _comparable(report: dict) -> list:
    """A report's verdicts without what differs between any two runs (times, ports)."""
    return [
        (r["id"], r["outcome"], r["message"],
         [(s["scenario"], s["outcome"], s["message"]) for s in r["scenarios"]])
        for r in report["rules"]
    ]  # fmt: skip


@pytest.mark.parametrize("fault", ["", "role-every-chunk,anthropic-ping-shape"])
def test_xdist_report_equals_the_serial_report(fault: str, tmp_path: Path) -> None:
    extra = ["--fault", fault] if fault else []
    serial = _pytest("-q", "--report-dir", "serial", *extra, cwd=tmp_path)
    spread = _pytest("-q", "-n", "2", "--report-dir", "spread", *extra, cwd=tmp_path)
    assert serial.returncode == spread.returncode == (1 if fault else 0), spread.stdout[-3000:]
    a = json.loads((tmp_path / "serial" / "compliance.json").read_text())
    b = json.loads((tmp_path / "spread" / "compliance.json").read_text())
    assert _comparable(a) == _comparable(b)
    assert a["summary"] == b["summary"] and a["verdict"] == b["verdict"]
    assert a["setup"] == b["setup"]
    assert [s["id"] for s in b["scenarios"]] == [s["id"] for s in a["scenarios"]]
    # the terminal summary is the same too, line for line
    pick = lambda out: [x for x in out.splitlines() if x.startswith(("FAIL", "WARN", "setup"))]  # noqa: E731
    assert pick(serial.stdout) == pick(spread.stdout)
    junit = (tmp_path / "spread" / "junit.xml").read_text()
    assert 'name="openai.done"' in junit and "<property" in junit


def test_k_narrows_the_report_to_the_rules_it_ran(tmp_path: Path) -> None:
    done = _pytest("-q", "-k", "done", "--api", "openai", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    report = json.loads((tmp_path / "reports" / "compliance.json").read_text())
    assert {r["id"] for r in report["rules"]} == {"openai.done", "openai.done-last"}
    assert report["summary"]["skip"] == 0
    assert (tmp_path / "reports" / "junit.xml").is_file()  # written without --junitxml


def test_headers_and_extra_body_reach_every_request(tmp_path: Path) -> None:
    with ReferenceServer() as srv:
        done = _pytest(
            "-q", "--base-url", srv.base_url, "--model", DEFAULT_MODEL,
            "--api-key", DEFAULT_API_KEY, "--api", "openai", "--scenario", "plain,error-bad-key",
            "--header", "x-tenant: acme", "--header", f"x-gateway-token: {HIDDEN}",
            "--extra-body", '{"seed": 7, "user": "streamproof"}',
            cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    report = json.loads((tmp_path / "reports" / "compliance.json").read_text())
    plain = next(s for s in report["scenarios"] if s["id"] == "openai:plain")
    assert "> x-tenant: acme" in plain["headers"]
    assert "> x-gateway-token: ***" in plain["headers"]
    assert '"seed": 7' in plain["reproduce"] and '"user": "streamproof"' in plain["reproduce"]
    for path in (tmp_path / "reports").rglob("*"):
        if path.is_file():
            assert HIDDEN not in path.read_text(errors="replace"), path
    assert HIDDEN not in done.stdout + done.stderr


def test_auth_header_carries_the_key(tmp_path: Path) -> None:
    """``--auth-header api-key`` (Azure's style): the key raw in that header, no Bearer."""
    with ReferenceServer() as srv:
        done = _pytest(
            "-q", "--base-url", srv.base_url, "--model", DEFAULT_MODEL,
            "--api-key", DEFAULT_API_KEY, "--api", "openai", "--scenario", "plain",
            "--auth-header", "api-key", cwd=tmp_path,
        )  # fmt: skip
    # the reference server takes Bearer only: the setup check says the key was refused
    assert done.returncode == 4
    assert "the endpoint refused the key (401)" in done.stdout + done.stderr


def test_report_merges_a_load_run_only_against_the_same_host(tmp_path, capsys) -> None:
    report_dir = tmp_path / "reports"
    assert main(["run", "--api", "openai", "--scenario", "plain", "--no-load",
                 "--report-dir", str(report_dir)]) == 0  # fmt: skip
    capsys.readouterr()
    run = report_dir / "load" / "run-20261204-101010-1"
    run.mkdir(parents=True)
    elsewhere = "http://gateway.example.invalid:8000/v1"  # never contacted: a name only
    summary = {
        "api": "openai", "host": elsewhere, "embedded": False, "users": 1, "duration_s": 1.0,
        "requests": {"completed": 1, "failed": 0},
    }  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["report", "--report-dir", str(report_dir)]) == 0
    err = capsys.readouterr().err
    assert f"not merging the load run in {run}: it ran against {elsewhere}" in err
    assert json.loads((report_dir / "compliance.json").read_text())["load"] is None
    summary["embedded"] = True  # the load run's own built-in server, like the suite's
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["report", "--report-dir", str(report_dir)]) == 0
    merged = json.loads((report_dir / "compliance.json").read_text())["load"]
    assert merged["summary"]["host"] == elsewhere
