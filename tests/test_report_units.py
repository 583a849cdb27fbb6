"""The report writers' pieces: the configuration file (select, ignore, waivers), the Markdown
caps, and the plugin used straight through pytest (``pytest conformance --junitxml ...
--alluredir ...``) without the CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from streamproof.reporting.config import ConfigError, RunConfig, load_config, selected_rules
from streamproof.reporting.markdown import MAX_LINES, render_markdown, short_message
from streamproof.rules import catalogue
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"


def test_config_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.streamproof]\nselect = ["openai", "sse.*"]\n'
        'ignore = ["tools"]\n\n[tool.streamproof.waivers]\n"openai.done" = "GW-1"\n',
        encoding="utf-8",
    )
    config = load_config(cwd=tmp_path)
    assert config.waivers == {"openai.done": "GW-1"}
    assert config.path == str(tmp_path / "pyproject.toml")
    rules = selected_rules(config)
    assert "openai.done" in rules and "sse.utf8" in rules
    assert "openai.tool-index" not in rules  # ignored group
    assert "http.status" not in rules and "anthropic.data-json" not in rules


def test_streamproof_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.streamproof]\nselect = ["http"]\n', "utf-8")
    (tmp_path / "streamproof.toml").write_text('select = ["framing"]\n', "utf-8")
    assert load_config(cwd=tmp_path).select == ("framing",)
    assert load_config(cwd=tmp_path / "nowhere") == RunConfig()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[waivers]\n"no.such-rule" = "x"\n', "unknown rule"),
        ('[waivers]\n"openai.done" = ""\n', "needs a reason"),
        ('select = ["nonsense"]\n', "'nonsense' is no rule id"),
        ("selcet = []\n", "unknown key"),
        ("select = 3\n", "list of strings"),
        ("select = [\n", "streamproof.toml"),
    ],
)
def test_config_errors_say_what_is_wrong(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "streamproof.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=error):
        selected_rules(load_config(cwd=tmp_path))


def test_command_line_select_replaces_and_ignore_adds() -> None:
    config = RunConfig(select=("http",), ignore=("http.status",))
    merged = config.with_overrides(["framing"], ["openai.done"])
    assert merged.select == ("framing",)
    assert merged.ignore == ("http.status", "openai.done")
    assert selected_rules(RunConfig()) == set(catalogue())


def test_markdown_stays_short_whatever_fails() -> None:
    rules = [
        {"id": f"openai.r{i}", "level": "MUST", "group": "framing", "outcome": "fail",
         "message": f"[MUST] openai.r{i} in openai:plain: broke <b>|x|</b> " + "y" * 400}
        for i in range(60)
    ]  # fmt: skip
    report = {
        "verdict": "fail",
        "suite": {"version": "0"},
        "target": {"base_url": "http://gw/v1", "model": "m", "apis": ["openai"]},
        "summary": {"rules": 60, "must_failed": 60, "should_warned": 0,
                    "by_level": {"MUST": {"pass": 0, "fail": 60, "warn": 0, "waived": 0,
                                          "skip": 0}}},
        "rules": rules,
    }  # fmt: skip
    md = render_markdown(report)
    assert len(md.splitlines()) < MAX_LINES + 20
    assert "… and 35 more" in md
    assert "<b>" not in md and "\\|x\\|" in md  # no HTML, no broken table
    assert short_message(rules[0]["message"]).startswith("openai:plain: broke")


def test_plugin_through_pytest_writes_every_report(pytester, tmp_path: Path) -> None:
    """``pytest conformance --junitxml ... --alluredir ...``: the plugin alone, no CLI."""
    with ReferenceServer() as srv:
        result = pytester.runpytest_inprocess(
            str(CONFORMANCE),
            "--base-url", srv.url_for(faults=("missing-done",)),
            "--model", DEFAULT_MODEL, "--api-key", DEFAULT_API_KEY, "--api", "openai",
            "--scenario", "plain", "--report-dir", str(tmp_path / "r"),
            "--junitxml", str(tmp_path / "r" / "junit.xml"),
            "--alluredir", str(tmp_path / "r" / "allure-results"),
            "-p", "no:cacheprovider", "-q",
        )  # fmt: skip
    assert result.ret == 1
    out = tmp_path / "r"
    outcomes = result.parseoutcomes()  # one pytest test per (rule, scenario) checked or skipped
    ran = outcomes["passed"] + outcomes["failed"] + outcomes.get("skipped", 0)
    assert outcomes["failed"] == 1
    # compliance.json: the run that happened (target, verdict, the one failure, the scenario)
    report = json.loads((out / "compliance.json").read_text("utf-8"))
    assert report["verdict"] == "fail"
    assert report["target"]["base_url"] == srv.url_for(faults=("missing-done",))
    assert (report["target"]["model"], report["target"]["apis"]) == (DEFAULT_MODEL, ["openai"])
    assert (report["summary"]["fail"], report["summary"]["must_failed"]) == (1, 1)
    assert (
        report["summary"]["rules"]
        == len(report["rules"])
        == sum(report["summary"][k] for k in ("pass", "fail", "warn", "waived", "skip"))
    )
    failed = [r for r in report["rules"] if r["outcome"] == "fail"]
    assert [(r["id"], r["level"], r["scenario"]) for r in failed] == [
        ("openai.done", "MUST", "openai:plain")
    ]
    assert [(s["id"], s["status"]) for s in report["scenarios"]] == [("openai:plain", 200)]
    assert DEFAULT_API_KEY not in json.dumps(report)
    # junit.xml: one case per pytest test, the failure where the suite saw it
    cases = list(ET.parse(out / "junit.xml").getroot().iter("testcase"))
    assert len(cases) == ran
    assert {c.get("classname") for c in cases} == {"streamproof.openai.plain"}
    failed_cases = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed_cases == ["openai.done"]
    # allure: one result per pytest test, the same failure
    allure = [
        json.loads(f.read_text("utf-8")) for f in (out / "allure-results").glob("*-result.json")
    ]
    assert len(allure) == ran
    assert [a["name"] for a in allure if a["status"] == "failed"] == ["openai.done · openai:plain"]
    # the human-readable pages name the failure and the verdict
    md = (out / "compliance.md").read_text("utf-8")
    assert "FAIL" in md.splitlines()[0] and "**`openai.done`** (MUST" in md
    html = (out / "index.html").read_text("utf-8")
    assert "openai.done" in html and "openai:plain" in html and DEFAULT_API_KEY not in html
    result.stdout.fnmatch_lines(["*verdict FAIL*index.html*"])
