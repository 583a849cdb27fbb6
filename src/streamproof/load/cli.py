"""``streamproof load``: a headless Locust run with sensible defaults, then the summary table.

    streamproof load                                  # the built-in reference server, 30 s
    streamproof load --host http://gw:8000/v1 --model m --users 16 --duration 2m --api mixed

Without ``--host`` it serves the reference server itself (in this process, on a free
127.0.0.1 port, with send stamps, so the client's own lateness is measured too). Locust runs
as a child process (its gevent patching stays out of this one) in its own process group,
killed whole if it overruns ``--duration`` by more than a grace period; nothing is left
behind. The key is passed to Locust through the environment, never on its command line.

Exit status: 0 when every request completed, 1 when some failed (or broke a MUST rule),
2 when the run itself failed (no summary).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from ..redact import register_secret
from .args import API_CHOICES, DEFAULT_SUMMARY, PROMPT_CHOICES, SHAPE_CHOICES
from .summary import format_table

__all__ = ["LOCUST_EPILOG", "add_arguments", "locustfile_path", "parse_duration", "run"]

GRACE_S: Final = 60.0
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")
LOCUST_EPILOG: Final = (
    "More options (--include-usage, --arrival-process, --step-*, --spike-*, --interrupt-*, "
    "--start-jitter ...) reach the locustfile through --locust-arg; all of them, as "
    "`locust -f loadtests/locustfile.py` takes them: python -m streamproof.load.args"
)


def locustfile_path() -> Path:
    """``loadtests/locustfile.py``: packaged in the wheel, or the checkout's."""
    packaged = Path(__file__).resolve().parents[1] / "_loadtests" / "locustfile.py"
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[3] / "loadtests" / "locustfile.py"


def parse_duration(text: str) -> float:
    """``30``, ``30s``, ``2m``, ``1h30m`` → seconds."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use 30s, 2m, 1h30m)")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``load`` subcommand's options (the lead's ``cli.py`` calls this)."""
    parser.add_argument(
        "--host",
        help="API root, e.g. http://gw:8000/v1 (default: start the "
        "built-in reference server on a free 127.0.0.1 port)",
    )
    parser.add_argument("--users", type=int, default=4, help="concurrent users (default 4)")
    parser.add_argument(
        "--spawn-rate", type=float, help="users started per second (default: all at once)"
    )
    parser.add_argument("--duration", default="30s", help="run time: 30s, 2m, 1h30m (default 30s)")
    parser.add_argument("--api", choices=API_CHOICES, default="openai")
    parser.add_argument("--model", help="model name (default: the reference server's)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompts", choices=PROMPT_CHOICES, default="short")
    parser.add_argument("--prompt-file", help="JSONL or ShareGPT file for --prompts jsonl/sharegpt")
    parser.add_argument("--prompt-words", type=int, help="words of a synthetic prompt")
    parser.add_argument(
        "--validate",
        choices=("on", "off"),
        default="on",
        help="check every stream for protocol violations (default on)",
    )
    parser.add_argument("--slo-ttft-ms", type=float, help="goodput: TTFT objective")
    parser.add_argument("--slo-tpot-ms", type=float, help="goodput: TPOT objective")
    parser.add_argument("--slo-e2e-ms", type=float, help="goodput: E2E objective")
    for name, help_text in (
        ("connect-timeout", "seconds to connect"),
        ("first-byte-timeout", "seconds until the response headers"),
        ("idle-timeout", "longest silence between two reads"),
        ("total-timeout", "bound on one whole exchange"),
    ):
        parser.add_argument(f"--{name}", type=float, help=help_text)
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="Locust worker processes (0: one process; -1: one per core)",
    )
    parser.add_argument("--arrival-rate", type=float, help="open loop: requests per second")
    parser.add_argument("--shape", choices=SHAPE_CHOICES, default="none")
    parser.add_argument(
        "--requests-per-user", type=int, help="end the run once every user sent this many"
    )
    parser.add_argument(
        "--summary-json",
        default=DEFAULT_SUMMARY,
        help=f"summary file (default {DEFAULT_SUMMARY}); requests.jsonl, Locust's "
        "CSV and HTML report go beside it",
    )
    parser.add_argument(
        "--ttft-ms",
        type=float,
        default=100.0,
        help="built-in server: time to first token (default 100)",
    )
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=10.0,
        help="built-in server: time between chunks (default 10)",
    )
    parser.add_argument(
        "--tokens-per-chunk",
        type=int,
        default=1,
        help="built-in server: tokens per chunk (default 1)",
    )
    parser.add_argument(
        "--fault", default="", help="built-in server: faults to inject (comma-separated)"
    )
    parser.add_argument(
        "--locust-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass an argument to Locust as it is (repeatable)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show Locust's output")


def _optional(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for name in (
        "model",
        "prompt_file",
        "prompt_words",
        "slo_ttft_ms",
        "slo_tpot_ms",
        "slo_e2e_ms",
        "connect_timeout",
        "first_byte_timeout",
        "idle_timeout",
        "total_timeout",
        "arrival_rate",
        "requests_per_user",
    ):
        value = getattr(args, name, None)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out


@contextlib.contextmanager
def _target(args: argparse.Namespace) -> Iterator[tuple[str, dict[str, str]]]:
    """The API root and the environment for Locust: the given host, or a reference server."""
    env = dict(os.environ)
    if args.host:
        yield args.host, env
        return
    from ..server import DEFAULT_API_KEY, ReferenceServer, Timing

    timing = Timing(args.ttft_ms, args.gap_ms, args.tokens_per_chunk)
    faults = tuple(f.strip() for f in args.fault.split(",") if f.strip())
    with ReferenceServer(stall_cap_s=max(30.0, parse_duration(args.duration) + GRACE_S)) as srv:
        env["STREAMPROOF_API_KEY"] = DEFAULT_API_KEY
        yield srv.url_for(faults=faults, timing=timing, stamps=True), env


def _stop(proc: subprocess.Popen[Any]) -> None:
    """End Locust and any worker processes it forked (its whole process group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def run(args: argparse.Namespace) -> int:
    """Run the load test; print the summary table; 0 / 1 / 2 as in the module docstring."""
    duration = parse_duration(args.duration)
    summary_path = Path(args.summary_json)
    out_dir = summary_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        summary_path.unlink()
    users = max(1, args.users)
    with _target(args) as (host, env):
        register_secret(env.get("STREAMPROOF_API_KEY"))
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(locustfile_path()),
            "--headless",
            "--only-summary",
            "-u",
            str(users),
            "-r",
            str(args.spawn_rate or users),
            "-t",
            f"{max(1, math.ceil(duration))}s",
            "--stop-timeout",
            "0",
            "--host",
            host,
            "--api",
            args.api,
            "--max-tokens",
            str(args.max_tokens),
            "--prompts",
            args.prompts,
            "--validate",
            args.validate,
            "--shape",
            args.shape,
            "--summary-json",
            str(summary_path),
            "--csv",
            str(out_dir / "locust"),
            "--html",
            str(out_dir / "locust.html"),
            *_optional(args),
        ]
        if args.processes:
            command += ["--processes", str(args.processes)]
        command += list(args.locust_arg)
        log_path = out_dir / "locust.log"
        with log_path.open("wb") as log:
            sink: Any = None if args.verbose else log
            proc = subprocess.Popen(
                command, env=env, stdout=sink, stderr=sink, start_new_session=True
            )
            try:
                proc.wait(duration + GRACE_S)
            except subprocess.TimeoutExpired:
                print(f"streamproof: Locust overran {duration:g} s; stopped it", file=sys.stderr)
            except KeyboardInterrupt:
                print("streamproof: interrupted", file=sys.stderr)
            finally:
                _stop(proc)
    if not summary_path.exists():
        print(
            f"streamproof: the load run failed (exit status {proc.returncode}); Locust's "
            f"output: {log_path}",
            file=sys.stderr,
        )
        return 2
    summary = json.loads(summary_path.read_text("utf-8"))
    print(format_table(summary))
    print(f"\nsummary: {summary_path}  (requests.jsonl, locust.html beside it)")
    return 1 if summary["requests"]["failed"] else 0  # MUST violations are failures


def main(argv: list[str] | None = None) -> int:
    """``python -m streamproof.load.cli``: the same as ``streamproof load``."""
    parser = argparse.ArgumentParser(
        prog="streamproof load", description=__doc__.split("\n")[0], epilog=LOCUST_EPILOG
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
