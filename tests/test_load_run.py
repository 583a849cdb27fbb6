"""Headless Locust runs against the reference server (127.0.0.1, free ports): the numbers are
the scripted ones, token counts are exact, faults show up as violations, a distributed run
adds up, an interrupting client does not hurt the server, the open loop keeps its schedule.

Each run is bounded (``--requests-per-user`` ends it early, ``-t`` and a kill bound it)."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from pathlib import Path
from statistics import median
from typing import Any

import pytest
from _load_support import (
    SECRET,
    all_completed,
    api_answers,
    assert_no_secret,
    records,
    run_locust,
    stats_rows,
    summary,
)

from streamproof.load.summary import SUMMARY_KEYS
from streamproof.server import ReferenceServer, Timing
from streamproof.server.send import EARLY_NS

TIMING = Timing(ttft_ms=100, gap_ms=10, tokens_per_chunk=1)
USERS, PER_USER, TOKENS = 4, 3, 50
EARLY_MS = EARLY_NS / 1e6  # how far ahead of its deadline the server may send a frame
PERCENTILE_KEYS = {"p50", "p90", "p95", "p99", "p999", "min", "max", "mean"}


@pytest.fixture(scope="module")
def server():
    with ReferenceServer(api_key=SECRET) as srv:
        yield srv
        assert srv.errors == []


def assert_scripted_timing(s: dict[str, Any], recs: list[dict[str, Any]], timing: Timing) -> None:
    """The load generator measured the server's schedule (first token ``ttft``, then one token
    per ``gap``). No sample can be early: the server never sends ahead of a deadline (beyond
    ``EARLY_MS``) and the client's clock starts before the request, so lower bounds hold for
    every sample; how late (the machine may be busy) is judged on the medians, with bands
    derived from the schedule."""
    ttft, gap = timing.ttft_ms, timing.gap_ms
    for metric in ("ttfb", "ttft", "ttfo", "tpot", "itl", "e2e"):
        assert set(s[f"{metric}_ms"]) == PERCENTILE_KEYS, metric
        p = s[f"{metric}_ms"]
        assert p["min"] <= p["p50"] <= p["p90"] <= p["p99"] <= p["max"], (metric, p)
    assert s["ttft_ms"]["min"] >= ttft - EARLY_MS, s["ttft_ms"]
    assert s["ttft_ms"]["p50"] < 1.5 * ttft, s["ttft_ms"]
    # the pace: TPOT is a stream's first-to-last span over its gaps, which a stall moves by
    # its length / 49 only; single gaps are not banded from below (a starved reader takes a
    # catching-up schedule in bursts of ~0 ms gaps), a stall lengthens one gap only
    assert gap / 2 <= s["tpot_ms"]["p50"] <= 1.5 * gap, s["tpot_ms"]
    assert s["itl_ms"]["p50"] <= 1.5 * gap, s["itl_ms"]
    # every stream has the same number of gaps: the mean gap is the mean TPOT, exactly
    assert s["itl_ms"]["mean"] == pytest.approx(s["tpot_ms"]["mean"], abs=0.002), s["itl_ms"]
    for r in recs:  # every stream lasted at least its schedule
        last_ms = r["content_us"][-1] / 1000
        assert last_ms >= ttft + (r["tokens"] - 1) * gap - EARLY_MS, (last_ms, r["tokens"])
    lag = s["client_lag_ms"]  # read stamp minus the server's send stamp, every event
    assert lag is not None and set(lag) == {"p50", "p99", "max", "warning"}, lag
    assert 0 <= lag["p50"] <= lag["p99"] <= lag["max"], lag
    assert lag["p50"] < gap, lag  # a reader late by a gap as a rule would blur every ITL
    # the exact maximum covers every request's first-token lateness
    assert lag["max"] >= max(r["ttft_lag_us"] for r in recs) / 1000, lag


def assert_token_series(tmp: Path, recs: list[dict[str, Any]], total: int) -> None:
    """``tokens_per_s.json``: every output token once, in the wall-clock second it was read,
    the seconds consecutive from the first content event of the run to the last."""
    doc = json.loads((tmp / "tokens_per_s.json").read_text("utf-8"))
    assert doc["bucket_s"] == 1 and "per wall-clock second" in doc["unit"]
    seconds = [t for t, _ in doc["series"]]
    assert seconds == list(range(seconds[0], seconds[-1] + 1))
    assert seconds[0] == min(math.floor(r["wall"] + r["content_us"][0] / 1e6) for r in recs)
    assert seconds[-1] == max(math.floor(r["wall"] + r["content_us"][-1] / 1e6) for r in recs)
    assert all(n >= 0 for _, n in doc["series"])
    assert sum(n for _, n in doc["series"]) == pytest.approx(total, abs=0.001 * len(seconds))


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


@pytest.mark.parametrize("api", ["openai", "anthropic", "responses"])
def test_scripted_timing_is_measured_exactly(api, server, tmp_path) -> None:
    base = server.url_for(timing=TIMING, stamps=True)
    run = run_locust(
        [*_base(), "--host", base, "--api", api, "--html", str(tmp_path / "r.html")], tmp_path
    )
    s = summary(tmp_path)
    assert tuple(s) == SUMMARY_KEYS
    assert s["requests"] == all_completed(USERS * PER_USER), run.stdout
    assert s["violations"] == {}
    assert s["output_tokens"] == {"total": USERS * PER_USER * TOKENS, "source": "usage"}
    assert s["api"] == api and s["users"] == USERS
    recs = records(tmp_path)
    assert len(recs) == USERS * PER_USER and all(r["tokens"] == TOKENS for r in recs)
    assert {(r["api"], r["ok"], r["error"], r["worker"]) for r in recs} == {(api, True, None, 0)}
    assert_scripted_timing(s, recs, TIMING)
    # the same figures as rows of Locust's own statistics (E2E's size column = tokens)
    rows = stats_rows(tmp_path)
    e2e = rows[(api, "E2E")]
    assert int(e2e["Request Count"]) == USERS * PER_USER and int(e2e["Failure Count"]) == 0
    assert round(float(e2e["Average Content Size"]) * USERS * PER_USER) == USERS * PER_USER * 50
    assert int(rows[(api, "ITL")]["Request Count"]) == USERS * PER_USER * (TOKENS - 1)
    for name in ("TTFB", "TTFT", "TTFO", "TPOT"):
        assert int(rows[(api, name)]["Request Count"]) == USERS * PER_USER
    assert_token_series(tmp_path, recs, USERS * PER_USER * TOKENS)
    assert_no_secret(tmp_path)
    assert SECRET not in run.stdout


def test_responses_reasoning_summary_is_ttft_not_ttfo(server, tmp_path) -> None:
    """Responses with a reasoning summary: its deltas are content (TTFT, ITL, TPOT), the first
    output_text delta is TTFO, one gap per reasoning delta later; N is the terminal usage,
    which counts the streamed reasoning too (spec: Load metrics for Responses)."""
    timing, tokens = Timing(50, 5, 1), 60
    base = server.url_for(timing=timing, stamps=True)
    extra = '{"reasoning": {"effort": "low", "summary": "auto"}}'
    args = [*_base(users=2, per_user=2), "--max-tokens", str(tokens), "--extra-body", extra]
    run = run_locust([*args, "--host", base, "--api", "responses"], tmp_path)
    s = summary(tmp_path)
    assert s["requests"] == all_completed(4), run.stdout[-2000:]
    assert s["violations"] == {} and s["output_tokens"] == {"total": 4 * tokens, "source": "usage"}
    steps = []
    for r in records(tmp_path):
        content, visible = r["content_us"], r["visible_us"]
        reasoning = sum(t < visible for t in content)  # the summary deltas before the text
        assert reasoning >= 5 and r["tokens"] == len(content) == tokens, r
        # TTFT: the first summary delta; TTFO: one gap per summary delta later (from the send:
        # the server is never early, a read may be late)
        assert content[0] / 1000 >= timing.ttft_ms - EARLY_MS, r
        assert visible / 1000 >= timing.ttft_ms + reasoning * timing.gap_ms - EARLY_MS, r
        steps.append((visible - content[0]) / 1000 / reasoning)
    assert median(steps) <= 1.5 * timing.gap_ms, steps
    assert s["ttfo_ms"]["p50"] > s["ttft_ms"]["p50"] + 5 * timing.gap_ms - EARLY_MS, s
    assert timing.gap_ms / 2 <= s["tpot_ms"]["p50"] <= 1.5 * timing.gap_ms, s["tpot_ms"]


def test_mixed_runs_every_user_class(server, tmp_path) -> None:
    """``--api mixed``: one user of each API's class (Locust spreads 3 users over the 3
    classes), each stream read and validated by its own API's model."""
    base = server.url_for(timing=Timing(10, 1, 1))
    run = run_locust([*_base(users=3, per_user=2), "--host", base, "--api", "mixed"], tmp_path)
    s = summary(tmp_path)
    assert s["requests"] == all_completed(6), run.stdout[-2000:]
    assert s["violations"] == {} and s["output_tokens"] == {"total": 6 * TOKENS, "source": "usage"}
    recs = records(tmp_path)
    assert Counter(r["api"] for r in recs) == {"openai": 2, "anthropic": 2, "responses": 2}
    assert all(r["tokens"] == len(r["content_us"]) == TOKENS for r in recs)
    rows = stats_rows(tmp_path)
    for api in ("openai", "anthropic", "responses"):
        assert rows[(api, "E2E")]["Request Count"] == "2", api
        assert int(rows[(api, "ITL")]["Request Count"]) == 2 * (TOKENS - 1), api


# a fault per API and the MUST rule it breaks; for responses a payload no JSON parser takes
# (a wire fault of every API) breaks responses.data-json
FAULTS = [
    ("openai", "missing-done", "openai.done"),
    ("responses", "huge-number", "responses.data-json"),
]


@pytest.mark.parametrize(("api", "fault", "rule"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_counts_as_violation(api, fault, rule, server, tmp_path) -> None:
    base = server.url_for(faults=(fault,), timing=Timing(20, 2, 1))
    run_locust([*_base(users=2, per_user=2), "--host", base, "--api", api], tmp_path)
    s = summary(tmp_path)
    assert s["violations"].get(rule) == {"level": "MUST", "requests": 4}, s
    assert s["requests"]["failed"] == 4 and s["requests"]["by_error"] == {"protocol": 4}
    assert s["output_tokens"] == {"total": 4 * TOKENS, "source": "usage"}  # figures count
    row = stats_rows(tmp_path)[(api, "E2E")]
    assert int(row["Failure Count"]) == 4
    failures = (tmp_path / "locust_failures.csv").read_text()
    assert f"protocol: {rule}" in failures


@pytest.mark.parametrize(("api", "fault", "rule"), FAULTS, ids=[f[0] for f in FAULTS])
def test_validation_off_ignores_protocol(api, fault, rule, server, tmp_path) -> None:
    base = server.url_for(faults=(fault,), timing=Timing(20, 2, 1))
    run_locust(
        [*_base(users=1, per_user=2), "--host", base, "--api", api, "--validate", "off"],
        tmp_path,
    )
    s = summary(tmp_path)
    assert s["requests"] == all_completed(2) and s["violations"] == {}
    assert s["output_tokens"] == {"total": 2 * TOKENS, "source": "usage"}


def test_distributed_run_adds_up(server, tmp_path) -> None:
    timing = Timing(50, 5, 1)
    base = server.url_for(timing=timing, stamps=True)
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
    assert sorted(by_worker) == [0, 1] and all(r["ttft_lag_us"] is not None for r in recs)
    # the lateness histograms merged from the workers: a distribution, and its exact maximum
    # is at least every request's first-token lateness, whichever worker read it
    lag = s["client_lag_ms"]
    assert lag is not None and set(lag) == {"p50", "p99", "max", "warning"}, lag
    assert 0 <= lag["p50"] <= lag["p99"] <= lag["max"], lag
    assert lag["max"] >= max(r["ttft_lag_us"] for r in recs) / 1000, lag
    assert lag["p50"] < timing.gap_ms, lag  # late by a gap as a rule would blur every ITL
    assert_token_series(tmp_path, recs, USERS * PER_USER * 50)
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
    # the interrupting user's 3 streams are aborted on purpose: neither completed nor failed
    assert s["requests"] == {**all_completed(6), "total": 9, "aborted": 3}
    rows = stats_rows(tmp_path)
    assert int(rows[("openai-interrupt", "ABORT")]["Request Count"]) == 3
    aborted = [r for r in records(tmp_path) if r["aborted"]]
    # each closed after its 5th of 40 content events: the events that came in the same read
    # count too (a busy machine reads a catching-up schedule in bursts), the end never does
    assert len(aborted) == 3, aborted
    assert all(5 <= len(r["content_us"]) < 40 and r["end_us"] is None for r in aborted), aborted
    assert server.stats.cancelled >= cancelled + 3  # the server saw the clients go away
    assert api_answers(base, "openai")  # and still answers


def test_open_loop_keeps_schedule(server, tmp_path) -> None:
    """Arrivals every 1/rate s (constant process), each request sent at its arrival or later,
    as many as the run's 3 s hold. Under load a send may be late, never early: the schedule
    is checked on the arrivals themselves, the lateness on its median."""
    rate, seconds = 20, 3
    base = server.url_for(timing=Timing(10, 1, 1))
    run_locust(
        [
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            f"{seconds}s",
            "--max-tokens",
            "5",
            "--host",
            base,
            "--arrival-rate",
            str(rate),
            "--arrival-process",
            "constant",
        ],
        tmp_path,
    )
    recs = records(tmp_path)
    assert all(r["sched_us"] is not None and r["sched_us"] >= 0 for r in recs)  # never early
    # the arrivals (send wall time minus its lateness) are 1/rate apart
    arrivals = sorted(r["wall"] - r["sched_us"] / 1e6 for r in recs)
    spacing = median(b - a for a, b in itertools.pairwise(arrivals))
    assert 0.9 / rate <= spacing <= 1.1 / rate, spacing
    # no arrival before the run, none after it (+ Locust's stop): at most rate * seconds + 1;
    # most of the run sending (start-up and a busy machine take a little of it)
    assert rate * seconds / 2 <= len(recs) <= rate * (seconds + 0.5) + 1, len(recs)
    lags = [r["sched_us"] / 1000 for r in recs]
    assert median(lags) < 1000 / rate, lags  # 4 users keep up with 20/s of 15 ms requests
    # Locust's CSV is written every second; a time-limited run can end before the last write
    row = stats_rows(tmp_path)[("openai", "SCHED_LAG")]
    assert 0 < int(row["Request Count"]) <= len(recs) and int(row["Failure Count"]) == 0


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
