"""Memory of a long load run: does it stay flat after warm-up?

Runs ``streamproof load`` (against its built-in server unless ``--host``) for ``--duration``,
samples the resident memory of the whole process tree — the command, its reference server,
Locust and any Locust workers — every ``--every`` seconds, and prints the samples and the
growth from the end of warm-up to the end of the run. A load generator that kept per-request
data would grow with the request count; this one keeps bounded reservoirs and histograms.

    python benchmarks/bench_load_memory.py --duration 10m --users 8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from streamproof.load.args import parse_duration


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (those that are still there)."""
    total = 0
    for p in (proc, *proc.children(recursive=True)):
        with contextlib.suppress(psutil.Error):  # gone between the listing and the read
            total += p.memory_info().rss
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", default="10m", help="load run length (default 10m)")
    ap.add_argument("--users", type=int, default=8, help="concurrent users (default 8)")
    ap.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the growth")
    ap.add_argument("--host", help="API root (default: the built-in reference server)")
    ap.add_argument("--json", type=Path, help="write the samples and figures here too")
    args = ap.parse_args()
    seconds = parse_duration(args.duration)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "streamproof", "load", "--duration", args.duration,
               "--users", str(args.users), "--summary-json", f"{tmp}/summary.json"]  # fmt: skip
        if args.host:
            cmd += ["--host", args.host]
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        root = psutil.Process(child.pid)
        t0 = time.monotonic()
        samples: list[tuple[float, float]] = []
        while child.poll() is None and time.monotonic() - t0 < seconds + 120:
            samples.append((round(time.monotonic() - t0, 1), tree_rss(root) / 2**20))
            time.sleep(args.every)
        child.wait(60)
        requests = json.loads(Path(tmp, "summary.json").read_text("utf-8"))["requests"]
    steady = [mib for t, mib in samples if args.warmup <= t <= seconds]
    figures = {
        "duration_s": seconds,
        "users": args.users,
        "requests": requests["total"],
        "rss_mib_after_warmup": {
            "first": steady[0],
            "last": steady[-1],
            "min": min(steady),
            "max": max(steady),
        },
        "growth_mib": round(steady[-1] - steady[0], 1),
    }
    for t, mib in samples:
        print(f"{t:7.1f} s  {mib:7.1f} MiB")
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps({**figures, "samples": samples}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
