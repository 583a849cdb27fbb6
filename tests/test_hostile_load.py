"""Under load, a hostile endpoint is counted, not fatal: each broken request is a failure of
its kind in summary.json, and the run keeps sending until its duration is over."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

USERS = 2
DURATION_S = 3
# fault -> the failure kind the load summary must count
CASES = {
    "reset": "transport.broken",
    "gzip-lie": "transport.broken",
    "html-502": "http.502",
    "stall-mid": "transport.idle",
}


@pytest.mark.parametrize("fault", sorted(CASES))
def test_load_counts_hostile_failures_by_kind(fault: str, tmp_path: Path) -> None:
    summary_path = tmp_path / "load" / "summary.json"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streamproof", "load", "--users", str(USERS),
         "--duration", f"{DURATION_S}s", "--fault", fault, "--idle-timeout", "0.5",
         "--total-timeout", "2", "--summary-json", str(summary_path),
         # a failure every ~0.7 s from the first second on: several per user in the run
         "--gap-ms", "2", "--locust-arg=--start-jitter=0"],
        capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-2000:]  # failures, not a crash (2)
    assert "Traceback" not in done.stderr
    requests = json.loads(summary_path.read_text("utf-8"))["requests"]
    assert requests["by_error"].get(CASES[fault], 0) == requests["failed"] > USERS
    assert requests["completed"] == 0
    assert elapsed < DURATION_S + 30  # the run ends on time, stalls included
