"""Bounded against any endpoint: the scenarios go out together (the same report as one after
another), a hanging endpoint ends the run in about one timeout, and a whole run's memory does
not grow with the stream — a never-ending one, a gzip bomb, a large recorded file.

Runs that measure time or memory are child processes (``RUSAGE_CHILDREN`` of a fresh
grandparent gives the run's own peak), against the reference server in this process on
127.0.0.1; each is bounded by its timeouts and a kill."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamproof.engine import RUN_MARGIN_S
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
TOTAL_S = 6.0
BOUNDS = ["--first-byte-timeout", "6", "--idle-timeout", "3", "--total-timeout", str(TOTAL_S)]


@pytest.fixture(scope="module")
def server():
    with ReferenceServer() as srv:
        yield srv


def _comparable(report: dict) -> list:
    return [
        (r["id"], r["outcome"], r["message"],
         [(s["scenario"], s["outcome"], s["message"], s["event"]) for s in r["scenarios"]])
        for r in report["rules"]
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("api", "faults"),
    [("openai", ()), ("anthropic", ()), ("openai", ("role-every-chunk", "usage-missing")),
     ("anthropic", ("anthropic-ping-shape", "anthropic-block-index-skip"))],
)  # fmt: skip
def test_concurrent_run_equals_serial_run(api, faults, server, pytester, tmp_path) -> None:
    reports = []
    for concurrency in ("1", "8"):
        out = tmp_path / concurrency
        pytester.runpytest_inprocess(
            str(CONFORMANCE), "--base-url", server.url_for(faults=faults), "--model",
            DEFAULT_MODEL, "--api-key", DEFAULT_API_KEY, "--api", api, "--report-dir", str(out),
            "--concurrency", concurrency, "-q",
        )  # fmt: skip
        reports.append(json.loads((out / "compliance.json").read_text("utf-8")))
    serial, concurrent = reports
    assert _comparable(serial) == _comparable(concurrent)
    assert serial["summary"] == concurrent["summary"]
    assert serial["verdict"] == concurrent["verdict"] == ("fail" if faults else "pass")


def _run_child(url: str, *extra: str, cwd: Path) -> tuple[int, float, int]:
    """``streamproof run --api openai`` in a child of a fresh process: its exit status,
    wall time and peak RSS (MiB)."""
    code = (
        "import resource, subprocess, sys, time\n"
        "t0 = time.monotonic()\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, timeout=120)\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024\n"
        "print(done.returncode, time.monotonic() - t0, rss)\n"
    )
    argv = [sys.executable, "-m", "streamproof", "run", "--base-url", url, "--model",
            DEFAULT_MODEL, "--api-key", DEFAULT_API_KEY, "--api", "openai", "--no-load",
            *extra]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=180)  # fmt: skip
    status, took, rss = done.stdout.split()
    return int(status), float(took), int(rss)


@pytest.mark.parametrize("fault", ["stall-headers", "slow-drip", "endless", "firehose"])
def test_hanging_endpoint_ends_within_one_timeout(fault, server, tmp_path) -> None:
    """No headers, a one-byte drip, a never-ending stream (slow, and as fast as it is read):
    the run ends within its one deadline — the total timeout plus the run margin — and 3 s for
    the setup checks and the reports (its own clock; the child process, with its interpreter
    start-up on a busy machine, within 20 s more), with a verdict or the one line of exit
    status 2, and its reports written."""
    status, took, _ = _run_child(server.url_for(faults=(fault,)), *BOUNDS, cwd=tmp_path)
    assert status in (1, 2)
    assert took < TOTAL_S + 20, f"{fault}: the child process took {took:.1f} s"
    report = json.loads((tmp_path / "reports" / "compliance.json").read_text("utf-8"))
    ran = report["run"]["duration_s"]
    assert ran < TOTAL_S + RUN_MARGIN_S + 3, f"{fault}: the run took {ran:.1f} s"
    assert report["verdict"] in ("fail", "error")
    outcomes = {r["id"]: r["outcome"] for r in report["rules"]}
    expected = {"stall-headers": "transport.first-byte", "slow-drip": "transport.total",
                "endless": "transport.total", "firehose": "transport.total"}[fault]  # fmt: skip
    assert outcomes[expected] == "fail"


def test_memory_does_not_grow_with_the_stream(server, tmp_path) -> None:
    """Peak RSS of a whole run against a never-ending stream read as fast as it comes, and
    against a gzip bomb, stays within 100 MB of a clean run's."""
    _, _, clean = _run_child(server.base_url, *BOUNDS, cwd=tmp_path)
    for fault in ("firehose", "gzip-bomb"):
        _, _, peak = _run_child(server.url_for(faults=(fault,)), *BOUNDS, cwd=tmp_path)
        assert peak - clean < 100, f"{fault}: {peak} MiB against {clean} MiB clean"


def test_check_of_a_large_recording_takes_bounded_memory(tmp_path) -> None:
    """``streamproof check`` reads a recording as it validates it: 64 MB of events take no
    more memory than 1 MB of them (within 50 MB)."""

    def chunk(delta: dict, finish: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [choice]}  # fmt: skip

    first = chunk({"role": "assistant", "content": ""})
    last = chunk({}, "stop")
    line = b"data: " + json.dumps(chunk({"content": "word "})).encode() + b"\n\n"
    peaks = []
    for megabytes in (1, 64):
        path = tmp_path / f"{megabytes}.sse"
        with path.open("wb") as fh:
            fh.write(b"data: " + json.dumps(first).encode() + b"\n\n")
            fh.write(line * (megabytes * 1024 * 1024 // len(line)))
            fh.write(b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
        code = (
            "import resource, subprocess, sys\n"
            "done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)\n"
            "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "print(done.stdout.splitlines()[-1])\n"
        )
        t0 = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", code, sys.executable, "-m", "streamproof", "check",
             str(path), "--api", "openai"], capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        status_rss, summary = done.stdout.splitlines()
        status, rss = map(int, status_rss.split())
        assert status == 0 and summary.endswith("0 finding(s), 0 MUST"), done.stdout
        peaks.append(rss // 1024)
        assert time.monotonic() - t0 < 120
    assert peaks[1] - peaks[0] < 50, peaks
