"""Allure labels, parameters, links and attachments for one rule check.

Used from inside the check only when allure-pytest is installed *and* ``--alluredir`` was
given (its listener is then registered); streamproof never needs allure otherwise. Each
(rule, scenario) check becomes an Allure test result with:

- epic = the API (``OpenAI chat completions``, ``Anthropic messages``), feature = the rule's
  area (HTTP, framing, lifecycle, tool calls, ...), story = the rule id;
- severity from the level: MUST → critical, SHOULD → normal, INFO → minor;
- parameters scenario, base URL and model (the base URL, whose port changes from run to run,
  is excluded from Allure's history id so that history and trends line up across runs);
- a link to the rule's source, and tags: the level, and ``waived`` / ``warned`` when so;
- for a finding: the transcript lines around the offending event, the request and response
  headers (credentials masked) and a ``curl`` command that sends the request again.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..engine import RuleOutcome, ScenarioResult, Target
from ..redact import redact
from ..rules import Rule
from .evidence import API_NAMES, GROUP_NAMES, headers_text, reproduce, request_text, source_url

__all__ = ["SEVERITY", "allure_active", "annotate"]

SEVERITY = {"MUST": "critical", "SHOULD": "normal", "INFO": "minor"}


def allure_active(config: pytest.Config) -> bool:
    """allure-pytest is installed and writing results (``--alluredir`` given)."""
    return config.pluginmanager.get_plugin("allure_listener") is not None


def annotate(
    rule: Rule,
    scenario_result: ScenarioResult,
    result: RuleOutcome,
    final: str,
    target: Target,
    waiver: str | None = None,
    excerpt: str | None = None,
) -> None:
    """Describe the running test to Allure (call from inside the test)."""
    import allure

    scenario = scenario_result.scenario
    dyn: Any = allure.dynamic
    dyn.title(f"{rule.id} · {scenario.id}")
    dyn.description(
        f"**{rule.level}** · {rule.title}\n\nSource: {rule.source}\n\n"
        f"Scenario `{scenario.id}`: {scenario.title}"
        + (f"\n\n**Waived:** {waiver}" if final == "waived" and waiver else "")
    )
    dyn.epic(API_NAMES.get(scenario.api, scenario.api))
    dyn.feature(GROUP_NAMES.get(rule.group, rule.group))
    dyn.story(rule.id)
    dyn.severity(SEVERITY[rule.level])
    dyn.tag(rule.level)
    if final in ("waived", "warn"):
        dyn.tag({"waived": "waived", "warn": "warned"}[final])
    dyn.parameter("scenario", scenario.id)
    dyn.parameter("base URL", redact(target.base_url), excluded=True)
    dyn.parameter("model", target.model)
    url = source_url(rule)
    if url:
        dyn.link(url, name=f"source: {rule.source}")
    if result.finding is None:
        return
    lines = excerpt or result.excerpt
    text = redact(result.message + ("\n\n" + lines if lines else ""))
    kind = allure.attachment_type.TEXT
    allure.attach(text, name="transcript excerpt", attachment_type=kind)
    cap = scenario_result.capture
    if cap is not None:
        allure.attach(headers_text(cap), name="request and response headers", attachment_type=kind)
        allure.attach(request_text(cap), name="request body", attachment_type=kind)
        allure.attach(reproduce(cap, scenario.auth), name="reproduce (curl)", attachment_type=kind)
