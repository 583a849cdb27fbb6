"""``streamproof run`` writes every report, as a user runs it (a subprocess against the built-in
reference server): JUnit, compliance.json (valid against its schema), Markdown, HTML and
Allure results, each naming exactly the rules the injected faults break, and no file under
the report directory holds the API key. Also: exit statuses, --strict, waivers, selection."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from streamproof.reporting.compliance import report_schema, validate_report
from streamproof.rules import rule
from streamproof.server import FAULTS

KEY = "sk-PLANTED-streamproof-test-key-7f3a9c"
FAULT_PAIR = ("missing-done", "role-every-chunk")
# the MUST rules those two faults name: exactly what must fail
EXPECTED = {r for f in FAULT_PAIR for r in FAULTS[f].rules if rule(r).level == "MUST"}


def streamproof(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamproof", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def junit_cases(path: Path) -> list[ET.Element]:
    return list(ET.parse(path).getroot().iter("testcase"))


def props(case: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in case.iter("property")}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    cwd = tmp_path_factory.mktemp("faulty")
    done = streamproof(
        "run", "--api", "openai", "--scenario", "plain", "--fault", ",".join(FAULT_PAIR),
        "--api-key", KEY, "--no-load", "--report-dir", "out",
        "--alluredir", str(cwd / "out" / "allure-results"),
        cwd=cwd,
    )  # fmt: skip
    return done, cwd / "out"


def test_faulty_run_exits_1_and_says_where_the_html_is(faulty) -> None:
    done, out = faulty
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"HTML report: {Path('out') / 'index.html'}" in done.stdout
    for name in ("compliance.json", "compliance.md", "index.html", "junit.xml"):
        assert (out / name).is_file(), name


def test_junit_has_exactly_the_faults_failures_with_readable_names(faulty) -> None:
    _, out = faulty
    cases = junit_cases(out / "junit.xml")
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == EXPECTED
    assert all(c.get("classname") == "streamproof.openai.plain" for c in cases)
    done = next(c for c in cases if c.get("name") == "openai.done")
    p = props(done)
    assert p["rule"] == "openai.done" and p["level"] == "MUST" and p["outcome"] == "fail"
    assert p["scenario"] == "openai:plain" and p["group"] == "framing" and p["source"]
    assert "[DONE]" in done.find("failure").get("message")
    assert ET.parse(out / "junit.xml").getroot().find("testsuite").get("name") == "streamproof"


def test_compliance_json_validates_and_names_the_failures(faulty) -> None:
    _, out = faulty
    report = json.loads((out / "compliance.json").read_text("utf-8"))
    validator = jsonschema.Draft202012Validator(
        report_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(report)
    assert validate_report(report) == []
    assert report["verdict"] == "fail"
    failed = {r["id"] for r in report["rules"] if r["outcome"] == "fail"}
    assert failed == EXPECTED
    assert report["summary"]["must_failed"] == len(EXPECTED)
    done = next(r for r in report["rules"] if r["id"] == "openai.done")
    assert done["scenario"] == "openai:plain" and "[DONE]" in done["message"]
    role = next(r for r in report["rules"] if r["id"] == "openai.role-once")
    assert role["event"] is not None and "> #" in role["excerpt"]  # the offending event
    assert "assistant" in role["excerpt"]  # wide enough to show the repeated role
    assert report["target"]["faults"] == list(FAULT_PAIR)
    assert report["suite"]["name"] == "streamproof" and report["run"]["duration_s"] > 0
    (scenario,) = report["scenarios"]
    assert scenario["status"] == 200 and "$STREAMPROOF_API_KEY" in scenario["reproduce"]
    assert report["load"] is None


def test_markdown_lists_the_failures_one_line_each(faulty) -> None:
    _, out = faulty
    md = (out / "compliance.md").read_text("utf-8")
    assert md.startswith("## streamproof: ❌ FAIL")
    for rule_id in EXPECTED:
        (line,) = [x for x in md.splitlines() if f"`{rule_id}`" in x]
        assert line.startswith("- ❌")
    assert "| MUST |" in md
    assert len(md.splitlines()) < 40


def test_allure_results_carry_the_labels(faulty) -> None:
    _, out = faulty
    results = [
        json.loads(p.read_text("utf-8")) for p in (out / "allure-results").glob("*-result.json")
    ]
    assert results
    by_story = {}
    for r in results:
        labels = {}
        for label in r["labels"]:
            labels.setdefault(label["name"], label["value"])
        by_story[labels["story"]] = (r, labels)
    r, labels = by_story["openai.done"]
    assert r["status"] == "failed"
    assert labels["epic"] == "OpenAI chat completions"
    assert labels["feature"] == "framing"
    assert labels["severity"] == "critical"
    params = {p["name"]: p["value"] for p in r["parameters"]}
    assert "openai:plain" in params["scenario"] and "streamproof-1" in params["model"]
    assert "127.0.0.1" in params["base URL"]
    assert r["links"] and r["links"][0]["url"].startswith("https://")
    names = {a["name"] for a in r["attachments"]}
    assert {"transcript excerpt", "request and response headers"} <= names
    headers = next(a for a in r["attachments"] if a["name"] == "request and response headers")
    text = (out / "allure-results" / headers["source"]).read_text("utf-8")
    assert "authorization: ***" in text and "< HTTP 200" in text
    assert by_story["openai.model-stable"][1]["severity"] == "normal"  # SHOULD
    assert by_story["sse.comments"][1]["severity"] == "minor"  # INFO
    failed = {labels["story"] for r, labels in by_story.values() if r["status"] == "failed"}
    assert failed == EXPECTED


def test_the_api_key_is_in_no_file(faulty) -> None:
    _, out = faulty
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10
    leaks = [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert leaks == []


def test_clean_run_exits_0(tmp_path: Path) -> None:
    done = streamproof("run", "--api", "openai", "--scenario", "plain", "--no-load", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    report = json.loads((tmp_path / "reports" / "compliance.json").read_text("utf-8"))
    assert report["verdict"] == "pass" and validate_report(report) == []
    assert "✅ PASS" in (tmp_path / "reports" / "compliance.md").read_text("utf-8")


def test_should_warning_passes_but_fails_with_strict(tmp_path: Path) -> None:
    # (http.incremental, a timing heuristic, could warn too on a busy machine)
    args = ("run", "--api", "openai", "--scenario", "plain", "--fault", "model-changes",
            "--no-load", "--ignore", "http.incremental")  # fmt: skip
    done = streamproof(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    md = (tmp_path / "reports" / "compliance.md").read_text("utf-8")
    assert "### Warned (SHOULD)" in md and "`openai.model-stable`" in md
    strict = streamproof(*args, "--strict", "--report-dir", "strict", cwd=tmp_path)
    assert strict.returncode == 1, strict.stdout[-2000:]
    report = json.loads((tmp_path / "strict" / "compliance.json").read_text("utf-8"))
    assert report["verdict"] == "fail" and report["options"]["strict"] is True
    failed = [
        c.get("name")
        for c in junit_cases(tmp_path / "strict" / "junit.xml")
        if c.find("failure") is not None
    ]
    assert failed == ["openai.model-stable"]


def test_waived_rule_is_reported_as_waived_everywhere(tmp_path: Path) -> None:
    (tmp_path / "streamproof.toml").write_text(
        '[waivers]\n"openai.done" = "our gateway drops [DONE]; GW-42"\n'
        '"openai.object" = "kept from an old incident"\n',
        encoding="utf-8",
    )
    done = streamproof(
        "run", "--api", "openai", "--scenario", "plain", "--fault", "missing-done", "--no-load",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]  # a waived failure does not fail
    out = tmp_path / "reports"
    report = json.loads((out / "compliance.json").read_text("utf-8"))
    assert validate_report(report) == []
    by_id = {r["id"]: r for r in report["rules"]}
    assert by_id["openai.done"]["outcome"] == "waived"
    assert by_id["openai.done"]["waiver"] == {"reason": "our gateway drops [DONE]; GW-42",
                                              "stale": False}  # fmt: skip
    assert by_id["openai.object"]["waiver"]["stale"] is True  # passes: the waiver can go
    assert report["summary"]["waived"] == 1 and report["verdict"] == "pass"
    case = next(c for c in junit_cases(out / "junit.xml") if c.get("name") == "openai.done")
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("message").startswith("waived: our gateway")
    assert props(case)["outcome"] == "waived" and props(case)["waiver"].startswith("our gateway")
    md = (out / "compliance.md").read_text("utf-8")
    assert "### Waived" in md and "GW-42" in md and "Stale waivers" in md
    html = (out / "index.html").read_text("utf-8")
    assert 'data-rule="openai.done" data-outcome="waived"' in html
    assert "waived  MUST   openai.done" in done.stdout


def test_select_and_ignore_restrict_the_rules(tmp_path: Path) -> None:
    done = streamproof(
        "run", "--api", "openai", "--scenario", "plain", "--no-load",
        "--select", "framing", "--ignore", "openai.done-last", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    report = json.loads((tmp_path / "reports" / "compliance.json").read_text("utf-8"))
    ids = {r["id"] for r in report["rules"]}
    assert ids == {"openai.data-json", "openai.done", "openai.no-event-names"}
    assert report["options"]["select"] == ["framing"]
    names = {c.get("name") for c in junit_cases(tmp_path / "reports" / "junit.xml")}
    assert names == ids


def test_unknown_rule_in_select_is_a_run_failure(tmp_path: Path) -> None:
    done = streamproof("run", "--select", "no.such-rule", "--no-load", cwd=tmp_path)
    assert done.returncode == 2
    assert "no.such-rule" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_unreachable_endpoint_is_verdict_error_and_exit_2(tmp_path: Path) -> None:
    from streamproof.server import ReferenceServer

    with ReferenceServer() as srv:  # its refusing port: bound, never listening
        url = srv.url_for(faults=("connect-refused",))
    done = streamproof("run", "--base-url", url, "--model", "m", "--connect-timeout", "2",
                       cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    report = json.loads((tmp_path / "reports" / "compliance.json").read_text("utf-8"))
    assert report["verdict"] == "error" and "cannot reach" in report["error"]
    assert validate_report(report) == []
    assert "🛑 ERROR" in (tmp_path / "reports" / "compliance.md").read_text("utf-8")
