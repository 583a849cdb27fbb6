"""``streamproof load``: a headless Locust run with sensible defaults, then the summary table.

    streamproof load                                  # the built-in reference server, 30 s
    streamproof load --host http://gw:8000/v1 --model m --users 16 --duration 2m --api mixed

Without ``--host`` it serves the reference server itself (in this process, on a free
127.0.0.1 port, with send stamps, so the client's own lateness is measured too). With one, the
setup is checked first (:mod:`streamproof.preflight`): the model (``GET /models`` without
``--model``), the key, the path — a mistake is one line and exit status 2, before Locust
starts. Locust runs as a child process (its gevent patching stays out of this one) in its own
process group, killed whole if it overruns ``--duration`` by more than a grace period; nothing
is left behind. The key and the extra headers reach Locust through the environment, never
its command line.

Exit status: 0 when every request completed, 1 when some failed (or broke a MUST rule),
2 when the run itself failed or ended early because every request failed (the reason is
printed), 130 when interrupted (the summary then says ``interrupted``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from ..endpoints import APIS, KEY_ENV
from ..redact import redact, register_secret
from .args import (
    API_CHOICES,
    HEADERS_ENV,
    PROMPT_CHOICES,
    SHAPE_CHOICES,
    parse_duration,
    run_folder,
)
from .metric_defs import SLO
from .summary import format_table

__all__ = [
    "LOCUST_EPILOG",
    "add_arguments",
    "duration",
    "locustfile_path",
    "parse_duration",
    "positive_int",
    "run",
]

GRACE_S: Final = 60.0
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


def duration(text: str) -> str:
    """An argparse type: a valid duration, kept as written (it is passed on as text)."""
    parse_duration(text)
    return text.strip()


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``load`` subcommand's options (``streamproof``'s ``cli.py`` calls this)."""
    parser.add_argument(
        "--host",
        help="API root, e.g. http://gw:8000/v1 (default: start the built-in reference server "
        "on a free 127.0.0.1 port)",
    )
    parser.add_argument(
        "--users", type=positive_int, default=4, help="concurrent users (default 4)"
    )
    parser.add_argument(
        "--spawn-rate", type=float, help="users started per second (default: all at once)"
    )
    parser.add_argument(
        "--duration", type=duration, default="30s", help="run time: 30s, 2m, 1h30m (default 30s)"
    )
    parser.add_argument(
        "--api",
        choices=API_CHOICES,
        default="openai",
        help="openai, anthropic, responses (OpenAI's /responses) or mixed (all three) "
        "(default openai)",
    )
    parser.add_argument(
        "--model",
        help="model name (default: the built-in server's; with "
        "--host, the first one GET {host}/models lists)",
    )
    parser.add_argument(
        "--api-key",
        help="API key, masked everywhere (default: STREAMPROOF_API_KEY, else "
        "OPENAI_API_KEY (openai, responses) / ANTHROPIC_API_KEY)",
    )
    parser.add_argument(
        "--anthropic-auth",
        choices=("x-api-key", "bearer"),
        default="x-api-key",
        help="how to send the Anthropic key (default x-api-key)",
    )
    parser.add_argument(
        "--auth-header", help="send the key raw in this header instead (e.g. api-key for Azure)"
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra request header, repeatable (values of secret-looking "
        "names are masked everywhere)",
    )
    parser.add_argument("--extra-body", help="a JSON object merged into every request body")
    parser.add_argument(
        "--max-tokens",
        type=positive_int,
        default=128,
        help="max_tokens of every request (responses: max_output_tokens, at least 16 "
        "there) (default 128)",
    )
    parser.add_argument(
        "--prompts", choices=PROMPT_CHOICES, default="short", help="prompt source (default short)"
    )
    parser.add_argument("--prompt-file", help="JSONL or ShareGPT file for --prompts jsonl/sharegpt")
    parser.add_argument(
        "--prompt-words", type=positive_int, help="words of a synthetic prompt (default 200)"
    )
    parser.add_argument(
        "--validate",
        choices=("on", "off"),
        default="on",
        help="check every stream against the rules (default on)",
    )
    for d in SLO:
        parser.add_argument(
            f"--slo-{d.name}-ms", type=float, help=f"goodput: {d.label} objective (default none)"
        )
    for name, help_text in (
        ("connect-timeout", "seconds to connect (default 10)"),
        ("first-byte-timeout", "seconds until the response headers (default 30)"),
        ("idle-timeout", "longest silence between two reads (default 30)"),
        ("total-timeout", "bound on one whole exchange (default 120)"),
    ):
        parser.add_argument(f"--{name}", type=float, help=help_text)
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="Locust worker processes (0: one process; -1: one per core) (default 0)",
    )
    parser.add_argument(
        "--arrival-rate", type=float, help="open loop: requests per second (default: closed loop)"
    )
    parser.add_argument(
        "--shape", choices=SHAPE_CHOICES, default="none", help="load shape (default none)"
    )
    parser.add_argument(
        "--requests-per-user",
        type=positive_int,
        help="end the run once every user sent this many (default: no limit)",
    )
    parser.add_argument(
        "--summary-json",
        help="summary file; requests.jsonl, Locust's CSV and HTML report go beside it "
        "(default: a folder of its own under reports/load/)",
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
        type=positive_int,
        default=1,
        help="built-in server: tokens per chunk (default 1)",
    )
    parser.add_argument(
        "--fault",
        default="",
        help="built-in server: faults to inject, comma-separated (default none)",
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
        *(f"slo_{d.key}" for d in SLO),
        "connect_timeout",
        "first_byte_timeout",
        "idle_timeout",
        "total_timeout",
        "arrival_rate",
        "requests_per_user",
        "auth_header",
        "extra_body",
    ):
        value = getattr(args, name, None)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out


class _Usage(Exception):
    """A setup mistake: one line, exit status 2."""


def _lead_api(api: str) -> str:
    """The API whose key and headers stand for the run: ``--api`` itself, ``openai`` for
    ``mixed``."""
    return "openai" if api == "mixed" else api


def _key(args: argparse.Namespace) -> str | None:
    if args.api_key:
        return args.api_key
    for name in KEY_ENV[_lead_api(args.api)]:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _preflight(args: argparse.Namespace, host: str, key: str | None) -> str:
    """Check the endpoint before Locust starts; returns the model to send."""
    from ..engine import Target
    from ..preflight import SetupError, Unreachable, discover_model, probe, probe_body
    from ..suite_options import UsageError, parse_header
    from .args import timeouts_of

    try:
        headers = tuple(parse_header(h) for h in args.header)
        extra = json.loads(args.extra_body) if args.extra_body else {}
    except (UsageError, json.JSONDecodeError) as exc:
        raise _Usage(f"--header / --extra-body: {exc}") from None
    if not isinstance(extra, dict):
        raise _Usage("--extra-body must be a JSON object")
    apis = APIS if args.api == "mixed" else (args.api,)
    timeouts = timeouts_of(args)
    target = Target(
        host, args.model or "", key, timeouts=timeouts, anthropic_auth=args.anthropic_auth,
        auth_header=args.auth_header, extra_headers=headers, extra_body=extra,
    )  # fmt: skip
    try:
        model = args.model or discover_model(
            host, target.headers(_lead_api(args.api), "key"), timeouts,
        )  # fmt: skip
        probe(
            host, apis, lambda api: target.headers(api, "key"),
            lambda api: target.body(probe_body(api, model)), timeouts=timeouts, explicit=True,
            given_key=bool(key),
        )  # fmt: skip
    except (SetupError, Unreachable) as exc:
        raise _Usage(str(exc)) from None
    return model


@contextlib.contextmanager
def _target(args: argparse.Namespace) -> Iterator[tuple[str, dict[str, str], str | None]]:
    """The API root, the environment for Locust and the model: the given host (checked
    first), or a reference server."""
    env = dict(os.environ)
    env.pop(HEADERS_ENV, None)
    if args.header:
        env[HEADERS_ENV] = json.dumps(args.header)
    if args.host:
        key = _key(args)
        if key:
            env["STREAMPROOF_API_KEY"] = key
        yield args.host, env, _preflight(args, args.host, key)
        return
    from ..server import DEFAULT_API_KEY, ReferenceServer, Timing
    from ..server.timing import TimingError

    try:
        timing = Timing(args.ttft_ms, args.gap_ms, args.tokens_per_chunk)
    except TimingError as exc:
        raise _Usage(str(exc)) from None
    faults = tuple(f.strip() for f in args.fault.split(",") if f.strip())
    with ReferenceServer(stall_cap_s=max(30.0, parse_duration(args.duration) + GRACE_S)) as srv:
        env["STREAMPROOF_API_KEY"] = args.api_key or DEFAULT_API_KEY
        try:
            url = srv.url_for(faults=faults, timing=timing, stamps=True)
        except ValueError as exc:
            raise _Usage(f"--fault: {exc} (streamproof serve --list-faults)") from None
        yield url, env, args.model


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


def _command(args: argparse.Namespace, host: str, model: str | None, summary: Path) -> list[str]:
    seconds = parse_duration(args.duration)
    out_dir = summary.parent
    command = [
        sys.executable, "-m", "locust", "-f", str(locustfile_path()),
        "--headless", "--only-summary",
        "-u", str(args.users), "-r", str(args.spawn_rate or args.users),
        "-t", f"{max(1, math.ceil(seconds))}s", "--stop-timeout", "0",
        "--host", host, "--api", args.api, "--max-tokens", str(args.max_tokens),
        "--prompts", args.prompts, "--validate", args.validate, "--shape", args.shape,
        "--anthropic-auth", args.anthropic_auth,
        "--summary-json", str(summary),
        "--csv", str(out_dir / "locust"), "--html", str(out_dir / "locust.html"),
        *_optional(args),
    ]  # fmt: skip
    if model and not args.model:
        command += ["--model", model]
    if args.processes:
        command += ["--processes", str(args.processes)]
    return command + list(args.locust_arg)


def run(args: argparse.Namespace) -> int:
    """Run the load test; print the summary table; 0 / 1 / 2 / 130 as in the docstring."""
    seconds = parse_duration(args.duration)
    summary_path = Path(args.summary_json) if args.summary_json else run_folder() / "summary.json"
    out_dir = summary_path.parent
    interrupted = False
    try:
        with _target(args) as (host, env, model):
            register_secret(env.get("STREAMPROOF_API_KEY"))
            out_dir.mkdir(parents=True, exist_ok=True)  # only once the target is set up
            with contextlib.suppress(FileNotFoundError):
                summary_path.unlink()
            log_path = out_dir / "locust.log"
            with log_path.open("wb") as log:
                sink: Any = None if args.verbose else log
                proc = subprocess.Popen(
                    _command(args, host, model, summary_path),
                    env=env, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )  # fmt: skip
                try:
                    proc.wait(seconds + GRACE_S)
                except subprocess.TimeoutExpired:
                    print(f"streamproof: Locust overran {seconds:g} s; stopped it",
                          file=sys.stderr)  # fmt: skip
                except KeyboardInterrupt:
                    interrupted = True
                    print("streamproof: interrupted; stopping Locust", file=sys.stderr)
                finally:
                    _stop(proc)
    except _Usage as exc:
        print(redact(f"streamproof: {exc}"), file=sys.stderr)
        return 2
    if not summary_path.exists():
        print(
            f"streamproof: the load run failed (exit status {proc.returncode}); Locust's "
            f"output: {log_path}",
            file=sys.stderr,
        )
        return 130 if interrupted else 2
    summary = json.loads(summary_path.read_text("utf-8"))
    summary["embedded"] = not args.host  # against a built-in server of its own
    if interrupted:
        summary["interrupted"] = True
    if interrupted or not args.host:
        tmp = summary_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        tmp.replace(summary_path)
    print(format_table(summary))
    print(f"\nsummary: {summary_path}  (requests.jsonl, locust.html beside it)")
    if interrupted:
        return 130
    if summary.get("stopped"):
        print(redact(f"streamproof: the run ended early: {summary['stopped']}"), file=sys.stderr)
        return 2
    return 1 if summary["requests"]["failed"] else 0  # MUST violations are failures


def main(argv: list[str] | None = None) -> int:
    """``python -m streamproof.load.cli``: the same as ``streamproof load``."""
    from ..cli import main as streamproof

    return streamproof(["load", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
