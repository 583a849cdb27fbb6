"""``streamproof``: run the suite, serve the reference server, check a recorded stream, list rules.

Exit statuses of ``run`` and ``check``: 0 when every MUST rule passed, 1 when one failed, 2 when
the endpoint could not be reached or the run itself failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .rules import catalogue

__all__ = ["main"]

_RUN_OPTIONS = (
    "base-url",
    "api-key",
    "model",
    "api",
    "report-dir",
    "connect-timeout",
    "first-byte-timeout",
    "idle-timeout",
    "total-timeout",
    "max-event-bytes",
    "scenario",
    "fault",
    "anthropic-auth",
)
_MARK = {"pass": "ok", "fail": "FAIL", "warn": "warn", "skip": "skip"}


def suite_dir() -> Path:
    """The conformance suite: packaged in the wheel, or ``conformance/`` of a checkout."""
    packaged = Path(__file__).resolve().parent / "_conformance"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "conformance"


def _cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    argv = [str(suite_dir()), "-q", "-p", "no:cacheprovider", "--no-header", "-rN"]
    for name in _RUN_OPTIONS:
        value = getattr(args, name.replace("-", "_"))
        if value is not None:
            argv += [f"--{name}", str(value)]
    if args.strict:
        argv.append("--strict")
    code = pytest.main(argv + extra)
    report_path = Path(args.report_dir or "reports") / "compliance.json"
    report = json.loads(report_path.read_text("utf-8")) if report_path.exists() else None
    if report is not None:
        connect = next(r for r in report["rules"] if r["id"] == "transport.connect")
        if connect["outcome"] == "fail" and code == 2:
            return 2  # pytest already printed the one line that says why
    if report is None or code not in (0, 1):
        print(f"streamproof: the run failed (pytest exit status {int(code)})", file=sys.stderr)
        return 2
    _print_table(report)
    print(f"\nreport: {report_path}")
    return 1 if report["verdict"] == "fail" else 0


def _print_table(report: dict) -> None:
    print(f"\n{'outcome':7} {'level':6} {'rule':32} scenarios")
    for entry in report["rules"]:
        counts: dict[str, int] = {}
        for s in entry["scenarios"]:
            counts[s["outcome"]] = counts.get(s["outcome"], 0) + 1
        seen = " ".join(f"{k}:{v}" for k, v in sorted(counts.items())) or "-"
        print(f"{_MARK[entry['outcome']]:7} {entry['level']:6} {entry['id']:32} {seen}")
        if entry["outcome"] in ("fail", "warn") and entry["message"]:
            print(f"{'':15}{entry['message']}")
    s = report["summary"]
    print(
        f"\n{s['rules']} rules: {s['pass']} passed, {s['fail']} failed, {s['warn']} warned, "
        f"{s['skip']} skipped — verdict {report['verdict'].upper()}"
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import DEFAULT_API_KEY, Timing, fault_table, run_server

    if args.list_faults:
        rows = fault_table()
        for row in rows:
            print(
                f"{row['name']:26} {row['api']:9} {','.join(row['rules']):40} {row['description']}"
            )
        return 0
    timing = Timing(
        ttft_ms=args.ttft_ms, gap_ms=args.gap_ms, tokens_per_chunk=args.tokens_per_chunk
    )
    run_server(args.host, args.port, args.api_key or DEFAULT_API_KEY, timing)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .capture import load_transcript
    from .engine import check_capture, infer_request

    path = Path(args.file)
    if not path.exists():
        print(f"streamproof: no such file: {path}", file=sys.stderr)
        return 2
    cap = load_transcript(path)
    request = cap.request_body if isinstance(cap.request_body, dict) else None
    if args.request:
        request = json.loads(Path(args.request).read_text("utf-8"))
    if request is None:
        request = infer_request(args.api, cap.events)
    findings, _, _ = check_capture(args.api, cap, request)
    for finding in findings:
        if args.json:
            out = {k: v for k, v in finding.as_dict().items() if k != "excerpt"}
            print(json.dumps(out))
        else:
            print(finding)
    if not args.json:
        must = sum(f.level == "MUST" for f in findings)
        print(f"{len(cap.events)} events, {len(findings)} finding(s), {must} MUST")
    return 1 if any(f.level == "MUST" for f in findings) else 0


def _cmd_rules(args: argparse.Namespace) -> int:
    rules = list(catalogue().values())
    if args.json:
        print(json.dumps([r.as_dict() for r in rules], indent=2))
        return 0
    for r in rules:
        print(f"{r.id:30} {r.level:6} {r.group:10} {r.title}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamproof", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"streamproof {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run the conformance suite (default: against the built-in reference server)",
        description="Runs the conformance suite; unknown arguments go to pytest.",
    )
    for name in _RUN_OPTIONS:
        run.add_argument(f"--{name}")
    run.add_argument("--strict", action="store_true", help="fail on SHOULD findings too")

    serve = sub.add_parser("serve", help="run the reference server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", help="the key the server accepts")
    serve.add_argument("--ttft-ms", type=float, default=20.0)
    serve.add_argument("--gap-ms", type=float, default=2.0)
    serve.add_argument("--tokens-per-chunk", type=int, default=1)
    serve.add_argument("--list-faults", action="store_true", help="list the injectable faults")

    check = sub.add_parser("check", help="validate a recorded .sse body offline")
    check.add_argument("file")
    check.add_argument("--api", choices=("openai", "anthropic"), required=True)
    check.add_argument("--request", help="JSON file with the request body that produced it")
    check.add_argument("--json", action="store_true", help="one JSON finding per line")

    rules = sub.add_parser("rules", help="list the rule catalogue")
    rules.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "run":
            return _cmd_run(args, extra)
        if args.command == "serve":
            return _cmd_serve(args)
        if args.command == "check":
            return _cmd_check(args)
        return _cmd_rules(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
