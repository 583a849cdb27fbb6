"""The web UI in a real headless browser: Locust with its UI against the reference server
(127.0.0.1, free ports), a short run started the way the UI starts one (POST /swarm), the
live charts page filling with points, the Streaming tab in Locust's own page, screenshots
under ``reports/``. Skipped only when Chromium is not installed."""

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

import pytest
from _load_support import LOCUSTFILE, ROOT, SECRET, free_port

from streamproof.server import ReferenceServer, Timing

CHROMIUM = "/usr/bin/chromium"
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

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) or shutil.which("chromium")),
    reason="Chromium is not installed (apt-get install -y chromium)",
)


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
    playwright = pytest.importorskip("playwright.sync_api")
    port = free_port()
    with ReferenceServer(api_key=SECRET) as srv:
        host = srv.url_for(timing=Timing(100, 10, 1), stamps=True)
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
            ttft = page.evaluate("window.spCharts.ttft.data[1].filter(v => v !== null)")
            assert ttft and all(90 <= v <= 130 for v in ttft), ttft
            assert page.inner_text("#goodput") not in ("-", "no SLO")
            assert errors == []
            page.screenshot(path=str(SHOTS / "load-webui-charts.png"), full_page=True)
            # Locust's own page: the Streaming tab, fed through /stats/requests
            page.goto(base + "/?tab=streamproof")
            page.get_by_text("TTFT (ms)").wait_for(timeout=15000)
            page.screenshot(path=str(SHOTS / "load-webui-tab.png"), full_page=True)
            assert SECRET not in page.content()
        finally:
            browser.close()
    assert SECRET.encode() not in _get(base + "/")
