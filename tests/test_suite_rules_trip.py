"""The proof that every rule can fail: for each fault of the reference server, the conformance
suite (run in-process, exactly as a user runs it) reports the rules the fault names; with no
fault it reports no MUST or SHOULD finding at all."""

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
APIS = ("openai", "anthropic")


def _implemented(api: str) -> bool:
    return any(f.api == api for f in FAULTS.values())


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


@pytest.mark.parametrize("api", APIS)
def test_every_rule_has_a_fault(api: str) -> None:
    if not _implemented(api):
        pytest.skip(f"the reference server has no {api} endpoint yet")
    tripped = {r for f in FAULTS.values() if f.api in (api, "any") for r in f.rules}
    missing = [r.id for r in catalogue().values() if api in r.apis and r.id not in tripped]
    assert missing == [], f"rules no {api} fault trips: {missing}"


@pytest.mark.parametrize("api", APIS)
def test_clean_server_reports_no_must_or_should(api, pytester, server, tmp_path) -> None:
    if not _implemented(api):
        pytest.skip(f"the reference server has no {api} endpoint yet")
    result, report = run_suite(pytester, server, tmp_path, api=api)
    bad = [
        (r["id"], r["outcome"], r["message"])
        for r in report["rules"]
        if r["outcome"] in ("fail", "warn")
    ]
    assert bad == []
    assert report["verdict"] == "pass"
    assert result.ret == 0
    passed = {r["id"] for r in report["rules"] if r["outcome"] == "pass"}
    # every stream-level rule of this API is actually exercised by some scenario
    assert {"http.status", "sse.utf8", f"sdk.{api}-accumulate"} <= passed
    assert report["summary"]["pass"] >= 0.8 * report["summary"]["rules"]


FAULT_NAMES = sorted(FAULTS)


@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_fault_makes_the_suite_report_its_rules(fault, pytester, server, tmp_path) -> None:
    spec = FAULTS[fault]
    api = "openai" if spec.api == "any" else spec.api
    result, report = run_suite(
        pytester,
        server,
        tmp_path,
        api=api,
        faults=[fault],
        scenario=spec.scenario,
        extra=FAST_TIMEOUTS,
    )
    by_id = {r["id"]: r for r in report["rules"]}
    for rule_id in spec.rules:
        entry = by_id[rule_id]
        expected = {"MUST": "fail", "SHOULD": "warn", "INFO": "pass"}[entry["level"]]
        assert entry["outcome"] == expected, (rule_id, entry["scenarios"])
        assert entry["message"], f"{rule_id}: no finding recorded"
        assert rule_id in entry["message"]
    if not spec.rules:  # a valid edge the server can produce: the suite must pass it
        assert [r["id"] for r in report["rules"] if r["outcome"] in ("fail", "warn")] == []
        assert result.ret == 0
    elif "transport.connect" in spec.rules:
        assert result.ret == 2  # nothing could be reached: the run stops with one line
    elif any(by_id[r]["level"] == "MUST" for r in spec.rules):
        assert result.ret == 1
        assert report["verdict"] == "fail"
