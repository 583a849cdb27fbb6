"""The load run's own views and guards: Locust's totals count streams (one per request, the
metric rows beside them), a run whose every request fails ends at once with exit status 2
and the reason, failing users back off, the built-in server's key is used when none is given,
and each run writes to a folder of its own.

Every run is a Locust child process on 127.0.0.1, bounded by ``--requests-per-user``, ``-t``
and a kill (``_load_support.run_locust``)."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _load_support import LOCUSTFILE, SECRET, run_locust, stats_rows, summary

from streamproof.server import DEFAULT_API_KEY, ReferenceServer, Timing

FAST = Timing(ttft_ms=1, gap_ms=0.5, tokens_per_chunk=1)


@pytest.fixture(scope="module")
def server():
    with ReferenceServer(api_key=SECRET) as srv:
        yield srv


def test_locust_totals_count_streams(server, tmp_path: Path) -> None:
    """``--csv``'s Aggregated row counts 12 streams, not 12 streams' worth of ITL gaps."""
    args = ["-u", "3", "-r", "3", "-t", "30s", "--host", server.url_for(timing=FAST),
            "--max-tokens", "20", "--requests-per-user", "4"]  # fmt: skip
    run = run_locust(args, tmp_path)
    rows = stats_rows(tmp_path)
    total = rows[("", "Aggregated")]
    assert total["Request Count"] == "12", run.stdout[-2000:]
    assert rows[("openai", "E2E")]["Request Count"] == "12"
    assert int(rows[("openai", "ITL")]["Request Count"]) == 12 * 19  # the metric rows stay
    assert rows[("openai", "TTFT")]["Request Count"] == "12"
    history = list(csv.DictReader((tmp_path / "locust_stats_history.csv").open()))
    assert max(int(h["Total Request Count"]) for h in history) <= 12


def _dead_host() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.mark.parametrize("where", ["dead host", "refused key"])
def test_a_run_whose_every_request_fails_ends_early(where, server, tmp_path) -> None:
    host = _dead_host() if where == "dead host" else server.base_url
    env_key = (
        {"STREAMPROOF_API_KEY": "sk-wrong-key-for-this-test"} if where == "refused key" else {}
    )
    args = ["-u", "4", "-r", "4", "-t", "60s", "--host", host, "--api", "openai"]
    run = run_locust(args, tmp_path, timeout=45, env=env_key)
    assert run.returncode == 2, run.stdout[-3000:]
    s = summary(tmp_path)
    assert s["requests"]["completed"] == 0
    kind = "transport.connect" if where == "dead host" else "http.401"
    assert kind in s["stopped"] and s["run_s"] < 15, s["stopped"]
    # failing users back off (50 ms, doubling to 2 s): a few dozen attempts, not thousands
    assert s["requests"]["total"] < 200, s["requests"]
    assert "stopping the run: every request failed" in run.stdout


def test_streamproof_load_reports_the_early_end(server, tmp_path) -> None:
    """Through ``streamproof load`` the early end is exit status 2 with the reason: here the
    setup check catches the refused key before Locust starts, in one line."""
    done = subprocess.run(
        [sys.executable, "-m", "streamproof", "load", "--host", server.base_url,
         "--model", "streamproof-1", "--duration", "20s"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "streamproof: the endpoint wants a key (401): give --api-key / OPENAI_API_KEY"
    )


def test_builtin_server_key_when_none_is_given(tmp_path) -> None:
    """``locust -f loadtests/locustfile.py --host <streamproof serve>`` without a key works:
    the plugin sees the reference server and uses its key."""
    with ReferenceServer() as srv:  # the default key
        args = ["-u", "1", "-r", "1", "-t", "20s", "--host", srv.url_for(timing=FAST),
                "--requests-per-user", "2"]  # fmt: skip
        run = run_locust(args, tmp_path, env={"STREAMPROOF_API_KEY": ""})
    s = summary(tmp_path)
    assert s["requests"]["completed"] == 2 and s["requests"]["failed"] == 0, run.stdout[-2000:]
    assert DEFAULT_API_KEY not in (tmp_path / "summary.json").read_text()


def test_each_run_writes_a_folder_of_its_own(server, tmp_path) -> None:
    """Without ``--summary-json`` a run writes under reports/load/run-<time>-<pid>/: a second
    run (a web UI session, another host) never overwrites the first."""
    args = ["-u", "1", "-r", "1", "-t", "20s", "--host", server.url_for(timing=FAST),
            "--requests-per-user", "1"]  # fmt: skip
    for _ in range(2):
        run_locust(args, tmp_path, summary_json=None)
    runs = sorted((tmp_path / "reports" / "load").glob("run-*/summary.json"))
    assert len(runs) == 2, run_locust.__doc__
    for path in runs:
        assert json.loads(path.read_text())["requests"]["completed"] == 1
        assert (path.parent / "requests.jsonl").is_file()
    assert LOCUSTFILE.is_file()
