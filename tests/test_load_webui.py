"""The web UI in a real headless browser: Locust with its UI against the reference server
(127.0.0.1, free ports), a short run started the way the UI starts one (POST /swarm), the
live charts page filling with points, the Streaming tab in Locust's own page and its link to
the charts, screenshots under ``reports/``. Without Chromium the tests fail with the command
that installs it: a browser test that is skipped proves nothing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from statistics import median

import pytest
from _load_support import LOCUSTFILE, ROOT, SECRET, free_port

from streamproof.server import ReferenceServer, Timing
from streamproof.server.send import EARLY_NS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "reports"
TIMING = Timing(ttft_ms=100, gap_ms=10, tokens_per_chunk=1)  # the chart bounds derive from it


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # 127.0.0.1 only
        return response.read()


def _wait_for(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, urllib.error.URLError):
            _get(url)
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture
def locust_ui(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: apt-get install -y chromium (.ci/run does)")
    import playwright.sync_api as playwright

    port = free_port()
    with ReferenceServer(api_key=SECRET) as srv:
        host = srv.url_for(timing=TIMING, stamps=True)
        cmd = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(port),
            "--host",
            host,
            "--max-tokens",
            "50",
            "--slo-ttft-ms",
            "150",
            "--start-jitter",
            "0.2",
            "--summary-json",
            str(tmp_path / "summary.json"),
        ]
        env = {**os.environ, "STREAMPROOF_API_KEY": SECRET}
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for(base + "/", time.monotonic() + 30)
            yield playwright, base, host
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def test_live_charts_fill_in_a_browser(locust_ui, tmp_path) -> None:
    playwright, base, host = locust_ui
    form = urllib.parse.urlencode(
        {"user_count": 3, "spawn_rate": 3, "host": host, "run_time": "12s", "api": "openai"}
    ).encode()
    with urllib.request.urlopen(base + "/swarm", data=form, timeout=5) as response:
        assert json.loads(response.read())["success"]
    SHOTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base + "/streamproof/")
            page.wait_for_function("Number(document.body.dataset.points || 0) >= 3", timeout=20000)
            counts = page.evaluate(
                "Object.fromEntries(Object.entries(window.spCharts)"
                ".map(([k, c]) => [k, c.data[0].length]))"
            )
            assert all(n >= 3 for n in counts.values()), counts
            # each point is a percentile over the last 10 s. No TTFT sample can be under the
            # scripted TTFT (the server is never early, the clock starts before the request),
            # so no point can; how late (Chromium, Locust and the server share the cores) is
            # judged on the median point. Gaps: a stall makes one long gap and, the schedule
            # catching up, a burst of ~0 ms ones: the p50 is banded from above, the p90 below
            line = "window.spCharts.%s.data[%d].filter(v => v !== null)"
            ttft, itl = page.evaluate(line % ("ttft", 1)), page.evaluate(line % ("itl", 1))
            itl_p90 = page.evaluate(line % ("itl", 2))
            assert ttft and itl and itl_p90, (ttft, itl, itl_p90)
            floor = TIMING.ttft_ms - EARLY_NS / 1e6
            assert all(v >= floor for v in ttft), ttft
            assert median(ttft) < 2 * TIMING.ttft_ms, ttft
            assert median(itl) <= 2 * TIMING.gap_ms, itl
            assert median(itl_p90) >= TIMING.gap_ms / 2, itl_p90
            assert page.inner_text("#goodput") not in ("-", "no SLO")
            assert errors == []
            page.screenshot(path=str(SHOTS / "load-webui-charts.png"), full_page=True)
            # Locust's own page: the Streaming tab, fed through /stats/requests
            page.goto(base + "/?tab=streamproof")
            page.get_by_text("TTFT (ms)").wait_for(timeout=15000)
            page.screenshot(path=str(SHOTS / "load-webui-tab.png"), full_page=True)
            assert SECRET not in page.content()
            # the tab's last row is a link to the live charts: follow it
            link = page.locator("#streamproof-charts-link")
            link.wait_for(timeout=15000)
            assert link.inner_text() == "live charts: /streamproof/"
            link.click()
            page.wait_for_url("**/streamproof/", timeout=15000)
            page.wait_for_function("Number(document.body.dataset.points || 0) >= 1", timeout=20000)
            assert errors == []
        finally:
            browser.close()
    assert SECRET.encode() not in _get(base + "/")
