"""``compliance.json``: one entry per rule with its outcome over the scenarios it was checked in.

The file's shape is stable (CI gates and later report formats read it): a top-level object with
``schema_version``, ``suite``, ``created``, ``target``, ``options``, ``verdict``, ``summary`` and
``rules``; each rule has ``id``, ``level``, ``group``, ``title``, ``source``, ``outcome``
(``pass``/``fail``/``warn``/``skip``), ``scenarios`` (each with its own outcome), and the first
failing ``message``, ``event`` and ``excerpt``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..engine import RuleOutcome
from ..redact import redact
from ..rules import Rule, catalogue

__all__ = ["SCHEMA_VERSION", "ComplianceLog", "aggregate"]

SCHEMA_VERSION = 1
_RANK = {"fail": 3, "warn": 2, "pass": 1, "skip": 0}


def aggregate(outcomes: Iterable[str]) -> str:
    """The rule's outcome: the worst of its scenarios' (a skip only when nothing ran)."""
    return max(outcomes, key=_RANK.__getitem__, default="skip")


@dataclass
class _Entry:
    rule: Rule
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    first: RuleOutcome | None = None


class ComplianceLog:
    """Collects (rule, scenario, outcome) as checks run; renders the report at the end."""

    def __init__(self, apis: Iterable[str]) -> None:
        self.apis = tuple(apis)
        self._entries = {
            r.id: _Entry(r) for r in catalogue().values() if any(api in r.apis for api in self.apis)
        }

    def add(self, rule_id: str, scenario_id: str, result: RuleOutcome) -> None:
        entry = self._entries[rule_id]
        entry.scenarios.append(
            {
                "scenario": scenario_id,
                "outcome": result.outcome,
                "message": redact(result.message) or None,
            }
        )
        if entry.first is None and result.finding is not None:
            entry.first = result

    def build(self, target: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
        rules = []
        for entry in self._entries.values():
            outcome = aggregate(s["outcome"] for s in entry.scenarios)
            first = entry.first
            rules.append(
                {
                    **entry.rule.as_dict(),
                    "outcome": outcome,
                    "scenarios": entry.scenarios,
                    "message": redact(first.message) if first else None,
                    "event": first.finding.event if first and first.finding else None,
                    "excerpt": redact(first.excerpt) if first else None,
                }
            )
        summary: dict[str, Any] = {k: 0 for k in _RANK}
        for r in rules:
            summary[r["outcome"]] += 1
        summary["rules"] = len(rules)
        summary["must_failed"] = sum(
            1 for r in rules if r["level"] == "MUST" and r["outcome"] == "fail"
        )
        summary["should_warned"] = sum(1 for r in rules if r["outcome"] == "warn")
        strict = bool(options.get("strict"))
        failed = summary["must_failed"] or (strict and summary["should_warned"])
        return {
            "schema_version": SCHEMA_VERSION,
            "suite": {"name": "streamproof", "version": __version__},
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "target": {k: redact(v) if isinstance(v, str) else v for k, v in target.items()},
            "options": dict(options),
            "verdict": "fail" if failed else "pass",
            "summary": summary,
            "rules": rules,
        }

    def write(
        self, path: Path, target: Mapping[str, Any], options: Mapping[str, Any]
    ) -> dict[str, Any]:
        report = self.build(target, options)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return report
