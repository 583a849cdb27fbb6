"""The pytest side of the suite: options, one test item per (scenario, rule), reports.

Thin on purpose: scenarios run through :mod:`streamproof.engine`; this module only turns
their outcomes into pytest outcomes (MUST → failure, SHOULD → warning unless ``--strict``,
missing occasion → skip with the reason) and writes ``compliance.json`` at the end.
Options resolve command line > environment > ini, as pytest-base-url does.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from .capture import Timeouts
from .engine import Runner, ScenarioResult, Target, outcome
from .redact import redact
from .reporting.compliance import ComplianceLog
from .scenarios import Scenario, scenarios_for

# The hooks and the fixture are re-exported by the suite's conftest.py.
__all__ = [
    "RuleCase",
    "StreamproofWarning",
    "conformance",
    "pytest_addoption",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_report_header",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
]

APIS = ("openai", "anthropic", "all")


class StreamproofWarning(UserWarning):
    """A SHOULD rule was broken: reported, and a failure only with ``--strict``."""


@dataclass(frozen=True)
class RuleCase:
    scenario: Scenario
    rule_id: str

    @property
    def id(self) -> str:
        return f"{self.scenario.api}/{self.scenario.name}/{self.rule_id}"


# name, env var, help, default, type
_OPTIONS: list[tuple[str, str | None, str, Any, type]] = [
    (
        "base-url",
        "STREAMPROOF_BASE_URL",
        "API root of the endpoint, e.g. http://host:8000/v1 (default: start the built-in "
        "reference server)",
        None,
        str,
    ),
    ("api-key", None, "API key (default: OPENAI_API_KEY / ANTHROPIC_API_KEY)", None, str),
    ("model", "STREAMPROOF_MODEL", "model name to request", None, str),
    ("api", "STREAMPROOF_API", "openai, anthropic or all", "all", str),
    ("report-dir", "STREAMPROOF_REPORT_DIR", "where reports are written", "reports", str),
    ("connect-timeout", "STREAMPROOF_CONNECT_TIMEOUT", "seconds to connect", 10.0, float),
    (
        "first-byte-timeout",
        "STREAMPROOF_FIRST_BYTE_TIMEOUT",
        "seconds until the response headers",
        30.0,
        float,
    ),
    ("idle-timeout", "STREAMPROOF_IDLE_TIMEOUT", "longest gap between reads, seconds", 30.0, float),
    ("total-timeout", "STREAMPROOF_TOTAL_TIMEOUT", "seconds for a whole exchange", 120.0, float),
    (
        "max-event-bytes",
        "STREAMPROOF_MAX_EVENT_BYTES",
        "bound on one SSE line/event (sse.max-event)",
        16 * 1024 * 1024,
        int,
    ),
    (
        "scenario",
        "STREAMPROOF_SCENARIO",
        "run only these scenarios (comma-separated names, e.g. plain,tool)",
        None,
        str,
    ),
    (
        "fault",
        "STREAMPROOF_FAULT",
        "built-in server only: comma-separated fault names to inject",
        None,
        str,
    ),
    (
        "anthropic-auth",
        "STREAMPROOF_ANTHROPIC_AUTH",
        "how to send the Anthropic key: x-api-key or bearer",
        "x-api-key",
        str,
    ),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("streamproof", "streamproof conformance suite")
    for name, env, help_text, _default, _ in _OPTIONS:
        dest = "streamproof_" + name.replace("-", "_")
        env_note = f" [env {env}]" if env else ""
        group.addoption(f"--{name}", dest=dest, default=None, help=f"{help_text}{env_note}")
        parser.addini(dest, help=help_text, default=None)


def _option(config: pytest.Config, name: str) -> Any:
    _, env, _, default, kind = next(o for o in _OPTIONS if o[0] == name)
    dest = "streamproof_" + name.replace("-", "_")
    value = config.getoption(dest) or (os.environ.get(env) if env else None) or config.getini(dest)
    if value in (None, ""):
        return default
    try:
        return kind(value)
    except ValueError:
        raise pytest.UsageError(f"--{name}: not a valid {kind.__name__}: {value!r}") from None


def _apis(config: pytest.Config) -> tuple[str, ...]:
    api = _option(config, "api")
    if api not in APIS:
        raise pytest.UsageError(f"--api must be one of {', '.join(APIS)}, not {api!r}")
    return ("openai", "anthropic") if api == "all" else (api,)


class Conformance:
    """Per-session state: the target (starting the built-in server if needed), results, log."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.apis = _apis(config)
        # pytest owns --strict ("enable all strictness"); here it also makes SHOULD fail
        self.strict = bool(config.getoption("strict", False)) or os.environ.get(
            "STREAMPROOF_STRICT", ""
        ).lower() in ("1", "true", "yes")
        self.report_dir = Path(_option(config, "report-dir"))
        self.log = ComplianceLog(self.apis)
        self.server: Any = None
        self._runner: Runner | None = None
        self.embedded = not _option(config, "base-url")

    def target(self) -> Target:
        base_url = _option(self.config, "base-url")
        key = _option(self.config, "api-key")
        model = _option(self.config, "model")
        faults = [f for f in (_option(self.config, "fault") or "").split(",") if f]
        if base_url is None:
            from .server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer

            key = key or DEFAULT_API_KEY
            self.server = ReferenceServer(api_key=key).start()
            base_url = self.server.url_for(faults=tuple(faults))
            model = model or DEFAULT_MODEL
        else:
            if faults:
                raise pytest.UsageError("--fault applies to the built-in server only")
            key = key or os.environ.get(
                "ANTHROPIC_API_KEY" if self.apis == ("anthropic",) else "OPENAI_API_KEY"
            )
            if not model:
                raise pytest.UsageError("--model is required with --base-url")
        return Target(
            base_url=base_url,
            model=model,
            api_key=key,
            timeouts=Timeouts(
                connect=_option(self.config, "connect-timeout"),
                first_byte=_option(self.config, "first-byte-timeout"),
                idle=_option(self.config, "idle-timeout"),
                total=_option(self.config, "total-timeout"),
            ),
            max_event_bytes=_option(self.config, "max-event-bytes"),
            anthropic_auth=_option(self.config, "anthropic-auth"),
        )

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = Runner(self.target())
        return self._runner

    def check(self, case: RuleCase) -> None:
        scenario_result = self.runner.result(case.scenario)
        self._stop_if_unreachable(scenario_result)
        result = outcome(scenario_result, case.rule_id)
        self.log.add(case.rule_id, case.scenario.id, result)
        detail = f"{result.message}\n{result.excerpt}" if result.excerpt else result.message
        if result.outcome == "fail":
            pytest.fail(detail, pytrace=False)
        elif result.outcome == "warn":
            if self.strict:
                pytest.fail(detail + "\n(SHOULD rule; failing because of --strict)", pytrace=False)
            warnings.warn(StreamproofWarning(detail), stacklevel=1)
        elif result.outcome == "skip":
            pytest.skip(result.message)

    def _stop_if_unreachable(self, result: ScenarioResult) -> None:
        """Nothing ever connected: one clear line and exit status 2, not hundreds of failures."""
        refused = [f for f in result.findings if f.rule == "transport.connect"]
        if refused and not any(
            r.capture is not None and r.capture.status is not None
            for r in self.runner.results.values()
        ):
            self.log.add(
                "transport.connect", result.scenario.id, outcome(result, "transport.connect")
            )
            pytest.exit(
                f"streamproof: cannot reach {redact(self.runner.target.base_url)}: "
                f"{refused[0].message}",
                returncode=2,
            )

    def finish(self) -> dict[str, Any] | None:
        if self._runner is None:
            return None
        target = self._runner.target
        report = self.log.write(
            self.report_dir / "compliance.json",
            {
                "base_url": target.base_url,
                "model": target.model,
                "apis": list(self.apis),
                "embedded": self.embedded,
            },
            {
                "strict": self.strict,
                "timeouts": asdict(target.timeouts),
                "max_event_bytes": target.max_event_bytes,
            },
        )
        self._runner.close()
        if self.server is not None:
            self.server.stop()
        return report


_KEY = pytest.StashKey[Conformance]()
_REPORT = pytest.StashKey[dict]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KEY] = Conformance(config)
    config.addinivalue_line("markers", "streamproof: a conformance rule check")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "rule_case" not in metafunc.fixturenames:
        return
    conformance = metafunc.config.stash[_KEY]
    wanted = {n for n in (_option(metafunc.config, "scenario") or "").split(",") if n}
    selected = [s for api in conformance.apis for s in scenarios_for(api)]
    if wanted:
        unknown = wanted - {s.name for s in selected}
        if unknown:
            raise pytest.UsageError(f"--scenario: unknown scenario(s) {', '.join(sorted(unknown))}")
        selected = [s for s in selected if s.name in wanted]
    cases = [RuleCase(scenario, rule_id) for scenario in selected for rule_id in scenario.rules]
    metafunc.parametrize("rule_case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def conformance(request: pytest.FixtureRequest) -> Conformance:
    """The session's conformance state (target, cached scenario results, compliance log)."""
    return request.config.stash[_KEY]


def pytest_report_header(config: pytest.Config) -> list[str]:
    conformance = config.stash[_KEY]
    where = _option(config, "base-url") or "built-in reference server (127.0.0.1, free port)"
    return [f"streamproof: {redact(where)} · api {', '.join(conformance.apis)}"]


def pytest_sessionfinish(session: pytest.Session) -> None:
    report = session.config.stash[_KEY].finish()
    if report is not None:
        session.config.stash[_REPORT] = report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT, None)
    if report is None:
        return
    tr = terminalreporter
    tr.section("streamproof compliance")
    for entry in report["rules"]:
        if entry["outcome"] in ("fail", "warn"):
            tr.write_line(
                f"{entry['outcome'].upper():5} {entry['level']:6} {entry['id']}: {entry['message']}"
            )
    s = report["summary"]
    tr.write_line(
        f"{s['rules']} rules: {s['pass']} passed, {s['fail']} failed, {s['warn']} warned, "
        f"{s['skip']} skipped · verdict {report['verdict'].upper()} · "
        f"{config.stash[_KEY].report_dir / 'compliance.json'}"
    )
