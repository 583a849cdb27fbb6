"""The pytest side of the suite: options, one test item per (scenario, rule), reports.

Thin on purpose: scenarios run through :mod:`streamproof.engine`; this module only turns
their outcomes into pytest outcomes (MUST → failure, SHOULD → warning unless ``--strict``,
missing occasion → skip with the reason, waived → xfail with the reason) and hands the
outcomes to :mod:`streamproof.reporting`, which writes ``compliance.json``,
``compliance.md`` and ``index.html`` at the end, polishes ``--junitxml`` and, with
``--alluredir``, describes each check to Allure. Options resolve command line > environment
> ini, as pytest-base-url does.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from .capture import Timeouts
from .engine import RuleOutcome, Runner, ScenarioResult, Target, outcome
from .redact import redact
from .reporting import write_reports
from .reporting.allure_results import allure_active, annotate
from .reporting.compliance import ComplianceLog
from .reporting.config import ConfigError, load_config, selected_rules, split_tokens
from .reporting.evidence import transcript
from .reporting.junit import JUnitCase, polish_junit
from .rules import rule
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

    def __repr__(self) -> str:  # stable across runs (Allure's history id is built from it)
        return self.id


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
    (
        "select-rules",
        "STREAMPROOF_SELECT",
        "check only these rules: ids, groups, APIs or patterns (openai.usage-*), comma-separated",
        None,
        str,
    ),
    (
        "ignore-rules",
        "STREAMPROOF_IGNORE",
        "never check these rules (same forms as --select-rules)",
        None,
        str,
    ),
    (
        "streamproof-config",
        "STREAMPROOF_CONFIG",
        "config file with select, ignore and [waivers] (default: ./streamproof.toml, else "
        "[tool.streamproof] in ./pyproject.toml)",
        None,
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
        try:
            settings = load_config(_option(config, "streamproof-config"))
            self.settings = settings.with_overrides(
                split_tokens(_option(config, "select-rules")),
                split_tokens(_option(config, "ignore-rules")),
            )
            self.rules = selected_rules(self.settings)
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.scenarios = [n for n in (_option(config, "scenario") or "").split(",") if n]
        self.log = ComplianceLog(self.apis, rules=self.rules, waivers=self.settings.waivers)
        self.server: Any = None
        self._runner: Runner | None = None
        self.embedded = not _option(config, "base-url")
        self.faults: list[str] = []
        self.checked: dict[str, tuple[RuleCase, str, RuleOutcome]] = {}

    def target(self) -> Target:
        base_url = _option(self.config, "base-url")
        key = _option(self.config, "api-key")
        model = _option(self.config, "model")
        faults = [f for f in (_option(self.config, "fault") or "").split(",") if f]
        self.faults = faults
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
        self.log.add_scenario(scenario_result)
        result = outcome(scenario_result, case.rule_id)
        wide = None
        if result.finding is not None and scenario_result.capture is not None:
            wide = transcript(scenario_result.capture, result.finding.event)
        final = self.log.add(case.rule_id, case.scenario.id, result, wide)
        self.checked[case.id] = (case, final, result)
        waiver = self.settings.waivers.get(case.rule_id)
        if allure_active(self.config):
            target = self.runner.target
            annotate(rule(case.rule_id), scenario_result, result, final, target, waiver, wide)
        detail = redact(f"{result.message}\n{result.excerpt}" if result.excerpt else result.message)
        if final == "waived":
            pytest.xfail(f"waived: {waiver} | {detail}")
        elif final == "fail":
            pytest.fail(detail, pytrace=False)
        elif final == "warn":
            if self.strict:
                pytest.fail(detail + "\n(SHOULD rule; failing because of --strict)", pytrace=False)
            warnings.warn(StreamproofWarning(detail), stacklevel=1)
        elif final == "skip":
            pytest.skip(redact(result.message))

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
            line = (
                f"streamproof: cannot reach {redact(self.runner.target.base_url)}: "
                f"{refused[0].message}"
            )
            self.log.error = line.removeprefix("streamproof: ")
            pytest.exit(line, returncode=2)

    def finish(self) -> dict[str, Any] | None:
        if self._runner is None:
            return None
        target = self._runner.target
        report = self.log.build(
            {
                "base_url": target.base_url,
                "model": target.model,
                "apis": list(self.apis),
                "embedded": self.embedded,
                "faults": self.faults,
            },
            {
                "strict": self.strict,
                "timeouts": asdict(target.timeouts),
                "max_event_bytes": target.max_event_bytes,
                "scenarios": self.scenarios or None,
                "select": list(self.settings.select),
                "ignore": list(self.settings.ignore),
                "config": self.settings.path,
                "waivers": dict(self.settings.waivers),
            },
        )
        write_reports(self.report_dir, report)
        self._runner.close()
        if self.server is not None:
            self.server.stop()
        return report

    def polish_junit(self) -> None:
        """Readable names and the rule's facts in pytest's ``--junitxml`` file."""
        path = self.config.getoption("xmlpath", None)
        if not path or not self.checked:
            return
        cases = {}
        for case_id, (case, final, result) in self.checked.items():
            r = rule(case.rule_id)
            props = [
                ("rule", r.id),
                ("level", r.level),
                ("group", r.group),
                ("api", case.scenario.api),
                ("scenario", case.scenario.id),
                ("outcome", final),
                ("title", r.title),
                ("source", r.source),
            ]
            waiver = self.settings.waivers.get(r.id)
            if final == "waived" and waiver:
                props.append(("waiver", waiver))
            out = None
            if final == "warn" or (final == "pass" and result.finding is not None):
                out = result.message + ("\n" + result.excerpt if result.excerpt else "")
            cases[case_id] = JUnitCase(
                classname=f"streamproof.{case.scenario.api}.{case.scenario.name}",
                name=r.id,
                properties=tuple(props),
                system_out=out,
            )
        polish_junit(Path(path), cases)


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
    cases = [
        RuleCase(scenario, rule_id)
        for scenario in selected
        for rule_id in scenario.rules
        if rule_id in conformance.rules
    ]
    metafunc.parametrize("rule_case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def conformance(request: pytest.FixtureRequest) -> Conformance:
    """The session's conformance state (target, cached scenario results, compliance log)."""
    return request.config.stash[_KEY]


def pytest_report_header(config: pytest.Config) -> list[str]:
    conformance = config.stash[_KEY]
    where = _option(config, "base-url") or "built-in reference server (127.0.0.1, free port)"
    return [f"streamproof: {redact(where)} · api {', '.join(conformance.apis)}"]


@pytest.hookimpl(trylast=True)  # after pytest's junitxml has written its file
def pytest_sessionfinish(session: pytest.Session) -> None:
    conformance = session.config.stash[_KEY]
    report = conformance.finish()
    if report is not None:
        session.config.stash[_REPORT] = report
    conformance.polish_junit()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT, None)
    if report is None:
        return
    tr = terminalreporter
    tr.section("streamproof compliance")
    for entry in report["rules"]:
        if entry["outcome"] in ("fail", "warn", "waived"):
            tr.write_line(
                f"{entry['outcome'].upper():6} {entry['level']:6} {entry['id']}: {entry['message']}"
            )
    for name, text in (report.get("setup") or {}).items():
        tr.write_line(f"setup: {name} {text}")
    s = report["summary"]
    report_dir = config.stash[_KEY].report_dir
    tr.write_line(
        f"{s['rules']} rules: {s['pass']} passed, {s['fail']} failed, {s['warn']} warned, "
        f"{s['waived']} waived, {s['skip']} skipped · verdict {report['verdict'].upper()} · "
        f"{report_dir / 'index.html'}"
    )
