"""``compliance.json``: the run's verdict, one entry per rule with its outcome in every scenario
it was checked in, and the evidence. Every other report is rendered from this one document.

Its shape is stable and described by ``schemas/report/compliance.schema.json`` (JSON Schema
draft 2020-12; :func:`validate_report` checks a report against it). Top level:

``schema_version``, ``suite`` {name, version}, ``created``, ``run`` {started, finished,
duration_s}, ``target`` {base_url, model, apis, embedded}, ``options`` {strict, timeouts,
select, ignore, scenarios, config, waivers, ...}, ``verdict`` (``pass``/``fail``/``error``),
``error`` (why a run ended early, else null), ``setup`` (what the suite concluded about the
endpoint's setup: ``keys``, ``models``, one line each), ``summary`` (counts per outcome and per
level),
``rules`` (one entry per rule), ``scenarios`` (one per request sent: status, headers, a
``curl`` command to send it again) and ``load`` (the load run's summary, or null).

Each rule: ``id``, ``level``, ``group``, ``apis``, ``title``, ``source``, ``source_url``,
``outcome`` (``pass``/``fail``/``warn``/``waived``/``skip``), ``waiver`` (null or {reason,
stale}), ``scenarios`` (each {scenario, outcome, message, event, excerpt}) and the strongest
finding's ``message``, ``scenario``, ``event`` and ``excerpt``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from .. import __version__
from ..engine import RuleOutcome, ScenarioResult
from ..redact import redact
from ..rules import LEVELS, Rule, catalogue
from ..scenarios import SCENARIOS
from .evidence import headers_text, reproduce, source_url

__all__ = [
    "OUTCOMES",
    "SCHEMA_VERSION",
    "ComplianceLog",
    "aggregate",
    "read_report",
    "redact_deep",
    "report_schema",
    "validate_report",
    "write_json",
]

SCHEMA_VERSION = 1
OUTCOMES = ("pass", "fail", "warn", "waived", "skip")
_RANK = {"fail": 4, "warn": 3, "waived": 2, "pass": 1, "skip": 0}


def aggregate(outcomes: Iterable[str]) -> str:
    """The rule's outcome: the worst of its scenarios' (a skip only when nothing ran)."""
    return max(outcomes, key=_RANK.__getitem__, default="skip")


def redact_deep(value: Any) -> Any:
    """Every string in a JSON-like value passed through :func:`redact`."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_deep(v) for v in value]
    return value


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Entry:
    rule: Rule
    scenarios: list[dict[str, Any]] = field(default_factory=list)


class ComplianceLog:
    """Collects (rule, scenario, outcome) as checks run; renders the report at the end.

    ``rules`` restricts the report to the selected rules (default: every rule of the APIs);
    ``waivers`` maps rule ids to the reason they are known deviations.
    """

    def __init__(
        self,
        apis: Iterable[str],
        rules: Iterable[str] | None = None,
        waivers: Mapping[str, str] | None = None,
    ) -> None:
        self.apis = tuple(apis)
        self.waivers = dict(waivers or {})
        wanted = set(rules) if rules is not None else None
        self._entries = {
            r.id: _Entry(r)
            for r in catalogue().values()
            if any(api in r.apis for api in self.apis) and (wanted is None or r.id in wanted)
        }
        self._scenarios: dict[str, dict[str, Any]] = {}
        self.setup: dict[str, str] = {}  # what the suite concluded about the endpoint's setup
        self.tool_errors: list[str] = []  # checks that raised: bugs of the tool, kept whole
        self.started = _now()
        self.error: str | None = None
        self.interrupted = False  # the run was stopped before its end (Ctrl-C, SIGTERM)

    def export(self) -> dict[str, Any]:
        r"""What this log collected, as plain data (an xdist worker sends it to the
        controller, which :meth:`merge`\ s every worker's)."""
        return {
            "rules": list(self._entries),
            "checks": {k: e.scenarios for k, e in self._entries.items()},
            "scenarios": self._scenarios,
            "setup": self.setup,
            "error": self.error,
            "tool_errors": self.tool_errors,
        }

    def merge(self, data: Mapping[str, Any], first: bool) -> None:
        """Add a worker's :meth:`export` (``first``: the first one; its rules are the
        run's, since every worker collects every item)."""
        if first:
            self.restrict(data["rules"])
        for rule_id, records in data["checks"].items():
            entry = self._entries.get(rule_id)
            if entry is None:
                entry = self._entries[rule_id] = _Entry(catalogue()[rule_id])
            entry.scenarios.extend(records)
        self._scenarios.update(data["scenarios"])
        for key, text in data["setup"].items():
            if key not in self.setup or text.startswith("not checked"):
                self.setup[key] = text
        self.error = self.error or data["error"]
        self.tool_errors += data["tool_errors"]

    def restrict(self, rules: Iterable[str]) -> None:
        """Report only these rules (those a run checks: ``-k`` deselected the others)."""
        keep = set(rules)
        self._entries = {k: v for k, v in self._entries.items() if k in keep}

    def final_outcome(self, rule_id: str, result: RuleOutcome) -> str:
        """``waived`` for a waived rule's fail or warn, else the outcome as it is."""
        if rule_id in self.waivers and result.outcome in ("fail", "warn"):
            return "waived"
        return result.outcome

    def add(
        self, rule_id: str, scenario_id: str, result: RuleOutcome, excerpt: str | None = None
    ) -> str:
        """Record one check; returns its final outcome (see :meth:`final_outcome`).
        ``excerpt`` replaces the finding's own (a report has room for wider lines)."""
        final = self.final_outcome(rule_id, result)
        entry = self._entries.get(rule_id)
        if entry is None:  # e.g. transport.connect of a run stopped early, outside --select
            entry = self._entries[rule_id] = _Entry(catalogue()[rule_id])
        record = {
            "scenario": scenario_id,
            "outcome": final,
            "message": result.message or None,
            "event": result.finding.event if result.finding else None,
            "excerpt": (excerpt or result.excerpt or None) if result.finding else None,
        }
        entry.scenarios.append(record)
        return final

    def add_scenario(self, result: ScenarioResult) -> None:
        """The request a scenario sent and what came back (once per scenario)."""
        scenario = result.scenario
        if scenario.id in self._scenarios:
            return
        cap = result.capture
        info: dict[str, Any] = {
            "id": scenario.id,
            "api": scenario.api,
            "name": scenario.name,
            "title": scenario.title,
            "kind": scenario.kind,
            "status": cap.status if cap else None,
            "skipped": result.skipped,
            "events": cap.events_total if cap else 0,
            "duration_ms": round((cap.t_end - cap.t_send) / 1e6, 1) if cap else None,
            "error": cap.error if cap else None,
            "headers": headers_text(cap) if cap else None,
            "reproduce": reproduce(cap, scenario.auth) if cap else None,
        }
        self._scenarios[scenario.id] = info
        self._learn_setup(result)
        self.tool_errors += [f"{scenario.id}: {crash}" for crash in result.crashes]

    def _learn_setup(self, result: ScenarioResult) -> None:
        """Keys and model names: does the endpoint check them? (One line each, from the
        scenarios that probe them; "not checked" wins over "checked".)"""
        scenario, cap = result.scenario, result.capture
        what = _SETUP.get(scenario.accepted)
        if what is None or cap is None or cap.status is None:
            return
        key, checked, served = what
        if any(f.rule == scenario.accepted for f in result.findings):
            self.setup[key] = served.format(status=cap.status)
        elif key not in self.setup:
            self.setup[key] = checked.format(status=cap.status)

    def build(self, target: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
        rules = [self._rule(entry) for entry in self._entries.values()]
        summary = _summary(rules)
        strict = bool(options.get("strict"))
        error = self.error
        if self.tool_errors and not error:
            first = self.tool_errors[0].splitlines()[0]
            error = (
                f"streamproof itself failed while checking ({first}): a bug in the tool, not "
                "the endpoint's finding; please report it with tool_errors"
            )
        if error:
            verdict = "error"
        elif self.interrupted:
            verdict = "interrupted"
        elif summary["must_failed"] or (strict and summary["should_warned"]):
            verdict = "fail"
        else:
            verdict = "pass"
        finished = _now()
        report = {
            "schema_version": SCHEMA_VERSION,
            "suite": {"name": "streamproof", "version": __version__},
            "created": finished.isoformat(timespec="seconds"),
            "run": {
                "started": self.started.isoformat(timespec="seconds"),
                "finished": finished.isoformat(timespec="seconds"),
                "duration_s": round((finished - self.started).total_seconds(), 3),
            },
            "target": dict(target),
            "options": dict(options),
            "verdict": verdict,
            "error": error,
            "tool_errors": list(self.tool_errors),
            "setup": dict(self.setup),
            "summary": summary,
            "rules": rules,
            "scenarios": sorted(
                self._scenarios.values(),
                key=lambda s: _SCENARIO_ORDER.get(s["id"], len(_SCENARIO_ORDER)),
            ),
            "load": None,
        }
        return redact_deep(report)

    def _rule(self, entry: _Entry) -> dict[str, Any]:
        entry.scenarios.sort(key=lambda s: _SCENARIO_ORDER.get(s["scenario"], len(_SCENARIO_ORDER)))
        outcome = aggregate(s["outcome"] for s in entry.scenarios)
        # the strongest finding speaks; of equals, the first scenario's (whatever the order
        # the checks ran in: a run spread over workers reports what a serial one does)
        found = [s for s in entry.scenarios if s["message"] and s["outcome"] != "skip"]
        first = max(found, key=lambda s: _RANK[s["outcome"]], default={})
        reason = self.waivers.get(entry.rule.id)
        return {
            **entry.rule.as_dict(),
            "source_url": source_url(entry.rule),
            "outcome": outcome,
            "waiver": None if reason is None else {"reason": reason, "stale": outcome == "pass"},
            "scenarios": entry.scenarios,
            "message": first.get("message"),
            "scenario": first.get("scenario"),
            "event": first.get("event"),
            "excerpt": first.get("excerpt"),
        }

    def write(
        self, path: Path, target: Mapping[str, Any], options: Mapping[str, Any]
    ) -> dict[str, Any]:
        report = self.build(target, options)
        write_json(path, report)
        return report


_SCENARIO_ORDER = {s.id: i for i, s in enumerate(SCENARIOS)}
# accepted rule -> (setup key, its line when the endpoint refused, when it served)
_SETUP = {
    "http.auth-required": (
        "keys",
        "checked: requests without a valid key are refused ({status})",
        "not checked: a request without a valid key was answered {status}, so the no-key and "
        "bad-key checks were skipped",
    ),
    "http.unknown-model": (
        "models",
        "checked: an unknown model name is refused ({status})",
        "not checked: an unknown model name was answered {status}",
    ),
}


def _summary(rules: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = dict.fromkeys(OUTCOMES, 0)
    by_level = {level: dict.fromkeys(OUTCOMES, 0) for level in LEVELS}
    checks = dict.fromkeys(OUTCOMES, 0)
    for r in rules:
        summary[r["outcome"]] += 1
        by_level[r["level"]][r["outcome"]] += 1
        for s in r["scenarios"]:
            checks[s["outcome"]] += 1
    summary["rules"] = len(rules)
    summary["must_failed"] = by_level["MUST"]["fail"]
    summary["should_warned"] = sum(1 for r in rules if r["outcome"] == "warn")
    summary["by_level"] = by_level
    summary["checks"] = checks
    return summary


def write_json(path: Path, report: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = redact(json.dumps(report, indent=2, ensure_ascii=False))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)


def read_report(path: Path) -> dict[str, Any]:
    """A ``compliance.json`` (a ValueError says why it is not one)."""
    try:
        report = json.loads(Path(path).read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read a report: {exc}") from None
    if not isinstance(report, dict) or "rules" not in report or "verdict" not in report:
        raise ValueError(f"{path}: not a streamproof compliance.json")
    return report


@cache
def report_schema() -> dict[str, Any]:
    """``schemas/report/compliance.schema.json``."""
    from ..schemas import schema_dir

    path = schema_dir() / "report" / "compliance.schema.json"
    return json.loads(path.read_text("utf-8"))


def validate_report(report: Mapping[str, Any]) -> list[str]:
    """Every way ``report`` departs from the schema, one line each (empty: valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(report_schema())
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    return [f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in errors]
