"""The proof that every rule can fail: for each fault of the reference server, the conformance
suite (run in-process, exactly as a user runs it) reports exactly the rules the fault names —
its collateral ones included, each at its level — and nothing else; with no fault it reports
no finding at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamproof.rules import catalogue
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, FAULTS, ReferenceServer

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
# Short bounds so that the stall faults end quickly (generous for everything else), and an
# event-size bound under the huge-event fault's 2 MiB event.
FAST_TIMEOUTS = (
    "--first-byte-timeout", "2", "--idle-timeout", "1", "--total-timeout", "4",
    "--max-event-bytes", "1048576",
)  # fmt: skip
# the event flood is valid but long: on a busy machine reading its 60 000 events (twice, with
# the SDK replay) takes more than the 4 s above
FLOOD_TIMEOUTS = ("--total-timeout", "20", "--idle-timeout", "5")
APIS = ("openai", "anthropic", "responses")


@pytest.fixture(scope="module")
def server():
    with ReferenceServer() as srv:
        yield srv


def run_suite(pytester, server, report_dir: Path, *, api: str, faults=(), scenario=None, extra=()):
    args = [
        str(CONFORMANCE),
        "--base-url", server.url_for(faults=tuple(faults)),
        "--model", DEFAULT_MODEL,
        "--api-key", DEFAULT_API_KEY,
        "--api", api,
        "--report-dir", str(report_dir),
        "-p", "no:cacheprovider",
        "-q",
        *extra,
    ]  # fmt: skip
    if scenario:
        args += ["--scenario", scenario]
    result = pytester.runpytest_inprocess(*args)
    report = json.loads((report_dir / "compliance.json").read_text("utf-8"))
    return result, report


def _api(fault) -> str:
    """The API a fault is proven against: its own, or OpenAI for an API-agnostic one (its
    ``anthropic-`` and ``responses-`` copies prove it against the other APIs)."""
    return "openai" if fault.api == "any" else fault.api


@pytest.mark.parametrize("api", APIS)
def test_every_rule_has_a_fault(api: str) -> None:
    tripped = {r for f in FAULTS.values() if _api(f) == api for r in f.rules_for(api)}
    missing = [r.id for r in catalogue().values() if api in r.apis and r.id not in tripped]
    assert missing == [], f"rules no {api} fault trips: {missing}"


@pytest.mark.parametrize("api", APIS)
def test_clean_server_reports_no_must_or_should(api, pytester, server, tmp_path) -> None:
    result, report = run_suite(pytester, server, tmp_path, api=api)
    bad = [
        (r["id"], r["outcome"], r["message"])
        for r in report["rules"]
        if r["outcome"] in ("fail", "warn") or (r["level"] == "INFO" and r["message"])
    ]
    assert bad == []
    assert report["verdict"] == "pass"
    assert result.ret == 0
    passed = {r["id"] for r in report["rules"] if r["outcome"] == "pass"}
    # every stream-level rule of this API is actually exercised by some scenario
    assert {"http.status", "sse.utf8", f"sdk.{api}-accumulate", "http.auth-required"} <= passed
    assert report["summary"]["pass"] >= 0.8 * report["summary"]["rules"]
    assert report["setup"] == {
        "keys": "checked: requests without a valid key are refused (401)",
        "models": "checked: an unknown model name is refused (404)",
    }


FAULT_NAMES = sorted(FAULTS)


def _expected(fault, api: str) -> dict[str, str]:
    """rule -> the outcome the fault must give it: fail (MUST), warn (SHOULD, or a MUST rule
    the fault trips at a weaker level), pass with a finding (INFO)."""
    outcome = {"MUST": "fail", "SHOULD": "warn", "INFO": "pass"}
    out = {}
    for rule_id in fault.rules_for(api):
        level = catalogue()[rule_id].level_for(api)
        if rule_id in fault.weaker_for(api):
            level = "SHOULD"
        out[rule_id] = outcome[level]
    return out


@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_fault_makes_the_suite_report_exactly_its_rules(fault, pytester, server, tmp_path) -> None:
    spec = FAULTS[fault]
    api = _api(spec)
    result, report = run_suite(
        pytester,
        server,
        tmp_path,
        api=api,
        faults=[fault],
        scenario=spec.scenario,
        extra=FAST_TIMEOUTS + (FLOOD_TIMEOUTS if fault.endswith("event-flood") else ()),
    )
    expected = _expected(spec, api)
    if spec.setup:  # the setup check refuses the endpoint: a usage error, no rule judged
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert report["verdict"] == "error" and spec.setup in report["error"], report["error"]
        assert [r["id"] for r in report["rules"] if r["outcome"] != "skip"] == []
        return
    reported = {
        r["id"]: r["outcome"]
        for r in report["rules"]
        if r["outcome"] in ("fail", "warn") or (r["level"] == "INFO" and r["message"])
    }
    assert reported == expected, [(r["id"], r["message"]) for r in report["rules"] if r["message"]]
    for rule_id in expected:
        entry = next(r for r in report["rules"] if r["id"] == rule_id)
        assert entry["scenario"] == f"{api}:{spec.scenario}", (rule_id, entry["scenario"])
        # the message says what was seen, beyond the rule's id and the scenario
        said = entry["message"].split(": ", 1)[-1]
        assert len(said) > 15 and rule_id not in said, entry["message"]
    if "fail" not in expected.values():  # warnings and valid edges: the suite passes
        assert report["verdict"] == "pass"
        assert result.ret == 0
    elif expected.keys() & {"transport.connect", "transport.first-byte", "transport.idle"}:
        assert result.ret == 2  # nothing answered, or the stream hung: one line, exit 2
    else:
        assert result.ret == 1
        assert report["verdict"] == "fail"
