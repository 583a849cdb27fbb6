"""``streamproof``: run the suite, serve the reference server, check a recorded stream, list rules,
render and compare reports.

``streamproof run`` does the whole job: the conformance suite (pytest, in this process), a
short load run (``--no-load`` to skip it), then every report into ``--report-dir``:
``compliance.json``, ``compliance.md``, ``index.html``, ``junit.xml`` (and Allure results
with ``--alluredir``, passed on to pytest).

Exit statuses of ``run`` and ``check``: 0 when every MUST rule passed, 1 when one failed (or,
with ``--strict``, a SHOULD rule warned), 3 when streamproof itself failed (a check raised:
the report's ``tool_errors``), 2 for a usage or setup mistake (one line saying what
to fix), when the endpoint could not be reached or the run itself failed, 130 when it was
interrupted (Ctrl-C, SIGTERM: the reports then say ``interrupted``). ``diff``: 1 when
something regressed, 2 when a report cannot be read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .endpoints import APIS, KEY_ENV
from .load.cli import duration, positive_int
from .redact import is_secret_name, looks_like_key, redact, register_secret
from .rules import catalogue
from .server.endpoint import DEFAULT_API_KEY
from .suite_options import OPTIONS

__all__ = ["main"]

# the environment variables a key may come from (masked in check's output too)
_KEY_VARS = tuple(dict.fromkeys(v for names in KEY_ENV.values() for v in names))
# streamproof run's own names for plugin options whose pytest names would clash with pytest's
_RENAMED = {"select": "select-rules", "ignore": "ignore-rules", "config": "streamproof-config"}
_MARK = {"pass": "ok", "fail": "FAIL", "warn": "warn", "skip": "skip", "waived": "waived"}
DEFAULT_LOAD_DURATION = "10s"
DEFAULT_LOAD_USERS = 4


def _err(text: str) -> None:
    """One line on stderr, with every known secret masked."""
    print(redact(text), file=sys.stderr)


def suite_dir() -> Path:
    """The conformance suite: packaged in the wheel, or ``conformance/`` of a checkout."""
    packaged = Path(__file__).resolve().parent / "_conformance"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "conformance"


def _option_value(extra: list[str], *names: str) -> str | None:
    """The value of a pytest option passed through (``--name V`` or ``--name=V``)."""
    for i, arg in enumerate(extra):
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
            if arg == name and i + 1 < len(extra):
                return extra[i + 1]
    return None


def _cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    report_dir = Path(args.report_dir or "reports")
    argv = [str(suite_dir()), "-q", "-p", "no:cacheprovider", "--no-header", "-rN"]
    # this process imported httpx (and so anyio, a pytest plugin) before pytest started:
    # pytest's note that it cannot rewrite anyio's asserts is noise for the suite
    argv += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    for option in OPTIONS:
        value = getattr(args, option.name.replace("-", "_"), None)
        for one in (value or []) if option.repeat else [value]:
            if one is not None:
                argv += [f"--{option.name}", str(one)]
    for name, plugin_name in _RENAMED.items():
        value = getattr(args, name)
        if value:
            argv += [f"--{plugin_name}", ",".join(value) if isinstance(value, list) else value]
    if args.strict:
        argv.append("--strict")
    junit = _option_value(extra, "--junitxml", "--junit-xml")
    if junit is None:
        junit = str(report_dir / "junit.xml")
        argv.append(f"--junitxml={junit}")
    report_path = report_dir / "compliance.json"
    with contextlib.suppress(FileNotFoundError):
        report_path.unlink()  # never mistake an earlier run's report for this one's
    code = pytest.main(argv + extra)
    report = json.loads(report_path.read_text("utf-8")) if report_path.exists() else None
    if code == pytest.ExitCode.USAGE_ERROR:
        return 2  # pytest printed the one line that says what to fix
    if report is not None and report.get("tool_errors"):
        _print_table(report)
        _err(f"streamproof: {report['error']}")
        return 3
    if report is not None and report["verdict"] == "error" and code == 2:
        return 2  # pytest already printed the one line that says why
    if report is not None and report["verdict"] == "interrupted":
        _print_table(report)
        print("streamproof: interrupted; the reports say so", file=sys.stderr)
        return 130
    if report is None or code not in (0, 1):
        _err(f"streamproof: the run failed (pytest exit status {int(code)})")
        return 2
    from .reporting import write_reports
    from .reporting.load import read_load

    load_failed = False
    try:
        if not args.no_load:
            load_failed = not attach_load_run(report, args, report_dir)
    except KeyboardInterrupt:
        report["verdict"] = "interrupted"
        write_reports(report_dir, report)
        print("streamproof: interrupted during the load run; the reports say so", file=sys.stderr)
        return 130
    load = read_load(report_dir / "load") if report.get("load") else None
    paths = write_reports(report_dir, report, load)
    _print_table(report)
    print(f"\nHTML report: {paths['html']}")
    print(f"also: {paths['json']} · {paths['markdown']} · {junit}")
    if report["verdict"] == "interrupted":
        _err("streamproof: interrupted during the load run; the reports say so")
        return 130
    if load_failed:
        print("streamproof: the load run failed; see above", file=sys.stderr)
        return 2
    return 1 if report["verdict"] == "fail" else 0


@contextlib.contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    """Set environment variables for the duration (the load run reads its key from there)."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is not None:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_arguments(args: argparse.Namespace, report_dir: Path) -> list[str]:
    """The ``streamproof load`` command line of the load run that follows the suite."""
    apis = {"all": "mixed", "openai": "openai", "anthropic": "anthropic", "responses": "responses"}
    argv = [
        "--duration", args.load_duration,
        "--users", str(args.load_users),
        "--api", apis.get(args.api or "all", "mixed"),
        "--summary-json", str(report_dir / "load" / "summary.json"),
    ]  # fmt: skip
    if args.base_url:
        argv += ["--host", args.base_url]
    for name in (
        "model", "fault", "connect-timeout", "first-byte-timeout", "idle-timeout",
        "total-timeout", "anthropic-auth", "auth-header", "extra-body",
    ):  # fmt: skip
        value = getattr(args, name.replace("-", "_"), None)
        if value is not None:
            argv += [f"--{name}", str(value)]
    for header in args.header or ():
        argv += ["--header", header]
    return argv


def run_load(args: argparse.Namespace, report_dir: Path) -> int:
    """The short load run of ``streamproof run``: ``streamproof.load.cli.run`` (Locust in a
    child process) writing ``<report-dir>/load/``. Returns its exit status (2: no summary)."""
    try:
        from .load import cli as load_cli
    except ImportError as exc:
        _err(f"streamproof: the load run is not available ({exc})")
        return 2
    parser = argparse.ArgumentParser(prog="streamproof load", add_help=False)
    load_cli.add_arguments(parser)
    namespace = parser.parse_args(load_arguments(args, report_dir))
    print(f"\n— load run: {args.load_duration}, {args.load_users} users —", flush=True)
    key = args.api_key if args.base_url else None
    with _environ(STREAMPROOF_API_KEY=key):
        return int(load_cli.run(namespace))


def attach_load_run(report: dict[str, Any], args: argparse.Namespace, report_dir: Path) -> bool:
    """Run the load test and put its summary into ``report["load"]``; False if it failed."""
    from .reporting.load import load_section, read_load

    status = run_load(args, report_dir)
    if status == 130:  # interrupted: what it measured is kept, and the verdict says so
        report["verdict"] = "interrupted"
    data = read_load(report_dir / "load") if status != 2 else None
    if data is None:
        return status == 130
    report["load"] = load_section(
        data,
        report_dir,
        duration=args.load_duration,
        users=args.load_users,
        exit_status=status,
    )
    return True


def _print_table(report: dict) -> None:
    print(f"\n{'outcome':7} {'level':6} {'rule':32} scenarios")
    for entry in report["rules"]:
        counts: dict[str, int] = {}
        for s in entry["scenarios"]:
            counts[s["outcome"]] = counts.get(s["outcome"], 0) + 1
        seen = " ".join(f"{k}:{v}" for k, v in sorted(counts.items())) or "-"
        print(f"{_MARK[entry['outcome']]:7} {entry['level']:6} {entry['id']:32} {seen}")
        if entry["outcome"] in ("fail", "warn", "waived") and entry["message"]:
            print(f"{'':15}{entry['message']}")
        if entry["outcome"] == "waived" and entry.get("waiver"):
            print(f"{'':15}waived: {entry['waiver']['reason']}")
    s = report["summary"]
    print(
        f"\n{s['rules']} rules: {s['pass']} passed, {s['fail']} failed, {s['warn']} warned, "
        f"{s.get('waived', 0)} waived, {s['skip']} skipped — verdict {report['verdict'].upper()}"
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from .reporting import write_reports
    from .reporting.compliance import read_report
    from .reporting.load import find_load_dir, load_section, read_load, same_target

    report_dir = Path(args.report_dir)
    try:
        report = read_report(report_dir / "compliance.json")
    except ValueError as exc:
        _err(f"streamproof: {exc}")
        return 2
    load_dir = Path(args.load_dir) if args.load_dir else find_load_dir(report_dir / "load")
    load = None if args.no_load or load_dir is None else read_load(load_dir)
    if load is not None:
        why_not = same_target(report, load.summary)
        if why_not is not None:
            _err(f"streamproof: not merging the load run in {load_dir}: {why_not}")
            load = None
    if load is not None:
        report["load"] = load_section(load, report_dir, **(report.get("load") or {}).get("run", {}))
    elif args.no_load:
        report["load"] = None
    paths = write_reports(report_dir, report, load)
    print(f"HTML report: {paths['html']}")
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from .reporting.compliance import read_report
    from .reporting.diff import diff_reports, format_diff, parse_threshold

    try:
        threshold = parse_threshold(args.threshold)
        old, new = read_report(Path(args.old)), read_report(Path(args.new))
    except ValueError as exc:
        _err(f"streamproof: {exc}")
        return 2
    diff = diff_reports(old, new, threshold)
    if args.format == "json":
        print(json.dumps(diff.as_dict(), indent=2))
    else:
        print(format_diff(diff, markdown=args.format == "markdown"))
    return 1 if diff.regressed else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import FAULTS, Timing, fault_table, run_server
    from .server.timing import TimingError

    if args.list_faults:
        for row in fault_table():
            rules = row["rules"] or "(valid edge: trips nothing)"
            print(f"{row['name']:36} {row['api']:9} {row['scenario']:14} {rules}")
            print(f"{'':36} {row['description']}")
        return 0
    try:
        timing = Timing(
            ttft_ms=args.ttft_ms,
            gap_ms=args.gap_ms,
            tokens_per_chunk=args.tokens_per_chunk,
            ttfb_ms=args.ttfb_ms,
        )
    except TimingError as exc:
        _err(f"streamproof serve: {exc}")
        return 2
    key = None if args.no_auth else args.api_key or DEFAULT_API_KEY
    script = None
    if args.script:
        from .server.script import Script, ScriptError

        try:
            script = Script.load(args.script)
        except ScriptError as exc:
            _err(f"streamproof serve: script {exc}")
            return 2
    context = None
    if args.tls_cert:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            _err(f"streamproof serve: cannot load the TLS certificate: {exc}")
            return 2

    def ready(base_url: str) -> None:
        print(f"streamproof reference server: {base_url}", flush=True)
        if key is None:
            print("  no key needed (--no-auth)", flush=True)
        else:
            print(f"  key: {key}  (Authorization: Bearer, or x-api-key)", flush=True)
        print(f"  faults: put /fault/<name> before /v1 ({len(FAULTS)} faults: --list-faults)")
        if script is not None:
            print(f"  script: {len(script)} rule(s) from {args.script}", flush=True)
        print(f"  try: streamproof run --base-url {base_url}" + ("" if key is None else
              f" --api-key {key}"))  # fmt: skip
        print("ready; Ctrl-C stops it", flush=True)

    try:
        run_server(args.host, args.port, key, timing, on_ready=ready, ssl_context=context,
                   script=script)  # fmt: skip
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        _err(f"streamproof serve: cannot listen on {args.host}:{args.port}: {reason}")
        return 2
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .engine import check_file

    for secret in (*args.secret, *map(os.environ.get, _KEY_VARS)):
        register_secret(secret)
    path = Path(args.file)
    if not path.exists():
        _err(f"streamproof: no such file: {path}")
        return 2
    request = None
    if args.request:
        try:
            request = json.loads(Path(args.request).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            _err(f"streamproof: cannot read --request {args.request}: {exc}")
            return 2
    try:
        findings, cap, crashes = check_file(args.api, path, request)
    except (OSError, ValueError) as exc:
        _err(f"streamproof: cannot read the transcript {path}: {exc}")
        return 2
    if crashes:
        _err(f"streamproof: a bug in the tool, not the stream's finding (please report it):\n"
             f"{crashes[0]}")  # fmt: skip
        return 3
    for finding in findings:
        if args.json:
            out = {k: v for k, v in finding.as_dict().items() if k != "excerpt"}
            print(redact(json.dumps(out)))
        else:
            print(redact(str(finding)))
    if not args.json:
        must = sum(f.level == "MUST" for f in findings)
        print(f"{cap.events_total} events, {len(findings)} finding(s), {must} MUST")
    return 1 if any(f.level == "MUST" for f in findings) else 0


def _cmd_rules(args: argparse.Namespace) -> int:
    rules = list(catalogue().values())
    if args.json:
        print(json.dumps([r.as_dict() for r in rules], indent=2))
        return 0
    for r in rules:
        print(f"{r.id:30} {r.level:6} {r.group:10} {r.title}")
        if r.breaks:
            print(f"{'':48}breaks: {r.breaks}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with its error messages passed through :func:`redact` (a mistyped option
    next to ``--api-key sk-...`` must not print the key) and one line of usage hint."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {redact(message)} (see {self.prog} --help)\n")


def _secrets_in(argv: Sequence[str]) -> None:
    """Register the values of secret-looking options (``--api-key``, a ``--header`` of a
    secret-looking name, ``--locust-arg=--api-key=...``) before anything may print them."""
    args = list(argv)
    for i, arg in enumerate(args):
        for token in (arg, arg.partition("=")[2]):
            if looks_like_key(token):  # a key given where it does not belong
                register_secret(token)
        name, eq, value = arg.partition("=")
        if not name.startswith("--"):
            continue
        if not eq:
            value = args[i + 1] if i + 1 < len(args) else ""
        if name == "--header":
            header, _, header_value = value.partition(":")
            if is_secret_name(header.strip()):
                register_secret(header_value.strip())
        elif name == "--locust-arg":
            _secrets_in([value])
        elif is_secret_name(name[2:]):
            register_secret(value)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamproof", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"streamproof {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run the conformance suite (default: against the built-in reference server)",
        description="Runs the conformance suite, a short load run, and writes the reports. "
        "Arguments it does not know go to pytest (e.g. -k, -x, --alluredir DIR).",
    )
    for option in OPTIONS:
        if option.name in _RENAMED.values():
            continue
        default = f" (default {option.default})" if option.default is not None else ""
        run.add_argument(
            f"--{option.name}",
            action="append" if option.repeat else "store",
            help=option.help + default,
        )
    run.add_argument("--strict", action="store_true", help="fail on SHOULD findings too")
    run.add_argument("--select", action="append", metavar="RULES",
                     help="check only these rules: ids, groups, APIs or patterns "
                     "(comma-separated, repeatable; default: all)")  # fmt: skip
    run.add_argument("--ignore", action="append", metavar="RULES",
                     help="never check these rules (same forms as --select)")  # fmt: skip
    run.add_argument("--config", help="streamproof.toml (select, ignore, [waivers]) "
                     "(default ./streamproof.toml, else [tool.streamproof] in "
                     "./pyproject.toml)")  # fmt: skip
    run.add_argument("--no-load", action="store_true", help="skip the load run")
    run.add_argument(
        "--load-duration",
        default=DEFAULT_LOAD_DURATION,
        type=duration,
        help=f"length of the load run: 30s, 2m, 1h30m (default {DEFAULT_LOAD_DURATION})",
    )
    run.add_argument(
        "--load-users",
        type=positive_int,
        default=DEFAULT_LOAD_USERS,
        help=f"concurrent users of the load run (default {DEFAULT_LOAD_USERS})",
    )

    serve = sub.add_parser(
        "serve",
        help="run the reference server (a correct streaming API, with faults on request)",
        description="Serves the OpenAI and Anthropic streaming APIs correctly, with scripted "
        "timing; put /fault/<name> before /v1 in the base URL to break a rule on purpose.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on "
                       "(default 127.0.0.1)")  # fmt: skip
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--api-key", help=f"the key it accepts (default {DEFAULT_API_KEY})")
    serve.add_argument("--no-auth", action="store_true", help="accept requests without a key")
    serve.add_argument("--ttft-ms", type=float, default=20.0,
                       help="time to the first token, ms (default 20)")  # fmt: skip
    serve.add_argument("--gap-ms", type=float, default=2.0,
                       help="time between chunks, ms (default 2)")  # fmt: skip
    serve.add_argument("--tokens-per-chunk", type=positive_int, default=1,
                       help="words per content chunk (default 1)")  # fmt: skip
    serve.add_argument("--ttfb-ms", type=float, default=0.0,
                       help="time to a stream's response headers, ms, at most --ttft-ms "
                       "(default 0: at once)")  # fmt: skip
    serve.add_argument("--list-faults", action="store_true", help="list the injectable faults")
    serve.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain)")
    serve.add_argument("--tls-key", help="its PEM private key (if not in the --tls-cert file)")
    serve.add_argument("--script", metavar="FILE", help="scripted replies (JSON or YAML): "
                       "match the last user message or the tools, answer with text, tool "
                       "calls, reasoning, usage, timing and faults (README: mock LLM)")  # fmt: skip

    check = sub.add_parser(
        "check",
        help="validate a recorded .sse body offline",
        description="Checks a recorded stream (a .sse body, with its .json sidecar when "
        "there is one) against the rules of one API.",
    )
    check.add_argument("file", help="the .sse body (or its .json sidecar)")
    check.add_argument("--api", choices=APIS, required=True,
                       help="the API the stream answers")  # fmt: skip
    check.add_argument("--request", help="JSON file with the request body that produced it "
                       "(default: from the sidecar, else inferred from the stream)")  # fmt: skip
    check.add_argument("--json", action="store_true", help="one JSON finding per line")
    check.add_argument("--secret", action="append", default=[], metavar="TEXT",
                       help="a value to mask in the output, e.g. the key of the recorded "
                       "request, in case the server echoed it (repeatable; the keys in "
                       f"{', '.join(_KEY_VARS)} are masked without it)")  # fmt: skip

    from .load.cli import LOCUST_EPILOG
    from .load.cli import add_arguments as add_load_arguments

    load = sub.add_parser(
        "load",
        help="load test (Locust, headless): TTFT, inter-token latency, throughput",
        description="A headless Locust run; writes reports/load/summary.json and more.",
        epilog=LOCUST_EPILOG,
    )
    add_load_arguments(load)

    rules = sub.add_parser("rules", help="list the rule catalogue",
                           description="Every rule: id, level, group, title, and for MUST "
                           "rules what breaks.")  # fmt: skip
    rules.add_argument("--json", action="store_true", help="as JSON (id, level, group, apis, "
                       "title, source, breaks)")  # fmt: skip

    report = sub.add_parser(
        "report",
        help="render compliance.md and index.html again from compliance.json (and load/)",
        description="Renders the reports again from compliance.json; merges a load run found "
        "in --load-dir when it ran against the suite's host.",
    )
    report.add_argument("--report-dir", default="reports",
                        help="where compliance.json is (default reports)")  # fmt: skip
    report.add_argument("--load-dir", help="a load run's directory (default: the newest run "
                        "under REPORT_DIR/load)")  # fmt: skip
    report.add_argument("--no-load", action="store_true", help="leave any load run out")

    diff = sub.add_parser(
        "diff",
        help="compare two compliance.json files: regressed, fixed and changed rules",
        description="Compares two reports rule by rule (and their load runs); exit status 1 "
        "when something regressed.",
    )
    diff.add_argument("old", help="the baseline compliance.json")
    diff.add_argument("new", help="the compliance.json to judge")
    diff.add_argument(
        "--threshold",
        default="10%",
        help="relative change of a load metric that counts (default 10%%)",
    )
    diff.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                      help="output format (default text)")  # fmt: skip
    return parser


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a run as Ctrl-C does: reports say "interrupted"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _secrets_in(argv)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    with contextlib.suppress(ValueError):  # only in the main thread
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "run":
            return _cmd_run(args, extra)
        if args.command == "serve":
            return _cmd_serve(args)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "load":
            from .load.cli import run as run_load_command

            return int(run_load_command(args))
        if args.command == "diff":
            return _cmd_diff(args)
        return _cmd_rules(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `streamproof rules | head`: the reader left; so do we
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
