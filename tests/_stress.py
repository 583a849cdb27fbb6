"""Run the timing-sensitive test files again and again while every core is busy.

``.venv/bin/python tests/_stress.py`` starts one busy-loop process per core, runs the
files whose assertions depend on timing (``pytest -q -p no:cacheprovider FILES``) 10 times in
a row, and prints pass/fail per round; the exit status is 0 only when every round passed.
Not a test module (pytest collects ``test_*.py`` only): it takes minutes, and it is the proof
that those assertions hold on a loaded machine, not part of the suite.

The burners are bounded three ways: killed when the run ends (however it ends), each one
exits by itself past its own deadline, and each one exits when its parent is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = (
    "tests/test_server_openai.py",
    "tests/test_server_anthropic.py",
    "tests/test_load_webui.py",
    "tests/test_load_run.py",
    "tests/test_ttft_origin.py",
)
ROUND_TIMEOUT_S = 900.0  # a round takes ~1-2 min unloaded; past this it is a hang, not a flake
# A burner spins in pure Python and looks up at the clock and its parent once in a while only,
# so nearly all its time is user CPU taken from the tests.
BURNER = """
import os, sys, time
parent, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(200_000):
        pass
"""


def start_burners(count: int, max_s: float) -> list[subprocess.Popen[bytes]]:
    """``count`` busy-loop processes, each gone after ``max_s`` seconds at the latest."""
    cmd = [sys.executable, "-c", BURNER, str(os.getpid()), str(max_s)]
    return [subprocess.Popen(cmd, stdin=subprocess.DEVNULL) for _ in range(count)]


def stop_burners(burners: list[subprocess.Popen[bytes]]) -> None:
    for proc in burners:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    for proc in burners:
        proc.wait(10)


def run_round(files: list[str], log: Path) -> tuple[bool, float, str]:
    """One ``pytest`` run of ``files``: passed, wall seconds, its last summary line. Stopped
    with Ctrl-C (its fixtures clean up) if it overruns or this run is interrupted."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        try:
            ok = proc.wait(ROUND_TIMEOUT_S) == 0
        except subprocess.TimeoutExpired:
            ok = False
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    out = log.read_text("utf-8")
    lines = [line for line in out.splitlines() if line.strip()]
    return ok, time.monotonic() - start, lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 2, help="busy loops")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "reports" / "stress")
    parser.add_argument("files", nargs="*", default=list(FILES))
    args = parser.parse_args(argv)
    # started in the background of a shell, this process inherits SIGINT ignored, and so would
    # every test's child process (a test sends Ctrl-C to a server): handle it, children reset
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs the cleanup below
    args.log_dir.mkdir(parents=True, exist_ok=True)
    print(f"{args.burners} busy loop(s) on {os.cpu_count()} core(s); {args.rounds} rounds of "
          f"{' '.join(args.files)}", flush=True)  # fmt: skip
    burners = start_burners(args.burners, args.rounds * ROUND_TIMEOUT_S + 60)
    passed = 0
    start = time.monotonic()
    try:
        for n in range(1, args.rounds + 1):
            log = args.log_dir / f"round-{n:02d}.log"
            ok, wall, last = run_round(args.files, log)
            passed += ok
            load = os.getloadavg()[0]
            verdict = "PASS" if ok else f"FAIL (see {log})"
            print(f"round {n:2d}/{args.rounds}: {verdict:4} {wall:6.1f} s  load {load:4.1f}  "
                  f"{last}", flush=True)  # fmt: skip
            if not ok:
                failed = [line for line in log.read_text("utf-8").splitlines()
                          if line.startswith(("FAILED", "ERROR"))]  # fmt: skip
                print("    " + "\n    ".join(failed[:10]), flush=True)
    finally:
        stop_burners(burners)
    print(f"{passed}/{args.rounds} rounds passed in {time.monotonic() - start:.0f} s", flush=True)
    return 0 if passed == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
