"""The load metrics are defined once (``streamproof.load.metric_defs``): every list of them —
the summary's keys, the aggregate's samples, a request's line, Locust's rows, the SLO options,
the web UI, the HTML and Markdown reports, ``streamproof diff``, the report schema and the
README — is derived from the definitions, and a sample's seed depends on its metric's name
only."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from streamproof.load import metric_defs, metrics
from streamproof.load.metric_defs import (
    DEFINITIONS,
    DIFF,
    LATENCIES,
    LIVE,
    RECORD,
    SAMPLED,
    SLO,
    THROUGHPUT,
    VALUE,
    Metric,
    markdown_table,
)
from streamproof.load.metrics import Aggregate, Reservoir, Slo
from streamproof.load.summary import SUMMARY_KEYS, RecordWriter, build_summary, format_table

ROOT = Path(__file__).resolve().parents[1]


def rec(**kw):
    base = {
        "api": "openai", "ok": True, "completed": True, "aborted": False, "retried": False,
        "error": None, "violations": {}, "wall": 1000.0, "sched_us": 1_500, "ttfb_us": 5_000,
        "content_us": [100_000, 110_000, 125_000], "visible_us": 110_000, "end_us": 130_000,
        "last_us": 130_000, "dur_us": 131_000, "tokens": 3, "source": "usage",
    }  # fmt: skip
    base.update(kw)
    return base


def test_definitions_are_whole_and_unique() -> None:
    assert len({d.name for d in DEFINITIONS}) == len(DEFINITIONS)
    assert len({d.key for d in DEFINITIONS}) == len(DEFINITIONS)
    assert len({d.label for d in DEFINITIONS}) == len(DEFINITIONS)
    for d in DEFINITIONS:
        assert d.unit and d.title and d.definition, d
        if d.sampled:  # percentiles
            assert VALUE not in d.diff, d
        else:  # one figure
            assert set(d.diff) <= {VALUE}, d
    assert [d.label for d in LATENCIES] == ["TTFB", "TTFT", "TTFO", "TPOT", "ITL", "E2E"]
    assert all(d.unit == "ms" and d.lower_is_better for d in SAMPLED)


# -- the load engine ---------------------------------------------------------------------------


def _summary() -> dict:
    agg = Aggregate(slo=Slo(ttft_ms=500.0))
    agg.add(rec())
    agg.lag.add_ns([200_000, 300_000])
    return build_summary(agg, api="openai", host="http://127.0.0.1:1/v1", users=1)


def test_summary_keys_and_table_rows_are_the_definitions() -> None:
    s = _summary()
    assert tuple(s) == SUMMARY_KEYS
    percentile_keys = [k for k, v in s.items() if isinstance(v, dict) and "p999" in v]
    assert percentile_keys == [d.key for d in LATENCIES]
    assert list(s["throughput"]) == [d.path[-1] for d in THROUGHPUT]
    for d in DEFINITIONS:  # every metric with a place in the summary is there
        if d.path and d.path[0] != "goodput":
            assert d.read(s) is not None, d
    assert metric_defs.GOODPUT.read(s) is not None
    assert list(s["goodput"]["slo"]) == ["ttft_ms"]
    table = format_table(s).splitlines()
    first = next(i for i, line in enumerate(table) if line.startswith("metric (ms)")) + 1
    rows = [line.split()[0] for line in table[first : first + len(LATENCIES)]]
    assert rows == [d.label for d in LATENCIES]
    assert "goodput (TTFT <= 500 ms)" in format_table(s)


def test_aggregate_samples_throughput_and_records_are_the_definitions(tmp_path) -> None:
    agg = Aggregate()
    assert list(agg.samples) == [d.name for d in SAMPLED]
    assert list(agg.throughput()) == [d.path[-1] for d in THROUGHPUT]  # an empty window
    m = agg.add(rec())
    assert list(agg.throughput()) == [d.path[-1] for d in THROUGHPUT]
    assert {d.name: agg.samples[d.name].count for d in SAMPLED} == {
        "ttfb": 1, "ttft": 1, "ttfo": 1, "tpot": 1, "itl": 2, "e2e": 1, "sched": 1,
    }  # fmt: skip
    writer = RecordWriter(tmp_path / "requests.jsonl")
    writer.write(rec(), m)
    writer.close()
    line = json.loads((tmp_path / "requests.jsonl").read_text("utf-8"))
    assert list(line["metrics"]) == [d.key for d in RECORD]
    assert line["metrics"]["ttft_ms"] == 100.0 and line["metrics"]["tok_s"] == 3 / 0.13


def test_slo_fields_and_options_are_the_definitions() -> None:
    assert [f.name for f in dataclasses.fields(Slo)] == [d.key for d in SLO]
    assert Slo(tpot_ms=5.0).as_dict() == {"tpot_ms": 5.0}
    from streamproof.load.args import Settings, add_locust_arguments
    from streamproof.load.cli import _optional, add_arguments

    class Parser:  # Locust's parser: add_argument takes is_secret / include_in_web_ui
        def __init__(self) -> None:
            self.options: list[str] = []

        def add_argument(self, *names: str, **_: object) -> None:
            self.options += names

    locust_parser = Parser()
    add_locust_arguments(locust_parser)
    slo_options = [o for o in locust_parser.options if o.startswith("--slo-")]
    assert slo_options == [f"--slo-{d.name}-ms" for d in SLO]
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([f"--slo-{d.name}-ms=7" for d in SLO])
    passed = _optional(args)
    assert [o for o in passed[::2] if o.startswith("--slo-")] == slo_options
    options = argparse.Namespace(**{f"slo_{d.key}": "7" for d in SLO})
    assert Settings.from_options(options).slo.as_dict() == {d.key: 7.0 for d in SLO}


# -- seeds -------------------------------------------------------------------------------------


def test_a_sample_seed_depends_on_the_metric_name_not_its_position(monkeypatch) -> None:
    assert metric_defs.TTFT.seed == zlib.crc32(b"ttft")  # stable across processes and versions
    assert dataclasses.replace(metric_defs.TTFT, label="X", unit="s").seed == metric_defs.TTFT.seed
    values = [float(i) for i in range(5000)]

    def kept(defs: tuple[Metric, ...]) -> dict[str, list[float]]:
        monkeypatch.setattr(metrics, "SAMPLED", defs)
        agg = Aggregate(cap=50)
        for d in defs:
            agg.samples[d.name].extend(values)
        return {d.name: list(agg.samples[d.name].values) for d in defs}

    before = kept(SAMPLED)
    # another order, and a new metric in front of all the others
    new = Metric("new", "NEW", "ms", "a new metric", "new − t_send", True, sampled=True)
    after = kept((new, *reversed(SAMPLED)))
    assert {k: after[k] for k in before} == before
    # what each name's seed alone gives
    for d in SAMPLED:
        alone = Reservoir(cap=50, seed=zlib.crc32(d.name.encode()))
        alone.extend(values)
        assert before[d.name] == list(alone.values), d.name
    assert before["ttft"] != before["itl"]  # the seeds differ: so do the samples


# -- Locust's rows and the web UI (Locust monkey-patches a process: a child runs them) -------

_LOCUST_CHECK = """
import json
import sys
from types import SimpleNamespace
from locust.stats import RequestStats
from streamproof.load import webui
from streamproof.load.metrics import Aggregate
from streamproof.load.users import ABORT, ROWS, StreamingUser

rec = json.loads(sys.argv[1])
stats, fired = RequestStats(), []
events = SimpleNamespace(request=SimpleNamespace(fire=lambda **kw: fired.append(kw["name"])))
user = SimpleNamespace(environment=SimpleNamespace(stats=stats, events=events), interrupt=False)
StreamingUser._report(user, rec, None)
agg = Aggregate()
agg.add(rec)
rt = SimpleNamespace(collector=SimpleNamespace(agg=agg))
print(json.dumps({
    "rows": sorted({name for name, _ in stats.entries} | set(fired)),
    "ROWS": list(ROWS),
    "ABORT": ABORT,
    "table": [row["metric"] for row in webui._table(rt)],
    "metrics": webui.metrics(),
}))
"""


def test_locust_rows_and_web_ui_are_the_definitions() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _LOCUST_CHECK, json.dumps(rec())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["ROWS"] == [d.label for d in SAMPLED]
    assert out["rows"] == sorted(d.label for d in SAMPLED)  # a completed open-loop request
    assert out["ABORT"] not in out["ROWS"]
    assert out["table"][: len(LATENCIES)] == [f"{d.label} ({d.unit})" for d in LATENCIES]
    assert out["table"][len(LATENCIES)] == metric_defs.OUTPUT_TOKENS_PER_S.label
    assert [m["name"] for m in out["metrics"]["live"]] == [d.name for d in LIVE]
    assert out["metrics"]["live"][0] == metric_defs.TTFT.as_json()


def test_the_chart_page_has_no_list_of_metrics() -> None:
    page = (ROOT / "src/streamproof/load/static/streamproof.html").read_text("utf-8")
    script = page[page.index("<script>") :]
    for d in SAMPLED:
        assert not re.search(rf"\b{re.escape(d.name)}\b", script, re.IGNORECASE), d.name
    assert 'fetch("metrics"' in script


# -- reports -----------------------------------------------------------------------------------


class _Rows(HTMLParser):
    """The row headers of the table with id ``load-percentiles``."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = self.header = False
        self.rows: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.inside = ("id", "load-percentiles") in attrs
        elif tag == "th" and self.inside:
            self.header = True
            self.rows.append("")

    def handle_endtag(self, tag):
        if tag == "th":
            self.header = False
        elif tag == "table":
            self.inside = False

    def handle_data(self, data):
        if self.header:
            self.rows[-1] += data


def test_html_and_markdown_columns_are_the_definitions() -> None:
    from streamproof.reporting.html import _load
    from streamproof.reporting.markdown import _load_lines

    page = _load({"summary": _summary()}, None)
    parser = _Rows()
    parser.feed(page)
    assert parser.rows[1 + 8 :] == [d.label for d in LATENCIES]  # after the percentiles' heads
    for d in LATENCIES:
        assert f"{d.label}: {d.definition}" in page.replace("&#x27;", "'")
    for d in THROUGHPUT:
        assert f"<span>{d.label}</span>" in page
    md = "\n".join(_load_lines({"summary": _summary()}))
    assert "| TTFT p50 / p99 ms | ITL p50 / p99 ms | E2E p99 ms | output tok/s | goodput |" in md


def test_read_load_keeps_every_latency_with_the_engines_definitions(tmp_path) -> None:
    from streamproof.load.metrics import request_metrics
    from streamproof.reporting import load as reporting_load

    assert not hasattr(reporting_load, "LATENCY_METRICS")
    (tmp_path / "summary.json").write_text(json.dumps(_summary()), encoding="utf-8")
    lines = [rec(), rec(metrics={"ttft_ms": 99.0}), rec(content_us=["junk", 5], ttfb_us="x")]
    (tmp_path / "requests.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    data = reporting_load.read_load(tmp_path)
    assert data is not None and list(data.samples) == [d.name for d in LATENCIES]
    m = request_metrics(rec())
    assert data.ttft_ms == [m.ttft, 99.0, 0.005]  # stored figures win over the stamps
    assert data.itl_ms == m.itl * 2
    assert data.samples["ttfb"] == [m.ttfb, m.ttfb]  # a junk stamp is skipped


def _diff_report(load: dict) -> dict:
    return {"verdict": "pass", "rules": [], "scenarios": [], "load": {"summary": load}}


def test_diff_compares_the_metrics_the_definitions_name() -> None:
    from streamproof.reporting.diff import _METRICS, diff_reports

    assert [m[1] for m in _METRICS] == [d for d in DIFF for _ in d.diff]  # nothing else
    old = _summary()
    old["requests"].update(failed=1, total=10)
    old["violations"] = {"openai.done": {"level": "MUST", "requests": 1}}
    old["goodput"]["fraction"] = 0.5
    new = json.loads(json.dumps(old))
    for d in DIFF:  # every compared figure doubles (failures and violations too)
        if d.sampled:
            for stat in d.diff:
                old[d.key][stat], new[d.key][stat] = 100.0, 200.0
        elif d.path:  # (section, figure)
            new[d.path[0]][d.path[1]] = d.read(old) * 2
    new["requests"]["failed"] = 2
    new["violations"]["openai.done"]["requests"] = 2
    diff = diff_reports(_diff_report(old), _diff_report(new))
    expected = [
        d.label if stat == VALUE else f"{d.label} {stat} {d.unit}" for d in DIFF for stat in d.diff
    ]
    assert [m.name for m in diff.metrics] == expected
    compared = [d for d in DIFF for _ in d.diff]
    for change, d in zip(diff.metrics, compared, strict=True):
        assert change.kind == ("regressed" if d.lower_is_better else "improved"), change


# -- what cannot import Python: the schema, the README, the locustfile -------------------------


def test_report_schema_names_and_describes_the_definitions() -> None:
    schema = json.loads((ROOT / "schemas/report/compliance.schema.json").read_text("utf-8"))
    summary = schema["$defs"]["load"]["properties"]["summary"]["properties"]
    assert set(summary) == set(SUMMARY_KEYS)
    percentiles = [k for k, v in summary.items() if v.get("$ref") == "#/$defs/percentiles"]
    assert percentiles == [d.key for d in LATENCIES]
    for d in LATENCIES:
        assert summary[d.key]["description"] == d.describe()
    throughput = summary["throughput"]["properties"]
    assert list(throughput) == [d.path[-1] for d in THROUGHPUT]
    for d in THROUGHPUT:
        assert throughput[d.path[-1]]["description"] == d.describe()
    goodput = summary["goodput"]["oneOf"][1]["properties"]
    assert {metric_defs.GOODPUT.path[-1], metric_defs.GOODPUT_FRACTION.path[-1]} <= set(goodput)


def test_readme_table_is_the_definitions() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert markdown_table() in readme, "run: python -m streamproof.load.metric_defs"
    run = subprocess.run(
        [sys.executable, "-m", "streamproof.load.metric_defs"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.stdout.strip() == markdown_table()


def test_locustfile_names_the_rows() -> None:
    doc = ast.get_docstring(ast.parse((ROOT / "loadtests/locustfile.py").read_text("utf-8")))
    assert doc is not None
    rows = doc[doc.index("Rows in Locust's statistics") :]
    rows = rows[: rows.index("request type")]
    named = re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", rows)
    assert [n for n in named if n != "ABORT"] == [d.label for d in SAMPLED]


@pytest.mark.parametrize("d", DEFINITIONS, ids=lambda d: d.name)
def test_by_key_and_labels(d: Metric) -> None:
    assert metric_defs.by_key(d.key) is d
    assert metric_defs.label_of(d.key) == d.label
