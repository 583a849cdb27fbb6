"""``streamproof diff OLD NEW``: a clean run against a faulty one names the regressed rules and
exits 1; the other way round they are fixed and it exits 0. Load metrics are compared when
both reports carry a load summary, against the threshold."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamproof.reporting.diff import diff_reports, format_diff, parse_threshold

FAULTS = "missing-done,role-every-chunk"


def streamproof(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamproof", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    cwd = tmp_path_factory.mktemp("diff")
    # http.incremental is a timing heuristic: on a busy machine it may warn in one run only
    base = ("run", "--api", "openai", "--scenario", "plain", "--no-load",
            "--ignore", "http.incremental")  # fmt: skip
    clean = streamproof(*base, "--report-dir", "clean", cwd=cwd)
    assert clean.returncode == 0, clean.stdout[-2000:]
    faulty = streamproof(*base, "--fault", FAULTS, "--report-dir", "faulty", cwd=cwd)
    assert faulty.returncode == 1, faulty.stdout[-2000:]
    return cwd, cwd / "clean" / "compliance.json", cwd / "faulty" / "compliance.json"


def test_diff_names_the_regressed_rules_and_exits_1(runs) -> None:
    cwd, clean, faulty = runs
    done = streamproof("diff", str(clean), str(faulty), cwd=cwd)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REGRESSED (3)" in done.stdout
    lines = done.stdout.splitlines()
    for rule_id in ("openai.done", "openai.role-once", "sdk.openai-accumulate"):
        assert any(line.strip().startswith(f"{rule_id} [MUST] pass → fail") for line in lines)
    assert "verdict pass → fail" in done.stdout


def test_diff_the_other_way_round_is_fixed_and_exits_0(runs) -> None:
    cwd, clean, faulty = runs
    done = streamproof("diff", str(faulty), str(clean), "--format", "json", cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    diff = json.loads(done.stdout)
    assert diff["regressed"] is False
    fixed = {r["id"] for r in diff["rules"] if r["kind"] == "fixed"}
    assert fixed == {"openai.done", "openai.role-once", "sdk.openai-accumulate"}


def test_runs_of_different_scenarios_compare_on_the_common_ones(runs, tmp_path) -> None:
    cwd, _, faulty = runs
    full = streamproof("run", "--api", "openai", "--no-load", "--report-dir", "full",
                       "--ignore", "http.incremental", cwd=cwd)  # fmt: skip
    assert full.returncode == 0, full.stdout[-2000:]
    done = streamproof("diff", str(cwd / "full" / "compliance.json"), str(faulty), cwd=cwd)
    assert done.returncode == 1
    assert "REGRESSED (3)" in done.stdout and "sse.utf8" not in done.stdout
    # [DONE] missing: whether anything follows it can no longer be checked
    assert "CHANGED (1)\n  openai.done-last [MUST] pass → skip" in done.stdout
    assert "ran in only one of the reports" in done.stdout


def test_diff_of_a_run_with_itself_is_quiet(runs) -> None:
    cwd, clean, _ = runs
    done = streamproof("diff", str(clean), str(clean), "--format", "markdown", cwd=cwd)
    assert done.returncode == 0
    assert "no regression" in done.stdout and "no rule changed outcome" in done.stdout


def test_unreadable_report_exits_2(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}", encoding="utf-8")
    done = streamproof("diff", str(tmp_path / "x.json"), str(tmp_path / "nope.json"), cwd=tmp_path)
    assert done.returncode == 2 and "not a streamproof compliance.json" in done.stderr


def _report(outcome: str = "pass", scenarios: dict[str, str] | None = None, load=None) -> dict:
    scenarios = scenarios or {"openai:plain": outcome}
    return {
        "verdict": "fail" if outcome == "fail" else "pass",
        "target": {"model": "m", "apis": ["openai"]},
        "scenarios": [{"id": "openai:plain"}, {"id": "openai:tool"}],
        "rules": [
            {
                "id": "openai.done",
                "level": "MUST",
                "outcome": outcome,
                "message": None if outcome == "pass" else "[MUST] openai.done in openai:plain: x",
                "scenarios": [{"scenario": k, "outcome": v} for k, v in scenarios.items()],
            }
        ],
        "load": None if load is None else {"summary": load},
    }


def _load(ttft_p99: float = 100.0, tok_s: float = 500.0, failed: int = 0) -> dict:
    return {
        "users": 4,
        "api": "openai",
        "requests": {"completed": 100, "failed": failed},
        "ttft_ms": {"p50": 50.0, "p90": 80.0, "p99": ttft_p99},
        "itl_ms": {"p50": 0.2, "p99": 0.3},
        "throughput": {"output_tokens_per_s": tok_s, "requests_per_s": 5.0},
        "goodput": None,
        "violations": {},
    }


def test_rule_kinds() -> None:
    assert diff_reports(_report("pass"), _report("fail")).rules[0].kind == "regressed"
    assert diff_reports(_report("warn"), _report("pass")).rules[0].kind == "fixed"
    assert diff_reports(_report("fail"), _report("waived")).rules[0].kind == "changed"
    assert diff_reports(_report("fail"), _report("skip")).rules[0].kind == "changed"
    # still failing, but now in one more scenario: a regression
    one = _report("fail", {"openai:plain": "fail", "openai:tool": "pass"})
    more = _report("fail", {"openai:plain": "fail", "openai:tool": "fail"})
    change = diff_reports(one, more).rules[0]
    assert change.kind == "regressed" and change.scenarios[0]["scenario"] == "openai:tool"
    assert diff_reports(_report("pass"), _report("pass")).rules == []


def test_load_metrics_beyond_the_threshold() -> None:
    diff = diff_reports(_report(load=_load()), _report(load=_load(ttft_p99=130.0, tok_s=520.0)))
    by_name = {m.name: m for m in diff.metrics}
    assert by_name["TTFT p99 ms"].kind == "regressed"
    assert by_name["TTFT p99 ms"].change == pytest.approx(0.30)
    assert "output tokens/s" not in by_name  # +4%: under 10%
    assert "ITL p99 ms" not in by_name  # 0.3 ms: under the 1 ms floor
    assert diff.regressed
    assert not diff_reports(
        _report(load=_load()), _report(load=_load(ttft_p99=130.0)), threshold=0.5
    ).regressed
    faster = diff_reports(_report(load=_load()), _report(load=_load(tok_s=700.0)))
    assert [m.kind for m in faster.metrics] == ["improved"] and not faster.regressed
    failing = diff_reports(_report(load=_load()), _report(load=_load(failed=1)))
    assert [m.name for m in failing.metrics] == ["failed fraction"] and failing.regressed
    text = format_diff(diff)
    assert "LOAD METRICS beyond 10%" in text and "+30.0%" in text


def test_only_one_load_run_is_a_note() -> None:
    diff = diff_reports(_report(), _report(load=_load()))
    assert diff.metrics == [] and "only one of the reports" in diff.notes[0]


def test_new_error_verdict_is_a_regression() -> None:
    error = copy.deepcopy(_report())
    error["verdict"] = "error"
    assert diff_reports(_report(), error).regressed


@pytest.mark.parametrize(("text", "value"), [("10%", 0.10), ("25", 0.25), ("0.5%", 0.005)])
def test_parse_threshold(text: str, value: float) -> None:
    assert parse_threshold(text) == pytest.approx(value)


def test_parse_threshold_rejects_junk() -> None:
    with pytest.raises(ValueError):
        parse_threshold("ten")
