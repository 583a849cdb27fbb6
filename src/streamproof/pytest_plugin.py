"""The pytest side of the suite: options, one test item per (scenario, rule), reports.

Thin on purpose: scenarios run through :mod:`streamproof.engine`; this module only turns
their outcomes into pytest outcomes (MUST → failure, SHOULD → warning unless ``--strict``,
missing occasion → skip with the reason, waived → xfail with the reason) and hands the
outcomes to :mod:`streamproof.reporting`, which writes ``compliance.json``,
``compliance.md``, ``index.html`` and ``junit.xml`` at the end and, with ``--alluredir``,
describes each check to Allure.

The order of a session: the options are checked when pytest configures (a mistake is a
usage error: one line, pytest's exit status 4); the endpoint is checked when the session
starts (:mod:`streamproof.preflight`: a refused key, a base URL without ``/v1``, no model —
a usage error too; nothing reachable — exit status 2); then the checks run. An interrupted
session (Ctrl-C, SIGTERM) writes the verdict ``interrupted``.

With pytest-xdist (``-n 4``) the controller checks the endpoint (and starts the built-in
server) once and hands the target to the workers; the checks of one scenario stay on one
worker (``--dist loadgroup``), so its request is sent once; each worker sends what it logged
to the controller, which writes the one report — the same as a serial run's.
"""

from __future__ import annotations

import signal
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from .engine import RuleOutcome, Runner, ScenarioResult, Target, outcome
from .findings import Finding
from .preflight import SetupError, Unreachable, discover_model, probe, probe_body
from .redact import redact
from .reporting import write_reports
from .reporting.allure_results import allure_active, annotate
from .reporting.compliance import ComplianceLog
from .reporting.config import ConfigError, load_config, selected_rules, split_tokens
from .reporting.evidence import transcript
from .reporting.junit import JUnitCase, polish_junit
from .rules import rule
from .scenarios import SCENARIOS, Scenario, scenarios_for
from .server.endpoint import DEFAULT_API_KEY
from .suite_options import OPTIONS, Option, SuiteOptions, UsageError, check_names

# The hooks and the fixture are re-exported by the suite's conftest.py.
__all__ = [
    "RuleCase",
    "StreamproofWarning",
    "conformance",
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_configure_node",
    "pytest_generate_tests",
    "pytest_report_header",
    "pytest_sessionfinish",
    "pytest_sessionstart",
    "pytest_terminal_summary",
    "pytest_testnodedown",
    "pytest_unconfigure",
]


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


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("streamproof", "streamproof conformance suite")
    for option in OPTIONS:
        env_note = f" [env {option.env}]" if option.env else ""
        default = f" (default {option.default})" if option.default is not None else ""
        group.addoption(
            f"--{option.name}",
            dest=option.dest,
            default=None,
            action="append" if option.repeat else "store",
            help=f"{option.help}{default}{env_note}",
        )
        if not option.repeat:
            parser.addini(option.dest, help=option.help, default=None)


def _read(config: pytest.Config) -> SuiteOptions:
    def get(option: Option) -> Any:
        given = config.getoption(option.dest)
        if given not in (None, "") or option.repeat:
            return given
        return config.getini(option.dest)

    return SuiteOptions.read(get)


class Conformance:
    """Per-session state: the options, the target (starting the built-in server if needed),
    the results and the compliance log."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        try:
            self.options = opts = _read(config)
            settings = load_config(opts.config)
            self.settings = settings.with_overrides(
                split_tokens(opts.select), split_tokens(opts.ignore)
            )
            self.rules = selected_rules(self.settings)
            self.embedded = opts.base_url is None
            self._check_names(opts)
        except (UsageError, ConfigError) as exc:
            raise pytest.UsageError(str(exc)) from None
        self.apis = opts.apis
        # pytest owns --strict ("enable all strictness"); here it also makes SHOULD fail
        self.strict = bool(config.getoption("strict", False))
        self.report_dir = Path(opts.report_dir)
        self.log = ComplianceLog(self.apis, rules=self.rules, waivers=self.settings.waivers)
        self.server: Any = None
        self.target: Target | None = None
        self._runner: Runner | None = None
        self.left_out: dict[str, str] = {}  # API -> why the endpoint does not serve it
        self.checked: dict[str, tuple[RuleCase, str, RuleOutcome]] = {}
        self.interrupted = False
        self.unreachable: str | None = None  # nothing answered: why (the run ends, exit 2)
        self._finished = False
        # pytest-xdist: a worker runs checks and hands its log over; the controller runs none
        self.worker = hasattr(config, "workerinput")
        self.controller = not self.worker and getattr(config.option, "dist", "no") != "no"
        self._merged = 0

    def _check_names(self, opts: SuiteOptions) -> None:
        from .server.faults import find_fault

        known = [s.name for api in opts.apis for s in scenarios_for(api)]
        check_names(opts.scenarios, known)
        if opts.faults and not self.embedded:
            raise UsageError("--fault applies to the built-in server only (without --base-url)")
        for name in opts.faults:
            try:
                fault = find_fault(name)
            except (KeyError, ValueError) as exc:
                detail = exc.args[0] if isinstance(exc, ValueError) else "no such fault"
                raise UsageError(
                    f"--fault {name}: {detail} (streamproof serve --list-faults)"
                ) from None
            if fault.api not in ("any", *opts.apis):
                raise UsageError(
                    f"--fault {name} is a fault of the {fault.api} API, which this run does "
                    f"not check (--api {opts.api_choice})"
                )

    # -- the session's start: the target ----------------------------------------------------

    def prepare(self) -> None:
        """Start the built-in server, or check the endpoint (model, key, path) before any
        rule is judged. A setup mistake is a usage error; nothing reachable ends the run."""
        opts = self.options
        if self.worker:  # the controller checked the endpoint: its target, as it is
            given = self.config.workerinput["streamproof"]  # type: ignore[attr-defined]
            key = opts.api_key or (DEFAULT_API_KEY if self.embedded else opts.key_for())
            self.target = self._target(given["base_url"], given["model"], key, given["source"])
            self.left_out = dict(given["left_out"])
            return
        if self.embedded:
            from .server import DEFAULT_MODEL, ReferenceServer

            key = opts.api_key or DEFAULT_API_KEY
            self.server = ReferenceServer(api_key=key).start()
            base = self.server.url_for(faults=opts.faults)
            self.target = self._target(base, opts.model or DEFAULT_MODEL, key, "given")
            return
        key = opts.key_for()
        try:
            model, source = opts.model, "given"
            if not model:
                target = self._target(opts.base_url or "", "", key, "")
                headers = target.headers(
                    "anthropic" if opts.apis == ("anthropic",) else "openai", "key"
                )
                model, source = (
                    discover_model(target.base_url, headers, opts.timeouts),
                    "GET /models",
                )
            self.target = target = self._target(opts.base_url or "", model, key, source)
            self.left_out = probe(
                target.base_url,
                opts.apis,
                lambda api: target.headers(api, "key"),
                lambda api: target.body(probe_body(api, model)),
                timeouts=opts.timeouts,
                explicit=opts.api_choice != "all",
                given_key=bool(key),
            )
        except SetupError as exc:
            self._stop("error", f"streamproof: {exc}")
            raise pytest.UsageError(redact(str(exc))) from None
        except Unreachable as exc:
            self._unreachable(exc)

    def _target(self, base_url: str, model: str, key: str | None, source: str) -> Target:
        opts = self.options
        return Target(
            base_url=base_url,
            model=model,
            api_key=key,
            timeouts=opts.timeouts,
            max_event_bytes=opts.max_event_bytes,
            anthropic_auth=opts.anthropic_auth,  # type: ignore[arg-type]
            auth_header=opts.auth_header,
            extra_headers=opts.headers,
            extra_body=opts.extra_body,
            model_source=source,
        )

    def _unreachable(self, exc: Unreachable) -> None:
        """Nothing answered: that one finding and the reports; no check runs (every item
        is deselected), and the session ends with exit status 2 and one line."""
        api = self.apis[0]
        found = Finding(exc.rule, f"the setup check (a short streaming request): {exc}")
        self.log.add(exc.rule, f"{api}:plain", RuleOutcome("fail", found.message, found))
        self.unreachable = redact(f"streamproof: {exc}")
        self._stop("error", self.unreachable)

    def hung(self, why: str, scenarios: list[Scenario]) -> None:
        """Every stream hung: the run ends with what each scenario showed, and one line."""
        for scenario in {s.id: s for s in scenarios}.values():
            result = self.runner.results[scenario.id]
            self.log.add_scenario(result)
            for finding in result.findings:
                if finding.rule.startswith("transport."):
                    self.log.add(finding.rule, scenario.id, outcome(result, finding.rule))
        self.unreachable = redact(f"streamproof: {why}")
        self._stop("error", self.unreachable)

    def _stop(self, verdict: str, line: str) -> None:
        """End the run early: the reports say why (``error``)."""
        self.log.error = redact(line.removeprefix("streamproof: "))
        self.finish()

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            assert self.target is not None, "the session was not prepared"
            self._runner = Runner(self.target)
        return self._runner

    # -- the checks -------------------------------------------------------------------------

    def check(self, case: RuleCase) -> None:
        why = self.left_out.get(case.scenario.api)
        if why is not None:
            self.log.add(case.rule_id, case.scenario.id, RuleOutcome("skip", why))
            pytest.skip(redact(f"the endpoint does not serve this API: {why}"))
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
            annotate(rule(case.rule_id), scenario_result, result, final, self.target, waiver, wide)
        shown = wide or result.excerpt
        detail = redact(f"{result.message}\n{shown}" if shown else result.message)
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
            assert self.target is not None
            line = f"streamproof: cannot reach {redact(self.target.base_url)}: {refused[0].message}"
            self.log.error = line.removeprefix("streamproof: ")
            pytest.exit(line, returncode=2)

    # -- the end ----------------------------------------------------------------------------

    def finish(self) -> dict[str, Any] | None:
        """Build and write the reports (once)."""
        if self._finished:
            return None
        self._finished = True
        target = self.target
        opts = self.options
        self.log.interrupted = self.interrupted and not self.log.error
        report = self.log.build(
            {
                "base_url": target.base_url if target else opts.base_url,
                "model": target.model if target else opts.model,
                "model_source": target.model_source if target else None,
                "apis": list(self.apis),
                "embedded": self.embedded,
                "faults": list(opts.faults),
            },
            {
                "strict": self.strict,
                "timeouts": asdict(opts.timeouts),
                "max_event_bytes": opts.max_event_bytes,
                "scenarios": list(opts.scenarios) or None,
                "select": list(self.settings.select),
                "ignore": list(self.settings.ignore),
                "config": self.settings.path,
                "waivers": dict(self.settings.waivers),
                "left_out": dict(self.left_out) or None,
            },
        )
        write_reports(self.report_dir, report)
        return report

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def handover(self) -> dict[str, Any]:
        """A worker's log and checks, for the controller (plain data over xdist's channel)."""
        checked = [
            [case.scenario.id, case.rule_id, final, result.message, result.excerpt,
             result.finding is not None]
            for case, final, result in self.checked.values()
        ]  # fmt: skip
        return {"log": self.log.export(), "checked": checked}

    def take_over(self, data: dict[str, Any]) -> None:
        """The controller takes a worker's :meth:`handover`."""
        self.log.merge(data["log"], first=self._merged == 0)
        self._merged += 1
        by_id = {s.id: s for s in SCENARIOS}
        for scenario_id, rule_id, final, message, excerpt, found in data["checked"]:
            case = RuleCase(by_id[scenario_id], rule_id)
            finding = Finding(rule_id, message) if found else None
            self.checked[case.id] = (case, final, RuleOutcome("skip", message, finding, excerpt))

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
_SIGTERM = pytest.StashKey[Any]()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # pytest then ends the session as interrupted


@pytest.hookimpl(tryfirst=True)  # before junitxml reads --junitxml
def pytest_configure(config: pytest.Config) -> None:
    conformance = config.stash[_KEY] = Conformance(config)
    config.addinivalue_line("markers", "streamproof: a conformance rule check")
    if config.getoption("xmlpath", None) is None and not conformance.worker:
        config.option.xmlpath = str(conformance.report_dir / "junit.xml")
    if conformance.controller and config.option.dist == "load":
        # the checks of one scenario on one worker: its request is sent once
        config.option.dist = "loadgroup"
        config.option.loadgroup = True
    if threading.current_thread() is threading.main_thread():
        config.stash[_SIGTERM] = signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_unconfigure(config: pytest.Config) -> None:
    conformance = config.stash.get(_KEY, None)
    if conformance is not None:
        conformance.close()
    previous = config.stash.get(_SIGTERM, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if config.getoption("collectonly") or config.getoption("help", False):
        return
    config.stash[_KEY].prepare()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "rule_case" not in metafunc.fixturenames:
        return
    conformance = metafunc.config.stash[_KEY]
    wanted = set(conformance.options.scenarios)
    selected = [s for api in conformance.apis for s in scenarios_for(api)]
    if wanted:
        selected = [s for s in selected if s.name in wanted]
    cases = [
        RuleCase(scenario, rule_id)
        for scenario in selected
        for rule_id in scenario.rules
        if rule_id in conformance.rules
    ]
    if conformance.worker:  # pytest-xdist: a scenario's checks stay together
        params = [pytest.param(c, marks=pytest.mark.xdist_group(c.scenario.id)) for c in cases]
        metafunc.parametrize("rule_case", params, ids=[c.id for c in cases])
    else:
        metafunc.parametrize("rule_case", cases, ids=[c.id for c in cases])


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, on the controller: the target the controller checked, for a worker."""
    conformance = node.config.stash[_KEY]
    target = conformance.target
    if target is None:
        return
    node.workerinput["streamproof"] = {
        "base_url": target.base_url,
        "model": target.model,
        "source": target.model_source,
        "left_out": conformance.left_out,
    }


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist, on the controller: a worker's log, merged into the one report."""
    handed = getattr(node, "workeroutput", {}).get("streamproof")
    if handed is not None:
        node.config.stash[_KEY].take_over(handed)


@pytest.hookimpl(trylast=True)  # after -k / -m deselected what they deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The report covers the rules that are checked: deselected ones are not "skipped".
    Nothing to check when the endpoint could not be reached."""
    if config.stash[_KEY].unreachable:
        config.hook.pytest_deselected(items=items[:])
        items[:] = []
        return
    rules = {
        item.callspec.params["rule_case"].rule_id
        for item in items
        if hasattr(item, "callspec") and "rule_case" in item.callspec.params
    }
    config.stash[_KEY].log.restrict(rules)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Send the scenarios of the selected checks together, before the checks read them (not
    under pytest-xdist: there a worker runs its scenarios as its checks need them). When
    every stream hung, nothing more is checked: one line, exit status 2."""
    conformance = session.config.stash[_KEY]
    if conformance.target is None or conformance.worker or conformance.controller:
        return
    cases = [
        item.callspec.params["rule_case"]
        for item in session.items
        if hasattr(item, "callspec") and "rule_case" in item.callspec.params
    ]
    cases = [c for c in cases if c.scenario.api not in conformance.left_out]
    runner = conformance.runner
    runner.run_all([c.scenario for c in cases], conformance.options.concurrency)
    if runner.stopped:
        conformance.hung(runner.stopped, [c.scenario for c in cases])
        session.config.hook.pytest_deselected(items=session.items[:])
        session.items[:] = []


@pytest.fixture(scope="session")
def conformance(request: pytest.FixtureRequest) -> Conformance:
    """The session's conformance state (target, cached scenario results, compliance log)."""
    return request.config.stash[_KEY]


def pytest_report_header(config: pytest.Config) -> list[str]:
    conformance = config.stash[_KEY]
    opts = conformance.options
    where = opts.base_url or "built-in reference server (127.0.0.1, free port)"
    model = opts.model or ("streamproof-1" if conformance.embedded else "from GET /models")
    return [f"streamproof: {redact(where)} · model {model} · api {', '.join(conformance.apis)}"]


@pytest.hookimpl(trylast=True)  # after pytest's junitxml has written its file
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    conformance = session.config.stash[_KEY]
    if conformance.unreachable:
        session.exitstatus = 2
        return
    conformance.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    if conformance.target is None:
        return  # never prepared (--collect-only), or stopped early with its reports written
    if conformance.worker:  # the controller writes the reports
        session.config.workeroutput["streamproof"] = conformance.handover()  # type: ignore[attr-defined]
        return
    report = conformance.finish()
    if report is not None:
        session.config.stash[_REPORT] = report
    conformance.polish_junit()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    unreachable = config.stash[_KEY].unreachable
    if unreachable:
        terminalreporter.write_line(unreachable)
        return
    report = config.stash.get(_REPORT, None)
    if report is None:
        return
    tr = terminalreporter
    tr.section("streamproof compliance")
    target = report["target"]
    if target.get("model_source") == "GET /models":
        tr.write_line(f"model: {target['model']} (the first one GET /models lists)")
    for name, text in (report.get("setup") or {}).items():
        tr.write_line(f"setup: {name} {text}")
    for crash in report.get("tool_errors") or ():
        tr.write_line(f"TOOL ERROR (a bug in streamproof, please report it): {crash}")
    for api, why in (report["options"].get("left_out") or {}).items():
        tr.write_line(f"skipped: the {api} API ({why})")
    for entry in report["rules"]:
        if entry["outcome"] in ("fail", "warn", "waived"):
            tr.write_line(
                f"{entry['outcome'].upper():6} {entry['level']:6} {entry['id']}: {entry['message']}"
            )
    s = report["summary"]
    report_dir = config.stash[_KEY].report_dir
    tr.write_line(
        f"{s['rules']} rules: {s['pass']} passed, {s['fail']} failed, {s['warn']} warned, "
        f"{s['waived']} waived, {s['skip']} skipped · verdict {report['verdict'].upper()} · "
        f"{report_dir / 'index.html'}"
    )
