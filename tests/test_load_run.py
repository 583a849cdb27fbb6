"""Headless Locust runs against the reference server (127.0.0.1, free ports): the numbers are
the scripted ones, token counts are exact, faults show up as violations, a distributed run
adds up, an interrupting client does not hurt the server, the open loop keeps its schedule.

Each run is bounded (``--requests-per-user`` ends it early, ``-t`` and a kill bound it)."""

from __future__ import annotations

from collections import Counter

import pytest
from _load_support import (
    SECRET,
    api_answers,
    assert_no_secret,
    records,
    run_locust,
    stats_rows,
    summary,
)

from streamproof.load.summary import SUMMARY_KEYS
from streamproof.server import ReferenceServer, Timing

TIMING = Timing(ttft_ms=100, gap_ms=10, tokens_per_chunk=1)
USERS, PER_USER, TOKENS = 4, 3, 50


@pytest.fixture(scope="module")
def server():
    with ReferenceServer(api_key=SECRET) as srv:
        yield srv
        assert srv.errors == []


def _base(users: int = USERS, per_user: int = PER_USER) -> list[str]:
    return [
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        "20s",
        "--max-tokens",
        str(TOKENS),
        "--requests-per-user",
        str(per_user),
    ]


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_scripted_timing_is_measured_exactly(api, server, tmp_path) -> None:
    base = server.url_for(timing=TIMING, stamps=True)
    run = run_locust(
        [*_base(), "--host", base, "--api", api, "--html", str(tmp_path / "r.html")], tmp_path
    )
    s = summary(tmp_path)
    assert tuple(s) == SUMMARY_KEYS
    assert s["requests"] == {"completed": USERS * PER_USER, "failed": 0, "by_error": {}}, run.stdout
    assert s["violations"] == {}
    assert abs(s["ttft_ms"]["p50"] - 100) <= 5, s["ttft_ms"]
    assert abs(s["itl_ms"]["p50"] - 10) <= 2, s["itl_ms"]
    assert s["output_tokens"] == {"total": USERS * PER_USER * TOKENS, "source": "usage"}
    assert s["client_lag_ms"] is not None and s["client_lag_ms"]["p50"] < 5
    assert s["api"] == api and s["users"] == USERS
    # the same figures as rows of Locust's own statistics (E2E's size column = tokens)
    rows = stats_rows(tmp_path)
    e2e = rows[(api, "E2E")]
    assert int(e2e["Request Count"]) == USERS * PER_USER and int(e2e["Failure Count"]) == 0
    assert round(float(e2e["Average Content Size"]) * USERS * PER_USER) == USERS * PER_USER * 50
    assert int(rows[(api, "ITL")]["Request Count"]) == USERS * PER_USER * (TOKENS - 1)
    for name in ("TTFB", "TTFT", "TTFO", "TPOT"):
        assert int(rows[(api, name)]["Request Count"]) == USERS * PER_USER
    recs = records(tmp_path)
    assert len(recs) == USERS * PER_USER and all(r["tokens"] == TOKENS for r in recs)
    assert (tmp_path / "tokens_per_s.json").exists()
    assert_no_secret(tmp_path)
    assert SECRET not in run.stdout


def test_mixed_runs_both_user_classes(server, tmp_path) -> None:
    base = server.url_for(timing=Timing(10, 1, 1))
    run_locust([*_base(users=2, per_user=2), "--host", base, "--api", "mixed"], tmp_path)
    s = summary(tmp_path)
    assert s["requests"] == {"completed": 4, "failed": 0, "by_error": {}}
    assert Counter(r["api"] for r in records(tmp_path)) == {"openai": 2, "anthropic": 2}
    rows = stats_rows(tmp_path)
    assert ("openai", "E2E") in rows and ("anthropic", "E2E") in rows


def test_fault_counts_as_violation(server, tmp_path) -> None:
    base = server.url_for(faults=("missing-done",), timing=Timing(20, 2, 1))
    run_locust([*_base(users=2, per_user=2), "--host", base, "--api", "openai"], tmp_path)
    s = summary(tmp_path)
    assert s["violations"].get("openai.done") == 4, s
    assert s["requests"]["failed"] == 4 and s["requests"]["by_error"] == {"protocol": 4}
    row = stats_rows(tmp_path)[("openai", "E2E")]
    assert int(row["Failure Count"]) == 4
    failures = (tmp_path / "locust_failures.csv").read_text()
    assert "protocol: openai.done" in failures


def test_validation_off_ignores_protocol(server, tmp_path) -> None:
    base = server.url_for(faults=("missing-done",), timing=Timing(20, 2, 1))
    run_locust([*_base(users=1, per_user=2), "--host", base, "--validate", "off"], tmp_path)
    s = summary(tmp_path)
    assert s["requests"]["completed"] == 2 and s["violations"] == {}


def test_distributed_run_adds_up(server, tmp_path) -> None:
    base = server.url_for(timing=Timing(50, 5, 1), stamps=True)
    run = run_locust([*_base(), "--host", base, "--processes", "2"], tmp_path, timeout=90)
    s = summary(tmp_path)
    recs = records(tmp_path)
    by_worker = Counter(r["worker"] for r in recs)
    tokens_by_worker = Counter()
    for r in recs:
        tokens_by_worker[r["worker"]] += r["tokens"]
    assert len(by_worker) == 2, (by_worker, run.stdout[-2000:])  # both workers sent traffic
    assert s["requests"]["completed"] == sum(by_worker.values()) == USERS * PER_USER
    assert s["output_tokens"]["total"] == sum(tokens_by_worker.values()) == USERS * PER_USER * 50
    e2e = stats_rows(tmp_path)[("openai", "E2E")]  # Locust's own merge agrees
    assert int(e2e["Request Count"]) == USERS * PER_USER
    assert s["client_lag_ms"] is not None  # lateness histograms merged from the workers
    assert_no_secret(tmp_path)


def test_interrupting_user_leaves_server_healthy(server, tmp_path) -> None:
    base = server.url_for(timing=Timing(20, 5, 1))
    cancelled = server.stats.cancelled
    run_locust(
        [
            "-u",
            "3",
            "-r",
            "3",
            "-t",
            "20s",
            "--max-tokens",
            "40",
            "--requests-per-user",
            "3",
            "--interrupt-users",
            "1",
            "--interrupt-after",
            "5",
            "--host",
            base,
        ],
        tmp_path,
    )
    s = summary(tmp_path)
    assert s["requests"] == {"completed": 6, "failed": 0, "by_error": {}}
    rows = stats_rows(tmp_path)
    assert int(rows[("openai-interrupt", "ABORT")]["Request Count"]) == 3
    aborted = [r for r in records(tmp_path) if r["aborted"]]
    assert len(aborted) == 3 and all(len(r["content_us"]) == 5 for r in aborted)
    assert server.stats.cancelled >= cancelled + 3  # the server saw the clients go away
    assert api_answers(base, "openai")  # and still answers


def test_open_loop_keeps_schedule(server, tmp_path) -> None:
    base = server.url_for(timing=Timing(10, 1, 1))
    run_locust(
        [
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "3s",
            "--max-tokens",
            "5",
            "--host",
            base,
            "--arrival-rate",
            "20",
            "--arrival-process",
            "constant",
        ],
        tmp_path,
    )
    recs = records(tmp_path)
    assert all(r["sched_us"] is not None and r["sched_us"] >= 0 for r in recs)
    window = max(r["wall"] for r in recs) - min(r["wall"] for r in recs)
    assert 0.7 * 20 * window <= len(recs) - 1 <= 1.3 * 20 * window, (len(recs), window)
    lags = sorted(r["sched_us"] for r in recs)
    assert lags[len(lags) // 2] < 20_000  # 4 users keep up with 20/s of 20 ms requests
    assert ("openai", "SCHED_LAG") in stats_rows(tmp_path)


def test_ramp_shape_reaches_users(server, tmp_path) -> None:
    base = server.url_for(timing=Timing(10, 1, 1))
    run_locust(
        [
            "-u",
            "3",
            "-t",
            "3s",
            "--max-tokens",
            "5",
            "--host",
            base,
            "--shape",
            "ramp",
            "--ramp-time",
            "1",
        ],
        tmp_path,
    )
    s = summary(tmp_path)
    assert s["users"] == 3 and s["requests"]["completed"] > 0 and s["requests"]["failed"] == 0
