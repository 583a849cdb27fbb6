"""``index.html`` in a real headless browser (Debian's Chromium driven by Playwright): it opens
from disk without a single network request, shows the verdict, the rule matrix with the
faults' failures (each expandable to its message and excerpt), and — with a load run's files
beside it — the percentile table and the charts, rendered. A screenshot is saved."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streamproof.reporting import write_reports
from streamproof.reporting.compliance import read_report, validate_report
from streamproof.reporting.load import load_section, read_load
from streamproof.rules import rule
from streamproof.server import FAULTS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
FAULT_PAIR = ("missing-done", "role-every-chunk")
EXPECTED = {r for f in FAULT_PAIR for r in FAULTS[f].rules if rule(r).level == "MUST"}


def write_load_fixture(directory: Path, n: int = 60, seed: int = 7) -> dict:
    """A small load run by hand, in the shape the load engine writes: summary.json,
    requests.jsonl (one record per request, stamps in µs after the send) and
    tokens_per_s.json."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    wall0 = 1_700_000_000.0
    records = []
    buckets: dict[int, float] = {}
    for i in range(n):
        ttft = int(rng.gauss(120_000, 15_000))
        content = [ttft + k * int(rng.gauss(10_000, 1_500)) for k in range(32)]
        content = sorted(content)
        wall = wall0 + i * 0.15
        ok = i % 20 != 19
        records.append({
            "api": "openai", "ok": ok, "aborted": False, "status": 200 if ok else 503,
            "error": None if ok else "http.503", "detail": None, "violations": [],
            "wall": wall, "sched_us": None, "ttfb_us": 2_000, "content_us": content if ok else [],
            "visible_us": ttft if ok else None, "end_us": content[-1] + 500 if ok else None,
            "last_us": content[-1] + 500, "dur_us": content[-1] + 900, "tokens": 32 if ok else 0,
            "source": "usage",
            "metrics": {"ttft_ms": ttft / 1000, "e2e_ms": (content[-1] + 500) / 1000}
            if ok else None,
        })  # fmt: skip
        if ok:
            for us in content:
                second = int(wall + us / 1e6)
                buckets[second] = buckets.get(second, 0) + 1
    with (directory / "requests.jsonl").open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    pct = {"p50": 120.0, "p90": 140.0, "p95": 146.0, "p99": 155.0, "p999": 158.0,
           "min": 85.0, "max": 160.0, "mean": 121.0}  # fmt: skip
    summary = {
        "api": "openai", "host": "http://127.0.0.1:9/v1", "embedded": True, "users": 4,
        "duration_s": 9.5,
        "requests": {"completed": n - n // 20, "failed": n // 20,
                     "by_error": {"http.503": n // 20}},
        "ttfb_ms": {k: v / 60 for k, v in pct.items()}, "ttft_ms": pct, "ttfo_ms": pct,
        "tpot_ms": {k: v / 12 for k, v in pct.items()},
        "itl_ms": {k: v / 12 for k, v in pct.items()},
        "e2e_ms": {k: v * 3 for k, v in pct.items()},
        "output_tokens": {"total": 32 * (n - n // 20), "source": "usage"},
        "throughput": {"output_tokens_per_s": 180.5, "requests_per_s": 5.9,
                       "achieved_concurrency": 3.8},
        "goodput": {"slo": {"ttft_ms": 150.0}, "requests_per_s": 5.1, "fraction": 0.86},
        "client_lag_ms": {"p50": 0.2, "p99": 1.5, "max": 4.0, "warning": None},
        "violations": {},
    }  # fmt: skip
    (directory / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    series = [[s, buckets[s]] for s in sorted(buckets)]
    (directory / "tokens_per_s.json").write_text(
        json.dumps({"bucket_s": 1, "series": series}), encoding="utf-8"
    )
    return summary


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A faulty run's reports, merged with a hand-written load run."""
    cwd = tmp_path_factory.mktemp("html")
    done = subprocess.run(
        [sys.executable, "-m", "streamproof", "run", "--api", "openai", "--scenario", "plain",
         "--fault", ",".join(FAULT_PAIR), "--no-load"],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    out = cwd / "reports"
    write_load_fixture(out / "load")
    merged = subprocess.run(
        [sys.executable, "-m", "streamproof", "report", "--report-dir", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    return out


def test_merged_report_has_the_load_section(report_dir: Path) -> None:
    report = read_report(report_dir / "compliance.json")
    assert validate_report(report) == []
    assert report["load"]["summary"]["users"] == 4
    assert report["load"]["files"]["requests"] == "load/requests.jsonl"
    md = (report_dir / "compliance.md").read_text("utf-8")
    assert "### Load: 4 users" in md and "86%" in md


def test_html_is_self_contained(report_dir: Path) -> None:
    html = (report_dir / "index.html").read_text("utf-8")
    for needle in ("<script", "<link", "http://cdn", "https://cdn", "@import", "url(http"):
        assert needle not in html
    assert html.count("<svg") == 3
    assert len(html.encode()) < 1_000_000


def test_report_in_a_real_browser(report_dir: Path, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is not installed: apt-get install -y chromium (.ci/run does)"
        )
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.on("request", lambda r: outside.append(r.url) if r.url[:5] != "file:" else None)
            page.goto((report_dir / "index.html").as_uri())
            verdict = page.locator("#verdict")
            assert verdict.get_attribute("data-verdict") == "fail"
            assert "FAIL" in verdict.inner_text()
            assert f"{len(EXPECTED)} MUST rule(s) failed" in verdict.inner_text()
            # the matrix: one failing cell per expected rule, nothing else failing
            failing = page.locator("#rule-matrix td.c.fail")
            rows = page.locator("#rule-matrix tr[data-outcome='fail']")
            assert {rows.nth(i).get_attribute("data-rule") for i in range(rows.count())} == EXPECTED
            assert failing.count() == len(EXPECTED)
            assert page.locator("#rule-matrix td.c.pass").count() > 20
            # a failure opens to its message and event excerpt
            cell = page.locator("#rule-matrix tr[data-rule='openai.role-once'] td.c.fail")
            pop = cell.locator(".pop")
            assert not pop.is_visible()
            cell.locator("summary").click()
            assert pop.is_visible() and "role repeated" in pop.inner_text()
            assert "> #" in pop.locator("pre").inner_text()
            finding = page.locator("details.finding[data-rule='openai.done']")
            finding.locator(":scope > summary").click()
            assert "[DONE]" in finding.inner_text()
            # load: table and three charts, drawn
            assert page.locator("#load-percentiles tr").count() == 7
            charts = page.locator("#load-charts svg")
            assert charts.count() == 3
            for i in range(3):
                box = charts.nth(i).bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 120
                assert charts.nth(i).locator("path").count() > 10
            page.locator("#load-section").scroll_into_view_if_needed()
            shot = tmp_path / "index.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 50_000
        finally:
            browser.close()
    assert outside == []


def test_write_reports_without_load_files(tmp_path: Path) -> None:
    """A report whose load summary has no requests.jsonl beside it still renders (table,
    no charts), and tolerates missing keys."""
    summary = write_load_fixture(tmp_path / "load")
    (tmp_path / "load" / "requests.jsonl").unlink()
    (tmp_path / "load" / "tokens_per_s.json").unlink()
    del summary["goodput"], summary["client_lag_ms"]
    (tmp_path / "load" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    data = read_load(tmp_path / "load")
    assert data is not None and data.ttft_ms == []
    report = {
        "schema_version": 1,
        "suite": {"name": "streamproof", "version": "0"},
        "created": "2025-01-01T00:00:00+00:00",
        "verdict": "pass",
        "target": {"base_url": "http://x/v1", "model": "m", "apis": ["openai"]},
        "summary": {"rules": 0, "pass": 0, "fail": 0, "warn": 0, "waived": 0, "skip": 0,
                    "must_failed": 0, "should_warned": 0, "by_level": {}, "checks": {}},
        "rules": [],
        "load": load_section(data, tmp_path),
    }  # fmt: skip
    paths = write_reports(tmp_path, report, data)
    html = paths["html"].read_text("utf-8")
    assert 'id="load-percentiles"' in html and "<svg" not in html
    assert "id='no-charts'" in html
