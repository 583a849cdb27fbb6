"""Adding a rule, the whole change (README, "Add a rule"): one catalogue entry, one check
function, one fault, one trips row — and the suite, the reports and the trips proof pick it up
with nothing else touched. Here the four pieces live in the test and are taken out again."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_suite_rules_trip import _expected, run_suite

from streamproof.rules import Rule
from streamproof.server import ReferenceServer
from streamproof.server.endpoint import StreamInfo
from streamproof.server.faults import Fault
from streamproof.sse import Event
from streamproof.validators.openai_model import Choice, OpenAIChatModel

RULE_ID = "openai.content-nul"

# 1. the catalogue entry (in src/streamproof/rules/catalogue.toml, as [[rule]])
ENTRY = Rule(
    id=RULE_ID,
    level="SHOULD",
    group="lifecycle",
    apis=("openai",),
    title="Content carries no NUL character",
    source="example: C-string clients and terminals cut the text at U+0000",
    seen_in=("stream",),
)


# 2. the check (in the module of its area, e.g. validators/openai_choices.py)
def content_nul(s: OpenAIChatModel, at: Event, fragment: tuple[Choice, str]) -> None:
    st, text = fragment
    if "\x00" in text:
        s.flag(RULE_ID, st.index, at, f"choice {st.index} content holds a NUL at event {at.index}")


# 3. the fault (in server/faults/openai_chat.py, listed in OPENAI_FAULTS) — whose ``rules``
#    are 4. the trips row: the trips test holds the suite to exactly those rules
def _nul_in_content(items: list[Any], info: StreamInfo) -> list[Any]:
    """The first content delta ends with a NUL."""
    for p, item in enumerate(items):
        choices = item.get("choices") if isinstance(item, dict) else None
        delta = choices[0].get("delta", {}) if choices else {}
        if delta.get("content"):
            choice = {**choices[0], "delta": {**delta, "content": delta["content"] + "\x00"}}
            return [*items[:p], {**item, "choices": [choice]}, *items[p + 1 :]]
    return items


FAULT = Fault(
    "content-nul", "openai", (RULE_ID,), "plain", "a NUL at the end of one content delta",
    chunks=_nul_in_content,
)  # fmt: skip


@pytest.fixture
def added_rule() -> Iterator[None]:
    """The four pieces in place, taken out after the test (in the modules as they are now:
    an in-process pytester run may have dropped and re-imported them since collection)."""
    catalogue = importlib.import_module("streamproof.rules").catalogue
    registry = importlib.import_module("streamproof.validators.registry")
    faults = importlib.import_module("streamproof.server.faults").FAULTS
    catalogue()[RULE_ID] = ENTRY
    registry.check(RULE_ID, on="content", when=lambda s: s.content_t)(content_nul)
    registry.checks.cache_clear()
    registry.plan.cache_clear()
    faults[FAULT.name] = FAULT
    try:
        yield
    finally:
        del catalogue()[RULE_ID], registry._REGISTRY[RULE_ID], faults[FAULT.name]
        registry.checks.cache_clear()
        registry.plan.cache_clear()


@pytest.fixture(scope="module")
def server():
    with ReferenceServer() as srv:
        yield srv


def test_a_new_rule_is_four_pieces(added_rule, pytester, server, tmp_path: Path) -> None:
    # the fault trips exactly the new rule, at its level, in its scenario
    _, report = run_suite(
        pytester, server, tmp_path / "fault", api="openai", faults=[FAULT.name], scenario="plain"
    )
    reported = {r["id"]: r["outcome"] for r in report["rules"] if r["outcome"] in ("fail", "warn")}
    assert reported == _expected(FAULT, "openai") == {RULE_ID: "warn"}
    entry = next(r for r in report["rules"] if r["id"] == RULE_ID)
    assert "holds a NUL" in entry["message"] and entry["scenario"] == "openai:plain"
    # the clean server passes it, in every stream scenario the catalogue entry names
    _, clean = run_suite(pytester, server, tmp_path / "clean", api="openai")
    entry = next(r for r in clean["rules"] if r["id"] == RULE_ID)
    assert entry["outcome"] == "pass"
    assert len(entry["scenarios"]) >= 5
