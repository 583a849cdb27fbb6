"""``index.html``: one self-contained page (no script, no font, no request of any kind) that a
person reads in ten seconds and a reviewer digs into.

Top to bottom: the verdict; counts; the findings (each failed, warned or waived rule opens,
with ``<details>``, to every scenario's message, the transcript lines around the offending
event, the rule's source and a ``curl`` command to send the request again); the rule matrix
(rows = rules grouped by area, columns = scenarios grouped by API, cells coloured by outcome,
each finding expandable in place; a checkbox hides the clean rows, in CSS alone); the load
run when there was one (key figures, percentile table, TTFT/ITL distributions and output
tokens/s over time as inline SVG, see :mod:`.charts`); the requests the suite sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from ..load.metric_defs import (
    ACHIEVED_CONCURRENCY,
    CLIENT_LAG,
    GOODPUT,
    ITL,
    LATENCIES,
    OUTPUT_TOKENS,
    OUTPUT_TOKENS_PER_S,
    REQUESTS_PER_S,
    TTFO,
    TTFT,
    label_of,
)
from ..redact import redact
from ..rules import LEVELS
from ..scenarios import SCENARIOS
from .evidence import API_NAMES, GROUP_NAMES, GROUP_ORDER
from .load import LoadData, violations_of
from .markdown import VERDICT_LABELS, short_message

__all__ = ["render_html"]

_GLYPH = {"pass": "✓", "fail": "✗", "warn": "!", "waived": "~", "skip": "–"}
_WORD = {"pass": "pass", "fail": "FAIL", "warn": "warn", "waived": "waived", "skip": "skip"}
_PCTS = (("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("p999", "p99.9"),
         ("min", "min"), ("max", "max"), ("mean", "mean"))  # fmt: skip

_CSS = """
:root{--pass:#15803d;--pass-bg:#dcfce7;--fail:#b91c1c;--fail-bg:#fee2e2;--warn:#b45309;
--warn-bg:#fef3c7;--waived:#6d28d9;--waived-bg:#ede9fe;--skip:#6b7280;--skip-bg:#f3f4f6;
--line:#e5e7eb;--ink:#111827;--soft:#4b5563}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
background:#fafafa}
main{max-width:1280px;margin:0 auto;padding:0 24px 48px}
h2{font-size:18px;margin:32px 0 10px;border-bottom:1px solid var(--line);padding-bottom:6px}
h3{font-size:15px;margin:18px 0 8px}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#0f172a;color:#e2e8f0;padding:10px 12px;border-radius:6px;overflow-x:auto;
white-space:pre-wrap;word-break:break-all;margin:6px 0}
a{color:#1d4ed8}
.verdict{display:flex;gap:20px;align-items:center;padding:22px 32px;color:#fff}
.verdict.v-pass{background:var(--pass)}.verdict.v-fail{background:var(--fail)}
.verdict.v-error{background:#374151}.verdict.v-interrupted{background:#6b7280}
.verdict .badge{font-size:34px;font-weight:800;letter-spacing:.04em;white-space:nowrap}
.verdict h1{margin:0;font-size:20px}.verdict p{margin:4px 0 0;opacity:.92}
.tiles{display:flex;flex-wrap:wrap;gap:12px;margin-top:20px}
.tile{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 16px;
min-width:120px}
.tile b{display:block;font-size:22px}.tile span{color:var(--soft);font-size:12px}
.tile.fail b{color:var(--fail)}.tile.warn b{color:var(--warn)}.tile.waived b{color:var(--waived)}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.pill{display:inline-block;min-width:52px;text-align:center;border-radius:4px;padding:0 6px;
font-size:12px;font-weight:700}
.pill.pass{background:var(--pass-bg);color:var(--pass)}.pill.fail{background:var(--fail-bg);
color:var(--fail)}.pill.warn{background:var(--warn-bg);color:var(--warn)}
.pill.waived{background:var(--waived-bg);color:var(--waived)}.pill.skip{background:var(--skip-bg);
color:var(--skip)}
.lvl{font-size:11px;font-weight:700;color:var(--soft)}
details.finding{background:#fff;border:1px solid var(--line);border-left:4px solid var(--skip);
border-radius:6px;margin:6px 0;padding:6px 12px}
details.finding.fail{border-left-color:var(--fail)}details.finding.warn{border-left-color:var(--warn)}
details.finding.waived{border-left-color:var(--waived)}
details.finding summary{cursor:pointer}
details.finding .body{padding:6px 0 4px}
.sc{margin:8px 0;padding-top:6px;border-top:1px dashed var(--line)}
.muted{color:var(--soft)}
.matrix-wrap{overflow:auto;max-height:80vh;border:1px solid var(--line)}
table.matrix{font-size:12px;border-collapse:separate;border-spacing:0}
table.matrix th,table.matrix td{border:0;border-right:1px solid var(--line);
border-bottom:1px solid var(--line)}
table.matrix th.rule{position:sticky;left:0;background:#fff;z-index:2;white-space:nowrap}
table.matrix thead th{position:sticky;top:0;background:#f9fafb;z-index:3}
table.matrix thead tr:first-child th{height:28px;white-space:nowrap}
table.matrix thead tr:nth-child(2) th{top:28px}
table.matrix thead th.rule{left:0;z-index:5;vertical-align:bottom}
table.matrix th.scen{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;
padding:6px 2px;font-weight:600}
table.matrix tr.group th{background:#f3f4f6;position:sticky;left:0;font-size:12px;
text-transform:uppercase;letter-spacing:.05em}
td.c{text-align:center;vertical-align:middle;padding:0;min-width:26px;height:24px;font-weight:700}
td.c.pass{background:var(--pass-bg);color:var(--pass)}td.c.fail{background:var(--fail-bg);
color:var(--fail)}td.c.warn{background:var(--warn-bg);color:var(--warn)}
td.c.waived{background:var(--waived-bg);color:var(--waived)}td.c.skip{background:var(--skip-bg);
color:var(--skip)}td.c.na{background:#fff}
td.c details{position:relative}
td.c summary{cursor:pointer;list-style:none;padding:3px 0}
td.c summary::-webkit-details-marker{display:none}
td.c .pop{position:absolute;z-index:10;left:0;top:24px;width:34rem;max-width:70vw;
background:#fff;color:var(--ink);font-weight:400;text-align:left;border:1px solid #9ca3af;
border-radius:6px;box-shadow:0 8px 24px rgba(0,0,0,.18);padding:8px 10px;max-height:60vh;
overflow:auto}
td.c.right .pop{left:auto;right:0}
#only-findings:checked~.matrix-wrap tr.clean{display:none}
table.matrix .api-start{border-left:2px solid #9ca3af}
.legend span{margin-right:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px}
.chart-box{background:#fff;border:1px solid var(--line);border-radius:8px;padding:8px}
svg.chart{width:100%;height:auto;display:block}
footer{color:var(--soft);font-size:12px;text-align:center;padding:24px}
"""


def _e(value: Any) -> str:
    return escape(redact(str(value)), quote=True)


def _pill(outcome: str) -> str:
    return f'<span class="pill {outcome}">{_WORD[outcome]}</span>'


def _scenario_order(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The scenarios that ran, in the suite's order (unknown ones after)."""
    known = {s.id: i for i, s in enumerate(SCENARIOS)}
    ran = list(report.get("scenarios") or [])
    seen = {s["id"] for s in ran}
    for r in report["rules"]:  # a report without scenario records (older writer)
        for s in r["scenarios"]:
            if s["scenario"] not in seen:
                seen.add(s["scenario"])
                api, _, name = s["scenario"].partition(":")
                ran.append({"id": s["scenario"], "api": api, "name": name, "title": name})
    return sorted(ran, key=lambda s: known.get(s["id"], len(known)))


def _header(report: Mapping[str, Any]) -> str:
    s = report["summary"]
    verdict = report["verdict"]
    target = report.get("target") or {}
    if verdict == "pass":
        line = f"Every MUST rule passed ({s['rules']} rules checked)"
    elif verdict == "fail":
        line = f"{s['must_failed']} MUST rule(s) failed"
        if s["should_warned"] and report.get("options", {}).get("strict"):
            line += f", {s['should_warned']} SHOULD rule(s) warned (--strict)"
    elif verdict == "interrupted":
        line = "Interrupted before its end: nothing below speaks for what was not checked"
    else:
        line = report.get("error") or "The run did not complete"
    run = report.get("run") or {}
    apis = ", ".join(API_NAMES.get(a, a) for a in target.get("apis") or [])
    meta = [
        f"<code>{_e(target.get('base_url', '?'))}</code>",
        f"model <code>{_e(target.get('model', '?'))}</code>",
        _e(apis),
        _e(report.get("created", "")),
    ]
    if isinstance(run.get("duration_s"), int | float):
        meta.append(f"{run['duration_s']:.1f} s")
    meta.append(f"streamproof {_e(report['suite']['version'])}")
    label = VERDICT_LABELS.get(verdict, verdict).split(" ", 1)[-1]
    setup = report.get("setup") or {}
    notes = "".join(f'<p class="setup">{_e(name)}: {_e(text)}</p>' for name, text in setup.items())
    return (
        f'<header class="verdict v-{_e(verdict)}" id="verdict" data-verdict="{_e(verdict)}">'
        f'<div class="badge">{_e(label)}</div><div><h1>{_e(line)}</h1>'
        f"<p>{' · '.join(meta)}</p>{notes}</div></header>"
    )


def _tiles(report: Mapping[str, Any]) -> str:
    s = report["summary"]
    tiles = [
        ("", s["rules"], "rules"),
        ("fail" if s["must_failed"] else "", s["must_failed"], "MUST failed"),
        ("warn" if s["should_warned"] else "", s["should_warned"], "SHOULD warned"),
        ("waived" if s.get("waived") else "", s.get("waived", 0), "waived"),
        ("", s["pass"], "passed"),
        ("", s["skip"], "skipped (no occasion)"),
        ("", sum((s.get("checks") or {}).values()), "checks (rule × scenario)"),
    ]
    cells = "".join(
        f'<div class="tile {cls}"><b>{value}</b><span>{label}</span></div>'
        for cls, value, label in tiles
    )
    rows = []
    for level in LEVELS:
        c = s.get("by_level", {}).get(level, {})
        if not sum(c.values()):
            continue
        rows.append(
            f"<tr><th>{level}</th>"
            + "".join(
                f'<td class="n">{c.get(k, 0) or "·"}</td>'
                for k in ("pass", "fail", "warn", "waived", "skip")
            )
            + "</tr>"
        )
    head = "".join(f'<th class="n">{k}</th>' for k in ("pass", "fail", "warn", "waived", "skip"))
    table = f'<table class="levels"><tr><th>level</th>{head}</tr>{"".join(rows)}</table>'
    return f'<section class="tiles">{cells}</section><h2>Per level</h2>{table}'


def _scenario_finding(s: Mapping[str, Any], scen_info: Mapping[str, Any] | None) -> str:
    parts = [f'<div class="sc">{_pill(s["outcome"])} <b>{_e(s["scenario"])}</b>']
    if s.get("event") is not None:
        parts.append(f' <span class="muted">event #{_e(s["event"])}</span>')
    parts.append(f"<div>{_e(short_message(s.get('message'), 2000))}</div>")
    if s.get("excerpt"):
        parts.append(f"<pre>{_e(s['excerpt'])}</pre>")
    if scen_info and scen_info.get("reproduce"):
        parts.append(
            "<details><summary>request, headers and a command to reproduce it</summary>"
            f"<pre>{_e(scen_info.get('headers') or '')}</pre>"
            f"<pre>{_e(scen_info['reproduce'])}</pre></details>"
        )
    parts.append("</div>")
    return "".join(parts)


def _findings(report: Mapping[str, Any], scenarios: Mapping[str, Mapping[str, Any]]) -> str:
    out = ['<h2 id="findings">Findings</h2>']
    shown = 0
    for outcome, heading in (
        ("fail", "Failed"),
        ("warn", "Warned (SHOULD)"),
        ("waived", "Waived (known deviations)"),
    ):
        rules = [r for r in report["rules"] if r["outcome"] == outcome]
        if not rules:
            continue
        out.append(f"<h3>{heading} ({len(rules)})</h3>")
        for r in rules:
            shown += 1
            bad = [s for s in r["scenarios"] if s["outcome"] in ("fail", "warn", "waived")]
            names = ", ".join(s["scenario"] for s in bad)
            body = []
            if r.get("waiver"):
                body.append(f"<p><b>Waived:</b> {_e(r['waiver']['reason'])}</p>")
            source = _e(r["source"])
            if r.get("source_url"):
                source = f'<a href="{_e(r["source_url"])}">{source}</a>'
            body.append(f'<p class="muted">Source: {source}</p>')
            body += [_scenario_finding(s, scenarios.get(s["scenario"])) for s in bad]
            out.append(
                f'<details class="finding {outcome}" id="rule-{_e(r["id"])}" '
                f'data-rule="{_e(r["id"])}"><summary>{_pill(outcome)} '
                f'<span class="lvl">{r["level"]}</span> <code>{_e(r["id"])}</code> — '
                f'{_e(r["title"])} <span class="muted">({_e(names)})</span></summary>'
                f'<div class="body">{"".join(body)}</div></details>'
            )
    if not shown:
        out.append("<p>No rule failed, warned or was waived.</p>")
    stale = [r["id"] for r in report["rules"] if (r.get("waiver") or {}).get("stale")]
    if stale:
        out.append(
            "<p class='muted'>Stale waivers (the rule passes now; remove them): "
            + ", ".join(f"<code>{_e(i)}</code>" for i in stale)
            + "</p>"
        )
    return "".join(out)


def _cell(rule: Mapping[str, Any], s: Mapping[str, Any] | None, right: bool, edge: bool) -> str:
    start = " api-start" if edge else ""
    if s is None:
        return f'<td class="c na{start}"></td>'
    outcome = s["outcome"]
    cls = f"c {outcome}{start}" + (" right" if right else "")
    data = f'data-outcome="{outcome}" data-scenario="{_e(s["scenario"])}"'
    if outcome in ("fail", "warn", "waived") or (outcome == "pass" and s.get("excerpt")):
        pop = [f"<b>{_e(rule['id'])}</b> in <b>{_e(s['scenario'])}</b>"]
        pop.append(f"<div>{_e(short_message(s.get('message'), 1000))}</div>")
        if s.get("excerpt"):
            pop.append(f"<pre>{_e(s['excerpt'])}</pre>")
        return (
            f'<td class="{cls}" {data}><details><summary title="{_e(outcome)}">'
            f'{_GLYPH[outcome]}</summary><div class="pop">{"".join(pop)}</div></details></td>'
        )
    title = _e(short_message(s.get("message"), 300) or outcome)
    return f'<td class="{cls}" {data} title="{title}">{_GLYPH[outcome]}</td>'


def _matrix(report: Mapping[str, Any], columns: Sequence[Mapping[str, Any]]) -> str:
    edges = {i for i, c in enumerate(columns) if i == 0 or columns[i - 1]["api"] != c["api"]}
    apis: list[tuple[str, int]] = []
    for c in columns:
        if apis and apis[-1][0] == c["api"]:
            apis[-1] = (c["api"], apis[-1][1] + 1)
        else:
            apis.append((c["api"], 1))
    head1 = '<tr><th class="rule" rowspan="2">rule</th>' + "".join(
        f'<th class="api-start" colspan="{n}">{_e(API_NAMES.get(api, api))}</th>' for api, n in apis
    )
    head2 = "<tr>" + "".join(
        f'<th class="scen{" api-start" if i in edges else ""}" '
        f'title="{_e(c.get("title", ""))}">{_e(c["name"])}</th>'
        for i, c in enumerate(columns)
    )
    ids = [c["id"] for c in columns]
    by_group: dict[str, list[Mapping[str, Any]]] = {}
    for r in report["rules"]:
        by_group.setdefault(r["group"], []).append(r)
    order = [g for g in GROUP_ORDER if g in by_group] + sorted(set(by_group) - set(GROUP_ORDER))
    rows = []
    for group in order:
        rules = by_group[group]
        clean = all(r["outcome"] in ("pass", "skip") for r in rules)
        rows.append(
            f'<tr class="group{" clean" if clean else ""}"><th colspan="{len(ids) + 1}">'
            f"{_e(GROUP_NAMES.get(group, group))}</th></tr>"
        )
        for r in rules:
            per = {s["scenario"]: s for s in r["scenarios"]}
            cells = "".join(
                _cell(r, per.get(sid), i >= 8 and i >= len(ids) - 8, i in edges)
                for i, sid in enumerate(ids)
            )
            cls = "clean" if r["outcome"] in ("pass", "skip") else r["outcome"]
            rows.append(
                f'<tr class="{cls}" data-rule="{_e(r["id"])}" data-outcome="{r["outcome"]}">'
                f'<th class="rule" title="{_e(r["title"])}"><span class="lvl">{r["level"]}</span> '
                f"<code>{_e(r['id'])}</code></th>{cells}</tr>"
            )
    legend = " ".join(
        f"<span>{_pill(o)} {_GLYPH[o]}</span>" for o in ("pass", "fail", "warn", "waived", "skip")
    )
    return (
        '<h2 id="matrix">Rule matrix</h2>'
        f'<p class="legend">{legend}<span class="muted">blank: not checked in that scenario · '
        "click a coloured cell for the finding</span></p>"
        '<input type="checkbox" id="only-findings"> <label for="only-findings">show only rules '
        'with findings</label><div class="matrix-wrap"><table class="matrix" id="rule-matrix">'
        f"<thead>{head1}</tr>{head2}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _num(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–"
    return f"{value:,.{digits}f}"


def _load(load: Mapping[str, Any], data: LoadData | None) -> str:
    s = load.get("summary") or {}
    req = s.get("requests") or {}
    good = s.get("goodput")
    lag = s.get(CLIENT_LAG.key)
    tokens = s.get(OUTPUT_TOKENS.key) or {}
    tiles = [
        (req.get("completed", "–"), "requests completed"),
        (req.get("failed", "–"), "requests failed"),
        (_num(OUTPUT_TOKENS_PER_S.read(s)), OUTPUT_TOKENS_PER_S.label),
        (_num(REQUESTS_PER_S.read(s), 2), REQUESTS_PER_S.label),
        (_num(ACHIEVED_CONCURRENCY.read(s), 2), ACHIEVED_CONCURRENCY.label),
        (
            f"{good['fraction']:.0%}" if good else "–",
            f"{GOODPUT.label} ({_num(good['requests_per_s'], 2)} {GOODPUT.unit})"
            if good
            else f"{GOODPUT.label} (no SLO)",
        ),
    ]
    if lag:
        tiles.append((_num(lag.get("p99"), 2), f"{CLIENT_LAG.label} p99 {CLIENT_LAG.unit}"))
    out = [
        '<h2 id="load">Load</h2>',
        f"<p>{_e(s.get('api', '?'))} at <code>{_e(s.get('host', '?'))}</code> · "
        f"{_e(s.get('users', '?'))} users · {_num(s.get('duration_s'))} s · output tokens "
        f"from {_e(tokens.get('source') or '–')} ({_e(tokens.get('total', '–'))})</p>",
        '<section class="tiles">'
        + "".join(f'<div class="tile"><b>{v}</b><span>{_e(k)}</span></div>' for v, k in tiles)
        + "</section>",
    ]
    if good:
        slo = ", ".join(
            f"{_e(label_of(k))} ≤ {_num(v, 0)} ms" for k, v in (good.get("slo") or {}).items()
        )
        out.append(f"<p class='muted'>Goodput SLO: {slo}</p>")
    if lag and lag.get("warning"):
        out.append(f"<p><b>Measurement warning:</b> {_e(lag['warning'])}</p>")
    head = "".join(f'<th class="n">{label}</th>' for _, label in _PCTS)
    rows = []
    for d in LATENCIES:
        p = s.get(d.key)
        if isinstance(p, dict):
            cells = "".join(f'<td class="n">{_num(p.get(k), 2)}</td>' for k, _ in _PCTS)
            rows.append(f'<tr><th title="{_e(d.title)}">{d.label}</th>{cells}</tr>')
    meaning = " · ".join(f"{d.label}: {_e(d.definition)}" for d in LATENCIES)
    out.append(
        f'<h3>Latency percentiles (ms)</h3><table class="pcts" id="load-percentiles">'
        f"<tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"
        f"<p class='muted'>{meaning}. t_send: the request written; N: output tokens. "
        "Percentiles of raw samples.</p>"
    )
    by_error = req.get("by_error") or {}
    violations = violations_of(s)
    if by_error or violations:
        items = [f"<li>{_e(k)}: {_e(v)}</li>" for k, v in sorted(by_error.items())]
        items += [
            f"<li>{_e(level)} rule <code>{_e(k)}</code> broken in {_e(n)} stream(s)</li>"
            for k, level, n in violations
        ]
        out.append(f"<h3>Failures and deviations under load</h3><ul>{''.join(items)}</ul>")
    out.append(_charts(data))
    files = load.get("files") or {}
    if files:
        links = " · ".join(f'<a href="{_e(v)}">{_e(v)}</a>' for v in files.values())
        out.append(f"<p class='muted'>Files: {links}</p>")
    return "".join(out)


def _charts(data: LoadData | None) -> str:
    if data is None or ("requests" not in data.files and not data.tokens_per_s):
        return (
            "<p class='muted' id='no-charts'>No per-request records (requests.jsonl): "
            "no charts.</p>"
        )
    try:
        from .charts import cdf_chart, histogram_chart, series_chart
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return "<p class='muted'>Charts need matplotlib (pip install matplotlib).</p>"
    ttft, ttfo = data.samples[TTFT.name], data.samples[TTFO.name]
    svgs = [
        cdf_chart(
            {TTFT.label: ttft, TTFO.label: ttfo if ttfo != ttft else []},
            title=f"{TTFT.title.capitalize()} (CDF)",
            xlabel="ms after the request was sent",
            salt=TTFT.name,
        ),
        histogram_chart(
            data.samples[ITL.name],
            title=f"{ITL.title.capitalize()} (histogram)",
            xlabel="ms between content events",
            salt=ITL.name,
        ),
        series_chart(
            data.tokens_per_s,
            title="Output tokens per second",
            ylabel=OUTPUT_TOKENS_PER_S.unit,
            salt="tps",
        ),
    ]
    boxes = [f'<div class="chart-box">{svg}</div>' for svg in svgs if svg]
    if not boxes:
        return "<p class='muted'>No successful request to chart.</p>"
    charts = "".join(boxes)
    return (
        f'<h3>Distributions and throughput</h3><div class="charts" id="load-charts">{charts}</div>'
    )


def _scenarios(columns: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for c in columns:
        if "kind" not in c:
            continue
        note = c.get("skipped") or c.get("error") or ""
        evidence = ""
        if c.get("reproduce"):
            evidence = (
                f"<details><summary>headers · curl</summary><pre>{_e(c.get('headers') or '')}"
                f"</pre><pre>{_e(c['reproduce'])}</pre></details>"
            )
        rows.append(
            f"<tr><td><code>{_e(c['id'])}</code></td><td>{_e(c['title'])}</td>"
            f'<td class="n">{_e(c.get("status") if c.get("status") is not None else "–")}</td>'
            f'<td class="n">{_e(c.get("events", 0))}</td>'
            f'<td class="n">{_num(c.get("duration_ms"))}</td><td>{_e(note)}{evidence}</td></tr>'
        )
    if not rows:
        return ""
    return (
        '<h2 id="scenarios">Requests sent</h2><table class="scenarios"><tr><th>scenario</th>'
        '<th>what</th><th class="n">status</th><th class="n">events</th><th class="n">ms</th>'
        f"<th>notes</th></tr>{''.join(rows)}</table>"
    )


def render_html(report: Mapping[str, Any], load: LoadData | None = None) -> str:
    """The whole page as one string (UTF-8, no external resource)."""
    columns = _scenario_order(report)
    scen = {c["id"]: c for c in columns}
    verdict = VERDICT_LABELS.get(report["verdict"], report["verdict"]).split(" ", 1)[-1]
    target = (report.get("target") or {}).get("base_url", "")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>streamproof: {_e(verdict)} · {_e(target)}</title>",
        f"<style>{_CSS}</style></head><body>",
        _header(report),
        "<main>",
        _tiles(report),
        _findings(report, scen),
        _matrix(report, columns),
    ]
    if report.get("load"):
        parts.append(f'<section id="load-section">{_load(report["load"], load)}</section>')
    parts += [
        _scenarios(columns),
        "</main><footer>streamproof "
        f"{_e(report['suite']['version'])} · machine-readable: "
        "<a href='compliance.json'>compliance.json</a> · <a href='junit.xml'>junit.xml</a> · "
        "<a href='compliance.md'>compliance.md</a></footer></body></html>",
    ]
    return redact("".join(parts))
