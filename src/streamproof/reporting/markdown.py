"""``compliance.md``: the verdict in a few lines, for a GitHub job summary or a PR comment.

The verdict, counts per level, one line per failed, warned and waived rule (the strongest
finding: scenario, event, message), and the load run's key figures when there was one.
Lists are capped so that the page stays short whatever the endpoint does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..load.metric_defs import E2E, GOODPUT, ITL, OUTPUT_TOKENS_PER_S, TTFT, Metric
from ..redact import redact
from ..rules import LEVELS
from .load import violations_of

__all__ = ["VERDICT_LABELS", "render_markdown", "short_message"]

VERDICT_LABELS = {
    "pass": "✅ PASS",
    "fail": "❌ FAIL",
    "error": "🛑 ERROR",
    "interrupted": "⏹️ INTERRUPTED",
}
MAX_LINES = 25
MAX_CHARS = 220
_PREFIX = re.compile(r"^\[(MUST|SHOULD|INFO)\] \S+ in ")


def short_message(message: str | None, limit: int = MAX_CHARS) -> str:
    """The finding without its ``[LEVEL] rule in`` prefix, on one line, cut to ``limit``."""
    if not message:
        return ""
    text = _PREFIX.sub("", message.split("\n", 1)[0]).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str) -> str:
    return text.replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def _counts(report: Mapping[str, Any]) -> list[str]:
    by_level = report["summary"]["by_level"]
    lines = [
        "| level | rules | pass | fail | warn | waived | skip |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for level in LEVELS:
        c = by_level.get(level, {})
        total = sum(c.values())
        if not total:
            continue
        cells = [str(c.get(k, 0) or "·") for k in ("pass", "fail", "warn", "waived", "skip")]
        lines.append(f"| {level} | {total} | " + " | ".join(cells) + " |")
    return lines


def _rule_lines(rules: list[dict[str, Any]], mark: str) -> list[str]:
    lines = []
    for r in rules[:MAX_LINES]:
        where = short_message(r.get("message")) or "see the report"
        if r["outcome"] == "waived" and r.get("waiver"):
            where = f"waived: {r['waiver']['reason']} — {where}"
        lines.append(f"- {mark} **`{r['id']}`** ({r['level']}, {r['group']}) — {_md(where)}")
    if len(rules) > MAX_LINES:
        lines.append(f"- … and {len(rules) - MAX_LINES} more (see `index.html`)")
    return lines


def _ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return "–"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


# the latencies a short summary shows, and which percentiles of each
_COLUMNS: tuple[tuple[Metric, tuple[str, ...]], ...] = (
    (TTFT, ("p50", "p99")),
    (ITL, ("p50", "p99")),
    (E2E, ("p99",)),
)


def _load_lines(load: Mapping[str, Any]) -> list[str]:
    s = load.get("summary") or {}
    req = s.get("requests") or {}
    good = s.get("goodput")
    goodput = (
        f"{good['fraction']:.0%} ({good['requests_per_s']:.2f} {GOODPUT.unit})" if good else "–"
    )
    tok_s = OUTPUT_TOKENS_PER_S.read(s)
    cells = [f"{req.get('completed', '–')} / {req.get('failed', '–')}"]
    head = ["requests ok / failed"]
    for d, stats in _COLUMNS:
        p = s.get(d.key) or {}
        cells.append(" / ".join(_ms(p.get(stat)) for stat in stats))
        head.append(f"{d.label} {' / '.join(stats)} {d.unit}")
    cells += [f"{tok_s:.1f}" if isinstance(tok_s, int | float) else "–", goodput]
    head += [f"output {OUTPUT_TOKENS_PER_S.unit}", GOODPUT.label]
    lines = [
        "",
        f"### Load: {s.get('users', '?')} users, {s.get('duration_s') or 0:.0f} s, "
        f"{s.get('api', '?')}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * (len(head) - 2) + "---:|---|",
        "| " + " | ".join(cells) + " |",
    ]
    violations = violations_of(s)
    must = [f"`{k}` ×{n}" for k, level, n in violations if level == "MUST"]
    should = [f"`{k}` ×{n}" for k, level, n in violations if level != "MUST"]
    if must:
        lines += ["", f"⚠️ Streams that broke MUST rules under load: {', '.join(must)}"]
    if should:
        lines += ["", f"Streams with SHOULD deviations under load: {', '.join(should)}"]
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """The summary as GitHub-flavoured Markdown."""
    s = report["summary"]
    target = report.get("target") or {}
    verdict = report["verdict"]
    headline = {
        "pass": f"{s['rules']} rules, every MUST rule passed",
        "fail": f"{s['must_failed']} MUST rule(s) failed"
        + (f", {s['should_warned']} SHOULD warned (--strict)" if s["should_warned"] else ""),
        "error": report.get("error") or "the run did not complete",
        "interrupted": "the run was interrupted before its end: what it checked is below, "
        "the rest was not checked",
    }[verdict]
    if verdict == "fail" and not s["must_failed"]:
        headline = f"{s['should_warned']} SHOULD rule(s) warned (--strict)"
    apis = ", ".join(target.get("apis") or [])
    run = report.get("run") or {}
    took = run.get("duration_s")
    lines = [
        f"## streamproof: {VERDICT_LABELS.get(verdict, verdict)} — {_md(headline)}",
        "",
        f"`{target.get('base_url', '?')}` · model `{target.get('model', '?')}` · {apis} · "
        f"streamproof {report['suite']['version']} · {report.get('created', '')}"
        + (f" · {took:.1f} s" if isinstance(took, int | float) else ""),
        "",
        *_counts(report),
    ]
    setup = report.get("setup") or {}
    if setup:
        lines += ["", *(f"- {name}: {_md(text)}" for name, text in setup.items())]
    groups = [
        ("Failed", "fail", "❌"),
        ("Warned (SHOULD)", "warn", "⚠️"),
        ("Waived (known deviations)", "waived", "💤"),
    ]
    for title, outcome, mark in groups:
        rules = [r for r in report["rules"] if r["outcome"] == outcome]
        if rules:
            lines += ["", f"### {title}", "", *_rule_lines(rules, mark)]
    stale = [r for r in report["rules"] if (r.get("waiver") or {}).get("stale")]
    if stale:
        ids = ", ".join(f"`{r['id']}`" for r in stale)
        lines += ["", f"Stale waivers (the rule passes now; remove them): {ids}"]
    if report.get("load"):
        lines += _load_lines(report["load"])
    lines += ["", "Full report: `index.html` · `compliance.json` · `junit.xml`", ""]
    return redact("\n".join(lines))
