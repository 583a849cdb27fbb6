"""How long the whole suite takes against a realistic endpoint, next to its longest scenario.

    python benchmarks/bench_suite.py [--ttft-ms 300] [--gap-ms 100] [--api all] [--runs 3]

The reference server (in this process) answers at the given timing, so that each streamed
scenario takes seconds, as against a real model; ``streamproof run --no-load`` runs in a
child process, once one scenario after another (``--concurrency 1``) and once with the
default concurrency. Reported per mode (best of ``--runs``): the suite's wall time, its
longest scenario (from ``compliance.json``), and their ratio — the goal is ≤ 1.5 with the
scenarios sent together.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer, Timing


def one_run(url: str, api: str, concurrency: int) -> tuple[float, float, str]:
    """Wall time of ``streamproof run``, its longest scenario (s) and that scenario's id."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "streamproof", "run", "--base-url", url, "--model",
             DEFAULT_MODEL, "--api-key", DEFAULT_API_KEY, "--api", api, "--no-load",
             "--concurrency", str(concurrency), "--report-dir", tmp],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        wall = time.monotonic() - t0
        if done.returncode != 0:
            raise SystemExit(f"the run failed ({done.returncode}):\n{done.stdout[-2000:]}")
        report = json.loads((Path(tmp) / "compliance.json").read_text("utf-8"))
    longest = max(report["scenarios"], key=lambda s: s["duration_ms"] or 0)
    return wall, longest["duration_ms"] / 1000, longest["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument("--gap-ms", type=float, default=100.0)
    parser.add_argument("--api", default="all")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    timing = Timing(ttft_ms=args.ttft_ms, gap_ms=args.gap_ms, tokens_per_chunk=1)
    print(f"reference server at TTFT {args.ttft_ms:g} ms, gap {args.gap_ms:g} ms; --api {args.api}")
    print(f"{'mode':24} {'wall s':>8} {'longest s':>10} {'ratio':>6}  longest scenario")
    with ReferenceServer() as srv:
        url = srv.url_for(timing=timing)
        for label, concurrency in (("one after another (1)", 1), ("together (default 8)", 8)):
            best = min((one_run(url, args.api, concurrency) for _ in range(args.runs)),
                       key=lambda r: r[0])  # fmt: skip
            wall, longest, sid = best
            print(f"{label:24} {wall:8.1f} {longest:10.1f} {wall / longest:6.2f}  {sid}")


if __name__ == "__main__":
    main()
