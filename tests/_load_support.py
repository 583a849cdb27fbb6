"""Helpers of the load tests: free ports, a bounded Locust child process, output checks."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
SECRET = "sk-streamproof-test-SECRET-4242"  # the reference server's key in these tests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_answers(base_url: str, api: str) -> bool:
    """Does the endpoint of ``api`` exist on this server (anything but 404)?"""
    from streamproof.engine import model_for
    from streamproof.load.apis import build_request, request_headers
    from streamproof.load.stream import StreamClient

    client = StreamClient(base_url)
    try:
        body = orjson.dumps(build_request(api, "streamproof-1", "hello", 2))
        result = client.stream(
            api, body, request_headers(api, SECRET), model_for(api, rules=False, content_t=[])
        )
    finally:
        client.close()
    return result.status is not None and result.status != 404


def run_locust(
    args: list[str],
    tmp: Path,
    *,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    summary_json: str | None = "summary.json",
) -> subprocess.CompletedProcess:
    """A headless Locust run in its own process group, killed whole if it overruns.
    ``env``: variables set for it (the key is SECRET unless given); ``summary_json``: where
    the summary goes in ``tmp`` (None: the run's own default folder)."""
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--stop-timeout",
        "0",
        "--start-jitter",
        "0",
        "--csv",
        str(tmp / "locust"),
        *args,
    ]
    if summary_json is not None:
        cmd += ["--summary-json", str(tmp / summary_json)]
    env = {**os.environ, "STREAMPROOF_API_KEY": SECRET, **(env or {})}
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.Popen(
        cmd,
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        tail = out.decode(errors="replace")[-3000:]
        raise AssertionError(f"Locust overran {timeout} s:\n{tail}") from exc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # forked workers, if any are left
    (tmp / "locust.out").write_bytes(out)
    return subprocess.CompletedProcess(cmd, proc.returncode, out.decode(errors="replace"), "")


def all_completed(n: int) -> dict[str, Any]:
    """A summary's ``requests`` when every one of ``n`` streams completed cleanly."""
    return {"total": n, "completed": n, "failed": 0, "aborted": 0, "retried": 0, "by_error": {}}


def summary(tmp: Path) -> dict[str, Any]:
    return json.loads((tmp / "summary.json").read_text("utf-8"))


def records(tmp: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp / "requests.jsonl").read_text("utf-8").splitlines()]


def stats_rows(tmp: Path) -> dict[tuple[str, str], dict[str, str]]:
    """Locust's ``--csv`` statistics, by (type, name)."""
    with (tmp / "locust_stats.csv").open(newline="") as fh:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(fh)}


def assert_no_secret(tmp: Path) -> None:
    """The API key appears in no file the run wrote, nor in its output."""
    for path in tmp.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the API key leaked into {path}"
