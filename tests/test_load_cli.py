"""``streamproof load`` (``load.cli``): a short headless run against the embedded reference
server, the table it prints, the files it leaves, its exit status; nothing left running."""

from __future__ import annotations

import argparse
import json

import psutil

from streamproof.load import cli


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
    summary = json.loads((tmp_path / "load" / "summary.json").read_text())
    assert summary["output_tokens"] == {"total": 80, "source": "usage"}
    for name in ("requests.jsonl", "tokens_per_s.json", "locust.html", "locust_stats.csv"):
        assert (tmp_path / "load" / name).exists(), name
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, f"processes left behind: {left}"


def test_load_command_reports_failures(tmp_path, capsys) -> None:
    assert cli.run(_args(tmp_path, "--fault", "missing-done", "--api", "openai")) == 1
    assert "openai.done x4" in capsys.readouterr().out


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
