"""Checks that know the setup: an endpoint that takes no key (or any model name) is told so —
an INFO (or SHOULD) finding and the error checks skipped with the reason — never failed as if
the request had been invalid, and the report says what the suite concluded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamproof.server import DEFAULT_MODEL, ReferenceServer

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
APIS = ("openai", "anthropic")


@pytest.fixture(scope="module")
def keyless():
    with ReferenceServer(api_key=None) as srv:
        yield srv
        assert srv.errors == []


def _run(pytester, base_url: str, api: str, report_dir: Path, *extra: str):
    result = pytester.runpytest_inprocess(
        str(CONFORMANCE),
        "--base-url", base_url,
        "--model", DEFAULT_MODEL,
        "--api", api,
        "--report-dir", str(report_dir),
        "-p", "no:cacheprovider",
        "-q",
        *extra,
    )  # fmt: skip
    return result, json.loads((report_dir / "compliance.json").read_text("utf-8"))


def _checks(report: dict, rule_id: str) -> dict[str, dict]:
    entry = next(r for r in report["rules"] if r["id"] == rule_id)
    return {s["scenario"].split(":")[1]: s for s in entry["scenarios"]}


@pytest.mark.parametrize("api", APIS)
def test_keyless_endpoint_is_no_failure(api, keyless, pytester, tmp_path, monkeypatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "STREAMPROOF_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    result, report = _run(pytester, keyless.base_url, api, tmp_path)
    assert report["verdict"] == "pass", [r["id"] for r in report["rules"] if r["outcome"] == "fail"]
    assert result.ret == 0
    assert [r["id"] for r in report["rules"] if r["outcome"] in ("fail", "warn")] == []
    auth = _checks(report, "http.auth-required")
    for scenario in ("error-no-key", "error-bad-key"):
        assert auth[scenario]["outcome"] == "pass"
        assert "the endpoint does not check keys" in auth[scenario]["message"]
        for rule_id in (f"{api}.error-status", f"{api}.error-body"):
            check = _checks(report, rule_id)[scenario]
            assert check["outcome"] == "skip"
            assert "does not check keys" in check["message"]
    # the other error scenarios are still judged
    assert _checks(report, f"{api}.error-status")["error-malformed"]["outcome"] == "pass"
    assert report["setup"]["keys"].startswith("not checked: a request without a valid key")
    assert report["setup"]["models"] == "checked: an unknown model name is refused (404)"
    assert "setup: keys not checked" in result.stdout.str()


@pytest.mark.parametrize("api", APIS)
def test_any_model_served_is_a_warning(api, pytester, tmp_path) -> None:
    with ReferenceServer() as srv:
        fault = "accept-any-model" if api == "openai" else "anthropic-accept-any-model"
        base = srv.url_for(faults=(fault,))
        result, report = _run(
            pytester, base, api, tmp_path, "--api-key", "sk-streamproof-local",
            "--scenario", "error-unknown-model",
        )  # fmt: skip
    check = _checks(report, "http.unknown-model")["error-unknown-model"]
    assert check["outcome"] == "warn"
    assert "'streamproof-no-such-model' was answered 200" in check["message"]
    status = _checks(report, f"{api}.error-status")["error-unknown-model"]
    assert status["outcome"] == "skip" and "serves any model name" in status["message"]
    assert report["verdict"] == "pass" and result.ret == 0
    assert report["setup"] == {"models": "not checked: an unknown model name was answered 200"}
