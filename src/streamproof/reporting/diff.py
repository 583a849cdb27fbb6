"""``streamproof diff OLD.json NEW.json``: what changed between two runs, for a CI gate on an
upgrade.

Rules (matched by id). An outcome's *badness* is 2 for ``fail``, 1 for ``warn`` and 0 for
``pass``, ``waived`` and ``skip``:

- **regressed**: the rule's badness went up (pass → fail, warn → fail, skip → fail, ...), or
  it stayed but some scenario's went up (it now also fails in another scenario);
- **fixed**: the badness went down and the rule now passes;
- **changed**: any other difference of the rule's or a scenario's outcome (fail → waived,
  pass → skip: no longer checked, fail → skip, ...); a rule in only one of the reports is
  *added* or *removed*.

When the two runs ran different scenarios (``--scenario``), rules are compared on the
scenarios both ran, and a note says which were left out.

Load metrics, when both reports have a ``load`` summary: those with ``diff`` in
``metric_defs`` (TTFB, TTFT, TPOT, ITL and E2E percentiles, output tokens/s, requests/s, the
goodput fraction, the failed-request fraction and MUST violations under load), in its order,
each better lower or higher as its definition says. A metric *moved* when its relative
change exceeds the threshold (default 10%) and, for latencies, the absolute change exceeds
1 ms (so that 0.2 → 0.3 ms is not a 50% regression); it *regressed* when it moved for the
worse. Failures and violations regress on any increase from zero.

The new verdict being worse than the old one (pass → fail, → error) is a regression too.
Exit status 1 when anything regressed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..load.metric_defs import DIFF, FAILED_FRACTION, MUST_VIOLATIONS, VALUE, Metric
from .compliance import aggregate
from .load import violations_of

__all__ = ["Diff", "MetricChange", "RuleChange", "diff_reports", "format_diff", "parse_threshold"]

_BAD = {"fail": 2, "warn": 1}
_VERDICT = {"pass": 0, "fail": 1, "error": 2}
LATENCY_FLOOR_MS = 1.0
_ANY_RISE = (FAILED_FRACTION, MUST_VIOLATIONS)  # any increase from zero is a change


def _kind(d: Metric) -> str:
    if d.unit == "ms":
        return "latency"  # moves only past LATENCY_FLOOR_MS
    return "count" if d in _ANY_RISE else "rate"


# (label, metric, statistic, kind): every statistic a metric of metric_defs has ``diff`` for
_METRICS: tuple[tuple[str, Metric, str, str], ...] = tuple(
    (d.label if stat == VALUE else f"{d.label} {stat} {d.unit}", d, stat, _kind(d))
    for d in DIFF
    for stat in d.diff
)


def parse_threshold(text: str) -> float:
    """``10%`` or ``10`` → 0.10."""
    raw = str(text).strip().removesuffix("%").strip()
    try:
        value = float(raw) / 100
    except ValueError:
        raise ValueError(f"--threshold: not a percentage: {text!r} (e.g. 10%)") from None
    if value < 0:
        raise ValueError(f"--threshold: must not be negative: {text!r}")
    return value


@dataclass
class RuleChange:
    id: str
    level: str
    kind: str  # regressed, fixed, changed, added, removed
    old: str | None
    new: str | None
    scenarios: list[dict[str, str | None]] = field(default_factory=list)
    message: str | None = None


@dataclass
class MetricChange:
    name: str
    old: float
    new: float
    change: float | None  # relative, None when the old value is 0
    kind: str  # regressed, improved


@dataclass
class Diff:
    old_verdict: str
    new_verdict: str
    threshold: float
    rules: list[RuleChange] = field(default_factory=list)
    metrics: list[MetricChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def verdict_regressed(self) -> bool:
        return _VERDICT.get(self.new_verdict, 2) > _VERDICT.get(self.old_verdict, 2)

    @property
    def regressed(self) -> bool:
        return (
            self.verdict_regressed
            or any(r.kind == "regressed" for r in self.rules)
            or any(m.kind == "regressed" for m in self.metrics)
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["regressed"] = self.regressed
        return out


def _ran(report: Mapping[str, Any]) -> set[str]:
    """The scenarios a report ran (its ``scenarios`` list, else every one a rule names)."""
    listed = {s["id"] for s in report.get("scenarios") or () if isinstance(s, dict) and "id" in s}
    return listed or {s["scenario"] for r in report["rules"] for s in r.get("scenarios") or ()}


def _rule_change(
    old: Mapping[str, Any], new: Mapping[str, Any], common: set[str] | None
) -> RuleChange | None:
    """Compare one rule on the scenarios both runs ran (``common``; None: compare the rules'
    outcomes as they are)."""
    o = {s["scenario"]: s["outcome"] for s in old.get("scenarios") or ()}
    n = {s["scenario"]: s["outcome"] for s in new.get("scenarios") or ()}
    if common is None:
        before, after = old["outcome"], new["outcome"]
    else:
        o = {k: v for k, v in o.items() if k in common}
        n = {k: v for k, v in n.items() if k in common}
        before, after = aggregate(o.values()), aggregate(n.values())
    scenarios: list[dict[str, str | None]] = []
    worse = False
    for sid in list(o) + [k for k in n if k not in o]:
        if o.get(sid) != n.get(sid):
            scenarios.append({"scenario": sid, "old": o.get(sid), "new": n.get(sid)})
            if _BAD.get(n.get(sid) or "skip", 0) > _BAD.get(o.get(sid) or "skip", 0):
                worse = True
    if before == after and not scenarios:
        return None
    bad_before, bad_after = _BAD.get(before, 0), _BAD.get(after, 0)
    if bad_after > bad_before or worse:
        kind = "regressed"
    elif bad_after < bad_before and after == "pass":
        kind = "fixed"
    else:
        kind = "changed"
    return RuleChange(new["id"], new["level"], kind, before, after, scenarios, new.get("message"))


def _get(summary: Mapping[str, Any], d: Metric, stat: str) -> float | None:
    if d is FAILED_FRACTION:
        req = summary.get("requests") or {}
        done, failed = req.get("completed"), req.get("failed")
        total = req.get("total", None)
        if not isinstance(total, int):  # older summaries: completed and failed were disjoint
            total = done + failed if isinstance(done, int) and isinstance(failed, int) else None
        if total is None or not isinstance(failed, int | float):
            return None
        return failed / total if total else 0.0
    if d is MUST_VIOLATIONS:
        if not isinstance(summary.get("violations"), dict):
            return None
        return float(sum(n for _, level, n in violations_of(summary) if level == "MUST"))
    value = d.read(summary)
    if stat != VALUE:
        value = value.get(stat) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _metric_changes(old: Mapping[str, Any], new: Mapping[str, Any], threshold: float) -> list:
    out = []
    for name, d, stat, kind in _METRICS:
        a, b = _get(old, d, stat), _get(new, d, stat)
        if a is None or b is None or a == b:
            continue
        rel = (b - a) / abs(a) if a else None
        worse = (b > a) if d.lower_is_better else (b < a)
        if kind == "count" and a == 0:
            moved = True
        elif rel is None:
            moved = abs(b - a) > 0
        else:
            moved = abs(rel) > threshold
        if kind == "latency" and abs(b - a) <= LATENCY_FLOOR_MS:
            moved = False
        if moved:
            out.append(MetricChange(name, a, b, rel, "regressed" if worse else "improved"))
    return out


def diff_reports(old: Mapping[str, Any], new: Mapping[str, Any], threshold: float = 0.10) -> Diff:
    """What changed from ``old`` to ``new`` (two ``compliance.json`` documents)."""
    diff = Diff(old["verdict"], new["verdict"], threshold)
    old_ran, new_ran = _ran(old), _ran(new)
    common: set[str] | None = None
    if old_ran != new_ran:
        common = old_ran & new_ran
        only = sorted(old_ran ^ new_ran)
        diff.notes.append(
            f"{len(only)} scenario(s) ran in only one of the reports ({', '.join(only)}): "
            "rules are compared on the scenarios both ran"
        )
    old_rules = {r["id"]: r for r in old["rules"]}
    new_rules = {r["id"]: r for r in new["rules"]}
    for rule_id, after in new_rules.items():
        before = old_rules.get(rule_id)
        if before is None:
            added = RuleChange(rule_id, after["level"], "added", None, after["outcome"])
            added.message = after.get("message")
            diff.rules.append(added)
            continue
        change = _rule_change(before, after, common)
        if change is not None:
            diff.rules.append(change)
    for rule_id, before in old_rules.items():
        if rule_id not in new_rules:
            removed = RuleChange(rule_id, before["level"], "removed", before["outcome"], None)
            diff.rules.append(removed)
    old_t, new_t = old.get("target") or {}, new.get("target") or {}
    for key in ("model", "apis"):
        if old_t.get(key) != new_t.get(key):
            diff.notes.append(f"{key} differs: {old_t.get(key)} → {new_t.get(key)}")
    old_load = (old.get("load") or {}).get("summary")
    new_load = (new.get("load") or {}).get("summary")
    if old_load and new_load:
        for key in ("users", "api"):
            if old_load.get(key) != new_load.get(key):
                diff.notes.append(
                    f"the load runs differ in {key} ({old_load.get(key)} → {new_load.get(key)}): "
                    "their figures may not compare"
                )
        diff.metrics = _metric_changes(old_load, new_load, threshold)
    elif old_load or new_load:
        diff.notes.append("only one of the reports has a load run: load metrics not compared")
    return diff


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.1f}"


def _pct(change: float | None) -> str:
    return "new" if change is None else f"{change:+.1%}"


_ORDER = ("regressed", "fixed", "changed", "added", "removed")


def _where(r: RuleChange) -> str:
    return ", ".join(f"{s['scenario']} {s['old'] or '-'}→{s['new'] or '-'}" for s in r.scenarios)


def _text(diff: Diff) -> list[str]:
    title = "REGRESSED" if diff.regressed else "no regression"
    lines = [f"streamproof diff: {title} (verdict {diff.old_verdict} → {diff.new_verdict})"]
    for kind in _ORDER:
        rules = [r for r in diff.rules if r.kind == kind]
        if rules:
            lines += ["", f"{kind.upper()} ({len(rules)})"]
        for r in rules:
            where = _where(r)
            line = f"  {r.id} [{r.level}] {r.old or '-'} → {r.new or '-'}"
            lines.append(line + (f"  ({where})" if where else ""))
            if kind == "regressed" and r.message:
                lines.append(f"    {r.message}")
    if diff.metrics:
        lines += ["", f"LOAD METRICS beyond {diff.threshold:.0%}"]
    for m in diff.metrics:
        old, new, pct = _fmt(m.old), _fmt(m.new), _pct(m.change)
        lines.append(f"  {m.name:18} {old:>10} → {new:>10}  {pct:>8}  {m.kind}")
    return lines


def _markdown(diff: Diff) -> list[str]:
    title = "❌ REGRESSED" if diff.regressed else "✅ no regression"
    lines = [f"## streamproof diff: {title} (verdict {diff.old_verdict} → {diff.new_verdict})"]
    for kind in _ORDER:
        rules = [r for r in diff.rules if r.kind == kind]
        if rules:
            lines += ["", f"### {kind.capitalize()} ({len(rules)})", ""]
        for r in rules:
            where = _where(r)
            line = f"- `{r.id}` ({r.level}) {r.old or '–'} → **{r.new or '–'}**"
            lines.append(line + (f" — {where}" if where else ""))
            if kind == "regressed" and r.message:
                lines.append(f"  - {r.message.replace('<', '&lt;')}")
    if diff.metrics:
        lines += [
            "",
            f"### Load metrics beyond {diff.threshold:.0%}",
            "",
            "| metric | old | new | change | |",
            "|---|---:|---:|---:|---|",
        ]
    for m in diff.metrics:
        lines.append(f"| {m.name} | {_fmt(m.old)} | {_fmt(m.new)} | {_pct(m.change)} | {m.kind} |")
    return lines


def format_diff(diff: Diff, markdown: bool = False) -> str:
    """The diff for a person (plain text) or a PR comment (``markdown``)."""
    lines = _markdown(diff) if markdown else _text(diff)
    lines += [line for note in diff.notes for line in ("", f"note: {note}")]
    if not diff.rules and not diff.metrics:
        lines += ["", "no rule changed outcome"]
    return "\n".join(lines)
