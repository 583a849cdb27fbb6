"""Every recorded stream through ``streamproof check --json``, as a user runs it: the genuine
vendor streams exit 0 with no MUST finding, the edge ones are flagged with exactly the rules
their golden tests expect (the same table, so the CLI and the engine cannot drift apart)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_golden_anthropic import EXPECTED as ANTHROPIC_EXPECTED
from test_golden_openai import EXPECTED as OPENAI_EXPECTED
from test_golden_responses import EXPECTED as RESPONSES_EXPECTED

from streamproof.cli import main

GOLDEN = Path(__file__).parent / "golden"


TABLES = {
    "openai": OPENAI_EXPECTED,
    "anthropic": ANTHROPIC_EXPECTED,
    "responses": RESPONSES_EXPECTED,
}


def _expected(api: str, name: str) -> set[str]:
    return {rule for rule, level in TABLES[api][name] if level in ("MUST", "SHOULD")}


CASES = [(api, p.name) for api in TABLES for p in sorted((GOLDEN / api).glob("*.sse"))]


@pytest.mark.parametrize(("api", "name"), CASES, ids=[f"{a}/{n}" for a, n in CASES])
def test_check_cli(api: str, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", str(GOLDEN / api / name), "--api", api, "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(set(line) == {"rule", "level", "message", "event"} for line in lines)
    graded = {line["rule"] for line in lines if line["level"] in ("MUST", "SHOULD")}
    assert graded == _expected(api, name)
    must = any(line["level"] == "MUST" for line in lines)
    assert code == (1 if must else 0)


def test_check_cli_text_output_and_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = GOLDEN / "openai" / "compat_azure_model_router_prompt_filter_chunk.sse"
    assert main(["check", str(path), "--api", "openai"]) == 0  # a warning only
    out = capsys.readouterr().out
    assert "[SHOULD] openai.object at event 0" in out
    assert out.splitlines()[-1] == "9 events, 1 finding(s), 0 MUST"
    path = GOLDEN / "openai" / "compat_perplexity_sonar_citations_usage_every_chunk.sse"
    assert main(["check", str(path), "--api", "openai"]) == 1
    out = capsys.readouterr().out
    assert "[MUST] openai.object" in out and "[MUST] openai.role-once" in out
    assert main(["check", str(GOLDEN / "nope.sse"), "--api", "openai"]) == 2
