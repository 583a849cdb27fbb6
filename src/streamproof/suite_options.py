"""The suite's options, read and checked once: from the command line, else the environment,
else the ini file (as pytest-base-url does), each mistake a one-line :class:`UsageError`.

Shared by the pytest plugin and ``streamproof run`` (which passes them on to pytest), so a
wrong value is refused before a request is sent, with the option's name and what it takes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .capture import Timeouts
from .redact import is_secret_name, register_secret
from .sse import DEFAULT_MAX_EVENT_BYTES

__all__ = ["APIS", "OPTIONS", "Option", "SuiteOptions", "UsageError", "parse_header"]

APIS = ("openai", "anthropic", "responses", "all")


class UsageError(ValueError):
    """A setup or option mistake: one line saying what and how to fix it."""


@dataclass(frozen=True)
class Option:
    """One option: ``--name``, its environment variable, help text, default and type."""

    name: str
    env: str | None
    help: str
    default: Any = None
    kind: Callable[[str], Any] = str
    repeat: bool = False  # may be given several times (a list)

    @property
    def dest(self) -> str:
        return "streamproof_" + self.name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("base-url", "STREAMPROOF_BASE_URL",
           "API root of the endpoint, e.g. http://host:8000/v1 (default: start the built-in "
           "reference server on a free 127.0.0.1 port)"),
    Option("api-key", None, "API key, masked everywhere (default: OPENAI_API_KEY / "
           "ANTHROPIC_API_KEY)"),
    Option("model", "STREAMPROOF_MODEL",
           "model to request (default: the first one GET {base}/models lists; streamproof-1 "
           "on the built-in server)"),
    Option("api", "STREAMPROOF_API", "openai, anthropic, responses or all (an endpoint that "
           "serves only some of them: the others are skipped with the reason)", "all"),
    Option("report-dir", "STREAMPROOF_REPORT_DIR", "where the reports go", "reports"),
    Option("connect-timeout", "STREAMPROOF_CONNECT_TIMEOUT", "seconds to connect", 10.0, float),
    Option("first-byte-timeout", "STREAMPROOF_FIRST_BYTE_TIMEOUT",
           "seconds until the response headers", 30.0, float),
    Option("idle-timeout", "STREAMPROOF_IDLE_TIMEOUT", "longest silence between two reads, "
           "seconds", 30.0, float),
    Option("total-timeout", "STREAMPROOF_TOTAL_TIMEOUT", "bound on one whole exchange, seconds",
           120.0, float),
    Option("max-event-bytes", "STREAMPROOF_MAX_EVENT_BYTES",
           "bound on one SSE line or event, bytes (sse.max-event)", DEFAULT_MAX_EVENT_BYTES, int),
    Option("concurrency", "STREAMPROOF_CONCURRENCY",
           "scenarios in flight at once (1: one after another)", 8, int),
    Option("scenario", "STREAMPROOF_SCENARIO",
           "run only these scenarios, comma-separated (e.g. plain,tool; default: all)"),
    Option("fault", "STREAMPROOF_FAULT",
           "built-in server only: faults to inject, comma-separated (streamproof serve "
           "--list-faults); each applies to its own API"),
    Option("anthropic-auth", "STREAMPROOF_ANTHROPIC_AUTH",
           "how to send the Anthropic key: x-api-key or bearer", "x-api-key"),
    Option("auth-header", "STREAMPROOF_AUTH_HEADER",
           "send the key raw in this header instead (e.g. api-key for Azure)"),
    Option("header", None, "an extra request header 'Name: value', repeatable (values of "
           "secret-looking names are masked everywhere)", repeat=True),
    Option("extra-body", "STREAMPROOF_EXTRA_BODY",
           "a JSON object merged into every request body (e.g. "
           '\'{"chat_template_kwargs": {"enable_thinking": false}}\')'),
    Option("select-rules", "STREAMPROOF_SELECT",
           "check only these rules: ids, groups, APIs or patterns (openai.usage-*), "
           "comma-separated"),
    Option("ignore-rules", "STREAMPROOF_IGNORE", "never check these rules (same forms as "
           "--select-rules)"),
    Option("streamproof-config", "STREAMPROOF_CONFIG",
           "config file with select, ignore and [waivers] (default: ./streamproof.toml, else "
           "[tool.streamproof] in ./pyproject.toml)"),
)  # fmt: skip
_BY_NAME = {o.name: o for o in OPTIONS}


def parse_header(text: str) -> tuple[str, str]:
    """``'Name: value'`` → ``(name, value)``; a :class:`UsageError` names the bad one (with
    its value masked when the name looks secret)."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        shown = f"{name}: ***" if sep and is_secret_name(name) else text
        raise UsageError(f"--header takes 'Name: value', not {shown!r}")
    value = value.strip()
    if is_secret_name(name):
        register_secret(value)
    return name, value


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@dataclass(frozen=True)
class SuiteOptions:
    """The suite's options, typed and checked (no I/O)."""

    base_url: str | None
    api_key: str | None
    model: str | None
    apis: tuple[str, ...]
    api_choice: str
    report_dir: str
    timeouts: Timeouts
    max_event_bytes: int
    concurrency: int
    scenarios: tuple[str, ...]
    faults: tuple[str, ...]
    anthropic_auth: str
    auth_header: str | None
    headers: tuple[tuple[str, str], ...]
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    select: str | None = None
    ignore: str | None = None
    config: str | None = None

    @classmethod
    def read(cls, get: Callable[[Option], Any]) -> SuiteOptions:
        """From ``get(option)``: the raw value (command line > environment > ini), or None."""

        def value(name: str) -> Any:
            option = _BY_NAME[name]
            raw = get(option)
            if option.repeat:
                return [str(v) for v in raw or ()]
            if option.env and raw in (None, ""):
                raw = os.environ.get(option.env)
            if raw in (None, ""):
                return option.default
            if option.kind is str:
                return str(raw)
            try:
                number = option.kind(raw)
            except (TypeError, ValueError):
                raise UsageError(f"--{name}: not a number: {raw!r}") from None
            if number <= 0:
                raise UsageError(f"--{name} must be more than 0, not {raw!r}")
            return number

        api = value("api")
        if api not in APIS:
            raise UsageError(f"--api takes {', '.join(APIS)}, not {api!r}")
        auth = value("anthropic-auth")
        if auth not in ("x-api-key", "bearer"):
            raise UsageError(f"--anthropic-auth takes x-api-key or bearer, not {auth!r}")
        extra_raw = value("extra-body")
        extra: Any = {}
        if extra_raw:
            try:
                extra = json.loads(extra_raw)
            except json.JSONDecodeError as exc:
                raise UsageError(f"--extra-body is not JSON: {exc}") from None
            if not isinstance(extra, dict):
                raise UsageError("--extra-body must be a JSON object, e.g. '{\"seed\": 1}'")
        key = value("api-key")
        register_secret(key)
        base_url = value("base-url")
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise UsageError(f"--base-url must be an http(s) URL, not {base_url!r}")
        return cls(
            base_url=base_url,
            api_key=key,
            model=value("model"),
            apis=("openai", "anthropic", "responses") if api == "all" else (api,),
            api_choice=api,
            report_dir=value("report-dir"),
            timeouts=Timeouts(
                connect=value("connect-timeout"),
                first_byte=value("first-byte-timeout"),
                idle=value("idle-timeout"),
                total=value("total-timeout"),
            ),
            max_event_bytes=value("max-event-bytes"),
            concurrency=value("concurrency"),
            scenarios=tuple(_split(value("scenario"))),
            faults=tuple(_split(value("fault"))),
            anthropic_auth=auth,
            auth_header=value("auth-header"),
            headers=tuple(parse_header(h) for h in value("header")),
            extra_body=extra,
            select=value("select-rules"),
            ignore=value("ignore-rules"),
            config=value("streamproof-config"),
        )

    def key_for(self) -> str | None:
        """The key: ``--api-key``, else the environment's for the run's API."""
        if self.api_key:
            return self.api_key
        name = "ANTHROPIC_API_KEY" if self.apis == ("anthropic",) else "OPENAI_API_KEY"
        key = os.environ.get(name)
        register_secret(key)
        return key


def check_names(scenarios: Sequence[str], known: Sequence[str], what: str = "--scenario") -> None:
    """Every name is known; else a :class:`UsageError` lists the known ones."""
    unknown = [s for s in scenarios if s not in known]
    if unknown:
        raise UsageError(
            f"{what}: unknown {', '.join(unknown)} (known: {', '.join(sorted(set(known)))})"
        )
