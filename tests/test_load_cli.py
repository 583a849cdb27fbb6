"""``streamproof load`` (``load.cli``): a short headless run against the embedded reference
server, the table it prints, the files it leaves, its exit status; nothing left running."""

from __future__ import annotations

import argparse
import csv
import json

import psutil
import pytest

from streamproof.load import cli
from streamproof.server.send import EARLY_NS

PERCENTILE_KEYS = {"p50", "p90", "p95", "p99", "p999", "min", "max", "mean"}


def _args(tmp_path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(
        [
            "--users",
            "2",
            "--duration",
            "10s",
            "--max-tokens",
            "20",
            "--ttft-ms",
            "30",
            "--gap-ms",
            "2",
            "--requests-per-user",
            "2",
            "--summary-json",
            str(tmp_path / "load" / "summary.json"),
            *extra,
        ]
    )


def test_load_command_on_the_embedded_server(tmp_path, capsys) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    assert cli.run(_args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "4 completed, 0 failed" in out and "TTFT" in out and "client lateness" in out
    assert "output tokens: 80 (from usage)" in out
    load = tmp_path / "load"
    # every file says what the run did: 2 users x 2 requests x 20 tokens, openai, the embedded
    # server with --ttft-ms 30 --gap-ms 2 and send stamps
    summary = json.loads((load / "summary.json").read_text())
    assert summary["api"] == "openai" and "/timing/ttft_ms=30,gap_ms=2," in summary["host"]
    assert 1 <= summary["users"] <= 2  # the peak seen by a once-a-second monitor
    assert (summary["requests"]["completed"], summary["requests"]["failed"]) == (4, 0)
    assert summary["requests"]["by_error"] == {} and summary["violations"] == {}
    assert summary["output_tokens"] == {"total": 80, "source": "usage"}
    for metric in ("ttfb", "ttft", "ttfo", "tpot", "itl", "e2e"):
        assert set(summary[f"{metric}_ms"]) == PERCENTILE_KEYS, metric
    assert summary["ttft_ms"]["min"] >= 30 - EARLY_NS / 1e6  # never before the scripted TTFT
    assert summary["client_lag_ms"] is not None  # the stamps were on
    recs = [json.loads(line) for line in (load / "requests.jsonl").read_text().splitlines()]
    assert [(r["api"], r["ok"], r["error"], r["tokens"]) for r in recs] == [
        ("openai", True, None, 20)
    ] * 4
    assert all(len(r["content_us"]) == 20 and r["ttft_lag_us"] is not None for r in recs)
    tokens = json.loads((load / "tokens_per_s.json").read_text())
    assert tokens["bucket_s"] == 1 and sum(n for _, n in tokens["series"]) == 80
    with (load / "locust_stats.csv").open(newline="") as fh:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(fh)}
    assert (rows[("openai", "E2E")]["Request Count"], rows[("openai", "E2E")]["Failure Count"]) == (
        "4", "0"
    )  # fmt: skip
    assert rows[("openai", "ITL")]["Request Count"] == str(4 * 19)
    html = (load / "locust.html").read_text("utf-8")
    assert "<title>Locust" in html and all(name in html for name in ("E2E", "TTFT", "ITL"))
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, f"processes left behind: {left}"


def test_load_command_runs_responses(tmp_path, capsys) -> None:
    """``--api responses``: POST /responses with max_output_tokens, the tokens from the
    terminal event's usage, every stream validated clean."""
    assert cli.run(_args(tmp_path, "--api", "responses")) == 0
    out = capsys.readouterr().out
    assert "4 completed, 0 failed" in out and "output tokens: 80 (from usage)" in out
    load = tmp_path / "load"
    summary = json.loads((load / "summary.json").read_text())
    assert summary["api"] == "responses" and summary["violations"] == {}
    assert summary["output_tokens"] == {"total": 80, "source": "usage"}
    assert summary["ttft_ms"]["min"] >= 30 - EARLY_NS / 1e6
    recs = [json.loads(line) for line in (load / "requests.jsonl").read_text().splitlines()]
    assert [(r["api"], r["ok"], r["error"], r["tokens"]) for r in recs] == [
        ("responses", True, None, 20)
    ] * 4
    assert all(len(r["content_us"]) == 20 and r["visible_us"] == r["content_us"][0] for r in recs)
    with (load / "locust_stats.csv").open(newline="") as fh:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(fh)}
    assert rows[("responses", "E2E")]["Failure Count"] == "0"
    assert rows[("responses", "ITL")]["Request Count"] == str(4 * 19)


# a fault and the MUST rule it breaks; responses: a payload no JSON parser takes
FAILURES = [
    ("openai", "missing-done", "openai.done"),
    ("responses", "huge-number", "responses.data-json"),
]


@pytest.mark.parametrize(("api", "fault", "rule"), FAILURES, ids=[f[0] for f in FAILURES])
def test_load_command_reports_failures(api, fault, rule, tmp_path, capsys) -> None:
    assert cli.run(_args(tmp_path, "--fault", fault, "--api", api)) == 1
    assert f"violations: {rule} (MUST) x4" in capsys.readouterr().out
    summary = json.loads((tmp_path / "load" / "summary.json").read_text())
    assert summary["requests"]["failed"] == 4 and summary["requests"]["by_error"] == {"protocol": 4}
    assert list(summary["violations"]) == [rule]


def test_duration_parsing() -> None:
    assert cli.parse_duration("30s") == 30 and cli.parse_duration("2m") == 120
    assert cli.parse_duration("1h30m") == 5400 and cli.parse_duration("45") == 45


def test_locustfile_options_are_listed_where_locust_help_cannot() -> None:
    # Locust prints --help before it loads the locustfile; these commands fill the gap
    import subprocess
    import sys

    listing = subprocess.run(
        [sys.executable, "-m", "streamproof.load.args"], capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0, listing.stderr[-2000:]
    for option in ("--api", "--max-tokens", "--include-usage", "--interrupt-after", "--shape"):
        assert option in listing.stdout
    assert "STREAMPROOF_API" in listing.stdout  # where each can come from in the environment
    epilog = subprocess.run(
        [sys.executable, "-m", "streamproof.cli", "load", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "python -m streamproof.load.args" in " ".join(epilog.stdout.split())
